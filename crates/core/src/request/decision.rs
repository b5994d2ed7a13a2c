//! The request state machine as pure functions: facts in, [`Change`]s out. Each function
//! here decides one operation on the facts its caller loaded ([`SubmitFacts`],
//! [`DecisionFacts`], [`Dependents`], [`PendingFacts`]) and never reads
//! the store, so every rule of graph-pim-v2.md §6.15/§7.2 and decisions.md §6, §10 and §13
//! is testable without a database. The caller applies the changes with
//! [`crate::operation::apply`].

use super::{
    Approval, DecisionInput, EXTEND_WINDOW, NewRequest, RENEW_WINDOW, RequestType,
    RoleAssignmentRequest, SubStatus,
};
use crate::access::{AccessView, Caller, OpContext};
use crate::assignment::{AssignmentKey, AssignmentState, EndReason, RoleAssignment};
use crate::audit::{AuditRecord, Target};
use crate::change::Change;
use crate::directory::Subject;
use crate::email::Event;
use crate::error::{DomainError, ErrorCode, Result};
use crate::policy::{ApproverKind, Policy, RequestFacts, RuleCollection, RuleResult};
use crate::resource::{Resource, ResourceStatus};
use crate::role::{RoleDefinition, RoleSetting};
use crate::schedule::{Schedule, ScheduleInput, format_datetime};
use crate::scheduler::{self, Names};
use jiff::{SignedDuration, Timestamp};

/// The resource, role definition and role setting a request targets.
#[derive(Debug, Clone)]
pub struct RequestTarget {
    /// The resource.
    pub resource: Resource,
    /// The role definition (on that resource).
    pub role: RoleDefinition,
    /// Its role setting.
    pub setting: RoleSetting,
}

impl RequestTarget {
    /// The names its audit records show.
    pub fn names(&self) -> Names {
        Names::of(&self.role, &self.resource)
    }
}

/// Refuses a request on a locked resource.
pub fn check_resource(resource: &Resource) -> Result<()> {
    if resource.status == ResourceStatus::Locked {
        return Err(DomainError::new(
            ErrorCode::ResourceIsLocked,
            format!("resource `{}` is locked", resource.id),
        ));
    }
    Ok(())
}

/// An eligible assignment a `UserAdd` might activate, with its role's template id (`None`
/// when its role definition no longer resolves).
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The eligible assignment.
    pub assignment: RoleAssignment,
    /// Its role definition's template id.
    pub template_id: Option<String>,
}

/// A pending request with what closing it needs (a cancel, or another change that closes it).
#[derive(Debug, Clone)]
pub struct PendingFacts {
    /// The request, as stored (still open in the store).
    pub request: RoleAssignmentRequest,
    /// Its role and resource names (for a catch-up's audit record).
    pub names: Names,
    /// Its assignment, when it is `Granted` and has not started (it ends with it).
    pub granted: Option<RoleAssignment>,
}

/// What ending or changing an eligible assignment affects.
#[derive(Debug, Clone, Default)]
pub struct Dependents {
    /// Its live activations.
    pub activations: Vec<RoleAssignment>,
    /// The pending activation requests linked to it.
    pub pending: Vec<PendingFacts>,
}

/// What a new request's decision needs, loaded at the start of its write transaction.
#[derive(Debug, Clone)]
pub struct SubmitFacts {
    /// What it targets.
    pub target: RequestTarget,
    /// The subject it is for, if it exists.
    pub subject: Option<Subject>,
    /// The stored-pending request of the same key, if any.
    pub pending: Option<RoleAssignmentRequest>,
    /// Assignments of the key not yet in history (live or ended).
    pub in_table: Vec<RoleAssignment>,
    /// For renewals: assignments of the key in history that expired within the window.
    pub in_history: Vec<RoleAssignment>,
    /// For `UserAdd`: the named eligible assignment (at most one) or, when none is named,
    /// the caller's eligible assignments on the resource and its ancestors.
    pub candidates: Vec<Candidate>,
    /// For each eligible assignment of `in_table`, by id: what it affects.
    pub dependents: Vec<(String, Dependents)>,
}

/// What an assignment without dependents affects: nothing.
static NO_DEPENDENTS: Dependents = Dependents {
    activations: Vec::new(),
    pending: Vec::new(),
};

impl SubmitFacts {
    fn dependents_of(&self, id: &str) -> &Dependents {
        self.dependents
            .iter()
            .find(|(e, _)| e == id)
            .map_or(&NO_DEPENDENTS, |(_, d)| d)
    }
}

/// What deciding a pending request needs besides the request.
#[derive(Debug, Clone)]
pub struct DecisionFacts {
    /// What it targets.
    pub target: RequestTarget,
    /// Decisions recorded so far.
    pub earlier: Vec<Approval>,
    /// Assignments of the request's key not yet in history.
    pub in_table: Vec<RoleAssignment>,
    /// Assignments of the request's key in history that expired within the renewal window.
    pub in_history: Vec<RoleAssignment>,
    /// The eligible assignment an activation was linked to, if it still exists.
    pub eligible: Option<RoleAssignment>,
}

fn grant(rule: &str) -> RuleResult {
    RuleResult {
        rule: rule.into(),
        result: "Grant".into(),
    }
}

/// The rule collection that governs a request of `kind` for `state`.
pub fn collection_for(kind: RequestType, state: AssignmentState) -> RuleCollection {
    match (kind, state) {
        (RequestType::UserAdd, _) => RuleCollection::UserMember,
        (_, AssignmentState::Eligible) => RuleCollection::AdminEligible,
        (_, AssignmentState::Active) => RuleCollection::AdminMember,
    }
}

fn resolve_schedule(
    input: Option<&ScheduleInput>,
    kind: RequestType,
    now: Timestamp,
) -> Result<Schedule> {
    let input = input.ok_or_else(|| {
        DomainError::bad_request(format!("schedule is required for {}", kind.as_str()))
    })?;
    Schedule::resolve(input, now)
}

/// A schedule for a change of an existing assignment (update, extend): a missing start
/// keeps its start.
fn resolve_change(
    input: Option<&ScheduleInput>,
    kind: RequestType,
    existing: &RoleAssignment,
    now: Timestamp,
) -> Result<Schedule> {
    let mut input = input.cloned();
    if let Some(i) = input.as_mut().filter(|i| i.start.is_none()) {
        i.start = Some(format_datetime(existing.schedule.start));
    }
    resolve_schedule(input.as_ref(), kind, now)
}

