//! `rolegate copy` and `rolegate backup` (issue 5): a tenant made over HTTP on SQLite,
//! copied into a fresh PostgreSQL schema, verifies and lists exactly as before and keeps
//! working; a backup taken while the server writes is a consistent database; neither
//! command overwrites anything.
//!
//! The PostgreSQL tests use `ROLEGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), each in a schema of its own that it drops,
//! and are skipped (with a `SKIPPED` line on stderr) when nothing listens there.

// Setup failures are meant to panic; temp names use the wall clock.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{
    READER, Tenant, activation, create_group, create_user, decide, eligible_user, lasting,
    status_of,
};
use crate::harness::{ADMIN, Server, binary, token, uuid_like};
use serde_json::{Value, json};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A PostgreSQL schema of this test run, dropped when the test ends.
struct Schema {
    /// `postgres://…?schema=NAME`.
    url: String,
}

impl Schema {
    /// A fresh schema on the test server, or `None` (after printing why the test is
    /// skipped) when the server is not reachable.
    fn fresh(test: &str) -> Option<Schema> {
        let base = std::env::var("ROLEGATE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
        if !reachable(&base) {
            // Written past the test harness's output capture, so a plain `cargo test`
            // shows it.
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: PostgreSQL not reachable at {base} (set ROLEGATE_TEST_POSTGRES_URL)"
            );
            return None;
        }
        let name = format!("it_copy_{}", uuid_like().replace('-', "_"));
        let separator = if base.contains('?') { '&' } else { '?' };
        Some(Schema {
            url: format!("{base}{separator}schema={name}"),
        })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(store) = rolegate_store::PostgresStore::open(&self.url, 1, true) {
            let _ = store.drop_schema();
        }
    }
}

/// Whether something accepts TCP connections at the host and port of `url`.
fn reachable(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    host_port.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    })
}

/// Runs the binary with `args`.
fn rolegate(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("ROLEGATE_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run rolegate")
}

