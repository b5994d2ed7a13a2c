//! The embedded SQLite store: one file, WAL mode, foreign keys on, versioned migrations
//! applied on open. One writer connection serialises write transactions; a small pool of
//! reader connections serves reads concurrently (WAL readers never block the writer).

use crate::SqlStore;
use crate::sql::{self, Dialect, Row, SqlTx, Value};
use rolegate_core::error::{DomainError, ErrorCode, Result};
use rolegate_core::store::{ReadTx, Store, Tx};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Versioned migrations, applied in order, each in its own transaction.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_initial.sql")),
    (2, include_str!("../migrations/sqlite/0002_scheduler.sql")),
    (3, include_str!("../migrations/sqlite/0003_audit_chain.sql")),
    (4, include_str!("../migrations/sqlite/0004_scim.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_notifications.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_email.sql")),
    (7, include_str!("../migrations/sqlite/0007_reminders.sql")),
    (8, include_str!("../migrations/sqlite/0008_access_log.sql")),
    (9, include_str!("../migrations/sqlite/0009_portal.sql")),
    (10, include_str!("../migrations/sqlite/0010_connectors.sql")),
    (
        11,
        include_str!("../migrations/sqlite/0011_connector_requested_assignments.sql"),
    ),
    (
        12,
        include_str!("../migrations/sqlite/0012_directory_generation.sql"),
    ),
    (
        13,
        include_str!("../migrations/sqlite/0013_connector_items_completed.sql"),
    ),
];

/// A SQLite connection inside an open transaction, as the SQL code sees it.
pub(crate) struct SqliteConnection<'a>(pub(crate) &'a Connection);

/// A SQLite error as a domain error: a constraint violation is a conflict (a concurrent
/// change won), anything else is internal.
pub(crate) fn db(e: rusqlite::Error) -> DomainError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return DomainError::new(
            ErrorCode::Conflict,
            "a concurrent change conflicts with this one; retry",
        );
    }
    DomainError::internal(format!("sqlite: {e}"))
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

fn value(v: ValueRef<'_>) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| DomainError::internal(format!("sqlite: text is not UTF-8: {e}")))?
                .to_string(),
        ),
        ValueRef::Blob(_) => return Err(DomainError::internal("sqlite: unexpected blob")),
    })
}

impl sql::Connection for SqliteConnection<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&Row) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.0.prepare_cached(sql).map_err(db)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(params.iter())).map_err(db)?;
        let mut row = Row(Vec::with_capacity(n));
        while let Some(r) = rows.next().map_err(db)? {
            row.0.clear();
            for i in 0..n {
                row.0.push(value(r.get_ref(i).map_err(db)?)?);
            }
            each(&row)?;
        }
        Ok(())
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self.0.prepare_cached(sql).map_err(db)?;
        let n = stmt.execute(params_from_iter(params.iter())).map_err(db)?;
        Ok(n as u64)
    }

    /// SQLite's count of rows changed by completed statements. `None` once SQLite has
    /// rolled the transaction back by itself (it does on some errors: a full disk, an I/O
    /// error), so nobody takes later statements for part of it.
    fn rows_written(&self) -> Option<u64> {
        (!self.0.is_autocommit()).then(|| self.0.total_changes())
    }
}

/// How hard SQLite works to make a commit durable (decisions.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Survives power loss (the default).
    #[default]
    Full,
    /// Survives a process crash, not power loss; about ten times the commit rate.
    Normal,
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Stops the checkpointer when the store is dropped.
    _checkpointer: Checkpointer,
}

/// How often the checkpointer copies committed pages from the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// WAL pages past which the writer checkpoints by itself, inside its commit (SQLite's
/// automatic checkpoint): only when the checkpointer falls far behind (about 40 MB).
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// Copies committed pages from the WAL back into the database file on a thread of its
/// own. SQLite's automatic checkpoint runs inside the commit that crosses its threshold,
/// on the writer's time; measured under concurrent activations (docs/benchmarks.md) it
/// took a fifth of the writer's time, and a WAL left to grow instead costs more (every
/// write extends the file). A passive checkpoint never blocks the writer or the readers.
struct Checkpointer {
    /// Dropped to stop the thread.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path, sync: Synchronous) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(internal)?;
        configure(&conn, sync)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut every = CHECKPOINT_EVERY;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        Ok(()) => every = CHECKPOINT_EVERY,
                        // Once a second while it fails (the writer checkpoints by itself
                        // past its threshold meanwhile).
                        Err(e) if every == CHECKPOINT_EVERY => {
                            tracing::warn!(error = %e, "sqlite checkpoint failed");
                            every = std::time::Duration::from_secs(1);
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|e| DomainError::internal(format!("cannot start the checkpointer: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn internal(e: rusqlite::Error) -> DomainError {
    DomainError::internal(format!("sqlite: {e}"))
}

fn configure(conn: &Connection, sync: Synchronous) -> Result<()> {
    let sync = match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -16000;"
    ))
    .map_err(internal)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path, sync: Synchronous) -> Result<Self> {
        let writer = Connection::open(path).map_err(internal)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(internal)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DomainError::internal(format!(
                "sqlite: could not enable WAL mode (got `{mode}`)"
            )));
        }
        configure(&writer, sync)?;
        // Savepoints' journals (group commit runs each write in one) stay in memory.
        writer
            .execute_batch(&format!(
                "PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};"
            ))
            .map_err(internal)?;
        migrate(&writer)?;
        seal_legacy_audit(&writer)?;
        // Fold a large WAL left by a bulk load or a crash back into the database file, so
        // reads don't search it, and let SQLite refresh its planner statistics.
        writer
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize;")
            .map_err(internal)?;
        let mut readers = Vec::new();
        for _ in 0..4 {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(internal)?;
            configure(&r, sync)?;
            readers.push(Mutex::new(r));
        }
        Ok(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            _checkpointer: Checkpointer::start(path, sync)?,
        })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64> {
        let conn = self
            .writer
            .lock()
            .map_err(|_| DomainError::internal("sqlite writer lock poisoned"))?;
        conn.query_row(
            "SELECT ifnull(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(internal)
    }
}

