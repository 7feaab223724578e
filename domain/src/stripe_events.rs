//! Stripe's webhook events as received: stored once by event id with what
//! became of each (so a redelivery changes nothing and an operator can see
//! refused ones), and pruned after Stripe has long stopped redelivering.

use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::error::Result;
use crate::status::status_enum;

status_enum!(
    /// What an event did.
    pub enum EventOutcome ("stripe event outcome") {
        /// It settled a payment.
        Applied => "applied",
        /// Nothing to do: its payment was settled already, it names no payment
        /// of ours, its type is not one we act on, or it could not be read.
        Ignored => "ignored",
        /// It contradicts its payment or Stripe (`reason` says how).
        Refused => "refused",
        /// Stripe could not confirm it just now; verification settles the payment.
        Deferred => "deferred",
    }
);

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub payload: &'a serde_json::Value,
    pub outcome: EventOutcome,
    pub reason: Option<&'a str>,
}

/// The id under which a body without a readable event id is stored.
pub fn digest_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Whether an event with this id was stored before.
pub async fn seen(conn: &mut PgConnection, id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM stripe_events WHERE id = $1) AS "seen!""#, id)
        .fetch_one(conn)
        .await?)
}

/// Stores an event once by its id; `false` if it was stored before.
pub async fn record(conn: &mut PgConnection, event: &NewEvent<'_>) -> Result<bool> {
    let n = sqlx::query!(
        "INSERT INTO stripe_events (id, type, payload, outcome, reason) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
        event.id,
        event.kind,
        event.payload,
        event.outcome as EventOutcome,
        event.reason,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Deletes events received more than `days` ago; returns how many.
pub async fn prune(pool: &PgPool, days: i32) -> Result<u64> {
    Ok(sqlx::query!("DELETE FROM stripe_events WHERE received_at < now() - make_interval(days => $1)", days)
        .execute(pool)
        .await?
        .rows_affected())
}
