//! Reads of the Graph PIM surface (graph-pim-v2.md §6.2–§6.12, §6.18; decisions.md §4–§6):
//! resources and registration, role definitions, role settings and their PATCH, not-found
//! codes, single-valued navigations, the nested and provider-level collections, `$count`,
//! routing errors, assignment `memberType`, expiry and export.
//!
//! The small setup kit at the top ([`World`]) is shared by `odata.rs`, `authz.rs` and
//! `durability.rs`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{self, CONTRIBUTOR, OWNER, READER, USER_ACCESS_ADMIN as UAA, enc};
use crate::harness::{ADMIN, Reply, Server};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A fresh `/subscriptions/{guid}` ARM id.
pub(crate) fn new_sub() -> String {
    format!("/subscriptions/{}", fixture::guid())
}

/// Ids of the rows of a collection reply.
pub(crate) fn ids(r: &Reply) -> BTreeSet<String> {
    rows(r)
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The `value` rows of a collection reply (panics with the body otherwise).
pub(crate) fn rows(r: &Reply) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["value"]
        .as_array()
        .unwrap_or_else(|| panic!("no value: {}", r.text))
        .clone()
}

/// Asserts a Graph error reply: status, code, and the envelope with the request id.
pub(crate) fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.code(), code, "{}", r.text);
    assert!(r.json["error"]["message"].is_string(), "{}", r.text);
    assert!(r.header("request-id").is_some());
    assert_eq!(
        r.json["error"]["innerError"]["request-id"].as_str(),
        r.header("request-id"),
        "{}",
        r.text
    );
    assert!(
        r.json["error"]["innerError"]["date"].is_string(),
        "{}",
        r.text
    );
}

/// A server with its tenant administrator's token, and setup helpers (over HTTP, mostly
/// the shared ones of `fixture.rs`) for worlds laid out test by test.
pub(crate) struct World {
    pub s: Server,
    pub admin: String,
}

impl World {
    pub fn new() -> World {
        World::on(Server::start())
    }

    /// Wraps an already running server.
    pub fn on(s: Server) -> World {
        let admin = s.token(ADMIN, true);
        World { s, admin }
    }

    /// `GET` a PIM path (query already encoded) as the tenant administrator.
    pub fn get(&self, path: &str) -> Reply {
        self.s.get(&self.s.pim(path), &self.admin)
    }

    /// `GET` a PIM path as `token`.
    pub fn get_as(&self, token: &str, path: &str) -> Reply {
        self.s.get(&self.s.pim(path), token)
    }

    /// A bearer token (with MFA) for a subject.
    pub fn token(&self, subject: &str) -> String {
        self.s.token(subject, true)
    }

    /// Creates a SCIM user with this display name; returns its subject id.
    pub fn user(&self, display: &str) -> String {
        fixture::create_user(&self.s, &self.admin, display)
    }

    /// A user's SCIM `userName` (also its email in `fixture::create_user`).
    pub fn user_name(&self, id: &str) -> String {
        let r = self.s.get(&format!("/scim/v2/Users/{id}"), &self.admin);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json["userName"].as_str().expect("userName").to_string()
    }

    /// Creates a SCIM group with members; returns its subject id.
    pub fn group(&self, name: &str, members: &[&str]) -> String {
        fixture::create_group(&self.s, &self.admin, name, members)
    }

    /// Registers `body` as `token`.
    pub fn register_as(&self, token: &str, body: &Value) -> Reply {
        self.s.post(&self.s.pim("/resources/register"), token, body)
    }

    /// Registers an ARM id as the administrator; returns the resource id.
    pub fn register(&self, arm: &str) -> String {
        fixture::register(&self.s, &self.admin, arm);
        self.rid(arm)
    }

    /// Registers with a display name and/or a parent management group.
    pub fn register_with(&self, arm: &str, name: Option<&str>, parent: Option<&str>) -> String {
        let r = self.register_as(
            &self.admin,
            &json!({"externalId": arm, "displayName": name, "parentExternalId": parent}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        self.rid(arm)
    }

    /// The resource whose `externalId` is `arm`.
    pub fn resource(&self, arm: &str) -> Value {
        let r = self.get(&format!(
            "/resources?$filter={}",
            enc(&format!("externalId eq '{arm}'"))
        ));
        let v = rows(&r);
        assert_eq!(v.len(), 1, "{arm}: {}", r.text);
        v[0].clone()
    }

    /// The id of the resource whose `externalId` is `arm`.
    pub fn rid(&self, arm: &str) -> String {
        fixture::resource_id(&self.s, &self.admin, arm)
    }

    /// The role definition id of `template` on resource `rid`.
    pub fn role(&self, rid: &str, template: &str) -> String {
        fixture::role_id(&self.s, &self.admin, rid, template)
    }

    /// The role setting of a role definition (through the `roleSetting` navigation).
    pub fn setting(&self, role_id: &str) -> Value {
        let r = self.get(&format!("/roleDefinitions/{role_id}/roleSetting"));
        assert_eq!(r.status, 200, "{}", r.text);
        r.json.clone()
    }

    /// Posts a request as `token`.
    pub fn request_as(&self, token: &str, body: &Value) -> Reply {
        fixture::post_request(&self.s, token, body)
    }

    /// `AdminAdd` of `template` on `rid` for `subject`, lasting `duration`; the reply.
    pub fn admin_add(
        &self,
        rid: &str,
        template: &str,
        subject: &str,
        state: &str,
        duration: &str,
    ) -> Reply {
        let mut body =
            fixture::request_body("AdminAdd", state, rid, &self.role(rid, template), subject);
        body["schedule"] = fixture::lasting(duration);
        self.request_as(&self.admin, &body)
    }

    /// `AdminAdd` that must take effect at once; returns the new assignment's id.
    pub fn assign(
        &self,
        rid: &str,
        template: &str,
        subject: &str,
        state: &str,
        duration: &str,
    ) -> String {
        let r = self.admin_add(rid, template, subject, state, duration);
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json["status"]["subStatus"], "Provisioned", "{}", r.text);
        let role = self.role(rid, template);
        let f = format!(
            "subjectId eq '{subject}' and roleDefinitionId eq '{role}' and assignmentState eq '{state}'"
        );
        let l = self.get(&format!("/roleAssignments?$filter={}", enc(&f)));
        let found: Vec<Value> = rows(&l)
            .into_iter()
            .filter(|a| a["subjectId"] == subject)
            .collect();
        assert_eq!(found.len(), 1, "{}", l.text);
        found[0]["id"].as_str().expect("id").to_string()
    }

    /// `UserAdd` activation of an eligible assignment by `subject` for one hour; the reply.
    pub fn activate(
        &self,
        token: &str,
        subject: &str,
        rid: &str,
        role: &str,
        eligible: &str,
    ) -> Reply {
        let body = fixture::activation(rid, role, subject, Some(eligible), "PT1H");
        self.request_as(token, &body)
    }
}

/// Parses the `setting` strings of a rule collection into (ruleIdentifier, JSON) pairs.
fn rules_of(v: &Value) -> Vec<(String, Value)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a rule list: {v}"))
        .iter()
        .map(|r| {
            let setting = r["setting"]
                .as_str()
                .unwrap_or_else(|| panic!("setting not a string: {r}"));
            (
                r["ruleIdentifier"]
                    .as_str()
                    .expect("ruleIdentifier")
                    .to_string(),
                serde_json::from_str(setting).unwrap_or_else(|e| panic!("{setting}: {e}")),
            )
        })
        .collect()
}

