//! Approval of activations over HTTP (decisions.md §6, §10, §13): user and group approvers,
//! several required approvals, denial, self-approval, cancel, and emergency bypass.

use crate::fixture::{
    Tenant, activation, cancel, create_group, decide, detail_keys, eligible_user, status_of,
};
use serde_json::{Value, json};

/// An `ApprovalRule` setting with `approvers` (`(id, "User"|"Group")`) and extra keys.
fn approval_rule(approvers: &[(&str, &str)], extra: Value) -> Value {
    let mut rule = json!({
        "Enabled": true,
        "Approvers": approvers.iter().map(|(id, kind)| json!({"Id": id, "Type": kind, "DisplayName": id})).collect::<Vec<_>>(),
    });
    if let (Some(r), Some(e)) = (rule.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    rule
}

/// Alice, eligible for Contributor on the subscription, asks to activate it for an hour
/// under `rule`; returns `(tenant-side ids: alice, alice token, role, eligible, the 201 body)`.
struct Pending {
    alice: String,
    alice_t: String,
    role: String,
    eligible: String,
    request: Value,
}

fn pending_activation(t: &Tenant, rule: Value) -> Pending {
    let (alice, alice_t, role, eligible) = eligible_user(t, "alice", "P30D");
    t.set_rule(&role, "userMemberSettings", "ApprovalRule", rule);
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    Pending {
        alice,
        alice_t,
        role,
        eligible,
        request: r.json,
    }
}

impl Pending {
    fn id(&self) -> &str {
        self.request["id"].as_str().unwrap_or_default()
    }
}

/// The active assignments listed on the subscription.
fn activations(t: &Tenant) -> Vec<Value> {
    t.assignments(&t.sub)
        .into_iter()
        .filter(|a| a["assignmentState"] == "Active")
        .collect()
}

#[test]
fn a_user_approver_grants_a_pending_activation() {
    let t = Tenant::start();
    let (bob, bob_t) = t.user("bob");
    let p = pending_activation(&t, approval_rule(&[(&bob, "User")], json!({})));
    assert_eq!(
        status_of(&p.request),
        ("InProgress", "PendingApproval"),
        "{}",
        p.request
    );
    assert!(
        detail_keys(&p.request).contains(&"ApprovalRule".to_string()),
        "{}",
        p.request
    );
    assert_eq!(
        p.request["linkedEligibleRoleAssignmentId"],
        p.eligible.as_str()
    );
    assert!(
        activations(&t).is_empty(),
        "nothing is active before the approval"
    );

    // Approvers find it.
    let found = t.s.get(
        &t.s.pim(&format!(
            "/roleAssignmentRequests?$filter={}",
            crate::fixture::enc("status/subStatus eq 'PendingApproval'")
        )),
        &t.admin,
    );
    assert_eq!(found.status, 200, "{}", found.text);
    assert!(
        found.json["value"]
            .as_array()
            .is_some_and(|v| v.iter().any(|r| r["id"] == p.id())),
        "{}",
        found.text
    );

    let d = decide(&t.s, &bob_t, p.id(), "AdminApproved");
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.json["id"], p.id());
    assert_eq!(status_of(&d.json), ("Closed", "Provisioned"), "{}", d.json);
    assert!(
        d.json["status"]["statusDetails"]
            .as_array()
            .is_some_and(|v| v
                .iter()
                .any(|kv| kv["key"] == "ApprovalRule" && kv["value"] == "Grant")),
        "{}",
        d.json
    );
    let active = activations(&t);
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["subjectId"], p.alice.as_str());
    assert_eq!(
        active[0]["linkedEligibleRoleAssignmentId"],
        p.eligible.as_str()
    );
    assert_eq!(status_of(&t.get_request(p.id())), ("Closed", "Provisioned"));
}

