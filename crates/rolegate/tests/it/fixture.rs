//! Shared setup for tests that need a tenant: directory subjects over SCIM, registered
//! resources, role definitions looked up by template, role-setting patches and request
//! helpers. Everything goes through the public HTTP API, as a tenant administrator unless a
//! token is passed in. Helpers assert the status of setup calls, so a broken setup fails
//! where it happens.

// Not every test module uses every helper; setup failures are meant to panic.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use crate::harness::{ADMIN, Reply, Server, token, uuid_like};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// Built-in role templates (decisions.md §4).
pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
/// Contributor.
pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
/// Reader.
pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
/// User Access Administrator.
pub const USER_ACCESS_ADMIN: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";

/// A running server with a registered subscription and one resource group under it.
pub struct Tenant {
    /// The server.
    pub s: Server,
    /// A tenant administrator's token (with MFA).
    pub admin: String,
    /// The subscription's PIM id.
    pub sub: String,
    /// The subscription's ARM id.
    pub sub_arm: String,
    /// The resource group's PIM id (child of `sub`).
    pub rg: String,
}

impl Tenant {
    /// Starts a server and registers `/subscriptions/{guid}/resourceGroups/rg-app`
    /// (which registers the subscription too).
    pub fn start() -> Tenant {
        Self::start_with(&[])
    }

    /// [`Tenant::start`] with extra `serve` arguments.
    pub fn start_with(args: &[&str]) -> Tenant {
        let s = Server::start_with(args);
        let admin = token(ADMIN, true);
        let sub_arm = format!("/subscriptions/{}", guid());
        let rg_arm = format!("{sub_arm}/resourceGroups/rg-app");
        register(&s, &admin, &rg_arm);
        let sub = resource_id(&s, &admin, &sub_arm);
        let rg = resource_id(&s, &admin, &rg_arm);
        Tenant {
            s,
            admin,
            sub,
            sub_arm,
            rg,
        }
    }

    /// A new directory user and a token for them (with MFA): `(id, token)`.
    pub fn user(&self, name: &str) -> (String, String) {
        let id = create_user(&self.s, &self.admin, name);
        let t = token(&id, true);
        (id, t)
    }

    /// The role definition id of `template` on `resource`.
    pub fn role(&self, resource: &str, template: &str) -> String {
        role_id(&self.s, &self.admin, resource, template)
    }

    /// Merges one rule into one collection of the role setting of `role_definition`.
    pub fn set_rule(&self, role_definition: &str, collection: &str, rule: &str, setting: Value) {
        patch_rule(
            &self.s,
            &self.admin,
            role_definition,
            collection,
            rule,
            &setting,
        );
    }

    /// POSTs a request with `token`.
    pub fn request(&self, token: &str, body: &Value) -> Reply {
        post_request(&self.s, token, body)
    }

    /// An AdminAdd by the tenant administrator that must succeed (`201`); the response body.
    pub fn admin_add(
        &self,
        resource: &str,
        role: &str,
        subject: &str,
        state: &str,
        schedule: Value,
    ) -> Value {
        let mut body = request_body("AdminAdd", state, resource, role, subject);
        body["schedule"] = schedule;
        let r = self.request(&self.admin, &body);
        assert_eq!(r.status, 201, "AdminAdd failed: {}", r.text);
        r.json
    }

    /// The assignments currently listed on `resource` (as the administrator sees them).
    pub fn assignments(&self, resource: &str) -> Vec<Value> {
        list_assignments(&self.s, &self.admin, resource)
    }

    /// The request `id` as the administrator sees it (`200` asserted).
    pub fn get_request(&self, id: &str) -> Value {
        let r = self.s.get(
            &self.s.pim(&format!("/roleAssignmentRequests/{id}")),
            &self.admin,
        );
        assert_eq!(r.status, 200, "GET request {id}: {}", r.text);
        r.json
    }
}

