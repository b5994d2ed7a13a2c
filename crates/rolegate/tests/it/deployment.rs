//! The deployment example of docs/deployment.md, run as written: the nginx configuration
//! from the document in front of two nodes on one PostgreSQL database. One node is killed
//! mid-test; the balancer keeps answering through the other. Runs in the `it_postgres`
//! test binary; skipped without PostgreSQL or without nginx.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{CONTRIBUTOR, Tenant, lasting, list_assignments, request_body};
use crate::harness::{Backend, backend, http, skip};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GUIDE: &str = include_str!("../../../../docs/deployment.md");

/// The document's nginx block.
fn documented_nginx_config() -> &'static str {
    let start = GUIDE
        .find("```nginx\n")
        .expect("an nginx block in the guide")
        + 9;
    let len = GUIDE[start..].find("```").expect("the block ends");
    &GUIDE[start..start + len]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `host:port` of a server origin `http://host:port`.
fn authority(origin: &str) -> &str {
    origin.trim_start_matches("http://")
}

#[test]
fn the_documented_load_balancer_serves_through_either_node() {
    let test = "the_documented_load_balancer_serves_through_either_node";
    if backend() != Backend::Postgres {
        skip(test, "two nodes need a shared PostgreSQL database");
        return;
    }
    let nginx_found = Command::new("nginx")
        .arg("-v")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nginx_found {
        skip(
            test,
            "nginx is not installed (.ci/run installs nginx-light)",
        );
        return;
    }
    let proxied = ["--trusted-proxy", "127.0.0.1"];
    let mut t = Tenant::start_with(&proxied);
    let b = t.s.sibling(&proxied, None);
    let port = free_port();
    let config = documented_nginx_config()
        .replace("127.0.0.1:8081", authority(&t.s.origin))
        .replace("127.0.0.1:8082", authority(&b.origin))
        .replace("listen 127.0.0.1:8080", &format!("listen 127.0.0.1:{port}"));
    let dir = std::env::temp_dir().join(format!("rolegate-nginx-{}", crate::harness::uuid_like()));
    std::fs::create_dir_all(&dir).expect("nginx dir");
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\nevents {{}}\n\
             http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n\
             fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n{config}\n}}\n"
        ),
    )
    .expect("nginx.conf");
    let mut nginx = Command::new("nginx")
        .args(["-p", &d.to_string(), "-c"])
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let origin = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http(&origin, "GET", "/readyz", None, None, &[]).map(|r| r.status) != Ok(200) {
        assert!(
            Instant::now() < deadline,
            "nginx did not come up: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let resources = t.s.pim("/resources");
    let get = |path: &str| {
        http(&origin, "GET", path, Some(&t.admin), None, &[])
            .map(|r| r.status)
            .unwrap_or(0)
    };
    for _ in 0..10 {
        assert_eq!(get(&resources), 200);
    }
    // A write through the balancer is seen by both nodes directly.
    let (user, _) = t.user("balanced");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let mut body = request_body("AdminAdd", "Eligible", &t.sub, &role, &user);
    body["schedule"] = lasting("P30D");
    let r = http(
        &origin,
        "POST",
        &t.s.pim("/roleAssignmentRequests"),
        Some(&t.admin),
        Some(&body.to_string()),
        &[("Content-Type", "application/json")],
    )
    .expect("POST through nginx");
    assert_eq!(r.status, 201, "{}", r.text);
    for node in [&t.s, &b] {
        assert!(
            list_assignments(node, &t.admin, &t.sub)
                .iter()
                .any(|a| a["subjectId"] == user.as_str())
        );
    }

    // One node dies: the balancer keeps answering through the other.
    t.s.kill();
    for _ in 0..10 {
        assert_eq!(get(&resources), 200, "served by the surviving node");
    }
    let _ = nginx.kill();
    let _ = nginx.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
