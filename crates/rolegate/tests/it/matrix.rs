//! The authorization matrix of `docs/security.md`, checked cell by cell against the real
//! server: one tenant, one fixture per caller kind (built through the public API), one real
//! HTTP call per cell. Every mismatching cell is reported, not only the first; the table must
//! also name every route of the OpenAPI document (which is generated from the router).

// Setup failures are meant to panic where they happen.
#![allow(clippy::expect_used)]

use crate::fixture::{
    CONTRIBUTOR, OWNER, READER, Tenant, USER_ACCESS_ADMIN, activation, create_group, create_user,
    enc, from_now, lasting, register, request_body, resource_id, role_setting_id, sleep_past,
};
use crate::harness::{ADMIN, Reply, token, uuid_like};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

/// The caller kinds, in the table's column order.
const COLUMNS: [&str; 10] = [
    "admin",
    "owner",
    "owner-ancestor",
    "owner-sibling",
    "eligible",
    "group-member",
    "expired",
    "disabled",
    "unknown",
    "anonymous",
];

/// The cell vocabulary.
const VOCABULARY: [&str; 10] = [
    "200",
    "200 filtered",
    "200 own",
    "200 empty",
    "201",
    "204",
    "400",
    "401",
    "403",
    "404",
];

const BEGIN: &str = "<!-- authz-matrix:begin -->";
const END: &str = "<!-- authz-matrix:end -->";

/// One row of the table.
#[derive(Debug)]
struct Row {
    method: String,
    template: String,
    cells: Vec<String>,
}

/// Parses the table between the markers of `docs/security.md`.
fn parse(doc: &str) -> Vec<Row> {
    let start = doc.find(BEGIN).expect("matrix begin marker") + BEGIN.len();
    let end = doc.find(END).expect("matrix end marker");
    let mut lines = doc[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|'));
    let split = |l: &str| -> Vec<String> {
        l.trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').trim().to_string())
            .collect()
    };
    let header = split(lines.next().expect("matrix header"));
    assert_eq!(header[0], "route", "first column must be `route`");
    assert_eq!(&header[1..], &COLUMNS, "matrix columns");
    let mut rows = Vec::new();
    for line in lines {
        let cells = split(line);
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        assert_eq!(cells.len(), 11, "row has {} cells: {line}", cells.len());
        let (method, template) = cells[0].split_once(' ').expect("`METHOD /path`");
        for c in &cells[1..] {
            assert!(
                VOCABULARY.contains(&c.as_str()),
                "cell `{c}` is not in the vocabulary: {line}"
            );
        }
        rows.push(Row {
            method: method.to_string(),
            template: template.trim().to_string(),
            cells: cells[1..].to_vec(),
        });
    }
    rows
}

/// One caller kind: its subject id, its token (none for `anonymous`), and the resource ids
/// no successful answer to it may contain.
struct Who {
    id: String,
    token: Option<String>,
    hidden: Vec<String>,
}

/// The tenant every cell runs against.
struct World {
    t: Tenant,
    rg_arm: String,
    callers: Vec<Who>,
    owner_definition: String,
    contributor_setting: String,
    reader: String,
    owner_assignment: String,
    owner_request: String,
    audit: String,
    subscription: String,
    hook: String,
}

/// A webhook receiver that answers validation handshakes and acknowledges everything else.
fn receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let token = target
                    .split_once("validationToken=")
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_default();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{token}",
                    token.len()
                );
                let mut out = conn;
                let _ = out.write_all(reply.as_bytes());
            });
        }
    });
    url
}

/// The id of the current assignment of `subject` to `role` listed on `resource`.
fn assignment_of(t: &Tenant, resource: &str, role: &str, subject: &str) -> String {
    t.assignments(resource)
        .iter()
        .find(|a| a["subjectId"] == subject && a["roleDefinitionId"] == role)
        .and_then(|a| a["id"].as_str())
        .unwrap_or_else(|| panic!("no assignment of {subject} to {role} on {resource}"))
        .to_string()
}

/// The `clientState` (HMAC key) of the fixture's shared subscription, made by the tenant
/// administrator: no other caller may ever read it.
const ADMIN_CLIENT_STATE: &str = "matrix-admin-hmac-key-7f3c";

fn subscribe(w: &World, token: &str, client_state: &str) -> Reply {
    w.t.s.post(
        "/beta/subscriptions",
        token,
        &json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": w.hook,
            "resource": format!("privilegedAccess/azureResources/roleAssignmentRequests?$filter=resourceId eq '{}'", w.t.rg),
            "expirationDateTime": from_now(3600).to_string(),
            "clientState": client_state,
        }),
    )
}

