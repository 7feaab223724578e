//! A buyer's notification preferences: per channel (`email`, `push`), the
//! deals opt-in (every sale start, any merchant) and per-kind switches (a
//! kind not named is on). A buyer who never set them has the defaults.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use sqlx::types::Json;

use crate::error::{Invalid, Result};
use crate::ids::BuyerId;
use crate::notification_kinds::NotificationKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub email: bool,
    pub push: bool,
    pub deals: bool,
    /// Switches set explicitly; a kind not here is on.
    pub kinds: BTreeMap<NotificationKind, bool>,
}

impl Default for Preferences {
    /// `email: true, push: true, deals: false`, every kind on.
    fn default() -> Self {
        Self { email: true, push: true, deals: false, kinds: BTreeMap::new() }
    }
}

impl Preferences {
    /// `kinds` as a client sends it: every name must be a known kind.
    pub fn parse_kinds(kinds: &BTreeMap<String, bool>) -> Result<BTreeMap<NotificationKind, bool>, Invalid> {
        kinds
            .iter()
            .map(|(name, on)| {
                NotificationKind::parse(name).map(|kind| (kind, *on)).ok_or_else(|| {
                    let known: Vec<&str> = NotificationKind::ALL.iter().map(|k| k.as_str()).collect();
                    Invalid::new("kinds", format!("unknown kind {name:?}; known kinds: {}", known.join(", ")))
                })
            })
            .collect()
    }

    /// Whether a message of `kind` may go to this buyer at all (before the
    /// channel switches): critical kinds ignore the per-kind switches.
    pub fn wants(&self, kind: NotificationKind) -> bool {
        kind.is_critical() || self.kinds.get(&kind).copied().unwrap_or(true)
    }

    /// The one rule for who gets what: on which channels a message of
    /// `kind` goes to this buyer (push: to each of their active devices).
    pub fn channels(&self, kind: NotificationKind) -> Channels {
        let wanted = self.wants(kind);
        Channels { email: wanted && self.email, push: wanted && self.push }
    }

    fn kinds_json(&self) -> BTreeMap<&'static str, bool> {
        self.kinds.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }
}

/// The channels a message goes on ([`Preferences::channels`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels {
    pub email: bool,
    pub push: bool,
}

impl Channels {
    pub fn any(self) -> bool {
        self.email || self.push
    }
}

#[derive(sqlx::FromRow)]
struct PreferencesRow {
    email: bool,
    push: bool,
    deals: bool,
    kinds: Json<BTreeMap<String, bool>>,
    #[allow(dead_code)]
    updated_at: DateTime<Utc>,
}

impl From<PreferencesRow> for Preferences {
    fn from(row: PreferencesRow) -> Self {
        // A kind no longer known (renamed since it was stored) is dropped.
        let kinds = row.kinds.0.iter().filter_map(|(k, v)| NotificationKind::parse(k).map(|k| (k, *v))).collect();
        Self { email: row.email, push: row.push, deals: row.deals, kinds }
    }
}

/// The buyer's preferences, or the defaults.
pub async fn get<'c>(db: impl PgExecutor<'c>, buyer: BuyerId) -> Result<Preferences> {
    let row: Option<PreferencesRow> = sqlx::query_as(
        "SELECT email, push, deals, kinds, updated_at FROM notification_preferences WHERE buyer_id = $1",
    )
    .bind(buyer)
    .fetch_optional(db)
    .await?;
    Ok(row.map(Preferences::from).unwrap_or_default())
}

/// The preferences of many buyers at once (the defaults for those who never
/// set them), for the notifier's fan-out to thousands.
pub async fn for_buyers<'c>(db: impl PgExecutor<'c>, buyers: &[BuyerId]) -> Result<HashMap<BuyerId, Preferences>> {
    let ids: Vec<uuid::Uuid> = buyers.iter().map(|b| b.uuid()).collect();
    let rows = sqlx::query!(
        r#"SELECT buyer_id AS "buyer_id: BuyerId", email, push, deals, kinds AS "kinds: Json<BTreeMap<String, bool>>",
                  updated_at
           FROM notification_preferences WHERE buyer_id = ANY($1)"#,
        &ids,
    )
    .fetch_all(db)
    .await?;
    let mut found: HashMap<BuyerId, Preferences> = rows
        .into_iter()
        .map(|r| {
            let row = PreferencesRow {
                email: r.email,
                push: r.push,
                deals: r.deals,
                kinds: r.kinds,
                updated_at: r.updated_at,
            };
            (r.buyer_id, Preferences::from(row))
        })
        .collect();
    for buyer in buyers {
        found.entry(*buyer).or_default();
    }
    Ok(found)
}

/// Buyers who asked to hear of every sale's start (`deals`, any merchant).
pub async fn deal_subscribers<'c>(db: impl PgExecutor<'c>) -> Result<Vec<BuyerId>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT buyer_id AS "buyer_id: BuyerId" FROM notification_preferences WHERE deals ORDER BY buyer_id"#
    )
    .fetch_all(db)
    .await?)
}

/// Replaces the buyer's preferences with `prefs` and answers them as stored.
pub async fn put<'c>(db: impl PgExecutor<'c>, buyer: BuyerId, prefs: &Preferences) -> Result<Preferences> {
    let row: PreferencesRow = sqlx::query_as(
        "INSERT INTO notification_preferences (buyer_id, email, push, deals, kinds) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (buyer_id) DO UPDATE
         SET email = EXCLUDED.email, push = EXCLUDED.push, deals = EXCLUDED.deals, kinds = EXCLUDED.kinds,
             updated_at = now()
         RETURNING email, push, deals, kinds, updated_at",
    )
    .bind(buyer)
    .bind(prefs.email)
    .bind(prefs.push)
    .bind(prefs.deals)
    .bind(Json(prefs.kinds_json()))
    .fetch_one(db)
    .await?;
    Ok(row.into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::Preferences;
    use crate::notification_kinds::NotificationKind;

    #[test]
    fn unknown_kinds_are_refused_and_known_ones_parse() {
        let mut kinds = BTreeMap::new();
        kinds.insert("outbid".to_owned(), false);
        let parsed = Preferences::parse_kinds(&kinds).expect("outbid is a kind");
        assert_eq!(parsed.get(&NotificationKind::Outbid), Some(&false));
        kinds.insert("spam".to_owned(), true);
        assert_eq!(Preferences::parse_kinds(&kinds).map_err(|e| e.field), Err("kinds"));
    }

    #[test]
    fn critical_kinds_ignore_their_switches() {
        let mut prefs = Preferences::default();
        prefs.kinds.insert(NotificationKind::OrderPaid, false);
        prefs.kinds.insert(NotificationKind::Outbid, false);
        assert!(prefs.wants(NotificationKind::OrderPaid));
        assert!(!prefs.wants(NotificationKind::Outbid));
        assert!(prefs.wants(NotificationKind::SaleStarting));
    }

    #[test]
    fn channels_follow_the_channel_switches_and_the_kind_switch() {
        let mut prefs = Preferences { email: false, ..Preferences::default() };
        let on = prefs.channels(NotificationKind::SaleStarting);
        assert!(!on.email && on.push);
        prefs.kinds.insert(NotificationKind::SaleStarting, false);
        assert!(!prefs.channels(NotificationKind::SaleStarting).any());
        prefs.kinds.insert(NotificationKind::OrderPaid, false);
        assert!(prefs.channels(NotificationKind::OrderPaid).push, "critical kinds ignore the kind switch");
    }
}
