//! E-mail notifications (decisions.md §10, §12): the approver is asked to approve, the
//! requester hears of the decision, tenant administrators hear of emergency access, holders
//! are reminded once before their assignments end, and a relay that is down delays mail
//! without losing it. The relay is an SMTP sink: a plain
//! `TcpListener` thread in this test process that accepts every message and records it.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{
    CONTRIBUTOR, OWNER, Tenant, USER_ACCESS_ADMIN, activation, create_group, decide, eligible_user,
    enc, from_now, lasting, request_body, status_of,
};
use crate::harness::{ADMIN, token};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One message the sink accepted.
#[derive(Debug, Clone)]
struct Mail {
    rcpt: Vec<String>,
    data: String,
    /// The user the client authenticated as, if it did.
    user: Option<String>,
    /// Whether the message came over TLS (after STARTTLS).
    over_tls: bool,
}

impl Mail {
    /// Header `name`'s value, its folded lines joined (RFC 5322 §2.2.3).
    fn header(&self, name: &str) -> String {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default()
    }

    fn subject(&self) -> String {
        self.header("Subject")
    }

    /// The decoded body of the `text/{kind}` part.
    fn part(&self, kind: &str) -> Option<String> {
        let ct = self.header("Content-Type");
        assert!(ct.starts_with("multipart/alternative"), "{ct}");
        let boundary = ct.split("boundary=\"").nth(1)?.split('"').next()?;
        self.data
            .split(&format!("--{boundary}"))
            .find(|p| p.contains(&format!("Content-Type: text/{kind}")))
            .map(|p| {
                let body = p.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                assert!(
                    p.contains("Content-Transfer-Encoding: quoted-printable"),
                    "{p}"
                );
                unquote(body)
            })
    }
}

/// Decodes quoted-printable text.
fn unquote(s: &str) -> String {
    let joined = s.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8 body")
}

/// What the sink asks of its clients.
#[derive(Clone, Default)]
struct SinkRules {
    /// AUTH mechanisms to offer (`"PLAIN LOGIN"`) and the one user and password accepted;
    /// mail before a successful AUTH is refused.
    auth: Option<(&'static str, &'static str, &'static str)>,
    /// Offer STARTTLS with this certificate.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Speak TLS from the first byte (as an `smtps://` relay) with `tls` instead.
    implicit_tls: bool,
    /// Send plaintext replies right after `220` to STARTTLS, before the handshake (a
    /// STARTTLS response injection).
    inject_after_starttls: bool,
}

/// An SMTP sink on `listener`.
struct Sink {
    mails: Arc<Mutex<Vec<Mail>>>,
    /// Connections accepted so far.
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Sink {
    fn start() -> (Sink, String) {
        Self::start_with(SinkRules::default())
    }

    /// A sink with `rules`; the URL without credentials.
    fn start_with(rules: SinkRules) -> (Sink, String) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("smtp://{}", listener.local_addr().expect("addr"));
        (Self::on_with(listener, rules), url)
    }

    fn on(listener: TcpListener) -> Sink {
        Self::on_with(listener, SinkRules::default())
    }

