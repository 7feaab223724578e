//! Holds that end without a purchase: `Held → Expired` when they run out
//! (swept by a job, or taken back by a batch short of stock) and
//! `Held → Released` when their sale closes. Both are set-based statements
//! whose caller holds the sale row lock and moves the units back to stock.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ClaimStatus, held_to_available, notify_stock_returned};
use crate::error::Result;
use crate::ids::SaleId;
use crate::jobs::{self, SaleJob, queues};
use crate::sales::SaleStatus;

const _: () = assert!(ClaimStatus::Held.can_become(ClaimStatus::Expired), "expire() performs Held -> Expired");
const _: () = assert!(ClaimStatus::Held.can_become(ClaimStatus::Released), "release_holds() performs Held -> Released");

pub(super) enum Expire<'a> {
    These(&'a [Uuid]),
    Due { limit: i64 },
}

/// `Held → Expired` for holds past their expiry (the given ones, or the
/// `limit` soonest due); returns how many changed. The caller, who holds the
/// sale row lock, moves the units from `held` to `available`.
pub(super) async fn expire(
    conn: &mut PgConnection,
    sale_id: SaleId,
    now: DateTime<Utc>,
    which: Expire<'_>,
) -> Result<i32> {
    let result = match which {
        Expire::These(ids) => {
            sqlx::query!(
                "UPDATE claims SET status = 'expired', closed_at = $3
                 WHERE sale_id = $1 AND id = ANY($2) AND status = 'held' AND expires_at <= $3",
                sale_id as SaleId,
                ids,
                now,
            )
            .execute(conn)
            .await?
        }
        Expire::Due { limit } => {
            sqlx::query!(
                "UPDATE claims SET status = 'expired', closed_at = $2
                 WHERE id IN (SELECT id FROM claims
                              WHERE sale_id = $1 AND status = 'held' AND expires_at <= $2
                              ORDER BY expires_at LIMIT $3)",
                sale_id as SaleId,
                now,
                limit,
            )
            .execute(conn)
            .await?
        }
    };
    Ok(result.rows_affected() as i32)
}

/// Expires every overdue hold of a sale and returns the units to stock (the
/// sweeper job). Returns how many holds expired.
pub async fn sweep_expired(conn: &mut PgConnection, sale_id: SaleId) -> Result<i32> {
    let now = sqlx::query_scalar!(
        r#"SELECT now() AS "now!" FROM sales WHERE id = $1 AND status = 'active' FOR NO KEY UPDATE"#,
        sale_id as SaleId,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(now) = now else { return Ok(0) };
    let n = expire(conn, sale_id, now, Expire::Due { limit: i64::MAX }).await?;
    if n > 0 {
        held_to_available(conn, sale_id, n).await?;
        notify_stock_returned(conn, sale_id).await?;
        crate::feed::sale_stock_changed(conn, sale_id, false).await?;
    }
    // Keep the chain alive: the next hold to run out gets a sweep too.
    let next = sqlx::query_scalar!(
        "SELECT min(expires_at) FROM claims WHERE sale_id = $1 AND status = 'held'",
        sale_id as SaleId
    )
    .fetch_one(&mut *conn)
    .await?;
    if let Some(next) = next {
        schedule_sweep(conn, sale_id, next).await?;
    }
    Ok(n)
}

/// One sweep job per sale and expiry second, however many holds expire in it;
/// it runs at the end of that second, when all of them are due.
pub(super) async fn schedule_sweep(conn: &mut PgConnection, sale_id: SaleId, expiry: DateTime<Utc>) -> Result<()> {
    let second = expiry.timestamp() + 1;
    let at = DateTime::from_timestamp(second, 0).unwrap_or(expiry);
    let key = format!("sweep:{sale_id}:{second}");
    jobs::enqueue(conn, queues::SALE_LIFECYCLE, &SaleJob::SweepHolds { sale_id }, at, &key).await?;
    // And the reminder a minute before (claim.expiring), for holds long enough to need one.
    let remind_at = expiry - chrono::Duration::seconds(CLAIM_REMINDER_LEAD_SECONDS);
    if remind_at > chrono::Utc::now() {
        let job = SaleJob::RemindHolds { sale_id, expires_second: expiry.timestamp() };
        let key = format!("remind-holds:{sale_id}:{}", expiry.timestamp());
        jobs::enqueue(conn, queues::SALE_LIFECYCLE, &job, remind_at, &key).await?;
    }
    Ok(())
}

/// How long before a hold ends its buyer is reminded (if it is still held).
pub const CLAIM_REMINDER_LEAD_SECONDS: i64 = 60;

/// `Held → Released` for every open hold of a sale that is closing, if the
/// sale is still `sale_status` at `version` (the caller holds its row lock and
/// closes it next, returning these units to stock); returns how many.
pub async fn release_holds(
    conn: &mut PgConnection,
    sale_id: SaleId,
    sale_status: SaleStatus,
    version: i32,
) -> Result<i32> {
    let released = sqlx::query_scalar!(
        r#"WITH released AS (
               UPDATE claims SET status = 'released', closed_at = now()
               WHERE sale_id = $1 AND status = 'held'
                 AND EXISTS (SELECT 1 FROM sales s WHERE s.id = $1 AND s.status = $2 AND s.version = $3)
               RETURNING 1)
           SELECT count(*) AS "count!" FROM released"#,
        sale_id as SaleId,
        sale_status as SaleStatus,
        version,
    )
    .fetch_one(conn)
    .await?;
    Ok(released as i32)
}
