-- Rolegate schema v1. Times are INTEGER microseconds since the Unix epoch (UTC).
-- Table and column names are shared with the PostgreSQL schema; the OData field tables in
-- rolegate_core::query name these columns.

CREATE TABLE resources (
    id              TEXT PRIMARY KEY,
    external_id     TEXT NOT NULL,
    external_key    TEXT NOT NULL UNIQUE,
    resource_type   TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    status          TEXT NOT NULL,
    registered_at   INTEGER NOT NULL,
    registered_root TEXT NOT NULL,
    parent_id       TEXT REFERENCES resources(id)
);
CREATE INDEX resources_parent ON resources(parent_id);
CREATE INDEX resources_type ON resources(lower(resource_type));

-- Closure of the resource tree, self included at depth 0.
CREATE TABLE resource_ancestors (
    ancestor_id TEXT NOT NULL REFERENCES resources(id),
    resource_id TEXT NOT NULL REFERENCES resources(id),
    depth       INTEGER NOT NULL,
    PRIMARY KEY (ancestor_id, resource_id)
) WITHOUT ROWID;
CREATE INDEX resource_ancestors_of ON resource_ancestors(resource_id, depth);

CREATE TABLE role_definitions (
    id           TEXT PRIMARY KEY,
    resource_id  TEXT NOT NULL REFERENCES resources(id),
    external_id  TEXT NOT NULL,
    template_id  TEXT NOT NULL,
    display_name TEXT NOT NULL,
    UNIQUE (resource_id, template_id)
);

CREATE TABLE role_settings (
    id                 TEXT PRIMARY KEY,
    resource_id        TEXT NOT NULL REFERENCES resources(id),
    role_definition_id TEXT NOT NULL UNIQUE REFERENCES role_definitions(id),
    is_default         INTEGER NOT NULL,
    last_updated_at    INTEGER,
    last_updated_by    TEXT,
    admin_eligible     TEXT NOT NULL,
    admin_member       TEXT NOT NULL,
    user_eligible      TEXT NOT NULL,
    user_member        TEXT NOT NULL
);
CREATE INDEX role_settings_resource ON role_settings(resource_id);

CREATE TABLE subjects (
    id             TEXT PRIMARY KEY,
    external_id    TEXT UNIQUE,
    kind           TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    principal_name TEXT,
    email          TEXT,
    active         INTEGER NOT NULL
);
CREATE UNIQUE INDEX subjects_principal_name ON subjects(lower(principal_name)) WHERE principal_name IS NOT NULL;
CREATE INDEX subjects_kind_name ON subjects(kind, display_name);

CREATE TABLE group_members (
    group_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE INDEX group_members_member ON group_members(member_id);

-- Live assignments (current, future, or ended but not yet moved to history).
CREATE TABLE assignments (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    resource_id        TEXT NOT NULL REFERENCES resources(id),
    role_definition_id TEXT NOT NULL REFERENCES role_definitions(id),
    subject_id         TEXT NOT NULL REFERENCES subjects(id),
    state              TEXT NOT NULL,
    linked_eligible_id TEXT,
    start_at           INTEGER NOT NULL,
    end_at             INTEGER,
    request_id         TEXT NOT NULL
);
CREATE UNIQUE INDEX assignments_key
    ON assignments(resource_id, role_definition_id, subject_id, state, ifnull(linked_eligible_id, ''));
-- Lists filter by subject or resource and by time; these cover both, and rows are
-- ordered by seq (insertion order), which every index carries.
CREATE INDEX assignments_subject ON assignments(subject_id, start_at, end_at);
CREATE INDEX assignments_resource ON assignments(resource_id, start_at, end_at);
CREATE INDEX assignments_linked ON assignments(linked_eligible_id) WHERE linked_eligible_id IS NOT NULL;
CREATE INDEX assignments_end ON assignments(end_at) WHERE end_at IS NOT NULL;

CREATE TABLE assignment_history (
    id                 TEXT PRIMARY KEY,
    resource_id        TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    subject_id         TEXT NOT NULL,
    state              TEXT NOT NULL,
    linked_eligible_id TEXT,
    start_at           INTEGER NOT NULL,
    end_at             INTEGER,
    request_id         TEXT NOT NULL,
    ended_at           INTEGER NOT NULL,
    end_reason         TEXT NOT NULL,
    ended_by_request   TEXT
);
CREATE INDEX assignment_history_key ON assignment_history(resource_id, role_definition_id, subject_id, state);

CREATE TABLE requests (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    resource_id        TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    subject_id         TEXT NOT NULL,
    kind               TEXT NOT NULL,
    state              TEXT NOT NULL,
    requested_at       INTEGER NOT NULL,
    has_schedule       INTEGER NOT NULL,
    start_at           INTEGER,
    end_at             INTEGER,
    reason             TEXT,
    status             TEXT NOT NULL,
    sub_status         TEXT NOT NULL,
    status_details     TEXT NOT NULL,
    linked_eligible_id TEXT,
    ticket             TEXT,
    requested_by       TEXT NOT NULL,
    assignment_id      TEXT,
    emergency          INTEGER NOT NULL,
    approval_deadline  INTEGER,
    version            INTEGER NOT NULL
);
-- At most one pending request per (resource, role, subject, state): decisions.md §6.
CREATE UNIQUE INDEX requests_one_pending ON requests(resource_id, role_definition_id, subject_id, state)
    WHERE sub_status IN ('Granted', 'PendingApproval', 'PendingAdminDecision');
CREATE INDEX requests_subject ON requests(subject_id, requested_at);
CREATE INDEX requests_resource ON requests(resource_id, requested_at);
CREATE INDEX requests_sub_status ON requests(sub_status);
CREATE INDEX requests_linked ON requests(linked_eligible_id) WHERE linked_eligible_id IS NOT NULL;

-- Who may decide a pending approval (users and groups named by the ApprovalRule when the
-- request was made), so approvers can find their work.
CREATE TABLE request_approvers (
    request_id  TEXT NOT NULL REFERENCES requests(id),
    approver_id TEXT NOT NULL,
    PRIMARY KEY (approver_id, request_id)
) WITHOUT ROWID;

CREATE TABLE approvals (
    request_id    TEXT NOT NULL REFERENCES requests(id),
    approver_id   TEXT NOT NULL,
    approver_name TEXT NOT NULL,
    approved      INTEGER NOT NULL,
    justification TEXT,
    at            INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver_id)
);

CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    at             INTEGER NOT NULL,
    category       TEXT NOT NULL,
    activity       TEXT NOT NULL,
    result         TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    initiator_id   TEXT NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_correlation ON audit_log(correlation_id);
