//! Group commit (issue 14): writes that arrive together share one transaction, and still
//! each gets its own answer, nothing acknowledged is lost, nothing is half-applied, and the
//! audit chain stays whole. Many activations at once, through the real server.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{CONTRIBUTOR, activation};
use crate::harness::{Reply, say};
use crate::reads::{World, new_sub};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::{Barrier, Mutex};

/// A tenant of `n` users, each eligible for Contributor on one subscription: (resource id,
/// role id, [(user, token, eligible assignment id)]).
fn eligible_users(w: &World, n: usize) -> (String, String, Vec<(String, String, String)>) {
    let sub = new_sub();
    w.register(&sub);
    let rid = w.rid(&sub);
    let role = w.role(&rid, CONTRIBUTOR);
    let users = (0..n)
        .map(|i| {
            let u = w.user(&format!("Batch User {i}"));
            let eligible = w.assign(&rid, CONTRIBUTOR, &u, "Eligible", "P30D");
            let token = w.token(&u);
            (u, token, eligible)
        })
        .collect();
    (rid, role, users)
}

/// `rolegate audit verify` on the server's database: whether the chain is whole, and
/// what it said.
fn audit_verify(database: &str) -> (bool, String) {
    let out = Command::new(crate::harness::binary())
        .args(["audit", "verify", "--database", database])
        .env_remove("ROLEGATE_DATABASE_URL")
        .output()
        .expect("rolegate audit verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn count(w: &World, sql: &str, args: &[&str]) -> i64 {
    w.s.sql(sql, args)[0][0].as_i64().expect("a count")
}

/// The batching counters of `/metrics`, for the log: (batches, writes).
fn batching(w: &World) -> (String, String) {
    let text = w.s.get("/metrics", &w.admin).text;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("?")
            .to_string()
    };
    (
        value("rolegate_write_batches_total"),
        value("rolegate_batched_writes_total"),
    )
}

