-- The claim takes each endpoint's due deliveries in turn (as many as the
-- endpoint has free slots), so it reads pending rows by endpoint, oldest due
-- first, and walks the endpoints that have any (a skip scan over this index's
-- leading column). The old index (next_attempt_at) WHERE pending made the
-- claim read and sort every pending row of every endpoint on each call — a
-- cost growing with the backlog (benchmarks: the N=50,000 drop).
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
