//! The webhook dispatcher (issue 12): two supervised loops in the workers
//! role. The fan-out takes outbox events (`events.dispatched_at IS NULL`, its
//! own mark) and makes one delivery per subscribed endpoint in the same
//! transaction that marks them. The delivery loop claims due deliveries with a
//! lease — at most `per_endpoint` in flight per endpoint, `concurrency` in all —
//! and sends each in its own task, so a slow or dead endpoint holds only its
//! own slots and never delays another's deliveries. Each attempt is signed per
//! Standard Webhooks, bounded by `timeout`, logged with its status code and
//! latency, and settled: 2xx attempts by a settler that records many per
//! statement ([`settle::delivered`]), the others one per transaction
//! ([`deliveries::finish`]); either way the attempt row commits with the
//! delivery's new state. A 2xx answer frees its send's slot at once (the
//! endpoint's and the process's): the delivery stays `sending` under its
//! lease until the settler commits it, so a crash in between sends it again.

pub mod http;
pub mod schedule;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use gavel_domain::ids::WebhookDeliveryId;
use gavel_domain::webhooks::deliveries::{self, Attempt, Claimed, EndpointAfter, Next};
use gavel_domain::webhooks::settle::{self, DeliveredAttempt};
use gavel_domain::webhooks::signing;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, header};
use sqlx::PgPool;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::http::WebhookClient;
use self::schedule::Schedule;

/// The dispatcher's settings (`[webhooks]`).
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub schedule: Schedule,
    /// Connect to private, loopback and link-local addresses (tests, the demo).
    pub allow_private_targets: bool,
    /// One attempt's whole budget: connect, send, answer (15 s).
    pub timeout: Duration,
    /// Sends in flight in this process.
    pub concurrency: usize,
    /// Sends in flight per endpoint (across processes, counted in the database).
    pub per_endpoint: i64,
    /// Events fanned out per transaction.
    pub fanout_batch: i64,
    /// How often idle loops look for work.
    pub poll: Duration,
    /// A claimed delivery is this process's for this long.
    pub lease: Duration,
    /// An endpoint all of whose attempts failed for this long is disabled (5 days).
    pub disable_after: Duration,
    /// A receiver asking to slow down (429/502/504) without `Retry-After` is left alone this long.
    pub throttle: Duration,
    /// A name unique to this process (the lease owner).
    pub owner: String,
}

/// The two loops over one pool and one HTTP client.
#[derive(Clone)]
pub struct Dispatcher {
    pool: PgPool,
    client: WebhookClient,
    config: Arc<DispatchConfig>,
    permits: Arc<Semaphore>,
    /// Signalled when a send's slot is free (an answer handed to the settler,
    /// or an attempt settled).
    freed: Arc<Notify>,
    /// Deliveries answered 2xx and handed to the settler, not yet settled:
    /// still `sending` in the database, but no longer holding their endpoint's slot.
    answered: Arc<Mutex<HashSet<WebhookDeliveryId>>>,
}

/// A 2xx attempt handed to the settler.
type ToSettle = DeliveredAttempt;

/// Attempts settled per statement, at most.
const SETTLE_BATCH: usize = 512;
/// Settling statements in flight at once.
const SETTLERS: usize = 2;
/// While claims find work, the next one waits this long after the last, so
/// slots freed meanwhile are claimed together: a claim's cost is mostly per
/// statement, and answered sends free their slots one at a time.
const CLAIM_GAP: Duration = Duration::from_millis(10);

impl Dispatcher {
    pub fn new(pool: PgPool, config: DispatchConfig) -> Result<Self, String> {
        let connect = config.timeout.min(Duration::from_secs(10));
        let client = http::client(config.allow_private_targets, connect, config.concurrency.max(1))
            .map_err(|e| format!("webhook TLS: {e}"))?;
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Ok(Self {
            pool,
            client,
            config: Arc::new(config),
            permits,
            freed: Arc::new(Notify::new()),
            answered: Arc::default(),
        })
    }

