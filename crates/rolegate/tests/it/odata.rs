//! OData query options over HTTP (decisions.md §9; graph-pim-v2.md §1.3, §8, §12):
//! `$filter` operators, functions and paths, option spellings, `$orderby`, paging with
//! `@odata.nextLink`, `$count`, `$select`, nested `$expand`, the 400s, and every query
//! pattern real clients send (§12), one test each.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{CONTRIBUTOR, OWNER, READER, enc};
use crate::harness::Reply;
use crate::reads::{World, assert_error, ids, new_sub, rows};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const MG: &str = "/providers/Microsoft.Management/managementGroups/mg-odata";

/// Thirteen resources, three subjects and four assignments:
///
/// ```text
/// mg-odata (managementgroup)
///   beta (subscription, parentExternalId = mg) ── rg-x1 … rg-x4
/// alpha (subscription) ── rg-web ── vm-web1, vm-web2 (Microsoft.Compute/virtualMachines)
///                      ├─ rg-data
///                      └─ rg-ops ── WebApp (Microsoft.Web/sites)
/// a1: Uma  Eligible Contributor on alpha     a2: Uma Eligible Reader on rg-web
/// a3: Gamma Group (Ulf) Eligible Owner on beta  a4: Ulf Active Reader on alpha
/// ```
struct O {
    w: World,
    alpha_arm: String,
    alpha: String,
    beta: String,
    mg: String,
    rg_web: String,
    uma: String,
    ulf: String,
    group: String,
    a1: String,
    a2: String,
    a3: String,
    a4: String,
}

fn world() -> O {
    let w = World::new();
    let mg = w.register(MG);
    let alpha_arm = new_sub();
    let alpha = w.register_with(&alpha_arm, Some("alpha"), None);
    let beta_arm = new_sub();
    let beta = w.register_with(&beta_arm, Some("beta"), Some(MG));
    for arm in [
        format!(
            "{alpha_arm}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-web1"
        ),
        format!(
            "{alpha_arm}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-web2"
        ),
        format!("{alpha_arm}/resourceGroups/rg-data"),
        format!("{alpha_arm}/resourceGroups/rg-ops/providers/Microsoft.Web/sites/WebApp"),
        format!("{beta_arm}/resourceGroups/rg-x1"),
        format!("{beta_arm}/resourceGroups/rg-x2"),
        format!("{beta_arm}/resourceGroups/rg-x3"),
        format!("{beta_arm}/resourceGroups/rg-x4"),
    ] {
        w.register(&arm);
    }
    let rg_web = w.rid(&format!("{alpha_arm}/resourceGroups/rg-web"));
    let uma = w.user("Uma One");
    let ulf = w.user("Ulf Two");
    let group = w.group("Gamma Group", &[&ulf]);
    let a1 = w.assign(&alpha, CONTRIBUTOR, &uma, "Eligible", "P30D");
    let a2 = w.assign(&rg_web, READER, &uma, "Eligible", "P30D");
    let a3 = w.assign(&beta, OWNER, &group, "Eligible", "P30D");
    let a4 = w.assign(&alpha, READER, &ulf, "Active", "P1D");
    O {
        w,
        alpha_arm,
        alpha,
        beta,
        mg,
        rg_web,
        uma,
        ulf,
        group,
        a1,
        a2,
        a3,
        a4,
    }
}

