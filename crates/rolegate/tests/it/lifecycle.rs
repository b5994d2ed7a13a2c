//! Lifecycle in time (decisions.md §10, §13): the background scheduler provisions
//! future-start grants at their start, moves ended assignments to history, times out
//! approvals, audits each action, survives restarts, and stops with the server. The server
//! runs with `--scheduler-interval 0.2` and schedules of a few seconds; what the scheduler
//! stored is read back over HTTP (filters on the stored status) and, for history and the
//! audit log, from the SQLite file itself.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{
    CONTRIBUTOR, READER, Tenant, activation, decide, eligible_user, enc, from_now, lasting,
    request_body, sleep_past, status_of, ts,
};
use crate::harness::{SECRET, Server, binary, wait_until};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// Arguments for a server whose scheduler runs five times a second.
const FAST: &[&str] = &["--scheduler-interval", "0.2"];
/// Arguments for a server whose scheduler, after its first pass at start, waits an hour.
const AT_START_ONLY: &[&str] = &["--scheduler-interval", "3600"];

/// The stored `sub_status` of request `id`, as the database holds it.
fn stored_sub_status(s: &Server, id: &str) -> String {
    let rows = s.sql("SELECT sub_status FROM requests WHERE id = ?", &[id]);
    rows.first()
        .and_then(|r| r[0].as_str())
        .expect("request row")
        .to_string()
}

/// `(end_reason, ended_at == end_at)` of assignment `id` in history, if it is there.
fn in_history(s: &Server, id: &str) -> Option<(String, bool)> {
    let rows = s.sql(
        "SELECT end_reason, ended_at = end_at FROM assignment_history WHERE id = ?",
        &[id],
    );
    rows.first().map(|r| {
        (
            r[0].as_str().expect("end_reason").to_string(),
            r[1].as_i64() == Some(1),
        )
    })
}

/// Whether assignment `id` is still in the live table.
fn in_live_table(s: &Server, id: &str) -> bool {
    !s.sql("SELECT id FROM assignments WHERE id = ?", &[id])
        .is_empty()
}

/// The audit records named `activity` whose `additionalDetails` has `key` = `value`.
fn audits(s: &Server, activity: &str, key: &str, value: &str) -> Vec<Value> {
    s.sql(
        "SELECT record FROM audit_log WHERE activity = ? ORDER BY seq",
        &[activity],
    )
    .into_iter()
    .map(|r| serde_json::from_str::<Value>(r[0].as_str().expect("record")).expect("record json"))
    .filter(|rec| detail(rec, key) == Some(value))
    .collect()
}

fn detail<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record["additionalDetails"]
        .as_array()?
        .iter()
        .find(|d| d["key"] == key)?["value"]
        .as_str()
}

/// Checks the shape every scheduler record shares (decisions.md §11, §13).
fn assert_scheduler_record(rec: &Value) {
    assert_eq!(rec["category"], "RoleManagement", "{rec}");
    assert_eq!(rec["result"], "success", "{rec}");
    assert_eq!(rec["loggedByService"], "PIM", "{rec}");
    assert_eq!(
        rec["initiatedBy"]["user"]["id"], "rolegate-scheduler",
        "{rec}"
    );
    assert!(detail(rec, "resourceId").is_some(), "{rec}");
    assert!(detail(rec, "roleDefinitionId").is_some(), "{rec}");
}

/// Ids of the requests whose *stored* subStatus is `sub_status`, through the OData filter
/// (it runs on the stored column).
fn requests_stored_as(t: &Tenant, sub_status: &str) -> Vec<String> {
    let r = t.s.get(
        &t.s.pim(&format!(
            "/roleAssignmentRequests?$filter={}",
            enc(&format!("status/subStatus eq '{sub_status}'"))
        )),
        &t.admin,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["id"].as_str().map(str::to_string))
        .collect()
}

