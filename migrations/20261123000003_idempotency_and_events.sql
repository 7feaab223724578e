-- Stored responses for Idempotency-Key, scoped to the caller.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    status_code  smallint,
    content_type text,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Domain events (the outbox): written in the same transaction as the change they
-- describe; merchant webhooks and the notifier consume them.
CREATE TABLE events (
    id          uuid PRIMARY KEY,
    merchant_id uuid NOT NULL REFERENCES merchants (id),
    type        text NOT NULL,
    subject_id  text NOT NULL,
    dedupe_key  text NOT NULL UNIQUE,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_by_merchant ON events (merchant_id, created_at);
