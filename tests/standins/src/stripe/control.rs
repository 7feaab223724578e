//! The stand-in's control endpoints for reconciliation tests and benchmarks
//! (not Stripe's API; no API key needed, like `/_control/faults`):
//!
//! - `POST /_control/payment_intents` — insert a PaymentIntent with chosen
//!   fields `{id?, amount, currency, status, created?, metadata?, amount_refunded?}`
//!   (a charge Gavel never made, a duplicate, one kept `processing`);
//! - `POST /_control/payment_intents/{id}` — change a stored one's `amount`,
//!   `currency`, `status`, `created` or `metadata` (plant a discrepancy);
//! - `POST /_control/refunds` — a refund as if made in Stripe's dashboard
//!   `{payment_intent, amount?, created?, metadata?, status?}` (counts against the
//!   charge, sends no webhook);
//! - `POST /_control/refunds/{id}` — change a stored refund's `amount`, `status`
//!   or `created`;
//! - `POST /_control/seed` — bulk load `{payment_intents: [...], refunds: [...]}`
//!   in the insert shapes above (up to 64 MiB a request), for `gavel dev
//!   seed-payments`; answers the counts stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::{PaymentIntent, Refund, new_id, now};
use super::routes::{Outcome, refund_of, respond};
use super::{Shared, Store};

type Shd = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_control/payment_intents", post(insert_intent))
        .route("/_control/payment_intents/{id}", post(change_intent))
        .route("/_control/refunds", post(insert_refund))
        .route("/_control/refunds/{id}", post(change_refund))
        .route("/_control/seed", post(seed).layer(DefaultBodyLimit::max(64 << 20)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewIntent {
    id: Option<String>,
    amount: i64,
    currency: String,
    status: String,
    created: Option<i64>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    amount_refunded: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRefund {
    id: Option<String>,
    payment_intent: String,
    amount: Option<i64>,
    created: Option<i64>,
    status: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    amount: Option<i64>,
    currency: Option<String>,
    status: Option<String>,
    created: Option<i64>,
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    #[serde(default)]
    payment_intents: Vec<NewIntent>,
    #[serde(default)]
    refunds: Vec<NewRefund>,
}

const STATUSES: &[&str] = &[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
];

fn bad(message: &str) -> Outcome {
    Outcome::error(400, "invalid_request_error", message)
}

fn reply(o: Outcome) -> Response {
    respond(o.status, o.body, false)
}

fn insert(store: &mut Store, new: NewIntent) -> Result<Value, Outcome> {
    if !STATUSES.contains(&new.status.as_str()) {
        return Err(bad(&format!("unknown PaymentIntent status {}", new.status)));
    }
    if new.amount <= 0 || new.amount_refunded < 0 || new.amount_refunded > new.amount {
        return Err(bad("amount must be positive and amount_refunded within it"));
    }
    let id = new.id.unwrap_or_else(|| new_id("pi"));
    if store.intents.get(&id).is_some() {
        return Err(bad(&format!("{id} exists")));
    }
    let charged = matches!(new.status.as_str(), "succeeded" | "processing");
    let pi = PaymentIntent {
        id: id.clone(),
        amount: new.amount,
        currency: new.currency.to_lowercase(),
        status: new.status,
        payment_method: Some("pm_card_visa".into()),
        metadata: new.metadata,
        created: new.created.unwrap_or_else(now),
        latest_charge: charged.then(|| new_id("ch")),
        amount_refunded: new.amount_refunded,
        last_error: None,
    };
    if let Some(charge) = &pi.latest_charge {
        store.charges.insert(charge.clone(), id);
    }
    let json = pi.to_json();
    store.intents.push(pi);
    Ok(json)
}

fn insert_refund_in(store: &mut Store, new: NewRefund) -> Result<Value, Outcome> {
    let made = store.intents.update(&new.payment_intent, |pi| refund_of(pi, new.amount, new.metadata));
    let mut refund: Refund = match made {
        None => return Err(Outcome::missing("payment_intent", &new.payment_intent)),
        Some(made) => made?,
    };
    if let Some(id) = new.id {
        refund.id = id;
    }
    if let Some(created) = new.created {
        refund.created = created;
    }
    if let Some(status) = new.status {
        refund.status = status;
    }
    let json = refund.to_json();
    store.refunds.push(refund);
    Ok(json)
}

async fn insert_intent(State(shared): Shd, axum::Json(new): axum::Json<NewIntent>) -> Response {
    let made = insert(&mut shared.store(), new);
    reply(made.map_or_else(|o| o, Outcome::ok))
}

async fn change_intent(State(shared): Shd, Path(id): Path<String>, axum::Json(c): axum::Json<Change>) -> Response {
    if c.status.as_deref().is_some_and(|s| !STATUSES.contains(&s)) || c.amount.is_some_and(|a| a <= 0) {
        return reply(bad("unknown status or non-positive amount"));
    }
    let changed = shared.store().intents.update(&id, |pi| {
        if let Some(a) = c.amount {
            pi.amount = a;
        }
        if let Some(cur) = c.currency {
            pi.currency = cur.to_lowercase();
        }
        if let Some(s) = c.status {
            pi.status = s;
        }
        if let Some(t) = c.created {
            pi.created = t;
        }
        if let Some(m) = c.metadata {
            pi.metadata = m;
        }
        pi.to_json()
    });
    reply(changed.map_or_else(|| Outcome::missing("payment_intent", &id), Outcome::ok))
}

async fn insert_refund(State(shared): Shd, axum::Json(new): axum::Json<NewRefund>) -> Response {
    let made = insert_refund_in(&mut shared.store(), new);
    reply(made.map_or_else(|o| o, Outcome::ok))
}

async fn change_refund(State(shared): Shd, Path(id): Path<String>, axum::Json(c): axum::Json<Change>) -> Response {
    if c.currency.is_some() || c.metadata.is_some() {
        return reply(bad("a refund's amount, status and created can be changed"));
    }
    let changed = shared.store().refunds.update(&id, |r| {
        if let Some(a) = c.amount {
            r.amount = a;
        }
        if let Some(s) = c.status {
            r.status = s;
        }
        if let Some(t) = c.created {
            r.created = t;
        }
        r.to_json()
    });
    reply(changed.map_or_else(|| Outcome::missing("refund", &id), Outcome::ok))
}

async fn seed(State(shared): Shd, axum::Json(seed): axum::Json<Seed>) -> Response {
    let mut store = shared.store();
    let (mut intents, mut refunds) = (0usize, 0usize);
    for new in seed.payment_intents {
        if let Err(o) = insert(&mut store, new) {
            return reply(o);
        }
        intents += 1;
    }
    for new in seed.refunds {
        if let Err(o) = insert_refund_in(&mut store, new) {
            return reply(o);
        }
        refunds += 1;
    }
    let totals = (store.intents.len(), store.refunds.len());
    reply(Outcome::ok(json!({
        "payment_intents": intents, "refunds": refunds,
        "stored": { "payment_intents": totals.0, "refunds": totals.1 },
    })))
}
