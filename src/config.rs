//! Typed configuration, read once at start: built-in defaults
//! (`config/default.toml`, compiled in) < `config/$GAVEL_ENV.toml` < environment.
//! A wrong setting fails at start with the setting's name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use gavel_api::bid_engine::BidConfig;
use gavel_api::claim_engine::{ClaimConfig, Strategy};
use gavel_domain::auth::{HashLimits, PasswordCost};
use gavel_notifier::apns::ApnsConfig;
use gavel_notifier::fcm::FcmConfig;
use gavel_workflows::auction_close::PaymentReminders;
use gavel_workflows::checkout::{CheckoutConfig, PausePoint};
use gavel_workflows::stripe::GatewayConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `GAVEL_ENV` (`test`, `bench`; `demo` for `gavel demo`); `None` is production.
    #[serde(skip)]
    pub environment: Option<String>,
    pub http: Http,
    pub ops: Ops,
    pub database: Database,
    pub auth: Auth,
    pub claims: Claims,
    pub auctions: Auctions,
    pub jobs: Jobs,
    pub payments: Payments,
    pub auction_payments: AuctionPayments,
    pub feed: Feed,
    /// The APNs channel (`[apns]`); off unless `key_file` is set.
    #[serde(default)]
    pub apns: ApnsConfig,
    /// The FCM channel (`[fcm]`); off unless `project_id` and `service_account_file` are set.
    #[serde(default)]
    pub fcm: FcmConfig,
    pub notifier: Notifier,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub faults: Faults,
    /// Merchant webhooks (`[webhooks]`).
    #[serde(default)]
    pub webhooks: Webhooks,
    #[serde(default)]
    pub reconciliation: Reconciliation,
}

/// Finance reconciliation (`[reconciliation]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Reconciliation {
    /// An open payment (or owed refund) older than this is `stuck_pending`.
    pub stuck_pending_after_seconds: u64,
    /// Provider objects per list request (1..=100), ledger rows per page.
    pub page_size: u8,
    /// The daily platform run over yesterday (UTC), queued once across processes.
    pub daily: bool,
    /// When the daily run is queued: `HH:MM` (or `HH:MM:SS`) after midnight UTC.
    pub daily_at: String,
}

impl Reconciliation {
    /// How long after midnight UTC the daily run is queued, or `None` when it is off.
    pub fn daily_offset(&self) -> anyhow::Result<Option<std::time::Duration>> {
        if !self.daily {
            return Ok(None);
        }
        let at = chrono::NaiveTime::parse_from_str(&self.daily_at, "%H:%M")
            .or_else(|_| chrono::NaiveTime::parse_from_str(&self.daily_at, "%H:%M:%S"))
            .map_err(|_| {
                anyhow::anyhow!("reconciliation.daily_at: {:?} is not a time of day as HH:MM[:SS] (UTC)", self.daily_at)
            })?;
        let seconds = chrono::Timelike::num_seconds_from_midnight(&at);
        Ok(Some(std::time::Duration::from_secs(u64::from(seconds))))
    }
}

