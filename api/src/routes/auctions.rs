//! Auctions: create, read (public, with the result once ended), list, cancel,
//! and the merchant's second-chance offer to the runner-up. Bidding is `bids.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gavel_domain::auctions::increments::Band;
use gavel_domain::auctions::results::{self, Outcome};
use gavel_domain::auctions::{self, Auction, AuctionStatus, RawAuctionTerms, trail};
use gavel_domain::ids::{AuctionId, OrderId, ProductId};
use gavel_workflows::auction_lifecycle;
use gavel_workflows::checkout::OrderView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Json, Merchant, Path, Query};
use crate::idempotency::{self, Effect, IdempotencyKey, Mode};
use crate::pagination::PageParams;
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, JSON_BODY, KEYED, problems};
use crate::routes::api_enum;
use crate::state::AppState;

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(idempotency::keyed(state, Mode::Effect, routes!(create)))
        .routes(routes!(list))
        .routes(routes!(get))
        .routes(idempotency::keyed(state, Mode::Outcome, routes!(cancel)))
        .routes(idempotency::keyed(state, Mode::Effect, routes!(second_chance)))
}

/// One band of an increment table: from `from` (minor units, inclusive) up to
/// the next band's `from`, bids rise by `increment`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementBand {
    from: i64,
    increment: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({
    "product_id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "currency": "usd", "starting_price": 1000,
    "reserve_price": 5000, "starts_at": "2026-12-01T12:00:00Z", "ends_at": "2026-12-08T12:00:00Z"
})))]
pub struct CreateAuction {
    #[schema(value_type = String, examples("prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    product_id: ProductId,
    /// ISO 4217, lower case (`usd`).
    currency: String,
    /// Minor units, 1 to 99,999,999.
    starting_price: i64,
    /// Minor units, not below `starting_price`; below it at the end, no winner.
    reserve_price: Option<i64>,
    starts_at: DateTime<Utc>,
    /// At most 7 days after `starts_at`.
    ends_at: DateTime<Utc>,
    /// A bid this close to the end extends it; default 30.
    soft_close_seconds: Option<i64>,
    /// How far each extension moves the end; default 60.
    extension_seconds: Option<i64>,
    /// Default 5.
    max_extensions: Option<i64>,
    /// How long the winner has to pay; default 86400.
    payment_window_seconds: Option<i64>,
    /// The increment table; default eBay's (PRODUCT.md). The first band starts at 0.
    increments: Option<Vec<IncrementBand>>,
}

api_enum!(
    /// `scheduled → active → ended`, or `cancelled` before it ends.
    AuctionStatusBody from AuctionStatus { Scheduled, Active, Ended, Cancelled }
);

/// How an ended auction closed.
#[derive(Serialize, ToSchema)]
#[schema(as = AuctionResult)]
pub struct ResultBody {
    /// The winner, masked (`b***7`); null without bids or below the reserve.
    #[schema(value_type = Option<String>)]
    winner: Option<String>,
    /// Minor units.
    final_price: i64,
    /// The winner's order (null without a winner).
    #[schema(value_type = Option<String>)]
    order_id: Option<OrderId>,
    ended_at: DateTime<Utc>,
    /// The head of the bid trail's hash chain when it closed (64 hex digits).
    trail_hash: String,
}

impl From<&Outcome> for ResultBody {
    fn from(o: &Outcome) -> Self {
        Self {
            winner: o.winner_buyer_id.map(|w| w.masked()),
            final_price: o.final_price,
            order_id: o.order_id,
            ended_at: o.ended_at,
            trail_hash: trail::to_hex(&o.trail_hash),
        }
    }
}

/// An auction as anyone sees it.
#[derive(Serialize, ToSchema)]
#[schema(as = Auction, examples(json!({
    "object": "auction", "id": "auc_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b",
    "product_id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "status": "scheduled", "currency": "usd",
    "starting_price": 1000, "current_price": 1000, "min_next_bid": 1000, "leader": null, "bid_count": 0,
    "starts_at": "2026-12-01T12:00:00Z", "ends_at": "2026-12-08T12:00:00Z", "soft_close_seconds": 30,
    "extension_seconds": 60, "max_extensions": 5, "extensions": 0, "payment_window_seconds": 86400,
    "increments": [{"from": 0, "increment": 5}], "version": 1, "created_at": "2026-11-30T09:00:00Z",
    "ended_at": null
})))]
pub struct AuctionBody {
    /// Always `auction`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("auc_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: AuctionId,
    #[schema(value_type = String, examples("prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    product_id: ProductId,
    status: AuctionStatusBody,
    currency: String,
    /// Minor units.
    starting_price: i64,
    /// Minor units.
    current_price: i64,
    /// The least amount the next bid may carry.
    min_next_bid: i64,
    /// The leader, masked (`b***7`); null before the first bid.
    #[schema(value_type = Option<String>)]
    leader: Option<String>,
    bid_count: u32,
    starts_at: DateTime<Utc>,
    /// The current end; soft close moves it later.
    ends_at: DateTime<Utc>,
    soft_close_seconds: i32,
    extension_seconds: i32,
    max_extensions: i32,
    /// Extensions so far.
    extensions: i32,
    payment_window_seconds: i32,
    increments: Vec<IncrementBand>,
    /// Changes with every change of the auction.
    version: i32,
    created_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    /// Once ended: the winner (masked), final price, order and trail hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<ResultBody>,
}

