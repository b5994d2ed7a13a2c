//! Durability and robustness (decisions.md §1, §8): state survives a restart on the same
//! SQLite file, SIGTERM exits cleanly, and no input — random JSON bodies, random OData
//! options — produces a 5xx or anything but a Graph error body.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{self, CONTRIBUTOR, OWNER, READER, enc};
use crate::harness::Reply;
use crate::reads::{World, new_sub, rows, strip_context};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

/// Everything a client can read, as the administrator sees it (contexts stripped: the port
/// changes on restart).
fn snapshot(w: &World, token: &str) -> Value {
    let mut out = Map::new();
    for path in [
        "/resources",
        "/roleDefinitions?$top=999",
        "/roleSettings?$top=999",
        "/roleAssignments",
        "/roleAssignmentRequests",
    ] {
        out.insert(path.into(), Value::Array(rows(&w.get_as(token, path))));
    }
    let scim = |p: &str| {
        let mut v = w.s.get(p, token).json;
        for r in v["Resources"].as_array_mut().into_iter().flatten() {
            if let Some(meta) = r.get_mut("meta").and_then(Value::as_object_mut) {
                meta.remove("location");
            }
            for key in ["members", "groups"] {
                for m in r
                    .get_mut(key)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(m) = m.as_object_mut() {
                        m.remove("$ref");
                    }
                }
            }
        }
        v
    };
    out.insert("users".into(), scim("/scim/v2/Users"));
    out.insert("groups".into(), scim("/scim/v2/Groups"));
    out.insert(
        "export".into(),
        Value::String(w.get_as(token, "/roleAssignments/export").text),
    );
    Value::Object(out)
}

#[test]
fn data_survives_a_restart_on_the_same_file() {
    let w = World::new();
    let sub = new_sub();
    w.register(&format!(
        "{sub}/resourceGroups/rg-keep/providers/Microsoft.Compute/virtualMachines/vm-keep"
    ));
    let sid = w.rid(&sub);
    let u = w.user("Paula Persistent");
    let m = w.user("Max Member");
    let g = w.group("Keepers", &[&m]);
    let eligible = w.assign(&sid, CONTRIBUTOR, &u, "Eligible", "P30D");
    w.assign(&sid, READER, &g, "Eligible", "P30D");
    let owner_role = w.role(&sid, OWNER);
    fixture::patch_rule(
        &w.s,
        &w.admin,
        &owner_role,
        "userMemberSettings",
        "ApprovalRule",
        &json!({"Enabled": true, "Approvers": [{"Id": u, "Type": "User"}]}),
    );
    let user_token = w.token(&u);
    let r = w.activate(&user_token, &u, &sid, &w.role(&sid, CONTRIBUTOR), &eligible);
    assert_eq!(r.status, 201, "{}", r.text);
    let admin_token = w.admin.clone();
    let before = snapshot(&w, &admin_token);
    let mine_before = w
        .get_as(
            &user_token,
            &format!(
                "/roleAssignments?$filter={}",
                enc(&format!("subjectId eq '{u}'"))
            ),
        )
        .json["value"]
        .clone();
    assert_eq!(mine_before.as_array().unwrap().len(), 2);

    let World { s, .. } = w;
    let w = World::on(s.restart());
    // The same bytes, read through the tokens issued before the restart.
    assert_eq!(snapshot(&w, &admin_token), before);
    let mine = w.get_as(
        &user_token,
        &format!(
            "/roleAssignments?$filter={}",
            enc(&format!("subjectId eq '{u}'"))
        ),
    );
    assert_eq!(mine.json["value"], mine_before);
    let setting = strip_context(w.setting(&owner_role));
    assert_eq!(setting["isDefault"], false);
    assert!(setting["userMemberSettings"].to_string().contains(&u));
    // Group membership still grants access.
    assert_eq!(rows(&w.get_as(&w.token(&m), "/resources")).len(), 3);
    // And the server takes writes again.
    let other = w.user("Nia New");
    w.assign(&sid, READER, &other, "Eligible", "P1D");
    w.register(&format!("{sub}/resourceGroups/rg-after"));
    assert_eq!(w.get("/resources/$count").text, "4");
    assert_eq!(w.get("/roleAssignments/$count").text, "4");
}

