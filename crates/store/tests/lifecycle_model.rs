//! A model-based property test of the whole request lifecycle against the real SQLite store
//! (a temporary file), through the public domain API (`operation::request::submit`, `decide`,
//! `cancel`, the scheduler's jobs) with an injected clock.
//!
//! Random sequences mix eligibility grants, activations of a role that needs approval and of
//! one that does not, approvals and denials (by the listed approver, by someone else, by the
//! requester), cancellations, removals, deactivations, extension requests and their
//! decisions, and clock steps with or without a scheduler pass. After every step:
//!
//! * every current activation was made by a `UserAdd` the model saw succeed, is backed by
//!   a current eligible assignment of the same subject and role that it does not outlive,
//!   lasts no longer than the rule's maximum, and, for the role that needs approval, was
//!   approved by the listed approver;
//! * the access index (patched after every commit, as the server does) honours exactly the
//!   assignments current at the clock — nothing past its end, whether the scheduler has run
//!   or not — and agrees with an index rebuilt from the database;
//! * no operation fails with a server error.

// Setup failures are meant to panic; temp names use the wall clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rolegate_core::access::{AccessChange, AccessIndex, Caller, OpContext};
use rolegate_core::assignment::AssignmentState;
use rolegate_core::directory::{Subject, SubjectKind};
use rolegate_core::error::Result;
use rolegate_core::operation::role::update_role_setting;
use rolegate_core::policy::{RoleRulesPatch, RuleSetting};
use rolegate_core::request::{DecisionInput, NewRequest, RequestType, SubStatus};
use rolegate_core::schedule::{ScheduleInput, format_datetime};
use rolegate_core::scheduler::{self, BATCH_SIZE, Job};
use rolegate_core::store::{self, Tx};
use rolegate_store::{SqliteStore, Synchronous};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

const USERS: [&str; 2] = ["u1", "u2"];
const APPROVER: &str = "ap";
/// The longest activation either role allows, in minutes.
const MAX_ACTIVATION_MINUTES: i64 = 60;
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

/// One step of a sequence.
#[derive(Debug, Clone)]
enum Step {
    /// The tenant administrator makes `user` eligible for role `role` for `minutes`.
    AdminAddEligible {
        user: usize,
        role: usize,
        minutes: i64,
    },
    /// `user` activates role `role` for `minutes`.
    Activate {
        user: usize,
        role: usize,
        minutes: i64,
    },
    /// Someone decides the `pick`-th most recent request made pending (or made at all, when
    /// none was).
    Decide {
        pick: usize,
        who: Who,
        approve: bool,
    },
    /// Someone cancels the `pick`-th most recent request.
    Cancel { pick: usize, who: Who },
    /// The tenant administrator removes `user`'s assignment of `role` in `state`.
    AdminRemove {
        user: usize,
        role: usize,
        eligible: bool,
    },
    /// `user` deactivates role `role`.
    Deactivate { user: usize, role: usize },
    /// `user` asks to extend their eligibility for `role` by `minutes`.
    UserExtend {
        user: usize,
        role: usize,
        minutes: i64,
    },
    /// The clock moves by `seconds`; with `sweep`, the scheduler then runs a pass.
    Advance { seconds: i64, sweep: bool },
}

