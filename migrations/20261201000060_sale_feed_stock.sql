-- A sale's live feed publishes its stock at most about ten times a second.
-- `feed_stock_at` is when the last `stock` event was appended; a change that
-- comes sooner sets `feed_stock_dirty` instead, and the workers' feed tick
-- publishes the trailing state once the 100 ms have passed, so a watcher never
-- stays on a stale number (the flag is in the row, so a crash loses nothing).
ALTER TABLE sales
    ADD COLUMN feed_stock_at timestamptz,
    ADD COLUMN feed_stock_dirty boolean NOT NULL DEFAULT false;
CREATE INDEX sales_feed_stock_dirty ON sales (id) WHERE feed_stock_dirty;
