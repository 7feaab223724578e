-- The notifier (issue 11): buyers' devices, preferences and watches; one row
-- per delivery (event, recipient, channel[, device]); the dead-letter queue.

-- The outbox's consumers mark what they have taken. NULL: not yet fanned out
-- into deliveries. Events written before the notifier existed are not sent.
ALTER TABLE events ADD COLUMN notified_at timestamptz;
UPDATE events SET notified_at = created_at;
CREATE INDEX events_notify_pending ON events (created_at) WHERE notified_at IS NULL;

CREATE TABLE devices (
    id          uuid PRIMARY KEY,
    buyer_id    uuid NOT NULL REFERENCES buyers (id),
    platform    text NOT NULL CHECK (platform IN ('apns', 'fcm')),
    token       text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    UNIQUE (platform, token)
);
CREATE INDEX devices_by_buyer ON devices (buyer_id) WHERE status = 'active';

CREATE TABLE notification_preferences (
    buyer_id    uuid PRIMARY KEY REFERENCES buyers (id),
    email       boolean NOT NULL DEFAULT true,
    push        boolean NOT NULL DEFAULT true,
    deals       boolean NOT NULL DEFAULT false,
    -- {kind: bool}; a missing kind is on.
    kinds       jsonb NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_preferences_deals ON notification_preferences (buyer_id) WHERE deals;

CREATE TABLE watches (
    buyer_id    uuid NOT NULL REFERENCES buyers (id),
    product_id  uuid NOT NULL REFERENCES products (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (buyer_id, product_id)
);
CREATE INDEX watches_by_product ON watches (product_id);

CREATE TABLE deliveries (
    id              uuid PRIMARY KEY,
    -- '<event or job id>:<buyer>:<channel>[:<device>]': a retry never makes a second row.
    dedupe_key      text NOT NULL UNIQUE,
    event_id        uuid,
    kind            text NOT NULL,
    buyer_id        uuid NOT NULL REFERENCES buyers (id),
    channel         text NOT NULL CHECK (channel IN ('email', 'apns', 'fcm')),
    device_id       uuid REFERENCES devices (id),
    critical        boolean NOT NULL DEFAULT false,
    -- The rendered message (subject/text/html or title/body/data) and the collapse key.
    payload         jsonb NOT NULL,
    collapse_key    text,
    -- pending → sending → sent | failed (dead-lettered) | skipped (opted out, token retired, coalesced)
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
    attempts        integer NOT NULL DEFAULT 0,
    -- [{at, error}] one per failed attempt.
    attempt_log     jsonb NOT NULL DEFAULT '[]',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Who holds a 'sending' row, and until when (a crashed sender's lease runs out).
    lease_owner     text,
    lease_until     timestamptz,
    provider_id     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX deliveries_due ON deliveries (critical DESC, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_buyer ON deliveries (buyer_id, created_at);

CREATE TABLE dead_letters (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('notification', 'webhook', 'job')),
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'retried', 'discarded')),
    -- The delivery's or job's id.
    subject     text NOT NULL,
    recipient   text,
    channel     text,
    payload     jsonb NOT NULL,
    -- [{at, error}]
    attempts    jsonb NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    UNIQUE (kind, subject)
);
CREATE INDEX dead_letters_open ON dead_letters (kind, created_at) WHERE status = 'open';
