//! The OpenID AuthZEN decision point (authzen.md) over real HTTP: decisions that follow
//! activations, deactivations and expiry to the instant, groups changed over SCIM,
//! inheritance down to unregistered resources, data actions, role membership, batches and
//! their semantics, who may ask, request ids, metadata, and bad input (never a 5xx).

#![allow(clippy::expect_used)]

use crate::fixture::{CONTRIBUTOR, OWNER, READER, Tenant, activation, create_group, lasting};
use crate::harness::{Reply, token, wait_until};
use serde_json::{Value, json};

const PEP: &str = "pep-gateway";
const BLOB_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
const START_VM: &str = "Microsoft.Compute/virtualMachines/start/action";
const READ_BLOB: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";

fn ask(t: &Tenant, caller: &str, body: &Value) -> Reply {
    t.s.call("POST", "/access/v1/evaluation", Some(caller), Some(body))
}

fn question(user: &str, resource: &str, action: &str) -> Value {
    json!({
        "subject": {"type": "user", "id": user},
        "resource": {"type": "azureResource", "id": resource},
        "action": {"name": action},
    })
}

/// The decision of `body` asked by the enforcement point (asserting `200`).
fn decision(t: &Tenant, body: &Value) -> Value {
    let r = ask(t, &token(PEP, false), body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("null"), "no null values: {}", r.text);
    r.json
}

fn start() -> Tenant {
    Tenant::start_with(&["--authzen-client", PEP, "--scheduler-interval", "60"])
}

