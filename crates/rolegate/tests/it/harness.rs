//! Starts the real `rolegate` binary on a fresh database and talks to it over HTTP. The
//! database is a temporary SQLite file, or (in the `it_postgres` test binary) a fresh schema
//! of the PostgreSQL server at `ROLEGATE_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`).

// Not every test module uses every helper; setup failures are meant to panic; temp names
// use the wall clock.
#![allow(dead_code, clippy::expect_used, clippy::disallowed_methods)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The tenant administrator every test server knows.
pub const ADMIN: &str = "it-admin";
/// The HS256 secret every test server verifies with.
pub const SECRET: &str = "integration-test-secret-0123456789";

/// The database the servers of this test binary run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary SQLite file per server.
    Sqlite,
    /// A fresh schema per server on the test PostgreSQL server.
    Postgres,
}

/// The PostgreSQL server tests use.
pub fn postgres_url() -> String {
    std::env::var("ROLEGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A client of the test PostgreSQL server, or why there is none.
pub fn postgres_client() -> Result<postgres::Client, String> {
    postgres::Client::connect(&postgres_url(), postgres::NoTls).map_err(|e| e.to_string())
}

/// The backend servers start on: the test binary's, except that the PostgreSQL binary
/// falls back to SQLite (saying so once, past the output capture) when no PostgreSQL
/// server answers, so the README's test command passes on a machine without one.
pub fn backend() -> Backend {
    static CHOSEN: OnceLock<Backend> = OnceLock::new();
    *CHOSEN.get_or_init(|| match crate::BACKEND {
        Backend::Sqlite => Backend::Sqlite,
        Backend::Postgres => match postgres_client() {
            Ok(_) => Backend::Postgres,
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED the PostgreSQL run of the integration tests: no PostgreSQL at {} ({e}); \
                     these tests ran on SQLite instead. Set ROLEGATE_TEST_POSTGRES_URL to run them on PostgreSQL.",
                    postgres_url()
                );
                Backend::Sqlite
            }
        },
    })
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// The SQLite file (SQLite backend; unused by a server started with [`Server::start_on`]).
    pub db: PathBuf,
    /// The PostgreSQL schema (PostgreSQL backend).
    schema: Option<String>,
    /// Whether dropping this server drops its database (not for a second node on it).
    owns_database: bool,
    dir: PathBuf,
    keep_dir: bool,
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body parsed as JSON (`Null` when empty or not JSON).
    pub json: Value,
    /// Body as text.
    pub text: String,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `error.code` of a Graph error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    })
}

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_rolegate")
}

