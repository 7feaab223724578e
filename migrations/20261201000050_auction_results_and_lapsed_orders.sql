-- How an ended auction closed, written once by the close (the primary key is
-- the guard): the winner and their order (both null when there were no bids
-- or the reserve was not met), the final price and the trail's head. The
-- merchant's one second-chance offer, once made, is kept beside it.
CREATE TABLE auction_results (
    auction_id              uuid PRIMARY KEY REFERENCES auctions (id),
    winner_buyer_id         uuid REFERENCES buyers (id),
    order_id                uuid UNIQUE REFERENCES orders (id),
    final_price             bigint NOT NULL,
    ended_at                timestamptz NOT NULL,
    trail_hash              bytea NOT NULL CHECK (octet_length(trail_hash) = 32),
    second_chance_buyer_id  uuid REFERENCES buyers (id),
    second_chance_order_id  uuid UNIQUE REFERENCES orders (id),
    CONSTRAINT auction_results_winner_whole CHECK ((winner_buyer_id IS NULL) = (order_id IS NULL)),
    CONSTRAINT auction_results_second_chance_whole
        CHECK ((second_chance_buyer_id IS NULL) = (second_chance_order_id IS NULL)),
    CONSTRAINT auction_results_second_chance_after_winner
        CHECK (second_chance_order_id IS NULL OR order_id IS NOT NULL)
);

-- An auction's order not paid by its deadline lapses (the lapse job).
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN
    ('awaiting_payment', 'pending_verification', 'paid', 'payment_failed', 'refunded', 'lapsed'));
