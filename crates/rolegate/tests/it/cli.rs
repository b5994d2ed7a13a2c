//! The command line (cli.md) as a person runs it: the built binary as a subprocess against a
//! running server, with its own `XDG_CONFIG_HOME`; every command's table, `-o json` (parsed
//! and compared with the API), exit code, the credentials file's mode, and each command's
//! effect seen through the API.

#![allow(clippy::expect_used)]

use crate::fixture::{CONTRIBUTOR, READER, Tenant, create_user, enc, lasting};
use crate::harness::{ADMIN, SECRET, Server, binary, uuid_like, wait_until};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One person's terminal: a config folder of their own, and the server they talk to.
pub struct Terminal {
    /// `XDG_CONFIG_HOME`.
    pub home: PathBuf,
    /// Extra environment for every command.
    pub env: Vec<(String, String)>,
}

/// What a command printed and how it exited.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    /// Asserts the exit code, showing the output otherwise.
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "{what}: exit {} (wanted {code})\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{what} panicked: {}",
            self.stderr
        );
        self
    }
}

impl Terminal {
    pub fn new() -> Terminal {
        let home = std::env::temp_dir().join(format!("rolegate-cli-{}", uuid_like()));
        std::fs::create_dir_all(&home).expect("home");
        Terminal {
            home,
            env: Vec::new(),
        }
    }