/// An eligible Contributor assignment on the subscription for a new user:
/// `(user id, user token, role definition id, eligible assignment id)`.
pub fn eligible_user(t: &Tenant, name: &str, duration: &str) -> (String, String, String, String) {
    let (user, tok) = t.user(name);
    let role = t.role(&t.sub, CONTRIBUTOR);
    let r = t.admin_add(&t.sub, &role, &user, "Eligible", lasting(duration));
    let eligible = t
        .assignments(&t.sub)
        .iter()
        .find(|a| a["subjectId"] == user.as_str())
        .expect("eligible listed")["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(status_of(&r), ("Closed", "Provisioned"));
    (user, tok, role, eligible)
}

/// A UserAdd body activating `eligible` for `duration`.
pub fn activation(
    resource: &str,
    role: &str,
    user: &str,
    eligible: Option<&str>,
    duration: &str,
) -> Value {
    let mut body = request_body("UserAdd", "Active", resource, role, user);
    body["schedule"] = lasting(duration);
    if let Some(e) = eligible {
        body["linkedEligibleRoleAssignmentId"] = json!(e);
    }
    body
}

/// A fresh GUID-shaped string (unique within the test run).
pub fn guid() -> String {
    let digits: String = uuid_like().chars().filter(char::is_ascii_digit).collect();
    let hex = format!("{:0>32}", digits);
    let hex = &hex[hex.len() - 32..];
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Percent-encodes the characters of an OData expression that a URI may not hold.
pub fn enc(expr: &str) -> String {
    expr.replace('%', "%25")
        .replace(' ', "%20")
        .replace('\'', "%27")
}

/// POSTs a SCIM user named `name` (unique `userName`); the reply, or why none came (the
/// server is gone).
pub fn try_create_user(s: &Server, admin: &str, name: &str) -> Result<Reply, String> {
    let user_name = format!("{name}-{}@example.test", uuid_like());
    s.try_call(
        "POST",
        "/scim/v2/Users",
        Some(admin),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "displayName": name,
            "emails": [{"value": user_name, "primary": true}],
        })),
    )
}

/// Creates a SCIM user named `name` (unique `userName`) and returns its subject id.
pub fn create_user(s: &Server, admin: &str, name: &str) -> String {
    let r = try_create_user(s, admin, name).expect("SCIM create user");
    assert_eq!(r.status, 201, "SCIM create user: {}", r.text);
    r.json["id"].as_str().expect("user id").to_string()
}

/// Creates a SCIM group with `members` (subject ids) and returns its subject id.
pub fn create_group(s: &Server, admin: &str, name: &str, members: &[&str]) -> String {
    let r = s.call(
        "POST",
        "/scim/v2/Groups",
        Some(admin),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
            "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>(),
        })),
    );
    assert_eq!(r.status, 201, "SCIM create group: {}", r.text);
    r.json["id"].as_str().expect("group id").to_string()
}

/// Registers the ARM scope `external_id` (and its unregistered ancestors); asserts `200`.
pub fn register(s: &Server, admin: &str, external_id: &str) {
    let r = s.post(
        &s.pim("/resources/register"),
        admin,
        &json!({"externalId": external_id}),
    );
    assert_eq!(r.status, 200, "register {external_id}: {}", r.text);
}