/// Runs the binary with `args`, asserting success; returns stdout.
fn succeeds(args: &[&str]) -> String {
    let out = rolegate(args);
    assert!(
        out.status.success(),
        "rolegate {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the binary with `args`, asserting it fails; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = rolegate(args);
    assert!(
        !out.status.success(),
        "rolegate {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The number of records `rolegate audit verify` reports as intact, asserting it passes.
fn verified_records(url: &str) -> u64 {
    let out = succeeds(&["audit", "verify", "--database", url]);
    out.lines()
        .find_map(|l| l.strip_prefix("audit log intact: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in: {out}"))
}

/// The lists a client sees, each as its items (the server's origin removed from links).
fn lists(s: &Server, admin: &str, resources: &[&str]) -> Vec<(String, Vec<Value>)> {
    let mut paths = vec![
        s.pim("/resources"),
        s.pim("/roleAssignmentRequests"),
        "/beta/auditLogs/directoryAudits".to_string(),
        "/scim/v2/Users".to_string(),
        "/scim/v2/Groups".to_string(),
    ];
    for r in resources {
        paths.push(s.pim(&format!("/resources/{r}/roleAssignments")));
    }
    paths
        .into_iter()
        .map(|path| {
            let r = s.get(&path, admin);
            assert_eq!(r.status, 200, "GET {path}: {}", r.text);
            let json: Value =
                serde_json::from_str(&r.text.replace(&s.origin, "ORIGIN")).expect("JSON list");
            let items = json
                .get("value")
                .or_else(|| json.get("Resources"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| panic!("no items in {path}: {}", r.text));
            (path, items)
        })
        .collect()
}

/// The `id`s of a list's items, in order.
fn ids(items: &[Value]) -> Vec<&str> {
    items.iter().filter_map(|i| i["id"].as_str()).collect()
}

#[test]
fn a_sqlite_tenant_copied_to_postgres_verifies_and_lists_the_same_and_keeps_working() {
    let test = "a_sqlite_tenant_copied_to_postgres_verifies_and_lists_the_same_and_keeps_working";
    let Some(schema) = Schema::fresh(test) else {
        return;
    };
    // A tenant made over HTTP: SCIM users and a group, an approval rule, an approved
    // activation, one left pending, and an administrator's assignment.
    let mut t = Tenant::start();
    let (bob, bob_t) = t.user("bob");
    create_group(&t.s, &t.admin, "approvers", &[&bob]);
    let (alice, alice_t, role, eligible) = eligible_user(&t, "alice", "P30D");
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        json!({"Enabled": true, "Approvers": [{"Id": bob, "Type": "User", "DisplayName": "Bob"}]}),
    );
    let r = t.request(
        &alice_t,
        &activation(&t.sub, &role, &alice, Some(&eligible), "PT1H"),
    );
    assert_eq!(
        status_of(&r.json),
        ("InProgress", "PendingApproval"),
        "{}",
        r.text
    );
    let d = decide(
        &t.s,
        &bob_t,
        r.json["id"].as_str().unwrap(),
        "AdminApproved",
    );
    assert_eq!(status_of(&d.json), ("Closed", "Provisioned"), "{}", d.text);
    let (carol, carol_t, _, carol_eligible) = eligible_user(&t, "carol", "P30D");
    let pending = t.request(
        &carol_t,
        &activation(&t.sub, &role, &carol, Some(&carol_eligible), "PT1H"),
    );
    assert_eq!(status_of(&pending.json), ("InProgress", "PendingApproval"));
    let reader = t.role(&t.rg, READER);
    t.admin_add(&t.rg, &reader, &carol, "Active", lasting("PT2H"));

    let resources = [t.sub.as_str(), t.rg.as_str()];
    let before = lists(&t.s, &t.admin, &resources);
    assert!(t.s.stop(), "the SQLite server stops cleanly");
    let source = sqlite_url(&t.s.db);
    let records = verified_records(&source);
    assert!(records >= 8, "the tenant's changes are audited: {records}");

    let out = succeeds(&["copy", "--from", &source, "--to", &schema.url]);
    for table in [
        "subjects",
        "requests",
        "approvals",
        "audit_log",
        "assignments",
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(table)),
            "no count for {table}: {out}"
        );
    }
    assert!(
        out.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == ["audit_log", &records.to_string()]
        ),
        "{out}"
    );
    assert_eq!(
        verified_records(&schema.url),
        records,
        "the chain is intact on PostgreSQL"
    );
    let verify = |url: &str| succeeds(&["audit", "verify", "--database", url]);
    assert_eq!(verify(&schema.url), verify(&source), "same head hash");

    let refused = fails(&["copy", "--from", &source, "--to", &schema.url]);
    assert!(refused.contains("already holds data"), "{refused}");

    // Nodes on the copy list the same items in the same order...
    let pg = Server::start_on(&schema.url, &[]);
    let admin = token(ADMIN, true);
    let after = lists(&pg, &admin, &resources);
    for ((path, want), (_, got)) in before.iter().zip(&after) {
        assert_eq!(ids(got), ids(want), "{path}");
        assert_eq!(got, want, "{path}");
    }
    // ...and new rows follow the copied ones (the sequences continue after them).
    let dave = create_user(&pg, &admin, "dave");
    let users = lists(&pg, &admin, &[]);
    let listed = &users[3].1;
    assert_eq!(
        ids(listed).last().copied(),
        Some(dave.as_str()),
        "{listed:?}"
    );
    let added = pg.post(
        &pg.pim("/roleAssignmentRequests"),
        &admin,
        &json!({
            "type": "AdminAdd", "assignmentState": "Active", "resourceId": t.rg,
            "roleDefinitionId": reader, "subjectId": dave, "reason": "after the copy",
            "schedule": lasting("PT1H"),
        }),
    );
    assert_eq!(added.status, 201, "{}", added.text);
    let requests = &lists(&pg, &admin, &[])[1].1;
    assert_eq!(
        ids(requests).last().copied(),
        added.json["id"].as_str(),
        "{requests:?}"
    );
    drop(pg);
    assert!(
        verified_records(&schema.url) > records,
        "new records chain onto the copied ones"
    );
}

