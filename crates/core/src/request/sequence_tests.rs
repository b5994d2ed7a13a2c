//! A property test over whole sequences of requests, without a database: an in-memory
//! model keeps the assignments table, history and requests, derives each operation's facts
//! from them as the store would, applies the decisions' changes, and lets the clock run
//! (the scheduler's catch-up and expiry included). After every step the invariants a PIM
//! server must keep hold: nobody gets access the policy does not allow, and access ends
//! when it should.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::access::{AccessIndex, Caller};
use crate::policy::{RoleRules, RoleRulesPatch, RuleSetting};
use crate::resource::ResourceStatus;
use crate::role::RoleSetting;
use proptest::prelude::*;
use std::cell::Cell;

const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const USERS: [&str; 2] = ["alice", "bob"];
/// The ApprovalRule's approver, and the resource's administrator.
const APPROVER: &str = "carol";
const OWNER: &str = "owner";
/// The activation maximum of the rules (minutes).
const MAX_ACTIVATION: i64 = 240;

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_900_000_000).unwrap() + SignedDuration::from_mins(minutes)
}

fn caller(id: &str) -> Caller {
    Caller {
        subject_id: id.into(),
        display_name: id.into(),
        principal_name: None,
        is_tenant_admin: false,
        mfa: true,
    }
}

/// One step of a sequence.
#[derive(Debug, Clone)]
enum Step {
    /// The owner makes a user eligible for `minutes`.
    MakeEligible(usize, i64),
    /// The owner changes a user's eligibility to end `minutes` after its start.
    ChangeEligibility(usize, i64),
    /// The owner removes a user's eligibility.
    RemoveEligibility(usize),
    /// A user activates for `minutes` (asking for emergency access or not).
    Activate(usize, i64, bool),
    /// A user deactivates.
    Deactivate(usize),
    /// The approver (or, when `false`, the owner) decides the oldest pending request.
    Decide(bool, bool),
    /// The requester cancels their oldest pending request.
    Cancel,
    /// Time passes; then the scheduler runs, or has not yet.
    Wait(i64, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..2usize, 30i64..3000).prop_map(|(u, m)| Step::MakeEligible(u, m)),
        (0..2usize, -60i64..3000).prop_map(|(u, m)| Step::ChangeEligibility(u, m)),
        (0..2usize).prop_map(Step::RemoveEligibility),
        (0..2usize, 10i64..400, any::<bool>()).prop_map(|(u, m, e)| Step::Activate(u, m, e)),
        (0..2usize).prop_map(Step::Deactivate),
        (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Step::Decide(a, b)),
        Just(Step::Cancel),
        (0i64..600, any::<bool>()).prop_map(|(m, pass)| Step::Wait(m, pass)),
    ]
}

/// The store, in memory.
struct Model {
    target: RequestTarget,
    index: AccessIndex,
    ids: Cell<u64>,
    now: i64,
    table: Vec<RoleAssignment>,
    history: Vec<(RoleAssignment, EndReason)>,
    requests: Vec<RoleAssignmentRequest>,
    approvals: Vec<Approval>,
}

impl Model {
    fn new(approval: bool) -> Model {
        let mut index = AccessIndex::new();
        index.add_resource("rg", None);
        let owner = RoleAssignment {
            id: "owner-grant".into(),
            resource_id: "rg".into(),
            role_definition_id: "owner-rg".into(),
            subject_id: OWNER.into(),
            state: AssignmentState::Active,
            linked_eligible_id: None,
            schedule: Schedule {
                start: at(-1),
                end: None,
            },
            request_id: String::new(),
        };
        index.upsert(&owner, true);
        let mut rules = RoleRules::defaults();
        let approval_rule = format!(
            r#"{{"Enabled":{approval},"RequiredApprovals":1,"ApprovalTimeoutInMinutes":30,"AllowEmergencyBypass":true,"EmergencyMaximumMinutes":60,"Approvers":[{{"Id":"{APPROVER}","Type":"User"}}]}}"#
        );
        let expiration = format!(
            r#"{{"permanentAssignment":false,"maximumGrantPeriodInMinutes":{MAX_ACTIVATION}}}"#
        );
        rules
            .apply_patch(RoleRulesPatch {
                user_member: Some(vec![
                    RuleSetting::new("ApprovalRule", approval_rule),
                    RuleSetting::new("ExpirationRule", expiration),
                ]),
                ..RoleRulesPatch::default()
            })
            .unwrap();
        Model {
            target: RequestTarget {
                resource: Resource {
                    id: "rg".into(),
                    external_id: "/subscriptions/s/resourceGroups/rg".into(),
                    resource_type: "resourcegroup".into(),
                    display_name: "rg".into(),
                    status: ResourceStatus::Active,
                    registered_at: at(-1),
                    registered_root: "/subscriptions/s".into(),
                    parent_id: None,
                },
                role: RoleDefinition {
                    id: "role-rg".into(),
                    resource_id: "rg".into(),
                    external_id: "x".into(),
                    template_id: CONTRIBUTOR.into(),
                    display_name: "Contributor".into(),
                },
                setting: RoleSetting {
                    id: "setting".into(),
                    resource_id: "rg".into(),
                    role_definition_id: "role-rg".into(),
                    is_default: false,
                    last_updated_at: None,
                    last_updated_by: None,
                    rules,
                },
            },
            index,
            ids: Cell::new(0),
            now: 0,
            table: Vec::new(),
            history: Vec::new(),
            requests: Vec::new(),
            approvals: Vec::new(),
        }
    }

