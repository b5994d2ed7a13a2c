//! Role assignment requests (`governanceRoleAssignmentRequest`): the only way assignments
//! change. This module holds the nine request types, the status state machine and every
//! precondition of graph-pim-v2.md §6.15/§7.2 and decisions.md §6 and §13: [`submit`],
//! [`cancel`] and [`decide`] run inside one write transaction and return the committed
//! request with the access changes it made.

use crate::access::{AccessChange, AccessView, OpContext};
use crate::assignment::{AssignmentState, EndReason, RoleAssignment};
use crate::audit::{AuditRecord, Target};
use crate::error::{DomainError, ErrorCode, Result};
use crate::notification::{self, ChangeType};
use crate::policy::{ApproverKind, Policy, RequestFacts, RuleCollection, RuleResult, TicketInfo};
use crate::resource::{Resource, ResourceStatus};
use crate::role::{RoleDefinition, RoleSetting};
use crate::schedule::{Schedule, ScheduleInput, format_datetime};
use crate::store::{AssignmentKey, Tx};
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

    fn key(&self) -> AssignmentKey {
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

fn grant(rule: &str) -> RuleResult {
    RuleResult {
        rule: rule.into(),
        result: "Grant".into(),
    }
}

fn collection_for(kind: RequestType, state: AssignmentState) -> RuleCollection {
    match (kind, state) {
        (RequestType::UserAdd, _) => RuleCollection::UserMember,
        (_, AssignmentState::Eligible) => RuleCollection::AdminEligible,
        (_, AssignmentState::Active) => RuleCollection::AdminMember,
    }
}

struct Target3 {
    resource: Resource,
    role: RoleDefinition,
    setting: RoleSetting,
}

fn load_target(tx: &mut dyn Tx, resource_id: &str, role_definition_id: &str) -> Result<Target3> {
    let resource = tx.resource(resource_id)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::ResourceNotFoundForRequest,
            format!("resource `{resource_id}` does not exist"),
        )
    })?;
    if resource.status == ResourceStatus::Locked {
        return Err(DomainError::new(
            ErrorCode::ResourceIsLocked,
            format!("resource `{resource_id}` is locked"),
        ));
    }
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

