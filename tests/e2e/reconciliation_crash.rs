//! A reconciliation run killed mid-way (SIGKILL of the `gavel reconcile`
//! process working it) continues from its last committed page when asked
//! again, and its report equals an uninterrupted run's over the same data.
//! The data comes from `gavel dev seed-payments` (ledger and stand-in filled
//! consistently), with discrepancies planted at the stand-in.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gavel_standins::stripe::{Faults, StripeStandIn};

use crate::helpers::{Killed, eventually, fresh_database};
use crate::reconciliation::control;

const DAY: &str = "2026-01-01";
const FROM: &str = "2026-01-01T00:00:00Z";
const TO: &str = "2026-01-02T00:00:00Z";

fn gavel(db: &str, stripe: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gavel"));
    cmd.args(args)
        .env("DATABASE_URL", db)
        .env("GAVEL_ENV", "test")
        .env("GAVEL_LOG", "warn")
        .env("STRIPE_API_BASE", stripe)
        .env("GAVEL_RECONCILIATION__PAGE_SIZE", "10")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Waits for the child off the runtime (the stand-in serves on it meanwhile).
async fn finished(child: Child) -> String {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("gavel runs");
    assert!(out.status.success(), "gavel failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The CSV's rows without their run id, in order.
fn rows(path: &std::path::Path) -> Vec<String> {
    let csv = std::fs::read_to_string(path).expect("the CSV is written");
    csv.lines().skip(1).map(|l| l.split_once(',').map_or(l, |(_, rest)| rest).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_way_resumes_and_reports_as_an_uninterrupted_run() {
    let db = fresh_database().await;
    let stripe = StripeStandIn::start(([127, 0, 0, 1], 0).into(), None).await.expect("stripe stand-in");
    let base = stripe.api_base();
    let seeded = finished(
        gavel(&db, &base, &["dev", "seed-payments", "300", "--stripe", &base, "--day", DAY]).spawn().expect("spawn"),
    )
    .await;
    assert!(seeded.contains("\"payments\": 300"), "{seeded}");
    let intents = stripe.payment_intents();
    assert_eq!(intents.len(), 300);
    // Plant: an amount, a currency and a status at the provider, spread over the pages.
    control(&base, &format!("/_control/payment_intents/{}", intents[10].id), serde_json::json!({ "amount": 1 })).await;
    control(&base, &format!("/_control/payment_intents/{}", intents[150].id), serde_json::json!({ "currency": "eur" }))
        .await;
    control(
        &base,
        &format!("/_control/payment_intents/{}", intents[290].id),
        serde_json::json!({ "status": "canceled" }),
    )
    .await;
    control(
        &base,
        "/_control/payment_intents",
        serde_json::json!({
            "amount": 4242, "currency": "usd", "status": "succeeded", "created": 1_767_240_000,
        }),
    )
    .await;

    // Slow pages, so the run is caught in the middle.
    stripe.set_faults(Faults { latency_ms: 40, ..Faults::default() });
    let dir = std::env::temp_dir();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (resumed_csv, whole_csv) = (dir.join(format!("resumed-{tag}.csv")), dir.join(format!("whole-{tag}.csv")));
    let args = ["reconcile", "--from", FROM, "--to", TO, "--csv"];
    let child = Killed(
        gavel(&db, &base, &[&args[..], &[resumed_csv.to_str().expect("a path")]].concat()).spawn().expect("spawn"),
    );
    let pool = sqlx::PgPool::connect(&db).await.expect("connect");
    let checked_at_kill: i64 = eventually("the run is half-way", Duration::from_secs(60), || async {
        let checked: Option<i64> =
            sqlx::query_scalar("SELECT checked_payments FROM reconciliation_runs WHERE status = 'running'")
                .fetch_optional(&pool)
                .await
                .expect("read the run");
        checked.filter(|c| (100..250).contains(c))
    })
    .await;
    drop(child); // SIGKILL, reaped
    let (status, phase, cursor): (String, String, Option<String>) =
        sqlx::query_as("SELECT status, phase, cursor FROM reconciliation_runs")
            .fetch_one(&pool)
            .await
            .expect("the run");
    assert_eq!((status.as_str(), phase.as_str()), ("running", "provider_payments"), "killed mid-way");
    assert!(cursor.is_some(), "its position is kept");
    let kept: i64 =
        sqlx::query_scalar("SELECT checked_payments FROM reconciliation_runs").fetch_one(&pool).await.expect("read");
    assert!(kept >= checked_at_kill, "committed pages stay counted");

    // Asked again, it continues (the same run) and completes.
    stripe.set_faults(Faults::default());
    let resumed: serde_json::Value = serde_json::from_str(
        &finished(
            gavel(&db, &base, &[&args[..], &[resumed_csv.to_str().expect("a path")]].concat()).spawn().expect("spawn"),
        )
        .await,
    )
    .expect("a JSON report");
    let runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reconciliation_runs").fetch_one(&pool).await.expect("count");
    assert_eq!(runs, 1, "the same run continued");
    assert_eq!(resumed["status"], "completed", "{resumed:#}");

    // An uninterrupted run over the same objects (one empty second more, so a run of its own).
    let whole: serde_json::Value = serde_json::from_str(
        &finished(
            gavel(
                &db,
                &base,
                &[
                    "reconcile",
                    "--from",
                    "2025-12-31T23:59:59Z",
                    "--to",
                    TO,
                    "--csv",
                    whole_csv.to_str().expect("a path"),
                ],
            )
            .spawn()
            .expect("spawn"),
        )
        .await,
    )
    .expect("a JSON report");
    assert_ne!(whole["id"], resumed["id"]);
    assert_eq!(resumed["checked"], whole["checked"], "nothing counted twice");
    assert_eq!(resumed["checked"]["payments"], 301);
    assert_eq!(resumed["classes"], whole["classes"]);
    let counts: BTreeMap<String, i64> = resumed["classes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v["count"].as_i64().unwrap_or(-1)))
        .collect();
    let expected: BTreeMap<String, i64> = [
        ("amount_mismatch", 1),
        ("currency_mismatch", 1),
        ("status_mismatch", 1),
        ("missing_in_gavel", 1),
        ("missing_at_provider", 0),
        ("stuck_pending", 0),
        ("duplicate_charge", 0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counts, expected, "{resumed:#}");
    assert_eq!(rows(&resumed_csv), rows(&whole_csv), "the same report");
    assert_eq!(rows(&whole_csv).len(), 4);
    let _ = (std::fs::remove_file(&resumed_csv), std::fs::remove_file(&whole_csv));
}
