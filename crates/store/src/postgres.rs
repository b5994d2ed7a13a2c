//! The PostgreSQL store, for several `rolegate serve` nodes on one database.
//!
//! It runs the same SQL as SQLite ([`crate::sql`]); this module adapts placeholders and
//! types, pools connections and keeps SQLite's transaction semantics across nodes:
//! write transactions take one database-wide advisory lock, so they run one at a time
//! over the whole cluster exactly as SQLite's single writer does (a PIM server writes
//! little; reads scale out), and read transactions see one consistent snapshot
//! (`REPEATABLE READ READ ONLY`). Uniqueness and the one-pending-request rule are unique
//! indexes, so the database enforces them whatever a node believes.
//!
//! The URL is libpq's (`postgres://user:password@host:port/database?…`) plus Rolegate's own
//! `schema=NAME` parameter: the schema to use, created when missing (default `public`).

use crate::SqlStore;
use crate::sql::{self, Dialect, Row, SqlTx, Value, rewrite_placeholders};
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Statement};
use rolegate_core::error::{DomainError, ErrorCode, Result};
use rolegate_core::store::{ReadTx, Store, Tx};
use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Versioned migrations, applied in order under an advisory lock (nodes starting together
/// migrate once).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_schema.sql")),
    (2, include_str!("../migrations/postgres/0002_portal.sql")),
    (
        3,
        include_str!("../migrations/postgres/0003_connectors.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_connector_requested_assignments.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_directory_generation.sql"),
    ),
    (
        6,
        include_str!("../migrations/postgres/0006_connector_items_completed.sql"),
    ),
];

/// The advisory lock every write transaction on `schema` holds: one per schema, so
/// tenants sharing a database don't wait for each other.
fn write_lock(schema: &str) -> i64 {
    advisory_key("write", schema)
}

/// The advisory lock migrations of `schema` hold (taken before the schema exists).
fn migration_lock(schema: &str) -> i64 {
    advisory_key("migrate", schema)
}

