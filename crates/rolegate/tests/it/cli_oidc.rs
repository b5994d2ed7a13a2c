//! `rolegate login` against a real OpenID provider (the npm package `oidc-provider`,
//! tests/portal/oidc_provider.mjs, issuing JWT access tokens for the server's audience),
//! with the test playing the person at the provider in Debian's Chromium
//! (tests/cli/play_user.py): the device authorization grant, its refusal, the browser flow
//! with PKCE and a loopback redirect, token refresh after a short access-token lifetime, a
//! refresh that fails, and logout. Skipped, saying why, where Node's packages, Chromium or
//! Playwright are missing (.ci/run installs them).

#![allow(clippy::expect_used)]

use crate::cli::{Terminal, finish};
use crate::fixture::{CONTRIBUTOR, Tenant, lasting};
use crate::harness::uuid_like;
use crate::portal_oidc::{missing_tools, repo_file, start_provider};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// Starts `rolegate ARGS` and hands back its stderr lines as they come.
fn start(term: &Terminal, args: &[&str], env: &[(&str, &str)]) -> (Child, Receiver<String>) {
    let mut cmd = term.command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rolegate login");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The first line `pick` accepts, within 30 seconds.
fn line_where(rx: &Receiver<String>, pick: impl Fn(&str) -> Option<String>) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(found) = pick(&line) {
                return found;
            }
            seen.push(line);
        }
    }
    panic!("the CLI never printed what was expected; it printed: {seen:?}");
}

fn play(python: &str, args: &[&str]) {
    let out = Command::new(python)
        .arg(repo_file("tests/cli/play_user.py"))
        .args(args)
        .output()
        .expect("run play_user.py");
    assert!(
        out.status.success(),
        "play_user.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn credential(term: &Terminal) -> Value {
    let text =
        std::fs::read_to_string(term.home.join("rolegate/credentials.json")).expect("credentials");
    serde_json::from_str::<Value>(&text).expect("JSON")["profiles"]["default"].clone()
}

#[test]
fn login_with_a_device_code_or_a_browser_against_a_real_provider_then_refresh_and_logout() {
    let Some((python, _node)) = missing_tools("cli_oidc") else {
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
            "externalId": "alice-cli",
            "displayName": "Alice Terminal",
        })),
    );
    assert_eq!(user.status, 201, "{}", user.text);
    let alice = user.json["id"].as_str().expect("id").to_string();
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P30D"));

    let dir = std::env::temp_dir().join(format!("rolegate-cli-oidc-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = json!({
        "clients": [{
            "client_id": "rolegate-cli",
            "application_type": "native",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        }],
        "accounts": [{"sub": "alice-cli", "name": "Alice Terminal", "email": "alice@example.test"}],
        "access_token_ttl": 5,
        "resource": {"audience": "rolegate-api", "scope": "rolegate"},
    });
    let config_path = dir.join("provider.json");
    std::fs::write(&config_path, config.to_string()).expect("config");
    let provider = start_provider(&config_path, &dir);
    let Tenant { s, .. } = t;
    let s = s.restart_without_dev_auth(&[
        "--oidc-issuer",
        &provider.issuer,
        "--oidc-audience",
        "rolegate-api",
        "--oidc-cli-client-id",
        "rolegate-cli",
        "--oidc-cli-scope",
        "rolegate",
    ]);

    // The server tells clients how to sign in.
    let conf = s.call("GET", "/.well-known/rolegate-configuration", None, None);
    assert_eq!(conf.status, 200, "{}", conf.text);
    assert_eq!(conf.json["issuer"], provider.issuer.as_str());
    assert_eq!(conf.json["cli_client_id"], "rolegate-cli");
    assert_eq!(conf.json["device_authorization"], true);
    assert_eq!(conf.json["development"], false);
    let scopes: Vec<&str> = conf.json["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        scopes,
        ["openid", "profile", "email", "offline_access", "rolegate"]
    );

    let term = Terminal::new();
    // Development sign-in does not exist here.
    let secret = dir.join("secret");
    std::fs::write(&secret, "whatever-secret-0123456789").expect("secret");
    let r = term.run(&[
        "login",
        "--server",
        &s.origin,
        "--dev-user",
        "alice-cli",
        "--secret-file",
        secret.to_str().expect("path"),
    ]);
    r.expect_code(2, "dev login on a production server");

    // The device code: the CLI prints where to go; the person signs in there with MFA.
    let (child, lines) = start(&term, &["login", "--server", &s.origin], &[]);
    let url = line_where(&lines, |l| l.strip_prefix("or open ").map(str::to_string));
    assert!(url.starts_with(&provider.issuer), "{url}");
    play(&python, &["device", &url, "alice-cli", "--mfa"]);
    finish(child).expect_code(0, "login with a device code");
    let me = term.run(&["whoami", "-o", "json"]);
    me.expect_code(0, "whoami");
    assert_eq!(me.json()["id"], alice.as_str());
    assert_eq!(
        me.json()["mfa"],
        true,
        "the access token carries the sign-in's amr"
    );
    let roles = term.run(&["roles", "-o", "json"]);
    roles.expect_code(0, "roles");
    assert_eq!(roles.json()[0]["subjectId"], alice.as_str());

    // The access token lives 5 s: the next command refreshes it (and the rotated refresh
    // token is kept).
    let first = credential(&term);
    assert!(first["refresh_token"].is_string(), "{first}");
    std::thread::sleep(Duration::from_secs(6));
    term.run(&["roles"]).expect_code(0, "roles after expiry");
    let second = credential(&term);
    assert_ne!(first["access_token"], second["access_token"]);
    assert_ne!(first["refresh_token"], second["refresh_token"]);
    term.run(&["whoami"]).expect_code(0, "whoami after refresh");

    // A refresh the issuer refuses: exit 5, saying to sign in again.
    let path = term.home.join("rolegate/credentials.json");
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    doc["profiles"]["default"]["expires_at"] = json!(0);
    doc["profiles"]["default"]["refresh_token"] = json!("not-a-refresh-token");
    std::fs::write(&path, doc.to_string()).expect("write");
    let r = term.run(&["whoami"]);
    r.expect_code(5, "refused refresh");
    assert!(r.stderr.contains("rolegate login"), "{}", r.stderr);

    // Logout.
    term.run(&["logout"]).expect_code(0, "logout");
    term.run(&["whoami"]).expect_code(5, "after logout");

    // The person aborts at the provider: exit 5.
    let (child, lines) = start(&term, &["login", "--server", &s.origin], &[]);
    let url = line_where(&lines, |l| l.strip_prefix("or open ").map(str::to_string));
    play(&python, &["device", &url, "alice-cli", "--abort"]);
    let r = finish(child);
    r.expect_code(5, "login aborted at the provider");

    // The browser flow: PKCE and a loopback redirect on a free port (no browser opens here:
    // BROWSER names a program that does nothing; the test's Chromium plays the browser).
    let (child, lines) = start(
        &term,
        &["login", "--server", &s.origin, "--browser"],
        &[("BROWSER", "true")],
    );
    let issuer = provider.issuer.clone();
    let url = line_where(&lines, |l| l.starts_with(&issuer).then(|| l.to_string()));
    assert!(
        url.contains("code_challenge_method=S256")
            && url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{url}"
    );
    play(&python, &["browser", &url, "alice-cli"]);
    finish(child).expect_code(0, "login with the browser");
    let me = term.run(&["whoami", "-o", "json"]);
    assert_eq!(me.json()["id"], alice.as_str());
    assert_eq!(me.json()["mfa"], false);
    drop(provider);
}
