//! Flood protection over real HTTP: rate limits per client address (before
//! authentication; `X-Forwarded-For` only from `--trusted-proxy`) and per token subject,
//! answered `429` with `Retry-After` and a Graph error body; the request timeout (`503`);
//! oversized request headers (`431`); connections that send no complete request are closed.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::harness::{ADMIN, Reply, Server, token};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const RESOURCES: &str = "/beta/privilegedAccess/azureResources/resources";

/// Sends `request` until one is answered `429` (at most 50 tries); returns the answers
/// before it and the `429` itself.
fn until_limited(mut request: impl FnMut() -> Reply) -> (Vec<u16>, Reply) {
    let mut before = Vec::new();
    for _ in 0..50 {
        let r = request();
        if r.status == 429 {
            return (before, r);
        }
        before.push(r.status);
    }
    panic!("never rate limited; statuses: {before:?}");
}

/// The `429` is a Graph error with an integer `Retry-After`; returns the seconds.
fn assert_too_many(r: &Reply) -> u64 {
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.code(), "TooManyRequests", "{r:?}");
    assert!(r.json["error"]["message"].as_str().is_some(), "{r:?}");
    let inner = &r.json["error"]["innerError"];
    assert!(inner["date"].as_str().is_some(), "{r:?}");
    assert_eq!(
        inner["request-id"].as_str(),
        r.header("request-id"),
        "{r:?}"
    );
    let seconds: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&seconds), "{r:?}");
    seconds
}

#[test]
fn the_per_address_limit_counts_before_authentication() {
    // 1 request a second, bursts of 2.
    let s = Server::start_with(&["--rate-limit-per-ip", "1", "--rate-limit-per-subject", "0"]);
    let admin = token(ADMIN, true);
    let forged = "not-a-token";
    let (before, limited) = until_limited(|| s.get(RESOURCES, forged));
    assert!(
        before.len() >= 2 && before.iter().all(|st| *st == 401),
        "{before:?}"
    );
    let wait = assert_too_many(&limited);
    // The same address with a valid token, or claiming another address without a trusted
    // proxy, is still limited; the probes are not.
    assert_eq!(s.get(RESOURCES, &admin).status, 429);
    let spoofed = s.raw(
        "GET",
        RESOURCES,
        Some(&admin),
        None,
        &[("X-Forwarded-For", "203.0.113.77")],
    );
    assert_eq!(spoofed.status, 429, "{spoofed:?}");
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(s.call("GET", probe, None, None).status, 200, "{probe}");
    }
    // After the advertised wait the client may go on.
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(s.get(RESOURCES, &admin).status, 200);
    // SCIM routes answer in SCIM's error shape, with the same header.
    let (_, scim) = until_limited(|| s.call("GET", "/scim/v2/Users", Some(&admin), None));
    assert_eq!(scim.json["status"], "429", "{scim:?}");
    assert!(scim.header("retry-after").is_some(), "{scim:?}");
}

#[test]
fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let s = Server::start_with(&[
        "--rate-limit-per-ip",
        "1",
        "--rate-limit-per-subject",
        "0",
        "--trusted-proxy",
        "127.0.0.0/8",
    ]);
    let admin = token(ADMIN, true);
    let from = |client: &'static str| {
        let admin = admin.clone();
        let s = &s;
        move || {
            s.raw(
                "GET",
                RESOURCES,
                Some(&admin),
                None,
                &[("X-Forwarded-For", client)],
            )
        }
    };
    let (before, limited) = until_limited(from("203.0.113.1"));
    assert!(before.iter().all(|st| *st == 200), "{before:?}");
    assert_too_many(&limited);
    // Another client behind the same proxy has its own bucket; a client-written entry
    // left of the proxy's does not get around the limit.
    assert_eq!(from("203.0.113.2")().status, 200);
    assert_eq!(from("198.51.100.9, 203.0.113.1")().status, 429);
}

