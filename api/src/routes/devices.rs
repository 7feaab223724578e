//! A buyer's devices: the APNs and FCM tokens push notifications go to.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gavel_domain::devices::{self, Device, DeviceStatus, DeviceToken, Platform};
use gavel_domain::ids::DeviceId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Buyer, Json, Path, Query};
use crate::idempotency::{self, Effect, IdempotencyKey, Mode};
use crate::pagination::PageParams;
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, JSON_BODY, KEYED, Problem, problems};
use crate::state::AppState;

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(idempotency::keyed(state, Mode::Effect, routes!(register)))
        .routes(routes!(list))
        .routes(routes!(delete))
}

/// The push provider: `apns` (Apple) or `fcm` (Firebase Cloud Messaging).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlatformBody {
    Apns,
    Fcm,
}

impl From<PlatformBody> for Platform {
    fn from(p: PlatformBody) -> Self {
        match p {
            PlatformBody::Apns => Self::Apns,
            PlatformBody::Fcm => Self::Fcm,
        }
    }
}

impl From<Platform> for PlatformBody {
    fn from(p: Platform) -> Self {
        match p {
            Platform::Apns => Self::Apns,
            Platform::Fcm => Self::Fcm,
        }
    }
}

/// `active`, or `retired`: the provider reported the token dead, or another
/// buyer registered it since; never sent to again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatusBody {
    Active,
    Retired,
}

impl From<DeviceStatus> for DeviceStatusBody {
    fn from(s: DeviceStatus) -> Self {
        match s {
            DeviceStatus::Active => Self::Active,
            DeviceStatus::Retired => Self::Retired,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "platform": "apns", "token": "7d1c3f9e0a5b2c4d6e8f0a1b3c5d7e9f7d1c3f9e0a5b2c4d6e8f0a1b3c5d7e9f" })))]
pub struct RegisterDevice {
    platform: PlatformBody,
    /// APNs: 64–200 hexadecimal digits. FCM: 1–4,096 characters of `[A-Za-z0-9_:-]`.
    token: String,
}

/// A device of the buyer's.
#[derive(Serialize, ToSchema)]
#[schema(as = Device, examples(json!({
    "object": "device", "id": "dev_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "platform": "apns",
    "status": "active", "created_at": "2026-12-01T12:00:00Z"
})))]
pub struct DeviceBody {
    /// Always `device`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("dev_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: DeviceId,
    platform: PlatformBody,
    status: DeviceStatusBody,
    created_at: DateTime<Utc>,
    /// When a retired device was retired.
    #[serde(skip_serializing_if = "Option::is_none")]
    retired_at: Option<DateTime<Utc>>,
}

impl From<&Device> for DeviceBody {
    fn from(d: &Device) -> Self {
        Self {
            object: "device",
            id: d.id,
            platform: d.platform.into(),
            status: d.status.into(),
            created_at: d.created_at,
            retired_at: d.retired_at,
        }
    }
}

problems!(RegisterDeviceErrors:; AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Register a device: `201` for a token new to this buyer (one another buyer
/// held moves here), `200` with the same device for a token already theirs.
#[utoipa::path(post, path = "/v1/buyers/me/devices", tag = "notifications", operation_id = "register_device",
    security(("buyer_token" = [])), params(IdempotencyKey), request_body = RegisterDevice,
    responses((status = 201, description = "The device, new to this buyer.", body = DeviceBody),
              (status = 200, description = "The buyer's device with this token.", body = DeviceBody),
              RegisterDeviceErrors))]
pub async fn register(
    Buyer(buyer): Buyer,
    effect: Effect,
    Json(body): Json<RegisterDevice>,
) -> ApiResult<(StatusCode, axum::Json<DeviceBody>)> {
    let token = DeviceToken::parse(body.platform.into(), &body.token)?;
    let mut tx = effect.begin().await?;
    let registered = devices::register(&mut tx, buyer, &token).await?;
    tx.commit().await?;
    let status = if registered.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(DeviceBody::from(&registered.device))))
}

/// A page of devices.
#[derive(Serialize, ToSchema)]
#[schema(as = DeviceList)]
pub struct DeviceList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<DeviceBody>,
    has_more: bool,
}

problems!(ListDevicesErrors: InvalidRequest; AUTHENTICATED, DATABASE, EDGE);

/// The buyer's devices, newest first, retired ones included (deleted ones not).
#[utoipa::path(get, path = "/v1/buyers/me/devices", tag = "notifications", operation_id = "list_devices",
    security(("buyer_token" = [])), params(PageParams),
    responses((status = 200, description = "A page of devices.", body = DeviceList), ListDevicesErrors))]
pub async fn list(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<DeviceList>> {
    let page = params.parse::<DeviceId>("device")?;
    let (rows, has_more) = page.cut(devices::list(&state.pool, buyer, page.fetch(), page.after).await?);
    Ok(axum::Json(DeviceList { object: "list", data: rows.iter().map(DeviceBody::from).collect(), has_more }))
}

problems!(DeleteDeviceErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// Delete one of the buyer's devices: nothing is sent to it again.
#[utoipa::path(delete, path = "/v1/buyers/me/devices/{id}", tag = "notifications", operation_id = "delete_device",
    security(("buyer_token" = [])), params(("id" = String, Path, description = "The device's id (`dev_…`).")),
    responses((status = 204, description = "Deleted."), DeleteDeviceErrors))]
pub async fn delete(
    State(state): State<AppState>,
    Buyer(buyer): Buyer,
    Path(id): Path<DeviceId>,
) -> ApiResult<StatusCode> {
    if devices::delete(&state.pool, buyer, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found("device"))
    }
}