fn rule<'a>(list: &'a [(String, Value)], id: &str) -> &'a Value {
    &list
        .iter()
        .find(|(k, _)| k == id)
        .unwrap_or_else(|| panic!("no {id} in {list:?}"))
        .1
}

pub(crate) fn strip_context(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("@odata.context");
    }
    v
}

#[test]
fn register_parses_arm_ids_and_registers_ancestors() {
    let w = World::new();
    let sub = new_sub();
    let rg = format!("{sub}/resourceGroups/rg-app");
    let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm-01");
    let ext = format!("{vm}/extensions/IaaSAntimalware");
    let r = w.register_as(&w.admin, &json!({"externalId": vm}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, "", "register answers with no body");
    assert!(r.header("request-id").is_some());
    let (s, g, v) = (w.resource(&sub), w.resource(&rg), w.resource(&vm));
    assert_eq!(s["type"], "subscription");
    assert_eq!(g["type"], "resourcegroup");
    assert_eq!(v["type"], "Microsoft.Compute/virtualMachines");
    assert_eq!(g["displayName"], "rg-app");
    assert_eq!(v["displayName"], "vm-01");
    for x in [&s, &g, &v] {
        assert_eq!(x["registeredRoot"], sub.as_str(), "{x}");
        assert_eq!(x["status"], "Active");
        assert!(
            x["registeredDateTime"]
                .as_str()
                .is_some_and(|d| d.ends_with('Z')),
            "{x}"
        );
        for absent in ["roleAssignmentCount", "roleDefinitionCount", "permissions"] {
            assert!(x.get(absent).is_none(), "{absent} only with $select: {x}");
        }
    }
    // A nested resource type: `{Ns}/{type}/{subtype}`, its parent the VM.
    w.register(&ext);
    let e = w.resource(&ext);
    assert_eq!(e["type"], "Microsoft.Compute/virtualMachines/extensions");
    let p = w.get(&format!("/resources/{}/parent", e["id"].as_str().unwrap()));
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.json["id"], v["id"]);
    // The parent chain: vm → rg → subscription → (root: 404).
    let p = w.get(&format!("/resources/{}/parent", v["id"].as_str().unwrap()));
    assert_eq!(p.json["id"], g["id"], "{}", p.text);
    assert!(
        p.json["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#governanceResources/$entity")
    );
    let p = w.get(&format!("/resources/{}/parent", g["id"].as_str().unwrap()));
    assert_eq!(p.json["id"], s["id"], "{}", p.text);
    let p = w.get(&format!("/resources/{}/parent", s["id"].as_str().unwrap()));
    assert_eq!(p.status, 404, "{}", p.text);
    assert!(p.json["error"]["code"].is_string());

    // Re-registering changes nothing.
    let before = rows(&w.get("/resources?$orderby=externalId"));
    for arm in [&vm, &sub, &rg] {
        let r = w.register_as(
            &w.admin,
            &json!({"externalId": arm, "displayName": "renamed?"}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.text, "");
    }
    assert_eq!(rows(&w.get("/resources?$orderby=externalId")), before);
    let defs = w.get(&format!(
        "/roleDefinitions/$count?$filter={}",
        enc(&format!("resourceId eq '{}'", s["id"].as_str().unwrap()))
    ));
    assert_eq!(
        defs.text, "8",
        "no duplicate role definitions after re-registering"
    );

    // A management group, and a subscription under it via parentExternalId.
    let mg = "/providers/Microsoft.Management/managementGroups/mg-reads";
    let mg_id = w.register_with(mg, Some("Reads MG"), None);
    let m = w.resource(mg);
    assert_eq!(m["type"], "managementgroup");
    assert_eq!(m["displayName"], "Reads MG");
    assert_eq!(m["registeredRoot"], mg);
    let sub2 = new_sub();
    let sub2_id = w.register_with(&sub2, Some("Second"), Some(mg));
    let s2 = w.resource(&sub2);
    assert_eq!(s2["type"], "subscription");
    assert_eq!(s2["displayName"], "Second");
    assert_eq!(
        s2["registeredRoot"], mg,
        "the topmost registered ancestor is the management group"
    );
    let p = w.get(&format!("/resources/{sub2_id}/parent"));
    assert_eq!(p.json["id"], mg_id.as_str(), "{}", p.text);
    let rg2 = format!("{sub2}/resourceGroups/rg-under-mg");
    w.register(&rg2);
    assert_eq!(w.resource(&rg2)["registeredRoot"], mg);
    let p = w.get(&format!("/resources/{mg_id}/parent"));
    assert_eq!(p.status, 404);

    // Malformed ARM ids.
    for bad in [
        "subscriptions/not-rooted",
        "/subscriptions/not-a-guid",
        "/subscriptions",
        "/foo/bar",
        "",
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups",
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines",
        "/subscriptions/00000000-0000-0000-0000-000000000000/unexpected/segment",
        "/subscriptions/00000000-0000-0000-0000-000000000000//resourceGroups/x",
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/has space",
    ] {
        let r = w.register_as(&w.admin, &json!({"externalId": bad}));
        assert_error(&r, 400, "InvalidResourceId");
    }
    // A parent that is not a registered management group.
    let r = w.register_as(&w.admin, &json!({"externalId": new_sub(), "parentExternalId": "/providers/Microsoft.Management/managementGroups/nope"}));
    assert_error(&r, 400, "InvalidResourceId");
    let r = w.register_as(
        &w.admin,
        &json!({"externalId": new_sub(), "parentExternalId": sub}),
    );
    assert_error(&r, 400, "InvalidResourceId");
    // No externalId, wrong type, not JSON.
    assert_error(&w.register_as(&w.admin, &json!({})), 400, "BadRequest");
    assert_error(
        &w.register_as(&w.admin, &json!({"externalId": 5})),
        400,
        "BadRequest",
    );
    let r = w.s.raw(
        "POST",
        &w.s.pim("/resources/register"),
        Some(&w.admin),
        Some("{not json"),
        &[],
    );
    assert_error(&r, 400, "BadRequest");
    // Nothing was written by the failures.
    assert_eq!(
        w.get("/resources/$count").text,
        "7",
        "sub, rg, vm, ext, mg, sub2, rg2"
    );
}

#[test]
fn resource_list_get_and_selected_extras() {
    let w = World::new();
    let sub = new_sub();
    let rg = format!("{sub}/resourceGroups/rg-x");
    w.register(&rg);
    let (sid, gid) = (w.rid(&sub), w.rid(&rg));
    let u = w.user("Ella Eligible");
    w.assign(&sid, READER, &u, "Eligible", "P30D");
    w.assign(&sid, CONTRIBUTOR, &u, "Eligible", "P30D");

    let l = w.get("/resources");
    assert!(
        l.json["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/$metadata#governanceResources"),
        "{}",
        l.text
    );
    assert_eq!(ids(&l), BTreeSet::from([sid.clone(), gid.clone()]));
    let one = w.get(&format!("/resources/{sid}"));
    assert_eq!(one.status, 200);
    assert!(
        one.json["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/$metadata#governanceResources/$entity")
    );
    let listed = rows(&l)
        .into_iter()
        .find(|r| r["id"] == sid.as_str())
        .unwrap();
    assert_eq!(
        strip_context(one.json.clone()),
        listed,
        "list and get agree"
    );
    for key in [
        "id",
        "externalId",
        "type",
        "displayName",
        "status",
        "registeredDateTime",
        "registeredRoot",
    ] {
        assert!(one.json.get(key).is_some(), "{key} missing: {}", one.text);
    }

    let sel = "$select=roleAssignmentCount,roleDefinitionCount,permissions";
    let x = w.get(&format!("/resources/{sid}?{sel}"));
    assert_eq!(x.status, 200, "{}", x.text);
    assert_eq!(x.json["roleAssignmentCount"], 2, "{}", x.text);
    assert_eq!(x.json["roleDefinitionCount"], 8, "{}", x.text);
    assert_eq!(
        x.json["permissions"],
        json!({"accessLevel": "AdminReadWrite", "isActive": true, "isEligible": false})
    );
    let keys: BTreeSet<&str> = x
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "@odata.context",
            "roleAssignmentCount",
            "roleDefinitionCount",
            "permissions"
        ])
    );
    let x = w.get(&format!("/resources/{gid}?{sel}"));
    assert_eq!(
        x.json["roleAssignmentCount"], 0,
        "assignments on the subscription are not on the group: {}",
        x.text
    );
    // In a list, and as seen by an eligible user.
    let lu = w.get_as(&w.token(&u), &format!("/resources?{sel},id"));
    let mine = rows(&lu);
    assert_eq!(mine.len(), 2, "{}", lu.text);
    for r in &mine {
        assert_eq!(r["permissions"]["accessLevel"], "UserRead", "{r}");
        assert_eq!(r["permissions"]["isEligible"], true, "{r}");
        assert_eq!(r["permissions"]["isActive"], false, "{r}");
        assert_eq!(r["roleDefinitionCount"], 8);
    }
    // Plain $select picks exactly what is named.
    let x = w.get(&format!("/resources/{sid}?$select=id,type"));
    assert_eq!(
        strip_context(x.json),
        json!({"id": sid, "type": "subscription"})
    );
}

