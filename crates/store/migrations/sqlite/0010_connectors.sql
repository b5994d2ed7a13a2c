-- Rolegate schema v10: provisioning connectors' delivery (connectors.md §6, §7).
--
-- `connector_items` are the grant and revoke operations to apply in external systems, in
-- the order written (`seq`) per key (connector, target, principal); a worker leases them
-- (`lease_owner`, `lease_until`) so two nodes never run one at once.
CREATE TABLE connector_items (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    connector       TEXT NOT NULL,
    target          TEXT NOT NULL,
    principal       TEXT NOT NULL,
    subject_id      TEXT,
    operation       TEXT NOT NULL,
    cause           TEXT NOT NULL,
    cause_id        TEXT,
    assignment_ids  TEXT NOT NULL,
    not_after       INTEGER,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    completed_at    INTEGER,
    error_code      TEXT,
    error_message   TEXT,
    lease_owner     TEXT,
    lease_until     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX connector_items_key ON connector_items(connector, target, principal, seq);
CREATE INDEX connector_items_state ON connector_items(connector, state, next_attempt_at);

-- What the newest item of each key asked for: planning writes an item only when the
-- operation a key needs differs from it.
CREATE TABLE connector_requested (
    connector  TEXT NOT NULL,
    target     TEXT NOT NULL,
    principal  TEXT NOT NULL,
    operation  TEXT NOT NULL,
    subject_id TEXT,
    not_after  INTEGER,
    PRIMARY KEY (connector, target, principal)
);

-- The grants Rolegate made and has not revoked (§6.5).
CREATE TABLE connector_ledger (
    connector  TEXT NOT NULL,
    target     TEXT NOT NULL,
    principal  TEXT NOT NULL,
    subject_id TEXT,
    since      INTEGER NOT NULL,
    item_id    TEXT NOT NULL,
    PRIMARY KEY (connector, target, principal)
);

-- Reconciliation passes: their §7.4 summary documents.
CREATE TABLE connector_passes (
    id         TEXT PRIMARY KEY,
    connector  TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    summary    TEXT NOT NULL
);
CREATE INDEX connector_passes_connector ON connector_passes(connector, started_at);

-- What the last pass or planning found and reported once: grants made outside Rolegate
-- (`outside`: target, principal) and unmapped subjects (`unmapped`: subject, reason).
CREATE TABLE connector_findings (
    connector TEXT NOT NULL,
    kind      TEXT NOT NULL,
    a         TEXT NOT NULL,
    b         TEXT NOT NULL,
    detail    TEXT NOT NULL,
    PRIMARY KEY (connector, kind, a, b)
);

-- Cluster-wide leases: one reconciliation pass per connector at a time.
CREATE TABLE connector_leases (
    name  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until INTEGER NOT NULL
);
