//! Property tests for the parsers at the edge: whatever arrives, they answer
//! (never panic), and whatever they accept satisfies the invariants the rest of
//! the code relies on — money, sale terms, prefixed ids and buyers' emails.

#![allow(clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use gavel_domain::buyers::{SignUp, sign_in_email};
use gavel_domain::ids::{BuyerId, ClaimId, EventId, MerchantId, OrderId, PaymentId, ProductId, RefundId, SaleId};
use gavel_domain::money::{Currency, Price};
use gavel_domain::sales::{MAX_INVENTORY, RawTerms, SaleTerms};
use proptest::prelude::*;

/// Some of the currencies the contract accepts, as merchants send them.
const KNOWN_CURRENCIES: &[&str] = &["usd", "eur", "gbp", "jpy", "chf", "sek", "krw"];

/// A string with each ASCII letter's case chosen by `mask`.
fn recase(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect()
}

// ---------------------------------------------------------------- money

proptest! {
    #[test]
    fn a_price_is_accepted_exactly_when_positive_and_at_most_the_maximum(minor in any::<i64>()) {
        let parsed = Price::new("price", minor);
        prop_assert_eq!(parsed.is_ok(), (1..=Price::MAX).contains(&minor));
        if let Ok(price) = parsed {
            prop_assert_eq!(price.minor(), minor);
        }
    }

    #[test]
    fn prices_near_the_bounds_are_judged_like_any_other(minor in prop_oneof![-2..3i64, Price::MAX - 2..Price::MAX + 3]) {
        prop_assert_eq!(Price::new("price", minor).is_ok(), (1..=Price::MAX).contains(&minor));
    }

    #[test]
    fn a_known_currency_parses_in_any_case_to_its_lower_case_code(
        code in proptest::sample::select(KNOWN_CURRENCIES),
        mask in any::<u64>(),
    ) {
        let currency: Currency = recase(code, mask).parse().expect("a known code in any case");
        prop_assert_eq!(currency.code(), code);
        prop_assert_eq!(currency.to_string(), code);
    }

    #[test]
    fn currency_parsing_ignores_case_and_round_trips(raw in "\\PC{0,5}|[a-zA-Z]{3}") {
        let parsed = raw.parse::<Currency>();
        prop_assert_eq!(parsed.is_ok(), raw.to_ascii_uppercase().parse::<Currency>().is_ok());
        prop_assert_eq!(parsed.is_ok(), raw.to_ascii_lowercase().parse::<Currency>().is_ok());
        if let Ok(currency) = parsed {
            prop_assert_eq!(currency.code(), raw.to_ascii_lowercase());
            prop_assert_eq!(currency.code().parse::<Currency>().ok(), Some(currency));
            let json = serde_json::to_string(&currency).expect("a currency serializes");
            prop_assert_eq!(serde_json::from_str::<Currency>(&json).ok(), Some(currency));
        }
    }
}

// ---------------------------------------------------------------- sale terms

/// An instant within a few years of `now`, or anywhere chrono can represent.
fn instant(now: DateTime<Utc>) -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        4 => (-200_000i64..40_000_000).prop_map(move |s| now + Duration::seconds(s)),
        1 => (-8_000_000_000i64..8_000_000_000).prop_filter_map("representable", |s| DateTime::from_timestamp(s, 0)),
    ]
}

fn raw_terms(now: DateTime<Utc>) -> impl Strategy<Value = RawTerms> {
    let amount = prop_oneof![any::<i64>(), -10..200_000_000i64];
    let small = prop_oneof![any::<i64>(), -10..2_000_000i64];
    let currency = prop_oneof![proptest::sample::select(KNOWN_CURRENCIES).prop_map(str::to_owned), "\\PC{0,4}"];
    (
        (proptest::option::weighted(0.9, amount), proptest::option::weighted(0.9, currency)),
        (proptest::option::weighted(0.9, small.clone()), proptest::option::weighted(0.9, instant(now))),
        (proptest::option::of(instant(now)), proptest::option::of(small.clone())),
        (proptest::option::of(small.clone()), proptest::option::of(small)),
    )
        .prop_map(|((price, currency), (inventory, starts_at), (ends_at, duration_seconds), (hold, limit))| {
            RawTerms {
                price,
                currency,
                inventory,
                starts_at,
                ends_at,
                duration_seconds,
                hold_seconds: hold,
                per_buyer_limit: limit,
            }
        })
}

