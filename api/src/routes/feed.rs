//! The live feed over Server-Sent Events: `GET /v1/auctions/{id}/events` and
//! `GET /v1/sales/{id}/events` (public). A new watcher gets one `snapshot`
//! (no id), then every stored event after it, each with its `seq` as `id`;
//! one that comes back with `Last-Event-ID: N` (or `?last_event_id=N`, for
//! browsers that cannot set the header) gets every stored event after `N`,
//! then the live ones: no gap, no repeat. The events come from the process's
//! [`FeedHub`]; a watcher that falls behind its buffer is cut off.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::Stream;
use gavel_domain::auctions;
use gavel_domain::feed::{self, Stored, Topic};
use gavel_domain::ids::{AuctionId, SaleId};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Path, Query};
use crate::feed_hub::{FeedHub, Item, PAGE, Shared, Slot, Subscription};
use crate::problem::{DATABASE, EDGE, ErrorCode, Problem, problems};
use crate::routes::auctions::AuctionStatusBody;
use crate::routes::sales::SaleStatusBody;
use crate::server::CloseConnection;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(auction_events)).routes(routes!(sale_events))
}

/// Where a returning watcher resumes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResumeParams {
    /// The last event id seen, for clients that cannot send the
    /// `Last-Event-ID` header (the header wins when both are given).
    last_event_id: Option<String>,
}

/// The `Last-Event-ID` to resume after: `None` for a new watcher.
fn resume_after(parts_headers: &axum::http::HeaderMap, query: Option<String>) -> Result<Option<i64>, Problem> {
    let header = parts_headers.get("last-event-id");
    let (raw, field) = match header {
        Some(value) => (value.to_str().map(str::to_owned).unwrap_or_else(|_| "\u{fffd}".into()), "Last-Event-ID"),
        None => match query {
            Some(q) => (q, "last_event_id"),
            None => return Ok(None),
        },
    };
    let raw = raw.trim();
    if raw.is_empty() {
        // EventSource sends no header before its first id; an empty one means the same.
        return Ok(None);
    }
    match raw.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(Problem::new(ErrorCode::InvalidRequest, "the last event id must be an event's id: an integer ≥ 0")
            .field(field)),
    }
}

/// A sale's state, as the `snapshot` event shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = SaleSnapshot)]
pub struct SaleSnapshotBody {
    status: SaleStatusBody,
    available: i32,
    held: i32,
    sold: i32,
}

/// An auction's state, as the `snapshot` event shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = AuctionSnapshot)]
pub struct AuctionSnapshotBody {
    status: AuctionStatusBody,
    current_price: i64,
    min_next_bid: i64,
    /// Masked (`b***7`); null before the first bid.
    leader: Option<String>,
    bid_count: u32,
    ends_at: DateTime<Utc>,
    extensions: i32,
}

problems!(FeedErrors: NotFound, InvalidRequest, TooManyWatchers; DATABASE, EDGE);

const STREAM_DOC: &str = "A `text/event-stream` that stays open: a `snapshot` event (no `id`) unless resuming, \
then one event per change, each with `id: <seq>` and JSON `data`, and a comment line as heartbeat.";

/// Watch an auction live (Server-Sent Events; no credentials needed).
///
/// Events: `snapshot` `{status, current_price, min_next_bid, leader, bid_count, ends_at, extensions}` (on
/// connect without `Last-Event-ID`, no `id`); `bid` `{sequence, current_price, min_next_bid, leader,
/// bid_count, ends_at}`; `extended` `{ends_at, extensions}`; `ended` `{result}`; `cancelled` `{}`.
#[utoipa::path(get, path = "/v1/auctions/{id}/events", tag = "live feed", operation_id = "watch_auction",
    params(("id" = String, Path, description = "The auction's id (`auc_…`)."),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id."),
           ResumeParams),
    responses((status = 200, description = STREAM_DOC, content_type = "text/event-stream", body = String),
              FeedErrors))]
