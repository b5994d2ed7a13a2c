//! The background scheduler's decisions (decisions.md §10): what is due at `now`, and the
//! state changes that make the stored state catch up with the clock.
//!
//! Reads never wait for it: [`RoleAssignmentRequest::status_at`] already reports a granted
//! request as provisioned once its start has come and a pending approval as timed out once
//! its deadline has passed, and the access index never honours an assignment past its end.
//! The scheduler makes the *stored* state say so too (so filters on stored columns, history
//! and audit agree with reads), and it audits each action:
//!
//! | job | stored change | audit `activityDisplayName` |
//! |---|---|---|
//! | [`Job::TimeOutApprovals`] | `PendingApproval` → `TimedOut` | `Time out approval` |
//! | [`Job::ProvisionGrants`] | `Granted` → `Provisioned` | `Provision scheduled grant` |
//! | [`Job::ExpireAssignments`] | ended assignment → history (`Expired`) | `Expire assignment` |
//! | [`Job::SendReminders`] | `reminders_sent` row, e-mail outbox rows ([`crate::reminder`]) | `Send reminder` |
//!
//! Each call of [`Job::run`] handles one batch inside the caller's write transaction and
//! writes one audit record per row in that same transaction. Rows are found with indexed
//! store queries and then *claimed* with a guarded update that affects the row only if it
//! is still in the state the query saw ([`Tx::claim_due_grant`] and friends), so a row is
//! processed once even when several nodes run the scheduler against one database, and a
//! batch that runs again (after a crash, or twice) changes nothing. Every step is therefore
//! idempotent, and work that fell due while the server was down is simply due at the next
//! pass.
//!
//! The functions here are pure over the [`Tx`] trait: no clock, no I/O of their own; `now`
//! comes in through the [`OpContext`].

use crate::access::{AccessChange, Caller, OpContext};
use crate::assignment::{EndReason, RoleAssignment};
use crate::audit::{AuditRecord, Target};
use crate::error::Result;
use crate::notification::{self, ChangeType};
use crate::request::{RoleAssignmentRequest, SubStatus};
use crate::schedule::format_datetime;
use crate::store::Tx;
use jiff::Timestamp;

/// Rows handled per write transaction: large enough to keep up with bulk expiries, small
/// enough that requests waiting for the write lock are not held up noticeably.
pub const BATCH_SIZE: u32 = 500;

/// The subject id the scheduler's audit records name as their initiator.
pub const SCHEDULER_ID: &str = "rolegate-scheduler";

/// Audit name of provisioning a future-start grant at its start (decisions.md §13).
pub const PROVISION_ACTIVITY: &str = "Provision scheduled grant";
/// Audit name of moving an ended assignment to history (decisions.md §13).
pub const EXPIRE_ACTIVITY: &str = "Expire assignment";
/// Audit name of closing an approval nobody decided in time (decisions.md §13).
pub const TIME_OUT_ACTIVITY: &str = "Time out approval";

/// The caller the scheduler's operations run as: a system initiator, not a directory
/// subject, with no rights of its own (the scheduler checks nothing against the index).
pub fn caller() -> Caller {
    Caller {
        subject_id: SCHEDULER_ID.into(),
        display_name: "Rolegate scheduler".into(),
        principal_name: None,
        is_tenant_admin: false,
        mfa: false,
    }
}

/// Whether the scheduler should provision `r` at `now`: a request stored `Granted` whose
/// schedule has started. Agrees with [`RoleAssignmentRequest::status_at`], so provisioning
/// never changes what a read reports.
pub fn grant_is_due(r: &RoleAssignmentRequest, now: Timestamp) -> bool {
    r.sub_status == SubStatus::Granted && r.schedule.is_some_and(|s| s.start <= now)
}

/// Whether the scheduler should time out `r` at `now`: a request stored `PendingApproval`
/// whose approval deadline has passed. Agrees with [`RoleAssignmentRequest::status_at`].
pub fn approval_has_expired(r: &RoleAssignmentRequest, now: Timestamp) -> bool {
    r.sub_status == SubStatus::PendingApproval && r.approval_deadline.is_some_and(|d| d <= now)
}