#[test]
fn a_decision_follows_activation_deactivation_and_expiry_to_the_instant() {
    let t = start();
    let (alice, alice_token) = t.user("Alice Pep");
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P30D"));
    // A VM that Rolegate does not know, below the registered resource group.
    let vm = format!(
        "{}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm-01",
        t.sub_arm
    );
    let q = question(&alice, &vm, START_VM);

    // Eligible only: denied, saying which role to activate and how.
    let d = decision(&t, &q);
    assert_eq!(d["decision"], false, "{d}");
    assert_eq!(d["context"]["reason_admin"]["code"], "not_granted");
    let eligible = &d["context"]["eligible"][0];
    assert_eq!(eligible["roleName"], "Contributor");
    assert_eq!(eligible["memberType"], "Inherited");
    assert_eq!(eligible["activate"]["resourceId"], t.rg.as_str());
    assert!(
        d["context"]["reason_user"]["message"]
            .as_str()
            .expect("message")
            .starts_with("You are eligible for Contributor on "),
        "{d}"
    );
    // Activating with exactly what `activate` says works (for a few seconds).
    let body = json!({
        "type": "UserAdd", "assignmentState": "Active", "subjectId": alice,
        "resourceId": eligible["activate"]["resourceId"],
        "roleDefinitionId": eligible["activate"]["roleDefinitionId"],
        "linkedEligibleRoleAssignmentId": eligible["activate"]["linkedEligibleRoleAssignmentId"],
        "reason": "start the VM", "schedule": {"type": "Once", "duration": "PT3S"},
    });
    let r = t.request(&alice_token, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    let d = decision(&t, &q);
    assert_eq!(d["decision"], true, "{d}");
    let grant = &d["context"]["reason_admin"]["grants"][0];
    assert_eq!(d["context"]["reason_admin"]["code"], "granted");
    assert_eq!(grant["subjectId"], alice.as_str());
    assert_eq!(grant["resourceId"], t.rg.as_str());
    assert_eq!(grant["memberType"], "Inherited", "vm-01 inherits it");
    assert_eq!(
        grant["linkedEligibleRoleAssignmentId"],
        eligible["assignmentId"]
    );
    let end = grant["endDateTime"].as_str().expect("end").to_string();
    assert_eq!(d["context"]["next_change_at"], end.as_str());
    // Nothing is asked in between: the expiry alone turns it false, without the scheduler
    // (which runs only every 60 s here).
    let end_ts: jiff::Timestamp = end.parse().expect("end time");
    wait_until(10, "the activation ended", || {
        crate::fixture::now() > end_ts
    });
    let d = decision(&t, &q);
    assert_eq!(d["decision"], false, "{d}");
    // A what-if inside the activation, asked now: still true.
    let mut inside = q.clone();
    inside["context"] = json!({"time": grant["startDateTime"]});
    assert_eq!(decision(&t, &inside)["decision"], true);

    // Activate again, then deactivate: true, then false at once.
    let r = t.request(
        &alice_token,
        &activation(&t.rg, &t.role(&t.rg, CONTRIBUTOR), &alice, None, "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(decision(&t, &q)["decision"], true);
    let mut remove = activation(&t.rg, &t.role(&t.rg, CONTRIBUTOR), &alice, None, "PT1H");
    remove["type"] = json!("UserRemove");
    let r = t.request(&alice_token, &remove);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(decision(&t, &q)["decision"], false);
}

#[test]
fn groups_inheritance_data_actions_and_roles() {
    let t = start();
    let (bob, _) = t.user("Bob Pep");
    let group = create_group(&t.s, &t.admin, "Storage Readers", &[]);
    let blob_role = t.role(&t.sub, BLOB_CONTRIBUTOR);
    t.admin_add(&t.sub, &blob_role, &group, "Active", lasting("P30D"));
    let account = format!(
        "{}/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/st1/blobServices/default/containers/c1",
        t.sub_arm
    );
    let mut read_blob = question(&bob, &account, READ_BLOB);
    read_blob["action"]["properties"] = json!({"isDataAction": true});
    assert_eq!(
        decision(&t, &read_blob)["decision"],
        false,
        "not in the group yet"
    );
    // Joining the group over SCIM flips it.
    let r = t.s.call(
        "PATCH",
        &format!("/scim/v2/Groups/{group}"),
        Some(&t.admin),
        Some(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "add", "path": "members", "value": [{"value": bob}]}]}),
        ),
    );
    assert!(r.status < 300, "{}", r.text);
    let d = decision(&t, &read_blob);
    assert_eq!(d["decision"], true, "{d}");
    assert_eq!(
        d["context"]["reason_admin"]["grants"][0]["subjectId"],
        group.as_str()
    );
    // The data plane is not the control plane: the same name without the flag is denied.
    assert_eq!(
        decision(&t, &question(&bob, &account, READ_BLOB))["decision"],
        false
    );
    // Owner's `*` grants no data action; Reader grants reads only.
    let (carol, _) = t.user("Carol Pep");
    t.admin_add(
        &t.rg,
        &t.role(&t.rg, OWNER),
        &carol,
        "Active",
        lasting("P1D"),
    );
    let mut carol_blob = read_blob.clone();
    carol_blob["subject"]["id"] = json!(carol);
    assert_eq!(decision(&t, &carol_blob)["decision"], false);
    assert_eq!(
        decision(
            &t,
            &question(
                &carol,
                &account,
                "Microsoft.Authorization/roleAssignments/write"
            )
        )["decision"],
        true
    );
    // Leaving the group flips it back.
    let r = t.s.call(
        "PATCH",
        &format!("/scim/v2/Groups/{group}"),
        Some(&t.admin),
        Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]})),
    );
    assert!(r.status < 300, "{}", r.text);
    assert_eq!(decision(&t, &read_blob)["decision"], false);

    // Role membership: by template id and by display name; Owner is not Contributor.
    let role_q = |props: Value| {
        json!({"subject": {"type": "user", "id": carol}, "resource": {"type": "azureResource", "id": t.rg},
               "action": {"name": "role", "properties": props}})
    };
    assert_eq!(
        decision(&t, &role_q(json!({"templateId": OWNER.to_uppercase()})))["decision"],
        true
    );
    assert_eq!(
        decision(&t, &role_q(json!({"displayName": "owner"})))["decision"],
        true
    );
    assert_eq!(
        decision(&t, &role_q(json!({"templateId": CONTRIBUTOR})))["decision"],
        false
    );
    // On the subscription above, Carol's Owner on the resource group does not count.
    let mut above = role_q(json!({"templateId": OWNER}));
    above["resource"]["id"] = json!(t.sub_arm);
    assert_eq!(decision(&t, &above)["decision"], false);
    // A Reader reads but does not write.
    let (dan, _) = t.user("Dan Pep");
    t.admin_add(
        &t.sub,
        &t.role(&t.sub, READER),
        &dan,
        "Active",
        lasting("P1D"),
    );
    assert_eq!(
        decision(
            &t,
            &question(&dan, &t.rg, "Microsoft.Compute/virtualMachines/read")
        )["decision"],
        true
    );
    assert_eq!(
        decision(
            &t,
            &question(&dan, &t.rg, "Microsoft.Compute/virtualMachines/write")
        )["decision"],
        false
    );

    // Unknowns are denials with their reason, never errors.
    for (q, code) in [
        (question("nobody", &t.rg, START_VM), "unknown_subject"),
        (
            question(
                &dan,
                "/subscriptions/00000000-0000-0000-0000-00000000dead",
                START_VM,
            ),
            "unknown_resource",
        ),
        (
            question(&dan, "not-a-resource-id", START_VM),
            "unknown_resource",
        ),
        (
            question(&dan, "/not/an/arm/id", START_VM),
            "unknown_resource",
        ),
        (question(&dan, &t.rg, "can_read"), "unknown_action"),
        (
            question(&dan, &t.rg, "Microsoft.Compute/*"),
            "unknown_action",
        ),
    ] {
        let d = decision(&t, &q);
        assert_eq!(d["decision"], false, "{q}");
        assert_eq!(d["context"]["reason_admin"]["code"], code, "{q}: {d}");
    }
    // A group asked about as a user is unknown.
    let mut as_user = question(&group, &t.rg, START_VM);
    as_user["subject"]["type"] = json!("user");
    assert_eq!(
        decision(&t, &as_user)["context"]["reason_admin"]["code"],
        "unknown_subject"
    );
    // A disabled user is denied whatever it holds.
    let r = t.s.call(
        "PATCH",
        &format!("/scim/v2/Users/{carol}"),
        Some(&t.admin),
        Some(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        ),
    );
    assert!(r.status < 300, "{}", r.text);
    let d = decision(&t, &role_q(json!({"templateId": OWNER})));
    assert_eq!(
        d["context"]["reason_admin"]["code"], "subject_disabled",
        "{d}"
    );
}

