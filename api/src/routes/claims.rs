//! Claims: a buyer's hold on one unit of a sale.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gavel_domain::claims::{self, Claim, ClaimStatus};
use gavel_domain::ids::{ClaimId, SaleId};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Buyer, Path};
use crate::idempotency::{self, IdempotencyKey, Mode};
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, ErrorCode, KEYED, Problem, problems};
use crate::routes::api_enum;
use crate::state::AppState;

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(idempotency::keyed(state, Mode::Outcome, routes!(create))).routes(routes!(get))
}

api_enum!(
    /// `held → checking_out → checked_out`, or `expired` / `released`.
    ClaimStatusBody from ClaimStatus { Held, CheckingOut, CheckedOut, Expired, Released }
);

/// A buyer's hold on one unit of a sale, until `expires_at`.
#[derive(Serialize, ToSchema)]
#[schema(as = Claim, examples(json!({
    "object": "claim", "id": "clm_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b",
    "sale_id": "sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "status": "held",
    "expires_at": "2026-12-01T12:03:00Z", "created_at": "2026-12-01T12:00:00Z"
})))]
pub struct ClaimBody {
    /// Always `claim`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("clm_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: ClaimId,
    #[schema(value_type = String, examples("sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    sale_id: SaleId,
    status: ClaimStatusBody,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl From<&Claim> for ClaimBody {
    fn from(c: &Claim) -> Self {
        Self {
            object: "claim",
            id: c.id,
            sale_id: c.sale_id,
            status: c.status.into(),
            expires_at: c.expires_at,
            created_at: c.created_at,
        }
    }
}

problems!(CreateClaimErrors: NotFound, SoldOut, SaleNotActive, RateLimited, Contention;
    AUTHENTICATED, KEYED, DATABASE, EDGE);

/// Claim one unit: `201` with a new hold, `200` with the buyer's existing claim.
#[utoipa::path(post, path = "/v1/sales/{id}/claims", tag = "claims", operation_id = "create_claim",
    security(("buyer_token" = [])),
    params(("id" = String, Path, description = "The sale's id (`sale_…`)."), IdempotencyKey),
    responses((status = 201, description = "A new hold.", body = ClaimBody),
              (status = 200, description = "The buyer's existing claim on this sale.", body = ClaimBody),
              CreateClaimErrors))]
pub async fn create(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(sale): Path<SaleId>,
) -> ApiResult<(StatusCode, axum::Json<ClaimBody>)> {
    if let Err(wait) = state.claim_limiter.check(buyer) {
        metrics::counter!("gavel_claims_total", "outcome" => "rate_limited").increment(1);
        return Err(Problem::new(ErrorCode::RateLimited, "too many claim attempts; slow down")
            .retry_after(wait.as_secs_f64().ceil() as u64));
    }
    let outcome = state.claims.claim(sale, buyer).await?;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(ClaimBody::from(&outcome.claim))))
}

problems!(GetClaimErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// One of the buyer's claims; a hold past its expiry reads as `expired`.
#[utoipa::path(get, path = "/v1/claims/{id}", tag = "claims", operation_id = "get_claim",
    security(("buyer_token" = [])), params(("id" = String, Path, description = "The claim's id (`clm_…`).")),
    responses((status = 200, description = "The claim.", body = ClaimBody), GetClaimErrors))]
pub async fn get(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(id): Path<ClaimId>,
) -> ApiResult<axum::Json<ClaimBody>> {
    Ok(axum::Json(ClaimBody::from(&claims::get_for_buyer(&state.pool, buyer, id).await?)))
}
