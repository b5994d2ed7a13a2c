//! The role assignment request workflow over HTTP: the nine request types, every documented
//! error code, the accepted schedule forms, who may make which request, and racing adds
//! (graph-pim-v2.md §6.13–6.17, §7; decisions.md §6–§8, §13).

use crate::fixture::{
    CONTRIBUTOR, OWNER, READER, Tenant, activation, cancel, create_group, decide, detail_keys,
    eligible_user, from_now, lasting, list_assignments, now, request_body, sleep_past, status_of,
    ts,
};
use crate::harness::token;
use jiff::SignedDuration;
use serde_json::{Value, json};

/// The one assignment in `list` with `id`.
fn find<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("assignment {id} not listed: {list:?}"))
}

/// Every statusDetails value is `Grant`.
fn all_granted(request: &Value) -> bool {
    request["status"]["statusDetails"]
        .as_array()
        .is_some_and(|d| d.iter().all(|kv| kv["value"] == "Grant"))
}

/// The duration between a schedule's start and end.
fn span(schedule: &Value) -> SignedDuration {
    ts(&schedule["endDateTime"]).duration_since(ts(&schedule["startDateTime"]))
}

// ---------------------------------------------------------------- AdminAdd

#[test]
fn admin_add_eligible_is_provisioned_at_once_and_listed() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let before = now();
    let r = t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P30D"));
    assert_eq!(status_of(&r), ("Closed", "Provisioned"), "{r}");
    assert_eq!(detail_keys(&r), ["AdminRequestRule", "ExpirationRule"]);
    assert!(all_granted(&r), "{r}");
    assert_eq!(r["type"], "AdminAdd");
    assert_eq!(r["assignmentState"], "Eligible");
    assert_eq!(r["subjectId"], alice.as_str());
    assert_eq!(r["resourceId"], t.sub.as_str());
    assert_eq!(r["roleDefinitionId"], role.as_str());
    assert_eq!(r["linkedEligibleRoleAssignmentId"], "");
    assert_eq!(r["reason"], "integration test");
    assert!(
        r["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with("governanceRoleAssignmentRequests/$entity"))
    );
    assert!(
        ts(&r["requestedDateTime"])
            >= before
                .checked_sub(SignedDuration::from_secs(5))
                .expect("ts"),
        "{r}"
    );
    assert_eq!(r["schedule"]["type"], "Once");
    assert_eq!(r["schedule"]["duration"], "P30D");
    assert_eq!(span(&r["schedule"]), SignedDuration::from_hours(30 * 24));

    let list = t.assignments(&t.sub);
    assert_eq!(list.len(), 1, "{list:?}");
    let a = &list[0];
    assert_eq!(a["subjectId"], alice.as_str());
    assert_eq!(a["roleDefinitionId"], role.as_str());
    assert_eq!(a["resourceId"], t.sub.as_str());
    assert_eq!(a["assignmentState"], "Eligible");
    assert_eq!(a["memberType"], "Direct");
    assert_eq!(a["status"], "Provisioned");
    assert_eq!(a["linkedEligibleRoleAssignmentId"], Value::Null);
    assert_eq!(ts(&a["endDateTime"]), ts(&r["schedule"]["endDateTime"]));

    let again = t.get_request(r["id"].as_str().expect("id"));
    assert_eq!(status_of(&again), ("Closed", "Provisioned"));
    assert_eq!(again["schedule"], r["schedule"]);
    assert_eq!(again["requestedDateTime"], r["requestedDateTime"]);
}

#[test]
fn admin_add_active_evaluates_the_admin_member_rules() {
    let t = Tenant::start();
    let (bob, _) = t.user("bob");
    let role = t.role(&t.rg, READER);
    let r = t.admin_add(&t.rg, &role, &bob, "Active", lasting("PT8H"));
    assert_eq!(status_of(&r), ("Closed", "Provisioned"), "{r}");
    assert_eq!(
        detail_keys(&r),
        [
            "AdminRequestRule",
            "ExpirationRule",
            "MfaRule",
            "JustificationRule"
        ]
    );
    assert!(all_granted(&r), "{r}");
    let list = t.assignments(&t.rg);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["assignmentState"], "Active");
    assert_eq!(list[0]["subjectId"], bob.as_str());
    assert_eq!(list[0]["linkedEligibleRoleAssignmentId"], Value::Null);
}

#[test]
fn admin_add_with_future_start_is_granted_not_current_and_blocks_a_second_add() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, READER);
    let start = from_now(3600);
    let schedule = json!({"type": "Once", "startDateTime": start.to_string(), "duration": "PT2H"});
    let r = t.admin_add(&t.sub, &role, &alice, "Active", schedule.clone());
    assert_eq!(status_of(&r), ("InProgress", "Granted"), "{r}");
    assert_eq!(ts(&r["schedule"]["startDateTime"]), start);
    assert!(
        t.assignments(&t.sub).is_empty(),
        "a future assignment is not current"
    );
    let id = r["id"].as_str().expect("id");
    assert_eq!(status_of(&t.get_request(id)), ("InProgress", "Granted"));

    let mut body = request_body("AdminAdd", "Active", &t.sub, &role, &alice);
    body["schedule"] = schedule;
    let second = t.request(&t.admin, &body);
    assert_eq!(second.status, 400, "{}", second.text);
    assert_eq!(second.code(), "PendingRoleAssignmentRequest");

    // A granted request that has not started yet may still be canceled.
    let c = cancel(&t.s, &t.admin, id);
    assert_eq!(c.status, 204, "{}", c.text);
    assert_eq!(status_of(&t.get_request(id)), ("Closed", "Canceled"));
    let third = t.request(&t.admin, &body);
    assert_eq!(
        third.status, 201,
        "after the cancel the add goes through: {}",
        third.text
    );
}