#[test]
fn a_member_of_an_approver_group_grants_it_and_others_may_not() {
    let t = Tenant::start();
    let (carol, carol_t) = t.user("carol");
    let (_, dave_t) = t.user("dave");
    let approvers = create_group(&t.s, &t.admin, "approvers", &[&carol]);
    let p = pending_activation(&t, approval_rule(&[(&approvers, "Group")], json!({})));
    assert_eq!(status_of(&p.request), ("InProgress", "PendingApproval"));

    let d = decide(&t.s, &dave_t, p.id(), "AdminApproved");
    assert_eq!(d.status, 403, "{}", d.text);
    assert_eq!(d.code(), "Authorization_RequestDenied");
    // When approvers are listed, only they decide, not even a tenant administrator.
    let d = decide(&t.s, &t.admin, p.id(), "AdminApproved");
    assert_eq!(d.status, 403, "{}", d.text);
    assert_eq!(
        status_of(&t.get_request(p.id())),
        ("InProgress", "PendingApproval")
    );

    let d = decide(&t.s, &carol_t, p.id(), "AdminApproved");
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(status_of(&d.json), ("Closed", "Provisioned"));
    assert_eq!(activations(&t).len(), 1);
}

#[test]
fn without_listed_approvers_a_tenant_administrator_approves() {
    let t = Tenant::start();
    let (_, bob_t) = t.user("bob");
    let p = pending_activation(&t, approval_rule(&[], json!({})));
    assert_eq!(status_of(&p.request), ("InProgress", "PendingApproval"));
    assert_eq!(decide(&t.s, &bob_t, p.id(), "AdminApproved").status, 403);
    let d = decide(&t.s, &t.admin, p.id(), "AdminApproved");
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(status_of(&d.json), ("Closed", "Provisioned"));
}

#[test]
fn two_required_approvals_need_two_distinct_approvers() {
    let t = Tenant::start();
    let (bob, bob_t) = t.user("bob");
    let (carol, carol_t) = t.user("carol");
    let p = pending_activation(
        &t,
        approval_rule(
            &[(&bob, "User"), (&carol, "User")],
            json!({"RequiredApprovals": 2}),
        ),
    );

    let first = decide(&t.s, &bob_t, p.id(), "AdminApproved");
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(
        status_of(&first.json),
        ("InProgress", "PendingApproval"),
        "one approval is not enough"
    );
    assert!(activations(&t).is_empty());

    let twice = decide(&t.s, &bob_t, p.id(), "AdminApproved");
    assert_eq!(
        twice.status, 400,
        "the same approver does not count twice: {}",
        twice.text
    );
    assert_eq!(twice.code(), "RequestCannotBeUpdated");
    assert_eq!(
        status_of(&t.get_request(p.id())),
        ("InProgress", "PendingApproval")
    );

    let second = decide(&t.s, &carol_t, p.id(), "AdminApproved");
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(status_of(&second.json), ("Closed", "Provisioned"));
    assert_eq!(activations(&t).len(), 1);
}

