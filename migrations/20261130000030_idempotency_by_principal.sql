-- Idempotency keys are now scoped by principal (mch_…, byr_…) and a row is
-- written only with its answer, in the transaction of the request's effect.
-- Drop what the old scheme left: reservations that never got an answer, and
-- the shared anonymous scope, whose stored sign-in and sign-up answers carry
-- session tokens.
DELETE FROM idempotency_keys WHERE status_code IS NULL OR scope = 'anonymous';
