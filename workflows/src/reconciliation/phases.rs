//! One page of each phase: read it, judge it, and commit its findings, the
//! ledger rows it matched, its settlement jobs and the next cursor together.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use gavel_domain::ids::{PaymentId, RefundId};
use gavel_domain::jobs::{self, PaymentJob, queues};
use gavel_domain::payments::refunds;
use gavel_domain::reconciliation::ledger::{self, Keyset, LedgerPayment};
use gavel_domain::reconciliation::{self as recon, Discrepancy, ObjectKind, Phase, Resolution, Run, Scope};
use gavel_domain::{Error, Result};
use uuid::Uuid;

use super::Reconciler;
use super::compare::{self, merchant_of, moves_money, payment_of};

/// What a page found, to be committed with the run's next position.
#[derive(Default)]
struct Findings {
    found: Vec<Discrepancy>,
    seen: Vec<Uuid>,
    checked: (i64, i64),
}

/// An auto-settled refund discrepancy (an owed refund the provider shows
/// made): completes the refund as the refund job's lost answer would have,
/// in the page's transaction. Should it no longer be owed (the job heard
/// back meanwhile), the row is left for review instead.
async fn complete_refund(conn: &mut sqlx::PgConnection, d: &mut Discrepancy) -> Result<()> {
    if d.object != ObjectKind::Refund || d.resolution != Resolution::AutoSettled {
        return Ok(());
    }
    let (Some(refund), Some(provider_id)) = (d.gavel_id.as_deref(), d.provider_id.as_deref()) else {
        return Err(Error::Internal("an auto-settled refund names no refund".into()));
    };
    let refund: RefundId = refund.parse().map_err(|_| Error::Internal(format!("not a refund id: {refund}")))?;
    if !refunds::complete_owed(conn, refund, provider_id).await? {
        d.resolution = Resolution::NeedsReview;
        d.detail = "owed in Gavel when read, succeeded at the provider; no longer owed when settled".into();
    }
    Ok(())
}

fn provider(err: String) -> Error {
    Error::Internal(format!("the payment provider: {err}"))
}

fn keyset(cursor: Option<&str>) -> Result<Option<Keyset>> {
    let Some(cursor) = cursor else { return Ok(None) };
    let bad = || Error::Internal(format!("a ledger cursor that is not ours: {cursor}"));
    let (at, id) = cursor.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?.with_timezone(&Utc);
    Ok(Some((at, id.parse().map_err(|_| bad())?)))
}

fn cursor_of(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}|{id}", at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// Where a ledger phase goes after a page: on from the page's last row
/// (`key`: its time and id) while pages come full, else to `then`.
fn after_ledger_page<T>(
    rows: &[T],
    limit: i64,
    phase: Phase,
    then: Phase,
    key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
) -> (Phase, Option<String>) {
    match rows.last() {
        Some(last) if rows.len() as i64 == limit => {
            let (at, id) = key(last);
            (phase, Some(cursor_of(at, id)))
        }
        _ => (then, None),
    }
}

impl Reconciler {
    /// Does one page of the run's phase; returns where the run goes next.
    pub(super) async fn step(&self, run: &Run) -> Result<(Phase, Option<String>)> {
        let (mut findings, next) = match run.phase {
            Phase::ProviderPayments => self.provider_payments(run).await?,
            Phase::ProviderRefunds => self.provider_refunds(run).await?,
            Phase::LedgerPayments => self.ledger_payments(run).await?,
            Phase::LedgerRefunds => self.ledger_refunds(run).await?,
            Phase::Settle => {
                self.settle_all(run).await?;
                (Findings::default(), (Phase::Done, None))
            }
            Phase::Done => return Ok((Phase::Done, None)),
        };
        let settle: Vec<Uuid> = findings.found.iter().filter_map(|d| d.settles_payment).collect();
        let mut tx = self.pool.begin().await?;
        for d in &mut findings.found {
            complete_refund(&mut tx, d).await?;
        }
        recon::record(&mut tx, run.id, &findings.found).await?;
        recon::mark_seen(&mut tx, run.id, &findings.seen).await?;
        for payment in &settle {
            // Durable: should this process die before settling below, a
            // worker settles it (the run's last phase also re-applies it).
            let job = PaymentJob::Verify { payment_id: PaymentId::from_uuid(*payment), round: 0 };
            jobs::enqueue(&mut tx, queues::PAYMENTS, &job, Utc::now(), &format!("recon:{}:{payment}", run.id)).await?;
        }
        recon::advance(&mut tx, run.id, next.0, next.1.as_deref(), findings.checked).await?;
        tx.commit().await?;
        for payment in settle {
            self.settle(payment).await;
        }
        Ok(next)
    }

