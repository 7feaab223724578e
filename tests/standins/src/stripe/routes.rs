//! The stand-in's HTTP surface. Every API request passes [`handle`], which
//! applies auth, faults and idempotency around the operation proper.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::objects::{PaymentIntent, Refund, decline_error, new_id, now};
use super::{Faults, Shared, Store, lists, webhooks};

type Shd = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/payment_intents", post(create_intent).get(list_intents))
        .route("/v1/payment_intents/search", get(search_intents))
        .route("/v1/payment_intents/{id}", get(get_intent))
        .route("/v1/payment_intents/{id}/confirm", post(confirm_intent))
        .route("/v1/refunds", post(create_refund).get(list_refunds))
        .route("/v1/refunds/{id}", get(get_refund))
        .route("/v1/charges", get(list_charges))
        .route("/v1/charges/{id}", get(get_charge))
        .route("/v1/balance_transactions", get(list_balance_transactions))
        .merge(super::control::router())
        .route("/_control/faults", post(set_faults).get(get_faults))
        .route("/_control/state", get(state))
        .with_state(shared)
}

/// What an operation produced: the answer, and the events it causes.
pub(crate) struct Outcome {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) events: Vec<(&'static str, Value)>,
}

impl Outcome {
    pub(crate) fn ok(body: Value) -> Self {
        Self { status: 200, body, events: Vec::new() }
    }

    pub(crate) fn error(status: u16, kind: &str, message: &str) -> Self {
        Self { status, body: json!({ "error": { "type": kind, "message": message } }), events: Vec::new() }
    }

    pub(crate) fn missing(what: &str, id: &str) -> Self {
        let mut o = Self::error(404, "invalid_request_error", &format!("No such {what}: '{id}'"));
        o.body["error"]["code"] = json!("resource_missing");
        o
    }
}

pub(crate) fn respond(status: u16, body: Value, replayed: bool) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(body)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Auth, faults, idempotency, then `op` under the store's lock.
async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    fingerprint: Option<String>,
    op: impl FnOnce(&mut Store) -> Outcome,
) -> Response {
    let authorized =
        headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer sk_"));
    if !authorized {
        let o = Outcome::error(401, "invalid_request_error", "You did not provide a valid API key.");
        return respond(o.status, o.body, false);
    }
    let latency = shared.store().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (outcome, replayed, lose) = {
        let mut store = shared.store();
        if store.faults.fail_next > 0 {
            store.faults.fail_next -= 1;
            let o = Outcome::error(500, "api_error", "An unexpected error occurred (injected by the stand-in).");
            return respond(o.status, o.body, false);
        }
        let lose = store.faults.lose_next > 0;
        if lose {
            store.faults.lose_next -= 1;
        }
        let stored = match (&key, &fingerprint) {
            (Some(k), Some(_)) => store.idempotency.get(k).cloned(),
            _ => None,
        };
        match (stored, &fingerprint) {
            (Some((first, _, _)), Some(now)) if &first != now => {
                let mut o = Outcome::error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                );
                o.events.clear();
                (o, false, lose)
            }
            (Some((_, status, body)), _) => (Outcome { status, body, events: Vec::new() }, true, lose),
            (None, _) => {
                let o = op(&mut store);
                if let (Some(k), Some(fp)) = (key, fingerprint)
                    && o.status < 500
                {
                    store.idempotency.insert(k, (fp, o.status, o.body.clone()));
                }
                (o, false, lose)
            }
        }
    };
    for (kind, object) in &outcome.events {
        webhooks::emit(shared, kind, object.clone());
    }
    if lose {
        // Done, but the answer never comes: the client must time out.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    respond(outcome.status, outcome.body, replayed)
}

/// Form parameters (`a=1&metadata[k]=v`).
struct Params(BTreeMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .map(|pairs| Self(pairs.into_iter().collect()))
            .map_err(|e| {
                let o = Outcome::error(400, "invalid_request_error", &format!("Invalid form body: {e}"));
                respond(o.status, o.body, false)
            })
    }
}

