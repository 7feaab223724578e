-- A merchant may cancel an auction's order that is not paid and has no
-- payment in flight (`POST /v1/orders/{id}/cancel`): `cancelled` is final,
-- like `lapsed`, and lets the merchant offer the lot to the runner-up.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN
    ('awaiting_payment', 'pending_verification', 'paid', 'payment_failed', 'refunded', 'lapsed', 'cancelled'));
