//! States stored as checked text: one macro gives each status enum its
//! database spelling (`as_str`), its parse (`TryFrom<String>`) and its
//! `sqlx` encoding as that text, so the spelling is written once, next to the
//! variant, and rows carry the enum itself (`status AS "status: SaleStatus"`).

/// `status_enum!(/// doc  pub enum Name ("what") { Variant => "text", … })`.
macro_rules! status_enum {
    ($(#[$meta:meta])* pub enum $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The spelling stored in the database and shown by the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(Self::try_from(text.to_owned())?)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(s: String) -> Result<Self, String> {
                match s.as_str() {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(concat!("unknown ", $what, " {}"), other)),
                }
            }
        }
    };
}

pub(crate) use status_enum;

#[cfg(test)]
mod tests {
    use crate::claims::ClaimStatus;
    use crate::orders::OrderStatus;
    use crate::payments::{PaymentStatus, Refusal};
    use crate::sales::SaleStatus;
    use crate::stripe_events::EventOutcome;

    #[test]
    fn every_status_reads_back_what_it_writes_and_matches_its_json() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + serde::Serialize + TryFrom<String, Error = String>>(
            all: &[T],
            text: fn(T) -> &'static str,
        ) {
            for s in all {
                assert_eq!(T::try_from(text(*s).to_owned()), Ok(*s));
                assert_eq!(serde_json::to_value(s).ok(), Some(serde_json::json!(text(*s))));
            }
            assert!(T::try_from("nonsense".to_owned()).is_err());
        }
        use ClaimStatus as C;
        check(&[C::Held, C::CheckingOut, C::CheckedOut, C::Expired, C::Released], C::as_str);
        use OrderStatus as O;
        check(
            &[
                O::AwaitingPayment,
                O::PendingVerification,
                O::Paid,
                O::PaymentFailed,
                O::Refunded,
                O::Lapsed,
                O::Cancelled,
            ],
            O::as_str,
        );
        use PaymentStatus as P;
        check(&[P::Processing, P::Unknown, P::Succeeded, P::Failed, P::Refunded], P::as_str);
        use SaleStatus as S;
        check(&[S::Scheduled, S::Active, S::Ended, S::Cancelled], S::as_str);
        use Refusal as R;
        let refusals = [
            R::PaymentIntentMismatch,
            R::PaymentMismatch,
            R::AmountMismatch,
            R::CurrencyMismatch,
            R::UnknownPaymentIntent,
            R::StatusMismatch,
        ];
        check(&refusals, R::as_str);
        use EventOutcome as E;
        check(&[E::Applied, E::Ignored, E::Refused, E::Deferred], E::as_str);
    }
}
