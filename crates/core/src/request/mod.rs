//! Role assignment requests (`governanceRoleAssignmentRequest`): the only way assignments
//! change. This module holds the nine request types and the status state machine; the
//! rules of graph-pim-v2.md §6.15/§7.2 and decisions.md §6 and §13 are pure functions in
//! [`decision`] (facts in, changes out). [`submit`], [`cancel`] and [`decide`] run one
//! operation inside a write transaction: they load its facts, decide, apply the changes
//! ([`crate::change::apply`]) and return the committed request with the access changes.

pub mod decision;

use crate::access::{AccessChange, AccessView, OpContext};
use crate::assignment::{AssignmentState, EndReason, RoleAssignment};
use crate::change::apply;
use crate::error::{DomainError, ErrorCode, Result};
use crate::policy::{RuleCollection, RuleResult, TicketInfo};
use crate::schedule::{Schedule, ScheduleInput};
use crate::scheduler::Names;
use crate::store::{AssignmentKey, Tx};
use decision::{
    CancelFacts, Candidate, DecisionFacts, Dependents, PendingFacts, SubmitFacts, Target3,
};
use jiff::{SignedDuration, Timestamp};

/// How long before its end a user may ask to extend an assignment (decisions.md §6).
pub const EXTEND_WINDOW: SignedDuration = SignedDuration::from_hours(14 * 24);
/// How long after its end a user may ask to renew an assignment (decisions.md §6).
pub const RENEW_WINDOW: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The nine request types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    /// Admin assigns a role (eligible or active).
    AdminAdd,
    /// Admin changes an assignment's schedule.
    AdminUpdate,
    /// Admin removes an assignment.
    AdminRemove,
    /// Admin extends an assignment.
    AdminExtend,
    /// Admin renews an expired assignment.
    AdminRenew,
    /// User activates an eligible assignment.
    UserAdd,
    /// User deactivates an activation.
    UserRemove,
    /// User asks to extend an assignment ending soon.
    UserExtend,
    /// User asks to renew an expired assignment.
    UserRenew,
}

impl RequestType {
    const ALL: [Self; 9] = [
        Self::AdminAdd,
        Self::AdminUpdate,
        Self::AdminRemove,
        Self::AdminExtend,
        Self::AdminRenew,
        Self::UserAdd,
        Self::UserRemove,
        Self::UserExtend,
        Self::UserRenew,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminAdd => "AdminAdd",
            Self::AdminUpdate => "AdminUpdate",
            Self::AdminRemove => "AdminRemove",
            Self::AdminExtend => "AdminExtend",
            Self::AdminRenew => "AdminRenew",
            Self::UserAdd => "UserAdd",
            Self::UserRemove => "UserRemove",
            Self::UserExtend => "UserExtend",
            Self::UserRenew => "UserRenew",
        }
    }

    /// Parses a wire name, case-insensitively (clients in the wild send `adminAdd`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether an administrator (R3) makes it, rather than the subject.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Self::AdminAdd
                | Self::AdminUpdate
                | Self::AdminRemove
                | Self::AdminExtend
                | Self::AdminRenew
        )
    }
}

/// A request's fine state (`status.subStatus`); the coarse `status` follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubStatus {
    /// Accepted; the assignment starts later.
    Granted,
    /// Waiting for approvers (UserAdd under an ApprovalRule).
    PendingApproval,
    /// Waiting for an administrator (UserExtend, UserRenew).
    PendingAdminDecision,
    /// The assignment exists.
    Provisioned,
    /// The assignment was removed.
    Revoked,
    /// Canceled by the requester or an administrator.
    Canceled,
    /// Denied by an approver or administrator.
    AdminDenied,
    /// Not decided in time.
    TimedOut,
    /// Could not be carried out when approved.
    Failed,
}

impl SubStatus {
    const ALL: [Self; 9] = [
        Self::Granted,
        Self::PendingApproval,
        Self::PendingAdminDecision,
        Self::Provisioned,
        Self::Revoked,
        Self::Canceled,
        Self::AdminDenied,
        Self::TimedOut,
        Self::Failed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "Granted",
            Self::PendingApproval => "PendingApproval",
            Self::PendingAdminDecision => "PendingAdminDecision",
            Self::Provisioned => "Provisioned",
            Self::Revoked => "Revoked",
            Self::Canceled => "Canceled",
            Self::AdminDenied => "AdminDenied",
            Self::TimedOut => "TimedOut",
            Self::Failed => "Failed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// `InProgress` or `Closed`.
    pub fn coarse(self) -> &'static str {
        if self.is_open() {
            "InProgress"
        } else {
            "Closed"
        }
    }

