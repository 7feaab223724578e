-- The sale-start fan-out (issue 11): a sale's recipients are prepared ahead
-- of `starts_at` as `held` deliveries (one per buyer, channel and device,
-- under the dedupe key 'sale:<sale>:<buyer>:<channel>[:<device>]'); the
-- sale's start (its `sale.started` event, taken by the fan-out) sets the
-- sale's `released_at`, one row, and from then on the delivery loop claims
-- the held rows as due, so at the start only delivery remains. A sale that
-- never starts (cancelled) has them `skipped`.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('held', 'pending', 'sending', 'sent', 'failed', 'skipped'));
ALTER TABLE deliveries ADD COLUMN sale_id uuid;
CREATE INDEX deliveries_by_sale ON deliveries (sale_id) WHERE sale_id IS NOT NULL;
CREATE INDEX deliveries_held ON deliveries (sale_id) WHERE status = 'held';

-- Which sales were prepared, and when last (the preparer refreshes a sale
-- for late watchers and changed preferences until it starts).
CREATE TABLE sale_notice_preparations (
    sale_id      uuid PRIMARY KEY REFERENCES sales (id),
    prepared_at  timestamptz,
    recipients   integer NOT NULL DEFAULT 0,
    released_at  timestamptz
);
