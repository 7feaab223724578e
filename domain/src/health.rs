//! What a process knows of its own long-lived parts (job workers, listeners,
//! ticks): each reports itself up or down, and `/readyz` shows the lot. The
//! names are fixed strings, so the report stays small and bounded.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The newest of Gavel's migrations applied to the database (`None` before
/// the first): what readiness compares with the build's own.
pub async fn applied_migration(pool: &PgPool) -> crate::Result<Option<i64>> {
    Ok(sqlx::query_scalar!("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?)
}

/// The state of one part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PartState {
    /// Registered, not running yet.
    Starting,
    Up {
        since: DateTime<Utc>,
    },
    /// Stopped by an error; its supervisor restarts it after a backoff.
    Down {
        since: DateTime<Utc>,
        error: String,
        restarts: u32,
    },
}

/// Shared by every part of one process (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    parts: Arc<Mutex<BTreeMap<&'static str, PartState>>>,
}

impl Liveness {
    pub fn up(&self, part: &'static str) {
        self.set(part, PartState::Up { since: Utc::now() });
    }

    pub fn down(&self, part: &'static str, error: impl Into<String>, restarts: u32) {
        let mut error: String = error.into();
        // Bounded: an error text is for a person, not a dump.
        if let Some((cut, _)) = error.char_indices().nth(300) {
            error.truncate(cut);
        }
        self.set(part, PartState::Down { since: Utc::now(), error, restarts });
    }

    /// Every part that has reported, by name.
    pub fn report(&self) -> BTreeMap<&'static str, PartState> {
        self.parts.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// True when every part that has reported is up.
    pub fn all_up(&self) -> bool {
        self.report().values().all(|s| matches!(s, PartState::Up { .. }))
    }

    fn set(&self, part: &'static str, state: PartState) {
        let mut parts = match self.parts.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        parts.insert(part, state);
    }
}

/// The shortest and longest pause before a stopped part is started again.
const RESTART_MIN: Duration = Duration::from_millis(250);
const RESTART_MAX: Duration = Duration::from_secs(15);
/// A run that lasted this long was healthy: the next failure starts the
/// backoff afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Keeps a long-lived part running until `stop` is cancelled: whenever a run
/// ends — with an error, a panic, or by returning while nobody asked it to
/// stop — the part is reported down, logged, and started again after an
/// exponential backoff with jitter. Each run must watch `stop` itself and
/// return once it is cancelled. The returned future never ends before `stop`.
///
/// The part is registered (as starting) at once, before the future is
/// polled, so readiness never reports a process whose parts have not begun.
pub fn supervise<F, Fut>(
    part: &'static str,
    liveness: Liveness,
    stop: CancellationToken,
    run: F,
) -> impl Future<Output = ()> + Send + 'static
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    liveness.set(part, PartState::Starting);
    keep_running(part, liveness, stop, run)
}

async fn keep_running<F, Fut>(part: &'static str, liveness: Liveness, stop: CancellationToken, mut run: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut restarts = 0u32;
    let mut backoff = RESTART_MIN;
    while !stop.is_cancelled() {
        liveness.up(part);
        let started = tokio::time::Instant::now();
        let outcome = tokio::spawn(run()).await;
        if stop.is_cancelled() {
            return;
        }
        let error = match outcome {
            Ok(Ok(())) => "ended without being asked to stop".to_owned(),
            Ok(Err(error)) => error,
            Err(join) => format!("panicked: {join}"),
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = RESTART_MIN;
        }
        restarts = restarts.saturating_add(1);
        let pause = crate::backoff::jitter(backoff);
        tracing::error!(part, error, restarts, retry_in_ms = pause.as_millis() as u64, "part stopped; restarting");
        metrics::counter!("gavel_part_restarts_total", "part" => part).increment(1);
        liveness.down(part, error, restarts);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        backoff = (backoff * 2).min(RESTART_MAX);
    }
}
