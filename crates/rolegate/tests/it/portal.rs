//! The web portal over real HTTP, as a browser without JavaScript would use it: the
//! development sign-in, session cookies, CSRF tokens and the same-origin check, the pages'
//! headers, and that an activation, a cancellation and a decision made from the portal are
//! exactly the API's (checked through the API). The browser-driven flows are in
//! `portal_browser.rs`.

// Setup failures are meant to panic.
#![allow(clippy::expect_used)]

use crate::fixture::{OWNER, Tenant, eligible_user, lasting};
use crate::harness::{Reply, Server};
use serde_json::{Value, json};
use std::sync::OnceLock;

/// A client that keeps the session cookie and does not follow redirects.
pub(crate) struct Visitor<'a> {
    s: &'a Server,
    pub(crate) cookie: Option<String>,
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into()
    })
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl<'a> Visitor<'a> {
    pub(crate) fn new(s: &'a Server) -> Self {
        Self { s, cookie: None }
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.s.origin))
            .header("Accept", "text/html");
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", format!("rolegate_session={c}"));
        }
        if body.is_some() {
            req = req.header("Content-Type", "application/x-www-form-urlencoded");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.unwrap_or_default()).expect("request");
        let mut resp = agent().run(req).expect("response");
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        for (k, v) in &headers {
            if k == "set-cookie"
                && let Some(rest) = v.strip_prefix("rolegate_session=")
            {
                let value = rest.split(';').next().unwrap_or("");
                self.cookie = (!value.is_empty()).then(|| value.to_string());
            }
        }
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status: resp.status().as_u16(),
            json: Value::Null,
            text,
            headers,
        }
    }

    pub(crate) fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path, None, &[])
    }

    /// A form POST from the portal's own origin.
    pub(crate) fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let origin = self.s.origin.clone();
        self.send(
            "POST",
            path,
            Some(form_encode(fields)),
            &[("Origin", &origin)],
        )
    }

    pub(crate) fn sign_in(&mut self, user_name: &str, mfa: bool) -> Reply {
        let mut fields = vec![("user_name", user_name), ("return", "/ui/")];
        if mfa {
            fields.push(("mfa", "on"));
        }
        self.post("/ui/signin", &fields)
    }
}