/// Whether the scheduler should move `a` to history at `now`: its end has passed, so it is
/// neither current nor live any more (permanent assignments never end).
pub fn assignment_has_ended(a: &RoleAssignment, now: Timestamp) -> bool {
    a.schedule.has_ended(now)
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Rows changed (claimed and audited).
    pub done: usize,
    /// Whether more rows may be due: the batch was full and made progress, so the caller
    /// should run another one.
    pub more: bool,
    /// Changes for the access index, to apply once the transaction has committed.
    pub changes: Vec<AccessChange>,
}

impl Batch {
    fn finish(mut self, found: usize, limit: u32) -> Self {
        // A full batch that changed nothing (every row claimed elsewhere, or the query and
        // the predicate disagree) must not make the caller spin.
        self.more = found >= limit as usize && self.done > 0;
        self
    }
}

/// The scheduler's jobs, in the order a pass runs them: decisions first (a timed-out
/// approval can never be granted), then starts, then ends (a grant whose start and end
/// both passed while the server was down is provisioned, then expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    /// Pending approvals past their deadline become `TimedOut`.
    TimeOutApprovals,
    /// Granted requests whose start has come become `Provisioned`.
    ProvisionGrants,
    /// Assignments past their end move to history.
    ExpireAssignments,
    /// Holders of assignments ending soon are reminded by e-mail (when e-mail is on).
    SendReminders,
}

impl Job {
    /// Every job, in the order a pass runs them.
    pub const ALL: [Job; 4] = [
        Job::TimeOutApprovals,
        Job::ProvisionGrants,
        Job::ExpireAssignments,
        Job::SendReminders,
    ];

    /// A short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::TimeOutApprovals => "time_out_approvals",
            Self::ProvisionGrants => "provision_grants",
            Self::ExpireAssignments => "expire_assignments",
            Self::SendReminders => "send_reminders",
        }
    }

    /// Runs one batch of at most `limit` rows inside the write transaction `tx`, at
    /// `ctx.now`.
    pub fn run(self, tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
        match self {
            Self::TimeOutApprovals => time_out_approvals(tx, ctx, limit),
            Self::ProvisionGrants => provision_due_grants(tx, ctx, limit),
            Self::ExpireAssignments => expire_ended_assignments(tx, ctx, limit),
            Self::SendReminders => crate::reminder::send_due_reminders(tx, ctx, limit),
        }
    }
}

/// Marks up to `limit` granted requests whose start has come as `Provisioned`. Their
/// assignments already exist with their future start (the access index honours the start),
/// so only the stored status changes; no access change results.
pub fn provision_due_grants(tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
    let due = tx.due_grants(ctx.now, limit)?;
    let found = due.len();
    let mut batch = Batch::default();
    for mut r in due {
        if !grant_is_due(&r, ctx.now) || !tx.claim_due_grant(&r.id, ctx.now)? {
            continue;
        }
        r.sub_status = SubStatus::Provisioned;
        r.version += 1;
        notification::request_changed(tx, ctx.now, &r, ChangeType::Updated)?;
        let record = request_record(tx, ctx, &r, PROVISION_ACTIVITY)?;
        tx.append_audit(&record)?;
        batch.done += 1;
    }
    Ok(batch.finish(found, limit))
}

/// Marks up to `limit` pending approvals whose deadline has passed as `TimedOut`.
pub fn time_out_approvals(tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
    let expired = tx.expired_approvals(ctx.now, limit)?;
    let found = expired.len();
    let mut batch = Batch::default();
    for mut r in expired {
        if !approval_has_expired(&r, ctx.now) || !tx.claim_expired_approval(&r.id, ctx.now)? {
            continue;
        }
        r.sub_status = SubStatus::TimedOut;
        r.version += 1;
        notification::request_changed(tx, ctx.now, &r, ChangeType::Updated)?;
        crate::email::notify(tx, ctx, &r, crate::email::Event::TimedOut)?;
        let record = request_record(tx, ctx, &r, TIME_OUT_ACTIVITY)?;
        tx.append_audit(&record)?;
        batch.done += 1;
    }
    Ok(batch.finish(found, limit))
}

