-- Rolegate schema v7: reminders before an assignment ends (decisions.md §10, §12, §13).
--
-- One row per reminder sent (or covered by a nearer one sent at the same time), keyed by
-- assignment, threshold (`P14D`, `P1D`, `PT15M`) and the end it reminds of: the scheduler
-- claims the key with `INSERT … ON CONFLICT DO NOTHING` in the transaction that writes the
-- e-mail and the audit record, so each is sent once even across restarts and with several
-- scheduler instances. Rows of ends that have passed are deleted (they can never be due
-- again), through `reminders_sent_end`.
CREATE TABLE reminders_sent (
    assignment_id TEXT NOT NULL,
    threshold     TEXT NOT NULL,
    end_at        BIGINT NOT NULL,
    sent_at       BIGINT NOT NULL,
    PRIMARY KEY (assignment_id, threshold, end_at)
);
CREATE INDEX reminders_sent_end ON reminders_sent(end_at);

-- A reminder e-mail is about an assignment (rendered from it when sent); `request_id`
-- then holds the request that made it.
ALTER TABLE email_outbox ADD COLUMN assignment_id TEXT;
