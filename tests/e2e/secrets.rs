//! Gavel never runs with a publicly known secret, and a token signed with one
//! opens nothing.

use std::process::{Command, Stdio};

use chrono::Utc;
use gavel::Role;
use gavel_domain::auth::TokenSigner;
use gavel_domain::ids::BuyerId;
use reqwest::StatusCode;

use crate::helpers::{TestApp, fresh_database};

const SECRET_VARS: &[&str] = &[
    "GAVEL_ENV",
    "GAVEL_TOKEN_SECRET",
    "GAVEL_AUTH__TOKEN_SECRET",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "GAVEL_PAYMENTS__STRIPE_SECRET_KEY",
    "GAVEL_PAYMENTS__STRIPE_WEBHOOK_SECRET",
    "GAVEL_ADMIN_TOKEN",
];

/// `gavel serve` in the production environment with `env`; returns its exit
/// status and what it wrote to stderr (it must not get as far as serving).
fn serve_production(db: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gavel"));
    cmd.arg("serve").env("DATABASE_URL", db).env("GAVEL_HTTP_ADDR", "127.0.0.1:0").env("GAVEL_OPS_ADDR", "127.0.0.1:0");
    for var in SECRET_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped());
    let out = cmd.output().expect("run gavel");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn serve_refuses_to_start_without_secrets_or_with_published_ones() {
    let db = fresh_database().await;
    let own = [
        ("GAVEL_TOKEN_SECRET", "a-long-random-token-secret-of-this-deployment"),
        ("STRIPE_SECRET_KEY", "sk_live_this_deployments_key"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_this_deployments_secret"),
    ];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "GAVEL_TOKEN_SECRET"),
        (vec![own[0], own[1]], "STRIPE_WEBHOOK_SECRET"),
        (vec![("GAVEL_TOKEN_SECRET", "gavel-dev-secret-change-me"), own[1], own[2]], "GAVEL_TOKEN_SECRET"),
        (vec![own[0], ("STRIPE_SECRET_KEY", "sk_test_gavel_dev"), own[2]], "STRIPE_SECRET_KEY"),
        (vec![own[0], own[1], ("STRIPE_WEBHOOK_SECRET", "whsec_gavel_dev")], "STRIPE_WEBHOOK_SECRET"),
        (vec![("GAVEL_TOKEN_SECRET", "short"), own[1], own[2]], "GAVEL_TOKEN_SECRET"),
        (vec![own[0], own[1], own[2], ("GAVEL_ADMIN_TOKEN", "gavel-test-operator-token")], "GAVEL_ADMIN_TOKEN"),
    ];
    for (env, named) in cases {
        let (ok, stderr) = serve_production(&db, &env);
        assert!(!ok, "started with {env:?}");
        assert!(stderr.contains(named), "the refusal names {named}: {stderr}");
    }
}

#[tokio::test]
async fn a_token_signed_with_the_published_secret_opens_nothing() {
    let db = fresh_database().await;
    let app = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |c| {
        c.environment = None;
        c.auth.token_secret = "this-deployments-own-token-secret-1234".into();
        c.payments.stripe_secret_key = "sk_test_this_deployment".into();
        c.payments.stripe_webhook_secret = "whsec_this_deployment".into();
        c.admin.token = None;
    })
    .await;
    let victim = app.buyers(1).await.remove(0);
    let published =
        TokenSigner::new(b"gavel-dev-secret-change-me", chrono::Duration::hours(1)).expect("a token signer");
    let forged = published.issue(BuyerId::new(), Utc::now());
    let r = app.get("/v1/orders", Some(&forged)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.raw);
    assert_eq!(app.get("/v1/orders", Some(&victim)).await.status, StatusCode::OK, "the genuine token works");
}
