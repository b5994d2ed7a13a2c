-- Rolegate on PostgreSQL: the schema SQLite reaches after its migrations 0001-0008, in
-- one step. The encodings are SQLite's, so one text of every statement serves both:
-- timestamps are BIGINT microseconds since the Unix epoch, flags BIGINT 0/1, JSON TEXT.
-- SQLite's implicit `rowid` is the explicit `seq` column here.

-- SQLite's `instr`, used by OData `contains` and SCIM `co`.
CREATE FUNCTION instr(haystack TEXT, needle TEXT) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS 'SELECT strpos(haystack, needle)';

CREATE TABLE resources (
    id              TEXT PRIMARY KEY,
    external_id     TEXT NOT NULL,
    external_key    TEXT NOT NULL UNIQUE,
    resource_type   TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    status          TEXT NOT NULL,
    registered_at   BIGINT NOT NULL,
    registered_root TEXT NOT NULL,
    parent_id       TEXT REFERENCES resources(id)
);
CREATE INDEX resources_parent ON resources(parent_id);
CREATE INDEX resources_type ON resources(lower(resource_type));

CREATE TABLE resource_ancestors (
    ancestor_id TEXT NOT NULL REFERENCES resources(id),
    resource_id TEXT NOT NULL REFERENCES resources(id),
    depth       BIGINT NOT NULL,
    PRIMARY KEY (ancestor_id, resource_id)
);
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
    is_default         BIGINT NOT NULL,
    last_updated_at    BIGINT,
    last_updated_by    TEXT,
    admin_eligible     TEXT NOT NULL,
    admin_member       TEXT NOT NULL,
    user_eligible      TEXT NOT NULL,
    user_member        TEXT NOT NULL
);
CREATE INDEX role_settings_resource ON role_settings(resource_id);

CREATE TABLE subjects (
    seq             BIGSERIAL NOT NULL UNIQUE,
    id              TEXT PRIMARY KEY,
    external_id     TEXT UNIQUE,
    kind            TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    principal_name  TEXT,
    email           TEXT,
    active          BIGINT NOT NULL,
    scim_attributes TEXT,
    created_at      BIGINT,
    modified_at     BIGINT,
    version         BIGINT NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX subjects_principal_name ON subjects(lower(principal_name)) WHERE principal_name IS NOT NULL;
CREATE INDEX subjects_kind_name ON subjects(kind, display_name);
CREATE INDEX subjects_created ON subjects(created_at);
CREATE INDEX subjects_modified ON subjects(modified_at);
CREATE INDEX subjects_kind_lower_name ON subjects(kind, lower(display_name));

CREATE TABLE group_members (
    group_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members(member_id);

CREATE TABLE assignments (
    seq                BIGSERIAL PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    resource_id        TEXT NOT NULL REFERENCES resources(id),
    role_definition_id TEXT NOT NULL REFERENCES role_definitions(id),
    subject_id         TEXT NOT NULL REFERENCES subjects(id),
    state              TEXT NOT NULL,
    linked_eligible_id TEXT,
    start_at           BIGINT NOT NULL,
    end_at             BIGINT,
    request_id         TEXT NOT NULL
);
CREATE UNIQUE INDEX assignments_key
    ON assignments(resource_id, role_definition_id, subject_id, state, coalesce(linked_eligible_id, ''));
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
    start_at           BIGINT NOT NULL,
    end_at             BIGINT,
    request_id         TEXT NOT NULL,
    ended_at           BIGINT NOT NULL,
    end_reason         TEXT NOT NULL,
    ended_by_request   TEXT
);
CREATE INDEX assignment_history_key ON assignment_history(resource_id, role_definition_id, subject_id, state);

CREATE TABLE requests (
    seq                BIGSERIAL PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    resource_id        TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    subject_id         TEXT NOT NULL,
    kind               TEXT NOT NULL,
    state              TEXT NOT NULL,
    requested_at       BIGINT NOT NULL,
    has_schedule       BIGINT NOT NULL,
    start_at           BIGINT,
    end_at             BIGINT,
    reason             TEXT,
    status             TEXT NOT NULL,
    sub_status         TEXT NOT NULL,
    status_details     TEXT NOT NULL,
    linked_eligible_id TEXT,
    ticket             TEXT,
    requested_by       TEXT NOT NULL,
    assignment_id      TEXT,
    emergency          BIGINT NOT NULL,
    approval_deadline  BIGINT,
    version            BIGINT NOT NULL
);
-- One pending request per (resource, role, subject, state): enforced by the database.
CREATE UNIQUE INDEX requests_one_pending ON requests(resource_id, role_definition_id, subject_id, state)
    WHERE sub_status IN ('Granted', 'PendingApproval', 'PendingAdminDecision');
CREATE INDEX requests_subject ON requests(subject_id, requested_at);
CREATE INDEX requests_resource ON requests(resource_id, requested_at);
CREATE INDEX requests_sub_status ON requests(sub_status);
CREATE INDEX requests_linked ON requests(linked_eligible_id) WHERE linked_eligible_id IS NOT NULL;
CREATE INDEX requests_granted_start ON requests(sub_status, start_at) WHERE sub_status = 'Granted';
CREATE INDEX requests_approval_deadline ON requests(sub_status, approval_deadline)
    WHERE sub_status = 'PendingApproval';

CREATE TABLE request_approvers (
    request_id  TEXT NOT NULL REFERENCES requests(id),
    approver_id TEXT NOT NULL,
    PRIMARY KEY (approver_id, request_id)
);

CREATE TABLE approvals (
    request_id    TEXT NOT NULL REFERENCES requests(id),
    approver_id   TEXT NOT NULL,
    approver_name TEXT NOT NULL,
    approved      BIGINT NOT NULL,
    justification TEXT,
    at            BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver_id)
);

