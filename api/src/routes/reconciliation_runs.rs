//! Finance reconciliation runs: request one for a period, read its totals
//! and first discrepancies, and download every discrepancy as CSV (streamed
//! a page at a time, never buffered whole). A merchant's run covers its own
//! orders; another merchant's run is `404`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gavel_domain::ids::ReconciliationRunId;
use gavel_domain::reconciliation::{self as recon, Class, Discrepancy, Period, Run, RunStatus, Scope};
use gavel_workflows::reconciliation::Reconciler;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Json, Merchant, Path, PathId};
use crate::idempotency::{self, IdempotencyKey, Mode};
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, JSON_BODY, KEYED, problems};
use crate::state::AppState;

impl PathId for ReconciliationRunId {
    const WHAT: &'static str = "reconciliation run";
}

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(idempotency::keyed(state, Mode::Outcome, routes!(create)))
        .routes(routes!(get))
        .routes(routes!(report))
}

/// Discrepancies shown with a run; the CSV has them all.
const FIRST_PAGE: i64 = 100;
/// Rows read per query while streaming the CSV.
const CSV_PAGE: i64 = 1000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z" })))]
pub struct CreateRun {
    /// Inclusive (RFC 3339).
    from: DateTime<Utc>,
    /// Exclusive; after `from`, at most a year later.
    to: DateTime<Utc>,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RunStatusBody {
    Pending,
    Running,
    Completed,
    Failed,
}

impl From<RunStatus> for RunStatusBody {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Pending => Self::Pending,
            RunStatus::Running => Self::Running,
            RunStatus::Completed => Self::Completed,
            RunStatus::Failed => Self::Failed,
        }
    }
}

/// A run as requested.
#[derive(Serialize, ToSchema)]
#[schema(as = ReconciliationRunCreated)]
pub struct CreatedBody {
    #[schema(value_type = String, examples("rcr_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: ReconciliationRunId,
    status: RunStatusBody,
}

#[derive(Serialize, ToSchema)]
pub struct Checked {
    payments: i64,
    refunds: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ClassTotals {
    count: i64,
    /// Per currency, in minor units: what is at stake (for an amount
    /// mismatch the difference, else the provider's amount, else Gavel's).
    amounts: BTreeMap<String, i64>,
}

/// One discrepancy (a CSV row).
#[derive(Serialize, ToSchema)]
#[schema(as = Discrepancy)]
pub struct DiscrepancyBody {
    /// `missing_at_provider|missing_in_gavel|amount_mismatch|currency_mismatch|status_mismatch|stuck_pending|duplicate_charge`.
    class: String,
    /// `payment|refund`.
    object: String,
    gavel_id: Option<String>,
    provider_id: Option<String>,
    order_id: Option<String>,
    currency: String,
    gavel_amount: Option<i64>,
    provider_amount: Option<i64>,
    gavel_status: Option<String>,
    provider_status: Option<String>,
    /// `auto_settled|needs_review`.
    resolution: String,
    detail: String,
}

impl From<Discrepancy> for DiscrepancyBody {
    fn from(d: Discrepancy) -> Self {
        Self {
            class: d.class.as_str().to_owned(),
            object: d.object.as_str().to_owned(),
            gavel_id: d.gavel_id,
            provider_id: d.provider_id,
            order_id: d.order_id,
            currency: d.currency,
            gavel_amount: d.gavel_amount,
            provider_amount: d.provider_amount,
            gavel_status: d.gavel_status,
            provider_status: d.provider_status,
            resolution: d.resolution.as_str().to_owned(),
            detail: d.detail,
        }
    }
}

/// A run with its totals per class and currency.
#[derive(Serialize, ToSchema)]
#[schema(as = ReconciliationRun)]
pub struct RunBody {
    #[schema(value_type = String, examples("rcr_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: ReconciliationRunId,
    status: RunStatusBody,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    checked: Checked,
    /// Every class, each with its count and amounts per currency.
    classes: BTreeMap<String, ClassTotals>,
    /// The first 100 discrepancies in the order found; all are in `report.csv`.
    discrepancies: Vec<DiscrepancyBody>,
    /// Why a `failed` run failed.
    error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

fn reconciler(state: &AppState) -> Reconciler {
    Reconciler::new(state.pool.clone(), state.payments.clone(), state.reconciliation.clone())
}

problems!(CreateRunErrors: InvalidRequest; AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Reconcile this merchant's payments and refunds of a period with Stripe's
/// records. The same period again, while its run is pending, running or
/// completed, answers that run.
#[utoipa::path(post, path = "/v1/reconciliation_runs", tag = "reconciliation", operation_id = "create_reconciliation_run",
    security(("merchant_key" = [])), params(IdempotencyKey), request_body = CreateRun,
    responses((status = 202, description = "The run, queued (or the period's existing run).", body = CreatedBody),
              CreateRunErrors))]
pub async fn create(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Json(body): Json<CreateRun>,
) -> ApiResult<(StatusCode, axum::Json<CreatedBody>)> {
    let period = Period::new(body.from, body.to)?;
    let (run, _) = reconciler(&state).request(Scope::Merchant(merchant), period).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(CreatedBody { id: run.id, status: run.status.into() })))
}

