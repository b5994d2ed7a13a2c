//! Copying a whole tenant from one database into another, empty one (`rolegate copy`):
//! SQLite to PostgreSQL when a deployment grows to several nodes, back again, or between
//! two databases of one kind.
//!
//! Every table of the schema ([`TABLES`]) is copied row by row with the same column
//! values, the `seq` columns included (SQLite's implicit `rowid` where PostgreSQL has an
//! explicit `seq`), so lists come out in the same order and the audit hash chain, which
//! `rolegate audit verify` walks in `seq` order, is identical. The source is read in one
//! snapshot and the destination written in one transaction: a failed copy leaves the
//! destination as it was.

use crate::SqlStore;
use crate::sql::{Connection, Dialect, Value};
use rolegate_core::error::{DomainError, ErrorCode, Result};

/// One table of the schema, as a copy reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The table's name (the same on both backends).
    pub name: &'static str,
    /// Every column of the table. `rowid` is SQLite's implicit row id, which the
    /// PostgreSQL schema holds as the column `seq` (the SQL layer translates the name).
    pub columns: &'static [&'static str],
    /// The order rows are copied in: a unique key, and parents before children where the
    /// table refers to itself.
    pub order: &'static str,
    /// Whether the table's `seq` is a PostgreSQL `BIGSERIAL`, whose sequence a copy into
    /// PostgreSQL moves past the copied values.
    pub serial: bool,
}

