//! Products.

use axum::http::StatusCode;
use gavel_domain::products::{self, Product};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::ApiResult;
use crate::extract::{Json, Merchant};
use crate::idempotency::Effect;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    title: String,
    description: Option<String>,
}

/// Create a product.
#[utoipa::path(post, path = "/v1/products", tag = "products", request_body = CreateProduct,
    security(("merchant_key" = [])),
    responses((status = 201, body = Product), (status = 422, body = crate::openapi::Problem)))]
pub async fn create(
    Merchant(merchant): Merchant,
    effect: Effect,
    Json(body): Json<CreateProduct>,
) -> ApiResult<(StatusCode, axum::Json<Product>)> {
    let mut tx = effect.begin().await?;
    let product = products::create(&mut *tx, merchant, &body.title, body.description.as_deref()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(product)))
}
