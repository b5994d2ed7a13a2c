//! Access ends when what backs it ends: group membership, group deletion, a shortened
//! eligibility, a removal racing a pending request. And the inputs that once could take
//! the server down or hand out access no longer do.

use crate::fixture::{
    CONTRIBUTOR, OWNER, Tenant, activation, create_group, eligible_user, lasting, request_body,
    status_of,
};
use crate::harness::token;
use serde_json::json;

/// Active assignments of `user` listed as theirs (direct or through a group).
fn active_of(t: &Tenant, user: &str, tok: &str) -> usize {
    let r = t.s.get(
        &t.s.pim(&format!(
            "/roleAssignments?$filter=subjectId%20eq%20%27{user}%27"
        )),
        tok,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["value"].as_array().map_or(0, |v| {
        v.iter()
            .filter(|a| a["assignmentState"] == "Active")
            .count()
    })
}

/// A user eligible for Owner on the subscription through group `g`, who activates it.
fn activated_through_group(t: &Tenant) -> (String, String, String, String) {
    let (alice, alice_t) = t.user("alice");
    let group = create_group(&t.s, &t.admin, "owners", &[alice.as_str()]);
    let owner = t.role(&t.sub, OWNER);
    t.admin_add(&t.sub, &owner, &group, "Eligible", lasting("P30D"));
    let r = t.request(&alice_t, &activation(&t.sub, &owner, &alice, None, "PT4H"));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    assert_eq!(active_of(t, &alice, &alice_t), 1);
    (alice, alice_t, group, owner)
}

#[test]
fn leaving_the_group_ends_activations_made_through_it() {
    let t = Tenant::start();
    let (alice, alice_t, group, _) = activated_through_group(&t);
    let r = t.s.call(
        "PUT",
        &format!("/scim/v2/Groups/{group}"),
        Some(&t.admin),
        Some(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "owners", "members": []})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Her activation is gone, and with it the Owner rights it gave.
    assert_eq!(active_of(&t, &alice, &alice_t), 0);
    let r =
        t.s.get(&t.s.pim(&format!("/resources/{}", t.sub)), &alice_t);
    assert_eq!(r.status, 403, "{}", r.text);
}

#[test]
fn deleting_the_group_ends_activations_made_through_it() {
    let t = Tenant::start();
    let (alice, alice_t, group, _) = activated_through_group(&t);
    let r = t.s.call(
        "DELETE",
        &format!("/scim/v2/Groups/{group}"),
        Some(&t.admin),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(active_of(&t, &alice, &alice_t), 0);
}

#[test]
fn a_pending_activation_of_someone_who_left_the_group_is_canceled() {
    let t = Tenant::start();
    let (alice, alice_t) = t.user("alice");
    let (bob, bob_t) = t.user("bob");
    let group = create_group(&t.s, &t.admin, "owners", &[alice.as_str()]);
    let owner = t.role(&t.sub, OWNER);
    t.set_rule(
        &owner,
        "userMemberSettings",
        "ApprovalRule",
        json!({"Enabled": true, "Approvers": [{"Id": bob, "Type": "User"}]}),
    );
    t.admin_add(&t.sub, &owner, &group, "Eligible", lasting("P30D"));
    let r = t.request(&alice_t, &activation(&t.sub, &owner, &alice, None, "PT4H"));
    assert_eq!(
        status_of(&r.json),
        ("InProgress", "PendingApproval"),
        "{}",
        r.text
    );
    let id = r.json["id"].as_str().unwrap().to_string();
    let r = t.s.call(
        "PUT",
        &format!("/scim/v2/Groups/{group}"),
        Some(&t.admin),
        Some(&json!({"displayName": "owners", "members": []})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(status_of(&t.get_request(&id)), ("Closed", "Canceled"));
    let r = crate::fixture::decide(&t.s, &bob_t, &id, "AdminApproved");
    assert_eq!(r.code(), "RequestCannotBeUpdated", "{}", r.text);
    assert_eq!(active_of(&t, &alice, &alice_t), 0);
}

#[test]
fn shortening_an_eligible_assignment_shortens_its_activation() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT8H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let mut body = request_body("AdminUpdate", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = lasting("PT1H");
    body["reason"] = json!("shorten");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    let eligible_end = r.json["schedule"]["endDateTime"].clone();
    let list = t.assignments(&t.sub);
    let active = list
        .iter()
        .find(|a| a["assignmentState"] == "Active")
        .expect("activation listed");
    assert_eq!(active["endDateTime"], eligible_end);
}

#[test]
fn activations_are_never_extended() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT8H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let mut body = request_body("UserExtend", "Active", &t.sub, &role, &alice);
    body["schedule"] = lasting("P20D");
    body["reason"] = json!("longer please");
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "RoleAssignmentDoesNotExist");
    let mut body = request_body("AdminExtend", "Active", &t.sub, &role, &alice);
    body["schedule"] = lasting("P20D");
    body["reason"] = json!("longer");
    assert_eq!(
        t.request(&t.admin, &body).code(),
        "RoleAssignmentDoesNotExist"
    );
}

#[test]
fn a_pending_request_never_blocks_a_removal() {
    let t = Tenant::start();
    let (alice, alice_t, role, _) = eligible_user(&t, "alice", "P3D");
    let mut extend = request_body("UserExtend", "Eligible", &t.sub, &role, &alice);
    extend["schedule"] = lasting("P20D");
    extend["reason"] = json!("keep it");
    let r = t.request(&alice_t, &extend);
    assert_eq!(
        status_of(&r.json),
        ("InProgress", "PendingAdminDecision"),
        "{}",
        r.text
    );
    let pending = r.json["id"].as_str().unwrap().to_string();
    let r = t.request(
        &t.admin,
        &request_body("AdminRemove", "Eligible", &t.sub, &role, &alice),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Revoked"));
    assert_eq!(status_of(&t.get_request(&pending)), ("Closed", "Canceled"));
    assert!(t.assignments(&t.sub).is_empty());
}

#[test]
fn huge_minutes_in_a_rule_are_refused_and_writes_keep_working() {
    let t = Tenant::start();
    let owner = t.role(&t.sub, OWNER);
    let setting = crate::fixture::role_setting_id(&t.s, &t.admin, &owner);
    for rule in [
        json!({"Enabled": true, "ApprovalTimeoutInMinutes": i64::MAX}),
        json!({"Enabled": true, "AllowEmergencyBypass": true, "EmergencyMaximumMinutes": i64::MAX}),
    ] {
        let r = t.s.call(
            "PATCH",
            &t.s.pim(&format!("/roleSettings/{setting}")),
            Some(&t.admin),
            Some(&json!({"userMemberSettings": [{"ruleIdentifier": "ApprovalRule", "setting": rule.to_string()}]})),
        );
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.code(), "InvalidRoleSetting");
    }
    let r = t.s.call(
        "PATCH",
        &t.s.pim(&format!("/roleSettings/{setting}")),
        Some(&t.admin),
        Some(&json!({"userMemberSettings": [{"ruleIdentifier": "ExpirationRule", "setting": json!({"permanentAssignment": false, "maximumGrantPeriodInMinutes": i64::MAX}).to_string()}]})),
    );
    assert_eq!(r.code(), "InvalidRoleSetting", "{}", r.text);
    // The server still takes writes.
    let (bob, _) = t.user("bob");
    let contributor = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &contributor, &bob, "Eligible", lasting("P1D"));
}

#[test]
fn owning_a_management_group_does_not_let_you_claim_a_subscription() {
    let t = Tenant::start();
    let mg = "/providers/Microsoft.Management/managementGroups/sandbox";
    crate::fixture::register(&t.s, &t.admin, mg);
    let mg_id = crate::fixture::resource_id(&t.s, &t.admin, mg);
    let (mallory, mallory_t) = t.user("mallory");
    let owner = t.role(&mg_id, OWNER);
    t.admin_add(&mg_id, &owner, &mallory, "Active", lasting("P1D"));
    let r = t.s.post(
        &t.s.pim("/resources/register"),
        &mallory_t,
        &json!({"externalId": format!("/subscriptions/{}", crate::fixture::guid()), "parentExternalId": mg}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.code(), "Authorization_RequestDenied");
}

#[test]
fn scim_paths_name_ids_not_external_ids() {
    let t = Tenant::start();
    let r = t.s.call(
        "POST",
        "/scim/v2/Users",
        Some(&t.admin),
        Some(&json!({"userName": "erin@example.test", "displayName": "Erin", "externalId": "erin-ext"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = t.s.call(
        "PUT",
        "/scim/v2/Users/erin-ext",
        Some(&t.admin),
        Some(&json!({"userName": "erin@example.test", "displayName": "Erin", "active": false})),
    );
    assert_eq!(r.status, 404, "{}", r.text);
}

#[test]
fn a_group_cannot_sign_in() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let group = create_group(&t.s, &t.admin, "owners", &[alice.as_str()]);
    let r = t.s.get(&t.s.pim("/resources"), &token(&group, true));
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.code(), "Authorization_RequestDenied");
}

#[test]
fn an_external_id_never_makes_a_tenant_administrator() {
    let t = Tenant::start();
    // A provisioning client sets a user's externalId to an administrator's id.
    let r = t.s.call(
        "POST",
        "/scim/v2/Users",
        Some(&t.admin),
        Some(&json!({"userName": "eve@example.test", "displayName": "Eve", "externalId": crate::harness::ADMIN})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let eve = r.json["id"].as_str().unwrap().to_string();
    let r =
        t.s.get("/beta/auditLogs/directoryAudits", &token(&eve, true));
    assert_eq!(r.status, 403, "{}", r.text);
    let r = t.s.get(
        &t.s.pim(&format!("/resources/{}", t.sub)),
        &token(&eve, true),
    );
    assert_eq!(r.status, 403, "{}", r.text);
}