/// A stable 64-bit key (FNV-1a) for a named lock on a schema.
fn advisory_key(purpose: &str, schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "rolegate:"
        .bytes()
        .chain(purpose.bytes())
        .chain([b':'])
        .chain(schema.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// How long a request waits for a free pooled connection before it fails with 503.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// A request waits for a connection in slices this long, to fail at once when connecting
/// to the database was just refused rather than after [`POOL_WAIT`].
const POOL_SLICE: Duration = Duration::from_millis(100);

/// The PostgreSQL store.
pub struct PostgresStore {
    schema: String,
    /// Why the last connection attempt failed, if it did (shared with the pool's
    /// connector).
    refused: Arc<Refusal>,
    /// The `r2d2` pool; `None` only while being dropped.
    pool: Option<r2d2::Pool<Connector>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Why the pool's last connection attempt failed: requests answer it at once (a database
/// that is down, a wrong password) rather than wait for a connection that will not come.
/// A server at its connection limit is not a refusal: requests wait for a busy connection.
#[derive(Default)]
struct Refusal(Mutex<Option<DomainError>>);

impl Refusal {
    fn set(&self, why: Option<DomainError>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    fn get(&self) -> Option<DomainError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Makes the pool's connections (each with the schema as its search path) and remembers
/// why the last attempt failed, so requests fail at once during an outage.
struct Connector {
    config: Config,
    schema: String,
    refused: Arc<Refusal>,
}

impl r2d2::ManageConnection for Connector {
    type Connection = PgClient;
    type Error = DomainError;

    fn connect(&self) -> Result<PgClient> {
        let made = self.config.connect(NoTls).and_then(|mut client| {
            client.batch_execute(&format!("SET search_path TO {}", quote_ident(&self.schema)))?;
            Ok(client)
        });
        match made {
            Ok(client) => {
                self.refused.set(None);
                Ok(PgClient {
                    client,
                    statements: HashMap::new(),
                })
            }
            Err(e) => {
                // A server at its connection limit answered: the database is there, and
                // requests wait for a busy connection rather than fail.
                let at_limit = e.code() == Some(&SqlState::TOO_MANY_CONNECTIONS);
                let why = db(e);
                self.refused.set((!at_limit).then(|| why.clone()));
                Err(why)
            }
        }
    }

    fn is_valid(&self, conn: &mut PgClient) -> Result<()> {
        conn.client.simple_query("").map(|_| ()).map_err(db)
    }

    fn has_broken(&self, conn: &mut PgClient) -> bool {
        conn.client.is_closed()
    }
}

/// A connection and the statements prepared on it.
struct PgClient {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// Prepared statements kept per connection; past this many the cache starts over (OData
/// filters make statement texts without end).
const STATEMENT_CACHE: usize = 512;

/// A PostgreSQL error as a domain error: constraint violations and serialization
/// failures are conflicts (retry), a lost or refused connection is 503, anything else
/// internal.
fn db(e: postgres::Error) -> DomainError {
    if let Some(code) = e.code() {
        if code.code().starts_with("23")
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return DomainError::new(
                ErrorCode::Conflict,
                "a concurrent change conflicts with this one; retry",
            );
        }
        if code.code().starts_with("08")
            || code.code().starts_with("57P")
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            return unavailable(&e);
        }
        return DomainError::internal(format!("postgres: {}", detail(&e)));
    }
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        return unavailable(&e);
    }
    DomainError::internal(format!("postgres: {}", detail(&e)))
}

/// A lost or refused connection: the operator sees why in the log, the client a 503.
/// The server's message (and code) when there is one: `postgres::Error`'s own text is
/// only "db error".
fn detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

fn unavailable(e: &postgres::Error) -> DomainError {
    tracing::warn!(error = %detail(e), "postgres unavailable");
    DomainError::new(
        ErrorCode::ServiceUnavailable,
        "the database is unavailable; retry later",
    )
}

impl Drop for PostgresStore {
    /// Closes the connections on a thread of its own: closing blocks on the client's
    /// runtime, which must not happen on a thread driving the server's.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl PostgresStore {
    /// Connects to `url` with at most `max_connections` connections. With `migrate`, creates
    /// the schema when missing and applies pending migrations; without, refuses a schema
    /// that is not at the latest version (`rolegate migrate` brings it there).
    pub fn open(url: &str, max_connections: usize, migrate: bool) -> Result<Self> {
        let (config, schema) = parse_url(url)?;
        let refused = Arc::new(Refusal::default());
        let connector = Connector {
            config,
            schema: schema.clone(),
            refused: Arc::clone(&refused),
        };
        // Connections are made when first needed (none at start, none kept idle on
        // purpose), never tested on checkout (a broken one is dropped on return), and a
        // failed connection is retried in the background at most a second apart.
        let pool = r2d2::Pool::builder()
            .max_size(u32::try_from(max_connections.max(1)).unwrap_or(u32::MAX))
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(2))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(connector);
        let store = Self {
            schema,
            refused,
            pool: Some(pool),
        };
        if migrate {
            store.migrate()?;
        } else {
            let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
            let current = store.schema_version().map_err(|_| {
                DomainError::new(
                    ErrorCode::ServiceUnavailable,
                    "the database has no Rolegate schema; run `rolegate migrate`",
                )
            })?;
            if current != latest {
                return Err(DomainError::new(
                    ErrorCode::ServiceUnavailable,
                    format!(
                        "the database schema is at version {current}, this build needs {latest}; run `rolegate migrate`"
                    ),
                ));
            }
        }
        Ok(store)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64> {
        let mut conn = self.connection()?;
        let row = conn
            .client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(db)?;
        row.try_get(0).map_err(db)
    }

    /// Drops the store's schema and everything in it (tests use one schema per run).
    pub fn drop_schema(&self) -> Result<()> {
        let mut conn = self.connection()?;
        conn.client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                quote_ident(&self.schema)
            ))
            .map_err(db)
    }

    /// A pooled connection: an idle one, or a new one, waiting up to [`POOL_WAIT`] for
    /// one to be free; at once the reason the last connection attempt failed (a database
    /// that is down is `503`).
    fn connection(&self) -> Result<r2d2::PooledConnection<Connector>> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| DomainError::internal("postgres: the pool is closed"))?;
        let deadline = std::time::Instant::now() + POOL_WAIT;
        loop {
            if let Ok(conn) = pool.get_timeout(POOL_SLICE) {
                return Ok(conn);
            }
            if let Some(why) = self.refused.get() {
                return Err(why);
            }
            if std::time::Instant::now() >= deadline {
                return Err(DomainError::new(
                    ErrorCode::ServiceUnavailable,
                    "all database connections are busy; retry later",
                ));
            }
        }
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.connection()?;
        let client = &mut conn.client;
        let mut txn = client.transaction().map_err(db)?;
        txn.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&migration_lock(&self.schema)],
        )
        .map_err(db)?;
        // Create the schema only when missing: an operator role may use a schema made for
        // it without the right to create one.
        let exists = txn
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&self.schema],
            )
            .map_err(db)?
            .is_some();
        if !exists {
            txn.batch_execute(&format!("CREATE SCHEMA {}", quote_ident(&self.schema)))
                .map_err(db)?;
        }
        txn.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .map_err(db)?;
        let current: i64 = txn
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(db)?;
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            txn.batch_execute(sql).map_err(|e| {
                DomainError::internal(format!("postgres: migration {version} failed: {e}"))
            })?;
            txn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, extract(epoch from now())::bigint)",
                &[version],
            )
            .map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    /// Runs `f` in a transaction: a read-only snapshot, or a write holding the cluster's
    /// write lock.
    fn run(
        &self,
        write: bool,
        f: &mut dyn FnMut(&dyn sql::Connection) -> Result<()>,
    ) -> Result<()> {
        let mut conn = self.connection()?;
        let PgClient { client, statements } = &mut *conn;
        let mut txn = if write {
            let mut txn = client.transaction().map_err(db)?;
            txn.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&write_lock(&self.schema)],
            )
            .map_err(db)?;
            txn
        } else {
            client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(db)?
        };
        let pg = PgConnection {
            session: RefCell::new(&mut txn),
            statements: RefCell::new(statements),
        };
        f(&pg)?;
        txn.commit().map_err(db)
    }

    /// Runs `f` on a pooled connection outside any transaction: each statement sees the
    /// latest committed state and costs one round trip.
    fn run_latest(&self, f: &mut dyn FnMut(&dyn sql::Connection) -> Result<()>) -> Result<()> {
        let mut conn = self.connection()?;
        let PgClient { client, statements } = &mut *conn;
        let pg = PgConnection {
            session: RefCell::new(client),
            statements: RefCell::new(statements),
        };
        f(&pg)
    }
}