#[test]
fn sigterm_exits_cleanly_and_the_file_reopens() {
    let w = World::new();
    let sid = w.register(&new_sub());
    let u = w.user("Sig Term");
    w.assign(&sid, READER, &u, "Eligible", "P1D");
    let World { mut s, admin } = w;
    assert!(s.stop(), "SIGTERM → exit status success; log:\n{}", s.log());
    assert!(!s.log().contains("panicked"), "{}", s.log());
    let w = World::on(s.restart());
    assert_eq!(
        w.get_as(&admin, &format!("/resources/{sid}/roleAssignments/$count"))
            .text,
        "1"
    );
    assert_eq!(w.s.call("GET", "/readyz", None, None).status, 200);
    let World { mut s, .. } = w;
    assert!(s.stop());
}

// ----- Property: no input yields a 5xx, and every 4xx is a Graph error body -----

/// Ids of a small live tenant the random inputs draw on.
struct Live {
    w: World,
    sid: String,
    setting: String,
    pools: Pools,
    users: Vec<String>,
}

/// What random values are drawn from: anything, and live ids by kind.
#[derive(Clone)]
struct Pools {
    any: Vec<String>,
    resources: Vec<String>,
    roles: Vec<String>,
    subjects: Vec<String>,
    eligibles: Vec<String>,
    sub_arm: String,
}

fn live() -> Live {
    let w = World::new();
    let sub = new_sub();
    let rg = format!("{sub}/resourceGroups/rg-prop");
    w.register(&rg);
    let (sid, gid) = (w.rid(&sub), w.rid(&rg));
    let u = w.user("Pat Property");
    let n = w.user("Nat Nobody");
    let eligible = w.assign(&sid, CONTRIBUTOR, &u, "Eligible", "P30D");
    let role = w.role(&sid, CONTRIBUTOR);
    let setting = w.setting(&role)["id"].as_str().unwrap().to_string();
    let strings: Vec<String> = [
        sid.as_str(),
        gid.as_str(),
        u.as_str(),
        n.as_str(),
        eligible.as_str(),
        role.as_str(),
        setting.as_str(),
        &sub,
        &rg,
        "AdminAdd",
        "UserAdd",
        "AdminRemove",
        "UserRemove",
        "AdminUpdate",
        "AdminExtend",
        "AdminRenew",
        "UserExtend",
        "UserRenew",
        "Eligible",
        "Active",
        "Once",
        "PT1H",
        "PT2S",
        "P1D",
        "P9999D",
        "9:00:00",
        "1 day, 2:00:00",
        "PT0S",
        "-PT1H",
        "2026-01-01T00:00:00Z",
        "2999-01-01T00:00:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "not a date",
        "",
        "ExpirationRule",
        "MfaRule",
        "JustificationRule",
        "ApprovalRule",
        "TicketingRule",
        "NotificationRule",
        "/providers/Microsoft.Management/managementGroups/mgp",
        "/subscriptions/",
        "AdminApproved",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let users = vec![w.admin.clone(), w.token(&u), w.token(&n)];
    let roles = vec![
        role.clone(),
        w.role(&sid, READER),
        w.role(&sid, OWNER),
        w.role(&gid, READER),
    ];
    let pools = Pools {
        any: strings,
        resources: vec![sid.clone(), gid],
        roles,
        subjects: vec![u, n],
        eligibles: vec![eligible],
        sub_arm: sub,
    };
    Live {
        w,
        sid,
        setting,
        pools,
        users,
    }
}

const FIELDS: &[&str] = &[
    "type",
    "assignmentState",
    "resourceId",
    "roleDefinitionId",
    "subjectId",
    "reason",
    "schedule",
    "startDateTime",
    "endDateTime",
    "stopDateTime",
    "duration",
    "linkedEligibleRoleAssignmentId",
    "ticketInfo",
    "ticketNumber",
    "emergency",
    "externalId",
    "displayName",
    "parentExternalId",
    "adminEligibleSettings",
    "adminMemberSettings",
    "userEligibleSettings",
    "userMemberSettings",
    "ruleIdentifier",
    "setting",
    "@odata.type",
    "id",
    "Enabled",
    "Approvers",
];

fn leaf(pool: Vec<String>) -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,24}".prop_map(Value::String),
        "(/subscriptions/[0-9a-f-]{0,40}|/providers/Microsoft.Management/managementGroups/[a-z]{0,6})(/resourceGroups/[a-zA-Z .()-]{0,8})?(/providers/[A-Za-z.]{0,12}/[a-z]{0,6}/[a-z]{0,4}){0,2}/?"
            .prop_map(Value::String),
        proptest::sample::select(pool.clone()).prop_map(Value::String),
        proptest::sample::select(pool).prop_map(Value::String),
    ]
    .boxed()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => proptest::sample::select(FIELDS).prop_map(str::to_string), 1 => "\\PC{0,12}"]
}