// ---------------------------------------------------------------- AdminUpdate / Extend / Renew

#[test]
fn admin_update_changes_the_schedule_of_the_existing_assignment() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P30D"));
    let id = t.assignments(&t.sub)[0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let end = from_now(10 * 86_400)
        .round(jiff::Unit::Second)
        .expect("round");
    let mut body = request_body("AdminUpdate", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = json!({"type": "Once", "endDateTime": end.to_string()});
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["type"], "AdminUpdate");
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    assert_eq!(detail_keys(&r.json), ["AdminRequestRule", "ExpirationRule"]);
    assert_eq!(ts(&r.json["schedule"]["endDateTime"]), end);

    let list = t.assignments(&t.sub);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], id.as_str(), "the same assignment is changed");
    assert_eq!(ts(&list[0]["endDateTime"]), end);
}

#[test]
fn admin_update_extend_and_remove_of_a_missing_assignment_fail() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    for kind in ["AdminUpdate", "AdminExtend", "AdminRemove"] {
        let mut body = request_body(kind, "Eligible", &t.sub, &role, &alice);
        body["schedule"] = lasting("P10D");
        let r = t.request(&t.admin, &body);
        assert_eq!(r.status, 400, "{kind}: {}", r.text);
        assert_eq!(r.code(), "RoleAssignmentDoesNotExist", "{kind}");
    }
}

#[test]
fn admin_extend_must_move_the_end_later() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let added = t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P10D"));
    let old_end = ts(&added["schedule"]["endDateTime"]);

    let mut earlier = request_body("AdminExtend", "Eligible", &t.sub, &role, &alice);
    earlier["schedule"] = json!({"type": "Once", "endDateTime": from_now(5 * 86_400).to_string()});
    let r = t.request(&t.admin, &earlier);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "BadRequest");
    assert_eq!(
        ts(&t.assignments(&t.sub)[0]["endDateTime"]),
        old_end,
        "nothing changed"
    );

    let new_end = from_now(40 * 86_400)
        .round(jiff::Unit::Second)
        .expect("round");
    let mut later = request_body("AdminExtend", "Eligible", &t.sub, &role, &alice);
    later["schedule"] = json!({"type": "Once", "endDateTime": new_end.to_string()});
    let r = t.request(&t.admin, &later);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["type"], "AdminExtend");
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    assert_eq!(detail_keys(&r.json), ["AdminRequestRule", "ExpirationRule"]);
    let list = t.assignments(&t.sub);
    assert_eq!(list.len(), 1);
    assert_eq!(ts(&list[0]["endDateTime"]), new_end);
    assert_eq!(
        ts(&list[0]["startDateTime"]),
        ts(&added["schedule"]["startDateTime"]),
        "start kept"
    );
}

#[test]
fn admin_renew_brings_back_an_expired_assignment() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let added = t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("PT2S"));

    let mut renew = request_body("AdminRenew", "Eligible", &t.sub, &role, &alice);
    renew["schedule"] = lasting("P7D");
    let early = t.request(&t.admin, &renew);
    assert_eq!(
        early.status, 400,
        "a live assignment is not renewed: {}",
        early.text
    );
    assert_eq!(early.code(), "RoleAssignmentExists");

    sleep_past(ts(&added["schedule"]["endDateTime"]));
    assert!(
        t.assignments(&t.sub).is_empty(),
        "an expired assignment is not listed"
    );

    let r = t.request(&t.admin, &renew);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["type"], "AdminRenew");
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    assert_eq!(detail_keys(&r.json), ["AdminRequestRule", "ExpirationRule"]);
    assert_eq!(r.json["schedule"]["duration"], "P7D");
    let list = t.assignments(&t.sub);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["subjectId"], alice.as_str());
    assert_eq!(
        ts(&list[0]["endDateTime"]),
        ts(&r.json["schedule"]["endDateTime"])
    );

    let (bob, _) = t.user("bob");
    let mut never = request_body("AdminRenew", "Eligible", &t.sub, &role, &bob);
    never["schedule"] = lasting("P7D");
    let r = t.request(&t.admin, &never);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "RoleAssignmentDoesNotExist");
}

// ---------------------------------------------------------------- AdminRemove

#[test]
fn admin_remove_of_an_eligible_assignment_also_ends_its_activations() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    let act = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(act.status, 201, "{}", act.text);
    assert_eq!(t.assignments(&t.sub).len(), 2);

    let r = t.request(
        &t.admin,
        &request_body("AdminRemove", "Eligible", &t.sub, &role, &alice),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["type"], "AdminRemove");
    assert_eq!(status_of(&r.json), ("Closed", "Revoked"));
    assert_eq!(r.json["status"]["statusDetails"], json!([]));
    assert_eq!(r.json["schedule"], Value::Null);
    assert!(
        t.assignments(&t.sub).is_empty(),
        "eligible and activation both gone: {:?}",
        t.assignments(&t.sub)
    );

    let again = t.request(
        &t.admin,
        &request_body("AdminRemove", "Eligible", &t.sub, &role, &alice),
    );
    assert_eq!(again.status, 400, "{}", again.text);
    assert_eq!(again.code(), "RoleAssignmentDoesNotExist");
}

