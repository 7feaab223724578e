//! A small Server-Sent Events client for the live-feed tests: reqwest's body
//! stream, cut into events as the SSE specification says (blank-line
//! separated blocks of `field: value` lines; `:` starts a comment).

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
    /// A comment block (a heartbeat), with its text.
    pub comment: Option<String>,
}

impl SseEvent {
    pub fn seq(&self) -> i64 {
        self.id.as_deref().and_then(|i| i.parse().ok()).expect("an event with a numeric id")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("the event's data is JSON")
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

pub struct SseClient {
    body: Body,
    buf: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// A client without the shared client's whole-request timeout: a stream lives long.
fn streaming_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| reqwest::Client::builder().build().expect("an HTTP client"))
}

impl SseClient {
    /// `GET url`, with `Last-Event-ID` when given.
    pub async fn connect(url: &str, last_event_id: Option<&str>) -> Self {
        let mut req = streaming_client().get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("the feed answers");
        let (status, headers) = (resp.status(), resp.headers().clone());
        Self { body: Box::pin(resp.bytes_stream().map(|r| r.map(|b| b.to_vec()))), buf: String::new(), status, headers }
    }

    /// The next block (event or comment) within `within`; `None` when the
    /// stream ended (or nothing came in time).
    pub async fn next_block(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse(&block));
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Some(Err(_)) | None) | Err(_) => return None,
            }
        }
    }

    /// The next event (comments skipped) within `within`.
    pub async fn next_event(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let block = self.next_block(left).await?;
            if block.comment.is_none() {
                return Some(block);
            }
        }
    }

    /// The next `n` events, each within `each`.
    pub async fn events(&mut self, n: usize, each: Duration) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            match self.next_event(each).await {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }

    /// The body as text (for an error answer).
    pub async fn text(mut self) -> String {
        while let Some(Ok(bytes)) = self.body.next().await {
            self.buf.push_str(&String::from_utf8_lossy(&bytes));
        }
        self.buf
    }
}

fn parse(block: &str) -> SseEvent {
    let mut event = SseEvent { event: "message".into(), ..SseEvent::default() };
    let mut data: Vec<&str> = Vec::new();
    let mut fields = 0;
    for line in block.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix(':') {
            event.comment = Some(comment.trim().to_owned());
            continue;
        }
        fields += 1;
        let (name, value) = line.split_once(':').map_or((line, ""), |(n, v)| (n, v.strip_prefix(' ').unwrap_or(v)));
        match name {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = value.to_owned(),
            "data" => data.push(value),
            _ => {}
        }
    }
    if fields > 0 {
        event.comment = None;
    }
    event.data = data.join("\n");
    event
}
