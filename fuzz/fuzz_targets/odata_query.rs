//! A whole URL query string (`$filter=…&$orderby=…&$select=…&$expand=…&$top=…`), decoded
//! by the API's own `query_pairs` and parsed by `parse_query`, then validated against
//! every collection and translated to SQL as a list call would.
//! Properties: nothing panics; `$top` stays within its maximum; validated `$filter` and
//! `$orderby` always translate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rolegate_api::extract::query_pairs;
use rolegate_core::odata::{self, EntityFields, MAX_TOP, QueryOptions};
use rolegate_core::query;
use rolegate_store::odata::{filter_to_sql, orderby_to_sql};

/// Every collection's whitelist.
const COLLECTIONS: [&EntityFields; 6] = [
    &query::RESOURCE_FIELDS,
    &query::ROLE_DEFINITION_FIELDS,
    &query::ROLE_SETTING_FIELDS,
    &query::ROLE_ASSIGNMENT_FIELDS,
    &query::ROLE_ASSIGNMENT_REQUEST_FIELDS,
    &query::DIRECTORY_AUDIT_FIELDS,
];

/// Checks `q` and the options nested in its `$expand` items.
fn check(q: &QueryOptions) {
    assert!(q.top.is_none_or(|t| t <= MAX_TOP), "$top {:?}", q.top);
    for fields in COLLECTIONS {
        if let Some(f) = &q.filter
            && odata::validate(f, fields).is_ok()
        {
            let sql = filter_to_sql(f, fields);
            assert!(sql.is_ok(), "validated {f:?} does not translate: {sql:?}");
        }
        if odata::validate_orderby(&q.orderby, fields).is_ok() {
            let sql = orderby_to_sql(&q.orderby, fields);
            assert!(
                sql.is_ok(),
                "validated {:?} does not translate: {sql:?}",
                q.orderby
            );
        }
    }
    for e in &q.expand {
        check(&e.options);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = odata::parse_query(&query_pairs(Some(raw))) {
        check(&q);
    }
});