#[test]
fn built_in_role_definitions_and_default_settings() {
    let w = World::new();
    let sub = new_sub();
    let rg = format!("{sub}/resourceGroups/rg-defs");
    w.register(&rg);
    let (sid, gid) = (w.rid(&sub), w.rid(&rg));
    let mut all_ids = BTreeSet::new();
    for (rid, arm) in [(&sid, &sub), (&gid, &rg)] {
        let l = w.get(&format!("/resources/{rid}/roleDefinitions"));
        assert!(
            l.json["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("#governanceRoleDefinitions")
        );
        let defs = rows(&l);
        for (template, name) in [
            (OWNER, "Owner"),
            (CONTRIBUTOR, "Contributor"),
            (READER, "Reader"),
            (UAA, "User Access Administrator"),
        ] {
            let d = defs
                .iter()
                .find(|d| d["templateId"] == template)
                .unwrap_or_else(|| panic!("{name} missing: {}", l.text));
            assert_eq!(d["displayName"], name);
            assert_eq!(d["resourceId"], rid.as_str());
            assert_eq!(
                d["externalId"],
                format!("{arm}/providers/Microsoft.Authorization/roleDefinitions/{template}")
            );
            let one = w.get(&format!("/roleDefinitions/{}", d["id"].as_str().unwrap()));
            assert_eq!(strip_context(one.json.clone()), *d);
            assert!(
                one.json["@odata.context"]
                    .as_str()
                    .unwrap()
                    .ends_with("#governanceRoleDefinitions/$entity")
            );
        }
        for d in &defs {
            assert!(
                all_ids.insert(d["id"].as_str().unwrap().to_string()),
                "role definition ids are unique per resource"
            );
        }
        let settings = rows(&w.get(&format!("/resources/{rid}/roleSettings")));
        assert_eq!(settings.len(), defs.len(), "one setting per definition");
        let def_ids: BTreeSet<String> = defs
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        for s in &settings {
            assert_eq!(s["resourceId"], rid.as_str());
            assert!(def_ids.contains(s["roleDefinitionId"].as_str().unwrap()));
            assert_eq!(s["isDefault"], true);
            assert_eq!(s["lastUpdatedBy"], Value::Null);
            let ae = rules_of(&s["adminEligibleSettings"]);
            assert_eq!(
                ae,
                vec![(
                    "ExpirationRule".to_string(),
                    json!({"permanentAssignment": false, "maximumGrantPeriodInMinutes": 525600})
                )]
            );
            let am = rules_of(&s["adminMemberSettings"]);
            assert_eq!(
                am,
                vec![
                    (
                        "ExpirationRule".to_string(),
                        json!({"permanentAssignment": false, "maximumGrantPeriodInMinutes": 259200})
                    ),
                    ("MfaRule".to_string(), json!({"mfaRequired": false})),
                    ("JustificationRule".to_string(), json!({"required": true})),
                ]
            );
            let um = rules_of(&s["userMemberSettings"]);
            assert_eq!(
                um,
                vec![
                    (
                        "ExpirationRule".to_string(),
                        json!({"permanentAssignment": false, "maximumGrantPeriodInMinutes": 480})
                    ),
                    ("MfaRule".to_string(), json!({"mfaRequired": true})),
                    ("JustificationRule".to_string(), json!({"required": true})),
                    (
                        "TicketingRule".to_string(),
                        json!({"ticketingRequired": false})
                    ),
                    (
                        "ApprovalRule".to_string(),
                        json!({"Enabled": false, "Approvers": []})
                    ),
                ]
            );
            assert_eq!(s["userEligibleSettings"], json!([]));
            let one = w.get(&format!("/roleSettings/{}", s["id"].as_str().unwrap()));
            assert!(
                one.json["@odata.context"]
                    .as_str()
                    .unwrap()
                    .ends_with("#governanceRoleSettings/$entity")
            );
            assert_eq!(strip_context(one.json), *s);
        }
    }
}

#[test]
fn patch_role_setting_merges_by_rule_identifier() {
    let w = World::new();
    let sub = new_sub();
    let sid = w.register_with(&sub, Some("Patch Sub"), None);
    let owner = w.user("Olivia Owner");
    w.assign(&sid, OWNER, &owner, "Active", "PT8H");
    let reader = w.role(&sid, READER);
    let before = w.setting(&reader);
    let setting_id = before["id"].as_str().unwrap().to_string();
    let notification = r#"{"policies":[{"deliveryMechanism":"email","setting":[{"customreceivers":null,"isdefaultreceiverenabled":true,"notificationlevel":2,"recipienttype":0}]}]}"#;
    let patch = json!({
        "adminMemberSettings": [
            {"ruleIdentifier": "ExpirationRule", "setting": "{\"permanentAssignment\":false,\"maximumGrantPeriodInMinutes\":1440}"},
            {"ruleIdentifier": "NotificationRule", "setting": notification},
        ],
        "id": "ignored", "isDefault": true, "@odata.type": "#microsoft.graph.governanceRoleSetting",
    });
    let tok = w.token(&owner);
    let r = w.s.call(
        "PATCH",
        &w.s.pim(&format!("/roleSettings/{setting_id}")),
        Some(&tok),
        Some(&patch),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(r.text, "");
    let after = w.setting(&reader);
    assert_eq!(after["id"], setting_id.as_str());
    assert_eq!(after["isDefault"], false);
    assert_eq!(after["lastUpdatedBy"], "Olivia Owner");
    assert!(
        after["lastUpdatedDateTime"]
            .as_str()
            .is_some_and(|d| d.ends_with('Z')),
        "{after}"
    );
    let am = rules_of(&after["adminMemberSettings"]);
    assert_eq!(am.len(), 4, "{am:?}");
    assert_eq!(
        rule(&am, "ExpirationRule"),
        &json!({"permanentAssignment": false, "maximumGrantPeriodInMinutes": 1440})
    );
    assert_eq!(
        rule(&am, "MfaRule"),
        &json!({"mfaRequired": false}),
        "rules not named are kept"
    );
    assert_eq!(rule(&am, "JustificationRule"), &json!({"required": true}));
    let raw = after["adminMemberSettings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleIdentifier"] == "NotificationRule")
        .unwrap();
    assert_eq!(
        raw["setting"], notification,
        "unknown rules are kept verbatim"
    );
    for c in [
        "adminEligibleSettings",
        "userEligibleSettings",
        "userMemberSettings",
    ] {
        assert_eq!(after[c], before[c], "{c} was not in the patch");
    }
    // Other settings stay default.
    let owner_setting = w.setting(&w.role(&sid, OWNER));
    assert_eq!(owner_setting["isDefault"], true);
    // The nested path patches too; a tenant administrator's name is its subject.
    let r = w.s.call(
        "PATCH",
        &w.s.pim(&format!("/resources/{sid}/roleSettings/{setting_id}")),
        Some(&w.admin),
        Some(&json!({"userMemberSettings": [{"ruleIdentifier": "MfaRule", "setting": "{\"mfaRequired\":false}"}]})),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let after2 = w.setting(&reader);
    assert_eq!(
        rule(&rules_of(&after2["userMemberSettings"]), "MfaRule"),
        &json!({"mfaRequired": false})
    );
    assert_eq!(after2["adminMemberSettings"], after["adminMemberSettings"]);
    assert_eq!(after2["lastUpdatedBy"], ADMIN);

    // Invalid known rules: 400 InvalidRoleSetting and nothing changes, even with valid rules beside them.
    let invalid = [
        json!({"adminMemberSettings": [{"ruleIdentifier": "MfaRule", "setting": "{\"mfaRequired\":\"sometimes\"}"}]}),
        json!({"adminEligibleSettings": [{"ruleIdentifier": "ExpirationRule", "setting": "not json"}]}),
        json!({"adminEligibleSettings": [{"ruleIdentifier": "ExpirationRule", "setting": "{\"permanentAssignment\":true,\"maximumGrantPeriodInMinutes\":60}"}],
               "userMemberSettings": [{"ruleIdentifier": "ApprovalRule", "setting": "{\"Enabled\":\"yes\"}"}]}),
        json!({"userMemberSettings": [{"ruleIdentifier": "JustificationRule", "setting": "{\"required\":1}"}]}),
    ];
    for body in invalid {
        let r = w.s.call(
            "PATCH",
            &w.s.pim(&format!("/roleSettings/{setting_id}")),
            Some(&w.admin),
            Some(&body),
        );
        assert_error(&r, 400, "InvalidRoleSetting");
        assert_eq!(
            w.setting(&reader),
            after2,
            "a refused PATCH changes nothing: {body}"
        );
    }
    // Structurally wrong bodies: 400 (BadRequest or InvalidRoleSetting), nothing changed.
    let malformed = [
        json!({"userMemberSettings": [{"ruleIdentifier": "JustificationRule", "setting": {"required": true}}]}),
        json!({"userMemberSettings": "ExpirationRule"}),
        json!({"userMemberSettings": [{"setting": "{}"}]}),
        json!({"userMemberSettings": [5]}),
    ];
    for body in malformed {
        let r = w.s.call(
            "PATCH",
            &w.s.pim(&format!("/roleSettings/{setting_id}")),
            Some(&w.admin),
            Some(&body),
        );
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(
            ["BadRequest", "InvalidRoleSetting"].contains(&r.code()),
            "{}",
            r.text
        );
        assert_eq!(
            w.setting(&reader),
            after2,
            "a refused PATCH changes nothing: {body}"
        );
    }
    let r = w.s.raw(
        "PATCH",
        &w.s.pim(&format!("/roleSettings/{setting_id}")),
        Some(&w.admin),
        Some("[1,2"),
        &[],
    );
    assert_error(&r, 400, "BadRequest");
    // Unknown id → 400 RoleSettingNotFound (both forms).
    let body = json!({"adminEligibleSettings": []});
    let r = w.s.call(
        "PATCH",
        &w.s.pim("/roleSettings/00000000-0000-0000-0000-000000000000"),
        Some(&w.admin),
        Some(&body),
    );
    assert_error(&r, 400, "RoleSettingNotFound");
    let r = w.s.call(
        "PATCH",
        &w.s.pim(&format!("/resources/{sid}/roleSettings/nope")),
        Some(&w.admin),
        Some(&body),
    );
    assert_error(&r, 400, "RoleSettingNotFound");
}

#[test]
fn unknown_ids_are_404_with_their_codes() {
    let w = World::new();
    let sid = w.register(&new_sub());
    let x = "11111111-2222-3333-4444-555555555555";
    for (path, code) in [
        (format!("/resources/{x}"), "ResourceNotFound"),
        (format!("/resources/{x}/parent"), "ResourceNotFound"),
        (
            format!("/resources/{x}/roleDefinitions"),
            "ResourceNotFound",
        ),
        (
            format!("/resources/{x}/roleAssignments/$count"),
            "ResourceNotFound",
        ),
        (format!("/roleDefinitions/{x}"), "RoleDefinitionNotFound"),
        (
            format!("/resources/{sid}/roleDefinitions/{x}"),
            "RoleDefinitionNotFound",
        ),
        (
            format!("/roleDefinitions/{x}/resource"),
            "RoleDefinitionNotFound",
        ),
        (format!("/roleSettings/{x}"), "RoleSettingNotFound"),
        (
            format!("/resources/{sid}/roleSettings/{x}"),
            "RoleSettingNotFound",
        ),
        (format!("/roleAssignments/{x}"), "RoleAssignmentNotFound"),
        (
            format!("/resources/{sid}/roleAssignments/{x}"),
            "RoleAssignmentNotFound",
        ),
        (
            format!("/roleAssignments/{x}/subject"),
            "RoleAssignmentNotFound",
        ),
        (
            format!("/roleAssignmentRequests/{x}"),
            "RoleAssignmentRequestNotFound",
        ),
        (
            format!("/resources/{sid}/roleAssignmentRequests/{x}"),
            "RoleAssignmentRequestNotFound",
        ),
    ] {
        let r = w.get(&path);
        assert_error(&r, 404, code);
    }
    // An item of another resource is not found under this one.
    let other = w.register(&new_sub());
    let d = w.role(&other, OWNER);
    assert_error(
        &w.get(&format!("/resources/{sid}/roleDefinitions/{d}")),
        404,
        "RoleDefinitionNotFound",
    );
    let st = w.setting(&d)["id"].as_str().unwrap().to_string();
    assert_error(
        &w.get(&format!("/resources/{sid}/roleSettings/{st}")),
        404,
        "RoleSettingNotFound",
    );
}

/// A subscription with a resource group, a user eligible for Contributor on it who has
/// activated it: (world, sub id, rg id, user id, role def id, eligible id, active id, UserAdd request id).
struct Activated {
    w: World,
    sid: String,
    gid: String,
    user: String,
    role: String,
    eligible: String,
    active: String,
    request: String,
}

fn activated() -> Activated {
    let w = World::new();
    let sub = new_sub();
    let rg = format!("{sub}/resourceGroups/rg-nav");
    w.register(&rg);
    let (sid, gid) = (w.rid(&sub), w.rid(&rg));
    let user = w.user("Nora Nav");
    let eligible = w.assign(&sid, CONTRIBUTOR, &user, "Eligible", "P30D");
    let role = w.role(&sid, CONTRIBUTOR);
    let r = w.activate(&w.token(&user), &user, &sid, &role, &eligible);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"]["subStatus"], "Provisioned", "{}", r.text);
    let request = r.json["id"].as_str().unwrap().to_string();
    let f = format!("subjectId eq '{user}' and assignmentState eq 'Active'");
    let l = rows(&w.get(&format!("/roleAssignments?$filter={}", enc(&f))));
    assert_eq!(l.len(), 1);
    let active = l[0]["id"].as_str().unwrap().to_string();
    assert_eq!(l[0]["linkedEligibleRoleAssignmentId"], eligible.as_str());
    Activated {
        w,
        sid,
        gid,
        user,
        role,
        eligible,
        active,
        request,
    }
}

#[test]
fn single_valued_navigations() {
    let Activated {
        w,
        sid,
        gid,
        user,
        role,
        eligible,
        active,
        request,
    } = activated();
    let setting = w.setting(&role);
    let st = setting["id"].as_str().unwrap().to_string();
    let resource = strip_context(w.get(&format!("/resources/{sid}")).json);
    let definition = strip_context(w.get(&format!("/roleDefinitions/{role}")).json);
    let setting = strip_context(setting);
    let upn = w.user_name(&user);
    let subject = json!({"id": user, "type": "User", "displayName": "Nora Nav", "email": upn, "principalName": upn});
    let elig = strip_context(w.get(&format!("/roleAssignments/{eligible}")).json);
    assert_eq!(elig["memberType"], "Direct");
    for prefix in [String::new(), format!("/resources/{sid}")] {
        let cases: Vec<(String, &Value, &str)> = vec![
            (
                format!("/roleDefinitions/{role}/resource"),
                &resource,
                "governanceResources",
            ),
            (
                format!("/roleDefinitions/{role}/roleSetting"),
                &setting,
                "governanceRoleSettings",
            ),
            (
                format!("/roleSettings/{st}/resource"),
                &resource,
                "governanceResources",
            ),
            (
                format!("/roleSettings/{st}/roleDefinition"),
                &definition,
                "governanceRoleDefinitions",
            ),
            (
                format!("/roleSettings/{st}/roleDefinition/resource"),
                &resource,
                "governanceResources",
            ),
            (
                format!("/roleSettings/{st}/roleDefinition/roleSetting"),
                &setting,
                "governanceRoleSettings",
            ),
            (
                format!("/roleAssignments/{eligible}/resource"),
                &resource,
                "governanceResources",
            ),
            (
                format!("/roleAssignments/{eligible}/subject"),
                &subject,
                "governanceSubjects",
            ),
            (
                format!("/roleAssignments/{eligible}/roleDefinition"),
                &definition,
                "governanceRoleDefinitions",
            ),
            (
                format!("/roleAssignments/{eligible}/roleDefinition/resource"),
                &resource,
                "governanceResources",
            ),
            (
                format!("/roleAssignments/{eligible}/roleDefinition/roleSetting"),
                &setting,
                "governanceRoleSettings",
            ),
            (
                format!("/roleAssignments/{active}/linkedEligibleRoleAssignment"),
                &elig,
                "governanceRoleAssignments",
            ),
            (
                format!("/roleAssignmentRequests/{request}/resource"),
                &resource,
                "governanceResources",
            ),
            (
                format!("/roleAssignmentRequests/{request}/subject"),
                &subject,
                "governanceSubjects",
            ),
            (
                format!("/roleAssignmentRequests/{request}/roleDefinition"),
                &definition,
                "governanceRoleDefinitions",
            ),
            (
                format!("/roleAssignmentRequests/{request}/roleDefinition/resource"),
                &resource,
                "governanceResources",
            ),
            (
                format!("/roleAssignmentRequests/{request}/roleDefinition/roleSetting"),
                &setting,
                "governanceRoleSettings",
            ),
        ];
        for (path, expected, set) in cases {
            let r = w.get(&format!("{prefix}{path}"));
            assert_eq!(r.status, 200, "{prefix}{path}: {}", r.text);
            assert!(
                r.json["@odata.context"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("#{set}/$entity")),
                "{}",
                r.text
            );
            assert_eq!(&strip_context(r.json.clone()), expected, "{prefix}{path}");
        }
        // No link: 404.
        let r = w.get(&format!(
            "{prefix}/roleAssignments/{eligible}/linkedEligibleRoleAssignment"
        ));
        assert_eq!(r.status, 404, "{}", r.text);
        assert!(r.json["error"]["code"].is_string());
        // The same navigations expanded on a list (a page's related entities are loaded
        // together): the active row links its eligibility, every row its role setting.
        let r = w.get(&format!(
            "{prefix}/roleAssignments?$filter={}&$expand={}",
            enc(&format!("subjectId eq '{user}'")),
            enc("linkedEligibleRoleAssignment,roleDefinition($expand=roleSetting)")
        ));
        assert_eq!(r.status, 200, "{}", r.text);
        let rows = r.json["value"].as_array().cloned().unwrap_or_default();
        let by_id = |id: &str| rows.iter().find(|a| a["id"] == id).cloned();
        let active_row = by_id(&active).unwrap_or_else(|| panic!("{}", r.text));
        assert_eq!(active_row["linkedEligibleRoleAssignment"], elig, "{prefix}");
        let eligible_row = by_id(&eligible).unwrap_or_else(|| panic!("{}", r.text));
        assert_eq!(eligible_row["linkedEligibleRoleAssignment"], Value::Null);
        for row in [&active_row, &eligible_row] {
            assert_eq!(row["roleDefinition"]["roleSetting"], setting, "{prefix}");
        }
    }
    // $select on a navigation target.
    let r = w.get(&format!(
        "/roleAssignments/{eligible}/subject?$select=displayName"
    ));
    assert_eq!(strip_context(r.json), json!({"displayName": "Nora Nav"}));
    // The parent navigation.
    let r = w.get(&format!("/resources/{gid}/parent"));
    assert_eq!(strip_context(r.json), resource);
    assert_eq!(w.get(&format!("/resources/{sid}/parent")).status, 404);
}

#[test]
fn every_collection_in_both_forms_and_count() {
    let Activated {
        w, sid, gid, user, ..
    } = activated();
    // A second subscription whose rows must not leak into the first's.
    let other = w.register(&new_sub());
    let u2 = w.user("Otto Other");
    w.assign(&other, READER, &u2, "Eligible", "P1D");
    w.assign(&gid, READER, &u2, "Eligible", "P1D");
    let expect = [
        ("roleDefinitions", 8),
        ("roleSettings", 8),
        ("roleAssignments", 2),
        ("roleAssignmentRequests", 2),
    ];
    for (coll, n) in expect {
        let nested = w.get(&format!("/resources/{sid}/{coll}"));
        let f = enc(&format!("resourceId eq '{sid}'"));
        let top = w.get(&format!("/{coll}?$filter={f}"));
        assert_eq!(ids(&nested).len(), n, "{coll}: {}", nested.text);
        assert_eq!(ids(&nested), ids(&top), "{coll}");
        assert_eq!(rows(&nested), rows(&top), "{coll}");
        for r in rows(&nested) {
            assert_eq!(r["resourceId"], sid.as_str(), "{coll}: {r}");
        }
        let ctx = nested.json["@odata.context"].as_str().unwrap();
        assert!(
            ctx.ends_with(&format!(
                "#governance{}{}",
                coll[..1].to_uppercase(),
                &coll[1..]
            )),
            "{ctx}"
        );
        for path in [
            format!("/resources/{sid}/{coll}/$count"),
            format!("/{coll}/$count?$filter={f}"),
        ] {
            let c = w.get(&path);
            assert_eq!(c.status, 200, "{path}: {}", c.text);
            assert!(
                c.header("content-type")
                    .is_some_and(|t| t.starts_with("text/plain")),
                "{:?}",
                c.headers
            );
            assert_eq!(c.text, n.to_string(), "{path}");
            assert!(c.header("request-id").is_some());
        }
        // The SDK's Accept header for $count.
        let c = w.s.raw(
            "GET",
            &w.s.pim(&format!("/resources/{sid}/{coll}/$count")),
            Some(&w.admin),
            None,
            &[("Accept", "text/plain;q=0.9")],
        );
        assert_eq!(c.text, n.to_string());
        // Items through both forms.
        let first = rows(&nested)[0]["id"].as_str().unwrap().to_string();
        let a = w.get(&format!("/{coll}/{first}"));
        let b = w.get(&format!("/resources/{sid}/{coll}/{first}"));
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json, b.json, "{coll}");
    }
    // Provider-wide lists hold everything for a tenant administrator.
    assert_eq!(w.get("/roleDefinitions/$count").text, "24");
    assert_eq!(w.get("/roleSettings/$count").text, "24");
    assert_eq!(w.get("/roleAssignments/$count").text, "4");
    assert_eq!(w.get("/roleAssignmentRequests/$count").text, "4");
    assert_eq!(w.get("/resources/$count").text, "3");
    assert_eq!(rows(&w.get("/roleAssignments")).len(), 4);
    // The provider entity.
    let p = w.s.get("/beta/privilegedAccess/azureResources", &w.admin);
    assert_eq!(p.status, 200);
    assert_eq!(p.json["id"], "azureResources");
    let p = w.s.get("/beta/privilegedAccess", &w.admin);
    assert_eq!(p.json["value"][0]["id"], "azureResources", "{}", p.text);
    let _ = user;
}

#[test]
fn routing_errors_have_graph_bodies_and_request_ids() {
    let w = World::new();
    let sid = w.register(&new_sub());
    let d = w.role(&sid, OWNER);
    let st = w.setting(&d)["id"].as_str().unwrap().to_string();
    // Unknown provider keys.
    for p in ["aadRoles", "aadGroups", "nope"] {
        for path in [
            format!("/beta/privilegedAccess/{p}"),
            format!("/beta/privilegedAccess/{p}/resources"),
            format!("/beta/privilegedAccess/{p}/roleDefinitions/{d}"),
        ] {
            assert_error(&w.s.get(&path, &w.admin), 404, "NotFound");
        }
    }
    // Unknown routes.
    for path in [
        "/beta/nothing",
        "/beta/privilegedAccess/azureResources/widgets",
        "/nowhere",
        "/beta/privilegedAccess/azureResources/resources/x/y/z/w",
    ] {
        let r = w.s.get(path, &w.admin);
        assert_error(&r, 404, "NotFound");
    }
    // Methods the contract forbids.
    let pim = |p: &str| w.s.pim(p);
    for (method, path) in [
        ("DELETE", pim(&format!("/resources/{sid}"))),
        ("PATCH", pim(&format!("/resources/{sid}"))),
        ("POST", pim("/resources")),
        ("POST", pim("/roleDefinitions")),
        ("POST", pim(&format!("/resources/{sid}/roleDefinitions"))),
        ("DELETE", pim(&format!("/roleDefinitions/{d}"))),
        ("POST", pim("/roleSettings")),
        ("DELETE", pim(&format!("/roleSettings/{st}"))),
        ("PUT", pim(&format!("/roleSettings/{st}"))),
        ("POST", pim("/roleAssignments")),
        ("DELETE", pim("/roleAssignmentRequests/x")),
        ("PATCH", pim("/roleAssignmentRequests/x")),
        ("GET", pim("/resources/register")),
        ("GET", pim("/roleAssignmentRequests/x/cancel")),
        ("POST", "/beta/privilegedAccess".to_string()),
        (
            "DELETE",
            "/beta/privilegedAccess/azureResources".to_string(),
        ),
    ] {
        let r =
            w.s.call(method, &path, Some(&w.admin), Some(&json!({"a": 1})));
        assert_error(&r, 405, "MethodNotAllowed");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{method} {path}"
        );
    }
    // Every response carries a request id, success or not, each one different.
    let mut seen = BTreeSet::new();
    for r in [
        w.get("/resources"),
        w.get("/resources/$count"),
        w.get(&format!(
            "/roleAssignments/export?$filter={}",
            enc(&format!("resourceId eq '{sid}'"))
        )),
        w.register_as(&w.admin, &json!({"externalId": new_sub()})),
        w.s.call(
            "PATCH",
            &pim(&format!("/roleSettings/{st}")),
            Some(&w.admin),
            Some(&json!({})),
        ),
        w.s.call("GET", &pim("/resources"), None, None),
        w.get("/resources?$top=abc"),
        w.s.call("GET", "/healthz", None, None),
    ] {
        let id = r
            .header("request-id")
            .unwrap_or_else(|| panic!("no request-id: {r:?}"));
        assert!(seen.insert(id.to_string()));
    }
    // The client's request id is echoed back.
    let r = w.s.raw(
        "GET",
        &pim("/resources"),
        Some(&w.admin),
        None,
        &[("client-request-id", "abc-123")],
    );
    assert_eq!(r.header("client-request-id"), Some("abc-123"));
    let r = w.s.raw(
        "GET",
        &pim("/nope"),
        Some(&w.admin),
        None,
        &[("client-request-id", "abc-456")],
    );
    assert_eq!(
        r.json["error"]["innerError"]["client-request-id"],
        "abc-456"
    );
}

