//! Request bodies, decoded by the API's own functions: the bytes become a JSON object as
//! every JSON route's extractor makes it, then a `governanceRoleAssignmentRequest` POST, an
//! `updateRequest` decision and a role-setting PATCH. What decodes goes on as far as the
//! domain goes without a store: the schedule resolves, the PATCH merges into the default
//! rules, and the merged policy judges the request.
//! Properties: nothing panics; merged rules always parse back into a policy; a request on
//! a nested route is always for the route's resource.
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use rolegate_api::extract::decode_json_object;
use rolegate_api::graph::{decision_input, new_request, role_rules_patch};
use rolegate_core::policy::{RequestFacts, RoleRules, RuleCollection};
use rolegate_core::schedule::Schedule;

/// The resource id of a nested route (`resources/{rid}/roleAssignmentRequests`).
const PATH_RESOURCE: &str = "3a4b5c6d-0000-4000-8000-000000000001";

fuzz_target!(|data: &[u8]| {
    let Ok(body) = decode_json_object(data) else {
        return;
    };
    let now = Timestamp::constant(1_767_225_600, 0); // 2026-01-01T00:00:00Z
    let mut rules = RoleRules::defaults();
    if let Ok(patch) = role_rules_patch(&body)
        && rules.apply_patch(patch).is_ok()
    {
        for c in RuleCollection::ALL {
            if let Err(e) = rules.policy(c) {
                panic!("merged {} do not parse back: {e}", c.name());
            }
        }
    }
    if let Ok(d) = decision_input(&body)
        && let Some(input) = &d.schedule
    {
        let _ = Schedule::resolve(input, now);
    }
    if let Ok(nested) = new_request(&body, Some(PATH_RESOURCE)) {
        assert_eq!(nested.resource_id, PATH_RESOURCE);
    }
    let Ok(new) = new_request(&body, None) else {
        return;
    };
    let duration = match &new.schedule {
        Some(input) => match Schedule::resolve(input, now) {
            Ok(s) => s.duration(),
            Err(_) => return,
        },
        None => None,
    };
    let facts = RequestFacts {
        duration,
        mfa: false,
        reason: new.reason.as_deref(),
        ticket: new.ticket.as_ref(),
    };
    for c in RuleCollection::ALL {
        if let Ok(policy) = rules.policy(c) {
            let _ = policy.evaluate(&facts);
        }
    }
});
