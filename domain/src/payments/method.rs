//! The payment method a buyer pays with, as the provider names it.

use std::fmt;

use crate::error::Invalid;

/// A Stripe payment method id (`pm_…`) or test token: 3 to 255 visible ASCII
/// characters, no spaces. Parsed once at the edge; stored and sent as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentMethod(String);

impl PaymentMethod {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok = (3..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid::new("payment_method", "must be a payment method id such as pm_…"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PaymentMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stored as its text; a stored value that no longer parses fails to decode.
impl sqlx::Type<sqlx::Postgres> for PaymentMethod {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for PaymentMethod {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.0.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for PaymentMethod {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Self::parse(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_methods_are_short_visible_ascii_without_spaces() {
        assert_eq!(PaymentMethod::parse("pm_card_visa").map(|m| m.as_str().to_owned()), Ok("pm_card_visa".into()));
        assert!(PaymentMethod::parse("pm").is_err(), "too short");
        assert!(PaymentMethod::parse("pm card").is_err(), "a space");
        assert!(PaymentMethod::parse("pm_carte_bleue_é").is_err(), "not ASCII");
        assert!(PaymentMethod::parse(&"p".repeat(256)).is_err(), "too long");
        assert_eq!(PaymentMethod::parse("").map_err(|e| e.field), Err("payment_method"));
    }
}
