//! Products: what a merchant puts on sale or auction.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::{Invalid, Result};
use crate::ids::{MerchantId, ProductId};
use crate::text::{Lines, clean_text};

#[derive(Debug, Clone)]
pub struct Product {
    pub id: ProductId,
    pub merchant_id: MerchantId,
    pub title: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn create<'c>(
    db: impl PgExecutor<'c>,
    merchant: MerchantId,
    title: &str,
    description: Option<&str>,
) -> Result<Product> {
    let title = clean_text("title", title.trim(), 200, Lines::Single)?;
    if title.is_empty() {
        return Err(Invalid::new("title", "must be 1 to 200 characters").into());
    }
    let description = description.map(|d| clean_text("description", d, 10_000, Lines::Multi)).transpose()?;
    let product = sqlx::query_as!(
        Product,
        r#"INSERT INTO products (id, merchant_id, title, description) VALUES ($1, $2, $3, $4)
           RETURNING id AS "id: ProductId", merchant_id AS "merchant_id: MerchantId", title, description,
                     created_at"#,
        ProductId::new() as ProductId,
        merchant as MerchantId,
        title,
        description,
    )
    .fetch_one(db)
    .await?;
    Ok(product)
}

/// The product if it exists and belongs to `merchant`.
pub async fn get<'c>(db: impl PgExecutor<'c>, merchant: MerchantId, id: ProductId) -> Result<Option<Product>> {
    let product = sqlx::query_as!(
        Product,
        r#"SELECT id AS "id: ProductId", merchant_id AS "merchant_id: MerchantId", title, description, created_at
           FROM products WHERE id = $1 AND merchant_id = $2"#,
        id as ProductId,
        merchant as MerchantId,
    )
    .fetch_optional(db)
    .await?;
    Ok(product)
}
