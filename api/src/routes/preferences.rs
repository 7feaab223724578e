//! A buyer's notification preferences.

use std::collections::BTreeMap;

use axum::extract::State;
use gavel_domain::preferences::{self, Preferences};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Buyer, Json};
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, JSON_BODY, problems};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get, put))
}

/// What a buyer hears of and how. A channel switched off gets nothing,
/// critical kinds included; critical kinds (`order_paid`, `payment_failed`,
/// `auction_won`, `payment_due`) ignore `kinds` switches.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Preferences, examples(json!({
    "email": true, "push": true, "deals": false, "kinds": { "outbid": false }
})))]
pub struct PreferencesBody {
    /// Email notifications (default `true`).
    email: bool,
    /// Push notifications to the buyer's devices (default `true`).
    push: bool,
    /// Every sale start, any merchant (default `false`).
    deals: bool,
    /// Per-kind switches; a kind not named is on. Kinds: `sale_starting`,
    /// `claim_expiring`, `order_paid`, `payment_failed`, `refund_issued`,
    /// `outbid`, `auction_ending`, `auction_won`, `payment_due`,
    /// `order_lapsed`; another name is `422 invalid_request`.
    #[serde(default)]
    kinds: BTreeMap<String, bool>,
}

impl From<&Preferences> for PreferencesBody {
    fn from(p: &Preferences) -> Self {
        Self {
            email: p.email,
            push: p.push,
            deals: p.deals,
            kinds: p.kinds.iter().map(|(k, v)| (k.as_str().to_owned(), *v)).collect(),
        }
    }
}

problems!(GetPreferencesErrors:; AUTHENTICATED, DATABASE, EDGE);

/// The buyer's preferences (the defaults until set).
#[utoipa::path(get, path = "/v1/buyers/me/preferences", tag = "notifications", operation_id = "get_preferences",
    security(("buyer_token" = [])),
    responses((status = 200, description = "The preferences.", body = PreferencesBody), GetPreferencesErrors))]
pub async fn get(State(state): State<AppState>, Buyer(buyer): Buyer) -> ApiResult<axum::Json<PreferencesBody>> {
    Ok(axum::Json(PreferencesBody::from(&preferences::get(&state.pool, buyer).await?)))
}

problems!(PutPreferencesErrors:; AUTHENTICATED, JSON_BODY, DATABASE, EDGE);

/// Replace the buyer's preferences with the whole object sent (`email`,
/// `push` and `deals` required; `kinds` absent means every kind on).
#[utoipa::path(put, path = "/v1/buyers/me/preferences", tag = "notifications", operation_id = "put_preferences",
    security(("buyer_token" = [])), request_body = PreferencesBody,
    responses((status = 200, description = "The preferences as stored.", body = PreferencesBody),
              PutPreferencesErrors))]
pub async fn put(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Json(body): Json<PreferencesBody>,
) -> ApiResult<axum::Json<PreferencesBody>> {
    let kinds = Preferences::parse_kinds(&body.kinds)?;
    let prefs = Preferences { email: body.email, push: body.push, deals: body.deals, kinds };
    Ok(axum::Json(PreferencesBody::from(&preferences::put(&state.pool, buyer, &prefs).await?)))
}
