//! `Idempotency-Key` on the POST routes: one key, one effect, one answer.
//!
//! The layer authenticates the caller first and scopes the key by its
//! principal (`mch_…`, `byr_…`); a request that fails authentication is
//! answered `401` and nothing is stored. Each route takes one [`Mode`]:
//!
//! - [`Mode::Effect`] (a POST that creates something): the handler writes
//!   its effect through [`Effect`], whose transaction first takes a
//!   transaction-scoped advisory lock on (scope, key) and re-reads the key;
//!   the layer stores the answer in that same transaction and commits. The
//!   effect and its answer commit together or not at all, so a disconnect,
//!   a failed store or a crash leaves either both (a retry replays) or
//!   neither (a retry runs afresh), and the lock dies with its connection.
//! - [`Mode::SignUp`]: the same, scoped by the email being signed up (there
//!   is no principal yet). The answer is stored without its session token;
//!   a replay checks the password and mints a fresh token for the buyer.
//! - [`Mode::Outcome`] (claims, checkout, pay, cancel): the resource already
//!   makes a repeat harmless (one live claim per buyer and sale, one order per
//!   claim, one open payment per order), so the handler keeps its own short
//!   transactions — no pooled connection is held across a checkout's wait —
//!   and its first final answer is stored afterwards. Nothing is reserved: a
//!   retry after a crash runs again at once and the resource answers it.
//!
//! Replays carry `Idempotent-Replayed: true`; the same key with another
//! request is `422 idempotency_key_reused`; a key whose effect is being
//! written right now is `409 idempotency_key_in_use` with `Retry-After`.
//! Server errors and `429`s are never stored (an `Effect` rolls back with
//! them). Sign-in (`POST /v1/sessions`) has no effect to protect and takes no
//! part: its answer is a token, which is never stored.

mod effect;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use gavel_domain::idempotency::{self, Stored};
use gavel_domain::ids::BuyerId;
use gavel_domain::{Error, buyers};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa_axum::router::{UtoipaMethodRouter, UtoipaMethodRouterExt};

pub use effect::{Effect, EffectTx};
use effect::{Keyed, Slot};

use crate::extract::Caller;
use crate::problem::{ErrorCode, Problem};
use crate::state::AppState;

const HEADER: &str = "idempotency-key";

/// The `Idempotency-Key` request header, as the OpenAPI document declares it
/// on every route behind [`keyed`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1–255 visible ASCII characters, unique per intended effect and caller
    /// (a UUID will do). Retrying with the same key and body replays the first
    /// answer (with `Idempotent-Replayed: true`); another body under the same
    /// key is `422 idempotency_key_reused`.
    #[param(rename = "Idempotency-Key", value_type = Option<String>, min_length = 1, max_length = 255)]
    #[allow(dead_code)]
    idempotency_key: Option<String>,
}

/// `routes` behind this layer in `mode` (without a state, the routes are
/// built for their documentation only).
pub fn keyed(
    state: Option<&AppState>,
    mode: Mode,
    routes: UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    match state {
        Some(state) => routes.layer(axum::middleware::from_fn_with_state((state.clone(), mode), layer)),
        None => routes,
    }
}

/// How a route's effect is made exactly-once; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Effect,
    SignUp,
    Outcome,
}

