-- Merchant webhooks (issue 12): endpoints, one delivery per (endpoint, event),
-- one row per attempt. The dispatcher consumes the outbox with its own mark
-- (`events.dispatched_at`), independent of the notifier's `notified_at`.

-- NULL: not yet fanned out into webhook deliveries. Events written before
-- webhooks existed are not sent.
ALTER TABLE events ADD COLUMN dispatched_at timestamptz;
UPDATE events SET dispatched_at = created_at;
CREATE INDEX events_dispatch_pending ON events (created_at) WHERE dispatched_at IS NULL;
-- The resource's version in a webhook body counts its events (see README).
CREATE INDEX events_by_subject ON events (subject_id, created_at, id);

CREATE TABLE webhook_endpoints (
    id                    uuid PRIMARY KEY,
    merchant_id           uuid NOT NULL REFERENCES merchants (id),
    url                   text NOT NULL,
    -- The event types sent; empty: every type.
    events                text[] NOT NULL DEFAULT '{}',
    enabled               boolean NOT NULL DEFAULT true,
    -- Why it was disabled by Gavel (410 Gone, failing for days); NULL when the merchant did.
    disabled_reason       text,
    disabled_at           timestamptz,
    -- `whsec_` + base64 of the key; after a rotation the old one also signs until `previous_secret_until`.
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    version               integer NOT NULL DEFAULT 1,
    -- The receiver asked to slow down (429/502/504, Retry-After): nothing is sent before this.
    paused_until          timestamptz,
    -- The first failure of an unbroken run of failed attempts (NULL after a success).
    failing_since         timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz
);
CREATE INDEX webhook_endpoints_by_merchant ON webhook_endpoints (merchant_id, id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id),
    merchant_id      uuid NOT NULL REFERENCES merchants (id),
    event_id         uuid NOT NULL REFERENCES events (id),
    event_type       text NOT NULL,
    -- The resource's version as sent in `data.version`.
    resource_version integer NOT NULL,
    -- pending → sending → delivered | pending (retry) | failed (dead-lettered)
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    -- Attempts that counted against the retry schedule (throttled answers do not).
    failures         integer NOT NULL DEFAULT 0,
    -- Re-sent by hand (retry, recover, the dead-letter queue's replay): one
    -- more attempt, even to a disabled endpoint; a failure ends it again.
    once             boolean NOT NULL DEFAULT false,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_sending ON webhook_deliveries (endpoint_id) WHERE status = 'sending';
CREATE INDEX webhook_deliveries_by_merchant ON webhook_deliveries (merchant_id, id DESC);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at);

CREATE TABLE webhook_attempts (
    id          uuid PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id),
    -- NULL when no answer came (timeout, refused, blocked address).
    status_code smallint,
    duration_ms integer NOT NULL,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, created_at);

-- The merchants' single webhook URL becomes a normal endpoint (every event),
-- signing with the merchant's webhook secret.
INSERT INTO webhook_endpoints (id, merchant_id, url, secret, created_at)
SELECT gen_random_uuid(), id, webhook_url, webhook_secret, now()
FROM merchants WHERE webhook_url IS NOT NULL AND webhook_url <> '';