pub async fn auction_events(
    State(state): State<AppState>,
    Path(id): Path<AuctionId>,
    Query(params): Query<ResumeParams>,
    req: Request,
) -> ApiResult<Response> {
    let (parts, _) = req.into_parts();
    let after = resume_after(&parts.headers, params.last_event_id)?;
    let topic = Topic::Auction(id);
    let slot = admit(&state.feed)?;
    let (snapshot, start) = match after {
        Some(n) => {
            auctions::get_public(state.feed.pool(), id).await?; // an unknown auction is a 404
            (None, n)
        }
        None => {
            // The feed's position first, then the state: an event landing
            // between the two is in the state and is sent as well (events
            // carry whole values, so seeing one twice changes nothing).
            let seq = feed::last_seq(state.feed.pool(), topic).await?;
            let auction = auctions::get_public(state.feed.pool(), id).await?;
            let body = AuctionSnapshotBody {
                status: auction.status.into(),
                current_price: auction.current_price().minor(),
                min_next_bid: auction.min_next_bid().minor(),
                leader: auction.leader().map(|l| l.bidder.masked()),
                bid_count: auction.book.bid_count(),
                ends_at: auction.ends_at,
                extensions: auction.extensions,
            };
            (Some(snapshot_event(&body)), seq)
        }
    };
    Ok(stream(&state.feed, topic, start, snapshot, slot, &parts))
}

/// Watch a sale's stock live (Server-Sent Events; no credentials needed).
///
/// Events: `snapshot` `{status, available, held, sold}` (on connect without `Last-Event-ID`, no `id`);
/// `stock` `{available, held, sold}` (at most about ten a second); `sold_out` `{}`; `started` `{}`;
/// `ended` `{}`; `cancelled` `{}`.
#[utoipa::path(get, path = "/v1/sales/{id}/events", tag = "live feed", operation_id = "watch_sale",
    params(("id" = String, Path, description = "The sale's id (`sale_…`)."),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id."),
           ResumeParams),
    responses((status = 200, description = STREAM_DOC, content_type = "text/event-stream", body = String),
              FeedErrors))]
pub async fn sale_events(
    State(state): State<AppState>,
    Path(id): Path<SaleId>,
    Query(params): Query<ResumeParams>,
    req: Request,
) -> ApiResult<Response> {
    let (parts, _) = req.into_parts();
    let after = resume_after(&parts.headers, params.last_event_id)?;
    let topic = Topic::Sale(id);
    let slot = admit(&state.feed)?;
    let sale = feed::sale_snapshot(state.feed.pool(), id).await?.ok_or_else(|| Problem::not_found("sale"))?;
    let (snapshot, start) = match after {
        Some(n) => (None, n),
        None => {
            let body = SaleSnapshotBody {
                status: sale.status.into(),
                available: sale.available,
                held: sale.held,
                sold: sale.sold,
            };
            (Some(snapshot_event(&body)), sale.seq)
        }
    };
    Ok(stream(&state.feed, topic, start, snapshot, slot, &parts))
}

fn admit(hub: &FeedHub) -> Result<Slot, Problem> {
    hub.admit().ok_or_else(|| {
        Problem::new(ErrorCode::TooManyWatchers, "this server watches as many feeds as it can; retry shortly")
            .retry_after(5)
    })
}

fn snapshot_event(body: &impl Serialize) -> Event {
    Event::default().event("snapshot").data(serde_json::to_string(body).unwrap_or_else(|_| "{}".into()))
}

fn stream(hub: &FeedHub, topic: Topic, start: i64, snapshot: Option<Event>, slot: Slot, parts: &Parts) -> Response {
    // Cut off by the hub → the connection is closed (see `server::serve`):
    // a client that does not read would never see a stream's end.
    let cut = parts.extensions.get::<CloseConnection>().map(|c| c.0.clone()).unwrap_or_default();
    let watch = Watch {
        hub: hub.clone(),
        topic,
        last: start,
        queued_to: start,
        pending: VecDeque::new(),
        snapshot,
        sub: None,
        cut,
        deadline: Instant::now() + hub.config().max_stream,
        _slot: slot,
    };
    let events = futures::stream::unfold(watch, |mut w| async move { w.next().await.map(|e| (Ok(e), w)) });
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(events);
    Sse::new(events).keep_alive(KeepAlive::new().interval(hub.config().heartbeat).text("heartbeat")).into_response()
}