/// The CSRF token of the first form of a page.
pub(crate) fn csrf(page: &Reply) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.text.find(marker).expect("a form with a CSRF token") + marker.len();
    page.text[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The `userName` of directory user `id`.
pub(crate) fn user_name(t: &Tenant, id: &str) -> String {
    let r = t.s.get(&format!("/scim/v2/Users/{id}"), &t.admin);
    r.json["userName"].as_str().expect("userName").to_string()
}

#[test]
fn browsers_are_sent_to_the_portal_and_anonymous_visits_to_sign_in() {
    let s = Server::start();
    let mut v = Visitor::new(&s);
    let root = v.get("/");
    assert_eq!(root.status, 302);
    assert_eq!(root.header("location"), Some("/ui/"));
    // An API client at `/` gets what it got before the portal.
    let api = s.call("GET", "/", None, None);
    assert_eq!(api.status, 404);
    assert_eq!(api.code(), "NotFound");

    let home = v.get("/ui/requests?skip=50");
    assert_eq!(home.status, 303);
    assert_eq!(
        home.header("location"),
        Some("/ui/signin?return=%2Fui%2Frequests%3Fskip%3D50")
    );
    let page = v.get("/ui/signin?return=%2Fui%2Frequests");
    assert_eq!(page.status, 200);
    assert!(page.text.contains("Development sign-in"), "{}", page.text);
    assert!(page.text.contains(">User name</label>"));
    assert!(page.text.contains(">Signed in with MFA</label>"));
    assert_eq!(
        page.header("content-security-policy"),
        Some(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(!page.text.contains("<script>") && !page.text.contains("style="));

    // Its stylesheet is embedded, hashed and cacheable forever.
    let css = page
        .text
        .split("href=\"")
        .find_map(|p| p.split('"').next().filter(|h| h.ends_with(".css")))
        .expect("stylesheet link")
        .to_string();
    assert!(css.starts_with("/ui/assets/portal."), "{css}");
    let asset = v.get(&css);
    assert_eq!(asset.status, 200);
    assert_eq!(
        asset.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(
        asset
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/css")
    );
    assert_eq!(v.get("/ui/assets/portal.0000000000000000.css").status, 404);

    let missing = v.get("/ui/no/such/page");
    assert_eq!(missing.status, 404);
    assert!(missing.text.contains("<title>Not found · Rolegate</title>"));
    assert!(missing.text.contains("Request id"));
}

#[test]
fn signing_in_sets_a_strict_cookie_and_a_failed_sign_in_says_why() {
    let t = Tenant::start();
    let (alice, _) = t.user("Alice Portal");
    let name = user_name(&t, &alice);
    let mut v = Visitor::new(&t.s);

    let unknown = v.sign_in("nobody@example.test", true);
    assert_eq!(unknown.status, 401);
    assert!(
        unknown
            .text
            .contains("role=\"alert\">Sign-in failed: no user is named “nobody@example.test”."),
        "{}",
        unknown.text
    );
    assert!(v.cookie.is_none());

    // A sign-in from another site is refused before anything is looked up.
    let foreign = v.send(
        "POST",
        "/ui/signin",
        Some(form_encode(&[("user_name", &name)])),
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(foreign.status, 403);
    assert!(v.cookie.is_none());

    let ok = v.sign_in(&name, false);
    assert_eq!(ok.status, 303, "{}", ok.text);
    assert_eq!(ok.header("location"), Some("/ui/"));
    let cookie = ok
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(
        cookie.contains("; Path=/ui; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let id = v.cookie.clone().expect("cookie");
    assert_eq!(id.len(), 64);
    // The database keeps the id's hash, never the id.
    let rows =
        t.s.sql("SELECT id_hash, subject, mfa FROM portal_sessions", &[]);
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0][0], json!(id));
    assert_eq!(rows[0][1], json!(alice));
    assert_eq!(rows[0][2], json!(0));

    let home = v.get("/ui/");
    assert_eq!(home.status, 200);
    assert!(home.text.contains("<title>My roles · Rolegate</title>"));
    assert!(home.text.contains("<nav aria-label=\"Main\">"));
    assert!(home.text.contains("Alice Portal"));
    assert!(home.text.contains("<caption>Eligible roles</caption>"));
    assert!(home.text.contains("You are not eligible for any role."));
    assert!(home.text.contains("Ask your tenant administrator"));

    // Signing in again rotates the id: the old one is gone.
    let old = v.cookie.clone();
    assert_eq!(v.sign_in(&name, true).status, 303);
    assert_ne!(v.cookie, old);
    let mut replay = Visitor::new(&t.s);
    replay.cookie = old;
    assert_eq!(replay.get("/ui/").status, 303);

    // Sign out needs the CSRF token; then the cookie no longer works.
    assert_eq!(v.post("/ui/signout", &[("csrf", "wrong")]).status, 403);
    let page = v.get("/ui/");
    let token = csrf(&page);
    let stale = v.cookie.clone();
    let out = v.post("/ui/signout", &[("csrf", &token)]);
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap_or("").contains("Max-Age=0"));
    let mut replay = Visitor::new(&t.s);
    replay.cookie = stale;
    let r = replay.get("/ui/");
    assert_eq!(
        r.status, 303,
        "a replayed cookie after sign-out is not a session"
    );
    assert!(
        t.s.sql("SELECT id_hash FROM portal_sessions", &[])
            .is_empty()
    );
}

#[test]
fn a_disabled_user_loses_the_portal_session_at_once() {
    let t = Tenant::start();
    let (alice, _) = t.user("Alice Disabled");
    let name = user_name(&t, &alice);
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(&name, true).status, 303);
    assert_eq!(v.get("/ui/").status, 200);
    let patch = t.s.call(
        "PATCH",
        &format!("/scim/v2/Users/{alice}"),
        Some(&t.admin),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}],
        })),
    );
    assert_eq!(patch.status, 200, "{}", patch.text);
    // Disabling the subject ended its sessions in the same transaction.
    assert!(
        t.s.sql("SELECT id_hash FROM portal_sessions", &[])
            .is_empty()
    );
    let r = v.get("/ui/");
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap_or("").starts_with("/ui/signin"));
    assert!(
        t.s.sql("SELECT id_hash FROM portal_sessions", &[])
            .is_empty()
    );
    // Deleting a subject ends its sessions too.
    let (bob, _) = t.user("Bob Deleted");
    let mut bob_v = Visitor::new(&t.s);
    assert_eq!(bob_v.sign_in(&user_name(&t, &bob), true).status, 303);
    assert_eq!(t.s.sql("SELECT id_hash FROM portal_sessions", &[]).len(), 1);
    let deleted = t.s.call(
        "DELETE",
        &format!("/scim/v2/Users/{bob}"),
        Some(&t.admin),
        None,
    );
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert!(
        t.s.sql("SELECT id_hash FROM portal_sessions", &[])
            .is_empty()
    );
    assert_eq!(bob_v.get("/ui/").status, 303);
    let again = v.sign_in(&name, true);
    assert_eq!(again.status, 401);
    assert!(
        again
            .text
            .contains("Sign-in failed: the caller&#x27;s account is disabled")
            || again
                .text
                .contains("Sign-in failed: the caller&#39;s account is disabled"),
        "{}",
        again.text
    );
}

