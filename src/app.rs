//! `Application::build(config)` returns a running Gavel bound to its port:
//! the HTTP API, the job workers, or both, over one Postgres. Tests start the
//! real thing on port 0 through it.

use std::net::SocketAddr;

use anyhow::Context;
use chrono::Duration;
use gavel_api::AppState;
use gavel_api::auth_limits::AuthLimits;
use gavel_api::rate_limit::RateLimiter;
use gavel_domain::auth::{Passwords, TokenSigner};
use gavel_domain::claim_engine::ClaimEngine;
use gavel_domain::claims::STOCK_RETURNED_CHANNEL;
use gavel_domain::ids::SaleId;
use gavel_workers::WorkerConfig;
use gavel_workflows::checkout::Payments;
use gavel_workflows::gateway::Gateway;
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
    /// Notification delivery — not built yet (see README, Roadmap).
    Notifier,
}

pub struct Application {
    addr: Option<SocketAddr>,
    pool: PgPool,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Application {
    /// Connects, migrates, binds and starts the given roles.
    pub async fn build(config: Config, roles: &[Role]) -> anyhow::Result<Self> {
        if roles.contains(&Role::Notifier) {
            anyhow::bail!("the notifier role is not built yet; run --role api and/or --role workers");
        }
        let url = database::resolve_url(&config.database).await?;
        let pool = database::connect(&url, config.database.max_connections).await?;
        database::migrate(&pool).await?;

        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut addr = None;
        let gateway = Gateway::new(&config.gateway_config()).map_err(anyhow::Error::msg)?;
        let payments = Payments::new(pool.clone(), gateway, config.checkout_config());

        if roles.contains(&Role::Api) {
            let state = app_state(&config, pool.clone(), payments.clone())?;
            tasks.spawn(listen_for_stock(pool.clone(), state.claims.clone(), shutdown.clone()));
            let listener = tokio::net::TcpListener::bind(config.http.addr)
                .await
                .with_context(|| format!("binding {}", config.http.addr))?;
            addr = Some(listener.local_addr()?);
            let router = gavel_api::router(state);
            let stop = shutdown.clone();
            tasks.spawn(async move {
                axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
                    .context("HTTP server")
            });
        }
        if roles.contains(&Role::Workers) {
            let worker_config = WorkerConfig {
                poll_interval: std::time::Duration::from_millis(config.jobs.poll_interval_ms),
                batch_size: config.jobs.batch_size.max(1),
                instance: format!("gavel-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            };
            let (pool, stop) = (pool.clone(), shutdown.clone());
            tasks.spawn(
                async move { gavel_workers::run(pool, worker_config, payments, stop).await.map_err(Into::into) },
            );
        }
        Ok(Self { addr, pool, shutdown, tasks })
    }

    /// The API's bound address (when the API role runs).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A handle that stops the application when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until shut down (or a part fails), then waits for the rest to finish.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = joined.context("a task panicked").and_then(|r| r);
            if let Err(err) = outcome {
                tracing::error!(error = %format!("{err:#}"), "a part of Gavel stopped; shutting down");
                if result.is_ok() {
                    result = Err(err);
                }
            }
            self.shutdown.cancel();
        }
        result
    }
}

fn app_state(config: &Config, pool: PgPool, payments: Payments) -> anyhow::Result<AppState> {
    if config.auth.token_secret.len() < 16 {
        anyhow::bail!("auth.token_secret (GAVEL_TOKEN_SECRET) must be at least 16 characters");
    }
    let tokens = TokenSigner::new(config.auth.token_secret.as_bytes(), Duration::hours(config.auth.token_ttl_hours))?;
    Ok(AppState {
        claims: ClaimEngine::new(pool.clone(), config.claim_config()),
        pool,
        tokens,
        passwords: Passwords::new(config.password_cost(), config.hash_limits())?,
        auth_limits: AuthLimits::new(config.auth.signups_per_ip_per_minute, config.auth.signins_per_ip_per_minute),
        claim_limiter: RateLimiter::per_minute(config.claims.rate_limit_per_minute),
        payments,
        stripe_webhook_secret: config.payments.stripe_webhook_secret.clone(),
    })
}

/// Drops cached "sold out" answers when any process returns stock to a sale.
async fn listen_for_stock(pool: PgPool, engine: ClaimEngine, stop: CancellationToken) -> anyhow::Result<()> {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, "stock listener could not connect; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        listener.listen(STOCK_RETURNED_CHANNEL).await?;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                msg = listener.try_recv() => match msg {
                    Ok(Some(n)) => {
                        if let Ok(uuid) = uuid::Uuid::parse_str(n.payload()) {
                            engine.stock_returned(SaleId(uuid));
                        }
                    }
                    // The connection dropped: notifications may be lost, so drop
                    // every cached answer (their TTL bounds them anyway) and reconnect.
                    Ok(None) | Err(_) => {
                        engine.forget_sold_out();
                        break;
                    }
                },
            }
        }
    }
}
