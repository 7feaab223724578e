//! A typed client for Gavel's public API, one method per endpoint, answering
//! `Result<Body, Problem>`.
//!
//! The bodies are deserialized into this file's own structs, written from the
//! contract (`API.md`), not into the server's types: a field the server renames,
//! drops or retypes by accident fails these tests instead of changing the
//! contract silently. (Fields the contract does not name are ignored, so a
//! field added on purpose does not break them.)

// The client mirrors the whole contract: every documented field and endpoint,
// whether or not a test reads it yet.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::helpers::{TestApp, client};

/// An error answer (RFC 9457 problem+json): the HTTP status, the stable
/// `code`, the human `detail` and the other members (the facts).
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
    /// Members other than `type`, `title`, `status`, `code`, `detail`.
    pub facts: Map<String, Value>,
    pub headers: HeaderMap,
    pub raw: String,
}

impl Problem {
    /// `(status, code)`, for one-line assertions.
    pub fn is(&self) -> (StatusCode, &str) {
        (self.status, self.code.as_str())
    }

    /// A fact the problem carries (`Value::Null` when absent).
    pub fn fact(&self, name: &str) -> &Value {
        self.facts.get(name).unwrap_or(&Value::Null)
    }

    /// Served as `application/problem+json` whose own `status` is the HTTP
    /// status, with a `detail`.
    pub fn is_well_formed(&self) -> bool {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/problem+json")
            && serde_json::from_str::<Value>(&self.raw).ok().and_then(|b| b["status"].as_u64())
                == Some(u64::from(self.status.as_u16()))
            && !self.detail.is_empty()
    }

    fn from_answer(status: StatusCode, headers: HeaderMap, raw: String) -> Self {
        let mut facts = match serde_json::from_str::<Value>(&raw) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let mut take = |k: &str| facts.remove(k).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let code = take("code");
        let detail = take("detail");
        for standard in ["type", "title", "status", "instance"] {
            facts.remove(standard);
        }
        Self { status, code, detail, facts, headers, raw }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.raw)
    }
}

/// `POST /v1/buyers`.
#[derive(Debug, Clone, Deserialize)]
pub struct SignedUp {
    pub id: String,
    pub token: String,
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub token: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
}

/// A sale as its merchant sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct Sale {
    pub id: String,
    /// `scheduled | active | ended | cancelled`.
    pub status: String,
    pub product_id: Option<String>,
    pub price: i64,
    pub currency: String,
    pub inventory: i64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub hold_seconds: i64,
    pub per_buyer_limit: i64,
    pub version: i64,
    /// The `ETag` header of an answer about this one sale.
    #[serde(skip)]
    pub etag: Option<String>,
}

impl Sale {
    /// `(available, held, sold)`.
    pub fn counts(&self) -> (i64, i64, i64) {
        (self.available, self.held, self.sold)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Claim {
    pub id: String,
    pub sale_id: String,
    /// `held | checking_out | checked_out | expired | released`.
    pub status: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    pub id: String,
    /// `processing | unknown | succeeded | failed | refunded`.
    pub status: String,
    pub failure_code: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: String,
    /// `paid | pending_verification | payment_failed | awaiting_payment | refunded`.
    pub status: String,
    pub sale_id: Option<String>,
    pub claim_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub paid_at: Option<DateTime<Utc>>,
    pub payment: Option<Payment>,
}

impl Order {
    /// The latest payment attempt's status ("" when there is none).
    pub fn payment_status(&self) -> &str {
        self.payment.as_ref().map_or("", |p| p.status.as_str())
    }
}

/// `{object: "list", data, has_more}`.
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T> List<T> {
    pub fn ids<'a>(&'a self, id: impl Fn(&'a T) -> &'a str) -> Vec<&'a str> {
        self.data.iter().map(id).collect()
    }
}

/// One caller of the API: anonymous, a merchant (API key) or a buyer (token).
pub struct Client<'a> {
    app: &'a TestApp,
    auth: Option<String>,
    idempotency_key: Option<String>,
}

impl TestApp {
    /// The API as nobody in particular.
    pub fn anonymous(&self) -> Client<'_> {
        Client { app: self, auth: None, idempotency_key: None }
    }

    /// The API as the holder of `credential` (a merchant key or a buyer token).
    pub fn as_(&self, credential: &str) -> Client<'_> {
        Client { app: self, auth: Some(credential.to_owned()), idempotency_key: None }
    }
}