/// The requests of `subject` as the API lists them.
fn requests_of(t: &Tenant, subject: &str) -> Vec<Value> {
    let r = t.s.get(
        &t.s.pim(&format!(
            "/roleAssignmentRequests?$filter=subjectId%20eq%20'{subject}'"
        )),
        &t.admin,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["value"].as_array().cloned().unwrap_or_default()
}

#[test]
fn an_activation_from_the_portal_is_the_apis_and_forged_posts_change_nothing() {
    let t = Tenant::start();
    let (alice, _, role, eligible) = eligible_user(&t, "Alice Activates", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "JustificationRule",
        json!({"required": true}),
    );
    let name = user_name(&t, &alice);
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(&name, true).status, 303);
    let home = v.get("/ui/");
    let label = "aria-label=\"Activate Contributor on ";
    assert!(home.text.contains(label), "{}", home.text);
    let form = v.get(&format!("/ui/activate/{eligible}"));
    assert_eq!(form.status, 200);
    assert!(form.text.contains("<h1>Activate Contributor</h1>"));
    assert!(form.text.contains(">Scope</label>"));
    assert!(form.text.contains("Up to 8 hours"), "{}", form.text);
    let token = csrf(&form);
    let path = format!("/ui/activate/{eligible}");
    let fields = |csrf: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![
            ("csrf", csrf),
            ("start", "now"),
            ("hours", "2"),
            ("minutes", "0"),
            ("reason", "Deploy hotfix"),
        ]
    };

    // A wrong CSRF token, a foreign origin, or no origin at all: 403, nothing written.
    assert_eq!(v.post(&path, &fields("forged")).status, 403);
    let leaked: &'static str = Box::leak(token.clone().into_boxed_str());
    let body = form_encode(&fields(leaked));
    let foreign = v.send(
        "POST",
        &path,
        Some(body.clone()),
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(foreign.status, 403);
    assert!(foreign.text.contains("Access denied"));
    assert_eq!(v.send("POST", &path, Some(body.clone()), &[]).status, 403);
    let cross = v.send(
        "POST",
        &path,
        Some(body),
        &[("Sec-Fetch-Site", "cross-site")],
    );
    assert_eq!(cross.status, 403);
    assert!(
        requests_of(&t, &alice)
            .iter()
            .all(|r| r["type"] != "UserAdd")
    );

    // The core's refusal comes back next to the field, inputs kept.
    let no_reason = v.post(
        &path,
        &[
            ("csrf", leaked),
            ("start", "now"),
            ("hours", "9"),
            ("minutes", "0"),
            ("reason", ""),
        ],
    );
    assert_eq!(no_reason.status, 400, "{}", no_reason.text);
    assert!(no_reason.text.contains("role=\"alert\""));
    assert!(
        no_reason.text.contains("ExpirationRule"),
        "{}",
        no_reason.text
    );
    assert!(no_reason.text.contains("id=\"duration-error\""));
    assert!(no_reason.text.contains("value=\"9\""));
    assert!(
        requests_of(&t, &alice)
            .iter()
            .all(|r| r["type"] != "UserAdd")
    );
    let no_reason = v.post(
        &path,
        &[
            ("csrf", leaked),
            ("start", "now"),
            ("hours", "1"),
            ("minutes", "0"),
            ("reason", " "),
        ],
    );
    assert_eq!(no_reason.status, 400);
    assert!(
        no_reason.text.contains("id=\"reason-error\""),
        "{}",
        no_reason.text
    );

    // A Same-origin fetch without Origin is accepted too (Sec-Fetch-Site).
    let done = v.send(
        "POST",
        &path,
        Some(form_encode(&fields(leaked))),
        &[("Sec-Fetch-Site", "same-origin")],
    );
    assert_eq!(done.status, 303, "{}", done.text);
    let location = done.header("location").expect("location").to_string();
    let id = location
        .trim_start_matches("/ui/requests/")
        .trim_end_matches("?done=submitted")
        .to_string();
    let api = t.get_request(&id);
    assert_eq!(api["type"], "UserAdd");
    assert_eq!(api["subjectId"], alice.as_str());
    assert_eq!(api["reason"], "Deploy hotfix");
    assert_eq!(api["linkedEligibleRoleAssignmentId"], eligible.as_str());
    assert_eq!(api["status"]["subStatus"], "Provisioned");
    assert_eq!(api["schedule"]["duration"], "PT2H", "{api}");
    // The same audit record as the API writes, initiated by Alice.
    let audit = t.s.get(
        &format!("/beta/auditLogs/directoryAudits?$filter=initiatedBy/user/id%20eq%20'{alice}'"),
        &t.admin,
    );
    let records = audit.json["value"].as_array().cloned().unwrap_or_default();
    assert!(
        records
            .iter()
            .any(|r| r["operationType"] == "UserAdd" && r["result"] == "success"),
        "{records:?}"
    );

    // The request's page shows it with its history; My roles shows the activation.
    let page = v.get(&location);
    assert_eq!(page.status, 200);
    assert!(page.text.contains("role=\"status\">Request submitted.</p>"));
    assert!(page.text.contains("<h1>Request for Contributor</h1>"));
    assert!(page.text.contains("History"));
    assert!(page.text.contains("by Alice Activates"), "{}", page.text);
    let home = v.get("/ui/");
    assert!(
        home.text
            .contains("aria-label=\"Deactivate Contributor on "),
        "{}",
        home.text
    );
    assert!(
        !home.text.contains(label),
        "an activated eligibility is not offered again"
    );

    // Deactivate: a confirmation page, then a UserRemove.
    let active = t
        .assignments(&t.sub)
        .into_iter()
        .find(|a| a["subjectId"] == alice.as_str() && a["assignmentState"] == "Active")
        .expect("the activation is listed");
    let confirm = v.get(&format!(
        "/ui/deactivate/{}",
        active["id"].as_str().unwrap_or_default()
    ));
    assert_eq!(confirm.status, 200);
    assert!(confirm.text.contains(">Deactivate</button>"));
    let gone = v.post(
        &format!(
            "/ui/deactivate/{}",
            active["id"].as_str().unwrap_or_default()
        ),
        &[("csrf", leaked)],
    );
    assert_eq!(gone.status, 303, "{}", gone.text);
    assert!(
        t.assignments(&t.sub)
            .iter()
            .all(|a| !(a["subjectId"] == alice.as_str() && a["assignmentState"] == "Active"))
    );
    assert!(
        requests_of(&t, &alice)
            .iter()
            .any(|r| r["type"] == "UserRemove")
    );
}

