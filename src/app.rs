//! `Application::build(config)` returns a running Gavel bound to its port:
//! the HTTP API, the job workers, or both, over one Postgres. Tests start the
//! real thing on port 0 through it.

use std::net::SocketAddr;

use anyhow::Context;
use chrono::Duration;
use gavel_api::AppState;
use gavel_api::auth_limits::AuthLimits;
use gavel_api::bid_engine::BidEngine;
use gavel_api::claim_engine::ClaimEngine;
use gavel_api::feed_hub::FeedHub;
use gavel_api::rate_limit::RateLimiter;
use gavel_api::routes::health::Ops;
use gavel_api::state::Shared;
use gavel_domain::auth::{Passwords, TokenSigner};
use gavel_domain::claims::STOCK_RETURNED_CHANNEL;
use gavel_domain::feed;
use gavel_domain::health::{Liveness, supervise};
use gavel_domain::ids::SaleId;
use gavel_workers::WorkerConfig;
use gavel_workflows::checkout::Checkout;
use gavel_workflows::stripe::Gateway;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::database;

/// What one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The HTTP API.
    Api,
    /// The durable job workers (sale lifecycle, hold sweeps).
    Workers,
    /// Notifications: the outbox fan-out and the delivery loop (email so far).
    Notifier,
}