/// Who acts.
#[derive(Debug, Clone, Copy)]
enum Who {
    Admin,
    Approver,
    User(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let user = 0..USERS.len();
    let role = 0..2usize;
    let who = prop_oneof![
        1 => Just(Who::Admin),
        3 => Just(Who::Approver),
        1 => (0..USERS.len()).prop_map(Who::User),
    ];
    prop_oneof![
        3 => (user.clone(), role.clone(), 5i64..3000)
            .prop_map(|(user, role, minutes)| Step::AdminAddEligible { user, role, minutes }),
        4 => (user.clone(), role.clone(), 1i64..90)
            .prop_map(|(user, role, minutes)| Step::Activate { user, role, minutes }),
        4 => (0usize..4, who.clone(), proptest::bool::weighted(0.75))
            .prop_map(|(pick, who, approve)| Step::Decide { pick, who, approve }),
        1 => (0usize..4, who).prop_map(|(pick, who)| Step::Cancel { pick, who }),
        1 => (user.clone(), role.clone(), any::<bool>())
            .prop_map(|(user, role, eligible)| Step::AdminRemove { user, role, eligible }),
        1 => (user.clone(), role.clone()).prop_map(|(user, role)| Step::Deactivate { user, role }),
        1 => (user, role, 10i64..600)
            .prop_map(|(user, role, minutes)| Step::UserExtend { user, role, minutes }),
        4 => (1i64..(40 * 60), any::<bool>())
            .prop_map(|(seconds, sweep)| Step::Advance { seconds, sweep }),
    ]
}

fn caller(id: &str, admin: bool) -> Caller {
    Caller {
        subject_id: id.into(),
        display_name: id.into(),
        principal_name: None,
        is_tenant_admin: admin,
        mfa: true,
    }
}

/// The world: the store, the clock, the access index as the server keeps it, and what the
/// model saw happen.
struct World {
    store: SqliteStore,
    path: PathBuf,
    now: Timestamp,
    index: AccessIndex,
    next_id: Cell<u64>,
    resource: String,
    /// Role definition ids: `[Contributor (approval needed), Reader (no approval)]`.
    roles: [String; 2],
    /// Every request made, in order.
    requests: Vec<String>,
    /// The requests that were pending when made, in order.
    pending: Vec<String>,
    /// Activation → the `UserAdd` request that made it.
    made_by: HashMap<String, String>,
    /// `UserAdd` requests the listed approver approved.
    approved: HashSet<String>,
}

impl World {
    fn new() -> World {
        let path = common::temp_db("model");
        let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        let mut w = World {
            store,
            path,
            now: Timestamp::from_second(1_900_000_000).unwrap(),
            index: AccessIndex::new(),
            next_id: Cell::new(0),
            resource: String::new(),
            roles: [String::new(), String::new()],
            requests: Vec::new(),
            pending: Vec::new(),
            made_by: HashMap::new(),
            approved: HashSet::new(),
        };
        w.set_up();
        w
    }

    /// Runs `f` as `who` in one write transaction and applies its access changes once it
    /// has committed, as the server's write path does.
    fn write<T>(
        &mut self,
        who: &Caller,
        f: impl FnOnce(&mut dyn Tx, &OpContext) -> Result<(T, Vec<AccessChange>)>,
    ) -> Result<T> {
        let counter = &self.next_id;
        let new_id = || {
            counter.set(counter.get() + 1);
            format!("00000000-0000-4000-8000-{:012x}", counter.get())
        };
        let ctx = OpContext {
            caller: who,
            access: &self.index,
            now: self.now,
            correlation_id: "model",
            new_id: &new_id,
            mail: None,
        };
        let (value, changes) = store::write(&self.store, |tx| f(tx, &ctx))?;
        self.index.apply(&changes);
        Ok(value)
    }

    fn set_up(&mut self) {
        let admin = caller("admin", true);
        for id in USERS.iter().chain([&APPROVER]) {
            let subject = Subject {
                id: (*id).into(),
                external_id: None,
                kind: SubjectKind::User,
                display_name: (*id).into(),
                principal_name: Some(format!("{id}@example.test")),
                email: None,
                active: true,
            };
            self.write(&admin, |tx, ctx| {
                rolegate_core::operation::directory::create_subject(tx, ctx, subject, Vec::new())
                    .map(|(_, c)| ((), c))
            })
            .unwrap();
        }
        let arm = "/subscriptions/7d2a4f4e-8c0b-4a55-9f3e-1b2c3d4e5f60";
        self.write(&admin, |tx, ctx| {
            rolegate_core::operation::resource::register(tx, ctx, arm, None, None)
                .map(|(_, c)| ((), c))
        })
        .unwrap();
        let (resource, roles) = store::read(&self.store, |tx| {
            let r = tx.resource_by_external_key(&arm.to_lowercase())?.unwrap();
            let contributor = tx.role_definition_by_template(&r.id, CONTRIBUTOR)?.unwrap();
            let reader = tx.role_definition_by_template(&r.id, READER)?.unwrap();
            Ok((r.id, [contributor.id, reader.id]))
        })
        .unwrap();
        self.resource = resource;
        self.roles = roles.clone();
        let expiration = format!(
            r#"{{"permanentAssignment":false,"maximumGrantPeriodInMinutes":{MAX_ACTIVATION_MINUTES}}}"#
        );
        for (role, approval) in roles.iter().zip([true, false]) {
            let approval = if approval {
                format!(
                    r#"{{"Enabled":true,"Approvers":[{{"Id":"{APPROVER}","Type":"User"}}],"ApprovalTimeoutInMinutes":90}}"#
                )
            } else {
                r#"{"Enabled":false,"Approvers":[]}"#.to_string()
            };
            let patch = RoleRulesPatch {
                user_member: Some(vec![
                    RuleSetting::new("ExpirationRule", expiration.clone()),
                    RuleSetting::new("ApprovalRule", approval),
                ]),
                ..RoleRulesPatch::default()
            };
            self.write(&admin, |tx, ctx| {
                let setting = tx.role_setting_of(role)?.unwrap();
                update_role_setting(tx, ctx, &setting.id, patch).map(|_| ((), Vec::new()))
            })
            .unwrap();
        }
    }

