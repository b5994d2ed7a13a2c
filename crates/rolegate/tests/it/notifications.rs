//! Change notifications (decisions.md §12, §13): subscriptions validated with a handshake,
//! signed deliveries of request and assignment changes from the durable outbox, retries
//! with backoff after a failing receiver recovers, a hanging receiver that blocks nothing,
//! the SSRF guard, and who may subscribe. The receivers are plain `TcpListener` threads
//! in this test process.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{
    CONTRIBUTOR, Tenant, USER_ACCESS_ADMIN, activation, eligible_user, enc, from_now, lasting,
};
use crate::harness::wait_until;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Server arguments: the outbox is polled often and retries start after 100 ms.
const FAST: &[&str] = &["--webhook-poll-ms", "50", "--webhook-retry-base-ms", "100"];

/// A request the receiver got, with the status it answered.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    signature: Option<String>,
    body: String,
    answered: u16,
}

/// A webhook receiver: answers validation handshakes by echoing the token and
/// notifications with `status` (0: never answers).
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    status: Arc<AtomicU16>,
    validation_status: Arc<AtomicU16>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let validation_status = Arc::new(AtomicU16::new(200));
        let (s, st, vs) = (
            Arc::clone(&seen),
            Arc::clone(&status),
            Arc::clone(&validation_status),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, st, vs) = (Arc::clone(&s), Arc::clone(&st), Arc::clone(&vs));
                std::thread::spawn(move || serve(conn, &s, &st, &vs));
            }
        });
        Receiver {
            url,
            seen,
            status,
            validation_status,
        }
    }

    /// The notifications received so far (validation requests left out), parsed.
    fn notifications(&self) -> Vec<(Seen, Value)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| !s.target.contains("validationToken="))
            .map(|s| {
                (
                    s.clone(),
                    serde_json::from_str(&s.body).unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    fn validations(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target.contains("validationToken="))
            .count()
    }
}

fn serve(conn: TcpStream, seen: &Mutex<Vec<Seen>>, status: &AtomicU16, validation: &AtomicU16) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut length, mut signature) = (0usize, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("rolegate-signature") {
                signature = Some(v.trim().to_string());
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).to_string();
    let mut out = conn;
    let (answered, reply) = if let Some((_, token)) = target.split_once("validationToken=") {
        let code = validation.load(Ordering::SeqCst);
        (
            code,
            format!(
                "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{token}",
                token.len()
            ),
        )
    } else {
        let code = status.load(Ordering::SeqCst);
        (
            code,
            format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
    };
    seen.lock().unwrap().push(Seen {
        target,
        signature,
        body,
        answered,
    });
    if answered == 0 {
        // Hang: hold the connection open without answering.
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _ = out.write_all(reply.as_bytes());
}

fn subscribe(t: &Tenant, token: &str, url: &str, resource: &str) -> crate::harness::Reply {
    t.s.post(
        "/beta/subscriptions",
        token,
        &json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": url,
            "resource": resource,
            "expirationDateTime": from_now(3600).to_string(),
            "clientState": "s3cret-state",
        }),
    )
}

const ASSIGNMENTS: &str = "privilegedAccess/azureResources/roleAssignments";
const REQUESTS: &str = "privilegedAccess/azureResources/roleAssignmentRequests";

