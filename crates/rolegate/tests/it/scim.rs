//! The SCIM 2.0 service provider (RFC 7643/7644, decisions.md §3, §13) as identity
//! providers use it: every filter operator, paging and projection, PATCH in the forms
//! Entra ID and Okta send (disabling a user and removing a group member end activations),
//! PUT, DELETE, ETags, discovery, uniqueness, the provisioning token of
//! `--scim-token-file`, and `scim2-tester` (PyPI) when `ROLEGATE_PYTHON` has it.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{
    CONTRIBUTOR, OWNER, Tenant, activation, create_group, eligible_user, lasting, status_of,
};
use crate::harness::{self, Reply, Server, uuid_like};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Percent-encodes a SCIM filter (or any query value).
fn q(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asserts a SCIM error (RFC 7644 §3.12) with `status` and, when given, `scimType`.
fn assert_scim_error(r: &Reply, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["schemas"], json!([ERROR]), "{}", r.text);
    assert_eq!(r.json["status"], status.to_string(), "{}", r.text);
    assert!(r.json["detail"].is_string(), "{}", r.text);
    assert_eq!(
        r.json["scimType"].as_str(),
        scim_type,
        "scimType of {}",
        r.text
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/scim+json")),
        "{:?}",
        r.headers
    );
}

/// A SCIM client for one server and token.
struct Scim<'a> {
    s: &'a Server,
    token: String,
}

impl Scim<'_> {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let b = body.map(Value::to_string);
        self.s.raw(
            method,
            &format!("/scim/v2{path}"),
            Some(&self.token),
            b.as_deref(),
            headers,
        )
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, &[])
    }

    fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(&body), &[])
    }

    fn patch(&self, path: &str, ops: Value) -> Reply {
        self.call(
            "PATCH",
            path,
            Some(&json!({"schemas": [PATCH_OP], "Operations": ops})),
            &[],
        )
    }

    /// Creates a user; returns its body.
    fn user(&self, body: Value) -> Value {
        let mut body = body;
        body["schemas"] = json!([USER]);
        let r = self.post("/Users", body);
        assert_eq!(r.status, 201, "{}", r.text);
        r.json
    }

    fn group(&self, name: &str, members: &[&str]) -> String {
        let r = self.post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": name, "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>()}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        id(&r.json)
    }

    /// The ids a filtered list of `coll` returns (all of one page).
    fn filter(&self, coll: &str, f: &str) -> BTreeSet<String> {
        let r = self.get(&format!("/{coll}?filter={}&count=1000", q(f)));
        assert_eq!(r.status, 200, "{f}: {}", r.text);
        let ids: BTreeSet<String> = r.json["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(id)
            .collect();
        assert_eq!(r.json["totalResults"], ids.len(), "{f}: {}", r.text);
        ids
    }
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {v}"))
        .to_string()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn scim(s: &Server) -> Scim<'_> {
    Scim {
        s,
        token: harness::token(harness::ADMIN, true),
    }
}

