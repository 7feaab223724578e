//! Orders: checkout of a claim, payment of an awaiting order, and reading them.

use axum::extract::State;
use chrono::{DateTime, Utc};
use gavel_domain::ids::{ClaimId, OrderId, PaymentId, SaleId};
use gavel_domain::orders::{self, OrderStatus, Viewer};
use gavel_domain::payments::{Payment, PaymentMethod, PaymentStatus};
use gavel_workflows::checkout::OrderView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Buyer, Caller, Json, Merchant, Path, Query};
use crate::idempotency::{self, Effect, IdempotencyKey, Mode};
use crate::pagination::PageParams;
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, JSON_BODY, KEYED, problems};
use crate::routes::api_enum;
use crate::state::AppState;

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(idempotency::keyed(state, Mode::Outcome, routes!(checkout)))
        .routes(idempotency::keyed(state, Mode::Outcome, routes!(pay)))
        .routes(idempotency::keyed(state, Mode::Effect, routes!(cancel)))
        .routes(routes!(get))
        .routes(routes!(list))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "payment_method": "pm_card_visa" })))]
pub struct PayRequest {
    /// A Stripe payment method (`pm_card_visa` in test mode).
    payment_method: String,
}

api_enum!(
    /// `awaiting_payment` (auction orders) → `pending_verification` → `paid` | `payment_failed`;
    /// `refunded` when paid for a unit that was gone; `lapsed` when an auction's order was not
    /// paid by its `payment_due_at`; `cancelled` when its merchant cancelled it unpaid.
    OrderStatusBody from OrderStatus { AwaitingPayment, PendingVerification, Paid, PaymentFailed, Refunded, Lapsed, Cancelled }
);

api_enum!(
    /// `processing` and `unknown` are open (the outcome is being verified).
    PaymentStatusBody from PaymentStatus { Processing, Unknown, Succeeded, Failed, Refunded }
);

/// One attempt to take payment for an order.
#[derive(Serialize, ToSchema)]
#[schema(as = Payment)]
pub struct PaymentBody {
    #[schema(value_type = String, examples("pay_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: PaymentId,
    /// 1 for the first attempt.
    attempt: i32,
    status: PaymentStatusBody,
    /// The provider's decline code (`card_declined`), when it failed.
    failure_code: Option<String>,
    failure_message: Option<String>,
}

impl From<&Payment> for PaymentBody {
    fn from(p: &Payment) -> Self {
        Self {
            id: p.id,
            attempt: p.attempt,
            status: p.status.into(),
            failure_code: p.failure_code.clone(),
            failure_message: p.failure_message.clone(),
        }
    }
}

/// What a buyer pays for: a sale's unit (or an auction's lot).
#[derive(Serialize, ToSchema)]
#[schema(as = Order, examples(json!({
    "object": "order", "id": "ord_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "status": "paid",
    "sale_id": "sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "claim_id": "clm_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b",
    "amount": 1999, "currency": "usd", "payment_due_at": null, "created_at": "2026-12-01T12:01:00Z",
    "paid_at": "2026-12-01T12:01:01Z",
    "payment": { "id": "pay_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "attempt": 1, "status": "succeeded",
                 "failure_code": null, "failure_message": null }
})))]
pub struct OrderBody {
    /// Always `order`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("ord_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: OrderId,
    status: OrderStatusBody,
    #[schema(value_type = Option<String>, examples("sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    sale_id: Option<SaleId>,
    #[schema(value_type = Option<String>, examples("clm_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    claim_id: Option<ClaimId>,
    /// Minor units.
    amount: i64,
    currency: String,
    /// Auction orders: pay before this.
    payment_due_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    /// The latest payment attempt (not shown in lists).
    payment: Option<PaymentBody>,
}

impl From<&OrderView> for OrderBody {
    fn from(v: &OrderView) -> Self {
        let o = &v.order;
        Self {
            object: "order",
            id: o.id,
            status: o.status.into(),
            sale_id: o.subject.sale(),
            claim_id: o.subject.claim(),
            amount: o.amount.minor(),
            currency: o.amount.currency().code().to_owned(),
            payment_due_at: o.payment_due_at,
            created_at: o.created_at,
            paid_at: o.paid_at,
            payment: v.payment.as_ref().map(PaymentBody::from),
        }
    }
}

problems!(CheckoutErrors: NotFound, ClaimExpired, CheckoutInProgress, SaleNotActive, PaymentsUnavailable, Contention;
    AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Pay for a held claim. Waits for the payment up to a few seconds and answers
/// with the order as it then stands; a repeat returns the same order.
#[utoipa::path(post, path = "/v1/claims/{id}/checkout", tag = "orders", operation_id = "checkout_claim",
    security(("buyer_token" = [])), request_body = PayRequest,
    params(("id" = String, Path, description = "The claim's id (`clm_…`)."), IdempotencyKey),
    responses((status = 200, description = "The order: `paid`, `pending_verification` (being verified; poll it) or `payment_failed`.",
               body = OrderBody),
              CheckoutErrors))]
