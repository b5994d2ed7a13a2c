//! Directory operations (decisions.md §3): creating, updating (disabling) and deleting users,
//! groups and service principals, and what that ends: a disabled subject's activations, a
//! deleted one's assignments, activations no longer backed after a membership change, and
//! their pending requests. Tenant administrators only. Each step loads, decides
//! ([`crate::directory::decision`], the request cascades) and applies.

use super::apply;
use super::request::{
    close_pending, end_activation, end_with_dependents, revoke_unbacked_activations,
};
use crate::access::{AccessChange, OpContext};
use crate::change::Change;
use crate::directory::decision::{self, MemberFacts, Membership};
use crate::directory::{Subject, SubjectKind, member_expansion};
use crate::error::{DomainError, ErrorCode, Result};
use crate::store::{ReadTx, Tx};

/// Loads what replacing `group`'s members with `requested` needs: its members now, whom
/// each requested member names, and the direct groups of those who join or leave.
fn member_facts(tx: &mut dyn ReadTx, group: &Subject, requested: &[String]) -> Result<MemberFacts> {
    if requested.is_empty() && group.kind != SubjectKind::Group {
        return Ok(MemberFacts::default());
    }
    let before = tx.group_members(&group.id)?;
    let mut named = Vec::new();
    for m in requested {
        let found = if before.contains(m) {
            Some(m.clone())
        } else {
            tx.subject(m)?.map(|s| s.id)
        };
        named.push((m.clone(), found));
    }
    let after: Vec<&String> = named.iter().filter_map(|(_, f)| f.as_ref()).collect();
    let joined = after.iter().copied().filter(|m| !before.contains(m));
    let left = before.iter().filter(|m| !after.contains(m));
    let mut direct_groups: Vec<(String, Vec<String>)> = Vec::new();
    for m in joined.chain(left) {
        if !direct_groups.iter().any(|(id, _)| id == m) {
            direct_groups.push((m.clone(), tx.groups_of(m)?));
        }
    }
    Ok(MemberFacts {
        before,
        requested: named,
        direct_groups,
    })
}

/// Creates a user, service principal or group (with its direct members). Tenant
/// administrators only. A taken `externalId` is `409 Conflict`.
pub fn create_subject(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    s: Subject,
    members: Vec<String>,
) -> Result<(Subject, Vec<AccessChange>)> {
    let taken = match &s.external_id {
        Some(ext) => tx.subject(ext)?.is_some(),
        None => false,
    };
    let facts = member_facts(tx, &s, &members)?;
    let changes = decision::create(ctx, &s, taken, &facts)?;
    Ok((s, apply(tx, ctx, changes)?))
}

/// What the members who left `removed` lose: the activations and pending requests their
/// membership backed, for them and everyone in them.
fn members_left(tx: &mut dyn Tx, ctx: &OpContext, removed: &[String]) -> Result<Vec<AccessChange>> {
    let mut affected = Vec::new();
    for m in removed {
        affected.extend(transitive_members(tx, m)?);
    }
    revoke_unbacked_activations(tx, ctx, &affected)
}

/// `id` and, when it is a group, everyone in it directly or through nested groups.
fn transitive_members(tx: &mut dyn ReadTx, id: &str) -> Result<Vec<String>> {
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
    decision::may_change(ctx)?;
    let before = tx.subject(&s.id)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::NotFound,
            format!("subject `{}` does not exist", s.id),
        )
    })?;
    let membership = match &members {
        Some(m) => decision::members(&s, &member_facts(tx, &s, m)?)?,
        None => Membership::default(),
    };
    let mut changes = vec![Change::UpdateSubject(s.clone())];
    changes.extend(membership.changes);
    let mut access = apply(tx, ctx, changes)?;
    access.extend(members_left(tx, ctx, &membership.removed)?);
    if before.active && !s.active {
        access.extend(close_subject(tx, ctx, &s.id, true)?);
    }
    let record = decision::record(ctx, &s, &decision::activity("Update", &s), "Update");
    access.extend(apply(tx, ctx, vec![Change::Audit(record)])?);
    Ok((s, access))
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
    decision::may_change(ctx)?;
    let s = tx.subject(id)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::NotFound,
            format!("subject `{id}` does not exist"),
        )
    })?;
    let mut access = close_subject(tx, ctx, &s.id, false)?;
    let mut member_groups = Vec::new();
    for m in tx.group_members(&s.id)? {
        let groups = tx.groups_of(&m)?;
        member_groups.push((m, groups));
    }
    let affected: Vec<String> = transitive_members(tx, &s.id)?.into_iter().skip(1).collect();
    access.extend(apply(tx, ctx, vec![decision::delete(&s, &member_groups)])?);
    access.extend(revoke_unbacked_activations(tx, ctx, &affected)?);
    let record = decision::record(ctx, &s, &decision::activity("Delete", &s), "Delete");
    access.extend(apply(tx, ctx, vec![Change::Audit(record)])?);
    Ok(access)
}
