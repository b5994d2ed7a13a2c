//! The portal in a real browser: Debian's Chromium driven by Playwright
//! (tests/portal/flows.py) through every requester and approver flow of a `serve --demo`
//! tenant, two people at once, by keyboard alone, with axe-core on every page in light and
//! dark, a 375 px pass, and every action checked through the API for exactly its effect.
//! Skipped, saying why, where Chromium, Playwright or axe-core are missing (.ci/run
//! installs them).

use crate::harness::{Server, token, uuid_like};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(path)
}

/// The Python that can drive the browser here, or `None` (having said why).
pub fn browser_python(test: &str) -> Option<String> {
    let python = crate::harness::python_with(test, "playwright", "playwright.sync_api")?;
    let out = Command::new(&python)
        .arg("-c")
        .arg("import sys; sys.path.insert(0, sys.argv[1]); import browser; print(browser.available() or '')")
        .arg(repo_file("tests/portal"))
        .output()
        .ok()?;
    let why = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && why.is_empty() {
        return Some(python);
    }
    let why = if why.is_empty() {
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    } else {
        why
    };
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
    None
}

#[test]
fn every_portal_flow_in_a_real_browser_with_axe_in_light_and_dark() {
    let Some(python) = browser_python("portal_browser") else {
        return;
    };
    let s = Server::start_with(&["--demo"]);
    let dir = std::env::temp_dir().join(format!("rolegate-flows-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("dir");
    let fixture = json!({"tokens": {
        "alice": token("alice", true),
        "bob": token("bob", true),
        "dave": token("dave", true),
        "carol": token("carol", true),
        "admin": token("demo-admin", true),
    }});
    let path = dir.join("fixture.json");
    std::fs::write(&path, fixture.to_string()).expect("fixture");
    let mut cmd = Command::new(&python);
    cmd.arg(repo_file("tests/portal/flows.py"))
        .arg(&s.origin)
        .arg(&path);
    let out = crate::harness::run_tool("flows.py", cmd, &dir, Duration::from_secs(300), || s.log());
    assert!(out.contains(" 0 failed"), "{out}");
}
