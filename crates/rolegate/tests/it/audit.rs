//! The audit log as auditors use it (decisions.md §11, §13): `GET /beta/auditLogs/
//! directoryAudits[/{id}]` with its readers, filters and paging, and the `rolegate audit
//! verify` / `export` commands on the real database file.

// Helpers' setup failures are meant to panic.
#![allow(clippy::expect_used)]

use crate::fixture::{
    OWNER, READER, Tenant, activation, eligible_user, enc, lasting, register, request_body,
    resource_id, role_setting_id,
};
use crate::harness::{ADMIN, Reply, Server, binary};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::Command;

const AUDITS: &str = "/beta/auditLogs/directoryAudits";

/// `GET /beta/auditLogs/directoryAudits?{query}` with `token`.
fn audits(s: &Server, token: &str, query: &str) -> Reply {
    let path = if query.is_empty() {
        AUDITS.to_string()
    } else {
        format!("{AUDITS}?{query}")
    };
    s.get(&path, token)
}

/// The records matching `filter`, as the administrator sees them (`200` asserted).
fn matching(t: &Tenant, filter: &str) -> Vec<Value> {
    let r = audits(&t.s, &t.admin, &format!("$top=999&$filter={}", enc(filter)));
    assert_eq!(r.status, 200, "{filter}: {}", r.text);
    r.json["value"].as_array().cloned().unwrap_or_default()
}

/// The one record written by the call that answered `reply`.
fn record_of(t: &Tenant, reply: &Reply) -> Value {
    let corr = reply.header("request-id").expect("request-id header");
    let found = matching(t, &format!("correlationId eq '{corr}'"));
    assert_eq!(found.len(), 1, "records of {corr}: {found:?}");
    found[0].clone()
}

/// `additionalDetails[key]`.
fn detail<'a>(rec: &'a Value, key: &str) -> Option<&'a str> {
    rec["additionalDetails"]
        .as_array()?
        .iter()
        .find(|d| d["key"] == key)
        .and_then(|d| d["value"].as_str())
}

