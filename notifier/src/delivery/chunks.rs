//! A started sale's held deliveries, claimed a chunk at a time by the
//! chunk's lease (`sale_notice_chunks`) rather than a lease per row: the
//! claim, the batched `sent` write and the finish guarded on that lease, and
//! a row's own lease taken when its outcome is anything but `sent`.

use gavel_domain::ids::DeliveryId;

use super::{ChunkKind, ChunkLease, Claimed, Deliverer, Lease, Outcome, lease_kept, report_lost, split};

impl Deliverer {
    /// `sent` for deliveries of this worker's chunk (still `held`): one
    /// write per delivery in all, guarded on the chunk's lease.
    pub(super) async fn record_sent_held(
        &self,
        ChunkLease { sale, chunk }: ChunkLease,
        sent: Vec<(DeliveryId, Option<String>)>,
    ) -> Result<(), sqlx::Error> {
        let (ids, provider_ids) = split(&sent);
        let done = sqlx::query!(
            "UPDATE deliveries d SET status = 'sent', provider_id = NULLIF(u.provider_id, ''), sent_at = now(),
                    attempts = d.attempts + 1
             FROM UNNEST($1::uuid[], $2::text[]) AS u(id, provider_id)
             WHERE d.id = u.id AND d.status = 'held' AND d.sale_id = $3 AND d.chunk = $4
               AND EXISTS (SELECT 1 FROM sale_notice_chunks k
                           WHERE k.sale_id = $3 AND k.chunk = $4 AND k.lease_owner = $5)",
            &ids,
            &provider_ids,
            sale,
            chunk,
            &self.inner.config.owner,
        )
        .execute(&self.inner.pool)
        .await?;
        report_lost(ids.len(), done.rows_affected());
        Ok(())
    }

    /// Takes the next chunk of a released sale's held deliveries whose lease
    /// is free (never taken, or its sender crashed), with its rows.
    pub(super) async fn claim_chunk(
        &self,
        prefer: ChunkKind,
    ) -> Result<Option<(ChunkLease, Vec<Claimed>)>, sqlx::Error> {
        let c = &self.inner.config;
        let taken = sqlx::query!(
            r#"WITH next AS (
                   SELECT k.sale_id, k.chunk FROM sale_notice_chunks k
                   JOIN sale_notice_preparations p ON p.sale_id = k.sale_id AND p.released_at IS NOT NULL
                   WHERE k.finished_at IS NULL AND (k.lease_until IS NULL OR k.lease_until < now())
                   ORDER BY k.kind = $3 DESC, p.released_at, k.sale_id, k.chunk
                   LIMIT 1 FOR UPDATE OF k SKIP LOCKED)
               UPDATE sale_notice_chunks k SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond'
               FROM next WHERE k.sale_id = next.sale_id AND k.chunk = next.chunk
               RETURNING k.sale_id, k.chunk"#,
            &c.owner,
            c.lease.as_millis() as f64,
            prefer.as_str(),
        )
        .fetch_optional(&self.inner.pool)
        .await?;
        let Some(taken) = taken else { return Ok(None) };
        let lease = ChunkLease { sale: taken.sale_id, chunk: taken.chunk };
        let mut rows = sqlx::query_as::<_, Claimed>(
            "SELECT d.id, d.channel, d.device_id, d.payload, d.attempts, b.email, b.name,
                    dv.token, dv.status AS device_status
             FROM deliveries d JOIN buyers b ON b.id = d.buyer_id LEFT JOIN devices dv ON dv.id = d.device_id
             WHERE d.sale_id = $1 AND d.chunk = $2 AND d.status = 'held'",
        )
        .bind(taken.sale_id)
        .bind(taken.chunk)
        .fetch_all(&self.inner.pool)
        .await?;
        for row in &mut rows {
            row.lease = Lease::Chunk(lease);
        }
        Ok(Some((lease, rows)))
    }

    /// A chunk none of whose rows is `held` any more is finished; one that
    /// still has some (an outcome not recorded) keeps its lease until it runs
    /// out, and then is taken again for those.
    pub(super) async fn finish_chunk(&self, ChunkLease { sale, chunk }: ChunkLease) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE sale_notice_chunks SET finished_at = now(), lease_owner = NULL, lease_until = NULL
             WHERE sale_id = $1 AND chunk = $2 AND lease_owner = $3
               AND NOT EXISTS (SELECT 1 FROM deliveries WHERE sale_id = $1 AND chunk = $2 AND status = 'held')",
            sale,
            chunk,
            &self.inner.config.owner,
        )
        .execute(&self.inner.pool)
        .await?;
        Ok(())
    }

    /// Records an outcome other than `sent`. A chunk's delivery first takes
    /// a lease of its own (`sending`, the attempt counted), as any claimed
    /// row has, so that the rest of its life (retries, the dead-letter
    /// queue) is the same as every delivery's.
    pub(super) async fn record_other(&self, mut row: Claimed, outcome: Outcome) -> Result<(), sqlx::Error> {
        if let Lease::Chunk(ChunkLease { sale, chunk }) = row.lease {
            let c = &self.inner.config;
            let adopted = sqlx::query_scalar!(
                "UPDATE deliveries d SET status = 'sending', lease_owner = $4,
                        lease_until = now() + $5 * interval '1 millisecond', attempts = d.attempts + 1
                 WHERE d.id = $1 AND d.status = 'held' AND d.sale_id = $2 AND d.chunk = $3
                   AND EXISTS (SELECT 1 FROM sale_notice_chunks k
                               WHERE k.sale_id = $2 AND k.chunk = $3 AND k.lease_owner = $4)
                 RETURNING attempts",
                row.id as DeliveryId,
                sale,
                chunk,
                &c.owner,
                c.lease.as_millis() as f64,
            )
            .fetch_optional(&self.inner.pool)
            .await?;
            let Some(attempts) = adopted else { return lease_kept(&row, 0) };
            row.attempts = attempts;
            row.lease = Lease::Row;
        }
        self.record(&row, outcome).await
    }
}
