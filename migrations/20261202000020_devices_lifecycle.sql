-- Devices (issue 11, the buyer endpoints): a token belongs to one buyer at a
-- time and a retired row is kept for the record, so uniqueness holds among
-- active rows only; why a row was retired is kept beside it.
--
-- - 'provider' (or NULL): the provider reported the token dead (listed as retired);
-- - 'moved':    the token was registered by another buyer (the phone changed
--               hands; listed as retired to its former owner);
-- - 'deleted':  the buyer deleted it (not listed).
-- Deliveries keep pointing at the row they were made for, so a delivery
-- decided for the former owner never reaches the new one.
ALTER TABLE devices DROP CONSTRAINT devices_platform_token_key;
CREATE UNIQUE INDEX devices_active_token ON devices (platform, token) WHERE status = 'active';
CREATE INDEX devices_by_token ON devices (platform, token);
ALTER TABLE devices ADD COLUMN retired_reason text
    CHECK (retired_reason IN ('provider', 'moved', 'deleted'));