#[test]
fn approvers_decide_in_the_portal_and_nobody_reaches_what_the_api_refuses() {
    let t = Tenant::start();
    let (bob, _) = t.user("Bob Approver");
    let (dave, dave_token) = t.user("Dave Requester");
    let (eve, _) = t.user("Eve Outsider");
    let owner = t.role(&t.sub, OWNER);
    t.set_rule(
        &owner,
        "userMemberSettings",
        "ApprovalRule",
        json!({"Enabled": true, "Approvers": [{"Id": bob, "Type": "User"}], "RequiredApprovals": 1}),
    );
    t.admin_add(&t.sub, &owner, &dave, "Eligible", lasting("P30D"));
    let body = crate::fixture::activation(&t.sub, &owner, &dave, None, "PT1H");
    let pending = t.request(&dave_token, &body);
    assert_eq!(pending.status, 201, "{}", pending.text);
    let id = pending.json["id"].as_str().expect("id").to_string();

    // Eve sees nothing to decide, and cannot open the request or its decision form.
    let mut eve_v = Visitor::new(&t.s);
    assert_eq!(eve_v.sign_in(&user_name(&t, &eve), true).status, 303);
    let inbox = eve_v.get("/ui/approvals");
    assert!(inbox.text.contains("Nothing waits for your decision."));
    assert!(inbox.text.contains(">Approvals</a>"), "no count for Eve");
    // The API answers Eve 403 for this request; so does the portal, with its page.
    let refused = eve_v.get(&format!("/ui/requests/{id}"));
    assert_eq!(refused.status, 403);
    assert!(
        refused
            .text
            .contains("<title>Access denied · Rolegate</title>")
    );
    assert!(!refused.text.contains("Dave Requester"));
    assert_eq!(
        eve_v.get(&format!("/ui/approvals/{id}/approve")).status,
        404
    );
    let token = csrf(&eve_v.get("/ui/"));
    let r = eve_v.post(
        &format!("/ui/approvals/{id}/approve"),
        &[("csrf", &token), ("justification", "sure")],
    );
    assert_eq!(r.status, 404);
    assert_eq!(t.get_request(&id)["status"]["subStatus"], "PendingApproval");

    // Dave (the requester) sees it pending, and has nothing to approve himself.
    let mut dave_v = Visitor::new(&t.s);
    assert_eq!(dave_v.sign_in(&user_name(&t, &dave), true).status, 303);
    let mine = dave_v.get("/ui/requests");
    assert!(
        mine.text.contains("Pending approval (0 of 1)"),
        "{}",
        mine.text
    );
    assert!(
        mine.text
            .contains("aria-label=\"Cancel request for Owner on ")
    );
    assert!(
        dave_v
            .get("/ui/approvals")
            .text
            .contains("Nothing waits for your decision.")
    );

    // Bob: "Approvals (1)", a justification is required, then the API's decision.
    let mut bob_v = Visitor::new(&t.s);
    assert_eq!(bob_v.sign_in(&user_name(&t, &bob), true).status, 303);
    let inbox = bob_v.get("/ui/approvals");
    assert!(inbox.text.contains(">Approvals (1)</a>"), "{}", inbox.text);
    assert!(
        inbox
            .text
            .contains("aria-label=\"Approve request from Dave Requester for Owner on ")
    );
    let form = bob_v.get(&format!("/ui/approvals/{id}/approve"));
    assert_eq!(form.status, 200);
    let token = csrf(&form);
    let empty = bob_v.post(
        &format!("/ui/approvals/{id}/approve"),
        &[("csrf", &token), ("justification", "")],
    );
    assert_eq!(empty.status, 400);
    assert!(empty.text.contains("role=\"alert\""));
    assert_eq!(t.get_request(&id)["status"]["subStatus"], "PendingApproval");
    let ok = bob_v.post(
        &format!("/ui/approvals/{id}/approve"),
        &[("csrf", &token), ("justification", "On call tonight")],
    );
    assert_eq!(ok.status, 303, "{}", ok.text);
    assert_eq!(ok.header("location"), Some("/ui/approvals?done=approved"));
    let decided = t.get_request(&id);
    assert_eq!(decided["status"]["subStatus"], "Provisioned", "{decided}");
    let page = dave_v.get(&format!("/ui/requests/{id}"));
    assert!(
        page.text.contains("On call tonight"),
        "the approver's justification is in the history: {}",
        page.text
    );
    assert!(page.text.contains("by Bob Approver"));
}

#[test]
fn a_requester_cancels_from_my_requests() {
    let t = Tenant::start();
    let (alice, token, role, _) = eligible_user(&t, "Alice Cancels", "P30D");
    let (bob, _) = t.user("Bob Approves");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        json!({"Enabled": true, "Approvers": [{"Id": bob, "Type": "User"}]}),
    );
    let r = t.request(
        &token,
        &crate::fixture::activation(&t.sub, &role, &alice, None, "PT1H"),
    );
    let id = r.json["id"].as_str().expect("id").to_string();
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(&user_name(&t, &alice), true).status, 303);
    let list = v.get("/ui/requests");
    assert!(list.text.contains("<caption>Requests</caption>"));
    let token = csrf(&list);
    let done = v.post(&format!("/ui/requests/{id}/cancel"), &[("csrf", &token)]);
    assert_eq!(done.status, 303);
    assert_eq!(t.get_request(&id)["status"]["subStatus"], "Canceled");
    let list = v.get("/ui/requests?done=cancelled");
    assert!(list.text.contains("Request cancelled."));
    assert!(list.text.contains("Cancelled"));
}

#[test]
fn no_ui_turns_the_portal_off() {
    let s = Server::start_with(&["--no-ui"]);
    let mut v = Visitor::new(&s);
    assert_eq!(v.get("/ui/").status, 404);
    assert_eq!(v.get("/ui/signin").status, 404);
    assert_eq!(v.get("/").status, 404);
}

/// The stored rule `name` of `collection` of the role setting of `role`, parsed.
fn rule_of(t: &Tenant, role: &str, collection: &str, name: &str) -> Option<Value> {
    let id = crate::fixture::role_setting_id(&t.s, &t.admin, role);
    let r = t.s.get(&t.s.pim(&format!("/roleSettings/{id}")), &t.admin);
    r.json[collection]
        .as_array()?
        .iter()
        .find(|x| x["ruleIdentifier"] == name)
        .and_then(|x| serde_json::from_str(x["setting"].as_str()?).ok())
}