#[test]
fn the_per_subject_limit_counts_verified_tokens() {
    let s = Server::start_with(&["--rate-limit-per-ip", "0", "--rate-limit-per-subject", "1"]);
    let admin = token(ADMIN, true);
    let (before, limited) = until_limited(|| s.get(RESOURCES, &admin));
    assert!(
        before.len() >= 2 && before.iter().all(|st| *st == 200),
        "{before:?}"
    );
    let wait = assert_too_many(&limited);
    // Another subject (unknown to the directory: 403) and forged tokens (401) are not
    // counted against the administrator, nor limited by its bucket.
    assert_eq!(s.get(RESOURCES, &token("someone-else", true)).status, 403);
    assert_eq!(s.get(RESOURCES, "forged").status, 401);
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(s.get(RESOURCES, &admin).status, 200);
}

#[test]
fn a_request_over_the_timeout_gets_a_503_graph_error() {
    let s = Server::start_with(&["--request-timeout", "1"]);
    // A webhook receiver that accepts and never answers keeps the subscription's
    // validation handshake (10 s) waiting.
    let hanging = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", hanging.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = hanging.incoming().take(1).flatten().collect();
        std::thread::sleep(Duration::from_secs(15));
        drop(held);
    });
    let started = Instant::now();
    let r = s.post(
        "/beta/subscriptions",
        &token(ADMIN, true),
        &json!({
            "changeType": "created",
            "notificationUrl": url,
            "resource": "privilegedAccess/azureResources/roleAssignments",
            "expirationDateTime": crate::fixture::from_now(3600).to_string(),
            "clientState": "timeout-test-state",
        }),
    );
    assert!(started.elapsed() < Duration::from_secs(8), "{r:?}");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.code(), "ServiceUnavailable", "{r:?}");
    assert!(
        r.json["error"]["innerError"]["request-id"]
            .as_str()
            .is_some()
    );
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert_eq!(s.call("GET", "/healthz", None, None).status, 200);
}

/// Sends raw bytes and reads until the server closes or `wait` passes; returns what came
/// back and whether the connection was closed.
fn raw_exchange(origin: &str, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut c = TcpStream::connect(origin.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(wait)).unwrap();
    let _ = c.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[test]
fn oversized_headers_are_refused_with_431() {
    let s = Server::start();
    let big = "x".repeat(100 * 1024);
    let (answer, _) = raw_exchange(
        &s.origin,
        format!("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // Headers well under the limit are fine.
    let fine = "x".repeat(8 * 1024);
    let (answer, _) = raw_exchange(
        &s.origin,
        format!("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Fine: {fine}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[test]
fn connections_without_a_complete_request_are_closed() {
    let s = Server::start_with(&["--idle-timeout-ms", "500"]);
    let started = Instant::now();
    // Headers trickling in and never finished (slowloris), and a connection that sends
    // nothing, are both closed, without an answer, well before the 10 s read timeout.
    let (answer, closed) = raw_exchange(
        &s.origin,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n",
        Duration::from_secs(10),
    );
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(!answer.contains(" 200 "), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let started = Instant::now();
    let (_, closed) = raw_exchange(&s.origin, b"", Duration::from_secs(10));
    assert!(closed && started.elapsed() < Duration::from_secs(5));
    // A complete request on a fresh connection is served.
    assert_eq!(s.call("GET", "/healthz", None, None).status, 200);
}

#[test]
fn bad_limit_settings_stop_the_server_with_a_clear_message() {
    let auth = ["--auth-hs256-secret", crate::harness::SECRET];
    let cases: [(&[&str], &str); 4] = [
        (
            &["--trusted-proxy", "proxy.example"],
            "`proxy.example` is not an IP address",
        ),
        (&["--max-connections", "0"], "--max-connections"),
        (
            &["--trusted-proxy", "10.0.0.0/40"],
            "the prefix length must be 0 to 32",
        ),
        (&["--request-timeout", "0"], "must be more than 0"),
    ];
    for (args, expected) in cases {
        let stderr = crate::harness::refused_start(&[&auth[..], args].concat(), &[]);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
