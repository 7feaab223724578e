-- The live feed's stored events, per topic (an auction's or a sale's id), so
-- that a watcher resuming with `Last-Event-ID` gets every event it missed.
-- `seq` counts per topic from 1 without gaps: writers append while holding
-- the subject's row lock (the auction or sale row), so appends to one topic
-- are serialized. Each append also NOTIFYs channel `gavel_feed` with
-- "<topic> <last seq>" at commit; watchers read the rows after their last.
CREATE TABLE feed_events (
    topic      text NOT NULL,
    seq        bigint NOT NULL CHECK (seq >= 1),
    event      text NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, seq)
);
CREATE INDEX feed_events_created ON feed_events (created_at);