impl Server {
    /// Starts a server on a fresh database.
    pub fn start() -> Server {
        let dir = std::env::temp_dir().join(format!("rolegate-it-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("rolegate.db");
        Self::spawn(dir, db, false, &[])
    }

    /// Starts a server with extra `serve` arguments.
    pub fn start_with(args: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!("rolegate-it-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("rolegate.db");
        Self::spawn(dir, db, false, args)
    }

    /// Starts a server (development auth) with extra environment variables.
    pub fn start_with_env(env: &[(&str, &str)]) -> Server {
        let dir = std::env::temp_dir().join(format!("rolegate-it-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("rolegate.db");
        Self::spawn_with_auth(dir, db, false, &[], true, env)
    }

    /// Starts a server on a fresh database with only `args` for authentication (no
    /// development secret; the tenant administrator is still [`ADMIN`]).
    pub fn start_without_dev_auth(args: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!("rolegate-it-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("rolegate.db");
        Self::spawn_with_auth(dir, db, false, args, false, &[])
    }

    /// Starts a server on the database `url` (a PostgreSQL schema, or an SQLite file that
    /// outlives the server) with extra `serve` arguments.
    pub fn start_on(url: &str, args: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!("rolegate-it-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("rolegate.db");
        let mut extra = vec!["--database", url];
        extra.extend_from_slice(args);
        let mut server = Self::spawn_on(dir, db, None, false, &extra, true, &[]);
        // The database is the caller's: this server neither names nor drops a schema.
        server.schema = None;
        server.owns_database = false;
        server
    }

    /// Stops this server gracefully and starts a new one on the same database file.
    pub fn restart(self) -> Server {
        self.restart_with(&[])
    }

    /// Stops this server gracefully and starts a new one on the same database file, with
    /// extra `serve` arguments.
    pub fn restart_with(mut self, args: &[&str]) -> Server {
        self.keep_dir = true;
        self.stop();
        let (dir, db, schema) = (self.dir.clone(), self.db.clone(), self.schema.take());
        drop(self);
        Self::spawn_on(dir, db, schema, false, args, true, &[])
    }

    /// Stops this server gracefully and starts a new one on the same database with only
    /// `args` for authentication (no development secret).
    pub fn restart_without_dev_auth(mut self, args: &[&str]) -> Server {
        self.keep_dir = true;
        self.stop();
        let (dir, db, schema) = (self.dir.clone(), self.db.clone(), self.schema.take());
        drop(self);
        Self::spawn_on(dir, db, schema, false, args, false, &[])
    }

    fn spawn(dir: PathBuf, db: PathBuf, keep_dir: bool, extra: &[&str]) -> Server {
        Self::spawn_with_auth(dir, db, keep_dir, extra, true, &[])
    }

    fn spawn_with_auth(
        dir: PathBuf,
        db: PathBuf,
        keep_dir: bool,
        extra: &[&str],
        dev_auth: bool,
        env: &[(&str, &str)],
    ) -> Server {
        Self::spawn_on(dir, db, None, keep_dir, extra, dev_auth, env)
    }

    fn spawn_on(
        dir: PathBuf,
        db: PathBuf,
        schema: Option<String>,
        keep_dir: bool,
        extra: &[&str],
        dev_auth: bool,
        env: &[(&str, &str)],
    ) -> Server {
        // A new server gets a new schema; a restarted one keeps its predecessor's.
        let schema = match (backend(), schema) {
            (Backend::Postgres, None) => Some(format!("it_{}", uuid_like().replace('-', "_"))),
            (_, schema) => schema,
        };
        let database = database_url(&db, schema.as_deref());
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let mut cmd = Command::new(binary());
        cmd.arg("serve");
        // A test that must know the address before starting (a redirect URI) names it.
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        // A second node may reach the database another way (through a proxy).
        if !extra.contains(&"--database") {
            cmd.args(["--database", &database]);
        }
        cmd.args(["--admin", ADMIN]);
        if dev_auth {
            cmd.args(["--auth-hs256-secret", SECRET]);
        }
        let mut child = cmd
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("ROLEGATE_ADMINS")
            .env_remove("ROLEGATE_AUTH_HS256_SECRET")
            .env_remove("ROLEGATE_OIDC_ISSUER")
            .env_remove("ROLEGATE_OIDC_AUDIENCE")
            .env_remove("ROLEGATE_JWKS_FILE")
            .env_remove("ROLEGATE_JWKS_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start rolegate");
        let stdout = child.stdout.take().expect("stdout");
        let mut origin = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read stdout");
            if let Some(addr) = line.strip_prefix("rolegate listening on ") {
                origin = addr.trim().to_string();
                break;
            }
        }
        let server = Server {
            child: Some(child),
            origin,
            db,
            schema,
            owns_database: true,
            dir,
            keep_dir,
        };
        assert!(
            !server.origin.is_empty(),
            "server did not start; log: {}",
            server.log()
        );
        server
    }

    /// Another node on this server's database (PostgreSQL), with extra `serve` arguments
    /// and `database` in place of the shared database URL when given (a proxy in front of
    /// it, say). Dropping it leaves the database to this server.
    pub fn sibling(&self, args: &[&str], database: Option<&str>) -> Server {
        let dir = std::env::temp_dir().join(format!("rolegate-it-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = database.map_or_else(|| self.database_url(), str::to_string);
        let mut extra = vec!["--database", url.as_str()];
        extra.extend_from_slice(args);
        let mut node = Self::spawn_on(
            dir,
            self.db.clone(),
            self.schema.clone(),
            false,
            &extra,
            true,
            &[],
        );
        node.owns_database = false;
        node
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (no shutdown at all) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The `--database` URL of this server's database.
    pub fn database_url(&self) -> String {
        database_url(&self.db, self.schema.as_deref())
    }

    /// Runs `sql` (with `?` placeholders bound to the text `args`) directly on the
    /// server's database and returns its rows, columns as JSON (integers and flags as
    /// numbers). For tests that look underneath the API or alter stored state by hand.
    pub fn sql(&self, sql: &str, args: &[&str]) -> Vec<Vec<Value>> {
        match &self.schema {
            None => {
                let c = rusqlite::Connection::open(&self.db).expect("open database");
                c.busy_timeout(std::time::Duration::from_secs(5))
                    .expect("busy timeout");
                let mut stmt = c.prepare(sql).expect("prepare");
                let n = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        (0..n)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Integer(v) => Value::from(v),
                                    rusqlite::types::ValueRef::Real(v) => Value::from(v),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        Value::from(String::from_utf8_lossy(t).into_owned())
                                    }
                                    _ => Value::Null,
                                })
                            })
                            .collect::<rusqlite::Result<Vec<Value>>>()
                    })
                    .expect("query");
                rows.collect::<rusqlite::Result<_>>().expect("rows")
            }
            Some(schema) => {
                let mut c = postgres_client().expect("postgres");
                c.batch_execute(&format!("SET search_path TO {schema}"))
                    .expect("search_path");
                let mut n = 0;
                let sql: String = sql
                    .chars()
                    .map(|ch| {
                        if ch == '?' {
                            n += 1;
                            format!("${n}")
                        } else {
                            ch.to_string()
                        }
                    })
                    .collect();
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                    .iter()
                    .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                let rows = c.query(&sql, &params).expect("query");
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                let ty = r.columns()[i].type_().clone();
                                if ty == postgres::types::Type::INT8 {
                                    r.get::<_, Option<i64>>(i).map_or(Value::Null, Value::from)
                                } else if ty == postgres::types::Type::BOOL {
                                    r.get::<_, Option<bool>>(i)
                                        .map_or(Value::Null, |b| Value::from(i64::from(b)))
                                } else {
                                    r.get::<_, Option<String>>(i)
                                        .map_or(Value::Null, Value::from)
                                }
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A bearer token for `subject` (minted by `rolegate token`).
    pub fn token(&self, subject: &str, mfa: bool) -> String {
        token(subject, mfa)
    }

    /// The Graph base path for Azure resources.
    pub fn pim(&self, path: &str) -> String {
        format!("/beta/privilegedAccess/azureResources{path}")
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.raw(
            method,
            path,
            token,
            body.map(|b| b.to_string()).as_deref(),
            &[],
        )
    }

    /// Sends a request with a raw body and extra headers.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.try_raw(method, path, token, body, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Server::call`], or why no response came (the server is gone, say).
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        self.try_raw(
            method,
            path,
            token,
            body.map(|b| b.to_string()).as_deref(),
            &[],
        )
    }

    /// [`Server::raw`], or why no response came.
    pub fn try_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        http(&self.origin, method, path, token, body, headers)
    }
}

/// One HTTP request to `origin` (`http://host:port`), read whole; or why no response came.
pub fn http(
    origin: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    {
        let url = format!("{origin}{path}");
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        let req = req
            .body(body.unwrap_or("").to_string())
            .map_err(|e| e.to_string())?;
        let mut resp = agent().run(req).map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            json,
            text,
            headers,
        })
    }
}

impl Server {
    /// GET with a token.
    pub fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), None)
    }

    /// POST JSON with a token.
    pub fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call("POST", path, Some(token), Some(body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
            if let Some(schema) = &self.schema
                && self.owns_database
                && let Ok(mut c) = postgres_client()
            {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// The `--database` URL of an SQLite file or of a schema on the test PostgreSQL server.
fn database_url(db: &std::path::Path, schema: Option<&str>) -> String {
    match schema {
        Some(schema) => {
            let base = postgres_url();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}schema={schema}")
        }
        None => format!("sqlite://{}", db.display()),
    }
}

/// A bearer token for `subject`, minted by the real `rolegate token` command.
pub fn token(subject: &str, mfa: bool) -> String {
    let mut cmd = Command::new(binary());
    cmd.args([
        "token",
        "--secret",
        SECRET,
        "--subject",
        subject,
        "--ttl",
        "3600",
    ]);
    if mfa {
        cmd.arg("--mfa");
    }
    let out = cmd.output().expect("rolegate token");
    assert!(
        out.status.success(),
        "rolegate token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// A unique suffix for temp names.
pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `f` every 50 ms until it holds, or fails after `secs` seconds naming `what`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Says, past the test harness's output capture, that `test` was skipped and why.
pub fn skip(test: &str, why: &str) {
    say(&format!("SKIPPED {test}: {why}"));
}

/// Writes `line` past the test harness's output capture (a plain `cargo test` shows it).
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The interpreter named by `ROLEGATE_PYTHON` when it can run `import {imports}`; otherwise
/// prints `SKIPPED {test}: …` to stderr and returns `None`, so tests that drive Python tools
/// (the Graph SDK, scim2-tester, schemathesis) pass on machines without them.
pub fn python_with(test: &str, package: &str, imports: &str) -> Option<String> {
    let python = std::env::var("ROLEGATE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    let usable = python.as_deref().is_some_and(|p| {
        Command::new(p)
            .args(["-c", &format!("import {imports}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !usable {
        // Written past the test harness's output capture, so a plain `cargo test` shows it.
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test}: ROLEGATE_PYTHON is not set to a Python with {package} (see .ci/run)"
        );
        return None;
    }
    python
}

/// Runs a client tool to completion (proxy variables removed, output captured in files
/// under `dir`, which is removed afterwards), killing it after `timeout`; asserts it exited
/// successfully, showing its output and `server_log()` otherwise, and returns its stdout.
pub fn run_tool(
    name: &str,
    mut cmd: Command,
    dir: &std::path::Path,
    timeout: std::time::Duration,
    server_log: impl Fn() -> String,
) -> String {
    let (out_path, err_path) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(proxy);
    }
    let mut child = cmd
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the tool") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(dir);
    println!("{stdout}");
    assert!(
        status.is_some_and(|st| st.success()),
        "{name} {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- server log ---\n{}",
        status.map_or_else(
            || format!("timed out after {timeout:?}"),
            |st| format!("failed ({st})")
        ),
        server_log()
    );
    stdout
}

/// Runs `rolegate serve` with `args`, expecting it to refuse to start; returns stderr.
pub fn refused_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = std::env::temp_dir().join(format!("rolegate-it-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = format!("sqlite://{}", dir.join("rolegate.db").display());
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database", &db])
        .args(args)
        .env("RUST_LOG", "warn");
    for v in [
        "ROLEGATE_AUTH_HS256_SECRET",
        "ROLEGATE_OIDC_ISSUER",
        "ROLEGATE_OIDC_AUDIENCE",
        "ROLEGATE_JWKS_FILE",
        "ROLEGATE_JWKS_URL",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rolegate");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rolegate serve {args:?} started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(!status.success(), "{args:?}: {stderr}");
    std::fs::remove_dir_all(dir).ok();
    stderr
}

/// A TCP proxy in front of a server (the test PostgreSQL), which a test can cut: every
/// open connection is closed and new ones are refused until it is resumed. Stands in for
/// a database that restarts or a network that fails, without touching the real server.
pub struct TcpProxy {
    /// The local port it listens on.
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl TcpProxy {
    /// Starts a proxy to `target` (`host:port`).
    pub fn start(target: &str) -> TcpProxy {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>> = Default::default();
        let (up2, open2, target) = (up.clone(), open.clone(), target.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone())
                    && let Ok(mut list) = open2.lock()
                {
                    list.push(c2);
                    list.push(s2);
                    pipe(
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    );
                    pipe(server, client);
                }
            }
        });
        TcpProxy { port, up, open }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut list) = self.open.lock() {
            for s in list.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Accepts connections again.
    pub fn resume(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
