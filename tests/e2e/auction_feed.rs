//! The auction's live feed across processes: a bid accepted on one `gavel`
//! process reaches a watcher connected to another, in order.

use std::time::Duration;

use gavel::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::bids::{bid, bidders, masked, open_auction};
use crate::helpers::{TestApp, fresh_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bids_accepted_on_one_process_reach_a_watcher_on_another_in_order() {
    let db = fresh_database().await;
    let a = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |_| {}).await;
    let b = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let merchant = a.merchant().await;
    let people = bidders(&a, 3).await;
    let auction = open_auction(&a, &merchant, json!({})).await;
    let wait = Duration::from_secs(10);
    let mut watcher = crate::sse::SseClient::connect(&format!("{}/v1/auctions/{auction}/events", b.base), None).await;
    assert_eq!(watcher.status, StatusCode::OK);
    let snapshot = watcher.next_event(wait).await.expect("a snapshot");
    assert_eq!((snapshot.event.as_str(), snapshot.json()["bid_count"].as_i64()), ("snapshot", Some(0)));

    // A proxy maximum, a challenger it outbids at once, then a new leader.
    let bodies = [json!({"amount": 1000, "max_amount": 2000}), json!({"amount": 1500}), json!({"amount": 2500})];
    let mut answers = Vec::new();
    for (p, body) in people.iter().zip(bodies) {
        let r = bid(&a, &auction, p, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        answers.push(r.body);
    }
    let leaders = [masked(&people[0].id), masked(&people[0].id), masked(&people[2].id)];
    for (i, (answer, leader)) in answers.iter().zip(leaders).enumerate() {
        let e = watcher.next_event(wait).await.expect("a bid event on the other process");
        assert_eq!((e.event.as_str(), e.seq()), ("bid", i as i64 + 1), "in order: {}", e.data);
        let data = e.json();
        assert_eq!(data["sequence"], answer["sequence"], "{}", e.data);
        assert_eq!(
            (&data["current_price"], &data["min_next_bid"]),
            (&answer["current_price"], &answer["min_next_bid"])
        );
        assert_eq!((data["leader"].as_str(), data["bid_count"].as_i64()), (Some(leader.as_str()), Some(i as i64 + 1)));
    }
    assert_eq!(answers[1]["current_price"], json!(1550), "the proxy answers one increment above the challenger");

    let r = a.post(&format!("/v1/auctions/{auction}/cancel"), Some(&merchant.key), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let e = watcher.next_event(wait).await.expect("the cancellation on the feed");
    assert_eq!((e.event.as_str(), e.seq()), ("cancelled", 4));
}