    fn on_with(listener: TcpListener, rules: SinkRules) -> Sink {
        let mails = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (m, counted) = (Arc::clone(&mails), Arc::clone(&connections));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let m = Arc::clone(&m);
                let rules = rules.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &m, &rules);
                });
            }
        });
        Sink { mails, connections }
    }

    /// The messages to `address` whose subject starts with `prefix`, so far.
    fn to(&self, address: &str, prefix: &str) -> Vec<Mail> {
        self.mails
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.rcpt.iter().any(|r| r == address) && m.subject().starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits until a message to `address` whose subject starts with `prefix` arrives.
    fn wait_for(&self, address: &str, prefix: &str, within: Duration) -> Mail {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) =
                self.mails.lock().unwrap().iter().find(|m| {
                    m.rcpt.iter().any(|r| r == address) && m.subject().starts_with(prefix)
                })
            {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {address} starting `{prefix}`; got {:#?}",
                self.mails.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One connection: in the clear, then (after STARTTLS) over TLS.
fn serve(conn: TcpStream, mails: &Mutex<Vec<Mail>>, rules: &SinkRules) -> std::io::Result<()> {
    if let Some(config) = rules.tls.as_ref().filter(|_| rules.implicit_tls) {
        let tls =
            rustls::ServerConnection::new(Arc::clone(config)).map_err(std::io::Error::other)?;
        let mut stream = BufReader::new(rustls::StreamOwned::new(tls, conn));
        stream.get_mut().write_all(b"220 sink ESMTP\r\n")?;
        session(stream, mails, rules, true)?;
        return Ok(());
    }
    let mut conn = BufReader::new(conn);
    conn.get_mut().write_all(b"220 sink ESMTP\r\n")?;
    if let Some(tcp) = session(conn, mails, rules, false)?
        && let Some(config) = &rules.tls
    {
        let tls =
            rustls::ServerConnection::new(Arc::clone(config)).map_err(std::io::Error::other)?;
        let stream = rustls::StreamOwned::new(tls, tcp);
        session(BufReader::new(stream), mails, rules, true)?;
    }
    Ok(())
}

/// Decodes standard base64 (test input only).
fn unbase64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.trim().bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Reads one line; `None` at the end of the stream.
fn line_of<S: std::io::Read>(r: &mut BufReader<S>) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    Ok((r.read_line(&mut line)? > 0).then_some(line))
}

/// Speaks SMTP until QUIT or the end of the stream; returns the stream when the client
/// asked for STARTTLS.
fn session<S: std::io::Read + Write>(
    mut r: BufReader<S>,
    mails: &Mutex<Vec<Mail>>,
    rules: &SinkRules,
    over_tls: bool,
) -> std::io::Result<Option<S>> {
    let mut rcpt = Vec::new();
    let mut user: Option<String> = None;
    let credentials_ok =
        |u: &str, p: &str| rules.auth.is_some_and(|(_, eu, ep)| u == eu && p == ep);
    loop {
        let Some(line) = line_of(&mut r)? else {
            return Ok(None);
        };
        let upper = line.to_ascii_uppercase();
        let w = r.get_mut();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let mut caps = String::from("250-sink\r\n");
            if rules.tls.is_some() && !over_tls {
                caps.push_str("250-STARTTLS\r\n");
            }
            if let Some((mechanisms, _, _)) = rules.auth {
                caps.push_str(&format!("250-AUTH {mechanisms}\r\n"));
            }
            caps.push_str("250 8BITMIME\r\n");
            w.write_all(caps.as_bytes())?;
        } else if upper.starts_with("STARTTLS") && rules.tls.is_some() && !over_tls {
            if rules.inject_after_starttls {
                w.write_all(b"220 ready\r\n250-injected\r\n250 AUTH PLAIN\r\n")?;
            } else {
                w.write_all(b"220 ready\r\n")?;
            }
            w.flush()?;
            return Ok(Some(r.into_inner()));
        } else if let Some(token) = upper.strip_prefix("AUTH PLAIN ").map(|_| &line[11..]) {
            let decoded = unbase64(token);
            let parts: Vec<String> = decoded
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).to_string())
                .collect();
            if parts.len() == 3 && credentials_ok(&parts[1], &parts[2]) {
                user = Some(parts[1].clone());
                w.write_all(b"235 ok\r\n")?;
            } else {
                w.write_all(b"535 bad credentials\r\n")?;
            }
        } else if upper.trim_end() == "AUTH LOGIN" {
            w.write_all(b"334 VXNlcm5hbWU6\r\n")?;
            let u = line_of(&mut r)?.map(|l| unbase64(&l)).unwrap_or_default();
            r.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n")?;
            let p = line_of(&mut r)?.map(|l| unbase64(&l)).unwrap_or_default();
            let (u, p) = (
                String::from_utf8_lossy(&u).to_string(),
                String::from_utf8_lossy(&p).to_string(),
            );
            if credentials_ok(&u, &p) {
                user = Some(u);
                r.get_mut().write_all(b"235 ok\r\n")?;
            } else {
                r.get_mut().write_all(b"535 bad credentials\r\n")?;
            }
        } else if upper.starts_with("MAIL FROM:") {
            if rules.auth.is_some() && user.is_none() {
                w.write_all(b"530 authentication required\r\n")?;
                continue;
            }
            rcpt.clear();
            w.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            let addr = line[8..]
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>');
            rcpt.push(addr.to_string());
            w.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                let Some(l) = line_of(&mut r)? else {
                    return Ok(None);
                };
                if l == ".\r\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            mails.lock().unwrap().push(Mail {
                rcpt: rcpt.clone(),
                data,
                user: user.clone(),
                over_tls,
            });
            r.get_mut().write_all(b"250 queued\r\n")?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(None);
        } else {
            w.write_all(b"502 not implemented\r\n")?;
        }
    }
}

