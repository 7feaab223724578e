-- The notifier's delivery policy (issue 11): per-buyer rate limits for
-- non-critical pushes, counted in the database so every notifier process
-- shares one budget.
--
-- One row per (buyer, message) admitted under the limit; a message sent to
-- two devices is one row (its key is the event, or the delivery when there
-- is no event). Rows older than the window are pruned as the buyer's next
-- message is admitted.
CREATE TABLE notify_rate_admits (
    buyer_id     uuid NOT NULL REFERENCES buyers (id),
    message_key  text NOT NULL,
    admitted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (buyer_id, message_key)
);
CREATE INDEX notify_rate_admits_window ON notify_rate_admits (buyer_id, admitted_at);

-- Admits one message for a buyer if fewer than `lim` others were admitted in
-- the last `win`; the same message again is admitted (its other devices).
-- Serialised per buyer with a transaction-scoped advisory lock, so two
-- processes never both take the last slot. Callers that admit several
-- buyers in one statement do so in buyer order (no lock cycles).
CREATE FUNCTION notify_rate_admit(buyer uuid, msg text, lim integer, win interval)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    used integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('notify_rate:' || buyer::text, 0));
    IF EXISTS (SELECT 1 FROM notify_rate_admits WHERE buyer_id = buyer AND message_key = msg) THEN
        RETURN true;
    END IF;
    DELETE FROM notify_rate_admits WHERE buyer_id = buyer AND admitted_at <= now() - win;
    SELECT count(*) INTO used FROM notify_rate_admits WHERE buyer_id = buyer;
    IF used >= lim THEN
        RETURN false;
    END IF;
    INSERT INTO notify_rate_admits (buyer_id, message_key) VALUES (buyer, msg);
    RETURN true;
END;
$$;

-- Coalescing looks for the newest pending message of one group (buyer,
-- channel, device, collapse key).
CREATE INDEX deliveries_collapse ON deliveries (buyer_id, collapse_key, created_at)
    WHERE status = 'pending' AND collapse_key IS NOT NULL;
