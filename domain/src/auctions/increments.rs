//! Bid increments by price band.
//!
//! A table is a list of bands, each `(from, increment)` in minor units: a price
//! `p` belongs to the last band whose `from` is at most `p`, and
//! [`IncrementTable::inc`] is that band's increment. The default is eBay's
//! published table (PRODUCT.md) for a currency with two decimals. A merchant's
//! own table is checked by [`IncrementTable::new`]; it is (de)serialized as the
//! JSON list of its bands, and deserializing checks it the same way.

use serde::{Deserialize, Serialize};

use super::AMOUNT_MAX;
use crate::Invalid;

/// The most bands a merchant's table may have.
pub const MAX_BANDS: usize = 32;

/// One band: from `from` (inclusive) up to the next band's `from`, bids rise by `increment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Band {
    pub from: i64,
    pub increment: i64,
}

/// A checked increment table: at least one band, the first from 0, `from`s
/// strictly ascending, each increment in `1..=AMOUNT_MAX`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Band>", into = "Vec<Band>")]
pub struct IncrementTable {
    bands: Vec<Band>,
}

/// eBay's table in minor units: under $1 → 5; $1–4.99 → 25; $5–24.99 → 50;
/// $25–99.99 → 100; $100–249.99 → 250; $250–499.99 → 500; $500–999.99 → 1000;
/// $1,000–2,499.99 → 2500; $2,500–4,999.99 → 5000; $5,000 and up → 10000.
const EBAY: [(i64, i64); 10] = [
    (0, 5),
    (100, 25),
    (500, 50),
    (2_500, 100),
    (10_000, 250),
    (25_000, 500),
    (50_000, 1_000),
    (100_000, 2_500),
    (250_000, 5_000),
    (500_000, 10_000),
];

impl IncrementTable {
    /// A merchant's own table, checked; errors name the field `increments`.
    pub fn new(bands: Vec<Band>) -> Result<Self, Invalid> {
        let field = "increments";
        let Some(first) = bands.first() else {
            return Err(Invalid::new(field, "must have at least one band"));
        };
        if bands.len() > MAX_BANDS {
            return Err(Invalid::new(field, format!("must have at most {MAX_BANDS} bands")));
        }
        if first.from != 0 {
            return Err(Invalid::new(field, "the first band must start at 0"));
        }
        if bands.windows(2).any(|pair| matches!(pair, [a, b] if b.from <= a.from)) {
            return Err(Invalid::new(field, "bands must start at strictly ascending prices"));
        }
        if let Some(last) = bands.last()
            && last.from > AMOUNT_MAX
        {
            return Err(Invalid::new(field, format!("a band must start at most at {AMOUNT_MAX}")));
        }
        if bands.iter().any(|band| !(1..=AMOUNT_MAX).contains(&band.increment)) {
            return Err(Invalid::new(field, format!("each increment must be from 1 to {AMOUNT_MAX}")));
        }
        Ok(Self { bands })
    }

    /// The bands, lowest first.
    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    /// The increment of the band containing `price` (prices below 0 count as the first band).
    pub fn inc(&self, price: i64) -> i64 {
        let after = self.bands.partition_point(|band| band.from <= price);
        let index = after.saturating_sub(1);
        self.bands.get(index).map_or(1, |band| band.increment)
    }
}

impl Default for IncrementTable {
    fn default() -> Self {
        Self { bands: EBAY.iter().map(|&(from, increment)| Band { from, increment }).collect() }
    }
}

impl TryFrom<Vec<Band>> for IncrementTable {
    type Error = Invalid;

    fn try_from(bands: Vec<Band>) -> Result<Self, Self::Error> {
        Self::new(bands)
    }
}

impl From<IncrementTable> for Vec<Band> {
    fn from(table: IncrementTable) -> Self {
        table.bands
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(from: i64, increment: i64) -> Band {
        Band { from, increment }
    }

    #[test]
    fn ebay_table_band_edges() {
        let table = IncrementTable::default();
        let cases = [
            (0, 5),
            (99, 5),
            (100, 25),
            (499, 25),
            (500, 50),
            (2_499, 50),
            (2_500, 100),
            (9_999, 100),
            (10_000, 250),
            (24_999, 250),
            (25_000, 500),
            (49_999, 500),
            (50_000, 1_000),
            (99_999, 1_000),
            (100_000, 2_500),
            (249_999, 2_500),
            (250_000, 5_000),
            (499_999, 5_000),
            (500_000, 10_000),
            (AMOUNT_MAX, 10_000),
        ];
        for (price, increment) in cases {
            assert_eq!(table.inc(price), increment, "inc({price})");
        }
    }

    #[test]
    fn the_default_table_passes_its_own_check() {
        let bands = IncrementTable::default().bands().to_vec();
        assert_eq!(IncrementTable::new(bands), Ok(IncrementTable::default()));
    }

    #[test]
    fn a_merchant_table_is_refused_when_malformed() {
        let refused = [
            vec![],
            vec![band(1, 5)],
            vec![band(0, 5), band(100, 10), band(100, 20)],
            vec![band(0, 5), band(200, 10), band(100, 20)],
            vec![band(0, 0)],
            vec![band(0, -5)],
            vec![band(0, AMOUNT_MAX + 1)],
            vec![band(0, 5), band(AMOUNT_MAX + 1, 5)],
            (0..=MAX_BANDS as i64).map(|i| band(i * 10, 1)).collect(),
        ];
        for bands in refused {
            let err = IncrementTable::new(bands.clone()).expect_err("a malformed table is refused");
            assert_eq!(err.field, "increments", "{bands:?}");
        }
    }

    #[test]
    fn a_merchant_table_round_trips_through_json_and_is_checked_on_the_way_in() {
        let table = IncrementTable::new(vec![band(0, 10), band(1_000, 100)]).expect("a valid table");
        let json = serde_json::to_string(&table).expect("serializes");
        assert_eq!(json, r#"[{"from":0,"increment":10},{"from":1000,"increment":100}]"#);
        let back: IncrementTable = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, table);
        assert_eq!(back.inc(999), 10);
        assert_eq!(back.inc(1_000), 100);
        assert!(serde_json::from_str::<IncrementTable>(r#"[{"from":5,"increment":10}]"#).is_err());
    }
}