/// `rolegate_access_index_assignments` from `/metrics`: assignments the index holds.
fn indexed_assignments(s: &Server) -> u64 {
    let r = s.call("GET", "/metrics", None, None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
        .lines()
        .find_map(|l| l.strip_prefix("rolegate_access_index_assignments "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no index gauge in {}", r.text))
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// The assignment listed on `resource` for `subject`, if any.
fn listed_for(t: &Tenant, resource: &str, subject: &str) -> Option<Value> {
    t.assignments(resource)
        .into_iter()
        .find(|a| a["subjectId"] == subject)
}

/// A schedule starting at `start` and lasting `duration`.
fn starting(start: Timestamp, duration: &str) -> Value {
    json!({"type": "Once", "startDateTime": start.to_string(), "duration": duration})
}

#[test]
fn a_future_start_grant_is_provisioned_when_its_start_passes() {
    let t = Tenant::start_with(FAST);
    let (alice, alice_t) = t.user("alice");
    let role = t.role(&t.sub, READER);
    let start = from_now(3);
    let r = t.admin_add(&t.sub, &role, &alice, "Active", starting(start, "PT1H"));
    let id = id_of(&r);
    assert_eq!(status_of(&r), ("InProgress", "Granted"), "{r}");
    assert_eq!(status_of(&t.get_request(&id)), ("InProgress", "Granted"));
    assert_eq!(stored_sub_status(&t.s, &id), "Granted");
    assert!(requests_stored_as(&t, "Granted").contains(&id));
    assert!(listed_for(&t, &t.sub, &alice).is_none(), "not current yet");
    let before =
        t.s.get(&t.s.pim(&format!("/resources/{}", t.sub)), &alice_t);
    assert_eq!(
        before.status, 403,
        "no R1 before the start: {}",
        before.text
    );

    sleep_past(start);
    wait_until(5, "the grant is stored as provisioned", || {
        stored_sub_status(&t.s, &id) == "Provisioned"
    });
    let got = t.get_request(&id);
    assert_eq!(status_of(&got), ("Closed", "Provisioned"), "{got}");
    assert!(requests_stored_as(&t, "Provisioned").contains(&id));
    assert!(!requests_stored_as(&t, "Granted").contains(&id));
    let listed = listed_for(&t, &t.sub, &alice).expect("listed after its start");
    assert_eq!(ts(&listed["startDateTime"]), start);
    assert_eq!(listed["assignmentState"], "Active");
    let after =
        t.s.get(&t.s.pim(&format!("/resources/{}", t.sub)), &alice_t);
    assert_eq!(after.status, 200, "R1 after the start: {}", after.text);

    let recs = audits(&t.s, "Provision scheduled grant", "requestId", &id);
    assert_eq!(
        recs.len(),
        1,
        "one record, however many passes ran: {recs:?}"
    );
    assert_scheduler_record(&recs[0]);
    assert_eq!(detail(&recs[0], "assignmentId"), listed["id"].as_str());
    assert_eq!(detail(&recs[0], "subStatus"), Some("Provisioned"));
}

#[test]
fn ended_assignments_leave_lists_checks_and_the_live_table() {
    let t = Tenant::start_with(FAST);
    // An admin-assigned active role on the resource group: bob's only access there.
    let (bob, bob_t) = t.user("bob");
    let reader = t.role(&t.rg, READER);
    let bob_request = t.admin_add(&t.rg, &reader, &bob, "Active", lasting("PT2S"));
    // An activation of 2 seconds on the subscription.
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT2S"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));

    let brief = listed_for(&t, &t.rg, &bob).expect("bob's assignment is listed while current");
    let active = t
        .assignments(&t.sub)
        .into_iter()
        .find(|a| a["subjectId"] == alice.as_str() && a["assignmentState"] == "Active")
        .expect("the activation is listed while current");
    let (brief_id, active_id) = (id_of(&brief), id_of(&active));
    let rg_path = t.s.pim(&format!("/resources/{}", t.rg));
    assert_eq!(t.s.get(&rg_path, &bob_t).status, 200, "R1 while current");
    let indexed = indexed_assignments(&t.s);

    sleep_past(ts(&brief["endDateTime"]).max(ts(&active["endDateTime"])));
    wait_until(5, "both are moved to history", || {
        in_history(&t.s, &brief_id).is_some() && in_history(&t.s, &active_id).is_some()
    });
    // Each assignment names the request that created it: the expiry record carries it.
    for (id, request) in [(&brief_id, &bob_request), (&active_id, &r.json)] {
        assert_eq!(
            in_history(&t.s, id),
            Some(("Expired".to_string(), true)),
            "expired at its scheduled end"
        );
        assert!(!in_live_table(&t.s, id));
        let got =
            t.s.get(&t.s.pim(&format!("/roleAssignments/{id}")), &t.admin);
        assert_eq!(got.status, 404, "{}", got.text);
        assert_eq!(got.code(), "RoleAssignmentNotFound");
        let recs = audits(&t.s, "Expire assignment", "assignmentId", id);
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_scheduler_record(&recs[0]);
        assert_eq!(
            detail(&recs[0], "requestId"),
            request["id"].as_str(),
            "{}",
            recs[0]
        );
    }
    assert_eq!(
        indexed_assignments(&t.s),
        indexed - 2,
        "both left the access index"
    );
    assert!(listed_for(&t, &t.rg, &bob).is_none());
    assert!(
        t.assignments(&t.sub)
            .iter()
            .all(|a| a["assignmentState"] != "Active"),
        "the activation is gone"
    );
    // The eligibility it came from is untouched.
    assert!(in_live_table(&t.s, &eligible));
    let denied = t.s.get(&rg_path, &bob_t);
    assert_eq!(denied.status, 403, "no R1 after the end: {}", denied.text);
    assert_eq!(denied.code(), "Authorization_RequestDenied");
}

#[test]
fn an_expired_assignment_is_renewed_from_history() {
    let t = Tenant::start_with(FAST);
    let (carol, carol_t) = t.user("carol");
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &role, &carol, "Eligible", lasting("PT2S"));
    let listed = listed_for(&t, &t.sub, &carol).expect("listed while current");
    let id = id_of(&listed);
    sleep_past(ts(&listed["endDateTime"]));
    wait_until(5, "the assignment is in history", || {
        in_history(&t.s, &id).is_some()
    });
    assert!(listed_for(&t, &t.sub, &carol).is_none());

    let mut body = request_body("AdminRenew", "Eligible", &t.sub, &role, &carol);
    body["schedule"] = lasting("P30D");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"), "{}", r.json);
    let renewed = listed_for(&t, &t.sub, &carol).expect("listed again");
    assert_eq!(id_of(&renewed), id, "the same assignment comes back");
    assert!(ts(&renewed["endDateTime"]) > from_now(29 * 86_400));
    assert!(in_history(&t.s, &id).is_none());
    let got =
        t.s.get(&t.s.pim(&format!("/resources/{}", t.sub)), &carol_t);
    assert_eq!(got.status, 200, "R1 again: {}", got.text);
    // A renewed assignment is live again: the scheduler leaves it alone.
    std::thread::sleep(Duration::from_millis(600));
    assert!(in_live_table(&t.s, &id));
}

#[test]
fn due_work_runs_on_the_first_pass_after_a_restart() {
    // This server's scheduler makes one pass at start, then waits an hour.
    let t = Tenant::start_with(AT_START_ONLY);
    let (dave, _) = t.user("dave");
    let (erin, _) = t.user("erin");
    let reader = t.role(&t.sub, READER);
    let start = from_now(3);
    let grant = id_of(&t.admin_add(&t.sub, &reader, &dave, "Eligible", starting(start, "PT1H")));
    t.admin_add(
        &t.rg,
        &t.role(&t.rg, READER),
        &erin,
        "Active",
        lasting("PT2S"),
    );
    let ending = listed_for(&t, &t.rg, &erin).expect("listed while current");
    let ending_id = id_of(&ending);

    let Tenant { mut s, .. } = t;
    assert!(
        s.stop(),
        "SIGTERM stops the server and its scheduler cleanly"
    );
    sleep_past(start.max(ts(&ending["endDateTime"])));
    // Nothing ran while it was down.
    assert_eq!(stored_sub_status(&s, &grant), "Granted");
    assert!(in_live_table(&s, &ending_id));

    let s: Server = s.restart_with(AT_START_ONLY);
    wait_until(5, "the start pass has done the due work", || {
        stored_sub_status(&s, &grant) == "Provisioned" && in_history(&s, &ending_id).is_some()
    });
    assert_eq!(
        audits(&s, "Provision scheduled grant", "requestId", &grant).len(),
        1
    );
    assert_eq!(
        audits(&s, "Expire assignment", "assignmentId", &ending_id).len(),
        1
    );
    let mut s = s;
    assert!(s.stop(), "a clean exit");
}

#[test]
fn a_request_that_catches_a_stale_grant_up_audits_it_like_the_scheduler() {
    // The scheduler ran at start and waits an hour: the grant stays stored `Granted`.
    let t = Tenant::start_with(AT_START_ONLY);
    let (gina, _) = t.user("gina");
    let role = t.role(&t.sub, READER);
    let start = from_now(2);
    let grant = id_of(&t.admin_add(&t.sub, &role, &gina, "Eligible", starting(start, "PT1H")));
    sleep_past(start);
    assert_eq!(stored_sub_status(&t.s, &grant), "Granted");
    assert!(audits(&t.s, "Provision scheduled grant", "requestId", &grant).is_empty());

    // Removing the assignment first stores the grant as provisioned, with its record.
    let r = t.request(
        &t.admin,
        &request_body("AdminRemove", "Eligible", &t.sub, &role, &gina),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(stored_sub_status(&t.s, &grant), "Provisioned");
    let records = audits(&t.s, "Provision scheduled grant", "requestId", &grant);
    assert_eq!(records.len(), 1, "{records:#?}");
    let rec = &records[0];
    assert_eq!(rec["category"], "RoleManagement", "{rec}");
    assert_eq!(detail(rec, "subStatus"), Some("Provisioned"), "{rec}");
    assert!(detail(rec, "resourceId").is_some(), "{rec}");
    // Initiated by the caller whose request did it, in that request's transaction.
    assert_eq!(
        rec["initiatedBy"]["user"]["id"],
        crate::harness::ADMIN,
        "{rec}"
    );
    assert_eq!(
        rec["correlationId"].as_str(),
        r.header("request-id"),
        "{rec}"
    );
}

#[test]
fn a_fast_scheduler_stops_with_the_server() {
    let t = Tenant::start_with(FAST);
    let (frank, _) = t.user("frank");
    // Keep the scheduler busy with work falling due while the server shuts down.
    let role = t.role(&t.sub, READER);
    t.admin_add(&t.sub, &role, &frank, "Active", lasting("PT1S"));
    let Tenant { mut s, .. } = t;
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert!(s.stop(), "clean exit; log: {}", s.log());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown is not held up by the scheduler"
    );
}

#[test]
fn approvals_nobody_decides_time_out() {
    let t = Tenant::start_with(FAST);
    let (gina, gina_t, role, eligible) = eligible_user(&t, "gina", "P30D");
    let (hank, hank_t) = t.user("hank");
    // The shortest timeout a rule allows is one minute.
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        json!({
            "Enabled": true,
            "ApprovalTimeoutInMinutes": 1,
            "Approvers": [{"Id": hank, "Type": "User", "DisplayName": "Hank"}],
        }),
    );
    let r = t.request(
        &gina_t,
        &activation(&t.sub, &role, &gina, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("InProgress", "PendingApproval"));
    let id = id_of(&r.json);
    let requested = ts(&r.json["requestedDateTime"]);

    sleep_past(
        requested
            .checked_add(jiff::SignedDuration::from_secs(60))
            .unwrap(),
    );
    wait_until(5, "the approval is stored as timed out", || {
        stored_sub_status(&t.s, &id) == "TimedOut"
    });
    assert_eq!(status_of(&t.get_request(&id)), ("Closed", "TimedOut"));
    assert!(requests_stored_as(&t, "TimedOut").contains(&id));
    assert!(!requests_stored_as(&t, "PendingApproval").contains(&id));
    let d = decide(&t.s, &hank_t, &id, "AdminApproved");
    assert_eq!(d.status, 400, "{}", d.text);
    assert_eq!(d.code(), "RequestCannotBeUpdated");
    let recs = audits(&t.s, "Time out approval", "requestId", &id);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_scheduler_record(&recs[0]);
    assert!(
        t.assignments(&t.sub)
            .iter()
            .all(|a| a["assignmentState"] != "Active"),
        "nothing was activated"
    );
    // A new request for the same role is no longer blocked by the timed-out one.
    let again = t.request(
        &gina_t,
        &activation(&t.sub, &role, &gina, Some(&eligible), "PT1H"),
    );
    assert_eq!(again.status, 201, "{}", again.text);
}

#[test]
fn the_interval_must_be_a_positive_number_of_seconds() {
    for (args, env) in [
        (&["--scheduler-interval", "0"][..], None),
        (&["--scheduler-interval=-1"][..], None),
        (&[][..], Some("soon")),
    ] {
        let mut cmd = Command::new(binary());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth-hs256-secret",
            SECRET,
        ])
        .args(["--database", "sqlite:///nonexistent-rolegate-dir/never.db"])
        .args(args);
        match env {
            Some(v) => cmd.env("ROLEGATE_SCHEDULER_INTERVAL", v),
            None => cmd.env_remove("ROLEGATE_SCHEDULER_INTERVAL"),
        };
        let out = cmd.output().expect("run rolegate");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} was accepted");
        assert!(err.contains("scheduler-interval"), "{err}");
    }
}
