//! The tamper-evident trail: each stored attempt carries a hash chaining it to
//! the one before, so that changing, removing or reordering any attempt breaks
//! every hash after it, and the auction's final hash commits to the whole trail.
//!
//! # The encoding, exactly (so that an auditor can recompute it)
//!
//! ```text
//! hash(n) = SHA-256( hash(n-1) || record(n) )      hash(0) = 32 zero bytes
//!
//! record  = text("gavel.bid.v1")
//!        || u64(sequence)
//!        || text(bidder)            the printed buyer id, e.g. "byr_0193a1b2…" (36 bytes)
//!        || i64(amount)             minor units
//!        || i64(max_amount)         minor units; equal to amount when none was given
//!        || text(status)            "accepted" or "rejected"
//!        || text(reason)            the rejection code, e.g. "bid_too_low"; empty when accepted
//!        || i64(created_at)         server time, microseconds since 1970-01-01T00:00:00Z
//!        || text(idempotency_key)   empty when the request carried none
//!
//! u64(x), i64(x) = the 8 bytes of x, big-endian (i64 in two's complement)
//! text(s)        = u32(byte length of s, big-endian, 4 bytes) || the UTF-8 bytes of s
//! ```
//!
//! Every variable-length field carries its length, so no two different attempts
//! share a record. Hashes are shown as 64 lower-case hex digits ([`to_hex`]).

use sha2::{Digest, Sha256};

use crate::ids::BuyerId;

/// The hash before the first attempt.
pub const GENESIS: [u8; 32] = [0; 32];

/// The tag that opens every record (its version: a new encoding gets a new tag).
const TAG: &str = "gavel.bid.v1";

/// Whether the attempt was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptStatus {
    Accepted,
    Rejected,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }
}

/// The fields of one attempt that its hash commits to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptFields {
    pub sequence: u64,
    pub bidder: BuyerId,
    pub amount: i64,
    /// Equal to `amount` when the bid gave no maximum.
    pub max_amount: i64,
    pub status: AttemptStatus,
    /// The rejection code (`bid_too_low`, `auction_closed`, …); `None` when accepted.
    pub reason: Option<String>,
    /// Server time, microseconds since the Unix epoch.
    pub created_at_micros: i64,
    pub idempotency_key: Option<String>,
}

/// An attempt as stored: its fields and the hash stored with them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredAttempt {
    pub fields: AttemptFields,
    pub hash: [u8; 32],
}

/// Why a trail does not verify, at which attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the trail breaks at sequence {sequence}: {why}")]
pub struct Broken {
    /// The sequence where the break was found (the expected one for a gap).
    pub sequence: u64,
    pub why: Why,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Why {
    #[error("expected sequence {expected}, found {found}")]
    Sequence { expected: u64, found: u64 },
    #[error("the stored hash {stored} is not the recomputed {computed}")]
    Hash { stored: String, computed: String },
}

/// The canonical record of an attempt (see the module's documentation).
pub fn record(attempt: &AttemptFields) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        // Fields are far below 4 GiB; a longer one would be cut to u32::MAX in its prefix only.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::with_capacity(160);
    text(&mut out, TAG);
    out.extend_from_slice(&attempt.sequence.to_be_bytes());
    text(&mut out, &attempt.bidder.to_string());
    out.extend_from_slice(&attempt.amount.to_be_bytes());
    out.extend_from_slice(&attempt.max_amount.to_be_bytes());
    text(&mut out, attempt.status.as_str());
    text(&mut out, attempt.reason.as_deref().unwrap_or(""));
    out.extend_from_slice(&attempt.created_at_micros.to_be_bytes());
    text(&mut out, attempt.idempotency_key.as_deref().unwrap_or(""));
    out
}

/// The hash of `attempt` chained to `previous` ([`GENESIS`] for the first).
pub fn attempt_hash(previous: &[u8; 32], attempt: &AttemptFields) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(record(attempt));
    hasher.finalize().into()
}