/// `(type, id)` of every target.
fn targets(rec: &Value) -> Vec<(String, String)> {
    rec["targetResources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                    (text(&t["type"]), text(&t["id"]))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has_target(rec: &Value, kind: &str, id: &str) -> bool {
    targets(rec).iter().any(|(k, i)| k == kind && i == id)
}

/// Every record of a listing, following `@odata.nextLink`.
fn all_pages(s: &Server, token: &str, query: &str) -> Vec<Value> {
    let mut r = audits(s, token, query);
    let mut out = Vec::new();
    loop {
        assert_eq!(r.status, 200, "{}", r.text);
        out.extend(r.json["value"].as_array().cloned().unwrap_or_default());
        let Some(next) = r.json["@odata.nextLink"].as_str() else {
            return out;
        };
        let path = next
            .strip_prefix(&s.origin)
            .expect("nextLink on this server");
        r = s.get(path, token);
    }
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn times(records: &[Value]) -> Vec<jiff::Timestamp> {
    records
        .iter()
        .map(|r| crate::fixture::ts(&r["activityDateTime"]))
        .collect()
}

#[test]
fn admin_add_activation_refusal_and_role_setting_are_recorded() {
    let t = Tenant::start();
    // AdminAdd: an eligible Contributor assignment on the subscription.
    let (user, user_token, role, eligible) = eligible_user(&t, "Audited User", "P30D");
    let adds = matching(
        &t,
        &format!(
            "activityDisplayName eq 'Add eligible member to role' and targetResources/any(t: t/id eq '{user}')"
        ),
    );
    assert_eq!(adds.len(), 1, "{adds:?}");
    let add = &adds[0];
    assert_eq!(add["category"], "RoleManagement");
    assert_eq!(add["result"], "success");
    assert_eq!(add["operationType"], "AdminAdd");
    assert_eq!(add["loggedByService"], "PIM");
    assert_eq!(add["initiatedBy"]["user"]["id"], ADMIN);
    assert!(has_target(add, "Resource", &t.sub), "{add}");
    assert!(has_target(add, "Role", &role), "{add}");
    assert!(has_target(add, "Subject", &user), "{add}");
    assert_eq!(detail(add, "resourceId"), Some(t.sub.as_str()));
    assert_eq!(detail(add, "roleDefinitionId"), Some(role.as_str()));
    assert_eq!(detail(add, "requestType"), Some("AdminAdd"));
    assert_eq!(detail(add, "reason"), Some("integration test"));

    // The AdminAdd of another one, matched by the response's request-id.
    let (other, _) = t.user("Other User");
    let mut body = request_body("AdminAdd", "Eligible", &t.sub, &role, &other);
    body["schedule"] = lasting("P10D");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    let rec = record_of(&t, &r);
    assert_eq!(
        rec["correlationId"],
        r.header("request-id").unwrap_or_default()
    );
    assert_eq!(detail(&rec, "requestId"), r.json["id"].as_str());

    // A refused activation: longer than the activation cap (480 minutes).
    let refused = t.request(
        &user_token,
        &activation(&t.sub, &role, &user, Some(&eligible), "PT9H"),
    );
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(
        refused.code(),
        "RoleAssignmentRequestPolicyValidationFailed"
    );
    let rec = record_of(&t, &refused);
    assert_eq!(rec["category"], "RoleManagement");
    assert_eq!(rec["activityDisplayName"], "Create role assignment request");
    assert_eq!(rec["result"], "failure");
    assert_eq!(rec["operationType"], "Refused");
    assert_eq!(rec["resultReason"], refused.json["error"]["message"]);
    assert_eq!(rec["initiatedBy"]["user"]["id"], user.as_str());
    assert_eq!(rec["initiatedBy"]["user"]["displayName"], "Audited User");
    assert!(has_target(&rec, "Resource", &t.sub), "{rec}");
    assert!(has_target(&rec, "Role", &role), "{rec}");
    assert_eq!(
        detail(&rec, "errorCode"),
        Some("RoleAssignmentRequestPolicyValidationFailed")
    );
    assert_eq!(detail(&rec, "requestType"), Some("UserAdd"));
    assert_eq!(detail(&rec, "resourceId"), Some(t.sub.as_str()));
    assert_eq!(
        detail(&rec, "linkedEligibleRoleAssignmentId"),
        Some(eligible.as_str())
    );

    // The activation itself.
    let ok = t.request(
        &user_token,
        &activation(&t.sub, &role, &user, Some(&eligible), "PT1H"),
    );
    assert_eq!(ok.status, 201, "{}", ok.text);
    let rec = record_of(&t, &ok);
    assert_eq!(rec["category"], "RoleManagement");
    assert_eq!(rec["activityDisplayName"], "Activate role");
    assert_eq!(rec["result"], "success");
    assert_eq!(rec["resultReason"], "Provisioned");
    assert_eq!(rec["operationType"], "UserAdd");
    assert_eq!(rec["initiatedBy"]["user"]["id"], user.as_str());
    assert!(has_target(&rec, "Resource", &t.sub), "{rec}");
    assert!(has_target(&rec, "Subject", &user), "{rec}");
    assert!(
        targets(&rec).iter().any(|(k, _)| k == "RoleAssignment"),
        "{rec}"
    );
    assert_eq!(detail(&rec, "requestId"), ok.json["id"].as_str());
    assert_eq!(detail(&rec, "reason"), Some("integration test"));
    assert_eq!(
        detail(&rec, "endDateTime"),
        ok.json["schedule"]["endDateTime"].as_str()
    );

    // A role setting PATCH.
    let reader = t.role(&t.sub, READER);
    let setting = role_setting_id(&t.s, &t.admin, &reader);
    let rule = json!({"permanentAssignment": false, "maximumGrantPeriodInMinutes": 120});
    let patch = t.s.call(
        "PATCH",
        &t.s.pim(&format!("/roleSettings/{setting}")),
        Some(&t.admin),
        Some(&json!({"userMemberSettings": [
            {"ruleIdentifier": "ExpirationRule", "setting": rule.to_string()}
        ]})),
    );
    assert_eq!(patch.status, 204, "{}", patch.text);
    let rec = record_of(&t, &patch);
    assert_eq!(rec["category"], "Policy");
    assert_eq!(rec["activityDisplayName"], "Update role setting");
    assert_eq!(rec["result"], "success");
    assert_eq!(rec["initiatedBy"]["user"]["id"], ADMIN);
    assert!(has_target(&rec, "RoleSetting", &setting), "{rec}");
    let modified = &rec["targetResources"][0]["modifiedProperties"][0];
    assert_eq!(modified["displayName"], "userMemberSettings");
    let new_value = modified["newValue"].as_str().unwrap_or_default();
    assert!(
        new_value.contains("\"maximumGrantPeriodInMinutes\":120"),
        "{modified}"
    );
    assert!(
        modified["oldValue"]
            .as_str()
            .unwrap_or_default()
            .contains("480"),
        "{modified}"
    );
    assert_eq!(detail(&rec, "resourceId"), Some(t.sub.as_str()));
    assert_eq!(detail(&rec, "roleDefinitionId"), Some(reader.as_str()));

    // One record by id: the same document, with its context.
    let id = rec["id"].as_str().expect("id");
    let one = t.s.get(&format!("{AUDITS}/{id}"), &t.admin);
    assert_eq!(one.status, 200, "{}", one.text);
    assert!(
        one.json["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with("/beta/$metadata#auditLogs/directoryAudits/$entity")),
        "{}",
        one.text
    );
    let mut without_context = one.json.clone();
    if let Some(o) = without_context.as_object_mut() {
        o.remove("@odata.context");
    }
    assert_eq!(without_context, rec);
    let missing = t.s.get(&format!("{AUDITS}/no-such-record"), &t.admin);
    assert_eq!(
        (missing.status, missing.code()),
        (404, "NotFound"),
        "{}",
        missing.text
    );
}

#[test]
fn filters_order_and_paging() {
    let t = Tenant::start();
    let (user, user_token, role, eligible) = eligible_user(&t, "Filter User", "P30D");
    let refused = t.request(
        &user_token,
        &activation(&t.sub, &role, &user, Some(&eligible), "PT9H"),
    );
    assert_eq!(refused.status, 400, "{}", refused.text);
    for i in 0..4 {
        let (u, _) = t.user(&format!("Paged {i}"));
        let reader = t.role(&t.rg, READER);
        t.admin_add(&t.rg, &reader, &u, "Eligible", lasting("P5D"));
    }

    // Newest first, and the whole log pages the same as one big page.
    let everything = all_pages(&t.s, &t.admin, "$top=999");
    assert!(everything.len() >= 12, "{}", everything.len());
    let at = times(&everything);
    assert!(at.windows(2).all(|w| w[0] >= w[1]), "{at:?}");
    let paged = all_pages(&t.s, &t.admin, "$top=3");
    assert_eq!(ids(&paged), ids(&everything));
    let first = audits(&t.s, &t.admin, "$top=3&$count=true");
    assert_eq!(
        first.json["@odata.count"],
        json!(everything.len()),
        "{}",
        first.text
    );
    assert_eq!(first.json["value"].as_array().map(Vec::len), Some(3));
    assert!(
        first.json["@odata.nextLink"]
            .as_str()
            .is_some_and(|l| l.contains("$skip=3"))
    );
    let skipped = audits(&t.s, &t.admin, "$top=2&$skip=3");
    assert_eq!(
        ids(skipped.json["value"].as_array().expect("value")),
        ids(&everything[3..5])
    );
    let count = t.s.get(&format!("{AUDITS}/$count"), &t.admin);
    assert_eq!(count.text.trim(), everything.len().to_string());

    // Each filter selects exactly the records it names.
    let check = |filter: &str, keep: &dyn Fn(&Value) -> bool| {
        let got = matching(&t, filter);
        let expected: Vec<Value> = everything.iter().filter(|r| keep(r)).cloned().collect();
        assert!(!expected.is_empty(), "{filter} selects nothing");
        assert_eq!(ids(&got), ids(&expected), "{filter}");
    };
    check("category eq 'RoleManagement'", &|r| {
        r["category"] == "RoleManagement"
    });
    check("category eq 'UserManagement'", &|r| {
        r["category"] == "UserManagement"
    });
    check("activityDisplayName eq 'Register resource'", &|r| {
        r["activityDisplayName"] == "Register resource"
    });
    check("result eq 'failure'", &|r| r["result"] == "failure");
    check(
        "result eq 'success' and category ne 'UserManagement'",
        &|r| r["result"] == "success" && r["category"] != "UserManagement",
    );
    check(&format!("initiatedBy/user/id eq '{user}'"), &|r| {
        r["initiatedBy"]["user"]["id"] == user.as_str()
    });
    check(&format!("initiatedBy/user/id eq '{ADMIN}'"), &|r| {
        r["initiatedBy"]["user"]["id"] == ADMIN
    });
    let corr = refused.header("request-id").unwrap_or_default().to_string();
    check(&format!("correlationId eq '{corr}'"), &|r| {
        r["correlationId"] == corr.as_str()
    });
    check(
        &format!("targetResources/any(t: t/id eq '{}')", t.rg),
        &|r| targets(r).iter().any(|(_, id)| id == &t.rg),
    );
    check(
        &format!("targetResources/any(x: x/id eq '{user}') and result eq 'success'"),
        &|r| targets(r).iter().any(|(_, id)| id == &user) && r["result"] == "success",
    );
    check(
        &format!("not targetResources/any(x: x/id eq '{}')", t.rg),
        &|r| !targets(r).iter().any(|(_, id)| id == &t.rg),
    );
    // Times: pick a record in the middle and cut there.
    let middle = times(&everything)[everything.len() / 2];
    let m = middle.to_string();
    check(&format!("activityDateTime ge {m}"), &|r| {
        crate::fixture::ts(&r["activityDateTime"]) >= middle
    });
    check(&format!("activityDateTime gt {m}"), &|r| {
        crate::fixture::ts(&r["activityDateTime"]) > middle
    });
    check(&format!("activityDateTime le {m}"), &|r| {
        crate::fixture::ts(&r["activityDateTime"]) <= middle
    });
    check(
        &format!("activityDateTime lt {m} or activityDateTime eq {m}"),
        &|r| crate::fixture::ts(&r["activityDateTime"]) <= middle,
    );
    let first_at = times(&everything)[everything.len() - 1].to_string();
    check(
        &format!(
            "activityDateTime ge {first_at} and activityDateTime le {m} and category eq 'RoleManagement'"
        ),
        &|r| {
            crate::fixture::ts(&r["activityDateTime"]) <= middle
                && r["category"] == "RoleManagement"
        },
    );

    // $select, and what is refused.
    let r = audits(&t.s, &t.admin, "$top=1&$select=id,category");
    let keys: Vec<&String> = r.json["value"][0]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["category", "id"], "{}", r.text);
    for bad in [
        "targetResources/id eq 'x'",
        "targetResources/all(t: t/id eq 'x')",
        "targetResources/any(t: t/id ne 'x')",
        "operationType eq 'Add'",
        "activityDateTime ge 'yesterday'",
    ] {
        let r = audits(&t.s, &t.admin, &format!("$filter={}", enc(bad)));
        assert_eq!(
            (r.status, r.code()),
            (400, "BadRequest"),
            "{bad}: {}",
            r.text
        );
    }
    let r = audits(&t.s, &t.admin, "$expand=initiatedBy");
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn r3_holders_read_their_resources_and_others_are_refused() {
    let t = Tenant::start();
    // A VM under the resource group, and an owner of the resource group.
    let vm_arm = format!(
        "{}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm1",
        t.sub_arm
    );
    register(&t.s, &t.admin, &vm_arm);
    let vm = resource_id(&t.s, &t.admin, &vm_arm);
    let (owner, owner_token) = t.user("Rg Owner");
    let rg_owner = t.role(&t.rg, OWNER);
    t.admin_add(&t.rg, &rg_owner, &owner, "Active", lasting("P5D"));
    let (eligible_owner, eligible_owner_token) = t.user("Eligible Owner");
    t.admin_add(
        &t.rg,
        &rg_owner,
        &eligible_owner,
        "Eligible",
        lasting("P5D"),
    );
    let (_, plain_token) = t.user("Plain User");
    let (a, _) = t.user("Somebody");
    let vm_reader = t.role(&vm, READER);
    let on_vm = t.request(&t.admin, &{
        let mut b = request_body("AdminAdd", "Eligible", &vm, &vm_reader, &a);
        b["schedule"] = lasting("P5D");
        b
    });
    assert_eq!(on_vm.status, 201, "{}", on_vm.text);
    let sub_reader = t.role(&t.sub, READER);
    let on_sub = t.request(&t.admin, &{
        let mut b = request_body("AdminAdd", "Eligible", &t.sub, &sub_reader, &a);
        b["schedule"] = lasting("P5D");
        b
    });
    assert_eq!(on_sub.status, 201, "{}", on_sub.text);
    let vm_record = record_of(&t, &on_vm);
    let sub_record = record_of(&t, &on_sub);

    // The owner sees the records of the resource group and below, and nothing else.
    let seen = all_pages(&t.s, &owner_token, "$top=5");
    let under: HashSet<&str> = [t.rg.as_str(), vm.as_str()].into();
    assert!(!seen.is_empty());
    for r in &seen {
        assert!(
            under.contains(detail(r, "resourceId").unwrap_or_default()),
            "{r}"
        );
    }
    let seen_ids = ids(&seen);
    assert!(seen_ids.contains(&vm_record["id"].as_str().unwrap_or_default().to_string()));
    assert!(!seen_ids.contains(&sub_record["id"].as_str().unwrap_or_default().to_string()));
    // The registration of the VM and the owner's own assignment are about their resources.
    assert!(
        seen.iter()
            .any(|r| r["activityDisplayName"] == "Register resource"
                && detail(r, "resourceId") == Some(vm.as_str()))
    );
    assert!(seen.iter().any(|r| has_target(r, "Subject", &owner)));
    // The same restriction holds with a filter, for $count and by id.
    let filtered = audits(
        &t.s,
        &owner_token,
        &format!(
            "$count=true&$filter={}",
            enc(&format!("targetResources/any(t: t/id eq '{a}')"))
        ),
    );
    assert_eq!(
        ids(filtered.json["value"].as_array().expect("value")),
        [vm_record["id"].as_str().unwrap_or_default()]
    );
    assert_eq!(filtered.json["@odata.count"], 1);
    let count = t.s.get(&format!("{AUDITS}/$count"), &owner_token);
    assert_eq!(count.text.trim(), seen.len().to_string());
    let id = |r: &Value| r["id"].as_str().unwrap_or_default().to_string();
    let r =
        t.s.get(&format!("{AUDITS}/{}", id(&vm_record)), &owner_token);
    assert_eq!(r.status, 200, "{}", r.text);
    let r =
        t.s.get(&format!("{AUDITS}/{}", id(&sub_record)), &owner_token);
    assert_eq!(
        (r.status, r.code()),
        (403, "Authorization_RequestDenied"),
        "{}",
        r.text
    );
    // The administrator sees both.
    let admin_ids = ids(&all_pages(&t.s, &t.admin, "$top=999"));
    assert!(admin_ids.contains(&id(&vm_record)) && admin_ids.contains(&id(&sub_record)));

    // An eligible (not active) owner and a plain user may not read the log at all.
    for token in [&eligible_owner_token, &plain_token] {
        for path in [
            AUDITS.to_string(),
            format!("{AUDITS}/$count"),
            format!("{AUDITS}/{}", id(&vm_record)),
            format!("{AUDITS}/no-such-record"),
        ] {
            let r = t.s.get(&path, token);
            assert_eq!(
                (r.status, r.code()),
                (403, "Authorization_RequestDenied"),
                "{path}: {}",
                r.text
            );
        }
    }
    let _ = eligible_owner;
}

/// Runs `rolegate audit …` on the database at `url`; `(exit success, stdout)`.
fn cli(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary())
        .arg("audit")
        .args(args)
        .arg("--database")
        .arg(url)
        .env_remove("ROLEGATE_DATABASE_URL")
        .output()
        .expect("rolegate audit");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() || !stdout.is_empty(),
        "rolegate audit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), stdout)
}

#[test]
fn verify_and_export_on_the_database_file() {
    let mut t = Tenant::start();
    let (user, user_token, role, eligible) = eligible_user(&t, "Cli User", "P30D");
    let refused = t.request(
        &user_token,
        &activation(&t.sub, &role, &user, Some(&eligible), "PT9H"),
    );
    assert_eq!(refused.status, 400, "{}", refused.text);
    let ok = t.request(
        &user_token,
        &activation(&t.sub, &role, &user, Some(&eligible), "PT2H"),
    );
    assert_eq!(ok.status, 201, "{}", ok.text);
    let listed = all_pages(&t.s, &t.admin, "$top=999");
    assert!(t.s.stop(), "server did not stop cleanly");
    let db = t.s.database_url();
    let rows = t.s.sql("SELECT id FROM audit_log", &[]).len();
    assert_eq!(rows, listed.len());

    // verify: exit 0 and the number of records checked.
    let (intact, out) = cli(&db, &["verify"]);
    assert!(intact, "{out}");
    assert!(out.contains(&format!("{rows} records checked")), "{out}");
    let head =
        t.s.sql("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1", &[])[0][0]
            .as_str()
            .expect("hash")
            .to_string();
    assert_eq!(head.len(), 64, "{head}");
    assert!(
        out.contains(&format!("newest record hash: {head}")),
        "{out}"
    );

    // export jsonl: every record, oldest first, as the API shows it.
    let (done, jsonl) = cli(&db, &["export", "--format", "jsonl"]);
    assert!(done);
    let exported: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let mut newest_first = exported.clone();
    newest_first.reverse();
    assert_eq!(newest_first, listed);
    // --since: from the activation on (and nothing from the future).
    let at = ok_time(&listed, &ok);
    let (_, since) = cli(
        &db,
        &["export", "--format", "jsonl", "--since", &at.to_string()],
    );
    let since_ids: Vec<String> = since
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let expected: Vec<String> = exported
        .iter()
        .filter(|r| crate::fixture::ts(&r["activityDateTime"]) >= at)
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(since_ids, expected);
    let (_, none) = cli(
        &db,
        &["export", "--format", "jsonl", "--since", "2999-01-01"],
    );
    assert_eq!(none, "");

    // export csv: a header and one row per record.
    let (_, csv) = cli(&db, &["export", "--format", "csv"]);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("id,activityDateTime,category,activityDisplayName,"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), rows + 1);
    let refusal = record_of_listed(&listed, &refused);
    let row = lines
        .iter()
        .find(|l| l.starts_with(refusal["id"].as_str().unwrap_or("?")))
        .expect("refusal row");
    assert!(
        row.contains(",RoleManagement,Create role assignment request,Refused,failure,"),
        "{row}"
    );
    assert!(
        row.contains("errorCode=RoleAssignmentRequestPolicyValidationFailed"),
        "{row}"
    );

    // Alter one record by hand: verify fails and names it.
    let victim = &exported[exported.len() / 2];
    let victim_id = victim["id"].as_str().expect("id");
    t.s.sql(
        "UPDATE audit_log SET record = replace(record, '\"loggedByService\":\"PIM\"', '\"loggedByService\":\"Someone\"') \
         WHERE id = ?",
        &[victim_id],
    );
    let changed =
        t.s.sql("SELECT record FROM audit_log WHERE id = ?", &[victim_id])[0][0]
            .as_str()
            .expect("record")
            .to_string();
    assert!(
        changed.contains("\"loggedByService\":\"Someone\""),
        "not altered: {changed}"
    );
    let (intact, out) = cli(&db, &["verify"]);
    assert!(!intact, "{out}");
    assert!(out.contains(victim_id), "{out}");
    let position = exported.len() / 2;
    assert!(
        out.contains(&format!("{position} records before it are intact")),
        "{out}"
    );
}

/// The time of the record of the call that answered `reply`, from a listing.
fn ok_time(listed: &[Value], reply: &Reply) -> jiff::Timestamp {
    crate::fixture::ts(&record_of_listed(listed, reply)["activityDateTime"])
}

fn record_of_listed(listed: &[Value], reply: &Reply) -> Value {
    let corr = reply.header("request-id").expect("request-id");
    listed
        .iter()
        .find(|r| r["correlationId"] == corr)
        .cloned()
        .unwrap_or_else(|| panic!("no record of {corr}"))
}
