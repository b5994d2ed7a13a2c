//! Registering resources (decisions.md §4): the scope and its ARM ancestors, with their
//! built-in role definitions and default role settings ([`crate::resource`] plans it).

use crate::error::{DomainError, ErrorCode, Result};
use crate::resource::{Registration, Resource, plan_registration};
use crate::scope::ArmId;

/// Registers `external_id` (and its unregistered ARM ancestors) with the built-in role
/// definitions and default role settings, and audits it. Only tenant administrators, or
/// callers with R3 on a registered ancestor (or on the management group named as parent),
/// may register. Returns whether anything was created, and the access changes.
pub fn register(
    tx: &mut dyn crate::store::Tx,
    ctx: &crate::access::OpContext,
    external_id: &str,
    display_name: Option<String>,
    parent_external_id: Option<&str>,
) -> Result<(bool, Vec<crate::access::AccessChange>)> {
    use crate::role::{BUILT_IN_ROLES, RoleDefinition, RoleSetting};
    let arm = ArmId::parse(external_id)?;
    let parent = match parent_external_id.filter(|p| !p.trim().is_empty()) {
        Some(p) => {
            let key = ArmId::parse(p)?.key();
            Some(tx.resource_by_external_key(&key)?.ok_or_else(|| {
                DomainError::new(
                    ErrorCode::InvalidResourceId,
                    format!("parentExternalId `{p}` is not registered"),
                )
            })?)
        }
        None => None,
    };
    let mut anchors: Vec<Resource> = Vec::new();
    for a in arm.ancestors().iter().chain(std::iter::once(&arm)) {
        if let Some(r) = tx.resource_by_external_key(&a.key())? {
            anchors.push(r);
        }
    }
    crate::resource::may_register(ctx, &anchors)?;
    let reg = Registration {
        external_id: arm,
        display_name,
        parent,
    };
    let mut known: Vec<Resource> = Vec::new();
    let plan = plan_registration(
        &reg,
        |a| tx.resource_by_external_key(&a.key()),
        || (ctx.new_id)(),
        ctx.now,
    )?;
    let mut changes = Vec::new();
    for r in &plan {
        let mut ancestors = Vec::new();
        let mut at = r.parent_id.clone();
        while let Some(p) = at {
            let parent = match known.iter().find(|k| k.id == p) {
                Some(k) => Some(k.clone()),
                None => tx.resource(&p)?,
            };
            ancestors.push(p);
            at = parent.and_then(|x| x.parent_id);
            if ancestors.len() > 64 {
                return Err(DomainError::new(
                    ErrorCode::InvalidResourceId,
                    "the resource tree is too deep",
                ));
            }
        }
        let mut changes_here = vec![crate::change::Change::InsertResource {
            resource: r.clone(),
            ancestors,
        }];
        for role in BUILT_IN_ROLES {
            let d = RoleDefinition::built_in((ctx.new_id)(), &r.id, &r.external_id, role);
            let s = RoleSetting {
                id: (ctx.new_id)(),
                resource_id: r.id.clone(),
                role_definition_id: d.id.clone(),
                is_default: true,
                last_updated_at: None,
                last_updated_by: None,
                rules: crate::policy::RoleRules::defaults(),
            };
            changes_here.push(crate::change::Change::InsertRoleDefinition {
                definition: d,
                setting: s,
            });
        }
        changes_here.push(crate::change::Change::Audit(crate::audit::AuditRecord {
            target_resources: vec![crate::audit::Target::new(
                "Resource",
                &r.id,
                &r.display_name,
            )],
            additional_details: vec![
                ("resourceId".into(), r.id.clone()),
                ("externalId".into(), r.external_id.clone()),
                ("type".into(), r.resource_type.clone()),
            ],
            ..crate::audit::AuditRecord::by(ctx, "ResourceManagement", "Register resource", "Add")
        }));
        changes.extend(super::apply(tx, ctx, changes_here)?);
        known.push(r.clone());
    }
    Ok((!plan.is_empty(), changes))
}