pub struct Application {
    addr: Option<SocketAddr>,
    ops_addr: Option<SocketAddr>,
    pool: PgPool,
    shutdown: CancellationToken,
    grace: std::time::Duration,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl Application {
    /// Connects, migrates, binds and starts the given roles.
    pub async fn build(config: Config, roles: &[Role]) -> anyhow::Result<Self> {
        config.check_secrets().map_err(anyhow::Error::msg)?;
        let url = database::resolve_url(&config.database).await?;
        let pool = database::connect(&url, config.database.max_connections).await?;
        database::migrate(&pool).await?;

        let shutdown = CancellationToken::new();
        let liveness = Liveness::default();
        let mut tasks = JoinSet::new();
        let (mut addr, mut ops_addr) = (None, None);
        let gateway = Gateway::new(&config.gateway_config()).map_err(anyhow::Error::msg)?;
        let checkout = config.checkout_config().map_err(anyhow::Error::msg)?;
        let ops = Ops {
            pool: pool.clone(),
            liveness: liveness.clone(),
            admin_token: config.admin.token.as_deref().filter(|t| !t.is_empty()).map(Into::into),
        };

        // Parts register with `liveness` as they start; the listeners that
        // answer the probes start after them.
        if roles.contains(&Role::Workers) {
            let jobs_pool = database::connect(&url, config.jobs.pool_size.max(2)).await?;
            let payments = Checkout::new(jobs_pool.clone(), gateway.clone(), checkout.clone());
            let worker_config = WorkerConfig {
                poll_interval: std::time::Duration::from_millis(config.jobs.poll_interval_ms),
                batch_size: config.jobs.batch_size.max(1),
                instance: format!("gavel-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
                payment_reminders: config.payment_reminders(),
                feed_stock_flush: std::time::Duration::from_millis(config.feed.stock_flush_ms),
                retention: gavel_workflows::maintenance::Retention { feed_days: config.feed.retention_days },
                reconciliation: config.reconciliation_config(),
                daily_reconciliation: config.reconciliation.daily_offset()?,
                retry: config.job_retry(),
            };
            let run = gavel_workers::run(jobs_pool, worker_config, payments, liveness.clone(), shutdown.clone());
            tasks.spawn(part("workers", run));
            // Merchant webhooks (issue 12): the outbox fan-out and the delivery loop.
            let webhooks_pool = database::connect(&url, config.webhooks.pool_size.max(2)).await?;
            let owner = format!("webhooks-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
            let dispatch = config.webhook_dispatch(owner).map_err(anyhow::Error::msg)?;
            let dispatcher =
                gavel_workers::webhooks::Dispatcher::new(webhooks_pool, dispatch).map_err(anyhow::Error::msg)?;
            for (name, fanout) in [("webhooks:fanout", true), ("webhooks:delivery", false)] {
                let (d, stop) = (dispatcher.clone(), shutdown.clone());
                tasks.spawn(part(
                    name,
                    supervise(name, liveness.clone(), stop.clone(), move || {
                        let (d, stop) = (d.clone(), stop.clone());
                        async move { if fanout { d.run_fanout(stop).await } else { d.run_delivery(stop).await } }
                    }),
                ));
            }
        }
        if roles.contains(&Role::Notifier) {
            let notifier_pool = database::connect(&url, config.notifier.pool_size.max(2)).await?;
            let notifier = notifier(&config, notifier_pool)?;
            for (name, fanout) in [("notifier:fanout", true), ("notifier:delivery", false)] {
                let (n, stop) = (notifier.clone(), shutdown.clone());
                tasks.spawn(part(
                    name,
                    supervise(name, liveness.clone(), stop.clone(), move || {
                        let (n, stop) = (n.clone(), stop.clone());
                        async move { if fanout { n.run_fanout(stop).await } else { n.run_delivery(stop).await } }
                    }),
                ));
            }
            let (n, stop) = (notifier.clone(), shutdown.clone());
            tasks.spawn(part(
                "notifier:prepare",
                supervise("notifier:prepare", liveness.clone(), stop.clone(), move || {
                    let (n, stop) = (n.clone(), stop.clone());
                    async move { n.run_prepare(stop).await }
                }),
            ));
        }
        if roles.contains(&Role::Api) {
            let payments = Checkout::new(pool.clone(), gateway.clone(), checkout.clone());
            let feed = FeedHub::new(pool.clone(), config.feed_config(), shutdown.clone());
            let state = app_state(&config, pool.clone(), payments, ops.clone(), feed.clone())?;
            let (engine, hub, listen_pool, stop) = (state.claims.clone(), feed.clone(), pool.clone(), shutdown.clone());
            tasks.spawn(part(
                "listener:db",
                supervise("listener:db", liveness.clone(), stop.clone(), move || {
                    listen(listen_pool.clone(), engine.clone(), hub.clone(), stop.clone())
                }),
            ));
            let stop = shutdown.clone();
            tasks.spawn(part(
                "feed:hub",
                supervise("feed:hub", liveness.clone(), stop.clone(), move || feed.clone().run(stop.clone())),
            ));
            let listener = tokio::net::TcpListener::bind(config.http.addr)
                .await
                .with_context(|| format!("binding {}", config.http.addr))?;
            addr = Some(listener.local_addr()?);
            let router = gavel_api::router(state);
            tasks.spawn(part(
                "http",
                gavel_api::server::serve(listener, router, config.http_limits(), shutdown.clone()),
            ));
        }
        if !roles.contains(&Role::Api) {
            // No API here: a small listener of its own answers the probes.
            let listener = tokio::net::TcpListener::bind(config.ops.addr)
                .await
                .with_context(|| format!("binding the operations listener {} (ops.addr)", config.ops.addr))?;
            ops_addr = Some(listener.local_addr()?);
            let router = gavel_api::routes::health::ops_router(ops.clone());
            tasks
                .spawn(part("ops", gavel_api::server::serve(listener, router, config.http_limits(), shutdown.clone())));
        }
        let grace = std::time::Duration::from_millis(config.http.shutdown_grace_ms);
        Ok(Self { addr, ops_addr, pool, shutdown, grace, tasks })
    }

    /// The API's bound address (when the API role runs).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The operations listener's address (when the API role does not run).
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A handle that stops the application when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until shut down, then gives in-flight work the grace period.
    ///
    /// Every part runs until shutdown (the supervised ones restart
    /// themselves), so a part that ends before it is an error: it is logged,
    /// everything is stopped, and the process exits non-zero — never 0.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => {}
            Some(joined) = self.tasks.join_next() => {
                let err = match joined {
                    // Asked to stop while we looked: a part ending now is expected.
                    Ok((_, Ok(()))) if self.shutdown.is_cancelled() => None,
                    Ok((name, Ok(()))) => Some(anyhow::anyhow!("{name} ended unexpectedly")),
                    Ok((name, Err(err))) => Some(err.context(format!("{name} failed"))),
                    Err(join) => Some(anyhow::anyhow!("a part of Gavel panicked: {join}")),
                };
                if let Some(err) = err {
                    tracing::error!(error = %format!("{err:#}"), "a part of Gavel stopped; shutting down");
                    result = Err(err);
                }
                self.shutdown.cancel();
            }
        }
        let drained = tokio::time::timeout(self.grace + std::time::Duration::from_secs(1), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("work still running after the grace period; stopping it");
            self.tasks.abort_all();
        }
        result
    }
}

/// A part's future, named, as the task set holds it.
async fn part<F>(name: &'static str, run: F) -> (&'static str, anyhow::Result<()>)
where
    F: std::future::Future<Output = ()>,
{
    run.await;
    (name, Ok(()))
}

fn app_state(config: &Config, pool: PgPool, payments: Checkout, ops: Ops, feed: FeedHub) -> anyhow::Result<AppState> {
    let tokens = TokenSigner::new(config.auth.token_secret.as_bytes(), Duration::hours(config.auth.token_ttl_hours))?;
    Ok(AppState::new(Shared {
        claims: ClaimEngine::new(pool.clone(), config.claim_config()),
        bids: BidEngine::new(pool.clone(), config.bid_config()),
        pool,
        tokens,
        passwords: Passwords::new(config.password_cost(), config.hash_limits())?,
        auth_limits: AuthLimits::new(config.auth.signups_per_ip_per_minute, config.auth.signins_per_ip_per_minute),
        claim_limiter: RateLimiter::per_minute(config.claims.rate_limit_per_minute),
        payments,
        payment_reminders: config.payment_reminders(),
        stripe_webhook_secret: config.payments.stripe_webhook_secret.clone(),
        ops,
        feed,
        reconciliation: config.reconciliation_config(),
        webhooks: gavel_api::routes::webhook_endpoints::WebhookSettings {
            allow_private_targets: config.webhooks.allow_private_targets,
            rotation_overlap: std::time::Duration::from_secs(config.webhooks.rotation_overlap_seconds),
        },
    }))
}

/// The notifier and its channels: email when `SMTP_URL` is set, APNs and FCM
/// when `[apns]` / `[fcm]` are (`notifier::push::channels`). A channel that is not configured gets no
/// deliveries at all (said once, here), rather than deliveries that wait forever.
fn notifier(config: &Config, pool: PgPool) -> anyhow::Result<gavel_notifier::Notifier> {
    use gavel_notifier::channel::Channel;
    use gavel_notifier::email::{EmailChannel, EmailConfig};
    let n = &config.notifier;
    let schedule = config.notifier_schedule().map_err(anyhow::Error::msg)?;
    let mut channels: Vec<std::sync::Arc<dyn Channel>> = Vec::new();
    match n.smtp_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => {
            let email = EmailChannel::new(&EmailConfig {
                url: url.to_owned(),
                from: n.smtp_from.clone(),
                timeout: std::time::Duration::from_millis(n.smtp_timeout_ms),
                pool_size: n.smtp_pool_size,
            })
            .map_err(|e| anyhow::anyhow!("notifier.smtp_url / notifier.smtp_from: {e}"))?;
            channels.push(std::sync::Arc::new(email));
        }
        None => tracing::warn!("SMTP_URL is not set: the email channel is off and no email deliveries are made"),
    }
    let push = gavel_notifier::push::channels(&config.apns, &config.fcm)
        .map_err(|e| anyhow::anyhow!("the push channels ([apns], [fcm]): {e}"))?;
    if push.is_empty() {
        tracing::warn!("neither APNs nor FCM is configured: no push deliveries are made");
    }
    channels.extend(push);
    let owner = format!("notifier-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let fanout = gavel_notifier::fanout::FanOutConfig {
        batch: n.fanout_batch.max(1),
        channels: Default::default(),
        app_url: n.app_url.clone(),
        schedule: schedule.clone(),
    };
    let delivery = gavel_notifier::delivery::DeliveryConfig {
        batch: n.delivery_batch.max(1),
        lease: std::time::Duration::from_secs(n.lease_seconds.max(1)),
        send_timeout: std::time::Duration::from_millis(n.send_timeout_ms.max(1)),
        concurrency: n.concurrency.max(1),
        workers: n.delivery_workers.clamp(1, 64),
        schedule,
        breaker_failures: n.breaker_failures.max(1),
        breaker_cooldown: std::time::Duration::from_millis(n.breaker_cooldown_ms),
        owner,
        policy: config.notifier_policy()?,
    };
    let poll = std::time::Duration::from_millis(n.poll_interval_ms);
    gavel_notifier::Notifier::new(pool, channels, fanout, delivery, poll).map_err(anyhow::Error::msg)
}