    /// The fan-out loop, until stopped or the database fails (the supervisor restarts it).
    pub async fn run_fanout(self, stop: CancellationToken) -> Result<(), String> {
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let first = self.config.schedule.first();
            match deliveries::fan_out(&self.pool, self.config.fanout_batch.max(1), first).await {
                Ok(done) if done.events == 0 => idle(&stop, self.config.poll).await,
                Ok(done) => {
                    metrics::counter!("gavel_webhook_deliveries_created_total").increment(done.deliveries as u64);
                }
                Err(err) => return Err(format!("webhook fan-out: {err}")),
            }
        }
    }

    /// The delivery loop: claims what is due while permits are free, sends
    /// each in its own task; 2xx attempts are settled in batches by the
    /// settler ([`settle::delivered`]), the others one by one
    /// ([`deliveries::finish`]). A permit is held from the claim until the
    /// answer is handed to the settler (a 2xx) or the attempt is settled (any
    /// other). Sends in flight when it stops are abandoned (their leases run
    /// out and another process takes them).
    pub async fn run_delivery(self, stop: CancellationToken) -> Result<(), String> {
        let (settle_tx, settle_rx) = mpsc::channel(self.config.concurrency.max(1));
        let settler = tokio::spawn(self.clone().run_settler(settle_rx));
        let claimed = self.claim_loop(&stop, settle_tx).await;
        // The sends were aborted with the claim loop, so the channel is closed:
        // the settler records what it was handed, then ends.
        let _ = settler.await;
        claimed
    }

    async fn claim_loop(&self, stop: &CancellationToken, settle_tx: mpsc::Sender<ToSettle>) -> Result<(), String> {
        let mut sends = JoinSet::new();
        let reclaim_every = (self.config.lease / 2).max(Duration::from_secs(1));
        let mut reclaimed_at: Option<Instant> = None;
        // When the last claim that found work was made.
        let mut claimed_at: Option<Instant> = None;
        loop {
            while sends.try_join_next().is_some() {}
            if stop.is_cancelled() {
                return Ok(());
            }
            if reclaimed_at.is_none_or(|at| at.elapsed() >= reclaim_every) {
                deliveries::reclaim_expired(&self.pool)
                    .await
                    .map_err(|e| format!("reclaiming expired webhook leases: {e}"))?;
                reclaimed_at = Some(Instant::now());
            }
            let first = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                permit = self.permits.clone().acquire_owned() => permit.map_err(|e| e.to_string())?,
            };
            if let Some(gap) = claimed_at.and_then(|at| CLAIM_GAP.checked_sub(at.elapsed())) {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(gap) => {}
                }
            }
            let mut permits = vec![first];
            while let Ok(p) = self.permits.clone().try_acquire_owned() {
                permits.push(p);
            }
            let answered: Vec<WebhookDeliveryId> = lock(&self.answered).iter().copied().collect();
            let claimed = deliveries::claim_due(
                &self.pool,
                &self.config.owner,
                self.config.lease,
                permits.len() as i64,
                self.config.per_endpoint.max(1),
                &answered,
            )
            .await
            .map_err(|e| format!("claiming webhook deliveries: {e}"))?;
            if claimed.is_empty() {
                claimed_at = None;
                drop(permits);
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = self.freed.notified() => {}
                }
                continue;
            }
            claimed_at = Some(Instant::now());
            for (delivery, permit) in claimed.into_iter().zip(permits) {
                let this = self.clone();
                let settle_tx = settle_tx.clone();
                sends.spawn(async move { this.deliver(delivery, permit, settle_tx).await });
            }
        }
    }

    /// Settles handed-over 2xx attempts, many per statement, a few
    /// statements at a time.
    async fn run_settler(self, mut rx: mpsc::Receiver<ToSettle>) {
        let mut settling = JoinSet::new();
        let mut batch = Vec::with_capacity(SETTLE_BATCH);
        loop {
            if rx.recv_many(&mut batch, SETTLE_BATCH).await == 0 {
                break;
            }
            while settling.len() >= SETTLERS {
                settling.join_next().await;
            }
            let this = self.clone();
            let items = std::mem::replace(&mut batch, Vec::with_capacity(SETTLE_BATCH));
            settling.spawn(async move { this.settle_delivered(items).await });
        }
        while settling.join_next().await.is_some() {}
    }

    /// Records the attempts; then they are no longer this process's answered
    /// ones (settled, or — when recording failed — leased `sending` rows that
    /// count against their endpoint until the lease runs out).
    async fn settle_delivered(&self, attempts: Vec<ToSettle>) {
        match settle::delivered(&self.pool, &self.config.owner, &attempts).await {
            Ok(settled) => {
                for lost in settle::unsettled(&attempts, &settled) {
                    tracing::warn!(delivery = %lost, "webhook delivery's lease was lost; its attempt is not recorded");
                }
            }
            // The leases run out and the deliveries are sent again: at least once.
            Err(err) => tracing::warn!(deliveries = attempts.len(), error = %err, "recording webhook attempts failed"),
        }
        let mut answered = lock(&self.answered);
        for a in &attempts {
            answered.remove(&a.delivery);
        }
        drop(answered);
        self.freed.notify_one();
    }

    /// One attempt, logged and settled: a 2xx is handed to the settler (and
    /// the permit freed once it took it), anything else is settled here.
    async fn deliver(&self, delivery: Claimed, permit: OwnedSemaphorePermit, settle_tx: mpsc::Sender<ToSettle>) {
        let started = Instant::now();
        let answer = self.send(&delivery).await;
        let duration = started.elapsed();
        let attempt = self.judge(&delivery, answer, duration);
        let outcome = match &attempt.next {
            Next::Delivered => "delivered",
            Next::Retry { counts: false, .. } => "throttled",
            Next::Retry { .. } => "retry",
            Next::GiveUp => "failed",
            Next::Gone => "gone",
        };
        metrics::counter!("gavel_webhook_attempts_total", "outcome" => outcome).increment(1);
        metrics::histogram!("gavel_webhook_attempt_seconds").record(duration.as_secs_f64());
        if let (Next::Delivered, Some(code)) = (&attempt.next, attempt.status_code) {
            let handed = DeliveredAttempt { delivery: delivery.id, status_code: code, duration };
            // Counted as answered before the settler can see it (and remove it).
            lock(&self.answered).insert(delivery.id);
            if settle_tx.send(handed).await.is_ok() {
                drop(permit);
                self.freed.notify_one();
                return;
            }
            // The settler is gone (stopping): settle it here.
            lock(&self.answered).remove(&delivery.id);
        }
        self.finish(&delivery, &attempt, permit).await;
    }

    async fn finish(&self, delivery: &Claimed, attempt: &Attempt, permit: OwnedSemaphorePermit) {
        match deliveries::finish(&self.pool, delivery, &self.config.owner, attempt, self.config.disable_after).await {
            Ok(Some(EndpointAfter::Disabled)) => {
                metrics::counter!("gavel_webhook_endpoints_disabled_total").increment(1);
                tracing::warn!(endpoint = %delivery.endpoint_id, url = %delivery.url,
                    "webhook endpoint disabled: {}", attempt.error.as_deref().unwrap_or("410 Gone"));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(delivery = %delivery.id, "webhook delivery's lease was lost; its attempt is not recorded")
            }
            // The lease runs out and the delivery is sent again: at least once.
            Err(err) => tracing::warn!(delivery = %delivery.id, error = %err, "recording a webhook attempt failed"),
        }
        drop(permit);
        self.freed.notify_one();
    }

    /// Sends the signed body; the status and `Retry-After`, or why no answer came.
    async fn send(&self, delivery: &Claimed) -> Result<(StatusCode, Option<Duration>), String> {
        let url = url::Url::parse(&delivery.url).map_err(|e| format!("bad URL: {e}"))?;
        http::check_literal(&url, self.config.allow_private_targets)?;
        let body = delivery.body();
        let now = Utc::now();
        let id = delivery.event_id.to_string();
        let signature = signing::header(&delivery.secrets(now), &id, now.timestamp(), &body);
        let request = Request::post(url.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "Gavel-Webhooks/1")
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.timestamp().to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| error_chain(&e))?;
            let status = response.status();
            let retry_after =
                response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
            // Read (at most 64 KiB of) the answer so the connection can be reused; its content is not used.
            let _ = Limited::new(response.into_body(), 64 * 1024).collect().await;
            Ok((status, retry_after))
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.config.timeout)),
        }
    }

    /// What an answer means for the delivery.
    fn judge(
        &self,
        delivery: &Claimed,
        answer: Result<(StatusCode, Option<Duration>), String>,
        duration: Duration,
    ) -> Attempt {
        let (status_code, error, retry_after, throttled) = match answer {
            Ok((status, _)) if status.is_success() => {
                return Attempt { status_code: Some(status.as_u16()), duration, error: None, next: Next::Delivered };
            }
            Ok((StatusCode::GONE, _)) => {
                return Attempt {
                    status_code: Some(410),
                    duration,
                    error: Some("410 Gone: the endpoint is disabled".into()),
                    next: Next::Gone,
                };
            }
            Ok((status, retry_after)) => {
                let throttled = matches!(status.as_u16(), 429 | 502 | 504);
                let error = if status.is_redirection() {
                    format!("{status}: redirects are not followed")
                } else {
                    status.to_string()
                };
                (Some(status.as_u16()), error, retry_after, throttled)
            }
            Err(error) => (None, error, None, false),
        };
        let next = if delivery.once {
            Next::GiveUp
        } else if throttled {
            // Slow this endpoint down; the attempt does not spend the budget.
            let pause = retry_after.unwrap_or(self.config.throttle).max(self.config.throttle);
            Next::Retry { after: pause, counts: false, pause: Some(pause) }
        } else {
            let failures = u32::try_from(delivery.failures).unwrap_or(0) + 1;
            match self.config.schedule.after(failures, retry_after) {
                Some(after) => Next::Retry { after, counts: true, pause: None },
                None => Next::GiveUp,
            }
        };
        Attempt { status_code, duration, error: Some(error), next }
    }
}

/// `Retry-After`: seconds, or an HTTP date; at most a day.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn idle(stop: &CancellationToken, poll: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(poll) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date_and_bounded() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("9999999"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
