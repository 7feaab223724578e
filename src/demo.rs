//! `gavel demo`: starts the Stripe stand-in (unless `STRIPE_API_BASE` names a
//! Stripe) and the SMTP, APNs and FCM stand-ins (unless those channels are
//! configured), seeds a demo merchant, product, buyer (with a device on each
//! push stand-in) and a sale that starts shortly, then prints what you need
//! to try the API with curl and where the buyer's messages can be seen.

use chrono::{Duration, Utc};
use gavel_domain::auctions::RawAuctionTerms;
use gavel_domain::auth::{Passwords, TokenSigner};
use gavel_domain::buyers::{self, SignUp};
use gavel_domain::sales::RawTerms;
use gavel_domain::{merchants, products};
use serde_json::json;
use sqlx::PgPool;

use crate::config::Config;

/// The demo runs in its own environment and makes its own secrets (random,
/// for this run) where none are set, so it never serves with a published one.
pub fn secrets(config: &mut Config) {
    use gavel_domain::auth::random_secret;
    config.environment = Some("demo".into());
    for (value, prefix) in [
        (&mut config.auth.token_secret, "tok"),
        (&mut config.payments.stripe_secret_key, "sk_test"),
        (&mut config.payments.stripe_webhook_secret, "whsec"),
    ] {
        if value.is_empty() {
            *value = random_secret(prefix);
        }
    }
}

