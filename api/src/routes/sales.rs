//! Sales: create, read, list, edit before start (`If-Match`), cancel.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use gavel_domain::ids::{ProductId, SaleId};
use gavel_domain::sales::{self, RawTerms, Sale, SaleStatus};
use gavel_workflows::sale_lifecycle;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Json, Merchant, Path, Query};
use crate::idempotency::{self, Effect, IdempotencyKey, Mode};
use crate::pagination::PageParams;
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, ErrorCode, JSON_BODY, KEYED, Problem, problems};
use crate::routes::api_enum;
use crate::state::AppState;

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(idempotency::keyed(state, Mode::Effect, routes!(create)))
        .routes(routes!(list))
        .routes(routes!(get, patch))
        .routes(idempotency::keyed(state, Mode::Outcome, routes!(cancel)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({
    "product_id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "price": 1999, "currency": "usd",
    "inventory": 100, "starts_at": "2026-12-01T12:00:00Z", "duration_seconds": 600
})))]
pub struct CreateSale {
    #[schema(value_type = String, examples("prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    product_id: ProductId,
    /// Minor units (1999 is 19.99).
    price: i64,
    /// ISO 4217, lower case (`usd`).
    currency: String,
    inventory: i64,
    starts_at: DateTime<Utc>,
    /// Instead of `duration_seconds`.
    ends_at: Option<DateTime<Utc>>,
    /// Default 600.
    duration_seconds: Option<i64>,
    /// How long a claim holds its unit; default 180.
    hold_seconds: Option<i64>,
    /// Default 1.
    per_buyer_limit: Option<i64>,
}

/// Only the members sent change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "price": 1499, "inventory": 50 })))]
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

api_enum!(
    /// `scheduled → active → ended`, or `cancelled` before it ends.
    SaleStatusBody from SaleStatus { Scheduled, Active, Ended, Cancelled }
);

/// A sale as its merchant sees it.
#[derive(Serialize, ToSchema)]
#[schema(as = Sale, examples(json!({
    "object": "sale", "id": "sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b",
    "product_id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "status": "scheduled", "price": 1999,
    "currency": "usd", "inventory": 100, "available": 100, "held": 0, "sold": 0,
    "starts_at": "2026-12-01T12:00:00Z", "ends_at": "2026-12-01T12:10:00Z", "hold_seconds": 180,
    "per_buyer_limit": 1, "version": 1, "created_at": "2026-11-30T09:00:00Z"
})))]
pub struct SaleBody {
    /// Always `sale`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: SaleId,
    #[schema(value_type = String, examples("prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    product_id: ProductId,
    status: SaleStatusBody,
    /// Minor units.
    price: i64,
    currency: String,
    inventory: i32,
    /// Units neither held nor sold.
    available: i32,
    /// Units under an open claim.
    held: i32,
    sold: i32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    hold_seconds: i32,
    per_buyer_limit: i32,
    /// Changes with every edit; the `ETag` is this, quoted.
    version: i32,
    created_at: DateTime<Utc>,
}

impl From<&Sale> for SaleBody {
    fn from(s: &Sale) -> Self {
        Self {
            object: "sale",
            id: s.id,
            product_id: s.product_id,
            status: s.status.into(),
            price: s.price.minor(),
            currency: s.price.currency().code().to_owned(),
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

#[derive(Serialize, ToSchema)]
#[schema(as = SaleList)]
pub struct SaleList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<SaleBody>,
    has_more: bool,
}

fn with_etag(status: StatusCode, sale: &Sale) -> Response {
    super::with_etag(status, sale.version, SaleBody::from(sale))
}

problems!(CreateSaleErrors:; AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Create a flash sale; it starts and ends by itself.
#[utoipa::path(post, path = "/v1/sales", tag = "sales", operation_id = "create_sale",
    security(("merchant_key" = [])), params(IdempotencyKey), request_body = CreateSale,
    responses((status = 201, description = "The sale, scheduled.", body = SaleBody,
               headers(("ETag" = String, description = "The sale's version, quoted: send it back in `If-Match`."))),
              CreateSaleErrors))]
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
    Ok(with_etag(StatusCode::CREATED, &sale))
}

