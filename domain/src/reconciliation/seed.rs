//! Bulk seeding of the ledger for the reconciliation benchmark (`gavel dev
//! seed-payments N`): paid orders with one succeeded payment each, written
//! with one `UNNEST` statement per table and batch. Development only.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;
use crate::ids::{BuyerId, MerchantId};

/// One seeded payment.
#[derive(Debug, Clone)]
pub struct SeedPayment {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub provider_id: String,
    pub amount: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
}

/// A buyer that cannot sign in (its password hash matches nothing), to own
/// the seeded orders.
pub async fn seed_buyer(conn: &mut PgConnection) -> Result<BuyerId> {
    let id = BuyerId::new();
    sqlx::query!(
        "INSERT INTO buyers (id, email, password_hash, name) VALUES ($1, $2, '!', 'seed')",
        id as BuyerId,
        format!("seed+{}@gavel.invalid", id.uuid().simple()),
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// Writes a batch of paid orders (as auction orders: no sale or claim) and
/// their succeeded payments.
pub async fn seed_batch(
    conn: &mut PgConnection,
    merchant: MerchantId,
    buyer: BuyerId,
    batch: &[SeedPayment],
) -> Result<()> {
    let orders: Vec<Uuid> = batch.iter().map(|p| p.order_id).collect();
    let payments: Vec<Uuid> = batch.iter().map(|p| p.payment_id).collect();
    let provider_ids: Vec<String> = batch.iter().map(|p| p.provider_id.clone()).collect();
    let amounts: Vec<i64> = batch.iter().map(|p| p.amount).collect();
    let currencies: Vec<String> = batch.iter().map(|p| p.currency.clone()).collect();
    let created: Vec<DateTime<Utc>> = batch.iter().map(|p| p.created_at).collect();
    sqlx::query!(
        "INSERT INTO orders (id, merchant_id, buyer_id, auction_id, status, amount, currency, created_at, updated_at, paid_at)
         SELECT o, $1, $2, gen_random_uuid(), 'paid', a, c, t, t, t
         FROM UNNEST($3::uuid[], $4::int8[], $5::text[], $6::timestamptz[]) AS u(o, a, c, t)",
        merchant as MerchantId,
        buyer as BuyerId,
        &orders,
        &amounts,
        &currencies,
        &created,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO payments (id, order_id, attempt, idempotency_key, payment_method, amount, currency, status,
                               provider_id, created_at, updated_at, settled_at)
         SELECT p, o, 1, 'seed:' || p::text, 'pm_card_visa', a, c, 'succeeded', pi, t, t, t
         FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::text[], $6::timestamptz[])
              AS u(p, o, a, c, pi, t)",
        &payments,
        &orders,
        &amounts,
        &currencies,
        &provider_ids,
        &created,
    )
    .execute(conn)
    .await?;
    Ok(())
}
