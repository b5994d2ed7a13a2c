//! `$filter`: the input is one option value. It is parsed, validated against every
//! collection's field whitelist and translated to SQL for the ones it is valid for.
//! Properties: nothing panics; the canonical printing of a filter parses back to the same
//! filter (unless printing took it past a size or nesting limit); a filter that validates
//! always translates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rolegate_core::odata::{self, EntityFields, MAX_INPUT_LEN};
use rolegate_core::query;
use rolegate_store::odata::filter_to_sql;

/// Every collection's `$filter` whitelist.
const COLLECTIONS: [&EntityFields; 6] = [
    &query::RESOURCE_FIELDS,
    &query::ROLE_DEFINITION_FIELDS,
    &query::ROLE_SETTING_FIELDS,
    &query::ROLE_ASSIGNMENT_FIELDS,
    &query::ROLE_ASSIGNMENT_REQUEST_FIELDS,
    &query::DIRECTORY_AUDIT_FIELDS,
];

fuzz_target!(|data: &[u8]| {
    // `parse_query` refuses longer values before they reach the parser.
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if s.len() > MAX_INPUT_LEN {
        return;
    }
    let Ok(filter) = odata::parse_filter(s) else {
        return;
    };
    let printed = filter.to_string();
    match odata::parse_filter(&printed) {
        Ok(again) => assert_eq!(again, filter, "`{s}` printed as `{printed}`"),
        Err(e) => assert!(
            ["longer than", "nested deeper", "nodes"]
                .iter()
                .any(|limit| e.message.contains(limit)),
            "`{s}` printed as `{printed}`, which does not parse: {e}"
        ),
    }
    for fields in COLLECTIONS {
        if odata::validate(&filter, fields).is_ok() {
            let sql = filter_to_sql(&filter, fields);
            assert!(sql.is_ok(), "validated `{s}` does not translate: {sql:?}");
        }
    }
});