#[test]
fn admin_remove_of_an_active_assignment_revokes_it() {
    let t = Tenant::start();
    let (bob, _) = t.user("bob");
    let role = t.role(&t.sub, READER);
    t.admin_add(&t.sub, &role, &bob, "Active", lasting("P1D"));
    let r = t.request(
        &t.admin,
        &request_body("AdminRemove", "Active", &t.sub, &role, &bob),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Revoked"));
    assert!(t.assignments(&t.sub).is_empty());
}

// ---------------------------------------------------------------- UserAdd (activation)

#[test]
fn user_add_activates_the_linked_eligible_assignment() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT2H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let req = &r.json;
    assert_eq!(req["type"], "UserAdd");
    assert_eq!(req["assignmentState"], "Active");
    assert_eq!(status_of(req), ("Closed", "Provisioned"));
    assert_eq!(
        detail_keys(req),
        [
            "EligibilityRule",
            "ExpirationRule",
            "MfaRule",
            "JustificationRule",
            "TicketingRule",
            "ApprovalRule"
        ]
    );
    assert!(all_granted(req), "{req}");
    assert_eq!(req["linkedEligibleRoleAssignmentId"], eligible.as_str());
    assert_eq!(req["schedule"]["duration"], "PT2H");

    let list = t.assignments(&t.sub);
    assert_eq!(list.len(), 2, "{list:?}");
    let active = list
        .iter()
        .find(|a| a["assignmentState"] == "Active")
        .expect("activation listed");
    assert_eq!(active["subjectId"], alice.as_str());
    assert_eq!(active["linkedEligibleRoleAssignmentId"], eligible.as_str());
    assert_eq!(active["memberType"], "Direct");
    assert_eq!(
        ts(&active["endDateTime"]),
        ts(&req["schedule"]["endDateTime"])
    );
    assert_eq!(find(&list, &eligible)["assignmentState"], "Eligible");

    // The user sees their own request.
    let own = t.s.get(
        &t.s.pim(&format!(
            "/roleAssignmentRequests/{}",
            req["id"].as_str().expect("id")
        )),
        &alice_t,
    );
    assert_eq!(own.status, 200, "{}", own.text);
}

#[test]
fn user_add_works_through_a_group_membership() {
    let t = Tenant::start();
    let (alice, alice_t) = t.user("alice");
    let group = create_group(&t.s, &t.admin, "operators", &[&alice]);
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &role, &group, "Eligible", lasting("P30D"));
    let eligible = t.assignments(&t.sub)[0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    assert_eq!(r.json["subjectId"], alice.as_str());
    assert_eq!(r.json["linkedEligibleRoleAssignmentId"], eligible.as_str());
    let list = t.assignments(&t.sub);
    let active = list
        .iter()
        .find(|a| a["assignmentState"] == "Active")
        .expect("activation listed");
    assert_eq!(
        active["subjectId"],
        alice.as_str(),
        "the member holds the activation, not the group"
    );
    assert_eq!(active["linkedEligibleRoleAssignmentId"], eligible.as_str());
}

#[test]
fn user_add_at_a_narrower_scope_names_the_child_role_definition() {
    let t = Tenant::start();
    let (alice, alice_t, sub_role, eligible) = eligible_user(&t, "alice", "P30D");
    let rg_role = t.role(&t.rg, CONTRIBUTOR);
    assert_ne!(rg_role, sub_role, "role definition ids differ per resource");

    let r = t.request(
        &alice_t,
        &activation(&t.rg, &rg_role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    assert_eq!(r.json["resourceId"], t.rg.as_str());
    assert_eq!(r.json["roleDefinitionId"], rg_role.as_str());
    assert_eq!(r.json["linkedEligibleRoleAssignmentId"], eligible.as_str());

    let list = t.assignments(&t.rg);
    let active = list
        .iter()
        .find(|a| a["assignmentState"] == "Active")
        .expect("activation on the child");
    assert_eq!(active["resourceId"], t.rg.as_str());
    assert_eq!(active["roleDefinitionId"], rg_role.as_str());
    assert_eq!(active["memberType"], "Direct");
    let inherited = find(&list, &eligible);
    assert_eq!(inherited["memberType"], "Inherited");
    assert_eq!(inherited["resourceId"], t.sub.as_str());
    // The activation does not exist at the subscription.
    assert!(
        t.assignments(&t.sub)
            .iter()
            .all(|a| a["assignmentState"] == "Eligible")
    );

    // The parent's role definition does not belong to the child resource.
    let wrong = t.request(
        &alice_t,
        &activation(&t.rg, &sub_role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(wrong.status, 400, "{}", wrong.text);
    assert_eq!(wrong.code(), "RoleNotFound");
}

#[test]
fn user_add_finds_the_eligible_assignment_when_none_is_named() {
    let t = Tenant::start();
    let (alice, alice_t, _, eligible) = eligible_user(&t, "alice", "P30D");
    let rg_role = t.role(&t.rg, CONTRIBUTOR);
    let r = t.request(&alice_t, &activation(&t.rg, &rg_role, &alice, None, "PT1H"));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    assert_eq!(r.json["linkedEligibleRoleAssignmentId"], eligible.as_str());

    // Without eligibility there is nothing to find.
    let (bob, bob_t) = t.user("bob");
    let r = t.request(&bob_t, &activation(&t.rg, &rg_role, &bob, None, "PT1H"));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "RoleAssignmentRequestPolicyValidationFailed");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("EligibilityRule"),
        "{}",
        r.text
    );
}

#[test]
fn activating_an_already_active_role_is_refused() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    let body = activation(&t.sub, &role, &alice, Some(&eligible), "PT1H");
    assert_eq!(t.request(&alice_t, &body).status, 201);
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "RoleAssignmentExists");
    assert_eq!(t.assignments(&t.sub).len(), 2, "still one activation");
}

// ---------------------------------------------------------------- UserRemove

