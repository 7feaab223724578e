-- What became of each stored Stripe event: applied to a payment, ignored
-- (a duplicate in effect, not about our payments, of a type we do not handle,
-- or unreadable), refused (it does not match its payment or Stripe), or
-- deferred (Stripe could not confirm it; verification settles the payment).
-- Rows stored before this migration have no outcome.
ALTER TABLE stripe_events
    ADD COLUMN outcome text CHECK (outcome IN ('applied', 'ignored', 'refused', 'deferred')),
    ADD COLUMN reason  text;

-- The hourly maintenance prunes by age.
CREATE INDEX stripe_events_received ON stripe_events (received_at);
