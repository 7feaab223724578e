//! Products.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gavel_domain::ids::ProductId;
use gavel_domain::products::{self, Product};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Json, Merchant};
use crate::idempotency::{self, Effect, IdempotencyKey, Mode};
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, JSON_BODY, KEYED, problems};
use crate::state::AppState;

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(idempotency::keyed(state, Mode::Effect, routes!(create)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "title": "Sneakers", "description": "Limited run, sizes 38–46." })))]
pub struct CreateProduct {
    /// 1–200 characters, one line.
    title: String,
    /// Up to 10,000 characters; line feeds and tabs allowed.
    description: Option<String>,
}

/// What a merchant puts on sale.
#[derive(Serialize, ToSchema)]
#[schema(as = Product, examples(json!({
    "id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "title": "Sneakers",
    "description": "Limited run, sizes 38–46.", "created_at": "2026-11-30T09:00:00Z"
})))]
pub struct ProductBody {
    #[schema(value_type = String, examples("prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: ProductId,
    title: String,
    description: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<&Product> for ProductBody {
    fn from(p: &Product) -> Self {
        Self { id: p.id, title: p.title.clone(), description: p.description.clone(), created_at: p.created_at }
    }
}

problems!(CreateProductErrors:; AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Create a product.
#[utoipa::path(post, path = "/v1/products", tag = "products", operation_id = "create_product",
    security(("merchant_key" = [])), params(IdempotencyKey), request_body = CreateProduct,
    responses((status = 201, description = "The product.", body = ProductBody), CreateProductErrors))]
pub async fn create(
    Merchant(merchant): Merchant,
    effect: Effect,
    Json(body): Json<CreateProduct>,
) -> ApiResult<(StatusCode, axum::Json<ProductBody>)> {
    let mut tx = effect.begin().await?;
    let product = products::create(&mut *tx, merchant, &body.title, body.description.as_deref()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(ProductBody::from(&product))))
}
