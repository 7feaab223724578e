//! A merchant's webhook endpoints: a checked URL, the event types it takes,
//! its signing secret (and, for a day after a rotation, the previous one).
//! Every read and write is scoped to the merchant: another merchant's
//! endpoint is not found.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::EventTypes;
use super::signing;
use super::target::WebhookUrl;
use crate::error::{Error, Result};
use crate::ids::{MerchantId, WebhookEndpointId};

/// An endpoint as stored.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: WebhookEndpointId,
    pub merchant_id: MerchantId,
    pub url: String,
    /// Empty: every event type.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why Gavel disabled it (`410 Gone`, failing for days); `None` when enabled or disabled by the merchant.
    pub disabled_reason: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// The secrets that sign a delivery now: the current one, and the
    /// previous one while its overlap lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && until > now
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// Creates an endpoint (in the caller's transaction); `secret` is a fresh
/// one unless given (`gavel merchants create` passes the merchant's).
pub async fn create(
    conn: &mut PgConnection,
    merchant: MerchantId,
    url: &WebhookUrl,
    events: &EventTypes,
    secret: Option<String>,
) -> Result<Endpoint> {
    let secret = secret.unwrap_or_else(signing::new_secret);
    let endpoint = sqlx::query_as!(
        Endpoint,
        r#"INSERT INTO webhook_endpoints (id, merchant_id, url, events, secret)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id AS "id: WebhookEndpointId", merchant_id AS "merchant_id: MerchantId", url, events,
                     enabled, disabled_reason, secret, previous_secret, previous_secret_until, version,
                     created_at, updated_at"#,
        WebhookEndpointId::new() as WebhookEndpointId,
        merchant as MerchantId,
        url.as_str(),
        events.names(),
        secret,
    )
    .fetch_one(conn)
    .await?;
    Ok(endpoint)
}

/// The merchant's endpoints, newest first (`after`: the last id of the previous page).
pub async fn list(
    pool: &PgPool,
    merchant: MerchantId,
    after: Option<WebhookEndpointId>,
    fetch: i64,
) -> Result<Vec<Endpoint>> {
    Ok(sqlx::query_as!(
        Endpoint,
        r#"SELECT id AS "id: WebhookEndpointId", merchant_id AS "merchant_id: MerchantId", url, events,
                  enabled, disabled_reason, secret, previous_secret, previous_secret_until, version,
                  created_at, updated_at
           FROM webhook_endpoints
           WHERE merchant_id = $1 AND deleted_at IS NULL
             AND ($2::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM webhook_endpoints WHERE id = $2))
           ORDER BY created_at DESC, id DESC LIMIT $3"#,
        merchant as MerchantId,
        after.map(WebhookEndpointId::uuid),
        fetch,
    )
    .fetch_all(pool)
    .await?)
}

pub async fn get(pool: &PgPool, merchant: MerchantId, id: WebhookEndpointId) -> Result<Endpoint> {
    sqlx::query_as!(
        Endpoint,
        r#"SELECT id AS "id: WebhookEndpointId", merchant_id AS "merchant_id: MerchantId", url, events,
                  enabled, disabled_reason, secret, previous_secret, previous_secret_until, version,
                  created_at, updated_at
           FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2 AND deleted_at IS NULL"#,
        id as WebhookEndpointId,
        merchant as MerchantId,
    )
    .fetch_optional(pool)
    .await?
    .ok_or(Error::NotFound("webhook endpoint"))
}

/// What a `PATCH` may change.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub url: Option<WebhookUrl>,
    pub events: Option<EventTypes>,
    pub enabled: Option<bool>,
}

