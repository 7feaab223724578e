//! Bids: `POST /v1/auctions/{id}/bids` (a buyer's attempt, judged by the bid
//! engine and stored, accepted or rejected) and `GET /v1/auctions/{id}/bids`
//! (the trail, public, masked unless the caller is the merchant or the bidder).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use gavel_domain::auctions::bids::{self, Attempt, Placed, Refusal, StoredBid};
use gavel_domain::auctions::{self, Auction};
use gavel_domain::ids::{AuctionId, BidId};
use gavel_domain::money::Currency;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Buyer, Caller, Json, MaybeCaller, Path, Query};
use crate::idempotency::{self, IdempotencyKey, Mode};
use crate::pagination::PageParams;
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, ErrorCode, JSON_BODY, KEYED, Problem, problems};
use crate::state::AppState;

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(idempotency::keyed(state, Mode::Outcome, routes!(create))).routes(routes!(list))
}

/// A bid. Amounts are integers in minor units; a fraction, a string or a
/// number beyond 64 bits is `422 invalid_request` and stores nothing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"amount": 1500, "max_amount": 4000})))]
pub struct CreateBid {
    /// Minor units, 1 to 99,999,999; at least the auction's `min_next_bid`.
    amount: i64,
    /// The most Gavel may bid for you (proxy bidding); defaults to `amount`,
    /// never below it. Never shown to others.
    max_amount: Option<i64>,
    /// Optional; when given it must be the auction's currency.
    currency: Option<String>,
}

/// An accepted bid and what it left behind.
#[derive(Serialize, ToSchema)]
#[schema(as = Bid, examples(json!({
    "object": "bid", "id": "bid_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "sequence": 7, "status": "accepted",
    "amount": 1500, "current_price": 1500, "min_next_bid": 1550, "leading": true,
    "ends_at": "2026-12-08T12:00:00Z"
})))]
pub struct BidBody {
    /// Always `bid`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("bid_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: BidId,
    /// The attempt's place in the auction's trail (from 1, without gaps).
    sequence: u64,
    /// Always `accepted` (a refused bid is a problem naming its `bid_id`).
    #[schema(value_type = String)]
    status: &'static str,
    amount: i64,
    /// The auction's price after this bid (minor units).
    current_price: i64,
    min_next_bid: i64,
    /// Whether this bidder leads after it (false: outbid at once by a proxy maximum).
    leading: bool,
    /// The auction's end after this bid (soft close may have moved it).
    ends_at: DateTime<Utc>,
}

problems!(CreateBidErrors: NotFound, BidTooLow, AuctionClosed, AuctionNotStarted, AmountOutOfRange,
    InvalidMaxAmount, CurrencyMismatch, OwnAuction, RateLimited, Contention;
    AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Bid on an auction (PRODUCT.md's price rule). Every attempt is stored in the
/// trail before it is answered; a refusal names it as `bid_id`.
#[utoipa::path(post, path = "/v1/auctions/{id}/bids", tag = "bids", operation_id = "create_bid",
    security(("buyer_token" = [])),
    params(("id" = String, Path, description = "The auction's id (`auc_…`)."), IdempotencyKey),
    request_body = CreateBid,
    responses((status = 201, description = "The bid, accepted.", body = BidBody), CreateBidErrors))]
pub async fn create(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(auction): Path<AuctionId>,
    headers: HeaderMap,
    Json(body): Json<CreateBid>,
) -> ApiResult<(StatusCode, axum::Json<BidBody>)> {
    let currency = match body.currency.as_deref() {
        Some(code) => {
            Some(code.parse::<Currency>().map_err(|_| Problem::invalid("currency", "not a supported ISO 4217 code"))?)
        }
        None => None,
    };
    // The idempotency layer has checked the header's form already.
    let idempotency_key =
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned).filter(|k| !k.is_empty());
    let attempt =
        Attempt { bidder: buyer, amount: body.amount, max_amount: body.max_amount, currency, idempotency_key };
    let placed = state.bids.bid(auction, attempt).await?;
    answer(&placed)
}

