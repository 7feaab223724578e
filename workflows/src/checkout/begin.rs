//! Step 1 of the saga: record the attempt before anything is sent.

use chrono::Utc;
use gavel_domain::claims::{self, ClaimStatus};
use gavel_domain::ids::{BuyerId, ClaimId, OrderId};
use gavel_domain::orders::{self, OrderStatus, OrderSubject};
use gavel_domain::payments::{self, NewPayment, Payment, PaymentMethod};
use gavel_domain::{Error, Result};
use sqlx::{PgConnection, PgPool};

pub(super) enum Begun {
    /// This request recorded a new attempt: run it.
    New { order: OrderId, payment: Box<Payment> },
    /// The order exists and is settled: show it.
    Existing(OrderId),
}

/// Checkout of a claim: lock the claim row (not the hot sale row: its
/// counters do not change here) and turn the hold into a recorded attempt.
pub(super) async fn claim(
    pool: &PgPool,
    buyer: BuyerId,
    claim_id: ClaimId,
    payment_method: &PaymentMethod,
) -> Result<Begun> {
    let mut tx = pool.begin().await?;
    let target = claims::lock_for_checkout(&mut tx, buyer, claim_id).await?;
    let claim = &target.claim;
    match claim.status {
        ClaimStatus::Held if claim.expires_at > target.now => {
            let order = orders::insert_for_claim(&mut tx, target.merchant_id, claim, target.price).await?;
            let new = NewPayment {
                order: order.id,
                attempt: 1,
                // One claim, one charge: the key is the claim's.
                idempotency_key: format!("gavel:checkout:{claim_id}"),
                payment_method,
                amount: order.amount,
            };
            let payment = record_attempt(&mut tx, &new).await?;
            if !claims::start_checkout(&mut tx, claim_id).await? {
                return Err(Error::Internal(format!("claim {claim_id} stopped being held under its lock")));
            }
            tx.commit().await?;
            metrics::counter!("gavel_checkouts_total", "outcome" => "started").increment(1);
            Ok(Begun::New { order: order.id, payment: Box::new(payment) })
        }
        ClaimStatus::Held => {
            // Run out: return its unit now, taking the sale lock first as every
            // stock change does (so not under this claim's lock).
            let sale_id = claim.sale_id;
            drop(tx);
            let mut tx = pool.begin().await?;
            claims::sweep_expired(&mut tx, sale_id).await?;
            tx.commit().await?;
            Err(Error::ClaimExpired)
        }
        ClaimStatus::CheckingOut => Err(Error::CheckoutInProgress),
        ClaimStatus::CheckedOut | ClaimStatus::Released | ClaimStatus::Expired => {
            match orders::for_claim(&mut tx, claim_id).await? {
                Some(order) => Ok(Begun::Existing(order.id)),
                None => Err(Error::ClaimExpired),
            }
        }
    }
}

/// Payment of an order awaiting it (an auction's winner): a new attempt each
/// time, until one succeeds or the window closes. A paid (or refunded) order
/// is not payable again, nor is a sale's (it is paid through its claim's
/// checkout; a failed one has released its unit).
pub(super) async fn order(
    pool: &PgPool,
    buyer: BuyerId,
    order_id: OrderId,
    payment_method: &PaymentMethod,
) -> Result<Begun> {
    let mut tx = pool.begin().await?;
    let order =
        orders::lock(&mut tx, order_id).await?.filter(|o| o.buyer_id == buyer).ok_or(Error::NotFound("order"))?;
    if order.status == OrderStatus::PendingVerification {
        return Err(Error::CheckoutInProgress);
    }
    let payable = matches!(order.subject, OrderSubject::Auction { .. })
        && order.status.can_become(OrderStatus::PendingVerification);
    if !payable {
        return Err(Error::OrderNotPayable { status: order.status.as_str() });
    }
    if order.payment_due_at.is_some_and(|due| due <= Utc::now()) {
        return Err(Error::PaymentWindowClosed);
    }
    let attempt = payments::latest(&mut tx, order.id).await?.map_or(1, |p| p.attempt + 1);
    let new = NewPayment {
        order: order.id,
        attempt,
        idempotency_key: format!("gavel:order:{}:{attempt}", order.id),
        payment_method,
        amount: order.amount,
    };
    let payment = record_attempt(&mut tx, &new).await?;
    orders::transition(&mut tx, order.id, order.status, OrderStatus::PendingVerification)
        .await?
        .ok_or_else(|| Error::Internal(format!("order {} moved under its lock", order.id)))?;
    tx.commit().await?;
    Ok(Begun::New { order: order.id, payment: Box::new(payment) })
}

/// Writes the attempt. Should this process die before it settles, the
/// workers' resume tick finds it `processing` and carries it on
/// ([`super::Checkout::resume_stalled`]).
async fn record_attempt(conn: &mut PgConnection, new: &NewPayment<'_>) -> Result<Payment> {
    payments::insert(conn, new).await
}
