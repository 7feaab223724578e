//! Merchants (tenants) and their API keys.

use serde::Serialize;
use sqlx::PgPool;

use crate::auth::{api_key_hash, random_secret};
use crate::error::{Invalid, Result};
use crate::ids::MerchantId;
use crate::webhooks::target::WebhookUrl;
use crate::webhooks::{EventTypes, endpoints, signing};

/// What the operator CLI prints once: the only time the API key is visible.
#[derive(Debug, Serialize)]
pub struct NewMerchant {
    pub id: MerchantId,
    pub api_key: String,
    pub webhook_secret: String,
}

pub async fn create(pool: &PgPool, name: &str, webhook_url: Option<&str>) -> Result<NewMerchant> {
    create_with(pool, name, webhook_url, false).await
}

/// Creates a merchant; a `webhook_url` becomes its first webhook endpoint
/// (every event), signing with the printed `webhook_secret`.
/// `allow_private_targets`: `webhooks.allow_private_targets`.
pub async fn create_with(
    pool: &PgPool,
    name: &str,
    webhook_url: Option<&str>,
    allow_private_targets: bool,
) -> Result<NewMerchant> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(Invalid::new("name", "must be 1 to 200 characters").into());
    }
    let endpoint_url = webhook_url
        .map(|url| WebhookUrl::parse(url, allow_private_targets))
        .transpose()
        .map_err(|e| Invalid::new("webhook_url", e.0))?;
    let id = MerchantId::new();
    let api_key = random_secret("sk");
    // Standard Webhooks' form (`whsec_` + standard base64): the secret of the
    // first endpoint, and the merchant's.
    let webhook_secret = signing::new_secret();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO merchants (id, name, api_key_hash, webhook_url, webhook_secret)
         VALUES ($1, $2, $3, $4, $5)",
        id as MerchantId,
        name,
        api_key_hash(&api_key),
        webhook_url,
        webhook_secret,
    )
    .execute(&mut *tx)
    .await?;
    if let Some(url) = &endpoint_url {
        endpoints::create(&mut tx, id, url, &EventTypes::all(), Some(webhook_secret.clone())).await?;
    }
    tx.commit().await?;
    Ok(NewMerchant { id, api_key, webhook_secret })
}

/// The merchant owning this API key, if any.
pub async fn authenticate(pool: &PgPool, api_key: &str) -> Result<Option<MerchantId>> {
    let id = sqlx::query_scalar!(
        r#"SELECT id AS "id: MerchantId" FROM merchants WHERE api_key_hash = $1"#,
        api_key_hash(api_key)
    )
    .fetch_optional(pool)
    .await?;
    Ok(id)
}

/// Marks `buyer` as an account of `merchant` (its seller or staff): such a
/// buyer may not bid on that merchant's auctions. Unknown ids are `NotFound`.
pub async fn link_buyer(pool: &PgPool, merchant: MerchantId, buyer: crate::ids::BuyerId) -> Result<()> {
    let merchant_known = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM merchants WHERE id = $1) AS "known!""#,
        merchant as MerchantId,
    )
    .fetch_one(pool)
    .await?;
    if !merchant_known {
        return Err(crate::Error::NotFound("merchant"));
    }
    let updated = sqlx::query!(
        "UPDATE buyers SET merchant_id = $1 WHERE id = $2",
        merchant as MerchantId,
        buyer as crate::ids::BuyerId,
    )
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(crate::Error::NotFound("buyer"));
    }
    Ok(())
}
