//! Disabling or deleting a subject closes its pending requests on SQLite with an injected
//! clock (decisions.md §3, §10, §13): a request the clock has already closed (an approval
//! past its deadline) catches up exactly as the scheduler would have, with the
//! `Time out approval` audit record and the requester's e-mail; an open one is canceled
//! with its own audit record; an activation ended by disabling the account is audited.

// Setup failures are meant to panic; temp names use the wall clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use jiff::{SignedDuration, Timestamp};
use rolegate_core::access::{AccessChange, AccessIndex, Caller, OpContext};
use rolegate_core::assignment::AssignmentState;
use rolegate_core::directory::{Subject, SubjectKind};
use rolegate_core::email::{Event, MailPolicy};
use rolegate_core::operation::role::update_role_setting;
use rolegate_core::policy::{RoleRulesPatch, RuleSetting};
use rolegate_core::query::ListQuery;
use rolegate_core::request::{self, NewRequest, RequestType, SubStatus};
use rolegate_core::schedule::ScheduleInput;
use rolegate_core::store;
use rolegate_store::{SqliteStore, Synchronous};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::path::PathBuf;

const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

struct Fixture {
    path: PathBuf,
    store: SqliteStore,
    index: AccessIndex,
    ids: Cell<u64>,
    mail: MailPolicy,
    resource: String,
    /// Contributor needs u1's approval within a minute; Reader needs none.
    roles: [String; 2],
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn admin() -> Caller {
    Caller {
        subject_id: "admin".into(),
        display_name: "Admin".into(),
        principal_name: None,
        is_tenant_admin: true,
        mfa: true,
    }
}

fn user(id: &str) -> Caller {
    Caller {
        subject_id: id.into(),
        display_name: id.into(),
        principal_name: None,
        is_tenant_admin: false,
        mfa: true,
    }
}

fn t(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_900_000_000).unwrap() + SignedDuration::from_mins(minutes)
}

fn once(minutes: i64) -> Option<ScheduleInput> {
    Some(ScheduleInput {
        kind: Some("Once".into()),
        start: None,
        end: None,
        duration: Some(format!("PT{minutes}M")),
    })
}

impl Fixture {
    /// Users `u0` (the requester) and `u1` (the approver), both with addresses, a
    /// subscription, and `u0` eligible for both roles there.
    fn new() -> Fixture {
        let path = common::temp_db("closing");
        let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        let mut f = Fixture {
            path,
            store,
            index: AccessIndex::new(),
            ids: Cell::new(0),
            mail: MailPolicy::default(),
            resource: String::new(),
            roles: [String::new(), String::new()],
        };
        let arm = "/subscriptions/0f1e2d3c-4b5a-4968-8776-655443322111";
        f.run(t(0), &admin(), |tx, ctx| {
            for id in ["u0", "u1"] {
                let s = Subject {
                    id: id.into(),
                    external_id: None,
                    kind: SubjectKind::User,
                    display_name: id.into(),
                    principal_name: Some(format!("{id}@example.test")),
                    email: Some(format!("{id}@example.test")),
                    active: true,
                };
                rolegate_core::operation::directory::create_subject(tx, ctx, s, Vec::new())?;
            }
            Ok(rolegate_core::operation::resource::register(tx, ctx, arm, None, None)?.1)
        });
        let (resource, roles) = store::read(&f.store, |tx| {
            let r = tx.resource_by_external_key(arm)?.unwrap();
            let mut role = |template| {
                tx.role_definition_by_template(&r.id, template)
                    .map(|d| d.unwrap().id)
            };
            let roles = [role(CONTRIBUTOR)?, role(READER)?];
            Ok((r.id, roles))
        })
        .unwrap();
        f.resource = resource;
        f.roles = roles.clone();
        let approval = r#"{"Enabled":true,"Approvers":[{"Id":"u1","Type":"User"}],"ApprovalTimeoutInMinutes":1}"#;
        let patch = RoleRulesPatch {
            user_member: Some(vec![RuleSetting::new("ApprovalRule", approval)]),
            ..RoleRulesPatch::default()
        };
        f.run(t(0), &admin(), |tx, ctx| {
            let setting = tx.role_setting_of(&roles[0])?.unwrap();
            update_role_setting(tx, ctx, &setting.id, patch).map(|_| Vec::new())
        });
        for role in roles {
            let new = f.new_request(
                RequestType::AdminAdd,
                AssignmentState::Eligible,
                &role,
                60 * 24,
            );
            f.run(t(0), &admin(), |tx, ctx| {
                rolegate_core::operation::request::submit(tx, ctx, new).map(|o| o.changes)
            });
        }
        f
    }

    fn new_request(
        &self,
        kind: RequestType,
        state: AssignmentState,
        role: &str,
        minutes: i64,
    ) -> NewRequest {
        NewRequest {
            resource_id: self.resource.clone(),
            role_definition_id: role.to_string(),
            subject_id: "u0".into(),
            kind: Some(kind),
            state: Some(state),
            schedule: once(minutes),
            reason: Some("test".into()),
            linked_eligible_id: None,
            ticket: None,
            emergency: false,
        }
    }