/// Recomputes the chain over `attempts` (in stored order): sequences must run
/// 1, 2, 3… without gaps and each stored hash must be the recomputed one.
/// Returns the final hash ([`GENESIS`] for an empty trail).
pub fn verify<'a>(attempts: impl IntoIterator<Item = &'a StoredAttempt>) -> Result<[u8; 32], Broken> {
    let mut previous = GENESIS;
    for (expected, attempt) in (1u64..).zip(attempts) {
        let found = attempt.fields.sequence;
        if found != expected {
            return Err(Broken { sequence: expected, why: Why::Sequence { expected, found } });
        }
        let computed = attempt_hash(&previous, &attempt.fields);
        if computed != attempt.hash {
            let why = Why::Hash { stored: to_hex(&attempt.hash), computed: to_hex(&computed) };
            return Err(Broken { sequence: expected, why });
        }
        previous = computed;
    }
    Ok(previous)
}

/// Chains `fields` (in order) into stored attempts, as the repository will.
pub fn build(fields: impl IntoIterator<Item = AttemptFields>) -> Vec<StoredAttempt> {
    let mut previous = GENESIS;
    fields
        .into_iter()
        .map(|fields| {
            let hash = attempt_hash(&previous, &fields);
            previous = hash;
            StoredAttempt { fields, hash }
        })
        .collect()
}

/// A hash as 64 lower-case hex digits.
pub fn to_hex(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_attempts() -> Vec<AttemptFields> {
        let bidder: BuyerId = "byr_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b".parse().expect("a buyer id");
        vec![
            AttemptFields {
                sequence: 1,
                bidder,
                amount: 1_000,
                max_amount: 5_000,
                status: AttemptStatus::Accepted,
                reason: None,
                created_at_micros: 1_764_500_000_000_000,
                idempotency_key: Some("key-1".into()),
            },
            AttemptFields {
                sequence: 2,
                bidder,
                amount: 900,
                max_amount: 900,
                status: AttemptStatus::Rejected,
                reason: Some("bid_too_low".into()),
                created_at_micros: 1_764_500_000_000_123,
                idempotency_key: None,
            },
        ]
    }

    /// Known answers, computed apart from this code (a few lines of Python's
    /// hashlib and struct following the module's documentation), so the
    /// documented encoding and the code cannot drift apart.
    #[test]
    fn hashes_match_an_independent_computation_of_the_documented_encoding() {
        let trail = build(two_attempts());
        assert_eq!(to_hex(&trail[0].hash), "a7796c8ffca97c37c176b427371a178538680dfb0b35b752cae3037368487d9e");
        assert_eq!(to_hex(&trail[1].hash), "5a379d6c1cd551d4a439e672ece9d1d17e197e339b3459078f56cd6f935dfd3d");
        assert_eq!(verify(&trail), Ok(trail[1].hash));
    }

    #[test]
    fn the_record_is_length_prefixed_and_big_endian() {
        let fields = &two_attempts()[1];
        let record = record(fields);
        assert_eq!(&record[..4], &12u32.to_be_bytes());
        assert_eq!(&record[4..16], b"gavel.bid.v1");
        assert_eq!(&record[16..24], &2u64.to_be_bytes());
        assert_eq!(&record[24..28], &36u32.to_be_bytes());
        assert_eq!(&record[28..64], fields.bidder.to_string().as_bytes());
        assert_eq!(&record[64..72], &900i64.to_be_bytes());
        assert_eq!(&record[record.len() - 4..], &0u32.to_be_bytes(), "no idempotency key: empty text");
    }

    #[test]
    fn an_empty_trail_verifies_to_the_genesis_hash() {
        assert_eq!(verify(&[]), Ok(GENESIS));
    }

    #[test]
    fn a_gap_or_a_changed_hash_is_found_where_it_is() {
        let mut trail = build(two_attempts());
        trail[1].hash[0] ^= 1;
        assert!(matches!(verify(&trail), Err(Broken { sequence: 2, why: Why::Hash { .. } })));
        let mut fields = two_attempts();
        fields[1].sequence = 3;
        let trail = build(fields);
        assert_eq!(verify(&trail), Err(Broken { sequence: 2, why: Why::Sequence { expected: 2, found: 3 } }));
    }
}
