//! The transaction an idempotent request writes its effect in.
//!
//! A creating handler takes [`Effect`] and calls [`Effect::begin`] once its
//! input is checked (so a refused request costs no connection). Without an
//! `Idempotency-Key` that is a plain transaction and [`EffectTx::commit`]
//! commits it. With one, `begin` also takes the key's advisory lock and
//! re-reads the key, and `commit` hands the transaction back to the layer,
//! which stores the answer in it before the real commit.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use gavel_domain::idempotency::{self, Stored};
use sqlx::{PgConnection, PgPool, PgTransaction};

use crate::problem::{ErrorCode, Problem};
use crate::state::AppState;

/// The key of the request in flight, with what identifies the request.
#[derive(Debug, Clone)]
pub(super) struct Keyed {
    pub scope: String,
    pub key: String,
    pub request_hash: Vec<u8>,
}

/// Where the handler leaves its transaction for the layer.
#[derive(Clone)]
pub(super) struct Slot(Arc<SlotInner>);

struct SlotInner {
    keyed: Keyed,
    state: Mutex<Finished>,
}

/// What the handler left behind.
pub(super) enum Finished {
    /// No keyed effect was committed (nothing began, or it rolled back).
    Nothing,
    /// The key already has an answer (stored while this request waited).
    Replay(Stored),
    /// The effect is written; its answer goes in before the commit.
    Written(PgTransaction<'static>),
}

impl Slot {
    pub(super) fn new(keyed: Keyed) -> Self {
        Self(Arc::new(SlotInner { keyed, state: Mutex::new(Finished::Nothing) }))
    }

    fn set(&self, finished: Finished) {
        match self.0.state.lock() {
            Ok(mut state) => *state = finished,
            Err(poisoned) => *poisoned.into_inner() = finished,
        }
    }

    pub(super) fn finish(&self) -> Finished {
        let mut state = match self.0.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *state, Finished::Nothing)
    }
}

/// The way to the request's transaction (see the module docs).
pub struct Effect {
    pool: PgPool,
    slot: Option<Slot>,
}

impl FromRequestParts<AppState> for Effect {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self { pool: state.pool.clone(), slot: parts.extensions.get::<Slot>().cloned() })
    }
}

impl Effect {
    /// Opens the transaction. Keyed, it answers `409 idempotency_key_in_use`
    /// while another live transaction holds the key; a key answered in the
    /// meantime is replayed by the layer (whatever this returns).
    pub async fn begin(self) -> Result<EffectTx, Problem> {
        let mut tx = self.pool.begin().await.map_err(gavel_domain::Error::from)?;
        let Some(slot) = self.slot else {
            return Ok(EffectTx { tx, slot: None });
        };
        let keyed = &slot.0.keyed;
        if !idempotency::try_lock(&mut tx, &keyed.scope, &keyed.key).await? {
            return Err(in_use());
        }
        if let Some(stored) = idempotency::lookup(&mut *tx, &keyed.scope, &keyed.key).await? {
            slot.set(Finished::Replay(stored));
            return Err(in_use());
        }
        Ok(EffectTx { tx, slot: Some(slot) })
    }
}

fn in_use() -> Problem {
    Problem::new(
        ErrorCode::IdempotencyKeyInUse,
        "a request with this Idempotency-Key is being processed; retry shortly",
    )
    .retry_after(1)
}

/// The request's transaction. Dropped without [`commit`](Self::commit), it
/// rolls back (and releases the key).
pub struct EffectTx {
    tx: PgTransaction<'static>,
    slot: Option<Slot>,
}

impl EffectTx {
    /// The effect is complete. Keyed, the layer commits it together with the
    /// answer; the caller must not write anything after this.
    pub async fn commit(self) -> Result<(), Problem> {
        match self.slot {
            None => Ok(self.tx.commit().await.map_err(gavel_domain::Error::from)?),
            Some(slot) => {
                slot.set(Finished::Written(self.tx));
                Ok(())
            }
        }
    }
}

impl Deref for EffectTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for EffectTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}