proptest! {
    #[test]
    fn terms_never_panic_and_accepted_terms_keep_their_invariants(
        raw in raw_terms(Utc::now()),
    ) {
        let now = Utc::now();
        if let Ok(terms) = SaleTerms::parse(raw.clone(), now) {
            prop_assert!((1..=Price::MAX).contains(&terms.price.minor()));
            prop_assert_eq!(Some(terms.price.minor()), raw.price);
            prop_assert_eq!(Some(terms.currency.code().to_owned()), raw.currency.map(|c| c.to_ascii_lowercase()));
            prop_assert!((1..=MAX_INVENTORY).contains(&i64::from(terms.inventory)));
            prop_assert_eq!(Some(i64::from(terms.inventory)), raw.inventory);
            prop_assert!(terms.ends_at() > terms.starts_at, "the end is after the start");
            prop_assert!(terms.duration <= Duration::days(7));
            prop_assert!(terms.hold >= Duration::seconds(1) && terms.hold <= Duration::hours(1));
            prop_assert!((1..=100).contains(&terms.per_buyer_limit));
            // The sale opens neither long ago nor more than a year ahead.
            prop_assert!(terms.starts_at >= now - Duration::seconds(60));
            prop_assert!(terms.starts_at <= now + Duration::days(366));
            prop_assert!(raw.ends_at.is_none() || raw.duration_seconds.is_none(), "one way to give the end");
            if let Some(ends_at) = raw.ends_at {
                // Whole seconds: the end given is kept to within a second.
                prop_assert!(terms.ends_at() <= ends_at && terms.ends_at() > ends_at - Duration::seconds(1));
            }
        }
    }

    #[test]
    fn terms_within_every_bound_are_accepted_as_given(
        price in 1..=Price::MAX,
        currency in proptest::sample::select(KNOWN_CURRENCIES),
        inventory in 1..=MAX_INVENTORY,
        start_in in 0i64..365 * 86_400,
        duration in 1i64..=7 * 86_400,
        hold in 1i64..=3600,
        limit in 1i64..=100,
    ) {
        let now = Utc::now();
        let raw = RawTerms {
            price: Some(price),
            currency: Some(currency.to_uppercase()),
            inventory: Some(inventory),
            starts_at: Some(now + Duration::seconds(start_in)),
            ends_at: None,
            duration_seconds: Some(duration),
            hold_seconds: Some(hold),
            per_buyer_limit: Some(limit),
        };
        let terms = SaleTerms::parse(raw, now).expect("terms within every bound");
        prop_assert_eq!(terms.price.minor(), price);
        prop_assert_eq!(terms.currency.code(), currency);
        prop_assert_eq!(i64::from(terms.inventory), inventory);
        prop_assert_eq!(terms.ends_at() - terms.starts_at, Duration::seconds(duration));
        prop_assert_eq!(terms.hold, Duration::seconds(hold));
        prop_assert_eq!(i64::from(terms.per_buyer_limit), limit);
    }

    #[test]
    fn an_end_at_or_before_the_start_is_refused(back in 0i64..1_000_000, start_in in 0i64..86_400) {
        let now = Utc::now();
        let starts_at = now + Duration::seconds(start_in);
        let raw = RawTerms {
            price: Some(1999),
            currency: Some("usd".into()),
            inventory: Some(10),
            starts_at: Some(starts_at),
            ends_at: Some(starts_at - Duration::seconds(back)),
            ..RawTerms::default()
        };
        let refused = SaleTerms::parse(raw, now).err().map(|e| e.field);
        prop_assert_eq!(refused, Some("ends_at"));
    }
}

// ---------------------------------------------------------------- ids

