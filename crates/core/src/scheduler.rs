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
//! Each call of [`crate::operation::scheduler::run`] handles one batch inside the caller's write transaction and
//! writes one audit record per row in that same transaction. Rows are found with indexed
//! store queries inside the write transaction; writes are serialised (SQLite's one writer,
//! PostgreSQL's per-schema advisory lock), so what the query finds is current, and a
//! request row is written back with its version checked. A row is therefore processed once
//! even when several nodes run the scheduler against one database, and a batch that runs
//! again (after a crash, or twice) finds nothing to do. Every step is idempotent, and work
//! that fell due while the server was down is simply due at the next pass.
//!
//! The functions here are pure: they decide on loaded facts ([`catch_up`], the due
//! predicates, the audit records); the jobs that load and apply are
//! [`crate::operation::scheduler`]. `now` comes in through the [`OpContext`].

use crate::access::{AccessChange, Caller, OpContext};
use crate::assignment::{EndReason, RoleAssignment};
use crate::audit::{AuditRecord, Target};
use crate::change::Change;
use crate::email::{Email, Event};
use crate::reminder::{REMINDER_ACTIVITY, Reminder, covered_by, due};
use crate::request::{RoleAssignmentRequest, SubStatus};
use crate::resource::Resource;
use crate::role::RoleDefinition;
use crate::schedule::format_datetime;
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
    /// Sets `more` after a batch that found `found` rows with room for `limit`.
    pub fn finish(mut self, found: usize, limit: u32) -> Self {
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
}

/// The one copy of the transitions that make a request's stored state catch up with the
/// clock (decisions.md §10, §13): a pending approval past its deadline becomes `TimedOut`
/// (audited `Time out approval`, the requester told by e-mail), a granted request whose
/// start has come becomes `Provisioned` (audited `Provision scheduled grant`). Used by the
/// scheduler, by a new request that finds a stale pending one for its key, and when a
/// subject is disabled or deleted. `None` when `r` is not behind the clock.
pub fn catch_up(
    ctx: &OpContext,
    r: &RoleAssignmentRequest,
    names: &Names,
) -> Option<(RoleAssignmentRequest, Vec<Change>)> {
    let (status, activity) = if approval_has_expired(r, ctx.now) {
        (SubStatus::TimedOut, TIME_OUT_ACTIVITY)
    } else if grant_is_due(r, ctx.now) {
        (SubStatus::Provisioned, PROVISION_ACTIVITY)
    } else {
        return None;
    };
    let mut r = r.clone();
    r.sub_status = status;
    r.version += 1;
    let mut changes = vec![Change::UpdateRequest(r.clone())];
    if status == SubStatus::TimedOut {
        changes.push(Change::Email {
            request: r.clone(),
            event: Event::TimedOut,
        });
    }
    changes.push(Change::Audit(request_record(ctx, &r, activity, names)));
    Some((r, changes))
}

/// Decides the reminder of `a` due at `ctx.now`, if one is: records it (and the wider ones
/// it covers) as sent, writes one e-mail to each of `recipients` (`(subject id, address)`,
/// a group's members for a group assignment) and one audit record naming `names`. `None`
/// when nothing is due.
pub fn remind(
    ctx: &OpContext,
    a: &RoleAssignment,
    recipients: &[(String, String)],
    names: &Names,
) -> Option<Vec<Change>> {
    let (Some(reminder), Some(end)) = (due(a, ctx.now), a.schedule.end) else {
        return None;
    };
    let wider = covered_by(reminder, a)
        .into_iter()
        .filter(|wider| *wider != reminder);
    let mut changes: Vec<Change> = std::iter::once(reminder)
        .chain(wider)
        .map(|r| Change::RecordReminder {
            assignment_id: a.id.clone(),
            reminder: r,
            end,
        })
        .collect();
    for (recipient_id, address) in recipients {
        changes.push(Change::QueueEmail(Email {
            id: (ctx.new_id)(),
            request_id: a.request_id.clone(),
            assignment_id: Some(a.id.clone()),
            event: Event::Ending(reminder),
            recipient_id: recipient_id.clone(),
            address: address.clone(),
            first_due: ctx.now,
            attempts: 0,
        }));
    }
    changes.push(Change::Audit(reminder_record(
        ctx,
        a,
        reminder,
        recipients.len(),
        names,
    )));
    Some(changes)
}

fn reminder_record(
    ctx: &OpContext,
    a: &RoleAssignment,
    reminder: Reminder,
    recipients: usize,
    names: &Names,
) -> AuditRecord {
    let mut targets = vec![Target::new("RoleAssignment", &a.id, &a.id)];
    let mut details = vec![("assignmentId".to_string(), a.id.clone())];
    if !a.request_id.is_empty() {
        details.push(("requestId".into(), a.request_id.clone()));
    }
    details.push(("assignmentState".into(), a.state.as_str().into()));
    details.push(("reminder".into(), reminder.as_str().into()));
    names.describe(&mut targets, &mut details);
    targets.push(Target::new("Subject", &a.subject_id, &a.subject_id));
    details.push((
        "endDateTime".into(),
        a.schedule.end.map(format_datetime).unwrap_or_default(),
    ));
    details.push(("recipients".into(), recipients.to_string()));
    record(
        ctx,
        REMINDER_ACTIVITY,
        "Update",
        reminder.as_str(),
        targets,
        details,
    )
}

/// The display names an audit record shows for a role and a resource (their ids when they
/// no longer resolve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The role definition's id.
    pub role_id: String,
    /// Its display name.
    pub role: String,
    /// The resource's id.
    pub resource_id: String,
    /// Its display name.
    pub resource: String,
}

