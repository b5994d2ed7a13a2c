//! Reminders on SQLite with an injected clock (decisions.md §10, §13): the scheduler's
//! reminder job writes one e-mail per holder and one audit record per reminder, exactly
//! once per assignment, threshold and end, whichever scheduler instance runs it and however
//! often; wider reminders a nearer one covers are never sent; an extension is reminded
//! again; with e-mail off nothing is claimed.

// Setup failures are meant to panic; temp names use the wall clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use jiff::{SignedDuration, Timestamp};
use rolegate_core::access::{AccessIndex, Caller, OpContext};
use rolegate_core::assignment::AssignmentState;
use rolegate_core::directory::{Subject, SubjectKind};
use rolegate_core::email::{Event, MailPolicy};
use rolegate_core::query::ListQuery;
use rolegate_core::reminder::Reminder;
use rolegate_core::request::{NewRequest, RequestType};
use rolegate_core::schedule::{ScheduleInput, format_datetime};
use rolegate_core::scheduler::{self, Job};
use rolegate_core::store;
use rolegate_store::{SqliteStore, Synchronous};
use std::cell::Cell;
use std::path::PathBuf;

const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";

struct Fixture {
    path: PathBuf,
    store: SqliteStore,
    index: AccessIndex,
    ids: Cell<u64>,
    mail: MailPolicy,
    resource: String,
    role: String,
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

impl Fixture {
    /// A subscription, and `members` users (`u0`, `u1`, …) with addresses, in a group `g`.
    fn new(at: Timestamp) -> Fixture {
        let path = common::temp_db("reminders");
        let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        let mut f = Fixture {
            path,
            store,
            index: AccessIndex::new(),
            ids: Cell::new(0),
            mail: MailPolicy::default(),
            resource: String::new(),
            role: String::new(),
        };
        let arm = "/subscriptions/0f1e2d3c-4b5a-4968-8776-655443322110";
        f.run(at, &admin(), true, |tx, ctx| {
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
            let g = Subject {
                id: "g".into(),
                external_id: None,
                kind: SubjectKind::Group,
                display_name: "Operators".into(),
                principal_name: None,
                email: None,
                active: true,
            };
            let (_, mut changes) = rolegate_core::operation::directory::create_subject(
                tx,
                ctx,
                g,
                vec!["u0".into(), "u1".into()],
            )?;
            changes
                .extend(rolegate_core::operation::resource::register(tx, ctx, arm, None, None)?.1);
            Ok(changes)
        });
        let (resource, role) = store::read(&f.store, |tx| {
            let r = tx.resource_by_external_key(arm)?.unwrap();
            let d = tx.role_definition_by_template(&r.id, CONTRIBUTOR)?.unwrap();
            Ok((r.id, d.id))
        })
        .unwrap();
        f.resource = resource;
        f.role = role;
        f
    }

    /// Runs `f` at `at` as `who` in one write transaction (with e-mail on when `mail`).
    fn run(
        &mut self,
        at: Timestamp,
        who: &Caller,
        mail: bool,
        f: impl FnOnce(
            &mut dyn store::Tx,
            &OpContext,
        ) -> rolegate_core::Result<Vec<rolegate_core::access::AccessChange>>,
    ) {
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
            mail: mail.then_some(&self.mail),
        };
        let changes = store::write(&self.store, |tx| f(tx, &ctx)).unwrap();
        self.index.apply(&changes);
    }

    /// An `AdminAdd`/`AdminExtend` of an eligible assignment for `subject` ending at `end`.
    fn admin(&mut self, at: Timestamp, kind: RequestType, subject: &str, end: Timestamp) {
        let new = NewRequest {
            resource_id: self.resource.clone(),
            role_definition_id: self.role.clone(),
            subject_id: subject.into(),
            kind: Some(kind),
            state: Some(AssignmentState::Eligible),
            schedule: Some(ScheduleInput {
                kind: Some("Once".into()),
                start: None,
                end: Some(format_datetime(end)),
                duration: None,
            }),
            reason: Some("test".into()),
            linked_eligible_id: None,
            ticket: None,
            emergency: false,
        };
        self.run(at, &admin(), false, |tx, ctx| {
            rolegate_core::operation::request::submit(tx, ctx, new).map(|o| o.changes)
        });
    }

    /// One reminder pass at `at` (any scheduler instance's: they share the database).
    fn remind(&mut self, at: Timestamp, mail: bool) {
        self.run(at, &scheduler::caller(), mail, |tx, ctx| {
            rolegate_core::operation::scheduler::run(Job::SendReminders, tx, ctx, 10)
                .map(|b| b.changes)
        });
    }

