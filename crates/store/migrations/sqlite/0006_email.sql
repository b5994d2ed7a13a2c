-- Rolegate schema v6: e-mail notifications (decisions.md §10, §12). A durable outbox, one
-- row per recipient, written in the same transaction as the change. Workers lease due rows
-- with a guarded update (`lease_owner`, `lease_until`), as for change notifications; a sent
-- (or given-up) row is deleted. The message is rendered when it is sent.

CREATE TABLE email_outbox (
    id           TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    event        TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    address      TEXT NOT NULL,
    first_due    INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  INTEGER NOT NULL DEFAULT 0
);
-- Due rows, earliest first (a lease pushes `due_at` to its end).
CREATE INDEX email_outbox_due ON email_outbox(due_at);
