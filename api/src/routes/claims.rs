//! Claims: a buyer's hold on one unit of a sale.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gavel_domain::claims::{self, Claim, ClaimStatus};
use gavel_domain::ids::{ClaimId, SaleId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Buyer, path_id};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ClaimBody {
    object: &'static str,
    id: ClaimId,
    sale_id: SaleId,
    status: ClaimStatus,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl From<Claim> for ClaimBody {
    fn from(c: Claim) -> Self {
        Self {
            object: "claim",
            id: c.id,
            sale_id: c.sale_id,
            status: c.status,
            expires_at: c.expires_at,
            created_at: c.created_at,
        }
    }
}

/// Claim one unit: `201` with a new hold, `200` with the buyer's existing claim.
#[utoipa::path(post, path = "/v1/sales/{id}/claims", tag = "claims", security(("buyer_token" = [])),
    params(("id" = String, Path)),
    responses((status = 201, body = ClaimBody), (status = 200, description = "the buyer's existing claim", body = ClaimBody),
              (status = 409, description = "sold_out | sale_not_active", body = crate::openapi::Problem),
              (status = 429, description = "rate_limited", body = crate::openapi::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<ClaimBody>)> {
    let sale: SaleId = path_id(&id, "sale")?;
    if let Err(wait) = state.claim_limiter.check(buyer) {
        metrics::counter!("gavel_claims_total", "outcome" => "rate_limited").increment(1);
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many claim attempts; slow down")
            .retry_after(wait.as_secs_f64().ceil() as u64));
    }
    let outcome = state.claims.claim(sale, buyer).await?;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(outcome.claim.into())))
}

/// One of the buyer's claims; a hold past its expiry reads as `expired`.
#[utoipa::path(get, path = "/v1/claims/{id}", tag = "claims", security(("buyer_token" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ClaimBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ClaimBody>> {
    let id: ClaimId = path_id(&id, "claim")?;
    Ok(axum::Json(claims::get_for_buyer(&state.pool, buyer, id).await?.into()))
}
