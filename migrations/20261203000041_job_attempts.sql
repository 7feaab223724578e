-- Durable jobs that fail are retried as new jobs (one per round); each
-- round's error is kept here under the job's subject (e.g. `refund:pay_…`)
-- so that the dead letter written when the budget is spent carries every
-- attempt's error.
CREATE TABLE job_attempts (
    subject     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    error       text NOT NULL
);
CREATE INDEX job_attempts_by_subject ON job_attempts (subject, at);