    /// Settles a payment through the checkout's verification (it asks the
    /// provider again and moves the attempt and its order through their
    /// guarded transitions; a settled one is left as it is).
    async fn settle(&self, payment: Uuid) {
        let job = PaymentJob::Verify { payment_id: PaymentId::from_uuid(payment), round: 0 };
        if let Err(err) = self.checkout.run(job).await {
            tracing::warn!(%payment, error = %err, "reconciliation could not settle a payment now; its job will");
        }
    }

    async fn settle_all(&self, run: &Run) -> Result<()> {
        let payments = recon::auto_settled_payments(&mut *self.pool.acquire().await?, run.id).await?;
        for payment in payments {
            self.settle(payment).await;
        }
        Ok(())
    }

    fn in_scope(run: &Run, owner: Option<gavel_domain::ids::MerchantId>) -> bool {
        match run.scope() {
            Scope::Platform => true,
            Scope::Merchant(m) => owner == Some(m),
        }
    }

    async fn provider_payments(&self, run: &Run) -> Result<(Findings, (Phase, Option<String>))> {
        let page = self
            .checkout
            .gateway()
            .list_intents(Self::period(run), run.cursor.as_deref(), self.config.page_size)
            .await
            .map_err(provider)?;
        let ids: Vec<String> = page.data.iter().map(|pi| pi.id.clone()).collect();
        let named: Vec<Uuid> = page.data.iter().filter_map(|pi| payment_of(&pi.metadata)).map(|p| p.uuid()).collect();
        let rows = ledger::payments_matching(&mut *self.pool.acquire().await?, &ids, &named).await?;
        let by_provider: HashMap<&str, &LedgerPayment> =
            rows.iter().filter_map(|l| Some((l.provider_id.as_deref()?, l))).collect();
        let by_id: HashMap<Uuid, &LedgerPayment> = rows.iter().map(|l| (l.id, l)).collect();
        let judge = self.judge(run);
        let mut f = Findings::default();
        for pi in &page.data {
            let named = payment_of(&pi.metadata).and_then(|p| by_id.get(&p.uuid()).copied());
            // Gavel's by its id, or the attempt it names that never learnt its id (a lost answer).
            let own = by_provider.get(pi.id.as_str()).copied().or(named.filter(|l| l.provider_id.is_none()));
            match (own, named) {
                (Some(l), _) => {
                    if !Self::in_scope(run, Some(l.merchant_id)) {
                        continue;
                    }
                    f.checked.0 += 1;
                    f.seen.push(l.id);
                    f.found.extend(compare::payment_vs_intent(&judge, l, pi));
                }
                (None, Some(l)) => {
                    if !Self::in_scope(run, Some(l.merchant_id)) {
                        continue;
                    }
                    f.checked.0 += 1;
                    if pi.status == "succeeded" {
                        f.found.push(compare::duplicate(l, pi));
                    }
                }
                (None, None) => {
                    if !Self::in_scope(run, merchant_of(&pi.metadata)) {
                        continue;
                    }
                    f.checked.0 += 1;
                    if moves_money(&pi.status) {
                        f.found.push(compare::intent_alone(pi));
                    }
                }
            }
        }
        let next = match page.data.last() {
            Some(last) if page.has_more => (Phase::ProviderPayments, Some(last.id.clone())),
            _ => (Phase::ProviderRefunds, None),
        };
        Ok((f, next))
    }