/// Moves up to `limit` assignments whose end has passed to history (reason `Expired`, ended
/// at their scheduled end) and removes them from the access index. An expired assignment
/// can still be renewed: renewal finds it in history.
pub fn expire_ended_assignments(tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
    let ended = tx.ended_assignments(ctx.now, limit)?;
    let found = ended.len();
    let mut batch = Batch::default();
    for a in ended {
        let Some(end) = a.schedule.end else {
            continue;
        };
        if !assignment_has_ended(&a, ctx.now) || !tx.claim_ended_assignment(&a.id, ctx.now)? {
            continue;
        }
        tx.end_assignment(&a, end, EndReason::Expired, None)?;
        notification::assignment_changed(tx, ctx.now, &a, ChangeType::Deleted)?;
        let record = assignment_record(tx, ctx, &a)?;
        tx.append_audit(&record)?;
        batch.changes.push(AccessChange::Remove {
            subject_id: a.subject_id.clone(),
            assignment_id: a.id.clone(),
        });
        batch.done += 1;
    }
    Ok(batch.finish(found, limit))
}

/// Role and resource targets (with display names when they still resolve) and their ids
/// as additional details.
pub(crate) fn role_and_resource(
    tx: &mut dyn Tx,
    role_definition_id: &str,
    resource_id: &str,
    targets: &mut Vec<Target>,
    details: &mut Vec<(String, String)>,
) -> Result<()> {
    let role_name = tx
        .role_definition(role_definition_id)?
        .map_or_else(|| role_definition_id.to_string(), |d| d.display_name);
    let resource_name = tx
        .resource(resource_id)?
        .map_or_else(|| resource_id.to_string(), |r| r.display_name);
    targets.push(Target::new("Role", role_definition_id, &role_name));
    targets.push(Target::new("Resource", resource_id, &resource_name));
    details.push(("roleDefinitionId".into(), role_definition_id.into()));
    details.push(("resourceId".into(), resource_id.into()));
    Ok(())
}

/// A successful scheduler record of `activity` initiated by `ctx`'s caller.
pub(crate) fn record(
    ctx: &OpContext,
    activity: &str,
    operation: &str,
    reason: &str,
    targets: Vec<Target>,
    details: Vec<(String, String)>,
) -> AuditRecord {
    AuditRecord {
        id: (ctx.new_id)(),
        category: "RoleManagement".into(),
        correlation_id: ctx.correlation_id.to_string(),
        result: "success".into(),
        result_reason: reason.into(),
        activity_display_name: activity.into(),
        activity_date_time: ctx.now,
        operation_type: operation.into(),
        initiated_by: ctx.initiator(),
        target_resources: targets,
        additional_details: details,
    }
}

/// The audit record of a stored status change of `r` (time-out or provisioning) made to
/// catch up with the clock, by the scheduler or by [`crate::request::submit`].
pub(crate) fn request_record(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    r: &RoleAssignmentRequest,
    activity: &str,
) -> Result<AuditRecord> {
    let mut targets = vec![Target::new("Request", &r.id, &r.id)];
    let mut details = vec![("requestId".to_string(), r.id.clone())];
    if let Some(a) = &r.assignment_id {
        targets.push(Target::new("RoleAssignment", a, a));
        details.push(("assignmentId".into(), a.clone()));
    }
    details.push(("requestType".into(), r.kind.as_str().into()));
    details.push(("subStatus".into(), r.sub_status.as_str().into()));
    role_and_resource(
        tx,
        &r.role_definition_id,
        &r.resource_id,
        &mut targets,
        &mut details,
    )?;
    targets.push(Target::new("Subject", &r.subject_id, &r.subject_id));
    if let Some(s) = &r.schedule {
        details.push(("startDateTime".into(), format_datetime(s.start)));
        details.push((
            "endDateTime".into(),
            s.end.map(format_datetime).unwrap_or_default(),
        ));
    }
    if let Some(d) = r
        .approval_deadline
        .filter(|_| r.sub_status == SubStatus::TimedOut)
    {
        details.push(("approvalDeadline".into(), format_datetime(d)));
    }
    Ok(record(
        ctx,
        activity,
        "Update",
        r.sub_status.as_str(),
        targets,
        details,
    ))
}

