//! Table tests of the request state machine, without a database: facts in, changes out.
//! One table per request type (and for cancel and decide), each row a situation and what
//! the decision must do; then a property test that no activation a decision grants
//! outlives its eligibility or the policy's maximum, and none is granted past an
//! ApprovalRule without approval.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::access::{AccessIndex, Caller};
use crate::directory::SubjectKind;
use crate::policy::{RoleRules, RoleRulesPatch, RuleSetting};
use crate::resource::ResourceStatus;
use crate::role::RoleSetting;
use proptest::prelude::*;
use std::cell::Cell;

const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

/// `minutes` after a fixed instant.
fn at(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_900_000_000).unwrap() + SignedDuration::from_mins(minutes)
}

const DAY: i64 = 24 * 60;

fn caller(id: &str, admin: bool, mfa: bool) -> Caller {
    Caller {
        subject_id: id.into(),
        display_name: id.into(),
        principal_name: None,
        is_tenant_admin: admin,
        mfa,
    }
}

fn assignment(
    id: &str,
    subject: &str,
    state: AssignmentState,
    start: i64,
    end: Option<i64>,
    linked: Option<&str>,
) -> RoleAssignment {
    RoleAssignment {
        id: id.into(),
        resource_id: "rg".into(),
        role_definition_id: "role-rg".into(),
        subject_id: subject.into(),
        state,
        linked_eligible_id: linked.map(str::to_string),
        schedule: Schedule {
            start: at(start),
            end: end.map(at),
        },
        request_id: "req-0".into(),
    }
}

fn eligible(id: &str, subject: &str, end: Option<i64>) -> RoleAssignment {
    assignment(id, subject, AssignmentState::Eligible, -DAY, end, None)
}

fn once(duration: &str) -> Option<ScheduleInput> {
    Some(ScheduleInput {
        kind: Some("Once".into()),
        start: None,
        end: None,
        duration: Some(duration.into()),
    })
}

fn starting(start_minutes: i64, duration: &str) -> Option<ScheduleInput> {
    Some(ScheduleInput {
        kind: Some("Once".into()),
        start: Some(format_datetime(at(start_minutes))),
        end: None,
        duration: Some(duration.into()),
    })
}

/// A tenant: resource `rg` under `sub`, the Contributor role on `rg`, user `alice`
/// (eligible as the tables say), approvers `bob` and `carol`, `owner` administering `sub`.
struct World {
    index: AccessIndex,
    ids: Cell<u64>,
    target: RequestTarget,
}

impl World {
    fn new() -> World {
        let mut index = AccessIndex::new();
        index.add_resource("sub", None);
        index.add_resource("rg", Some("sub"));
        let owner = RoleAssignment {
            resource_id: "sub".into(),
            role_definition_id: "owner-sub".into(),
            ..assignment(
                "a-owner",
                "owner",
                AssignmentState::Active,
                -DAY,
                None,
                None,
            )
        };
        index.upsert(&owner, true);
        let resource = Resource {
            id: "rg".into(),
            external_id: "/subscriptions/s/resourceGroups/rg".into(),
            resource_type: "resourcegroup".into(),
            display_name: "rg".into(),
            status: ResourceStatus::Active,
            registered_at: at(-DAY),
            registered_root: "/subscriptions/s".into(),
            parent_id: Some("sub".into()),
        };
        let role = RoleDefinition {
            id: "role-rg".into(),
            resource_id: "rg".into(),
            external_id: format!(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/roleDefinitions/{CONTRIBUTOR}"
            ),
            template_id: CONTRIBUTOR.into(),
            display_name: "Contributor".into(),
        };
        let setting = RoleSetting {
            id: "setting-rg".into(),
            resource_id: "rg".into(),
            role_definition_id: "role-rg".into(),
            is_default: true,
            last_updated_at: None,
            last_updated_by: None,
            rules: RoleRules::defaults(),
        };
        World {
            index,
            ids: Cell::new(0),
            target: RequestTarget {
                resource,
                role,
                setting,
            },
        }
    }

    /// Replaces rules of the user-member collection.
    fn user_rules(mut self, rules: &[(&str, &str)]) -> World {
        let patch = RoleRulesPatch {
            user_member: Some(
                rules
                    .iter()
                    .map(|(name, setting)| RuleSetting::new(*name, *setting))
                    .collect(),
            ),
            ..RoleRulesPatch::default()
        };
        self.target.setting.rules.apply_patch(patch).unwrap();
        self
    }

    fn approval(self, required: u32, bypass: bool) -> World {
        let rule = format!(
            r#"{{"Enabled":true,"RequiredApprovals":{required},"ApprovalTimeoutInMinutes":60,"AllowEmergencyBypass":{bypass},"EmergencyMaximumMinutes":60,"Approvers":[{{"Id":"bob","Type":"User"}},{{"Id":"carol","Type":"User"}}]}}"#
        );
        self.user_rules(&[("ApprovalRule", &rule)])
    }

