//! A server killed in the middle of a claim burst loses nothing: every hold it
//! answered exists, nothing is oversold, and after a restart every unit is
//! still claimable.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gavel::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::child::ChildServer;
use crate::helpers::{TestApp, client, fresh_database, uuid_of};

const UNITS: i64 = 300;
const BUYERS: usize = 900;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_burst_loses_no_answered_hold_and_strands_no_unit() {
    let db = fresh_database().await;
    let setup = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |_| {}).await;
    let merchant = setup.merchant().await;
    let sale = setup.active_sale(&merchant, json!({ "inventory": UNITS })).await;
    let tokens = Arc::new(setup.buyers(BUYERS).await);
    let server = ChildServer::start(&db, &[]).await;

    // The burst; the server is killed once a hundred answers are back.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..BUYERS {
        let (tokens, answered) = (tokens.clone(), answered.clone());
        let url = format!("{}/v1/sales/{sale}/claims", server.base);
        tasks.push(tokio::spawn(async move {
            let res = client().post(url).bearer_auth(&tokens[i]).send().await.ok()?;
            let status = res.status();
            let body: serde_json::Value = res.json().await.ok()?;
            answered.fetch_add(1, Ordering::Relaxed);
            (status == StatusCode::CREATED)
                .then(|| (i, body["id"].as_str().expect("the answer names an id").to_owned()))
        }));
    }
    while answered.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill();
    let mut held: Vec<(usize, String)> = Vec::new();
    for t in tasks {
        if let Some(hold) = t.await.expect("the task completes") {
            held.push(hold);
        }
    }
    assert!(!held.is_empty(), "some holds were answered before the kill");

    // Every answered hold exists; the counters and the rows agree.
    let in_db: HashSet<String> =
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM claims WHERE sale_id = $1 AND status = 'held'")
            .bind(uuid_of(&sale))
            .fetch_all(&setup.pool)
            .await
            .expect("the test's SQL runs")
            .into_iter()
            .map(|u| format!("clm_{}", u.simple()))
            .collect();
    for (_, id) in &held {
        assert!(in_db.contains(id), "answered hold {id} is missing after the crash");
    }
    assert!(in_db.len() as i64 <= UNITS);
    assert!(setup.invariant_holds(&sale).await);

    // Restarted, the server gives holders their claim back and sells every remaining unit.
    let server = ChildServer::start(&db, &[]).await;
    let holders: HashSet<usize> = held.iter().map(|(i, _)| *i).collect();
    for (i, id) in &held {
        let again = crate::helpers::send(
            client().post(format!("{}/v1/sales/{sale}/claims", server.base)).bearer_auth(&tokens[*i]),
        )
        .await;
        assert_eq!((again.status, again.body["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    }
    let rest: Vec<_> = (0..BUYERS).filter(|i| !holders.contains(i)).collect();
    let answers = futures::future::join_all(rest.iter().map(|i| {
        crate::helpers::send(client().post(format!("{}/v1/sales/{sale}/claims", server.base)).bearer_auth(&tokens[*i]))
    }))
    .await;
    assert!(answers.iter().all(|r| r.status.is_success() || r.code() == "sold_out"), "only holds and sold-out");
    let (held_now, available): (i32, i32) = sqlx::query_as("SELECT held, available FROM sales WHERE id = $1")
        .bind(uuid_of(&sale))
        .fetch_one(&setup.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!((i64::from(held_now), available), (UNITS, 0), "every unit is held once the second wave is done");
    assert!(setup.invariant_holds(&sale).await);
}
