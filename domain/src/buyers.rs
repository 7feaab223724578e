//! Buyer accounts: sign-up and sign-in.

use sqlx::{PgExecutor, PgPool};

use crate::auth::Passwords;
use crate::db::is_unique_violation;
use crate::error::{Error, Invalid, Result};
use crate::ids::BuyerId;
use crate::text::{Lines, clean_text};

/// Longest email accepted (RFC 5321's path limit), in characters.
const EMAIL_MAX: usize = 254;
/// Longest password accepted at sign-up, in characters.
const PASSWORD_MAX: usize = 256;

/// A buyer's email address, as accepted at sign-up: trimmed, at most
/// [`EMAIL_MAX`] characters, no control characters or blanks, a non-empty
/// local part and a dotted domain. Kept as typed (sign-in compares without
/// regard to case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = clean_text("email", raw.trim(), EMAIL_MAX, Lines::Single)?;
        let valid = email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        }) && !email.chars().any(char::is_whitespace);
        if !valid {
            return Err(Invalid::new("email", "must be an email address"));
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sign-up request that passed validation.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub email: Email,
    pub password: String,
    pub name: Option<String>,
}

impl SignUp {
    pub fn parse(email: &str, password: &str, name: Option<&str>) -> Result<Self, Invalid> {
        let email = Email::parse(email)?;
        // Only hashed, never stored or echoed: any character may be in a password.
        if !(8..=PASSWORD_MAX).contains(&password.chars().count()) {
            return Err(Invalid::new("password", "must be 8 to 256 characters"));
        }
        let name =
            name.map(|n| clean_text("name", n.trim(), 200, Lines::Single)).transpose()?.filter(|n| !n.is_empty());
        Ok(Self { email, password: password.to_owned(), name: name.map(str::to_owned) })
    }
}

/// The email of a sign-in attempt: trimmed, and clean enough to query with.
/// Its shape is not checked: a malformed address simply matches no account.
pub fn sign_in_email(raw: &str) -> Result<&str, Invalid> {
    clean_text("email", raw.trim(), EMAIL_MAX, Lines::Single)
}

pub async fn create(pool: &PgPool, signup: SignUp, passwords: &Passwords) -> Result<BuyerId> {
    let hashed = hash(signup, passwords).await?;
    insert(pool, &hashed).await
}

/// A sign-up whose password is hashed, ready to be inserted.
#[derive(Debug, Clone)]
pub struct Hashed {
    email: Email,
    name: Option<String>,
    password_hash: String,
}

/// Hashes the password (within the bound on concurrent hashes): the slow half
/// of [`create`], kept apart so that a caller can do it before it opens a
/// transaction.
pub async fn hash(signup: SignUp, passwords: &Passwords) -> Result<Hashed> {
    let password_hash = passwords.hash(signup.password).await?;
    Ok(Hashed { email: signup.email, name: signup.name, password_hash })
}

/// Creates the account (in the caller's transaction, if it passes one).
pub async fn insert<'c>(db: impl PgExecutor<'c>, hashed: &Hashed) -> Result<BuyerId> {
    let id = BuyerId::new();
    sqlx::query!(
        "INSERT INTO buyers (id, email, password_hash, name) VALUES ($1, $2, $3, $4)",
        id as BuyerId,
        hashed.email.as_str(),
        hashed.password_hash,
        hashed.name,
    )
    .execute(db)
    .await
    .map_err(|e| if is_unique_violation(&e, "buyers_email_key") { Error::EmailTaken } else { e.into() })?;
    Ok(id)
}

/// The buyer whose email (see [`sign_in_email`]) and password these are; the
/// same error, after the same work, for an unknown email and a wrong password,
/// so sign-in does not reveal who has an account.
pub async fn sign_in(pool: &PgPool, email: &str, password: &str, passwords: &Passwords) -> Result<BuyerId> {
    // No account has a longer one, so it cannot match: no need to hash (or to
    // hold) a megabyte of it, and the answer says nothing about the account.
    if password.chars().count() > PASSWORD_MAX {
        return Err(Error::BadCredentials);
    }
    let row =
        sqlx::query!(r#"SELECT id AS "id: BuyerId", password_hash FROM buyers WHERE lower(email) = lower($1)"#, email,)
            .fetch_optional(pool)
            .await?;
    let (id, stored) = row.map(|r| (r.id, r.password_hash)).unzip();
    match (passwords.verify(password.to_owned(), stored).await?, id) {
        (true, Some(id)) => Ok(id),
        _ => Err(Error::BadCredentials),
    }
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

    #[test]
    fn an_email_is_kept_trimmed_as_typed_and_needs_a_local_part_and_a_dotted_domain() {
        assert_eq!(Email::parse("  Ann@Example.com\t").map(|e| e.to_string()), Ok("Ann@Example.com".to_owned()));
        for bad in ["", "@example.com", "ann@", "ann@.com", "ann@example.", "ann@@", "a\u{a0}@x.io x", "a@b c.io"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(EMAIL_MAX))).is_err());
    }

    #[test]
    fn every_accepted_email_parses_again_to_itself() {
        // The parse is idempotent: what is stored is what a second parse keeps.
        let locals = ["a", "ann.lee", "x+tag", "Ü"];
        let domains = ["example.com", "mail.example.co.uk", "b.io"];
        let pads = ["", " ", "\t", "  \n"];
        for local in locals {
            for domain in domains {
                for pad in pads {
                    let raw = format!("{pad}{local}@{domain}{pad}");
                    let email = Email::parse(&raw).expect("a valid address parses");
                    assert_eq!(email.as_str(), format!("{local}@{domain}"));
                    assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
                }
            }
        }
    }

    #[test]
    fn control_characters_are_refused_in_every_stored_field() {
        let field = |r: Result<SignUp, Invalid>| r.err().map(|e| e.field);
        assert_eq!(field(SignUp::parse("ann\0@example.com", "long enough", None)), Some("email"));
        assert_eq!(field(SignUp::parse("ann@example.com", "long enough", Some("A\u{1b}nn"))), Some("name"));
        assert_eq!(field(SignUp::parse("ann@example.com", "long\0enough", None)), None, "passwords are only hashed");
        assert_eq!(sign_in_email(" ann\u{7}@example.com ").err().map(|e| e.field), Some("email"));
    }
}