    /// `(recipient, event, assignment)` of every e-mail written since the last call (taken
    /// out of the outbox as a worker that sent them would).
    fn outbox(&self, at: Timestamp) -> Vec<(String, Event, Option<String>)> {
        let lease = at + SignedDuration::from_hours(1);
        let mut out: Vec<_> = store::write(&self.store, |tx| {
            let mails = tx.claim_emails("reader", at, lease, 1000)?;
            for m in &mails {
                tx.finish_email(&m.id, "reader")?;
            }
            Ok(mails)
        })
        .unwrap()
        .into_iter()
        .map(|e| (e.recipient_id, e.event, e.assignment_id))
        .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn audits(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let page = store::read(&self.store, |tx| {
            tx.list_audit(&ListQuery {
                top: 999,
                ..ListQuery::default()
            })
        })
        .unwrap();
        page.items
            .into_iter()
            .map(|e| e.document)
            .filter(|d| d["activityDisplayName"] == "Send reminder")
            .collect()
    }
}

fn t(hours: i64) -> Timestamp {
    Timestamp::from_second(1_900_000_000).unwrap() + SignedDuration::from_hours(hours)
}

#[test]
fn each_reminder_is_sent_once_per_assignment_threshold_and_end() {
    let mut f = Fixture::new(t(0));
    // A group eligible for 20 days: nothing yet.
    f.admin(t(0), RequestType::AdminAdd, "g", t(20 * 24));
    f.remind(t(0), true);
    assert!(f.outbox(t(0)).is_empty());
    assert!(f.audits().is_empty());

    // 14 days before the end: both members, once, however often and by whom it runs.
    let at = t(6 * 24);
    f.remind(at, true);
    f.remind(at, true);
    f.remind(at + SignedDuration::from_hours(3), true);
    let mails = f.outbox(at + SignedDuration::from_hours(3));
    let a = mails[0].2.clone().expect("about the assignment");
    assert_eq!(
        mails,
        vec![
            (
                "u0".into(),
                Event::Ending(Reminder::FourteenDays),
                Some(a.clone())
            ),
            (
                "u1".into(),
                Event::Ending(Reminder::FourteenDays),
                Some(a.clone())
            ),
        ]
    );
    let audits = f.audits();
    assert_eq!(audits.len(), 1);
    let detail = |k: &str| {
        audits[0]["additionalDetails"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["key"] == k)
            .map(|d| d["value"].as_str().unwrap().to_string())
    };
    assert_eq!(detail("assignmentId"), Some(a.clone()));
    assert_eq!(detail("reminder").as_deref(), Some("P14D"));
    assert_eq!(detail("recipients").as_deref(), Some("2"));
    assert_eq!(audits[0]["initiatedBy"]["user"]["id"], "rolegate-scheduler");

    // 1 day before: the second reminder, once.
    f.remind(t(19 * 24), true);
    f.remind(t(19 * 24 + 1), true);
    assert_eq!(
        f.outbox(t(19 * 24 + 1))
            .into_iter()
            .map(|m| m.1)
            .collect::<Vec<_>>(),
        vec![Event::Ending(Reminder::OneDay); 2]
    );

    // Extended by 30 days: reminded again before the new end, not at once.
    f.admin(t(19 * 24 + 2), RequestType::AdminExtend, "g", t(50 * 24));
    f.remind(t(19 * 24 + 2), true);
    assert!(f.outbox(t(19 * 24 + 2)).is_empty());
    f.remind(t(36 * 24), true);
    assert_eq!(f.outbox(t(36 * 24)).len(), 2);
    assert_eq!(f.audits().len(), 3);
}

#[test]
fn a_short_assignment_gets_only_the_nearest_reminder() {
    let mut f = Fixture::new(t(0));
    f.admin(t(0), RequestType::AdminAdd, "u0", t(10));
    f.remind(t(0), true);
    f.remind(t(1), true);
    assert_eq!(
        f.outbox(t(1)).into_iter().map(|m| m.1).collect::<Vec<_>>(),
        vec![Event::Ending(Reminder::OneDay)]
    );
    assert_eq!(f.audits().len(), 1);
}

#[test]
fn with_email_off_nothing_is_claimed() {
    let mut f = Fixture::new(t(0));
    f.admin(t(0), RequestType::AdminAdd, "u0", t(10));
    f.remind(t(0), false);
    assert!(f.audits().is_empty());
    // Turned on later: the reminder still goes out.
    f.remind(t(1), true);
    assert_eq!(f.outbox(t(1)).len(), 1);
}
