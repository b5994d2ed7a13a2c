//! SCIM request bodies, decoded as the API decodes every JSON body: a PatchOp applied to a
//! user and to a group, a resource as POST or PUT sends it, and a `/.search` body.
//! Properties: nothing panics; a document a PATCH leaves behind is a valid resource (it
//! has its required attributes and normalises again).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rolegate_api::extract::decode_json_object;
use rolegate_core::scim::schema::ResourceType;
use rolegate_core::scim::{ListParams, filter, patch, resource};
use serde_json::{Map, Value, json};

/// A stored user document to patch.
fn user() -> Map<String, Value> {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice@example.org",
        "externalId": "a-1",
        "displayName": "Alice",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [
            {"type": "work", "value": "alice@example.org", "primary": true},
            {"type": "home", "value": "alice@home.example"}
        ],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": "Ops",
            "manager": {"value": "m-1"}
        }
    });
    normalized(ResourceType::User, &body)
}

/// A stored group document to patch, with its members as the server adds them.
fn group() -> Map<String, Value> {
    let body = json!({
        "displayName": "Operators",
        "members": [{"value": "u-1"}, {"value": "u-2"}]
    });
    normalized(ResourceType::Group, &body)
}

fn normalized(rt: ResourceType, body: &Value) -> Map<String, Value> {
    let Value::Object(body) = body else {
        unreachable!("the sample bodies are objects");
    };
    match resource::normalize(rt, body) {
        Ok(doc) => doc,
        Err(e) => panic!("the sample {} does not normalise: {e}", rt.name()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = decode_json_object(data) else {
        return;
    };
    if let Ok(ops) = patch::parse(&body) {
        for (rt, mut doc) in [(ResourceType::User, user()), (ResourceType::Group, group())] {
            if patch::apply(rt, &mut doc, &ops).is_ok() {
                if let Err(e) = resource::normalize(rt, &doc) {
                    panic!(
                        "{} patched by {ops:?} is {doc:?}, which does not normalise: {e}",
                        rt.name()
                    );
                }
                let _ = resource::to_subject(rt, "id-1", &doc);
            }
        }
    }
    for rt in ResourceType::ALL {
        if let Ok(doc) = resource::normalize(rt, &body) {
            let _ = resource::to_subject(rt, "id-1", &doc);
        }
    }
    if let Ok(p) = ListParams::from_search(&body) {
        for rt in [None, Some(ResourceType::User), Some(ResourceType::Group)] {
            if let Some(f) = p.filter.as_deref().and_then(|f| filter::parse(f).ok()) {
                let _ = filter::resolve(&f, rt);
            }
            let _ = p.projection(rt);
        }
    }
});
