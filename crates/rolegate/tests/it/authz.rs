//! Authentication and authorization (decisions.md §2, §3, §7; graph-pim-v2.md §5): who
//! sees what (R1), who may change settings or register (R3), bad and unknown tokens, the
//! SCIM directory (admin only, SCIM error bodies) and what deleting a subject does.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{self, CONTRIBUTOR, OWNER, READER, USER_ACCESS_ADMIN as UAA, enc};
use crate::harness::{self, Reply, SECRET};
use crate::reads::{World, assert_error, ids, new_sub, rows};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Encodes a SCIM filter for a query string.
fn scim_q(q: &str) -> String {
    enc(q).replace('"', "%22")
}

/// Asserts a SCIM error reply (RFC 7644 §3.12).
fn assert_scim_error(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["schemas"], json!([SCIM_ERROR]), "{}", r.text);
    assert_eq!(r.json["status"], status.to_string(), "{}", r.text);
    assert!(r.json["detail"].is_string(), "{}", r.text);
    assert!(
        r.header("content-type").is_some_and(|c| c.contains("json")),
        "{:?}",
        r.headers
    );
    assert!(r.header("request-id").is_some());
}

fn patch_setting(w: &World, token: &str, setting_id: &str, minutes: u32) -> Reply {
    let body = json!({"adminEligibleSettings": [{"ruleIdentifier": "ExpirationRule", "setting": format!("{{\"permanentAssignment\":false,\"maximumGrantPeriodInMinutes\":{minutes}}}")}]});
    w.s.call(
        "PATCH",
        &w.s.pim(&format!("/roleSettings/{setting_id}")),
        Some(token),
        Some(&body),
    )
}

