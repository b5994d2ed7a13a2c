//! Directory operations (decisions.md §3): creating, updating (disabling) and deleting users,
//! groups and service principals, and what that ends: a disabled subject's activations, a
//! deleted one's assignments, activations no longer backed after a membership change, and
//! their pending requests. Tenant administrators only.

use super::request::{
    close_pending, end_activation, end_with_dependents, revoke_unbacked_activations,
};
use crate::access::{AccessChange, OpContext};
use crate::directory::{Subject, SubjectKind, member_expansion};
use crate::error::{DomainError, ErrorCode, Result};
use crate::store::Tx;

fn require_admin(ctx: &OpContext) -> Result<()> {
    if ctx.caller.is_tenant_admin {
        Ok(())
    } else {
        Err(DomainError::denied(
            "only tenant administrators may change the directory",
        ))
    }
}

fn audit_subject(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    s: &Subject,
    activity: &str,
    operation: &str,
) -> Result<()> {
    tx.append_audit(&crate::audit::AuditRecord {
        id: (ctx.new_id)(),
        category: if s.kind == SubjectKind::Group {
            "GroupManagement"
        } else {
            "UserManagement"
        }
        .into(),
        correlation_id: ctx.correlation_id.to_string(),
        result: "success".into(),
        result_reason: String::new(),
        activity_display_name: activity.into(),
        activity_date_time: ctx.now,
        operation_type: operation.into(),
        initiated_by: ctx.initiator(),
        target_resources: vec![crate::audit::Target::new(
            s.kind.as_str(),
            &s.id,
            &s.display_name,
        )],
        additional_details: Vec::new(),
    })
}

fn membership_changes(tx: &mut dyn Tx, members: &[String]) -> Result<Vec<AccessChange>> {
    members
        .iter()
        .map(|m| {
            Ok(AccessChange::Groups {
                member_id: m.clone(),
                groups: tx.groups_of(m)?,
            })
        })
        .collect()
}

/// Creates a user, service principal or group (with its direct members). Tenant
/// administrators only. A taken `userName` is `409 Conflict`.
pub fn create_subject(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    s: Subject,
    members: Vec<String>,
) -> Result<(Subject, Vec<AccessChange>)> {
    require_admin(ctx)?;
    if s.display_name.trim().is_empty() {
        return Err(DomainError::bad_request("`displayName` is required"));
    }
    if let Some(ext) = &s.external_id
        && tx.subject(ext)?.is_some()
    {
        return Err(DomainError::new(
            ErrorCode::Conflict,
            format!("externalId `{ext}` is already in use"),
        ));
    }
    tx.insert_subject(&s, ctx.now)?;
    let changes = set_members_inner(tx, ctx, &s, members)?;
    audit_subject(
        tx,
        ctx,
        &s,
        &format!("Add {}", s.kind.as_str().to_lowercase()),
        "Add",
    )?;
    Ok((s, changes))
}

fn set_members_inner(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    group: &Subject,
    members: Vec<String>,
) -> Result<Vec<AccessChange>> {
    if members.is_empty() && group.kind != SubjectKind::Group {
        return Ok(Vec::new());
    }
    if group.kind != SubjectKind::Group {
        return Err(DomainError::bad_request("only groups have members"));
    }
    let before = tx.group_members(&group.id)?;
    let current: std::collections::HashSet<&String> = before.iter().collect();
    let mut resolved = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in &members {
        // Current members are known to exist; only new ones are looked up.
        let id = if current.contains(m) {
            m.clone()
        } else {
            tx.subject(m)?
                .ok_or_else(|| DomainError::bad_request(format!("member `{m}` does not exist")))?
                .id
        };
        if seen.insert(id.clone()) {
            resolved.push(id);
        }
    }
    tx.set_group_members(&group.id, &resolved)?;
    let removed: Vec<String> = before
        .iter()
        .filter(|m| !seen.contains(*m))
        .cloned()
        .collect();
    // Only members who joined or left have new direct groups.
    let mut touched: Vec<String> = resolved
        .iter()
        .filter(|m| !current.contains(m))
        .cloned()
        .collect();
    touched.extend(removed.iter().cloned());
    let mut changes = membership_changes(tx, &touched)?;
    let mut affected = Vec::new();
    for m in &removed {
        affected.extend(transitive_members(tx, m)?);
    }
    changes.extend(revoke_unbacked_activations(tx, ctx, &affected)?);
    Ok(changes)
}

