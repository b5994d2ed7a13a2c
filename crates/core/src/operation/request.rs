//! Request operations: [`submit`], [`cancel`] and [`decide`] load their facts, decide with
//! [`crate::request::decision`] and apply the changes, returning the committed request with
//! the access changes it made. The cascades other operations share (an eligibility ending,
//! an activation ended as a consequence, a pending request closed) are here too.

use super::apply;
use crate::access::{AccessChange, OpContext};
use crate::assignment::{AssignmentKey, AssignmentState, EndReason, RoleAssignment};
use crate::error::{DomainError, ErrorCode, Result};
use crate::request::decision::{
    self, Candidate, DecisionFacts, Dependents, PendingFacts, RequestTarget, SubmitFacts,
};
use crate::request::{
    DecisionInput, NewRequest, Outcome, RENEW_WINDOW, RequestType, RoleAssignmentRequest, SubStatus,
};
use crate::store::{ReadTx, Tx};
use jiff::Timestamp;

/// Loads what a request targets: the resource (not locked), the role definition on it and
/// its role setting.
fn load_target(
    tx: &mut dyn ReadTx,
    resource_id: &str,
    role_definition_id: &str,
) -> Result<RequestTarget> {
    let resource = tx.resource(resource_id)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::ResourceNotFoundForRequest,
            format!("resource `{resource_id}` does not exist"),
        )
    })?;
    decision::check_resource(&resource)?;
    let role = tx
        .role_definition(role_definition_id)?
        .filter(|d| d.resource_id == resource.id)
        .ok_or_else(|| {
            DomainError::new(
                ErrorCode::RoleNotFound,
                format!("role definition `{role_definition_id}` does not exist on resource `{resource_id}`"),
            )
        })?;
    let setting = tx.role_setting_of(&role.id)?.ok_or_else(|| {
        DomainError::internal(format!("role definition `{}` has no role setting", role.id))
    })?;
    Ok(RequestTarget {
        resource,
        role,
        setting,
    })
}

/// Loads what closing stored-pending request `r` needs.
fn load_pending(
    tx: &mut dyn ReadTx,
    now: Timestamp,
    r: RoleAssignmentRequest,
) -> Result<PendingFacts> {
    let names = super::load_names(tx, &r.role_definition_id, &r.resource_id)?;
    let granted = match r.assignment_id.as_deref() {
        Some(a) if r.status_at(now) == SubStatus::Granted => tx.assignment(a)?,
        _ => None,
    };
    Ok(PendingFacts {
        request: r,
        names,
        granted,
    })
}

/// Loads what ending or changing assignment `a` affects (nothing unless it is eligible).
fn load_dependents(tx: &mut dyn ReadTx, now: Timestamp, a: &RoleAssignment) -> Result<Dependents> {
    if a.state != AssignmentState::Eligible {
        return Ok(Dependents::default());
    }
    let activations = tx.activations_of(&a.id)?;
    let mut pending = Vec::new();
    for r in tx.pending_requests_linked_to(&a.id)? {
        pending.push(load_pending(tx, now, r)?);
    }
    Ok(Dependents {
        activations,
        pending,
    })
}

/// Submits a new request: checks who may make it, loads what it touches, decides it
/// ([`decision::decide_submit`]) and applies the changes, audit record included.
pub fn submit(tx: &mut dyn Tx, ctx: &OpContext, new: NewRequest) -> Result<Outcome> {
    let admitted = decision::admit(ctx, &new)?;
    let (kind, state) = admitted;
    let target = load_target(tx, &new.resource_id, &new.role_definition_id)?;
    let subject = tx.subject(&new.subject_id)?;
    let facts = match &subject {
        Some(s) if s.active => {
            let key = AssignmentKey {
                resource_id: target.resource.id.clone(),
                role_definition_id: target.role.id.clone(),
                subject_id: s.id.clone(),
                state,
            };
            let in_table = tx.assignments_with_key(&key)?;
            let since = match kind {
                RequestType::AdminRenew => Some(Timestamp::MIN),
                RequestType::UserRenew => {
                    Some(ctx.now.checked_sub(RENEW_WINDOW).unwrap_or(Timestamp::MIN))
                }
                _ => None,
            };
            let in_history = match since {
                Some(since) => tx.expired_in_history(&key, since)?,
                None => Vec::new(),
            };
            let mut dependents = Vec::new();
            for a in in_table
                .iter()
                .filter(|a| a.state == AssignmentState::Eligible)
            {
                dependents.push((a.id.clone(), load_dependents(tx, ctx.now, a)?));
            }
            let candidates = if kind == RequestType::UserAdd {
                load_candidates(tx, ctx, &new, &target)?
            } else {
                Vec::new()
            };
            SubmitFacts {
                pending: tx.pending_request(&key)?,
                target,
                subject,
                in_table,
                in_history,
                candidates,
                dependents,
            }
        }
        // The decision refuses a missing or disabled subject before reading anything else.
        _ => SubmitFacts {
            target,
            subject,
            pending: None,
            in_table: Vec::new(),
            in_history: Vec::new(),
            candidates: Vec::new(),
            dependents: Vec::new(),
        },
    };
    let (request, changes) = decision::decide_submit(ctx, &new, admitted, &facts)?;
    Ok(Outcome {
        request,
        changes: apply(tx, ctx, changes)?,
    })
}