/// A token minted by `rolegate token` with extra arguments.
fn mint(args: &[&str]) -> String {
    let out = std::process::Command::new(harness::binary())
        .arg("token")
        .args(args)
        .output()
        .expect("rolegate token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn caller_without_assignment_sees_nothing() {
    let w = World::new();
    let sub = new_sub();
    let rg = format!("{sub}/resourceGroups/rg-closed");
    w.register(&rg);
    let (sid, gid) = (w.rid(&sub), w.rid(&rg));
    let holder = w.user("Hal Holder");
    let a = w.assign(&sid, READER, &holder, "Eligible", "P1D");
    let request = rows(&w.get(&format!("/resources/{sid}/roleAssignmentRequests")))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = w.role(&sid, OWNER);
    let st = w.setting(&d)["id"].as_str().unwrap().to_string();
    let nobody = w.user("Nora Nobody");
    let tok = w.token(&nobody);

    // Lists are empty, not refused.
    assert_eq!(rows(&w.get_as(&tok, "/resources")), Vec::<Value>::new());
    assert_eq!(w.get_as(&tok, "/resources/$count").text, "0");
    for coll in [
        "roleDefinitions",
        "roleSettings",
        "roleAssignments",
        "roleAssignmentRequests",
    ] {
        assert_eq!(
            rows(&w.get_as(&tok, &format!("/{coll}"))),
            Vec::<Value>::new(),
            "{coll}"
        );
        assert_eq!(
            w.get_as(&tok, &format!("/{coll}/$count")).text,
            "0",
            "{coll}"
        );
    }
    let mine = enc(&format!("subjectId eq '{nobody}'"));
    assert_eq!(
        rows(&w.get_as(&tok, &format!("/roleAssignments?$filter={mine}"))),
        Vec::<Value>::new()
    );
    assert_eq!(
        rows(&w.get_as(&tok, &format!("/roleAssignmentRequests?$filter={mine}"))),
        Vec::<Value>::new()
    );
    // Someone else's assignments by subject: nothing visible.
    let theirs = enc(&format!("subjectId eq '{holder}'"));
    assert_eq!(
        rows(&w.get_as(&tok, &format!("/roleAssignments?$filter={theirs}"))),
        Vec::<Value>::new()
    );

    // Anything about the resource: 403.
    let by_resource = enc(&format!("resourceId eq '{sid}'"));
    for path in [
        format!("/resources/{sid}"),
        format!("/resources/{gid}"),
        format!("/resources/{gid}/parent"),
        format!("/resources/{sid}?$select=permissions"),
        format!("/resources/{sid}/roleDefinitions"),
        format!("/roleDefinitions?$filter={by_resource}"),
        format!("/roleDefinitions/{d}"),
        format!("/roleDefinitions/{d}/resource"),
        format!("/resources/{sid}/roleDefinitions/{d}"),
        format!("/resources/{sid}/roleSettings"),
        format!("/roleSettings?$filter={by_resource}"),
        format!("/roleSettings/{st}"),
        format!("/resources/{sid}/roleAssignments"),
        format!("/resources/{gid}/roleAssignments"),
        format!("/roleAssignments?$filter={by_resource}"),
        format!("/roleAssignments/{a}"),
        format!("/roleAssignments/{a}/subject"),
        format!("/resources/{sid}/roleAssignments/$count"),
        format!("/roleAssignments/export?$filter={by_resource}"),
        format!("/resources/{sid}/roleAssignments/export()"),
        format!("/resources/{sid}/roleAssignmentRequests"),
        format!("/roleAssignmentRequests?$filter={by_resource}"),
        format!("/roleAssignmentRequests/{request}"),
        format!("/roleAssignmentRequests/{request}/subject"),
    ] {
        assert_error(&w.get_as(&tok, &path), 403, "Authorization_RequestDenied");
    }
    // And no writes.
    assert_error(
        &patch_setting(&w, &tok, &st, 60),
        403,
        "Authorization_RequestDenied",
    );
    assert_error(
        &w.register_as(
            &tok,
            &json!({"externalId": format!("{sub}/resourceGroups/rg-new")}),
        ),
        403,
        "Authorization_RequestDenied",
    );
    assert_error(
        &w.register_as(&tok, &json!({"externalId": new_sub()})),
        403,
        "Authorization_RequestDenied",
    );
    let mut body = fixture::request_body("AdminAdd", "Eligible", &sid, &d, &nobody);
    body["schedule"] = fixture::lasting("P1D");
    assert_error(
        &w.request_as(&tok, &body),
        403,
        "Authorization_RequestDenied",
    );
    assert_eq!(
        w.get("/resources/$count").text,
        "2",
        "nothing was registered"
    );
    assert_eq!(w.setting(&d)["isDefault"], true, "nothing was changed");
}

#[test]
fn eligible_caller_reads_its_subscription_and_descendants_only() {
    let w = World::new();
    let mg = "/providers/Microsoft.Management/managementGroups/mg-authz";
    let mg_id = w.register(mg);
    let (s1, s2) = (new_sub(), new_sub());
    let s1_id = w.register_with(&s1, Some("one"), Some(mg));
    let s2_id = w.register_with(&s2, Some("two"), Some(mg));
    let vm = format!("{s1}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1");
    w.register(&vm);
    w.register(&format!("{s2}/resourceGroups/rg2"));
    let (rg1, vm1, rg2) = (
        w.rid(&format!("{s1}/resourceGroups/rg1")),
        w.rid(&vm),
        w.rid(&format!("{s2}/resourceGroups/rg2")),
    );
    let e = w.user("Eli Eligible");
    let other = w.user("Oz Other");
    let mine = w.assign(&s1_id, READER, &e, "Eligible", "P30D");
    let on_rg1 = w.assign(&rg1, CONTRIBUTOR, &other, "Eligible", "P30D");
    let on_s2 = w.assign(&s2_id, CONTRIBUTOR, &other, "Eligible", "P30D");
    let tok = w.token(&e);

    assert_eq!(
        ids(&w.get_as(&tok, "/resources")),
        set(&[&s1_id, &rg1, &vm1])
    );
    for ok in [&s1_id, &rg1, &vm1] {
        let r = w.get_as(&tok, &format!("/resources/{ok}"));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            rows(&w.get_as(&tok, &format!("/resources/{ok}/roleDefinitions"))).len(),
            8
        );
        assert_eq!(
            rows(&w.get_as(&tok, &format!("/resources/{ok}/roleSettings"))).len(),
            8
        );
        let p = w.get_as(&tok, &format!("/resources/{ok}?$select=permissions"));
        assert_eq!(p.json["permissions"]["accessLevel"], "UserRead");
    }
    for denied in [&s2_id, &rg2, &mg_id] {
        let r = w.get_as(&tok, &format!("/resources/{denied}"));
        assert_error(&r, 403, "Authorization_RequestDenied");
        assert_error(
            &w.get_as(&tok, &format!("/resources/{denied}/roleSettings")),
            403,
            "Authorization_RequestDenied",
        );
        assert_error(
            &w.get_as(&tok, &format!("/resources/{denied}/roleAssignments")),
            403,
            "Authorization_RequestDenied",
        );
        let f = enc(&format!("resourceId eq '{denied}'"));
        assert_error(
            &w.get_as(&tok, &format!("/roleDefinitions?$filter={f}")),
            403,
            "Authorization_RequestDenied",
        );
    }
    // The subscription's parent (the management group) is out of reach, also through $expand.
    assert_error(
        &w.get_as(&tok, &format!("/resources/{s1_id}/parent")),
        403,
        "Authorization_RequestDenied",
    );
    let l = rows(&w.get_as(&tok, "/resources?$expand=parent"));
    for r in &l {
        let expected = if r["id"] == s1_id.as_str() {
            Value::Null
        } else {
            r["parent"].clone()
        };
        assert_eq!(r["parent"], expected);
        assert_ne!(r["parent"]["id"], mg_id.as_str(), "{r}");
    }
    assert_eq!(
        w.get_as(&tok, &format!("/resources/{rg1}?$expand=parent"))
            .json["parent"]["id"],
        s1_id.as_str()
    );
    assert_eq!(
        w.get(&format!("/resources/{s1_id}?$expand=parent")).json["parent"]["id"],
        mg_id.as_str(),
        "the administrator sees it"
    );
    assert_eq!(
        w.get_as(&tok, &format!("/resources/{vm1}/parent")).json["id"],
        rg1.as_str()
    );
    // Assignments under the VM: both the inherited and the resource group's.
    let l = rows(&w.get_as(&tok, &format!("/resources/{vm1}/roleAssignments")));
    assert_eq!(
        l.iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([mine.as_str(), on_rg1.as_str()])
    );
    assert!(l.iter().all(|a| a["memberType"] == "Inherited"));
    // Provider-wide lists hold the visible part only.
    assert_eq!(
        ids(&w.get_as(&tok, "/roleAssignments")),
        set(&[&mine, &on_rg1])
    );
    assert_eq!(rows(&w.get_as(&tok, "/roleDefinitions?$top=999")).len(), 24);
    let reqs = rows(&w.get_as(&tok, "/roleAssignmentRequests"));
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r["resourceId"] != s2_id.as_str()));
    assert_error(
        &w.get_as(&tok, &format!("/roleAssignments/{on_s2}")),
        403,
        "Authorization_RequestDenied",
    );
    // Reading is not administering.
    let st = w.setting(&w.role(&s1_id, READER))["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        &patch_setting(&w, &tok, &st, 60),
        403,
        "Authorization_RequestDenied",
    );
}