fn evaluate(
    policy: &Policy,
    schedule: &Schedule,
    ctx: &OpContext,
    new: &NewRequest,
) -> Result<Vec<RuleResult>> {
    policy.evaluate(&RequestFacts {
        duration: schedule.duration(),
        mfa: ctx.caller.mfa,
        reason: new.reason.as_deref(),
        ticket: new.ticket.as_ref(),
    })
}

fn started(schedule: &Schedule, now: Timestamp) -> SubStatus {
    if schedule.start <= now {
        SubStatus::Provisioned
    } else {
        SubStatus::Granted
    }
}

/// Assignments of a key that are still live at `now`, and the changes that move the ended
/// ones to history (so a new live row can take the key).
pub fn split_ended(
    in_table: &[RoleAssignment],
    now: Timestamp,
) -> (Vec<RoleAssignment>, Vec<Change>) {
    let mut live = Vec::new();
    let mut ends = Vec::new();
    for a in in_table {
        if a.is_live(now) {
            live.push(a.clone());
        } else if let Some(end) = a.schedule.end {
            ends.push(Change::EndAssignment {
                assignment: a.clone(),
                at: end,
                reason: EndReason::Expired,
                request_id: None,
            });
        }
    }
    (live, ends)
}

/// Of the assignments of one key `in_table` (live or ended) and `in_history`, the one (not
/// an activation) that expired most recently after `since`, and whether it is in the table.
pub fn latest_expired(
    in_table: &[RoleAssignment],
    in_history: &[RoleAssignment],
    now: Timestamp,
    since: Timestamp,
) -> Option<(RoleAssignment, bool)> {
    let mut best: Option<(&RoleAssignment, bool)> = None;
    let table = in_table
        .iter()
        .filter(|a| a.schedule.has_ended(now) && !a.is_activation())
        .map(|a| (a, true));
    let history = in_history
        .iter()
        .filter(|a| !a.is_activation())
        .map(|a| (a, false));
    for (a, live_table) in table.chain(history) {
        if a.schedule.end.is_some_and(|e| e > since)
            && best
                .as_ref()
                .is_none_or(|(b, _)| a.schedule.end > b.schedule.end)
        {
            best = Some((a, live_table));
        }
    }
    best.map(|(a, t)| (a.clone(), t))
}

/// The change that renews expired assignment `a` (with its new schedule): in place when it
/// is still in the table, restored from history otherwise.
fn renewal(a: RoleAssignment, in_table: bool, administers: bool) -> Change {
    if in_table {
        Change::UpdateAssignment {
            assignment: a,
            administers,
        }
    } else {
        Change::RestoreAssignment {
            assignment: a,
            administers,
        }
    }
}

/// Refuses a renewal while a direct (not activation) assignment of the key is live.
fn ensure_nothing_live(in_table: &[RoleAssignment], now: Timestamp) -> Result<()> {
    if let Some(a) = in_table
        .iter()
        .find(|a| a.is_live(now) && !a.is_activation())
    {
        return Err(DomainError::new(
            ErrorCode::RoleAssignmentExists,
            format!("assignment `{}` has not expired; extend it instead", a.id),
        ));
    }
    Ok(())
}

/// The request type and state of `new`, if the caller may make such a request at all
/// (decisions.md §6, §7): the required fields are there, an administrator's request comes
/// from an administrator of the resource, a user's request is for the caller.
pub fn admit(ctx: &OpContext, new: &NewRequest) -> Result<(RequestType, AssignmentState)> {
    let kind = new
        .kind
        .ok_or_else(|| DomainError::bad_request("`type` is required"))?;
    let state = new.state.ok_or_else(|| {
        DomainError::bad_request("`assignmentState` is required (`Eligible` or `Active`)")
    })?;
    for (field, value) in [
        ("resourceId", &new.resource_id),
        ("roleDefinitionId", &new.role_definition_id),
        ("subjectId", &new.subject_id),
    ] {
        if value.trim().is_empty() {
            return Err(DomainError::bad_request(format!("`{field}` is required")));
        }
    }
    if kind.is_admin() {
        if !ctx
            .caller
            .may_administer(ctx.access, &new.resource_id, ctx.now)
        {
            return Err(DomainError::denied(format!(
                "{} needs an active Owner or User Access Administrator assignment on the resource",
                kind.as_str()
            )));
        }
    } else if new.subject_id != ctx.caller.subject_id {
        return Err(DomainError::denied(format!(
            "{} acts for the caller only: `subjectId` must be the caller",
            kind.as_str()
        )));
    }
    Ok((kind, state))
}

/// What a request type did, before the request record is assembled.
struct Effect {
    schedule: Option<Schedule>,
    sub_status: SubStatus,
    details: Vec<RuleResult>,
    assignment_id: Option<String>,
    linked_eligible_id: Option<String>,
    approval_deadline: Option<Timestamp>,
    emergency: bool,
    changes: Vec<Change>,
}

impl Effect {
    fn closed(sub_status: SubStatus, assignment_id: Option<String>, changes: Vec<Change>) -> Self {
        Self {
            schedule: None,
            sub_status,
            details: Vec::new(),
            assignment_id,
            linked_eligible_id: None,
            approval_deadline: None,
            emergency: false,
            changes,
        }
    }

    fn granted(
        schedule: Schedule,
        now: Timestamp,
        details: Vec<RuleResult>,
        assignment_id: String,
        changes: Vec<Change>,
    ) -> Self {
        Self {
            schedule: Some(schedule),
            sub_status: started(&schedule, now),
            details,
            assignment_id: Some(assignment_id),
            linked_eligible_id: None,
            approval_deadline: None,
            emergency: false,
            changes,
        }
    }

    fn pending_admin(
        schedule: Schedule,
        details: Vec<RuleResult>,
        assignment_id: String,
        changes: Vec<Change>,
    ) -> Self {
        Self {
            schedule: Some(schedule),
            sub_status: SubStatus::PendingAdminDecision,
            details,
            assignment_id: Some(assignment_id),
            linked_eligible_id: None,
            approval_deadline: None,
            emergency: false,
            changes,
        }
    }
}