    fn key(&self, user: &str, state: AssignmentState) -> AssignmentKey {
        AssignmentKey {
            resource_id: "rg".into(),
            role_definition_id: "role-rg".into(),
            subject_id: user.into(),
            state,
        }
    }

    fn with_key(&self, key: &AssignmentKey) -> Vec<RoleAssignment> {
        self.table
            .iter()
            .filter(|a| {
                a.subject_id == key.subject_id
                    && a.state == key.state
                    && a.role_definition_id == key.role_definition_id
            })
            .cloned()
            .collect()
    }

    fn stored_open(&self) -> impl Iterator<Item = &RoleAssignmentRequest> {
        self.requests.iter().filter(|r| r.sub_status.is_open())
    }

    fn pending_facts(&self, r: &RoleAssignmentRequest) -> PendingFacts {
        let granted = match r.assignment_id.as_deref() {
            Some(a) if r.status_at(at(self.now)) == SubStatus::Granted => {
                self.table.iter().find(|x| x.id == a).cloned()
            }
            _ => None,
        };
        PendingFacts {
            request: r.clone(),
            names: self.target.names(),
            granted,
        }
    }

    fn dependents(&self, a: &RoleAssignment) -> Dependents {
        Dependents {
            activations: self
                .table
                .iter()
                .filter(|x| x.linked_eligible_id.as_deref() == Some(a.id.as_str()))
                .cloned()
                .collect(),
            pending: self
                .stored_open()
                .filter(|r| {
                    r.kind == RequestType::UserAdd
                        && r.linked_eligible_id.as_deref() == Some(a.id.as_str())
                })
                .map(|r| self.pending_facts(r))
                .collect(),
        }
    }

    /// Loads what a new request needs, as `operation::request::submit` does from the store.
    fn submit_facts(&self, new: &NewRequest, kind: RequestType) -> SubmitFacts {
        let state = new.state.unwrap();
        let key = self.key(&new.subject_id, state);
        let in_table = self.with_key(&key);
        let dependents = in_table
            .iter()
            .filter(|a| a.state == AssignmentState::Eligible)
            .map(|a| (a.id.clone(), self.dependents(a)))
            .collect();
        let candidates = if kind == RequestType::UserAdd {
            self.table
                .iter()
                .filter(|a| a.state == AssignmentState::Eligible && a.subject_id == new.subject_id)
                .map(|a| Candidate {
                    assignment: a.clone(),
                    template_id: Some(CONTRIBUTOR.into()),
                })
                .collect()
        } else {
            Vec::new()
        };
        SubmitFacts {
            target: self.target.clone(),
            subject: Some(crate::directory::Subject {
                id: new.subject_id.clone(),
                external_id: None,
                kind: crate::directory::SubjectKind::User,
                display_name: new.subject_id.clone(),
                principal_name: None,
                email: None,
                active: true,
            }),
            pending: self
                .stored_open()
                .find(|r| r.subject_id == key.subject_id && r.state == key.state)
                .cloned(),
            in_table,
            in_history: Vec::new(),
            candidates,
            dependents,
        }
    }

    /// Runs `decide` as `who` at the model's time and applies what it returns.
    fn run(
        &mut self,
        who: &Caller,
        decide: impl FnOnce(&OpContext, &Model) -> Result<(RoleAssignmentRequest, Vec<Change>)>,
    ) {
        let ids = &self.ids;
        let new_id = || {
            ids.set(ids.get() + 1);
            format!("id-{}", ids.get())
        };
        let index = std::mem::take(&mut self.index);
        let decided = {
            let ctx = OpContext {
                caller: who,
                access: &index,
                now: at(self.now),
                correlation_id: "model",
                new_id: &new_id,
                mail: None,
            };
            decide(&ctx, self)
        };
        self.index = index;
        if let Ok((_, changes)) = decided {
            self.apply(changes);
        }
    }

