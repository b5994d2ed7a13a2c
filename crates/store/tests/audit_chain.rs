//! The audit log on SQLite: chained appends, listing with filters, the hash chain check,
//! and sealing of records written before the chain existed.

// Setup failures are meant to panic; temp names use the wall clock.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use jiff::Timestamp;
use rolegate_core::audit::{AuditRecord, ChainReport, Initiator, Target};
use rolegate_core::odata::parse_filter;
use rolegate_core::operation::audit::verify_log;
use rolegate_core::query::ListQuery;
use rolegate_core::store;
use rolegate_store::{SqliteStore, Synchronous};
use std::path::Path;

fn record(n: u32, target: &str) -> AuditRecord {
    AuditRecord {
        id: format!("rec-{n}"),
        category: if n.is_multiple_of(2) {
            "RoleManagement"
        } else {
            "Policy"
        }
        .into(),
        correlation_id: format!("corr-{n}"),
        result: "success".into(),
        result_reason: String::new(),
        activity_display_name: format!("Activity {n}"),
        activity_date_time: Timestamp::from_second(1_700_000_000 + i64::from(n)).unwrap(),
        operation_type: "Update".into(),
        initiated_by: Initiator {
            id: "u1".into(),
            display_name: "User One".into(),
            user_principal_name: Some("u1@example.test".into()),
            application: false,
        },
        target_resources: vec![Target::new("Resource", target, "res")],
        additional_details: vec![("resourceId".into(), target.into())],
    }
}

fn append(store: &SqliteStore, records: &[AuditRecord]) {
    for r in records {
        store::write(store, |tx| tx.append_audit(r)).unwrap();
    }
}

fn ids(store: &SqliteStore, filter: Option<&str>) -> Vec<String> {
    let q = ListQuery {
        filter: filter.map(|f| parse_filter(f).unwrap()),
        top: 100,
        count: true,
        ..ListQuery::default()
    };
    let page = store::read(store, |tx| tx.list_audit(&q)).unwrap();
    assert_eq!(page.total, Some(page.items.len() as u64));
    page.items
        .iter()
        .map(|e| e.document["id"].as_str().unwrap().to_string())
        .collect()
}

fn sql(db: &Path, statement: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(statement).unwrap();
}

fn open(db: &Path) -> SqliteStore {
    SqliteStore::open(db, Synchronous::Normal).unwrap()
}

#[test]
fn appends_lists_and_verifies() {
    let db = common::temp_db("audit");
    let store = open(&db);
    append(
        &store,
        &[record(1, "r-a"), record(2, "r-b"), record(3, "r-a")],
    );
    assert_eq!(ids(&store, None), ["rec-3", "rec-2", "rec-1"]);
    assert_eq!(
        ids(&store, Some("targetResources/any(t: t/id eq 'r-a')")),
        ["rec-3", "rec-1"]
    );
    assert_eq!(ids(&store, Some("category eq 'RoleManagement'")), ["rec-2"]);
    assert_eq!(
        ids(
            &store,
            Some("activityDateTime ge 2023-11-14T22:13:22Z and initiatedBy/user/id eq 'u1'")
        ),
        ["rec-3", "rec-2"]
    );
    let entry = store::read(&store, |tx| tx.audit_entry("rec-2"))
        .unwrap()
        .unwrap();
    assert_eq!(entry.resource_id.as_deref(), Some("r-b"));
    assert_eq!(entry.document["correlationId"], "corr-2");
    assert!(
        store::read(&store, |tx| tx.audit_entry("nope"))
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        verify_log(&store).unwrap(),
        ChainReport::Intact { checked: 3, .. }
    ));
    drop(store);

    sql(
        &db,
        "UPDATE audit_log SET record = replace(record, 'Activity 2', 'Nothing') WHERE id = 'rec-2'",
    );
    let store = open(&db);
    match verify_log(&store).unwrap() {
        ChainReport::Broken { checked, link } => {
            assert_eq!((checked, link.id.as_str()), (1, "rec-2"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_column_edit_or_a_deletion_breaks_the_chain() {
    let db = common::temp_db("audit");
    append(
        &open(&db),
        &[record(1, "r"), record(2, "r"), record(3, "r")],
    );
    sql(
        &db,
        "UPDATE audit_log SET result = 'failure' WHERE id = 'rec-3'",
    );
    let broken = |db: &Path| match verify_log(&open(db)).unwrap() {
        ChainReport::Broken { link, .. } => link.id,
        ChainReport::Intact { .. } => panic!("intact"),
    };
    assert_eq!(broken(&db), "rec-3");
    sql(
        &db,
        "UPDATE audit_log SET result = 'success' WHERE id = 'rec-3'",
    );
    sql(
        &db,
        "DELETE FROM audit_targets WHERE audit_seq = (SELECT seq FROM audit_log WHERE id = 'rec-1')",
    );
    assert_eq!(broken(&db), "rec-1");
    let db = common::temp_db("audit");
    append(
        &open(&db),
        &[record(1, "r"), record(2, "r"), record(3, "r")],
    );
    sql(
        &db,
        "DELETE FROM audit_targets WHERE audit_seq = (SELECT seq FROM audit_log WHERE id = 'rec-2');
         DELETE FROM audit_log WHERE id = 'rec-2';",
    );
    assert_eq!(broken(&db), "rec-3");
}

#[test]
fn records_from_before_the_chain_are_sealed_once() {
    let db = common::temp_db("audit");
    append(&open(&db), &[record(1, "r-a"), record(2, "r-b")]);
    // As a schema v1 database left them: no chain, no resource column, no targets.
    sql(
        &db,
        "UPDATE audit_log SET hash = NULL, prev_hash = NULL, resource_id = NULL; DELETE FROM audit_targets;",
    );
    let store = open(&db);
    assert!(matches!(
        verify_log(&store).unwrap(),
        ChainReport::Intact { checked: 2, .. }
    ));
    assert_eq!(
        ids(&store, Some("targetResources/any(t: t/id eq 'r-b')")),
        ["rec-2"]
    );
    append(&store, &[record(3, "r-a")]);
    assert!(matches!(
        verify_log(&store).unwrap(),
        ChainReport::Intact { checked: 3, .. }
    ));
    drop(store);

    // Clearing a hash inside a sealed chain is reported, not re-sealed, and writes go on.
    sql(&db, "UPDATE audit_log SET hash = NULL WHERE id = 'rec-3'");
    let store = open(&db);
    append(&store, &[record(4, "r-a")]);
    match verify_log(&store).unwrap() {
        ChainReport::Broken { checked, link } => {
            assert_eq!((checked, link.id.as_str()), (2, "rec-3"))
        }
        other => panic!("{other:?}"),
    }
}
