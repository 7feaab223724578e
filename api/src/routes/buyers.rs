//! Buyer sign-up and sign-in, behind the limits of [`crate::auth_limits`].

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use gavel_domain::Error;
use gavel_domain::buyers::{self, SignUp};
use gavel_domain::ids::BuyerId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{ClientIp, Json};
use crate::idempotency::{self, Effect, IdempotencyKey, Mode};
use crate::problem::{DATABASE, EDGE, JSON_BODY, KEYED, problems};
use crate::state::AppState;

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(idempotency::keyed(state, Mode::SignUp, routes!(sign_up))).routes(routes!(sign_in))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "email": "ann@example.com", "password": "correct horse battery staple", "name": "Ann" })))]
pub struct CreateBuyer {
    /// At most 254 characters.
    email: String,
    password: String,
    /// At most 200 characters, one line.
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({ "id": "byr_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "token": "…" })))]
pub struct BuyerCreated {
    #[schema(value_type = String, examples("byr_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: BuyerId,
    /// A session token: send it as `Authorization: Bearer <token>`.
    token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "email": "ann@example.com", "password": "correct horse battery staple" })))]
pub struct CreateSession {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Session {
    /// A session token: send it as `Authorization: Bearer <token>`.
    token: String,
}

problems!(SignUpErrors: EmailTaken, RateLimited; JSON_BODY, KEYED, DATABASE, EDGE);

/// Sign up as a buyer; returns a session token.
#[utoipa::path(post, path = "/v1/buyers", tag = "buyers", operation_id = "create_buyer",
    params(IdempotencyKey), request_body = CreateBuyer,
    responses((status = 201, description = "The buyer and a session token.", body = BuyerCreated), SignUpErrors))]
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

problems!(SignInErrors: InvalidCredentials, RateLimited; JSON_BODY, DATABASE, EDGE);

/// Sign in with email and password; returns a session token.
#[utoipa::path(post, path = "/v1/sessions", tag = "buyers", operation_id = "create_session",
    request_body = CreateSession,
    responses((status = 200, description = "A session token.", body = Session), SignInErrors))]
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
