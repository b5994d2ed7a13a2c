//! The official Python Graph client (`msgraph-beta-sdk`, pinned in
//! tests/clients/requirements.txt) against the real server: this test seeds a tenant over
//! HTTP and runs tests/clients/graph_sdk_check.py, which does the rest with SDK objects only.
//! It needs `ROLEGATE_PYTHON` pointing at a Python that has the SDK (.ci/run sets it up);
//! without one it says so and passes.

use crate::fixture::{CONTRIBUTOR, OWNER, Tenant, lasting};
use crate::harness::{Server, uuid_like};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/graph_sdk_check.py"
);
/// The script normally takes a few seconds; past this it is considered hung.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Seeds what the script expects (`FIXTURE_KEYS` in graph_sdk_check.py): Alice, eligible
/// for Contributor on a subscription, and Bob, a plain user. The script does the rest.
fn seed(t: &Tenant) -> Value {
    let (alice, alice_token) = t.user("Alice Sdk");
    let (bob, bob_token) = t.user("Bob Sdk");
    let (owner, contributor) = (t.role(&t.sub, OWNER), t.role(&t.sub, CONTRIBUTOR));
    let r = t.admin_add(&t.sub, &contributor, &alice, "Eligible", lasting("P30D"));
    assert_eq!(r["status"]["subStatus"], "Provisioned", "{r}");
    let eligible = t
        .assignments(&t.sub)
        .into_iter()
        .find(|a| a["subjectId"] == alice.as_str() && a["assignmentState"] == "Eligible")
        .and_then(|a| a["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("Alice's eligible assignment is not listed"));
    json!({
        "admin_token": t.admin,
        "alice_token": alice_token,
        "bob_token": bob_token,
        "alice_id": alice,
        "alice_name": "Alice Sdk",
        "bob_id": bob,
        "resource_id": t.sub,
        "resource_external_id": t.sub_arm,
        "contributor_id": contributor,
        "owner_id": owner,
        "eligible_contributor_id": eligible,
    })
}

#[test]
fn official_python_graph_client_works_against_the_server() {
    let Some(python) =
        crate::harness::python_with("python_client", "msgraph-beta-sdk", "msgraph_beta")
    else {
        return;
    };
    let t = Tenant::start();
    let fixture = seed(&t);
    let s: &Server = &t.s;

    let dir = std::env::temp_dir().join(format!("rolegate-sdk-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let fixture_path = dir.join("fixture.json");
    std::fs::write(&fixture_path, fixture.to_string()).expect("write fixture");
    let mut cmd = Command::new(&python);
    cmd.arg(SCRIPT).arg(&s.origin).arg(&fixture_path);
    crate::harness::run_tool("graph_sdk_check.py", cmd, &dir, SCRIPT_TIMEOUT, || s.log());
}