/// A PostgreSQL migration that adds a table or a column without adding it to
/// `rolegate_store::TABLES` fails this test (a copy would drop its data).
#[test]
fn the_copy_names_every_table_and_column_of_the_postgres_schema() {
    use rolegate_store::SqlStore;
    let Some(schema) =
        Schema::fresh("the_copy_names_every_table_and_column_of_the_postgres_schema")
    else {
        return;
    };
    let store = rolegate_store::PostgresStore::open(&schema.url, 1, true).expect("open");
    let mut found = std::collections::BTreeSet::new();
    store
        .read_sql(&mut |c| {
            c.query_each(
                "SELECT table_name, column_name FROM information_schema.columns \
                 WHERE table_schema = current_schema() \
                 AND table_name NOT IN ('schema_migrations', 'access_log', 'portal_sessions', 'portal_sign_ins', 'connector_leases', 'directory_generation')",
                &[],
                &mut |row| {
                    found.insert((row.get::<String>(0)?, row.get::<String>(1)?));
                    Ok(())
                },
            )
        })
        .expect("read the catalog");
    let copied: std::collections::BTreeSet<(String, String)> = rolegate_store::TABLES
        .iter()
        .flat_map(|t| {
            t.columns.iter().map(|c| {
                let column = if *c == "rowid" { "seq" } else { *c };
                (t.name.to_string(), column.to_string())
            })
        })
        .collect();
    assert_eq!(found, copied);
}

#[test]
fn a_postgres_tenant_copies_back_to_sqlite() {
    let Some(schema) = Schema::fresh("a_postgres_tenant_copies_back_to_sqlite") else {
        return;
    };
    let t = Tenant::start();
    t.user("erin");
    let mut s = t.s;
    s.stop();
    let first = sqlite_url(&s.db);
    succeeds(&["copy", "--from", &first, "--to", &schema.url]);
    let dir = temp_dir();
    let back = sqlite_url(&dir.join("back.db"));
    succeeds(&["copy", "--from", &schema.url, "--to", &back]);
    assert_eq!(
        succeeds(&["audit", "verify", "--database", &back]),
        succeeds(&["audit", "verify", "--database", &first])
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rolegate-it-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn copy_refuses_a_missing_source_and_a_bad_url() {
    let dir = temp_dir();
    let missing = sqlite_url(&dir.join("missing.db"));
    let to = sqlite_url(&dir.join("to.db"));
    let err = fails(&["copy", "--from", &missing, "--to", &to]);
    assert!(err.contains("no database at"), "{err}");
    let err = fails(&["copy", "--from", "mysql://db/x", "--to", &to]);
    assert!(err.contains("unsupported database URL"), "{err}");
    assert!(!dir.join("missing.db").exists(), "no source was created");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_backup_taken_while_the_server_writes_is_consistent_and_never_overwrites() {
    let t = Tenant::start();
    t.user("frank");
    let dir = temp_dir();
    let backup = dir.join("backup.db");
    let live = sqlite_url(&t.s.db);

    // Users are created while the backup runs.
    let writer = {
        let (origin, admin) = (t.s.origin.clone(), t.admin.clone());
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            for i in 0..30 {
                let user = format!("during-{i}-{}@example.test", uuid_like());
                let status = agent
                    .post(&format!("{origin}/scim/v2/Users"))
                    .header("Authorization", &format!("Bearer {admin}"))
                    .send_json(json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": user,
                        "displayName": format!("During {i}"),
                    }))
                    .map(|r| r.status().as_u16());
                assert_eq!(status.ok(), Some(201), "SCIM create during the backup");
            }
        })
    };
    let out = succeeds(&[
        "backup",
        "--database",
        &live,
        "--to",
        backup.to_str().unwrap(),
    ]);
    assert!(out.contains("backed up"), "{out}");
    writer.join().expect("writer thread");

    let copied = verified_records(&sqlite_url(&backup));
    let now = verified_records(&live);
    assert!(copied >= 1 && copied <= now, "{copied} of {now}");

    let before = std::fs::read(&backup).unwrap();
    let err = fails(&[
        "backup",
        "--database",
        &live,
        "--to",
        backup.to_str().unwrap(),
    ]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&backup).unwrap(), before, "left as it was");

    let err = fails(&[
        "backup",
        "--database",
        "postgres://rg:s3cret@db.example:5432/rolegate?schema=tenant_a",
        "--to",
        "tenant_a.dump",
    ]);
    assert!(
        err.contains(
            "pg_dump --schema=tenant_a --format=custom --file=tenant_a.dump postgres://rg@db.example:5432/rolegate"
        ),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
