//! Buyers' devices: the push tokens APNs and FCM deliver to.
//!
//! A token belongs to one buyer at a time: registering it again is harmless
//! (the same device), and registering a token another buyer holds moves it
//! (the phone changed hands) — the former owner's row is retired as `moved`,
//! so a delivery decided for them never reaches the new owner. A token the
//! provider reports dead is retired as `provider` and never sent to again;
//! a deleted device is retired as `deleted` and no longer listed.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::error::{Invalid, Result};
use crate::ids::{BuyerId, DeviceId};

/// The push provider a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Apns,
    Fcm,
}

impl Platform {
    pub const ALL: [Self; 2] = [Self::Apns, Self::Fcm];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apns => "apns",
            Self::Fcm => "fcm",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token in the shape its provider issues: APNs, 64–200 hex digits (kept in
/// lower case: APNs reads them case-insensitively); FCM, 1–4,096 characters
/// of `[A-Za-z0-9_:-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken {
    platform: Platform,
    token: String,
}

impl DeviceToken {
    pub fn parse(platform: Platform, token: &str) -> Result<Self, Invalid> {
        let ok = match platform {
            Platform::Apns => (64..=200).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_hexdigit()),
            Platform::Fcm => {
                (1..=4096).contains(&token.len())
                    && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'))
            }
        };
        if !ok {
            let shape = match platform {
                Platform::Apns => "an APNs token is 64 to 200 hexadecimal digits",
                Platform::Fcm => "an FCM token is 1 to 4096 characters of A-Z, a-z, 0-9, '_', ':' and '-'",
            };
            return Err(Invalid::new("token", shape));
        }
        let token = match platform {
            Platform::Apns => token.to_ascii_lowercase(),
            Platform::Fcm => token.to_owned(),
        };
        Ok(Self { platform, token })
    }

    pub fn platform(&self) -> Platform {
        self.platform
    }

    pub fn as_str(&self) -> &str {
        &self.token
    }
}

/// `active`, or `retired` (never sent to again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Active,
    Retired,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: DeviceId,
    pub buyer_id: BuyerId,
    pub platform: Platform,
    pub token: String,
    pub status: DeviceStatus,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    id: DeviceId,
    buyer_id: BuyerId,
    platform: String,
    token: String,
    status: String,
    created_at: DateTime<Utc>,
    retired_at: Option<DateTime<Utc>>,
}

impl TryFrom<DeviceRow> for Device {
    type Error = crate::Error;

    fn try_from(row: DeviceRow) -> Result<Self> {
        let platform = Platform::parse(&row.platform)
            .ok_or_else(|| crate::Error::Internal(format!("device {} has platform {:?}", row.id, row.platform)))?;
        let status = match row.status.as_str() {
            "active" => DeviceStatus::Active,
            "retired" => DeviceStatus::Retired,
            other => return Err(crate::Error::Internal(format!("device {} has status {other:?}", row.id))),
        };
        Ok(Self {
            id: row.id,
            buyer_id: row.buyer_id,
            platform,
            token: row.token,
            status,
            created_at: row.created_at,
            retired_at: row.retired_at,
        })
    }
}

/// The columns a [`DeviceRow`] reads, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, buyer_id, platform, token, status, created_at, retired_at"
    };
}

/// What [`register`] did.
#[derive(Debug, Clone)]
pub struct Registered {
    pub device: Device,
    /// `false`: the buyer already had this token (the same device).
    pub created: bool,
}

/// Registers `token` for `buyer` in the caller's transaction (see the module
/// docs). Registrations of one token are serialized by a transaction-scoped
/// advisory lock on it, so two at once make one active row.
pub async fn register(tx: &mut PgConnection, buyer: BuyerId, token: &DeviceToken) -> Result<Registered> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("device:{}:{}", token.platform(), token.as_str()))
        .execute(&mut *tx)
        .await?;
    let existing: Option<DeviceRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM devices WHERE platform = $1 AND token = $2 AND status = 'active' FOR UPDATE"
    ))
    .bind(token.platform().as_str())
    .bind(token.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = existing {
        if row.buyer_id == buyer {
            return Ok(Registered { device: row.try_into()?, created: false });
        }
        sqlx::query(
            "UPDATE devices SET status = 'retired', retired_at = now(), retired_reason = 'moved' WHERE id = $1",
        )
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
    }
    let row: DeviceRow = sqlx::query_as(concat!(
        "INSERT INTO devices (id, buyer_id, platform, token) VALUES ($1, $2, $3, $4) RETURNING ",
        columns!()
    ))
    .bind(DeviceId::new())
    .bind(buyer)
    .bind(token.platform().as_str())
    .bind(token.as_str())
    .fetch_one(&mut *tx)
    .await?;
    Ok(Registered { device: row.try_into()?, created: true })
}