#[test]
fn member_types_direct_group_and_inherited() {
    let w = World::new();
    let sub = new_sub();
    let rg = format!("{sub}/resourceGroups/rg-members");
    w.register(&rg);
    let (sid, gid) = (w.rid(&sub), w.rid(&rg));
    let direct = w.user("Dina Direct");
    let member = w.user("Gus Member");
    let group = w.group("Ops Team", &[&member]);
    let a_direct = w.assign(&gid, READER, &direct, "Eligible", "P30D");
    let a_group = w.assign(&sid, CONTRIBUTOR, &group, "Eligible", "P30D");
    let a_sub = w.assign(&sid, OWNER, &direct, "Eligible", "P30D");

    // Direct: the subject's own.
    let l = rows(&w.get(&format!(
        "/roleAssignments?$filter={}",
        enc(&format!("subjectId eq '{direct}'"))
    )));
    assert_eq!(l.len(), 2);
    for a in &l {
        assert_eq!(a["memberType"], "Direct", "{a}");
        assert_eq!(a["subjectId"], direct.as_str());
        assert_eq!(a["status"], "Provisioned");
        assert_eq!(a["assignmentState"], "Eligible");
        assert_eq!(a["externalId"], Value::Null);
        assert!(a["endDateTime"].is_string());
    }
    // Group: seen by a member's subjectId, keeping the group's id and subject.
    for tok in [w.admin.clone(), w.token(&member)] {
        let l = rows(&w.get_as(
            &tok,
            &format!(
                "/roleAssignments?$filter={}",
                enc(&format!("subjectId eq '{member}'"))
            ),
        ));
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l[0]["id"], a_group.as_str());
        assert_eq!(l[0]["subjectId"], group.as_str());
        assert_eq!(l[0]["memberType"], "Group");
        assert_eq!(l[0]["resourceId"], sid.as_str());
    }
    // The group's own listing: Direct.
    let l = rows(&w.get(&format!(
        "/roleAssignments?$filter={}",
        enc(&format!("subjectId eq '{group}'"))
    )));
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["memberType"], "Direct");
    // The member reading the group assignment by id sees it as Group.
    let r = w.get_as(&w.token(&member), &format!("/roleAssignments/{a_group}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["memberType"], "Group");

    // Inherited: the subscription's assignments listed under the resource group.
    let l = rows(&w.get(&format!("/resources/{gid}/roleAssignments")));
    assert_eq!(l.len(), 3, "{l:?}");
    let by_id = |id: &str| {
        l.iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {l:?}"))
            .clone()
    };
    assert_eq!(by_id(&a_direct)["memberType"], "Direct");
    assert_eq!(by_id(&a_direct)["resourceId"], gid.as_str());
    for a in [&a_group, &a_sub] {
        assert_eq!(by_id(a)["memberType"], "Inherited");
        assert_eq!(
            by_id(a)["resourceId"],
            sid.as_str(),
            "the resource id stays the ancestor's"
        );
    }
    // The same through the provider-level filter, and the item under the child.
    let top = rows(&w.get(&format!(
        "/roleAssignments?$filter={}",
        enc(&format!("resourceId eq '{gid}'"))
    )));
    assert_eq!(top, l);
    let r = w.get(&format!("/resources/{gid}/roleAssignments/{a_sub}"));
    assert_eq!(r.json["memberType"], "Inherited", "{}", r.text);
    assert_eq!(
        w.get(&format!("/resources/{gid}/roleAssignments/$count"))
            .text,
        "3"
    );
    // Under the subscription, nothing from the child.
    let l = rows(&w.get(&format!("/resources/{sid}/roleAssignments")));
    assert_eq!(
        l.iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([a_group.clone(), a_sub.clone()])
    );
    assert!(l.iter().all(|a| a["memberType"] == "Direct"));
}

#[test]
fn expired_assignment_is_neither_listed_nor_found() {
    let w = World::new();
    let sid = w.register(&new_sub());
    let u = w.user("Ed Expiring");
    let keep = w.user("Kim Keeps");
    let kept = w.assign(&sid, READER, &keep, "Eligible", "P1D");
    let r = w.admin_add(&sid, READER, &u, "Active", "PT4S");
    assert_eq!(r.status, 201, "{}", r.text);
    let listed = rows(&w.get(&format!("/resources/{sid}/roleAssignments")));
    let a = listed
        .iter()
        .find(|a| a["subjectId"] == u.as_str())
        .unwrap_or_else(|| panic!("the 4-second assignment is listed while current: {listed:?}"));
    let brief = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["endDateTime"], r.json["schedule"]["endDateTime"]);
    let mine_path = format!(
        "/roleAssignments?$filter={}",
        enc(&format!("subjectId eq '{u}'"))
    );
    // Twice while current: the second answer comes from the lists held in memory, which
    // must leave the row out once it has ended (decisions.md §6: the clock at every read),
    // whether or not the sweeper has moved it to history by then.
    for _ in 0..2 {
        assert_eq!(ids(&w.get(&mine_path)), BTreeSet::from([brief.clone()]));
    }
    fixture::sleep_past(fixture::ts(&a["endDateTime"]));
    let listed = ids(&w.get(&format!("/resources/{sid}/roleAssignments")));
    assert_eq!(listed, BTreeSet::from([kept.clone()]));
    assert_error(
        &w.get(&format!("/roleAssignments/{brief}")),
        404,
        "RoleAssignmentNotFound",
    );
    assert_error(
        &w.get(&format!("/resources/{sid}/roleAssignments/{brief}")),
        404,
        "RoleAssignmentNotFound",
    );
    let mine = rows(&w.get(&mine_path));
    assert!(mine.is_empty(), "{mine:?}");
    assert_eq!(
        w.get(&format!("/resources/{sid}/roleAssignments/$count"))
            .text,
        "1"
    );
    assert_eq!(
        w.get(&format!("/resources/{sid}?$select=roleAssignmentCount"))
            .json["roleAssignmentCount"],
        1
    );
    let csv = w.get(&format!("/resources/{sid}/roleAssignments/export"));
    assert_eq!(
        csv.text.matches("\r\n").count(),
        2,
        "header and one row: {}",
        csv.text
    );
    // The expired holder no longer reads the resource.
    assert_error(
        &w.get_as(&w.token(&u), &format!("/resources/{sid}")),
        403,
        "Authorization_RequestDenied",
    );
}

