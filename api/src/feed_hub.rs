//! The live feed's per-process hub: one `LISTEN` (the process's listener,
//! see `gavel::app`) tells it that a topic has new stored events; the hub
//! reads them **once per topic** (not once per watcher), coalescing bursts of
//! notifications into one read, and hands each event to every watcher of that
//! topic through the watcher's own bounded queue.
//!
//! A watcher whose queue is full — a client that does not read, so its
//! connection stopped taking bytes — is **cut off**: removed, its connection
//! closed, counted in `gavel_feed_watchers_dropped_total`. The hub never
//! waits for a watcher, so a slow client never slows the hub, other watchers
//! or the writers (who only append rows and `NOTIFY`).
//!
//! Nothing here is the source of truth: the stored events are. A watcher
//! replays from them before it subscribes and fills any gap from them, and
//! after the listener reconnects ([`FeedHub::resync`]) every watched topic is
//! read again from the last event the hub delivered, so a notification lost
//! with a connection loses no event.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use gavel_domain::feed::{self, Stored, Topic};
use sqlx::PgPool;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// The live feed's settings (`[feed]` in the configuration).
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// A comment line is sent this often on an idle stream.
    pub heartbeat: Duration,
    /// Watchers one process serves at once; more are answered `503`.
    pub max_watchers: usize,
    /// Events queued for one watcher; a watcher this far behind is cut off.
    /// Keep it above [`PAGE`]: one read hands over up to that many at once.
    pub buffer: usize,
    /// A stream ends after this long (the client reconnects with
    /// `Last-Event-ID`), so no connection is held forever.
    pub max_stream: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            max_watchers: 10_000,
            buffer: 1024,
            max_stream: Duration::from_secs(3600),
        }
    }
}

/// Events read from the store per query (replays and the hub's reads page).
pub const PAGE: i64 = 500;
/// Topics the hub reads at once after a burst of notifications.
const CONCURRENT_READS: usize = 8;

/// One event as every watcher of its topic shares it: its JSON is written
/// once, not once per watcher.
#[derive(Debug)]
pub struct Shared {
    pub seq: i64,
    pub event: String,
    pub data: String,
}

impl From<Stored> for Shared {
    fn from(s: Stored) -> Self {
        Self { seq: s.seq, event: s.event, data: serde_json::to_string(&s.data).unwrap_or_else(|_| "{}".into()) }
    }
}

pub type Item = Arc<Shared>;

struct Watcher {
    id: u64,
    tx: mpsc::Sender<Item>,
    /// Cancelled to cut the watcher off (closes its connection).
    cut: CancellationToken,
}

struct TopicState {
    /// The last `seq` the hub handed to this topic's watchers (or the `seq`
    /// its first watcher had read up to): the next read starts after it.
    last: i64,
    watchers: Vec<Watcher>,
}

struct Inner {
    pool: PgPool,
    config: FeedConfig,
    topics: Mutex<HashMap<Topic, TopicState>>,
    /// Watched topics with news the hub has not read yet.
    dirty: Mutex<HashSet<Topic>>,
    wake: Notify,
    next_id: AtomicU64,
    slots: Arc<Semaphore>,
    stopping: CancellationToken,
}

/// Shared by every feed request of a process (cheap to clone).
#[derive(Clone)]
pub struct FeedHub {
    inner: Arc<Inner>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A watcher's place in the hub; leaving drops it (and its topic, if it was
/// the last watcher).
pub struct Subscription {
    hub: FeedHub,
    topic: Topic,
    id: u64,
    pub rx: mpsc::Receiver<Item>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut topics = locked(&self.hub.inner.topics);
        if let Some(state) = topics.get_mut(&self.topic) {
            state.watchers.retain(|w| w.id != self.id);
            if state.watchers.is_empty() {
                topics.remove(&self.topic);
            }
        }
    }
}

/// A watcher's slot (the bound on watchers per process); the gauge follows it.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("gavel_feed_watchers").decrement(1.0);
    }
}