/// One watcher's stream.
struct Watch {
    hub: FeedHub,
    topic: Topic,
    /// The last `seq` sent.
    last: i64,
    /// The last `seq` sent or queued in `pending`.
    queued_to: i64,
    pending: VecDeque<Item>,
    snapshot: Option<Event>,
    /// `None` while replaying from the store.
    sub: Option<Subscription>,
    cut: CancellationToken,
    deadline: Instant,
    _slot: Slot,
}

impl Watch {
    /// The next event to send; `None` ends the stream (cut off, shut down,
    /// too old, or the store could not be read: the client resumes).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(snapshot) = self.snapshot.take() {
                return Some(snapshot);
            }
            if let Some(item) = self.pending.pop_front() {
                if item.seq <= self.last {
                    continue;
                }
                self.last = item.seq;
                return Some(Event::default().id(item.seq.to_string()).event(&item.event).data(&item.data));
            }
            if self.sub.is_none() {
                // Replay from the store a page at a time; at its end join the
                // hub, then read once more: whatever was committed between the
                // last page and joining is in the store, and everything later
                // comes through the hub.
                let full = self.read_more().await?;
                if !full {
                    self.sub = Some(self.hub.subscribe(self.topic, self.queued_to, self.cut.clone()));
                    while self.read_more().await? {}
                }
                continue;
            }
            let item = {
                let sub = self.sub.as_mut()?;
                tokio::select! {
                    item = sub.rx.recv() => item?,
                    _ = self.cut.cancelled() => return None,
                    _ = self.hub.stopping().cancelled() => return None,
                    _ = tokio::time::sleep_until(self.deadline) => return None,
                }
            };
            // A gap (the hub started this topic from an older position than
            // ours, or read ahead of a slow replay) is filled from the store.
            while item.seq > self.queued_to + 1 {
                if !self.read_more().await? {
                    break;
                }
            }
            if item.seq > self.queued_to {
                self.queued_to = item.seq;
                self.pending.push_back(item);
            }
        }
    }

    /// Queues the next page of stored events; `Some(true)` if it was full.
    async fn read_more(&mut self) -> Option<bool> {
        let rows: Vec<Stored> = match feed::read_after(self.hub.pool(), self.topic, self.queued_to, PAGE).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(topic = %self.topic, error = %err, "feed replay failed; ending the stream");
                return None;
            }
        };
        let full = rows.len() as i64 == PAGE;
        for row in rows {
            self.queued_to = self.queued_to.max(row.seq);
            self.pending.push_back(Arc::new(Shared::from(row)));
        }
        Some(full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn the_last_event_id_is_a_non_negative_integer_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_after(&headers, None).ok(), Some(None));
        assert_eq!(resume_after(&headers, Some("7".into())).ok(), Some(Some(7)));
        headers.insert("last-event-id", HeaderValue::from_static("12"));
        assert_eq!(resume_after(&headers, Some("7".into())).ok(), Some(Some(12)), "the header wins");
        headers.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(resume_after(&headers, None).ok(), Some(None));
        for bad in ["-1", "x", "1.5", "99999999999999999999"] {
            headers.insert("last-event-id", HeaderValue::from_static(bad));
            let problem = resume_after(&headers, None).err();
            assert_eq!(problem.and_then(|p| p.field), Some("Last-Event-ID".to_owned()), "{bad}");
        }
        let problem = resume_after(&HeaderMap::new(), Some("abc".into())).err();
        assert_eq!(problem.and_then(|p| p.field), Some("last_event_id".to_owned()));
    }
}