impl Params {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_owned(), v.clone())))
            .collect()
    }

    fn fingerprint(&self, method: &Method, path: &str) -> String {
        format!("{method} {path} {}", serde_urlencoded::to_string(&self.0).unwrap_or_default())
    }
}

fn required_amount(p: &Params) -> Result<i64, Outcome> {
    p.get("amount")
        .and_then(|a| a.parse::<i64>().ok())
        .filter(|a| *a > 0)
        .ok_or_else(|| Outcome::error(400, "invalid_request_error", "Missing or invalid required param: amount."))
}

/// Takes one of the `processing_next` faults, if any are left.
fn take_processing(store: &mut Store) -> bool {
    let hold = store.faults.processing_next > 0;
    if hold {
        store.faults.processing_next -= 1;
    }
    hold
}

/// Confirms `pi`; a decline answers 402 with the intent inside the error, as
/// Stripe does. `hold`: it stays `processing` (a `processing_next` fault).
fn confirm(pi: &mut PaymentIntent, payment_method: Option<String>, hold: bool) -> Outcome {
    if hold && pi.status != "succeeded" {
        pi.payment_method = payment_method.or_else(|| pi.payment_method.clone());
        pi.status = "processing".into();
        pi.latest_charge = Some(new_id("ch"));
        return Outcome::ok(pi.to_json());
    }
    if let Err(message) = pi.confirm(payment_method) {
        return Outcome::error(400, "invalid_request_error", &message);
    }
    let body = pi.to_json();
    if pi.status == "succeeded" {
        Outcome { status: 200, events: vec![("payment_intent.succeeded", body.clone())], body }
    } else {
        let mut error = decline_error(pi.last_error.as_deref().unwrap_or("Your card was declined."));
        error["payment_intent"] = body.clone();
        Outcome { status: 402, body: json!({ "error": error }), events: vec![("payment_intent.payment_failed", body)] }
    }
}

async fn create_intent(State(shared): Shd, headers: HeaderMap, params: Params) -> Response {
    let fp = params.fingerprint(&Method::POST, "/v1/payment_intents");
    handle(&shared, &headers, Some(fp), |store| {
        let amount = match required_amount(&params) {
            Ok(a) => a,
            Err(o) => return o,
        };
        let Some(currency) = params.get("currency") else {
            return Outcome::error(400, "invalid_request_error", "Missing required param: currency.");
        };
        let payment_method = params.get("payment_method");
        let mut pi = PaymentIntent {
            id: new_id("pi"),
            amount,
            currency: currency.to_lowercase(),
            status: if payment_method.is_some() { "requires_confirmation" } else { "requires_payment_method" }.into(),
            payment_method,
            metadata: params.metadata(),
            created: now(),
            latest_charge: None,
            amount_refunded: 0,
            last_error: None,
        };
        let outcome = if params.get("confirm").as_deref() == Some("true") {
            let hold = take_processing(store);
            confirm(&mut pi, None, hold)
        } else {
            Outcome::ok(pi.to_json())
        };
        if let Some(charge) = &pi.latest_charge {
            store.charges.insert(charge.clone(), pi.id.clone());
        }
        store.intents.push(pi);
        outcome
    })
    .await
}

async fn confirm_intent(State(shared): Shd, Path(id): Path<String>, headers: HeaderMap, params: Params) -> Response {
    let fp = params.fingerprint(&Method::POST, &format!("/v1/payment_intents/{id}/confirm"));
    handle(&shared, &headers, Some(fp), |store| {
        let hold = take_processing(store);
        let confirmed =
            store.intents.update(&id, |pi| (confirm(pi, params.get("payment_method"), hold), pi.latest_charge.clone()));
        match confirmed {
            Some((outcome, charge)) => {
                if let Some(charge) = charge {
                    store.charges.insert(charge, id.clone());
                }
                outcome
            }
            None => Outcome::missing("payment_intent", &id),
        }
    })
    .await
}

