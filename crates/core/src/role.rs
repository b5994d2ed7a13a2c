//! Role definitions: the built-in Azure roles every registered resource gets, and role
//! settings (changed by [`crate::operation::role`]).

/// Template id of the built-in Owner role.
pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
/// Template id of the built-in User Access Administrator role.
pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";

/// One built-in role: its Azure template id and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltInRole {
    /// The Azure built-in role GUID (`templateId`).
    pub template_id: &'static str,
    /// The role's name (`displayName`).
    pub display_name: &'static str,
}

/// The built-in roles materialised on every registered resource (decisions.md §4).
pub const BUILT_IN_ROLES: &[BuiltInRole] = &[
    BuiltInRole {
        template_id: OWNER,
        display_name: "Owner",
    },
    BuiltInRole {
        template_id: "b24988ac-6180-42a0-ab88-20f7382dd24c",
        display_name: "Contributor",
    },
    BuiltInRole {
        template_id: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        display_name: "Reader",
    },
    BuiltInRole {
        template_id: USER_ACCESS_ADMINISTRATOR,
        display_name: "User Access Administrator",
    },
    BuiltInRole {
        template_id: "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",
        display_name: "Virtual Machine Contributor",
    },
    BuiltInRole {
        template_id: "4d97b98b-1d4f-4787-a291-c67834d212e7",
        display_name: "Network Contributor",
    },
    BuiltInRole {
        template_id: "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        display_name: "Key Vault Administrator",
    },
    BuiltInRole {
        template_id: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        display_name: "Storage Blob Data Contributor",
    },
];

/// An Azure RBAC role as seen at one resource (`governanceRoleDefinition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    /// Rolegate's id, unique per resource.
    pub id: String,
    /// The resource the definition belongs to.
    pub resource_id: String,
    /// ARM id: `{resource}/providers/Microsoft.Authorization/roleDefinitions/{templateId}`.
    pub external_id: String,
    /// The Azure role GUID; the same role on two resources shares it.
    pub template_id: String,
    /// The role's name.
    pub display_name: String,
}

impl RoleDefinition {
    /// The definition of `role` at the resource `resource_id` whose ARM id is `resource_external_id`.
    pub fn built_in(
        id: String,
        resource_id: &str,
        resource_external_id: &str,
        role: &BuiltInRole,
    ) -> Self {
        Self {
            id,
            resource_id: resource_id.to_string(),
            external_id: format!(
                "{resource_external_id}/providers/Microsoft.Authorization/roleDefinitions/{}",
                role.template_id
            ),
            template_id: role.template_id.to_string(),
            display_name: role.display_name.to_string(),
        }
    }

    /// Whether an active assignment of this role administers access (R3: Owner or User
    /// Access Administrator).
    pub fn administers_access(&self) -> bool {
        is_access_admin_template(&self.template_id)
    }
}

/// Whether `template_id` is Owner or User Access Administrator.
pub fn is_access_admin_template(template_id: &str) -> bool {
    template_id.eq_ignore_ascii_case(OWNER)
        || template_id.eq_ignore_ascii_case(USER_ACCESS_ADMINISTRATOR)
}

/// The policy attached to one role definition on one resource (`governanceRoleSetting`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSetting {
    /// GUID.
    pub id: String,
    /// The resource.
    pub resource_id: String,
    /// The role definition it governs.
    pub role_definition_id: String,
    /// True until someone changes it.
    pub is_default: bool,
    /// When it was last changed.
    pub last_updated_at: Option<jiff::Timestamp>,
    /// Display name of who last changed it.
    pub last_updated_by: Option<String>,
    /// The four rule collections.
    pub rules: crate::policy::RoleRules,
}

/// Who may change a role setting (decisions.md §5, §7): R3 on its resource.
pub fn may_change_setting(
    ctx: &crate::access::OpContext,
    s: &RoleSetting,
) -> crate::error::Result<()> {
    if ctx
        .caller
        .may_administer(ctx.access, &s.resource_id, ctx.now)
    {
        Ok(())
    } else {
        Err(crate::error::DomainError::denied(
            "changing a role setting needs an active Owner or User Access Administrator assignment on the resource",
        ))
    }
}