/// A schedule for a change of an existing assignment: a missing start keeps its start.
fn resolve_change(
    input: Option<&ScheduleInput>,
    kind: RequestType,
    existing: &RoleAssignment,
    now: Timestamp,
) -> Result<Schedule> {
    let mut input = input.cloned().ok_or_else(|| {
        DomainError::bad_request(format!("schedule is required for {}", kind.as_str()))
    })?;
    if input.start.is_none() && kind != RequestType::AdminRenew && kind != RequestType::UserRenew {
        input.start = Some(format_datetime(existing.schedule.start));
    }
    Schedule::resolve(&input, now)
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

/// Moves ended rows of `key` to history so a new live row can take the key.
fn clear_ended(
    tx: &mut dyn Tx,
    key: &AssignmentKey,
    now: Timestamp,
) -> Result<Vec<RoleAssignment>> {
    let mut live = Vec::new();
    for a in tx.assignments_with_key(key)? {
        if a.is_live(now) {
            live.push(a);
        } else if let Some(end) = a.schedule.end {
            tx.end_assignment(&a, end, EndReason::Expired, None)?;
            notification::assignment_changed(tx, now, &a, ChangeType::Deleted)?;
        }
    }
    Ok(live)
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
    changes: Vec<AccessChange>,
}

impl Effect {
    fn closed(
        sub_status: SubStatus,
        assignment_id: Option<String>,
        changes: Vec<AccessChange>,
    ) -> Self {
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
}

fn started(schedule: &Schedule, now: Timestamp) -> SubStatus {
    if schedule.start <= now {
        SubStatus::Provisioned
    } else {
        SubStatus::Granted
    }
}

/// Submits a new request: checks who may make it, its preconditions and the role-setting
/// rules, applies it, and records it with its audit record.
pub fn submit(tx: &mut dyn Tx, ctx: &OpContext, new: NewRequest) -> Result<Outcome> {
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
    let target = load_target(tx, &new.resource_id, &new.role_definition_id)?;
    let subject = tx
        .subject(&new.subject_id)?
        .filter(|s| s.active)
        .ok_or_else(|| {
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
    if let Some(mut pending) = tx.pending_request(&key)? {
        let mut now_status = pending.status_at(ctx.now);
        if now_status.is_open() && removal {
            // A pending request never blocks a revocation: it is canceled with it.
            now_status = SubStatus::Canceled;
            audit_side_effect(
                tx,
                ctx,
                "Cancel request (assignment removed)",
                "Request",
                &pending.id,
            )?;
        } else if now_status.is_open() {
            return Err(DomainError::new(
                ErrorCode::PendingRoleAssignmentRequest,
                format!(
                    "request `{}` for this role, resource and subject is still pending",
                    pending.id
                ),
            ));
        }
        pending.sub_status = now_status;
        pending.version += 1;
        tx.update_request(&pending)?;
        notification::request_changed(tx, ctx.now, &pending, ChangeType::Updated)?;
        // The stored state catches up with the clock here, before the scheduler got to it:
        // audited as the scheduler would have (a cancellation is audited above).
        let caught_up = match now_status {
            SubStatus::TimedOut => Some(crate::scheduler::TIME_OUT_ACTIVITY),
            SubStatus::Provisioned => Some(crate::scheduler::PROVISION_ACTIVITY),
            _ => None,
        };
        if let Some(activity) = caught_up {
            let record = crate::scheduler::request_record(tx, ctx, &pending, activity)?;
            tx.append_audit(&record)?;
        }
        if now_status == SubStatus::TimedOut {
            crate::email::notify(tx, ctx, &pending, crate::email::Event::TimedOut)?;
        }
    }
    // Known before the effect, so an assignment the request creates names it.
    let request_id = (ctx.new_id)();
    let effect = match kind {
        RequestType::AdminAdd => admin_add(tx, ctx, &new, &target, &key, &request_id)?,
        RequestType::AdminUpdate | RequestType::AdminExtend => {
            admin_change(tx, ctx, &new, kind, &target, &key)?
        }
        RequestType::AdminRenew => admin_renew(tx, ctx, &new, &target, &key)?,
        RequestType::AdminRemove => remove(tx, ctx, &key, false, None)?,
        RequestType::UserAdd => user_add(tx, ctx, &new, &target, &key, &request_id)?,
        RequestType::UserRemove => remove(tx, ctx, &key, true, new.linked_eligible_id.as_deref())?,
        RequestType::UserExtend => user_extend(tx, ctx, &new, &target, &key)?,
        RequestType::UserRenew => user_renew(tx, ctx, &new, &target, &key)?,
    };
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
    tx.insert_request(&request)?;
    notification::request_changed(tx, ctx.now, &request, ChangeType::Created)?;
    if request.sub_status == SubStatus::PendingApproval {
        let policy = target.setting.rules.policy(RuleCollection::UserMember)?;
        let approvers: Vec<String> = policy
            .approval
            .iter()
            .flat_map(|rule| rule.approvers.iter().map(|a| a.id.clone()))
            .collect();
        tx.set_request_approvers(&request.id, &approvers)?;
    }
    crate::email::submitted(tx, ctx, &request)?;
    tx.append_audit(&audit(
        ctx,
        &request,
        &target.role,
        &target.resource,
        activity(&request),
        None,
    ))?;
    Ok(Outcome {
        request,
        changes: effect.changes,
    })
}

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

fn audit(
    ctx: &OpContext,
    r: &RoleAssignmentRequest,
    role: &RoleDefinition,
    resource: &Resource,
    activity: String,
    approver_reason: Option<&str>,
) -> AuditRecord {
    let mut details = vec![
        ("requestId".to_string(), r.id.clone()),
        ("requestType".to_string(), r.kind.as_str().to_string()),
        ("subStatus".to_string(), r.sub_status.as_str().to_string()),
        ("roleDefinitionId".to_string(), role.id.clone()),
        ("resourceId".to_string(), resource.id.clone()),
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
        Target::new("Role", &role.id, &role.display_name),
        Target::new("Resource", &resource.id, &resource.display_name),
        Target::new("Subject", &r.subject_id, &r.subject_id),
    ];
    if let Some(a) = &r.assignment_id {
        targets.push(Target::new("RoleAssignment", a, a));
    }
    AuditRecord {
        id: (ctx.new_id)(),
        category: "RoleManagement".into(),
        correlation_id: ctx.correlation_id.to_string(),
        result: "success".into(),
        result_reason: r.sub_status.as_str().into(),
        activity_display_name: activity,
        activity_date_time: ctx.now,
        operation_type: r.kind.as_str().into(),
        initiated_by: ctx.initiator(),
        target_resources: targets,
        additional_details: details,
    }
}

fn admin_add(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    new: &NewRequest,
    t: &Target3,
    key: &AssignmentKey,
    request_id: &str,
) -> Result<Effect> {
    let schedule = resolve_schedule(new.schedule.as_ref(), RequestType::AdminAdd, ctx.now)?;
    let policy = t
        .setting
        .rules
        .policy(collection_for(RequestType::AdminAdd, key.state))?;
    let mut details = vec![grant("AdminRequestRule")];
    details.extend(evaluate(&policy, &schedule, ctx, new)?);
    if let Some(existing) = clear_ended(tx, key, ctx.now)?
        .into_iter()
        .find(|a| !a.is_activation())
    {
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
    tx.insert_assignment(&a)?;
    notification::assignment_changed(tx, ctx.now, &a, ChangeType::Created)?;
    Ok(Effect {
        schedule: Some(schedule),
        sub_status: started(&schedule, ctx.now),
        details,
        assignment_id: Some(a.id.clone()),
        linked_eligible_id: None,
        approval_deadline: None,
        emergency: false,
        changes: vec![AccessChange::Upsert(a, t.role.administers_access())],
    })
}

fn live_direct(
    tx: &mut dyn Tx,
    key: &AssignmentKey,
    now: Timestamp,
) -> Result<Option<RoleAssignment>> {
    // Activations are never extended, updated or renewed: they are bounded by their
    // eligible assignment and the activation cap.
    Ok(clear_ended(tx, key, now)?
        .into_iter()
        .find(|a| !a.is_activation()))
}

fn admin_change(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    new: &NewRequest,
    kind: RequestType,
    t: &Target3,
    key: &AssignmentKey,
) -> Result<Effect> {
    let mut a = live_direct(tx, key, ctx.now)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::RoleAssignmentDoesNotExist,
            format!(
                "no live {} assignment to {}",
                key.state.as_str(),
                verb(kind)
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
    tx.update_assignment(&a)?;
    notification::assignment_changed(tx, ctx.now, &a, ChangeType::Updated)?;
    let administers = t.role.administers_access();
    let bounded = bound_activations(tx, ctx, &a, administers)?;
    let mut changes = vec![AccessChange::Upsert(a.clone(), administers)];
    changes.extend(bounded);
    Ok(Effect {
        schedule: Some(schedule),
        sub_status: started(&schedule, ctx.now),
        details,
        assignment_id: Some(a.id.clone()),
        linked_eligible_id: None,
        approval_deadline: None,
        emergency: false,
        changes,
    })
}

fn verb(kind: RequestType) -> &'static str {
    match kind {
        RequestType::AdminUpdate => "update",
        RequestType::AdminExtend | RequestType::UserExtend => "extend",
        RequestType::AdminRenew | RequestType::UserRenew => "renew",
        _ => "remove",
    }
}

/// The most recently expired assignment of `key` ended after `since`, and whether it is
/// still in the live table (not yet swept to history).
fn latest_expired(
    tx: &mut dyn Tx,
    key: &AssignmentKey,
    now: Timestamp,
    since: Timestamp,
) -> Result<Option<(RoleAssignment, bool)>> {
    let mut best: Option<(RoleAssignment, bool)> = None;
    let in_table = tx
        .assignments_with_key(key)?
        .into_iter()
        .filter(|a| a.schedule.has_ended(now) && !a.is_activation())
        .map(|a| (a, true));
    let in_history = tx
        .expired_in_history(key, since)?
        .into_iter()
        .filter(|a| !a.is_activation())
        .map(|a| (a, false));
    for (a, live_table) in in_table.chain(in_history) {
        if a.schedule.end.is_some_and(|e| e > since)
            && best
                .as_ref()
                .is_none_or(|(b, _)| a.schedule.end > b.schedule.end)
        {
            best = Some((a, live_table));
        }
    }
    Ok(best)
}

fn ensure_nothing_live(tx: &mut dyn Tx, key: &AssignmentKey, now: Timestamp) -> Result<()> {
    if let Some(a) = tx
        .assignments_with_key(key)?
        .into_iter()
        .find(|a| a.is_live(now) && !a.is_activation())
    {
        return Err(DomainError::new(
            ErrorCode::RoleAssignmentExists,
            format!("assignment `{}` has not expired; extend it instead", a.id),
        ));
    }
    Ok(())
}

fn renew_into_place(
    tx: &mut dyn Tx,
    mut a: RoleAssignment,
    in_table: bool,
    schedule: Schedule,
    now: Timestamp,
) -> Result<RoleAssignment> {
    a.schedule = schedule;
    if in_table {
        tx.update_assignment(&a)?;
    } else {
        tx.restore_assignment(&a)?;
    }
    notification::assignment_changed(tx, now, &a, ChangeType::Updated)?;
    Ok(a)
}

fn admin_renew(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    new: &NewRequest,
    t: &Target3,
    key: &AssignmentKey,
) -> Result<Effect> {
    ensure_nothing_live(tx, key, ctx.now)?;
    let (a, in_table) = latest_expired(tx, key, ctx.now, Timestamp::MIN)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::RoleAssignmentDoesNotExist,
            format!("no expired {} assignment to renew", key.state.as_str()),
        )
    })?;
    let schedule = resolve_schedule(new.schedule.as_ref(), RequestType::AdminRenew, ctx.now)?;
    let policy = t
        .setting
        .rules
        .policy(collection_for(RequestType::AdminRenew, key.state))?;
    let mut details = vec![grant("AdminRequestRule")];
    details.extend(evaluate(&policy, &schedule, ctx, new)?);
    let a = renew_into_place(tx, a, in_table, schedule, ctx.now)?;
    Ok(Effect {
        schedule: Some(schedule),
        sub_status: started(&schedule, ctx.now),
        details,
        assignment_id: Some(a.id.clone()),
        linked_eligible_id: None,
        approval_deadline: None,
        emergency: false,
        changes: vec![AccessChange::Upsert(a, t.role.administers_access())],
    })
}

/// Ends `a` (and, for an eligible assignment, its activations and pending activation
/// requests), returning the access changes.
pub(crate) fn end_with_dependents(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    a: &RoleAssignment,
    reason: EndReason,
) -> Result<Vec<AccessChange>> {
    let mut changes = Vec::new();
    tx.end_assignment(a, ctx.now, reason, None)?;
    notification::assignment_changed(tx, ctx.now, a, ChangeType::Deleted)?;
    changes.push(AccessChange::Remove {
        subject_id: a.subject_id.clone(),
        assignment_id: a.id.clone(),
    });
    if a.state == AssignmentState::Eligible {
        for x in tx
            .activations_of(&a.id)?
            .into_iter()
            .filter(|x| x.is_live(ctx.now))
        {
            changes.extend(end_activation(
                tx,
                ctx,
                &x,
                "Deactivate role (eligible assignment ended)",
            )?);
        }
        for pending in tx.pending_requests_linked_to(&a.id)? {
            cancel_side_effect(
                tx,
                ctx,
                pending,
                "Cancel request (eligible assignment ended)",
            )?;
        }
    }
    Ok(changes)
}

/// Ends one activation as a consequence of another change, audited.
fn end_activation(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    x: &RoleAssignment,
    activity: &str,
) -> Result<Vec<AccessChange>> {
    tx.end_assignment(x, ctx.now, EndReason::Removed, None)?;
    notification::assignment_changed(tx, ctx.now, x, ChangeType::Deleted)?;
    audit_side_effect(tx, ctx, activity, "RoleAssignment", &x.id)?;
    Ok(vec![AccessChange::Remove {
        subject_id: x.subject_id.clone(),
        assignment_id: x.id.clone(),
    }])
}

/// Cancels a pending request as a consequence of another change, audited.
fn cancel_side_effect(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    mut r: RoleAssignmentRequest,
    activity: &str,
) -> Result<()> {
    r.sub_status = SubStatus::Canceled;
    r.version += 1;
    tx.update_request(&r)?;
    notification::request_changed(tx, ctx.now, &r, ChangeType::Updated)?;
    audit_side_effect(tx, ctx, activity, "Request", &r.id)
}

/// One audit record for a change made as a consequence of the operation being audited.
fn audit_side_effect(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    activity: &str,
    kind: &str,
    id: &str,
) -> Result<()> {
    let key = if kind == "Request" {
        "requestId"
    } else {
        "assignmentId"
    };
    tx.append_audit(&AuditRecord {
        id: (ctx.new_id)(),
        category: "RoleManagement".into(),
        correlation_id: ctx.correlation_id.to_string(),
        result: "success".into(),
        result_reason: String::new(),
        activity_display_name: activity.into(),
        activity_date_time: ctx.now,
        operation_type: "Update".into(),
        initiated_by: ctx.initiator(),
        target_resources: vec![Target::new(kind, id, id)],
        additional_details: vec![(key.into(), id.into())],
    })
}

/// Ends or shortens the activations of eligible assignment `e` so none outlives it (after
/// its schedule changed).
fn bound_activations(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    e: &RoleAssignment,
    administers: bool,
) -> Result<Vec<AccessChange>> {
    let mut changes = Vec::new();
    if e.state != AssignmentState::Eligible {
        return Ok(changes);
    }
    for mut x in tx
        .activations_of(&e.id)?
        .into_iter()
        .filter(|x| x.is_live(ctx.now))
    {
        if !e.is_current(ctx.now) {
            changes.extend(end_activation(
                tx,
                ctx,
                &x,
                "Deactivate role (eligible assignment changed)",
            )?);
        } else if let Some(limit) = e.schedule.end
            && x.schedule.end.is_none_or(|end| end > limit)
        {
            x.schedule.end = Some(limit);
            tx.update_assignment(&x)?;
            notification::assignment_changed(tx, ctx.now, &x, ChangeType::Updated)?;
            audit_side_effect(
                tx,
                ctx,
                "Shorten activation (eligible assignment changed)",
                "RoleAssignment",
                &x.id,
            )?;
            changes.push(AccessChange::Upsert(x, administers));
        }
    }
    Ok(changes)
}

/// Ends the activations and cancels the pending activation requests of `members` whose
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
                cancel_side_effect(tx, ctx, r, "Cancel request (group membership ended)")?;
            }
        }
    }
    Ok(changes)
}