#[test]
fn batches_apply_defaults_and_their_semantics() {
    let t = start();
    let (erin, _) = t.user("Erin Pep");
    t.admin_add(
        &t.rg,
        &t.role(&t.rg, READER),
        &erin,
        "Active",
        lasting("P1D"),
    );
    let read = "Microsoft.Compute/virtualMachines/read";
    let write = "Microsoft.Compute/virtualMachines/write";
    let pep = token(PEP, false);
    let batch = |semantic: &str| {
        json!({
            "subject": {"type": "user", "id": erin},
            "resource": {"type": "azureResource", "id": t.rg},
            "action": {"name": read},
            "options": {"evaluations_semantic": semantic},
            "evaluations": [
                {},
                {"action": {"name": write}},
                {"resource": {"type": "azureResource", "id": t.sub}},
                {"action": {"name": read}},
            ],
        })
    };
    let run = |body: &Value| {
        let r =
            t.s.call("POST", "/access/v1/evaluations", Some(&pep), Some(body));
        assert_eq!(r.status, 200, "{}", r.text);
        r.json["evaluations"]
            .as_array()
            .expect("evaluations")
            .iter()
            .map(|d| d["decision"].as_bool().expect("decision"))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(&batch("execute_all")), [true, false, false, true]);
    assert_eq!(run(&batch("deny_on_first_deny")), [true, false]);
    assert_eq!(run(&batch("permit_on_first_permit")), [true]);
    // An item's context replaces the default as a whole.
    let mut timed = batch("execute_all");
    timed["context"] = json!({"time": "2000-01-01T00:00:00Z"});
    let r =
        t.s.call("POST", "/access/v1/evaluations", Some(&pep), Some(&timed));
    assert_eq!(
        r.status, 400,
        "the default time is outside the window: {}",
        r.text
    );
    assert!(r.text.contains("context.time"), "{}", r.text);
    // No items: one decision, no `evaluations` key.
    let mut single = batch("execute_all");
    single
        .as_object_mut()
        .expect("object")
        .remove("evaluations");
    let r =
        t.s.call("POST", "/access/v1/evaluations", Some(&pep), Some(&single));
    assert_eq!(r.json["decision"], true, "{}", r.text);
    assert!(r.json.get("evaluations").is_none());
    // Bad batches.
    for (body, path) in [
        (
            json!({"evaluations": [{}], "subject": {"type": "user", "id": erin}, "action": {"name": read}}),
            "evaluations[0].resource",
        ),
        (
            json!({"options": {"evaluations_semantic": "first"}}),
            "options.evaluations_semantic",
        ),
        (json!({"options": "x"}), "options"),
        (json!({"evaluations": "x"}), "evaluations"),
        (json!({"evaluations": vec![json!({}); 1001]}), "evaluations"),
        (json!({"evaluations": [5]}), "evaluations[0]"),
    ] {
        let r =
            t.s.call("POST", "/access/v1/evaluations", Some(&pep), Some(&body));
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.code(), "BadRequest");
        assert!(r.text.contains(path), "{path}: {}", r.text);
    }
}