/// Every table a copy carries, each after the tables its foreign keys refer to. Left out:
/// `schema_migrations` (each database is migrated by its own open path), `access_log`,
/// the running nodes' change feed (written on PostgreSQL only), which a copy starts empty,
/// `portal_sessions` and `portal_sign_ins` (people sign in again on the new database),
/// `connector_leases` (held by running nodes only) and `directory_generation` (a counter
/// for the nodes' caches, which start empty).
pub const TABLES: &[Table] = &[
    Table {
        name: "resources",
        columns: &[
            "id",
            "external_id",
            "external_key",
            "resource_type",
            "display_name",
            "status",
            "registered_at",
            "registered_root",
            "parent_id",
        ],
        // A resource's depth is the number of its ancestors (itself included).
        order: "(SELECT count(*) FROM resource_ancestors a WHERE a.resource_id = resources.id), id",
        serial: false,
    },
    Table {
        name: "resource_ancestors",
        columns: &["ancestor_id", "resource_id", "depth"],
        order: "ancestor_id, resource_id",
        serial: false,
    },
    Table {
        name: "role_definitions",
        columns: &[
            "id",
            "resource_id",
            "external_id",
            "template_id",
            "display_name",
        ],
        order: "id",
        serial: false,
    },
    Table {
        name: "role_settings",
        columns: &[
            "id",
            "resource_id",
            "role_definition_id",
            "is_default",
            "last_updated_at",
            "last_updated_by",
            "admin_eligible",
            "admin_member",
            "user_eligible",
            "user_member",
        ],
        order: "id",
        serial: false,
    },
    Table {
        name: "subjects",
        columns: &[
            "rowid",
            "id",
            "external_id",
            "kind",
            "display_name",
            "principal_name",
            "email",
            "active",
            "scim_attributes",
            "created_at",
            "modified_at",
            "version",
        ],
        order: "rowid",
        serial: true,
    },
    Table {
        name: "group_members",
        columns: &["group_id", "member_id"],
        order: "group_id, member_id",
        serial: false,
    },
    Table {
        name: "assignments",
        columns: &[
            "seq",
            "id",
            "resource_id",
            "role_definition_id",
            "subject_id",
            "state",
            "linked_eligible_id",
            "start_at",
            "end_at",
            "request_id",
        ],
        order: "seq",
        serial: true,
    },
    Table {
        name: "assignment_history",
        columns: &[
            "id",
            "resource_id",
            "role_definition_id",
            "subject_id",
            "state",
            "linked_eligible_id",
            "start_at",
            "end_at",
            "request_id",
            "ended_at",
            "end_reason",
            "ended_by_request",
        ],
        order: "id",
        serial: false,
    },
    Table {
        name: "requests",
        columns: &[
            "seq",
            "id",
            "resource_id",
            "role_definition_id",
            "subject_id",
            "kind",
            "state",
            "requested_at",
            "has_schedule",
            "start_at",
            "end_at",
            "reason",
            "status",
            "sub_status",
            "status_details",
            "linked_eligible_id",
            "ticket",
            "requested_by",
            "assignment_id",
            "emergency",
            "approval_deadline",
            "version",
        ],
        order: "seq",
        serial: true,
    },
    Table {
        name: "request_approvers",
        columns: &["request_id", "approver_id"],
        order: "approver_id, request_id",
        serial: false,
    },
    Table {
        name: "approvals",
        columns: &[
            "request_id",
            "approver_id",
            "approver_name",
            "approved",
            "justification",
            "at",
        ],
        order: "request_id, approver_id",
        serial: false,
    },
    Table {
        name: "audit_log",
        columns: &[
            "seq",
            "id",
            "at",
            "category",
            "activity",
            "result",
            "correlation_id",
            "initiator_id",
            "record",
            "resource_id",
            "prev_hash",
            "hash",
            "request_id",
        ],
        order: "seq",
        serial: true,
    },
    Table {
        name: "audit_targets",
        columns: &["target_id", "audit_seq"],
        order: "audit_seq, target_id",
        serial: false,
    },
    Table {
        name: "subscriptions",
        columns: &[
            "id",
            "resource",
            "entity",
            "resource_id",
            "change_types",
            "notification_url",
            "client_state",
            "expires_at",
            "creator_id",
            "created_at",
        ],
        order: "id",
        serial: false,
    },
    Table {
        name: "notification_outbox",
        columns: &[
            "rowid",
            "id",
            "subscription_id",
            "entity",
            "entity_id",
            "change_type",
            "first_due",
            "due_at",
            "attempts",
            "lease_owner",
            "lease_until",
        ],
        order: "rowid",
        serial: true,
    },
    Table {
        name: "email_outbox",
        columns: &[
            "rowid",
            "id",
            "request_id",
            "event",
            "recipient_id",
            "address",
            "first_due",
            "due_at",
            "attempts",
            "lease_owner",
            "lease_until",
            "assignment_id",
        ],
        order: "rowid",
        serial: true,
    },
    Table {
        name: "reminders_sent",
        columns: &["assignment_id", "threshold", "end_at", "sent_at"],
        order: "assignment_id, threshold, end_at",
        serial: false,
    },
    Table {
        name: "connector_items",
        columns: &[
            "seq",
            "id",
            "connector",
            "target",
            "principal",
            "subject_id",
            "operation",
            "cause",
            "cause_id",
            "assignment_ids",
            "not_after",
            "state",
            "attempts",
            "created_at",
            "due_at",
            "next_attempt_at",
            "last_attempt_at",
            "completed_at",
            "error_code",
            "error_message",
            "lease_owner",
            "lease_until",
        ],
        order: "seq",
        serial: true,
    },
    Table {
        name: "connector_requested",
        columns: &[
            "connector",
            "target",
            "principal",
            "operation",
            "subject_id",
            "not_after",
            "assignment_ids",
        ],
        order: "connector, target, principal",
        serial: false,
    },
    Table {
        name: "connector_ledger",
        columns: &[
            "connector",
            "target",
            "principal",
            "subject_id",
            "since",
            "item_id",
        ],
        order: "connector, target, principal",
        serial: false,
    },
    Table {
        name: "connector_passes",
        columns: &["id", "connector", "started_at", "summary"],
        order: "id",
        serial: false,
    },
    Table {
        name: "connector_findings",
        columns: &["connector", "kind", "a", "b", "detail"],
        order: "connector, kind, a, b",
        serial: false,
    },
];

/// How many rows a copy wrote into one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableCount {
    /// The table.
    pub table: &'static str,
    /// Rows copied.
    pub rows: u64,
}

/// Rows read by one query of the source (a page of one consistent snapshot).
const PAGE_ROWS: i64 = 10_000;
/// Rows written by one `INSERT` into the destination.
const INSERT_ROWS: usize = 100;

/// Copies every table of `from` into `to`, which must hold no rows at all (else a
/// `Conflict` error and nothing written). Reads one snapshot of `from` and writes `to` in
/// one transaction; after a copy into PostgreSQL, each `seq` sequence continues after the
/// largest copied value. Returns the rows copied per table, in [`TABLES`] order.
pub fn copy(from: &dyn SqlStore, to: &dyn SqlStore) -> Result<Vec<TableCount>> {
    let mut counts = Vec::with_capacity(TABLES.len());
    from.read_sql(&mut |source| {
        to.write_sql(&mut |destination| {
            counts.clear();
            refuse_data(destination)?;
            for table in TABLES {
                counts.push(TableCount {
                    table: table.name,
                    rows: copy_table(source, destination, table)?,
                });
            }
            if destination.dialect() == Dialect::Postgres {
                continue_sequences(destination)?;
            }
            Ok(())
        })
    })?;
    Ok(counts)
}