impl AuctionBody {
    fn of(a: &Auction, outcome: Option<&Outcome>) -> Self {
        Self {
            object: "auction",
            id: a.id,
            product_id: a.product_id,
            status: a.status.into(),
            currency: a.currency.code().to_owned(),
            starting_price: a.starting_price().minor(),
            current_price: a.current_price().minor(),
            min_next_bid: a.min_next_bid().minor(),
            leader: a.leader().map(|l| l.bidder.masked()),
            bid_count: a.book.bid_count(),
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            soft_close_seconds: a.soft_close_seconds,
            extension_seconds: a.extension_seconds,
            max_extensions: a.max_extensions,
            extensions: a.extensions,
            payment_window_seconds: a.payment_window_seconds,
            increments: a
                .increments
                .bands()
                .iter()
                .map(|b| IncrementBand { from: b.from, increment: b.increment })
                .collect(),
            version: a.version,
            created_at: a.created_at,
            ended_at: a.ended_at,
            result: outcome.map(ResultBody::from),
        }
    }
}

impl From<&Auction> for AuctionBody {
    fn from(a: &Auction) -> Self {
        Self::of(a, None)
    }
}

/// An auction as its merchant sees it: the public view and the merchant-only fields.
#[derive(Serialize, ToSchema)]
#[schema(as = MerchantAuction)]
pub struct MerchantAuctionBody {
    #[serde(flatten)]
    auction: AuctionBody,
    /// Minor units; never shown to the public.
    reserve_price: Option<i64>,
    /// The leader's buyer id, unmasked; null before the first bid.
    #[schema(value_type = Option<String>)]
    leader_buyer_id: Option<String>,
    /// Once ended with a winner: the winner's buyer id, unmasked.
    #[schema(value_type = Option<String>)]
    winner_buyer_id: Option<String>,
    /// The runner-up's order, once a second-chance offer was made.
    #[schema(value_type = Option<String>)]
    second_chance_order_id: Option<OrderId>,
}

impl MerchantAuctionBody {
    fn of(a: &Auction, outcome: Option<&Outcome>) -> Self {
        Self {
            auction: AuctionBody::of(a, outcome),
            reserve_price: a.reserve_price().map(|m| m.minor()),
            leader_buyer_id: a.leader().map(|l| l.bidder.to_string()),
            winner_buyer_id: outcome.and_then(|o| o.winner_buyer_id).map(|w| w.to_string()),
            second_chance_order_id: outcome.and_then(|o| o.second_chance_order_id),
        }
    }
}

impl From<&Auction> for MerchantAuctionBody {
    fn from(a: &Auction) -> Self {
        Self::of(a, None)
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuctionList)]
pub struct AuctionList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<MerchantAuctionBody>,
    has_more: bool,
}

problems!(CreateAuctionErrors:; AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Create an auction; it opens and closes by itself.
#[utoipa::path(post, path = "/v1/auctions", tag = "auctions", operation_id = "create_auction",
    security(("merchant_key" = [])), params(IdempotencyKey), request_body = CreateAuction,
    responses((status = 201, description = "The auction, scheduled.", body = MerchantAuctionBody,
               headers(("ETag" = String, description = "The auction's version, quoted."))),
              CreateAuctionErrors))]
pub async fn create(
    Merchant(merchant): Merchant,
    effect: Effect,
    Json(body): Json<CreateAuction>,
) -> ApiResult<Response> {
    let raw = RawAuctionTerms {
        currency: Some(body.currency),
        starting_price: Some(body.starting_price),
        reserve_price: body.reserve_price,
        starts_at: Some(body.starts_at),
        ends_at: Some(body.ends_at),
        soft_close_seconds: body.soft_close_seconds,
        extension_seconds: body.extension_seconds,
        max_extensions: body.max_extensions,
        payment_window_seconds: body.payment_window_seconds,
        increments: body
            .increments
            .map(|bands| bands.into_iter().map(|b| Band { from: b.from, increment: b.increment }).collect()),
    };
    let mut tx = effect.begin().await?;
    let auction = auction_lifecycle::create_auction_in(&mut tx, merchant, body.product_id, raw).await?;
    tx.commit().await?;
    Ok(super::with_etag(StatusCode::CREATED, auction.version, MerchantAuctionBody::from(&auction)))
}