    /// The command, with this terminal's environment (and none of the caller's Rolegate
    /// variables).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env("XDG_CONFIG_HOME", &self.home)
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .env("ROLEGATE_WAIT_POLL_MS", "100");
        for v in [
            "ROLEGATE_SERVER",
            "ROLEGATE_PROFILE",
            "ROLEGATE_TOKEN",
            "ROLEGATE_CA_FILE",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
        ] {
            cmd.env_remove(v);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `rolegate ARGS` with `stdin` and waits for it.
    pub fn run_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Ran {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rolegate");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        finish(child)
    }

    /// Runs `rolegate ARGS` with empty input.
    pub fn run(&self, args: &[&str]) -> Ran {
        self.run_with(args, "", &[])
    }

    /// Signs in as `subject` on a development server.
    pub fn dev_login(&self, server: &str, profile: &str, subject: &str) {
        let secret = self.home.join("dev-secret");
        std::fs::write(&secret, SECRET).expect("secret");
        self.run(&[
            "login",
            "--server",
            server,
            "--profile",
            profile,
            "--dev-user",
            subject,
            "--mfa",
            "--secret-file",
            secret.to_str().expect("path"),
        ])
        .expect_code(0, "dev login");
    }

    fn credentials(&self) -> PathBuf {
        self.home.join("rolegate/credentials.json")
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Waits for a started command (at most two minutes), reading its output meanwhile.
pub fn finish(mut child: Child) -> Ran {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => break,
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                break;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let status = child.wait().expect("wait");
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|x| x["id"].as_str().expect("id").to_string())
        .collect();
    v.sort();
    v
}

fn user_name(s: &Server, admin: &str, id: &str) -> String {
    let r = s.call("GET", &format!("/scim/v2/Users/{id}"), Some(admin), None);
    r.json["userName"].as_str().expect("userName").to_string()
}

/// The caller's assignments on `resource` as the API lists them.
fn api_assignments(s: &Server, token: &str, resource: &str, filter: &str) -> Vec<Value> {
    let r = s.get(
        &s.pim(&format!(
            "/resources/{resource}/roleAssignments?$filter={}",
            enc(filter)
        )),
        token,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["value"].as_array().cloned().unwrap_or_default()
}

#[test]
fn an_engineer_signs_in_and_activates_a_role_from_the_command_line() {
    let t = Tenant::start();
    let (alice, alice_token) = t.user("Alice Cli");
    let contributor = t.role(&t.sub, CONTRIBUTOR);
    // Ending within 14 days, so that it may be extended.
    t.admin_add(&t.sub, &contributor, &alice, "Eligible", lasting("P10D"));
    let term = Terminal::new();
    let origin = t.s.origin.clone();

    // Not signed in yet: exit 5, saying what to do.
    let r = term.run(&["roles", "--server", &origin]);
    r.expect_code(5, "roles before login");
    assert!(r.stderr.contains("rolegate login"), "{}", r.stderr);

    // The server says how to sign in.
    let conf =
        t.s.call("GET", "/.well-known/rolegate-configuration", None, None);
    assert_eq!(conf.status, 200, "{}", conf.text);
    assert_eq!(conf.json["development"], true);
    assert_eq!(conf.json["issuer"], Value::Null);

    // Development sign-in saves the server in the default profile, tokens in a 0600 file.
    term.dev_login(&origin, "default", &alice);
    let config = std::fs::read_to_string(term.home.join("rolegate/config.toml")).expect("config");
    assert!(config.contains("default_profile = \"default\""), "{config}");
    assert!(config.contains(&origin), "{config}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(term.credentials())
            .expect("credentials")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "credentials mode {mode:o}");
    }

    let me = term.run(&["whoami", "-o", "json"]);
    me.expect_code(0, "whoami");
    assert_eq!(me.json()["id"], alice.as_str());
    assert_eq!(me.json()["mfa"], true);
    assert_eq!(me.json()["server"], origin.as_str());
    let me = term.run(&["whoami"]);
    assert!(
        me.stdout.contains("Alice Cli") && me.stdout.contains("MFA"),
        "{}",
        me.stdout
    );

    // My roles: the table, and the JSON equal to the API's list.
    let roles = term.run(&["roles"]);
    roles.expect_code(0, "roles");
    let header = roles.stdout.lines().next().unwrap_or_default().to_string();
    for col in ["ROLE", "SCOPE", "STATE", "MEMBERSHIP", "STARTS", "ENDS"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(roles.stdout.contains("Contributor") && roles.stdout.contains("Eligible"));
    let json = term.run(&["roles", "-o", "json"]).json();
    let api = api_assignments(
        &t.s,
        &alice_token,
        &t.sub,
        &format!("subjectId eq '{alice}'"),
    );
    assert_eq!(ids(&json), ids(&Value::Array(api)));
    let csv = term.run(&["roles", "-o", "csv"]);
    assert!(
        csv.stdout
            .starts_with("ROLE,SCOPE,STATE,MEMBERSHIP,STARTS,ENDS,ID,SCOPE ID\r\n"),
        "{}",
        csv.stdout
    );

    // The default policy wants a reason: without a terminal, exit 2 and nothing written.
    let r = term.run(&[
        "activate",
        "contributor",
        "--scope",
        "rg-app",
        "--for",
        "1h",
    ]);
    r.expect_code(2, "activate without a reason");
    assert!(r.stderr.contains("--reason"), "{}", r.stderr);
    assert!(api_assignments(&t.s, &t.admin, &t.rg, "assignmentState eq 'Active'").is_empty());

    // Activation by role display name (any case) and the resource group's display name.
    let r = term.run(&[
        "activate",
        "CONTRIBUTOR",
        "--scope",
        "rg-app",
        "--for",
        "1h30m",
        "--reason",
        "deploy hotfix",
        "-o",
        "json",
    ]);
    r.expect_code(0, "activate");
    let request = r.json();
    assert_eq!(request["status"]["subStatus"], "Provisioned", "{request}");
    assert_eq!(request["type"], "UserAdd");
    assert_eq!(request["resourceId"], t.rg.as_str());
    assert_eq!(request["schedule"]["duration"], "PT1H30M");
    let active = api_assignments(
        &t.s,
        &t.admin,
        &t.rg,
        &format!("subjectId eq '{alice}' and assignmentState eq 'Active'"),
    );
    assert_eq!(active.len(), 1, "{active:?}");
    // The same by ARM id: already active → the API's error, one line, with its request id.
    let rg_arm = format!("{}/resourceGroups/rg-app", t.sub_arm);
    let r = term.run(&[
        "activate",
        "Contributor",
        "--scope",
        &rg_arm,
        "--reason",
        "again",
    ]);
    r.expect_code(1, "activate twice");
    assert!(
        r.stderr.starts_with("error: RoleAssignmentExists: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("\nrequest-id: "), "{}", r.stderr);
    // Listed as active, and my requests show it.
    let active_roles = term.run(&["roles", "--active"]);
    assert!(
        active_roles.stdout.contains("Active") && !active_roles.stdout.contains("Eligible"),
        "{}",
        active_roles.stdout
    );
    let reqs = term.run(&["requests", "-o", "json"]).json();
    assert_eq!(reqs[0]["id"], request["id"], "newest first: {reqs}");

    // Deactivation ends it.
    let r = term.run(&["deactivate", "contributor", "--scope", "rg-app"]);
    r.expect_code(0, "deactivate");
    assert!(
        r.stdout
            .starts_with("Contributor on rg-app: removed (request "),
        "{}",
        r.stdout
    );
    assert!(
        api_assignments(
            &t.s,
            &t.admin,
            &t.rg,
            &format!("subjectId eq '{alice}' and assignmentState eq 'Active'")
        )
        .is_empty()
    );
    term.run(&["deactivate", "contributor", "--scope", "rg-app"])
        .expect_code(2, "deactivate what is not active");

    // The policy denies an activation without MFA: exit 3, saying how to get it.
    let no_mfa = crate::harness::token(&alice, false);
    let r = term.run_with(
        &[
            "activate",
            "Contributor",
            "--scope",
            "rg-app",
            "--reason",
            "x",
        ],
        "",
        &[("ROLEGATE_TOKEN", &no_mfa)],
    );
    r.expect_code(3, "activation without MFA");
    assert!(
        r.stderr
            .starts_with("error: RoleAssignmentRequestPolicyValidationFailed: MfaRule")
            && r.stderr.contains("sign in again with MFA"),
        "{}",
        r.stderr
    );

    // Unknown names are bad usage.
    term.run(&["activate", "Nope", "--scope", "rg-app", "--reason", "x"])
        .expect_code(2, "unknown role");
    term.run(&[
        "activate",
        "Contributor",
        "--scope",
        "nowhere",
        "--reason",
        "x",
    ])
    .expect_code(2, "unknown scope");
    term.run(&[
        "activate",
        "Contributor",
        "--scope",
        "rg-app",
        "--for",
        "2 hours",
    ])
    .expect_code(2, "bad duration");

    // Extend: a UserExtend waiting for an administrator.
    let r = term.run(&[
        "extend",
        "Contributor",
        "--scope",
        "rg-app",
        "--for",
        "60d",
        "--reason",
        "longer",
        "-o",
        "json",
    ]);
    r.expect_code(0, "extend");
    assert_eq!(r.json()["type"], "UserExtend");
    assert_eq!(r.json()["status"]["subStatus"], "PendingAdminDecision");
    let pending = term.run(&["requests", "--pending", "-o", "json"]).json();
    assert_eq!(
        ids(&pending),
        vec![r.json()["id"].as_str().expect("id").to_string()]
    );

    // A credentials file others may read is refused, saying how to fix it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(term.credentials(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let r = term.run(&["whoami"]);
        r.expect_code(5, "readable credentials");
        assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
        std::fs::set_permissions(term.credentials(), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }

    // Tokens are never sent to another server than the one they were saved for.
    let other = Server::start();
    term.run(&["whoami", "--server", &other.origin])
        .expect_code(5, "another server");
    // ROLEGATE_TOKEN is used as is, never stored.
    let r = term.run_with(
        &["whoami", "--server", &other.origin, "-o", "json"],
        "",
        &[("ROLEGATE_TOKEN", &crate::harness::token(ADMIN, true))],
    );
    r.expect_code(0, "ROLEGATE_TOKEN");
    assert_eq!(r.json()["isTenantAdministrator"], true);

    // --token-stdin stores a token for a profile.
    let r = term.run_with(
        &[
            "login",
            "--server",
            &other.origin,
            "--profile",
            "other",
            "--token-stdin",
        ],
        &crate::harness::token(ADMIN, false),
        &[],
    );
    r.expect_code(0, "token-stdin");
    let r = term.run(&["whoami", "--profile", "other", "-o", "json"]);
    r.expect_code(0, "whoami other");
    assert_eq!(r.json()["mfa"], false);
    term.run(&["whoami", "--profile", "nosuch"])
        .expect_code(2, "unknown profile");

    // Logout forgets the tokens.
    term.run(&["logout"]).expect_code(0, "logout");
    term.run(&["whoami"]).expect_code(5, "after logout");
    term.run(&["whoami", "--profile", "other"])
        .expect_code(0, "the other profile stays");
}

#[test]
fn activate_wait_ends_with_approval_denial_timeout_or_cancellation() {
    let t = Tenant::start();
    let (alice, _) = t.user("Alice Waits");
    let (bob, bob_token) = t.user("Bob Approves");
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P30D"));
    t.set_rule(
        &role,
        "userMemberSettings",
        "ApprovalRule",
        json!({"Enabled": true, "Approvers": [{"Id": bob, "Type": "User"}]}),
    );
    let term = Terminal::new();
    term.dev_login(&t.s.origin, "alice", &alice);
    term.dev_login(&t.s.origin, "bob", &bob);
    let activate = |extra: &[&str]| -> Child {
        let mut args = vec![
            "--profile",
            "alice",
            "activate",
            "Contributor",
            "--scope",
            &t.sub_arm,
            "--for",
            "1h",
            "--reason",
            "needs approval",
            "--wait",
        ];
        args.extend_from_slice(extra);
        term.command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let pending_id = || -> Option<String> {
        let r = t.s.get(
            &t.s.pim(&format!(
                "/roleAssignmentRequests?$filter={}",
                enc(&format!(
                    "subjectId eq '{alice}' and status/subStatus eq 'PendingApproval'"
                ))
            )),
            &bob_token,
        );
        r.json["value"][0]["id"].as_str().map(str::to_string)
    };
    let wait_pending = || -> String {
        let mut id = None;
        wait_until(30, "the request is pending", || {
            id = pending_id();
            id.is_some()
        });
        id.expect("pending")
    };

    // Approved while waiting: exit 0; with -o json the one object printed is the request as
    // it ended.
    let child = activate(&["--timeout", "60s", "-o", "json"]);
    let id = wait_pending();
    let approvals = term.run(&["--profile", "bob", "approvals", "-o", "json"]);
    approvals.expect_code(0, "approvals");
    assert_eq!(ids(&approvals.json()), vec![id.clone()]);
    let table = term.run(&["--profile", "bob", "approvals"]);
    for col in [
        "REQUESTER",
        "ROLE",
        "SCOPE",
        "FOR",
        "REASON",
        "TICKET",
        "APPROVALS",
        "AGE",
    ] {
        assert!(table.stdout.contains(col), "{}", table.stdout);
    }
    assert!(
        table.stdout.contains("0/1") && table.stdout.contains("needs approval"),
        "{}",
        table.stdout
    );
    // Nobody approves their own request (403 → exit 6).
    term.run(&["--profile", "alice", "approve", &id, "--reason", "me"])
        .expect_code(6, "self-approval");
    term.run(&[
        "--profile",
        "bob",
        "approve",
        &id,
        "--reason",
        "looks right",
    ])
    .expect_code(0, "approve");
    let ran = finish(child);
    ran.expect_code(0, "activate --wait through approval");
    assert_eq!(
        ran.json()["status"]["subStatus"],
        "Provisioned",
        "{}",
        ran.stdout
    );
    let shown = term.run(&["--profile", "alice", "request", "show", &id]);
    shown.expect_code(0, "request show");
    assert!(
        shown.stdout.contains("Provisioned")
            && shown.stdout.contains("1 of 1")
            && shown.stdout.contains("looks right"),
        "{}",
        shown.stdout
    );
    let shown = term
        .run(&["--profile", "alice", "request", "show", &id, "-o", "json"])
        .json();
    assert_eq!(
        shown["approvals"][0]["decision"], "AdminApproved",
        "{shown}"
    );
    term.run(&[
        "--profile",
        "alice",
        "deactivate",
        "Contributor",
        "--scope",
        &t.sub_arm,
    ])
    .expect_code(0, "deactivate");

    // Denied while waiting: exit 3.
    let child = activate(&["--timeout", "60s"]);
    let id = wait_pending();
    term.run(&["--profile", "bob", "deny", &id, "--reason", "not today"])
        .expect_code(0, "deny");
    let ran = finish(child);
    ran.expect_code(3, "activate --wait through denial");
    assert!(ran.stderr.contains("denied"), "{}", ran.stderr);

    // Nobody decides within --timeout: exit 4, the request stays pending; then cancelled.
    let ran = finish(activate(&["--timeout", "1s"]));
    ran.expect_code(4, "activate --wait timing out");
    let id = pending_id().expect("still pending");
    term.run(&["--profile", "alice", "request", "cancel", &id])
        .expect_code(0, "cancel");
    assert_eq!(t.get_request(&id)["status"]["subStatus"], "Canceled");

    // Cancelled (elsewhere) while waiting: exit 4.
    let child = activate(&["--timeout", "60s"]);
    let id = wait_pending();
    let r = t.s.post(
        &t.s.pim(&format!("/roleAssignmentRequests/{id}/cancel")),
        &t.admin,
        &json!({}),
    );
    assert!(r.status < 300, "{}", r.text);
    finish(child).expect_code(4, "activate --wait through cancellation");
}

#[test]
fn administrators_work_from_the_command_line() {
    let t = Tenant::start();
    let carol = create_user(&t.s, &t.admin, "Carol Cli");
    let carol_name = user_name(&t.s, &t.admin, &carol);
    let term = Terminal::new();
    term.dev_login(&t.s.origin, "default", ADMIN);

    // Resources: the API's list, and the tree.
    let r = term.run(&["resources", "-o", "json"]);
    r.expect_code(0, "resources");
    assert!(ids(&r.json()).contains(&t.rg), "{}", r.stdout);
    let tree = term.run(&["resources", "--tree"]).stdout;
    let sub_line = tree
        .lines()
        .position(|l| l.contains(&t.sub_arm) && !l.contains("rg-app"))
        .expect("sub listed");
    let rg_line = tree
        .lines()
        .position(|l| l.starts_with("  rg-app"))
        .expect("rg indented");
    assert!(rg_line > sub_line, "{tree}");

    // Register.
    let arm = format!("{}/resourceGroups/rg-cli", t.sub_arm);
    term.run(&["register", &arm, "--display-name", "CLI group"])
        .expect_code(0, "register");
    let rid = crate::fixture::resource_id(&t.s, &t.admin, &arm);
    term.run(&["register", "not-an-arm-id"])
        .expect_code(1, "bad ARM id");

    // Assign by userName, list, export.
    let r = term.run(&[
        "assign",
        &carol_name,
        "reader",
        "--scope",
        "CLI group",
        "--for",
        "30d",
        "--reason",
        "audit",
    ]);
    r.expect_code(0, "assign");
    let eligible = api_assignments(&t.s, &t.admin, &rid, &format!("subjectId eq '{carol}'"));
    assert_eq!(eligible.len(), 1, "{eligible:?}");
    assert_eq!(eligible[0]["assignmentState"], "Eligible");
    let listed = term.run(&["assignments", "--scope", &arm, "-o", "json"]);
    let api_all = api_assignments(
        &t.s,
        &t.admin,
        &rid,
        "assignmentState eq 'Eligible' or assignmentState eq 'Active'",
    );
    assert_eq!(ids(&listed.json()), ids(&Value::Array(api_all)));
    let table = term.run(&[
        "assignments",
        "--scope",
        &arm,
        "--role",
        "Reader",
        "--member",
        &carol_name,
    ]);
    assert!(
        table.stdout.contains(&carol_name) && table.stdout.contains("Reader"),
        "{}",
        table.stdout
    );
    let export = term.run(&["assignments", "--scope", &rid, "--export"]);
    export.expect_code(0, "export");
    let api_export = t.s.call(
        "GET",
        &t.s.pim(&format!("/resources/{rid}/roleAssignments/export()")),
        Some(&t.admin),
        None,
    );
    assert_eq!(export.stdout, api_export.text);

    // Two resources with one display name: the name is ambiguous (exit 2, both listed).
    let dup1 = format!("{}/resourceGroups/dup-a", t.sub_arm);
    let dup2 = format!("{}/resourceGroups/dup-b", t.sub_arm);
    term.run(&["register", &dup1, "--display-name", "Twin"])
        .expect_code(0, "register twin");
    term.run(&["register", &dup2, "--display-name", "Twin"])
        .expect_code(0, "register twin");
    let r = term.run(&["assignments", "--scope", "twin"]);
    r.expect_code(2, "ambiguous scope");
    assert!(
        r.stderr.contains(&dup1) && r.stderr.contains(&dup2),
        "{}",
        r.stderr
    );

    // Settings: only what the flags name changes.
    let reader = t.role(&rid, READER);
    let setting_of = || {
        let r = t.s.get(
            &t.s.pim(&format!(
                "/resources/{rid}/roleSettings?$filter={}",
                enc(&format!("roleDefinitionId eq '{reader}'"))
            )),
            &t.admin,
        );
        r.json["value"][0].clone()
    };
    let rule = |s: &Value, id: &str| -> Value {
        let r = s["userMemberSettings"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["ruleIdentifier"] == id)
            .cloned()
            .expect("rule");
        serde_json::from_str(r["setting"].as_str().expect("setting")).expect("json")
    };
    let before = setting_of();
    let r = term.run(&[
        "settings",
        "set",
        "Reader",
        "--scope",
        &arm,
        "--max-activation",
        "2h",
        "--require-ticket",
        "true",
        "--approver",
        &carol_name,
        "--required-approvals",
        "1",
    ]);
    r.expect_code(0, "settings set");
    assert!(
        r.stdout.contains("Max activation") && r.stdout.contains("2h"),
        "{}",
        r.stdout
    );
    let after = setting_of();
    assert_eq!(
        rule(&after, "ExpirationRule")["maximumGrantPeriodInMinutes"],
        120
    );
    assert_eq!(rule(&after, "TicketingRule")["ticketingRequired"], true);
    assert_eq!(
        rule(&after, "ApprovalRule")["Approvers"][0]["Id"],
        carol.as_str()
    );
    assert_eq!(
        rule(&after, "ApprovalRule")["Enabled"],
        false,
        "approval itself not named"
    );
    assert_eq!(rule(&after, "MfaRule"), rule(&before, "MfaRule"));
    assert_eq!(
        rule(&after, "JustificationRule"),
        rule(&before, "JustificationRule")
    );
    assert_eq!(
        after["adminEligibleSettings"],
        before["adminEligibleSettings"]
    );
    let shown = term
        .run(&["settings", "show", "reader", "--scope", &arm, "-o", "json"])
        .json();
    assert_eq!(shown["id"], after["id"]);
    term.run(&["settings", "set", "Reader", "--scope", &arm])
        .expect_code(2, "nothing to set");

    // Unassign.
    term.run(&["unassign", &carol, "Reader", "--scope", &arm])
        .expect_code(0, "unassign");
    assert!(api_assignments(&t.s, &t.admin, &rid, &format!("subjectId eq '{carol}'")).is_empty());

    // The audit log through the API.
    let audit = term.run(&["audit", "list", "--since", "1h", "-o", "json"]);
    audit.expect_code(0, "audit list");
    let audit = audit.json();
    let activities: Vec<&str> = audit
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["activityDisplayName"].as_str())
        .collect();
    assert!(activities.contains(&"Register resource"), "{activities:?}");
    let filtered = term
        .run(&[
            "audit",
            "list",
            "--since",
            "1h",
            "--activity",
            "Register resource",
            "-o",
            "json",
        ])
        .json();
    assert!(
        filtered
            .as_array()
            .expect("list")
            .iter()
            .all(|r| r["activityDisplayName"] == "Register resource")
    );

    // A user without rights: 403 → exit 6.
    let (dan, _) = t.user("Dan Cli");
    let other = Terminal::new();
    other.dev_login(&t.s.origin, "default", &dan);
    other
        .run(&["register", &format!("{}/resourceGroups/rg-x", t.sub_arm)])
        .expect_code(6, "forbidden register");
    other.run(&["roles"]).expect_code(0, "no roles");

    // Completion scripts.
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let r = other.run(&["completion", shell]);
        r.expect_code(0, shell);
        assert!(r.stdout.contains("activate"), "{shell}");
    }
    // Every command's help shows an example.
    for cmd in [
        vec!["login"],
        vec!["logout"],
        vec!["whoami"],
        vec!["roles"],
        vec!["activate"],
        vec!["deactivate"],
        vec!["extend"],
        vec!["renew"],
        vec!["requests"],
        vec!["request", "show"],
        vec!["request", "cancel"],
        vec!["approvals"],
        vec!["approve"],
        vec!["deny"],
        vec!["resources"],
        vec!["register"],
        vec!["assignments"],
        vec!["assign"],
        vec!["unassign"],
        vec!["settings", "show"],
        vec!["settings", "set"],
        vec!["audit", "list"],
        vec!["completion"],
        vec!["check"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let r = other.run(&args);
        r.expect_code(0, &format!("{cmd:?} --help"));
        assert!(
            r.stdout.contains("Example"),
            "{cmd:?} --help shows no example:\n{}",
            r.stdout
        );
    }
}

/// A socket that answers every request with `answer`.
fn fake_server(answer: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    origin
}

#[test]
fn a_failing_or_garbled_server_gives_exit_1_and_a_clear_line() {
    let term = Terminal::new();
    let token = crate::harness::token(ADMIN, true);
    let env = [("ROLEGATE_TOKEN", token.as_str())];
    let failing = fake_server(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops",
    );
    let r = term.run_with(&["roles", "--server", &failing], "", &env);
    r.expect_code(1, "5xx");
    assert!(
        r.stderr.starts_with("error: ") && r.stderr.lines().count() == 1,
        "{}",
        r.stderr
    );
    let garbled =
        fake_server("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot json!");
    let r = term.run_with(&["resources", "--server", &garbled], "", &env);
    r.expect_code(1, "garbage");
    assert!(r.stderr.contains("not JSON"), "{}", r.stderr);
    let nonsense = fake_server("this is not HTTP at all\r\n\r\n");
    term.run_with(&["whoami", "--server", &nonsense], "", &env)
        .expect_code(1, "not HTTP");
    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    term.run_with(&["whoami", "--server", &closed], "", &env)
        .expect_code(1, "connection refused");
    // Plain http to a host that is not loopback is refused before anything is sent.
    let r = term.run_with(&["whoami", "--server", "http://pim.example.com"], "", &env);
    r.expect_code(2, "http to a remote host");
    assert!(r.stderr.contains("https"), "{}", r.stderr);
}

mod arguments {
    use super::Terminal;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "login",
        "logout",
        "whoami",
        "roles",
        "activate",
        "deactivate",
        "extend",
        "renew",
        "requests",
        "request",
        "show",
        "cancel",
        "approvals",
        "approve",
        "deny",
        "resources",
        "register",
        "assignments",
        "assign",
        "unassign",
        "settings",
        "set",
        "audit",
        "list",
        "completion",
        "--scope",
        "--for",
        "--start",
        "--until",
        "--reason",
        "--wait",
        "--timeout",
        "-o",
        "json",
        "csv",
        "wide",
        "--utc",
        "--server",
        "--profile",
        "--ca-file",
        "--member",
        "--role",
        "--state",
        "--tree",
        "--type",
        "--search",
        "--max-activation",
        "--require-mfa",
        "true",
        "--approver",
        "--since",
        "--dev-user",
        "--secret-file",
        "--token-stdin",
        "--browser",
        "Contributor",
        "rg-web",
        "2h",
        "PT2H",
        "0m",
        "-1h",
        "99999999999999999999d",
        "",
        "'",
        "\"",
        "%",
        "/subscriptions/x",
        "http://127.0.0.1:9",
        "https://[::1]:1",
        "ftp://x",
        "é",
        "\u{0}",
        "--",
        "-",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Whatever the arguments, the client exits with one of cli.md's codes (or clap's
        /// usage code 2), without a panic or a backtrace.
        #[test]
        fn no_arguments_make_the_client_panic(
            words in proptest::collection::vec(proptest::sample::select(WORDS), 0..6),
            junk in "[ -~]{0,12}",
        ) {
            let term = Terminal::new();
            let mut args: Vec<String> = words.iter().map(|w| w.replace('\u{0}', "")).collect();
            args.push(junk);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = term.run_with(&args, "", &[("ROLEGATE_SERVER", "http://127.0.0.1:9")]);
            prop_assert!((0..=6).contains(&r.code), "exit {} for {:?}: {}", r.code, args, r.stderr);
            prop_assert!(!r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"), "{:?}: {}", args, r.stderr);
        }
    }
}

#[test]
fn profiles_and_precedence_follow_the_contract() {
    let a = Server::start();
    let b = Server::start();
    let term = Terminal::new();
    term.dev_login(&a.origin, "a", ADMIN);
    term.dev_login(&b.origin, "b", ADMIN);
    let server_of = |args: &[&str], env: &[(&str, &str)]| -> String {
        let mut all = vec!["whoami", "-o", "json"];
        all.extend_from_slice(args);
        let r = term.run_with(&all, "", env);
        r.expect_code(0, &format!("whoami {args:?} {env:?}"));
        r.json()["server"].as_str().expect("server").to_string()
    };
    // The first login made `a` the default profile.
    assert_eq!(server_of(&[], &[]), a.origin);
    assert_eq!(server_of(&["--profile", "b"], &[]), b.origin);
    assert_eq!(server_of(&[], &[("ROLEGATE_PROFILE", "b")]), b.origin);
    // A flag beats the environment.
    assert_eq!(
        server_of(&["--profile", "a"], &[("ROLEGATE_PROFILE", "b")]),
        a.origin
    );
    // A profile named by the environment that does not exist is bad usage.
    term.run_with(&["whoami"], "", &[("ROLEGATE_PROFILE", "nosuch")])
        .expect_code(2, "a missing profile named by ROLEGATE_PROFILE");
    // `login --server` without a profile signs in the profile `default`, never re-pointing
    // the default profile (`a` here).
    let secret = term.home.join("dev-secret");
    term.run(&[
        "login",
        "--server",
        &b.origin,
        "--dev-user",
        ADMIN,
        "--secret-file",
        secret.to_str().expect("path"),
    ])
    .expect_code(0, "login --server");
    let config = std::fs::read_to_string(term.home.join("rolegate/config.toml")).expect("config");
    let parsed: toml_like::Config = toml_like::parse(&config);
    assert_eq!(parsed.server_of("a"), Some(a.origin.clone()), "{config}");
    assert_eq!(
        parsed.server_of("default"),
        Some(b.origin.clone()),
        "{config}"
    );
    assert_eq!(
        server_of(&[], &[]),
        a.origin,
        "the default profile is still a"
    );
    // ROLEGATE_SERVER beats the default profile but its tokens are not sent to it.
    term.run_with(&["whoami"], "", &[("ROLEGATE_SERVER", &b.origin)])
        .expect_code(5, "default profile's tokens are for a");
    assert_eq!(
        server_of(
            &[],
            &[("ROLEGATE_SERVER", &b.origin), ("ROLEGATE_PROFILE", "b")]
        ),
        b.origin
    );
}

#[test]
fn expired_eligibility_is_listed_and_renewed_from_the_command_line() {
    let t = Tenant::start_with(&["--scheduler-interval", "0.2"]);
    let (erin, _) = t.user("Erin Expired");
    let reader = t.role(&t.rg, READER);
    t.admin_add(&t.rg, &reader, &erin, "Eligible", lasting("PT2S"));
    let expired_path = t.s.pim(&format!(
        "/resources/{}/roleAssignments/expired()?$expand=subject",
        t.rg
    ));
    wait_until(30, "the eligibility expired and moved to history", || {
        let r = t.s.get(&expired_path, &t.admin);
        r.status == 200 && r.json["value"][0]["subjectId"] == erin.as_str()
    });
    let expired_id = t.s.get(&expired_path, &t.admin).json["value"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Those who may not read the resource's assignments get 403.
    let (_, other_token) = t.user("Olga Outsider");
    assert_eq!(t.s.get(&expired_path, &other_token).status, 403);

    let term = Terminal::new();
    term.dev_login(&t.s.origin, "default", &erin);
    let mine = term.run(&["roles", "--expired", "-o", "json"]);
    mine.expect_code(0, "roles --expired");
    assert_eq!(ids(&mine.json()), vec![expired_id.clone()]);
    let table = term.run(&["roles", "--expired"]).stdout;
    assert!(
        table.contains("Reader") && table.contains("Expired"),
        "{table}"
    );
    let r = term.run(&[
        "renew",
        "reader",
        "--scope",
        "rg-app",
        "--for",
        "30d",
        "--reason",
        "still auditing",
        "-o",
        "json",
    ]);
    r.expect_code(0, "renew");
    assert_eq!(r.json()["type"], "UserRenew");
    assert_eq!(r.json()["status"]["subStatus"], "PendingAdminDecision");

    let admin = Terminal::new();
    admin.dev_login(&t.s.origin, "default", ADMIN);
    let listed = admin.run(&[
        "assignments",
        "--scope",
        "rg-app",
        "--expired",
        "-o",
        "json",
    ]);
    listed.expect_code(0, "assignments --expired");
    assert_eq!(ids(&listed.json()), vec![expired_id.clone()]);
    let none = admin.run(&[
        "assignments",
        "--scope",
        "rg-app",
        "--expired",
        "--role",
        "Owner",
        "-o",
        "json",
    ]);
    assert_eq!(none.json(), json!([]));
    let table = admin
        .run(&["assignments", "--scope", "rg-app", "--expired"])
        .stdout;
    assert!(
        table.contains("Expired") && table.contains("Reader"),
        "{table}"
    );
}

/// Splits a shell line on spaces, keeping double-quoted words whole.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn the_demo_guide_command_lines_work_as_printed() {
    // The guide is what `serve --demo` prints before it listens.
    let dir = Terminal::new();
    let mut server = Command::new(binary())
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--database"])
        .arg(format!("sqlite://{}", dir.home.join("demo.db").display()))
        .env("RUST_LOG", "warn")
        .env_remove("ROLEGATE_AUTH_HS256_SECRET")
        .env_remove("ROLEGATE_OIDC_ISSUER")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve --demo");
    struct Stop(Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = server.stdout.take().expect("stdout");
    let _stop = Stop(server);
    let mut guide = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.expect("line");
        if line.starts_with("rolegate listening on ") {
            break;
        }
        guide.push_str(&line);
        guide.push('\n');
    }
    let lines: Vec<&str> = guide
        .lines()
        .skip_while(|l| !l.starts_with("From the command line"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(lines.len() >= 5, "{guide}");
    let term = Terminal::new();
    let mut last = None;
    for line in lines {
        let w = words(line.trim());
        match w.first().map(String::as_str) {
            Some("echo") => {
                std::fs::write(term.home.join(&w[3]), &w[1]).expect("secret file");
            }
            Some("rolegate") => {
                let args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
                let mut cmd = term.command(&args);
                cmd.current_dir(&term.home);
                let mut child = cmd
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn");
                let _ = child.stdin.take();
                let ran = finish(child);
                ran.expect_code(0, line);
                last = Some(ran);
            }
            _ => panic!("unexpected guide line: {line}"),
        }
    }
    // The last line is Bob's approvals: Dave's request waits there.
    let approvals = last.expect("ran").stdout;
    assert!(
        approvals.contains("dave@contoso.example") && approvals.contains("Owner"),
        "{approvals}"
    );
}

#[test]
fn check_asks_the_decision_point_and_exits_with_the_decision() {
    let t = Tenant::start();
    let (alice, _) = t.user("Alice Check");
    let (bob, _) = t.user("Bob Check");
    let role = t.role(&t.sub, CONTRIBUTOR);
    t.admin_add(&t.sub, &role, &alice, "Eligible", lasting("P30D"));
    let term = Terminal::new();
    term.dev_login(&t.s.origin, "default", &alice);
    let start_vm = "Microsoft.Compute/virtualMachines/start/action";
    let vm = format!(
        "{}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm-01",
        t.sub_arm
    );
    let r = term.run(&[
        "check",
        "--member",
        &alice,
        "--action",
        start_vm,
        "--resource",
        &vm,
    ]);
    r.expect_code(3, "denied while only eligible");
    assert!(r.stdout.starts_with("DENIED"), "{}", r.stdout);
    assert!(r.stdout.contains("eligible: Contributor"), "{}", r.stdout);
    // The hint is a command that works.
    let hint = r
        .stdout
        .lines()
        .find_map(|l| l.split("(rolegate ").nth(1))
        .map(|h| h.trim_end_matches(')').to_string())
        .expect("an activation hint");
    let mut args = words(&hint);
    args.extend([
        "--reason".to_string(),
        "start the VM".to_string(),
        "--for".to_string(),
        "1h".to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    term.run(&args).expect_code(0, "the hinted activation");
    let r = term.run(&[
        "check",
        "--member",
        &alice,
        "--action",
        start_vm,
        "--resource",
        &vm,
    ]);
    r.expect_code(0, "permitted once active");
    assert!(
        r.stdout.starts_with("PERMITTED") && r.stdout.contains("by Contributor"),
        "{}",
        r.stdout
    );
    let json = term.run(&[
        "check",
        "--member",
        &alice,
        "--role",
        "contributor",
        "--resource",
        "rg-app",
        "-o",
        "json",
    ]);
    json.expect_code(0, "role membership");
    assert_eq!(json.json()["decision"], true);
    // Data actions are not granted by Contributor's `*`.
    term.run(&[
        "check",
        "--member",
        &alice,
        "--data",
        "--action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "--resource",
        &vm,
    ])
    .expect_code(3, "data action");
    // Asking about someone else is not a plain user's to ask.
    term.run(&[
        "check",
        "--member",
        &bob,
        "--action",
        start_vm,
        "--resource",
        &vm,
    ])
    .expect_code(6, "about someone else");
    term.run(&["check", "--member", &alice, "--resource", &vm])
        .expect_code(2, "no action");
}

/// Just enough of config.toml to check which server each profile names.
mod toml_like {
    pub struct Config(Vec<(String, String)>);

    impl Config {
        pub fn server_of(&self, profile: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(p, _)| p == profile)
                .map(|(_, s)| s.clone())
        }
    }

    pub fn parse(text: &str) -> Config {
        let mut out = Vec::new();
        let mut current = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line
                .strip_prefix("[profiles.")
                .and_then(|l| l.strip_suffix(']'))
            {
                current = Some(name.trim_matches('"').to_string());
            } else if let (Some(p), Some(v)) = (&current, line.strip_prefix("server = ")) {
                out.push((p.clone(), v.trim_matches('"').to_string()));
            }
        }
        Config(out)
    }
}
