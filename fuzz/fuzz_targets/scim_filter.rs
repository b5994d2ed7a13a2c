//! SCIM filters (`userName eq "a" and emails[type eq "work"]`), as a list or search sends
//! them, resolved against users, groups and both; and as the value filter of a PATCH path
//! (`emails[…]`, `members[…]`), evaluated in memory on sample elements.
//! Property: nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rolegate_core::scim::filter;
use rolegate_core::scim::schema::{self, ResourceType};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = filter::parse(s) else {
        return;
    };
    for rt in [None, Some(ResourceType::User), Some(ResourceType::Group)] {
        let _ = filter::resolve(&f, rt);
    }
    let elements = [
        json!({"type": "work", "value": "alice@example.org", "primary": true}),
        json!({"value": "u-1", "display": "Alice", "$ref": "https://example.org/Users/u-1"}),
        json!({"value": 7}),
        json!("bare"),
    ];
    for (rt, name) in [
        (ResourceType::User, "emails"),
        (ResourceType::Group, "members"),
    ] {
        let Ok(attr) = schema::resolve_attr(rt, name) else {
            panic!("{name} is not an attribute of {}", rt.name());
        };
        if let Ok(cond) = filter::resolve_value_filter(&f, attr.attr) {
            for e in &elements {
                let _ = filter::matches_elem(&cond, e);
            }
            let _ = filter::implied_values(&cond);
        }
    }
});