    fn facts(&self) -> SubmitFacts {
        SubmitFacts {
            target: self.target.clone(),
            subject: Some(Subject {
                id: "alice".into(),
                external_id: None,
                kind: SubjectKind::User,
                display_name: "Alice".into(),
                principal_name: None,
                email: None,
                active: true,
            }),
            pending: None,
            in_table: Vec::new(),
            in_history: Vec::new(),
            candidates: Vec::new(),
            dependents: Vec::new(),
        }
    }

    /// Runs `f` as `who` at `now`.
    fn run<T>(&self, who: &Caller, now: Timestamp, f: impl FnOnce(&OpContext) -> T) -> T {
        let new_id = || {
            self.ids.set(self.ids.get() + 1);
            format!("id-{}", self.ids.get())
        };
        let ctx = OpContext {
            caller: who,
            access: &self.index,
            now,
            correlation_id: "test",
            new_id: &new_id,
            mail: None,
        };
        f(&ctx)
    }

    fn submit(
        &self,
        who: &Caller,
        new: &NewRequest,
        facts: &SubmitFacts,
    ) -> Result<(RoleAssignmentRequest, Vec<Change>)> {
        self.run(who, at(0), |ctx| {
            let admitted = admit(ctx, new)?;
            decide_submit(ctx, new, admitted, facts)
        })
    }
}

fn request(
    kind: RequestType,
    state: AssignmentState,
    schedule: Option<ScheduleInput>,
) -> NewRequest {
    NewRequest {
        resource_id: "rg".into(),
        role_definition_id: "role-rg".into(),
        subject_id: "alice".into(),
        kind: Some(kind),
        state: Some(state),
        schedule,
        reason: Some("on call".into()),
        linked_eligible_id: None,
        ticket: None,
        emergency: false,
    }
}

/// A short name for each change, for comparing whole decisions.
fn shape(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::InsertAssignment { assignment, .. } => format!("insert {}", assignment.id),
            Change::UpdateAssignment { assignment, .. } => format!("update {}", assignment.id),
            Change::RestoreAssignment { assignment, .. } => format!("restore {}", assignment.id),
            Change::EndAssignment {
                assignment, reason, ..
            } => format!("end {} {}", assignment.id, reason.as_str()),
            Change::InsertRequest { request, approvers } => {
                format!(
                    "request {} {}",
                    request.sub_status.as_str(),
                    approvers.join("+")
                )
            }
            Change::UpdateRequest(r) => {
                format!("update request {} {}", r.id, r.sub_status.as_str())
            }
            Change::InsertApproval(a) => format!("approval {} {}", a.approver_id, a.approved),
            Change::Audit(a) => format!("audit {}", a.activity_display_name),
            Change::Email { event, .. } => format!("email {event:?}"),
            Change::RecordReminder { reminder, .. } => format!("reminder {reminder:?}"),
            Change::QueueEmail(e) => format!("email {:?} to {}", e.event, e.recipient_id),
            other => format!("directory {other:?}"),
        })
        .collect()
}

/// What one row of a table expects: the request's status and the changes, or an error.
enum Expect {
    Done(SubStatus, &'static [&'static str]),
    Fails(ErrorCode),
}

fn check(name: &str, got: Result<(RoleAssignmentRequest, Vec<Change>)>, want: Expect) {
    match (got, want) {
        (Ok((r, changes)), Expect::Done(status, expected)) => {
            assert_eq!(r.sub_status, status, "{name}: {:?}", shape(&changes));
            assert_eq!(shape(&changes), expected.to_vec(), "{name}");
        }
        (Err(e), Expect::Fails(code)) => assert_eq!(e.code, code, "{name}: {e:?}"),
        (Ok((r, changes)), Expect::Fails(code)) => panic!(
            "{name}: expected {code:?}, got {} {:?}",
            r.sub_status.as_str(),
            shape(&changes)
        ),
        (Err(e), Expect::Done(status, _)) => panic!("{name}: expected {status:?}, got {e:?}"),
    }
}

