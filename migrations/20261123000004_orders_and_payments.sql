-- Orders, the payment attempts made for them, refunds, and Stripe's events.
--
-- A claim under checkout is `checking_out`: its unit stays counted in `held`,
-- but no sweep or read expires it, because a payment for it may be on its way.
ALTER TABLE claims DROP CONSTRAINT claims_status_check;
ALTER TABLE claims ADD CONSTRAINT claims_status_check
    CHECK (status IN ('held', 'checking_out', 'checked_out', 'expired', 'released'));
DROP INDEX claims_one_live_hold;
CREATE UNIQUE INDEX claims_one_live_hold ON claims (sale_id, buyer_id) WHERE status IN ('held', 'checking_out');

-- An order is what a buyer pays for: one unit of a sale (through a claim) or
-- an auction's winning lot (created by the auction's close, paid by a deadline).
CREATE TABLE orders (
    id             uuid PRIMARY KEY,
    merchant_id    uuid NOT NULL REFERENCES merchants (id),
    buyer_id       uuid NOT NULL REFERENCES buyers (id),
    sale_id        uuid REFERENCES sales (id),
    claim_id       uuid UNIQUE REFERENCES claims (id),
    auction_id     uuid,
    status         text NOT NULL CHECK (status IN
                       ('awaiting_payment', 'pending_verification', 'paid', 'payment_failed', 'refunded')),
    amount         bigint NOT NULL CHECK (amount > 0),
    currency       text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    payment_due_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    paid_at        timestamptz,
    CONSTRAINT orders_one_subject CHECK ((claim_id IS NOT NULL AND sale_id IS NOT NULL) OR auction_id IS NOT NULL)
);
CREATE INDEX orders_by_merchant ON orders (merchant_id, id);
CREATE INDEX orders_by_buyer ON orders (buyer_id, id);

-- Every call to the provider is recorded here *before* it is made, with the
-- idempotency key it carries, so that its outcome can always be found later.
CREATE TABLE payments (
    id                uuid PRIMARY KEY,
    order_id          uuid NOT NULL REFERENCES orders (id),
    attempt           integer NOT NULL CHECK (attempt > 0),
    idempotency_key   text NOT NULL UNIQUE,
    payment_method    text NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    currency          text NOT NULL,
    status            text NOT NULL CHECK (status IN ('processing', 'unknown', 'succeeded', 'failed', 'refunded')),
    provider_id       text UNIQUE,
    failure_code      text,
    failure_message   text,
    verify_attempts   integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    settled_at        timestamptz,
    UNIQUE (order_id, attempt)
);
-- At most one attempt of an order is open at a time.
CREATE UNIQUE INDEX payments_one_open ON payments (order_id) WHERE status IN ('processing', 'unknown');
CREATE INDEX payments_open ON payments (updated_at) WHERE status IN ('processing', 'unknown');

CREATE TABLE refunds (
    id           uuid PRIMARY KEY,
    payment_id   uuid NOT NULL UNIQUE REFERENCES payments (id),
    provider_id  text UNIQUE,
    amount       bigint NOT NULL CHECK (amount > 0),
    reason       text NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'succeeded')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    settled_at   timestamptz
);

-- Stripe's webhook events, stored once by their id.
CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