fn assignment_record(tx: &mut dyn Tx, ctx: &OpContext, a: &RoleAssignment) -> Result<AuditRecord> {
    let mut targets = vec![Target::new("RoleAssignment", &a.id, &a.id)];
    let mut details = vec![("assignmentId".to_string(), a.id.clone())];
    if !a.request_id.is_empty() {
        details.push(("requestId".into(), a.request_id.clone()));
    }
    details.push(("assignmentState".into(), a.state.as_str().into()));
    if let Some(e) = &a.linked_eligible_id {
        details.push(("linkedEligibleRoleAssignmentId".into(), e.clone()));
    }
    role_and_resource(
        tx,
        &a.role_definition_id,
        &a.resource_id,
        &mut targets,
        &mut details,
    )?;
    targets.push(Target::new("Subject", &a.subject_id, &a.subject_id));
    details.push(("startDateTime".into(), format_datetime(a.schedule.start)));
    details.push((
        "endDateTime".into(),
        a.schedule.end.map(format_datetime).unwrap_or_default(),
    ));
    Ok(record(
        ctx,
        EXPIRE_ACTIVITY,
        "Delete",
        EndReason::Expired.as_str(),
        targets,
        details,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::AccessIndex;
    use crate::assignment::AssignmentState;
    use crate::request::RequestType;
    use crate::schedule::Schedule;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn request(
        sub_status: SubStatus,
        start: i64,
        end: Option<i64>,
        deadline: Option<i64>,
    ) -> RoleAssignmentRequest {
        RoleAssignmentRequest {
            id: "r".into(),
            resource_id: "x".into(),
            role_definition_id: "d".into(),
            subject_id: "s".into(),
            kind: RequestType::AdminAdd,
            state: AssignmentState::Eligible,
            requested_at: t(0),
            schedule: Some(Schedule {
                start: t(start),
                end: end.map(t),
            }),
            reason: None,
            sub_status,
            status_details: Vec::new(),
            linked_eligible_id: None,
            ticket: None,
            requested_by: "a".into(),
            assignment_id: Some("a".into()),
            emergency: false,
            approval_deadline: deadline.map(t),
            version: 1,
        }
    }

    fn assignment(start: i64, end: Option<i64>) -> RoleAssignment {
        RoleAssignment {
            id: "0b5b1e3c-8f5e-4c55-9d43-6f0c1f3a2b11".into(),
            resource_id: "x".into(),
            role_definition_id: "d".into(),
            subject_id: "s".into(),
            state: AssignmentState::Active,
            linked_eligible_id: None,
            schedule: Schedule {
                start: t(start),
                end: end.map(t),
            },
            request_id: String::new(),
        }
    }

    /// What the scheduler does to a stored request at `now` (the transition of one claim).
    fn scheduler_step(mut r: RoleAssignmentRequest, now: Timestamp) -> RoleAssignmentRequest {
        if grant_is_due(&r, now) {
            r.sub_status = SubStatus::Provisioned;
        } else if approval_has_expired(&r, now) {
            r.sub_status = SubStatus::TimedOut;
        }
        r
    }

    fn sub_status() -> impl Strategy<Value = SubStatus> {
        prop_oneof![
            Just(SubStatus::Granted),
            Just(SubStatus::PendingApproval),
            Just(SubStatus::PendingAdminDecision),
            Just(SubStatus::Provisioned),
            Just(SubStatus::Revoked),
            Just(SubStatus::Canceled),
            Just(SubStatus::AdminDenied),
            Just(SubStatus::TimedOut),
            Just(SubStatus::Failed),
        ]
    }

    /// Clock readings: a start, then steps forward (some zero), as an injected clock moves.
    fn clock_steps() -> impl Strategy<Value = Vec<i64>> {
        (-50i64..250, proptest::collection::vec(0i64..40, 1..24)).prop_map(|(first, steps)| {
            let mut at = first;
            let mut out = vec![at];
            for s in steps {
                at += s;
                out.push(at);
            }
            out
        })
    }

    proptest! {
        #[test]
        fn selection_agrees_with_what_reads_derive(
            status in sub_status(),
            start in 0i64..200,
            len in proptest::option::of(1i64..200),
            deadline in proptest::option::of(0i64..200),
            now in -10i64..450,
        ) {
            let r = request(status, start, len.map(|l| start + l), deadline);
            let now = t(now);
            prop_assert_eq!(
                grant_is_due(&r, now),
                r.sub_status == SubStatus::Granted && r.status_at(now) == SubStatus::Provisioned
            );
            prop_assert_eq!(
                approval_has_expired(&r, now),
                r.sub_status == SubStatus::PendingApproval && r.status_at(now) == SubStatus::TimedOut
            );
        }

        /// Whenever the scheduler runs, reads at that time or later report the same status
        /// as without it: reads never depend on the scheduler.
        #[test]
        fn running_the_scheduler_never_changes_what_reads_report(
            status in sub_status(),
            start in 0i64..200,
            len in proptest::option::of(1i64..200),
            deadline in proptest::option::of(0i64..200),
            clock in clock_steps(),
        ) {
            let stored = request(status, start, len.map(|l| start + l), deadline);
            let mut swept = stored.clone();
            for now in clock {
                let now = t(now);
                swept = scheduler_step(swept, now);
                prop_assert_eq!(swept.status_at(now), stored.status_at(now));
                // Once the scheduler has acted, the stored state is what reads derive.
                prop_assert_eq!(swept.sub_status, swept.status_at(now));
                // Running it again at the same instant changes nothing (idempotent).
                prop_assert_eq!(&scheduler_step(swept.clone(), now), &swept);
            }
        }

        /// No sequence of clock steps shows a future-start grant provisioned before its
        /// start, or leaves it granted after it.
        #[test]
        fn a_grant_is_provisioned_exactly_from_its_start(
            start in 0i64..300,
            len in proptest::option::of(1i64..300),
            clock in clock_steps(),
        ) {
            let mut r = request(SubStatus::Granted, start, len.map(|l| start + l), None);
            let mut seen_provisioned = false;
            for now in clock {
                let at = t(now);
                r = scheduler_step(r, at);
                let status = r.status_at(at);
                if now < start {
                    prop_assert_eq!(status, SubStatus::Granted);
                    prop_assert_eq!(r.sub_status, SubStatus::Granted);
                } else {
                    prop_assert_eq!(status, SubStatus::Provisioned);
                }
                // Monotone: once provisioned, never granted again.
                prop_assert!(!(seen_provisioned && status == SubStatus::Granted));
                seen_provisioned |= status == SubStatus::Provisioned;
            }
        }

        /// No sequence of clock steps yields an active grant after its end (or before its
        /// start), whether the sweep has removed it from the index or not; and the sweep
        /// only ever takes assignments that have ended.
        #[test]
        fn no_grant_is_honoured_outside_its_schedule(
            start in 0i64..300,
            len in proptest::option::of(1i64..300),
            clock in clock_steps(),
            sweep_every in 1usize..5,
        ) {
            let a = assignment(start, len.map(|l| start + l));
            let mut swept = AccessIndex::new();
            swept.add_resource("x", None);
            swept.upsert(&a, true);
            let mut unswept = AccessIndex::new();
            unswept.add_resource("x", None);
            unswept.upsert(&a, true);
            for (i, now) in clock.into_iter().enumerate() {
                let at = t(now);
                if i % sweep_every == 0 && assignment_has_ended(&a, at) {
                    prop_assert!(a.schedule.end.is_some_and(|e| e <= at));
                    swept.apply(&[AccessChange::Remove {
                        subject_id: a.subject_id.clone(),
                        assignment_id: a.id.clone(),
                    }]);
                }
                let inside = now >= start && len.is_none_or(|l| now < start + l);
                for ix in [&swept, &unswept] {
                    prop_assert_eq!(ix.holds_any("s", "x", at), inside);
                    prop_assert_eq!(ix.administers("s", "x", at), inside);
                }
                prop_assert_eq!(assignment_has_ended(&a, at), !a.is_live(at));
                prop_assert!(!(assignment_has_ended(&a, at) && a.is_current(at)));
            }
        }
    }

    #[test]
    fn the_scheduler_is_a_system_initiator_without_rights() {
        let c = caller();
        assert_eq!(c.subject_id, SCHEDULER_ID);
        assert!(!c.is_tenant_admin);
        assert_eq!(
            Job::ALL.map(Job::name),
            [
                "time_out_approvals",
                "provision_grants",
                "expire_assignments",
                "send_reminders"
            ]
        );
    }

    #[test]
    fn a_full_batch_without_progress_does_not_ask_for_more() {
        let b = Batch {
            done: 0,
            ..Batch::default()
        };
        assert!(!b.finish(500, 500).more);
        let b = Batch {
            done: 3,
            ..Batch::default()
        };
        assert!(b.clone().finish(500, 500).more);
        assert!(!b.finish(499, 500).more);
    }
}