async fn get_intent(State(shared): Shd, Path(id): Path<String>, headers: HeaderMap) -> Response {
    handle(&shared, &headers, None, |store| match store.intents.get(&id) {
        Some(pi) => Outcome::ok(pi.to_json()),
        None => Outcome::missing("payment_intent", &id),
    })
    .await
}

/// A list page, or Stripe's 400 for bad pagination parameters.
fn paged(page: Result<Value, Value>) -> Outcome {
    match page {
        Ok(body) => Outcome::ok(body),
        Err(body) => Outcome { status: 400, body, events: Vec::new() },
    }
}

fn intent_item(pi: &PaymentIntent) -> lists::Item {
    lists::Item { id: pi.id.clone(), created: pi.created, json: pi.to_json() }
}

async fn list_intents(State(shared): Shd, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    handle(&shared, &headers, None, |store| {
        paged(lists::table_list(&store.intents, &q, "/v1/payment_intents", "payment_intent", PaymentIntent::to_json))
    })
    .await
}

async fn search_intents(State(shared): Shd, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    let query = q.iter().find(|(k, _)| k == "query").map(|(_, v)| v.clone()).unwrap_or_default();
    let Some(clauses) = parse_search(&query) else {
        let o = Outcome::error(400, "invalid_request_error", "Unsupported search query.");
        return respond(o.status, o.body, false);
    };
    handle(&shared, &headers, None, |store| {
        let matches = store
            .intents
            .iter()
            .filter(|pi| clauses.iter().all(|(field, value)| field_of(pi, field).as_deref() == Some(value.as_str())))
            .map(intent_item)
            .collect();
        paged(lists::search(matches, &q, "/v1/payment_intents/search"))
    })
    .await
}

/// `metadata['k']:'v' AND status:'succeeded'` → [("metadata.k", "v"), ("status", "succeeded")].
fn parse_search(query: &str) -> Option<Vec<(String, String)>> {
    let unquote = |s: &str| {
        let s = s.trim();
        s.strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            .map(str::to_owned)
    };
    query
        .split(" AND ")
        .map(|clause| {
            let (field, value) = clause.split_once(':')?;
            let field = field.trim();
            let field = match field.strip_prefix("metadata[").and_then(|f| f.strip_suffix(']')) {
                Some(key) => format!("metadata.{}", unquote(key)?),
                None => field.to_owned(),
            };
            Some((field, unquote(value)?))
        })
        .collect()
}

fn field_of(pi: &PaymentIntent, field: &str) -> Option<String> {
    match field.strip_prefix("metadata.") {
        Some(key) => pi.metadata.get(key).cloned(),
        None => match field {
            "status" => Some(pi.status.clone()),
            "currency" => Some(pi.currency.clone()),
            "amount" => Some(pi.amount.to_string()),
            _ => None,
        },
    }
}

async fn create_refund(State(shared): Shd, headers: HeaderMap, params: Params) -> Response {
    let fp = params.fingerprint(&Method::POST, "/v1/refunds");
    handle(&shared, &headers, Some(fp), |store| {
        let Some(pi_id) = params.get("payment_intent") else {
            return Outcome::error(400, "invalid_request_error", "Missing required param: payment_intent.");
        };
        let asked = params.get("amount").and_then(|a| a.parse().ok());
        let refund = match store.intents.update(&pi_id, |pi| refund_of(pi, asked, params.metadata())) {
            None => return Outcome::missing("payment_intent", &pi_id),
            Some(Err(o)) => return o,
            Some(Ok(refund)) => refund,
        };
        let body = refund.to_json();
        store.refunds.push(refund);
        Outcome { status: 200, events: vec![("refund.created", body.clone())], body }
    })
    .await
}