    async fn provider_refunds(&self, run: &Run) -> Result<(Findings, (Phase, Option<String>))> {
        let page = self
            .checkout
            .gateway()
            .list_refunds(Self::period(run), run.cursor.as_deref(), self.config.page_size)
            .await
            .map_err(provider)?;
        let ids: Vec<String> = page.data.iter().map(|r| r.id.clone()).collect();
        let named: Vec<Uuid> = page.data.iter().filter_map(|r| payment_of(&r.metadata)).map(|p| p.uuid()).collect();
        let intents: Vec<String> = page.data.iter().filter_map(|r| r.payment_intent.clone()).collect();
        let mut conn = self.pool.acquire().await?;
        let refunds = ledger::refunds_matching(&mut conn, &ids, &named).await?;
        let paid = ledger::payments_matching(&mut conn, &intents, &[]).await?;
        drop(conn);
        let by_provider: HashMap<&str, _> =
            refunds.iter().filter_map(|r| Some((r.provider_id.as_deref()?, r))).collect();
        let by_payment: HashMap<Uuid, _> =
            refunds.iter().filter(|r| r.provider_id.is_none()).map(|r| (r.payment_id, r)).collect();
        let payment_by_intent: HashMap<&str, &LedgerPayment> =
            paid.iter().filter_map(|l| Some((l.provider_id.as_deref()?, l))).collect();
        let judge = self.judge(run);
        let mut f = Findings::default();
        for pr in &page.data {
            let named = payment_of(&pr.metadata).and_then(|p| by_payment.get(&p.uuid()).copied());
            match by_provider.get(pr.id.as_str()).copied().or(named) {
                Some(r) => {
                    if !Self::in_scope(run, Some(r.merchant_id)) {
                        continue;
                    }
                    f.checked.1 += 1;
                    f.seen.push(r.id);
                    f.found.extend(compare::refund_vs_refund(&judge, r, pr));
                }
                None => {
                    let l = pr.payment_intent.as_deref().and_then(|pi| payment_by_intent.get(pi).copied());
                    let owner = l.map(|l| l.merchant_id).or_else(|| merchant_of(&pr.metadata));
                    if !Self::in_scope(run, owner) {
                        continue;
                    }
                    f.checked.1 += 1;
                    if pr.status == "succeeded" || pr.status == "pending" {
                        f.found.push(compare::refund_unknown(pr, l));
                    }
                }
            }
        }
        let next = match page.data.last() {
            Some(last) if page.has_more => (Phase::ProviderRefunds, Some(last.id.clone())),
            _ => (Phase::LedgerPayments, None),
        };
        Ok((f, next))
    }

    async fn ledger_payments(&self, run: &Run) -> Result<(Findings, (Phase, Option<String>))> {
        let limit = i64::from(self.config.page_size);
        let rows = ledger::unseen_payments(
            &mut *self.pool.acquire().await?,
            run.id,
            run.merchant_id,
            Self::period(run),
            keyset(run.cursor.as_deref())?,
            limit,
        )
        .await?;
        let judge = self.judge(run);
        let mut f = Findings::default();
        for l in &rows {
            f.checked.0 += 1;
            let pi = match &l.provider_id {
                Some(id) => self.checkout.gateway().intent_record(id).await.map_err(provider)?,
                None => None,
            };
            f.found.extend(compare::payment_alone(&judge, l, pi.as_ref()));
        }
        let next =
            after_ledger_page(&rows, limit, Phase::LedgerPayments, Phase::LedgerRefunds, |l| (l.created_at, l.id));
        Ok((f, next))
    }

    async fn ledger_refunds(&self, run: &Run) -> Result<(Findings, (Phase, Option<String>))> {
        let limit = i64::from(self.config.page_size);
        let rows = ledger::unseen_refunds(
            &mut *self.pool.acquire().await?,
            run.id,
            run.merchant_id,
            Self::period(run),
            keyset(run.cursor.as_deref())?,
            limit,
        )
        .await?;
        let judge = self.judge(run);
        let mut f = Findings::default();
        for r in &rows {
            f.checked.1 += 1;
            let pr = match (&r.provider_id, r.status.as_str()) {
                (Some(id), "succeeded") => self.checkout.gateway().refund_record(id).await.map_err(provider)?,
                _ => None,
            };
            f.found.extend(compare::refund_alone(&judge, r, pr.as_ref()));
        }
        let next = after_ledger_page(&rows, limit, Phase::LedgerRefunds, Phase::Settle, |r| (r.created_at, r.id));
        Ok((f, next))
    }
}
