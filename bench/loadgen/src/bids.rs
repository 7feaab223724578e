//! `bids`: one hot auction. Signs up `--bidders` buyers, opens an auction,
//! then `--concurrency` connections bid for `--seconds` as fast as they are
//! answered: about one attempt in ten raises to the `min_next_bid` last seen
//! (with a proxy maximum a little above), the rest bid below it and are
//! refused `409 bid_too_low`. Both are attempts, stored before their answer;
//! the report counts every answer (attempts/s, p50/p99 over all of them), the
//! accepted ones and any `503 contention`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use hyper::Method;
use rand::Rng;
use serde_json::{Value, json};

use super::{ClaimRun, Conn, percentiles, round};

pub struct BidRun {
    pub base: ClaimRun,
    pub bidders: usize,
    pub seconds: u64,
}

#[derive(Default)]
struct Tally {
    all: Vec<u32>,
    accepted: usize,
    too_low: usize,
    contention: usize,
    other: usize,
}

impl BidRun {
    pub async fn execute(&self) -> anyhow::Result<()> {
        let bidders = Arc::new(self.base.sign_up(self.bidders).await?);
        let auction = self.open_auction().await?;
        let path = Arc::new(format!("/v1/auctions/{auction}/bids"));
        let min_next = Arc::new(AtomicI64::new(1000));
        let stop = Arc::new(AtomicBool::new(false));
        let run_for = Duration::from_secs(self.seconds);
        let started = Instant::now();
        let tallies = self
            .base
            .spawn_workers(|mut conn, worker| {
                let (bidders, path, min_next, stop) = (bidders.clone(), path.clone(), min_next.clone(), stop.clone());
                async move {
                    let mut tally = Tally::default();
                    let mut i = worker;
                    while started.elapsed() < run_for && !stop.load(Ordering::Relaxed) {
                        let bidder = &bidders[i % bidders.len()];
                        i += 7919;
                        let floor = min_next.load(Ordering::Relaxed);
                        let body = {
                            let mut rng = rand::rng();
                            if rng.random_ratio(1, 10) {
                                json!({"amount": floor, "max_amount": floor + rng.random_range(0..1000)})
                            } else {
                                json!({"amount": (floor / 2).max(1)})
                            }
                        };
                        let t = Instant::now();
                        let (status, answer) = conn.json(Method::POST, &path, Some(bidder), Some(&body)).await?;
                        tally.all.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        match status {
                            201 => tally.accepted += 1,
                            409 if answer["code"] == "bid_too_low" => tally.too_low += 1,
                            503 => tally.contention += 1,
                            _ => {
                                tally.other += 1;
                                if tally.other == 1 {
                                    eprintln!("unexpected answer {status}: {answer}");
                                }
                            }
                        }
                        if let Some(next) = answer["min_next_bid"].as_i64() {
                            min_next.fetch_max(next, Ordering::Relaxed);
                        }
                    }
                    Ok(tally)
                }
            })
            .await?;
        let secs = started.elapsed().as_secs_f64();
        let total = tallies.into_iter().fold(Tally::default(), |mut acc, t| {
            acc.all.extend(t.all);
            acc.accepted += t.accepted;
            acc.too_low += t.too_low;
            acc.contention += t.contention;
            acc.other += t.other;
            acc
        });
        let (p50, p99) = percentiles(&total.all);
        println!(
            "{}",
            json!({
                "label": self.base.label, "concurrency": self.base.concurrency, "seconds": round(secs),
                "attempts": total.all.len(), "attempts_per_second": round(total.all.len() as f64 / secs),
                "p50_ms": p50, "p99_ms": p99, "accepted": total.accepted, "bid_too_low": total.too_low,
                "contention_503": total.contention, "other_answers": total.other,
                "final_min_next_bid": min_next.load(Ordering::Relaxed),
            })
        );
        Ok(())
    }

    /// An auction open now (the first bid starts it), one hour long, without soft close.
    async fn open_auction(&self) -> anyhow::Result<String> {
        let mut conn = Conn::open(self.base.addr).await?;
        let key = Some(self.base.merchant_key.as_str());
        let (status, product) =
            conn.json(Method::POST, "/v1/products", key, Some(&json!({ "title": "Bench lot" }))).await?;
        if status != 201 {
            bail!("creating the product answered {status}: {product}");
        }
        let now = chrono::Utc::now();
        let body: Value = json!({
            "product_id": product["id"], "currency": "usd", "starting_price": 1000,
            "starts_at": now.to_rfc3339(), "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "soft_close_seconds": 0,
        });
        let (status, auction) = conn.json(Method::POST, "/v1/auctions", key, Some(&body)).await?;
        if status != 201 {
            bail!("creating the auction answered {status}: {auction}");
        }
        Ok(auction["id"].as_str().unwrap_or_default().to_owned())
    }
}