    fn new_request(
        &self,
        kind: RequestType,
        state: AssignmentState,
        user: usize,
        role: usize,
    ) -> NewRequest {
        NewRequest {
            resource_id: self.resource.clone(),
            role_definition_id: self.roles[role].clone(),
            subject_id: USERS[user].into(),
            kind: Some(kind),
            state: Some(state),
            schedule: None,
            reason: Some("model".into()),
            linked_eligible_id: None,
            ticket: None,
            emergency: false,
        }
    }

    fn submit(&mut self, who: &Caller, new: NewRequest) {
        let outcome = self.write(who, |tx, ctx| {
            rolegate_core::operation::request::submit(tx, ctx, new).map(|o| (o.request, o.changes))
        });
        if let Some(r) = accept(outcome) {
            self.record(&r);
            if r.sub_status.is_open() {
                self.pending.push(r.id.clone());
            }
            self.requests.push(r.id);
        }
    }

    /// Remembers which `UserAdd` made an activation, and which the approver approved.
    fn record(&mut self, r: &rolegate_core::request::RoleAssignmentRequest) {
        if r.kind == RequestType::UserAdd
            && let Some(a) = &r.assignment_id
            && matches!(r.sub_status, SubStatus::Provisioned | SubStatus::Granted)
        {
            self.made_by.insert(a.clone(), r.id.clone());
        }
    }

    fn who(&self, who: Who) -> Caller {
        match who {
            Who::Admin => caller("admin", true),
            Who::Approver => caller(APPROVER, false),
            Who::User(u) => caller(USERS[u], false),
        }
    }

    fn apply(&mut self, s: &Step) {
        match *s {
            Step::AdminAddEligible {
                user,
                role,
                minutes,
            } => {
                let mut new =
                    self.new_request(RequestType::AdminAdd, AssignmentState::Eligible, user, role);
                new.schedule = Some(lasting(minutes));
                self.submit(&caller("admin", true), new);
            }
            Step::Activate {
                user,
                role,
                minutes,
            } => {
                let mut new =
                    self.new_request(RequestType::UserAdd, AssignmentState::Active, user, role);
                new.schedule = Some(lasting(minutes));
                self.submit(&caller(USERS[user], false), new);
            }
            Step::Decide { pick, who, approve } => {
                let from = if self.pending.is_empty() {
                    &self.requests
                } else {
                    &self.pending
                };
                let Some(id) = most_recent(from, pick) else {
                    return;
                };
                let who = self.who(who);
                let input = DecisionInput {
                    decision: if approve {
                        "AdminApproved"
                    } else {
                        "AdminDenied"
                    }
                    .into(),
                    reason: Some("model".into()),
                    schedule: None,
                };
                let outcome = self.write(&who, |tx, ctx| {
                    rolegate_core::operation::request::decide(tx, ctx, &id, &input)
                        .map(|o| (o.request, o.changes))
                });
                if let Some(r) = accept(outcome) {
                    if approve && who.subject_id == APPROVER && r.kind == RequestType::UserAdd {
                        self.approved.insert(r.id.clone());
                    }
                    self.record(&r);
                }
            }
            Step::Cancel { pick, who } => {
                let Some(id) = most_recent(&self.requests, pick) else {
                    return;
                };
                let who = self.who(who);
                let outcome = self.write(&who, |tx, ctx| {
                    rolegate_core::operation::request::cancel(tx, ctx, &id)
                        .map(|o| (o.request, o.changes))
                });
                accept(outcome);
            }
            Step::AdminRemove {
                user,
                role,
                eligible,
            } => {
                let state = if eligible {
                    AssignmentState::Eligible
                } else {
                    AssignmentState::Active
                };
                let new = self.new_request(RequestType::AdminRemove, state, user, role);
                self.submit(&caller("admin", true), new);
            }
            Step::Deactivate { user, role } => {
                let new =
                    self.new_request(RequestType::UserRemove, AssignmentState::Active, user, role);
                self.submit(&caller(USERS[user], false), new);
            }
            Step::UserExtend {
                user,
                role,
                minutes,
            } => {
                let mut new = self.new_request(
                    RequestType::UserExtend,
                    AssignmentState::Eligible,
                    user,
                    role,
                );
                let end = self.now + SignedDuration::from_mins(minutes);
                new.schedule = Some(ScheduleInput {
                    kind: Some("Once".into()),
                    start: None,
                    end: Some(format_datetime(end)),
                    duration: None,
                });
                self.submit(&caller(USERS[user], false), new);
            }
            Step::Advance { seconds, sweep } => {
                self.now += SignedDuration::from_secs(seconds);
                if sweep {
                    self.run_scheduler();
                }
            }
        }
    }