#[test]
fn every_filter_operator_runs_on_the_server() {
    let s = Server::start();
    let c = scim(&s);
    let ada = id(&c.user(json!({
        "userName": "ada@example.test", "displayName": "Ada Lovelace", "externalId": "EXT-ada",
        "title": "Countess", "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@work.example", "type": "work", "primary": true}, {"value": "ada@home.example", "type": "home"}],
        ENTERPRISE: {"department": "Engines"},
    })));
    let bob = id(&c.user(json!({
        "userName": "bob@example.test", "displayName": "Bob Babbage", "externalId": "ext-bob",
        "emails": [{"value": "bob@home.example", "type": "home"}],
    })));
    let cy = id(&c.user(json!({
        "userName": "cy@other.test", "active": false, "title": "",
        "emails": [{"value": "cy@work.example", "type": "work"}],
    })));
    let all = set(&[&ada, &bob, &cy]);
    let f = |x: &str| c.filter("Users", x);
    // Comparison operators; attribute names and operators in any case.
    assert_eq!(f(r#"userName eq "ADA@example.test""#), set(&[&ada]));
    assert_eq!(f(r#"USERNAME EQ "bob@example.test""#), set(&[&bob]));
    assert_eq!(f(r#"userName ne "ada@example.test""#), set(&[&bob, &cy]));
    assert_eq!(f(r#"userName co "EXAMPLE""#), set(&[&ada, &bob]));
    assert_eq!(f(r#"userName sw "b""#), set(&[&bob]));
    assert_eq!(f(r#"userName ew ".test""#), all);
    assert_eq!(f(r#"userName ew "other.test""#), set(&[&cy]));
    assert_eq!(f(r#"userName gt "bob@example.test""#), set(&[&cy]));
    assert_eq!(f(r#"userName ge "bob@example.test""#), set(&[&bob, &cy]));
    assert_eq!(f(r#"userName lt "bob@example.test""#), set(&[&ada]));
    assert_eq!(f(r#"userName le "bob@example.test""#), set(&[&ada, &bob]));
    assert_eq!(f("title pr"), set(&[&ada]), "an empty title is not present");
    assert_eq!(f(r#"displayName eq "ada lovelace""#), set(&[&ada]));
    assert_eq!(f(r#"name.givenName sw "ad""#), set(&[&ada]));
    // externalId and id are case-exact.
    assert_eq!(f(r#"externalId eq "EXT-ada""#), set(&[&ada]));
    assert_eq!(f(r#"externalId eq "ext-ada""#), BTreeSet::new());
    assert_eq!(f(&format!(r#"id eq "{bob}""#)), set(&[&bob]));
    // Booleans, with an absent `active` meaning true.
    assert_eq!(f("active eq false"), set(&[&cy]));
    assert_eq!(f("active eq true"), set(&[&ada, &bob]));
    assert_eq!(f("active ne true"), set(&[&cy]));
    // Logic and parentheses; `not` of an absent value is true.
    assert_eq!(
        f(r#"userName sw "a" or userName sw "b" and active eq false"#),
        set(&[&ada])
    );
    assert_eq!(
        f(r#"(userName sw "a" or userName sw "b") and active eq true"#),
        set(&[&ada, &bob])
    );
    assert_eq!(f(r#"not (title pr)"#), set(&[&bob, &cy]));
    assert_eq!(f(r#"not(userName co "example")"#), set(&[&cy]));
    // Multi-valued attributes.
    assert_eq!(f(r#"emails.value co "@home.""#), set(&[&ada, &bob]));
    assert_eq!(f(r#"emails eq "cy@work.example""#), set(&[&cy]));
    assert_eq!(f(r#"emails[type eq "work"]"#), set(&[&ada, &cy]));
    assert_eq!(
        f(r#"emails[type eq "work" and value sw "ada"]"#),
        set(&[&ada])
    );
    assert_eq!(
        f(r#"emails[type eq "work"].value eq "cy@work.example""#),
        set(&[&cy])
    );
    assert_eq!(f("emails pr"), all);
    assert_eq!(
        f(&format!(r#"{ENTERPRISE}:department eq "engines""#)),
        set(&[&ada])
    );
    assert_eq!(
        f(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob@example.test""#),
        set(&[&bob])
    );
    // Dates.
    let created = c.get(&format!("/Users/{bob}")).json["meta"]["lastModified"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        f(&format!(r#"meta.lastModified gt "{created}""#)),
        set(&[&cy])
    );
    assert_eq!(
        f(&format!(r#"meta.lastModified le "{created}""#)),
        set(&[&ada, &bob])
    );
    assert_eq!(
        f(&format!(r#"meta.created ge "{created}""#)),
        set(&[&bob, &cy])
    );
    assert_eq!(
        f(r#"meta.created lt "2000-01-01T00:00:00Z""#),
        BTreeSet::new()
    );
    assert_eq!(f(r#"meta.resourceType eq "User""#), all);
    // Groups: displayName and membership.
    let eng = c.group("Engineers", &[&ada, &bob]);
    let ops = c.group("Operators", &[&cy]);
    let g = |x: &str| c.filter("Groups", x);
    assert_eq!(g(r#"displayName eq "engineers""#), set(&[&eng]));
    assert_eq!(g(&format!(r#"members[value eq "{cy}"]"#)), set(&[&ops]));
    assert_eq!(
        g(&format!(r#"id eq "{eng}" and members eq "{bob}""#)),
        set(&[&eng])
    );
    assert_eq!(g(&format!(r#"members.value eq "{cy}""#)), set(&[&ops]));
    assert_eq!(
        f(&format!(r#"groups.value eq "{eng}""#)),
        set(&[&ada, &bob])
    );
    // Filters the server cannot run are 400 invalidFilter.
    for bad in [
        r#"userName xx "a""#,
        r#"userName eq"#,
        r#"(userName eq "a""#,
        r#"nope eq "a""#,
        r#"active eq "perhaps""#,
        r#"meta.created sw "2020""#,
        r#"userName eq unquoted"#,
        r#"name eq "x""#,
    ] {
        assert_scim_error(
            &c.get(&format!("/Users?filter={}", q(bad))),
            400,
            Some("invalidFilter"),
        );
    }
    assert_scim_error(
        &c.get(&format!("/Groups?filter={}", q(r#"userName eq "a""#))),
        400,
        Some("invalidFilter"),
    );
    // `/.search` takes the same filter in a body; the root one spans both types.
    let r = c.post(
        "/Users/.search",
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName sw \"a\"", "attributes": ["userName"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["totalResults"], 1);
    assert_eq!(r.json["Resources"][0]["userName"], "ada@example.test");
    assert!(r.json["Resources"][0].get("emails").is_none());
    let r = c.post(
        "/.search",
        json!({"filter": format!("id eq \"{ada}\" or id eq \"{eng}\"")}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["totalResults"], 2, "{}", r.text);
}

#[test]
fn paging_sorting_and_projection() {
    let s = Server::start();
    let c = scim(&s);
    let mut ids = Vec::new();
    for n in ["g", "c", "e", "a", "f", "b", "d"] {
        ids.push(id(&c.user(json!({"userName": format!("{n}@example.test"), "emails": [{"value": format!("{n}@x.test")}]}))));
    }
    let page = |qs: &str| {
        let r = c.get(&format!("/Users?{qs}"));
        assert_eq!(r.status, 200, "{qs}: {}", r.text);
        r.json
    };
    let names = |v: &Value| -> Vec<String> {
        v["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["userName"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    // Creation order by default; startIndex is 1-based.
    let p = page("startIndex=1&count=3");
    assert_eq!(
        (&p["totalResults"], &p["startIndex"], &p["itemsPerPage"]),
        (&json!(7), &json!(1), &json!(3))
    );
    assert_eq!(names(&p), ["g", "c", "e"]);
    assert_eq!(names(&page("startIndex=4&count=3")), ["a", "f", "b"]);
    let p = page("startIndex=7&count=3");
    assert_eq!(
        (names(&p), &p["itemsPerPage"]),
        (vec!["d".to_string()], &json!(1))
    );
    assert_eq!(page("startIndex=20").json_len(), 0);
    // Out-of-range values are clamped (RFC 7644 §3.4.2.4).
    assert_eq!(page("startIndex=0&count=2")["startIndex"], 1);
    let p = page("count=0");
    assert_eq!((&p["totalResults"], p.json_len()), (&json!(7), 0));
    assert_eq!(page("count=-4").json_len(), 0);
    assert_scim_error(&c.get("/Users?count=many"), 400, Some("invalidValue"));
    // Sorting.
    assert_eq!(
        names(&page("sortBy=userName")),
        ["a", "b", "c", "d", "e", "f", "g"]
    );
    assert_eq!(
        names(&page("sortBy=USERNAME&sortOrder=descending&count=2")),
        ["g", "f"]
    );
    assert_eq!(
        names(&page(
            "sortBy=userName&startIndex=3&count=2&filter=userName%20ne%20%22a%40example.test%22"
        )),
        ["d", "e"]
    );
    // Projection.
    let p = page("attributes=userName&count=1");
    let r = &p["Resources"][0];
    let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["id", "schemas", "userName"]));
    let p = page("excludedAttributes=emails,meta&count=1");
    let r = &p["Resources"][0];
    assert!(
        r.get("emails").is_none() && r.get("meta").is_none() && r.get("userName").is_some(),
        "{r}"
    );
    let one = c.get(&format!("/Users/{}?attributes=emails.value", ids[0]));
    assert_eq!(
        one.json["emails"],
        json!([{"value": "g@x.test"}]),
        "{}",
        one.text
    );
    assert!(one.json.get("userName").is_none());
}

trait Resources {
    fn json_len(&self) -> usize;
}

impl Resources for Value {
    fn json_len(&self) -> usize {
        self["Resources"].as_array().map_or(0, Vec::len)
    }
}

/// Active assignments of `user` on the subscription, as the administrator lists them.
fn activations_of(t: &Tenant, user: &str) -> usize {
    t.assignments(&t.sub)
        .iter()
        .filter(|a| a["subjectId"] == user && a["assignmentState"] == "Active")
        .count()
}

#[test]
fn patch_as_entra_id_sends_it() {
    let t = Tenant::start();
    let c = scim(&t.s);
    // Disabling a user ends its activation and cancels its pending requests.
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT4H"),
    );
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"), "{}", r.text);
    assert_eq!(activations_of(&t, &alice), 1);
    let r = c.patch(
        &format!("/Users/{alice}"),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["active"], false);
    assert_eq!(activations_of(&t, &alice), 0, "the activation ended");
    assert_eq!(
        t.assignments(&t.sub)
            .iter()
            .filter(|a| a["subjectId"] == alice.as_str())
            .count(),
        1,
        "the eligible assignment stays"
    );
    assert_eq!(
        t.s.get(&t.s.pim("/resources"), &alice_t).status,
        403,
        "a disabled user cannot sign in"
    );
    // Entra's attribute updates.
    let r = c.patch(
        &format!("/Users/{alice}"),
        json!([
            {"op": "Replace", "path": "active", "value": "True"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "alice@work.example"},
            {"op": "Replace", "path": "name.givenName", "value": "Alice"},
            {"op": "Add", "path": "name.familyName", "value": "Liddell"},
            {"op": "Replace", "path": "displayName", "value": "Alice Liddell"},
            {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": "mgr-1"},
            {"op": "Add", "path": format!("{ENTERPRISE}:department"), "value": "Wonderland"},
            {"op": "Replace", "value": {"title": "Explorer", "preferredLanguage": "en-GB"}},
        ]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let u = c.get(&format!("/Users/{alice}")).json;
    assert_eq!(u["active"], true);
    assert!(
        u["emails"]
            .as_array()
            .unwrap()
            .contains(&json!({"value": "alice@work.example", "type": "work"})),
        "{u}"
    );
    assert_eq!(
        u["name"],
        json!({"givenName": "Alice", "familyName": "Liddell"})
    );
    assert_eq!(u["displayName"], "Alice Liddell");
    assert_eq!(
        u[ENTERPRISE],
        json!({"manager": {"value": "mgr-1"}, "department": "Wonderland"})
    );
    assert_eq!(u["schemas"], json!([USER, ENTERPRISE]));
    assert_eq!(
        (&u["title"], &u["preferredLanguage"]),
        (&json!("Explorer"), &json!("en-GB"))
    );
    // The Graph view follows.
    let subject = t.s.get(
        &t.s.pim(&format!("/roleAssignments/{eligible}/subject")),
        &t.admin,
    );
    assert_eq!(
        subject.json["displayName"], "Alice Liddell",
        "{}",
        subject.text
    );
    // Replacing the work email in place.
    let r = c.patch(
        &format!("/Users/{alice}"),
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "a.liddell@work.example"}]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["emails"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "work")
            .map(|e| e["value"].clone())
            .collect::<Vec<_>>(),
        vec![json!("a.liddell@work.example")]
    );

    // Groups: members added and removed the ways Entra sends them; removing a member ends
    // the activations made through the group.
    let (bob, bob_t) = t.user("bob");
    let (carol, _) = t.user("carol");
    let g = c.group("Owners", &[]);
    let r = c.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": bob}, {"value": carol}]}]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let owner = t.role(&t.sub, OWNER);
    t.admin_add(&t.sub, &owner, &g, "Eligible", lasting("P30D"));
    let r = t.request(&bob_t, &activation(&t.sub, &owner, &bob, None, "PT4H"));
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"), "{}", r.text);
    assert_eq!(activations_of(&t, &bob), 1);
    let r = c.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "Remove", "path": format!("members[value eq \"{bob}\"]")}]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["members"],
        json!([{"value": carol, "type": "User", "$ref": format!("{}/scim/v2/Users/{carol}", t.s.origin)}]),
        "{}",
        r.text
    );
    assert_eq!(
        activations_of(&t, &bob),
        0,
        "the activation through the group ended"
    );
    assert_eq!(
        t.s.get(&t.s.pim(&format!("/resources/{}", t.sub)), &bob_t)
            .status,
        403
    );
    // Entra's other removal form: `members` with a value list.
    let r = c.patch(
        &format!("/Groups/{g}"),
        json!([
            {"op": "Remove", "path": "members", "value": [{"value": carol}]},
            {"op": "Replace", "path": "displayName", "value": "Owners (renamed)"},
        ]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json.get("members").is_none(), "{}", r.text);
    assert_eq!(r.json["displayName"], "Owners (renamed)");
    // The user's read-only `groups` follow membership.
    let r = c.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "add", "path": "members", "value": {"value": bob}}]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let u = c.get(&format!("/Users/{bob}")).json;
    assert_eq!(u["groups"][0]["value"], g.as_str(), "{u}");
    assert_eq!(u["groups"][0]["type"], "direct");
    // Invalid operations change nothing.
    let before = c.get(&format!("/Groups/{g}")).json;
    for (ops, kind) in [
        (
            json!([{"op": "Add", "path": "members", "value": [{"value": "no-such-subject"}]}]),
            "invalidValue",
        ),
        (json!([{"op": "Remove"}]), "noTarget"),
        (
            json!([{"op": "Replace", "path": "id", "value": "x"}]),
            "mutability",
        ),
        (
            json!([{"op": "Replace", "path": "bogus[", "value": "x"}]),
            "invalidPath",
        ),
        (
            json!([{"op": "Jump", "path": "displayName"}]),
            "invalidSyntax",
        ),
        (
            json!([{"op": "Remove", "path": "displayName"}]),
            "invalidValue",
        ),
    ] {
        let r = c.patch(&format!("/Groups/{g}"), ops.clone());
        assert_scim_error(&r, 400, Some(kind));
    }
    assert_eq!(c.get(&format!("/Groups/{g}")).json, before);
}

#[test]
fn patch_as_okta_sends_it() {
    let t = Tenant::start();
    let c = scim(&t.s);
    let (dave, dave_t, role, eligible) = eligible_user(&t, "dave", "P30D");
    let r = t.request(
        &dave_t,
        &activation(&t.sub, &role, &dave, Some(&eligible), "PT2H"),
    );
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"), "{}", r.text);
    // Okta deactivates with a path-less replace.
    let r = c.patch(
        &format!("/Users/{dave}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(activations_of(&t, &dave), 0);
    // Repeating it changes nothing, not even the version.
    let v = r.json["meta"]["version"].clone();
    let r = c.patch(
        &format!("/Users/{dave}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    );
    assert_eq!(r.json["meta"]["version"], v);
    // Okta's group pushes: a rename carrying the id, member adds with `display`, removal
    // by filter.
    let (erin, _) = t.user("erin");
    let (fay, _) = t.user("fay");
    let g = create_group(&t.s, &t.admin, "Okta Group", &[]);
    let r = c.patch(
        &format!("/Groups/{g}"),
        json!([
            {"op": "replace", "value": {"id": g, "displayName": "Okta Group 2"}},
            {"op": "add", "path": "members", "value": [{"value": erin, "display": "erin"}, {"value": fay, "display": "fay"}]},
        ]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["displayName"], "Okta Group 2");
    assert_eq!(r.json["id"], g.as_str());
    let r = c.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{erin}\"]")}]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let members: Vec<&Value> = r.json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["value"])
        .collect();
    assert_eq!(members, vec![&json!(fay)]);
    // And its PUT of a whole user.
    let r = c.call(
        "PUT",
        &format!("/Users/{dave}"),
        Some(&json!({"schemas": [USER], "userName": c.get(&format!("/Users/{dave}")).json["userName"], "name": {"givenName": "Dave", "familyName": "Doe"}, "active": true, "emails": [{"value": "dave@example.test", "primary": true, "type": "work"}]})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["active"], true);
    assert_eq!(
        t.s.get(&t.s.pim("/resources"), &dave_t).status,
        200,
        "enabled again"
    );
}

#[test]
fn put_replaces_and_delete_removes() {
    let t = Tenant::start();
    let c = scim(&t.s);
    let u = c.user(json!({
        "userName": "pat@example.test", "displayName": "Pat", "title": "Lead", "externalId": "x-pat",
        "emails": [{"value": "pat@example.test", "primary": true}],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
    }));
    let pat = id(&u);
    assert_eq!(u["meta"]["resourceType"], "User");
    assert_eq!(u["meta"]["version"], "W/\"1\"");
    assert_eq!(u["meta"]["created"], u["meta"]["lastModified"]);
    assert_eq!(
        u["meta"]["location"],
        format!("{}/scim/v2/Users/{pat}", t.s.origin)
    );
    // PUT replaces every attribute: those left out are gone; id and meta are the server's.
    let r = c.call(
        "PUT",
        &format!("/Users/{pat}"),
        Some(&json!({"schemas": [USER], "id": "ignored", "userName": "pat@example.test", "displayName": "Patricia", "meta": {"version": "W/\"99\""}})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["id"], pat.as_str());
    assert_eq!(r.json["displayName"], "Patricia");
    assert!(
        r.json.get("title").is_none()
            && r.json.get("phoneNumbers").is_none()
            && r.json.get("externalId").is_none(),
        "{}",
        r.text
    );
    assert_eq!(r.json["meta"]["version"], "W/\"2\"");
    assert_eq!(r.json["meta"]["created"], u["meta"]["created"]);
    assert_eq!(c.get(&format!("/Users/{pat}")).json, r.json);
    assert_scim_error(
        &c.call(
            "PUT",
            &format!("/Users/{pat}"),
            Some(&json!({"displayName": "no userName"})),
            &[],
        ),
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &c.call(
            "PUT",
            "/Users/00000000-0000-0000-0000-000000000000",
            Some(&json!({"userName": "x@y.z"})),
            &[],
        ),
        404,
        None,
    );
    // A group's PUT replaces its members.
    let (m1, _) = t.user("m1");
    let (m2, _) = t.user("m2");
    let g = c.group("Team", &[&m1]);
    let r = c.call(
        "PUT",
        &format!("/Groups/{g}"),
        Some(&json!({"schemas": [GROUP], "displayName": "Team", "members": [{"value": m2}]})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["members"][0]["value"], m2.as_str());
    assert_eq!(r.json["members"].as_array().unwrap().len(), 1);
    // A user's groups' members and versions follow its deletion.
    let before = c.get(&format!("/Groups/{g}")).json["meta"]["version"].clone();
    let r = c.call("DELETE", &format!("/Users/{m2}"), None, &[]);
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty());
    assert_scim_error(&c.get(&format!("/Users/{m2}")), 404, None);
    let after = c.get(&format!("/Groups/{g}")).json;
    assert!(after.get("members").is_none(), "{after}");
    assert_ne!(after["meta"]["version"], before);
    assert_scim_error(
        &c.call("DELETE", &format!("/Users/{m2}"), None, &[]),
        404,
        None,
    );
    assert_eq!(
        c.call("DELETE", &format!("/Groups/{g}"), None, &[]).status,
        204
    );
    assert_scim_error(&c.get(&format!("/Groups/{g}")), 404, None);
    // Ids only, never externalIds, and never the other type's.
    assert_scim_error(&c.get("/Users/x-pat"), 404, None);
    assert_scim_error(&c.get(&format!("/Groups/{pat}")), 404, None);
}

#[test]
fn etags_and_if_match() {
    let s = Server::start();
    let c = scim(&s);
    let u = c.user(json!({"userName": "etag@example.test"}));
    let uid = id(&u);
    let r = c.get(&format!("/Users/{uid}"));
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert_eq!(r.json["meta"]["version"], "W/\"1\"");
    // If-None-Match with the current version: 304.
    let r = c.call(
        "GET",
        &format!("/Users/{uid}"),
        None,
        &[("If-None-Match", "W/\"1\"")],
    );
    assert_eq!(r.status, 304);
    let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "E"}]});
    // A stale If-Match is 412 and changes nothing.
    let r = c.call(
        "PATCH",
        &format!("/Users/{uid}"),
        Some(&body),
        &[("If-Match", "W/\"7\"")],
    );
    assert_scim_error(&r, 412, None);
    assert!(
        c.get(&format!("/Users/{uid}"))
            .json
            .get("displayName")
            .is_none()
    );
    let r = c.call(
        "PATCH",
        &format!("/Users/{uid}"),
        Some(&body),
        &[("If-Match", "W/\"1\"")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("etag"), Some("W/\"2\""));
    assert_eq!(r.json["meta"]["version"], "W/\"2\"");
    assert!(r.json["meta"]["lastModified"].as_str() >= u["meta"]["lastModified"].as_str());
    let put = json!({"schemas": [USER], "userName": "etag@example.test"});
    assert_scim_error(
        &c.call(
            "PUT",
            &format!("/Users/{uid}"),
            Some(&put),
            &[("If-Match", "W/\"1\"")],
        ),
        412,
        None,
    );
    let r = c.call(
        "PUT",
        &format!("/Users/{uid}"),
        Some(&put),
        &[("If-Match", "*")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("etag"), Some("W/\"3\""));
    assert_scim_error(
        &c.call(
            "DELETE",
            &format!("/Users/{uid}"),
            None,
            &[("If-Match", "\"2\"")],
        ),
        412,
        None,
    );
    assert_eq!(
        c.call(
            "DELETE",
            &format!("/Users/{uid}"),
            None,
            &[("If-Match", "\"3\"")]
        )
        .status,
        204
    );
    // Creation answers 201 with Location and ETag.
    let r = c.post("/Groups", json!({"displayName": "G"}));
    assert_eq!(r.status, 201);
    assert_eq!(r.header("location"), r.json["meta"]["location"].as_str());
    assert_eq!(r.header("etag"), Some("W/\"1\""));
}

#[test]
fn discovery_endpoints() {
    let s = Server::start();
    let c = scim(&s);
    let spc = c.get("/ServiceProviderConfig");
    assert_eq!(spc.status, 200, "{}", spc.text);
    assert!(
        spc.header("content-type")
            .is_some_and(|h| h.starts_with("application/scim+json"))
    );
    assert_eq!(spc.json["patch"]["supported"], true);
    assert_eq!(spc.json["filter"]["supported"], true);
    assert_eq!(spc.json["etag"]["supported"], true);
    assert_eq!(spc.json["sort"]["supported"], true);
    assert_eq!(spc.json["bulk"]["supported"], false);
    assert_eq!(spc.json["changePassword"]["supported"], false);
    assert_eq!(
        spc.json["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );
    let rts = c.get("/ResourceTypes");
    assert_eq!(rts.json["totalResults"], 2, "{}", rts.text);
    let user = c.get("/ResourceTypes/User").json;
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(user["schema"], USER);
    assert_eq!(
        user["schemaExtensions"],
        json!([{"schema": ENTERPRISE, "required": false}])
    );
    assert_eq!(c.get("/ResourceTypes/Group").json["endpoint"], "/Groups");
    let schemas = c.get("/Schemas");
    let ids: BTreeSet<&str> = schemas.json["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([USER, GROUP, ENTERPRISE]));
    let u = c.get(&format!("/Schemas/{USER}")).json;
    let user_name = u["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap();
    assert_eq!(
        (
            &user_name["required"],
            &user_name["uniqueness"],
            &user_name["caseExact"]
        ),
        (&json!(true), &json!("server"), &json!(false))
    );
    for path in [
        "/Schemas/urn:nope",
        "/ResourceTypes/Widget",
        "/Widgets",
        "/Users/1/2",
    ] {
        assert_scim_error(&c.get(path), 404, None);
    }
    for m in ["POST", "PUT", "PATCH", "DELETE"] {
        assert_scim_error(&c.call(m, "/ServiceProviderConfig", None, &[]), 405, None);
        assert_scim_error(&c.call(m, "/Schemas", None, &[]), 405, None);
    }
}

#[test]
fn uniqueness_and_input_errors() {
    let s = Server::start();
    let c = scim(&s);
    let a = id(&c.user(json!({"userName": "Uniq@Example.test", "externalId": "hr-1"})));
    let b = id(&c.user(json!({"userName": "other@example.test"})));
    assert_scim_error(
        &c.post("/Users", json!({"userName": "uniq@example.TEST"})),
        409,
        Some("uniqueness"),
    );
    assert_scim_error(
        &c.post(
            "/Users",
            json!({"userName": "new@example.test", "externalId": "hr-1"}),
        ),
        409,
        Some("uniqueness"),
    );
    assert_scim_error(
        &c.post("/Groups", json!({"displayName": "G", "externalId": "hr-1"})),
        409,
        Some("uniqueness"),
    );
    assert_scim_error(
        &c.patch(
            &format!("/Users/{b}"),
            json!([{"op": "replace", "path": "userName", "value": "UNIQ@example.test"}]),
        ),
        409,
        Some("uniqueness"),
    );
    assert_scim_error(
        &c.call(
            "PUT",
            &format!("/Users/{b}"),
            Some(&json!({"userName": "other@example.test", "externalId": "hr-1"})),
            &[],
        ),
        409,
        Some("uniqueness"),
    );
    // Keeping one's own name is no conflict.
    let r = c.patch(
        &format!("/Users/{a}"),
        json!([{"op": "replace", "path": "userName", "value": "UNIQ@example.test"}]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["userName"], "UNIQ@example.test");
    assert_eq!(
        c.filter("Users", "userName pr").len(),
        2,
        "nothing was created"
    );
    // Malformed bodies and values.
    assert_scim_error(
        &s.raw(
            "POST",
            "/scim/v2/Users",
            Some(&c.token),
            Some("{not json"),
            &[],
        ),
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(
        &c.post(
            "/Users",
            json!({"userName": "x@y.z", "active": "sometimes"}),
        ),
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &c.post("/Users", json!({"displayName": "nameless"})),
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &c.post(
            "/Groups",
            json!({"displayName": "G", "members": [{"value": "missing"}]}),
        ),
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &c.call(
            "PATCH",
            &format!("/Users/{a}"),
            Some(&json!({"Operations": "nope"})),
            &[],
        ),
        400,
        Some("invalidSyntax"),
    );
}

/// Writes a token file and returns its path (in a fresh directory).
fn token_file(content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rolegate-scim-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scim-token");
    std::fs::write(&path, content).unwrap();
    path
}

/// Runs `serve` expecting it to refuse to start; returns what it printed.
fn refused_start(token_path: &std::path::Path) -> String {
    let dir = token_path.parent().unwrap();
    let mut child = Command::new(harness::binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth-hs256-secret",
            harness::SECRET,
            "--database",
        ])
        .arg(format!("sqlite://{}", dir.join("db.sqlite").display()))
        .arg("--scim-token-file")
        .arg(token_path)
        .env_remove("ROLEGATE_SCIM_TOKEN_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("serve started with a bad --scim-token-file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn provisioning_token_works_on_scim_only() {
    let secret = format!("scim-secret-{}-0123456789abcdefghij", uuid_like());
    let path = token_file(&format!("  {secret}\n"));
    let path_s = path.display().to_string();
    let t = Tenant::start_with(&["--scim-token-file", &path_s]);
    let c = Scim {
        s: &t.s,
        token: secret.clone(),
    };
    // It provisions.
    let r = c.post(
        "/Users",
        json!({"schemas": [USER], "userName": "prov@example.test"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let uid = id(&r.json);
    assert_eq!(c.get(&format!("/Users/{uid}")).status, 200);
    assert_eq!(c.get("/ServiceProviderConfig").status, 200);
    // The audit log names the provisioning client.
    let audit = t.s.get(
        &format!(
            "/beta/auditLogs/directoryAudits?$filter={}",
            crate::fixture::enc(&format!("targetResources/any(t: t/id eq '{uid}')"))
        ),
        &t.admin,
    );
    assert_eq!(audit.status, 200, "{}", audit.text);
    assert_eq!(
        audit.json["value"][0]["initiatedBy"]["user"]["id"], "scim-provisioning",
        "{}",
        audit.text
    );
    // It is no Graph token.
    let r = t.s.get(&t.s.pim("/resources"), &secret);
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.code(), "InvalidAuthenticationToken");
    // A wrong one is a SCIM 401.
    for wrong in [
        format!("{secret}x"),
        secret[..secret.len() - 1].to_string(),
        "x".repeat(40),
    ] {
        let r = t.s.raw("GET", "/scim/v2/Users", Some(&wrong), None, &[]);
        assert_scim_error(&r, 401, None);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    let r = t.s.raw(
        "GET",
        "/scim/v2/Users",
        None,
        None,
        &[("Authorization", &format!("Basic {secret}"))],
    );
    assert_scim_error(&r, 401, None);
    // Tenant administrators' tokens keep working.
    assert_eq!(t.s.get("/scim/v2/Users", &t.admin).status, 200);
    assert_eq!(
        t.s.get(&format!("/scim/v2/Users/{uid}"), &t.admin).json["userName"],
        "prov@example.test"
    );
    // The secret is never logged.
    assert!(!t.s.log().contains(&secret));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());

    // A server refuses to start with an empty or short secret, or a missing file.
    let empty = token_file(" \n");
    let out = refused_start(&empty);
    assert!(
        out.contains("scim-token-file") && out.contains("empty"),
        "{out}"
    );
    let short = token_file("too-short-secret");
    let out = refused_start(&short);
    assert!(out.contains("at least 32 bytes"), "{out}");
    assert!(
        !out.contains("too-short-secret"),
        "the secret is not printed: {out}"
    );
    let missing = empty.parent().unwrap().join("absent");
    assert!(refused_start(&missing).contains("scim-token-file"));
    for p in [empty, short] {
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }
}

const CONFORMANCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/scim_conformance.py"
);

#[test]
fn scim2_tester_conformance() {
    let Some(python) = crate::harness::python_with(
        "scim2_tester_conformance",
        "scim2-tester",
        "scim2_tester, scim2_client.engines.httpx2",
    ) else {
        return;
    };
    let secret = format!("conformance-{}-0123456789abcdefghijkl", uuid_like());
    let path = token_file(&secret);
    let path_s = path.display().to_string();
    let s = Server::start_with(&["--scim-token-file", &path_s]);
    let dir = path.parent().unwrap().to_path_buf();
    let mut cmd = Command::new(&python);
    cmd.arg(CONFORMANCE).arg(&s.origin).arg(&secret);
    let stdout = crate::harness::run_tool(
        "scim_conformance.py",
        cmd,
        &dir,
        Duration::from_secs(300),
        || s.log(),
    );
    assert!(stdout.contains(" success"), "{stdout}");
}

#[test]
fn scim_reads_write_nothing() {
    // Reading SCIM (lists with members and groups) writes nothing: the audit log stays as
    // it was.
    let t = Tenant::start();
    let c = scim(&t.s);
    let (u, _) = t.user("reader");
    let g = c.group("Readers", &[&u]);
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &role, &g, "Eligible", lasting("P1D"));
    let count = |t: &Tenant| {
        t.s.get("/beta/auditLogs/directoryAudits/$count", &t.admin)
            .text
    };
    let before = count(&t);
    for p in [
        "/Users".to_string(),
        "/Groups".to_string(),
        format!("/Users/{u}"),
        format!("/Groups/{g}"),
    ] {
        assert_eq!(c.get(&p).status, 200);
    }
    assert_eq!(count(&t), before);
}