fn names(r: &Reply) -> BTreeSet<String> {
    rows(r)
        .iter()
        .map(|v| v["displayName"].as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Resource display names matching `$filter=<expr>` (encoded).
fn resources_where(o: &O, expr: &str) -> BTreeSet<String> {
    names(&o.w.get(&format!("/resources?$filter={}", enc(expr))))
}

/// GET as the administrator with a raw (already encoded) query string.
fn get_q(o: &O, path: &str, query: &str) -> Reply {
    o.w.get(&format!("{path}?{query}"))
}

/// Follows `@odata.nextLink` from `first` to the end; returns the pages.
fn follow(o: &O, token: &str, first: Reply) -> Vec<Reply> {
    let mut pages = vec![first];
    while let Some(next) = pages.last().unwrap().json["@odata.nextLink"].as_str() {
        let path = next
            .strip_prefix(&o.w.s.origin)
            .unwrap_or_else(|| panic!("nextLink {next} is not on {}", o.w.s.origin))
            .to_string();
        assert!(pages.len() < 50, "nextLink loop");
        pages.push(o.w.s.get(&path, token));
    }
    pages
}

const NON_RG: [&str; 6] = ["mg-odata", "alpha", "beta", "vm-web1", "vm-web2", "WebApp"];

#[test]
fn filter_operators_and_functions() {
    let o = world();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("type eq 'subscription'", vec!["alpha", "beta"]),
        (
            "displayName ne 'alpha' and type eq 'subscription'",
            vec!["beta"],
        ),
        (
            "displayName eq 'alpha' or displayName eq 'mg-odata'",
            vec!["alpha", "mg-odata"],
        ),
        ("not (type eq 'resourcegroup')", NON_RG.to_vec()),
        ("not startswith(displayName,'rg-')", NON_RG.to_vec()),
        (
            "displayName in ('rg-web','rg-data','nope')",
            vec!["rg-web", "rg-data"],
        ),
        ("type in ('managementgroup')", vec!["mg-odata"]),
        (
            "contains(displayName,'-web')",
            vec!["rg-web", "vm-web1", "vm-web2"],
        ),
        (
            "startswith(displayName,'rg-x')",
            vec!["rg-x1", "rg-x2", "rg-x3", "rg-x4"],
        ),
        ("endswith(displayName,'web2')", vec!["vm-web2"]),
        ("tolower(displayName) eq 'webapp'", vec!["WebApp"]),
        ("toupper(displayName) eq 'WEBAPP'", vec!["WebApp"]),
        ("contains(toupper(displayName),'APP')", vec!["WebApp"]),
        (
            "contains(tolower(displayName),'web')",
            vec!["rg-web", "vm-web1", "vm-web2", "WebApp"],
        ),
        (
            "(type eq 'resourcegroup' and startswith(displayName,'rg-x')) or type eq 'managementgroup'",
            vec!["rg-x1", "rg-x2", "rg-x3", "rg-x4", "mg-odata"],
        ),
        (
            "type eq 'resourcegroup' and (endswith(displayName,'1') or endswith(displayName,'2'))",
            vec!["rg-x1", "rg-x2"],
        ),
        (
            "not (type eq 'resourcegroup' or type eq 'subscription') and not contains(displayName,'vm')",
            vec!["mg-odata", "WebApp"],
        ),
        (
            "type eq 'Microsoft.Compute/virtualMachines'",
            vec!["vm-web1", "vm-web2"],
        ),
        (
            "type eq 'microsoft.compute/VIRTUALMACHINES'",
            vec!["vm-web1", "vm-web2"],
        ),
        ("type eq 'Microsoft.Web/sites'", vec!["WebApp"]),
        ("displayName eq 'nothing-like-this'", vec![]),
    ];
    for (expr, expected) in cases {
        assert_eq!(resources_where(&o, expr), set(&expected), "{expr}");
    }
    assert_eq!(
        resources_where(&o, &format!("parent/id eq '{}'", o.rg_web)),
        set(&["vm-web1", "vm-web2"])
    );
    assert_eq!(
        resources_where(&o, &format!("registeredRoot eq '{MG}'")),
        set(&["mg-odata", "beta", "rg-x1", "rg-x2", "rg-x3", "rg-x4"])
    );
    assert_eq!(
        resources_where(&o, &format!("id eq '{}' or id eq '{}'", o.alpha, o.mg)),
        set(&["alpha", "mg-odata"])
    );
    // Comparison operators on assignments and datetimes.
    let f = |expr: &str| ids(&o.w.get(&format!("/roleAssignments?$filter={}", enc(expr))));
    assert_eq!(
        f("assignmentState ne 'Active'"),
        set(&[&o.a1, &o.a2, &o.a3])
    );
    assert_eq!(f("assignmentState eq 'Active'"), set(&[&o.a4]));
    assert_eq!(f("assignmentState in ('Eligible','Active')").len(), 4);
    assert_eq!(f("endDateTime lt 2000-01-01T00:00:00Z"), set(&[]));
    assert_eq!(f("endDateTime gt 2000-01-01T00:00:00Z").len(), 4);
    assert_eq!(
        f("startDateTime le 9999-01-01T00:00:00Z and startDateTime ge 2000-01-01T00:00:00Z").len(),
        4
    );
}

#[test]
fn property_names_and_type_values_match_case_insensitively() {
    let o = world();
    for expr in [
        "type eq 'SUBSCRIPTION'",
        "Type eq 'subscription'",
        "TYPE eq 'Subscription'",
        "(tYpE eq 'sUbScRiPtIoN')",
    ] {
        assert_eq!(resources_where(&o, expr), set(&["alpha", "beta"]), "{expr}");
    }
    assert_eq!(
        resources_where(&o, "DisplayName eq 'alpha'"),
        set(&["alpha"])
    );
    assert_eq!(
        resources_where(&o, &format!("ExternalId eq '{}'", o.alpha_arm)),
        set(&["alpha"])
    );
    assert_eq!(
        resources_where(
            &o,
            &format!("externalId eq '{}'", o.alpha_arm.to_uppercase())
        ),
        set(&["alpha"]),
        "ARM ids compare case-insensitively"
    );
    let r = o.w.get(&format!(
        "/roleAssignments?$filter={}",
        enc(&format!(
            "SubjectId eq '{}' and AssignmentState eq 'eligible'",
            o.uma
        ))
    ));
    assert_eq!(ids(&r), set(&[&o.a1, &o.a2]));
    let r = o.w.get(&format!(
        "/roleAssignmentRequests?$filter={}",
        enc("Status/SubStatus eq 'Provisioned'")
    ));
    assert_eq!(rows(&r).len(), 4);
}

#[test]
fn option_spellings_and_encodings() {
    let o = world();
    let expect = set(&["alpha", "beta"]);
    for query in [
        "$filter=type%20eq%20'subscription'".to_string(),
        "filter=type%20eq%20'subscription'".to_string(),
        "%24filter=type%20eq%20'subscription'".to_string(),
        "$filter=type+eq+'subscription'".to_string(),
        "filter=type+eq+'subscription'".to_string(),
        "$filter=type%20eq%20%27subscription%27".to_string(),
        "%24filter=type+eq+%27subscription%27&%24top=10".to_string(),
        "$FILTER=type+eq+'subscription'".to_string(),
        "$filter=type+eq+'subscription'&api-version=2018-01-01".to_string(),
    ] {
        let r = get_q(&o, "/resources", &query);
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        assert_eq!(names(&r), expect, "{query}");
    }
    // Every option without `$`.
    let r = get_q(
        &o,
        "/resources",
        "filter=type+eq+'resourcegroup'&orderby=displayName+desc&top=2&skip=1&count=true&select=displayName",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["@odata.count"], 7);
    assert_eq!(
        rows(&r),
        vec![
            json!({"displayName": "rg-x3"}),
            json!({"displayName": "rg-x2"})
        ]
    );
    let r = get_q(
        &o,
        "/resources",
        &format!(
            "expand=parent&filter={}",
            enc(&format!("id eq '{}'", o.beta))
        ),
    );
    assert_eq!(rows(&r)[0]["parent"]["id"], o.mg.as_str());
    // A literal `+` is sent encoded and stays a plus.
    let r = get_q(&o, "/resources", "$filter=displayName+eq+'a%2Bb'");
    assert_eq!(rows(&r), Vec::<Value>::new());
    // A quote inside a literal is doubled.
    let r = get_q(
        &o,
        "/resources",
        &format!("$filter={}", enc("displayName eq 'it''s'")),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn filter_paths_into_complex_and_related_entities() {
    let o = world();
    let get = |path: &str, expr: &str| o.w.get(&format!("{path}?$filter={}", enc(expr)));
    // status/subStatus on requests.
    let r = get(
        "/roleAssignmentRequests",
        "status/subStatus eq 'Provisioned'",
    );
    assert_eq!(rows(&r).len(), 4);
    assert!(rows(&r).iter().all(|q| q["status"]["subStatus"] == "Provisioned" && q["status"]["status"] == "Closed"));
    assert_eq!(
        rows(&get(
            "/roleAssignmentRequests",
            "status/subStatus eq 'PendingAdminDecision'"
        ))
        .len(),
        0
    );
    assert_eq!(
        rows(&get(
            "/roleAssignmentRequests",
            "status/status eq 'Closed' and type eq 'AdminAdd'"
        ))
        .len(),
        4
    );
    // subject/id on assignments and requests.
    assert_eq!(
        ids(&get(
            "/roleAssignments",
            &format!("subject/id eq '{}'", o.uma)
        )),
        set(&[&o.a1, &o.a2])
    );
    let r = get(
        "/roleAssignmentRequests",
        &format!("subject/id eq '{}'", o.uma),
    );
    assert!(
        rows(&r).iter().all(|q| q["subjectId"] == o.uma.as_str()) && rows(&r).len() == 2,
        "{}",
        r.text
    );
    // roleDefinition/resource/id on assignments.
    assert_eq!(
        ids(&get(
            "/roleAssignments",
            &format!("roleDefinition/resource/id eq '{}'", o.alpha)
        )),
        set(&[&o.a1, &o.a4])
    );
    assert_eq!(
        ids(&get(
            "/roleAssignments",
            &format!("roleDefinition/resource/id eq '{}'", o.beta)
        )),
        set(&[&o.a3])
    );
    // roleDefinition/templateId and resource/id.
    assert_eq!(
        ids(&get(
            "/roleAssignments",
            &format!("roleDefinition/templateId eq '{READER}'")
        )),
        set(&[&o.a2, &o.a4])
    );
    let defs = rows(&get(
        "/roleDefinitions",
        &format!("resource/id eq '{}'", o.beta),
    ));
    assert_eq!(defs.len(), 8);
}

#[test]
fn orderby_two_keys_ascending_and_descending() {
    let o = world();
    let f = enc(&format!("registeredRoot eq '{}'", o.alpha_arm));
    let order = |ob: &str| -> Vec<String> {
        let r =
            o.w.get(&format!("/resources?$filter={f}&$orderby={}", enc(ob)));
        rows(&r)
            .iter()
            .map(|v| v["displayName"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        order("type asc,displayName desc"),
        [
            "vm-web2", "vm-web1", "WebApp", "rg-web", "rg-ops", "rg-data", "alpha"
        ]
    );
    assert_eq!(
        order("type desc, displayName asc"),
        [
            "alpha", "rg-data", "rg-ops", "rg-web", "WebApp", "vm-web1", "vm-web2"
        ]
    );
    assert_eq!(
        order("type,displayName"),
        [
            "vm-web1", "vm-web2", "WebApp", "rg-data", "rg-ops", "rg-web", "alpha"
        ]
    );
    assert_eq!(
        order("Type DESC,DisplayName DESC"),
        [
            "alpha", "rg-web", "rg-ops", "rg-data", "WebApp", "vm-web2", "vm-web1"
        ]
    );
    // Requests newest first.
    let r = rows(&o.w.get("/roleAssignmentRequests?$orderby=requestedDateTime%20desc"));
    let times: Vec<&str> = r
        .iter()
        .map(|q| q["requestedDateTime"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(times, sorted);
}

#[test]
fn top_skip_next_link_and_count() {
    let o = world();
    let all = ids(&o.w.get("/resources"));
    assert_eq!(all.len(), 13);
    // $top pages, followed to the end: every row exactly once.
    let pages = follow(&o, &o.w.admin, o.w.get("/resources?$top=5&$count=true"));
    assert_eq!(pages.len(), 3);
    let mut seen = Vec::new();
    for p in &pages {
        assert_eq!(p.json["@odata.count"], 13, "{}", p.text);
        assert!(rows(p).len() <= 5);
        seen.extend(
            rows(p)
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(seen.len(), 13);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), all);
    assert!(pages[2].json.get("@odata.nextLink").is_none());
    // $skip.
    let r = o.w.get("/resources?$top=5&$skip=10");
    assert_eq!(rows(&r).len(), 3);
    assert!(r.json.get("@odata.nextLink").is_none());
    assert_eq!(rows(&o.w.get("/resources?$skip=13")).len(), 0);
    assert_eq!(rows(&o.w.get("/resources?$skip=1000")).len(), 0);
    // Ordered paging concatenates to the ordered list; the filter travels with the link.
    let full: Vec<Value> = rows(&o.w.get("/resources?$orderby=displayName%20desc"));
    let pages = follow(
        &o,
        &o.w.admin,
        o.w.get("/resources?$orderby=displayName%20desc&$top=4"),
    );
    let joined: Vec<Value> = pages.iter().flat_map(rows).collect();
    assert_eq!(joined, full);
    let owners = format!(
        "/roleDefinitions?$filter={}&$top=4",
        enc(&format!("templateId eq '{OWNER}'"))
    );
    let pages = follow(&o, &o.w.admin, o.w.get(&owners));
    assert_eq!(pages.len(), 4);
    let defs: Vec<Value> = pages.iter().flat_map(rows).collect();
    assert_eq!(defs.len(), 13);
    assert!(defs.iter().all(|d| d["templateId"] == OWNER));
    // The default page is 100 rows.
    let first = o.w.get("/roleDefinitions");
    assert_eq!(rows(&first).len(), 100);
    let pages = follow(&o, &o.w.admin, first);
    assert_eq!(pages.len(), 2);
    let all_defs: Vec<String> = pages
        .iter()
        .flat_map(rows)
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all_defs.len(), 104);
    assert_eq!(
        all_defs.iter().collect::<BTreeSet<_>>().len(),
        104,
        "no row twice"
    );
    // $top=999 is the maximum; $count=true without paging; $count=false.
    let r = o.w.get("/roleDefinitions?$top=999&$count=true");
    assert_eq!(rows(&r).len(), 104);
    assert_eq!(r.json["@odata.count"], 104);
    assert!(r.json.get("@odata.nextLink").is_none());
    assert!(
        o.w.get("/roleDefinitions?$count=false")
            .json
            .get("@odata.count")
            .is_none()
    );
    assert_eq!(o.w.get("/roleDefinitions/$count").text, "104");
    assert_eq!(
        o.w.get(&format!(
            "/resources/$count?$filter={}",
            enc("type eq 'resourcegroup'")
        ))
        .text,
        "7"
    );
    // A non-admin pages only through what it can see.
    let tok = o.w.token(&o.uma);
    let pages = follow(&o, &tok, o.w.get_as(&tok, "/resources?$top=2&$count=true"));
    let mine: BTreeSet<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(pages[0].json["@odata.count"], mine.len());
    // alpha and everything under it: alpha, 3 resource groups, 2 VMs, the web app.
    assert_eq!(mine.len(), 7, "{mine:?}");
}

#[test]
fn select_and_nested_expand() {
    let o = world();
    let r = o.w.get("/resources?$select=id,displayName");
    for v in rows(&r) {
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["id", "displayName"]));
    }
    let r = o.w.get("/resources?$select=ID,DisplayName");
    assert_eq!(
        rows(&r)[0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([&"id".to_string(), &"displayName".to_string()])
    );
    let r = o.w.get("/resources?$select=*");
    assert!(rows(&r)[0].get("registeredRoot").is_some());
    // roleDefinition($expand=resource;$select=id,displayName).
    let q = format!(
        "$filter={}&$expand={}",
        enc(&format!("subjectId eq '{}'", o.uma)),
        enc("roleDefinition($expand=resource;$select=id,displayName)")
    );
    let r = o.w.get(&format!("/roleAssignments?{q}"));
    let l = rows(&r);
    assert_eq!(l.len(), 2, "{}", r.text);
    for a in &l {
        let d = &a["roleDefinition"];
        let keys: BTreeSet<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "displayName", "resource"]),
            "{d}"
        );
        assert_eq!(d["id"], a["roleDefinitionId"]);
        assert_eq!(d["resource"]["id"], a["resourceId"]);
        assert!(d["resource"]["type"].is_string() && d["resource"]["externalId"].is_string());
        assert!(
            a["startDateTime"].is_string(),
            "the outer entity keeps all its properties"
        );
    }
    // The same with $select outside.
    let r = o.w.get(&format!("/roleAssignments?{q}&$select=id"));
    for a in rows(&r) {
        let keys: BTreeSet<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["id", "roleDefinition"]), "{a}");
    }
    // A whole page expanded at once (loaded per navigation, not per row): every row gets
    // its own subject, resource and role definition with its resource.
    let r = o.w.get(&format!(
        "/roleAssignments?$expand={}",
        enc("subject,resource,roleDefinition($expand=resource)")
    ));
    let l = rows(&r);
    assert!(l.len() > 3, "{}", r.text);
    let subjects: BTreeSet<&str> = l.iter().filter_map(|a| a["subjectId"].as_str()).collect();
    assert!(subjects.len() > 1, "{}", r.text);
    for a in &l {
        assert_eq!(a["subject"]["id"], a["subjectId"], "{a}");
        assert_eq!(a["resource"]["id"], a["resourceId"], "{a}");
        assert_eq!(a["roleDefinition"]["id"], a["roleDefinitionId"], "{a}");
        assert_eq!(
            a["roleDefinition"]["resource"]["id"], a["roleDefinition"]["resourceId"],
            "{a}"
        );
    }
    // A page's rows are written from the JSON the entity cache keeps (read twice: written,
    // then kept); each equals the same assignment read alone, rendered whole.
    for _ in 0..2 {
        let r = o.w.get(&format!(
            "/roleAssignments?$expand={}",
            enc("subject,resource,roleDefinition($expand=resource)")
        ));
        for a in rows(&r) {
            let one = o.w.get(&format!(
                "/roleAssignments/{}?$expand={}",
                a["id"].as_str().unwrap_or_default(),
                enc("subject,resource,roleDefinition($expand=resource)")
            ));
            assert_eq!(one.status, 200, "{}", one.text);
            let mut alone = one.json.clone();
            if let Some(o) = alone.as_object_mut() {
                o.remove("@odata.context");
            }
            assert_eq!(a, alone);
        }
    }
    // Several expansions, and expansions of a single entity.
    let r = o.w.get(&format!(
        "/roleAssignments/{}?$expand=subject,resource,roleDefinition($expand=roleSetting)",
        o.a3
    ));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["subject"]["id"], o.group.as_str());
    assert_eq!(r.json["subject"]["type"], "Group");
    assert_eq!(r.json["resource"]["id"], o.beta.as_str());
    assert_eq!(
        r.json["roleDefinition"]["roleSetting"]["roleDefinitionId"],
        r.json["roleDefinitionId"]
    );
    let r = o.w.get(&format!(
        "/resources/{}?$expand=parent($expand=parent)",
        o.rg_web
    ));
    assert_eq!(r.json["parent"]["id"], o.alpha.as_str(), "{}", r.text);
    assert_eq!(r.json["parent"]["parent"], Value::Null);
    let r = o.w.get(&format!(
        "/roleAssignmentRequests?$filter={}&$expand=subject,roleDefinition($select=displayName)",
        enc(&format!("subjectId eq '{}'", o.ulf))
    ));
    let l = rows(&r);
    assert_eq!(l.len(), 1, "{}", r.text);
    assert_eq!(l[0]["subject"]["displayName"], "Ulf Two");
    assert_eq!(l[0]["roleDefinition"], json!({"displayName": "Reader"}));
    let r = o.w.get(&format!("/roleSettings?$filter={}&$expand=roleDefinition($expand=resource($select=displayName))&$top=1", enc(&format!("resourceId eq '{}'", o.alpha))));
    assert_eq!(
        rows(&r)[0]["roleDefinition"]["resource"],
        json!({"displayName": "alpha"}),
        "{}",
        r.text
    );
}