/// Decides a new request of `kind` for `state` (already [`admit`]ted) on `facts`: its
/// preconditions, the role-setting rules, and what it changes. Its id is drawn before the
/// effect, so an assignment it creates names it.
pub fn decide_submit(
    ctx: &OpContext,
    new: &NewRequest,
    (kind, state): (RequestType, AssignmentState),
    facts: &SubmitFacts,
) -> Result<(RoleAssignmentRequest, Vec<Change>)> {
    let target = &facts.target;
    let subject = facts.subject.as_ref().filter(|s| s.active).ok_or_else(|| {
        DomainError::new(
            ErrorCode::SubjectNotFound,
            format!("subject `{}` does not exist or is disabled", new.subject_id),
        )
    })?;
    let key = AssignmentKey {
        resource_id: target.resource.id.clone(),
        role_definition_id: target.role.id.clone(),
        subject_id: subject.id.clone(),
        state,
    };
    let removal = matches!(kind, RequestType::AdminRemove | RequestType::UserRemove);
    let mut changes = Vec::new();
    if let Some(pending) = &facts.pending {
        if pending.status_at(ctx.now).is_open() {
            if !removal {
                return Err(DomainError::new(
                    ErrorCode::PendingRoleAssignmentRequest,
                    format!(
                        "request `{}` for this role, resource and subject is still pending",
                        pending.id
                    ),
                ));
            }
            // A pending request never blocks a revocation: it is canceled with it.
            changes.push(Change::Audit(side_effect_record(
                ctx,
                "Cancel request (assignment removed)",
                "Request",
                &pending.id,
            )));
            let mut canceled = pending.clone();
            canceled.sub_status = SubStatus::Canceled;
            canceled.version += 1;
            changes.push(Change::UpdateRequest(canceled));
        } else if let Some((_, caught_up)) = scheduler::catch_up(ctx, pending, &target.names()) {
            // The stored state catches up with the clock here, before the scheduler got
            // to it, exactly as the scheduler would have.
            changes.extend(caught_up);
        }
    }
    let request_id = (ctx.new_id)();
    let effect = match kind {
        RequestType::AdminAdd => admin_add(ctx, new, facts, &key, &request_id)?,
        RequestType::AdminUpdate | RequestType::AdminExtend => {
            admin_change(ctx, new, kind, facts, &key)?
        }
        RequestType::AdminRenew => admin_renew(ctx, new, facts, &key)?,
        RequestType::AdminRemove => remove(ctx, facts, &key, false, None)?,
        RequestType::UserAdd => user_add(ctx, new, facts, &key, &request_id)?,
        RequestType::UserRemove => {
            remove(ctx, facts, &key, true, new.linked_eligible_id.as_deref())?
        }
        RequestType::UserExtend => user_extend(ctx, new, facts, &key)?,
        RequestType::UserRenew => user_renew(ctx, new, facts, &key)?,
    };
    changes.extend(effect.changes);
    let request = RoleAssignmentRequest {
        id: request_id,
        resource_id: key.resource_id.clone(),
        role_definition_id: key.role_definition_id.clone(),
        subject_id: key.subject_id.clone(),
        kind,
        state,
        requested_at: ctx.now,
        schedule: effect.schedule,
        reason: new.reason.clone(),
        sub_status: effect.sub_status,
        status_details: effect.details,
        linked_eligible_id: effect.linked_eligible_id.or(new.linked_eligible_id.clone()),
        ticket: new.ticket.clone(),
        requested_by: ctx.caller.subject_id.clone(),
        assignment_id: effect.assignment_id,
        emergency: effect.emergency,
        approval_deadline: effect.approval_deadline,
        version: 1,
    };
    let approvers = if request.sub_status == SubStatus::PendingApproval {
        let policy = target.setting.rules.policy(RuleCollection::UserMember)?;
        policy
            .approval
            .iter()
            .flat_map(|rule| rule.approvers.iter().map(|a| a.id.clone()))
            .collect()
    } else {
        Vec::new()
    };
    changes.push(Change::InsertRequest {
        request: request.clone(),
        approvers,
    });
    for event in submitted_events(&request) {
        changes.push(Change::Email {
            request: request.clone(),
            event,
        });
    }
    changes.push(Change::Audit(request_record(
        ctx,
        &request,
        &target.names(),
        activity(&request),
        None,
    )));
    Ok((request, changes))
}

/// The e-mails a newly submitted request sends (decisions.md §12): approval or decision
/// needed, or (for an activation granted at once) the activation, and for emergency access
/// the alert.
pub fn submitted_events(r: &RoleAssignmentRequest) -> Vec<Event> {
    match r.sub_status {
        SubStatus::PendingApproval => vec![Event::ApprovalNeeded],
        SubStatus::PendingAdminDecision => vec![Event::DecisionNeeded],
        SubStatus::Provisioned | SubStatus::Granted if r.kind == RequestType::UserAdd => {
            let mut events = vec![Event::Activated];
            if r.emergency {
                events.push(Event::EmergencyActivated);
            }
            events
        }
        _ => Vec::new(),
    }
}

/// The e-mail a decision sends the requester, once the request is no longer pending.
pub fn decided_event(r: &RoleAssignmentRequest) -> Option<Event> {
    match r.sub_status {
        SubStatus::Provisioned | SubStatus::Granted => Some(Event::Approved),
        SubStatus::AdminDenied => Some(Event::Denied),
        SubStatus::Failed => Some(Event::Failed),
        _ => None,
    }
}

/// The audit `activityDisplayName` of a new request.
fn activity(r: &RoleAssignmentRequest) -> String {
    let state = match r.state {
        AssignmentState::Eligible => "eligible",
        AssignmentState::Active => "active",
    };
    let what = match r.kind {
        RequestType::AdminAdd => format!("Add {state} member to role"),
        RequestType::AdminUpdate => format!("Update {state} role assignment"),
        RequestType::AdminRemove => format!("Remove {state} member from role"),
        RequestType::AdminExtend => format!("Extend {state} role assignment"),
        RequestType::AdminRenew => format!("Renew {state} role assignment"),
        RequestType::UserAdd if r.emergency => "Activate role (emergency access)".to_string(),
        RequestType::UserAdd => "Activate role".to_string(),
        RequestType::UserRemove => "Deactivate role".to_string(),
        RequestType::UserExtend => format!("Request extension of {state} role assignment"),
        RequestType::UserRenew => format!("Request renewal of {state} role assignment"),
    };
    match r.sub_status {
        SubStatus::PendingApproval => format!("{what} requested (approval needed)"),
        _ => what,
    }
}