impl SqlStore for PostgresStore {
    fn read_sql(&self, f: &mut dyn FnMut(&dyn sql::Connection) -> Result<()>) -> Result<()> {
        self.run(false, f)
    }

    fn write_sql(&self, f: &mut dyn FnMut(&dyn sql::Connection) -> Result<()>) -> Result<()> {
        self.run(true, f)
    }
}

impl Store for PostgresStore {
    fn read_dyn(&self, f: &mut dyn FnMut(&mut dyn ReadTx) -> Result<()>) -> Result<()> {
        self.run(false, &mut |c| f(&mut SqlTx::new(c)))
    }

    fn read_latest_dyn(&self, f: &mut dyn FnMut(&mut dyn ReadTx) -> Result<()>) -> Result<()> {
        self.run_latest(&mut |c| f(&mut SqlTx::new(c)))
    }

    fn write_dyn(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.run(true, &mut |c| f(&mut SqlTx::new(c)))
    }

    fn ping(&self) -> Result<()> {
        let mut conn = self.connection()?;
        conn.client
            .query_one("SELECT count(*) FROM schema_migrations", &[])
            .map(|_| ())
            .map_err(db)
    }

    fn shared(&self) -> bool {
        true
    }

    /// One pooled connection fewer than the pool holds (at least one): a node's writes run
    /// one at a time, so reads waiting in their queue never leave its writer waiting on
    /// the pool.
    fn concurrent_reads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| {
            usize::try_from(p.max_size())
                .unwrap_or(1)
                .saturating_sub(1)
                .max(1)
        })
    }
}

/// Splits Rolegate's `schema=NAME` parameter off a PostgreSQL URL: the libpq URL that is
/// left (what `psql` and `pg_dump` take) and the schema (`public` when not named).
pub fn split_schema(url: &str) -> Result<(String, String)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = String::from("public");
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", name)) => {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(bad_url("schema= takes letters, digits and _"));
                }
                schema = name.to_string();
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, schema))
}

fn bad_url(why: &str) -> DomainError {
    DomainError::new(
        ErrorCode::BadRequest,
        format!("--database: not a usable PostgreSQL URL ({why})"),
    )
}

