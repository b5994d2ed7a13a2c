//! The walk-through of the README, end to end.

use crate::harness::{ADMIN, Server};
use serde_json::json;

#[test]
fn health_and_auth_are_enforced() {
    let s = Server::start();
    assert_eq!(s.call("GET", "/healthz", None, None).status, 200);
    assert_eq!(s.call("GET", "/readyz", None, None).status, 200);
    let r = s.call("GET", &s.pim("/resources"), None, None);
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "InvalidAuthenticationToken");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(r.header("request-id").is_some());
    assert_eq!(
        r.json["error"]["innerError"]["request-id"].as_str(),
        r.header("request-id")
    );
    let admin = s.token(ADMIN, true);
    let r = s.get(&s.pim("/resources"), &admin);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["value"], json!([]));
}

#[test]
fn metrics_count_requests_in_prometheus_text() {
    let s = Server::start();
    let admin = s.token(ADMIN, true);
    assert_eq!(s.get(&s.pim("/resources"), &admin).status, 200);
    assert_eq!(s.call("GET", &s.pim("/resources"), None, None).status, 401);
    let m = s.call("GET", "/metrics", None, None);
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain")
    );
    let value = |name: &str| -> u64 {
        m.text
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in {}", m.text))
    };
    assert!(value("rolegate_http_requests_total{class=\"2xx\"}") >= 1);
    assert!(value("rolegate_http_requests_total{class=\"4xx\"}") >= 1);
    assert!(value("rolegate_http_request_duration_seconds_count") >= 2);
    assert_eq!(value("rolegate_access_index_assignments"), 0);
}

#[test]
fn every_response_carries_the_security_headers() {
    let s = Server::start();
    let admin = s.token(ADMIN, true);
    for r in [
        s.get(&s.pim("/resources"), &admin),
        s.call("GET", &s.pim("/resources"), None, None),
        s.call("GET", "/no/such/route", None, None),
        s.call("GET", "/healthz", None, None),
    ] {
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{:?}",
            r.headers
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(
            r.header("content-security-policy")
                .is_some_and(|v| v.contains("default-src 'none'"))
        );
    }
}

#[test]
fn admins_from_the_flag_and_the_environment_add_up() {
    // The harness always passes `--admin it-admin`; the environment names two more.
    let s = Server::start_with_env(&[("ROLEGATE_ADMINS", "env-admin-1, env-admin-2")]);
    for admin in [ADMIN, "env-admin-1", "env-admin-2"] {
        let r = s.get("/beta/auditLogs/directoryAudits", &s.token(admin, true));
        assert_eq!(r.status, 200, "{admin}: {}", r.text);
    }
    let r = s.get(
        "/beta/auditLogs/directoryAudits",
        &s.token("someone-else", true),
    );
    assert_eq!(r.status, 403, "{}", r.text);
}