#[test]
fn malformed_options_are_400_bad_request() {
    let o = world();
    for query in [
        "$filter=nope%20eq%20'x'",
        "$filter=type%20eq",
        "$filter=type%20eq%20'unterminated",
        "$filter=type%20eq%20'x'%20and",
        "$filter=(type%20eq%20'x'",
        "$filter=type%20eq%20'x')",
        "$filter=contains(type)",
        "$filter=frobnicate(type,'x')",
        "$filter=type%20eq%201",
        "$filter=type%20like%20'x'",
        "$filter=",
        "$filter=type%20eq%20'a'&$filter=type%20eq%20'b'",
        "$orderby=nope",
        "$orderby=type%20sideways",
        "$orderby=",
        "$select=nope",
        "$select=id,,type",
        "$expand=nope",
        "$expand=parent(",
        "$expand=parent($bogus=1)",
        "$top=1000",
        "$top=-1",
        "$top=ten",
        "$skip=-5",
        "$count=maybe",
        "$search=alpha",
        "$search=%22alpha%22",
        "$format=json",
        "$apply=groupby((type))",
    ] {
        let r = get_q(&o, "/resources", query);
        assert_error(&r, 400, "BadRequest");
    }
    // On the other collections, their own fields.
    for (path, query) in [
        ("/roleAssignments", "$filter=displayName%20eq%20'x'"),
        ("/roleAssignments", "$expand=parent"),
        (
            "/roleDefinitions",
            "$filter=assignmentState%20eq%20'Active'",
        ),
        ("/roleSettings", "$orderby=adminEligibleSettings"),
        ("/roleAssignmentRequests", "$filter=status/nope%20eq%20'x'"),
        ("/roleAssignmentRequests", "$select=memberType"),
        ("/roleAssignments/$count", "$filter=nope%20eq%201"),
        ("/roleAssignments/export", "$filter=nope%20eq%201"),
        // A date-time of year -1 in UTC (found by the fuzzer): refused, not printed back
        // as something that no longer parses.
        (
            "/roleAssignments",
            "$filter=startDateTime%20lt%200000-01-01T00:00:05%2B02:00",
        ),
    ] {
        let r = get_q(&o, path, query);
        assert_error(&r, 400, "BadRequest");
    }
    // Unknown options without `$` are ignored.
    assert_eq!(get_q(&o, "/resources", "search=alpha&foo=bar").status, 200);
}