fn build() -> World {
    let t = Tenant::start();
    let s = &t.s;
    let rg_arm = format!("{}/resourceGroups/rg-app", t.sub_arm);
    let rg2_arm = format!("{}/resourceGroups/rg-sibling", t.sub_arm);
    register(s, &t.admin, &rg2_arm);
    let rg2 = resource_id(s, &t.admin, &rg2_arm);
    let (rg, sub) = (t.rg.clone(), t.sub.clone());
    let owner_rg = t.role(&rg, OWNER);

    // Expired first: an active Owner for one second.
    let (expired, expired_t) = t.user("expired");
    t.admin_add(&rg, &owner_rg, &expired, "Active", lasting("PT1S"));
    let expired_at = from_now(2);

    let (owner, owner_t) = t.user("owner");
    let mut body = request_body("AdminAdd", "Active", &rg, &owner_rg, &owner);
    body["schedule"] = lasting("P1D");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 201, "owner AdminAdd: {}", r.text);
    let owner_request = r.json["id"].as_str().expect("request id").to_string();
    let correlation = r.header("request-id").expect("request-id").to_string();
    let owner_assignment = assignment_of(&t, &rg, &owner_rg, &owner);

    let (anc, anc_t) = t.user("owner-ancestor");
    let uaa_sub = t.role(&sub, USER_ACCESS_ADMIN);
    t.admin_add(&sub, &uaa_sub, &anc, "Active", lasting("P1D"));

    let (sib, sib_t) = t.user("owner-sibling");
    let owner_rg2 = t.role(&rg2, OWNER);
    t.admin_add(&rg2, &owner_rg2, &sib, "Active", lasting("P1D"));

    let (elig, elig_t) = t.user("eligible");
    t.admin_add(&rg, &owner_rg, &elig, "Eligible", lasting("P1D"));

    let (member, member_t) = t.user("group-member");
    let group = create_group(s, &t.admin, &format!("matrix-{}", uuid_like()), &[&member]);
    let contributor_rg = t.role(&rg, CONTRIBUTOR);
    t.admin_add(&rg, &contributor_rg, &group, "Eligible", lasting("P1D"));

    let (disabled, disabled_t) = t.user("disabled");
    t.admin_add(&rg, &owner_rg, &disabled, "Active", lasting("P1D"));
    let r = s.call(
        "PATCH",
        &format!("/scim/v2/Users/{disabled}"),
        Some(&t.admin),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}],
        })),
    );
    assert_eq!(r.status, 200, "disable user: {}", r.text);

    let unknown = format!("ghost-{}", uuid_like());
    let unknown_t = token(&unknown, true);

    // Activations of Reader on the resource group wait for an administrator of it.
    let reader = t.role(&rg, READER);
    t.set_rule(
        &reader,
        "userMemberSettings",
        "ApprovalRule",
        json!({"Enabled": true, "Approvers": []}),
    );

    let r = s.get(
        &format!(
            "/beta/auditLogs/directoryAudits?$filter={}",
            enc(&format!("correlationId eq '{correlation}'"))
        ),
        &t.admin,
    );
    assert_eq!(r.status, 200, "find audit record: {}", r.text);
    let audit = r.json["value"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no audit record: {}", r.text))
        .to_string();

    let contributor_setting = role_setting_id(s, &t.admin, &contributor_rg);
    let hook = receiver();
    let who = |id: &str, tok: &str, hidden: &[&str]| Who {
        id: id.to_string(),
        token: Some(tok.to_string()),
        hidden: hidden
            .iter()
            .map(|h| h.to_string())
            .chain((id != ADMIN).then(|| ADMIN_CLIENT_STATE.to_string()))
            .collect(),
    };
    let callers = vec![
        who(ADMIN, &t.admin, &[]),
        who(&owner, &owner_t, &[&rg2]),
        who(&anc, &anc_t, &[]),
        who(&sib, &sib_t, &[&rg]),
        who(&elig, &elig_t, &[&rg2]),
        who(&member, &member_t, &[&rg2]),
        who(&expired, &expired_t, &[&rg2, &sub]),
        who(&disabled, &disabled_t, &[&rg2]),
        who(&unknown, &unknown_t, &[&rg, &rg2, &sub]),
        Who {
            id: String::new(),
            token: None,
            hidden: vec![
                rg.clone(),
                rg2.clone(),
                sub.clone(),
                ADMIN_CLIENT_STATE.into(),
            ],
        },
    ];
    let mut w = World {
        t,
        rg_arm,
        callers,
        owner_definition: owner_rg,
        contributor_setting,
        reader,
        owner_assignment,
        owner_request,
        audit,
        subscription: String::new(),
        hook,
    };
    let r = subscribe(&w, &w.t.admin, ADMIN_CLIENT_STATE);
    assert_eq!(r.status, 201, "subscribe: {}", r.text);
    w.subscription = r.json["id"].as_str().expect("subscription id").to_string();

    sleep_past(expired_at);
    let left =
        w.t.assignments(&w.t.rg)
            .iter()
            .any(|a| a["subjectId"] == w.callers[6].id.as_str());
    assert!(!left, "the one-second assignment is still listed");
    w
}