problems!(GetSaleErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// A sale of this merchant.
#[utoipa::path(get, path = "/v1/sales/{id}", tag = "sales", operation_id = "get_sale",
    security(("merchant_key" = [])), params(("id" = String, Path, description = "The sale's id (`sale_…`).")),
    responses((status = 200, description = "The sale.", body = SaleBody,
               headers(("ETag" = String, description = "The sale's version, quoted."))),
              GetSaleErrors))]
pub async fn get(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<SaleId>,
) -> ApiResult<Response> {
    Ok(with_etag(StatusCode::OK, &sales::get(&state.pool, merchant, id).await?))
}

problems!(ListSalesErrors: InvalidRequest; AUTHENTICATED, DATABASE, EDGE);

/// This merchant's sales, newest first.
#[utoipa::path(get, path = "/v1/sales", tag = "sales", operation_id = "list_sales",
    security(("merchant_key" = [])), params(PageParams),
    responses((status = 200, description = "A page of sales.", body = SaleList), ListSalesErrors))]
pub async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<SaleList>> {
    let page = params.parse::<SaleId>("sale")?;
    let (rows, has_more) = page.cut(sales::list(&state.pool, merchant, page.fetch(), page.after).await?);
    let data = rows.iter().map(SaleBody::from).collect();
    Ok(axum::Json(SaleList { object: "list", data, has_more }))
}

problems!(PatchSaleErrors: NotFound, IfMatchRequired, VersionMismatch, SaleNotEditable, Contention;
    AUTHENTICATED, JSON_BODY, DATABASE, EDGE);

/// Change a scheduled sale. `If-Match` must carry the sale's current version (its ETag).
#[utoipa::path(patch, path = "/v1/sales/{id}", tag = "sales", operation_id = "update_sale",
    security(("merchant_key" = [])), request_body = PatchSale,
    params(("id" = String, Path, description = "The sale's id (`sale_…`)."),
           ("If-Match" = String, Header, description = "The sale's ETag (`\"3\"`), from its last answer.")),
    responses((status = 200, description = "The sale as changed.", body = SaleBody,
               headers(("ETag" = String, description = "The sale's new version, quoted."))),
              PatchSaleErrors))]
pub async fn patch(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<SaleId>,
    headers: HeaderMap,
    Json(body): Json<PatchSale>,
) -> ApiResult<Response> {
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
    Ok(with_etag(StatusCode::OK, &sale))
}

problems!(CancelSaleErrors: NotFound, SaleNotEditable, Contention; AUTHENTICATED, KEYED, DATABASE, EDGE);

/// Cancel a sale that has not ended; open holds are released.
#[utoipa::path(post, path = "/v1/sales/{id}/cancel", tag = "sales", operation_id = "cancel_sale",
    security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The sale's id (`sale_…`)."), IdempotencyKey),
    responses((status = 200, description = "The sale, cancelled (or as it was, if already cancelled).", body = SaleBody,
               headers(("ETag" = String, description = "The sale's version, quoted."))),
              CancelSaleErrors))]
pub async fn cancel(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<SaleId>,
) -> ApiResult<Response> {
    Ok(with_etag(StatusCode::OK, &sale_lifecycle::cancel_sale(&state.pool, merchant, id).await?))
}

fn if_match_version(headers: &HeaderMap) -> ApiResult<i32> {
    let raw = headers
        .get(header::IF_MATCH)
        .ok_or_else(|| Problem::new(ErrorCode::IfMatchRequired, "send If-Match with the sale's ETag"))?;
    raw.to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Problem::new(ErrorCode::VersionMismatch, "If-Match is not a version ETag"))
}