/// The process's one `LISTEN` connection, for two channels: stock returned
/// to a sale (drops the claim engine's cached "sold out" answers) and the
/// live feed (tells the feed hub which topics have new events).
///
/// Once listening, the hub re-reads every watched topic from the store
/// (notifications sent while no connection listened are lost). A lost
/// connection (or one that cannot be made) drops every cached "sold out"
/// and ends the run with an error; its supervisor reconnects after a backoff.
async fn listen(pool: PgPool, engine: ClaimEngine, hub: FeedHub, stop: CancellationToken) -> Result<(), String> {
    let listening = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen_all([STOCK_RETURNED_CHANNEL, feed::CHANNEL]).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    let mut listener = match listening.await {
        Ok(l) => l,
        Err(err) => {
            engine.forget_sold_out();
            return Err(format!("listener could not listen: {err}"));
        }
    };
    hub.resync();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            msg = listener.try_recv() => match msg {
                Ok(Some(n)) if n.channel() == feed::CHANNEL => {
                    if let Some((topic, seq)) = feed::parse_notification(n.payload()) {
                        hub.notified(topic, seq);
                    }
                }
                Ok(Some(n)) => {
                    if let Ok(uuid) = uuid::Uuid::parse_str(n.payload()) {
                        engine.stock_returned(SaleId::from_uuid(uuid));
                    }
                }
                // The connection dropped: notifications may be lost, so drop
                // every cached answer (their TTL bounds them anyway) and
                // reconnect (the hub re-reads its topics then).
                Ok(None) => {
                    engine.forget_sold_out();
                    return Err("listener lost its connection".into());
                }
                Err(err) => {
                    engine.forget_sold_out();
                    return Err(format!("listener failed: {err}"));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with(run: impl std::future::Future<Output = ()> + Send + 'static) -> Application {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://postgres@127.0.0.1:5432/postgres")
            .expect("a lazy pool needs no server");
        let mut tasks = JoinSet::new();
        tasks.spawn(part("a part", run));
        Application {
            addr: None,
            ops_addr: None,
            pool,
            shutdown: CancellationToken::new(),
            grace: std::time::Duration::from_millis(200),
            tasks,
        }
    }

    #[tokio::test]
    async fn a_part_that_ends_unasked_stops_the_process_with_an_error() {
        let result = app_with(async {}).run_until_stopped().await;
        let err = result.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.contains("a part ended unexpectedly"), "{err}");
    }

    #[tokio::test]
    async fn a_part_that_panics_stops_the_process_with_an_error() {
        let result = app_with(async { panic!("boom") }).run_until_stopped().await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn a_requested_stop_is_clean_and_bounded_by_the_grace_period() {
        let app = app_with(std::future::pending());
        app.shutdown_token().cancel();
        let started = tokio::time::Instant::now();
        assert!(app.run_until_stopped().await.is_ok());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "the stuck part was abandoned");
    }
}