/// The audit record of an operation on request `r`.
fn request_record(
    ctx: &OpContext,
    r: &RoleAssignmentRequest,
    names: &Names,
    activity: String,
    approver_reason: Option<&str>,
) -> AuditRecord {
    let mut details = vec![
        ("requestId".to_string(), r.id.clone()),
        ("requestType".to_string(), r.kind.as_str().to_string()),
        ("subStatus".to_string(), r.sub_status.as_str().to_string()),
        ("roleDefinitionId".to_string(), names.role_id.clone()),
        ("resourceId".to_string(), names.resource_id.clone()),
    ];
    if let Some(reason) = &r.reason {
        details.push(("reason".into(), reason.clone()));
    }
    if let Some(t) = &r.ticket {
        details.push((
            "ticket".into(),
            format!(
                "{}:{}",
                t.ticket_system.as_deref().unwrap_or(""),
                t.ticket_number.as_deref().unwrap_or("")
            ),
        ));
    }
    if let Some(s) = &r.schedule {
        details.push(("startDateTime".into(), format_datetime(s.start)));
        details.push((
            "endDateTime".into(),
            s.end.map(format_datetime).unwrap_or_default(),
        ));
    }
    if let Some(j) = approver_reason {
        details.push(("approverJustification".into(), j.to_string()));
    }
    if r.emergency {
        details.push(("emergency".into(), "true".into()));
    }
    let mut targets = vec![
        Target::new("Role", &names.role_id, &names.role),
        Target::new("Resource", &names.resource_id, &names.resource),
        Target::new("Subject", &r.subject_id, &r.subject_id),
    ];
    if let Some(a) = &r.assignment_id {
        targets.push(Target::new("RoleAssignment", a, a));
    }
    AuditRecord {
        result_reason: r.sub_status.as_str().into(),
        target_resources: targets,
        additional_details: details,
        ..AuditRecord::by(ctx, "RoleManagement", &activity, r.kind.as_str())
    }
}

/// The audit record of a change made as a consequence of the operation being audited
/// (`kind` `Request` or `RoleAssignment`).
pub fn side_effect_record(ctx: &OpContext, activity: &str, kind: &str, id: &str) -> AuditRecord {
    let key = if kind == "Request" {
        "requestId"
    } else {
        "assignmentId"
    };
    AuditRecord {
        target_resources: vec![Target::new(kind, id, id)],
        additional_details: vec![(key.into(), id.into())],
        ..AuditRecord::by(ctx, "RoleManagement", activity, "Update")
    }
}

fn admin_add(
    ctx: &OpContext,
    new: &NewRequest,
    facts: &SubmitFacts,
    key: &AssignmentKey,
    request_id: &str,
) -> Result<Effect> {
    let t = &facts.target;
    let schedule = resolve_schedule(new.schedule.as_ref(), RequestType::AdminAdd, ctx.now)?;
    let policy = t
        .setting
        .rules
        .policy(collection_for(RequestType::AdminAdd, key.state))?;
    let mut details = vec![grant("AdminRequestRule")];
    details.extend(evaluate(&policy, &schedule, ctx, new)?);
    let (live, mut changes) = split_ended(&facts.in_table, ctx.now);
    if let Some(existing) = live.into_iter().find(|a| !a.is_activation()) {
        return Err(DomainError::new(
            ErrorCode::RoleAssignmentExists,
            format!(
                "the subject already holds this role on this resource (assignment `{}`)",
                existing.id
            ),
        ));
    }
    let a = RoleAssignment {
        id: (ctx.new_id)(),
        resource_id: key.resource_id.clone(),
        role_definition_id: key.role_definition_id.clone(),
        subject_id: key.subject_id.clone(),
        state: key.state,
        linked_eligible_id: None,
        schedule,
        request_id: request_id.to_string(),
    };
    let id = a.id.clone();
    changes.push(Change::InsertAssignment {
        assignment: a,
        administers: t.role.administers_access(),
    });
    Ok(Effect::granted(schedule, ctx.now, details, id, changes))
}