fn remove(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    key: &AssignmentKey,
    activations_only: bool,
    linked: Option<&str>,
) -> Result<Effect> {
    if activations_only && key.state != AssignmentState::Active {
        return Err(DomainError::bad_request(
            "UserRemove deactivates an activation: `assignmentState` must be `Active`",
        ));
    }
    let targets: Vec<RoleAssignment> = clear_ended(tx, key, ctx.now)?
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
    let mut changes = Vec::new();
    for a in &targets {
        changes.extend(end_with_dependents(tx, ctx, a, EndReason::Removed)?);
    }
    Ok(Effect::closed(
        SubStatus::Revoked,
        targets.first().map(|a| a.id.clone()),
        changes,
    ))
}

/// Finds the eligible assignment a `UserAdd` activates: the named one, or the caller's
/// (direct or through a group) on the resource or an ancestor with the same role template.
fn find_eligible(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    new: &NewRequest,
    t: &Target3,
) -> Result<RoleAssignment> {
    let mut subjects = vec![ctx.caller.subject_id.clone()];
    subjects.extend(ctx.access.groups_of(&ctx.caller.subject_id));
    let scopes = ctx.access.ancestors_or_self(&t.resource.id);
    let same_role = |tx: &mut dyn Tx, a: &RoleAssignment| -> Result<bool> {
        Ok(tx
            .role_definition(&a.role_definition_id)?
            .is_some_and(|d| d.template_id.eq_ignore_ascii_case(&t.role.template_id)))
    };
    match new.linked_eligible_id.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => {
            let a = tx.assignment(id)?.ok_or_else(|| {
                DomainError::new(
                    ErrorCode::RoleAssignmentDoesNotExist,
                    format!("eligible assignment `{id}` does not exist"),
                )
            })?;
            let why = if a.state != AssignmentState::Eligible {
                Some("it is not an eligible assignment")
            } else if !subjects.contains(&a.subject_id) {
                Some("it is not held by the caller or one of the caller's groups")
            } else if !scopes.contains(&a.resource_id) {
                Some("it is not on the requested resource or one of its ancestors")
            } else if !same_role(tx, &a)? {
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
                None => Ok(a),
            }
        }
        None => {
            let mut best: Option<RoleAssignment> = None;
            for a in tx.assignments_of(&subjects, &scopes, AssignmentState::Eligible)? {
                if a.is_current(ctx.now) && same_role(tx, &a)? {
                    let longer =
                        best.as_ref()
                            .is_none_or(|b| match (a.schedule.end, b.schedule.end) {
                                (None, _) => true,
                                (Some(_), None) => false,
                                (Some(x), Some(y)) => x > y,
                            });
                    if longer {
                        best = Some(a);
                    }
                }
            }
            best.ok_or_else(|| DomainError::policy("EligibilityRule: the caller holds no current eligible assignment for this role here"))
        }
    }
}

