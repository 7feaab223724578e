//! The sale-start fan-out: who hears that a sale began, prepared ahead so
//! that at the start only delivery remains.
//!
//! - **Recipients**: the watchers of the sale's product (`watches`) ∪ the
//!   deal subscribers (`notification_preferences.deals`, any merchant), each
//!   once; who gets it on which channel and device is decided by
//!   [`Preferences::channels`] and the active devices of
//!   [`gavel_domain::devices`] — the same rule as every other kind. One row
//!   per (sale, buyer, channel[, device]) under the dedupe key
//!   `sale:<sale>:<buyer>:<channel>[:<device>]`, so a buyer on both lists gets
//!   one message per channel and device.
//! - **Prepare** ([`SaleStart::prepare_due`], the `notifier:prepare` loop): a
//!   scheduled sale starting within [`LEAD`] gets its rows written as `held`
//!   (a sale created less than [`LEAD`] ahead at the next pass), and is
//!   refreshed every [`REFRESH`] until it starts: late watchers and new deal
//!   subscribers are added, buyers who opted out since are `skipped`. The
//!   audience is read outside any lock; the writes take the sale's
//!   `sale_notice_preparations` row lock, which the release takes too.
//! - **Catch-up** ([`SaleStart::catch_up`], the same loop): a sale released
//!   after its last preparation gets one more pass for the buyers who joined
//!   its audience (or turned a channel on, or added a device) since that
//!   preparation read it, so that one who watches in the last seconds
//!   before the start is not missed; it reads only those buyers, not the
//!   whole audience, and adds their rows in new chunks of the released sale.
//! - **Release** ([`SaleStart::release`]): the sale's `sale.started` event,
//!   taken by the fan-out, sets the sale's `released_at` in the fan-out's
//!   transaction — one row, whatever the audience — and from then on the
//!   delivery loop claims the sale's `held` rows as due (a sale never
//!   prepared is planned there and then). A sale that never starts sends
//!   nothing; a rescheduled sale keeps its rows held until it does start; a
//!   cancelled one ([`SaleStart::cancel`]) has them `skipped`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gavel_domain::devices::{self, Platform};
use gavel_domain::ids::{BuyerId, ProductId, SaleId};
use gavel_domain::money::{Currency, Money};
use gavel_domain::notification_kinds::NotificationKind;
use gavel_domain::preferences;
use gavel_domain::watches;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::channel::{ChannelKind, Message};
use crate::fanout::{FanOutConfig, format_money};
use crate::templates::{Templates, Values};

mod rows;
use rows::{lock, take_chunks};

/// How long before `starts_at` a sale's recipients are prepared.
pub const LEAD: Duration = Duration::from_secs(10 * 60);
/// How often a prepared sale is refreshed until it starts.
pub const REFRESH: Duration = Duration::from_secs(30);
/// Rows per insert statement.
const CHUNK: usize = 1_000;
/// Sales prepared per pass.
const SALES_PER_PASS: i64 = 8;
const KIND: &str = "sale.started";

/// The facts a sale-start message is made of.
#[derive(Debug, Clone)]
pub struct SaleFacts {
    pub id: SaleId,
    pub product_id: ProductId,
    pub title: String,
    pub price: Money,
    pub ends_at: DateTime<Utc>,
}

/// The rows of one sale's fan-out, by dedupe key.
#[derive(Default)]
struct Plan {
    email: Vec<(String, BuyerId, serde_json::Value)>,
    push: Vec<(String, BuyerId, ChannelKind, Uuid)>,
    push_payload: Option<serde_json::Value>,
    recipients: usize,
}

impl Plan {
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.email.iter().map(|e| e.0.as_str()).chain(self.push.iter().map(|p| p.0.as_str()))
    }
}

#[derive(Clone)]
pub struct SaleStart {
    pool: PgPool,
    templates: Templates,
    config: FanOutConfig,
}