/// `(name, caller, request, facts, expected)`.
type Row = (&'static str, Caller, NewRequest, SubmitFacts, Expect);

fn run_table(w: &World, rows: Vec<Row>) {
    for (name, who, new, facts, want) in rows {
        w.ids.set(0);
        check(name, w.submit(&who, &new, &facts), want);
    }
}

#[test]
fn admin_add() {
    use AssignmentState::{Active, Eligible};
    let w = World::new();
    let owner = caller("owner", false, true);
    let add = |state, schedule| request(RequestType::AdminAdd, state, schedule);
    let with = |in_table: Vec<RoleAssignment>| SubmitFacts {
        in_table,
        ..w.facts()
    };
    run_table(
        &w,
        vec![
            (
                "an R3 holder makes alice eligible",
                owner.clone(),
                add(Eligible, once("P90D")),
                w.facts(),
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "insert id-2",
                        "request Provisioned ",
                        "audit Add eligible member to role",
                    ],
                ),
            ),
            (
                "a future start is granted, not provisioned",
                owner.clone(),
                add(Active, starting(60, "PT8H")),
                w.facts(),
                Expect::Done(
                    SubStatus::Granted,
                    &[
                        "insert id-2",
                        "request Granted ",
                        "audit Add active member to role",
                    ],
                ),
            ),
            (
                "an ended row of the key moves to history first",
                owner.clone(),
                add(Eligible, once("P90D")),
                with(vec![assignment(
                    "old",
                    "alice",
                    Eligible,
                    -DAY,
                    Some(-1),
                    None,
                )]),
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "end old Expired",
                        "insert id-2",
                        "request Provisioned ",
                        "audit Add eligible member to role",
                    ],
                ),
            ),
            (
                "a live assignment of the key exists",
                owner.clone(),
                add(Eligible, once("P90D")),
                with(vec![eligible("e1", "alice", None)]),
                Expect::Fails(ErrorCode::RoleAssignmentExists),
            ),
            (
                "an activation of the key does not block a direct assignment",
                owner.clone(),
                add(Active, once("PT8H")),
                with(vec![assignment(
                    "x1",
                    "alice",
                    Active,
                    -1,
                    Some(60),
                    Some("e1"),
                )]),
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "insert id-2",
                        "request Provisioned ",
                        "audit Add active member to role",
                    ],
                ),
            ),
            (
                "longer than the admin eligible maximum (one year)",
                owner.clone(),
                add(Eligible, once("P400D")),
                w.facts(),
                Expect::Fails(ErrorCode::RoleAssignmentRequestPolicyValidationFailed),
            ),
            (
                "without a schedule",
                owner.clone(),
                add(Eligible, None),
                w.facts(),
                Expect::Fails(ErrorCode::BadRequest),
            ),
            (
                "a caller without R3 on the resource",
                caller("mallory", false, true),
                add(Eligible, once("P90D")),
                w.facts(),
                Expect::Fails(ErrorCode::AuthorizationRequestDenied),
            ),
            (
                "a disabled subject",
                owner.clone(),
                add(Eligible, once("P90D")),
                SubmitFacts {
                    subject: w.facts().subject.map(|s| Subject { active: false, ..s }),
                    ..w.facts()
                },
                Expect::Fails(ErrorCode::SubjectNotFound),
            ),
            (
                "an open request for the key is pending",
                owner,
                add(Eligible, once("P90D")),
                SubmitFacts {
                    pending: Some(pending_activation(&w, -5, Some(55))),
                    ..w.facts()
                },
                Expect::Fails(ErrorCode::PendingRoleAssignmentRequest),
            ),
        ],
    );
}

/// Alice's activation request awaiting approval, made at `requested` with its deadline at
/// `deadline` (minutes).
fn pending_activation(w: &World, requested: i64, deadline: Option<i64>) -> RoleAssignmentRequest {
    RoleAssignmentRequest {
        id: "pending-1".into(),
        resource_id: w.target.resource.id.clone(),
        role_definition_id: w.target.role.id.clone(),
        subject_id: "alice".into(),
        kind: RequestType::UserAdd,
        state: AssignmentState::Active,
        requested_at: at(requested),
        schedule: Some(Schedule {
            start: at(requested),
            end: Some(at(requested + 60)),
        }),
        reason: Some("on call".into()),
        sub_status: SubStatus::PendingApproval,
        status_details: Vec::new(),
        linked_eligible_id: Some("e1".into()),
        ticket: None,
        requested_by: "alice".into(),
        assignment_id: None,
        emergency: false,
        approval_deadline: deadline.map(at),
        version: 1,
    }
}

