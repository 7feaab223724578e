//! `gavel-loadgen`: load generator for Gavel's hot paths, run against a live
//! `gavel serve` (see `bench/claims.sh`, which runs it against both claim
//! strategies so the gain is a ratio from one run).
//!
//! `claims`: signs up buyers, creates a sale, waits for it to start, then
//! (1) claims with `--concurrency` connections until the first sold-out answer,
//! reporting successful claims/s and p50/p99 of the 201s, and (2) hammers the
//! sold-out sale for `--soldout-seconds` with buyers who hold nothing,
//! reporting sold-out answers/s and p50/p99. Each connection is one
//! HTTP/1.1 keep-alive stream; requests are bounded in number and time.
//!
//! `checkout`: `--holders` buyers each claim a unit, then all check out at the
//! same moment, one connection each; reports paid checkouts/s, p50/p99 and the
//! answers by order status (see `bench/checkout.sh`).
//!
//! `bids`: one hot auction, bid attempts/s and p50/p99 (module `bids`, see
//! `bench/bids.sh`).

mod bids;

mod feed;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(name = "gavel-loadgen", about = "Load generator for Gavel's hot paths")]
struct Cli {
    /// Address of a running `gavel serve`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One hot sale: claims while stock lasts, then sold-out answers.
    Claims {
        /// A merchant API key (from `gavel merchants create`).
        #[arg(long)]
        merchant_key: String,
        /// Concurrent connections (virtual buyers in flight).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Units on sale (and buyers who will get one).
        #[arg(long, default_value_t = 20_000)]
        inventory: usize,
        /// Buyers who hold nothing, for the sold-out phase.
        #[arg(long, default_value_t = 2_000)]
        extra_buyers: usize,
        /// Longest the claim phase may run (a slow strategy stops here).
        #[arg(long, default_value_t = 30)]
        max_seconds: u64,
        /// Length of the sold-out phase.
        #[arg(long, default_value_t = 5)]
        soldout_seconds: u64,
        /// A label for the report line (e.g. the server's strategy).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Checkout: `--holders` buyers each hold a unit, then all check out at
    /// once (one connection each), against Stripe or its stand-in.
    Checkout {
        #[arg(long)]
        merchant_key: String,
        /// Buyers holding a unit, all checking out at the same moment.
        #[arg(long, default_value_t = 1_000)]
        holders: usize,
        #[arg(long, default_value = "pm_card_visa")]
        payment_method: String,
        /// Checkouts started per second (0: all at once).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// One hot auction: bid attempts (accepted and refused) as fast as answered.
    Bids {
        #[arg(long)]
        merchant_key: String,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Buyers taking turns on the connections.
        #[arg(long, default_value_t = 1_000)]
        bidders: usize,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Live-feed latency: SSE subscribers on one auction, events appended in
    /// the database (see `feed.rs`).
    Feed {
        #[arg(long)]
        merchant_key: String,
        /// The server's database (the appender writes there directly).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, default_value_t = 1_000)]
        subscribers: usize,
        #[arg(long, default_value_t = 500)]
        events: usize,
        /// Events appended per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Claims { merchant_key, concurrency, inventory, extra_buyers, max_seconds, soldout_seconds, label } => {
            let run = ClaimRun {
                addr: cli.addr,
                merchant_key,
                concurrency,
                inventory,
                extra_buyers,
                max_seconds,
                soldout_seconds,
                label,
            };
            run.execute().await
        }
        Cmd::Bids { merchant_key, concurrency, bidders, seconds, label } => {
            let base = ClaimRun {
                addr: cli.addr,
                merchant_key,
                concurrency,
                inventory: 0,
                extra_buyers: 0,
                max_seconds: seconds,
                soldout_seconds: 0,
                label,
            };
            bids::BidRun { base, bidders, seconds }.execute().await
        }
        Cmd::Checkout { merchant_key, holders, payment_method, rate, label } => {
            let run = ClaimRun {
                addr: cli.addr,
                merchant_key,
                concurrency: 64,
                inventory: holders,
                extra_buyers: 0,
                max_seconds: 60,
                soldout_seconds: 0,
                label,
            };
            run.checkouts(&payment_method, rate).await
        }
        Cmd::Feed { merchant_key, database_url, subscribers, events, rate } => {
            feed::FeedRun { addr: cli.addr, merchant_key, database_url, subscribers, events, rate }.execute().await
        }
    }
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { sender, host: addr.to_string() })
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let mut req = Request::builder().method(method).uri(path).header("host", &self.host);
        if let Some(auth) = auth {
            req = req.header("authorization", format!("Bearer {auth}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        let res = self.sender.send_request(req.body(Full::new(body))?).await?;
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn json(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, bytes) = self.call(method, path, auth, body).await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}

struct ClaimRun {
    addr: SocketAddr,
    merchant_key: String,
    concurrency: usize,
    inventory: usize,
    extra_buyers: usize,
    max_seconds: u64,
    soldout_seconds: u64,
    label: String,
}

#[derive(Default)]
struct Tally {
    ok: Vec<u32>,
    sold_out: Vec<u32>,
    contention: usize,
    other: usize,
}

impl ClaimRun {
    async fn execute(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let buyers = self.sign_up(self.inventory + self.extra_buyers).await?;
        eprintln!("signed up {} buyers in {:.1}s", buyers.len(), started.elapsed().as_secs_f64());
        let sale = self.create_sale().await?;
        eprintln!("sale {sale} is active; claiming with {} connections", self.concurrency);

        let path = Arc::new(format!("/v1/sales/{sale}/claims"));
        let buyers = Arc::new(buyers);
        // Phase 1: buyers claim until the first sold-out answer. A buyer answered
        // 503 (contention: the naive strategy's retry budget ran out) tries again.
        let next = Arc::new(AtomicUsize::new(0));
        let sold_out = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs(self.max_seconds);
        let phase1 = Instant::now();
        let tallies = self
            .spawn_workers(|mut conn, _| {
                let (next, buyers, path, sold_out) = (next.clone(), buyers.clone(), path.clone(), sold_out.clone());
                let limit = buyers.len();
                async move {
                    let mut tally = Tally::default();
                    let mut retry: Option<usize> = None;
                    while !sold_out.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let i = match retry.take() {
                            Some(i) => i,
                            None => next.fetch_add(1, Ordering::Relaxed),
                        };
                        if i >= limit {
                            break;
                        }
                        match record(&mut tally, &mut conn, &path, &buyers[i]).await? {
                            409 => sold_out.store(true, Ordering::Relaxed),
                            503 => retry = Some(i),
                            _ => {}
                        }
                    }
                    Ok(tally)
                }
            })
            .await?;
        let phase1_secs = phase1.elapsed().as_secs_f64();
        let claims = merge(tallies);

        // Phase 2: buyers who hold nothing ask again and again; every answer is sold out.
        let stop = Arc::new(AtomicBool::new(false));
        let phase2 = Instant::now();
        let soldout_for = Duration::from_secs(self.soldout_seconds);
        let tallies = self
            .spawn_workers(|mut conn, worker| {
                let (stop, buyers, path, next) = (stop.clone(), buyers.clone(), path.clone(), next.clone());
                let first = next.load(Ordering::Relaxed).min(buyers.len().saturating_sub(1));
                let count = (buyers.len() - first).max(1);
                async move {
                    let mut tally = Tally::default();
                    let mut i = worker;
                    while phase2.elapsed() < soldout_for && !stop.load(Ordering::Relaxed) {
                        let buyer = &buyers[first + (i % count)];
                        i += 7919;
                        record(&mut tally, &mut conn, &path, buyer).await?;
                    }
                    Ok(tally)
                }
            })
            .await?;
        let phase2_secs = phase2.elapsed().as_secs_f64();
        let soldout = merge(tallies);

        let (p50, p99) = percentiles(&claims.ok);
        let (s50, s99) = percentiles(&soldout.sold_out);
        let report = json!({
            "label": self.label, "concurrency": self.concurrency, "inventory": self.inventory,
            "claims": claims.ok.len(), "claim_phase_seconds": round(phase1_secs),
            "claims_per_second": round(claims.ok.len() as f64 / phase1_secs),
            "claim_p50_ms": p50, "claim_p99_ms": p99,
            "retried_503": claims.contention, "other_answers": claims.other + soldout.other,
            "sold_out_answers": soldout.sold_out.len(), "sold_out_per_second": round(soldout.sold_out.len() as f64 / phase2_secs),
            "sold_out_p50_ms": s50, "sold_out_p99_ms": s99,
        });
        println!("{report}");
        if claims.ok.len() > self.inventory {
            bail!("OVERSELL: {} holds for {} units", claims.ok.len(), self.inventory);
        }
        Ok(())
    }

    /// Set-up (sign-ups, a sale, one hold each) on 64 connections, then every
    /// holder checks out on a connection of its own: all at once, or `rate`
    /// starts per second.
    async fn checkouts(&self, payment_method: &str, rate: u32) -> anyhow::Result<()> {
        let buyers = self.sign_up(self.inventory).await?;
        let sale = self.create_sale().await?;
        let claim_path = Arc::new(format!("/v1/sales/{sale}/claims"));
        let (buyers, next) = (Arc::new(buyers), Arc::new(AtomicUsize::new(0)));
        let holds = self
            .spawn_workers(|mut conn, _| {
                let (buyers, next, path) = (buyers.clone(), next.clone(), claim_path.clone());
                async move {
                    let mut held = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(buyer) = buyers.get(i) else { return anyhow::Ok(held) };
                        let (status, claim) = conn.json(Method::POST, &path, Some(buyer), None).await?;
                        if status != 201 {
                            bail!("claim answered {status}: {claim}");
                        }
                        held.push((buyer.clone(), claim["id"].as_str().unwrap_or_default().to_owned()));
                    }
                }
            })
            .await?;
        let held: Vec<(String, String)> = holds.into_iter().flatten().collect();
        eprintln!("{} buyers hold a unit; all check out now", held.len());

        // A burst opens every connection first, so all requests leave at once;
        // a steady run opens each when its turn comes (a connection left idle
        // past the server's header-read timeout is closed by the server).
        let mut conns = Vec::with_capacity(held.len());
        for _ in 0..held.len() {
            conns.push(if rate == 0 { Some(Conn::open(self.addr).await?) } else { None });
        }
        let addr = self.addr;
        let body = Arc::new(json!({ "payment_method": payment_method }));
        let gate = Arc::new(tokio::sync::Barrier::new(held.len() + 1));
        let mut handles = Vec::with_capacity(held.len());
        for (i, ((buyer, claim), conn)) in held.into_iter().zip(conns).enumerate() {
            let (body, gate) = (body.clone(), gate.clone());
            let offset = if rate == 0 { Duration::ZERO } else { Duration::from_secs_f64(i as f64 / f64::from(rate)) };
            handles.push(tokio::spawn(async move {
                gate.wait().await;
                tokio::time::sleep(offset).await;
                let mut conn = match conn {
                    Some(conn) => conn,
                    None => Conn::open(addr).await?,
                };
                let t = Instant::now();
                let (status, order) =
                    conn.json(Method::POST, &format!("/v1/claims/{claim}/checkout"), Some(&buyer), Some(&body)).await?;
                let micros = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                let outcome =
                    if status == 200 { order["status"].as_str().unwrap_or("?").to_owned() } else { status.to_string() };
                anyhow::Ok((outcome, micros))
            }));
        }
        gate.wait().await;
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(handles.len());
        let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
        for h in handles {
            let (outcome, micros) = h.await??;
            *outcomes.entry(outcome).or_default() += 1;
            latencies.push(micros);
        }
        let secs = started.elapsed().as_secs_f64();
        let (p50, p99) = percentiles(&latencies);
        let paid = outcomes.get("paid").copied().unwrap_or(0);
        println!(
            "{}",
            json!({
                "label": self.label, "holders": latencies.len(), "rate": rate, "seconds": round(secs),
                "paid_per_second": round(paid as f64 / secs), "p50_ms": p50, "p99_ms": p99, "answers": outcomes,
            })
        );
        Ok(())
    }

    async fn spawn_workers<F, Fut, T>(&self, make: F) -> anyhow::Result<Vec<T>>
    where
        F: Fn(Conn, usize) -> Fut,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let mut handles = Vec::with_capacity(self.concurrency);
        for worker in 0..self.concurrency {
            let conn = Conn::open(self.addr).await?;
            handles.push(tokio::spawn(make(conn, worker)));
        }
        let mut results = Vec::with_capacity(handles.len());
        for h in handles {
            results.push(h.await??);
        }
        Ok(results)
    }

    async fn sign_up(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let next = Arc::new(AtomicUsize::new(0));
        let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
        let mut handles = Vec::new();
        for _ in 0..self.concurrency.min(64) {
            let mut conn = Conn::open(self.addr).await?;
            let (next, run) = (next.clone(), run.clone());
            handles.push(tokio::spawn(async move {
                let mut tokens = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return anyhow::Ok(tokens);
                    }
                    let body =
                        json!({ "email": format!("load{i}-{run}@bench.gavel.dev"), "password": "bench-password" });
                    let (status, v) = conn.json(Method::POST, "/v1/buyers", None, Some(&body)).await?;
                    if status != 201 {
                        bail!("sign-up answered {status}: {v}");
                    }
                    tokens.push(v["token"].as_str().unwrap_or_default().to_owned());
                }
            }));
        }
        let mut tokens = Vec::with_capacity(n);
        for h in handles {
            tokens.extend(h.await??);
        }
        Ok(tokens)
    }

    async fn create_sale(&self) -> anyhow::Result<String> {
        let mut conn = Conn::open(self.addr).await?;
        let key = Some(self.merchant_key.as_str());
        let (status, product) =
            conn.json(Method::POST, "/v1/products", key, Some(&json!({ "title": "Bench drop" }))).await?;
        if status != 201 {
            bail!("creating the product answered {status}: {product}");
        }
        let starts_at = chrono::Utc::now() + chrono::Duration::seconds(1);
        let body = json!({
            "product_id": product["id"], "price": 1999, "currency": "usd", "inventory": self.inventory,
            "starts_at": starts_at.to_rfc3339(), "duration_seconds": 3600, "hold_seconds": 3600,
        });
        let (status, sale) = conn.json(Method::POST, "/v1/sales", key, Some(&body)).await?;
        if status != 201 {
            bail!("creating the sale answered {status}: {sale}");
        }
        let id = sale["id"].as_str().unwrap_or_default().to_owned();
        let path = format!("/v1/sales/{id}");
        for _ in 0..200 {
            let (_, s) = conn.json(Method::GET, &path, key, None).await?;
            if s["status"] == "active" {
                return Ok(id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the sale did not start within 10 s (are the workers running?)")
    }
}

async fn record(tally: &mut Tally, conn: &mut Conn, path: &str, buyer: &str) -> anyhow::Result<u16> {
    let t = Instant::now();
    let (status, _) = conn.call(Method::POST, path, Some(buyer), None).await?;
    let micros = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    match status {
        201 => tally.ok.push(micros),
        409 => tally.sold_out.push(micros),
        503 => tally.contention += 1,
        _ => tally.other += 1,
    }
    Ok(status)
}

fn merge(tallies: Vec<Tally>) -> Tally {
    tallies.into_iter().fold(Tally::default(), |mut acc, t| {
        acc.ok.extend(t.ok);
        acc.sold_out.extend(t.sold_out);
        acc.contention += t.contention;
        acc.other += t.other;
        acc
    })
}

/// p50 and p99 in milliseconds.
fn percentiles(micros: &[u32]) -> (f64, f64) {
    if micros.is_empty() {
        return (0.0, 0.0);
    }
    let mut sorted = micros.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| f64::from(sorted[((sorted.len() - 1) as f64 * q).round() as usize]) / 1000.0;
    (round(at(0.50)), round(at(0.99)))
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
