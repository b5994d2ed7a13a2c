-- Rolegate schema v3: the audit log as auditors use it (decisions.md §11).
--
-- Every column added here is derived from the record's `directoryAudit` document
-- (rolegate_core::audit::AuditIndex), so `rolegate audit verify` can check it against the
-- hashed document. Records written before this version are sealed into the chain, in seq
-- order, the first time the database is opened after this migration (SqliteStore::open).

-- The resource the record is about (its `resourceId` detail, else its Resource target):
-- R3 holders read the records of the resources they administer through this column.
ALTER TABLE audit_log ADD COLUMN resource_id TEXT;
-- Hash chain: the predecessor's hash (64 zeros for the first record) and this record's,
-- SHA-256 over the predecessor's hash and the record's canonical form (lower-case hex).
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;

-- `$filter` columns. Rows are listed newest first by seq, which every index carries.
CREATE INDEX audit_log_resource ON audit_log(resource_id);
CREATE INDEX audit_log_category ON audit_log(category);
CREATE INDEX audit_log_activity ON audit_log(activity);
CREATE INDEX audit_log_result ON audit_log(result);
CREATE INDEX audit_log_initiator ON audit_log(initiator_id);

-- `targetResources/any(t: t/id eq '…')`: one row per distinct target id of a record.
CREATE TABLE audit_targets (
    target_id TEXT NOT NULL,
    audit_seq INTEGER NOT NULL REFERENCES audit_log(seq),
    PRIMARY KEY (target_id, audit_seq)
) WITHOUT ROWID;
CREATE INDEX audit_targets_seq ON audit_targets(audit_seq);
