//! Buyer sign-up and sign-in, behind the limits of [`crate::auth_limits`].

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use gavel_domain::Error;
use gavel_domain::buyers::{self, SignUp};
use gavel_domain::ids::BuyerId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiResult;
use crate::extract::{ClientIp, Json};
use crate::idempotency::Effect;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBuyer {
    email: String,
    password: String,
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BuyerCreated {
    id: BuyerId,
    token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Session {
    token: String,
}

/// Sign up as a buyer; returns a session token.
#[utoipa::path(post, path = "/v1/buyers", tag = "buyers", request_body = CreateBuyer,
    responses((status = 201, body = BuyerCreated), (status = 409, description = "email_taken", body = crate::openapi::Problem),
              (status = 422, body = crate::openapi::Problem),
              (status = 429, description = "rate_limited: too many sign-ups from this address", body = crate::openapi::Problem),
              (status = 503, description = "overloaded", body = crate::openapi::Problem)))]
pub async fn sign_up(
    State(state): State<AppState>,
    effect: Effect,
    ClientIp(ip): ClientIp,
    Json(body): Json<CreateBuyer>,
) -> ApiResult<(StatusCode, axum::Json<BuyerCreated>)> {
    state.auth_limits.sign_up(ip)?;
    let signup = SignUp::parse(&body.email, &body.password, body.name.as_deref())?;
    // Hash before the transaction: no pooled connection waits on argon2.
    let hashed = buyers::hash(signup, &state.passwords).await?;
    let mut tx = effect.begin().await?;
    let id = buyers::insert(&mut *tx, &hashed).await?;
    tx.commit().await?;
    let token = state.tokens.issue(id, Utc::now());
    Ok((StatusCode::CREATED, axum::Json(BuyerCreated { id, token })))
}

/// Sign in with email and password; returns a session token.
#[utoipa::path(post, path = "/v1/sessions", tag = "buyers", request_body = CreateSession,
    responses((status = 200, body = Session), (status = 401, description = "invalid_credentials", body = crate::openapi::Problem),
              (status = 422, body = crate::openapi::Problem),
              (status = 429, description = "rate_limited: too many sign-ins from this address, or too many wrong passwords for this account", body = crate::openapi::Problem),
              (status = 503, description = "overloaded", body = crate::openapi::Problem)))]
pub async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<CreateSession>,
) -> ApiResult<axum::Json<Session>> {
    state.auth_limits.sign_in(ip)?;
    let email = buyers::sign_in_email(&body.email)?;
    state.auth_limits.account_open(email)?;
    match buyers::sign_in(&state.pool, email, &body.password, &state.passwords).await {
        Ok(id) => Ok(axum::Json(Session { token: state.tokens.issue(id, Utc::now()) })),
        Err(err) => {
            if matches!(err, Error::BadCredentials) {
                state.auth_limits.sign_in_failed(email);
            }
            Err(err.into())
        }
    }
}