pub async fn checkout(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(claim): Path<ClaimId>,
    Json(body): Json<PayRequest>,
) -> ApiResult<axum::Json<OrderBody>> {
    let method = PaymentMethod::parse(&body.payment_method)?;
    Ok(axum::Json(OrderBody::from(&state.payments.checkout(buyer, claim, &method).await?)))
}

problems!(PayErrors: NotFound, OrderNotPayable, CheckoutInProgress, PaymentWindowClosed, PaymentsUnavailable, Contention;
    AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Pay for an order awaiting payment (an auction's winner, within its window).
/// An order that is not awaiting payment — already paid, a sale's — is `409 order_not_payable`.
#[utoipa::path(post, path = "/v1/orders/{id}/pay", tag = "orders", operation_id = "pay_order",
    security(("buyer_token" = [])), request_body = PayRequest,
    params(("id" = String, Path, description = "The order's id (`ord_…`)."), IdempotencyKey),
    responses((status = 200, description = "The order as the payment left it.", body = OrderBody), PayErrors))]
pub async fn pay(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(order): Path<OrderId>,
    Json(body): Json<PayRequest>,
) -> ApiResult<axum::Json<OrderBody>> {
    let method = PaymentMethod::parse(&body.payment_method)?;
    Ok(axum::Json(OrderBody::from(&state.payments.pay(buyer, order, &method).await?)))
}

problems!(CancelOrderErrors: NotFound, OrderNotCancellable; AUTHENTICATED, KEYED, DATABASE, EDGE);

/// Cancel an auction's order that is not paid and has no payment in flight
/// (`awaiting_payment` or `payment_failed`): it becomes `cancelled` (final),
/// `order.cancelled` goes to the merchant's webhooks, its reminders and lapse
/// stop, and the lot may be offered to the runner-up
/// (`POST /v1/auctions/{id}/second_chance`). Cancelling a cancelled order
/// answers it again. A sale's order, a paid or lapsed one, or one whose
/// payment is being verified is `409 order_not_cancellable` with `order_status`.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders", operation_id = "cancel_order",
    security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The order's id (`ord_…`)."), IdempotencyKey),
    responses((status = 200, description = "The order, `cancelled`.", body = OrderBody), CancelOrderErrors))]
pub async fn cancel(
    Merchant(merchant): Merchant,
    effect: Effect,
    Path(id): Path<OrderId>,
) -> ApiResult<axum::Json<OrderBody>> {
    let mut tx = effect.begin().await?;
    let order = gavel_workflows::auction_close::cancel(&mut tx, merchant, id).await?;
    tx.commit().await?;
    Ok(axum::Json(OrderBody::from(&OrderView { order, payment: None })))
}

problems!(GetOrderErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// One order: a merchant's (of its sales and auctions) or a buyer's own.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", operation_id = "get_order",
    security(("merchant_key" = []), ("buyer_token" = [])),
    params(("id" = String, Path, description = "The order's id (`ord_…`).")),
    responses((status = 200, description = "The order with its latest payment.", body = OrderBody), GetOrderErrors))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<OrderId>,
) -> ApiResult<axum::Json<OrderBody>> {
    Ok(axum::Json(OrderBody::from(&state.payments.get(viewer(caller), id).await?)))
}

#[derive(Serialize, ToSchema)]
#[schema(as = OrderList)]
pub struct OrderList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<OrderBody>,
    has_more: bool,
}

problems!(ListOrdersErrors: InvalidRequest; AUTHENTICATED, DATABASE, EDGE);

/// Orders, newest first: a merchant's, or a buyer's own.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", operation_id = "list_orders",
    security(("merchant_key" = []), ("buyer_token" = [])), params(PageParams),
    responses((status = 200, description = "A page of orders (without their payments).", body = OrderList),
              ListOrdersErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<OrderList>> {
    let page = params.parse::<OrderId>("order")?;
    let (rows, has_more) = page.cut(orders::list(&state.pool, viewer(caller), page.fetch(), page.after).await?);
    // Lists show orders without their attempts; GET one for its payment.
    let data = rows.into_iter().map(|order| OrderBody::from(&OrderView { order, payment: None })).collect();
    Ok(axum::Json(OrderList { object: "list", data, has_more }))
}

fn viewer(caller: Caller) -> Viewer {
    match caller {
        Caller::Merchant(m) => Viewer::Merchant(m),
        Caller::Buyer(b) => Viewer::Buyer(b),
    }
}