/// Tries of a backup whose source stays locked (a checkpoint or recovery in progress).
const BACKUP_TRIES: u32 = 100;

impl SqliteStore {
    /// Writes a consistent copy of the SQLite database at `database` into the new file
    /// `to`, with SQLite's online backup: one read transaction copies every page, so the
    /// copy is the database as of one commit, and servers using `database` keep reading
    /// and writing meanwhile (WAL readers do not block the writer). Refuses a `to` that
    /// exists; removes `to` again when the copy fails. `database` is only read: not
    /// created, migrated or sealed. (It is opened read-write all the same, so that, as
    /// any connection does, the last one to close folds the WAL back and removes it.)
    pub fn backup(database: &Path, to: &Path) -> Result<()> {
        if !database.is_file() {
            return Err(DomainError::new(
                ErrorCode::BadRequest,
                format!("no database at {}", database.display()),
            ));
        }
        let source = Connection::open_with_flags(
            database,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(internal)?;
        source
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(internal)?;
        // Claiming the name first makes "never overwrite" hold against a concurrent writer
        // of the same path too.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    DomainError::new(
                        ErrorCode::Conflict,
                        format!(
                            "{} already exists; a backup never overwrites a file",
                            to.display()
                        ),
                    )
                } else {
                    DomainError::new(
                        ErrorCode::BadRequest,
                        format!("cannot create {}: {e}", to.display()),
                    )
                }
            })?;
        let copied = copy_pages(&source, to);
        if copied.is_err() {
            let _ = std::fs::remove_file(to);
        }
        copied
    }
}

/// Copies every page of `source` into the (empty) database file `to` in one step.
fn copy_pages(source: &Connection, to: &Path) -> Result<()> {
    let mut destination = Connection::open(to).map_err(internal)?;
    let backup = Backup::new(source, &mut destination).map_err(internal)?;
    for _ in 0..BACKUP_TRIES {
        match backup.step(-1).map_err(internal)? {
            StepResult::Done => return Ok(()),
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    Err(DomainError::new(
        ErrorCode::ServiceUnavailable,
        "the database stayed locked; retry the backup",
    ))
}

/// Seals audit records written before the hash chain existed (schema v3), in one
/// transaction.
fn seal_legacy_audit(conn: &Connection) -> Result<u64> {
    let txn = conn.unchecked_transaction().map_err(db)?;
    let sealed = crate::sql::tx::seal_unsealed(&SqliteConnection(&txn))?;
    txn.commit().map_err(db)?;
    Ok(sealed)
}

/// Applies the migrations `conn` has not seen yet.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .map_err(internal)?;
    let current: i64 = conn
        .query_row(
            "SELECT ifnull(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(internal)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; INSERT INTO schema_migrations (version, applied_at) VALUES ({version}, unixepoch()); COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            DomainError::internal(format!("sqlite: migration {version} failed: {e}"))
        })?;
    }
    Ok(())
}

impl SqlStore for SqliteStore {
    fn read_sql(&self, f: &mut dyn FnMut(&dyn sql::Connection) -> Result<()>) -> Result<()> {
        let n = self.readers.len().max(1);
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let guard = (0..n)
            .find_map(|i| {
                self.readers
                    .get((start + i) % n)
                    .and_then(|m| m.try_lock().ok())
            })
            .map(Ok)
            .unwrap_or_else(|| {
                self.readers
                    .get(start % n)
                    .ok_or_else(|| DomainError::internal("no sqlite reader"))?
                    .lock()
                    .map_err(|_| DomainError::internal("sqlite reader lock poisoned"))
            })?;
        let mut conn = guard;
        let txn = conn.transaction().map_err(internal)?;
        f(&SqliteConnection(&txn))?;
        txn.rollback().map_err(internal)
    }

    fn write_sql(&self, f: &mut dyn FnMut(&dyn sql::Connection) -> Result<()>) -> Result<()> {
        // A panic inside a transaction rolled it back while unwinding; the connection is
        // fine to reuse.
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let txn = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(internal)?;
        f(&SqliteConnection(&txn))?;
        txn.commit().map_err(internal)
    }
}

impl Store for SqliteStore {
    fn concurrent_reads(&self) -> usize {
        self.readers.len().max(1)
    }

    fn read_dyn(&self, f: &mut dyn FnMut(&mut dyn ReadTx) -> Result<()>) -> Result<()> {
        self.read_sql(&mut |c| f(&mut SqlTx::new(c)))
    }

    fn write_dyn(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.write_sql(&mut |c| f(&mut SqlTx::new(c)))
    }

    fn ping(&self) -> Result<()> {
        let guard = self
            .readers
            .first()
            .ok_or_else(|| DomainError::internal("no sqlite reader"))?;
        let conn = guard
            .lock()
            .map_err(|_| DomainError::internal("sqlite reader lock poisoned"))?;
        conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|_| ())
        .map_err(internal)
    }
}