#[test]
fn administrators_manage_a_resource_from_its_page() {
    let t = Tenant::start();
    let (bob, _) = t.user("Bob Member");
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(crate::harness::ADMIN, true).status, 303);

    let list = v.get("/ui/resources");
    assert_eq!(list.status, 200);
    assert!(list.text.contains("<h1>Resources</h1>"));
    assert!(list.text.contains(">Register resource</a>"));
    // The resource group is nested under its subscription.
    let sub_at = list
        .text
        .find(&format!("/ui/resources/{}\"", t.sub))
        .expect("subscription listed");
    let rg_at = list
        .text
        .find(&format!("/ui/resources/{}\"", t.rg))
        .expect("group listed");
    assert!(
        sub_at < rg_at && list.text[sub_at..rg_at].contains("<ul>"),
        "{}",
        list.text
    );
    let found = v.get("/ui/resources?q=rg-app");
    assert!(
        found.text.contains(&t.rg) && !found.text.contains(&format!("/ui/resources/{}\"", t.sub))
    );

    // Register a resource group from the form; a bad ARM id is refused in place.
    let form = v.get("/ui/resources/register");
    let token = csrf(&form);
    let bad = v.post(
        "/ui/resources/register",
        &[("csrf", &token), ("arm_id", "not-an-arm-id")],
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("role=\"alert\""));
    let arm = format!("{}/resourceGroups/rg-portal", t.sub_arm);
    let ok = v.post(
        "/ui/resources/register",
        &[
            ("csrf", &token),
            ("arm_id", &arm),
            ("display_name", "Portal RG"),
        ],
    );
    assert_eq!(ok.status, 303, "{}", ok.text);
    let registered = crate::fixture::resource_id(&t.s, &t.admin, &arm);
    assert!(
        v.get("/ui/resources?done=registered")
            .text
            .contains("Portal RG")
    );

    // Add an assignment: find the member, pick them, assign.
    let page = v.get(&format!("/ui/resources/{}", t.sub));
    assert_eq!(page.status, 200);
    for heading in ["Assignments", "Role settings", "Audit log"] {
        assert!(page.text.contains(&format!(">{heading}</h2>")), "{heading}");
    }
    for caption in [
        "Eligible assignments",
        "Active assignments",
        "Expired assignments",
    ] {
        assert!(
            page.text.contains(&format!("<caption>{caption}</caption>")),
            "{caption}"
        );
    }
    assert!(
        page.text
            .contains("aria-label=\"Edit settings for Contributor\"")
    );
    let role = t.role(&t.sub, crate::fixture::CONTRIBUTOR);
    let assign = format!("/ui/resources/{}/assign", t.sub);
    let form = v.get(&assign);
    let token = csrf(&form);
    let search = v.post(
        &assign,
        &[
            ("csrf", &token),
            ("search", "Bob Memb"),
            ("find", "1"),
            ("role", &role),
        ],
    );
    assert_eq!(search.status, 200);
    assert!(
        search.text.contains(&format!("value=\"{bob}\"")),
        "{}",
        search.text
    );
    assert!(
        search.text.contains(">Bob Member (Bob Member-"),
        "{}",
        search.text
    );
    let done = v.post(
        &assign,
        &[
            ("csrf", &token),
            ("role", &role),
            ("member", &bob),
            ("state", "Eligible"),
            ("days", "30"),
            ("reason", "On-call rota"),
        ],
    );
    assert_eq!(done.status, 303, "{}", done.text);
    let eligible = t
        .assignments(&t.sub)
        .into_iter()
        .find(|a| a["subjectId"] == bob.as_str() && a["assignmentState"] == "Eligible")
        .expect("Bob is eligible through the API");
    let aid = eligible["id"].as_str().expect("id").to_string();
    let page = v.get(&format!("/ui/resources/{}?done=assigned", t.sub));
    assert!(page.text.contains("Assignment added."));
    assert!(
        page.text
            .contains("aria-label=\"Remove Contributor from Bob Member\"")
    );

    // The CSV is the API's export, byte for byte.
    let csv = v.get(&format!("/ui/resources/{}/export.csv", t.sub));
    assert_eq!(csv.status, 200);
    let api = t.s.raw(
        "GET",
        &t.s.pim(&format!("/resources/{}/roleAssignments/export", t.sub)),
        Some(&t.admin),
        None,
        &[("Accept", "text/csv")],
    );
    assert_eq!(csv.text, api.text);
    assert!(csv.text.contains("Bob Member"));

    // Extend, then remove: AdminExtend and AdminRemove requests.
    let extend = format!("/ui/resources/{}/assignments/{aid}/extend", t.sub);
    assert_eq!(v.get(&extend).status, 200);
    let end = crate::fixture::from_now(60 * 24 * 3600)
        .strftime("%Y-%m-%dT%H:%M")
        .to_string();
    let r = v.post(&extend, &[("csrf", &token), ("end", &end)]);
    assert_eq!(r.status, 303, "{}", r.text);
    let after = t
        .assignments(&t.sub)
        .into_iter()
        .find(|a| a["id"] == aid.as_str())
        .expect("still there");
    assert!(
        after["endDateTime"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&end[..10]),
        "{after}"
    );
    let remove = format!("/ui/resources/{}/assignments/{aid}/remove", t.sub);
    assert!(v.get(&remove).text.contains(">Remove</button>"));
    assert_eq!(v.post(&remove, &[("csrf", &token)]).status, 303);
    assert!(
        t.assignments(&t.sub)
            .iter()
            .all(|a| a["subjectId"] != bob.as_str())
    );
    let kinds: Vec<Value> = requests_of(&t, &bob)
        .iter()
        .map(|r| r["type"].clone())
        .collect();
    for k in ["AdminAdd", "AdminExtend", "AdminRemove"] {
        assert!(kinds.contains(&json!(k)), "{k} in {kinds:?}");
    }
    let _ = registered;
}