fn admin_change(
    ctx: &OpContext,
    new: &NewRequest,
    kind: RequestType,
    facts: &SubmitFacts,
    key: &AssignmentKey,
) -> Result<Effect> {
    let t = &facts.target;
    // Activations are never extended, updated or renewed: they are bounded by their
    // eligible assignment and the activation cap.
    let (live, mut changes) = split_ended(&facts.in_table, ctx.now);
    let mut a = live
        .into_iter()
        .find(|a| !a.is_activation())
        .ok_or_else(|| {
            DomainError::new(
                ErrorCode::RoleAssignmentDoesNotExist,
                format!(
                    "no live {} assignment to {}",
                    key.state.as_str(),
                    if kind == RequestType::AdminExtend {
                        "extend"
                    } else {
                        "update"
                    }
                ),
            )
        })?;
    let schedule = resolve_change(new.schedule.as_ref(), kind, &a, ctx.now)?;
    if kind == RequestType::AdminExtend {
        let later = match (a.schedule.end, schedule.end) {
            (Some(old), Some(new_end)) => new_end > old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !later {
            return Err(DomainError::bad_request(
                "AdminExtend must move the assignment's end later",
            ));
        }
    }
    let policy = t.setting.rules.policy(collection_for(kind, key.state))?;
    let mut details = vec![grant("AdminRequestRule")];
    details.extend(evaluate(&policy, &schedule, ctx, new)?);
    a.schedule = schedule;
    let administers = t.role.administers_access();
    changes.push(Change::UpdateAssignment {
        assignment: a.clone(),
        administers,
    });
    changes.extend(bound_activations(
        ctx,
        &a,
        administers,
        facts.dependents_of(&a.id),
    ));
    Ok(Effect::granted(schedule, ctx.now, details, a.id, changes))
}

fn admin_renew(
    ctx: &OpContext,
    new: &NewRequest,
    facts: &SubmitFacts,
    key: &AssignmentKey,
) -> Result<Effect> {
    let t = &facts.target;
    ensure_nothing_live(&facts.in_table, ctx.now)?;
    let (mut a, in_table) =
        latest_expired(&facts.in_table, &facts.in_history, ctx.now, Timestamp::MIN).ok_or_else(
            || {
                DomainError::new(
                    ErrorCode::RoleAssignmentDoesNotExist,
                    format!("no expired {} assignment to renew", key.state.as_str()),
                )
            },
        )?;
    let schedule = resolve_schedule(new.schedule.as_ref(), RequestType::AdminRenew, ctx.now)?;
    let policy = t
        .setting
        .rules
        .policy(collection_for(RequestType::AdminRenew, key.state))?;
    let mut details = vec![grant("AdminRequestRule")];
    details.extend(evaluate(&policy, &schedule, ctx, new)?);
    a.schedule = schedule;
    let id = a.id.clone();
    let change = renewal(a, in_table, t.role.administers_access());
    Ok(Effect::granted(
        schedule,
        ctx.now,
        details,
        id,
        vec![change],
    ))
}

/// Ends `a` (and, for an eligible assignment, its activations and the pending activation
/// requests linked to it, as `deps` lists them) at `ctx.now` for `reason`.
pub fn end_with_dependents(
    ctx: &OpContext,
    a: &RoleAssignment,
    reason: EndReason,
    deps: &Dependents,
) -> Vec<Change> {
    let mut changes = vec![Change::EndAssignment {
        assignment: a.clone(),
        at: ctx.now,
        reason,
        request_id: None,
    }];
    if a.state == AssignmentState::Eligible {
        let mut ended = Vec::new();
        for x in deps.activations.iter().filter(|x| x.is_live(ctx.now)) {
            changes.extend(end_activation(
                ctx,
                x,
                "Deactivate role (eligible assignment ended)",
            ));
            ended.push(x.id.clone());
        }
        for p in &deps.pending {
            let mut p = p.clone();
            // An activation ended just above does not end twice.
            p.granted = p.granted.filter(|g| !ended.contains(&g.id));
            changes.extend(close_pending(
                ctx,
                &p,
                "Cancel request (eligible assignment ended)",
            ));
        }
    }
    changes
}

/// Ends activation `x` at `ctx.now` as a consequence of another change, audited as
/// `activity`.
pub fn end_activation(ctx: &OpContext, x: &RoleAssignment, activity: &str) -> Vec<Change> {
    vec![
        Change::EndAssignment {
            assignment: x.clone(),
            at: ctx.now,
            reason: EndReason::Removed,
            request_id: None,
        },
        Change::Audit(side_effect_record(ctx, activity, "RoleAssignment", &x.id)),
    ]
}

/// Closes a stored-pending request as a consequence of another change: one the clock has
/// already closed catches up as the scheduler would ([`scheduler::catch_up`]: what reads
/// reported stays true); an open one is canceled, audited as `activity`, its not yet started
/// assignment ending with it.
pub fn close_pending(ctx: &OpContext, p: &PendingFacts, activity: &str) -> Vec<Change> {
    if let Some((_, caught_up)) = scheduler::catch_up(ctx, &p.request, &p.names) {
        return caught_up;
    }
    let (r, mut changes) = canceled(ctx, p);
    changes.push(Change::Audit(side_effect_record(
        ctx, activity, "Request", &r.id,
    )));
    changes
}

/// `p`'s request canceled at `ctx.now`, with its not yet started assignment ending with it.
fn canceled(ctx: &OpContext, p: &PendingFacts) -> (RoleAssignmentRequest, Vec<Change>) {
    let mut changes = Vec::new();
    if let Some(a) = &p.granted {
        changes.push(Change::EndAssignment {
            assignment: a.clone(),
            at: ctx.now,
            reason: EndReason::Canceled,
            request_id: Some(p.request.id.clone()),
        });
    }
    let mut r = p.request.clone();
    r.sub_status = SubStatus::Canceled;
    r.version += 1;
    changes.push(Change::UpdateRequest(r.clone()));
    (r, changes)
}

/// Ends or shortens the activations of eligible assignment `e` (with its new schedule) so
/// none outlives it.
pub fn bound_activations(
    ctx: &OpContext,
    e: &RoleAssignment,
    administers: bool,
    deps: &Dependents,
) -> Vec<Change> {
    let mut changes = Vec::new();
    if e.state != AssignmentState::Eligible {
        return changes;
    }
    for x in deps.activations.iter().filter(|x| x.is_live(ctx.now)) {
        if !e.is_current(ctx.now) {
            changes.extend(end_activation(
                ctx,
                x,
                "Deactivate role (eligible assignment changed)",
            ));
        } else if let Some(limit) = e.schedule.end
            && x.schedule.end.is_none_or(|end| end > limit)
        {
            let mut x = x.clone();
            x.schedule.end = Some(limit);
            let id = x.id.clone();
            changes.push(Change::UpdateAssignment {
                assignment: x,
                administers,
            });
            changes.push(Change::Audit(side_effect_record(
                ctx,
                "Shorten activation (eligible assignment changed)",
                "RoleAssignment",
                &id,
            )));
        }
    }
    changes
}

fn remove(
    ctx: &OpContext,
    facts: &SubmitFacts,
    key: &AssignmentKey,
    activations_only: bool,
    linked: Option<&str>,
) -> Result<Effect> {
    if activations_only && key.state != AssignmentState::Active {
        return Err(DomainError::bad_request(
            "UserRemove deactivates an activation: `assignmentState` must be `Active`",
        ));
    }
    let (live, mut changes) = split_ended(&facts.in_table, ctx.now);
    let targets: Vec<RoleAssignment> = live
        .into_iter()
        .filter(|a| !activations_only || a.is_activation())
        .filter(|a| {
            linked.is_none_or(|l| l.is_empty() || a.linked_eligible_id.as_deref() == Some(l))
        })
        .collect();
    if targets.is_empty() {
        return Err(DomainError::new(
            ErrorCode::RoleAssignmentDoesNotExist,
            if activations_only {
                "no active activation of this role to deactivate".to_string()
            } else {
                format!("no live {} assignment to remove", key.state.as_str())
            },
        ));
    }
    for a in &targets {
        changes.extend(end_with_dependents(
            ctx,
            a,
            EndReason::Removed,
            facts.dependents_of(&a.id),
        ));
    }
    Ok(Effect::closed(
        SubStatus::Revoked,
        targets.first().map(|a| a.id.clone()),
        changes,
    ))
}

/// The eligible assignment a `UserAdd` activates: the named one, or the caller's (direct
/// or through a group) on the resource or an ancestor with the same role template that
/// lasts longest.
fn find_eligible(ctx: &OpContext, new: &NewRequest, facts: &SubmitFacts) -> Result<RoleAssignment> {
    let t = &facts.target;
    let mut subjects = vec![ctx.caller.subject_id.clone()];
    subjects.extend(ctx.access.groups_of(&ctx.caller.subject_id));
    let scopes = ctx.access.ancestors_or_self(&t.resource.id);
    let same_role = |c: &Candidate| {
        c.template_id
            .as_deref()
            .is_some_and(|tpl| tpl.eq_ignore_ascii_case(&t.role.template_id))
    };
    match new.linked_eligible_id.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => {
            let c = facts
                .candidates
                .iter()
                .find(|c| c.assignment.id == id)
                .ok_or_else(|| {
                    DomainError::new(
                        ErrorCode::RoleAssignmentDoesNotExist,
                        format!("eligible assignment `{id}` does not exist"),
                    )
                })?;
            let a = &c.assignment;
            let why = if a.state != AssignmentState::Eligible {
                Some("it is not an eligible assignment")
            } else if !subjects.contains(&a.subject_id) {
                Some("it is not held by the caller or one of the caller's groups")
            } else if !scopes.contains(&a.resource_id) {
                Some("it is not on the requested resource or one of its ancestors")
            } else if !same_role(c) {
                Some("it is for a different role")
            } else if !a.is_current(ctx.now) {
                Some("it is not current")
            } else {
                None
            };
            match why {
                Some(why) => Err(DomainError::policy(format!(
                    "EligibilityRule: eligible assignment `{id}` cannot be activated here: {why}"
                ))),
                None => Ok(a.clone()),
            }
        }
        None => {
            let mut best: Option<&RoleAssignment> = None;
            for c in &facts.candidates {
                let a = &c.assignment;
                let eligible_here = a.state == AssignmentState::Eligible
                    && subjects.contains(&a.subject_id)
                    && scopes.contains(&a.resource_id);
                if eligible_here && a.is_current(ctx.now) && same_role(c) {
                    let longer = best.is_none_or(|b| match (a.schedule.end, b.schedule.end) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(x), Some(y)) => x > y,
                    });
                    if longer {
                        best = Some(a);
                    }
                }
            }
            best.cloned().ok_or_else(|| {
                DomainError::policy(
                    "EligibilityRule: the caller holds no current eligible assignment for this role here",
                )
            })
        }
    }
}

