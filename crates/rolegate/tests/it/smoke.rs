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