fn answer(placed: &Placed) -> ApiResult<(StatusCode, axum::Json<BidBody>)> {
    let refusal = match placed.outcome {
        Ok(leading) => {
            let body = BidBody {
                object: "bid",
                id: placed.id,
                sequence: placed.sequence,
                status: "accepted",
                amount: placed.amount,
                current_price: placed.current_price,
                min_next_bid: placed.min_next_bid,
                leading,
                ends_at: placed.ends_at,
            };
            return Ok((StatusCode::CREATED, axum::Json(body)));
        }
        Err(refusal) => refusal,
    };
    let (code, detail) = match refusal {
        Refusal::BidTooLow => (
            ErrorCode::BidTooLow,
            format!("the bid must be at least {} (and a leader's must raise their maximum)", placed.min_next_bid),
        ),
        Refusal::AuctionClosed => (ErrorCode::AuctionClosed, "the auction has ended or was cancelled".to_owned()),
        Refusal::AuctionNotStarted => (ErrorCode::AuctionNotStarted, "the auction has not started".to_owned()),
        Refusal::AmountOutOfRange => {
            (ErrorCode::AmountOutOfRange, "amounts must be from 1 to 99,999,999 minor units".to_owned())
        }
        Refusal::InvalidMaxAmount => (ErrorCode::InvalidMaxAmount, "max_amount must not be below amount".to_owned()),
        Refusal::CurrencyMismatch => {
            (ErrorCode::CurrencyMismatch, "the bid's currency is not the auction's".to_owned())
        }
        Refusal::OwnAuction => {
            (ErrorCode::OwnAuction, "this account belongs to the auction's merchant, who may not bid".to_owned())
        }
        Refusal::RateLimited => (ErrorCode::RateLimited, "too many bids on this auction; slow down".to_owned()),
    };
    let mut problem = Problem::new(code, detail).bid(placed.id.to_string(), placed.current_price, placed.min_next_bid);
    if let Some(wait) = placed.retry_after {
        problem = problem.retry_after(wait);
    }
    Err(problem)
}

/// One attempt of the trail.
#[derive(Serialize, ToSchema)]
#[schema(as = BidAttempt, examples(json!({
    "object": "bid_attempt", "id": "bid_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "sequence": 1, "status": "rejected",
    "reason": "bid_too_low", "amount": 900, "bidder": "b***b", "created_at": "2026-12-01T12:00:00.123456Z",
    "hash": "5a379d6c1cd551d4a439e672ece9d1d17e197e339b3459078f56cd6f935dfd3d"
})))]
pub struct BidAttemptBody {
    /// Always `bid_attempt`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("bid_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: BidId,
    sequence: i64,
    /// `accepted` or `rejected`.
    #[schema(value_type = String)]
    status: String,
    /// The rejection's code (`bid_too_low`, `auction_closed`, …); absent when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    amount: i64,
    /// Shown only to the auction's merchant and to the bidder themself.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_amount: Option<i64>,
    /// The bidder's id for the merchant and the bidder; masked (`b***7`) for everyone else.
    bidder: String,
    /// Server time, with microseconds (the trail's hash commits to them).
    created_at: DateTime<Utc>,
    /// The attempt's link in the hash chain (64 hex digits; README: "The bid trail").
    hash: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = BidAttemptList)]
pub struct BidAttemptList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<BidAttemptBody>,
    has_more: bool,
}

fn attempt_body(b: &StoredBid, auction: &Auction, caller: Option<Caller>) -> BidAttemptBody {
    let full = match caller {
        Some(Caller::Merchant(m)) => m == auction.merchant_id,
        Some(Caller::Buyer(buyer)) => buyer == b.bidder_id,
        None => false,
    };
    BidAttemptBody {
        object: "bid_attempt",
        id: b.id,
        sequence: b.sequence,
        status: b.status.clone(),
        reason: b.reason.clone(),
        amount: b.amount,
        max_amount: full.then_some(b.max_amount),
        bidder: if full { b.bidder_id.to_string() } else { b.bidder_id.masked() },
        created_at: b.created_at,
        hash: hex::encode(&b.hash),
    }
}

problems!(ListBidsErrors: NotFound, InvalidRequest, Unauthorized; DATABASE, EDGE);

/// The auction's trail in `sequence` order, rejected attempts included. No
/// credentials needed; the auction's merchant sees every bidder and maximum,
/// a buyer their own, everyone else masked bidders and no maxima.
#[utoipa::path(get, path = "/v1/auctions/{id}/bids", tag = "bids", operation_id = "list_bids",
    security((), ("merchant_key" = []), ("buyer_token" = [])),
    params(("id" = String, Path, description = "The auction's id (`auc_…`)."), PageParams),
    responses((status = 200, description = "A page of the trail.", body = BidAttemptList), ListBidsErrors))]
pub async fn list(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<AuctionId>,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<BidAttemptList>> {
    let page = params.parse::<BidId>("bid")?;
    let auction = auctions::get_public(&state.pool, id).await?;
    let (rows, has_more) = page.cut(bids::list(&state.pool, id, page.fetch(), page.after).await?);
    let data = rows.iter().map(|b| attempt_body(b, &auction, caller)).collect();
    Ok(axum::Json(BidAttemptList { object: "list", data, has_more }))
}
