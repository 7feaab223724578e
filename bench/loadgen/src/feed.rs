//! `feed`: live-feed latency at many subscribers. Creates an auction over the
//! API, opens `--subscribers` SSE streams on it (one TCP connection each),
//! then appends `--events` feed events at `--rate` a second straight into the
//! database through `gavel_domain::feed::append` (in a transaction that
//! locks the auction row, as the bidding code does). Each event's data
//! carries the appender's clock (`t`, µs) taken just before its commit; each
//! subscriber subtracts it from its own clock on receipt (same machine), so
//! the figure covers commit, `NOTIFY`, the hub's read and fan-out, and the
//! socket. Reports p50/p99/max and how many deliveries arrived.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gavel_domain::feed::{self, Entry, Topic};
use hyper::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Conn;

pub struct FeedRun {
    pub addr: SocketAddr,
    pub merchant_key: String,
    pub database_url: String,
    pub subscribers: usize,
    pub events: usize,
    pub rate: u32,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl FeedRun {
    pub async fn execute(self) -> anyhow::Result<()> {
        let auction = self.create_auction().await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.database_url)
            .await
            .context("connecting to the database")?;

        // Subscribers, each counting the events it got and their latencies.
        let path = format!("/v1/auctions/{auction}/events");
        let mut subs = tokio::task::JoinSet::new();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(self.subscribers.max(1));
        for _ in 0..self.subscribers {
            let (addr, path, ready, events) = (self.addr, path.clone(), ready_tx.clone(), self.events);
            subs.spawn(async move { subscribe(addr, &path, ready, events).await });
        }
        drop(ready_tx);
        let started = Instant::now();
        for _ in 0..self.subscribers {
            if tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await.ok().flatten().is_none() {
                bail!("subscribers did not all connect");
            }
        }
        eprintln!("{} subscribers connected in {:?}", self.subscribers, started.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;

        // The appender.
        let topic = Topic::Auction(auction.parse().map_err(|_| anyhow::anyhow!("not an auction id: {auction}"))?);
        let uuid = uuid::Uuid::parse_str(auction.trim_start_matches("auc_"))?;
        let gap = Duration::from_secs_f64(1.0 / f64::from(self.rate.max(1)));
        let mut ticker = tokio::time::interval(gap);
        let appending = Instant::now();
        for i in 0..self.events {
            ticker.tick().await;
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT 1 FROM auctions WHERE id = $1 FOR UPDATE").bind(uuid).execute(&mut *tx).await?;
            let entry = Entry { event: "bid".into(), data: json!({ "sequence": i + 1, "t": now_micros() }) };
            feed::append(&mut tx, topic, &[entry]).await?;
            tx.commit().await?;
        }
        let appended = appending.elapsed();

        let mut latencies = Vec::with_capacity(self.subscribers * self.events);
        let mut complete = 0;
        while let Some(joined) = subs.join_next().await {
            let (got, lat) = joined??;
            if got == self.events {
                complete += 1;
            }
            latencies.extend(lat);
        }
        latencies.sort_unstable();
        let pct =
            |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
        let ms = |v: Option<&i64>| v.map_or(f64::NAN, |v| *v as f64 / 1000.0);
        println!(
            "feed: {} subscribers, {} events at {}/s (appended in {:.1}s): {} deliveries, {} subscribers got all; \
             latency commit→receipt p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.subscribers,
            self.events,
            self.rate,
            appended.as_secs_f64(),
            latencies.len(),
            complete,
            ms(pct(0.50)),
            ms(pct(0.99)),
            ms(latencies.last()),
        );
        Ok(())
    }

    async fn create_auction(&self) -> anyhow::Result<String> {
        let mut conn = Conn::open(self.addr).await?;
        let key = Some(self.merchant_key.as_str());
        let (status, product) =
            conn.json(Method::POST, "/v1/products", key, Some(&json!({ "title": "Bench lot" }))).await?;
        if status != 201 {
            bail!("creating the product answered {status}: {product}");
        }
        let now = chrono::Utc::now();
        let body = json!({
            "product_id": product["id"], "currency": "usd", "starting_price": 1000,
            "starts_at": (now + chrono::Duration::seconds(5)).to_rfc3339(),
            "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
        });
        let (status, auction) = conn.json(Method::POST, "/v1/auctions", key, Some(&body)).await?;
        if status != 201 {
            bail!("creating the auction answered {status}: {auction}");
        }
        Ok(auction["id"].as_str().unwrap_or_default().to_owned())
    }
}

/// One SSE subscriber: reads until it has `events` bid events (or the stream
/// stays quiet for 10 s); returns how many it got and their latencies (µs).
async fn subscribe(
    addr: SocketAddr,
    path: &str,
    ready: tokio::sync::mpsc::Sender<()>,
    events: usize,
) -> anyhow::Result<(usize, Vec<i64>)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut text = String::new();
    let mut got = 0;
    let mut latencies = Vec::with_capacity(events);
    let mut said_ready = false;
    while got < events {
        let n = match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
        };
        let received = now_micros();
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if !said_ready && text.contains("event: snapshot") {
            said_ready = true;
            let _ = ready.send(()).await;
        }
        // Every complete `data:` line carrying a `t`.
        while let Some(end) = text.find('\n') {
            let line: String = text.drain(..=end).collect();
            if let Some(at) = line.find("\"t\":") {
                let digits: String = line[at + 4..].chars().take_while(char::is_ascii_digit).collect();
                if let Ok(t) = digits.parse::<i64>() {
                    latencies.push(received - t);
                    got += 1;
                }
            }
        }
    }
    if !said_ready {
        let _ = ready.send(()).await;
    }
    Ok((got, latencies))
}