/// A fresh activation of Reader on the resource group awaiting approval; its id.
fn pending(w: &World) -> String {
    let (u, ut) = w.t.user("requester");
    w.t.admin_add(&w.t.rg, &w.reader, &u, "Eligible", lasting("P1D"));
    let eligible = assignment_of(&w.t, &w.t.rg, &w.reader, &u);
    let r = w.t.request(
        &ut,
        &activation(&w.t.rg, &w.reader, &u, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "pending activation: {}", r.text);
    assert_eq!(
        r.json["status"]["subStatus"], "PendingApproval",
        "{}",
        r.text
    );
    r.json["id"].as_str().expect("request id").to_string()
}

fn new_user_body(name: &str) -> Value {
    let user_name = format!("{name}-{}@example.test", uuid_like());
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "displayName": name,
        "emails": [{"value": user_name, "primary": true}],
    })
}

/// The concrete call of one cell: path and body, with fresh targets for writes that would
/// otherwise change the fixture.
fn concrete(w: &World, method: &str, template: &str) -> (String, Option<Value>) {
    let rg = w.t.rg.as_str();
    let mut path = template
        .replace("{provider}", "azureResources")
        .replace("{rid}", rg)
        .replace("{coll}", "Users");
    let mut body = None;
    let (id, nav, nav2) = if template.contains("/roleDefinitions/") {
        (
            w.owner_definition.clone(),
            "resource",
            "roleSetting/resource",
        )
    } else if template.contains("/roleSettings/") {
        (
            w.contributor_setting.clone(),
            "roleDefinition",
            "roleDefinition/resource",
        )
    } else if template.contains("/roleAssignments/") {
        (
            w.owner_assignment.clone(),
            "resource",
            "roleDefinition/resource",
        )
    } else if template.ends_with("/cancel") || template.ends_with("/updateRequest") {
        (pending(w), "", "")
    } else if template.contains("/roleAssignmentRequests/") {
        (
            w.owner_request.clone(),
            "resource",
            "roleDefinition/resource",
        )
    } else if template.contains("/directoryAudits/") {
        (w.audit.clone(), "", "")
    } else if template.starts_with("/beta/subscriptions/") {
        if method == "DELETE" {
            let r = subscribe(w, &w.t.admin, ADMIN_CLIENT_STATE);
            assert_eq!(r.status, 201, "subscribe: {}", r.text);
            (r.json["id"].as_str().expect("id").to_string(), "", "")
        } else {
            (w.subscription.clone(), "", "")
        }
    } else if template.starts_with("/scim/v2/ResourceTypes/") {
        ("User".to_string(), "", "")
    } else if template.starts_with("/scim/v2/Schemas/") {
        (
            "urn:ietf:params:scim:schemas:core:2.0:User".to_string(),
            "",
            "",
        )
    } else if template.starts_with("/scim/v2/") && template.ends_with("{id}") && method != "GET" {
        (create_user(&w.t.s, &w.t.admin, "scim-target"), "", "")
    } else {
        (w.callers[1].id.clone(), "", "")
    };
    path = path
        .replace("{id}", &id)
        .replace("{nav}/{nav2}", nav2)
        .replace("{nav}", nav);
    let search =
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 5});
    match (method, template) {
        ("POST", t) if t.ends_with("/register") => {
            body = Some(json!({"externalId": format!(
                "{}/providers/Microsoft.Compute/virtualMachines/vm-{}",
                w.rg_arm,
                uuid_like()
            )}));
        }
        ("POST", t) if t.ends_with("/roleAssignmentRequests") => {
            let target = create_user(&w.t.s, &w.t.admin, "target");
            let mut b = request_body("AdminAdd", "Eligible", rg, &w.reader, &target);
            b["schedule"] = lasting("P1D");
            body = Some(b);
        }
        ("POST", t) if t.ends_with("/updateRequest") => {
            body = Some(json!({"decision": "AdminApproved", "reason": "matrix"}));
        }
        ("PATCH", t) if t.contains("/roleSettings/") => body = Some(json!({})),
        ("POST", "/beta/subscriptions") => {
            body = Some(json!({
                "changeType": "created,updated,deleted",
                "notificationUrl": w.hook,
                "resource": format!("privilegedAccess/azureResources/roleAssignmentRequests?$filter=resourceId eq '{rg}'"),
                "expirationDateTime": from_now(3600).to_string(),
                "clientState": "matrix-client-state",
            }));
        }
        ("PATCH", t) if t.starts_with("/beta/subscriptions/") => {
            body = Some(json!({"expirationDateTime": from_now(7200).to_string()}));
        }
        ("POST", t) if t.starts_with("/access/v1/") => {
            // A question about the owner: only the owner, administrators and enforcement
            // points may ask it.
            body = Some(json!({
                "subject": {"type": "user", "id": w.callers[1].id},
                "resource": {"type": "azureResource", "id": rg},
                "action": {"name": "Microsoft.Compute/virtualMachines/read"},
            }));
            if t.ends_with("/search/resource") {
                body = Some(json!({
                    "subject": {"type": "user", "id": w.callers[1].id},
                    "resource": {"type": "azureResource"},
                    "action": {"name": "Microsoft.Compute/virtualMachines/read"},
                }));
            }
        }
        ("POST", t) if t.ends_with(".search") => body = Some(search),
        ("POST", "/scim/v2/{coll}") | ("PUT", _) => body = Some(new_user_body("scim")),
        ("PATCH", t) if t.starts_with("/scim/") => {
            body = Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": "patched"}],
            }));
        }
        _ => {}
    }
    (path, body)
}