#[test]
fn one_denial_closes_the_request() {
    let t = Tenant::start();
    let (bob, bob_t) = t.user("bob");
    let (carol, carol_t) = t.user("carol");
    let p = pending_activation(
        &t,
        approval_rule(
            &[(&bob, "User"), (&carol, "User")],
            json!({"RequiredApprovals": 2}),
        ),
    );
    assert_eq!(decide(&t.s, &bob_t, p.id(), "AdminApproved").status, 200);
    let d = decide(&t.s, &carol_t, p.id(), "AdminDenied");
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(status_of(&d.json), ("Closed", "AdminDenied"));
    assert!(activations(&t).is_empty());
    assert_eq!(status_of(&t.get_request(p.id())), ("Closed", "AdminDenied"));

    // A closed request can be neither decided nor canceled.
    let again = decide(&t.s, &bob_t, p.id(), "AdminApproved");
    assert_eq!(again.status, 400, "{}", again.text);
    assert_eq!(again.code(), "RequestCannotBeUpdated");
    let c = cancel(&t.s, &p.alice_t, p.id());
    assert_eq!(c.status, 400, "{}", c.text);
    assert_eq!(c.code(), "RequestCannotBeCancelled");

    // The requester may ask again.
    let r = t.request(
        &p.alice_t,
        &activation(&t.sub, &p.role, &p.alice, Some(&p.eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("InProgress", "PendingApproval"));
}

#[test]
fn nobody_approves_their_own_request() {
    let t = Tenant::start();
    let (bob, _) = t.user("bob");
    // Alice is listed as an approver of the role she activates.
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        approval_rule(&[(&alice, "User"), (&bob, "User")], json!({})),
    );
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().expect("id");
    let d = decide(&t.s, &alice_t, id, "AdminApproved");
    assert_eq!(d.status, 403, "{}", d.text);
    assert_eq!(d.code(), "Authorization_RequestDenied");
    assert_eq!(
        status_of(&t.get_request(id)),
        ("InProgress", "PendingApproval")
    );
    assert!(activations(&t).is_empty());
}

#[test]
fn a_second_activation_while_one_is_pending_is_refused() {
    let t = Tenant::start();
    let (bob, _) = t.user("bob");
    let p = pending_activation(&t, approval_rule(&[(&bob, "User")], json!({})));
    let r = t.request(
        &p.alice_t,
        &activation(&t.sub, &p.role, &p.alice, Some(&p.eligible), "PT2H"),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "PendingRoleAssignmentRequest");
}

#[test]
fn the_requester_cancels_a_pending_request() {
    let t = Tenant::start();
    let (bob, bob_t) = t.user("bob");
    let (_, carol_t) = t.user("carol");
    let p = pending_activation(&t, approval_rule(&[(&bob, "User")], json!({})));

    // Somebody unrelated may not cancel it.
    let c = cancel(&t.s, &carol_t, p.id());
    assert_eq!(c.status, 403, "{}", c.text);

    let c = cancel(&t.s, &p.alice_t, p.id());
    assert_eq!(c.status, 204, "{}", c.text);
    assert!(c.text.is_empty());
    assert_eq!(status_of(&t.get_request(p.id())), ("Closed", "Canceled"));

    let again = cancel(&t.s, &p.alice_t, p.id());
    assert_eq!(again.status, 400, "{}", again.text);
    assert_eq!(again.code(), "RequestCannotBeCancelled");
    let d = decide(&t.s, &bob_t, p.id(), "AdminApproved");
    assert_eq!(d.status, 400, "{}", d.text);
    assert_eq!(d.code(), "RequestCannotBeUpdated");
    assert!(activations(&t).is_empty());
}

#[test]
fn a_tenant_administrator_may_cancel_a_pending_request() {
    let t = Tenant::start();
    let (bob, _) = t.user("bob");
    let p = pending_activation(&t, approval_rule(&[(&bob, "User")], json!({})));
    let c = cancel(&t.s, &t.admin, p.id());
    assert_eq!(c.status, 204, "{}", c.text);
    assert_eq!(status_of(&t.get_request(p.id())), ("Closed", "Canceled"));
}

#[test]
fn approval_timeout_below_one_minute_is_an_invalid_role_setting() {
    // A real timeout takes at least a minute, too long for a test; the bound is checked.
    let t = Tenant::start();
    let role = t.role(&t.sub, crate::fixture::CONTRIBUTOR);
    let id = crate::fixture::role_setting_id(&t.s, &t.admin, &role);
    let rule = json!({"Enabled": true, "Approvers": [], "ApprovalTimeoutInMinutes": 0});
    let body = json!({"userMemberSettings": [{"ruleIdentifier": "ApprovalRule", "setting": rule.to_string()}]});
    let r = t.s.call(
        "PATCH",
        &t.s.pim(&format!("/roleSettings/{id}")),
        Some(&t.admin),
        Some(&body),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "InvalidRoleSetting");
}

#[test]
fn emergency_bypass_grants_at_once_within_its_maximum() {
    let t = Tenant::start();
    let (bob, _) = t.user("bob");
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        approval_rule(
            &[(&bob, "User")],
            json!({"AllowEmergencyBypass": true, "EmergencyMaximumMinutes": 30}),
        ),
    );
    let mut body = activation(&t.sub, &role, &alice, Some(&eligible), "PT45M");
    body["emergency"] = json!(true);
    body["reason"] = json!("production outage");
    let over = t.request(&alice_t, &body);
    assert_eq!(over.status, 400, "{}", over.text);
    assert_eq!(over.code(), "RoleAssignmentRequestPolicyValidationFailed");
    assert!(activations(&t).is_empty());

    body["schedule"] = json!({"type": "Once", "duration": "PT20M"});
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("Closed", "Provisioned"), "{}", r.json);
    assert_eq!(r.json["emergency"], true);
    assert!(detail_keys(&r.json).contains(&"ApprovalRule".to_string()));
    let active = activations(&t);
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["subjectId"], alice.as_str());
}

