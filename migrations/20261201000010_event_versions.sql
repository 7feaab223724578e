-- Each event records the version of its payload's schema (`events.payload`
-- is the `data` of a `DomainEvent`), so a consumer can read old rows after a
-- payload changes shape. Every event written so far is version 1.
ALTER TABLE events ADD COLUMN version smallint NOT NULL DEFAULT 1;