/// Checks one answer against its cell.
fn check(expect: &str, r: &Reply, who: &Who) -> Result<(), String> {
    let (status, qualifier) = expect.split_once(' ').unwrap_or((expect, ""));
    let status: u16 = status.parse().expect("status");
    let snippet: String = r.text.chars().take(160).collect();
    if r.status != status {
        return Err(format!("got {}: {snippet}", r.status));
    }
    if (200..300).contains(&r.status) {
        if let Some(h) = who.hidden.iter().find(|h| r.text.contains(h.as_str())) {
            return Err(format!("the answer holds `{h}`, hidden from this caller"));
        }
        let items = r.json["value"].as_array();
        match qualifier {
            "own" => {
                if let Some(other) = items
                    .into_iter()
                    .flatten()
                    .find(|i| i["subjectId"] != who.id.as_str())
                {
                    return Err(format!("lists another subject's item: {other}"));
                }
            }
            "empty" => {
                let empty = match items {
                    Some(v) => v.is_empty(),
                    None => r.text.trim() == "0",
                };
                if !empty {
                    return Err(format!("not empty: {snippet}"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[test]
fn every_cell_of_the_authorization_matrix_holds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md");
    let doc = std::fs::read_to_string(path).expect("docs/security.md");
    let rows = parse(&doc);
    let w = build();

    // The table names every route of the router, and nothing else.
    let r = w.t.s.call("GET", "/openapi.json", None, None);
    assert_eq!(r.status, 200);
    let mut documented = BTreeSet::new();
    for (p, item) in r.json["paths"].as_object().expect("paths") {
        for m in ["get", "put", "post", "patch", "delete"] {
            if item.get(m).is_some() {
                documented.insert(format!("{} {p}", m.to_uppercase()));
            }
        }
    }
    let tabled: BTreeSet<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.method, r.template))
        .collect();
    assert_eq!(
        tabled.len(),
        rows.len(),
        "a route appears twice in the matrix"
    );
    let missing: Vec<_> = documented.difference(&tabled).collect();
    let extra: Vec<_> = tabled.difference(&documented).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes missing from the matrix: {missing:#?}\nrows naming no route: {extra:#?}"
    );

    let (mut escalations, mut refusals, mut others) = (Vec::new(), Vec::new(), Vec::new());
    let mut cells = 0;
    for row in &rows {
        for ((who, expect), col) in w.callers.iter().zip(&row.cells).zip(COLUMNS) {
            cells += 1;
            let (path, body) = concrete(&w, &row.method, &row.template);
            let r =
                w.t.s
                    .call(&row.method, &path, who.token.as_deref(), body.as_ref());
            if let Err(why) = check(expect, &r, who) {
                let line = format!(
                    "{} {} as {col}: expected {expect}, {why}",
                    row.method, row.template
                );
                let expected_ok = expect.starts_with('2');
                let got_ok = (200..300).contains(&r.status);
                if got_ok
                    && (!expected_ok
                        || why.starts_with("the answer holds")
                        || why.starts_with("lists"))
                {
                    escalations.push(line);
                } else if expected_ok && matches!(r.status, 401 | 403 | 404) {
                    refusals.push(line);
                } else {
                    others.push(line);
                }
            }
        }
    }
    assert!(cells >= 800, "only {cells} cells");
    assert!(
        escalations.is_empty() && refusals.is_empty() && others.is_empty(),
        "{cells} cells; {} unauthorized successes:\n{}\n{} wrongful refusals:\n{}\n{} other mismatches:\n{}",
        escalations.len(),
        escalations.join("\n"),
        refusals.len(),
        refusals.join("\n"),
        others.len(),
        others.join("\n"),
    );
}