#[test]
fn user_remove_deactivates_and_keeps_the_eligible_assignment() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    assert_eq!(
        t.request(
            &alice_t,
            &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H")
        )
        .status,
        201
    );

    let mut body = request_body("UserRemove", "Active", &t.sub, &role, &alice);
    body["linkedEligibleRoleAssignmentId"] = json!(eligible);
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["type"], "UserRemove");
    assert_eq!(status_of(&r.json), ("Closed", "Revoked"));
    assert_eq!(r.json["status"]["statusDetails"], json!([]));
    assert_eq!(r.json["schedule"], Value::Null);
    let list = t.assignments(&t.sub);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], eligible.as_str());

    let again = t.request(&alice_t, &body);
    assert_eq!(again.status, 400, "{}", again.text);
    assert_eq!(again.code(), "RoleAssignmentDoesNotExist");
}

// ---------------------------------------------------------------- UserExtend / UserRenew

#[test]
fn user_extend_waits_for_an_admin_decision() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P10D");
    let old_end = ts(&t.assignments(&t.sub)[0]["endDateTime"]);
    let new_end = from_now(60 * 86_400)
        .round(jiff::Unit::Second)
        .expect("round");

    let mut body = request_body("UserExtend", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = json!({"type": "Once", "endDateTime": new_end.to_string()});
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["type"], "UserExtend");
    assert_eq!(status_of(&r.json), ("InProgress", "PendingAdminDecision"));
    assert_eq!(
        ts(&t.assignments(&t.sub)[0]["endDateTime"]),
        old_end,
        "nothing changes before the decision"
    );
    let id = r.json["id"].as_str().expect("id").to_string();

    let pending = t.s.get(
        &t.s.pim(&format!(
            "/roleAssignmentRequests?$filter={}",
            crate::fixture::enc("status/subStatus eq 'PendingAdminDecision'")
        )),
        &t.admin,
    );
    assert_eq!(pending.status, 200, "{}", pending.text);
    assert!(
        pending.json["value"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x["id"] == id.as_str())),
        "{}",
        pending.text
    );

    let d = decide(&t.s, &t.admin, &id, "AdminApproved");
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.json["id"], id.as_str());
    assert_eq!(status_of(&d.json), ("Closed", "Provisioned"));
    let list = t.assignments(&t.sub);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], eligible.as_str());
    assert_eq!(ts(&list[0]["endDateTime"]), new_end);
}

#[test]
fn user_extend_of_an_assignment_not_ending_soon_is_refused() {
    let t = Tenant::start();
    let (alice, alice_t, role, _) = eligible_user(&t, "alice", "P100D");
    let mut body = request_body("UserExtend", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = json!({"type": "Once", "endDateTime": from_now(200 * 86_400).to_string()});
    let r = t.request(&alice_t, &body);
    assert_policy_failure(&r, "14 days");
    assert_eq!(t.assignments(&t.sub).len(), 1);
}

#[test]
fn user_extend_and_user_renew_need_an_own_assignment() {
    let t = Tenant::start();
    let (_, _, role, _) = eligible_user(&t, "alice", "P10D");
    let (bob, bob_t) = t.user("bob");
    for (kind, why) in [
        ("UserExtend", "nothing to extend"),
        ("UserRenew", "nothing expired"),
    ] {
        let mut body = request_body(kind, "Eligible", &t.sub, &role, &bob);
        body["schedule"] = lasting("P30D");
        let r = t.request(&bob_t, &body);
        assert_eq!(r.status, 400, "{kind} ({why}): {}", r.text);
        assert_eq!(r.code(), "RoleAssignmentDoesNotExist", "{kind}");
    }
}

#[test]
fn user_renew_of_a_recently_expired_assignment_waits_for_an_admin_decision() {
    let t = Tenant::start();
    let (alice, alice_t) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let added = t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("PT2S"));
    sleep_past(ts(&added["schedule"]["endDateTime"]));
    assert!(t.assignments(&t.sub).is_empty());

    let mut body = request_body("UserRenew", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = lasting("P30D");
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["type"], "UserRenew");
    assert_eq!(status_of(&r.json), ("InProgress", "PendingAdminDecision"));
    assert!(
        t.assignments(&t.sub).is_empty(),
        "nothing is renewed before the decision"
    );

    // An R3 holder (active Owner on the subscription) decides it, not only tenant admins.
    let (owner, owner_t) = t.user("owner");
    t.admin_add(
        &t.sub,
        &t.role(&t.sub, OWNER),
        &owner,
        "Active",
        lasting("P1D"),
    );
    let d = decide(
        &t.s,
        &owner_t,
        r.json["id"].as_str().expect("id"),
        "AdminApproved",
    );
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(status_of(&d.json), ("Closed", "Provisioned"));
    let list: Vec<Value> = t
        .assignments(&t.sub)
        .into_iter()
        .filter(|a| a["roleDefinitionId"] == role.as_str())
        .collect();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["subjectId"], alice.as_str());
    assert!(ts(&list[0]["endDateTime"]) > from_now(29 * 86_400));
}

#[test]
fn a_denied_user_extend_changes_nothing() {
    let t = Tenant::start();
    let (alice, alice_t, role, _) = eligible_user(&t, "alice", "P10D");
    let old_end = ts(&t.assignments(&t.sub)[0]["endDateTime"]);
    let mut body = request_body("UserExtend", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = json!({"type": "Once", "endDateTime": from_now(60 * 86_400).to_string()});
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().expect("id");
    // The requester cannot decide it; a user without R3 cannot either.
    assert_eq!(decide(&t.s, &alice_t, id, "AdminApproved").status, 403);
    let (_, bob_t) = t.user("bob");
    assert_eq!(decide(&t.s, &bob_t, id, "AdminApproved").status, 403);
    let d = decide(&t.s, &t.admin, id, "AdminDenied");
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(status_of(&d.json), ("Closed", "AdminDenied"));
    assert_eq!(ts(&t.assignments(&t.sub)[0]["endDateTime"]), old_end);
}

// ---------------------------------------------------------------- errors

#[test]
fn unknown_role_definition_is_role_not_found() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let mut body = request_body(
        "AdminAdd",
        "Eligible",
        &t.sub,
        "00000000-0000-0000-0000-000000000001",
        &alice,
    );
    body["schedule"] = lasting("P1D");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "RoleNotFound");
    // A role definition of another resource is not found on this one either.
    body["roleDefinitionId"] = json!(t.role(&t.rg, CONTRIBUTOR));
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "RoleNotFound");
}

