-- Flash sales and the holds (claims) on their units.
--
-- Stock lives in three counters on the sale row. The CHECK below makes the
-- product's invariant, sold + held + available = inventory, a property of
-- every committed state, whatever code path changed it.
CREATE TABLE sales (
    id              uuid PRIMARY KEY,
    merchant_id     uuid NOT NULL REFERENCES merchants (id),
    product_id      uuid NOT NULL REFERENCES products (id),
    status          text NOT NULL CHECK (status IN ('scheduled', 'active', 'ended', 'cancelled')),
    price           bigint NOT NULL CHECK (price > 0),
    currency        text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    inventory       integer NOT NULL CHECK (inventory > 0),
    available       integer NOT NULL,
    held            integer NOT NULL DEFAULT 0,
    sold            integer NOT NULL DEFAULT 0,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    hold_seconds    integer NOT NULL CHECK (hold_seconds > 0),
    per_buyer_limit integer NOT NULL CHECK (per_buyer_limit > 0),
    version         integer NOT NULL DEFAULT 1,
    started_at      timestamptz,
    ended_at        timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sales_window CHECK (ends_at > starts_at),
    CONSTRAINT sales_stock_conserved CHECK (
        available >= 0 AND held >= 0 AND sold >= 0 AND available + held + sold = inventory
    )
);
CREATE INDEX sales_by_merchant ON sales (merchant_id, id);
CREATE INDEX sales_active ON sales (id) WHERE status = 'active';

CREATE TABLE claims (
    id         uuid PRIMARY KEY,
    sale_id    uuid NOT NULL REFERENCES sales (id),
    buyer_id   uuid NOT NULL REFERENCES buyers (id),
    status     text NOT NULL CHECK (status IN ('held', 'checked_out', 'expired', 'released')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    closed_at  timestamptz
);
-- One live hold per buyer and sale: the database, not only the code, refuses a second.
CREATE UNIQUE INDEX claims_one_live_hold ON claims (sale_id, buyer_id) WHERE status = 'held';
CREATE INDEX claims_by_sale_buyer ON claims (sale_id, buyer_id);
CREATE INDEX claims_held_by_expiry ON claims (sale_id, expires_at) WHERE status = 'held';