fn user_add(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    new: &NewRequest,
    t: &Target3,
    key: &AssignmentKey,
    request_id: &str,
) -> Result<Effect> {
    if key.state != AssignmentState::Active {
        return Err(DomainError::bad_request(
            "UserAdd activates an eligible assignment: `assignmentState` must be `Active`",
        ));
    }
    let schedule = resolve_schedule(new.schedule.as_ref(), RequestType::UserAdd, ctx.now)?;
    let eligible = find_eligible(tx, ctx, new, t)?;
    if let Some(existing) = clear_ended(tx, key, ctx.now)?.into_iter().next() {
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
    if let Some(rule) = policy.approval.as_ref().filter(|r| r.enabled) {
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
                changes: Vec::new(),
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
    tx.insert_assignment(&a)?;
    notification::assignment_changed(tx, ctx.now, &a, ChangeType::Created)?;
    Ok(Effect {
        schedule: Some(schedule),
        sub_status: started(&schedule, ctx.now),
        details,
        assignment_id: Some(a.id.clone()),
        linked_eligible_id: Some(eligible.id),
        approval_deadline: None,
        emergency,
        changes: vec![AccessChange::Upsert(a, t.role.administers_access())],
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

fn pending_admin(schedule: Schedule, details: Vec<RuleResult>, assignment_id: String) -> Effect {
    Effect {
        schedule: Some(schedule),
        sub_status: SubStatus::PendingAdminDecision,
        details,
        assignment_id: Some(assignment_id),
        linked_eligible_id: None,
        approval_deadline: None,
        emergency: false,
        changes: Vec::new(),
    }
}

fn user_extend(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    new: &NewRequest,
    t: &Target3,
    key: &AssignmentKey,
) -> Result<Effect> {
    let a = live_direct(tx, key, ctx.now)?.ok_or_else(|| {
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
    let policy = t
        .setting
        .rules
        .policy(collection_for(RequestType::UserExtend, key.state))?;
    let details = evaluate(&policy, &schedule, ctx, new)?;
    Ok(pending_admin(schedule, details, a.id))
}

fn user_renew(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    new: &NewRequest,
    t: &Target3,
    key: &AssignmentKey,
) -> Result<Effect> {
    ensure_nothing_live(tx, key, ctx.now)?;
    let since = ctx.now.checked_sub(RENEW_WINDOW).unwrap_or(Timestamp::MIN);
    let (a, _) = latest_expired(tx, key, ctx.now, since)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::RoleAssignmentDoesNotExist,
            "the caller holds no assignment of this role here that expired in the last 30 days",
        )
    })?;
    let schedule = resolve_schedule(new.schedule.as_ref(), RequestType::UserRenew, ctx.now)?;
    let policy = t
        .setting
        .rules
        .policy(collection_for(RequestType::UserRenew, key.state))?;
    let details = evaluate(&policy, &schedule, ctx, new)?;
    Ok(pending_admin(schedule, details, a.id))
}

/// The caller may cancel: the request's subject or requester, tenant administrators and
/// R3 holders on its resource (decisions.md §13).
pub fn cancel(tx: &mut dyn Tx, ctx: &OpContext, id: &str) -> Result<Outcome> {
    let mut r = tx.request(id)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::RoleAssignmentRequestNotFoundForAction,
            format!("request `{id}` does not exist"),
        )
    })?;
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
                "request `{id}` is `{}` and can no longer be canceled",
                status.as_str()
            ),
        ));
    }
    let mut changes = Vec::new();
    if status == SubStatus::Granted
        && let Some(a) = r
            .assignment_id
            .as_deref()
            .map(|a| tx.assignment(a))
            .transpose()?
            .flatten()
    {
        tx.end_assignment(&a, ctx.now, EndReason::Canceled, Some(&r.id))?;
        notification::assignment_changed(tx, ctx.now, &a, ChangeType::Deleted)?;
        changes.push(AccessChange::Remove {
            subject_id: a.subject_id.clone(),
            assignment_id: a.id.clone(),
        });
    }
    r.sub_status = SubStatus::Canceled;
    r.version += 1;
    tx.update_request(&r)?;
    notification::request_changed(tx, ctx.now, &r, ChangeType::Updated)?;
    let (role, resource) = role_and_resource(tx, &r)?;
    tx.append_audit(&audit(
        ctx,
        &r,
        &role,
        &resource,
        format!("Cancel request ({})", r.kind.as_str()),
        None,
    ))?;
    Ok(Outcome {
        request: r,
        changes,
    })
}