/// The PIM id of the registered resource whose ARM id is `external_id`.
pub fn resource_id(s: &Server, admin: &str, external_id: &str) -> String {
    let r = s.get(
        &s.pim(&format!(
            "/resources?$filter={}",
            enc(&format!("externalId eq '{external_id}'"))
        )),
        admin,
    );
    assert_eq!(r.status, 200, "find resource {external_id}: {}", r.text);
    r.json["value"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no resource {external_id}: {}", r.text))
        .to_string()
}

/// The id of the role definition with `template` on `resource`.
pub fn role_id(s: &Server, admin: &str, resource: &str, template: &str) -> String {
    let r = s.get(
        &s.pim(&format!(
            "/resources/{resource}/roleDefinitions?$filter={}",
            enc(&format!("templateId eq '{template}'"))
        )),
        admin,
    );
    assert_eq!(r.status, 200, "find role {template}: {}", r.text);
    r.json["value"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no role {template}: {}", r.text))
        .to_string()
}

/// The id of the role setting of `role_definition`.
pub fn role_setting_id(s: &Server, admin: &str, role_definition: &str) -> String {
    let r = s.get(
        &s.pim(&format!(
            "/roleSettings?$filter={}",
            enc(&format!("roleDefinitionId eq '{role_definition}'"))
        )),
        admin,
    );
    assert_eq!(r.status, 200, "find role setting: {}", r.text);
    r.json["value"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no role setting: {}", r.text))
        .to_string()
}

/// PATCHes one rule (`setting` as JSON, sent serialised in a string) into `collection`
/// (`userMemberSettings`, …) of the role setting of `role_definition`; asserts `204`.
pub fn patch_rule(
    s: &Server,
    admin: &str,
    role_definition: &str,
    collection: &str,
    rule: &str,
    setting: &Value,
) {
    let id = role_setting_id(s, admin, role_definition);
    let body = json!({ collection: [{"ruleIdentifier": rule, "setting": setting.to_string()}] });
    let r = s.call(
        "PATCH",
        &s.pim(&format!("/roleSettings/{id}")),
        Some(admin),
        Some(&body),
    );
    assert_eq!(r.status, 204, "PATCH {rule}: {}", r.text);
}

/// A request body with a reason and no schedule; add `schedule` and the rest as needed.
pub fn request_body(kind: &str, state: &str, resource: &str, role: &str, subject: &str) -> Value {
    json!({
        "type": kind,
        "assignmentState": state,
        "resourceId": resource,
        "roleDefinitionId": role,
        "subjectId": subject,
        "reason": "integration test",
    })
}

/// POSTs a request body to `roleAssignmentRequests`.
pub fn post_request(s: &Server, token: &str, body: &Value) -> Reply {
    s.post(&s.pim("/roleAssignmentRequests"), token, body)
}

/// `POST …/roleAssignmentRequests/{id}/cancel` (no body).
pub fn cancel(s: &Server, token: &str, id: &str) -> Reply {
    s.call(
        "POST",
        &s.pim(&format!("/roleAssignmentRequests/{id}/cancel")),
        Some(token),
        None,
    )
}

/// `POST …/roleAssignmentRequests/{id}/updateRequest` with `decision` and a reason.
pub fn decide(s: &Server, token: &str, id: &str, decision: &str) -> Reply {
    s.post(
        &s.pim(&format!("/roleAssignmentRequests/{id}/updateRequest")),
        token,
        &json!({"decision": decision, "reason": "decided by an integration test"}),
    )
}

/// The assignments listed under `resources/{resource}/roleAssignments` for `token`.
pub fn list_assignments(s: &Server, token: &str, resource: &str) -> Vec<Value> {
    let r = s.get(
        &s.pim(&format!("/resources/{resource}/roleAssignments")),
        token,
    );
    assert_eq!(r.status, 200, "list assignments: {}", r.text);
    r.json["value"].as_array().cloned().unwrap_or_default()
}

/// The `statusDetails` keys of a request body, in order.
pub fn detail_keys(request: &Value) -> Vec<String> {
    request["status"]["statusDetails"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `(status.status, status.subStatus)` of a request body.
pub fn status_of(request: &Value) -> (&str, &str) {
    (
        request["status"]["status"].as_str().unwrap_or(""),
        request["status"]["subStatus"].as_str().unwrap_or(""),
    )
}

/// Schedule `{"type":"Once","duration": d}` starting now.
pub fn lasting(d: &str) -> Value {
    json!({"type": "Once", "duration": d})
}

/// The wall clock (the server runs on the same machine).
#[allow(clippy::disallowed_methods)]
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// `now()` plus `secs` seconds (negative for the past), in whole seconds, so it comes back
/// unchanged from the server.
pub fn from_now(secs: i64) -> Timestamp {
    Timestamp::from_second(now().as_second() + secs).expect("timestamp in range")
}

/// Parses a datetime the server returned.
pub fn ts(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a datetime: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// Sleeps until the wall clock has passed `t` (plus a small margin).
pub fn sleep_past(t: Timestamp) {
    let target = t
        .checked_add(SignedDuration::from_millis(300))
        .expect("in range");
    let left = target.duration_since(now());
    if left.is_positive() {
        std::thread::sleep(left.unsigned_abs());
    }
}