CREATE TABLE audit_log (
    seq            BIGSERIAL PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    at             BIGINT NOT NULL,
    category       TEXT NOT NULL,
    activity       TEXT NOT NULL,
    result         TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    initiator_id   TEXT NOT NULL,
    record         TEXT NOT NULL,
    resource_id    TEXT,
    prev_hash      TEXT,
    hash           TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_correlation ON audit_log(correlation_id);
CREATE INDEX audit_log_resource ON audit_log(resource_id);
CREATE INDEX audit_log_category ON audit_log(category);
CREATE INDEX audit_log_activity ON audit_log(activity);
CREATE INDEX audit_log_result ON audit_log(result);
CREATE INDEX audit_log_initiator ON audit_log(initiator_id);

CREATE TABLE audit_targets (
    target_id TEXT NOT NULL,
    audit_seq BIGINT NOT NULL REFERENCES audit_log(seq),
    PRIMARY KEY (target_id, audit_seq)
);
CREATE INDEX audit_targets_seq ON audit_targets(audit_seq);

CREATE TABLE subscriptions (
    id               TEXT PRIMARY KEY,
    resource         TEXT NOT NULL,
    entity           TEXT NOT NULL,
    resource_id      TEXT,
    change_types     TEXT NOT NULL,
    notification_url TEXT NOT NULL,
    client_state     TEXT NOT NULL,
    expires_at       BIGINT NOT NULL,
    creator_id       TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX subscriptions_entity ON subscriptions(entity, expires_at);

CREATE TABLE notification_outbox (
    seq             BIGSERIAL NOT NULL UNIQUE,
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    entity          TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    change_type     TEXT NOT NULL,
    first_due       BIGINT NOT NULL,
    due_at          BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX notification_outbox_due ON notification_outbox(due_at);
CREATE INDEX notification_outbox_subscription ON notification_outbox(subscription_id);

CREATE TABLE email_outbox (
    seq          BIGSERIAL NOT NULL UNIQUE,
    id           TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    event        TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    address      TEXT NOT NULL,
    first_due    BIGINT NOT NULL,
    due_at       BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  BIGINT NOT NULL DEFAULT 0,
    assignment_id TEXT
);
CREATE INDEX email_outbox_due ON email_outbox(due_at);

CREATE TABLE reminders_sent (
    assignment_id TEXT NOT NULL,
    threshold     TEXT NOT NULL,
    end_at        BIGINT NOT NULL,
    sent_at       BIGINT NOT NULL,
    PRIMARY KEY (assignment_id, threshold, end_at)
);
CREATE INDEX reminders_sent_end ON reminders_sent(end_at);

-- Multi-node: every committed change to effective access, in commit order, so each
-- node's in-memory access index catches up before it decides (see postgres.rs).
CREATE TABLE access_log (
    seq     BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    changes TEXT NOT NULL
);
CREATE INDEX access_log_at ON access_log(at);