/// Fails naming the first table of `c` that holds a row.
fn refuse_data(c: &dyn Connection) -> Result<()> {
    for table in TABLES {
        let mut found = false;
        c.query_each(
            &format!("SELECT 1 FROM {} LIMIT 1", table.name),
            &[],
            &mut |_| {
                found = true;
                Ok(())
            },
        )?;
        if found {
            return Err(DomainError::new(
                ErrorCode::Conflict,
                format!(
                    "the destination already holds data (table `{}` is not empty); copy only into an empty database",
                    table.name
                ),
            ));
        }
    }
    Ok(())
}

/// Copies the rows of `table`, a page at a time in `table.order`, in multi-row inserts.
fn copy_table(source: &dyn Connection, destination: &dyn Connection, table: &Table) -> Result<u64> {
    let columns = table.columns.join(", ");
    let select = format!(
        "SELECT {columns} FROM {} ORDER BY {} LIMIT ? OFFSET ?",
        table.name, table.order
    );
    let mut batch: Vec<Value> = Vec::with_capacity(INSERT_ROWS * table.columns.len());
    let mut copied: u64 = 0;
    loop {
        let mut read: i64 = 0;
        let offset = i64::try_from(copied)
            .map_err(|_| DomainError::internal(format!("{}: too many rows", table.name)))?;
        source.query_each(
            &select,
            &[Value::Integer(PAGE_ROWS), Value::Integer(offset)],
            &mut |row| {
                if row.0.len() != table.columns.len() {
                    return Err(DomainError::internal(format!(
                        "{}: read {} columns, expected {}",
                        table.name,
                        row.0.len(),
                        table.columns.len()
                    )));
                }
                batch.extend(row.0.iter().cloned());
                read += 1;
                if batch.len() == INSERT_ROWS * table.columns.len() {
                    copied += insert(destination, table, &columns, &batch)?;
                    batch.clear();
                }
                Ok(())
            },
        )?;
        if !batch.is_empty() {
            copied += insert(destination, table, &columns, &batch)?;
            batch.clear();
        }
        if read < PAGE_ROWS {
            return Ok(copied);
        }
    }
}

/// Inserts the rows whose values `values` holds one after another; returns how many.
fn insert(c: &dyn Connection, table: &Table, columns: &str, values: &[Value]) -> Result<u64> {
    let width = table.columns.len();
    let rows = values.len() / width;
    let row = format!("({})", vec!["?"; width].join(", "));
    let sql = format!(
        "INSERT INTO {} ({columns}) VALUES {}",
        table.name,
        vec![row.as_str(); rows].join(", ")
    );
    let inserted = c.execute(&sql, values)?;
    if inserted != rows as u64 {
        return Err(DomainError::internal(format!(
            "{}: inserted {inserted} rows of {rows}",
            table.name
        )));
    }
    Ok(inserted)
}

