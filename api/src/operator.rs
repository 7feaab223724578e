//! The operator's credential (`GAVEL_ADMIN_TOKEN`), for `/metrics` and the
//! admin endpoints. Compared in constant time; with no token configured,
//! nobody is an operator.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::extract::bearer;
use crate::problem::Problem;
use crate::routes::health::Ops;

/// A request made with the operator token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl<S: Send + Sync> FromRequestParts<S> for Operator
where
    Ops: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ops = Ops::from_ref(state);
        let Some(expected) = ops.admin_token.as_deref() else {
            return Err(Problem::unauthorized("no operator token is configured (GAVEL_ADMIN_TOKEN)"));
        };
        let given = bearer(parts)?;
        if same_secret(given, expected) {
            Ok(Operator)
        } else {
            Err(Problem::unauthorized("the operator token is not valid"))
        }
    }
}

/// Equal in time independent of where the two differ (and of their lengths):
/// both sides are hashed to 32 bytes, then every byte is compared.
pub fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn only_the_same_secret_matches() {
        assert!(same_secret("op-token-1234567890", "op-token-1234567890"));
        assert!(!same_secret("op-token-1234567891", "op-token-1234567890"));
        assert!(!same_secret("", "op-token-1234567890"));
        assert!(!same_secret("op-token-1234567890-and-more", "op-token-1234567890"));
    }
}
