//! Watches: a buyer asks to hear of a product's sales and auctions.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::{Error, Result};
use crate::ids::{BuyerId, ProductId};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Watch {
    pub product_id: ProductId,
    pub created_at: DateTime<Utc>,
}

/// What [`watch`] did.
#[derive(Debug, Clone)]
pub struct Watched {
    pub watch: Watch,
    /// `false`: the buyer already watched it.
    pub created: bool,
}

/// Watches `product` (any merchant's); `NotFound("product")` if there is none.
pub async fn watch(tx: &mut sqlx::PgConnection, buyer: BuyerId, product: ProductId) -> Result<Watched> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM products WHERE id = $1)")
        .bind(product)
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        return Err(Error::NotFound("product"));
    }
    let inserted: Option<Watch> = sqlx::query_as(
        "INSERT INTO watches (buyer_id, product_id) VALUES ($1, $2) ON CONFLICT (buyer_id, product_id) DO NOTHING
         RETURNING product_id, created_at",
    )
    .bind(buyer)
    .bind(product)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(watch) = inserted {
        return Ok(Watched { watch, created: true });
    }
    let watch: Watch =
        sqlx::query_as("SELECT product_id, created_at FROM watches WHERE buyer_id = $1 AND product_id = $2")
            .bind(buyer)
            .bind(product)
            .fetch_one(&mut *tx)
            .await?;
    Ok(Watched { watch, created: false })
}

/// The buyer's watches, newest product first.
pub async fn list<'c>(
    db: impl PgExecutor<'c>,
    buyer: BuyerId,
    limit: i64,
    starting_after: Option<ProductId>,
) -> Result<Vec<Watch>> {
    let rows = sqlx::query_as(
        "SELECT product_id, created_at FROM watches
         WHERE buyer_id = $1 AND ($2::uuid IS NULL OR product_id < $2)
         ORDER BY product_id DESC LIMIT $3",
    )
    .bind(buyer)
    .bind(starting_after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// The buyers watching `product`, for the notifier's fan-out.
pub async fn watchers<'c>(db: impl PgExecutor<'c>, product: ProductId) -> Result<Vec<BuyerId>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT buyer_id AS "buyer_id: BuyerId" FROM watches WHERE product_id = $1 ORDER BY buyer_id"#,
        product as ProductId,
    )
    .fetch_all(db)
    .await?)
}

/// The buyers of `product`'s sale-start audience (its watchers and the deal
/// subscribers) who joined it, changed their preferences or added a device
/// since `since`: what one more pass at a sale's start adds to an audience
/// prepared before it.
pub async fn audience_changed_since<'c>(
    db: impl PgExecutor<'c>,
    product: ProductId,
    since: DateTime<Utc>,
) -> Result<Vec<BuyerId>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT c.buyer_id AS "buyer_id!: BuyerId" FROM (
               SELECT buyer_id FROM watches WHERE product_id = $1 AND created_at >= $2
               UNION SELECT buyer_id FROM notification_preferences WHERE updated_at >= $2
               UNION SELECT buyer_id FROM devices WHERE created_at >= $2
           ) c
           WHERE EXISTS (SELECT 1 FROM watches w WHERE w.buyer_id = c.buyer_id AND w.product_id = $1)
              OR EXISTS (SELECT 1 FROM notification_preferences p WHERE p.buyer_id = c.buyer_id AND p.deals)
           ORDER BY 1"#,
        product as ProductId,
        since,
    )
    .fetch_all(db)
    .await?)
}

/// Stops watching; `false`: the buyer did not watch it.
pub async fn unwatch<'c>(db: impl PgExecutor<'c>, buyer: BuyerId, product: ProductId) -> Result<bool> {
    let done = sqlx::query("DELETE FROM watches WHERE buyer_id = $1 AND product_id = $2")
        .bind(buyer)
        .bind(product)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