#[test]
fn only_r3_may_patch_role_settings_or_register() {
    let w = World::new();
    let sub = new_sub();
    let rg = format!("{sub}/resourceGroups/rg-r3");
    w.register(&rg);
    let (sid, gid) = (w.rid(&sub), w.rid(&rg));
    let mk = |name: &str, rid: &str, template: &str, state: &str| {
        let u = w.user(name);
        w.assign(rid, template, &u, state, "PT8H");
        (u.clone(), w.token(&u))
    };
    let (elig_owner, elig_owner_t) = mk("Eve EligibleOwner", &sid, OWNER, "Eligible");
    let (_, reader_t) = mk("Ray ActiveReader", &sid, READER, "Active");
    let (_, contrib_t) = mk("Cy ActiveContributor", &sid, CONTRIBUTOR, "Active");
    let (_, owner_t) = mk("Olga ActiveOwner", &sid, OWNER, "Active");
    let (_, uaa_t) = mk("Uli ActiveUAA", &sid, UAA, "Active");
    let (_, rg_owner_t) = mk("Rick RgOwner", &gid, OWNER, "Active");
    let member = w.user("Mo GroupMember");
    let owners = w.group("Owners", &[&member]);
    w.assign(&sid, OWNER, &owners, "Active", "PT8H");
    let member_t = w.token(&member);

    let sub_setting = w.setting(&w.role(&sid, READER))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rg_setting = w.setting(&w.role(&gid, READER))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = w.get(&format!("/roleSettings/{sub_setting}")).json;
    for t in [&elig_owner_t, &reader_t, &contrib_t, &rg_owner_t] {
        assert_error(
            &patch_setting(&w, t, &sub_setting, 60),
            403,
            "Authorization_RequestDenied",
        );
    }
    assert_eq!(
        w.get(&format!("/roleSettings/{sub_setting}")).json,
        before,
        "refused PATCHes change nothing"
    );
    for (t, minutes) in [
        (&owner_t, 61),
        (&uaa_t, 62),
        (&member_t, 63),
        (&w.admin, 64),
    ] {
        assert_eq!(patch_setting(&w, t, &sub_setting, minutes).status, 204);
        let s = w.get(&format!("/roleSettings/{sub_setting}")).json;
        assert!(
            s["adminEligibleSettings"][0]["setting"]
                .as_str()
                .unwrap()
                .contains(&format!(":{minutes}}}")),
            "{s}"
        );
    }
    // R3 on an ancestor covers the child; R3 on the child does not cover the parent.
    assert_eq!(patch_setting(&w, &owner_t, &rg_setting, 70).status, 204);
    assert_eq!(patch_setting(&w, &rg_owner_t, &rg_setting, 71).status, 204);
    assert_eq!(
        w.setting(&w.role(&gid, READER))["lastUpdatedBy"],
        "Rick RgOwner"
    );

    // Registering below a scope needs R3 on a registered ancestor.
    let reg = |t: &str, arm: &str| w.register_as(t, &json!({"externalId": arm}));
    for t in [&elig_owner_t, &reader_t, &contrib_t] {
        assert_error(
            &reg(t, &format!("{sub}/resourceGroups/rg-denied")),
            403,
            "Authorization_RequestDenied",
        );
        assert_error(&reg(t, &sub), 403, "Authorization_RequestDenied");
    }
    assert_error(
        &reg(&rg_owner_t, &format!("{sub}/resourceGroups/rg-sibling")),
        403,
        "Authorization_RequestDenied",
    );
    assert_error(
        &reg(&owner_t, &new_sub()),
        403,
        "Authorization_RequestDenied",
    );
    assert_eq!(w.get("/resources/$count").text, "2");
    assert_eq!(
        reg(&owner_t, &format!("{sub}/resourceGroups/rg-by-owner")).status,
        200
    );
    assert_eq!(
        reg(&uaa_t, &format!("{sub}/resourceGroups/rg-by-uaa")).status,
        200
    );
    assert_eq!(
        reg(&member_t, &format!("{sub}/resourceGroups/rg-by-group")).status,
        200
    );
    assert_eq!(
        reg(
            &rg_owner_t,
            &format!("{rg}/providers/Microsoft.KeyVault/vaults/kv1")
        )
        .status,
        200
    );
    assert_eq!(reg(&w.admin, &new_sub()).status, 200);
    assert_eq!(w.get("/resources/$count").text, "7");

    // Activating an eligible Owner makes it R3.
    let role = w.role(&sid, OWNER);
    let eligible = rows(&w.get(&format!(
        "/roleAssignments?$filter={}",
        enc(&format!("subjectId eq '{elig_owner}'"))
    )))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = w.activate(&elig_owner_t, &elig_owner, &sid, &role, &eligible);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        patch_setting(&w, &elig_owner_t, &sub_setting, 80).status,
        204
    );
    assert_eq!(
        w.setting(&w.role(&sid, READER))["lastUpdatedBy"],
        "Eve EligibleOwner"
    );

    // Admin requests follow the same rule.
    let target = w.user("Tia Target");
    let mut body =
        fixture::request_body("AdminAdd", "Eligible", &sid, &w.role(&sid, READER), &target);
    body["schedule"] = fixture::lasting("PT1H");
    assert_error(
        &w.request_as(&reader_t, &body),
        403,
        "Authorization_RequestDenied",
    );
    assert_eq!(w.request_as(&owner_t, &body).status, 201);
}