fn role_and_resource(
    tx: &mut dyn Tx,
    r: &RoleAssignmentRequest,
) -> Result<(RoleDefinition, Resource)> {
    let role = tx
        .role_definition(&r.role_definition_id)?
        .ok_or_else(|| DomainError::internal("request without role definition"))?;
    let resource = tx
        .resource(&r.resource_id)?
        .ok_or_else(|| DomainError::internal("request without resource"))?;
    Ok((role, resource))
}

/// Decides a pending request (`updateRequest`): approvers decide `PendingApproval`
/// activations (N distinct approvals grant, one denial closes), administrators of the
/// resource decide `PendingAdminDecision` extensions and renewals. Nobody decides their own.
pub fn decide(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    id: &str,
    input: &DecisionInput,
) -> Result<Outcome> {
    let mut r = tx.request(id)?.ok_or_else(|| {
        DomainError::new(
            ErrorCode::RoleAssignmentRequestNotFoundForAction,
            format!("request `{id}` does not exist"),
        )
    })?;
    let approve = match input.decision.as_str() {
        d if d.eq_ignore_ascii_case("AdminApproved") => true,
        d if d.eq_ignore_ascii_case("AdminDenied") => false,
        other => {
            return Err(DomainError::bad_request(format!(
                "`decision` must be `AdminApproved` or `AdminDenied`, not `{other}`"
            )));
        }
    };
    let status = r.status_at(ctx.now);
    if !matches!(
        status,
        SubStatus::PendingApproval | SubStatus::PendingAdminDecision
    ) {
        return Err(DomainError::new(
            ErrorCode::RequestCannotBeUpdated,
            format!(
                "request `{id}` is `{}`, not awaiting a decision",
                status.as_str()
            ),
        ));
    }
    if r.subject_id == ctx.caller.subject_id || r.requested_by == ctx.caller.subject_id {
        return Err(DomainError::denied("nobody may decide their own request"));
    }
    let t = load_target(tx, &r.resource_id, &r.role_definition_id)?;
    let policy = t.setting.rules.policy(RuleCollection::UserMember)?;
    let required = match status {
        SubStatus::PendingApproval => {
            check_approver(ctx, &policy, &r.resource_id)?;
            policy
                .approval
                .as_ref()
                .map_or(1, |a| a.required_approvals.max(1))
        }
        _ => {
            if !ctx
                .caller
                .may_administer(ctx.access, &r.resource_id, ctx.now)
            {
                return Err(DomainError::denied(
                    "only an administrator of the resource may decide this request",
                ));
            }
            1
        }
    };
    let earlier = tx.approvals(&r.id)?;
    if earlier
        .iter()
        .any(|a| a.approver_id == ctx.caller.subject_id)
    {
        return Err(DomainError::new(
            ErrorCode::RequestCannotBeUpdated,
            "the caller has already decided this request",
        ));
    }
    tx.insert_approval(&Approval {
        request_id: r.id.clone(),
        approver_id: ctx.caller.subject_id.clone(),
        approver_name: ctx.caller.display_name.clone(),
        approved: approve,
        justification: input.reason.clone(),
        at: ctx.now,
    })?;
    let approvals = earlier.iter().filter(|a| a.approved).count() + usize::from(approve);
    let mut changes = Vec::new();
    if !approve {
        r.sub_status = SubStatus::AdminDenied;
    } else if approvals >= required as usize {
        let (sub_status, ch) = match r.kind {
            RequestType::UserAdd => provision_approved_activation(tx, ctx, &mut r, &t)?,
            _ => apply_admin_decision(tx, ctx, &mut r, &t, input)?,
        };
        r.sub_status = sub_status;
        changes = ch;
        r.status_details.retain(|d| d.rule != "ApprovalRule");
        r.status_details.push(grant("ApprovalRule"));
    }
    r.version += 1;
    tx.update_request(&r)?;
    notification::request_changed(tx, ctx.now, &r, ChangeType::Updated)?;
    crate::email::decided(tx, ctx, &r)?;
    let what = if approve { "Approve" } else { "Deny" };
    tx.append_audit(&audit(
        ctx,
        &r,
        &t.role,
        &t.resource,
        format!("{what} request ({})", r.kind.as_str()),
        input.reason.as_deref(),
    ))?;
    Ok(Outcome {
        request: r,
        changes,
    })
}