// ----- graph-pim-v2.md §12: query patterns real clients send -----

#[test]
fn p12_resources_type_subscription_in_parentheses() {
    let o = world();
    let r = get_q(
        &o,
        "/resources",
        &format!("$filter={}", enc("(type eq 'subscription')")),
    );
    assert_eq!(names(&r), set(&["alpha", "beta"]));
    assert!(rows(&r).iter().all(|v| v["type"] == "subscription"));
}

#[test]
fn p12_resources_resourcegroup_or_subscription() {
    let o = world();
    let r = get_q(
        &o,
        "/resources",
        &format!(
            "$filter={}",
            enc("(type eq 'resourcegroup' or type eq 'subscription')")
        ),
    );
    assert_eq!(
        names(&r),
        set(&[
            "alpha", "beta", "rg-web", "rg-data", "rg-ops", "rg-x1", "rg-x2", "rg-x3", "rg-x4"
        ])
    );
}

#[test]
fn p12_resources_select_expand_parent_subscription_or_managementgroup() {
    let o = world();
    let q = format!(
        "$select=id,displayName,type,externalId&$expand=parent&$filter={}",
        enc("(type eq 'subscription' or type eq 'managementgroup')")
    );
    let l = rows(&get_q(&o, "/resources", &q));
    assert_eq!(l.len(), 3);
    for v in &l {
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "displayName", "type", "externalId", "parent"]),
            "{v}"
        );
        match v["displayName"].as_str().unwrap() {
            "beta" => {
                assert_eq!(v["parent"]["id"], o.mg.as_str());
                assert_eq!(v["parent"]["type"], "managementgroup");
                assert_eq!(v["parent"]["externalId"], MG);
            }
            "alpha" | "mg-odata" => assert_eq!(v["parent"], Value::Null, "{v}"),
            other => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn p12_resources_subscription_top_100() {
    let o = world();
    let r = get_q(
        &o,
        "/resources",
        &format!("$filter={}&$top=100", enc("type eq 'subscription'")),
    );
    assert_eq!(names(&r), set(&["alpha", "beta"]));
    assert!(r.json.get("@odata.nextLink").is_none());
    let r = get_q(
        &o,
        "/resources",
        &format!("$filter={}&$top=1", enc("type eq 'subscription'")),
    );
    assert_eq!(rows(&r).len(), 1);
    assert!(r.json["@odata.nextLink"].is_string());
}

#[test]
fn p12_resources_contains_tolower_display_name() {
    let o = world();
    assert_eq!(
        resources_where(&o, "contains(tolower(displayName),'web')"),
        set(&["rg-web", "vm-web1", "vm-web2", "WebApp"])
    );
    assert_eq!(
        resources_where(&o, "contains(tolower(displayName),'webapp')"),
        set(&["WebApp"])
    );
    assert_eq!(
        resources_where(&o, "contains(tolower(displayName),'x')"),
        set(&["rg-x1", "rg-x2", "rg-x3", "rg-x4"])
    );
}

#[test]
fn p12_resources_tolower_display_name_eq() {
    let o = world();
    assert_eq!(
        resources_where(&o, "tolower(displayName) eq 'webapp'"),
        set(&["WebApp"])
    );
    assert_eq!(
        resources_where(&o, "tolower(displayName) eq 'WebApp'"),
        set(&[])
    );
}

#[test]
fn p12_role_assignments_mine_with_expand_resource_and_role_definition() {
    let o = world();
    let tok = o.w.token(&o.uma);
    let q = format!(
        "$filter={}&$expand=resource,roleDefinition",
        enc(&format!("subjectId eq '{}'", o.uma))
    );
    let r = o.w.get_as(&tok, &format!("/roleAssignments?{q}"));
    let l = rows(&r);
    assert_eq!(ids(&r), set(&[&o.a1, &o.a2]));
    for a in &l {
        assert_eq!(a["resource"]["id"], a["resourceId"]);
        assert_eq!(a["roleDefinition"]["id"], a["roleDefinitionId"]);
        assert_eq!(a["memberType"], "Direct");
    }
    let a1 = l.iter().find(|a| a["id"] == o.a1.as_str()).unwrap();
    assert_eq!(a1["resource"]["displayName"], "alpha");
    assert_eq!(a1["roleDefinition"]["displayName"], "Contributor");
}

#[test]
fn p12_role_assignments_subject_id_path_eligible_with_count() {
    let o = world();
    let q = |who: &str| {
        format!(
            "$expand={}&$filter={}&$count=true",
            enc("linkedEligibleRoleAssignment,subject,roleDefinition($expand=resource)"),
            enc(&format!(
                "(subject/id eq '{who}') and (assignmentState eq 'Eligible')"
            ))
        )
    };
    let r = o.w.get_as(
        &o.w.token(&o.uma),
        &format!("/roleAssignments?{}", q(&o.uma)),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["@odata.count"], 2);
    for a in rows(&r) {
        assert_eq!(a["assignmentState"], "Eligible");
        assert_eq!(a["linkedEligibleRoleAssignment"], Value::Null);
        assert_eq!(a["subject"]["id"], o.uma.as_str());
        assert_eq!(a["subject"]["displayName"], "Uma One");
        assert_eq!(a["roleDefinition"]["resource"]["id"], a["resourceId"]);
    }
    // A group member sees the group's eligibility (memberType Group); the active one is filtered out.
    let r = o.w.get_as(
        &o.w.token(&o.ulf),
        &format!("/roleAssignments?{}", q(&o.ulf)),
    );
    assert_eq!(r.json["@odata.count"], 1, "{}", r.text);
    let a = &rows(&r)[0];
    assert_eq!(a["id"], o.a3.as_str());
    assert_eq!(a["memberType"], "Group");
    assert_eq!(a["subject"]["id"], o.group.as_str());
    assert_eq!(a["roleDefinition"]["resource"]["displayName"], "beta");
}

#[test]
fn p12_role_assignments_role_definition_resource_id_eligible_with_expand() {
    let o = world();
    let q = format!(
        "$filter={}&$expand=subject,roleDefinition",
        enc(&format!(
            "(roleDefinition/resource/id eq '{}') and (assignmentState eq 'Eligible')",
            o.alpha
        ))
    );
    for tok in [o.w.admin.clone(), o.w.token(&o.uma), o.w.token(&o.ulf)] {
        let r = o.w.get_as(&tok, &format!("/roleAssignments?{q}"));
        assert_eq!(ids(&r), set(&[&o.a1]), "{}", r.text);
        let a = &rows(&r)[0];
        assert_eq!(a["subject"]["id"], o.uma.as_str());
        assert_eq!(a["roleDefinition"]["templateId"], CONTRIBUTOR);
    }
    // Someone without access to the resource is refused.
    let outsider = o.w.user("Out Sider");
    let r =
        o.w.get_as(&o.w.token(&outsider), &format!("/roleAssignments?{q}"));
    assert_error(&r, 403, "Authorization_RequestDenied");
}

#[test]
fn p12_role_assignments_assignment_state_in_with_select() {
    let o = world();
    let q = format!(
        "$filter={}&$select=id,assignmentState,memberType",
        enc("assignmentState in ('Eligible','Active')")
    );
    let r = get_q(&o, "/roleAssignments", &q);
    assert_eq!(ids(&r), set(&[&o.a1, &o.a2, &o.a3, &o.a4]));
    for a in rows(&r) {
        let keys: BTreeSet<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "assignmentState", "memberType"])
        );
    }
    let q = format!(
        "$filter={}&$select=id",
        enc("assignmentState in ('Active')")
    );
    assert_eq!(ids(&get_q(&o, "/roleAssignments", &q)), set(&[&o.a4]));
}