#[test]
fn token_for_a_subject_not_in_the_directory_is_403() {
    let w = World::new();
    let sid = w.register(&new_sub());
    let ghost = w.token("ghost-subject-not-provisioned");
    for path in [
        "/resources".to_string(),
        format!("/resources/{sid}"),
        "/roleAssignments".to_string(),
    ] {
        assert_error(&w.get_as(&ghost, &path), 403, "Authorization_RequestDenied");
    }
    assert_error(
        &w.register_as(&ghost, &json!({"externalId": new_sub()})),
        403,
        "Authorization_RequestDenied",
    );
    assert_scim_error(&w.s.get("/scim/v2/Users", &ghost), 403);
    // A deleted user's token stops working the same way.
    let u = w.user("Dee Deleted");
    let t = w.token(&u);
    assert_eq!(w.get_as(&t, "/resources").status, 200);
    assert_eq!(
        w.s.call(
            "DELETE",
            &format!("/scim/v2/Users/{u}"),
            Some(&w.admin),
            None
        )
        .status,
        204
    );
    assert_error(
        &w.get_as(&t, "/resources"),
        403,
        "Authorization_RequestDenied",
    );
    // A disabled user too.
    let v = w.user("Dan Disabled");
    let t = w.token(&v);
    let upn = w.user_name(&v);
    let r = w.s.call(
        "PUT",
        &format!("/scim/v2/Users/{v}"),
        Some(&w.admin),
        Some(&json!({"userName": upn, "displayName": "Dan Disabled", "active": false})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_error(
        &w.get_as(&t, "/resources"),
        403,
        "Authorization_RequestDenied",
    );
}

#[test]
fn invalid_tokens_are_401() {
    let w = World::new();
    let u = w.user("Tom Token");
    let good = w.token(&u);
    let expired = mint(&["--secret", SECRET, "--subject", &u, "--ttl=-3600"]);
    let wrong_key = mint(&[
        "--secret",
        "another-secret-that-is-long-enough",
        "--subject",
        &u,
    ]);
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let parts: Vec<&str> = good.split('.').collect();
    let payload = format!(r#"{{"sub":"{u}","exp":9999999999}}"#);
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(payload.as_bytes())
    );
    let swapped_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64url(format!(r#"{{"sub":"{}","exp":9999999999}}"#, harness::ADMIN).as_bytes()),
        parts[2]
    );
    let headers: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(good.clone()),
        Some(format!("Basic {good}")),
        Some(format!("Token {good}")),
        Some("Bearer not-a-jwt".into()),
        Some("Bearer a.b.c".into()),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {wrong_key}")),
        Some(format!("Bearer {tampered}")),
        Some(format!("Bearer {alg_none}")),
        Some(format!("Bearer {swapped_payload}")),
    ];
    for h in &headers {
        let extra: Vec<(&str, &str)> = h.iter().map(|v| ("Authorization", v.as_str())).collect();
        for path in [
            w.s.pim("/resources"),
            w.s.pim("/roleAssignments/export"),
            "/beta/privilegedAccess".to_string(),
        ] {
            let r = w.s.raw("GET", &path, None, None, &extra);
            assert_error(&r, 401, "InvalidAuthenticationToken");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{h:?}");
        }
        let r = w.s.raw(
            "POST",
            &w.s.pim("/resources/register"),
            None,
            Some(r#"{"externalId":"/subscriptions/00000000-0000-0000-0000-000000000001"}"#),
            &extra,
        );
        assert_error(&r, 401, "InvalidAuthenticationToken");
        let r = w.s.raw("GET", "/scim/v2/Users", None, None, &extra);
        assert_scim_error(&r, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(w.get("/resources/$count").text, "0");
    // The good token works, also with a lower-case scheme.
    assert_eq!(w.get_as(&good, "/resources").status, 200);
    let r = w.s.raw(
        "GET",
        &w.s.pim("/resources"),
        None,
        None,
        &[("Authorization", &format!("bearer {good}"))],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Health probes need no token.
    assert_eq!(w.s.call("GET", "/healthz", None, None).status, 200);
    assert_eq!(w.s.call("GET", "/readyz", None, None).status, 200);
}

#[test]
fn scim_needs_a_tenant_administrator() {
    let w = World::new();
    let sid = w.register(&new_sub());
    let owner = w.user("Opal Owner");
    w.assign(&sid, OWNER, &owner, "Active", "PT8H");
    let tok = w.token(&owner);
    let before = w.s.get("/scim/v2/Users", &w.admin).json["totalResults"].clone();
    for (method, path, body) in [
        ("GET", "/scim/v2/Users".to_string(), None),
        ("GET", "/scim/v2/Groups".to_string(), None),
        ("GET", format!("/scim/v2/Users/{owner}"), None),
        (
            "POST",
            "/scim/v2/Users".to_string(),
            Some(json!({"userName": "sneaky@example.test"})),
        ),
        (
            "POST",
            "/scim/v2/Groups".to_string(),
            Some(json!({"displayName": "Sneaky"})),
        ),
        (
            "PUT",
            format!("/scim/v2/Users/{owner}"),
            Some(json!({"userName": "renamed@example.test"})),
        ),
        ("DELETE", format!("/scim/v2/Users/{owner}"), None),
    ] {
        let r = w.s.call(method, &path, Some(&tok), body.as_ref());
        assert_scim_error(&r, 403);
        if body.is_some() {
            // Refused before its body was read: the server closes the connection and says so.
            assert_eq!(r.header("connection"), Some("close"), "{method} {path}");
        }
        assert!(
            r.json.get("error").is_none(),
            "SCIM errors are not Graph errors: {}",
            r.text
        );
    }
    assert_eq!(
        w.s.get("/scim/v2/Users", &w.admin).json["totalResults"],
        before,
        "nothing was created"
    );
    assert_eq!(
        w.s.get(&format!("/scim/v2/Users/{owner}"), &w.admin).json["userName"],
        w.user_name(&owner)
    );
}

#[test]
fn scim_users_and_groups_lifecycle() {
    let w = World::new();
    let post = |path: &str, body: Value| w.s.post(path, &w.admin, &body);
    let r = post(
        "/scim/v2/Users",
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "jdoe@example.test", "displayName": "Jane Doe", "externalId": "hr-4711",
            "emails": [{"value": "other@example.test"}, {"value": "jane.doe@example.test", "primary": true}],
        }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/scim+json"))
    );
    let jane = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(r.json["userName"], "jdoe@example.test");
    assert_eq!(r.json["displayName"], "Jane Doe");
    assert_eq!(r.json["externalId"], "hr-4711");
    assert_eq!(r.json["active"], true);
    assert!(
        r.json["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!("urn:ietf:params:scim:schemas:core:2.0:User"))
    );
    assert!(
        r.json["meta"]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Users/{jane}"))
    );
    let got = w.s.get(&format!("/scim/v2/Users/{jane}"), &w.admin);
    assert_eq!(got.status, 200);
    assert_eq!(got.json, r.json);
    let bob = w.user("Bob Builder");
    // Filters.
    let list = |q: &str| {
        w.s.get(&format!("/scim/v2/Users?filter={}", scim_q(q)), &w.admin)
    };
    let l = list(r#"userName eq "jdoe@example.test""#);
    assert_eq!(l.status, 200, "{}", l.text);
    assert_eq!(
        l.json["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(l.json["totalResults"], 1);
    assert_eq!(l.json["Resources"][0]["id"], jane.as_str());
    assert_eq!(
        list(r#"userName eq "nobody@example.test""#).json["totalResults"],
        0
    );
    assert_eq!(
        list(r#"externalId eq "hr-4711""#).json["Resources"][0]["id"],
        jane.as_str()
    );
    let all = w.s.get("/scim/v2/Users", &w.admin);
    assert_eq!(all.json["totalResults"], 2);
    assert_eq!(list("userName sw \"j\"").json["totalResults"], 1);
    assert_scim_error(&list("userName xx \"j\""), 400);
    // Groups.
    let r = post(
        "/scim/v2/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Platform", "members": [{"value": jane}, {"value": bob}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let platform = r.json["id"].as_str().unwrap().to_string();
    let members: BTreeSet<String> = r.json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members, set(&[&jane, &bob]));
    let g = w.s.get(&format!("/scim/v2/Groups/{platform}"), &w.admin);
    assert_eq!(g.json["displayName"], "Platform");
    let gl = w.s.get(
        &format!(
            "/scim/v2/Groups?filter={}",
            scim_q(r#"displayName eq "Platform""#)
        ),
        &w.admin,
    );
    assert_eq!(gl.json["totalResults"], 1, "{}", gl.text);
    // A user is not a group and the other way round.
    assert_scim_error(&w.s.get(&format!("/scim/v2/Groups/{jane}"), &w.admin), 404);
    assert_scim_error(
        &w.s.get(&format!("/scim/v2/Users/{platform}"), &w.admin),
        404,
    );
    // The Graph view of the subject.
    let sid = w.register(&new_sub());
    let a = w.assign(&sid, READER, &jane, "Eligible", "P1D");
    let s = w.get(&format!("/roleAssignments/{a}/subject"));
    assert_eq!(
        crate::reads::strip_context(s.json),
        json!({"id": jane, "type": "User", "displayName": "Jane Doe", "principalName": "jdoe@example.test", "email": "jane.doe@example.test"})
    );
    let ga = w.assign(&sid, CONTRIBUTOR, &platform, "Eligible", "P1D");
    let s = w.get(&format!("/roleAssignments/{ga}/subject"));
    assert_eq!(s.json["type"], "Group");
    assert_eq!(s.json["displayName"], "Platform");
    // Invalid input.
    assert_scim_error(
        &post("/scim/v2/Users", json!({"displayName": "No Name"})),
        400,
    );
    assert_scim_error(&post("/scim/v2/Groups", json!({"members": []})), 400);
    assert_scim_error(
        &w.s.raw("POST", "/scim/v2/Users", Some(&w.admin), Some("{"), &[]),
        400,
    );
    assert_scim_error(&w.s.get("/scim/v2/Widgets", &w.admin), 404);
    // Delete.
    let r = w.s.call(
        "DELETE",
        &format!("/scim/v2/Users/{jane}"),
        Some(&w.admin),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text);
    assert_scim_error(&w.s.get(&format!("/scim/v2/Users/{jane}"), &w.admin), 404);
    assert_scim_error(
        &w.s.call(
            "DELETE",
            &format!("/scim/v2/Users/{jane}"),
            Some(&w.admin),
            None,
        ),
        404,
    );
    assert_eq!(
        list(r#"userName eq "jdoe@example.test""#).json["totalResults"],
        0
    );
    let g = w.s.get(&format!("/scim/v2/Groups/{platform}"), &w.admin);
    assert_eq!(
        g.json["members"]
            .as_array()
            .map(|m| m.iter().map(|x| x["value"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(bob)]),
        "a deleted user leaves its groups"
    );
    assert_error(
        &w.get(&format!("/roleAssignments/{a}")),
        404,
        "RoleAssignmentNotFound",
    );
    let r = w.s.call(
        "DELETE",
        &format!("/scim/v2/Groups/{platform}"),
        Some(&w.admin),
        None,
    );
    assert_eq!(r.status, 204);
    assert_scim_error(
        &w.s.get(&format!("/scim/v2/Groups/{platform}"), &w.admin),
        404,
    );
    assert_error(
        &w.get(&format!("/roleAssignments/{ga}")),
        404,
        "RoleAssignmentNotFound",
    );
    assert_eq!(
        w.get(&format!("/resources/{sid}/roleAssignments/$count"))
            .text,
        "0"
    );
}

#[test]
fn deleting_a_user_ends_its_assignments_and_cancels_its_requests() {
    let w = World::new();
    let sid = w.register(&new_sub());
    let doomed = w.user("Dora Doomed");
    let keeper = w.user("Kai Keeper");
    let contributor = w.role(&sid, CONTRIBUTOR);
    // Activating Contributor needs approval (by tenant administrators and R3 holders).
    fixture::patch_rule(
        &w.s,
        &w.admin,
        &contributor,
        "userMemberSettings",
        "ApprovalRule",
        &json!({"Enabled": true, "Approvers": []}),
    );
    let eligible = w.assign(&sid, CONTRIBUTOR, &doomed, "Eligible", "P30D");
    let active = w.assign(&sid, READER, &doomed, "Active", "P1D");
    let kept = w.assign(&sid, READER, &keeper, "Eligible", "P30D");
    let tok = w.token(&doomed);
    let pending = w.activate(&tok, &doomed, &sid, &contributor, &eligible);
    assert_eq!(pending.status, 201, "{}", pending.text);
    assert_eq!(
        pending.json["status"]["subStatus"], "PendingApproval",
        "{}",
        pending.text
    );
    let pending = pending.json["id"].as_str().unwrap().to_string();
    // A future-start grant is pending too.
    let mut body =
        fixture::request_body("AdminAdd", "Eligible", &sid, &w.role(&sid, OWNER), &doomed);
    body["schedule"] = json!({"type": "Once", "startDateTime": fixture::from_now(86_400).to_string(), "duration": "P7D"});
    let future = w.request_as(&w.admin, &body);
    assert_eq!(future.status, 201, "{}", future.text);
    assert_eq!(
        future.json["status"]["subStatus"], "Granted",
        "{}",
        future.text
    );
    let future = future.json["id"].as_str().unwrap().to_string();
    let mine = enc(&format!("subjectId eq '{doomed}'"));
    assert_eq!(
        rows(&w.get(&format!("/roleAssignments?$filter={mine}"))).len(),
        2
    );

    let r = w.s.call(
        "DELETE",
        &format!("/scim/v2/Users/{doomed}"),
        Some(&w.admin),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text);

    assert_eq!(
        ids(&w.get(&format!("/resources/{sid}/roleAssignments"))),
        set(&[&kept])
    );
    assert_eq!(
        rows(&w.get(&format!("/roleAssignments?$filter={mine}"))),
        Vec::<Value>::new()
    );
    assert_eq!(w.get("/roleAssignments/$count").text, "1");
    for a in [&eligible, &active] {
        assert_error(
            &w.get(&format!("/roleAssignments/{a}")),
            404,
            "RoleAssignmentNotFound",
        );
    }
    for q in [&pending, &future] {
        let r = w.get(&format!("/roleAssignmentRequests/{q}"));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["status"]["status"], "Closed", "{}", r.text);
        assert_eq!(r.json["status"]["subStatus"], "Canceled", "{}", r.text);
    }
    let open = enc("status/status eq 'InProgress'");
    assert_eq!(
        rows(&w.get(&format!("/roleAssignmentRequests?$filter={open}"))),
        Vec::<Value>::new()
    );
    assert_eq!(
        w.get(&format!("/resources/{sid}?$select=roleAssignmentCount"))
            .json["roleAssignmentCount"],
        1
    );
    let csv = w.get(&format!("/resources/{sid}/roleAssignments/export"));
    assert_eq!(csv.text.matches("\r\n").count(), 2, "{}", csv.text);
    // The approver has nothing left to decide.
    let r = fixture::decide(&w.s, &w.admin, &pending, "AdminApproved");
    assert_eq!(r.status, 400, "{}", r.text);

    // Deleting a group ends the access of its members.
    let member = w.user("Gia Member");
    let group = w.group("Temporary", &[&member]);
    w.assign(&sid, READER, &group, "Eligible", "P1D");
    let mt = w.token(&member);
    assert_eq!(ids(&w.get_as(&mt, "/resources")), set(&[&sid]));
    assert_eq!(
        w.s.call(
            "DELETE",
            &format!("/scim/v2/Groups/{group}"),
            Some(&w.admin),
            None
        )
        .status,
        204
    );
    assert_eq!(rows(&w.get_as(&mt, "/resources")), Vec::<Value>::new());
    assert_error(
        &w.get_as(&mt, &format!("/resources/{sid}")),
        403,
        "Authorization_RequestDenied",
    );
    assert_eq!(
        ids(&w.get(&format!("/resources/{sid}/roleAssignments"))),
        set(&[&kept])
    );
}