fn check_approver(ctx: &OpContext, policy: &Policy, resource_id: &str) -> Result<()> {
    let approvers = policy
        .approval
        .as_ref()
        .map(|a| a.approvers.as_slice())
        .unwrap_or_default();
    if approvers.is_empty() {
        return if ctx.caller.may_administer(ctx.access, resource_id, ctx.now) {
            Ok(())
        } else {
            Err(DomainError::denied(
                "only an administrator of the resource may approve this request",
            ))
        };
    }
    let groups = ctx.access.groups_of(&ctx.caller.subject_id);
    let listed = approvers.iter().any(|a| match a.kind {
        ApproverKind::User => a.id == ctx.caller.subject_id,
        ApproverKind::Group => groups.contains(&a.id),
    });
    if listed {
        Ok(())
    } else {
        Err(DomainError::denied(
            "the caller is not an approver of this role",
        ))
    }
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
    let groups = access.groups_of(caller_id);
    Ok(policy.approval.as_ref().is_some_and(|rule| {
        rule.approvers.iter().any(|a| match a.kind {
            ApproverKind::User => a.id == caller_id,
            ApproverKind::Group => groups.contains(&a.id),
        })
    }))
}

fn provision_approved_activation(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    r: &mut RoleAssignmentRequest,
    t: &Target3,
) -> Result<(SubStatus, Vec<AccessChange>)> {
    let key = r.key();
    let eligible = r
        .linked_eligible_id
        .as_deref()
        .map(|e| tx.assignment(e))
        .transpose()?
        .flatten()
        .filter(|e| e.is_current(ctx.now));
    // The requester must still hold the eligibility, directly or through a group.
    let mut holders = vec![r.subject_id.clone()];
    holders.extend(ctx.access.groups_of(&r.subject_id));
    let Some(eligible) = eligible.filter(|e| holders.contains(&e.subject_id)) else {
        return Ok((SubStatus::Failed, Vec::new()));
    };
    if !clear_ended(tx, &key, ctx.now)?.is_empty() {
        return Ok((SubStatus::Failed, Vec::new()));
    }
    let Some(requested) = r.schedule else {
        return Ok((SubStatus::Failed, Vec::new()));
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
    let a = activation(ctx, &key, &eligible, schedule, &r.id);
    tx.insert_assignment(&a)?;
    notification::assignment_changed(tx, ctx.now, &a, ChangeType::Created)?;
    r.assignment_id = Some(a.id.clone());
    Ok((
        started(&schedule, ctx.now),
        vec![AccessChange::Upsert(a, t.role.administers_access())],
    ))
}

fn apply_admin_decision(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    r: &mut RoleAssignmentRequest,
    t: &Target3,
    input: &DecisionInput,
) -> Result<(SubStatus, Vec<AccessChange>)> {
    let key = r.key();
    let schedule = match &input.schedule {
        Some(s) if s.end.is_some() || s.duration.is_some() => Schedule::resolve(s, ctx.now)?,
        _ => r
            .schedule
            .ok_or_else(|| DomainError::internal("pending request without schedule"))?,
    };
    let policy = t.setting.rules.policy(collection_for(r.kind, r.state))?;
    if let Some(max) = policy.max_duration()
        && schedule.duration().is_none_or(|d| d > max)
    {
        return Err(DomainError::policy(
            "ExpirationRule: the approved schedule exceeds the maximum grant period",
        ));
    }
    let a = match r.kind {
        RequestType::UserExtend => {
            let mut a = live_direct(tx, &key, ctx.now)?.ok_or_else(|| {
                DomainError::new(
                    ErrorCode::RoleAssignmentDoesNotExist,
                    "the assignment to extend no longer exists",
                )
            })?;
            a.schedule = schedule;
            tx.update_assignment(&a)?;
            notification::assignment_changed(tx, ctx.now, &a, ChangeType::Updated)?;
            a
        }
        _ => {
            ensure_nothing_live(tx, &key, ctx.now)?;
            let since = r
                .requested_at
                .checked_sub(RENEW_WINDOW)
                .unwrap_or(Timestamp::MIN);
            let (a, in_table) = latest_expired(tx, &key, ctx.now, since)?.ok_or_else(|| {
                DomainError::new(
                    ErrorCode::RoleAssignmentDoesNotExist,
                    "the assignment to renew no longer exists",
                )
            })?;
            renew_into_place(tx, a, in_table, schedule, ctx.now)?
        }
    };
    r.schedule = Some(schedule);
    r.assignment_id = Some(a.id.clone());
    Ok((
        started(&schedule, ctx.now),
        vec![AccessChange::Upsert(a, t.role.administers_access())],
    ))
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
