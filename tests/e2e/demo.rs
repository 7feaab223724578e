//! `gavel demo`'s seed: what it prints is there and answers as printed.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, fresh_database, test_config};

#[tokio::test]
async fn the_demo_seeds_a_merchant_a_buyer_a_sale_and_an_auction_that_answer() {
    let db = fresh_database().await;
    let app = TestApp::spawn_on(&db, &[gavel::Role::Api], |_| {}).await;
    let seeded = gavel::demo::seed(&app.pool, &test_config(&db), None, None).await.expect("the demo seeds");
    let key = seeded["merchant"]["api_key"].as_str().expect("a merchant key").to_owned();
    let token = seeded["buyer"]["token"].as_str().expect("a buyer token").to_owned();

    let sale = seeded["sale"]["id"].as_str().expect("a sale id");
    let r = app.get(&format!("/v1/sales/{sale}"), Some(&key)).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("scheduled")), "{}", r.raw);

    let auction = seeded["auction"]["id"].as_str().expect("an auction id");
    let r = app.get(&format!("/v1/auctions/{auction}"), None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("scheduled")), "{}", r.raw);
    assert_eq!(r.body["starting_price"], 10_000);
    let r = app.get(&format!("/v1/auctions/{auction}/bids"), None).await;
    assert_eq!((r.status, r.body["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{}", r.raw);
    let printed = seeded["try"].as_array().expect("curl lines").iter().filter_map(Value::as_str).collect::<Vec<_>>();
    for line in [
        format!("/v1/auctions/{auction}/bids -H"),
        format!("/v1/auctions/{auction}/events"),
        format!("/v1/sales/{sale}/events"),
    ] {
        assert!(printed.iter().any(|l| l.contains(&line)), "the demo prints a line with {line}: {printed:?}");
    }

    let r = app.get("/v1/orders", Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "the buyer's token works: {}", r.raw);
}