/// Server arguments for mail through `url`, polled often, retries from 200 ms.
fn mail_args(url: &str) -> Vec<String> {
    [
        "--smtp-url",
        url,
        "--smtp-from",
        "pim@rolegate.test",
        "--smtp-poll-ms",
        "50",
        "--smtp-retry-base-ms",
        "200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start(args: &[String]) -> Tenant {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Tenant::start_with(&args)
}

/// The e-mail address the directory holds for `id`.
fn address_of(t: &Tenant, id: &str) -> String {
    let r =
        t.s.call("GET", &format!("/scim/v2/Users/{id}"), Some(&t.admin), None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["emails"][0]["value"]
        .as_str()
        .expect("email")
        .to_string()
}

fn approval_by(approver: &str, extra: Value) -> Value {
    let mut rule = json!({"Enabled": true, "Approvers": [{"Id": approver, "Type": "User"}]});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    rule
}

fn link(t: &Tenant, request_id: &str) -> String {
    format!(
        "{}/beta/privilegedAccess/azureResources/roleAssignmentRequests/{request_id}",
        t.s.origin
    )
}

fn resource_name(t: &Tenant) -> String {
    let r =
        t.s.get(&t.s.pim(&format!("/resources/{}", t.sub)), &t.admin);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["displayName"].as_str().expect("name").to_string()
}

#[test]
fn the_approver_is_asked_and_the_requester_hears_the_decision() {
    let (sink, url) = Sink::start();
    let t = start(&mail_args(&url));
    let (bob, bob_t) = t.user("bob");
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        approval_by(&bob, json!({})),
    );
    let mut body = activation(&t.sub, &role, &alice, Some(&eligible), "PT1H");
    body["reason"] = json!("deploy <hotfix> & verify");
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("InProgress", "PendingApproval"));
    let id = r.json["id"].as_str().unwrap().to_string();
    let resource = resource_name(&t);

    let asked = sink.wait_for(
        &address_of(&t, &bob),
        "Approval needed:",
        Duration::from_secs(15),
    );
    assert_eq!(
        asked.subject(),
        format!("Approval needed: alice requests Contributor on {resource}")
    );
    assert_eq!(asked.header("From"), "Rolegate <pim@rolegate.test>");
    let text = asked.part("plain").expect("text part");
    let html = asked.part("html").expect("html part");
    assert!(text.contains(&link(&t, &id)), "{text}");
    assert!(
        text.contains("Justification: deploy <hotfix> & verify"),
        "{text}"
    );
    assert!(
        html.contains(&format!("href=\"{}\"", link(&t, &id))),
        "{html}"
    );
    assert!(
        html.contains("deploy &lt;hotfix&gt; &amp; verify"),
        "{html}"
    );

    let d = decide(&t.s, &bob_t, &id, "AdminApproved");
    assert_eq!(d.status, 200, "{}", d.text);
    let told = sink.wait_for(
        &address_of(&t, &alice),
        "Approved:",
        Duration::from_secs(15),
    );
    assert_eq!(
        told.subject(),
        format!("Approved: your request for Contributor on {resource}")
    );
    assert!(told.part("plain").unwrap().contains(&link(&t, &id)));
    assert!(told.part("html").unwrap().contains(&link(&t, &id)));
    // The approver is not asked again, and the requester never got an approval request.
    let mails = sink.mails.lock().unwrap().clone();
    let alice_addr = address_of(&t, &alice);
    assert!(
        !mails
            .iter()
            .any(|m| m.rcpt.contains(&alice_addr) && m.subject().starts_with("Approval needed")),
        "{mails:#?}"
    );
}