#[test]
fn unknown_resource_is_400_resource_not_found() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let mut body = request_body(
        "AdminAdd",
        "Eligible",
        "00000000-0000-0000-0000-00000000abcd",
        &role,
        &alice,
    );
    body["schedule"] = lasting("P1D");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "ResourceNotFound");
}

#[test]
fn unknown_subject_is_subject_not_found() {
    let t = Tenant::start();
    let role = t.role(&t.sub, CONTRIBUTOR);
    let mut body = request_body(
        "AdminAdd",
        "Eligible",
        &t.sub,
        &role,
        "00000000-0000-0000-0000-0000000000aa",
    );
    body["schedule"] = lasting("P1D");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "SubjectNotFound");
    assert!(t.assignments(&t.sub).is_empty());
}

#[test]
fn duplicate_admin_add_is_role_assignment_exists() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P30D"));
    let mut body = request_body("AdminAdd", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = lasting("P10D");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "RoleAssignmentExists");
    assert_eq!(t.assignments(&t.sub).len(), 1);
    // The same role as Active is another assignment.
    body["assignmentState"] = json!("Active");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Asserts a `400 RoleAssignmentRequestPolicyValidationFailed` whose message names `rule`.
fn assert_policy_failure(r: &crate::harness::Reply, rule: &str) {
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.code(),
        "RoleAssignmentRequestPolicyValidationFailed",
        "{}",
        r.text
    );
    let msg = r.json["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains(rule), "message should name {rule}: {msg}");
}

#[test]
fn duration_over_the_expiration_rule_maximum_is_refused() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    // userMemberSettings: 480 minutes by default.
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT8H1M"),
    );
    assert_policy_failure(&r, "ExpirationRule");
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT8H"),
    );
    assert_eq!(r.status, 201, "exactly the maximum is fine: {}", r.text);
    // adminMemberSettings: 259200 minutes (180 days) by default.
    let (bob, _) = t.user("bob");
    let mut body = request_body("AdminAdd", "Active", &t.sub, &role, &bob);
    body["schedule"] = lasting("P181D");
    assert_policy_failure(&t.request(&t.admin, &body), "ExpirationRule");
    // A patched maximum applies at once.
    t.set_rule(
        &role,
        "adminEligibleSettings",
        "ExpirationRule",
        json!({"permanentAssignment": false, "maximumGrantPeriodInMinutes": 60}),
    );
    let mut body = request_body("AdminAdd", "Eligible", &t.sub, &role, &bob);
    body["schedule"] = lasting("PT61M");
    assert_policy_failure(&t.request(&t.admin, &body), "ExpirationRule");
    body["schedule"] = lasting("PT60M");
    assert_eq!(t.request(&t.admin, &body).status, 201);
}

#[test]
fn missing_reason_fails_the_justification_rule() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    let mut body = activation(&t.sub, &role, &alice, Some(&eligible), "PT1H");
    body.as_object_mut().expect("object").remove("reason");
    assert_policy_failure(&t.request(&alice_t, &body), "JustificationRule");
    body["reason"] = json!("   ");
    assert_policy_failure(&t.request(&alice_t, &body), "JustificationRule");
    // adminMemberSettings requires a reason by default too; admins are bound by it.
    let (bob, _) = t.user("bob");
    let mut add = request_body("AdminAdd", "Active", &t.sub, &role, &bob);
    add.as_object_mut().expect("object").remove("reason");
    add["schedule"] = lasting("P1D");
    assert_policy_failure(&t.request(&t.admin, &add), "JustificationRule");
    assert_eq!(t.assignments(&t.sub).len(), 1, "nothing written");
    // Once the rule is off, no reason is needed.
    t.set_rule(
        &role,
        "userMemberSettings",
        "JustificationRule",
        json!({"required": false}),
    );
    body.as_object_mut().expect("object").remove("reason");
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn token_without_mfa_fails_the_mfa_rule() {
    let t = Tenant::start();
    let (alice, _, role, eligible) = eligible_user(&t, "alice", "P30D");
    let no_mfa = token(&alice, false);
    let body = activation(&t.sub, &role, &alice, Some(&eligible), "PT1H");
    assert_policy_failure(&t.request(&no_mfa, &body), "MfaRule");
    assert_eq!(t.assignments(&t.sub).len(), 1, "nothing written");
    // An administrator is bound by an MfaRule like everyone.
    t.set_rule(
        &role,
        "adminMemberSettings",
        "MfaRule",
        json!({"mfaRequired": true}),
    );
    let (bob, _) = t.user("bob");
    let mut add = request_body("AdminAdd", "Active", &t.sub, &role, &bob);
    add["schedule"] = lasting("P1D");
    let admin_no_mfa = token(crate::harness::ADMIN, false);
    assert_policy_failure(&t.request(&admin_no_mfa, &add), "MfaRule");
    let r = t.request(&t.admin, &add);
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(detail_keys(&r.json).contains(&"MfaRule".to_string()));
}