fn sign(body: &str, key: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The `(changeType, resourceData.id)` pairs of the notifications received.
fn events(r: &Receiver) -> Vec<(String, String)> {
    r.notifications()
        .iter()
        .filter_map(|(_, v)| {
            let n = &v["value"][0];
            Some((
                n["changeType"].as_str()?.to_string(),
                n["resourceData"]["id"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn admin_adds_and_activations_are_delivered_signed() {
    let t = Tenant::start_with(FAST);
    let rx = Receiver::start(200);
    let a = subscribe(&t, &t.admin, &rx.url, ASSIGNMENTS);
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(rx.validations(), 1, "the endpoint is validated first");
    let q = subscribe(&t, &t.admin, &rx.url, REQUESTS);
    assert_eq!(q.status, 201, "{}", q.text);
    let sub_a = a.json["id"].as_str().unwrap().to_string();
    let sub_q = q.json["id"].as_str().unwrap().to_string();
    assert_eq!(a.json["changeType"], "created,updated,deleted");

    // An AdminAdd (eligible) and an activation.
    let (user, tok, role, eligible) = eligible_user(&t, "nora", "P30D");
    let act = t.request(
        &tok,
        &activation(&t.sub, &role, &user, Some(&eligible), "PT1H"),
    );
    assert_eq!(act.status, 201, "{}", act.text);
    let act_id = act.json["id"].as_str().unwrap().to_string();
    let active_id = t
        .assignments(&t.sub)
        .iter()
        .find(|a| a["subjectId"] == user.as_str() && a["assignmentState"] == "Active")
        .expect("activation listed")["id"]
        .as_str()
        .unwrap()
        .to_string();
    for id in [&eligible, &act_id, &active_id] {
        wait_until(10, &format!("{id} is notified"), || {
            events(&rx).iter().any(|(c, e)| c == "created" && e == id)
        });
    }
    for (seen, v) in rx.notifications() {
        assert_eq!(seen.answered, 200);
        assert_eq!(
            seen.signature.as_deref(),
            Some(sign(&seen.body, "s3cret-state").as_str()),
            "signature of {}",
            seen.body
        );
        let n = &v["value"][0];
        assert_eq!(n["clientState"], "s3cret-state");
        assert!(n["tenantId"].is_string());
        assert!(n["subscriptionExpirationDateTime"].is_string());
        let data = &n["resourceData"];
        if n["subscriptionId"] == sub_a.as_str() {
            assert_eq!(
                data["@odata.type"],
                "#microsoft.graph.governanceRoleAssignment"
            );
        } else {
            assert_eq!(n["subscriptionId"], sub_q.as_str());
            assert_eq!(
                data["@odata.type"],
                "#microsoft.graph.governanceRoleAssignmentRequest"
            );
        }
        assert!(
            data["@odata.id"]
                .as_str()
                .unwrap()
                .ends_with(&format!("('{}')", data["id"].as_str().unwrap()))
        );
    }
    let act_note = rx
        .notifications()
        .into_iter()
        .map(|(_, v)| v["value"][0].clone())
        .find(|n| n["resourceData"]["id"] == act_id.as_str())
        .unwrap();
    assert_eq!(act_note["resourceData"]["type"], "UserAdd");
    assert_eq!(act_note["resourceData"]["subjectId"], user.as_str());

    // Listed, read, renewed, deleted; each audited under Notification.
    let list = t.s.get("/beta/subscriptions", &t.admin);
    assert_eq!(list.json["value"].as_array().unwrap().len(), 2);
    let one = t.s.get(&format!("/beta/subscriptions/{sub_a}"), &t.admin);
    assert_eq!(one.status, 200);
    assert_eq!(one.json["resource"], ASSIGNMENTS);
    let later = from_now(7 * 24 * 3600).to_string();
    let renewed = t.s.call(
        "PATCH",
        &format!("/beta/subscriptions/{sub_a}"),
        Some(&t.admin),
        Some(&json!({"expirationDateTime": later})),
    );
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    let too_late = from_now(31 * 24 * 3600).to_string();
    let refused = t.s.call(
        "PATCH",
        &format!("/beta/subscriptions/{sub_a}"),
        Some(&t.admin),
        Some(&json!({"expirationDateTime": too_late})),
    );
    assert_eq!(refused.status, 400);
    assert_eq!(refused.code(), "InvalidRequest");
    let gone = t.s.call(
        "DELETE",
        &format!("/beta/subscriptions/{sub_a}"),
        Some(&t.admin),
        None,
    );
    assert_eq!(gone.status, 204);
    let missing = t.s.get(&format!("/beta/subscriptions/{sub_a}"), &t.admin);
    assert_eq!(missing.status, 404);
    let audits = t.s.get(
        &format!(
            "/beta/auditLogs/directoryAudits?$filter={}",
            enc("category eq 'Notification' and result eq 'success'")
        ),
        &t.admin,
    );
    let names: Vec<&str> = audits.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["activityDisplayName"].as_str())
        .collect();
    for name in [
        "Create subscription",
        "Renew subscription",
        "Delete subscription",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
}

#[test]
fn a_failing_receiver_gets_the_missed_events_once_it_recovers() {
    let t = Tenant::start_with(FAST);
    let rx = Receiver::start(500);
    let r = subscribe(&t, &t.admin, &rx.url, ASSIGNMENTS);
    assert_eq!(r.status, 201, "{}", r.text);
    let (_, _, _, eligible) = eligible_user(&t, "otto", "P30D");
    let attempts = || {
        rx.notifications()
            .iter()
            .filter(|(_, v)| v["value"][0]["resourceData"]["id"] == eligible.as_str())
            .map(|(s, v)| {
                (
                    s.answered,
                    v["value"][0]["id"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    wait_until(10, "the delivery is retried", || attempts().len() >= 3);
    let first = attempts();
    assert!(
        first
            .iter()
            .all(|(code, id)| *code == 500 && *id == first[0].1)
    );
    rx.status.store(200, Ordering::SeqCst);
    wait_until(10, "the missed event arrives", || {
        attempts().iter().any(|(code, _)| *code == 200)
    });
    let delivered = attempts().len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(attempts().len(), delivered, "a 2xx acknowledges");
}

#[test]
fn a_hanging_receiver_blocks_neither_requests_nor_other_receivers() {
    let t = Tenant::start_with(FAST);
    let stuck = Receiver::start(0);
    let fine = Receiver::start(200);
    assert_eq!(subscribe(&t, &t.admin, &stuck.url, REQUESTS).status, 201);
    assert_eq!(subscribe(&t, &t.admin, &fine.url, REQUESTS).status, 201);
    let role = t.role(&t.sub, CONTRIBUTOR);
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..4 {
        let (user, _) = t.user(&format!("hang{i}"));
        let r = t.admin_add(&t.sub, &role, &user, "Eligible", lasting("P30D"));
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "requests took {:?}",
        started.elapsed()
    );
    wait_until(4, "the healthy receiver gets every event", || {
        let got = events(&fine);
        ids.iter()
            .all(|id| got.iter().any(|(c, e)| c == "created" && e == id))
    });
    assert!(!stuck.notifications().is_empty(), "the stuck one was tried");
}

#[test]
fn unsafe_or_unvalidated_endpoints_are_refused() {
    let t = Tenant::start_with(FAST);
    for url in [
        "http://example.com/hook",
        "https://10.0.0.8/hook",
        "https://192.168.1.20/hook",
        "https://169.254.169.254/latest",
        "https://[fd00::1]/hook",
        "ftp://127.0.0.1/hook",
    ] {
        let r = subscribe(&t, &t.admin, url, ASSIGNMENTS);
        assert_eq!(r.status, 400, "{url}: {}", r.text);
        assert_eq!(r.code(), "InvalidRequest", "{url}");
    }
    // The handshake must echo the token with 200.
    let rx = Receiver::start(200);
    rx.validation_status.store(404, Ordering::SeqCst);
    let r = subscribe(&t, &t.admin, &rx.url, ASSIGNMENTS);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "InvalidRequest");
    assert_eq!(rx.validations(), 1);
    // Nothing listens here.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    assert_eq!(subscribe(&t, &t.admin, &dead, ASSIGNMENTS).status, 400);
    // Bad fields.
    let rx = Receiver::start(200);
    for (field, value) in [
        ("changeType", json!("created,moved")),
        (
            "resource",
            json!("privilegedAccess/azureResources/resources"),
        ),
        (
            "expirationDateTime",
            json!(from_now(31 * 24 * 3600).to_string()),
        ),
    ] {
        let mut body = json!({
            "changeType": "created",
            "notificationUrl": rx.url,
            "resource": ASSIGNMENTS,
            "expirationDateTime": from_now(3600).to_string(),
            "clientState": "x",
        });
        body[field] = value;
        let r = t.s.post("/beta/subscriptions", &t.admin, &body);
        assert_eq!(r.status, 400, "{field}: {}", r.text);
    }
    assert_eq!(
        rx.validations(),
        0,
        "invalid subscriptions are not validated"
    );
}

#[test]
fn resource_administrators_subscribe_only_to_their_resources() {
    let t = Tenant::start_with(FAST);
    let rx = Receiver::start(200);
    let (owner, owner_tok) = t.user("uaa");
    let uaa = t.role(&t.rg, USER_ACCESS_ADMIN);
    t.admin_add(&t.rg, &uaa, &owner, "Active", lasting("P30D"));
    let (_, nobody) = t.user("nobody");
    let on = |id: &str| format!("{ASSIGNMENTS}?$filter=resourceId eq '{id}'");

    let mine = subscribe(&t, &owner_tok, &rx.url, &on(&t.rg));
    assert_eq!(mine.status, 201, "{}", mine.text);
    for (tok, resource) in [
        (&owner_tok, ASSIGNMENTS.to_string()),
        (&owner_tok, on(&t.sub)),
        (&nobody, on(&t.rg)),
        (&nobody, ASSIGNMENTS.to_string()),
    ] {
        let r = subscribe(&t, tok, &rx.url, &resource);
        assert_eq!(r.status, 403, "{resource}: {}", r.text);
    }
    assert_eq!(
        rx.validations(),
        1,
        "refused callers trigger no outbound call"
    );
    // The administrator's own subscription is all they see; changes elsewhere don't reach it.
    let admin_sub = subscribe(&t, &t.admin, &rx.url, REQUESTS);
    assert_eq!(admin_sub.status, 201);
    let listed = t.s.get("/beta/subscriptions", &owner_tok);
    assert_eq!(listed.json["value"].as_array().unwrap().len(), 1);
    let other = t.s.get(
        &format!(
            "/beta/subscriptions/{}",
            admin_sub.json["id"].as_str().unwrap()
        ),
        &owner_tok,
    );
    assert_eq!(other.status, 404);
    let (u1, _) = t.user("on-rg");
    let (u2, _) = t.user("on-sub");
    let reader_rg = t.role(&t.rg, CONTRIBUTOR);
    let reader_sub = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.rg, &reader_rg, &u1, "Eligible", lasting("P30D"));
    t.admin_add(&t.sub, &reader_sub, &u2, "Eligible", lasting("P30D"));
    let mine_id = mine.json["id"].as_str().unwrap().to_string();
    let for_mine = || {
        rx.notifications()
            .into_iter()
            .filter(|(_, v)| v["value"][0]["subscriptionId"] == mine_id.as_str())
            .map(|(_, v)| v["value"][0]["resourceData"]["subjectId"].clone())
            .collect::<Vec<_>>()
    };
    wait_until(10, "the rg change reaches the administrator", || {
        for_mine().contains(&json!(u1))
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !for_mine().contains(&json!(u2)),
        "the subscription's change is not theirs"
    );
}

#[test]
fn a_creator_who_loses_the_rights_gets_nothing_more_and_cannot_renew() {
    let t = Tenant::start_with(FAST);
    let rx = Receiver::start(200);
    let (owner, owner_tok) = t.user("uaa");
    let uaa = t.role(&t.rg, USER_ACCESS_ADMIN);
    t.admin_add(&t.rg, &uaa, &owner, "Active", lasting("P30D"));
    let on_rg = format!("{ASSIGNMENTS}?$filter=resourceId eq '{}'", t.rg);
    let sub = subscribe(&t, &owner_tok, &rx.url, &on_rg);
    assert_eq!(sub.status, 201, "{}", sub.text);
    let id = sub.json["id"].as_str().unwrap().to_string();
    // While they administer the resource group, its changes reach them.
    let (u1, _) = t.user("first");
    let contributor = t.role(&t.rg, CONTRIBUTOR);
    t.admin_add(&t.rg, &contributor, &u1, "Eligible", lasting("P30D"));
    let subjects = || {
        rx.notifications()
            .into_iter()
            .map(|(_, v)| v["value"][0]["resourceData"]["subjectId"].clone())
            .collect::<Vec<_>>()
    };
    wait_until(10, "the first change arrives", || {
        subjects().contains(&json!(u1))
    });
    // Their User Access Administrator assignment is removed.
    let r = t.request(
        &t.admin,
        &crate::fixture::request_body("AdminRemove", "Active", &t.rg, &uaa, &owner),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let (u2, _) = t.user("second");
    t.admin_add(&t.rg, &contributor, &u2, "Eligible", lasting("P30D"));
    // The administrator's own subscription proves the change was delivered somewhere.
    let witness = Receiver::start(200);
    assert_eq!(subscribe(&t, &t.admin, &witness.url, &on_rg).status, 201);
    let (u3, _) = t.user("third");
    t.admin_add(&t.rg, &contributor, &u3, "Eligible", lasting("P30D"));
    wait_until(10, "the witness sees the third change", || {
        witness
            .notifications()
            .iter()
            .any(|(_, v)| v["value"][0]["resourceData"]["subjectId"] == json!(u3))
    });
    std::thread::sleep(Duration::from_millis(500));
    let seen = subjects();
    assert!(
        !seen.contains(&json!(u2)) && !seen.contains(&json!(u3)),
        "{seen:?}"
    );
    let renew = t.s.call(
        "PATCH",
        &format!("/beta/subscriptions/{id}"),
        Some(&owner_tok),
        Some(&json!({"expirationDateTime": from_now(7200).to_string()})),
    );
    assert!(renew.status == 403 || renew.status == 404, "{}", renew.text);
}

#[test]
fn a_short_or_missing_client_state_is_refused() {
    let t = Tenant::start_with(FAST);
    let rx = Receiver::start(200);
    for state in [json!(null), json!(""), json!("short")] {
        let r = t.s.post(
            "/beta/subscriptions",
            &t.admin,
            &json!({
                "changeType": "created",
                "notificationUrl": rx.url,
                "resource": ASSIGNMENTS,
                "expirationDateTime": from_now(3600).to_string(),
                "clientState": state,
            }),
        );
        assert_eq!(r.status, 400, "{state}: {}", r.text);
        assert!(r.text.contains("clientState"), "{}", r.text);
    }
    assert_eq!(rx.validations(), 0);
}