impl Client<'_> {
    /// The next mutating call carries this `Idempotency-Key`.
    pub fn with_key(mut self, key: &str) -> Self {
        self.idempotency_key = Some(key.to_owned());
        self
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Result<(T, HeaderMap), Problem> {
        let mut req = client().request(method.clone(), format!("{}{path}", self.app.base));
        if let Some(auth) = &self.auth {
            req = req.bearer_auth(auth);
        }
        if let Some(key) = &self.idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(v) = if_match {
            req = req.header("If-Match", v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("the request reaches the server");
        let (status, headers) = (res.status(), res.headers().clone());
        let raw = res.text().await.expect("the answer has a readable body");
        if !status.is_success() {
            return Err(Problem::from_answer(status, headers, raw));
        }
        match serde_json::from_str(&raw) {
            Ok(body) => Ok((body, headers)),
            Err(e) => panic!("{method} {path} answered {status} with a body off the contract ({e}): {raw}"),
        }
    }

    async fn sale_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Result<Sale, Problem> {
        let (mut sale, headers): (Sale, _) = self.call(method, path, body, if_match).await?;
        sale.etag = headers.get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(sale)
    }

    // ---------------------------------------------------------- buyers

    pub async fn sign_up(&self, email: &str, password: &str) -> Result<SignedUp, Problem> {
        let body = json!({ "email": email, "password": password });
        Ok(self.call(Method::POST, "/v1/buyers", Some(body), None).await?.0)
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Result<Session, Problem> {
        let body = json!({ "email": email, "password": password });
        Ok(self.call(Method::POST, "/v1/sessions", Some(body), None).await?.0)
    }

    // ---------------------------------------------------------- merchants

    pub async fn create_product(&self, title: &str) -> Result<Product, Problem> {
        Ok(self.call(Method::POST, "/v1/products", Some(json!({ "title": title })), None).await?.0)
    }

    /// `POST /v1/sales` with `terms` as the body.
    pub async fn create_sale(&self, terms: Value) -> Result<Sale, Problem> {
        self.sale_call(Method::POST, "/v1/sales", Some(terms), None).await
    }

    pub async fn sale(&self, id: &str) -> Result<Sale, Problem> {
        self.sale_call(Method::GET, &format!("/v1/sales/{id}"), None, None).await
    }

    /// `GET /v1/sales?{query}`.
    pub async fn sales(&self, query: &str) -> Result<List<Sale>, Problem> {
        Ok(self.call(Method::GET, &format!("/v1/sales?{query}"), None, None).await?.0)
    }

    /// `PATCH /v1/sales/{id}` with `If-Match: {if_match}` when given.
    pub async fn patch_sale(&self, id: &str, if_match: Option<&str>, changes: Value) -> Result<Sale, Problem> {
        self.sale_call(Method::PATCH, &format!("/v1/sales/{id}"), Some(changes), if_match).await
    }

    pub async fn cancel_sale(&self, id: &str) -> Result<Sale, Problem> {
        self.sale_call(Method::POST, &format!("/v1/sales/{id}/cancel"), Some(json!({})), None).await
    }

    // ---------------------------------------------------------- claims and orders

    /// `POST /v1/sales/{sale}/claims`: a new hold or the buyer's existing one.
    pub async fn claim(&self, sale: &str) -> Result<Claim, Problem> {
        Ok(self.call(Method::POST, &format!("/v1/sales/{sale}/claims"), Some(json!({})), None).await?.0)
    }

    pub async fn get_claim(&self, id: &str) -> Result<Claim, Problem> {
        Ok(self.call(Method::GET, &format!("/v1/claims/{id}"), None, None).await?.0)
    }

    pub async fn checkout(&self, claim: &str, payment_method: &str) -> Result<Order, Problem> {
        let body = json!({ "payment_method": payment_method });
        Ok(self.call(Method::POST, &format!("/v1/claims/{claim}/checkout"), Some(body), None).await?.0)
    }

    pub async fn order(&self, id: &str) -> Result<Order, Problem> {
        Ok(self.call(Method::GET, &format!("/v1/orders/{id}"), None, None).await?.0)
    }

    /// `GET /v1/orders?{query}`.
    pub async fn orders(&self, query: &str) -> Result<List<Order>, Problem> {
        Ok(self.call(Method::GET, &format!("/v1/orders?{query}"), None, None).await?.0)
    }

    pub async fn pay(&self, order: &str, payment_method: &str) -> Result<Order, Problem> {
        let body = json!({ "payment_method": payment_method });
        Ok(self.call(Method::POST, &format!("/v1/orders/{order}/pay"), Some(body), None).await?.0)
    }

    // ---------------------------------------------------------- operations

    /// `GET /healthz`: the process is up.
    pub async fn healthz(&self) -> Result<Value, Problem> {
        Ok(self.call(Method::GET, "/healthz", None, None).await?.0)
    }

    /// `GET /readyz`; not ready is a 503 whose body says why.
    pub async fn readyz(&self) -> Result<Value, Problem> {
        Ok(self.call(Method::GET, "/readyz", None, None).await?.0)
    }
}
