-- Auctions: one lot, bid up from a starting price until `ends_at` (which soft
-- close may move later). The bidding state (price, leader, count) lives on the
-- row and every change to it is a guarded update of `version`.
CREATE TABLE auctions (
    id                     uuid PRIMARY KEY,
    merchant_id            uuid NOT NULL REFERENCES merchants (id),
    product_id             uuid NOT NULL REFERENCES products (id),
    status                 text NOT NULL CHECK (status IN ('scheduled', 'active', 'ended', 'cancelled')),
    currency               text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    starting_price         bigint NOT NULL CHECK (starting_price BETWEEN 1 AND 99999999),
    reserve_price          bigint CHECK (reserve_price <= 99999999),
    current_price          bigint NOT NULL,
    leader_buyer_id        uuid REFERENCES buyers (id),
    leader_max             bigint,
    leader_sequence        bigint,
    bid_count              integer NOT NULL DEFAULT 0 CHECK (bid_count >= 0),
    starts_at              timestamptz NOT NULL,
    ends_at                timestamptz NOT NULL,
    soft_close_seconds     integer NOT NULL CHECK (soft_close_seconds >= 0),
    extension_seconds      integer NOT NULL CHECK (extension_seconds >= 0),
    max_extensions         integer NOT NULL CHECK (max_extensions >= 0),
    extensions             integer NOT NULL DEFAULT 0,
    payment_window_seconds integer NOT NULL CHECK (payment_window_seconds > 0),
    increments             jsonb NOT NULL,
    version                integer NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    ended_at               timestamptz,
    CONSTRAINT auctions_window CHECK (ends_at > starts_at),
    CONSTRAINT auctions_reserve_at_least_start CHECK (reserve_price IS NULL OR reserve_price >= starting_price),
    CONSTRAINT auctions_extensions_bounded CHECK (extensions >= 0 AND extensions <= max_extensions),
    CONSTRAINT auctions_leader_whole CHECK (
        (leader_buyer_id IS NULL AND leader_max IS NULL AND leader_sequence IS NULL
            AND current_price = starting_price AND bid_count = 0)
        OR (leader_buyer_id IS NOT NULL AND leader_max IS NOT NULL AND leader_sequence IS NOT NULL
            AND current_price BETWEEN starting_price AND leader_max AND bid_count > 0)
    ),
    CONSTRAINT auctions_ended_stamped CHECK ((status IN ('ended', 'cancelled')) = (ended_at IS NOT NULL))
);
CREATE INDEX auctions_by_merchant ON auctions (merchant_id, id);
CREATE INDEX auctions_active ON auctions (id) WHERE status = 'active';