#[test]
fn admin_update_extend_and_renew() {
    use AssignmentState::{Active, Eligible};
    let w = World::new();
    let owner = caller("owner", false, true);
    let e1 = eligible("e1", "alice", Some(10 * DAY));
    let activation = assignment("x1", "alice", Active, -10, Some(5 * 60), Some("e1"));
    let with_activation = SubmitFacts {
        in_table: vec![e1.clone()],
        dependents: vec![(
            "e1".into(),
            Dependents {
                activations: vec![activation],
                pending: Vec::new(),
            },
        )],
        ..w.facts()
    };
    let mut shorter = request(RequestType::AdminUpdate, Eligible, None);
    shorter.schedule = Some(ScheduleInput {
        kind: Some("Once".into()),
        start: None,
        end: Some(format_datetime(at(60))),
        duration: None,
    });
    let mut ended_at = shorter.clone();
    ended_at.schedule = Some(ScheduleInput {
        kind: Some("Once".into()),
        start: Some(format_datetime(at(-2 * DAY))),
        end: Some(format_datetime(at(-DAY / 2))),
        duration: None,
    });
    run_table(
        &w,
        vec![
            (
                "extending moves the end later",
                owner.clone(),
                request(RequestType::AdminExtend, Eligible, once("P20D")),
                SubmitFacts {
                    in_table: vec![e1.clone()],
                    ..w.facts()
                },
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "update e1",
                        "request Provisioned ",
                        "audit Extend eligible role assignment",
                    ],
                ),
            ),
            (
                "an extension must end later",
                owner.clone(),
                request(RequestType::AdminExtend, Eligible, once("P1D")),
                SubmitFacts {
                    in_table: vec![e1.clone()],
                    ..w.facts()
                },
                Expect::Fails(ErrorCode::BadRequest),
            ),
            (
                "shortening an eligibility shortens its activation",
                owner.clone(),
                shorter,
                with_activation.clone(),
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "update e1",
                        "update x1",
                        "audit Shorten activation (eligible assignment changed)",
                        "request Provisioned ",
                        "audit Update eligible role assignment",
                    ],
                ),
            ),
            (
                "moving an eligibility into the past ends its activation",
                owner.clone(),
                ended_at,
                with_activation,
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "update e1",
                        "end x1 Removed",
                        "audit Deactivate role (eligible assignment changed)",
                        "request Provisioned ",
                        "audit Update eligible role assignment",
                    ],
                ),
            ),
            (
                "nothing live to update",
                owner.clone(),
                request(RequestType::AdminUpdate, Eligible, once("P20D")),
                w.facts(),
                Expect::Fails(ErrorCode::RoleAssignmentDoesNotExist),
            ),
            (
                "renewing from history",
                owner.clone(),
                request(RequestType::AdminRenew, Eligible, once("P30D")),
                SubmitFacts {
                    in_history: vec![eligible("old", "alice", Some(-40 * DAY))],
                    ..w.facts()
                },
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "restore old",
                        "request Provisioned ",
                        "audit Renew eligible role assignment",
                    ],
                ),
            ),
            (
                "renewing an expired row still in the table",
                owner.clone(),
                request(RequestType::AdminRenew, Eligible, once("P30D")),
                SubmitFacts {
                    in_table: vec![eligible("old", "alice", Some(-1))],
                    ..w.facts()
                },
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "update old",
                        "request Provisioned ",
                        "audit Renew eligible role assignment",
                    ],
                ),
            ),
            (
                "a live assignment is extended, not renewed",
                owner,
                request(RequestType::AdminRenew, Eligible, once("P30D")),
                SubmitFacts {
                    in_table: vec![e1],
                    ..w.facts()
                },
                Expect::Fails(ErrorCode::RoleAssignmentExists),
            ),
        ],
    );
}

#[test]
fn removals() {
    use AssignmentState::{Active, Eligible};
    let w = World::new();
    let owner = caller("owner", false, true);
    let alice = caller("alice", false, true);
    let e1 = eligible("e1", "alice", None);
    let x1 = assignment("x1", "alice", Active, -10, Some(50), Some("e1"));
    let dependents = |pending: RoleAssignmentRequest| {
        vec![(
            "e1".to_string(),
            Dependents {
                activations: vec![x1.clone()],
                pending: vec![PendingFacts {
                    request: pending,
                    names: w.target.names(),
                    granted: None,
                }],
            },
        )]
    };
    run_table(
        &w,
        vec![
            (
                "removing an eligibility ends its activation and cancels its pending request",
                owner.clone(),
                request(RequestType::AdminRemove, Eligible, None),
                SubmitFacts {
                    in_table: vec![e1.clone()],
                    dependents: dependents(pending_activation(&w, -5, Some(55))),
                    ..w.facts()
                },
                Expect::Done(
                    SubStatus::Revoked,
                    &[
                        "end e1 Removed",
                        "end x1 Removed",
                        "audit Deactivate role (eligible assignment ended)",
                        "update request pending-1 Canceled",
                        "audit Cancel request (eligible assignment ended)",
                        "request Revoked ",
                        "audit Remove eligible member from role",
                    ],
                ),
            ),
            (
                "a linked request past its deadline times out rather than being canceled",
                owner.clone(),
                request(RequestType::AdminRemove, Eligible, None),
                SubmitFacts {
                    in_table: vec![e1.clone()],
                    dependents: dependents(pending_activation(&w, -90, Some(-30))),
                    ..w.facts()
                },
                Expect::Done(
                    SubStatus::Revoked,
                    &[
                        "end e1 Removed",
                        "end x1 Removed",
                        "audit Deactivate role (eligible assignment ended)",
                        "update request pending-1 TimedOut",
                        "email TimedOut",
                        "audit Time out approval",
                        "request Revoked ",
                        "audit Remove eligible member from role",
                    ],
                ),
            ),
            (
                "a pending request of the key never blocks a revocation",
                owner.clone(),
                request(RequestType::AdminRemove, Active, None),
                SubmitFacts {
                    in_table: vec![x1.clone()],
                    pending: Some(pending_activation(&w, -5, Some(55))),
                    ..w.facts()
                },
                Expect::Done(
                    SubStatus::Revoked,
                    &[
                        "audit Cancel request (assignment removed)",
                        "update request pending-1 Canceled",
                        "end x1 Removed",
                        "request Revoked ",
                        "audit Remove active member from role",
                    ],
                ),
            ),
            (
                "alice deactivates her activation",
                alice.clone(),
                request(RequestType::UserRemove, Active, None),
                SubmitFacts {
                    in_table: vec![x1.clone()],
                    ..w.facts()
                },
                Expect::Done(
                    SubStatus::Revoked,
                    &[
                        "end x1 Removed",
                        "request Revoked ",
                        "audit Deactivate role",
                    ],
                ),
            ),
            (
                "a user cannot remove a direct active assignment",
                alice.clone(),
                request(RequestType::UserRemove, Active, None),
                SubmitFacts {
                    in_table: vec![assignment("d1", "alice", Active, -10, Some(50), None)],
                    ..w.facts()
                },
                Expect::Fails(ErrorCode::RoleAssignmentDoesNotExist),
            ),
            (
                "UserRemove is for activations only",
                alice,
                request(RequestType::UserRemove, Eligible, None),
                SubmitFacts {
                    in_table: vec![e1],
                    ..w.facts()
                },
                Expect::Fails(ErrorCode::BadRequest),
            ),
            (
                "nothing to remove",
                owner,
                request(RequestType::AdminRemove, Eligible, None),
                w.facts(),
                Expect::Fails(ErrorCode::RoleAssignmentDoesNotExist),
            ),
        ],
    );
}