    fn run_scheduler(&mut self) {
        let system = scheduler::caller();
        for job in Job::ALL {
            loop {
                let more = self
                    .write(&system, |tx, ctx| {
                        let mut b =
                            rolegate_core::operation::scheduler::run(job, tx, ctx, BATCH_SIZE)?;
                        let changes = std::mem::take(&mut b.changes);
                        Ok((b.more, changes))
                    })
                    .unwrap();
                if !more {
                    break;
                }
            }
        }
    }

    /// Checks the invariants at the current clock.
    fn check(&self) -> std::result::Result<(), TestCaseError> {
        let now = self.now;
        let mut live = Vec::new();
        store::read(&self.store, |tx| {
            tx.for_each_live_assignment(now, &mut |a, _| live.push(a))
        })
        .unwrap();
        let mut rebuilt = AccessIndex::new();
        rebuilt.add_resource(&self.resource, None);
        for a in &live {
            rebuilt.upsert(a, false);
        }
        for a in live.iter().filter(|a| a.is_current(now)) {
            if a.state != AssignmentState::Active {
                continue;
            }
            let made_by = self.made_by.get(&a.id);
            prop_assert!(made_by.is_some(), "an activation no UserAdd made: {a:?}");
            let eligible_id = a.linked_eligible_id.clone();
            prop_assert!(
                eligible_id.is_some(),
                "an activation without eligibility: {a:?}"
            );
            let eligible = store::read(&self.store, |tx| {
                tx.assignment(eligible_id.as_deref().unwrap_or(""))
            })
            .unwrap();
            prop_assert!(eligible.is_some(), "its eligibility is gone: {a:?}");
            let e = eligible.unwrap();
            prop_assert!(
                e.is_current(now),
                "its eligibility is not current: {a:?} {e:?}"
            );
            prop_assert_eq!(&e.subject_id, &a.subject_id);
            prop_assert_eq!(&e.role_definition_id, &a.role_definition_id);
            prop_assert_eq!(e.state, AssignmentState::Eligible);
            prop_assert!(
                a.schedule.ends_no_later_than(&e.schedule),
                "outlives its eligibility: {a:?} {e:?}"
            );
            let length = a.schedule.duration();
            prop_assert!(
                length.is_some_and(|d| d <= SignedDuration::from_mins(MAX_ACTIVATION_MINUTES)),
                "longer than the rule allows: {a:?}"
            );
            if a.role_definition_id == self.roles[0] {
                prop_assert!(
                    made_by.is_some_and(|r| self.approved.contains(r)),
                    "not approved by the approver: {a:?}"
                );
            }
        }
        for user in USERS {
            let current = live
                .iter()
                .any(|a| a.subject_id == user && a.is_current(now));
            prop_assert_eq!(
                self.index.holds_any(user, &self.resource, now),
                current,
                "{}",
                user
            );
            prop_assert_eq!(
                rebuilt.holds_any(user, &self.resource, now),
                current,
                "{}",
                user
            );
            prop_assert!(!self.index.administers(user, &self.resource, now));
        }
        Ok(())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The `pick`-th most recent of `ids` (wrapping round).
fn most_recent(ids: &[String], pick: usize) -> Option<String> {
    let n = ids.len();
    (n > 0).then(|| ids[n - 1 - pick % n].clone())
}

fn lasting(minutes: i64) -> ScheduleInput {
    ScheduleInput {
        kind: Some("Once".into()),
        start: None,
        end: None,
        duration: Some(format!("PT{minutes}M")),
    }
}

/// The value of an operation that succeeded; `None` for one the rules refused. A server
/// error (5xx) fails the test.
fn accept<T>(outcome: Result<T>) -> Option<T> {
    match outcome {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(e.code.status() < 500, "server error: {e:?}");
            None
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_leaves_an_activation_the_policy_does_not_allow(
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let mut world = World::new();
        world.check()?;
        for s in &steps {
            world.apply(s);
            world.check()?;
        }
    }
}