#[test]
fn ticketing_rule_needs_ticket_info_and_echoes_it() {
    let t = Tenant::start();
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "TicketingRule",
        json!({"ticketingRequired": true}),
    );
    let mut body = activation(&t.sub, &role, &alice, Some(&eligible), "PT1H");
    assert_policy_failure(&t.request(&alice_t, &body), "TicketingRule");
    body["ticketInfo"] = json!({"ticketNumber": "INC-42"});
    assert_policy_failure(&t.request(&alice_t, &body), "TicketingRule");
    body["ticketInfo"] = json!({"ticketNumber": "INC-42", "ticketSystem": "ServiceNow"});
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    assert_eq!(
        r.json["ticketInfo"],
        json!({"ticketNumber": "INC-42", "ticketSystem": "ServiceNow"})
    );
    assert!(detail_keys(&r.json).contains(&"TicketingRule".to_string()));
    let got = t.get_request(r.json["id"].as_str().expect("id"));
    assert_eq!(got["ticketInfo"]["ticketNumber"], "INC-42");
}

#[test]
fn permanent_assignment_needs_the_expiration_rule_to_allow_it() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let mut body = request_body("AdminAdd", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = json!({"type": "Once"});
    assert_policy_failure(&t.request(&t.admin, &body), "ExpirationRule");
    assert!(t.assignments(&t.sub).is_empty());
    t.set_rule(
        &role,
        "adminEligibleSettings",
        "ExpirationRule",
        json!({"permanentAssignment": true, "maximumGrantPeriodInMinutes": 60}),
    );
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    assert_eq!(r.json["schedule"]["endDateTime"], Value::Null);
    assert_eq!(t.assignments(&t.sub)[0]["endDateTime"], Value::Null);
}

#[test]
fn activation_ending_after_the_eligible_end_is_refused_naming_the_latest_end() {
    let t = Tenant::start();
    let (alice, alice_t) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let added = t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("PT1H"));
    let eligible_end = added["schedule"]["endDateTime"]
        .as_str()
        .expect("end")
        .to_string();
    let r = t.request(&alice_t, &activation(&t.sub, &role, &alice, None, "PT2H"));
    assert_policy_failure(&r, "ExpirationRule");
    let msg = r.json["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(&eligible_end),
        "message names {eligible_end}: {msg}"
    );
    assert_eq!(t.assignments(&t.sub).len(), 1, "not silently shortened");
    let r = t.request(&alice_t, &activation(&t.sub, &role, &alice, None, "PT30M"));
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn cancel_of_a_closed_request_is_request_cannot_be_cancelled() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let r = t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P1D"));
    let c = cancel(&t.s, &t.admin, r["id"].as_str().expect("id"));
    assert_eq!(c.status, 400, "{}", c.text);
    assert_eq!(c.code(), "RequestCannotBeCancelled");
    assert_eq!(t.assignments(&t.sub).len(), 1);
}

#[test]
fn deciding_a_request_that_awaits_no_decision_is_request_cannot_be_updated() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let r = t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P1D"));
    for decision in ["AdminApproved", "AdminDenied"] {
        let d = decide(&t.s, &t.admin, r["id"].as_str().expect("id"), decision);
        assert_eq!(d.status, 400, "{}", d.text);
        assert_eq!(d.code(), "RequestCannotBeUpdated");
    }
}

#[test]
fn unknown_request_id_is_400_on_actions_and_404_on_get() {
    let t = Tenant::start();
    let id = "00000000-0000-0000-0000-0000000000ff";
    let c = cancel(&t.s, &t.admin, id);
    assert_eq!(c.status, 400, "{}", c.text);
    assert_eq!(c.code(), "RoleAssignmentRequestNotFound");
    let d = decide(&t.s, &t.admin, id, "AdminApproved");
    assert_eq!(d.status, 400, "{}", d.text);
    assert_eq!(d.code(), "RoleAssignmentRequestNotFound");
    let g =
        t.s.get(&t.s.pim(&format!("/roleAssignmentRequests/{id}")), &t.admin);
    assert_eq!(g.status, 404, "{}", g.text);
    assert_eq!(g.code(), "RoleAssignmentRequestNotFound");
}

#[test]
fn malformed_bodies_are_bad_request_naming_the_field() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let path = t.s.pim("/roleAssignmentRequests");
    let raw = |body: &str| t.s.raw("POST", &path, Some(&t.admin), Some(body), &[]);

    let r = raw(r#"{"type": "AdminAdd", "#);
    assert_eq!((r.status, r.code()), (400, "BadRequest"), "{}", r.text);
    let r = raw("[1, 2]");
    assert_eq!((r.status, r.code()), (400, "BadRequest"), "{}", r.text);

    let valid = || {
        let mut b = request_body("AdminAdd", "Eligible", &t.sub, &role, &alice);
        b["schedule"] = lasting("P1D");
        b
    };
    let cases: [(&str, Value, &str); 8] = [
        ("reason", json!(5), "reason"),
        ("schedule", json!("P1D"), "schedule"),
        ("type", json!("AdminDelete"), "type"),
        ("type", json!(true), "type"),
        ("assignmentState", json!("Member"), "assignmentState"),
        ("subjectId", json!(["x"]), "subjectId"),
        (
            "schedule",
            json!({"type": "Once", "duration": 60}),
            "duration",
        ),
        (
            "schedule",
            json!({"type": "Once", "duration": "soon"}),
            "duration",
        ),
    ];
    for (field, value, named) in cases {
        let mut b = valid();
        b[field] = value.clone();
        let r = t.request(&t.admin, &b);
        assert_eq!(
            (r.status, r.code()),
            (400, "BadRequest"),
            "{field} = {value}: {}",
            r.text
        );
        let msg = r.json["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.contains(named),
            "{field} = {value}: message should name `{named}`: {msg}"
        );
    }

    let mut b = valid();
    b.as_object_mut().expect("object").remove("schedule");
    let r = t.request(&t.admin, &b);
    assert_eq!(
        (r.status, r.code()),
        (400, "BadRequest"),
        "missing schedule: {}",
        r.text
    );
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("schedule"),
        "{}",
        r.text
    );

    let mut b = valid();
    b["schedule"] = json!({"type": "Once", "startDateTime": from_now(0).to_string(), "endDateTime": from_now(-3600).to_string()});
    let r = t.request(&t.admin, &b);
    assert_eq!(
        (r.status, r.code()),
        (400, "BadRequest"),
        "end before start: {}",
        r.text
    );

    let mut b = valid();
    b["schedule"] = json!({"type": "Recurring", "duration": "P1D"});
    let r = t.request(&t.admin, &b);
    assert_eq!(
        (r.status, r.code()),
        (400, "BadRequest"),
        "schedule type: {}",
        r.text
    );

    // Unknown properties and @odata.type are ignored.
    let mut b = valid();
    b["@odata.type"] = json!("#microsoft.graph.governanceRoleAssignmentRequest");
    b["somethingElse"] = json!({"nested": true});
    let r = t.request(&t.admin, &b);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(t.assignments(&t.sub).len(), 1);
}

