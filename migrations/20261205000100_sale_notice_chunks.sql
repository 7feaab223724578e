-- A released sale's held deliveries are claimed a chunk at a time (one lease
-- row per chunk of up to 1,000 rows) instead of each row being written
-- `sending` with its own lease and then `sent`: a sale-start delivery is now
-- written once after it is prepared (held → sent). The preparer numbers its
-- insert statements; each number is a chunk with its lease here. A crashed
-- sender's chunk is taken again when its lease runs out, and only the rows
-- still `held` in it are sent; a chunk is finished once none is left.
ALTER TABLE deliveries ADD COLUMN chunk integer;

CREATE TABLE sale_notice_chunks (
    sale_id     uuid NOT NULL REFERENCES sales (id),
    chunk       integer NOT NULL,
    -- What its rows are: a delivery loop prefers one kind, so that slow
    -- email chunks never hold the push chunks back.
    kind        text NOT NULL DEFAULT 'push' CHECK (kind IN ('push', 'email')),
    lease_owner text,
    lease_until timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (sale_id, chunk)
);
CREATE INDEX sale_notice_chunks_open ON sale_notice_chunks (sale_id, chunk) WHERE finished_at IS NULL;

-- The next chunk number of each sale.
ALTER TABLE sale_notice_preparations ADD COLUMN chunks integer NOT NULL DEFAULT 0;

-- Rows held before this migration: one chunk per sale.
UPDATE deliveries SET chunk = 0 WHERE status = 'held';
INSERT INTO sale_notice_chunks (sale_id, chunk)
    SELECT DISTINCT sale_id, 0 FROM deliveries WHERE status = 'held' AND sale_id IS NOT NULL;
UPDATE sale_notice_preparations p SET chunks = 1
    WHERE EXISTS (SELECT 1 FROM sale_notice_chunks k WHERE k.sale_id = p.sale_id);

DROP INDEX deliveries_held;
CREATE INDEX deliveries_held ON deliveries (sale_id, chunk) WHERE status = 'held';
