-- A bid's Idempotency-Key is stored on its attempt: a retry of the same key by
-- the same bidder on the same auction finds the attempt instead of making a
-- second one (checked under the auction row's lock; this index makes it
-- exact). Rate-limited attempts do not hold their key, so a retry after the
-- wait can still be judged.
CREATE UNIQUE INDEX auction_bids_idempotency ON auction_bids (auction_id, bidder_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND reason IS DISTINCT FROM 'rate_limited';