    /// Whether the request may still change (pending a decision or a start).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Self::Granted | Self::PendingApproval | Self::PendingAdminDecision
        )
    }
}

/// One approver's decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The request.
    pub request_id: String,
    /// Who decided.
    pub approver_id: String,
    /// Their display name.
    pub approver_name: String,
    /// Approved (true) or denied.
    pub approved: bool,
    /// Their justification.
    pub justification: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleAssignmentRequest {
    /// GUID.
    pub id: String,
    /// Target resource.
    pub resource_id: String,
    /// Target role definition.
    pub role_definition_id: String,
    /// Target subject.
    pub subject_id: String,
    /// The operation.
    pub kind: RequestType,
    /// Eligible or active.
    pub state: AssignmentState,
    /// When it was made.
    pub requested_at: Timestamp,
    /// The resolved schedule (None for removals).
    pub schedule: Option<Schedule>,
    /// The requester's justification.
    pub reason: Option<String>,
    /// Stored state; see [`RoleAssignmentRequest::status_at`] for the state at a given time.
    pub sub_status: SubStatus,
    /// One entry per rule evaluated.
    pub status_details: Vec<RuleResult>,
    /// For activations: the eligible assignment used.
    pub linked_eligible_id: Option<String>,
    /// Ticket reference (Rolegate extension).
    pub ticket: Option<TicketInfo>,
    /// Who made it.
    pub requested_by: String,
    /// The assignment it created, changes or removed.
    pub assignment_id: Option<String>,
    /// Emergency access (decisions.md §10).
    pub emergency: bool,
    /// When a pending approval times out.
    pub approval_deadline: Option<Timestamp>,
    /// Optimistic-concurrency version, 1 on insert.
    pub version: i64,
}

impl RoleAssignmentRequest {
    /// The state at `now`, without waiting for the scheduler: a granted request whose start
    /// has come is provisioned; a pending approval past its deadline has timed out.
    pub fn status_at(&self, now: Timestamp) -> SubStatus {
        match self.sub_status {
            SubStatus::Granted if self.schedule.is_some_and(|s| s.start <= now) => {
                SubStatus::Provisioned
            }
            SubStatus::PendingApproval if self.approval_deadline.is_some_and(|d| d <= now) => {
                SubStatus::TimedOut
            }
            s => s,
        }
    }

    /// The assignment key this request is about.
    pub fn key(&self) -> AssignmentKey {
        AssignmentKey {
            resource_id: self.resource_id.clone(),
            role_definition_id: self.role_definition_id.clone(),
            subject_id: self.subject_id.clone(),
            state: self.state,
        }
    }
}

/// A request as the caller made it (already decoded from JSON).
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    /// Target resource id.
    pub resource_id: String,
    /// Target role definition id.
    pub role_definition_id: String,
    /// Target subject id.
    pub subject_id: String,
    /// Operation.
    pub kind: Option<RequestType>,
    /// Eligible or active.
    pub state: Option<AssignmentState>,
    /// Schedule as sent.
    pub schedule: Option<ScheduleInput>,
    /// Justification.
    pub reason: Option<String>,
    /// For activations: the eligible assignment to activate.
    pub linked_eligible_id: Option<String>,
    /// Ticket reference.
    pub ticket: Option<TicketInfo>,
    /// Emergency access asked for.
    pub emergency: bool,
}

/// An approver's or administrator's decision (`updateRequest`).
#[derive(Debug, Clone, Default)]
pub struct DecisionInput {
    /// `AdminApproved` or `AdminDenied`.
    pub decision: String,
    /// Justification.
    pub reason: Option<String>,
    /// For admin decisions: the schedule to grant (defaults to the requested one).
    pub schedule: Option<ScheduleInput>,
}

/// The outcome of an operation: the request as committed and the access changes.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The request.
    pub request: RoleAssignmentRequest,
    /// Changes for the access index.
    pub changes: Vec<AccessChange>,
}