impl FeedHub {
    /// `stopping` ends every stream when the process shuts down.
    pub fn new(pool: PgPool, config: FeedConfig, stopping: CancellationToken) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_watchers.max(1)));
        Self {
            inner: Arc::new(Inner {
                pool,
                config,
                topics: Mutex::default(),
                dirty: Mutex::default(),
                wake: Notify::new(),
                next_id: AtomicU64::new(0),
                slots,
                stopping,
            }),
        }
    }

    pub fn config(&self) -> &FeedConfig {
        &self.inner.config
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stopping
    }

    /// A slot for one more watcher; `None` when the process serves its most.
    pub fn admit(&self) -> Option<Slot> {
        let permit = self.inner.slots.clone().try_acquire_owned().ok()?;
        metrics::gauge!("gavel_feed_watchers").increment(1.0);
        Some(Slot(permit))
    }

    /// Topics with at least one watcher here.
    pub fn watched(&self) -> usize {
        locked(&self.inner.topics).len()
    }

    /// The listener heard `"<topic> <seq>"`: if anyone here watches the
    /// topic and has not got `seq` yet, the hub reads it soon (many
    /// notifications before that read make one read).
    pub fn notified(&self, topic: Topic, seq: i64) {
        let news = locked(&self.inner.topics).get(&topic).is_some_and(|t| seq > t.last);
        if news {
            locked(&self.inner.dirty).insert(topic);
            self.inner.wake.notify_one();
        }
    }

    /// The listener (re)connected: notifications may have been missed while
    /// it was away, so every watched topic is read again from the store.
    pub fn resync(&self) {
        let topics: Vec<Topic> = locked(&self.inner.topics).keys().copied().collect();
        if !topics.is_empty() {
            locked(&self.inner.dirty).extend(topics);
            self.inner.wake.notify_one();
        }
    }

    /// Joins `topic`'s watchers; the caller has read the stored events up to
    /// `after` (a new topic is read from there on).
    pub fn subscribe(&self, topic: Topic, after: i64, cut: CancellationToken) -> Subscription {
        let (tx, rx) = mpsc::channel(self.inner.config.buffer.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut topics = locked(&self.inner.topics);
        let state = topics.entry(topic).or_insert_with(|| TopicState { last: after, watchers: Vec::new() });
        state.watchers.push(Watcher { id, tx, cut });
        Subscription { hub: self.clone(), topic, id, rx }
    }

    /// The hub's reader: waits for news, reads each dirty topic once and
    /// fans its new events out. A failed read puts the topic back and ends
    /// the run with the error, so its supervisor retries after a backoff (the
    /// watchers stay; they get the events once the database answers).
    pub async fn run(self, stop: CancellationToken) -> Result<(), String> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = self.inner.wake.notified() => {}
            }
            loop {
                let batch: Vec<Topic> = locked(&self.inner.dirty).drain().collect();
                if batch.is_empty() {
                    break;
                }
                let failures: Vec<String> = futures::stream::iter(batch)
                    .map(|topic| {
                        let hub = self.clone();
                        async move { hub.read(topic).await }
                    })
                    .buffer_unordered(CONCURRENT_READS)
                    .filter_map(|r| async move { r.err() })
                    .collect()
                    .await;
                if let Some(err) = failures.into_iter().next() {
                    return Err(format!("feed hub could not read events: {err}"));
                }
            }
        }
    }

    /// Reads `topic`'s events after the last one delivered and delivers them.
    async fn read(&self, topic: Topic) -> Result<(), String> {
        let Some(after) = locked(&self.inner.topics).get(&topic).map(|t| t.last) else {
            return Ok(()); // nobody watches it any more
        };
        metrics::counter!("gavel_feed_reads_total").increment(1);
        let rows = match feed::read_after(&self.inner.pool, topic, after, PAGE).await {
            Ok(rows) => rows,
            Err(err) => {
                locked(&self.inner.dirty).insert(topic);
                return Err(err.to_string());
            }
        };
        let more = rows.len() as i64 == PAGE;
        self.deliver(topic, rows);
        if more {
            locked(&self.inner.dirty).insert(topic);
        }
        Ok(())
    }

    /// Hands `rows` (in `seq` order) to every watcher of `topic`, cutting off
    /// those whose queue is full.
    fn deliver(&self, topic: Topic, rows: Vec<Stored>) {
        let mut topics = locked(&self.inner.topics);
        let Some(state) = topics.get_mut(&topic) else { return };
        for row in rows {
            if row.seq <= state.last {
                continue;
            }
            state.last = row.seq;
            let item = Arc::new(Shared::from(row));
            state.watchers.retain(|w| match w.tx.try_send(item.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(%topic, "feed watcher fell behind its buffer; cutting it off");
                    metrics::counter!("gavel_feed_watchers_dropped_total", "reason" => "lagging").increment(1);
                    w.cut.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
        metrics::counter!("gavel_feed_events_delivered_total").increment(state.watchers.len() as u64);
        if state.watchers.is_empty() {
            topics.remove(&topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use gavel_domain::ids::SaleId;

    fn hub(buffer: usize) -> FeedHub {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://postgres@127.0.0.1:5432/postgres")
            .expect("a lazy pool needs no server");
        FeedHub::new(pool, FeedConfig { buffer, ..FeedConfig::default() }, CancellationToken::new())
    }

    fn stored(seq: i64) -> Stored {
        Stored { seq, event: "stock".into(), data: serde_json::json!({}), created_at: Utc::now() }
    }

    #[tokio::test]
    async fn a_full_watcher_is_cut_off_and_the_others_still_get_every_event() {
        let hub = hub(2);
        let topic = Topic::Sale(SaleId::new());
        let (slow_cut, fast_cut) = (CancellationToken::new(), CancellationToken::new());
        let _slow = hub.subscribe(topic, 0, slow_cut.clone());
        let mut fast = hub.subscribe(topic, 0, fast_cut.clone());
        hub.deliver(topic, vec![stored(1), stored(2)]);
        let first = fast.rx.recv().await;
        assert_eq!(first.as_ref().map(|i| (i.seq, i.data.as_str())), Some((1, "{}")));
        assert_eq!(fast.rx.recv().await.map(|i| i.seq), Some(2));
        hub.deliver(topic, vec![stored(3)]);
        assert!(slow_cut.is_cancelled(), "the watcher that read nothing is cut off");
        assert!(!fast_cut.is_cancelled());
        assert_eq!(fast.rx.recv().await.map(|i| i.seq), Some(3));
        // Old or repeated rows are not handed out twice.
        hub.deliver(topic, vec![stored(2), stored(3), stored(4)]);
        assert_eq!(fast.rx.recv().await.map(|i| i.seq), Some(4));
        assert!(fast.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn notifications_mark_only_watched_topics_and_the_last_watcher_takes_its_topic_away() {
        let hub = hub(8);
        let (watched, unwatched) = (Topic::Sale(SaleId::new()), Topic::Sale(SaleId::new()));
        let sub = hub.subscribe(watched, 5, CancellationToken::new());
        hub.notified(unwatched, 1);
        hub.notified(watched, 5); // already had it
        assert!(locked(&hub.inner.dirty).is_empty());
        hub.notified(watched, 6);
        assert_eq!(locked(&hub.inner.dirty).len(), 1);
        assert_eq!(hub.watched(), 1);
        drop(sub);
        assert_eq!(hub.watched(), 0);
    }

    #[tokio::test]
    async fn watchers_are_bounded() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://postgres@127.0.0.1:5432/postgres")
            .expect("a lazy pool needs no server");
        let hub = FeedHub::new(pool, FeedConfig { max_watchers: 2, ..FeedConfig::default() }, CancellationToken::new());
        let (a, b) = (hub.admit(), hub.admit());
        assert!(a.is_some() && b.is_some());
        assert!(hub.admit().is_none());
        drop(a);
        assert!(hub.admit().is_some());
    }
}
