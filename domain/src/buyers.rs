//! Buyer accounts: sign-up and sign-in.

use sqlx::{PgExecutor, PgPool};

use crate::auth::{PasswordCost, hash_password, verify_password};
use crate::db::is_unique_violation;
use crate::error::{Error, Invalid, Result};
use crate::ids::BuyerId;

/// A sign-up request that passed validation.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub email: String,
    pub password: String,
    pub name: Option<String>,
}

impl SignUp {
    pub fn parse(email: &str, password: &str, name: Option<&str>) -> Result<Self, Invalid> {
        let email = email.trim();
        let valid_email = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
            })
            && !email.chars().any(char::is_whitespace);
        if !valid_email {
            return Err(Invalid::new("email", "must be an email address"));
        }
        if password.chars().count() < 8 || password.len() > 256 {
            return Err(Invalid::new("password", "must be 8 to 256 characters"));
        }
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.len() > 200) {
            return Err(Invalid::new("name", "must be at most 200 characters"));
        }
        Ok(Self { email: email.to_owned(), password: password.to_owned(), name: name.map(str::to_owned) })
    }
}

pub async fn create(pool: &PgPool, signup: SignUp, cost: PasswordCost) -> Result<BuyerId> {
    let hashed = hash(signup, cost).await?;
    insert(pool, &hashed).await
}

/// A sign-up whose password is hashed, ready to be inserted.
#[derive(Debug, Clone)]
pub struct Hashed {
    email: String,
    name: Option<String>,
    password_hash: String,
}

/// Hashes the password: the slow half of [`create`], kept apart so that a
/// caller can do it before it opens a transaction.
pub async fn hash(signup: SignUp, cost: PasswordCost) -> Result<Hashed> {
    let password_hash = hash_password(signup.password, cost).await?;
    Ok(Hashed { email: signup.email, name: signup.name, password_hash })
}

/// Creates the account (in the caller's transaction, if it passes one).
pub async fn insert<'c>(db: impl PgExecutor<'c>, hashed: &Hashed) -> Result<BuyerId> {
    let id = BuyerId::new();
    sqlx::query("INSERT INTO buyers (id, email, password_hash, name) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(&hashed.email)
        .bind(&hashed.password_hash)
        .bind(&hashed.name)
        .execute(db)
        .await
        .map_err(|e| if is_unique_violation(&e, "buyers_email_key") { Error::EmailTaken } else { e.into() })?;
    Ok(id)
}

/// The buyer whose email and password these are; the same error for an unknown
/// email and a wrong password, so sign-in does not reveal who has an account.
pub async fn sign_in(pool: &PgPool, email: &str, password: &str) -> Result<BuyerId> {
    let row: Option<(BuyerId, String)> =
        sqlx::query_as("SELECT id, password_hash FROM buyers WHERE lower(email) = lower($1)")
            .bind(email.trim())
            .fetch_optional(pool)
            .await?;
    let Some((id, stored)) = row else {
        return Err(Error::BadCredentials);
    };
    if verify_password(password.to_owned(), stored).await? { Ok(id) } else { Err(Error::BadCredentials) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_up_refuses_bad_emails_and_short_passwords() {
        assert!(SignUp::parse("ann@example.com", "long enough", None).is_ok());
        assert!(SignUp::parse("ann", "long enough", None).is_err());
        assert!(SignUp::parse("ann@example", "long enough", None).is_err());
        assert!(SignUp::parse("a b@example.com", "long enough", None).is_err());
        assert!(SignUp::parse("ann@example.com", "short", None).is_err());
    }
}