/// The buyer's devices, active and retired (not deleted), newest first.
pub async fn list<'c>(
    db: impl PgExecutor<'c>,
    buyer: BuyerId,
    limit: i64,
    starting_after: Option<DeviceId>,
) -> Result<Vec<Device>> {
    let rows: Vec<DeviceRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM devices
         WHERE buyer_id = $1 AND retired_reason IS DISTINCT FROM 'deleted' AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(buyer)
    .bind(starting_after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Device::try_from).collect()
}

/// The buyer's active devices, for the notifier's fan-out.
pub async fn active_for_buyer<'c>(db: impl PgExecutor<'c>, buyer: BuyerId) -> Result<Vec<Device>> {
    let rows: Vec<DeviceRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM devices WHERE buyer_id = $1 AND status = 'active' ORDER BY id"
    ))
    .bind(buyer)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Device::try_from).collect()
}

/// The active devices of many buyers at once, for the notifier's fan-out.
pub async fn active_for_buyers<'c>(db: impl PgExecutor<'c>, buyers: &[BuyerId]) -> Result<Vec<Device>> {
    let ids: Vec<uuid::Uuid> = buyers.iter().map(|b| b.uuid()).collect();
    let rows = sqlx::query_as!(
        DeviceRow,
        r#"SELECT id AS "id: DeviceId", buyer_id AS "buyer_id: BuyerId", platform, token, status, created_at, retired_at
           FROM devices WHERE buyer_id = ANY($1) AND status = 'active' ORDER BY buyer_id, id"#,
        &ids,
    )
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Device::try_from).collect()
}

/// Deletes one of the buyer's devices (it is retired and no longer listed).
/// `false`: the buyer has no such device.
pub async fn delete<'c>(db: impl PgExecutor<'c>, buyer: BuyerId, id: DeviceId) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE devices SET status = 'retired', retired_at = coalesce(retired_at, now()), retired_reason = 'deleted'
         WHERE id = $1 AND buyer_id = $2 AND retired_reason IS DISTINCT FROM 'deleted'",
    )
    .bind(id)
    .bind(buyer)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The provider reported the device's token dead (APNs `Unregistered`,
/// `BadDeviceToken`, `DeviceTokenNotForTopic`; FCM `UNREGISTERED`, an
/// `INVALID_ARGUMENT` naming the token): retire it at once. `false`: it was
/// not active (already retired, moved or deleted).
pub async fn retire_dead<'c>(db: impl PgExecutor<'c>, id: DeviceId) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE devices SET status = 'retired', retired_at = now(), retired_reason = 'provider'
         WHERE id = $1 AND status = 'active'",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::{DeviceToken, Platform};

    #[test]
    fn apns_tokens_are_64_to_200_hex_digits_kept_in_lower_case() {
        let token = DeviceToken::parse(Platform::Apns, &"AB".repeat(32)).expect("64 hex digits");
        assert_eq!(token.as_str(), "ab".repeat(32));
        assert!(DeviceToken::parse(Platform::Apns, &"a".repeat(63)).is_err());
        assert!(DeviceToken::parse(Platform::Apns, &"a".repeat(201)).is_err());
        assert!(DeviceToken::parse(Platform::Apns, &"g".repeat(64)).is_err());
    }

    #[test]
    fn fcm_tokens_are_1_to_4096_characters_of_the_token_alphabet() {
        assert!(DeviceToken::parse(Platform::Fcm, "cX1:APA91b-_x").is_ok());
        assert!(DeviceToken::parse(Platform::Fcm, "").is_err());
        assert!(DeviceToken::parse(Platform::Fcm, &"a".repeat(4097)).is_err());
        assert!(DeviceToken::parse(Platform::Fcm, "has space").is_err());
        assert!(DeviceToken::parse(Platform::Fcm, "é").is_err());
    }
}
