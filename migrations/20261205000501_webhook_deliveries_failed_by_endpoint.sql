-- Every write of a delivery (made, claimed, settled) added an entry to
-- webhook_deliveries_by_endpoint, whose one reader is `recover` (an
-- endpoint's failed deliveries since a time). Index those alone: a delivery
-- gets an entry only if it fails. (Reads of one endpoint's pending rows use
-- webhook_deliveries_pending; the listing filters by merchant first.)
DROP INDEX webhook_deliveries_by_endpoint;
CREATE INDEX webhook_deliveries_failed_by_endpoint ON webhook_deliveries (endpoint_id, created_at)
    WHERE status = 'failed';
