-- Rolegate schema v5: change notifications (decisions.md §12). Subscriptions, and a
-- durable outbox written in the same transaction as each change. Delivery workers lease
-- due rows with a guarded update (`lease_owner`, `lease_until`), so several nodes can
-- share the outbox; a delivered row is deleted.

CREATE TABLE subscriptions (
    id               TEXT PRIMARY KEY,
    resource         TEXT NOT NULL,
    entity           TEXT NOT NULL,
    resource_id      TEXT,
    change_types     TEXT NOT NULL,
    notification_url TEXT NOT NULL,
    client_state     TEXT NOT NULL,
    expires_at       INTEGER NOT NULL,
    creator_id       TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
-- Matching subscriptions of a change: by entity, unexpired.
CREATE INDEX subscriptions_entity ON subscriptions(entity, expires_at);

CREATE TABLE notification_outbox (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    entity          TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    change_type     TEXT NOT NULL,
    first_due       INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     INTEGER NOT NULL DEFAULT 0
);
-- Due rows, earliest first, in rowid (insertion) order among equals (a lease pushes `due_at` past its end, so leased rows drop out
-- of the scan until the lease runs out).
CREATE INDEX notification_outbox_due ON notification_outbox(due_at);
CREATE INDEX notification_outbox_subscription ON notification_outbox(subscription_id);
