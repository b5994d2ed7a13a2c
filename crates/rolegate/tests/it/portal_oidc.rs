//! The portal's OpenID sign-in against a real OpenID provider: the npm package
//! `oidc-provider` (tests/portal/oidc_provider.mjs), a Rolegate server configured as its
//! client (`--oidc-client-id`, a client secret file, `--oidc-mfa-acr`), and Debian's
//! Chromium playing the person (tests/portal/oidc_flows.py): code flow with PKCE, state and
//! nonce, MFA step-up keeping the form's inputs, RP-initiated sign-out, forged callbacks.
//! Skipped, saying why, where Node's packages, Chromium or Playwright are missing (.ci/run
//! installs them).

#![allow(clippy::expect_used)]

use crate::fixture::{CONTRIBUTOR, Tenant, lasting};
use crate::harness::{Server, uuid_like};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

pub(crate) fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(path)
}

/// The provider process; dropping it closes its stdin, which ends it.
pub(crate) struct Provider {
    child: Child,
    _stdin: ChildStdin,
    pub(crate) issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python and Node folder the test needs, or `None` (having said why).
pub(crate) fn missing_tools(test: &str) -> Option<(String, String)> {
    let python = crate::portal_browser::browser_python(test)?;
    let node_dir = std::env::var("ROLEGATE_PORTAL_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_file("tests/portal/node"));
    let why = if !node_dir.join("node_modules/oidc-provider").is_dir() {
        Some(format!(
            "no oidc-provider in {} (npm ci there; .ci/run does)",
            node_dir.display()
        ))
    } else if Command::new("node").arg("--version").output().is_err() {
        Some("no node on PATH".to_string())
    } else {
        None
    };
    match why {
        Some(why) => {
            let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
            None
        }
        None => Some((python, node_dir.display().to_string())),
    }
}

pub(crate) fn start_provider(config: &std::path::Path, dir: &std::path::Path) -> Provider {
    let log = std::fs::File::create(dir.join("provider.log")).expect("provider log");
    let mut child = Command::new("node")
        .arg(repo_file("tests/portal/oidc_provider.mjs"))
        .arg(config)
        .arg("0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start node");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the provider printed READY in time");
    let issuer = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("unexpected provider output: {line}"))
        .to_string();
    Provider {
        child,
        _stdin: stdin,
        issuer,
    }
}

#[test]
fn oidc_sign_in_step_up_and_sign_out_in_a_real_browser_against_a_real_provider() {
    let Some((python, _node)) = missing_tools("portal_oidc") else {
        return;
    };
    // Seed on development authentication, then serve the same database with OIDC only.
    let t = Tenant::start();
    let user = t.s.call(
        "POST",
        "/scim/v2/Users",
        Some(&t.admin),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("alice-{}@example.test", uuid_like()),
            "externalId": "alice-oidc",
            "displayName": "Alice Oidc",
        })),
    );
    assert_eq!(user.status, 201, "{}", user.text);
    let alice = user.json["id"].as_str().expect("id").to_string();
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.set_rule(
        &role,
        "userMemberSettings",
        "MfaRule",
        json!({"mfaRequired": true}),
    );
    t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P30D"));
    let eligible = t
        .assignments(&t.sub)
        .into_iter()
        .find(|a| a["subjectId"] == alice.as_str())
        .and_then(|a| a["id"].as_str().map(str::to_string))
        .expect("eligible");

    let dir = std::env::temp_dir().join(format!("rolegate-oidc-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let origin = format!("http://127.0.0.1:{port}");
    let secret = format!("portal-secret-{}", uuid_like());
    let config = json!({
        "host": "localhost",
        "clients": [{
            "client_id": "rolegate-portal",
            "client_secret": secret,
            "redirect_uris": [format!("{origin}/ui/auth/callback")],
            "post_logout_redirect_uris": [format!("{origin}/ui/")],
        }],
        "accounts": [{"sub": "alice-oidc", "name": "Alice Oidc", "email": "alice@example.test"}],
    });
    let config_path = dir.join("provider.json");
    std::fs::write(&config_path, config.to_string()).expect("config");
    let provider = start_provider(&config_path, &dir);
    let secret_path = dir.join("client-secret");
    std::fs::write(&secret_path, &secret).expect("secret");

    let Tenant { s, .. } = t;
    let listen = format!("127.0.0.1:{port}");
    let s: Server = s.restart_without_dev_auth(&[
        "--listen",
        &listen,
        "--oidc-issuer",
        &provider.issuer,
        "--oidc-audience",
        "rolegate-api",
        "--oidc-client-id",
        "rolegate-portal",
        "--oidc-client-secret-file",
        secret_path.to_str().expect("path"),
        "--oidc-mfa-acr",
        "urn:rolegate:mfa",
        "--public-url",
        &origin,
    ]);
    assert_eq!(s.origin, origin);
    // The development sign-in does not exist with OIDC: the page goes to the issuer.
    let fixture = json!({
        "issuer": provider.issuer,
        "user": "alice-oidc",
        "display_name": "Alice Oidc",
        "role": "Contributor",
        "eligible_id": eligible,
    });
    let fixture_path = dir.join("fixture.json");
    std::fs::write(&fixture_path, fixture.to_string()).expect("fixture");
    let mut cmd = Command::new(&python);
    cmd.arg(repo_file("tests/portal/oidc_flows.py"))
        .arg(&s.origin)
        .arg(&fixture_path);
    let out =
        crate::harness::run_tool("oidc_flows.py", cmd, &dir, Duration::from_secs(180), || {
            s.log()
        });
    let request_id = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["request_id"].as_str().map(str::to_string))
        .expect("the script names the request it made");
    // The activation made after the step-up is the API's, by Alice, with MFA.
    let rows = s.sql(
        "SELECT subject_id, kind, reason, requested_by FROM requests WHERE id = ?",
        &[&request_id],
    );
    assert_eq!(
        rows,
        vec![vec![
            json!(alice),
            json!("UserAdd"),
            json!("Rotate the storage keys"),
            json!(alice)
        ]]
    );
    assert!(
        s.sql("SELECT id_hash FROM portal_sessions", &[]).is_empty(),
        "signed out"
    );
    drop(provider);
}