impl Default for Reconciliation {
    fn default() -> Self {
        Self { stuck_pending_after_seconds: 3600, page_size: 100, daily: true, daily_at: "00:10".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Http {
    pub addr: SocketAddr,
    /// A client must send its request head within this (slow-loris bound).
    pub header_read_timeout_ms: u64,
    /// A request not answered within this gets `408 request_timeout`.
    pub request_timeout_ms: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// On SIGTERM, how long in-flight requests and jobs get before the
    /// process exits anyway.
    pub shutdown_grace_ms: u64,
}

/// The operations listener (`/healthz`, `/readyz`, `/metrics`) of a process
/// that runs no API (`--role workers`); the API serves them itself.
#[derive(Debug, Clone, Deserialize)]
pub struct Ops {
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Database {
    pub url: Option<String>,
    pub max_connections: u32,
    pub data_dir: PathBuf,
    pub name: String,
    /// Look for a local server before starting a private cluster.
    pub probe_local: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Auth {
    pub token_secret: String,
    pub token_ttl_hours: i64,
    pub password_memory_kib: u32,
    pub password_iterations: u32,
    /// How long a sign-up or sign-in waits for a hashing turn before `503 overloaded`.
    pub hash_queue_wait_ms: u64,
    pub signups_per_ip_per_minute: u32,
    pub signins_per_ip_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub strategy: Strategy,
    pub max_batch: usize,
    pub sold_out_ttl_ms: u64,
    pub rate_limit_per_minute: u32,
}

/// Bidding (`[auctions]`).
#[derive(Debug, Clone, Deserialize)]
pub struct Auctions {
    /// `batched` (a lane per hot auction, many bids per commit) or `naive`
    /// (one SERIALIZABLE transaction per bid).
    pub bid_strategy: Strategy,
    /// Most bids placed in one transaction.
    pub bid_max_batch: usize,
    /// Longest a lane holds a batch open for the bidders it answered last (ms; 0: no wait).
    pub bid_gather_ms: u64,
    /// Attempts one buyer may make on one auction in 60 s; more are `429 rate_limited`.
    pub bids_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Jobs {
    pub poll_interval_ms: u64,
    pub batch_size: usize,
    /// The workers' own connection pool, apart from the API's, so a burst of
    /// requests never starves the queues (nor the reverse).
    pub pool_size: u32,
    /// A failed job runs again after this long, doubled after each further
    /// failure up to `retry_max_ms`; its 25th failure dead-letters it.
    pub retry_first_ms: u64,
    pub retry_max_ms: u64,
}

/// An auction order's payment deadline: when its buyer is reminded.
#[derive(Debug, Clone, Deserialize)]
pub struct AuctionPayments {
    /// Seconds before the deadline; those longer than the window are skipped.
    pub reminder_lead_seconds: Vec<u64>,
}

/// Stripe and the checkout saga.
#[derive(Debug, Clone, Deserialize)]
pub struct Payments {
    /// `STRIPE_API_BASE`.
    pub stripe_api_base: String,
    /// `STRIPE_SECRET_KEY`.
    pub stripe_secret_key: String,
    /// `STRIPE_WEBHOOK_SECRET`: verifies `Stripe-Signature` on `/v1/stripe/webhook`.
    pub stripe_webhook_secret: String,
    pub stripe_timeout_ms: u64,
    pub checkout_wait_ms: u64,
    pub resume_after_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    /// A refund that fails is tried again after each delay (seconds); after the
    /// last it is dead-lettered (kind `job`) for an operator.
    pub refund_retry_schedule_seconds: Vec<f64>,
}

/// The live feed (SSE).
#[derive(Debug, Clone, Deserialize)]
pub struct Feed {
    /// A comment line this often on an idle stream.
    pub heartbeat_ms: u64,
    /// Streams one process serves at once; more get `503 too_many_watchers`.
    pub max_watchers: usize,
    /// Events queued per watcher; a watcher this far behind is cut off.
    pub buffer: usize,
    /// A stream ends after this long; the client resumes with `Last-Event-ID`.
    pub max_stream_seconds: u64,
    /// The workers publish a sale's held-back trailing stock this often.
    pub stock_flush_ms: u64,
    /// Feeds of sales and auctions closed longer ago than this are pruned.
    pub retention_days: i32,
}

/// The notifier (`[notifier]`): channels, retries, loops.
#[derive(Debug, Clone, Deserialize)]
pub struct Notifier {
    /// `SMTP_URL`: `smtp://host:port` (plain) or `smtps://host[:port]` (TLS).
    /// Unset: no email channel (no email deliveries are made).
    pub smtp_url: Option<String>,
    /// `SMTP_FROM`.
    pub smtp_from: String,
    pub smtp_timeout_ms: u64,
    pub smtp_pool_size: u32,
    /// The delay before each attempt, in seconds (fractions allowed); one attempt per element.
    pub retry_schedule_seconds: Vec<f64>,
    /// Where links in messages point.
    pub app_url: String,
    /// How often idle loops look for new events and due deliveries.
    pub poll_interval_ms: u64,
    pub fanout_batch: i64,
    pub delivery_batch: i64,
    /// Sends in flight per provider, per process.
    pub concurrency: usize,
    /// Delivery loops per process, each claiming its own batches.
    pub delivery_workers: usize,
    /// A claimed delivery is the worker's for this long; then another takes it.
    pub lease_seconds: u64,
    pub send_timeout_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    /// The notifier's own connections.
    pub pool_size: u32,
    /// How long a collapsible non-critical push waits for newer ones of its group (seconds; 0: off).
    pub coalesce_seconds: f64,
    /// Non-critical pushes per buyer per `push_limit_window_seconds`, across processes (0: no limit).
    pub push_limit: u32,
    pub push_limit_window_seconds: u64,
}

/// Merchant webhooks (`[webhooks]`): the dispatcher in the workers role.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Webhooks {
    /// The delay before each attempt, in seconds (fractions allowed); one attempt per element.
    pub retry_schedule_seconds: Vec<f64>,
    /// Allow private, loopback and link-local targets (tests and the demo only).
    pub allow_private_targets: bool,
    /// One attempt's whole budget (connect, send, answer).
    pub timeout_ms: u64,
    /// Sends in flight per process.
    pub concurrency: usize,
    /// Sends in flight per endpoint.
    pub per_endpoint_concurrency: i64,
    pub fanout_batch: i64,
    pub poll_interval_ms: u64,
    pub lease_seconds: u64,
    /// An endpoint whose every attempt failed for this long is disabled (Svix: 5 days).
    pub disable_after_seconds: f64,
    /// After a rotation, the old secret also signs for this long.
    pub rotation_overlap_seconds: u64,
    /// A receiver answering 429/502/504 without `Retry-After` gets nothing for this long.
    pub throttle_ms: u64,
    /// The dispatcher's own connections.
    pub pool_size: u32,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self {
            retry_schedule_seconds: vec![0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
            allow_private_targets: false,
            timeout_ms: 15_000,
            concurrency: 512,
            per_endpoint_concurrency: 16,
            fanout_batch: 500,
            poll_interval_ms: 100,
            lease_seconds: 60,
            disable_after_seconds: 5.0 * 86_400.0,
            rotation_overlap_seconds: 86_400,
            throttle_ms: 5_000,
            pool_size: 8,
        }
    }
}

/// Crash-test hooks; empty in production.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Faults {
    pub pause_at: Option<PausePoint>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Admin {
    pub token: Option<String>,
}

impl Config {
    /// Reads the layers; `GAVEL_ENV` picks the optional file, `GAVEL_CONFIG_DIR`
    /// where files are looked for (default `config`).
    pub fn load() -> Result<Self, Box<figment::Error>> {
        let dir = std::env::var("GAVEL_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let env = std::env::var("GAVEL_ENV").ok().filter(|e| !e.is_empty());
        let mut config: Self = Self::files(&dir, env.as_deref())
            .merge(Env::prefixed("GAVEL_").split("__").ignore(&["env", "config_dir"]))
            .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
            .merge(Env::raw().only(&["GAVEL_HTTP_ADDR"]).map(|_| "http.addr".into()))
            .merge(Env::raw().only(&["GAVEL_OPS_ADDR"]).map(|_| "ops.addr".into()))
            .merge(Env::raw().only(&["GAVEL_ADMIN_TOKEN"]).map(|_| "admin.token".into()))
            .merge(Env::raw().only(&["GAVEL_TOKEN_SECRET"]).map(|_| "auth.token_secret".into()))
            .merge(Env::raw().only(&["STRIPE_API_BASE"]).map(|_| "payments.stripe_api_base".into()))
            .merge(Env::raw().only(&["STRIPE_SECRET_KEY"]).map(|_| "payments.stripe_secret_key".into()))
            .merge(Env::raw().only(&["STRIPE_WEBHOOK_SECRET"]).map(|_| "payments.stripe_webhook_secret".into()))
            .merge(Env::raw().only(&["APNS_KEY_FILE"]).map(|_| "apns.key_file".into()))
            .merge(Env::raw().only(&["APNS_KEY_ID"]).map(|_| "apns.key_id".into()))
            .merge(Env::raw().only(&["APNS_TEAM_ID"]).map(|_| "apns.team_id".into()))
            .merge(Env::raw().only(&["APNS_TOPIC"]).map(|_| "apns.topic".into()))
            .merge(Env::raw().only(&["APNS_ENDPOINT"]).map(|_| "apns.endpoint".into()))
            .merge(Env::raw().only(&["FCM_PROJECT_ID"]).map(|_| "fcm.project_id".into()))
            // FCM_SERVICE_ACCOUNT_FILE wins over Google's usual variable.
            .merge(Env::raw().only(&["GOOGLE_APPLICATION_CREDENTIALS"]).map(|_| "fcm.service_account_file".into()))
            .merge(Env::raw().only(&["FCM_SERVICE_ACCOUNT_FILE"]).map(|_| "fcm.service_account_file".into()))
            .merge(Env::raw().only(&["FCM_API_BASE"]).map(|_| "fcm.api_base".into()))
            .merge(Env::raw().only(&["SMTP_URL"]).map(|_| "notifier.smtp_url".into()))
            .merge(Env::raw().only(&["SMTP_FROM"]).map(|_| "notifier.smtp_from".into()))
            .extract()
            .map_err(Box::new)?;
        config.environment = env;
        Ok(config)
    }

    /// The file layers alone, ignoring the process environment (for tests).
    pub fn for_environment(env: &str) -> Result<Self, Box<figment::Error>> {
        let mut config: Self = Self::files("config", Some(env)).extract().map_err(Box::new)?;
        config.environment = Some(env.to_owned());
        Ok(config)
    }

    /// Gavel never serves with a publicly known secret: outside the `test`,
    /// `bench` and `demo` environments every secret must be set, long enough,
    /// and not one of the values published in this repository. The error
    /// names the setting and its environment variable.
    pub fn check_secrets(&self) -> Result<(), String> {
        let published_ok = matches!(self.environment.as_deref(), Some("test" | "bench" | "demo"));
        let secrets = [
            ("auth.token_secret", "GAVEL_TOKEN_SECRET", self.auth.token_secret.as_str(), 32),
            ("payments.stripe_secret_key", "STRIPE_SECRET_KEY", self.payments.stripe_secret_key.as_str(), 8),
            (
                "payments.stripe_webhook_secret",
                "STRIPE_WEBHOOK_SECRET",
                self.payments.stripe_webhook_secret.as_str(),
                8,
            ),
        ];
        for (setting, variable, value, min_len) in secrets {
            if value.trim().is_empty() {
                return Err(format!("{setting} is not set: set {variable} (a secret of your own) before serving"));
            }
            if published_ok {
                continue;
            }
            if PUBLISHED_SECRETS.contains(&value) {
                return Err(format!(
                    "{setting} ({variable}) is a value published with Gavel's source: anyone could use it; set a secret of your own"
                ));
            }
            if value.chars().count() < min_len {
                return Err(format!("{setting} ({variable}) must be at least {min_len} characters"));
            }
        }
        if let Some(token) = self.admin.token.as_deref().filter(|t| !t.is_empty())
            && !published_ok
        {
            if PUBLISHED_SECRETS.contains(&token) {
                return Err(
                    "admin.token (GAVEL_ADMIN_TOKEN) is a value published with Gavel's source; set your own".into()
                );
            }
            if token.chars().count() < 16 {
                return Err("admin.token (GAVEL_ADMIN_TOKEN) must be at least 16 characters".into());
            }
        }
        Ok(())
    }

    fn files(dir: &str, env: Option<&str>) -> Figment {
        let figment = Figment::new().merge(Toml::string(include_str!("../config/default.toml")));
        match env {
            Some(env) => figment.merge(Toml::string(&env_file(dir, env))),
            None => figment,
        }
    }

    pub fn password_cost(&self) -> PasswordCost {
        PasswordCost { memory_kib: self.auth.password_memory_kib, iterations: self.auth.password_iterations }
    }

    pub fn hash_limits(&self) -> HashLimits {
        HashLimits::per_core(Duration::from_millis(self.auth.hash_queue_wait_ms))
    }

    pub fn http_limits(&self) -> gavel_api::server::Limits {
        let h = &self.http;
        gavel_api::server::Limits {
            header_read: Duration::from_millis(h.header_read_timeout_ms),
            request: Duration::from_millis(h.request_timeout_ms),
            max_connections: h.max_connections,
            grace: Duration::from_millis(h.shutdown_grace_ms),
        }
    }

    pub fn bid_config(&self) -> BidConfig {
        BidConfig {
            strategy: self.auctions.bid_strategy,
            max_batch: self.auctions.bid_max_batch.max(1),
            gather: Duration::from_millis(self.auctions.bid_gather_ms),
            bids_per_minute: self.auctions.bids_per_minute,
            reminders: self.payment_reminders(),
            ..BidConfig::default()
        }
    }

    pub fn feed_config(&self) -> gavel_api::feed_hub::FeedConfig {
        let f = &self.feed;
        gavel_api::feed_hub::FeedConfig {
            heartbeat: Duration::from_millis(f.heartbeat_ms.max(1)),
            max_watchers: f.max_watchers.max(1),
            buffer: f.buffer.max(1),
            max_stream: Duration::from_secs(f.max_stream_seconds.max(1)),
        }
    }

    pub fn claim_config(&self) -> ClaimConfig {
        ClaimConfig {
            strategy: self.claims.strategy,
            max_batch: self.claims.max_batch.max(1),
            sold_out_ttl: Duration::from_millis(self.claims.sold_out_ttl_ms),
            ..ClaimConfig::default()
        }
    }
}

impl Config {
    pub fn gateway_config(&self) -> GatewayConfig {
        let p = &self.payments;
        GatewayConfig {
            api_base: p.stripe_api_base.clone(),
            secret_key: p.stripe_secret_key.clone(),
            timeout: Duration::from_millis(p.stripe_timeout_ms),
            breaker_failures: p.breaker_failures,
            breaker_cooldown: Duration::from_millis(p.breaker_cooldown_ms),
        }
    }

    pub fn payment_reminders(&self) -> PaymentReminders {
        PaymentReminders::new(self.auction_payments.reminder_lead_seconds.iter().map(|s| Duration::from_secs(*s)))
    }

    /// The notifier's delivery policy (coalescing, per-buyer push limits).
    pub fn notifier_policy(&self) -> anyhow::Result<gavel_notifier::policy::PolicyConfig> {
        let n = &self.notifier;
        if !(0.0..=3600.0).contains(&n.coalesce_seconds) {
            anyhow::bail!("notifier.coalesce_seconds: {} is not 0 to 3600 seconds", n.coalesce_seconds);
        }
        if n.push_limit > 0 && n.push_limit_window_seconds == 0 {
            anyhow::bail!("notifier.push_limit_window_seconds: must be above 0 when notifier.push_limit is set");
        }
        Ok(gavel_notifier::policy::PolicyConfig {
            coalesce: std::time::Duration::from_secs_f64(n.coalesce_seconds),
            push_limit: n.push_limit,
            push_window: std::time::Duration::from_secs(n.push_limit_window_seconds),
        })
    }

    /// The delays between a failing job's runs: at least 1 ms, doubling up to
    /// at least the first.
    pub fn job_retry(&self) -> gavel_workers::JobRetry {
        let j = &self.jobs;
        gavel_workers::JobRetry {
            first: Duration::from_millis(j.retry_first_ms.max(1)),
            max: Duration::from_millis(j.retry_max_ms.max(j.retry_first_ms)),
        }
    }

    /// The notifier's retry schedule, refusing a bad delay (naming the setting).
    pub fn notifier_schedule(&self) -> Result<gavel_notifier::schedule::RetrySchedule, String> {
        let delays = schedule("notifier.retry_schedule_seconds", &self.notifier.retry_schedule_seconds)?;
        Ok(gavel_notifier::schedule::RetrySchedule::from_delays(delays))
    }

    /// `[reconciliation]`, its page size held to Stripe's 1..=100.
    pub fn reconciliation_config(&self) -> gavel_workflows::reconciliation::ReconciliationConfig {
        gavel_workflows::reconciliation::ReconciliationConfig {
            stuck_pending_after: Duration::from_secs(self.reconciliation.stuck_pending_after_seconds),
            page_size: self.reconciliation.page_size.clamp(1, 100),
        }
    }

    /// The webhook dispatcher's settings, refusing a bad schedule (naming the setting).
    pub fn webhook_dispatch(&self, owner: String) -> Result<gavel_workers::webhooks::DispatchConfig, String> {
        let w = &self.webhooks;
        let delays = schedule("webhooks.retry_schedule_seconds", &w.retry_schedule_seconds)?;
        if !w.disable_after_seconds.is_finite() || w.disable_after_seconds <= 0.0 {
            return Err("webhooks.disable_after_seconds must be a positive number of seconds".into());
        }
        Ok(gavel_workers::webhooks::DispatchConfig {
            schedule: gavel_workers::webhooks::schedule::Schedule::new(delays),
            allow_private_targets: w.allow_private_targets,
            timeout: Duration::from_millis(w.timeout_ms.max(1)),
            concurrency: w.concurrency.max(1),
            per_endpoint: w.per_endpoint_concurrency.max(1),
            fanout_batch: w.fanout_batch.max(1),
            poll: Duration::from_millis(w.poll_interval_ms.max(5)),
            lease: Duration::from_secs(w.lease_seconds.max(1)).max(Duration::from_millis(w.timeout_ms) * 2),
            disable_after: Duration::from_secs_f64(w.disable_after_seconds),
            throttle: Duration::from_millis(w.throttle_ms),
            owner,
        })
    }

    /// The checkout saga's settings, refusing a bad refund schedule (naming the setting).
    pub fn checkout_config(&self) -> Result<CheckoutConfig, String> {
        let p = &self.payments;
        Ok(CheckoutConfig {
            wait: Duration::from_millis(p.checkout_wait_ms),
            resume_after: Duration::from_millis(p.resume_after_ms),
            pause_at: self.faults.pause_at,
            refund_backoff: schedule("payments.refund_retry_schedule_seconds", &p.refund_retry_schedule_seconds)?,
        })
    }
}

/// A retry schedule setting's delays (seconds, fractions allowed), refusing
/// a negative, non-finite or longer-than-a-week delay by the setting's name.
fn schedule(setting: &str, seconds: &[f64]) -> Result<Vec<Duration>, String> {
    seconds
        .iter()
        .map(|s| match Duration::try_from_secs_f64(*s) {
            Ok(d) if d <= Duration::from_secs(7 * 86_400) => Ok(d),
            _ => Err(format!("{setting}: {s} is not a delay of 0 to 604800 seconds")),
        })
        .collect()
}

/// Secrets that ship in this repository (config files, docs, tests, older
/// defaults): never accepted outside `test`, `bench` and `demo`.
const PUBLISHED_SECRETS: &[&str] = &[
    "gavel-dev-secret-change-me",
    "gavel-published-dev-secret-never-use",
    "sk_test_gavel_dev",
    "whsec_gavel_dev",
    "whsec_standin",
    "whsec_bench",
    "whsec_e2e_checkout",
    "gavel-test-operator-token",
];

/// The environment's file, if there is one (built-in copies for the ones we ship,
/// so the binary works from any directory).
fn env_file(dir: &str, env: &str) -> String {
    let path = PathBuf::from(dir).join(format!("{env}.toml"));
    match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) => match env {
            "test" => include_str!("../config/test.toml").to_owned(),
            "bench" => include_str!("../config/bench.toml").to_owned(),
            _ => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_takes_fractions_and_refuses_bad_delays_by_name() {
        assert_eq!(
            schedule("x.s", &[0.0, 0.25, 5.0]),
            Ok(vec![Duration::ZERO, Duration::from_millis(250), Duration::from_secs(5)])
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY, 8.0 * 86_400.0] {
            let err = schedule("notifier.retry_schedule_seconds", &[1.0, bad]).expect_err("refused");
            assert!(err.starts_with("notifier.retry_schedule_seconds: "), "{err}");
        }
    }

    #[test]
    fn a_bad_refund_schedule_is_refused_by_name() {
        let mut config = Config::for_environment("test").expect("config/test.toml loads");
        config.payments.refund_retry_schedule_seconds = vec![1.0, -5.0];
        let err = config.checkout_config().expect_err("refused");
        assert!(err.starts_with("payments.refund_retry_schedule_seconds: -5 "), "{err}");
    }
}