#[test]
fn concurrent_activations_of_which_some_are_refused_each_get_their_own_answer() {
    let w = World::new();
    let (rid, role, users) = eligible_users(&w, 18);
    // All at once: a third of the users ask for nine hours (past the eight-hour maximum:
    // the policy refuses) while the next user tries to activate their eligibility for them
    // (not theirs to activate: 403); the others ask twice for one hour (the first wins, the
    // second finds the role already active). (user, duration, whose token)
    let tries: Vec<(usize, &str, usize)> = (0..users.len())
        .flat_map(|i| {
            if i % 3 == 0 {
                vec![(i, "PT9H", i), (i, "PT1H", (i + 1) % users.len())]
            } else {
                vec![(i, "PT1H", i), (i, "PT1H", i)]
            }
        })
        .collect();
    let start = Barrier::new(tries.len());
    // (user, whose token, the answer)
    let answers: Mutex<Vec<(usize, usize, Reply)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for &(i, duration, caller) in &tries {
            let (w, start, answers, rid, role) = (&w, &start, &answers, &rid, &role);
            let (user, _, eligible) = &users[i];
            let token = &users[caller].1;
            scope.spawn(move || {
                let body = activation(rid, role, user, Some(eligible), duration);
                start.wait();
                let r = w.request_as(token, &body);
                answers.lock().unwrap().push((i, caller, r));
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    let (batches, writes) = batching(&w);
    say(&format!(
        "{} activations at once: {writes} writes in {batches} commits",
        answers.len()
    ));
    let mut refused = 0;
    for (i, (user, _, _)) in users.iter().enumerate() {
        let mine: Vec<&Reply> = answers
            .iter()
            .filter(|(j, _, _)| *j == i)
            .map(|(_, _, r)| r)
            .collect();
        // The answer to the try made with `caller`'s token (one per caller for the refused).
        let by = |caller: usize| {
            answers
                .iter()
                .find(|(j, c, _)| *j == i && *c == caller)
                .map(|(_, _, r)| r)
        };
        let active = w.s.sql(
            "SELECT request_id FROM assignments WHERE subject_id = ? AND state = 'Active'",
            &[user],
        );
        let stored = count(
            &w,
            "SELECT count(*) FROM requests WHERE subject_id = ? AND kind = 'UserAdd'",
            &[user],
        );
        if i % 3 == 0 {
            // Each refusal reached the request that earned it: the user's own nine hours the
            // policy's 400, the other user's try the 403.
            let long = by(i).expect("the long one");
            assert_eq!(long.status, 400, "{}", long.text);
            assert_eq!(long.code(), "RoleAssignmentRequestPolicyValidationFailed");
            assert!(long.text.contains("ExpirationRule"), "{}", long.text);
            let forbidden: Vec<&&Reply> = mine.iter().filter(|r| r.status == 403).collect();
            assert_eq!(forbidden.len(), 1, "the other user's try is forbidden");
            let other = by((i + 1) % users.len()).expect("the other user's try");
            assert_eq!(other.status, 403, "{}", other.text);
            assert!(active.is_empty() && stored == 0, "{user}: {active:?}");
            refused += 2;
            continue;
        }
        let texts: Vec<&str> = mine.iter().map(|r| r.text.as_str()).collect();
        let created: Vec<&&Reply> = mine.iter().filter(|r| r.status == 201).collect();
        assert_eq!(created.len(), 1, "one activation of {user} wins: {texts:?}");
        let lost: Vec<&&Reply> = mine.iter().filter(|r| r.status != 201).collect();
        assert_eq!(lost.len(), 1, "{texts:?}");
        assert_eq!(lost[0].status, 400, "{}", lost[0].text);
        assert_eq!(lost[0].code(), "RoleAssignmentExists", "{}", lost[0].text);
        refused += 1;
        // What the server answered is what it stored: one request and one active
        // assignment, the winner's.
        let created = created[0];
        assert_eq!(created.json["subjectId"], json!(user), "{}", created.text);
        assert_eq!(created.json["status"]["subStatus"], "Provisioned");
        let id = created.json["id"].as_str().expect("request id");
        assert_eq!(stored, 1);
        assert_eq!(active, vec![vec![Value::String(id.to_string())]]);
    }
    // Each refusal, policy failure or 403 (decisions.md §11), left one failure record, and
    // the chain is whole.
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM audit_log WHERE result = 'failure'",
            &[]
        ),
        refused
    );
    let (intact, out) = audit_verify(&w.s.database_url());
    assert!(intact, "{out}");
}

#[test]
fn a_sigkill_amid_activations_loses_no_acknowledged_one_and_half_applies_none() {
    let mut w = World::new();
    let (rid, role, users) = eligible_users(&w, 16);
    // Each client activates its users' roles and deactivates them again, over and over,
    // until the server is killed under it; it keeps every request the server acknowledged.
    let acknowledged: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let pid = w.s.pid().expect("server running").to_string();
    std::thread::scope(|scope| {
        for chunk in users.chunks(2) {
            let (w, rid, role, acknowledged) = (&w, &rid, &role, &acknowledged);
            scope.spawn(move || {
                'work: loop {
                    for (user, token, eligible) in chunk {
                        let on = activation(rid, role, user, Some(eligible), "PT1H");
                        let mut off = on.clone();
                        off["type"] = json!("UserRemove");
                        for body in [on, off] {
                            let path = w.s.pim("/roleAssignmentRequests");
                            match w.s.try_call("POST", &path, Some(token), Some(&body)) {
                                Ok(r) if r.status == 201 => {
                                    let id = r.json["id"].as_str().expect("id").to_string();
                                    let kind = body["type"].as_str().expect("type").to_string();
                                    acknowledged.lock().unwrap().push((id, kind));
                                }
                                Ok(r) => assert_eq!(r.status, 400, "{}", r.text),
                                Err(_) => break 'work,
                            }
                        }
                    }
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let killed = Command::new("kill").args(["-KILL", &pid]).status();
        assert!(killed.expect("kill").success());
    });
    w.s.kill();
    let acknowledged = acknowledged.into_inner().unwrap();
    say(&format!(
        "{} requests acknowledged before SIGKILL",
        acknowledged.len()
    ));
    assert!(acknowledged.len() > 16, "the load ran: {acknowledged:?}");
    let w = World::on(w.s.restart());
    // Nothing acknowledged is lost: every request is there, as answered (read underneath:
    // the API's rate limit would refuse this many reads).
    let stored: std::collections::HashMap<String, (Value, Value)> =
        w.s.sql("SELECT id, kind, sub_status FROM requests", &[])
            .into_iter()
            .map(|r| {
                (
                    r[0].as_str().expect("id").to_string(),
                    (r[1].clone(), r[2].clone()),
                )
            })
            .collect();
    for (id, kind) in &acknowledged {
        let done = if kind == "UserAdd" {
            "Provisioned"
        } else {
            "Revoked"
        };
        assert_eq!(
            stored.get(id),
            Some(&(json!(kind), json!(done))),
            "acknowledged {kind} {id} lost"
        );
    }
    let (last, kind) = acknowledged.last().expect("one");
    let r = w.get(&format!("/roleAssignmentRequests/{last}"));
    assert_eq!(
        (r.status, &r.json["type"]),
        (200, &json!(kind)),
        "{}",
        r.text
    );
    // Nothing is half-applied: every stored request has its audit record, every active
    // assignment its request, and at most one per user.
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM requests r WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.request_id = r.id)",
            &[]
        ),
        0
    );
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM assignments a WHERE a.state = 'Active' AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = a.request_id)",
            &[]
        ),
        0
    );
    for (user, _, _) in &users {
        let active = count(
            &w,
            "SELECT count(*) FROM assignments WHERE subject_id = ? AND state = 'Active'",
            &[user],
        );
        let last = w.s.sql(
            "SELECT kind FROM requests WHERE subject_id = ? AND kind <> 'AdminAdd' ORDER BY seq DESC LIMIT 1",
            &[user],
        );
        let expected = i64::from(last.first().is_some_and(|r| r[0] == json!("UserAdd")));
        assert_eq!(active, expected, "{user}: {last:?}");
    }
    let (intact, out) = audit_verify(&w.s.database_url());
    assert!(intact, "{out}");
}