#[test]
fn export_csv_and_json() {
    let w = World::new();
    let sub = new_sub();
    let sid = w.register_with(&sub, Some("Export, Inc."), None);
    let other = w.register(&new_sub());
    let a = w.user("Amy Alpha");
    let b = w.user("Ben \"Beta\"");
    w.assign(&sid, READER, &a, "Eligible", "P10D");
    w.assign(&sid, CONTRIBUTOR, &b, "Active", "P2D");
    w.assign(&other, READER, &a, "Eligible", "P1D");
    let listed = rows(&w.get(&format!("/resources/{sid}/roleAssignments")));
    assert_eq!(listed.len(), 2);
    const HEADER: &str = "Assignment Level,User Group Name,Role Name,Email,Assignment Type,Assignment Start Time (UTC),Assignment End Time (UTC)";
    let f = format!("resourceId eq '{sid}'");
    let paths = [
        format!("/roleAssignments/export?$filter={}", enc(&f)),
        format!("/roleAssignments/export()?$filter={}", enc(&f)),
        format!("/roleAssignments/export?filter={}", enc(&f)),
        format!("/roleAssignments/export?filter={}", f.replace(' ', "+")),
        format!("/resources/{sid}/roleAssignments/export"),
        format!("/resources/{sid}/roleAssignments/export()"),
    ];
    let mut first: Option<String> = None;
    for p in &paths {
        let r = w.get(p);
        assert_eq!(r.status, 200, "{p}: {}", r.text);
        assert_eq!(
            r.header("content-type"),
            Some("application/octet-stream"),
            "{p}"
        );
        assert!(r.header("request-id").is_some());
        let body = r
            .text
            .strip_prefix('\u{feff}')
            .unwrap_or_else(|| panic!("no BOM: {:?}", r.text));
        assert!(!body.starts_with('\u{feff}'), "one BOM only");
        assert!(body.ends_with("\r\n"));
        let lines: Vec<&str> = body.strip_suffix("\r\n").unwrap().split("\r\n").collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines.len(), 3, "{p}: {body:?}");
        assert!(!body.replace("\r\n", "").contains('\n'), "CRLF only");
        for row in &listed {
            let (name, email, role) = if row["subjectId"] == a.as_str() {
                ("Amy Alpha".to_string(), w.user_name(&a), "Reader")
            } else {
                (
                    "\"Ben \"\"Beta\"\"\"".to_string(),
                    format!("\"{}\"", w.user_name(&b).replace('"', "\"\"")),
                    "Contributor",
                )
            };
            let expected = format!(
                "\"Export, Inc.\",{name},{role},{email},{},{},{}",
                row["assignmentState"].as_str().unwrap(),
                row["startDateTime"].as_str().unwrap(),
                row["endDateTime"].as_str().unwrap()
            );
            assert!(
                lines.contains(&expected.as_str()),
                "{expected:?} not in {lines:?}"
            );
        }
        match &first {
            None => first = Some(r.text.clone()),
            Some(t) => assert_eq!(t, &r.text, "{p}"),
        }
    }
    // JSON for clients that accept only JSON (the Graph SDK).
    let r = w.s.raw(
        "GET",
        &w.s.pim(&paths[1]),
        Some(&w.admin),
        None,
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    assert!(
        r.json["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#Collection(Edm.String)")
    );
    let values = r.json["value"].as_array().unwrap();
    assert_eq!(values.len(), 3);
    assert_eq!(values[0], HEADER);
    let csv_lines: Vec<String> = first
        .unwrap()
        .trim_start_matches('\u{feff}')
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(
        values
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        csv_lines
    );
    // Anything that also accepts octet-stream or */* gets the CSV.
    for accept in ["*/*", "application/json, */*", "application/octet-stream"] {
        let r = w.s.raw(
            "GET",
            &w.s.pim(&paths[0]),
            Some(&w.admin),
            None,
            &[("Accept", accept)],
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/octet-stream"),
            "{accept}"
        );
    }
    // Mine: by subjectId, across resources.
    let mine = w.get_as(
        &w.token(&a),
        &format!(
            "/roleAssignments/export?$filter={}",
            enc(&format!("subjectId eq '{a}'"))
        ),
    );
    assert_eq!(mine.status, 200, "{}", mine.text);
    assert_eq!(
        mine.text.matches("\r\n").count(),
        3,
        "header and two rows: {}",
        mine.text
    );
    // An empty export is just the header.
    let empty = w.get(&format!(
        "/resources/{}/roleAssignments/export",
        w.register(&new_sub())
    ));
    assert_eq!(empty.text, format!("\u{feff}{HEADER}\r\n"));
}

