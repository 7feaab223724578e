//! Watches: a buyer hears of a product's sales and auctions.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gavel_domain::ids::ProductId;
use gavel_domain::watches::{self, Watch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Buyer, Json, Path, Query};
use crate::idempotency::{self, Effect, IdempotencyKey, Mode};
use crate::pagination::PageParams;
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, JSON_BODY, KEYED, Problem, problems};
use crate::state::AppState;

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(idempotency::keyed(state, Mode::Effect, routes!(create)))
        .routes(routes!(list))
        .routes(routes!(delete))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "product_id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b" })))]
pub struct CreateWatch {
    /// Any merchant's product (`prod_…`).
    #[schema(value_type = String)]
    product_id: String,
}

/// A product the buyer watches.
#[derive(Serialize, ToSchema)]
#[schema(as = Watch, examples(json!({
    "object": "watch", "product_id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "created_at": "2026-12-01T12:00:00Z"
})))]
pub struct WatchBody {
    /// Always `watch`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    product_id: ProductId,
    created_at: DateTime<Utc>,
}

impl From<&Watch> for WatchBody {
    fn from(w: &Watch) -> Self {
        Self { object: "watch", product_id: w.product_id, created_at: w.created_at }
    }
}

problems!(CreateWatchErrors: NotFound; AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Watch a product: `201` for a new watch, `200` if the buyer already watches it.
#[utoipa::path(post, path = "/v1/watches", tag = "notifications", operation_id = "create_watch",
    security(("buyer_token" = [])), params(IdempotencyKey), request_body = CreateWatch,
    responses((status = 201, description = "A new watch.", body = WatchBody),
              (status = 200, description = "The buyer already watches this product.", body = WatchBody),
              CreateWatchErrors))]
pub async fn create(
    Buyer(buyer): Buyer,
    effect: Effect,
    Json(body): Json<CreateWatch>,
) -> ApiResult<(StatusCode, axum::Json<WatchBody>)> {
    // An id that is not a product's names no product.
    let product: ProductId = body.product_id.parse().map_err(|_| Problem::not_found("product"))?;
    let mut tx = effect.begin().await?;
    let watched = watches::watch(&mut tx, buyer, product).await?;
    tx.commit().await?;
    let status = if watched.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(WatchBody::from(&watched.watch))))
}

/// A page of watches.
#[derive(Serialize, ToSchema)]
#[schema(as = WatchList)]
pub struct WatchList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<WatchBody>,
    has_more: bool,
}

problems!(ListWatchesErrors: InvalidRequest; AUTHENTICATED, DATABASE, EDGE);

/// The buyer's watches (paged by `product_id`).
#[utoipa::path(get, path = "/v1/watches", tag = "notifications", operation_id = "list_watches",
    security(("buyer_token" = [])), params(PageParams),
    responses((status = 200, description = "A page of watches.", body = WatchList), ListWatchesErrors))]
pub async fn list(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<WatchList>> {
    let page = params.parse::<ProductId>("product")?;
    let (rows, has_more) = page.cut(watches::list(&state.pool, buyer, page.fetch(), page.after).await?);
    Ok(axum::Json(WatchList { object: "list", data: rows.iter().map(WatchBody::from).collect(), has_more }))
}

problems!(DeleteWatchErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// Stop watching a product.
#[utoipa::path(delete, path = "/v1/watches/{product_id}", tag = "notifications", operation_id = "delete_watch",
    security(("buyer_token" = [])),
    params(("product_id" = String, Path, description = "The watched product's id (`prod_…`).")),
    responses((status = 204, description = "No longer watched."), DeleteWatchErrors))]
pub async fn delete(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(product): Path<ProductId>,
) -> ApiResult<StatusCode> {
    if watches::unwatch(&state.pool, buyer, product).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found("watch"))
    }
}