#[test]
fn request_body_over_one_mebibyte_is_413() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let mut body = request_body("AdminAdd", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = lasting("P1D");
    body["reason"] = json!("x".repeat(1 << 20));
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(t.assignments(&t.sub).is_empty());
}

#[test]
fn wrong_method_on_request_routes_is_405() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let r = t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P1D"));
    let id = r["id"].as_str().expect("id");
    for (method, path) in [
        ("DELETE", format!("/roleAssignmentRequests/{id}")),
        ("PATCH", format!("/roleAssignmentRequests/{id}")),
        ("PUT", "/roleAssignmentRequests".to_string()),
        ("GET", format!("/roleAssignmentRequests/{id}/cancel")),
    ] {
        // ureq sends no body with GET; a body it would not frame would poison the connection.
        let body = (method != "GET").then(|| json!({}));
        let resp =
            t.s.call(method, &t.s.pim(&path), Some(&t.admin), body.as_ref());
        assert_eq!(resp.status, 405, "{method} {path}: {}", resp.text);
    }
    assert_eq!(status_of(&t.get_request(id)), ("Closed", "Provisioned"));
}

// ---------------------------------------------------------------- schedules

#[test]
fn every_accepted_schedule_form_resolves_to_an_end_and_a_duration() {
    let t = Tenant::start();
    let role = t.role(&t.sub, CONTRIBUTOR);
    let start = from_now(-60).round(jiff::Unit::Second).expect("round");
    let at = |secs: i64| {
        start
            .checked_add(SignedDuration::from_secs(secs))
            .expect("ts")
    };
    let naive = |ts: jiff::Timestamp| ts.to_string().trim_end_matches('Z').to_string();
    let cases: Vec<(&str, Value, &str, i64)> = vec![
        (
            "ISO hours",
            json!({"type": "Once", "duration": "PT2H"}),
            "PT2H",
            2 * 3600,
        ),
        (
            "ISO days and hours",
            json!({"type": "Once", "duration": "P1DT2H"}),
            "P1DT2H",
            26 * 3600,
        ),
        (
            "Python timedelta",
            json!({"type": "Once", "duration": "9:00:00"}),
            "PT9H",
            9 * 3600,
        ),
        (
            "Python timedelta with days",
            json!({"type": "Once", "duration": "1 day, 2:00:00"}),
            "P1DT2H",
            26 * 3600,
        ),
        (
            "endDateTime",
            json!({"type": "Once", "startDateTime": start.to_string(), "endDateTime": at(3 * 3600).to_string()}),
            "PT3H",
            3 * 3600,
        ),
        (
            "stopDateTime alias",
            json!({"type": "Once", "startDateTime": start.to_string(), "stopDateTime": at(4 * 3600).to_string()}),
            "PT4H",
            4 * 3600,
        ),
        (
            "naive datetimes are UTC",
            json!({"type": "Once", "startDateTime": naive(start), "endDateTime": naive(at(5 * 3600))}),
            "PT5H",
            5 * 3600,
        ),
        ("no type", json!({"duration": "PT30M"}), "PT30M", 1800),
    ];
    for (what, schedule, duration, secs) in cases {
        let (user, _) = t.user("sched");
        let r = t.admin_add(&t.sub, &role, &user, "Eligible", schedule);
        assert_eq!(status_of(&r), ("Closed", "Provisioned"), "{what}: {r}");
        let s = &r["schedule"];
        assert_eq!(s["type"], "Once", "{what}");
        assert_eq!(s["duration"], duration, "{what}: {s}");
        assert_eq!(span(s), SignedDuration::from_secs(secs), "{what}: {s}");
        assert!(
            s["endDateTime"].as_str().is_some_and(|e| e.ends_with('Z')),
            "{what}: {s}"
        );
        let listed = t
            .assignments(&t.sub)
            .into_iter()
            .find(|a| a["subjectId"] == user.as_str())
            .expect("listed");
        assert_eq!(ts(&listed["endDateTime"]), ts(&s["endDateTime"]), "{what}");
    }
    // Explicit starts come back as sent, in UTC.
    let (user, _) = t.user("naive");
    let r = t.admin_add(
        &t.sub,
        &role,
        &user,
        "Eligible",
        json!({"startDateTime": naive(start), "duration": "PT1H"}),
    );
    assert_eq!(ts(&r["schedule"]["startDateTime"]), start);
    assert_eq!(ts(&r["schedule"]["endDateTime"]), at(3600));
}