#[test]
fn emergency_access_emails_the_tenant_administrator_and_the_approvers() {
    let (sink, url) = Sink::start();
    let mut args = mail_args(&url);
    args.extend(["--admin".to_string(), "ops-lead".to_string()]);
    let t = start(&args);
    // The tenant administrator, known to the directory with an address.
    let r = t.s.call(
        "POST",
        "/scim/v2/Users",
        Some(&token(ADMIN, true)),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ops-lead@example.test",
            "externalId": "ops-lead",
            "displayName": "Ops Lead",
            "emails": [{"value": "ops-lead@example.test", "primary": true}],
        })),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let (bob, _) = t.user("bob");
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        approval_by(&bob, json!({"AllowEmergencyBypass": true})),
    );
    let mut body = activation(&t.sub, &role, &alice, Some(&eligible), "PT20M");
    body["emergency"] = json!(true);
    body["reason"] = json!("production outage");
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    let id = r.json["id"].as_str().unwrap().to_string();
    let resource = resource_name(&t);
    let subject = format!("Emergency access: alice activated Contributor on {resource}");
    for to in ["ops-lead@example.test".to_string(), address_of(&t, &bob)] {
        let m = sink.wait_for(&to, "Emergency access:", Duration::from_secs(15));
        assert_eq!(m.subject(), subject);
        assert!(m.part("plain").unwrap().contains(&link(&t, &id)));
        assert!(m.part("html").unwrap().contains("production outage"));
    }
    let own = sink.wait_for(
        &address_of(&t, &alice),
        "Activated:",
        Duration::from_secs(15),
    );
    assert_eq!(
        own.subject(),
        format!("Activated: Contributor on {resource}")
    );
}

#[test]
fn mail_waits_for_a_relay_that_is_down_and_is_delivered_once_it_is_up() {
    // A port with nobody listening (yet).
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let t = start(&mail_args(&format!("smtp://127.0.0.1:{port}")));
    let (bob, bob_t) = t.user("bob");
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        approval_by(&bob, json!({})),
    );
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(800));
    // The server keeps serving while mail cannot go out.
    let d = decide(&t.s, &bob_t, &id, "AdminDenied");
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(t.s.call("GET", "/healthz", None, None).status, 200);

    let sink = Sink::on(TcpListener::bind(("127.0.0.1", port)).expect("rebind"));
    sink.wait_for(
        &address_of(&t, &bob),
        "Approval needed:",
        Duration::from_secs(20),
    );
    let denied = sink.wait_for(&address_of(&t, &alice), "Denied:", Duration::from_secs(20));
    assert!(denied.part("plain").unwrap().contains(&link(&t, &id)));
    // Delivered once each.
    std::thread::sleep(Duration::from_millis(500));
    let mails = sink.mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 2, "{mails:#?}");
}

/// The scheduler runs every 200 ms.
const FAST_SCHEDULER: [&str; 2] = ["--scheduler-interval", "0.2"];

