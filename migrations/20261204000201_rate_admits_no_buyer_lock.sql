-- notify_rate_admits counts a buyer's recent pushes (rows older than the
-- window are pruned). Its foreign key to buyers made every admitted push lock
-- the buyer's row (FOR KEY SHARE: a heap write and a WAL record per push, on
-- a table the API reads and writes) for no rule that matters here: an admit
-- is only ever written for a delivery, which has its own key to the buyer.
ALTER TABLE notify_rate_admits DROP CONSTRAINT notify_rate_admits_buyer_id_fkey;