/// Refunds `asked` (all that is left, if `None`) of a succeeded PaymentIntent.
pub(crate) fn refund_of(
    pi: &mut PaymentIntent,
    asked: Option<i64>,
    metadata: BTreeMap<String, String>,
) -> Result<Refund, Outcome> {
    if pi.status != "succeeded" {
        return Err(Outcome::error(
            400,
            "invalid_request_error",
            "This PaymentIntent does not have a successful charge to refund.",
        ));
    }
    let remaining = pi.amount - pi.amount_refunded;
    let amount = asked.unwrap_or(remaining);
    if amount <= 0 || amount > remaining {
        let mut o =
            Outcome::error(400, "invalid_request_error", "Refund amount is greater than the unrefunded amount.");
        o.body["error"]["code"] = json!("charge_already_refunded");
        return Err(o);
    }
    pi.amount_refunded += amount;
    Ok(Refund {
        id: new_id("re"),
        amount,
        currency: pi.currency.clone(),
        status: "succeeded".into(),
        payment_intent: pi.id.clone(),
        charge: pi.latest_charge.clone(),
        metadata,
        created: now(),
    })
}

async fn list_refunds(State(shared): Shd, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    handle(&shared, &headers, None, |store| {
        paged(lists::table_list(&store.refunds, &q, "/v1/refunds", "refund", Refund::to_json))
    })
    .await
}

async fn get_refund(State(shared): Shd, Path(id): Path<String>, headers: HeaderMap) -> Response {
    handle(&shared, &headers, None, |store| match store.refunds.get(&id) {
        Some(r) => Outcome::ok(r.to_json()),
        None => Outcome::missing("refund", &id),
    })
    .await
}

/// Charges, derived from the PaymentIntents that made them (filtered and
/// paged in memory: fine for tests; reconciliation reads PaymentIntents).
async fn list_charges(State(shared): Shd, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    handle(&shared, &headers, None, |store| {
        let items = store
            .intents
            .iter()
            .filter_map(|pi| {
                let json = pi.charge_json()?;
                Some(lists::Item { id: pi.latest_charge.clone()?, created: pi.created, json })
            })
            .collect();
        paged(lists::created_filter(items, &q).and_then(|items| lists::list(items, &q, "/v1/charges", "charge")))
    })
    .await
}

async fn get_charge(State(shared): Shd, Path(id): Path<String>, headers: HeaderMap) -> Response {
    handle(&shared, &headers, None, |store| {
        match store.charges.get(&id).and_then(|pi| store.intents.get(pi)).and_then(PaymentIntent::charge_json) {
            Some(charge) => Outcome::ok(charge),
            None => Outcome::missing("charge", &id),
        }
    })
    .await
}

/// Balance transactions: one per succeeded charge (`type: charge`) and one
/// per refund (`type: refund`, negative), derived like charges.
async fn list_balance_transactions(
    State(shared): Shd,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    handle(&shared, &headers, None, |store| {
        let charges = store.intents.iter().filter_map(|pi| {
            let json = pi.balance_transaction_json()?;
            Some(lists::Item { id: json["id"].as_str()?.to_owned(), created: pi.created, json })
        });
        let refunds = store.refunds.iter().map(|r| {
            let json = r.balance_transaction_json();
            lists::Item { id: super::objects::balance_transaction_id(&r.id), created: r.created, json }
        });
        let items = charges.chain(refunds).collect();
        paged(
            lists::created_filter(items, &q)
                .and_then(|items| lists::list(items, &q, "/v1/balance_transactions", "balance_transaction")),
        )
    })
    .await
}

async fn set_faults(State(shared): Shd, axum::Json(faults): axum::Json<Faults>) -> axum::Json<Faults> {
    shared.store().faults = faults.clone();
    axum::Json(faults)
}

async fn get_faults(State(shared): Shd) -> axum::Json<Faults> {
    axum::Json(shared.store().faults.clone())
}

async fn state(State(shared): Shd) -> axum::Json<Value> {
    let store = shared.store();
    axum::Json(json!({
        "payment_intents": store.intents.iter().map(PaymentIntent::to_json).collect::<Vec<_>>(),
        "refunds": store.refunds.iter().map(Refund::to_json).collect::<Vec<_>>(),
        "faults": store.faults,
    }))
}