/// The eligible assignments a `UserAdd` may activate: the named one, or the caller's
/// (direct or through a group) on the resource and its ancestors.
fn load_candidates(
    tx: &mut dyn ReadTx,
    ctx: &OpContext,
    new: &NewRequest,
    t: &RequestTarget,
) -> Result<Vec<Candidate>> {
    let found = match new.linked_eligible_id.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => tx.assignment(id)?.into_iter().collect(),
        None => {
            let mut subjects = vec![ctx.caller.subject_id.clone()];
            subjects.extend(ctx.access.groups_of(&ctx.caller.subject_id));
            let scopes = ctx.access.ancestors_or_self(&t.resource.id);
            tx.assignments_of(&subjects, &scopes, AssignmentState::Eligible)?
        }
    };
    let mut out = Vec::with_capacity(found.len());
    for assignment in found {
        // Most often the role asked for, loaded already.
        let template_id = if assignment.role_definition_id == t.role.id {
            Some(t.role.template_id.clone())
        } else {
            tx.role_definition(&assignment.role_definition_id)?
                .map(|d| d.template_id)
        };
        out.push(Candidate {
            assignment,
            template_id,
        });
    }
    Ok(out)
}

fn not_found_for_action(id: &str) -> DomainError {
    DomainError::new(
        ErrorCode::RoleAssignmentRequestNotFoundForAction,
        format!("request `{id}` does not exist"),
    )
}

/// Cancels request `id` ([`decision::decide_cancel`]).
pub fn cancel(tx: &mut dyn Tx, ctx: &OpContext, id: &str) -> Result<Outcome> {
    let r = tx.request(id)?.ok_or_else(|| not_found_for_action(id))?;
    let facts = load_pending(tx, ctx.now, r)?;
    let (request, changes) = decision::decide_cancel(ctx, &facts)?;
    Ok(Outcome {
        request,
        changes: apply(tx, ctx, changes)?,
    })
}

/// Decides pending request `id` (`updateRequest`, [`decision::decide_request`]).
pub fn decide(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    id: &str,
    input: &DecisionInput,
) -> Result<Outcome> {
    let r = tx.request(id)?.ok_or_else(|| not_found_for_action(id))?;
    let approve = decision::decidable(ctx, &r, input)?;
    let key = r.key();
    let since = r
        .requested_at
        .checked_sub(RENEW_WINDOW)
        .unwrap_or(Timestamp::MIN);
    let facts = DecisionFacts {
        target: load_target(tx, &r.resource_id, &r.role_definition_id)?,
        earlier: tx.approvals(&r.id)?,
        in_table: tx.assignments_with_key(&key)?,
        in_history: tx.expired_in_history(&key, since)?,
        eligible: match r.linked_eligible_id.as_deref() {
            Some(e) => tx.assignment(e)?,
            None => None,
        },
    };
    let (request, changes) = decision::decide_request(ctx, r, approve, input, &facts)?;
    Ok(Outcome {
        request,
        changes: apply(tx, ctx, changes)?,
    })
}

/// Ends `a` (and, for an eligible assignment, its activations and pending activation
/// requests) as a consequence of another change, returning the access changes.
pub(crate) fn end_with_dependents(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    a: &RoleAssignment,
    reason: EndReason,
) -> Result<Vec<AccessChange>> {
    let deps = load_dependents(tx, ctx.now, a)?;
    apply(
        tx,
        ctx,
        decision::end_with_dependents(ctx, a, reason, &deps),
    )
}

/// Ends one activation as a consequence of another change, audited as `activity`.
pub(crate) fn end_activation(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    x: &RoleAssignment,
    activity: &str,
) -> Result<Vec<AccessChange>> {
    apply(tx, ctx, decision::end_activation(ctx, x, activity))
}

/// Closes stored-pending request `r` as a consequence of another change
/// ([`decision::close_pending`]).
pub(crate) fn close_pending(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    r: RoleAssignmentRequest,
    activity: &str,
) -> Result<Vec<AccessChange>> {
    let p = load_pending(tx, ctx.now, r)?;
    apply(tx, ctx, decision::close_pending(ctx, &p, activity))
}

/// Ends the activations and closes the pending activation requests of `members` whose
/// eligible assignment they no longer hold, directly or through a group (after a group
/// membership change or a group's deletion).
pub(crate) fn revoke_unbacked_activations(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    members: &[String],
) -> Result<Vec<AccessChange>> {
    let mut changes = Vec::new();
    for m in members {
        let holders = crate::directory::closure(m.clone(), |s| tx.groups_of(s))?;
        let backed = |tx: &mut dyn Tx, linked: Option<&str>| -> Result<bool> {
            Ok(match linked {
                Some(id) => tx
                    .assignment(id)?
                    .is_some_and(|e| holders.contains(&e.subject_id)),
                None => true,
            })
        };
        for x in tx.live_assignments_of(m)? {
            if x.is_activation() && !backed(tx, x.linked_eligible_id.as_deref())? {
                changes.extend(end_activation(
                    tx,
                    ctx,
                    &x,
                    "Deactivate role (group membership ended)",
                )?);
            }
        }
        for r in tx.pending_requests_of(m)? {
            if r.kind == RequestType::UserAdd && !backed(tx, r.linked_eligible_id.as_deref())? {
                changes.extend(close_pending(
                    tx,
                    ctx,
                    r,
                    "Cancel request (group membership ended)",
                )?);
            }
        }
    }
    Ok(changes)
}
