-- A started sale whose recipients were last prepared before its start is
-- owed one more pass for the buyers who joined its audience meanwhile
-- (notifier/src/sale_start.rs, `catch_up`): found by this index, which
-- holds only such sales.
CREATE INDEX sale_notice_preparations_catch_up ON sale_notice_preparations (released_at)
    WHERE released_at IS NOT NULL AND prepared_at < released_at;
