//! The run rows and their discrepancies: created once per scope and period,
//! claimed, advanced page by page (cursor and findings in one transaction),
//! finished; and the reads the report is made of.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Class, Discrepancy, ObjectKind, Period, Phase, Resolution, RunStatus, Scope};
use crate::error::{Error, Result};
use crate::ids::{MerchantId, ReconciliationRunId};

#[derive(Debug, Clone)]
pub struct Run {
    pub id: ReconciliationRunId,
    pub merchant_id: Option<MerchantId>,
    pub period_from: DateTime<Utc>,
    pub period_to: DateTime<Utc>,
    pub status: RunStatus,
    pub phase: Phase,
    pub cursor: Option<String>,
    pub checked_payments: i64,
    pub checked_refunds: i64,
    /// `stuck_pending` is measured from here.
    pub as_of: DateTime<Utc>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Run {
    pub fn scope(&self) -> Scope {
        self.merchant_id.map_or(Scope::Platform, Scope::Merchant)
    }

    pub fn period(&self) -> Result<Period> {
        Ok(Period::new(self.period_from, self.period_to)?)
    }
}

/// The run of `scope` over `period`: a new one (`true`), or the one already
/// pending, running or completed (`false`).
pub async fn create_or_get(conn: &mut PgConnection, scope: Scope, period: Period) -> Result<(Run, bool)> {
    let inserted = sqlx::query_as!(
        Run,
        r#"INSERT INTO reconciliation_runs (id, merchant_id, period_from, period_to, status)
           VALUES ($1, $2, $3, $4, 'pending')
           ON CONFLICT (coalesce(merchant_id, '00000000-0000-0000-0000-000000000000'::uuid), period_from, period_to)
               WHERE status <> 'failed' DO NOTHING
           RETURNING id AS "id: ReconciliationRunId", merchant_id AS "merchant_id: MerchantId", period_from,
                     period_to, status AS "status: RunStatus", phase AS "phase: Phase", cursor, checked_payments,
                     checked_refunds, as_of, error, created_at, finished_at"#,
        ReconciliationRunId::new() as ReconciliationRunId,
        scope.merchant() as Option<MerchantId>,
        period.from(),
        period.to(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(run) = inserted {
        return Ok((run, true));
    }
    let existing = sqlx::query_as!(
        Run,
        r#"SELECT id AS "id: ReconciliationRunId", merchant_id AS "merchant_id: MerchantId", period_from,
                  period_to, status AS "status: RunStatus", phase AS "phase: Phase", cursor, checked_payments,
                  checked_refunds, as_of, error, created_at, finished_at
           FROM reconciliation_runs
           WHERE merchant_id IS NOT DISTINCT FROM $1 AND period_from = $2 AND period_to = $3 AND status <> 'failed'"#,
        scope.merchant() as Option<MerchantId>,
        period.from(),
        period.to(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    // Failed between the two statements: the next call makes a new one.
    existing.map(|run| (run, false)).ok_or(Error::Contention { retry_after: std::time::Duration::from_secs(1) })
}

/// A run as `scope` may see it: a merchant only its own; the platform any.
pub async fn get(conn: &mut PgConnection, scope: Scope, id: ReconciliationRunId) -> Result<Run> {
    let run = sqlx::query_as!(
        Run,
        r#"SELECT id AS "id: ReconciliationRunId", merchant_id AS "merchant_id: MerchantId", period_from,
                  period_to, status AS "status: RunStatus", phase AS "phase: Phase", cursor, checked_payments,
                  checked_refunds, as_of, error, created_at, finished_at
           FROM reconciliation_runs WHERE id = $1 AND ($2::uuid IS NULL OR merchant_id = $2)"#,
        id as ReconciliationRunId,
        scope.merchant() as Option<MerchantId>,
    )
    .fetch_optional(conn)
    .await?;
    run.ok_or(Error::NotFound("reconciliation run"))
}

/// Takes the run up (`pending → running`, or a `running` one resumed) under
/// its row lock, so one process works a run at a time: `None` when another
/// holds it or it is finished.
pub async fn claim(conn: &mut PgConnection, id: ReconciliationRunId) -> Result<Option<Run>> {
    Ok(sqlx::query_as!(
        Run,
        r#"UPDATE reconciliation_runs SET status = 'running', started_at = coalesce(started_at, now())
           WHERE id = (SELECT id FROM reconciliation_runs WHERE id = $1 AND status IN ('pending', 'running')
                       FOR UPDATE SKIP LOCKED)
           RETURNING id AS "id: ReconciliationRunId", merchant_id AS "merchant_id: MerchantId", period_from,
                     period_to, status AS "status: RunStatus", phase AS "phase: Phase", cursor, checked_payments,
                     checked_refunds, as_of, error, created_at, finished_at"#,
        id as ReconciliationRunId,
    )
    .fetch_optional(conn)
    .await?)
}

/// Moves the run's cursor (in the transaction that writes the page's findings).
pub async fn advance(
    conn: &mut PgConnection,
    id: ReconciliationRunId,
    phase: Phase,
    cursor: Option<&str>,
    checked: (i64, i64),
) -> Result<()> {
    sqlx::query!(
        "UPDATE reconciliation_runs SET phase = $2, cursor = $3, checked_payments = checked_payments + $4,
                checked_refunds = checked_refunds + $5
         WHERE id = $1 AND status = 'running'",
        id as ReconciliationRunId,
        phase as Phase,
        cursor,
        checked.0,
        checked.1,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a run: `completed`, or `failed` with why.
pub async fn finish(conn: &mut PgConnection, id: ReconciliationRunId, error: Option<&str>) -> Result<()> {
    let status = if error.is_some() { RunStatus::Failed } else { RunStatus::Completed };
    sqlx::query!(
        "UPDATE reconciliation_runs SET status = $2, error = $3, finished_at = now(), phase = 'done'
         WHERE id = $1 AND status = 'running'",
        id as ReconciliationRunId,
        status as RunStatus,
        error,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("DELETE FROM reconciliation_seen WHERE run_id = $1", id as ReconciliationRunId).execute(conn).await?;
    Ok(())
}

/// Runs not finished (the resume tick takes them up again).
pub async fn unfinished(conn: &mut PgConnection) -> Result<Vec<ReconciliationRunId>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT id AS "id: ReconciliationRunId" FROM reconciliation_runs
           WHERE status IN ('pending', 'running') ORDER BY created_at LIMIT 100"#
    )
    .fetch_all(conn)
    .await?)
}

/// Writes a page's findings, in one statement.
pub async fn record(conn: &mut PgConnection, run: ReconciliationRunId, found: &[Discrepancy]) -> Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Discrepancy) -> Option<String>| found.iter().map(f).collect::<Vec<_>>();
    let classes: Vec<String> = found.iter().map(|d| d.class.as_str().to_owned()).collect();
    let objects: Vec<String> = found.iter().map(|d| d.object.as_str().to_owned()).collect();
    let resolutions: Vec<String> = found.iter().map(|d| d.resolution.as_str().to_owned()).collect();
    let currencies: Vec<String> = found.iter().map(|d| d.currency.clone()).collect();
    let details: Vec<String> = found.iter().map(|d| d.detail.clone()).collect();
    let amounts: Vec<i64> = found.iter().map(Discrepancy::amount).collect();
    let gavel_amounts: Vec<Option<i64>> = found.iter().map(|d| d.gavel_amount).collect();
    let provider_amounts: Vec<Option<i64>> = found.iter().map(|d| d.provider_amount).collect();
    let settles: Vec<Option<Uuid>> = found.iter().map(|d| d.settles_payment).collect();
    sqlx::query!(
        r#"INSERT INTO reconciliation_discrepancies
               (run_id, class, object, gavel_id, provider_id, order_id, currency, gavel_amount, provider_amount,
                amount, gavel_status, provider_status, resolution, settles_payment, detail)
           SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                    $8::int8[], $9::int8[], $10::int8[], $11::text[], $12::text[], $13::text[],
                                    $14::uuid[], $15::text[])"#,
        run as ReconciliationRunId,
        &classes,
        &objects,
        &col(|d| d.gavel_id.clone()) as &[Option<String>],
        &col(|d| d.provider_id.clone()) as &[Option<String>],
        &col(|d| d.order_id.clone()) as &[Option<String>],
        &currencies,
        &gavel_amounts as &[Option<i64>],
        &provider_amounts as &[Option<i64>],
        &amounts,
        &col(|d| d.gavel_status.clone()) as &[Option<String>],
        &col(|d| d.provider_status.clone()) as &[Option<String>],
        &resolutions,
        &settles as &[Option<Uuid>],
        &details,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Notes ledger objects (payments or refunds) matched at the provider.
pub async fn mark_seen(conn: &mut PgConnection, run: ReconciliationRunId, ids: &[Uuid]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "INSERT INTO reconciliation_seen (run_id, object_id) SELECT $1, * FROM UNNEST($2::uuid[])
         ON CONFLICT DO NOTHING",
        run as ReconciliationRunId,
        ids,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The payments the run's auto-settled discrepancies settle.
pub async fn auto_settled_payments(conn: &mut PgConnection, run: ReconciliationRunId) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT DISTINCT settles_payment AS "p!" FROM reconciliation_discrepancies
           WHERE run_id = $1 AND resolution = 'auto_settled' AND settles_payment IS NOT NULL"#,
        run as ReconciliationRunId,
    )
    .fetch_all(conn)
    .await?)
}

/// Count and sum of one class in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassTotal {
    pub class: Class,
    pub currency: String,
    pub count: i64,
    pub amount: i64,
}

pub async fn totals(conn: &mut PgConnection, run: ReconciliationRunId) -> Result<Vec<ClassTotal>> {
    Ok(sqlx::query_as!(
        ClassTotal,
        r#"SELECT class AS "class: Class", currency, count(*) AS "count!", sum(amount)::int8 AS "amount!"
           FROM reconciliation_discrepancies WHERE run_id = $1 GROUP BY class, currency ORDER BY class, currency"#,
        run as ReconciliationRunId,
    )
    .fetch_all(conn)
    .await?)
}

/// A stored discrepancy with its place in the run.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: i64,
    pub found: Discrepancy,
}

/// Up to `limit` discrepancies after `after` (their `seq`), in the order found.
pub async fn page(conn: &mut PgConnection, run: ReconciliationRunId, after: i64, limit: i64) -> Result<Vec<Stored>> {
    let rows = sqlx::query!(
        r#"SELECT seq, class AS "class: Class", object AS "object: ObjectKind", gavel_id, provider_id, order_id,
                  currency, gavel_amount, provider_amount, gavel_status, provider_status,
                  resolution AS "resolution: Resolution", settles_payment, detail
           FROM reconciliation_discrepancies WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"#,
        run as ReconciliationRunId,
        after,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Stored {
            seq: r.seq,
            found: Discrepancy {
                class: r.class,
                object: r.object,
                gavel_id: r.gavel_id,
                provider_id: r.provider_id,
                order_id: r.order_id,
                currency: r.currency,
                gavel_amount: r.gavel_amount,
                provider_amount: r.provider_amount,
                gavel_status: r.gavel_status,
                provider_status: r.provider_status,
                resolution: r.resolution,
                settles_payment: r.settles_payment,
                detail: r.detail,
            },
        })
        .collect())
}
