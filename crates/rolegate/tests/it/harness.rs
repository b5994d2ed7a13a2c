//! Starts the real `rolegate` binary on a temporary SQLite file and talks to it over HTTP.

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

/// A running server process.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// The SQLite file (unused by a server started with [`Server::start_on`]).
    pub db: PathBuf,
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
        Self::spawn_on(dir, db, url, false, args, true, &[])
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
        let (dir, db) = (self.dir.clone(), self.db.clone());
        drop(self);
        Self::spawn(dir, db, false, args)
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
        let url = format!("sqlite://{}", db.display());
        Self::spawn_on(dir, db, &url, keep_dir, extra, dev_auth, env)
    }

    fn spawn_on(
        dir: PathBuf,
        db: PathBuf,
        url: &str,
        keep_dir: bool,
        extra: &[&str],
        dev_auth: bool,
        env: &[(&str, &str)],
    ) -> Server {
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database", url])
            .args(["--admin", ADMIN]);
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
        assert!(
            !origin.is_empty(),
            "server did not start; log: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        Server {
            child: Some(child),
            origin,
            db,
            dir,
            keep_dir,
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
        let url = format!("{}{}", self.origin, path);
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
        let req = req.body(body.unwrap_or("").to_string()).expect("request");
        let mut resp = agent()
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            json,
            text,
            headers,
        }
    }

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
        }
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