    /// Runs `f` at `at` as `who` in one write transaction, with e-mail on.
    fn run(
        &mut self,
        at: Timestamp,
        who: &Caller,
        f: impl FnOnce(&mut dyn store::Tx, &OpContext) -> rolegate_core::Result<Vec<AccessChange>>,
    ) -> Vec<AccessChange> {
        let counter = &self.ids;
        let new_id = || {
            counter.set(counter.get() + 1);
            format!("00000000-0000-4000-8000-{:012x}", counter.get())
        };
        let ctx = OpContext {
            caller: who,
            access: &self.index,
            now: at,
            correlation_id: "test",
            new_id: &new_id,
            mail: Some(&self.mail),
        };
        let changes = store::write(&self.store, |tx| f(tx, &ctx)).unwrap();
        self.index.apply(&changes);
        changes
    }

    /// `u0` activates role `role` for an hour at `at`; the request.
    fn activate(&mut self, at: Timestamp, role: usize) -> request::RoleAssignmentRequest {
        let new = self.new_request(
            RequestType::UserAdd,
            AssignmentState::Active,
            &self.roles[role].clone(),
            60,
        );
        let mut out = None;
        self.run(at, &user("u0"), |tx, ctx| {
            let o = rolegate_core::operation::request::submit(tx, ctx, new)?;
            out = Some(o.request);
            Ok(o.changes)
        });
        out.expect("submitted")
    }

    /// The e-mails written since the last call: `(recipient, event, request)`.
    fn outbox(&self, at: Timestamp) -> Vec<(String, Event, String)> {
        let lease = at + SignedDuration::from_hours(1);
        store::write(&self.store, |tx| tx.claim_emails("reader", at, lease, 1000))
            .unwrap()
            .into_iter()
            .map(|e| (e.recipient_id, e.event, e.request_id))
            .collect()
    }

    /// The audit records named `activity`.
    fn audits(&self, activity: &str) -> Vec<Map<String, Value>> {
        store::read(&self.store, |tx| {
            tx.list_audit(&ListQuery {
                top: 999,
                ..ListQuery::default()
            })
        })
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.document)
        .filter(|d| d["activityDisplayName"] == activity)
        .collect()
    }

    fn stored(&self, id: &str) -> SubStatus {
        store::read(&self.store, |tx| tx.request(id))
            .unwrap()
            .expect("request")
            .sub_status
    }
}

fn detail(record: &Map<String, Value>, key: &str) -> Option<String> {
    record["additionalDetails"]
        .as_array()?
        .iter()
        .find(|d| d["key"] == key)?["value"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn deleting_a_subject_times_out_its_stale_approval_as_the_scheduler_would() {
    let mut f = Fixture::new();
    let r = f.activate(t(1), 0);
    assert_eq!(r.sub_status, SubStatus::PendingApproval);
    // The approver was asked (taken out of the outbox here, as a worker would).
    assert_eq!(
        f.outbox(t(1)),
        vec![("u1".to_string(), Event::ApprovalNeeded, r.id.clone())]
    );
    // Two minutes later nobody has decided: the approval has timed out by the clock, and
    // no scheduler pass has run.
    f.run(t(3), &admin(), |tx, ctx| {
        rolegate_core::operation::directory::delete_subject(tx, ctx, "u0")
    });
    assert_eq!(f.stored(&r.id), SubStatus::TimedOut);
    let recs = f.audits("Time out approval");
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(
        detail(&recs[0], "requestId").as_deref(),
        Some(r.id.as_str())
    );
    assert_eq!(
        f.outbox(t(3)),
        vec![("u0".to_string(), Event::TimedOut, r.id.clone())]
    );
}

#[test]
fn disabling_a_subject_audits_what_it_cancels_and_ends() {
    let mut f = Fixture::new();
    let pending = f.activate(t(1), 0);
    assert_eq!(pending.sub_status, SubStatus::PendingApproval);
    let active = f.activate(t(1), 1);
    assert_eq!(active.sub_status, SubStatus::Provisioned);
    let activation = active.assignment_id.clone().expect("activation");
    let changes = f.run(t(1), &admin(), |tx, ctx| {
        let mut s = tx.subject("u0")?.expect("u0");
        s.active = false;
        rolegate_core::operation::directory::update_subject(tx, ctx, s, None).map(|(_, c)| c)
    });
    assert!(
        changes.iter().any(|c| matches!(
            c,
            AccessChange::Remove { assignment_id, .. } if *assignment_id == activation
        )),
        "{changes:?}"
    );
    assert_eq!(f.stored(&pending.id), SubStatus::Canceled);
    let canceled = f.audits("Cancel request (account disabled)");
    assert_eq!(canceled.len(), 1, "{canceled:?}");
    assert_eq!(
        detail(&canceled[0], "requestId").as_deref(),
        Some(pending.id.as_str())
    );
    let ended = f.audits("Deactivate role (account disabled)");
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(
        detail(&ended[0], "assignmentId").as_deref(),
        Some(activation.as_str())
    );
}