#[test]
fn end_and_duration_that_disagree_are_refused() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let start = from_now(0);
    let end = start
        .checked_add(SignedDuration::from_hours(3))
        .expect("ts");
    let mut body = request_body("AdminAdd", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = json!({"startDateTime": start.to_string(), "endDateTime": end.to_string(), "duration": "PT1H"});
    let r = t.request(&t.admin, &body);
    assert_eq!((r.status, r.code()), (400, "BadRequest"), "{}", r.text);
    body["schedule"]["duration"] = json!("PT3H");
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 201, "agreeing end and duration: {}", r.text);
}

// ---------------------------------------------------------------- authorization (R3, R4)

#[test]
fn users_may_only_make_user_requests_for_themselves() {
    let t = Tenant::start();
    let (alice, _, role, eligible) = eligible_user(&t, "alice", "P30D");
    let (_, bob_t) = t.user("bob");
    let r = t.request(
        &bob_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.code(), "Authorization_RequestDenied");
    let mut remove = request_body("UserRemove", "Active", &t.sub, &role, &alice);
    remove["linkedEligibleRoleAssignmentId"] = json!(eligible);
    let r = t.request(&bob_t, &remove);
    assert_eq!(r.status, 403, "{}", r.text);
    // Even a tenant administrator cannot activate for someone else.
    let r = t.request(
        &t.admin,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(t.assignments(&t.sub).len(), 1);
}

#[test]
fn activating_someone_elses_eligible_assignment_is_refused() {
    let t = Tenant::start();
    let (_, _, role, eligible) = eligible_user(&t, "alice", "P30D");
    let (bob, bob_t) = t.user("bob");
    let r = t.request(
        &bob_t,
        &activation(&t.sub, &role, &bob, Some(&eligible), "PT1H"),
    );
    assert_policy_failure(&r, "EligibilityRule");
    assert_eq!(t.assignments(&t.sub).len(), 1);
}

#[test]
fn admin_requests_need_an_active_owner_or_user_access_administrator() {
    let t = Tenant::start();
    let (alice, alice_t) = t.user("alice");
    let (bob, _) = t.user("bob");
    let reader = t.role(&t.rg, READER);
    let mut add = request_body("AdminAdd", "Eligible", &t.rg, &reader, &bob);
    add["schedule"] = lasting("P1D");
    let r = t.request(&alice_t, &add);
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.code(), "Authorization_RequestDenied");

    // Eligible Owner is not enough …
    let owner = t.role(&t.sub, OWNER);
    t.admin_add(&t.sub, &owner, &alice, "Eligible", lasting("P1D"));
    assert_eq!(t.request(&alice_t, &add).status, 403);
    // … active Owner on an ancestor is.
    t.admin_add(&t.sub, &owner, &alice, "Active", lasting("P1D"));
    let r = t.request(&alice_t, &add);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"));
    // Other Admin* types need it as well.
    let (_, carol_t) = t.user("carol");
    let mut remove = request_body("AdminRemove", "Eligible", &t.rg, &reader, &bob);
    remove["schedule"] = Value::Null;
    assert_eq!(t.request(&carol_t, &remove).status, 403);
    assert_eq!(t.request(&alice_t, &remove).status, 201);
}

#[test]
fn reading_someone_elses_request_needs_an_assignment_on_its_resource() {
    let t = Tenant::start();
    let (alice, alice_t) = t.user("alice");
    let role = t.role(&t.rg, CONTRIBUTOR);
    let r = t.admin_add(&t.rg, &role, &alice, "Eligible", lasting("P1D"));
    let path = t.s.pim(&format!(
        "/roleAssignmentRequests/{}",
        r["id"].as_str().expect("id")
    ));

    let (_, bob_t) = t.user("bob");
    let g = t.s.get(&path, &bob_t);
    assert_eq!(g.status, 403, "{}", g.text);
    assert_eq!(g.code(), "Authorization_RequestDenied");

    let own = t.s.get(&path, &alice_t);
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.json["subjectId"], alice.as_str());

    // R1 on the resource (here inherited from the subscription) is enough.
    let (carol, carol_t) = t.user("carol");
    t.admin_add(
        &t.sub,
        &t.role(&t.sub, READER),
        &carol,
        "Eligible",
        lasting("P1D"),
    );
    let g = t.s.get(&path, &carol_t);
    assert_eq!(g.status, 200, "{}", g.text);
}

// ---------------------------------------------------------------- concurrency

#[test]
fn twenty_identical_admin_adds_at_once_create_one_assignment() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.sub, CONTRIBUTOR);
    let mut body = request_body("AdminAdd", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = lasting("P30D");
    let barrier = std::sync::Barrier::new(20);
    let replies: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let r = t.request(&t.admin, &body);
                    (r.status, r.code().to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let created = replies.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{replies:?}");
    for (status, code) in replies.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 400, "{replies:?}");
        assert!(
            code == "RoleAssignmentExists" || code == "PendingRoleAssignmentRequest",
            "{replies:?}"
        );
    }
    let list = list_assignments(&t.s, &t.admin, &t.sub);
    assert_eq!(list.len(), 1, "{list:?}");
}

#[test]
fn nested_create_takes_the_resource_from_the_path_and_refuses_another() {
    let t = Tenant::start();
    let (alice, _) = t.user("alice");
    let role = t.role(&t.rg, READER);
    let path =
        t.s.pim(&format!("/resources/{}/roleAssignmentRequests", t.rg));
    let mut body = request_body("AdminAdd", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = lasting("P1D");
    let r = t.s.post(&path, &t.admin, &body);
    assert_eq!((r.status, r.code()), (400, "BadRequest"), "{}", r.text);
    body.as_object_mut().expect("object").remove("resourceId");
    let r = t.s.post(&path, &t.admin, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["resourceId"], t.rg.as_str());
}