/// The run's body: totals of every class (zero ones included) and the first page.
pub async fn run_body(conn: &mut sqlx::PgConnection, run: Run) -> gavel_domain::Result<RunBody> {
    let mut classes: BTreeMap<String, ClassTotals> = Class::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), ClassTotals { count: 0, amounts: BTreeMap::new() }))
        .collect();
    for t in recon::totals(conn, run.id).await? {
        let entry =
            classes.entry(t.class.as_str().to_owned()).or_insert(ClassTotals { count: 0, amounts: BTreeMap::new() });
        entry.count += t.count;
        *entry.amounts.entry(t.currency).or_insert(0) += t.amount;
    }
    let discrepancies = recon::page(conn, run.id, 0, FIRST_PAGE).await?;
    Ok(RunBody {
        id: run.id,
        status: run.status.into(),
        from: run.period_from,
        to: run.period_to,
        checked: Checked { payments: run.checked_payments, refunds: run.checked_refunds },
        classes,
        discrepancies: discrepancies.into_iter().map(|s| s.found.into()).collect(),
        error: run.error,
        created_at: run.created_at,
        finished_at: run.finished_at,
    })
}

problems!(GetRunErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// A run: its status, what it checked, counts and sums per class and currency,
/// and its first discrepancies.
#[utoipa::path(get, path = "/v1/reconciliation_runs/{id}", tag = "reconciliation", operation_id = "get_reconciliation_run",
    security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The run's id (`rcr_…`).")),
    responses((status = 200, description = "The run.", body = RunBody), GetRunErrors))]
pub async fn get(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<ReconciliationRunId>,
) -> ApiResult<axum::Json<RunBody>> {
    let mut conn = state.pool.acquire().await.map_err(gavel_domain::Error::from)?;
    let run = recon::get(&mut conn, Scope::Merchant(merchant), id).await?;
    Ok(axum::Json(run_body(&mut conn, run).await?))
}

/// The CSV's header, in API.md's column order.
pub const CSV_HEADER: &str = "run_id,class,object,gavel_id,provider_id,order_id,currency,gavel_amount,provider_amount,gavel_status,provider_status,resolution,detail\n";

fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// One discrepancy as a CSV line (RFC 4180 quoting).
pub fn csv_line(run: ReconciliationRunId, d: &Discrepancy) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    let fields = [
        run.to_string(),
        d.class.as_str().to_owned(),
        d.object.as_str().to_owned(),
        opt(&d.gavel_id),
        opt(&d.provider_id),
        opt(&d.order_id),
        d.currency.clone(),
        num(d.gavel_amount),
        num(d.provider_amount),
        opt(&d.gavel_status),
        opt(&d.provider_status),
        d.resolution.as_str().to_owned(),
        d.detail.clone(),
    ];
    let mut line = String::with_capacity(160);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        field(&mut line, f);
    }
    line.push('\n');
    line
}

problems!(ReportErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// Every discrepancy of the run, one CSV row each (header first; columns in
/// API.md's order), streamed.
#[utoipa::path(get, path = "/v1/reconciliation_runs/{id}/report.csv", tag = "reconciliation",
    operation_id = "get_reconciliation_report", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The run's id (`rcr_…`).")),
    responses((status = 200, description = "The report.", content_type = "text/csv", body = String), ReportErrors))]
pub async fn report(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<ReconciliationRunId>,
) -> ApiResult<Response> {
    let run =
        recon::get(&mut *state.pool.acquire().await.map_err(gavel_domain::Error::from)?, Scope::Merchant(merchant), id)
            .await?;
    let pool = state.pool.clone();
    let rows = futures::stream::unfold(Some(0i64), move |after| {
        let pool = pool.clone();
        async move {
            let after = after?;
            let page = match pool.acquire().await {
                Ok(mut conn) => recon::page(&mut conn, run.id, after, CSV_PAGE).await,
                Err(e) => Err(e.into()),
            };
            match page {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|s| s.seq);
                    let chunk: String = page.iter().map(|s| csv_line(run.id, &s.found)).collect();
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(err) => {
                    tracing::error!(run = %run.id, error = %err, "reading the reconciliation report");
                    Some((Err(std::io::Error::other(err.to_string())), None))
                }
            }
        }
    });
    let body = futures::StreamExt::chain(futures::stream::once(async { Ok(CSV_HEADER.to_owned()) }), rows);
    let disposition = format!("attachment; filename=\"reconciliation-{}.csv\"", run.id);
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        Body::from_stream(body),
    )
        .into_response())
}