fn candidate(a: RoleAssignment, template: &str) -> Candidate {
    Candidate {
        assignment: a,
        template_id: Some(template.into()),
    }
}

#[test]
fn activation() {
    use AssignmentState::Active;
    let plain = World::new();
    let approved = World::new().approval(1, true);
    let alice = caller("alice", false, true);
    let activate = |duration: &str| request(RequestType::UserAdd, Active, once(duration));
    let eligible_for = |w: &World, end: Option<i64>, template: &str| SubmitFacts {
        candidates: vec![candidate(eligible("e1", "alice", end), template)],
        ..w.facts()
    };
    let mut emergency = activate("PT30M");
    emergency.emergency = true;
    let mut too_long_emergency = activate("PT2H");
    too_long_emergency.emergency = true;
    let mut named_elsewhere = activate("PT1H");
    named_elsewhere.linked_eligible_id = Some("e2".into());
    let rows = |w: &World| -> Vec<Row> {
        vec![
            (
                "alice activates for an hour",
                alice.clone(),
                activate("PT1H"),
                eligible_for(w, None, CONTRIBUTOR),
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "insert id-2",
                        "request Provisioned ",
                        "email Activated",
                        "audit Activate role",
                    ],
                ),
            ),
            (
                "longer than the activation maximum (8 hours)",
                alice.clone(),
                activate("PT9H"),
                eligible_for(w, None, CONTRIBUTOR),
                Expect::Fails(ErrorCode::RoleAssignmentRequestPolicyValidationFailed),
            ),
            (
                "past the eligibility's end",
                alice.clone(),
                activate("PT2H"),
                eligible_for(w, Some(60), CONTRIBUTOR),
                Expect::Fails(ErrorCode::RoleAssignmentRequestPolicyValidationFailed),
            ),
            (
                "without MFA",
                caller("alice", false, false),
                activate("PT1H"),
                eligible_for(w, None, CONTRIBUTOR),
                Expect::Fails(ErrorCode::RoleAssignmentRequestPolicyValidationFailed),
            ),
            (
                "eligible for another role only",
                alice.clone(),
                activate("PT1H"),
                eligible_for(w, None, READER),
                Expect::Fails(ErrorCode::RoleAssignmentRequestPolicyValidationFailed),
            ),
            (
                "a named eligible assignment that does not exist",
                alice.clone(),
                named_elsewhere.clone(),
                eligible_for(w, None, CONTRIBUTOR),
                Expect::Fails(ErrorCode::RoleAssignmentDoesNotExist),
            ),
            (
                "someone else's eligibility",
                alice.clone(),
                activate("PT1H"),
                SubmitFacts {
                    candidates: vec![candidate(eligible("e1", "bob", None), CONTRIBUTOR)],
                    ..w.facts()
                },
                Expect::Fails(ErrorCode::RoleAssignmentRequestPolicyValidationFailed),
            ),
            (
                "for someone else",
                caller("bob", false, true),
                activate("PT1H"),
                eligible_for(w, None, CONTRIBUTOR),
                Expect::Fails(ErrorCode::AuthorizationRequestDenied),
            ),
            (
                "already active",
                alice.clone(),
                activate("PT1H"),
                SubmitFacts {
                    in_table: vec![assignment("x1", "alice", Active, -5, Some(30), Some("e1"))],
                    ..eligible_for(w, None, CONTRIBUTOR)
                },
                Expect::Fails(ErrorCode::RoleAssignmentExists),
            ),
        ]
    };
    run_table(&plain, rows(&plain));
    run_table(
        &approved,
        vec![
            (
                "with an ApprovalRule the activation waits for the approvers",
                alice.clone(),
                activate("PT1H"),
                eligible_for(&approved, None, CONTRIBUTOR),
                Expect::Done(
                    SubStatus::PendingApproval,
                    &[
                        "request PendingApproval bob+carol",
                        "email ApprovalNeeded",
                        "audit Activate role requested (approval needed)",
                    ],
                ),
            ),
            (
                "emergency access bypasses approval, within its cap",
                alice.clone(),
                emergency,
                eligible_for(&approved, None, CONTRIBUTOR),
                Expect::Done(
                    SubStatus::Provisioned,
                    &[
                        "insert id-2",
                        "request Provisioned ",
                        "email Activated",
                        "email EmergencyActivated",
                        "audit Activate role (emergency access)",
                    ],
                ),
            ),
            (
                "emergency access longer than its cap",
                alice,
                too_long_emergency,
                eligible_for(&approved, None, CONTRIBUTOR),
                Expect::Fails(ErrorCode::RoleAssignmentRequestPolicyValidationFailed),
            ),
        ],
    );
}

