-- The delivery loop takes back `sending` rows whose lease ran out (a crashed
-- sender); this finds them without scanning every delivery.
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