fn user_add(
    ctx: &OpContext,
    new: &NewRequest,
    facts: &SubmitFacts,
    key: &AssignmentKey,
    request_id: &str,
) -> Result<Effect> {
    let t = &facts.target;
    if key.state != AssignmentState::Active {
        return Err(DomainError::bad_request(
            "UserAdd activates an eligible assignment: `assignmentState` must be `Active`",
        ));
    }
    let schedule = resolve_schedule(new.schedule.as_ref(), RequestType::UserAdd, ctx.now)?;
    let eligible = find_eligible(ctx, new, facts)?;
    let (live, mut changes) = split_ended(&facts.in_table, ctx.now);
    if let Some(existing) = live.first() {
        return Err(DomainError::new(
            ErrorCode::RoleAssignmentExists,
            format!(
                "the role is already active on this resource (assignment `{}`)",
                existing.id
            ),
        ));
    }
    let policy = t.setting.rules.policy(RuleCollection::UserMember)?;
    let mut details = vec![grant("EligibilityRule")];
    details.extend(evaluate(&policy, &schedule, ctx, new)?);
    if let Some(limit) = eligible.schedule.end
        && schedule.end.is_none_or(|end| end > limit)
    {
        return Err(DomainError::policy(format!(
            "ExpirationRule: the activation must end by {} when its eligible assignment ends",
            format_datetime(limit)
        )));
    }
    let mut emergency = false;
    if let Some(rule) = policy.approval_required() {
        let bypass = new.emergency && rule.allow_emergency_bypass;
        if !bypass {
            let deadline = ctx
                .now
                .checked_add(
                    SignedDuration::try_from_mins(rule.approval_timeout_minutes)
                        .unwrap_or(SignedDuration::MAX),
                )
                .unwrap_or(Timestamp::MAX);
            details.push(RuleResult {
                rule: "ApprovalRule".into(),
                result: "PendingApproval".into(),
            });
            return Ok(Effect {
                schedule: Some(schedule),
                sub_status: SubStatus::PendingApproval,
                details,
                assignment_id: None,
                linked_eligible_id: Some(eligible.id),
                approval_deadline: Some(deadline),
                emergency: false,
                changes,
            });
        }
        let cap = SignedDuration::try_from_mins(rule.emergency_maximum_minutes)
            .unwrap_or(SignedDuration::ZERO);
        if schedule.duration().is_none_or(|d| d > cap) {
            return Err(DomainError::policy(format!(
                "ApprovalRule: emergency access lasts at most {} minutes",
                rule.emergency_maximum_minutes
            )));
        }
        if new.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(DomainError::policy(
                "JustificationRule: emergency access needs a reason",
            ));
        }
        emergency = true;
        details.push(RuleResult {
            rule: "ApprovalRule".into(),
            result: "EmergencyBypass".into(),
        });
    } else if policy.approval.is_some() {
        details.push(grant("ApprovalRule"));
    }
    let a = activation(ctx, key, &eligible, schedule, request_id);
    let id = a.id.clone();
    changes.push(Change::InsertAssignment {
        assignment: a,
        administers: t.role.administers_access(),
    });
    Ok(Effect {
        schedule: Some(schedule),
        sub_status: started(&schedule, ctx.now),
        details,
        assignment_id: Some(id),
        linked_eligible_id: Some(eligible.id),
        approval_deadline: None,
        emergency,
        changes,
    })
}

/// The activation of `eligible` that request `request_id` creates.
fn activation(
    ctx: &OpContext,
    key: &AssignmentKey,
    eligible: &RoleAssignment,
    schedule: Schedule,
    request_id: &str,
) -> RoleAssignment {
    RoleAssignment {
        id: (ctx.new_id)(),
        resource_id: key.resource_id.clone(),
        role_definition_id: key.role_definition_id.clone(),
        subject_id: key.subject_id.clone(),
        state: AssignmentState::Active,
        linked_eligible_id: Some(eligible.id.clone()),
        schedule,
        request_id: request_id.to_string(),
    }
}

fn user_extend(
    ctx: &OpContext,
    new: &NewRequest,
    facts: &SubmitFacts,
    key: &AssignmentKey,
) -> Result<Effect> {
    let (live, changes) = split_ended(&facts.in_table, ctx.now);
    let a = live
        .into_iter()
        .find(|a| !a.is_activation())
        .ok_or_else(|| {
            DomainError::new(
                ErrorCode::RoleAssignmentDoesNotExist,
                format!(
                    "the caller holds no live {} assignment of this role here",
                    key.state.as_str()
                ),
            )
        })?;
    if !a.ends_within(ctx.now, EXTEND_WINDOW) {
        return Err(DomainError::policy(
            "ExpirationRule: only an assignment ending within 14 days can be extended",
        ));
    }
    let schedule = resolve_change(new.schedule.as_ref(), RequestType::UserExtend, &a, ctx.now)?;
    if schedule.end.is_some() && schedule.end <= a.schedule.end {
        return Err(DomainError::bad_request(
            "UserExtend must move the assignment's end later",
        ));
    }
    let policy = facts
        .target
        .setting
        .rules
        .policy(collection_for(RequestType::UserExtend, key.state))?;
    let details = evaluate(&policy, &schedule, ctx, new)?;
    Ok(Effect::pending_admin(schedule, details, a.id, changes))
}

