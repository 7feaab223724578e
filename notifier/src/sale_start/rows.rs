//! A sale's fan-out rows: written `held` in numbered chunks (one insert
//! statement each, with a lease row in `sale_notice_chunks`), under the
//! sale's preparation lock.

use gavel_domain::ids::SaleId;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{CHUNK, KIND, Plan, SaleFacts, SaleStart};

impl SaleStart {
    /// Inserts the plan's rows whose key does not already `exists` as `held`, in chunks of one
    /// statement each (due as soon as the sale is released), push and email
    /// chunks in turn, a push chunk first: the delivery loop claims a
    /// released sale's held rows in the order of `deliveries_held`, which is
    /// (for one sale) the rows' insertion order, so every channel starts at
    /// the start — before, every email row came first, and the first push
    /// waited for 10,000 emails to be sent.
    pub(super) async fn write(
        &self,
        tx: &mut PgConnection,
        sale: &SaleFacts,
        plan: &Plan,
        exists: impl Fn(&str) -> bool,
    ) -> Result<u64, sqlx::Error> {
        let mut written = 0;
        let emails: Vec<_> = plan.email.iter().filter(|e| !exists(&e.0)).collect();
        let pushes: Vec<_> = plan.push.iter().filter(|p| !exists(&p.0)).collect();
        // The message carries its collapse key (`sale:<sale>`, so a device
        // shows one notice per sale); the row's `collapse_key` column, which
        // makes a coalescing group of the delivery policy (policy.rs), stays
        // NULL: the dedupe key already allows one row per (sale, device), so
        // there is never a newer message to wait for — and waiting
        // `notifier.coalesce_seconds` after the preparation held the first
        // pushes back after the start.
        let payload = plan.push_payload.clone().unwrap_or(serde_json::Value::Null);
        // As many rounds for either channel, each at most CHUNK rows.
        let rounds = emails.len().div_ceil(CHUNK).max(pushes.len().div_ceil(CHUNK)).max(1);
        let (email_chunk, push_chunk) = (emails.len().div_ceil(rounds).max(1), pushes.len().div_ceil(rounds).max(1));
        let mut email_chunks = emails.chunks(email_chunk);
        let mut push_chunks = pushes.chunks(push_chunk);
        // Each statement's rows are one chunk, claimed as one by the delivery loop.
        let (push_statements, email_statements) =
            (pushes.len().div_ceil(push_chunk), emails.len().div_ceil(email_chunk));
        let kinds: Vec<&str> = (0..rounds)
            .flat_map(|round| {
                [(round < push_statements).then_some("push"), (round < email_statements).then_some("email")]
            })
            .flatten()
            .collect();
        if kinds.is_empty() {
            return Ok(0);
        }
        let mut number = take_chunks(&mut *tx, sale.id, &kinds).await?;
        for _ in 0..rounds {
            if let Some(chunk) = push_chunks.next() {
                let n = number.next().unwrap_or_default();
                let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
                let keys: Vec<String> = chunk.iter().map(|p| p.0.clone()).collect();
                let buyers: Vec<Uuid> = chunk.iter().map(|p| p.1.uuid()).collect();
                let chans: Vec<String> = chunk.iter().map(|p| p.2.as_str().to_owned()).collect();
                let devices: Vec<Uuid> = chunk.iter().map(|p| p.3).collect();
                written += sqlx::query!(
                    "INSERT INTO deliveries (id, dedupe_key, kind, buyer_id, channel, device_id, payload,
                                             sale_id, status, chunk)
                     SELECT u.id, u.key, $6, u.buyer, u.channel, u.device, $7, $8, 'held', $9
                     FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::uuid[])
                          AS u(id, key, buyer, channel, device)
                     ON CONFLICT (dedupe_key) DO NOTHING",
                    &ids,
                    &keys,
                    &buyers,
                    &chans,
                    &devices,
                    KIND,
                    payload,
                    sale.id.uuid(),
                    n,
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            if let Some(chunk) = email_chunks.next() {
                let n = number.next().unwrap_or_default();
                let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
                let keys: Vec<String> = chunk.iter().map(|e| e.0.clone()).collect();
                let buyers: Vec<Uuid> = chunk.iter().map(|e| e.1.uuid()).collect();
                let payloads: Vec<serde_json::Value> = chunk.iter().map(|e| e.2.clone()).collect();
                written += sqlx::query!(
                    "INSERT INTO deliveries (id, dedupe_key, kind, buyer_id, channel, payload, sale_id, status, chunk)
                     SELECT u.id, u.key, $5, u.buyer, 'email', u.payload, $6, 'held', $7
                     FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::jsonb[]) AS u(id, key, buyer, payload)
                     ON CONFLICT (dedupe_key) DO NOTHING",
                    &ids,
                    &keys,
                    &buyers,
                    &payloads,
                    KIND,
                    sale.id.uuid(),
                    n,
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        Ok(written)
    }
}

/// Takes the sale's preparation row lock (making the row if need be), so
/// that a preparation, the release and a cancellation of one sale happen one
/// after another.
pub(super) async fn lock(tx: &mut PgConnection, sale: SaleId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO sale_notice_preparations (sale_id) VALUES ($1) ON CONFLICT (sale_id) DO NOTHING",
        sale as SaleId,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("SELECT sale_id FROM sale_notice_preparations WHERE sale_id = $1 FOR UPDATE", sale as SaleId)
        .fetch_one(&mut *tx)
        .await?;
    Ok(())
}

/// Numbers new chunks of `sale` (under its preparation lock), one per kind
/// given (`push` or `email`, in order), each with its lease row; returns the
/// first number and one past the last.
pub(super) async fn take_chunks(
    tx: &mut PgConnection,
    sale: SaleId,
    kinds: &[&str],
) -> Result<std::ops::Range<i32>, sqlx::Error> {
    let n = i32::try_from(kinds.len()).unwrap_or(i32::MAX);
    let first = sqlx::query_scalar!(
        r#"UPDATE sale_notice_preparations SET chunks = chunks + $2 WHERE sale_id = $1 RETURNING chunks - $2 AS "first!""#,
        sale as SaleId,
        n,
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO sale_notice_chunks (sale_id, chunk, kind)
         SELECT $1, $2::int + (k.n - 1)::int, k.kind FROM UNNEST($3::text[]) WITH ORDINALITY AS k(kind, n)
         ON CONFLICT DO NOTHING",
        sale as SaleId,
        first,
        &kinds.iter().map(|k| (*k).to_owned()).collect::<Vec<String>>(),
    )
    .execute(&mut *tx)
    .await?;
    Ok(first..first + n)
}
