-- Finance reconciliation: runs over a period, their progress (so a run killed
-- mid-way continues where it stopped), and the discrepancies they found.
CREATE TABLE reconciliation_runs (
    id                uuid PRIMARY KEY,
    -- NULL: the platform (every merchant, and provider objects no merchant owns).
    merchant_id       uuid REFERENCES merchants (id),
    period_from       timestamptz NOT NULL,
    period_to         timestamptz NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    -- Where the run stands: the phase and the cursor within it, committed
    -- with the discrepancies of each page.
    phase             text NOT NULL DEFAULT 'provider_payments' CHECK (phase IN
                          ('provider_payments', 'provider_refunds', 'ledger_payments', 'ledger_refunds', 'settle', 'done')),
    cursor            text,
    checked_payments  bigint NOT NULL DEFAULT 0,
    checked_refunds   bigint NOT NULL DEFAULT 0,
    -- The instant `stuck_pending` is measured from, fixed at creation so a
    -- resumed run judges as an uninterrupted one would.
    as_of             timestamptz NOT NULL DEFAULT now(),
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    CONSTRAINT reconciliation_runs_period CHECK (period_from < period_to
                                                 AND period_to <= period_from + interval '366 days')
);
-- One live or finished run per scope and period: asking again returns it. A
-- failed run may be asked for anew.
CREATE UNIQUE INDEX reconciliation_runs_one_per_period
    ON reconciliation_runs (coalesce(merchant_id, '00000000-0000-0000-0000-000000000000'::uuid), period_from, period_to)
    WHERE status <> 'failed';
CREATE INDEX reconciliation_runs_by_merchant ON reconciliation_runs (merchant_id, id);

CREATE TABLE reconciliation_discrepancies (
    run_id           uuid NOT NULL REFERENCES reconciliation_runs (id) ON DELETE CASCADE,
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    class            text NOT NULL CHECK (class IN ('missing_at_provider', 'missing_in_gavel', 'amount_mismatch',
                         'currency_mismatch', 'status_mismatch', 'stuck_pending', 'duplicate_charge')),
    object           text NOT NULL CHECK (object IN ('payment', 'refund')),
    gavel_id         text,
    provider_id      text,
    order_id         text,
    currency         text NOT NULL,
    gavel_amount     bigint,
    provider_amount  bigint,
    -- What is at stake, summed per class and currency in the run's report.
    amount           bigint NOT NULL,
    gavel_status     text,
    provider_status  text,
    resolution       text NOT NULL CHECK (resolution IN ('auto_settled', 'needs_review')),
    -- The payment an auto-settlement settles (re-applied at the end of the run).
    settles_payment  uuid,
    detail           text NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- The ledger objects a run has matched at the provider; the ledger phases look
-- for the rest. Unlogged: only a speed-up (a lost row is re-checked with the
-- provider one by one), emptied when the run finishes.
CREATE UNLOGGED TABLE reconciliation_seen (
    run_id     uuid NOT NULL,
    object_id  uuid NOT NULL,
    PRIMARY KEY (run_id, object_id)
);

CREATE INDEX payments_by_created ON payments (created_at, id);
CREATE INDEX refunds_by_created ON refunds (created_at, id);