#[test]
fn a_person_opening_administrator_urls_is_refused_and_changes_nothing() {
    let t = Tenant::start();
    let (_, _, role, _) = eligible_user(&t, "Eve Eligible", "P30D");
    let (mallory, _) = t.user("Mallory Nobody");
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(&user_name(&t, &mallory), true).status, 303);
    let home = v.get("/ui/");
    assert!(
        !home.text.contains(">Audit log</a>"),
        "no audit link for a plain user"
    );
    assert!(home.text.contains(">Resources</a>"));
    let token = csrf(&home);
    for path in [
        format!("/ui/resources/{}", t.sub),
        "/ui/resources/register".to_string(),
        "/ui/audit".to_string(),
        format!("/ui/resources/{}/assign", t.sub),
        format!("/ui/resources/{}/settings/{role}", t.sub),
        format!("/ui/resources/{}/export.csv", t.sub),
    ] {
        let r = v.get(&path);
        assert_eq!(r.status, 403, "{path}: {}", r.text);
        assert!(
            r.text.contains("<title>Access denied · Rolegate</title>"),
            "{path}"
        );
        assert!(!r.text.contains("panicked") && !r.text.contains("SELECT"));
    }
    let before = t.assignments(&t.sub).len();
    let r = v.post(
        &format!("/ui/resources/{}/assign", t.sub),
        &[
            ("csrf", &token),
            ("role", &role),
            ("member", &mallory),
            ("state", "Active"),
            ("days", "1"),
        ],
    );
    assert_eq!(r.status, 403);
    assert_eq!(t.assignments(&t.sub).len(), before);
    let r = v.post(
        &format!("/ui/resources/{}/settings/{role}", t.sub),
        &[("csrf", &token), ("max_hours", "1")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        rule_of(&t, &role, "userMemberSettings", "ExpirationRule").expect("rule")["maximumGrantPeriodInMinutes"],
        json!(480)
    );
    let r = v.post(
        "/ui/resources/register",
        &[
            ("csrf", &token),
            ("arm_id", &format!("{}/resourceGroups/x", t.sub_arm)),
        ],
    );
    assert_eq!(r.status, 403);
    assert_eq!(v.post("/ui/audit/verify", &[("csrf", &token)]).status, 403);
}

#[test]
fn role_settings_save_as_a_patch_that_keeps_every_rule_not_shown() {
    let t = Tenant::start();
    let (bob, _) = t.user("Bob Approves");
    let role = t.role(&t.sub, crate::fixture::CONTRIBUTOR);
    t.set_rule(
        &role,
        "userMemberSettings",
        "ContosoCustomRule",
        json!({"anything": [1, 2]}),
    );
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        json!({"Enabled": false, "Approvers": [], "BusinessFlowId": "flow-7"}),
    );
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(crate::harness::ADMIN, true).status, 303);
    let path = format!("/ui/resources/{}/settings/{role}", t.sub);
    let form = v.get(&path);
    assert_eq!(form.status, 200, "{}", form.text);
    assert!(form.text.contains("<h1>Role settings: Contributor</h1>"));
    for legend in ["Activation", "Eligible assignments", "Active assignments"] {
        assert!(
            form.text.contains(&format!("<legend>{legend}</legend>")),
            "{legend}"
        );
    }
    let token = csrf(&form);
    let bob_name = user_name(&t, &bob);
    let fields = |hours: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("csrf", token.clone()),
            ("max_hours", hours.to_string()),
            ("mfa", "on".into()),
            ("ticketing", "on".into()),
            ("approval", "on".into()),
            ("approvers", bob_name.clone()),
            ("required_approvals", "1".into()),
            ("approval_timeout", "120".into()),
            ("emergency_minutes", "30".into()),
            ("eligible_days", "90".into()),
            ("active_days", "30".into()),
            ("active_justification", "on".into()),
        ]
    };
    let as_refs = |f: &Vec<(&'static str, String)>| -> Vec<(&'static str, String)> { f.clone() };
    let post = |v: &mut Visitor, f: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        v.post(&path, &pairs)
    };
    let saved = post(&mut v, as_refs(&fields("4")));
    assert_eq!(saved.status, 303, "{}", saved.text);
    assert!(
        v.get(&format!("{path}?done=saved"))
            .text
            .contains("role=\"status\">Settings saved</p>")
    );
    let expiration =
        rule_of(&t, &role, "userMemberSettings", "ExpirationRule").expect("expiration");
    assert_eq!(expiration["maximumGrantPeriodInMinutes"], json!(240));
    assert_eq!(
        rule_of(&t, &role, "userMemberSettings", "TicketingRule").expect("ticketing")["ticketingRequired"],
        json!(true)
    );
    let approval = rule_of(&t, &role, "userMemberSettings", "ApprovalRule").expect("approval");
    assert_eq!(approval["Enabled"], json!(true));
    assert_eq!(approval["Approvers"][0]["Id"], json!(bob));
    assert_eq!(approval["ApprovalTimeoutInMinutes"], json!(120));
    assert_eq!(
        approval["BusinessFlowId"],
        json!("flow-7"),
        "a key the form does not show is kept"
    );
    assert_eq!(
        rule_of(&t, &role, "userMemberSettings", "ContosoCustomRule"),
        Some(json!({"anything": [1, 2]})),
        "a rule the form does not show is kept verbatim"
    );
    assert_eq!(
        rule_of(&t, &role, "adminEligibleSettings", "ExpirationRule").expect("e")["maximumGrantPeriodInMinutes"],
        json!(90 * 1440)
    );
    // A maximum past the core's 100-year cap: its InvalidRoleSetting message, in place.
    let refused = post(&mut v, as_refs(&fields("900000000")));
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("id=\"max_hours-error\""),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("ExpirationRule"), "{}", refused.text);
    assert!(refused.text.contains("value=\"900000000\""), "inputs kept");
    assert_eq!(
        rule_of(&t, &role, "userMemberSettings", "ExpirationRule").expect("e")["maximumGrantPeriodInMinutes"],
        json!(240)
    );
    // An approver nobody is.
    let mut unknown = fields("4");
    unknown[5].1 = "nobody-at-all".into();
    let refused = post(&mut v, unknown);
    assert_eq!(refused.status, 400);
    assert!(
        refused.text.contains("id=\"approvers-error\""),
        "{}",
        refused.text
    );
}

