-- SCIM service provider: each subject keeps its SCIM document (the attributes the identity
-- provider sent, in canonical form; the directory columns are derived from it), when it
-- was created and last changed, and a version that every change bumps (meta.version,
-- the ETag). Times are INTEGER microseconds since the Unix epoch (UTC).

ALTER TABLE subjects ADD COLUMN scim_attributes TEXT;
ALTER TABLE subjects ADD COLUMN created_at INTEGER;
ALTER TABLE subjects ADD COLUMN modified_at INTEGER;
ALTER TABLE subjects ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

-- Subjects provisioned before: their directory attributes become their document
-- (json_patch drops the null members), dated now.
UPDATE subjects SET
    created_at = CAST(unixepoch('subsec') * 1000000 AS INTEGER),
    modified_at = CAST(unixepoch('subsec') * 1000000 AS INTEGER),
    scim_attributes = CASE WHEN kind = 'Group' THEN
        json_patch('{}', json_object('displayName', display_name, 'externalId', external_id))
    ELSE
        json_patch('{}', json_object(
            'userName', principal_name,
            'displayName', display_name,
            'externalId', external_id,
            'active', json(CASE WHEN active THEN 'true' ELSE 'false' END),
            'emails', CASE WHEN email IS NULL THEN NULL
                ELSE json_array(json_object('value', email, 'primary', json('true'), 'type', 'work')) END,
            'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User', CASE WHEN kind = 'ServicePrincipal'
                THEN json_object('employeeType', 'ServicePrincipal') END
        ))
    END;

-- Lists run in creation order by default (rowid). These serve date filters and sorts, and
-- `displayName eq "…"` on groups (what Entra ID sends to match a group), case-insensitively.
CREATE INDEX subjects_created ON subjects(created_at);
CREATE INDEX subjects_modified ON subjects(modified_at);
CREATE INDEX subjects_kind_lower_name ON subjects(kind, lower(display_name));
