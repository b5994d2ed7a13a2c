//! The directory: users, groups and service principals (`governanceSubject`), provisioned
//! over SCIM, and group membership.

/// What kind of principal a subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// A person.
    User,
    /// A group; its members hold what it holds.
    Group,
    /// A workload identity.
    ServicePrincipal,
}

impl SubjectKind {
    /// The wire name (`User`, `Group`, `ServicePrincipal`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::ServicePrincipal => "ServicePrincipal",
        }
    }

    /// Parses a wire name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Group, Self::ServicePrincipal]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// A principal of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Server-assigned GUID (the SCIM `id`).
    pub id: String,
    /// The identity provider's id (SCIM `externalId`); a token's `oid`/`sub` may name it.
    pub external_id: Option<String>,
    /// User, group or service principal.
    pub kind: SubjectKind,
    /// Display name.
    pub display_name: String,
    /// User principal name (SCIM `userName`); users only.
    pub principal_name: Option<String>,
    /// Primary email; users only.
    pub email: Option<String>,
    /// False when the identity provider disabled the user.
    pub active: bool,
}

/// The groups `subject` belongs to, directly or through nested groups, given a lookup of
/// direct memberships. Cycles are tolerated; the subject itself is not included.
pub fn group_closure(subject: &str, direct_groups: impl Fn(&str) -> Vec<String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut frontier = vec![subject.to_string()];
    while let Some(next) = frontier.pop() {
        for g in direct_groups(&next) {
            if g != subject && !seen.contains(&g) {
                seen.push(g.clone());
                frontier.push(g);
            }
        }
    }
    seen
}

use crate::access::{AccessChange, OpContext};
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
    changes.extend(crate::request::revoke_unbacked_activations(
        tx, ctx, &affected,
    )?);
    Ok(changes)
}

/// `id` and, when it is a group, everyone in it directly or through nested groups.
fn transitive_members(tx: &mut dyn Tx, id: &str) -> Result<Vec<String>> {
    let mut out = vec![id.to_string()];
    let mut i = 0;
    while let Some(next) = out.get(i).cloned() {
        for m in tx.group_members(&next)? {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        i += 1;
    }
    Ok(out)
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
            changes.extend(crate::request::end_activation(
                tx,
                ctx,
                &a,
                &format!("Deactivate role ({why})"),
            )?);
        } else if !activations_only {
            // Ends the activations made through it (by this subject or, for a group, by its
            // members) too.
            changes.extend(crate::request::end_with_dependents(
                tx,
                ctx,
                &a,
                EndReason::SubjectDeleted,
            )?);
        }
    }
    for r in tx.pending_requests_of(id)? {
        changes.extend(crate::request::close_pending(
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
    changes.extend(crate::request::revoke_unbacked_activations(
        tx, ctx, &affected,
    )?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn closure_follows_nesting_and_survives_cycles() {
        let m: HashMap<&str, Vec<&str>> = HashMap::from([
            ("u", vec!["g1"]),
            ("g1", vec!["g2"]),
            ("g2", vec!["g1", "g3"]),
            ("g3", vec!["u"]),
        ]);
        let lookup = |s: &str| {
            m.get(s)
                .map(|v| v.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default()
        };
        let mut got = group_closure("u", lookup);
        got.sort();
        assert_eq!(got, vec!["g1", "g2", "g3"]);
    }
}