fn user_renew(
    ctx: &OpContext,
    new: &NewRequest,
    facts: &SubmitFacts,
    key: &AssignmentKey,
) -> Result<Effect> {
    ensure_nothing_live(&facts.in_table, ctx.now)?;
    let since = ctx.now.checked_sub(RENEW_WINDOW).unwrap_or(Timestamp::MIN);
    let (a, _) =
        latest_expired(&facts.in_table, &facts.in_history, ctx.now, since).ok_or_else(|| {
            DomainError::new(
                ErrorCode::RoleAssignmentDoesNotExist,
                "the caller holds no assignment of this role here that expired in the last 30 days",
            )
        })?;
    let schedule = resolve_schedule(new.schedule.as_ref(), RequestType::UserRenew, ctx.now)?;
    let policy = facts
        .target
        .setting
        .rules
        .policy(collection_for(RequestType::UserRenew, key.state))?;
    let details = evaluate(&policy, &schedule, ctx, new)?;
    Ok(Effect::pending_admin(schedule, details, a.id, Vec::new()))
}

/// Cancels the request of `p` (decisions.md §13): its subject or requester, tenant
/// administrators and R3 holders on its resource may, while it is open; a granted
/// assignment that has not started ends with it.
pub fn decide_cancel(
    ctx: &OpContext,
    p: &PendingFacts,
) -> Result<(RoleAssignmentRequest, Vec<Change>)> {
    let r = &p.request;
    let own = r.subject_id == ctx.caller.subject_id || r.requested_by == ctx.caller.subject_id;
    if !own
        && !ctx
            .caller
            .may_administer(ctx.access, &r.resource_id, ctx.now)
    {
        return Err(DomainError::denied(
            "only the requester, its subject or an administrator of the resource may cancel a request",
        ));
    }
    let status = r.status_at(ctx.now);
    if !status.is_open() {
        return Err(DomainError::new(
            ErrorCode::RequestCannotBeCancelled,
            format!(
                "request `{}` is `{}` and can no longer be canceled",
                r.id,
                status.as_str()
            ),
        ));
    }
    let (r, mut changes) = canceled(ctx, p);
    changes.push(Change::Audit(request_record(
        ctx,
        &r,
        &p.names,
        format!("Cancel request ({})", r.kind.as_str()),
        None,
    )));
    Ok((r, changes))
}

/// Whether `r` may be decided by the caller with `input` at all (before any fact is
/// loaded): the decision parses, the request awaits one, and it is not the caller's own.
/// Returns whether the decision approves.
pub fn decidable(
    ctx: &OpContext,
    r: &RoleAssignmentRequest,
    input: &DecisionInput,
) -> Result<bool> {
    let approve = match input.decision.as_str() {
        d if d.eq_ignore_ascii_case("AdminApproved") => true,
        d if d.eq_ignore_ascii_case("AdminDenied") => false,
        other => {
            return Err(DomainError::bad_request(format!(
                "`decision` must be `AdminApproved` or `AdminDenied`, not `{other}`"
            )));
        }
    };
    awaits_decision_by(&ctx.caller.subject_id, ctx.now, r)?;
    Ok(approve)
}

/// Whether `r` awaits a decision at `now` (`PendingApproval` or `PendingAdminDecision`)
/// that `caller_id` may take part in: nobody decides their own request.
pub fn awaits_decision_by(
    caller_id: &str,
    now: Timestamp,
    r: &RoleAssignmentRequest,
) -> Result<()> {
    let status = r.status_at(now);
    if !matches!(
        status,
        SubStatus::PendingApproval | SubStatus::PendingAdminDecision
    ) {
        return Err(DomainError::new(
            ErrorCode::RequestCannotBeUpdated,
            format!(
                "request `{}` is `{}`, not awaiting a decision",
                r.id,
                status.as_str()
            ),
        ));
    }
    if r.subject_id == caller_id || r.requested_by == caller_id {
        return Err(DomainError::denied("nobody may decide their own request"));
    }
    Ok(())
}

/// Decides pending request `r` (`updateRequest`, already [`decidable`]): approvers decide
/// `PendingApproval` activations (N distinct approvals grant, one denial closes),
/// administrators of the resource decide `PendingAdminDecision` extensions and renewals.
pub fn decide_request(
    ctx: &OpContext,
    mut r: RoleAssignmentRequest,
    approve: bool,
    input: &DecisionInput,
    facts: &DecisionFacts,
) -> Result<(RoleAssignmentRequest, Vec<Change>)> {
    let t = &facts.target;
    let policy = t.setting.rules.policy(RuleCollection::UserMember)?;
    let required = may_decide(ctx.caller, ctx.access, ctx.now, &r, &policy)?;
    if facts
        .earlier
        .iter()
        .any(|a| a.approver_id == ctx.caller.subject_id)
    {
        return Err(DomainError::new(
            ErrorCode::RequestCannotBeUpdated,
            "the caller has already decided this request",
        ));
    }
    let mut changes = vec![Change::InsertApproval(Approval {
        request_id: r.id.clone(),
        approver_id: ctx.caller.subject_id.clone(),
        approver_name: ctx.caller.display_name.clone(),
        approved: approve,
        justification: input.reason.clone(),
        at: ctx.now,
    })];
    let approvals = facts.earlier.iter().filter(|a| a.approved).count() + usize::from(approve);
    if !approve {
        r.sub_status = SubStatus::AdminDenied;
    } else if approvals >= required as usize {
        let (sub_status, effect) = match r.kind {
            RequestType::UserAdd => provision_approved_activation(ctx, &mut r, facts),
            _ => carry_out_admin_decision(ctx, &mut r, facts, input)?,
        };
        r.sub_status = sub_status;
        changes.extend(effect);
        r.status_details.retain(|d| d.rule != "ApprovalRule");
        r.status_details.push(grant("ApprovalRule"));
    }
    r.version += 1;
    changes.push(Change::UpdateRequest(r.clone()));
    if let Some(event) = decided_event(&r) {
        changes.push(Change::Email {
            request: r.clone(),
            event,
        });
    }
    let what = if approve { "Approve" } else { "Deny" };
    changes.push(Change::Audit(request_record(
        ctx,
        &r,
        &t.names(),
        format!("{what} request ({})", r.kind.as_str()),
        input.reason.as_deref(),
    )));
    Ok((r, changes))
}

