//! The `gavel` command: serve (all roles or some), migrate, operator CLI, demo.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use gavel::{Application, Config, Role, database, demo};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gavel", version, about = "Flash sales and auctions with durable workflows")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Gavel: every role in this process, or only those given.
    Serve {
        /// Run only this role (repeatable): api, workers, notifier.
        #[arg(long = "role", value_enum)]
        roles: Vec<Role>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Merchant accounts.
    Merchants {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// Auctions: operator and auditor tools.
    Auctions {
        #[command(subcommand)]
        command: AuctionCommand,
    },
    /// Seed a demo merchant, buyer and sale, print how to use them, and serve.
    Demo,
    /// Run a provider stand-in in the foreground (for offline integration tests).
    Dev {
        #[command(subcommand)]
        provider: DevCommand,
    },
    /// Reconcile the ledger with Stripe's records for a period (worked here,
    /// resumed if it was left unfinished); prints the run's report as JSON.
    Reconcile {
        /// Inclusive, RFC 3339.
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
        /// Exclusive, RFC 3339; at most a year after `--from`.
        #[arg(long)]
        to: chrono::DateTime<chrono::Utc>,
        /// One merchant's orders (`mch_…`); without it, the platform.
        #[arg(long)]
        merchant: Option<String>,
        /// Also write every discrepancy to this CSV file.
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
    },
    /// The dead-letter queue: notification and webhook deliveries and jobs that exhausted their retries.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Open and resolved entries, newest first (100 at most).
    List {
        /// notification, webhook or job.
        #[arg(long)]
        kind: Option<String>,
        /// open, retried or discarded.
        #[arg(long)]
        status: Option<String>,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One entry in full (recipient, channel, payload, every attempt), as JSON.
    Show { id: String },
    /// Replay an open entry once (a second retry re-queues nothing).
    Retry { id: String },
    /// Close an open entry without sending.
    Discard { id: String },
}

#[derive(Subcommand)]
enum DevCommand {
    /// A Stripe stand-in (PaymentIntents, Refunds, Idempotency-Key, signed webhooks, faults).
    Stripe {
        #[arg(long, default_value = "127.0.0.1:12111")]
        addr: std::net::SocketAddr,
        /// Where to send signed events (e.g. http://127.0.0.1:8080/v1/stripe/webhook).
        #[arg(long)]
        webhook_url: Option<String>,
        /// The secret events are signed with.
        #[arg(long, env = "STRIPE_WEBHOOK_SECRET", default_value = "whsec_standin")]
        webhook_secret: String,
        /// Latency added to every API request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// Seed N paid orders with succeeded payments, spread over one UTC day, in
    /// Gavel's ledger and in a running Stripe stand-in (`gavel dev stripe`),
    /// consistently (the reconciliation benchmark's data).
    SeedPayments {
        n: u64,
        /// The stand-in's base URL.
        #[arg(long, env = "STRIPE_API_BASE", default_value = "http://127.0.0.1:12111")]
        stripe: String,
        /// The UTC day (YYYY-MM-DD) the payments are created in; default yesterday.
        #[arg(long)]
        day: Option<chrono::NaiveDate>,
    },
    /// An APNs stand-in (HTTP/2 with prior knowledge; verifies the ES256 provider token and Apple's headers).
    Apns {
        #[arg(long, default_value = "127.0.0.1:12112")]
        addr: std::net::SocketAddr,
        /// The `.p8` key whose tokens are accepted; made (TEST-ONLY, P-256) if the file does not exist.
        #[arg(long, env = "APNS_KEY_FILE", default_value = ".gavel/apns-standin.p8")]
        key_file: std::path::PathBuf,
        #[arg(long, env = "APNS_KEY_ID", default_value = "STANDINKEY")]
        key_id: String,
        #[arg(long, env = "APNS_TEAM_ID", default_value = "STANDINTEAM")]
        team_id: String,
        #[arg(long, env = "APNS_TOPIC", default_value = "dev.gavel.app")]
        topic: String,
        /// Latency added to every push, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// An FCM HTTP v1 stand-in with its OAuth2 token endpoint.
    Fcm {
        #[arg(long, default_value = "127.0.0.1:12113")]
        addr: std::net::SocketAddr,
        #[arg(long, env = "FCM_PROJECT_ID", default_value = "gavel-dev")]
        project_id: String,
        /// Where to write the (TEST-ONLY) service-account file whose `token_uri` is this stand-in.
        #[arg(long, default_value = ".gavel/fcm-standin-service-account.json")]
        service_account_out: std::path::PathBuf,
        /// Lifetime of the access tokens it issues, in seconds.
        #[arg(long, default_value_t = 3600)]
        token_ttl_seconds: u64,
        /// Latency added to every send, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// A merchant's webhook receiver stand-in: prints and records every webhook
    /// (control: GET/DELETE /_control/received, GET/POST /_control/faults).
    WebhookReceiver {
        #[arg(long, default_value = "127.0.0.1:12114")]
        addr: std::net::SocketAddr,
        /// The status every webhook is answered with (e.g. 500, 410, 429).
        #[arg(long, default_value_t = 200)]
        status: u16,
        /// Sent as `Retry-After` (seconds) with the status.
        #[arg(long)]
        retry_after: Option<u64>,
        /// Never answer.
        #[arg(long)]
        hang: bool,
        /// Wait this long before answering, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Record without printing a line per webhook (benchmarks).
        #[arg(long)]
        quiet: bool,
    },
    /// An SMTP stand-in that records messages (control: GET/DELETE /messages, GET/POST /faults).
    Smtp {
        #[arg(long, default_value = "127.0.0.1:2525")]
        addr: std::net::SocketAddr,
        /// The HTTP control endpoint.
        #[arg(long, default_value = "127.0.0.1:2526")]
        control_addr: std::net::SocketAddr,
        /// Wait this long before every SMTP reply, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Create a merchant and print its id, API key and webhook secret as JSON.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        webhook_url: Option<String>,
    },
    /// Mark a buyer account as the merchant's own (seller or staff): it may
    /// not bid on the merchant's auctions (`403 own_auction`).
    LinkBuyer {
        #[arg(long)]
        merchant: String,
        #[arg(long)]
        buyer: String,
    },
}

#[derive(Subcommand)]
enum AuctionCommand {
    /// Recompute an auction's bid trail hash chain from its stored attempts and
    /// compare it with the auction's `trail_hash`; prints JSON, exits 2 if broken.
    Verify {
        /// The auction's id (`auc_…`).
        id: String,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GAVEL_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sqlx::postgres::notice=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = run(Cli::parse()).await {
        eprintln!("gavel: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Dev { provider: DevCommand::SeedPayments { n, stripe, day } } = cli.command {
        let config = Config::load().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        let pool = connect(&config).await?;
        database::migrate(&pool).await?;
        let day = day.unwrap_or_else(|| chrono::Utc::now().date_naive() - chrono::Duration::days(1));
        let seeded = gavel::reconcile::seed_payments(pool, n, day, &stripe).await?;
        println!("{}", serde_json::to_string_pretty(&seeded)?);
        return Ok(());
    }
    if let Command::Dev { provider } = cli.command {
        return dev(provider).await;
    }
    let config = Config::load().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    match cli.command {
        Command::Serve { roles } => {
            let roles = if roles.is_empty() { vec![Role::Api, Role::Workers, Role::Notifier] } else { roles };
            serve(config, &roles).await
        }
        Command::Migrate => {
            let pool = connect(&config).await?;
            database::migrate(&pool).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Merchants { command: MerchantCommand::Create { name, webhook_url } } => {
            let pool = connect(&config).await?;
            database::migrate(&pool).await?;
            let allow_private = config.webhooks.allow_private_targets;
            let merchant =
                gavel_domain::merchants::create_with(&pool, &name, webhook_url.as_deref(), allow_private).await?;
            println!("{}", serde_json::to_string_pretty(&merchant)?);
            Ok(())
        }
        Command::Merchants { command: MerchantCommand::LinkBuyer { merchant, buyer } } => {
            let merchant: gavel_domain::ids::MerchantId = merchant.parse().context("--merchant")?;
            let buyer: gavel_domain::ids::BuyerId = buyer.parse().context("--buyer")?;
            let pool = connect(&config).await?;
            gavel_domain::merchants::link_buyer(&pool, merchant, buyer).await?;
            println!("{}", serde_json::json!({"merchant": merchant.to_string(), "buyer": buyer.to_string()}));
            Ok(())
        }
        Command::Auctions { command: AuctionCommand::Verify { id } } => {
            let id: gavel_domain::ids::AuctionId = id.parse().context("the auction id")?;
            let pool = connect(&config).await?;
            let report = gavel_domain::auctions::bids::verify(&pool, id).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.ok {
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Demo => {
            let mut config = config;
            demo::secrets(&mut config);
            let stripe = demo::stripe(&mut config).await?;
            let notifications = demo::notifier(&mut config).await?;
            let receiver = demo::webhook_receiver(&mut config).await?;
            let pool = connect(&config).await?;
            database::migrate(&pool).await?;
            let mut seeded = demo::seed(&pool, &config, stripe.as_deref(), Some(&receiver)).await?;
            seeded["notifications"] = notifications;
            println!("{}", serde_json::to_string_pretty(&seeded)?);
            serve(config, &[Role::Api, Role::Workers, Role::Notifier]).await
        }
        Command::Reconcile { from, to, merchant, csv } => {
            let merchant =
                merchant.map(|m| m.parse::<gavel_domain::ids::MerchantId>()).transpose().context("--merchant")?;
            let pool = connect(&config).await?;
            database::migrate(&pool).await?;
            let report = gavel::reconcile::reconcile(&config, pool, (from, to), merchant, csv.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if report["status"] == "failed" {
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Dlq { command } => {
            let pool = connect(&config).await?;
            dlq(&pool, command).await
        }
        Command::Dev { .. } => Ok(()),
    }
}

async fn dev(provider: DevCommand) -> anyhow::Result<()> {
    match provider {
        DevCommand::Stripe { addr, webhook_url, webhook_secret, latency_ms } => {
            use gavel_standins::stripe::{Faults, StripeStandIn, WebhookTarget};
            let webhook = webhook_url.map(|url| WebhookTarget { url, secret: webhook_secret });
            let stripe = StripeStandIn::start(addr, webhook).await.with_context(|| format!("binding {addr}"))?;
            stripe.set_faults(Faults { latency_ms, ..Faults::default() });
            println!(
                "stripe stand-in listening on {} (faults: POST /_control/faults, state: GET /_control/state, \
                 reconciliation: POST /_control/payment_intents|refunds|seed)",
                stripe.api_base()
            );
            shutdown_signal().await;
            Ok(())
        }
        DevCommand::Apns { addr, key_file, key_id, team_id, topic, latency_ms } => {
            use gavel_standins::apns::{ApnsFaults, ApnsStandIn, ApnsStandInConfig};
            use gavel_standins::keys;
            if !key_file.exists() {
                let p8 = keys::new_apns_p8().map_err(|_| anyhow::anyhow!("generating a P-256 key failed"))?;
                if let Some(dir) = key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                std::fs::write(&key_file, p8).with_context(|| format!("writing {}", key_file.display()))?;
            }
            let p8 = std::fs::read_to_string(&key_file).with_context(|| format!("reading {}", key_file.display()))?;
            let public_key = keys::apns_public_key(&p8).map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?;
            let config = ApnsStandInConfig {
                public_key,
                key_id: key_id.clone(),
                team_id: team_id.clone(),
                topic: topic.clone(),
            };
            let apns = ApnsStandIn::start(addr, config).await.with_context(|| format!("binding {addr}"))?;
            apns.set_faults(ApnsFaults { latency_ms, ..ApnsFaults::default() });
            println!(
                "apns stand-in listening on {} (APNS_KEY_FILE={} APNS_KEY_ID={key_id} APNS_TEAM_ID={team_id} \
                 APNS_TOPIC={topic}; faults: POST /_control/faults, state: GET /_control/state)",
                apns.endpoint(),
                key_file.display()
            );
            shutdown_signal().await;
            Ok(())
        }
        DevCommand::Fcm { addr, project_id, service_account_out, token_ttl_seconds, latency_ms } => {
            use gavel_standins::fcm::{FcmFaults, FcmStandIn, FcmStandInConfig};
            let mut config = FcmStandInConfig::test_account(&project_id).map_err(|e| anyhow::anyhow!(e))?;
            config.token_ttl_seconds = token_ttl_seconds;
            let fcm = FcmStandIn::start(addr, config).await.with_context(|| format!("binding {addr}"))?;
            fcm.set_faults(FcmFaults { latency_ms, ..FcmFaults::default() });
            if let Some(dir) = service_account_out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&service_account_out, fcm.service_account_json())
                .with_context(|| format!("writing {}", service_account_out.display()))?;
            println!(
                "fcm stand-in listening on {} (FCM_API_BASE={} FCM_PROJECT_ID={project_id} \
                 FCM_SERVICE_ACCOUNT_FILE={}; faults: POST /_control/faults, state: GET /_control/state)",
                fcm.api_base(),
                fcm.api_base(),
                service_account_out.display()
            );
            shutdown_signal().await;
            Ok(())
        }
        DevCommand::SeedPayments { .. } => Ok(()),
        DevCommand::WebhookReceiver { addr, status, retry_after, hang, latency_ms, quiet } => {
            use gavel_standins::webhook_receiver::{ReceiverFaults, WebhookReceiver};
            let receiver = WebhookReceiver::start(addr, !quiet).await.with_context(|| format!("binding {addr}"))?;
            receiver.set_faults(ReceiverFaults { status, retry_after, latency_ms, hang });
            println!(
                "webhook receiver stand-in listening on {base} (webhooks: POST {base}/ANY/PATH; \
                 received: GET|DELETE {base}/_control/received, faults: GET|POST {base}/_control/faults)",
                base = receiver.base()
            );
            shutdown_signal().await;
            Ok(())
        }
        DevCommand::Smtp { addr, control_addr, latency_ms } => {
            use gavel_standins::smtp::{SmtpFaults, SmtpStandIn};
            let smtp = SmtpStandIn::start(addr, control_addr)
                .await
                .with_context(|| format!("binding {addr} and {control_addr}"))?;
            smtp.set_faults(SmtpFaults { latency_ms, ..SmtpFaults::default() });
            println!(
                "smtp stand-in listening on {} (messages: GET|DELETE {base}/messages, faults: GET|POST {base}/faults)",
                smtp.url(),
                base = smtp.control_base()
            );
            shutdown_signal().await;
            Ok(())
        }
    }
}

async fn dlq(pool: &sqlx::PgPool, command: DlqCommand) -> anyhow::Result<()> {
    use gavel_domain::dead_letters::{self, Kind, Status};
    use gavel_domain::ids::DeadLetterId;
    let parse_id = |id: &str| id.parse::<DeadLetterId>().context("a dead letter id (dlq_…)");
    let entry = match command {
        DlqCommand::List { kind, status, json } => {
            let kind = kind.as_deref().map(Kind::parse).transpose().context("--kind")?;
            let status = status.as_deref().map(Status::parse).transpose().context("--status")?;
            let entries = dead_letters::list(pool, kind, status, None, 100).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                println!("{:<40} {:<13} {:<9} {:<8} {:<25} subject", "id", "kind", "status", "channel", "created_at");
                for e in &entries {
                    let attempts = e.attempts.as_array().map_or(0, Vec::len);
                    println!(
                        "{:<40} {:<13} {:<9} {:<8} {:<25} {} ({attempts} attempts)",
                        e.id.to_string(),
                        e.kind,
                        e.status,
                        e.channel.as_deref().unwrap_or("-"),
                        e.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        e.subject
                    );
                }
            }
            return Ok(());
        }
        DlqCommand::Show { id } => dead_letters::get(pool, parse_id(&id)?).await?,
        DlqCommand::Retry { id } => dead_letters::retry(pool, parse_id(&id)?).await?,
        DlqCommand::Discard { id } => dead_letters::discard(pool, parse_id(&id)?).await?,
    };
    println!("{}", serde_json::to_string_pretty(&entry)?);
    Ok(())
}

async fn connect(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    let url = database::resolve_url(&config.database).await?;
    database::connect(&url, 4).await
}

async fn serve(config: Config, roles: &[Role]) -> anyhow::Result<()> {
    let app = Application::build(config, roles).await?;
    if let Some(addr) = app.addr() {
        eprintln!("gavel: listening on http://{addr} (roles: {roles:?})");
    } else if let Some(addr) = app.ops_addr() {
        eprintln!("gavel: running (roles: {roles:?}); health and metrics on http://{addr}");
    }
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests and jobs");
        stop.cancel();
    });
    app.run_until_stopped().await.context("gavel stopped with an error")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