/// `id` and, when it is a group, everyone in it directly or through nested groups.
fn transitive_members(tx: &mut dyn Tx, id: &str) -> Result<Vec<String>> {
    member_expansion(id, |g| tx.group_members(g))
}

/// Replaces a subject's attributes (and, for a group, its members when `members` is given).
/// Disabling a user (`active` false) ends its activations and cancels its pending requests.
pub fn update_subject(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    s: Subject,
    members: Option<Vec<String>>,
) -> Result<(Subject, Vec<AccessChange>)> {
    require_admin(ctx)?;
    let before = tx.subject(&s.id)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::NotFound,
            format!("subject `{}` does not exist", s.id),
        )
    })?;
    tx.update_subject(&s)?;
    let mut changes = match members {
        Some(m) => set_members_inner(tx, ctx, &s, m)?,
        None => Vec::new(),
    };
    if before.active && !s.active {
        changes.extend(close_subject(tx, ctx, &s.id, true)?);
    }
    audit_subject(
        tx,
        ctx,
        &s,
        &format!("Update {}", s.kind.as_str().to_lowercase()),
        "Update",
    )?;
    Ok((s, changes))
}

/// Ends a subject's activations (or all its assignments) and cancels its pending requests,
/// each audited: requests the clock has already closed catch up as the scheduler would
/// ([`crate::scheduler::catch_up`]), open ones are canceled (a granted assignment that has
/// not started ends with its request).
fn close_subject(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    id: &str,
    activations_only: bool,
) -> Result<Vec<AccessChange>> {
    use crate::assignment::EndReason;
    let why = if activations_only {
        "account disabled"
    } else {
        "subject deleted"
    };
    let mut changes = Vec::new();
    for a in tx.live_assignments_of(id)? {
        // An earlier iteration may have ended it already (an activation of an eligible
        // assignment ended just before).
        if tx.assignment(&a.id)?.is_none() {
            continue;
        }
        if activations_only && a.is_activation() {
            changes.extend(end_activation(
                tx,
                ctx,
                &a,
                &format!("Deactivate role ({why})"),
            )?);
        } else if !activations_only {
            // Ends the activations made through it (by this subject or, for a group, by its
            // members) too.
            changes.extend(end_with_dependents(tx, ctx, &a, EndReason::SubjectDeleted)?);
        }
    }
    for r in tx.pending_requests_of(id)? {
        changes.extend(close_pending(
            tx,
            ctx,
            r,
            &format!("Cancel request ({why})"),
        )?);
    }
    Ok(changes)
}

/// Deletes a subject: its assignments move to history, its pending requests are canceled,
/// its memberships go (decisions.md §3).
pub fn delete_subject(tx: &mut dyn Tx, ctx: &OpContext, id: &str) -> Result<Vec<AccessChange>> {
    require_admin(ctx)?;
    let s = tx.subject(id)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::NotFound,
            format!("subject `{id}` does not exist"),
        )
    })?;
    let mut changes = close_subject(tx, ctx, &s.id, false)?;
    let members = tx.group_members(&s.id)?;
    let affected: Vec<String> = transitive_members(tx, &s.id)?.into_iter().skip(1).collect();
    tx.delete_subject(&s.id)?;
    changes.extend(membership_changes(tx, &members)?);
    changes.extend(revoke_unbacked_activations(tx, ctx, &affected)?);
    changes.push(AccessChange::SubjectRemoved(s.id.clone()));
    audit_subject(
        tx,
        ctx,
        &s,
        &format!("Delete {}", s.kind.as_str().to_lowercase()),
        "Delete",
    )?;
    Ok(changes)
}