/// The `Send reminder` audit records, as the administrator sees them.
fn reminder_audits(t: &Tenant) -> Vec<Value> {
    let r = t.s.get(
        &format!(
            "/beta/auditLogs/directoryAudits?$top=999&$filter={}",
            enc("activityDisplayName eq 'Send reminder'")
        ),
        &t.admin,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["value"].as_array().cloned().unwrap_or_default()
}

fn detail(record: &Value, key: &str) -> String {
    record["additionalDetails"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["key"] == key)
        .and_then(|d| d["value"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The activation `request` made, as listed on the subscription.
fn activation_of(t: &Tenant, user: &str) -> Value {
    t.assignments(&t.sub)
        .into_iter()
        .find(|a| a["subjectId"] == user && a["assignmentState"] == "Active")
        .expect("activation listed")
}

#[test]
fn an_activation_ending_within_15_minutes_is_reminded_once_even_across_a_restart() {
    let (sink, url) = Sink::start();
    let mut args = mail_args(&url);
    args.extend(FAST_SCHEDULER.map(String::from));
    let t = start(&args);
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT10M"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let active = activation_of(&t, &alice);
    let active_id = active["id"].as_str().unwrap().to_string();
    let end = active["endDateTime"].as_str().unwrap().to_string();
    let resource = resource_name(&t);
    let alice_addr = address_of(&t, &alice);

    let m = sink.wait_for(&alice_addr, "Reminder:", Duration::from_secs(15));
    assert_eq!(
        m.subject(),
        format!(
            "Reminder: your activation of Contributor on {resource} ends in 15 minutes ({})",
            m.part("plain")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("End: "))
                .expect("end in the body")
        )
    );
    let text = m.part("plain").unwrap();
    assert!(
        text.contains(&format!(
            "{}/beta/privilegedAccess/azureResources/roleAssignments/{active_id}",
            t.s.origin
        )),
        "{text}"
    );
    // The body's end is the assignment's end (to the second).
    assert!(end.starts_with(&text.lines().find_map(|l| l.strip_prefix("End: ")).unwrap()[..19]));

    // Many scheduler passes, then a restart on the same database: still one reminder.
    std::thread::sleep(Duration::from_millis(1500));
    let Tenant {
        s,
        admin,
        sub,
        sub_arm,
        rg,
    } = t;
    let t = Tenant {
        s: s.restart_with(&args.iter().map(String::as_str).collect::<Vec<_>>()),
        admin,
        sub,
        sub_arm,
        rg,
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.to(&alice_addr, "Reminder:").len(), 1);
    // The eligible assignment (30 days left) is not reminded yet.
    let audits = reminder_audits(&t);
    assert_eq!(audits.len(), 1, "{audits:#?}");
    assert_eq!(detail(&audits[0], "assignmentId"), active_id);
    assert_eq!(detail(&audits[0], "reminder"), "PT15M");
    assert_eq!(audits[0]["initiatedBy"]["user"]["id"], "rolegate-scheduler");
}

#[test]
fn a_group_eligibility_ending_soon_reminds_its_members_once() {
    let (sink, url) = Sink::start();
    let mut args = mail_args(&url);
    args.extend(FAST_SCHEDULER.map(String::from));
    let t = start(&args);
    let (carol, _) = t.user("carol");
    let (dave, _) = t.user("dave");
    let group = create_group(&t.s, &t.admin, "Operators", &[&carol, &dave]);
    let role = t.role(&t.sub, CONTRIBUTOR);
    // Ten days left: within the 14-day reminder, not yet the 1-day one.
    t.admin_add(&t.sub, &role, &group, "Eligible", lasting("P10D"));
    let resource = resource_name(&t);
    for user in [&carol, &dave] {
        let m = sink.wait_for(&address_of(&t, user), "Reminder:", Duration::from_secs(15));
        assert!(
            m.subject().starts_with(&format!(
                "Reminder: your eligible assignment of Contributor on {resource} through the group Operators ends in 14 days ("
            )),
            "{}",
            m.subject()
        );
        assert!(m.part("plain").unwrap().contains("Held by: Operators"));
    }
    std::thread::sleep(Duration::from_millis(1000));
    for user in [&carol, &dave] {
        assert_eq!(sink.to(&address_of(&t, user), "Reminder:").len(), 1);
    }
    let audits = reminder_audits(&t);
    assert_eq!(audits.len(), 1, "{audits:#?}");
    assert_eq!(detail(&audits[0], "reminder"), "P14D");
    assert_eq!(detail(&audits[0], "recipients"), "2");
}

#[test]
fn without_listed_approvers_the_resources_administrators_are_asked() {
    let (sink, url) = Sink::start();
    let t = start(&mail_args(&url));
    // bob: active Owner on the subscription; carol: active User Access Administrator
    // through a group; dave: Owner of the resource group below (not an ancestor); erin:
    // eligible Owner only. Only bob and carol hold R3 on the subscription.
    let (bob, _) = t.user("bob");
    let (carol, _) = t.user("carol");
    let (dave, _) = t.user("dave");
    let (erin, _) = t.user("erin");
    let admins = create_group(&t.s, &t.admin, "Access admins", &[&carol]);
    let owner = t.role(&t.sub, OWNER);
    let uaa = t.role(&t.sub, USER_ACCESS_ADMIN);
    t.admin_add(&t.sub, &owner, &bob, "Active", lasting("P30D"));
    t.admin_add(&t.sub, &uaa, &admins, "Active", lasting("P30D"));
    t.admin_add(
        &t.rg,
        &t.role(&t.rg, OWNER),
        &dave,
        "Active",
        lasting("P30D"),
    );
    t.admin_add(&t.sub, &owner, &erin, "Eligible", lasting("P30D"));
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P10D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        json!({"Enabled": true, "Approvers": []}),
    );

    // An activation that needs approval from nobody in particular.
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("InProgress", "PendingApproval"));
    let resource = resource_name(&t);
    for to in [&bob, &carol] {
        let m = sink.wait_for(
            &address_of(&t, to),
            "Approval needed:",
            Duration::from_secs(15),
        );
        assert_eq!(
            m.subject(),
            format!("Approval needed: alice requests Contributor on {resource}")
        );
    }

    // An extension of the eligible assignment waits for an administrator's decision.
    let mut body = request_body("UserExtend", "Eligible", &t.sub, &role, &alice);
    let new_end = from_now(40 * 86_400)
        .round(jiff::Unit::Second)
        .expect("round");
    body["schedule"] = json!({"type": "Once", "endDateTime": new_end.to_string()});
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("InProgress", "PendingAdminDecision"));
    for to in [&bob, &carol] {
        sink.wait_for(
            &address_of(&t, to),
            "Decision needed:",
            Duration::from_secs(15),
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    for to in [&dave, &erin, &alice] {
        let addr = address_of(&t, to);
        assert!(sink.to(&addr, "Approval needed:").is_empty(), "{to}");
        assert!(sink.to(&addr, "Decision needed:").is_empty(), "{to}");
    }
    assert_eq!(sink.to(&address_of(&t, &bob), "Approval needed:").len(), 1);
}

/// The directory of the sink's test certificates.
fn tls_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tls")
}

/// The sink's TLS configuration: `localhost`, signed by the test CA.
fn sink_tls() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(tls_dir().join("relay.pem"))
        .expect("relay.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("relay certificate");
    let key = PrivateKeyDer::from_pem_file(tls_dir().join("relay.key")).expect("relay.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    Arc::new(config)
}

/// Makes bob the approver of alice's role and has alice ask to activate it (so bob is
/// e-mailed); returns bob's id.
fn ask_bob_to_approve(t: &Tenant) -> String {
    let (bob, _) = t.user("bob");
    let (alice, alice_t, role, eligible) = eligible_user(t, "alice", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        approval_by(&bob, json!({})),
    );
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    bob
}

/// Starts a server with `args`, asks bob to approve alice's activation, and returns the
/// message the sink received for bob.
fn approval_mail_through(sink: &Sink, args: &[String]) -> Mail {
    let t = start(args);
    let bob = ask_bob_to_approve(&t);
    sink.wait_for(
        &address_of(&t, &bob),
        "Approval needed:",
        Duration::from_secs(15),
    )
}

/// `smtp://user:password@host:port…` from the sink's `smtp://host:port`.
fn with_credentials(url: &str, userinfo: &str, query: &str) -> String {
    format!(
        "smtp://{userinfo}@{}{query}",
        url.trim_start_matches("smtp://")
    )
}

#[test]
fn the_relay_is_authenticated_with_plain_or_login() {
    for mechanisms in ["PLAIN LOGIN", "LOGIN"] {
        let (sink, url) = Sink::start_with(SinkRules {
            auth: Some((mechanisms, "pim@corp", "s3cr:et")),
            ..SinkRules::default()
        });
        let m = approval_mail_through(
            &sink,
            &mail_args(&with_credentials(&url, "pim%40corp:s3cr%3Aet", "")),
        );
        assert_eq!(m.user.as_deref(), Some("pim@corp"), "{mechanisms}");
        assert!(!m.over_tls);
    }
}

#[test]
fn wrong_credentials_deliver_nothing() {
    let (sink, url) = Sink::start_with(SinkRules {
        auth: Some(("PLAIN LOGIN", "pim", "right")),
        ..SinkRules::default()
    });
    let t = start(&mail_args(&with_credentials(&url, "pim:pw-Zq81x", "")));
    ask_bob_to_approve(&t);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sink.mails.lock().unwrap().is_empty());
    assert!(!t.s.log().contains("pw-Zq81x"), "{}", t.s.log());
}

#[test]
fn starttls_upgrades_the_connection_before_authenticating() {
    let (sink, url) = Sink::start_with(SinkRules {
        auth: Some(("PLAIN", "pim", "tls-only")),
        tls: Some(sink_tls()),
        implicit_tls: false,
        inject_after_starttls: false,
    });
    // The certificate names `localhost`.
    let url = url.replace("127.0.0.1", "localhost");
    let mut args = mail_args(&with_credentials(
        &url,
        "pim:tls-only",
        "?starttls=required",
    ));
    args.extend([
        "--smtp-ca-file".to_string(),
        tls_dir().join("ca.pem").display().to_string(),
    ]);
    let m = approval_mail_through(&sink, &args);
    assert!(m.over_tls);
    assert_eq!(m.user.as_deref(), Some("pim"));

    // A relay that does not offer STARTTLS gets nothing when the URL requires it.
    let (plain, plain_url) = Sink::start();
    let url = with_credentials(
        &plain_url.replace("127.0.0.1", "localhost"),
        "pim:x",
        "?starttls=required",
    );
    let t = start(&mail_args(&url));
    ask_bob_to_approve(&t);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(plain.mails.lock().unwrap().is_empty());
}

#[test]
fn a_relay_that_sends_data_before_the_tls_handshake_gets_nothing() {
    let (sink, url) = Sink::start_with(SinkRules {
        tls: Some(sink_tls()),
        inject_after_starttls: true,
        ..SinkRules::default()
    });
    let url = format!(
        "{}?starttls=required",
        url.replace("127.0.0.1", "localhost")
    );
    let mut args = mail_args(&url);
    args.extend([
        "--smtp-ca-file".to_string(),
        tls_dir().join("ca.pem").display().to_string(),
    ]);
    let t = start(&args);
    ask_bob_to_approve(&t);
    // The first attempt is refused before the handshake and retried (200 ms later here):
    // a second connection shows the first one ended without delivering.
    crate::harness::wait_until(15, "the relay is tried a second time", || {
        sink.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2
    });
    // Retried, never delivered: the replies read as if they came over TLS are refused.
    assert!(sink.mails.lock().unwrap().is_empty());
}

#[test]
fn a_sender_no_message_can_carry_stops_the_server_at_start() {
    // The directory would accept this address; the message builder would not, so no
    // e-mail could ever be sent: the server refuses to start and says why.
    let stderr = crate::harness::refused_start(
        &[
            "--auth-hs256-secret",
            crate::harness::SECRET,
            "--smtp-url",
            "smtp://127.0.0.1:2525",
            "--smtp-from",
            "pim..team@rolegate.test",
        ],
        &[],
    );
    assert!(stderr.contains("--smtp-from"), "{stderr}");
}

#[test]
fn smtps_speaks_tls_from_the_first_byte() {
    let (sink, url) = Sink::start_with(SinkRules {
        auth: Some(("LOGIN", "pim", "implicit")),
        tls: Some(sink_tls()),
        implicit_tls: true,
        inject_after_starttls: false,
    });
    let url = with_credentials(&url.replace("127.0.0.1", "localhost"), "pim:implicit", "")
        .replacen("smtp://", "smtps://", 1);
    let mut args = mail_args(&url);
    args.extend([
        "--smtp-ca-file".to_string(),
        tls_dir().join("ca.pem").display().to_string(),
    ]);
    let m = approval_mail_through(&sink, &args);
    assert!(m.over_tls);
    assert_eq!(m.user.as_deref(), Some("pim"));
}