#[test]
fn user_extend_and_renew() {
    use AssignmentState::Eligible;
    let w = World::new();
    let alice = caller("alice", false, true);
    run_table(
        &w,
        vec![
            (
                "an eligibility ending within 14 days may be extended by an administrator",
                alice.clone(),
                request(RequestType::UserExtend, Eligible, once("P60D")),
                SubmitFacts {
                    in_table: vec![eligible("e1", "alice", Some(5 * DAY))],
                    ..w.facts()
                },
                Expect::Done(
                    SubStatus::PendingAdminDecision,
                    &[
                        "request PendingAdminDecision ",
                        "email DecisionNeeded",
                        "audit Request extension of eligible role assignment",
                    ],
                ),
            ),
            (
                "not ending soon",
                alice.clone(),
                request(RequestType::UserExtend, Eligible, once("P60D")),
                SubmitFacts {
                    in_table: vec![eligible("e1", "alice", Some(30 * DAY))],
                    ..w.facts()
                },
                Expect::Fails(ErrorCode::RoleAssignmentRequestPolicyValidationFailed),
            ),
            (
                "renewal of an eligibility expired 10 days ago",
                alice.clone(),
                request(RequestType::UserRenew, Eligible, once("P60D")),
                SubmitFacts {
                    in_history: vec![eligible("old", "alice", Some(-10 * DAY))],
                    ..w.facts()
                },
                Expect::Done(
                    SubStatus::PendingAdminDecision,
                    &[
                        "request PendingAdminDecision ",
                        "email DecisionNeeded",
                        "audit Request renewal of eligible role assignment",
                    ],
                ),
            ),
            (
                "renewal of one expired 40 days ago",
                alice,
                request(RequestType::UserRenew, Eligible, once("P60D")),
                SubmitFacts {
                    in_history: vec![eligible("old", "alice", Some(-40 * DAY))],
                    ..w.facts()
                },
                Expect::Fails(ErrorCode::RoleAssignmentDoesNotExist),
            ),
        ],
    );
}

#[test]
fn a_stale_pending_request_catches_up_before_a_new_one() {
    use AssignmentState::Active;
    let w = World::new();
    let mut facts = SubmitFacts {
        candidates: vec![candidate(eligible("e1", "alice", None), CONTRIBUTOR)],
        pending: Some(pending_activation(&w, -120, Some(-60))),
        ..w.facts()
    };
    let got = w.submit(
        &caller("alice", false, true),
        &request(RequestType::UserAdd, Active, once("PT1H")),
        &facts,
    );
    check(
        "timed out by the clock",
        got,
        Expect::Done(
            SubStatus::Provisioned,
            &[
                "update request pending-1 TimedOut",
                "email TimedOut",
                "audit Time out approval",
                "insert id-3",
                "request Provisioned ",
                "email Activated",
                "audit Activate role",
            ],
        ),
    );
    // Locked resources take no request at all.
    facts.target.resource.status = ResourceStatus::Locked;
    assert_eq!(
        check_resource(&facts.target.resource).unwrap_err().code,
        ErrorCode::ResourceIsLocked
    );
}