/// Whether `caller_id`, a member of `groups`, is listed as an approver by `policy`'s
/// ApprovalRule (as a user, or through a listed group).
pub fn listed_approver(policy: &Policy, caller_id: &str, groups: &[String]) -> bool {
    policy.approval.as_ref().is_some_and(|rule| {
        rule.approvers.iter().any(|a| match a.kind {
            ApproverKind::User => a.id == caller_id,
            ApproverKind::Group => groups.contains(&a.id),
        })
    })
}

/// Whether `caller` may decide pending request `r` at `now` under `policy` (its role's
/// user-member rules), and how many approvals grant it (decisions.md §6): a `PendingApproval`
/// activation is decided by a listed approver (a listed user or a member of a listed group)
/// or, when none is listed, by an administrator of the resource; a `PendingAdminDecision`
/// extension or renewal by an administrator of the resource. Whether the request awaits a
/// decision and is not the caller's own is [`decidable`]'s.
pub fn may_decide(
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
    r: &RoleAssignmentRequest,
    policy: &Policy,
) -> Result<u32> {
    let administers = || caller.may_administer(access, &r.resource_id, now);
    if r.status_at(now) != SubStatus::PendingApproval {
        return if administers() {
            Ok(1)
        } else {
            Err(DomainError::denied(
                "only an administrator of the resource may decide this request",
            ))
        };
    }
    let none_listed = policy
        .approval
        .as_ref()
        .is_none_or(|a| a.approvers.is_empty());
    if none_listed && !administers() {
        return Err(DomainError::denied(
            "only an administrator of the resource may approve this request",
        ));
    }
    if !none_listed {
        let groups = access.groups_of(&caller.subject_id);
        if !listed_approver(policy, &caller.subject_id, &groups) {
            return Err(DomainError::denied(
                "the caller is not an approver of this role",
            ));
        }
    }
    Ok(policy
        .approval
        .as_ref()
        .map_or(1, |a| a.required_approvals.max(1)))
}

/// Carries out the last approval an activation needed: the activation starts (or fails when
/// the eligibility is gone or the role became active meanwhile).
fn provision_approved_activation(
    ctx: &OpContext,
    r: &mut RoleAssignmentRequest,
    facts: &DecisionFacts,
) -> (SubStatus, Vec<Change>) {
    let key = r.key();
    // The requester must still hold the eligibility, directly or through a group.
    let mut holders = vec![r.subject_id.clone()];
    holders.extend(ctx.access.groups_of(&r.subject_id));
    let Some(eligible) = facts
        .eligible
        .as_ref()
        .filter(|e| e.is_current(ctx.now) && holders.contains(&e.subject_id))
    else {
        return (SubStatus::Failed, Vec::new());
    };
    let (live, mut changes) = split_ended(&facts.in_table, ctx.now);
    if !live.is_empty() {
        return (SubStatus::Failed, changes);
    }
    let Some(requested) = r.schedule else {
        return (SubStatus::Failed, changes);
    };
    // The activation lasts as long as asked, counted from the approval if that is later
    // than the requested start, and never past the eligible assignment's end.
    let start = requested.start.max(ctx.now);
    let end = match requested.duration() {
        Some(d) => start.checked_add(d).ok(),
        None => None,
    };
    let end = match (end, eligible.schedule.end) {
        (Some(e), Some(limit)) => Some(e.min(limit)),
        (None, limit) => limit,
        (e, None) => e,
    };
    let schedule = Schedule { start, end };
    r.schedule = Some(schedule);
    let a = activation(ctx, &key, eligible, schedule, &r.id);
    r.assignment_id = Some(a.id.clone());
    changes.push(Change::InsertAssignment {
        assignment: a,
        administers: facts.target.role.administers_access(),
    });
    (started(&schedule, ctx.now), changes)
}

/// Carries out an administrator's approval of an extension or a renewal.
fn carry_out_admin_decision(
    ctx: &OpContext,
    r: &mut RoleAssignmentRequest,
    facts: &DecisionFacts,
    input: &DecisionInput,
) -> Result<(SubStatus, Vec<Change>)> {
    let t = &facts.target;
    let schedule = match &input.schedule {
        Some(s) if s.end.is_some() || s.duration.is_some() => Schedule::resolve(s, ctx.now)?,
        _ => r
            .schedule
            .ok_or_else(|| DomainError::internal("pending request without schedule"))?,
    };
    t.setting
        .rules
        .policy(collection_for(r.kind, r.state))?
        .check_expiration(schedule.duration())?;
    let administers = t.role.administers_access();
    let (a, changes) = match r.kind {
        RequestType::UserExtend => {
            let (live, mut changes) = split_ended(&facts.in_table, ctx.now);
            // Activations are never extended: they are bounded by their eligibility.
            let mut a = live
                .into_iter()
                .find(|a| !a.is_activation())
                .ok_or_else(|| {
                    DomainError::new(
                        ErrorCode::RoleAssignmentDoesNotExist,
                        "the assignment to extend no longer exists",
                    )
                })?;
            a.schedule = schedule;
            changes.push(Change::UpdateAssignment {
                assignment: a.clone(),
                administers,
            });
            (a, changes)
        }
        _ => {
            ensure_nothing_live(&facts.in_table, ctx.now)?;
            let since = r
                .requested_at
                .checked_sub(RENEW_WINDOW)
                .unwrap_or(Timestamp::MIN);
            let (mut a, in_table) =
                latest_expired(&facts.in_table, &facts.in_history, ctx.now, since).ok_or_else(
                    || {
                        DomainError::new(
                            ErrorCode::RoleAssignmentDoesNotExist,
                            "the assignment to renew no longer exists",
                        )
                    },
                )?;
            a.schedule = schedule;
            let change = renewal(a.clone(), in_table, administers);
            (a, vec![change])
        }
    };
    r.schedule = Some(schedule);
    r.assignment_id = Some(a.id.clone());
    Ok((started(&schedule, ctx.now), changes))
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sequence_tests.rs"]
mod sequence_tests;