/// A NUL character (which PostgreSQL refuses in text) in a path id, a query option or any
/// field of a JSON body gets `400 BadRequest` with a Graph (or SCIM) error body on every
/// store, and changes nothing.
#[test]
fn nul_characters_are_refused_with_400_everywhere() {
    let w = World::new();
    let sid = w.register(&new_sub());
    let pim = |p: &str| w.s.pim(p);
    for path in [
        pim("/resources/%00"),
        pim(&format!("/resources/{sid}/roleDefinitions/a%00b")),
        pim("/roleAssignmentRequests/%00/cancel"),
        pim("/roleAssignments?$filter=subjectId%20eq%20%27x%00y%27"),
        pim("/resources?$filter=displayName%20eq%20%27%00%27&$top=5"),
        "/beta/auditLogs/directoryAudits/%00".to_string(),
    ] {
        let method = if path.ends_with("/cancel") {
            "POST"
        } else {
            "GET"
        };
        let r = w.s.call(method, &path, Some(&w.admin), None);
        assert_error(&r, 400, "BadRequest");
    }
    let d = w.role(&sid, OWNER);
    let body = json!({
        "type": "AdminAdd", "assignmentState": "Eligible", "subjectId": "someone",
        "resourceId": sid, "roleDefinitionId": d, "reason": "nul \u{0} inside",
        "schedule": {"type": "Once", "duration": "P1D"},
    });
    let before = w.s.get(&pim("/roleAssignmentRequests"), &w.admin);
    let r = w.s.post(&pim("/roleAssignmentRequests"), &w.admin, &body);
    assert_error(&r, 400, "BadRequest");
    let after = w.s.get(&pim("/roleAssignmentRequests"), &w.admin);
    assert_eq!(
        before.json["value"], after.json["value"],
        "nothing was written"
    );
    // SCIM answers with its own error shape.
    let r = w.s.call(
        "POST",
        "/scim/v2/Users",
        Some(&w.admin),
        Some(&json!({"userName": "nul\u{0}@example.test", "displayName": "N"})),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["status"], "400", "{}", r.text);
    let r = w.s.call("GET", "/scim/v2/Users/%00", Some(&w.admin), None);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["status"], "400", "{}", r.text);
}