pub async fn layer(State((state, mode)): State<(AppState, Mode)>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) => k.to_owned(),
        _ => {
            return Problem::new(
                ErrorCode::InvalidIdempotencyKey,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    let (mut parts, body) = req.into_parts();
    let caller = match mode {
        Mode::SignUp => None,
        Mode::Effect | Mode::Outcome => match Caller::from_request_parts(&mut parts, &state).await {
            Ok(caller) => {
                // The handler's extractors take it from here instead of
                // authenticating again.
                parts.extensions.insert(caller);
                Some(caller)
            }
            Err(rejection) => return rejection.into_response(),
        },
    };
    let Ok(body) = to_bytes(body, crate::body_limit::MAX_BODY).await else {
        return Problem::body_too_large().into_response();
    };
    let scope = match caller {
        Some(Caller::Merchant(m)) => m.to_string(),
        Some(Caller::Buyer(b)) => b.to_string(),
        None => match sign_up_scope(&body) {
            Some(scope) => scope,
            // No email: the handler refuses it, with nothing to store.
            None => return next.run(Request::from_parts(parts, Body::from(body))).await,
        },
    };
    let keyed = Keyed { scope, key, request_hash: request_hash(&parts, &body, mode) };

    // Most repeats end here, without reaching the handler.
    match idempotency::lookup(&state.pool, &keyed.scope, &keyed.key).await {
        Err(err) => return Problem::from(err).into_response(),
        Ok(Some(stored)) => return replay(&state, mode, &keyed, stored, &body).await,
        Ok(None) => {}
    }
    match mode {
        Mode::Effect | Mode::SignUp => effect(state, mode, keyed, parts, body, next).await,
        Mode::Outcome => outcome(state, mode, keyed, parts, body, next).await,
    }
}

/// Runs the handler with the key's transaction on offer, then stores the
/// answer in that transaction and commits it.
async fn effect(state: AppState, mode: Mode, keyed: Keyed, mut parts: Parts, body: Bytes, next: Next) -> Response {
    let slot = Slot::new(keyed.clone());
    parts.extensions.insert(slot.clone());
    let response = next.run(Request::from_parts(parts, Body::from(body.clone()))).await;
    let status = response.status();
    let tx = match slot.finish() {
        effect::Finished::Replay(stored) => return replay(&state, mode, &keyed, stored, &body).await,
        // Refused before any effect was written (invalid input, key in use,
        // a failure that rolled back): a repeat gets the same answer anew.
        effect::Finished::Nothing => {
            if status.is_success() {
                tracing::error!(scope = %keyed.scope, "a keyed request succeeded without writing through Effect");
            }
            return response;
        }
        effect::Finished::Written(tx) => tx,
    };
    if !storable(status) {
        // Dropping the transaction rolls the effect back with the answer.
        return response;
    }
    let (parts, answer) = response.into_parts();
    let Ok(answer) = to_bytes(answer, usize::MAX).await else {
        return Problem::internal().into_response();
    };
    let stored = Stored {
        request_hash: keyed.request_hash.clone(),
        status_code: status.as_u16() as i16,
        content_type: content_type(&parts),
        body: match mode {
            Mode::SignUp => without_token(&answer),
            Mode::Effect | Mode::Outcome => answer.to_vec(),
        },
    };
    let mut tx = tx;
    let committed = async {
        if !idempotency::store(&mut *tx, &keyed.scope, &keyed.key, &stored).await? {
            // Answered meanwhile without the lock (the same key on an Outcome
            // route): this effect must not commit without its answer.
            return Ok(false);
        }
        tx.commit().await?;
        Ok::<_, Error>(true)
    }
    .await;
    match committed {
        Ok(true) => {}
        Ok(false) => match idempotency::lookup(&state.pool, &keyed.scope, &keyed.key).await {
            Ok(Some(first)) => return replay(&state, mode, &keyed, first, &body).await,
            Ok(None) => return Problem::internal().into_response(),
            Err(err) => return Problem::from(err).into_response(),
        },
        // Neither the effect nor its answer is known to have committed: the
        // client's retry either replays or runs afresh.
        Err(err) => return Problem::from(err).into_response(),
    }
    state.payments.pause(gavel_workflows::checkout::PausePoint::AfterIdempotentCommit, &keyed.key).await;
    Response::from_parts(parts, Body::from(answer))
}

/// Runs the handler as it is, then keeps its first final answer.
async fn outcome(state: AppState, mode: Mode, keyed: Keyed, parts: Parts, body: Bytes, next: Next) -> Response {
    let response = next.run(Request::from_parts(parts, Body::from(body.clone()))).await;
    let status = response.status();
    if !storable(status) {
        return response;
    }
    let (parts, answer) = response.into_parts();
    let Ok(answer) = to_bytes(answer, usize::MAX).await else {
        return Problem::internal().into_response();
    };
    if status == StatusCode::CONFLICT && problem_code(&answer).is_some_and(|c| c.ends_with("_in_progress")) {
        // "Still running" is not an outcome: the retry should see the real one.
        return Response::from_parts(parts, Body::from(answer));
    }
    let stored = Stored {
        request_hash: keyed.request_hash.clone(),
        status_code: status.as_u16() as i16,
        content_type: content_type(&parts),
        body: answer.to_vec(),
    };
    match idempotency::store(&state.pool, &keyed.scope, &keyed.key, &stored).await {
        Ok(true) => {}
        // A concurrent duplicate finished first: answer as it was answered.
        Ok(false) => {
            if let Ok(Some(first)) = idempotency::lookup(&state.pool, &keyed.scope, &keyed.key).await
                && first.request_hash == keyed.request_hash
            {
                return replay(&state, mode, &keyed, first, &body).await;
            }
        }
        // The effect stands; a retry runs again and the resource answers it.
        Err(err) => tracing::warn!(error = %err, "could not store an idempotent answer"),
    }
    Response::from_parts(parts, Body::from(answer))
}

/// The stored answer, if this is the same request.
async fn replay(state: &AppState, mode: Mode, keyed: &Keyed, stored: Stored, body: &[u8]) -> Response {
    if stored.request_hash != keyed.request_hash {
        return reused();
    }
    let status = u16::try_from(stored.status_code).ok().and_then(|s| StatusCode::from_u16(s).ok());
    let status = status.unwrap_or(StatusCode::OK);
    let mut answer = stored.body;
    if mode == Mode::SignUp && status.is_success() {
        answer = match with_fresh_token(state, &answer, body).await {
            Ok(Some(answer)) => answer,
            Ok(None) => return reused(),
            Err(err) => return err.into_response(),
        };
    }
    let mut response = Response::new(Body::from(answer));
    *response.status_mut() = status;
    if let Some(ct) = stored.content_type.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn reused() -> Response {
    Problem::new(ErrorCode::IdempotencyKeyReused, "this Idempotency-Key was used with a different request")
        .into_response()
}

/// A replayed sign-up answers with a new token for the buyer it created —
/// but only to whoever knows the password (checked as sign-in checks it):
/// the key and email alone must not be worth a token. `None`: another
/// password, i.e. another request under the same key.
async fn with_fresh_token(state: &AppState, stored: &[u8], request: &[u8]) -> Result<Option<Vec<u8>>, Problem> {
    let mut answer: serde_json::Map<String, Value> = serde_json::from_slice(stored).map_err(|_| Problem::internal())?;
    let buyer: BuyerId =
        answer.get("id").and_then(Value::as_str).and_then(|id| id.parse().ok()).ok_or_else(Problem::internal)?;
    let request: Value = serde_json::from_slice(request).map_err(|_| Problem::internal())?;
    let (Some(email), Some(password)) =
        (request.get("email").and_then(Value::as_str), request.get("password").and_then(Value::as_str))
    else {
        return Ok(None);
    };
    // The same guards as sign-in: a replay must not be a way around them.
    let email = buyers::sign_in_email(email)?;
    state.auth_limits.account_open(email)?;
    match buyers::sign_in(&state.pool, email, password, &state.passwords).await {
        Ok(id) if id == buyer => {}
        Ok(_) => return Ok(None),
        Err(Error::BadCredentials) => {
            state.auth_limits.sign_in_failed(email);
            return Ok(None);
        }
        Err(err) => return Err(err.into()),
    }
    answer.insert("token".into(), state.tokens.issue(buyer, Utc::now()).into());
    serde_json::to_vec(&answer).map(Some).map_err(|_| Problem::internal())
}

/// The stored form of a sign-up's answer: everything but the token.
fn without_token(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Map<String, Value>>(body) {
        Ok(mut answer) => {
            answer.remove("token");
            serde_json::to_vec(&answer).unwrap_or_default()
        }
        // Not JSON (nor a token): nothing to strip.
        Err(_) => body.to_vec(),
    }
}

/// A sign-up's key belongs to the email being signed up.
fn sign_up_scope(body: &[u8]) -> Option<String> {
    let request: Value = serde_json::from_slice(body).ok()?;
    let email = request.get("email")?.as_str()?.trim().to_lowercase();
    Some(format!("signup:{}", hex::encode(Sha256::digest(email.as_bytes()))))
}

/// What makes two requests "the same". A sign-up's password is left out:
/// the hash would be a fast offline guess at it, and a replay checks the
/// password against the account instead.
fn request_hash(parts: &Parts, body: &[u8], mode: Mode) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update([0]);
    hasher.update(parts.uri.path());
    hasher.update([0]);
    match (mode, serde_json::from_slice::<serde_json::Map<String, Value>>(body)) {
        (Mode::SignUp, Ok(mut request)) => {
            request.remove("password");
            hasher.update(serde_json::to_vec(&request).unwrap_or_default());
        }
        _ => hasher.update(body),
    }
    hasher.finalize().to_vec()
}

/// Answers worth keeping: not server errors, not "slow down", and not "wrong
/// kind of caller" (a merchant key on a buyer's route), which did nothing.
fn storable(status: StatusCode) -> bool {
    !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::UNAUTHORIZED)
}

fn content_type(parts: &axum::http::response::Parts) -> Option<String> {
    parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn problem_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body).ok()?.get("code")?.as_str().map(str::to_owned)
}