/// Moves each PostgreSQL `seq` sequence past the largest copied value, so new rows follow
/// the copied ones.
fn continue_sequences(c: &dyn Connection) -> Result<()> {
    for table in TABLES.iter().filter(|t| t.serial) {
        c.query_each(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'seq'), coalesce(max(seq), 0) + 1, false) FROM {0}",
                table.name
            ),
            &[],
            &mut |_| Ok(()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]

    use super::*;
    use crate::{SqliteStore, Synchronous};
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    fn temp_db(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "rolegate-copy-{}-{nanos}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("{name}.db"))
    }

    fn strings(c: &dyn Connection, sql: &str, params: &[Value]) -> Vec<String> {
        let mut out = Vec::new();
        c.query_each(sql, params, &mut |r| {
            out.push(r.get::<String>(0)?);
            Ok(())
        })
        .unwrap();
        out
    }

    /// A migration that adds a table or a column without adding it here fails this test
    /// (a copy would drop its data).
    #[test]
    fn tables_name_every_table_and_column_of_the_sqlite_schema_parents_first() {
        let path = temp_db("schema");
        let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        store
            .read_sql(&mut |c| {
                let tables: BTreeSet<String> = strings(
                    c,
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT IN ('schema_migrations', 'sqlite_sequence', 'access_log', 'portal_sessions', 'portal_sign_ins', 'connector_leases', 'directory_generation')",
                    &[],
                )
                .into_iter()
                .collect();
                let listed: BTreeSet<String> = TABLES.iter().map(|t| t.name.to_string()).collect();
                assert_eq!(tables, listed);
                for (i, table) in TABLES.iter().enumerate() {
                    let name = Value::Text(table.name.into());
                    let columns: BTreeSet<String> = strings(
                        c,
                        "SELECT name FROM pragma_table_info(?)",
                        std::slice::from_ref(&name),
                    )
                    .into_iter()
                    .collect();
                    let listed: BTreeSet<String> = table
                        .columns
                        .iter()
                        .filter(|c| **c != "rowid")
                        .map(|c| c.to_string())
                        .collect();
                    assert_eq!(columns, listed, "columns of {}", table.name);
                    for parent in strings(
                        c,
                        "SELECT \"table\" FROM pragma_foreign_key_list(?)",
                        &[name],
                    ) {
                        assert!(
                            parent == table.name || TABLES[..i].iter().any(|t| t.name == parent),
                            "{} refers to {parent}, which is copied after it",
                            table.name
                        );
                    }
                }
                Ok(())
            })
            .unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    fn seqs(store: &SqliteStore, sql: &str) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        store
            .read_sql(&mut |c| {
                out.clear();
                c.query_each(sql, &[], &mut |r| {
                    out.push((r.get(0)?, r.get(1)?));
                    Ok(())
                })
            })
            .unwrap();
        out
    }

    #[test]
    fn a_copy_keeps_row_ids_and_refuses_a_destination_with_data() {
        let (source_path, destination_path) = (temp_db("source"), temp_db("destination"));
        let source = SqliteStore::open(&source_path, Synchronous::Normal).unwrap();
        source
            .write_sql(&mut |c| {
                // Rows deleted in between leave gaps a renumbering copy would close.
                for (id, name) in [("s1", "Ann"), ("s2", "Bo"), ("s3", "Cy"), ("s4", "Di")] {
                    c.execute(
                        "INSERT INTO subjects (id, kind, display_name, active) VALUES (?, 'User', ?, 1)",
                        &[Value::Text(id.into()), Value::Text(name.into())],
                    )?;
                }
                c.execute("DELETE FROM subjects WHERE id = 's2'", &[])?;
                c.execute(
                    "INSERT INTO group_members (group_id, member_id) VALUES ('s3', 's1')",
                    &[],
                )?;
                Ok(())
            })
            .unwrap();
        let destination = SqliteStore::open(&destination_path, Synchronous::Normal).unwrap();

        let counts = copy(&source, &destination).unwrap();
        let count = |table: &str| counts.iter().find(|c| c.table == table).map(|c| c.rows);
        assert_eq!(count("subjects"), Some(3));
        assert_eq!(count("group_members"), Some(1));
        assert_eq!(count("audit_log"), Some(0));
        assert_eq!(counts.len(), TABLES.len());
        let listed = "SELECT rowid, id FROM subjects ORDER BY rowid";
        assert_eq!(seqs(&destination, listed), seqs(&source, listed));
        assert_eq!(
            seqs(&destination, listed)
                .iter()
                .map(|(seq, _)| *seq)
                .collect::<Vec<_>>(),
            vec![1, 3, 4]
        );

        let again = copy(&source, &destination).unwrap_err();
        assert_eq!(again.code, ErrorCode::Conflict);
        assert!(again.message.contains("`subjects`"), "{again}");
        assert_eq!(seqs(&destination, listed).len(), 3, "nothing written twice");
        for path in [source_path, destination_path] {
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
    }

    #[test]
    fn a_copy_spans_pages_and_partial_batches() {
        let (source_path, destination_path) = (temp_db("pages"), temp_db("pages-copy"));
        let source = SqliteStore::open(&source_path, Synchronous::Normal).unwrap();
        let total = 2 * PAGE_ROWS + 150;
        source
            .write_sql(&mut |c| {
                c.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
                     INSERT INTO subjects (id, kind, display_name, active) \
                     SELECT 'u' || i, 'User', 'User ' || i, 1 FROM n",
                    &[Value::Integer(total)],
                )?;
                c.execute("DELETE FROM subjects WHERE rowid % 7 = 0", &[])?;
                Ok(())
            })
            .unwrap();
        let destination = SqliteStore::open(&destination_path, Synchronous::Normal).unwrap();

        let counts = copy(&source, &destination).unwrap();
        let kept = total - total / 7;
        assert!(kept > PAGE_ROWS, "more than one page");
        assert!(
            counts
                .iter()
                .any(|c| c.table == "subjects" && c.rows == kept as u64),
            "{counts:?}"
        );
        let listed = "SELECT rowid, id FROM subjects ORDER BY rowid";
        assert_eq!(seqs(&destination, listed), seqs(&source, listed));
        for path in [source_path, destination_path] {
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
    }
}