/// Runs the Stripe stand-in in this process, sending its signed events to our
/// webhook, and points the payments config at it. Returns its base URL.
pub async fn stripe(config: &mut Config) -> anyhow::Result<Option<String>> {
    use gavel_standins::stripe::{StripeStandIn, WebhookTarget};
    if std::env::var_os("STRIPE_API_BASE").is_some() {
        return Ok(None);
    }
    let webhook = WebhookTarget {
        url: format!("http://{}/v1/stripe/webhook", config.http.addr),
        secret: config.payments.stripe_webhook_secret.clone(),
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let stand_in = StripeStandIn::start(addr, Some(webhook)).await?;
    config.payments.stripe_api_base = stand_in.api_base();
    Ok(Some(stand_in.api_base()))
}

/// The demo buyer's devices (one per push stand-in), as `gavel demo` registers them.
pub const DEMO_APNS_TOKEN: &str = "d3e00000000000000000000000000000000000000000000000000000000000a1";
pub const DEMO_FCM_TOKEN: &str = "demo-fcm-token:gavel";

/// Runs the SMTP, APNs and FCM stand-ins in this process (each unless its
/// channel is already configured) and points the notifier at them: a TEST-ONLY
/// APNs key and an FCM service-account file are written to a temporary
/// directory made for this run. Returns where a person sees what arrived.
pub async fn notifier(config: &mut Config) -> anyhow::Result<serde_json::Value> {
    use gavel_standins::apns::{ApnsStandIn, ApnsStandInConfig};
    use gavel_standins::fcm::{FcmStandIn, FcmStandInConfig};
    use gavel_standins::keys;
    use gavel_standins::smtp::SmtpStandIn;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let dir = std::env::temp_dir().join(format!("gavel-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut seen = serde_json::Map::new();
    if config.notifier.smtp_url.is_none() {
        let smtp = SmtpStandIn::start(any, any).await?;
        config.notifier.smtp_url = Some(smtp.url());
        seen.insert(
            "email".into(),
            json!({ "smtp": smtp.url(), "messages": format!("{}/messages", smtp.control_base()) }),
        );
    }
    if !config.apns.is_configured() {
        let p8 = keys::new_apns_p8().map_err(|_| anyhow::anyhow!("generating a P-256 key failed"))?;
        let key_file = dir.join("apns-demo-TEST-ONLY.p8");
        std::fs::write(&key_file, &p8)?;
        let (key_id, team_id, topic) = ("DEMOKEY001", "DEMOTEAM01", "dev.gavel.demo");
        let apns = ApnsStandIn::start(
            any,
            ApnsStandInConfig {
                public_key: keys::apns_public_key(&p8).map_err(anyhow::Error::msg)?,
                key_id: key_id.into(),
                team_id: team_id.into(),
                topic: topic.into(),
            },
        )
        .await?;
        config.apns.key_file = Some(key_file);
        config.apns.key_id = key_id.into();
        config.apns.team_id = team_id.into();
        config.apns.topic = topic.into();
        config.apns.endpoint = apns.endpoint();
        seen.insert(
            "apns".into(),
            json!({ "endpoint": apns.endpoint(), "deliveries": format!("{}/_control/deliveries", apns.endpoint()) }),
        );
    }
    if !config.fcm.is_configured() {
        let project = "gavel-demo";
        let fcm = FcmStandIn::start(any, FcmStandInConfig::test_account(project).map_err(anyhow::Error::msg)?).await?;
        let account = dir.join("fcm-demo-TEST-ONLY-service-account.json");
        std::fs::write(&account, fcm.service_account_json())?;
        config.fcm.project_id = project.into();
        config.fcm.service_account_file = Some(account);
        config.fcm.api_base = fcm.api_base();
        seen.insert(
            "fcm".into(),
            json!({ "api_base": fcm.api_base(), "messages": format!("{}/_control/messages", fcm.api_base()) }),
        );
    }
    Ok(serde_json::Value::Object(seen))
}

/// Gives the demo buyer one device per configured push channel.
pub async fn demo_devices(pool: &PgPool, config: &Config, buyer: gavel_domain::ids::BuyerId) -> anyhow::Result<()> {
    use gavel_domain::devices::{self, DeviceToken, Platform};
    let mut tx = pool.begin().await?;
    if config.apns.is_configured() {
        devices::register(&mut tx, buyer, &DeviceToken::parse(Platform::Apns, DEMO_APNS_TOKEN)?).await?;
    }
    if config.fcm.is_configured() {
        devices::register(&mut tx, buyer, &DeviceToken::parse(Platform::Fcm, DEMO_FCM_TOKEN)?).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Runs the webhook receiver stand-in in this process, printing each webhook
/// it gets, and allows private targets (it listens on 127.0.0.1). Returns the
/// URL the demo merchant's endpoint points at.
pub async fn webhook_receiver(config: &mut Config) -> anyhow::Result<String> {
    use gavel_standins::webhook_receiver::WebhookReceiver;
    let receiver = WebhookReceiver::start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), true).await?;
    config.webhooks.allow_private_targets = true;
    Ok(receiver.url("/demo-merchant/webhooks"))
}

pub async fn seed(
    pool: &PgPool,
    config: &Config,
    stripe: Option<&str>,
    webhook_url: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let allow_private = config.webhooks.allow_private_targets;
    let merchant = merchants::create_with(pool, "Demo Merchant", webhook_url, allow_private).await?;
    let product = products::create(pool, merchant.id, "Limited sneakers", Some("The demo drop")).await?;
    let starts_at = Utc::now() + Duration::seconds(20);
    let sale = gavel_workflows::sale_lifecycle::create_sale(
        pool,
        merchant.id,
        product.id,
        RawTerms {
            price: Some(4999),
            currency: Some("usd".into()),
            inventory: Some(100),
            starts_at: Some(starts_at),
            duration_seconds: Some(600),
            ..RawTerms::default()
        },
    )
    .await?;
    // An auction of the same product, starting with the sale and running ten
    // minutes, with a short soft close so that an extension is easy to see.
    let auction = gavel_workflows::auction_lifecycle::create_auction(
        pool,
        merchant.id,
        product.id,
        RawAuctionTerms {
            currency: Some("usd".into()),
            starting_price: Some(10_000),
            reserve_price: Some(15_000),
            starts_at: Some(starts_at),
            ends_at: Some(starts_at + Duration::minutes(10)),
            soft_close_seconds: Some(60),
            extension_seconds: Some(30),
            max_extensions: Some(3),
            payment_window_seconds: Some(3600),
            ..RawAuctionTerms::default()
        },
    )
    .await?;
    let email = format!("buyer+{}@demo.gavel.dev", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let signup = SignUp::parse(&email, "demo-password", Some("Demo Buyer"))?;
    let passwords = Passwords::new(config.password_cost(), config.hash_limits())?;
    let buyer = buyers::create(pool, signup, &passwords).await?;
    demo_devices(pool, config, buyer).await?;
    let signer = TokenSigner::new(config.auth.token_secret.as_bytes(), Duration::hours(config.auth.token_ttl_hours))?;
    let base = format!("http://{}", config.http.addr);
    Ok(json!({
        "api": base,
        "docs": format!("{base}/docs"),
        "merchant": { "id": merchant.id, "api_key": merchant.api_key, "webhook_secret": merchant.webhook_secret },
        "webhooks": { "receiver": webhook_url, "printed": "each webhook the receiver gets is printed below as `webhook <id> <path> → <status>: <body>`" },
        "buyer": { "id": buyer, "email": email, "password": "demo-password", "token": signer.issue(buyer, Utc::now()) },
        "product_id": product.id,
        "sale": { "id": sale.id, "starts_at": sale.starts_at, "inventory": sale.inventory },
        "auction": { "id": auction.id, "starts_at": auction.starts_at, "ends_at": auction.ends_at },
        "stripe": stripe.map_or_else(
            || json!({ "api_base": config.payments.stripe_api_base }),
            |base| json!({ "stand_in": base, "state": format!("{base}_control/state"),
                           "cards": ["pm_card_visa", "pm_card_chargeDeclined"] }),
        ),
        "try": [
            format!("curl -s {base}/v1/sales/{} -H 'Authorization: Bearer {}'", sale.id, merchant.api_key),
            format!("curl -s -X POST {base}/v1/sales/{}/claims -H 'Authorization: Bearer <buyer token>'", sale.id),
            format!("curl -s -X POST {base}/v1/claims/<claim id>/checkout -H 'Authorization: Bearer <buyer token>' \
                     -H 'Content-Type: application/json' -d '{{\"payment_method\":\"pm_card_visa\"}}'"),
            format!("curl -s {base}/v1/orders -H 'Authorization: Bearer {}'", merchant.api_key),
            format!("curl -s {base}/v1/auctions/{}", auction.id),
            format!("curl -s -X POST {base}/v1/auctions/{}/bids -H 'Authorization: Bearer <buyer token>' \
                     -H 'Content-Type: application/json' -d '{{\"amount\":10000,\"max_amount\":12500}}'", auction.id),
            format!("curl -s {base}/v1/auctions/{}/bids", auction.id),
            format!("curl -sN {base}/v1/auctions/{}/events", auction.id),
            format!("curl -sN {base}/v1/sales/{}/events", sale.id),
            format!("gavel auctions verify {}", auction.id),
            format!("curl -s {base}/v1/webhook_deliveries -H 'Authorization: Bearer {}'", merchant.api_key),
        ],
    }))
}