#[test]
fn emergency_without_the_bypass_flag_still_needs_approval() {
    let t = Tenant::start();
    let (bob, _) = t.user("bob");
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        approval_rule(&[(&bob, "User")], json!({})),
    );
    let mut body = activation(&t.sub, &role, &alice, Some(&eligible), "PT20M");
    body["emergency"] = json!(true);
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("InProgress", "PendingApproval"));
    assert!(activations(&t).is_empty());
}

#[test]
fn approvers_can_find_and_read_the_requests_they_decide() {
    let t = Tenant::start();
    let (bob, bob_t) = t.user("bob");
    let p = pending_activation(&t, approval_rule(&[(&bob, "User")], json!({})));
    let g = t.s.get(
        &t.s.pim(&format!("/roleAssignmentRequests/{}", p.id())),
        &bob_t,
    );
    assert_eq!(g.status, 200, "{}", g.text);
    let found = t.s.get(
        &t.s.pim(&format!(
            "/roleAssignmentRequests?$filter={}",
            crate::fixture::enc("status/subStatus eq 'PendingApproval'")
        )),
        &bob_t,
    );
    assert_eq!(found.status, 200, "{}", found.text);
    assert!(
        found.json["value"]
            .as_array()
            .is_some_and(|v| v.iter().any(|r| r["id"] == p.id())),
        "{}",
        found.text
    );
    // Somebody who is neither approver, subject nor holder of an assignment sees nothing.
    let (_, dave_t) = t.user("dave");
    let g = t.s.get(
        &t.s.pim(&format!("/roleAssignmentRequests/{}", p.id())),
        &dave_t,
    );
    assert_eq!(g.status, 403, "{}", g.text);
    let none = t.s.get(&t.s.pim("/roleAssignmentRequests"), &dave_t);
    assert_eq!(none.status, 200, "{}", none.text);
    assert_eq!(none.json["value"], json!([]));
    // After deciding, the approver can still read it.
    assert_eq!(decide(&t.s, &bob_t, p.id(), "AdminApproved").status, 200);
    let g = t.s.get(
        &t.s.pim(&format!("/roleAssignmentRequests/{}", p.id())),
        &bob_t,
    );
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(status_of(&g.json), ("Closed", "Provisioned"));
}

#[test]
fn removing_the_eligible_assignment_cancels_its_pending_activation() {
    let t = Tenant::start();
    let (bob, bob_t) = t.user("bob");
    let p = pending_activation(&t, approval_rule(&[(&bob, "User")], json!({})));
    let body = crate::fixture::request_body("AdminRemove", "Eligible", &t.sub, &p.role, &p.alice);
    let r = t.request(&t.admin, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&t.get_request(p.id())), ("Closed", "Canceled"));
    let d = decide(&t.s, &bob_t, p.id(), "AdminApproved");
    assert_eq!(d.status, 400, "{}", d.text);
    assert_eq!(d.code(), "RequestCannotBeUpdated");
    assert!(t.assignments(&t.sub).is_empty());
}

#[test]
fn update_request_needs_a_known_decision() {
    let t = Tenant::start();
    let (bob, bob_t) = t.user("bob");
    let p = pending_activation(&t, approval_rule(&[(&bob, "User")], json!({})));
    let path =
        t.s.pim(&format!("/roleAssignmentRequests/{}/updateRequest", p.id()));
    for body in [
        json!({"decision": "Maybe", "reason": "?"}),
        json!({"reason": "no decision"}),
        json!({"decision": 1}),
    ] {
        let r = t.s.post(&path, &bob_t, &body);
        assert_eq!(
            (r.status, r.code()),
            (400, "BadRequest"),
            "{body}: {}",
            r.text
        );
    }
    assert_eq!(
        status_of(&t.get_request(p.id())),
        ("InProgress", "PendingApproval")
    );
}