fn db(err: gavel_domain::Error) -> sqlx::Error {
    match err {
        gavel_domain::Error::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

impl SaleStart {
    pub fn new(pool: PgPool, templates: Templates, config: FanOutConfig) -> Self {
        Self { pool, templates, config }
    }

    /// One pass of the preparer: every scheduled sale starting within
    /// [`LEAD`] that was never prepared or not for [`REFRESH`]; returns how
    /// many sales it prepared.
    pub async fn prepare_due(&self) -> Result<usize, sqlx::Error> {
        let due = sqlx::query_scalar!(
            r#"SELECT s.id AS "id: SaleId" FROM sales s
               LEFT JOIN sale_notice_preparations p ON p.sale_id = s.id
               WHERE s.status = 'scheduled' AND s.starts_at <= now() + make_interval(secs => $1)
                 AND (p.prepared_at IS NULL OR p.prepared_at < now() - make_interval(secs => $2))
               ORDER BY s.starts_at LIMIT $3"#,
            LEAD.as_secs_f64(),
            REFRESH.as_secs_f64(),
            SALES_PER_PASS,
        )
        .fetch_all(&self.pool)
        .await?;
        for sale in &due {
            let written = self.prepare(*sale).await?;
            tracing::info!(sale = %sale, written, "sale-start recipients prepared");
        }
        let late = sqlx::query_scalar!(
            r#"SELECT sale_id AS "id: SaleId" FROM sale_notice_preparations
               WHERE released_at IS NOT NULL AND prepared_at < released_at
               ORDER BY released_at LIMIT $1"#,
            SALES_PER_PASS,
        )
        .fetch_all(&self.pool)
        .await?;
        for sale in &late {
            let written = self.catch_up(*sale).await?;
            tracing::info!(sale = %sale, written, "sale-start recipients caught up at the start");
        }
        Ok(due.len() + late.len())
    }

    /// The pass owed to a sale released after its last preparation: the
    /// buyers who joined its audience, or changed their preferences or
    /// devices, since that preparation read the audience (`prepared_at` is
    /// that instant, the database's clock) get their rows; rows that exist
    /// stay as they are (and take no chunk). Returns how many rows it wrote.
    pub async fn catch_up(&self, sale: SaleId) -> Result<u64, sqlx::Error> {
        // A change is stamped when its transaction began, and may commit
        // after a read that began later: changes this much older are looked
        // at again.
        const MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
        let row = sqlx::query!(
            r#"SELECT prepared_at, now() AS "read_at!" FROM sale_notice_preparations WHERE sale_id = $1"#,
            sale as SaleId
        )
        .fetch_one(&self.pool)
        .await?;
        let (prepared_at, read_at) = (row.prepared_at, row.read_at);
        let facts = self.facts(sale).await?;
        let plan = match (&facts, prepared_at) {
            (Some(facts), Some(at)) => {
                let mut conn = self.pool.acquire().await?;
                let audience =
                    watches::audience_changed_since(&mut *conn, facts.product_id, at - MARGIN).await.map_err(db)?;
                Some(self.plan_for(&mut conn, facts, audience).await?)
            }
            _ => None,
        };
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, sale).await?;
        let active = sqlx::query_scalar!("SELECT status FROM sales WHERE id = $1", sale as SaleId)
            .fetch_optional(&mut *tx)
            .await?
            .is_some_and(|status| status == "active");
        let written = match (facts, plan) {
            (Some(facts), Some(plan)) if active => {
                let keys: Vec<String> = plan.keys().map(str::to_owned).collect();
                let existing: HashSet<String> =
                    sqlx::query_scalar!("SELECT dedupe_key FROM deliveries WHERE dedupe_key = ANY($1)", &keys)
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .collect();
                self.write(&mut tx, &facts, &plan, |k| existing.contains(k)).await?
            }
            _ => 0,
        };
        sqlx::query!(
            "UPDATE sale_notice_preparations SET prepared_at = $2 WHERE sale_id = $1",
            sale as SaleId,
            read_at
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Prepares (or refreshes) one sale; returns how many rows changed.
    pub async fn prepare(&self, sale: SaleId) -> Result<u64, sqlx::Error> {
        let Some(facts) = self.facts(sale).await? else { return Ok(0) };
        let mut conn = self.pool.acquire().await?;
        // When the audience is read: what a catch-up at the start reads since.
        let read_at = sqlx::query_scalar!(r#"SELECT now() AS "now!""#).fetch_one(&mut *conn).await?;
        let plan = self.plan(&mut conn, &facts).await?;
        drop(conn);
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, sale).await?;
        let status = sqlx::query_scalar!("SELECT status FROM sales WHERE id = $1", sale as SaleId)
            .fetch_optional(&mut *tx)
            .await?;
        if !matches!(status.as_deref(), Some("scheduled" | "active")) {
            // Cancelled (or gone) meanwhile: nothing to prepare.
            sqlx::query!("UPDATE sale_notice_preparations SET prepared_at = now() WHERE sale_id = $1", sale as SaleId)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(0);
        }
        let existing: HashMap<String, String> =
            // Before the start every row of the sale is held or skipped (a
            // sale this late in starting has rows in no other state that a
            // pass could change; the insert skips any key that exists).
            sqlx::query!(
                "SELECT dedupe_key, status FROM deliveries WHERE sale_id = $1 AND status IN ('held', 'skipped')",
                sale.uuid(),
            )
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|r| (r.dedupe_key, r.status))
                .collect();
        let wanted: HashSet<&str> = plan.keys().collect();
        // Opted out (or a device retired) since the last pass.
        let dropped: Vec<String> = existing
            .iter()
            .filter(|(k, s)| s.as_str() == "held" && !wanted.contains(k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        // Opted back in before the start.
        let revived: Vec<String> = existing
            .iter()
            .filter(|(k, s)| s.as_str() == "skipped" && wanted.contains(k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = 0;
        if !dropped.is_empty() {
            changed += sqlx::query!(
                "UPDATE deliveries SET status = 'skipped',
                        attempt_log = attempt_log || jsonb_build_array(jsonb_build_object('at', now(), 'error', 'opted out before the start'))
                 WHERE sale_id = $1 AND status = 'held' AND dedupe_key = ANY($2)",
                sale.uuid(),
                &dropped,
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if !revived.is_empty() {
            // Back in chunks of their own (their old ones may be finished),
            // one for push and one for email, as every chunk is one or the other.
            let push = take_chunks(&mut tx, sale, &["push", "email"]).await?.start;
            changed += sqlx::query!(
                "UPDATE deliveries SET status = 'held', chunk = CASE WHEN channel = 'email' THEN $3 + 1 ELSE $3 END
                 WHERE sale_id = $1 AND status = 'skipped' AND attempts = 0 AND dedupe_key = ANY($2)",
                sale.uuid(),
                &revived,
                push,
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        changed += self.write(&mut tx, &facts, &plan, |k| existing.contains_key(k)).await?;
        let recipients = i32::try_from(plan.recipients).unwrap_or(i32::MAX);
        sqlx::query!(
            "UPDATE sale_notice_preparations SET prepared_at = $3, recipients = $2 WHERE sale_id = $1",
            sale as SaleId,
            recipients,
            read_at,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::counter!("gavel_notifier_sale_prepared_total").increment(1);
        Ok(changed)
    }

    /// The sale started (its `sale.started` event, in the fan-out's
    /// transaction): one row, `released_at`, makes its held rows due (the
    /// delivery loop claims held rows of released sales), so the start costs
    /// the same for ten recipients or a hundred thousand. A sale never
    /// prepared is planned here and now. Returns how many rows it wrote.
    pub async fn release(&self, tx: &mut PgConnection, facts: &SaleFacts) -> Result<u64, sqlx::Error> {
        let sale = facts.id;
        lock(&mut *tx, sale).await?;
        let prepared = sqlx::query_scalar!(
            r#"UPDATE sale_notice_preparations SET released_at = coalesce(released_at, now()) WHERE sale_id = $1
               RETURNING prepared_at IS NOT NULL AS "prepared!""#,
            sale as SaleId,
        )
        .fetch_one(&mut *tx)
        .await?;
        if prepared {
            return Ok(0);
        }
        // Started before the preparer came to it: planned here and now.
        let plan = self.plan(&mut *tx, facts).await?;
        let written = self.write(&mut *tx, facts, &plan, |_| false).await?;
        sqlx::query!(
            "UPDATE sale_notice_preparations SET prepared_at = now(), recipients = $2 WHERE sale_id = $1",
            sale as SaleId,
            i32::try_from(plan.recipients).unwrap_or(i32::MAX),
        )
        .execute(&mut *tx)
        .await?;
        Ok(written)
    }

    /// The sale was cancelled before it started: its held rows are skipped.
    pub async fn cancel(&self, tx: &mut PgConnection, sale: SaleId) -> Result<u64, sqlx::Error> {
        lock(&mut *tx, sale).await?;
        Ok(sqlx::query!(
            "UPDATE deliveries SET status = 'skipped',
                    attempt_log = attempt_log || jsonb_build_array(jsonb_build_object('at', now(), 'error', 'the sale was cancelled'))
             WHERE sale_id = $1 AND status = 'held'",
            sale.uuid(),
        )
        .execute(&mut *tx)
        .await?
        .rows_affected())
    }

    async fn facts(&self, sale: SaleId) -> Result<Option<SaleFacts>, sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT s.id AS "id: SaleId", s.product_id AS "product_id: ProductId", p.title, s.price,
                      s.currency AS "currency: Currency", s.ends_at
               FROM sales s JOIN products p ON p.id = s.product_id WHERE s.id = $1"#,
            sale as SaleId,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| SaleFacts {
            id: r.id,
            product_id: r.product_id,
            title: r.title,
            price: Money::new(r.price, r.currency),
            ends_at: r.ends_at,
        }))
    }

    /// The product's title, for a sale known from its event.
    pub async fn title(&self, tx: &mut PgConnection, product: ProductId) -> Result<String, sqlx::Error> {
        let title = sqlx::query_scalar!("SELECT title FROM products WHERE id = $1", product as ProductId)
            .fetch_optional(&mut *tx)
            .await?;
        Ok(title.unwrap_or_else(|| "a product you follow".into()))
    }

    /// Who gets what: the audience, their preferences and devices (read
    /// through the domain), rendered.
    async fn plan(&self, conn: &mut PgConnection, sale: &SaleFacts) -> Result<Plan, sqlx::Error> {
        let mut audience = watches::watchers(&mut *conn, sale.product_id).await.map_err(db)?;
        audience.extend(preferences::deal_subscribers(&mut *conn).await.map_err(db)?);
        audience.sort_unstable();
        audience.dedup();
        self.plan_for(conn, sale, audience).await
    }

    /// What `audience` (distinct buyers) gets of `sale`'s start.
    async fn plan_for(
        &self,
        conn: &mut PgConnection,
        sale: &SaleFacts,
        audience: Vec<BuyerId>,
    ) -> Result<Plan, sqlx::Error> {
        let prefs = preferences::for_buyers(&mut *conn, &audience).await.map_err(db)?;
        let kind = NotificationKind::SaleStarting;
        let channels = &self.config.channels;
        let email_on = channels.contains(&ChannelKind::Email);
        let push_on = channels.contains(&ChannelKind::Apns) || channels.contains(&ChannelKind::Fcm);
        let mut emailed: Vec<BuyerId> = Vec::new();
        let mut pushed: Vec<BuyerId> = Vec::new();
        for buyer in &audience {
            let on = prefs.get(buyer).map(|p| p.channels(kind)).unwrap_or_default();
            if on.email && email_on {
                emailed.push(*buyer);
            }
            if on.push && push_on {
                pushed.push(*buyer);
            }
        }
        let mut values = self.values(sale);
        let mut plan = Plan::default();
        let mut reached: HashSet<BuyerId> = HashSet::new();
        if !pushed.is_empty() {
            let (title, body) = match self.templates.push(KIND, &values) {
                Ok(r) => r,
                Err(err) => return Err(sqlx::Error::Protocol(format!("sale.started push template: {err}"))),
            };
            let message = push_message(sale.id, title, body);
            plan.push_payload = Some(serde_json::to_value(&message).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
            for device in devices::active_for_buyers(&mut *conn, &pushed).await.map_err(db)? {
                let channel = match device.platform {
                    Platform::Apns => ChannelKind::Apns,
                    Platform::Fcm => ChannelKind::Fcm,
                };
                if !channels.contains(&channel) {
                    continue;
                }
                let key = format!("sale:{}:{}:{}:{}", sale.id, device.buyer_id, channel.as_str(), device.id);
                plan.push.push((key, device.buyer_id, channel, device.id.uuid()));
                reached.insert(device.buyer_id);
            }
        }
        if !emailed.is_empty() {
            let ids: Vec<Uuid> = emailed.iter().map(|b| b.uuid()).collect();
            let names: HashMap<Uuid, Option<String>> =
                sqlx::query!("SELECT id, name FROM buyers WHERE id = ANY($1)", &ids)
                    .fetch_all(&mut *conn)
                    .await?
                    .into_iter()
                    .map(|r| (r.id, r.name))
                    .collect();
            for buyer in emailed {
                let Some(name) = names.get(&buyer.uuid()) else { continue };
                let name = name.as_deref().filter(|n| !n.trim().is_empty()).unwrap_or("there");
                values.insert("buyer_name", name.to_owned());
                let message = self
                    .templates
                    .email(KIND, &values)
                    .map_err(|err| sqlx::Error::Protocol(format!("sale.started email template: {err}")))?;
                let payload = serde_json::to_value(&message).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                plan.email.push((format!("sale:{}:{}:email", sale.id, buyer), buyer, payload));
                reached.insert(buyer);
            }
        }
        plan.recipients = reached.len();
        Ok(plan)
    }

    fn values(&self, sale: &SaleFacts) -> Values {
        let base = self.config.app_url.trim_end_matches('/');
        let mut values = Values::new();
        values.insert("buyer_name", "there".to_owned());
        values.insert("product_title", sale.title.clone());
        values.insert("price", format_money(sale.price));
        values.insert("ends_at", sale.ends_at.format("%Y-%m-%d %H:%M UTC").to_string());
        values.insert("sale_url", format!("{base}/sales/{}", sale.id));
        values
    }
}

fn push_message(sale: SaleId, title: String, body: String) -> Message {
    let mut data = std::collections::BTreeMap::new();
    data.insert("kind".to_owned(), KIND.to_owned());
    data.insert("sale_id".to_owned(), sale.to_string());
    Message::Push {
        title,
        body,
        data,
        // A later notice of the same sale replaces this one on the device.
        collapse_key: Some(format!("sale:{sale}")),
        critical: false,
        ttl_seconds: 3600,
    }
}
