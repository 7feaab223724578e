//! Sales: create, read, list, edit before start (`If-Match`), cancel.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gavel_domain::ids::{ProductId, SaleId};
use gavel_domain::money::Currency;
use gavel_domain::sales::{self, RawTerms, Sale, SaleStatus};
use gavel_workflows::sale_lifecycle;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Merchant, Query, path_id};
use crate::idempotency::Effect;
use crate::pagination::PageParams;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSale {
    product_id: ProductId,
    /// Minor units.
    price: i64,
    currency: String,
    inventory: i64,
    starts_at: DateTime<Utc>,
    /// Instead of `duration_seconds`.
    ends_at: Option<DateTime<Utc>>,
    /// Default 600.
    duration_seconds: Option<i64>,
    /// Default 180.
    hold_seconds: Option<i64>,
    /// Default 1.
    per_buyer_limit: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSale {
    price: Option<i64>,
    currency: Option<String>,
    inventory: Option<i64>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    duration_seconds: Option<i64>,
    hold_seconds: Option<i64>,
    per_buyer_limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct SaleList {
    object: &'static str,
    data: Vec<SaleBody>,
    has_more: bool,
}

/// A sale as the API shows it: its price as `price` (minor units) and
/// `currency`.
#[derive(Serialize, ToSchema)]
pub struct SaleBody {
    object: &'static str,
    id: SaleId,
    product_id: ProductId,
    status: SaleStatus,
    price: i64,
    #[schema(value_type = String, example = "usd")]
    currency: Currency,
    inventory: i32,
    available: i32,
    held: i32,
    sold: i32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    hold_seconds: i32,
    per_buyer_limit: i32,
    version: i32,
    created_at: DateTime<Utc>,
}

impl From<Sale> for SaleBody {
    fn from(s: Sale) -> Self {
        Self {
            object: "sale",
            id: s.id,
            product_id: s.product_id,
            status: s.status,
            price: s.price.minor(),
            currency: s.price.currency(),
            inventory: s.inventory,
            available: s.available,
            held: s.held,
            sold: s.sold,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            hold_seconds: s.hold_seconds,
            per_buyer_limit: s.per_buyer_limit,
            version: s.version,
            created_at: s.created_at,
        }
    }
}

fn with_etag(status: StatusCode, sale: Sale) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", sale.version)).ok();
    let mut response = (status, axum::Json(SaleBody::from(sale))).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// Create a flash sale; it starts and ends by itself.
#[utoipa::path(post, path = "/v1/sales", tag = "sales", request_body = CreateSale, security(("merchant_key" = [])),
    responses((status = 201, body = SaleBody), (status = 422, body = crate::openapi::Problem)))]
pub async fn create(Merchant(merchant): Merchant, effect: Effect, Json(body): Json<CreateSale>) -> ApiResult<Response> {
    let raw = RawTerms {
        price: Some(body.price),
        currency: Some(body.currency),
        inventory: Some(body.inventory),
        starts_at: Some(body.starts_at),
        ends_at: body.ends_at,
        duration_seconds: body.duration_seconds,
        hold_seconds: body.hold_seconds,
        per_buyer_limit: body.per_buyer_limit,
    };
    let mut tx = effect.begin().await?;
    let sale = sale_lifecycle::create_sale_in(&mut tx, merchant, body.product_id, raw).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::CREATED, sale))
}

/// A sale of this merchant.
#[utoipa::path(get, path = "/v1/sales/{id}", tag = "sales", security(("merchant_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = SaleBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: SaleId = path_id(&id, "sale")?;
    Ok(with_etag(StatusCode::OK, sales::get(&state.pool, merchant, id).await?))
}

/// This merchant's sales, newest first.
#[utoipa::path(get, path = "/v1/sales", tag = "sales", security(("merchant_key" = [])), params(PageParams),
    responses((status = 200, body = SaleList)))]
pub async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<SaleList>> {
    let page = params.parse::<SaleId>("sale")?;
    let (rows, has_more) = page.cut(sales::list(&state.pool, merchant, page.fetch(), page.after).await?);
    let data = rows.into_iter().map(SaleBody::from).collect();
    Ok(axum::Json(SaleList { object: "list", data, has_more }))
}

/// Change a scheduled sale. `If-Match` must carry the sale's current version (its ETag).
#[utoipa::path(patch, path = "/v1/sales/{id}", tag = "sales", request_body = PatchSale, security(("merchant_key" = [])),
    params(("id" = String, Path), ("If-Match" = String, Header)),
    responses((status = 200, body = SaleBody), (status = 412, description = "version_mismatch", body = crate::openapi::Problem),
              (status = 428, description = "If-Match missing", body = crate::openapi::Problem),
              (status = 409, description = "sale_not_editable", body = crate::openapi::Problem)))]
pub async fn patch(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<PatchSale>,
) -> ApiResult<Response> {
    let id: SaleId = path_id(&id, "sale")?;
    let if_match = if_match_version(&headers)?;
    let patch = RawTerms {
        price: body.price,
        currency: body.currency,
        inventory: body.inventory,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        duration_seconds: body.duration_seconds,
        hold_seconds: body.hold_seconds,
        per_buyer_limit: body.per_buyer_limit,
    };
    let sale = sale_lifecycle::update_sale(&state.pool, merchant, id, if_match, patch).await?;
    Ok(with_etag(StatusCode::OK, sale))
}

/// Cancel a sale that has not ended; open holds are released.
#[utoipa::path(post, path = "/v1/sales/{id}/cancel", tag = "sales", security(("merchant_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = SaleBody), (status = 409, body = crate::openapi::Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: SaleId = path_id(&id, "sale")?;
    Ok(with_etag(StatusCode::OK, sale_lifecycle::cancel_sale(&state.pool, merchant, id).await?))
}

fn if_match_version(headers: &HeaderMap) -> ApiResult<i32> {
    let raw = headers.get(header::IF_MATCH).ok_or_else(|| {
        ApiError::new(StatusCode::PRECONDITION_REQUIRED, "if_match_required", "send If-Match with the sale's ETag")
    })?;
    raw.to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::new(StatusCode::PRECONDITION_FAILED, "version_mismatch", "If-Match is not a version ETag")
        })
}