#[test]
fn the_audit_log_filters_exports_exactly_the_view_and_verifies_the_chain() {
    let t = Tenant::start();
    let (alice, token, role, eligible) = eligible_user(&t, "Alice Audited", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "JustificationRule",
        json!({"required": false}),
    );
    let r = t.request(
        &token,
        &crate::fixture::activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(crate::harness::ADMIN, true).status, 303);
    let all = v.get("/ui/audit");
    assert_eq!(all.status, 200);
    assert!(all.text.contains("<caption>Audit records</caption>"));
    assert!(all.text.contains(">Audit log</a>"));
    let filtered = v.get("/ui/audit?activity=Activate&initiated_by=Alice%20Audited");
    assert!(filtered.text.contains("Activate role"), "{}", filtered.text);
    assert!(!filtered.text.contains("Register resource"));
    // Exports are exactly the filtered view.
    let csv = v.get("/ui/audit/export.csv?activity=Activate&initiated_by=Alice%20Audited");
    assert_eq!(csv.status, 200);
    let mut lines = csv.text.lines();
    assert_eq!(
        lines.next(),
        Some("id,activityDateTime,category,activityDisplayName,result,initiatedBy,targetResources")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{}", csv.text);
    assert!(rows[0].contains(&format!("Alice Audited ({alice})")));
    let jsonl = v.get("/ui/audit/export.jsonl?activity=Activate&initiated_by=Alice%20Audited");
    let docs: Vec<Value> = jsonl
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(docs.len(), 1);
    let id = docs[0]["id"].as_str().expect("id");
    let api =
        t.s.get(&format!("/beta/auditLogs/directoryAudits/{id}"), &t.admin);
    let mut api_doc = api.json.clone();
    api_doc
        .as_object_mut()
        .expect("object")
        .remove("@odata.context");
    assert_eq!(
        docs[0], api_doc,
        "the same directoryAudit as the API returns"
    );
    // The record's page shows its hashes.
    let record = v.get(&format!("/ui/audit/{id}"));
    assert!(record.text.contains("<h1>Audit record</h1>"));
    let hashes = record.text.matches("<code class=\"hash\">").count();
    assert_eq!(hashes, 2);
    // Verify integrity.
    let token = csrf(&all);
    let verified = v.post("/ui/audit/verify", &[("csrf", &token)]);
    assert_eq!(
        verified.status, 303,
        "POST, then redirect: {}",
        verified.text
    );
    let location = verified.header("location").expect("location").to_string();
    assert!(location.starts_with("/ui/audit?verified="), "{location}");
    let shown = v.get(&location);
    assert!(
        shown.text.contains("role=\"status\">Chain verified: "),
        "{}",
        shown.text
    );
    assert!(
        !shown.text.contains("No record matches."),
        "the records are listed too"
    );
    let bad = v.get("/ui/audit?from=yesterday");
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("`From` must be a date"));
}

#[test]
fn times_show_in_the_time_zone_the_browser_reports() {
    let t = Tenant::start();
    let (alice, _, _, _) = eligible_user(&t, "Alice Zoned", "P30D");
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(&user_name(&t, &alice), true).status, 303);
    let home = v.get("/ui/");
    assert!(home.text.contains("data-tz-known=\"false\""));
    assert!(
        home.text.contains(" UTC</time>"),
        "UTC until the browser says"
    );
    let token = csrf(&home);
    assert_eq!(
        v.post("/ui/timezone", &[("csrf", &token), ("tz", "Not/AZone")])
            .status,
        400
    );
    assert_eq!(
        v.post("/ui/timezone", &[("csrf", "forged"), ("tz", "Asia/Tokyo")])
            .status,
        403
    );
    assert_eq!(
        v.post("/ui/timezone", &[("csrf", &token), ("tz", "Asia/Tokyo")])
            .status,
        204
    );
    let home = v.get("/ui/");
    assert!(home.text.contains("data-tz-known=\"true\""));
    assert!(home.text.contains(" JST</time>"), "{}", home.text);
    assert!(home.text.contains("Z\">"), "datetime stays the UTC instant");
}

