//! Changing role settings (decisions.md §5).

use crate::role::RoleSetting;

/// Applies a PATCH to a role setting (decisions.md §5): R3 on its resource, merge by
/// `ruleIdentifier`, all or nothing, audited. An unknown id is `400 RoleSettingNotFound`.
pub fn update_role_setting(
    tx: &mut dyn crate::store::Tx,
    ctx: &crate::access::OpContext,
    id: &str,
    patch: crate::policy::RoleRulesPatch,
) -> crate::error::Result<RoleSetting> {
    use crate::error::{DomainError, ErrorCode};
    let mut s = tx.role_setting(id)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::RoleSettingNotFoundForUpdate,
            format!("role setting `{id}` does not exist"),
        )
    })?;
    crate::role::may_change_setting(ctx, &s)?;
    let before = s.rules.clone();
    s.rules.apply_patch(patch)?;
    s.is_default = false;
    s.last_updated_at = Some(ctx.now);
    s.last_updated_by = Some(ctx.caller.display_name.clone());
    let mut modified = Vec::new();
    for c in crate::policy::RuleCollection::ALL {
        let (old, new) = (before.collection(c), s.rules.collection(c));
        if old != new {
            let text = |rules: &[crate::policy::RuleSetting]| {
                rules
                    .iter()
                    .map(|r| format!("{}={}", r.rule_identifier, r.setting))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            modified.push(crate::audit::ModifiedProperty {
                display_name: c.name().to_string(),
                old_value: Some(text(old)),
                new_value: Some(text(new)),
            });
        }
    }
    let mut target = crate::audit::Target::new("RoleSetting", &s.id, &s.role_definition_id);
    target.modified_properties = modified;
    let record = crate::audit::AuditRecord {
        target_resources: vec![target],
        additional_details: vec![
            ("resourceId".into(), s.resource_id.clone()),
            ("roleDefinitionId".into(), s.role_definition_id.clone()),
        ],
        ..crate::audit::AuditRecord::by(ctx, "Policy", "Update role setting", "Update")
    };
    super::apply(
        tx,
        ctx,
        vec![
            crate::change::Change::UpdateRoleSetting(s.clone()),
            crate::change::Change::Audit(record),
        ],
    )?;
    Ok(s)
}