problems!(GetAuctionErrors: NotFound; DATABASE, EDGE);

/// Any auction, as the public sees it (no credentials needed). With its own
/// merchant's API key, the merchant's view (`reserve_price`,
/// `leader_buyer_id`, `winner_buyer_id`, `second_chance_order_id`).
#[utoipa::path(get, path = "/v1/auctions/{id}", tag = "auctions", operation_id = "get_auction",
    params(("id" = String, Path, description = "The auction's id (`auc_…`).")),
    responses((status = 200, description = "The auction (its merchant's view with its merchant's key).",
               body = AuctionBody, headers(("ETag" = String, description = "The auction's version, quoted."))),
              GetAuctionErrors))]
pub async fn get(
    State(state): State<AppState>,
    merchant: Result<Merchant, crate::problem::Problem>,
    Path(id): Path<AuctionId>,
) -> ApiResult<Response> {
    let auction = auctions::get_public(&state.pool, id).await?;
    let outcome = results::get(&state.pool, id).await?;
    if merchant.is_ok_and(|Merchant(m)| m == auction.merchant_id) {
        let body = MerchantAuctionBody::of(&auction, outcome.as_ref());
        return Ok(super::with_etag(StatusCode::OK, auction.version, body));
    }
    Ok(super::with_etag(StatusCode::OK, auction.version, AuctionBody::of(&auction, outcome.as_ref())))
}

problems!(ListAuctionsErrors: InvalidRequest; AUTHENTICATED, DATABASE, EDGE);

/// This merchant's auctions, newest first.
#[utoipa::path(get, path = "/v1/auctions", tag = "auctions", operation_id = "list_auctions",
    security(("merchant_key" = [])), params(PageParams),
    responses((status = 200, description = "A page of auctions.", body = AuctionList), ListAuctionsErrors))]
pub async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<AuctionList>> {
    let page = params.parse::<AuctionId>("auction")?;
    let (rows, has_more) = page.cut(auctions::list(&state.pool, merchant, page.fetch(), page.after).await?);
    let ids: Vec<AuctionId> = rows.iter().map(|a| a.id).collect();
    let outcomes = results::of_many(&state.pool, &ids).await?;
    let data =
        rows.iter().map(|a| MerchantAuctionBody::of(a, outcomes.iter().find(|o| o.auction_id == a.id))).collect();
    Ok(axum::Json(AuctionList { object: "list", data, has_more }))
}

problems!(CancelAuctionErrors: NotFound, AuctionNotEditable, VersionMismatch, Contention;
    AUTHENTICATED, KEYED, DATABASE, EDGE);

/// Cancel an auction that has not ended.
#[utoipa::path(post, path = "/v1/auctions/{id}/cancel", tag = "auctions", operation_id = "cancel_auction",
    security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The auction's id (`auc_…`)."), IdempotencyKey),
    responses((status = 200, description = "The auction, cancelled (or as it was, if already cancelled).",
               body = MerchantAuctionBody, headers(("ETag" = String, description = "The auction's version, quoted."))),
              CancelAuctionErrors))]
pub async fn cancel(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<AuctionId>,
) -> ApiResult<Response> {
    let auction = auction_lifecycle::cancel_auction(&state.pool, merchant, id).await?;
    Ok(super::with_etag(StatusCode::OK, auction.version, MerchantAuctionBody::from(&auction)))
}

problems!(SecondChanceErrors: NotFound, SecondChanceUnavailable, NoRunnerUp, Contention;
    AUTHENTICATED, KEYED, DATABASE, EDGE);

/// Offer an ended auction's lot to the runner-up once the winner's order has
/// lapsed: a new order awaiting the runner-up's payment at their highest
/// maximum, with its own payment window, reminders and lapse. One offer per
/// auction: asked again, it answers the same order (`200`).
#[utoipa::path(post, path = "/v1/auctions/{id}/second_chance", tag = "auctions", operation_id = "second_chance",
    security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The auction's id (`auc_…`)."), IdempotencyKey),
    responses((status = 201, description = "The runner-up's order, awaiting payment.", body = crate::routes::orders::OrderBody),
              (status = 200, description = "The offer made before: the same order.", body = crate::routes::orders::OrderBody),
              SecondChanceErrors))]
pub async fn second_chance(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    effect: Effect,
    Path(id): Path<AuctionId>,
) -> ApiResult<Response> {
    let mut tx = effect.begin().await?;
    let offer = gavel_workflows::auction_close::second_chance(&mut tx, merchant, id, &state.payment_reminders).await?;
    tx.commit().await?;
    let status = if offer.created { StatusCode::CREATED } else { StatusCode::OK };
    let body = crate::routes::orders::OrderBody::from(&OrderView { order: offer.order, payment: None });
    Ok((status, axum::Json(body)).into_response())
}