impl Names {
    /// The names of a role definition and its resource, as loaded.
    pub fn of(role: &RoleDefinition, resource: &Resource) -> Names {
        Names {
            role_id: role.id.clone(),
            role: role.display_name.clone(),
            resource_id: resource.id.clone(),
            resource: resource.display_name.clone(),
        }
    }

    /// Role and resource targets, and their ids as additional details.
    pub fn describe(&self, targets: &mut Vec<Target>, details: &mut Vec<(String, String)>) {
        targets.push(Target::new("Role", &self.role_id, &self.role));
        targets.push(Target::new("Resource", &self.resource_id, &self.resource));
        details.push(("roleDefinitionId".into(), self.role_id.clone()));
        details.push(("resourceId".into(), self.resource_id.clone()));
    }
}

/// A successful scheduler record of `activity` initiated by `ctx`'s caller.
pub fn record(
    ctx: &OpContext,
    activity: &str,
    operation: &str,
    reason: &str,
    targets: Vec<Target>,
    details: Vec<(String, String)>,
) -> AuditRecord {
    AuditRecord {
        result_reason: reason.into(),
        target_resources: targets,
        additional_details: details,
        ..AuditRecord::by(ctx, "RoleManagement", activity, operation)
    }
}

/// The audit record of a stored status change of `r` (time-out or provisioning) made to
/// catch up with the clock ([`catch_up`]).
fn request_record(
    ctx: &OpContext,
    r: &RoleAssignmentRequest,
    activity: &str,
    names: &Names,
) -> AuditRecord {
    let mut targets = vec![Target::new("Request", &r.id, &r.id)];
    let mut details = vec![("requestId".to_string(), r.id.clone())];
    if let Some(a) = &r.assignment_id {
        targets.push(Target::new("RoleAssignment", a, a));
        details.push(("assignmentId".into(), a.clone()));
    }
    details.push(("requestType".into(), r.kind.as_str().into()));
    details.push(("subStatus".into(), r.sub_status.as_str().into()));
    names.describe(&mut targets, &mut details);
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
    record(
        ctx,
        activity,
        "Update",
        r.sub_status.as_str(),
        targets,
        details,
    )
}

pub fn assignment_record(ctx: &OpContext, a: &RoleAssignment, names: &Names) -> AuditRecord {
    let mut targets = vec![Target::new("RoleAssignment", &a.id, &a.id)];
    let mut details = vec![("assignmentId".to_string(), a.id.clone())];
    if !a.request_id.is_empty() {
        details.push(("requestId".into(), a.request_id.clone()));
    }
    details.push(("assignmentState".into(), a.state.as_str().into()));
    if let Some(e) = &a.linked_eligible_id {
        details.push(("linkedEligibleRoleAssignmentId".into(), e.clone()));
    }
    names.describe(&mut targets, &mut details);
    targets.push(Target::new("Subject", &a.subject_id, &a.subject_id));
    details.push(("startDateTime".into(), format_datetime(a.schedule.start)));
    details.push((
        "endDateTime".into(),
        a.schedule.end.map(format_datetime).unwrap_or_default(),
    ));
    record(
        ctx,
        EXPIRE_ACTIVITY,
        "Delete",
        EndReason::Expired.as_str(),
        targets,
        details,
    )
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
                        resource_id: Some(a.resource_id.clone()),
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
    fn a_due_reminder_records_the_ones_it_covers_and_writes_to_each_holder() {
        let ix = AccessIndex::new();
        let who = caller();
        let ids = std::cell::Cell::new(0);
        let new_id = || {
            ids.set(ids.get() + 1);
            format!("id-{}", ids.get())
        };
        let ctx = OpContext {
            caller: &who,
            access: &ix,
            now: t(0),
            correlation_id: "test",
            new_id: &new_id,
            mail: None,
        };
        let names = Names {
            role_id: "d".into(),
            role: "Reader".into(),
            resource_id: "x".into(),
            resource: "rg".into(),
        };
        // Direct, active, ending in ten hours: the 1-day reminder, covering the 14-day one.
        let a = assignment(-60, Some(10 * 3600));
        let holders = [
            ("u1".to_string(), "u1@example.test".to_string()),
            ("u2".to_string(), "u2@example.test".to_string()),
        ];
        let changes = remind(&ctx, &a, &holders, &names).expect("due");
        let recorded: Vec<Reminder> = changes
            .iter()
            .filter_map(|c| match c {
                Change::RecordReminder { reminder, end, .. } => {
                    assert_eq!(Some(*end), a.schedule.end);
                    Some(*reminder)
                }
                _ => None,
            })
            .collect();
        assert_eq!(recorded, [Reminder::OneDay, Reminder::FourteenDays]);
        let mails: Vec<(&str, Event)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::QueueEmail(e) => Some((e.recipient_id.as_str(), e.event)),
                _ => None,
            })
            .collect();
        assert_eq!(
            mails,
            [
                ("u1", Event::Ending(Reminder::OneDay)),
                ("u2", Event::Ending(Reminder::OneDay))
            ]
        );
        match changes.last() {
            Some(Change::Audit(r)) => {
                assert_eq!(r.activity_display_name, REMINDER_ACTIVITY);
                assert!(
                    r.additional_details
                        .contains(&("recipients".into(), "2".into()))
                );
            }
            other => panic!("the audit record comes last: {other:?}"),
        }
        // Ending in 20 days: nothing due; an ended assignment: nothing.
        assert!(remind(&ctx, &assignment(-60, Some(20 * 86400)), &holders, &names).is_none());
        assert!(remind(&ctx, &assignment(-60, Some(-1)), &holders, &names).is_none());
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
