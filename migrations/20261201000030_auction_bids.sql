-- The bid trail: every attempt on an auction, accepted or rejected, stored in
-- the transaction that judges it and before it is answered. `sequence` counts
-- attempts per auction from 1 without gaps (it is assigned under the auction
-- row's lock); `hash` chains each attempt to the one before it
-- (domain/src/auctions/trail.rs documents the encoding) and the auction row
-- carries the head of the chain.
CREATE TABLE auction_bids (
    id              uuid PRIMARY KEY,
    auction_id      uuid NOT NULL REFERENCES auctions (id),
    sequence        bigint NOT NULL CHECK (sequence >= 1),
    bidder_id       uuid NOT NULL REFERENCES buyers (id),
    amount          bigint NOT NULL,
    max_amount      bigint NOT NULL,
    status          text NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason          text,
    -- What the attempt left behind, as answered: the price, the next minimum
    -- and whether this bidder led afterwards.
    current_price   bigint NOT NULL,
    min_next_bid    bigint NOT NULL,
    is_leading      boolean NOT NULL,
    idempotency_key text,
    created_at      timestamptz NOT NULL,
    hash            bytea NOT NULL CHECK (octet_length(hash) = 32),
    CONSTRAINT auction_bids_sequence UNIQUE (auction_id, sequence),
    CONSTRAINT auction_bids_reason CHECK ((status = 'accepted') = (reason IS NULL))
);
-- The per-bidder velocity limit counts a bidder's recent attempts.
CREATE INDEX auction_bids_by_bidder ON auction_bids (auction_id, bidder_id, created_at);

ALTER TABLE auctions
    ADD COLUMN last_sequence bigint NOT NULL DEFAULT 0 CHECK (last_sequence >= 0),
    ADD COLUMN trail_hash bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
        CHECK (octet_length(trail_hash) = 32);

-- A buyer account that belongs to a merchant (its seller or staff): such a
-- buyer may not bid on that merchant's auctions (shill bidding).
ALTER TABLE buyers ADD COLUMN merchant_id uuid REFERENCES merchants (id);
