-- Fewer index entries per delivery write. A delivery's status changes on
-- every step (held → sending → sent), and no such update can be HOT (status
-- is in the partial indexes' predicates), so each write adds an entry to
-- every index whose predicate the new row version meets. Two indexes took an
-- entry on every write but serve only a few rows' reads:
--
-- * deliveries_by_sale (every row of a sale): only the preparer's refresh
--   reads a sale's rows by sale, before the start, when they are held or
--   skipped. Index those alone. (The delivery loop finds a started sale's
--   held rows with deliveries_held.)
-- * deliveries_by_buyer (every row): only the coalescing rules read by buyer,
--   the open (pending or sending) rows of one collapse group. Index those;
--   that index also covers deliveries_collapse (the pending ones alone).
DROP INDEX deliveries_by_sale;
CREATE INDEX deliveries_unsent_by_sale ON deliveries (sale_id) WHERE status IN ('held', 'skipped');
DROP INDEX deliveries_by_buyer;
CREATE INDEX deliveries_open_groups ON deliveries (buyer_id, collapse_key, created_at)
    WHERE collapse_key IS NOT NULL AND status IN ('pending', 'sending');
DROP INDEX deliveries_collapse;