fn load_target(tx: &mut dyn Tx, resource_id: &str, role_definition_id: &str) -> Result<Target3> {
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
    Ok(Target3 {
        resource,
        role,
        setting,
    })
}

/// Loads what closing stored-pending request `r` needs.
fn load_pending(tx: &mut dyn Tx, now: Timestamp, r: RoleAssignmentRequest) -> Result<PendingFacts> {
    let names = Names::load(tx, &r.role_definition_id, &r.resource_id)?;
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
fn load_dependents(tx: &mut dyn Tx, now: Timestamp, a: &RoleAssignment) -> Result<Dependents> {
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
    tx: &mut dyn Tx,
    ctx: &OpContext,
    new: &NewRequest,
    t: &Target3,
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
        let template_id = tx
            .role_definition(&assignment.role_definition_id)?
            .map(|d| d.template_id);
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
    let granted = match r.assignment_id.as_deref() {
        Some(a) if r.status_at(ctx.now) == SubStatus::Granted => tx.assignment(a)?,
        _ => None,
    };
    let names = Names::load(tx, &r.role_definition_id, &r.resource_id)?;
    let facts = CancelFacts {
        request: r,
        granted,
        names,
    };
    let (request, changes) = decision::decide_cancel(ctx, facts)?;
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

/// Whether `caller_id` is a listed approver of the activation `r` (a listed user or a member
/// of a listed group of its role's ApprovalRule) or has already decided it. Approvers read
/// the requests they decide without any assignment on the resource (decisions.md §6; the
/// approval e-mail of §12 links to the request).
pub fn is_approver_of(
    tx: &mut dyn Tx,
    caller_id: &str,
    access: &dyn AccessView,
    r: &RoleAssignmentRequest,
) -> Result<bool> {
    if r.kind != RequestType::UserAdd {
        return Ok(false);
    }
    if tx
        .approvals(&r.id)?
        .iter()
        .any(|a| a.approver_id == caller_id)
    {
        return Ok(true);
    }
    let Some(setting) = tx.role_setting_of(&r.role_definition_id)? else {
        return Ok(false);
    };
    let policy = setting.rules.policy(RuleCollection::UserMember)?;
    Ok(decision::listed_approver(
        &policy,
        caller_id,
        &access.groups_of(caller_id),
    ))
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
        let mut holders = vec![m.clone()];
        let mut i = 0;
        while let Some(next) = holders.get(i).cloned() {
            for g in tx.groups_of(&next)? {
                if !holders.contains(&g) {
                    holders.push(g);
                }
            }
            i += 1;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn request_types_parse_case_insensitively_and_print_exactly() {
        assert_eq!(RequestType::parse("adminAdd"), Some(RequestType::AdminAdd));
        assert_eq!(
            RequestType::parse("USERRENEW"),
            Some(RequestType::UserRenew)
        );
        assert_eq!(RequestType::parse("AdminDelete"), None);
        for k in RequestType::ALL {
            assert_eq!(RequestType::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn status_is_derived_from_the_clock() {
        let r = RoleAssignmentRequest {
            id: "r".into(),
            resource_id: "x".into(),
            role_definition_id: "d".into(),
            subject_id: "s".into(),
            kind: RequestType::AdminAdd,
            state: AssignmentState::Eligible,
            requested_at: t(0),
            schedule: Some(Schedule {
                start: t(100),
                end: Some(t(200)),
            }),
            reason: None,
            sub_status: SubStatus::Granted,
            status_details: Vec::new(),
            linked_eligible_id: None,
            ticket: None,
            requested_by: "a".into(),
            assignment_id: None,
            emergency: false,
            approval_deadline: None,
            version: 1,
        };
        assert_eq!(r.status_at(t(99)), SubStatus::Granted);
        assert_eq!(r.status_at(t(100)), SubStatus::Provisioned);
        let pending = RoleAssignmentRequest {
            sub_status: SubStatus::PendingApproval,
            approval_deadline: Some(t(50)),
            ..r
        };
        assert_eq!(pending.status_at(t(49)), SubStatus::PendingApproval);
        assert_eq!(pending.status_at(t(50)), SubStatus::TimedOut);
        assert_eq!(SubStatus::TimedOut.coarse(), "Closed");
        assert_eq!(SubStatus::PendingAdminDecision.coarse(), "InProgress");
    }
}
