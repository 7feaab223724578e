//! One module per resource, each with its router (every route and its
//! OpenAPI entry written once, by `utoipa_axum::routes!`), its request and
//! response types and thin handlers. Response types are the API's own, built
//! from the domain's rows, so a row can change without changing the JSON.

pub mod auctions;
pub mod bids;
pub mod buyers;
pub mod claims;
pub mod dead_letters;
pub mod devices;
pub mod feed;
pub mod health;
pub mod orders;
pub mod preferences;
pub mod products;
pub mod reconciliation_runs;
pub mod sales;
pub mod stripe_webhook;
pub mod watches;
pub mod webhook_deliveries;
pub mod webhook_endpoints;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A versioned resource's answer: its body, and its version as the `ETag`
/// (quoted) that `If-Match` names back.
fn with_etag<B: serde::Serialize>(status: StatusCode, version: i32, body: B) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// An API enum mirroring a domain status, with the same spelling: adding a
/// variant to the domain's enum breaks the build here until the API decides
/// how to show it.
macro_rules! api_enum {
    ($(#[$meta:meta])* $name:ident from $domain:path { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl From<$domain> for $name {
            fn from(status: $domain) -> Self {
                match status {
                    $(<$domain>::$variant => Self::$variant),+
                }
            }
        }

        impl $name {
            /// The domain's values, for the test that the spellings agree.
            #[cfg(test)]
            pub(crate) const DOMAIN: &'static [$domain] = &[$(<$domain>::$variant),+];
        }
    };
}
pub(crate) use api_enum;

#[cfg(test)]
mod tests {
    use super::auctions::AuctionStatusBody;
    use super::claims::ClaimStatusBody;
    use super::orders::{OrderStatusBody, PaymentStatusBody};
    use super::sales::SaleStatusBody;

    #[test]
    fn api_statuses_spell_as_the_domain_stores_them() {
        fn check<D: Copy, A: From<D> + serde::Serialize>(all: &[D], text: fn(D) -> &'static str) {
            for d in all {
                assert_eq!(serde_json::to_value(A::from(*d)).ok(), Some(serde_json::json!(text(*d))));
            }
        }
        check::<_, SaleStatusBody>(SaleStatusBody::DOMAIN, |s| s.as_str());
        check::<_, AuctionStatusBody>(AuctionStatusBody::DOMAIN, |s| s.as_str());
        check::<_, ClaimStatusBody>(ClaimStatusBody::DOMAIN, |s| s.as_str());
        check::<_, OrderStatusBody>(OrderStatusBody::DOMAIN, |s| s.as_str());
        check::<_, PaymentStatusBody>(PaymentStatusBody::DOMAIN, |s| s.as_str());
    }
}