/// The connection settings and schema of a Rolegate PostgreSQL URL.
fn parse_url(url: &str) -> Result<(Config, String)> {
    let (url, schema) = split_schema(url)?;
    let mut config = Config::from_str(&url).map_err(|e| bad_url(&e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.application_name("rolegate");
    Ok((config, schema))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A transaction on one pooled connection, or the connection itself (autocommit:
/// [`PostgresStore::run_latest`]), as the SQL code sees it.
struct PgConnection<'t, C: GenericClient> {
    session: RefCell<&'t mut C>,
    statements: RefCell<&'t mut HashMap<String, Statement>>,
}

impl<C: GenericClient> PgConnection<'_, C> {
    /// The prepared statement of `text` with parameters of `types`, prepared once per
    /// connection.
    fn statement(&self, text: &str, types: &[Type]) -> Result<Statement> {
        let mut key = String::with_capacity(text.len() + 8 * types.len());
        key.push_str(text);
        for t in types {
            key.push('\u{0}');
            key.push_str(t.name());
        }
        let mut statements = self.statements.borrow_mut();
        if let Some(s) = statements.get(&key) {
            return Ok(s.clone());
        }
        let s = self
            .session
            .borrow_mut()
            .prepare_typed(text, types)
            .map_err(db)?;
        if statements.len() >= STATEMENT_CACHE {
            statements.clear();
        }
        statements.insert(key, s.clone());
        Ok(s)
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => i.to_sql(ty, out),
            Value::Real(f) => f.to_sql(ty, out),
            Value::Text(t) => t.as_str().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <f64 as ToSql>::accepts(ty) || <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// `sql` with PostgreSQL placeholders and the parameters to bind with their types. A
/// NULL parameter becomes the literal `NULL` (its type then comes from the context, as in
/// SQLite); SQLite's implicit `rowid` is the `seq` column of the PostgreSQL schema.
fn translate<'v>(sql: &str, params: &'v [Value]) -> (String, Vec<(&'v Value, Type)>) {
    let mut bound: Vec<(&Value, Type)> = Vec::new();
    let mut numbers: Vec<Option<usize>> = vec![None; params.len()];
    let text = rewrite_placeholders(sql, |n, out| match params.get(n.wrapping_sub(1)) {
        None | Some(Value::Null) => out.push_str("NULL"),
        Some(v) => {
            let k = match numbers[n - 1] {
                Some(k) => k,
                None => {
                    let ty = match v {
                        Value::Integer(_) => Type::INT8,
                        Value::Real(_) => Type::FLOAT8,
                        _ => Type::TEXT,
                    };
                    bound.push((v, ty));
                    numbers[n - 1] = Some(bound.len());
                    bound.len()
                }
            };
            out.push('$');
            out.push_str(&k.to_string());
        }
    });
    (text.replace("rowid", "seq"), bound)
}

fn column(row: &postgres::Row, i: usize) -> std::result::Result<Value, postgres::Error> {
    let ty = row.columns()[i].type_();
    Ok(if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Integer)
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |v| Value::Integer(i64::from(v)))
    } else if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)?
            .map_or(Value::Null, |v| Value::Integer(i64::from(v)))
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |v| Value::Integer(i64::from(v)))
    } else if *ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i)?
            .map_or(Value::Null, Value::Real)
    } else {
        row.try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text)
    })
}

impl<C: GenericClient> sql::Connection for PgConnection<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&Row) -> Result<()>,
    ) -> Result<()> {
        let (text, bound) = translate(sql, params);
        let types: Vec<Type> = bound.iter().map(|(_, t)| t.clone()).collect();
        let values: Vec<&(dyn ToSql + Sync)> = bound
            .iter()
            .map(|(v, _)| *v as &(dyn ToSql + Sync))
            .collect();
        let statement = self.statement(&text, &types)?;
        let rows = self
            .session
            .borrow_mut()
            .query(&statement, &values)
            .map_err(db)?;
        let mut row = Row::default();
        for r in &rows {
            row.0.clear();
            for i in 0..r.len() {
                row.0.push(column(r, i).map_err(db)?);
            }
            each(&row)?;
        }
        Ok(())
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let (text, bound) = translate(sql, params);
        let types: Vec<Type> = bound.iter().map(|(_, t)| t.clone()).collect();
        let values: Vec<&(dyn ToSql + Sync)> = bound
            .iter()
            .map(|(v, _)| *v as &(dyn ToSql + Sync))
            .collect();
        let statement = self.statement(&text, &types)?;
        self.session
            .borrow_mut()
            .execute(&statement, &values)
            .map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_nulls_and_rowid_translate() {
        let params = vec![Value::Text("a".into()), Value::Null, Value::Integer(3)];
        let (sql, bound) = translate(
            "SELECT rowid FROM t WHERE a = ?1 AND b IS ?2 AND c = ?3 AND d = ?1",
            &params,
        );
        assert_eq!(
            sql,
            "SELECT seq FROM t WHERE a = $1 AND b IS NULL AND c = $2 AND d = $1"
        );
        assert_eq!(bound.len(), 2);
        assert_eq!(bound[1].1, Type::INT8);
    }

    #[test]
    fn each_schema_has_its_own_locks() {
        assert_eq!(write_lock("a"), write_lock("a"));
        assert_ne!(write_lock("a"), write_lock("b"));
        assert_ne!(write_lock("a"), migration_lock("a"));
    }

    #[test]
    fn the_schema_parameter_is_ours() -> Result<()> {
        let (config, schema) = parse_url("postgres://u@127.0.0.1:5432/test?schema=rg_1")?;
        assert_eq!(schema, "rg_1");
        assert_eq!(config.get_dbname(), Some("test"));
        assert!(parse_url("postgres://u@h/test?schema=x;drop").is_err());
        assert_eq!(
            split_schema("postgres://u@h/test?sslmode=disable&schema=a_1")?,
            (
                "postgres://u@h/test?sslmode=disable".to_string(),
                "a_1".to_string()
            )
        );
        assert_eq!(split_schema("postgres://u@h/test")?.1, "public");
        Ok(())
    }
}