#[test]
fn cancel() {
    let w = World::new();
    let pending = pending_activation(&w, -5, Some(55));
    let facts = |r: RoleAssignmentRequest, granted| PendingFacts {
        request: r,
        granted,
        names: w.target.names(),
    };
    let cancel = |who: &Caller, f: PendingFacts| w.run(who, at(0), |ctx| decide_cancel(ctx, &f));
    check(
        "the requester cancels",
        cancel(&caller("alice", false, true), facts(pending.clone(), None)),
        Expect::Done(
            SubStatus::Canceled,
            &[
                "update request pending-1 Canceled",
                "audit Cancel request (UserAdd)",
            ],
        ),
    );
    check(
        "an administrator of the resource cancels",
        cancel(&caller("owner", false, true), facts(pending.clone(), None)),
        Expect::Done(
            SubStatus::Canceled,
            &[
                "update request pending-1 Canceled",
                "audit Cancel request (UserAdd)",
            ],
        ),
    );
    check(
        "a stranger may not",
        cancel(
            &caller("mallory", false, true),
            facts(pending.clone(), None),
        ),
        Expect::Fails(ErrorCode::AuthorizationRequestDenied),
    );
    let timed_out = pending_activation(&w, -120, Some(-60));
    check(
        "closed by the clock",
        cancel(&caller("alice", false, true), facts(timed_out, None)),
        Expect::Fails(ErrorCode::RequestCannotBeCancelled),
    );
    let granted = RoleAssignmentRequest {
        sub_status: SubStatus::Granted,
        schedule: Some(Schedule {
            start: at(60),
            end: Some(at(120)),
        }),
        assignment_id: Some("x9".into()),
        approval_deadline: None,
        ..pending
    };
    let later = assignment(
        "x9",
        "alice",
        AssignmentState::Active,
        60,
        Some(120),
        Some("e1"),
    );
    check(
        "a grant that has not started ends with its request",
        cancel(&caller("alice", false, true), facts(granted, Some(later))),
        Expect::Done(
            SubStatus::Canceled,
            &[
                "end x9 Canceled",
                "update request pending-1 Canceled",
                "audit Cancel request (UserAdd)",
            ],
        ),
    );
}

#[test]
fn approval_decisions() {
    let w = World::new().approval(2, false);
    let pending = pending_activation(&w, -5, Some(55));
    let e1 = eligible("e1", "alice", None);
    let facts = |earlier: Vec<Approval>, eligible: Option<RoleAssignment>| DecisionFacts {
        target: w.target.clone(),
        earlier,
        in_table: Vec::new(),
        in_history: Vec::new(),
        eligible,
    };
    let decide = |who: &Caller, decision: &str, f: &DecisionFacts| {
        let input = DecisionInput {
            decision: decision.into(),
            reason: Some("ok".into()),
            schedule: None,
        };
        w.ids.set(0);
        w.run(who, at(0), |ctx| {
            let approve = decidable(ctx, &pending, &input)?;
            decide_request(ctx, pending.clone(), approve, &input, f)
        })
    };
    let bob = caller("bob", false, true);
    let carol = caller("carol", false, true);
    let by_bob = Approval {
        request_id: pending.id.clone(),
        approver_id: "bob".into(),
        approver_name: "bob".into(),
        approved: true,
        justification: None,
        at: at(-1),
    };
    check(
        "the first of two approvals keeps it pending",
        decide(&bob, "AdminApproved", &facts(Vec::new(), Some(e1.clone()))),
        Expect::Done(
            SubStatus::PendingApproval,
            &[
                "approval bob true",
                "update request pending-1 PendingApproval",
                "audit Approve request (UserAdd)",
            ],
        ),
    );
    check(
        "the second approval starts the activation",
        decide(
            &carol,
            "AdminApproved",
            &facts(vec![by_bob.clone()], Some(e1.clone())),
        ),
        Expect::Done(
            SubStatus::Provisioned,
            &[
                "approval carol true",
                "insert id-1",
                "update request pending-1 Provisioned",
                "email Approved",
                "audit Approve request (UserAdd)",
            ],
        ),
    );
    check(
        "the eligibility ended meanwhile",
        decide(&carol, "AdminApproved", &facts(vec![by_bob.clone()], None)),
        Expect::Done(
            SubStatus::Failed,
            &[
                "approval carol true",
                "update request pending-1 Failed",
                "email Failed",
                "audit Approve request (UserAdd)",
            ],
        ),
    );
    check(
        "one denial closes it",
        decide(
            &carol,
            "AdminDenied",
            &facts(vec![by_bob.clone()], Some(e1.clone())),
        ),
        Expect::Done(
            SubStatus::AdminDenied,
            &[
                "approval carol false",
                "update request pending-1 AdminDenied",
                "email Denied",
                "audit Deny request (UserAdd)",
            ],
        ),
    );
    for (name, who, decision, earlier, code) in [
        (
            "nobody decides their own",
            caller("alice", false, true),
            "AdminApproved",
            vec![],
            ErrorCode::AuthorizationRequestDenied,
        ),
        (
            "an administrator is not a listed approver",
            caller("owner", false, true),
            "AdminApproved",
            vec![],
            ErrorCode::AuthorizationRequestDenied,
        ),
        (
            "an approver decides once",
            bob.clone(),
            "AdminApproved",
            vec![by_bob.clone()],
            ErrorCode::RequestCannotBeUpdated,
        ),
        (
            "a decision is approve or deny",
            bob.clone(),
            "Maybe",
            vec![],
            ErrorCode::BadRequest,
        ),
    ] {
        check(
            name,
            decide(&who, decision, &facts(earlier, Some(e1.clone()))),
            Expect::Fails(code),
        );
    }
}