#[test]
fn a_person_with_nothing_eligible_is_told_whom_to_ask() {
    let t = Tenant::start();
    let (carol, _) = t.user("Carol Reader");
    let (bob, _) = t.user("Bob Owner");
    let reader = t.role(&t.rg, crate::fixture::READER);
    let owner = t.role(&t.sub, OWNER);
    t.admin_add(&t.rg, &reader, &carol, "Active", lasting("P30D"));
    t.admin_add(&t.sub, &owner, &bob, "Active", lasting("P30D"));
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(&user_name(&t, &carol), true).status, 303);
    let home = v.get("/ui/");
    assert!(
        home.text
            .contains("The administrators of your resources can make you eligible: Bob Owner."),
        "{}",
        home.text
    );
    // Her active Reader is listed, without a Deactivate (it is not an activation).
    assert!(home.text.contains("<caption>Active roles</caption>"));
    assert!(!home.text.contains("aria-label=\"Deactivate Reader"));
}

#[test]
fn emergency_access_and_a_later_start_are_the_apis() {
    let t = Tenant::start();
    let (alice, _, role, eligible) = eligible_user(&t, "Alice Urgent", "P30D");
    let (bob, _) = t.user("Bob Approver");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        json!({"Enabled": true, "Approvers": [{"Id": bob, "Type": "User"}],
               "AllowEmergencyBypass": true, "EmergencyMaximumMinutes": 30}),
    );
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(&user_name(&t, &alice), true).status, 303);
    let path = format!("/ui/activate/{eligible}");
    let form = v.get(&path);
    assert!(
        form.text.contains("<legend>Emergency access</legend>"),
        "{}",
        form.text
    );
    assert!(form.text.contains(">This is an emergency</label>"));
    assert!(form.text.contains("Every approver is notified."));
    assert!(
        form.text
            .contains("<strong>Approval required</strong>: 1 approval from Bob Approver.")
    );
    let token = csrf(&form);
    // Emergency access longer than its maximum: the core's message, nothing created.
    let long = v.post(
        &path,
        &[
            ("csrf", &token),
            ("start", "now"),
            ("hours", "1"),
            ("minutes", "0"),
            ("reason", "Prod down"),
            ("emergency", "on"),
        ],
    );
    assert_eq!(long.status, 400, "{}", long.text);
    assert!(
        long.text
            .contains("emergency access lasts at most 30 minutes"),
        "{}",
        long.text
    );
    let ok = v.post(
        &path,
        &[
            ("csrf", &token),
            ("start", "now"),
            ("hours", "0"),
            ("minutes", "20"),
            ("reason", "Prod down"),
            ("emergency", "on"),
        ],
    );
    assert_eq!(ok.status, 303, "{}", ok.text);
    let id = ok
        .header("location")
        .and_then(|l| l.strip_prefix("/ui/requests/"))
        .and_then(|l| l.split('?').next())
        .expect("request page")
        .to_string();
    let r = t.get_request(&id);
    assert_eq!(r["status"]["subStatus"], "Provisioned", "{r}");
    assert_eq!(r["schedule"]["duration"], "PT20M");
    // Deactivate it, then ask for a later start: Granted until then.
    let active = t
        .assignments(&t.sub)
        .into_iter()
        .find(|a| a["subjectId"] == alice.as_str() && a["assignmentState"] == "Active")
        .expect("active");
    let aid = active["id"].as_str().expect("id").to_string();
    assert_eq!(
        v.post(&format!("/ui/deactivate/{aid}"), &[("csrf", &token)])
            .status,
        303
    );
    let later = crate::fixture::from_now(3 * 3600)
        .strftime("%Y-%m-%dT%H:%M")
        .to_string();
    let ok = v.post(
        &path,
        &[
            ("csrf", &token),
            ("start", "later"),
            ("start_time", &later),
            ("hours", "1"),
            ("minutes", "0"),
            ("reason", "Maintenance window"),
        ],
    );
    assert_eq!(ok.status, 303, "{}", ok.text);
    let id = ok
        .header("location")
        .and_then(|l| l.strip_prefix("/ui/requests/"))
        .and_then(|l| l.split('?').next())
        .expect("request page")
        .to_string();
    let r = t.get_request(&id);
    assert!(
        r["schedule"]["startDateTime"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&later[..16]),
        "{r}"
    );
    let page = v.get(&format!("/ui/requests/{id}"));
    assert!(
        page.text.contains("Pending approval (0 of 1)"),
        "{}",
        page.text
    );
}

#[test]
fn a_resource_pages_its_tables_by_fifty() {
    let t = Tenant::start();
    let reader = t.role(&t.rg, crate::fixture::READER);
    for i in 0..55 {
        let (u, _) = t.user(&format!("Member {i:02}"));
        t.admin_add(&t.rg, &reader, &u, "Eligible", lasting("P30D"));
    }
    let mut v = Visitor::new(&t.s);
    assert_eq!(v.sign_in(crate::harness::ADMIN, true).status, 303);
    let first = v.get(&format!("/ui/resources/{}", t.rg));
    let rows = |page: &Reply| {
        page.text
            .matches("aria-label=\"Remove Reader from ")
            .count()
    };
    assert_eq!(rows(&first), 50);
    assert!(
        first
            .text
            .contains("aria-label=\"Pages of Eligible assignments\"")
    );
    let next = first
        .text
        .split("href=\"")
        .filter_map(|p| p.split('"').next())
        .find(|h| h.contains("eskip=50"))
        .expect("a Next page link")
        .replace("&#38;", "&");
    let second = v.get(&next);
    assert_eq!(second.status, 200);
    assert_eq!(rows(&second), 5);
    assert!(second.text.contains(">Previous page</a>"));
    assert!(!second.text.contains(">Next page</a>"));
}