/// The ids `token` gets from `roleAssignmentRequests?$filter=asApprover()` (below `resource`
/// when given), and `@odata.count`.
fn awaiting(t: &Tenant, token: &str, resource: Option<&str>) -> (Vec<String>, Value) {
    let base = match resource {
        Some(r) => format!("/resources/{r}/roleAssignmentRequests"),
        None => "/roleAssignmentRequests".to_string(),
    };
    let r = t.s.get(
        &t.s.pim(&format!("{base}?$filter=asApprover()&$count=true")),
        token,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let ids = r.json["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["id"].as_str().map(str::to_string))
        .collect();
    (ids, r.json["@odata.count"].clone())
}

#[test]
fn as_approver_lists_exactly_what_the_caller_may_decide() {
    let t = Tenant::start();
    let (bob, bob_t) = t.user("bob");
    let (_, carol_t) = t.user("carol");
    let p = pending_activation(&t, approval_rule(&[(&bob, "User")], json!({})));
    let id = p.id().to_string();
    // The listed approver finds it, below the resource too; nobody else does: not the
    // requester, not a stranger, not a tenant administrator when approvers are listed.
    assert_eq!(awaiting(&t, &bob_t, None), (vec![id.clone()], json!(1)));
    assert_eq!(awaiting(&t, &bob_t, Some(&t.sub)).0, vec![id.clone()]);
    for token in [&p.alice_t, &carol_t, &t.admin] {
        assert_eq!(awaiting(&t, token, None), (Vec::new(), json!(0)));
    }
    // Only for requests, and oldest first without $orderby.
    let r =
        t.s.get(&t.s.pim("/roleDefinitions?$filter=asApprover()"), &bob_t);
    assert_eq!(r.status, 400, "{}", r.text);
    let r = t.s.get(
        &t.s.pim("/roleAssignmentRequests?$filter=asApprover()&$orderby=requestedDateTime"),
        &bob_t,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    // Once decided, it leaves the list.
    let d = decide(&t.s, &bob_t, &id, "AdminApproved");
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(awaiting(&t, &bob_t, None), (Vec::new(), json!(0)));
}

#[test]
fn as_approver_lists_activations_without_approvers_for_the_resources_administrators() {
    let t = Tenant::start();
    let p = pending_activation(&t, approval_rule(&[], json!({})));
    let (_, bob_t) = t.user("bob");
    assert_eq!(awaiting(&t, &t.admin, None).0, vec![p.id().to_string()]);
    assert!(awaiting(&t, &bob_t, None).0.is_empty());
}

#[test]
fn as_approver_lists_requests_for_members_of_a_listed_group_on_their_resource() {
    let t = Tenant::start();
    let (carol, carol_t) = t.user("carol");
    let approvers = create_group(&t.s, &t.admin, "approvers", &[&carol]);
    let p = pending_activation(&t, approval_rule(&[(&approvers, "Group")], json!({})));
    assert_eq!(awaiting(&t, &carol_t, None).0, vec![p.id().to_string()]);
    assert_eq!(
        awaiting(&t, &carol_t, Some(&t.sub)).0,
        vec![p.id().to_string()]
    );
    // Below another resource it is not listed.
    let arm = "/subscriptions/7a1b2c3d-0000-4000-8000-000000000077";
    crate::fixture::register(&t.s, &t.admin, arm);
    let other = crate::fixture::resource_id(&t.s, &t.admin, arm);
    assert!(awaiting(&t, &carol_t, Some(&other)).0.is_empty());
}

#[test]
fn as_approver_lists_extensions_for_the_resources_administrators_only() {
    let t = Tenant::start();
    let (alice, alice_t, role, _) = eligible_user(&t, "alice", "P10D");
    let (_, bob_t) = t.user("bob");
    let mut body = crate::fixture::request_body("UserExtend", "Eligible", &t.sub, &role, &alice);
    body["schedule"] = json!({"type": "Once", "duration": "P40D"});
    let r = t.request(&alice_t, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(status_of(&r.json), ("InProgress", "PendingAdminDecision"));
    let id = r.json["id"].as_str().unwrap_or_default().to_string();
    // An administrator of the resource (here the tenant administrator) decides extensions;
    // the requester and a user without rights there do not see it.
    assert_eq!(awaiting(&t, &t.admin, None).0, vec![id]);
    assert!(awaiting(&t, &alice_t, None).0.is_empty());
    assert!(awaiting(&t, &bob_t, None).0.is_empty());
}