#[test]
fn p12_export_with_expand_and_role_definition_resource_filter() {
    let o = world();
    let q = format!(
        "$expand={}&$filter={}",
        enc("subject,roleDefinition($expand=resource)"),
        enc(&format!("roleDefinition/resource/id eq '{}'", o.alpha))
    );
    for path in ["/roleAssignments/export", "/roleAssignments/export()"] {
        let r = get_q(&o, path, &q);
        assert_eq!(r.status, 200, "{}", r.text);
        let lines: Vec<&str> = r
            .text
            .trim_start_matches('\u{feff}')
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("alpha,Uma One,Contributor,") && l.contains(",Eligible,")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("alpha,Ulf Two,Reader,") && l.contains(",Active,")),
            "{lines:?}"
        );
    }
}

#[test]
fn p12_user_remove_without_schedule_deactivates() {
    let o = world();
    let tok = o.w.token(&o.uma);
    let role = o.w.role(&o.alpha, CONTRIBUTOR);
    let r = o.w.activate(&tok, &o.uma, &o.alpha, &role, &o.a1);
    assert_eq!(r.status, 201, "{}", r.text);
    let active = format!("subjectId eq '{}' and assignmentState eq 'Active'", o.uma);
    assert_eq!(
        rows(&o.w.get(&format!("/roleAssignments?$filter={}", enc(&active)))).len(),
        1
    );
    let body = json!({
        "type": "UserRemove", "assignmentState": "Active", "resourceId": o.alpha,
        "roleDefinitionId": role, "subjectId": o.uma,
    });
    let r = o.w.request_as(&tok, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["type"], "UserRemove");
    assert_eq!(r.json["status"]["status"], "Closed");
    assert_eq!(r.json["status"]["subStatus"], "Revoked");
    assert_eq!(r.json["schedule"], Value::Null);
    assert_eq!(
        rows(&o.w.get(&format!("/roleAssignments?$filter={}", enc(&active)))).len(),
        0
    );
    // The eligible assignment stays.
    assert_eq!(o.w.get(&format!("/roleAssignments/{}", o.a1)).status, 200);
}