#[test]
fn an_administrator_decides_an_extension() {
    let w = World::new();
    let e1 = eligible("e1", "alice", Some(5 * DAY));
    let r = RoleAssignmentRequest {
        kind: RequestType::UserExtend,
        state: AssignmentState::Eligible,
        sub_status: SubStatus::PendingAdminDecision,
        schedule: Some(Schedule {
            start: at(-DAY),
            end: Some(at(60 * DAY)),
        }),
        linked_eligible_id: None,
        approval_deadline: None,
        assignment_id: Some("e1".into()),
        ..pending_activation(&w, -5, None)
    };
    let facts = DecisionFacts {
        target: w.target.clone(),
        earlier: Vec::new(),
        in_table: vec![e1],
        in_history: Vec::new(),
        eligible: None,
    };
    let input = DecisionInput {
        decision: "AdminApproved".into(),
        reason: None,
        schedule: None,
    };
    let decide = |who: &Caller| {
        w.run(who, at(0), |ctx| {
            let approve = decidable(ctx, &r, &input)?;
            decide_request(ctx, r.clone(), approve, &input, &facts)
        })
    };
    check(
        "an R3 holder approves",
        decide(&caller("owner", false, true)),
        Expect::Done(
            SubStatus::Provisioned,
            &[
                "approval owner true",
                "update e1",
                "update request pending-1 Provisioned",
                "email Approved",
                "audit Approve request (UserExtend)",
            ],
        ),
    );
    check(
        "a listed approver is not enough",
        decide(&caller("bob", false, true)),
        Expect::Fails(ErrorCode::AuthorizationRequestDenied),
    );
}

fn activation_case() -> impl Strategy<Value = (i64, Option<i64>, u32, bool, bool, i64)> {
    (
        1i64..24 * 60,               // requested minutes
        prop::option::of(1i64..DAY), // eligible end, minutes from now
        1u32..24 * 60,               // policy maximum, minutes
        any::<bool>(),               // approval enabled
        any::<bool>(),               // emergency asked
        1i64..120,                   // emergency cap
    )
}

proptest! {
    /// Nobody gets access the policy does not allow: whatever is asked, an activation a
    /// decision grants is linked to the caller's current eligibility, ends no later than it
    /// and within the policy's maximum, and is never granted past an ApprovalRule except by
    /// an allowed emergency bypass within its cap.
    #[test]
    fn granted_activations_stay_within_eligibility_and_policy(
        (minutes, eligible_end, max, approval, emergency, cap) in activation_case()
    ) {
        let expiration = format!(r#"{{"permanentAssignment":false,"maximumGrantPeriodInMinutes":{max}}}"#);
        let approval_rule = format!(
            r#"{{"Enabled":{approval},"AllowEmergencyBypass":true,"EmergencyMaximumMinutes":{cap},"Approvers":[{{"Id":"bob","Type":"User"}}]}}"#
        );
        let w = World::new().user_rules(&[
            ("ExpirationRule", &expiration),
            ("ApprovalRule", &approval_rule),
        ]);
        let mut new = request(RequestType::UserAdd, AssignmentState::Active, once(&format!("PT{minutes}M")));
        new.emergency = emergency;
        let facts = SubmitFacts {
            candidates: vec![candidate(eligible("e1", "alice", eligible_end), CONTRIBUTOR)],
            ..w.facts()
        };
        let got = w.submit(&caller("alice", false, true), &new, &facts);
        let granted: Vec<RoleAssignment> = got
            .iter()
            .flat_map(|(_, changes)| changes.iter())
            .filter_map(|c| match c {
                Change::InsertAssignment { assignment, .. } => Some(assignment.clone()),
                _ => None,
            })
            .collect();
        for a in &granted {
            prop_assert_eq!(a.linked_eligible_id.as_deref(), Some("e1"));
            prop_assert_eq!(a.subject_id.as_str(), "alice");
            let end = a.schedule.end.expect("activations end");
            prop_assert!(end <= at(i64::from(max)), "past the policy maximum");
            if let Some(limit) = eligible_end {
                prop_assert!(end <= at(limit), "past the eligibility");
            }
            if approval {
                prop_assert!(emergency && minutes <= cap, "granted past an ApprovalRule");
            }
        }
        if let Ok((r, _)) = &got {
            prop_assert_eq!(granted.is_empty(), r.sub_status == SubStatus::PendingApproval);
        }
    }
}
