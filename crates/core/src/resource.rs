//! Registered resources (`governanceResource`) and the registration rules of
//! decisions.md §4: type and parent from the ARM id, implicit ancestors, idempotence
//! (carried out by [`crate::operation::resource`]).

use crate::error::{DomainError, ErrorCode, Result};
use crate::scope::{ArmId, ScopeKind};
use jiff::Timestamp;

/// Whether a resource accepts changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceStatus {
    /// Normal.
    Active,
    /// Requests on it fail with `ResourceIsLocked`.
    Locked,
}

impl ResourceStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Locked => "Locked",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Active" => Some(Self::Active),
            "Locked" => Some(Self::Locked),
            _ => None,
        }
    }
}

/// A registered scope: management group, subscription, resource group or resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Rolegate's GUID (not the ARM id).
    pub id: String,
    /// The canonical ARM id.
    pub external_id: String,
    /// `managementgroup`, `subscription`, `resourcegroup` or `{Ns}/{type}`.
    pub resource_type: String,
    /// Display name.
    pub display_name: String,
    /// Active or locked.
    pub status: ResourceStatus,
    /// When it was registered.
    pub registered_at: Timestamp,
    /// `externalId` of the topmost registered ancestor (its own when it has none).
    pub registered_root: String,
    /// The parent resource's id, if any.
    pub parent_id: Option<String>,
}

/// What `register` was asked to do.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The scope to register.
    pub external_id: ArmId,
    /// Optional display name for it.
    pub display_name: Option<String>,
    /// For a subscription or management group: the registered management group above it.
    pub parent: Option<Resource>,
}

/// Who may register (decisions.md §4): tenant administrators, and callers with R3 on a
/// registered ancestor of the scope or the scope itself (`anchors`). The management group
/// named as parent does not count: owning a management group must not let anyone claim an
/// unregistered subscription into it, so new subscriptions and management groups are
/// registered by tenant administrators.
pub fn may_register(ctx: &crate::access::OpContext, anchors: &[Resource]) -> Result<()> {
    let allowed = ctx.caller.is_tenant_admin
        || anchors
            .iter()
            .any(|r| ctx.caller.may_administer(ctx.access, &r.id, ctx.now));
    if allowed {
        Ok(())
    } else {
        Err(DomainError::denied(
            "registering needs an active Owner or User Access Administrator assignment on an ancestor",
        ))
    }
}

/// The resources to create (top-down) so that `reg.external_id` and its ARM ancestors are
/// registered. Already registered scopes are looked up with `existing` and not recreated;
/// an empty plan means everything was registered already.
pub fn plan_registration(
    reg: &Registration,
    mut existing: impl FnMut(&ArmId) -> Result<Option<Resource>>,
    mut new_id: impl FnMut() -> String,
    now: Timestamp,
) -> Result<Vec<Resource>> {
    if let Some(parent) = &reg.parent {
        if parent.resource_type != "managementgroup" {
            return Err(DomainError::new(
                ErrorCode::InvalidResourceId,
                format!(
                    "parentExternalId `{}` is not a management group",
                    parent.external_id
                ),
            ));
        }
        if !matches!(
            reg.external_id.kind(),
            ScopeKind::Subscription | ScopeKind::ManagementGroup
        ) {
            return Err(DomainError::bad_request(
                "parentExternalId applies only to subscriptions and management groups",
            ));
        }
        if parent
            .external_id
            .eq_ignore_ascii_case(reg.external_id.as_str())
        {
            return Err(DomainError::bad_request(
                "a management group cannot be its own parent",
            ));
        }
    }
    let mut chain = reg.external_id.ancestors();
    chain.reverse();
    chain.push(reg.external_id.clone());
    let mut plan: Vec<Resource> = Vec::new();
    let mut above: Option<Resource> = None;
    for (i, arm) in chain.iter().enumerate() {
        if let Some(found) = existing(arm)? {
            above = Some(found);
            continue;
        }
        let is_target = i + 1 == chain.len();
        let parent = match (&above, i) {
            (Some(p), _) => Some(p.clone()),
            (None, 0) => reg.parent.clone(),
            (None, _) => None,
        };
        let display_name = match (&reg.display_name, is_target) {
            (Some(n), true) if !n.trim().is_empty() => n.trim().to_string(),
            _ => arm.name(),
        };
        let created = Resource {
            id: new_id(),
            external_id: arm.as_str().to_string(),
            resource_type: arm.resource_type(),
            display_name,
            status: ResourceStatus::Active,
            registered_at: now,
            registered_root: parent
                .as_ref()
                .map_or_else(|| arm.as_str().to_string(), |p| p.registered_root.clone()),
            parent_id: parent.as_ref().map(|p| p.id.clone()),
        };
        plan.push(created.clone());
        above = Some(created);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("id{n}")
        }
    }

    #[test]
    fn registers_missing_ancestors_top_down() {
        let arm = ArmId::parse(
            "/subscriptions/38ab2ccc-3747-4567-b36b-9478f5602f0d/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1",
        )
        .unwrap();
        let reg = Registration {
            external_id: arm,
            display_name: Some("My VM".into()),
            parent: None,
        };
        let plan = plan_registration(&reg, |_| Ok(None), ids(), Timestamp::UNIX_EPOCH).unwrap();
        let types: Vec<_> = plan.iter().map(|r| r.resource_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "subscription",
                "resourcegroup",
                "Microsoft.Compute/virtualMachines"
            ]
        );
        assert_eq!(plan[0].parent_id, None);
        assert_eq!(plan[1].parent_id.as_deref(), Some("id1"));
        assert_eq!(plan[2].parent_id.as_deref(), Some("id2"));
        assert_eq!(plan[2].display_name, "My VM");
        assert!(plan.iter().all(|r| r.registered_root == "/subscriptions/38ab2ccc-3747-4567-b36b-9478f5602f0d"));
    }

    #[test]
    fn registered_scope_gives_empty_plan() {
        let arm = ArmId::parse("/subscriptions/38ab2ccc-3747-4567-b36b-9478f5602f0d").unwrap();
        let reg = Registration {
            external_id: arm.clone(),
            display_name: None,
            parent: None,
        };
        let first = plan_registration(&reg, |_| Ok(None), ids(), Timestamp::UNIX_EPOCH).unwrap();
        let again = plan_registration(
            &reg,
            |_| Ok(first.first().cloned()),
            ids(),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn subscription_under_management_group_takes_its_root() {
        let mg_arm =
            ArmId::parse("/providers/Microsoft.Management/managementGroups/contoso").unwrap();
        let mg = plan_registration(
            &Registration {
                external_id: mg_arm,
                display_name: None,
                parent: None,
            },
            |_| Ok(None),
            ids(),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap()
        .remove(0);
        let sub = ArmId::parse("/subscriptions/38ab2ccc-3747-4567-b36b-9478f5602f0d").unwrap();
        let plan = plan_registration(
            &Registration {
                external_id: sub,
                display_name: None,
                parent: Some(mg.clone()),
            },
            |_| Ok(None),
            || "s".into(),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(plan[0].parent_id.as_deref(), Some(mg.id.as_str()));
        assert_eq!(plan[0].registered_root, mg.external_id);
    }
}