// PowerShell (AzureADPreview) sends PascalCase property names (§12, "also observed").

#[test]
fn p12_powershell_resource_by_external_id() {
    let o = world();
    let r = get_q(
        &o,
        "/resources",
        &format!(
            "$filter={}",
            enc(&format!("ExternalId eq '{}'", o.alpha_arm))
        ),
    );
    assert_eq!(ids(&r), set(&[&o.alpha]));
}

#[test]
fn p12_powershell_role_definition_by_external_id() {
    let o = world();
    let ext = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{OWNER}",
        o.alpha_arm
    );
    let r = get_q(
        &o,
        "/roleDefinitions",
        &format!("$filter={}", enc(&format!("ExternalId eq '{ext}'"))),
    );
    let l = rows(&r);
    assert_eq!(l.len(), 1, "{}", r.text);
    assert_eq!(l[0]["displayName"], "Owner");
    assert_eq!(l[0]["resourceId"], o.alpha.as_str());
}

#[test]
fn p12_powershell_role_setting_by_resource_and_role_definition() {
    let o = world();
    let role = o.w.role(&o.beta, OWNER);
    let r = get_q(
        &o,
        "/roleSettings",
        &format!(
            "$filter={}",
            enc(&format!(
                "ResourceId eq '{}' and RoleDefinitionId eq '{role}'",
                o.beta
            ))
        ),
    );
    let l = rows(&r);
    assert_eq!(l.len(), 1, "{}", r.text);
    assert_eq!(l[0]["roleDefinitionId"], role.as_str());
    assert_eq!(l[0]["resourceId"], o.beta.as_str());
}

#[test]
fn p12_role_definitions_and_settings_by_resource_id() {
    let o = world();
    for coll in ["roleDefinitions", "roleSettings", "roleAssignmentRequests"] {
        let r = get_q(
            &o,
            &format!("/{coll}"),
            &format!("$filter=resourceId+eq+'{}'", o.beta),
        );
        assert!(
            rows(&r).iter().all(|v| v["resourceId"] == o.beta.as_str()),
            "{coll}"
        );
        assert!(!rows(&r).is_empty(), "{coll}");
    }
    let _ = (&o.a2, &o.ulf);
}
