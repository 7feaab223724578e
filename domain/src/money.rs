//! Money: integer minor units with an ISO 4217 currency, never floating point.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Invalid;

/// The currencies Gavel accepts (ISO 4217, those the payment provider settles),
/// with their minor-unit exponent.
const CURRENCIES: &[(&str, u8)] = &[
    ("aud", 2),
    ("brl", 2),
    ("cad", 2),
    ("chf", 2),
    ("cny", 2),
    ("czk", 2),
    ("dkk", 2),
    ("eur", 2),
    ("gbp", 2),
    ("hkd", 2),
    ("huf", 2),
    ("ils", 2),
    ("inr", 2),
    ("jpy", 0),
    ("krw", 0),
    ("mxn", 2),
    ("nok", 2),
    ("nzd", 2),
    ("pln", 2),
    ("sek", 2),
    ("sgd", 2),
    ("thb", 2),
    ("try", 2),
    ("usd", 2),
    ("zar", 2),
];

/// A supported currency, lower-case as on the wire (`"usd"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(&'static str);

impl Currency {
    pub fn code(self) -> &'static str {
        self.0
    }

    /// Digits after the decimal point (2 for `usd`, 0 for `jpy`).
    pub fn exponent(self) -> u8 {
        CURRENCIES.iter().find(|(code, _)| *code == self.0).map_or(2, |(_, e)| *e)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for Currency {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        CURRENCIES
            .iter()
            .find(|(code, _)| *code == lower)
            .map(|(code, _)| Currency(code))
            .ok_or_else(|| Invalid::new("currency", format!("`{s}` is not a supported ISO 4217 currency")))
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("An ISO 4217 currency code, lower-case"))
            .examples(["usd"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Currency {}

/// Stored as its lower-case code; a row holding a code Gavel does not know
/// fails to decode (it is never read as some default currency).
impl sqlx::Type<sqlx::Postgres> for Currency {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Currency {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Currency {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(text.parse::<Currency>()?)
    }
}

/// A positive price in minor units, bounded like the payment provider's charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Price(i64);

impl Price {
    /// Stripe's largest charge is 99,999,999 minor units.
    pub const MAX: i64 = 99_999_999;

    pub fn new(field: &'static str, minor: i64) -> Result<Self, Invalid> {
        if minor <= 0 {
            return Err(Invalid::new(field, "must be a positive amount in minor units"));
        }
        if minor > Self::MAX {
            return Err(Invalid::new(field, format!("must be at most {}", Self::MAX)));
        }
        Ok(Self(minor))
    }

    pub fn minor(self) -> i64 {
        self.0
    }
}

/// An amount as stored, charged and refunded: minor units of one currency.
/// Every row that carries an amount carries one of these, so an amount is
/// never read without its currency. In JSON (event payloads) it is
/// `{"amount": 1999, "currency": "usd"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Money {
    /// Minor units (cents for `usd`, yen for `jpy`).
    #[serde(rename = "amount")]
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// A validated price in a currency.
    pub fn of(price: Price, currency: Currency) -> Self {
        Self::new(price.minor(), currency)
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_parse_case_insensitively_and_unknown_ones_fail() {
        assert_eq!("USD".parse::<Currency>().map(Currency::code), Ok("usd"));
        assert!("xyz".parse::<Currency>().is_err());
        assert!("".parse::<Currency>().is_err());
    }

    #[test]
    fn prices_are_positive_and_bounded() {
        assert!(Price::new("price", 0).is_err());
        assert!(Price::new("price", -5).is_err());
        assert!(Price::new("price", Price::MAX + 1).is_err());
        assert_eq!(Price::new("price", 1999).map(Price::minor), Ok(1999));
    }
}
