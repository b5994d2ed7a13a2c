-- The assignments behind each key's last requested grant (comma-separated ids), so that
-- the revoke that undoes it names them, and their resource, in its audit record.
ALTER TABLE connector_requested ADD COLUMN assignment_ids TEXT NOT NULL DEFAULT '';