    /// Applies changes as `operation::apply` writes them, checking what the store checks.
    fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::InsertAssignment {
                    assignment,
                    administers,
                } => {
                    assert!(!self.table.iter().any(|a| a.id == assignment.id));
                    self.index.upsert(&assignment, administers);
                    self.table.push(assignment);
                }
                Change::UpdateAssignment {
                    assignment,
                    administers,
                } => {
                    let row = self.table.iter_mut().find(|a| a.id == assignment.id);
                    *row.expect("an updated assignment is in the table") = assignment.clone();
                    self.index.upsert(&assignment, administers);
                }
                Change::RestoreAssignment {
                    assignment,
                    administers,
                } => {
                    let i = self
                        .history
                        .iter()
                        .position(|(a, _)| a.id == assignment.id)
                        .expect("a restored assignment is in history");
                    self.history.remove(i);
                    self.index.upsert(&assignment, administers);
                    self.table.push(assignment);
                }
                Change::EndAssignment {
                    assignment, reason, ..
                } => {
                    let i = self
                        .table
                        .iter()
                        .position(|a| a.id == assignment.id)
                        .expect("an assignment ends once");
                    let a = self.table.remove(i);
                    self.index.remove(&a.subject_id, &a.id);
                    self.history.push((a, reason));
                }
                Change::InsertRequest { request, .. } => {
                    assert!(!self.requests.iter().any(|r| r.id == request.id));
                    assert_eq!(request.version, 1);
                    self.requests.push(request);
                }
                Change::UpdateRequest(request) => {
                    let row = self
                        .requests
                        .iter_mut()
                        .find(|r| r.id == request.id)
                        .expect("an updated request exists");
                    assert_eq!(row.version + 1, request.version, "optimistic concurrency");
                    assert!(
                        row.sub_status.is_open(),
                        "a closed request changed: {:?} → {:?}",
                        row.sub_status,
                        request.sub_status
                    );
                    *row = request;
                }
                Change::InsertApproval(a) => self.approvals.push(a),
                Change::Audit(_)
                | Change::Email { .. }
                | Change::RecordReminder { .. }
                | Change::QueueEmail(_) => {}
                other => panic!("a request decision changed the directory: {other:?}"),
            }
        }
    }

    fn submit(&mut self, who: &str, new: NewRequest) {
        self.run(&caller(who), |ctx, m| {
            let admitted = admit(ctx, &new)?;
            let facts = m.submit_facts(&new, admitted.0);
            decide_submit(ctx, &new, admitted, &facts)
        });
    }

    /// The scheduler's pass: stale requests catch up, ended assignments move to history.
    fn scheduler_pass(&mut self) {
        let now = at(self.now);
        let stale: Vec<RoleAssignmentRequest> = self
            .stored_open()
            .filter(|r| r.status_at(now) != r.sub_status)
            .cloned()
            .collect();
        for r in stale {
            let names = self.target.names();
            self.run(&crate::scheduler::caller(), |ctx, _| {
                crate::scheduler::catch_up(ctx, &r, &names)
                    .ok_or_else(|| crate::error::DomainError::internal("not stale"))
            });
        }
        let ended: Vec<RoleAssignment> = self
            .table
            .iter()
            .filter(|a| a.schedule.has_ended(now))
            .cloned()
            .collect();
        for a in ended {
            let end = a.schedule.end.unwrap();
            self.apply(vec![Change::EndAssignment {
                assignment: a,
                at: end,
                reason: EndReason::Expired,
                request_id: None,
            }]);
        }
    }

    fn step(&mut self, s: &Step) {
        let request = |kind, state, subject: &str, minutes: Option<i64>| NewRequest {
            resource_id: "rg".into(),
            role_definition_id: "role-rg".into(),
            subject_id: subject.into(),
            kind: Some(kind),
            state: Some(state),
            schedule: minutes.map(|m| ScheduleInput {
                kind: Some("Once".into()),
                start: None,
                end: None,
                duration: Some(format!("PT{m}M")),
            }),
            reason: Some("model".into()),
            linked_eligible_id: None,
            ticket: None,
            emergency: false,
        };
        use AssignmentState::{Active, Eligible};
        match s {
            Step::MakeEligible(u, m) => self.submit(
                OWNER,
                request(RequestType::AdminAdd, Eligible, USERS[*u], Some(*m)),
            ),
            Step::ChangeEligibility(u, m) => {
                let mut new = request(RequestType::AdminUpdate, Eligible, USERS[*u], None);
                new.schedule = Some(ScheduleInput {
                    kind: Some("Once".into()),
                    start: None,
                    end: Some(crate::schedule::format_datetime(at(self.now + m))),
                    duration: None,
                });
                self.submit(OWNER, new);
            }
            Step::RemoveEligibility(u) => self.submit(
                OWNER,
                request(RequestType::AdminRemove, Eligible, USERS[*u], None),
            ),
            Step::Activate(u, m, emergency) => {
                let mut new = request(RequestType::UserAdd, Active, USERS[*u], Some(*m));
                new.emergency = *emergency;
                self.submit(USERS[*u], new);
            }
            Step::Deactivate(u) => self.submit(
                USERS[*u],
                request(RequestType::UserRemove, Active, USERS[*u], None),
            ),
            Step::Decide(approver, approve) => {
                let Some(r) = self.stored_open().next().cloned() else {
                    return;
                };
                let who = caller(if *approver { APPROVER } else { OWNER });
                let input = DecisionInput {
                    decision: if *approve {
                        "AdminApproved"
                    } else {
                        "AdminDenied"
                    }
                    .into(),
                    reason: None,
                    schedule: None,
                };
                self.run(&who, |ctx, m| {
                    let yes = decidable(ctx, &r, &input)?;
                    let key = r.key();
                    let facts = DecisionFacts {
                        target: m.target.clone(),
                        earlier: m
                            .approvals
                            .iter()
                            .filter(|a| a.request_id == r.id)
                            .cloned()
                            .collect(),
                        in_table: m.with_key(&key),
                        in_history: Vec::new(),
                        eligible: r
                            .linked_eligible_id
                            .as_deref()
                            .and_then(|e| m.table.iter().find(|a| a.id == e).cloned()),
                    };
                    decide_request(ctx, r.clone(), yes, &input, &facts)
                });
            }
            Step::Cancel => {
                let Some(r) = self.stored_open().next().cloned() else {
                    return;
                };
                let who = caller(&r.requested_by);
                self.run(&who, |ctx, m| decide_cancel(ctx, &m.pending_facts(&r)));
            }
            Step::Wait(m, pass) => {
                self.now += m;
                if *pass {
                    self.scheduler_pass();
                }
            }
        }
    }

    /// What must hold after every step.
    fn check(&self, approval: bool, reported: &mut Vec<(String, SubStatus)>) {
        let now = at(self.now);
        for user in USERS {
            // One live direct assignment per key.
            for state in [AssignmentState::Eligible, AssignmentState::Active] {
                let direct = self
                    .with_key(&self.key(user, state))
                    .into_iter()
                    .filter(|a| a.is_live(now) && !a.is_activation())
                    .count();
                assert!(
                    direct <= 1,
                    "{user} holds {direct} live {state:?} assignments"
                );
            }
        }
        for x in self
            .table
            .iter()
            .filter(|a| a.is_activation() && a.is_live(now))
        {
            // A live activation rests on a live eligibility of its holder and ends with it.
            let e = self
                .table
                .iter()
                .find(|e| Some(e.id.as_str()) == x.linked_eligible_id.as_deref())
                .unwrap_or_else(|| panic!("activation {} outlived its eligibility", x.id));
            assert_eq!(e.subject_id, x.subject_id);
            if let Some(limit) = e.schedule.end {
                assert!(
                    x.schedule.end.is_some_and(|end| end <= limit),
                    "activation {} ends after its eligibility",
                    x.id
                );
            }
            let length = x
                .schedule
                .end
                .expect("activations end")
                .duration_since(x.schedule.start);
            assert!(length <= SignedDuration::from_mins(MAX_ACTIVATION));
            // Under an ApprovalRule, only an approval or emergency access grants it.
            let made_by = self
                .requests
                .iter()
                .find(|r| r.id == x.request_id)
                .expect("an activation names its request");
            if approval {
                let approved = self
                    .approvals
                    .iter()
                    .any(|a| a.request_id == made_by.id && a.approved);
                assert!(
                    approved || made_by.emergency,
                    "activation {} granted without approval",
                    x.id
                );
            }
        }
        // What reads reported for a closed request never changes.
        for (id, status) in reported.iter() {
            let r = self.requests.iter().find(|r| &r.id == id).unwrap();
            assert_eq!(r.status_at(now), *status, "closed request {id} changed");
        }
        for r in &self.requests {
            let status = r.status_at(now);
            if !status.is_open() && !reported.iter().any(|(id, _)| *id == r.id) {
                reported.push((r.id.clone(), status));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn request_sequences_keep_access_within_policy(
        approval in any::<bool>(),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        let mut m = Model::new(approval);
        let mut reported = Vec::new();
        for s in &steps {
            m.step(s);
            m.check(approval, &mut reported);
        }
    }
}
