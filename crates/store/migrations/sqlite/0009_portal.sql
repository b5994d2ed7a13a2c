-- Rolegate schema v9: the web portal. Sessions (portal.md §2) are kept in the database so
-- several nodes share them. `id_hash` is the SHA-256 of the cookie's random id (the id
-- itself is never stored). Sessions are not tenant data: a copy of the database leaves
-- them behind.
CREATE TABLE portal_sessions (
    id_hash    TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    name       TEXT,
    mfa        INTEGER NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    id_token   TEXT,
    time_zone  TEXT
);
CREATE INDEX portal_sessions_subject ON portal_sessions(subject);
CREATE INDEX portal_sessions_expires ON portal_sessions(expires_at);

-- Sign-ins started at the identity provider (OIDC code flow with PKCE), used once by the
-- callback; `state_hash` is the SHA-256 of the `state` parameter.
CREATE TABLE portal_sign_ins (
    state_hash    TEXT PRIMARY KEY,
    nonce         TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    return_to     TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- "Expired roles" of a person (their own expired eligibilities of the last 30 days).
CREATE INDEX assignment_history_subject ON assignment_history(subject_id, end_at);

-- A request's history (its page's timeline): the audit records whose `requestId` detail
-- names it, indexed like the record's other columns and filled in for existing records.
ALTER TABLE audit_log ADD COLUMN request_id TEXT;
UPDATE audit_log SET request_id = (
    SELECT json_extract(d.value, '$.value') FROM json_each(audit_log.record, '$.additionalDetails') d
    WHERE json_extract(d.value, '$.key') = 'requestId' ORDER BY d.key LIMIT 1
);
CREATE INDEX audit_log_request ON audit_log(request_id, seq);

-- "Decided by me" on the approvals page: an approver's decisions, latest first.
CREATE INDEX approvals_approver ON approvals(approver_id, at);