fn value(pool: Vec<String>) -> BoxedStrategy<Value> {
    leaf(pool)
        .prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A JSON object body with (mostly) meaningful keys.
fn body(pool: Vec<String>) -> impl Strategy<Value = String> {
    let obj = prop::collection::btree_map(key(), value(pool.clone()), 0..10)
        .prop_map(|m| Value::Object(m.into_iter().collect()).to_string());
    prop_oneof![
        8 => obj,
        1 => value(pool).prop_map(|v| v.to_string()),
        1 => "\\PC{0,40}",
    ]
}

/// A string of the pool (ids, enum values, dates, durations) most of the time.
fn pick(pool: Vec<String>) -> BoxedStrategy<Value> {
    prop_oneof![6 => proptest::sample::select(pool.clone()).prop_map(Value::String), 1 => leaf(pool)].boxed()
}

/// Mostly one of `values`, sometimes anything.
fn one_of(values: Vec<String>, pool: Vec<String>) -> BoxedStrategy<Value> {
    prop_oneof![8 => proptest::sample::select(values).prop_map(Value::String), 1 => pick(pool)]
        .boxed()
}

/// `key: value` with probability `p`.
fn entry(
    key: &'static str,
    p: f64,
    value: BoxedStrategy<Value>,
) -> BoxedStrategy<Option<(String, Value)>> {
    prop::option::weighted(p, value)
        .prop_map(move |v| v.map(|v| (key.to_string(), v)))
        .boxed()
}

fn object(entries: Vec<BoxedStrategy<Option<(String, Value)>>>) -> BoxedStrategy<Value> {
    entries
        .prop_map(|kv| Value::Object(kv.into_iter().flatten().collect()))
        .boxed()
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A request body shaped like a real one, with random holes and odd values.
fn request_body(p: Pools) -> impl Strategy<Value = String> {
    let pool = p.any.clone();
    let dates = strs(&[
        "2026-01-01T00:00:00Z",
        "2999-01-01T00:00:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2030-06-01T12:00:00+02:00",
        "yesterday",
    ]);
    let durations = strs(&[
        "PT1H",
        "PT2S",
        "P1D",
        "P30D",
        "P9999D",
        "9:00:00",
        "1 day, 2:00:00",
        "PT0S",
        "-PT1H",
        "PT",
        "P1Y",
    ]);
    let schedule = object(vec![
        entry(
            "type",
            0.5,
            one_of(strs(&["Once", "Recurring"]), pool.clone()),
        ),
        entry("startDateTime", 0.4, one_of(dates.clone(), pool.clone())),
        entry("endDateTime", 0.3, one_of(dates.clone(), pool.clone())),
        entry("stopDateTime", 0.1, one_of(dates, pool.clone())),
        entry("duration", 0.7, one_of(durations, pool.clone())),
    ]);
    let types = strs(&[
        "AdminAdd",
        "UserAdd",
        "AdminRemove",
        "UserRemove",
        "AdminUpdate",
        "AdminExtend",
        "AdminRenew",
        "UserExtend",
        "UserRenew",
        "adminAdd",
    ]);
    let structured = object(vec![
        entry("type", 0.95, one_of(types, pool.clone())),
        entry(
            "assignmentState",
            0.95,
            one_of(strs(&["Eligible", "Active"]), pool.clone()),
        ),
        entry(
            "resourceId",
            0.95,
            one_of(p.resources.clone(), pool.clone()),
        ),
        entry(
            "roleDefinitionId",
            0.95,
            one_of(p.roles.clone(), pool.clone()),
        ),
        entry("subjectId", 0.95, one_of(p.subjects.clone(), pool.clone())),
        entry(
            "reason",
            0.8,
            prop_oneof![4 => "\\PC{0,20}".prop_map(Value::String), 1 => leaf(pool.clone())].boxed(),
        ),
        entry(
            "linkedEligibleRoleAssignmentId",
            0.4,
            one_of(p.eligibles.clone(), pool.clone()),
        ),
        entry(
            "schedule",
            0.85,
            prop_oneof![6 => schedule, 1 => leaf(pool.clone())].boxed(),
        ),
        entry(
            "ticketInfo",
            0.15,
            object(vec![
                entry("ticketNumber", 0.8, pick(pool.clone())),
                entry("ticketSystem", 0.8, pick(pool.clone())),
            ]),
        ),
        entry(
            "emergency",
            0.15,
            prop_oneof![any::<bool>().prop_map(Value::Bool), leaf(pool.clone())].boxed(),
        ),
        entry(
            "@odata.type",
            0.1,
            Just(json!("#microsoft.graph.governanceRoleAssignmentRequest")).boxed(),
        ),
    ])
    .prop_map(|v| v.to_string());
    prop_oneof![6 => structured, 1 => body(pool)]
}

/// A register body: mostly a well-formed ARM id (new or known), sometimes a name and a parent.
fn register_body(p: Pools) -> impl Strategy<Value = String> {
    let mg = "/providers/Microsoft.Management/managementGroups/mgp".to_string();
    let root = prop_oneof![
        Just(p.sub_arm.clone()),
        "/subscriptions/[0-9a-f]{8}-0000-4000-8000-[0-9a-f]{12}",
        Just(mg.clone()),
        "/providers/Microsoft.Management/managementGroups/[a-zA-Z0-9]{1,6}",
    ];
    let rg = prop::option::of("[a-zA-Z0-9._()-]{1,8}");
    let res = prop::option::of((
        proptest::sample::select(
            &[
                "Microsoft.Compute/virtualMachines",
                "Microsoft.Storage/storageAccounts",
                "Microsoft.Web/sites",
                "Microsoft.Compute/virtualMachines/x/extensions",
            ][..],
        ),
        "[a-z0-9]{1,6}",
    ));
    let valid = (root, rg, res).prop_map(|(root, rg, res)| {
        let mut arm = root;
        if let Some(rg) = rg {
            arm.push_str(&format!("/resourceGroups/{rg}"));
        }
        if let Some((t, n)) = res {
            arm.push_str(&format!("/providers/{t}/{n}"));
        }
        Value::String(arm)
    });
    let arm = prop_oneof![
        5 => valid.boxed(),
        2 => "(/subscriptions/[0-9a-f-]{0,40}|/providers/Microsoft.Management/managementGroups/[a-zA-Z0-9(]{0,6})(/resourceGroups/[a-zA-Z0-9 .()_-]{0,8})?(/providers/[A-Za-z0-9.]{0,14}(/[a-zA-Z]{0,8}/[a-z0-9?%]{0,4}){0,3})?/?"
            .prop_map(Value::String)
            .boxed(),
        1 => pick(p.any.clone()),
    ]
    .boxed();
    let structured = object(vec![
        entry("externalId", 0.95, arm.clone()),
        entry("displayName", 0.3, pick(p.any.clone())),
        entry(
            "parentExternalId",
            0.25,
            prop_oneof![Just(Value::String(mg)), arm].boxed(),
        ),
    ])
    .prop_map(|v| v.to_string());
    prop_oneof![5 => structured, 1 => body(p.any)]
}

/// A role-setting PATCH body: rule collections of rules whose settings are random JSON text.
fn patch_body(pool: Vec<String>) -> impl Strategy<Value = String> {
    let rule_id = prop_oneof![
        proptest::sample::select(
            &[
                "ExpirationRule",
                "MfaRule",
                "JustificationRule",
                "ApprovalRule",
                "TicketingRule",
                "NotificationRule"
            ][..]
        )
        .prop_map(str::to_string),
        "\\PC{0,10}",
    ];
    let setting = prop_oneof![
        value(pool.clone()).prop_map(|v| Value::String(v.to_string())),
        prop::collection::btree_map(
            proptest::sample::select(
                &[
                    "permanentAssignment",
                    "maximumGrantPeriodInMinutes",
                    "mfaRequired",
                    "required",
                    "ticketingRequired",
                    "Enabled",
                    "Approvers",
                    "RequiredApprovals",
                    "ApprovalTimeoutInMinutes",
                    "AllowEmergencyBypass"
                ][..]
            )
            .prop_map(str::to_string),
            value(pool.clone()),
            0..4
        )
        .prop_map(|m| Value::String(Value::Object(m.into_iter().collect()).to_string())),
        value(pool.clone()),
    ];
    let rule = (rule_id, setting).prop_map(|(r, s)| json!({"ruleIdentifier": r, "setting": s}));
    let collection = prop_oneof![4 => prop::collection::vec(rule, 0..4).prop_map(Value::Array), 1 => value(pool.clone())];
    let name = prop_oneof![
        proptest::sample::select(
            &[
                "adminEligibleSettings",
                "adminMemberSettings",
                "userEligibleSettings",
                "userMemberSettings"
            ][..]
        )
        .prop_map(str::to_string),
        key(),
    ];
    prop_oneof![
        6 => prop::collection::btree_map(name, collection, 0..4).prop_map(|m| Value::Object(m.into_iter().collect()).to_string()),
        1 => body(pool),
    ]
}

const FILTER_WORDS: &[&str] = &[
    "resourceId",
    "subjectId",
    "type",
    "displayName",
    "status/subStatus",
    "subject/id",
    "roleDefinition/resource/id",
    "assignmentState",
    "startDateTime",
    "endDateTime",
    "externalId",
    "Type",
    "nope",
    "eq",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "and",
    "or",
    "not",
    "in",
    "(",
    ")",
    ",",
    "'x'",
    "'Eligible'",
    "'subscription'",
    "'",
    "''",
    "contains(",
    "startswith(",
    "endswith(",
    "tolower(",
    "toupper(",
    "1",
    "-1",
    "1.5",
    "2026-01-01T00:00:00Z",
    "null",
    "true",
    "false",
    "$",
    "/",
    "any(t:t/id eq 'x')",
    "99999999999999999999",
    "00000000-0000-0000-0000-000000000000",
    "asc",
    "desc",
    "$select=",
    "$expand=",
    "$filter=",
    ";",
    "=",
    "*",
    "parent",
    "subject",
    "roleDefinition",
    "resource",
    "roleSetting",
    "linkedEligibleRoleAssignment",
    "id",
];

fn option_text() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => prop::collection::vec((proptest::sample::select(FILTER_WORDS), proptest::sample::select(&[" ", "", "  ", "/", ","][..])), 0..14)
            .prop_map(|v| v.into_iter().map(|(w, s)| format!("{w}{s}")).collect::<String>()),
        1 => "\\PC{0,40}",
        1 => "[()',; =$a-z/]{0,30}",
    ]
}

