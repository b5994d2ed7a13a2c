//! `GET /openapi.json` (decisions.md §13): served without authentication, and the live
//! server conforms to it. The conformance part runs schemathesis (pinned in
//! tests/clients/requirements.txt) through tests/clients/run_schemathesis.sh as a tenant
//! administrator over a small seeded tenant. It needs `ROLEGATE_PYTHON` pointing at a
//! Python that has schemathesis (.ci/run sets it up); without one it says so and passes.

use crate::fixture::{CONTRIBUTOR, Tenant, create_group, lasting};
use crate::harness::{Server, uuid_like};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/run_schemathesis.sh"
);
/// The run is bounded to about 90 s (`--max-time`); past this it is considered hung.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn openapi_document_is_public_and_lists_the_routes() {
    let s = Server::start();
    let r = s.call("GET", "/openapi.json", None, None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.header("content-type")
    );
    let doc: Value = serde_json::from_str(&r.text).expect("JSON");
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths"));
    for p in [
        "/beta/privilegedAccess/{provider}/resources/{rid}/roleAssignments/{id}",
        "/beta/privilegedAccess/{provider}/roleAssignmentRequests/{id}/updateRequest",
        "/beta/auditLogs/directoryAudits",
        "/scim/v2/{coll}/{id}",
        "/healthz",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        paths["/openapi.json"]["get"]["security"],
        serde_json::json!([])
    );
}

/// A little of everything: a user eligible through a group, an active assignment, a
/// pending and a closed request, a changed role setting, audit records.
fn seed(t: &Tenant) {
    let (alice, alice_token) = t.user("Alice Fuzz");
    let (bob, _) = t.user("Bob Fuzz");
    let group = create_group(&t.s, &t.admin, "Fuzzers", &[&bob]);
    let contributor = t.role(&t.sub, CONTRIBUTOR);
    let r = t.admin_add(&t.sub, &contributor, &alice, "Eligible", lasting("P30D"));
    assert_eq!(r["status"]["subStatus"], "Provisioned", "{r}");
    let r = t.admin_add(
        &t.rg,
        &t.role(&t.rg, CONTRIBUTOR),
        &group,
        "Eligible",
        lasting("P30D"),
    );
    assert_eq!(r["status"]["subStatus"], "Provisioned", "{r}");
    let r = t.admin_add(&t.sub, &contributor, &bob, "Active", lasting("PT8H"));
    assert_eq!(r["status"]["subStatus"], "Provisioned", "{r}");
    t.set_rule(
        &contributor,
        "userMemberSettings",
        "ApprovalRule",
        serde_json::json!({"Enabled": true, "Approvers": []}),
    );
    let eligible = t
        .assignments(&t.sub)
        .into_iter()
        .find(|a| a["subjectId"] == alice.as_str() && a["assignmentState"] == "Eligible")
        .and_then(|a| a["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("Alice's eligible assignment is not listed"));
    let r = t.request(
        &alice_token,
        &serde_json::json!({
            "resourceId": t.sub, "roleDefinitionId": contributor, "subjectId": alice,
            "type": "UserAdd", "assignmentState": "Active", "reason": "fuzzing",
            "linkedEligibleRoleAssignmentId": eligible,
            "schedule": {"type": "Once", "duration": "PT1H"},
        }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn live_server_conforms_to_its_openapi_document() {
    let Some(python) =
        crate::harness::python_with("openapi schemathesis", "schemathesis", "schemathesis")
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("rolegate-schemathesis-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // An exec connector (a one-line program), so that the operator API has a connector to
    // show and the audit log holds records initiated by the connectors' application.
    let connectors = dir.join("connectors.toml");
    let write_connectors = |scope: &str| {
        let program = "import json,sys; d=json.load(sys.stdin); print(json.dumps({'grants': []}) if d['operation'] == 'list' else '')";
        std::fs::write(
            &connectors,
            format!(
                "[connectors.vault]\nkind = \"exec\"\ncommand = [{python:?}, \"-c\", {program:?}]\n\
                 [[connectors.vault.rules]]\nrole = \"Contributor\"\nscope = \"{scope}\"\n\
                 target = \"database/roles/app\"\n"
            ),
        )
        .expect("connectors file");
    };
    write_connectors("/subscriptions/00000000-0000-0000-0000-000000000000");
    let t = Tenant::start_with(&["--connectors", &connectors.to_string_lossy()]);
    write_connectors(&t.sub_arm);
    let r = t.s.post(
        "/rolegate/v1/connectors/reload",
        &t.admin,
        &serde_json::json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    seed(&t);
    let s: &Server = &t.s;
    crate::harness::wait_until(15, "the connector grants bob's activation", || {
        s.get(
            "/beta/auditLogs/directoryAudits?$filter=category%20eq%20'Provisioning'",
            &t.admin,
        )
        .text
        .contains("Grant connector access")
    });
    let mut cmd = Command::new("bash");
    cmd.arg(SCRIPT)
        .arg(&s.origin)
        .arg(&t.admin)
        .env("PYTHON", &python)
        .current_dir(&dir);
    crate::harness::run_tool("schemathesis", cmd, &dir, SCRIPT_TIMEOUT, || {
        tail(&s.log(), 200)
    });
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