#[test]
fn who_may_ask_and_what_comes_back() {
    let t = start();
    let (frank, frank_token) = t.user("Frank Pep");
    let (_, gina_token) = t.user("Gina Pep");
    let q = question(&frank, &t.rg, START_VM);
    let status = |caller: Option<&str>, body: &Value| {
        t.s.call("POST", "/access/v1/evaluation", caller, Some(body))
            .status
    };
    assert_eq!(status(Some(&frank_token), &q), 200, "about oneself");
    assert_eq!(status(Some(&gina_token), &q), 403, "about someone else");
    assert_eq!(status(Some(&t.admin), &q), 200, "a tenant administrator");
    assert_eq!(
        status(Some(&token(PEP, false)), &q),
        200,
        "a listed enforcement point"
    );
    assert_eq!(
        status(Some(&token("someone-else", false)), &q),
        403,
        "unknown token subject"
    );
    assert_eq!(status(None, &q), 401);
    // A batch with one item about someone else is refused as a whole.
    let batch = json!({"action": {"name": START_VM}, "resource": {"type": "azureResource", "id": t.rg},
                       "evaluations": [{"subject": {"type": "user", "id": frank}}, {"subject": {"type": "user", "id": "nobody"}}]});
    let r = t.s.call(
        "POST",
        "/access/v1/evaluations",
        Some(&frank_token),
        Some(&batch),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    // The enforcement point gets nothing else.
    let r = t.s.get(&t.s.pim("/resources"), &token(PEP, false));
    assert_eq!(r.status, 403);

    // X-Request-ID comes back byte for byte, also on errors; Rolegate's own id stays.
    for (caller, body, want) in [
        (Some(frank_token.as_str()), q.clone(), 200),
        (None, q.clone(), 401),
        (Some(frank_token.as_str()), json!({"subject": 5}), 400),
    ] {
        let r = t.s.raw(
            "POST",
            "/access/v1/evaluation",
            caller,
            Some(&body.to_string()),
            &[("X-Request-ID", "pep-Trace 42")],
        );
        assert_eq!(r.status, want, "{}", r.text);
        assert_eq!(r.header("x-request-id"), Some("pep-Trace 42"));
        assert_ne!(r.header("request-id"), Some("pep-Trace 42"));
    }

    // Bad input names the member; never a 5xx.
    for (body, path) in [
        (json!({}), "subject"),
        (
            json!({"subject": {"type": "user"}, "resource": {"type": "azureResource", "id": "x"}, "action": {"name": "a/b"}}),
            "subject.id",
        ),
        (
            json!({"subject": {"type": "user", "id": 5}, "resource": {"type": "azureResource", "id": "x"}, "action": {"name": "a/b"}}),
            "subject.id",
        ),
        (
            json!({"subject": {"type": "user", "id": frank}, "resource": [], "action": {"name": "a/b"}}),
            "resource",
        ),
        (
            json!({"subject": {"type": "user", "id": frank}, "resource": {"type": "azureResource", "id": "x"}, "action": {"name": "a/b", "properties": {"isDataAction": 1}}}),
            "action.properties.isDataAction",
        ),
        (
            json!({"subject": {"type": "user", "id": frank}, "resource": {"type": "azureResource", "id": "x"}, "action": {"name": "role"}}),
            "action.properties.templateId",
        ),
        (
            json!({"subject": {"type": "user", "id": frank}, "resource": {"type": "azureResource", "id": "x"}, "action": {"name": "a/b"}, "context": {"time": "soon"}}),
            "context.time",
        ),
        (
            json!({"subject": {"type": "user", "id": frank}, "resource": {"type": "azureResource", "id": "x"}, "action": {"name": "a/b"}, "context": {"time": "2099-01-01T00:00:00Z"}}),
            "context.time",
        ),
    ] {
        let r = ask(&t, &frank_token, &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.text.contains(path), "{path}: {}", r.text);
    }
    for raw in [
        "[]",
        "not json",
        "\"x\"",
        "{\"subject\": {\"type\": \"user\", \"id\": \"a\\u0000b\"}}",
    ] {
        let r = t.s.raw(
            "POST",
            "/access/v1/evaluation",
            Some(&frank_token),
            Some(raw),
            &[],
        );
        assert_eq!(r.status, 400, "{raw}: {}", r.text);
    }
    let r =
        t.s.call("GET", "/access/v1/evaluation", Some(&frank_token), None);
    assert_eq!(r.status, 405);
    // A null member counts as absent; unknown members are ignored.
    let mut extra = q.clone();
    extra["context"] = Value::Null;
    extra["unknown"] = json!({"x": 1});
    assert_eq!(ask(&t, &frank_token, &extra).status, 200);

    // The metadata: public, at the public URL, cacheable.
    let r =
        t.s.call("GET", "/.well-known/authzen-configuration", None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json["policy_decision_point"], t.s.origin.as_str());
    assert_eq!(
        r.json["access_evaluation_endpoint"],
        format!("{}/access/v1/evaluation", t.s.origin).as_str()
    );
    assert_eq!(r.header("cache-control"), Some("max-age=3600"));
    assert_eq!(
        t.s.call("POST", "/.well-known/authzen-configuration", None, None)
            .status,
        405
    );

    // Decisions are counted in /metrics by endpoint and decision.
    let metrics = t.s.call("GET", "/metrics", None, None).text;
    let count = |line: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{line}` in {metrics}"))
    };
    assert!(
        count("rolegate_authzen_requests_total{endpoint=\"evaluation\",decision=\"deny\"}") >= 4
    );
    count("rolegate_authzen_requests_total{endpoint=\"search/subject\"}");
}

fn search(t: &Tenant, caller: &str, kind: &str, body: &Value) -> Reply {
    t.s.call(
        "POST",
        &format!("/access/v1/search/{kind}"),
        Some(caller),
        Some(body),
    )
}

fn ids(r: &Reply) -> Vec<String> {
    r.json["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {}", r.text))
        .iter()
        .map(|x| x["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn searches_find_what_evaluations_permit_page_by_page() {
    let t = start();
    let pep = token(PEP, false);
    let (u1, u1_token) = t.user("Una Search");
    let (u2, _) = t.user("Ugo Search");
    let (u3, _) = t.user("Uma Search");
    let (u4, _) = t.user("Udo Search");
    let inner = create_group(&t.s, &t.admin, "Inner Searchers", &[&u3]);
    let outer = create_group(&t.s, &t.admin, "Outer Searchers", &[&inner, &u4]);
    t.admin_add(
        &t.sub,
        &t.role(&t.sub, CONTRIBUTOR),
        &outer,
        "Active",
        lasting("P1D"),
    );
    t.admin_add(&t.rg, &t.role(&t.rg, READER), &u1, "Active", lasting("P1D"));
    t.admin_add(
        &t.rg,
        &t.role(&t.rg, CONTRIBUTOR),
        &u2,
        "Eligible",
        lasting("P1D"),
    );
    // A resource below the resource group.
    let vm_arm = format!(
        "{}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm-s",
        t.sub_arm
    );
    crate::fixture::register(&t.s, &t.admin, &vm_arm);
    // u4 is disabled: never listed.
    let r = t.s.call(
        "PATCH",
        &format!("/scim/v2/Users/{u4}"),
        Some(&t.admin),
        Some(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        ),
    );
    assert!(r.status < 300, "{}", r.text);

    // Who may write VMs on the resource group: the nested group's member only.
    let write = json!({"name": "Microsoft.Compute/virtualMachines/write"});
    let body = json!({"subject": {"type": "user"}, "resource": {"type": "azureResource", "id": t.rg}, "action": write});
    let r = search(&t, &pep, "subject", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r), vec![u3.clone()]);
    assert_eq!(
        r.json["page"],
        json!({"next_token": "", "count": 1, "total": 1})
    );
    // Groups: the holder and the group inside it, in id order.
    let mut groups_body = body.clone();
    groups_body["subject"]["type"] = json!("group");
    let mut expected = vec![inner.clone(), outer.clone()];
    expected.sort();
    assert_eq!(ids(&search(&t, &pep, "subject", &groups_body)), expected);
    // Who may read: Una (Reader) and Uma (Contributor through the groups), in id order,
    // one per page.
    let mut read_body = body.clone();
    read_body["action"] = json!({"name": "Microsoft.Compute/virtualMachines/read"});
    read_body["page"] = json!({"limit": 1});
    let first = search(&t, &pep, "subject", &read_body);
    assert_eq!(first.json["page"]["total"], 2, "{}", first.text);
    let token1 = first.json["page"]["next_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(!token1.is_empty());
    let mut next = read_body.clone();
    next["page"]["token"] = json!(token1);
    let second = search(&t, &pep, "subject", &next);
    assert_eq!(second.json["page"]["next_token"], "");
    let mut both = ids(&first);
    both.extend(ids(&second));
    let mut want = vec![u1.clone(), u3.clone()];
    want.sort();
    assert_eq!(both, want);
    // Every result is permitted when asked as an evaluation.
    for u in &both {
        let q = json!({"subject": {"type": "user", "id": u}, "resource": {"type": "azureResource", "id": t.rg},
                       "action": {"name": "Microsoft.Compute/virtualMachines/read"}});
        assert_eq!(decision(&t, &q)["decision"], true, "{u}");
    }
    // A token with another request, a forged one, limit 0, bad members.
    let mut other = next.clone();
    other["action"] = write.clone();
    for (bad, path) in [
        (other, "page.token"),
        (
            json!({"subject": {"type": "user"}, "resource": {"type": "azureResource", "id": t.rg}, "action": write, "page": {"token": "Zm9v"}}),
            "page.token",
        ),
        (
            json!({"subject": {"type": "user"}, "resource": {"type": "azureResource", "id": t.rg}, "action": write, "page": {"limit": -1}}),
            "page.limit",
        ),
        (
            json!({"subject": {"type": "robot"}, "resource": {"type": "azureResource", "id": t.rg}, "action": write}),
            "subject.type",
        ),
    ] {
        let r = search(&t, &pep, "subject", &bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(r.text.contains(path), "{path}: {}", r.text);
    }
    let mut zero = read_body.clone();
    zero["page"] = json!({"limit": 0});
    let r = search(&t, &pep, "subject", &zero);
    assert_eq!(r.json["results"], json!([]));
    assert_eq!(r.json["page"]["total"], 2);

    // Resources Una may read: the resource group and the VM below it, by ARM id.
    let body = json!({"subject": {"type": "user", "id": u1}, "resource": {"type": "azureResource"},
                      "action": {"name": "Microsoft.Compute/virtualMachines/read"}});
    let r = search(&t, &u1_token, "resource", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let arm_ids = ids(&r);
    assert_eq!(arm_ids.len(), 2, "{}", r.text);
    assert!(
        arm_ids
            .iter()
            .any(|a| a.ends_with("/resourceGroups/rg-app"))
    );
    assert!(arm_ids.iter().any(|a| a.eq_ignore_ascii_case(&vm_arm)));
    assert_eq!(
        r.json["results"][0]["properties"]["resourceType"],
        "resourcegroup"
    );
    // Una may not search for others' resources (she administers nothing).
    let mut about_u3 = body.clone();
    about_u3["subject"]["id"] = json!(u3);
    assert_eq!(search(&t, &u1_token, "resource", &about_u3).status, 403);
    let r = search(&t, &pep, "resource", &about_u3);
    assert_eq!(
        ids(&r).len(),
        3,
        "the subscription and everything below: {}",
        r.text
    );

    // Roles Uma holds at the VM: Contributor (through both groups, inherited), with its
    // permissions; used as an action, it is permitted.
    let body = json!({"subject": {"type": "user", "id": u3}, "resource": {"type": "azureResource", "id": vm_arm}});
    let r = search(&t, &pep, "action", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["page"]["total"], 1, "{}", r.text);
    let role = &r.json["results"][0];
    assert_eq!(role["properties"]["displayName"], "Contributor");
    assert_eq!(
        role["properties"]["permissions"][0]["actions"],
        json!(["*"])
    );
    let q = json!({"subject": {"type": "user", "id": u3}, "resource": {"type": "azureResource", "id": vm_arm},
                   "action": {"name": "role", "properties": {"templateId": role["properties"]["templateId"]}}});
    assert_eq!(decision(&t, &q)["decision"], true);
    // Eligible roles are not listed; asking about someone else is refused.
    let body = json!({"subject": {"type": "user", "id": u2}, "resource": {"type": "azureResource", "id": t.rg}});
    assert_eq!(search(&t, &pep, "action", &body).json["results"], json!([]));
    assert_eq!(search(&t, &u1_token, "action", &body).status, 403);
}

/// The gateway process of docs/examples; killed when dropped.
struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_documented_gateway_refuses_then_lets_through_then_refuses_again() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::harness::skip("authzen gateway example", "no python3 on PATH");
        return;
    }
    let t = start();
    let (alice, alice_token) = t.user("Alice Gateway");
    t.admin_add(
        &t.sub,
        &t.role(&t.sub, CONTRIBUTOR),
        &alice,
        "Eligible",
        lasting("P30D"),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/authzen_gateway.py"
    );
    let _gateway = Gateway(
        std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .env("ROLEGATE_URL", &t.s.origin)
            .env("ROLEGATE_PEP_TOKEN", token(PEP, false))
            .env(
                "PROTECTED_SCOPE",
                format!("{}/resourceGroups/rg-app", t.sub_arm),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the gateway"),
    );
    let start_vm = || -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        match agent
            .post(&format!("http://127.0.0.1:{port}/vms/vm-01/start"))
            .header("X-User", &alice)
            .send_empty()
        {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    };
    wait_until(20, "the gateway listens", || start_vm().0 != 0);
    let (status, text) = start_vm();
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("You are eligible for Contributor"), "{text}");
    // Alice activates for a few seconds: the same request passes, then is refused again.
    let r = t.request(
        &alice_token,
        &activation(&t.rg, &t.role(&t.rg, CONTRIBUTOR), &alice, None, "PT3S"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let (status, text) = start_vm();
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "started vm-01\n");
    wait_until(15, "the activation ended and the gateway refuses", || {
        start_vm().0 == 403
    });
}

mod differential {
    //! For random tenants, every decision equals the answer computed independently: the
    //! Graph API's own `roleAssignments` list of the resource (inherited and group entries
    //! included) filtered to active ones, and the roles' published permissions matched by a
    //! separate, naive matcher.

    use super::*;
    use crate::fixture::{OWNER, create_user, enc, register, resource_id};
    use proptest::prelude::*;
    use std::collections::HashMap;

    const VM_CONTRIBUTOR: &str = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c";
    const ROLES: [&str; 5] = [OWNER, CONTRIBUTOR, READER, VM_CONTRIBUTOR, BLOB_CONTRIBUTOR];
    const OPERATIONS: [(&str, bool); 7] = [
        ("Microsoft.Compute/virtualMachines/start/action", false),
        ("Microsoft.Compute/virtualMachines/read", false),
        ("Microsoft.Authorization/roleAssignments/write", false),
        ("Microsoft.Storage/storageAccounts/read", false),
        (
            "Microsoft.Network/virtualNetworks/subnets/join/action",
            false,
        ),
        (READ_BLOB, true),
        (
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
            true,
        ),
    ];

    /// The published permissions, read from the data file by this test itself.
    fn permissions() -> HashMap<String, Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../core/data/builtin-role-permissions.json"
        );
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("data file")).expect("json");
        doc["roles"]
            .as_object()
            .expect("roles")
            .iter()
            .map(|(k, v)| (k.to_lowercase(), v["permissions"].clone()))
            .collect()
    }

    /// A naive matcher: `*` as any run, ASCII case-insensitive, by trying every split.
    fn matches(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|k| matches(rest, &s[k..])),
            Some((c, rest)) => s
                .split_first()
                .is_some_and(|(d, t)| c.eq_ignore_ascii_case(d) && matches(rest, t)),
        }
    }

    fn grants(perms: &Value, op: &str, data: bool) -> bool {
        let (allow, deny) = if data {
            ("dataActions", "notDataActions")
        } else {
            ("actions", "notActions")
        };
        let any = |e: &Value, k: &str| {
            e[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|p| matches(p.as_bytes(), op.as_bytes()))
        };
        perms
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| any(e, allow) && !any(e, deny))
    }

    #[derive(Debug, Clone)]
    struct Plan {
        /// (holder index: users 0..3, groups 3..5; role; resource index; active)
        assignments: Vec<(usize, usize, usize, bool)>,
        /// Group memberships: (group 0..2, member: users 0..3 or the other group 3..5).
        members: Vec<(usize, usize)>,
    }

    fn plan() -> impl Strategy<Value = Plan> {
        (
            proptest::collection::vec(
                (0usize..5, 0usize..ROLES.len(), 0usize..4, any::<bool>()),
                1..10,
            ),
            proptest::collection::vec((0usize..2, 0usize..5), 0..6),
        )
            .prop_map(|(assignments, members)| Plan {
                assignments,
                members,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
        #[test]
        fn every_decision_equals_the_graph_api_answer(p in plan()) {
            let t = start();
            let users: Vec<String> = (0..3).map(|i| create_user(&t.s, &t.admin, &format!("diff-{i}"))).collect();
            let groups: Vec<String> = (0..2).map(|i| create_group(&t.s, &t.admin, &format!("diff-group-{i}"), &[])).collect();
            for g in 0..2 {
                let members: Vec<&str> = p.members.iter().filter(|(x, _)| *x == g).map(|(_, m)| {
                    if *m < 3 { users[*m].as_str() } else { groups[(*m - 3 + g + 1) % 2].as_str() }
                }).filter(|m| *m != groups[g]).collect();
                let r = t.s.call("PUT", &format!("/scim/v2/Groups/{}", groups[g]), Some(&t.admin), Some(&json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": format!("diff-group-{g}"),
                    "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>(),
                })));
                prop_assert!(r.status < 300, "{}", r.text);
            }
            let rg2_arm = format!("{}/resourceGroups/rg-two", t.sub_arm);
            let vm_arm = format!("{}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm-d", t.sub_arm);
            register(&t.s, &t.admin, &rg2_arm);
            register(&t.s, &t.admin, &vm_arm);
            let resources = [t.sub.clone(), t.rg.clone(), resource_id(&t.s, &t.admin, &rg2_arm), resource_id(&t.s, &t.admin, &vm_arm)];
            for (holder, role, resource, active) in &p.assignments {
                let subject = if *holder < 3 { &users[*holder] } else { &groups[*holder - 3] };
                let r = t.request(&t.admin, &{
                    let mut b = crate::fixture::request_body("AdminAdd", if *active { "Active" } else { "Eligible" },
                        &resources[*resource], &t.role(&resources[*resource], ROLES[*role]), subject);
                    b["schedule"] = lasting("P1D");
                    b
                });
                // A repeated (holder, role, resource, state) is refused; that is fine.
                prop_assert!(r.status == 201 || r.code() == "RoleAssignmentExists", "{}", r.text);
            }
            let perms = permissions();
            let template_of: HashMap<String, String> = resources.iter().flat_map(|rid| {
                let r = t.s.get(&t.s.pim(&format!("/resources/{rid}/roleDefinitions")), &t.admin);
                r.json["value"].as_array().cloned().unwrap_or_default().into_iter().map(|d| {
                    (d["id"].as_str().unwrap_or_default().to_string(), d["templateId"].as_str().unwrap_or_default().to_lowercase())
                }).collect::<Vec<_>>()
            }).collect();
            // Questions: every user, every resource (and one unregistered below rg-two), every operation.
            let unregistered = format!("{rg2_arm}/providers/Microsoft.Web/sites/site-x");
            let mut asked = 0;
            for user in &users {
                for (target, anchor) in resources.iter().map(|r| (r.clone(), r.clone())).chain([(unregistered.clone(), resources[2].clone())]) {
                    let listed = t.s.get(&t.s.pim(&format!(
                        "/resources/{anchor}/roleAssignments?$filter={}", enc(&format!("subjectId eq '{user}'")))), &t.admin);
                    prop_assert_eq!(listed.status, 200);
                    let active: Vec<&Value> = listed.json["value"].as_array().into_iter().flatten()
                        .filter(|a| a["assignmentState"] == "Active").collect();
                    for (op, data) in OPERATIONS {
                        let expected = active.iter().any(|a| {
                            let template = template_of.get(a["roleDefinitionId"].as_str().unwrap_or_default()).cloned().unwrap_or_default();
                            perms.get(&template).is_some_and(|p| grants(p, op, data))
                        });
                        let mut q = question(user, &target, op);
                        if data {
                            q["action"]["properties"] = json!({"isDataAction": true});
                        }
                        let d = decision(&t, &q);
                        prop_assert_eq!(d["decision"].as_bool(), Some(expected), "{} {} {}: {}", user, target, op, d);
                        asked += 1;
                    }
                }
            }
            prop_assert_eq!(asked, 3 * 5 * OPERATIONS.len());
        }
    }
}

#[test]
fn what_if_in_the_past_counts_history_until_it_stopped_counting() {
    let t = Tenant::start_with(&["--authzen-client", PEP, "--scheduler-interval", "0.2"]);
    let (hana, hana_token) = t.user("Hana Past");
    t.admin_add(
        &t.sub,
        &t.role(&t.sub, CONTRIBUTOR),
        &hana,
        "Eligible",
        lasting("P30D"),
    );
    let role_rg = t.role(&t.rg, CONTRIBUTOR);
    // An activation that expires, and one that is deactivated early.
    let r = t.request(
        &hana_token,
        &activation(&t.rg, &role_rg, &hana, None, "PT2S"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let expired_start = r.json["schedule"]["startDateTime"]
        .as_str()
        .expect("start")
        .to_string();
    wait_until(20, "the activation expired and moved to history", || {
        t.s.get(
            &t.s.pim(&format!("/resources/{}/roleAssignments/expired()", t.rg)),
            &t.admin,
        )
        .json["value"]
            .as_array()
            .is_some_and(|v| v.iter().any(|a| a["subjectId"] == hana.as_str()))
    });
    let q = question(&hana, &t.rg, START_VM);
    assert_eq!(decision(&t, &q)["decision"], false, "now");
    let at = |time: &str| {
        let mut q = q.clone();
        q["context"] = json!({"time": time});
        decision(&t, &q)
    };
    let d = at(&expired_start);
    assert_eq!(d["decision"], true, "during the expired activation: {d}");
    let before: jiff::Timestamp = expired_start.parse().expect("start");
    let before = (before - jiff::SignedDuration::from_secs(60)).to_string();
    assert_eq!(at(&before)["decision"], false, "before it");

    let r = t.request(
        &hana_token,
        &activation(&t.rg, &role_rg, &hana, None, "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let started = r.json["schedule"]["startDateTime"]
        .as_str()
        .expect("start")
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut remove = activation(&t.rg, &role_rg, &hana, None, "PT1H");
    remove["type"] = json!("UserRemove");
    assert_eq!(t.request(&hana_token, &remove).status, 201);
    assert_eq!(decision(&t, &q)["decision"], false, "deactivated");
    let d = at(&started);
    assert_eq!(d["decision"], true, "while it was active: {d}");
    // Searches answer as evaluations do at that instant.
    let pep = token(PEP, false);
    let past = json!({"time": started});
    let r = search(
        &t,
        &pep,
        "action",
        &json!({"subject": {"type": "user", "id": hana},
        "resource": {"type": "azureResource", "id": t.rg}, "context": past}),
    );
    assert_eq!(
        r.json["results"][0]["properties"]["displayName"], "Contributor",
        "{}",
        r.text
    );
    let r = search(
        &t,
        &pep,
        "subject",
        &json!({"subject": {"type": "user"},
        "resource": {"type": "azureResource", "id": t.rg}, "action": {"name": START_VM}, "context": past}),
    );
    assert_eq!(ids(&r), vec![hana.clone()], "{}", r.text);
    let r = search(
        &t,
        &pep,
        "resource",
        &json!({"subject": {"type": "user", "id": hana},
        "resource": {"type": "azureResource"}, "action": {"name": START_VM}, "context": past}),
    );
    assert_eq!(r.json["page"]["total"], 1, "{}", r.text);
    // Its end in the past is when it was deactivated, not its scheduled end.
    let end: jiff::Timestamp = d["context"]["reason_admin"]["grants"][0]["endDateTime"]
        .as_str()
        .expect("end")
        .parse()
        .expect("time");
    assert!(end < crate::fixture::now(), "{d}");
}