/// Percent-encodes every byte but unreserved ones.
fn enc_all(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Case {
    caller: usize,
    request: String,
    register: String,
    patch: String,
    patch_target: bool,
    list: usize,
    options: Vec<(usize, String)>,
}

fn case(p: Pools) -> impl Strategy<Value = Case> {
    (
        0..3usize,
        request_body(p.clone()),
        register_body(p.clone()),
        patch_body(p.any),
        any::<bool>(),
        0..LISTS.len(),
        prop::collection::vec((0..OPTIONS.len(), option_text()), 0..4),
    )
        .prop_map(
            |(caller, request, register, patch, patch_target, list, options)| Case {
                caller,
                request,
                register,
                patch,
                patch_target,
                list,
                options,
            },
        )
}

const LISTS: &[&str] = &[
    "/resources",
    "/roleDefinitions",
    "/roleSettings",
    "/roleAssignments",
    "/roleAssignmentRequests",
    "/resources/{sid}/roleAssignments",
    "/resources/{sid}/roleAssignmentRequests",
    "/roleAssignments/export",
    "/roleAssignments/export()",
    "/roleAssignments/$count",
    "/resources/{sid}",
    "/resources/{sid}/parent",
    "/roleSettings/{setting}",
    "/resources/$count",
];
const OPTIONS: &[&str] = &[
    "$filter", "$orderby", "$expand", "$select", "$top", "$skip", "$count", "filter", "$search",
];

/// Checks one reply: never 5xx; a 4xx carries the Graph envelope (the SCIM one under /scim).
fn check(what: &str, r: &Reply) -> Result<(), TestCaseError> {
    prop_assert!(r.status < 500, "{what}: {} {}", r.status, r.text);
    prop_assert!(r.header("request-id").is_some(), "{what}: no request-id");
    if r.status >= 400 {
        let e = &r.json["error"];
        prop_assert!(
            e["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{what}: {} {}",
            r.status,
            r.text
        );
        prop_assert!(e["message"].is_string(), "{what}: {}", r.text);
        prop_assert_eq!(
            e["innerError"]["request-id"].as_str(),
            r.header("request-id"),
            "{}: {}",
            what,
            r.text
        );
        prop_assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: {:?}",
            r.headers
        );
    }
    Ok(())
}

#[test]
fn random_bodies_and_query_options_never_yield_5xx() {
    let l = live();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let s = &l.w.s;
    let result = runner.run(&case(l.pools.clone()), |c| {
        let token = &l.users[c.caller];
        let r = s.raw(
            "POST",
            &s.pim("/roleAssignmentRequests"),
            Some(token),
            Some(&c.request),
            &[],
        );
        check(&format!("POST roleAssignmentRequests {}", c.request), &r)?;
        prop_assert!(
            matches!(r.status, 201 | 400 | 403 | 404 | 409 | 413),
            "{} {}",
            r.status,
            r.text
        );
        let r = s.raw(
            "POST",
            &s.pim(&format!("/resources/{}/roleAssignmentRequests", l.sid)),
            Some(token),
            Some(&c.request),
            &[],
        );
        check(
            &format!("POST nested roleAssignmentRequests {}", c.request),
            &r,
        )?;
        let r = s.raw(
            "POST",
            &s.pim("/resources/register"),
            Some(token),
            Some(&c.register),
            &[],
        );
        check(&format!("POST register {}", c.register), &r)?;
        prop_assert!(
            matches!(r.status, 200 | 400 | 403),
            "{} {}",
            r.status,
            r.text
        );
        let target = if c.patch_target {
            l.setting.clone()
        } else {
            "00000000-0000-0000-0000-00000000000f".to_string()
        };
        let r = s.raw(
            "PATCH",
            &s.pim(&format!("/roleSettings/{target}")),
            Some(token),
            Some(&c.patch),
            &[],
        );
        check(&format!("PATCH roleSettings {}", c.patch), &r)?;
        prop_assert!(
            matches!(r.status, 204 | 400 | 403),
            "{} {}",
            r.status,
            r.text
        );
        let path = LISTS[c.list]
            .replace("{sid}", &l.sid)
            .replace("{setting}", &l.setting);
        let query: Vec<String> = c
            .options
            .iter()
            .map(|(o, v)| format!("{}={}", enc_all(OPTIONS[*o]), enc_all(v)))
            .collect();
        let url = format!("{path}?{}", query.join("&"));
        let r = s.get(&s.pim(&url), token);
        check(&format!("GET {url}"), &r)?;
        if r.status == 200 && !path.contains("export") && !path.contains("$count") {
            prop_assert!(r.json.is_object(), "GET {url}: not JSON: {}", r.text);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nserver log:\n{}", l.w.s.log());
    }
    // Still healthy, and nothing panicked.
    assert_eq!(l.w.s.call("GET", "/readyz", None, None).status, 200);
    assert!(!l.w.s.log().contains("panicked"), "{}", l.w.s.log());
}