/// Applies `patch`; with `if_match`, only at that version
/// ([`Error::VersionMismatch`] otherwise). Enabling clears Gavel's reason for
/// disabling and the endpoint's failure run.
pub async fn update(
    pool: &PgPool,
    merchant: MerchantId,
    id: WebhookEndpointId,
    if_match: Option<i32>,
    patch: &Patch,
) -> Result<Endpoint> {
    let current = get(pool, merchant, id).await?;
    if let Some(expected) = if_match
        && expected != current.version
    {
        return Err(Error::VersionMismatch { expected, current: current.version });
    }
    let events: Option<Vec<String>> = patch.events.as_ref().map(|e| e.names().to_vec());
    sqlx::query_as!(
        Endpoint,
        r#"UPDATE webhook_endpoints
           SET url = COALESCE($3, url), events = COALESCE($4, events),
               enabled = COALESCE($5, enabled),
               disabled_reason = CASE WHEN $5 IS NULL THEN disabled_reason ELSE NULL END,
               disabled_at = CASE WHEN $5 = false THEN now() WHEN $5 THEN NULL ELSE disabled_at END,
               failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
               paused_until = CASE WHEN $5 THEN NULL ELSE paused_until END,
               version = version + 1, updated_at = now()
           WHERE id = $1 AND merchant_id = $2 AND deleted_at IS NULL AND version = $6
           RETURNING id AS "id: WebhookEndpointId", merchant_id AS "merchant_id: MerchantId", url, events,
                     enabled, disabled_reason, secret, previous_secret, previous_secret_until, version,
                     created_at, updated_at"#,
        id as WebhookEndpointId,
        merchant as MerchantId,
        patch.url.as_ref().map(WebhookUrl::as_str),
        events.as_deref(),
        patch.enabled,
        current.version,
    )
    .fetch_optional(pool)
    .await?
    .ok_or(Error::VersionMismatch { expected: current.version, current: current.version + 1 })
}

/// Deletes an endpoint: nothing more is sent to it (its pending deliveries
/// fail). `false` when there was no such endpoint.
pub async fn delete(pool: &PgPool, merchant: MerchantId, id: WebhookEndpointId) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query!(
        "UPDATE webhook_endpoints SET deleted_at = now(), enabled = false, version = version + 1, updated_at = now()
         WHERE id = $1 AND merchant_id = $2 AND deleted_at IS NULL",
        id as WebhookEndpointId,
        merchant as MerchantId,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query!(
        "UPDATE webhook_deliveries SET status = 'failed', lease_owner = NULL, lease_until = NULL
         WHERE endpoint_id = $1 AND status = 'pending'",
        id as WebhookEndpointId,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(deleted == 1)
}

/// A new secret; the old one keeps signing (a second signature) for `overlap`.
pub async fn rotate_secret(
    pool: &PgPool,
    merchant: MerchantId,
    id: WebhookEndpointId,
    overlap: Duration,
) -> Result<Endpoint> {
    let overlap_secs = overlap.as_secs_f64();
    sqlx::query_as!(
        Endpoint,
        r#"UPDATE webhook_endpoints
           SET previous_secret = secret, previous_secret_until = now() + make_interval(secs => $3),
               secret = $4, version = version + 1, updated_at = now()
           WHERE id = $1 AND merchant_id = $2 AND deleted_at IS NULL
           RETURNING id AS "id: WebhookEndpointId", merchant_id AS "merchant_id: MerchantId", url, events,
                     enabled, disabled_reason, secret, previous_secret, previous_secret_until, version,
                     created_at, updated_at"#,
        id as WebhookEndpointId,
        merchant as MerchantId,
        overlap_secs,
        signing::new_secret(),
    )
    .fetch_optional(pool)
    .await?
    .ok_or(Error::NotFound("webhook endpoint"))
}

/// Re-sends, once each, every delivery to this endpoint that failed and was
/// made at or after `since`; answers how many.
pub async fn recover(pool: &PgPool, merchant: MerchantId, id: WebhookEndpointId, since: DateTime<Utc>) -> Result<u64> {
    get(pool, merchant, id).await?;
    let n = sqlx::query!(
        "UPDATE webhook_deliveries
         SET status = 'pending', once = true, next_attempt_at = now(), lease_owner = NULL, lease_until = NULL
         WHERE endpoint_id = $1 AND merchant_id = $2 AND status = 'failed' AND created_at >= $3",
        id as WebhookEndpointId,
        merchant as MerchantId,
        since,
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n)
}
