//! Orders: checkout of a claim, payment of an awaiting order, and reading them.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use gavel_domain::ids::{ClaimId, OrderId, PaymentId, SaleId};
use gavel_domain::orders::{self, OrderStatus, Viewer};
use gavel_domain::payments::{PaymentMethod, PaymentStatus};
use gavel_workflows::checkout::OrderView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiResult;
use crate::extract::{Buyer, Caller, Json, Query, path_id};
use crate::pagination::PageParams;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// A Stripe payment method (`pm_card_visa` in test mode).
    payment_method: String,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentBody {
    id: PaymentId,
    attempt: i32,
    /// `processing | unknown | succeeded | failed | refunded`.
    status: PaymentStatus,
    failure_code: Option<String>,
    failure_message: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderBody {
    object: &'static str,
    id: OrderId,
    /// `paid | pending_verification | payment_failed`, or for auction orders
    /// `awaiting_payment`; `refunded` when paid for a unit that was gone.
    status: OrderStatus,
    sale_id: Option<SaleId>,
    claim_id: Option<ClaimId>,
    /// Minor units.
    amount: i64,
    currency: String,
    payment_due_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    /// The latest payment attempt.
    payment: Option<PaymentBody>,
}

impl From<OrderView> for OrderBody {
    fn from(v: OrderView) -> Self {
        let o = v.order;
        Self {
            object: "order",
            id: o.id,
            status: o.status,
            // The row's typed subject and money, in the contract's flat fields.
            sale_id: o.subject.sale(),
            claim_id: o.subject.claim(),
            amount: o.amount.minor(),
            currency: o.amount.currency().code().to_owned(),
            payment_due_at: o.payment_due_at,
            created_at: o.created_at,
            paid_at: o.paid_at,
            payment: v.payment.map(|p| PaymentBody {
                id: p.id,
                attempt: p.attempt,
                status: p.status,
                failure_code: p.failure_code,
                failure_message: p.failure_message,
            }),
        }
    }
}

/// Pay for a held claim. Waits for the payment up to a few seconds and answers
/// with the order as it then stands; a repeat returns the same order.
#[utoipa::path(post, path = "/v1/claims/{id}/checkout", tag = "orders", request_body = PayRequest,
    security(("buyer_token" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "paid | pending_verification | payment_failed", body = OrderBody),
              (status = 410, description = "claim_expired", body = crate::openapi::Problem),
              (status = 409, description = "checkout_in_progress", body = crate::openapi::Problem),
              (status = 503, description = "payments_unavailable (the hold is kept)", body = crate::openapi::Problem)))]
pub async fn checkout(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(id): Path<String>,
    Json(body): Json<PayRequest>,
) -> ApiResult<axum::Json<OrderBody>> {
    let claim: ClaimId = path_id(&id, "claim")?;
    let method = PaymentMethod::parse(&body.payment_method)?;
    Ok(axum::Json(state.payments.checkout(buyer, claim, &method).await?.into()))
}

/// Pay for an order awaiting payment (an auction's winner, within its window).
#[utoipa::path(post, path = "/v1/orders/{id}/pay", tag = "orders", request_body = PayRequest,
    security(("buyer_token" = [])), params(("id" = String, Path)),
    responses((status = 200, body = OrderBody),
              (status = 409, description = "order_not_payable | checkout_in_progress", body = crate::openapi::Problem),
              (status = 410, description = "payment_window_closed", body = crate::openapi::Problem)))]
pub async fn pay(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(id): Path<String>,
    Json(body): Json<PayRequest>,
) -> ApiResult<axum::Json<OrderBody>> {
    let order: OrderId = path_id(&id, "order")?;
    let method = PaymentMethod::parse(&body.payment_method)?;
    Ok(axum::Json(state.payments.pay(buyer, order, &method).await?.into()))
}

/// One order: a merchant's (of its sales and auctions) or a buyer's own.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", security(("merchant_key" = []), ("buyer_token" = [])),
    params(("id" = String, Path)), responses((status = 200, body = OrderBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<OrderBody>> {
    let id: OrderId = path_id(&id, "order")?;
    Ok(axum::Json(state.payments.get(viewer(caller), id).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct OrderList {
    object: &'static str,
    data: Vec<OrderBody>,
    has_more: bool,
}

/// Orders, newest first: a merchant's, or a buyer's own.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", security(("merchant_key" = []), ("buyer_token" = [])),
    params(PageParams), responses((status = 200, body = OrderList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<OrderList>> {
    let page = params.parse::<OrderId>("order")?;
    let (rows, has_more) = page.cut(orders::list(&state.pool, viewer(caller), page.fetch(), page.after).await?);
    // Lists show orders without their attempts; GET one for its payment.
    let data = rows.into_iter().map(|order| OrderView { order, payment: None }.into()).collect();
    Ok(axum::Json(OrderList { object: "list", data, has_more }))
}

fn viewer(caller: Caller) -> Viewer {
    match caller {
        Caller::Merchant(m) => Viewer::Merchant(m),
        Caller::Buyer(b) => Viewer::Buyer(b),
    }
}
