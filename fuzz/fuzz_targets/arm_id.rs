//! ARM ids (`/subscriptions/{guid}/resourceGroups/{name}/providers/…`).
//! Properties: nothing panics; a parsed id's canonical text re-parses to the same id with
//! the same text, kind, type and name; its key is its lower-cased text; every ancestor is
//! a valid id whose text is a prefix of the id's, and the chain ends at a subscription or
//! management group.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rolegate_core::scope::{ArmId, ScopeKind};

/// Asserts that `id`'s canonical text parses back to an identical id.
fn round_trips(id: &ArmId) {
    let again = match ArmId::parse(id.as_str()) {
        Ok(again) => again,
        Err(e) => panic!("canonical `{}` does not re-parse: {e}", id.as_str()),
    };
    assert_eq!(&again, id);
    assert_eq!(again.as_str(), id.as_str());
    assert_eq!(again.kind(), id.kind());
    assert_eq!(again.resource_type(), id.resource_type());
    assert_eq!(again.name(), id.name());
    assert_eq!(id.key(), id.as_str().to_lowercase());
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(id) = ArmId::parse(s) else {
        return;
    };
    round_trips(&id);
    let ancestors = id.ancestors();
    for a in &ancestors {
        round_trips(a);
        assert!(
            id.as_str().starts_with(a.as_str()),
            "ancestor `{}` of `{}`",
            a.as_str(),
            id.as_str()
        );
        assert_ne!(a, &id);
    }
    let top = ancestors.last().unwrap_or(&id);
    assert!(
        matches!(
            top.kind(),
            ScopeKind::Subscription | ScopeKind::ManagementGroup
        ),
        "`{}` does not end at a root",
        id.as_str()
    );
    assert_eq!(id.parent().as_ref(), ancestors.first());
});
