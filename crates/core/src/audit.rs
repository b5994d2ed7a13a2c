//! Audit records: one per state change, written in the same transaction as the change,
//! shaped after Graph's `directoryAudit` (decisions.md §11).

use jiff::Timestamp;

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiator {
    /// Subject id (or the token's subject for a tenant administrator outside the directory).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// User principal name, when known.
    pub user_principal_name: Option<String>,
}

/// A property changed by the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifiedProperty {
    /// Property name.
    pub display_name: String,
    /// Value before (JSON text), if any.
    pub old_value: Option<String>,
    /// Value after (JSON text), if any.
    pub new_value: Option<String>,
}

/// What the action touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Id of the touched entity.
    pub id: String,
    /// Its display name.
    pub display_name: String,
    /// Its kind (`Resource`, `RoleAssignment`, `Request`, `User`, `Group`, `RoleSetting`).
    pub kind: String,
    /// Changed properties.
    pub modified_properties: Vec<ModifiedProperty>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// GUID.
    pub id: String,
    /// `RoleManagement`, `UserManagement`, `GroupManagement`, `ResourceManagement`, `Policy`.
    pub category: String,
    /// The request id of the HTTP call that caused it.
    pub correlation_id: String,
    /// `success` or `failure`.
    pub result: String,
    /// Why it failed, or what it was.
    pub result_reason: String,
    /// e.g. `Add eligible member to role`.
    pub activity_display_name: String,
    /// When.
    pub activity_date_time: Timestamp,
    /// `Add`, `Update`, `Delete`, `Assign`, `Unassign`.
    pub operation_type: String,
    /// Who.
    pub initiated_by: Initiator,
    /// What.
    pub target_resources: Vec<Target>,
    /// Reason, ticket, requestId, roleDefinitionId, resourceId, …
    pub additional_details: Vec<(String, String)>,
}

impl Target {
    /// A target with no modified properties.
    pub fn new(kind: &str, id: &str, display_name: &str) -> Self {
        Self {
            id: id.into(),
            display_name: display_name.into(),
            kind: kind.into(),
            modified_properties: Vec::new(),
        }
    }
}