/// For each id type: its printed form round-trips, other prefixes and garbage
/// do not parse, and whatever parses prints back as the (lower-case) input.
macro_rules! id_properties {
    ($($module:ident: $id:ty),* $(,)?) => {$(
        mod $module {
            use super::*;

            /// Every prefix but this type's own.
            fn other_prefixes() -> Vec<&'static str> {
                ALL_PREFIXES.iter().copied().filter(|p| *p != <$id>::PREFIX).collect()
            }

            proptest! {
                #[test]
                fn its_prefixed_form_round_trips(bits in any::<u128>()) {
                    let printed = format!("{}_{}", <$id>::PREFIX, uuid::Uuid::from_u128(bits).simple());
                    let id: $id = printed.parse().expect("the canonical form parses");
                    prop_assert_eq!(id.to_string(), printed.clone());
                    prop_assert_eq!(id.uuid(), uuid::Uuid::from_u128(bits));
                    let json = serde_json::to_string(&id).expect("an id serializes");
                    prop_assert_eq!(json, format!("\"{printed}\""));
                    prop_assert_eq!(printed.parse::<$id>().ok(), Some(id));
                }

                #[test]
                fn another_resources_prefix_never_parses(
                    bits in any::<u128>(),
                    prefix in proptest::sample::select(other_prefixes()),
                ) {
                    let other = format!("{prefix}_{}", uuid::Uuid::from_u128(bits).simple());
                    prop_assert!(other.parse::<$id>().is_err(), "{} parsed as {}", other, <$id>::PREFIX);
                }

                #[test]
                fn whatever_parses_prints_back_as_its_input(
                    raw in prop_oneof![
                        "\\PC{0,40}",
                        "[a-z]{2,5}_[0-9a-fA-F]{30,34}",
                        "[0-9a-fA-Fg-z_-]{30,36}".prop_map(|tail| format!("{}_{tail}", <$id>::PREFIX)),
                        "[0-9a-fA-F]{32}".prop_map(|hex| format!("{}_{hex}", <$id>::PREFIX)),
                    ],
                ) {
                    if let Ok(id) = raw.parse::<$id>() {
                        prop_assert_eq!(id.to_string(), raw.to_ascii_lowercase());
                    }
                }
            }
        }
    )*};
}

const ALL_PREFIXES: &[&str] = &[
    MerchantId::PREFIX,
    BuyerId::PREFIX,
    ProductId::PREFIX,
    SaleId::PREFIX,
    ClaimId::PREFIX,
    EventId::PREFIX,
    OrderId::PREFIX,
    PaymentId::PREFIX,
    RefundId::PREFIX,
];

id_properties! {
    merchant_id: MerchantId,
    buyer_id: BuyerId,
    product_id: ProductId,
    sale_id: SaleId,
    claim_id: ClaimId,
    event_id: EventId,
    order_id: OrderId,
    payment_id: PaymentId,
    refund_id: RefundId,
}

// ---------------------------------------------------------------- emails

const PASSWORD: &str = "correct horse";

fn email_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[ \t]{0,2}[a-zA-Z0-9._+-]{1,20}@[a-zA-Z0-9-]{1,12}\\.[a-zA-Z]{2,6}[ \t]{0,2}",
        "[a-z@. \u{0}-\u{1f}\u{7f}-\u{9f}]{0,30}",
        "[a-z]{1,3}@[a-z.]{0,6}",
    ]
}

proptest! {
    #[test]
    fn sign_up_never_panics_and_accepts_only_clean_addresses(raw in email_like()) {
        if let Ok(signup) = SignUp::parse(&raw, PASSWORD, None) {
            let email = signup.email.to_string();
            prop_assert_eq!(email.as_str(), raw.trim(), "stored as given, trimmed");
            let (local, domain) = email.split_once('@').expect("an accepted email has an @");
            prop_assert!(!local.is_empty());
            prop_assert!(domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.'));
            prop_assert!(!email.chars().any(|c| c.is_whitespace() || c.is_control()));
            prop_assert!(email.chars().count() <= 254);
            // Accepting is stable: the stored form is accepted again as itself.
            let again = SignUp::parse(&email, PASSWORD, None).expect("an accepted email parses again");
            prop_assert_eq!(again.email.to_string(), email.clone());
            // Signing in with any casing or surrounding blanks finds it
            // (the database compares lower-cased) — where upper-casing is
            // undone by lower-casing: Unicode's is not always (`ﬀ` → `FF` → `ff`).
            let upper = email.to_uppercase();
            let typed = format!("  {upper}\t");
            let sign_in = sign_in_email(&typed).expect("an accepted email can sign in");
            if upper.to_lowercase() == email.to_lowercase() {
                prop_assert_eq!(sign_in.to_lowercase(), email.to_lowercase());
            }
        }
    }

    #[test]
    fn well_formed_addresses_are_accepted(raw in "[ ]{0,2}[a-z0-9._+-]{1,20}@[a-z0-9-]{1,12}\\.[a-z]{2,6}[ ]{0,2}") {
        let signup = SignUp::parse(&raw, PASSWORD, Some("Ann")).expect("a well-formed address");
        prop_assert_eq!(signup.email.to_string(), raw.trim());
    }

    #[test]
    fn sign_in_email_never_panics_and_only_trims(raw in email_like()) {
        if let Ok(email) = sign_in_email(&raw) {
            prop_assert_eq!(email, raw.trim());
            prop_assert_eq!(sign_in_email(email).ok(), Some(email));
        }
    }
}
