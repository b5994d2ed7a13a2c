//! The connectors file as an operator writes it (connectors.md §2, §3.1, §5, §11.2): the
//! contract's example loads, every mistake is reported at its line and column with its
//! field, all problems at once, and no message ever carries a secret.

use rolegate_connectors::config::{ConfigProblem, parse};
use rolegate_connectors::kind::KindConfig;
use rolegate_core::provisioning::{OnDrift, PrincipalCase, PrincipalSource};
use std::time::Duration;

const SECRET: &str = "s3cr3t-Pa55word";

fn env() -> [(&'static str, &'static str); 2] {
    [
        ("LDAP_BIND_PASSWORD", SECRET),
        ("VAULT_NAMESPACE", "team-a"),
    ]
}

fn problems(text: &str) -> Vec<ConfigProblem> {
    match parse("c.toml", text, &env()) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(p) => p,
    }
}

/// The one problem of `text`, as printed.
fn only_problem(text: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    p[0].to_string()
}

fn secret_file(content: &str) -> tempfile_path::Path {
    tempfile_path::write(content)
}

/// A file in the temp directory, removed on drop (the crate has no dev-dependencies).
mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);

    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    pub fn write(content: &str) -> Path {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "rolegate-connectors-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        Path(p)
    }
}

#[test]
fn the_contracts_example_loads_as_written() {
    let pw = secret_file(&format!("{SECRET}\n"));
    // The contract names /etc/rolegate/db-ca.pem; the file must exist, as it is read at
    // load: the tests' CA stands in for it.
    let ca = format!(
        "{}/../rolegate/tests/it/tls/ca.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = format!(
        r#"
[connectors.pg_main]
kind = "postgresql"
url = "postgresql://rolegate_provisioner@db1.example.net:5432/postgres?sslmode=verify-full&sslrootcert={}"
password_file = "{}"
principal = ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "userNameLocalPart"]
principal_case = "lower"
reconcile_interval = "60s"
on_drift = "revoke"
ignore_members = ["dba_oncall"]

[[connectors.pg_main.rules]]
role = "Reader"
scope = "/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301/resourceGroups/analytics"
target = "analytics_read"

[[connectors.pg_main.rules]]
role = "b24988ac-6180-42a0-ab88-20f7382dd24c"    # Contributor, by templateId
scope = "/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301"
target = "app_write"

[connectors.corp_ldap]
kind = "ldap"
url = "ldaps://ldap.example.net"
bind_dn = "cn=rolegate,ou=services,dc=example,dc=net"
bind_password = "${{LDAP_BIND_PASSWORD}}"
member_template = "uid={{value}},ou=people,dc=example,dc=net"
placeholder_member = "cn=placeholder,dc=example,dc=net"
principal = ["userNameLocalPart"]

[[connectors.corp_ldap.rules]]
role = "Owner"
scope = "/providers/Microsoft.Management/managementGroups/prod"
target = "cn=prod-admins,ou=groups,dc=example,dc=net"

[connectors.vault]
kind = "exec"
command = ["/bin/sh", "-c", "exit 0"]
timeout = "20s"
env = {{ VAULT_ADDR = "https://vault.example.net:8200", VAULT_TOKEN = {{ file = "{}" }}, VAULT_NAMESPACE = "${{VAULT_NAMESPACE}}" }}
principal = ["externalId"]

[[connectors.vault.rules]]
role = "Contributor"
scope = "/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301/resourceGroups/payments"
target = "database/roles/payments-rw"
"#,
        ca,
        pw.0.display(),
        pw.0.display()
    );
    let config = parse("c.toml", &text, &env()).unwrap_or_else(|p| panic!("{p:#?}"));
    let names: Vec<&str> = config.connectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["pg_main", "corp_ldap", "vault"], "file order");
    let pg = &config.connectors[0];
    assert_eq!(pg.principal_case, PrincipalCase::Lower);
    assert_eq!(pg.principal[1], PrincipalSource::UserNameLocalPart);
    assert_eq!(pg.on_drift, OnDrift::Revoke);
    assert_eq!(pg.reconcile_interval, Duration::from_secs(60));
    assert_eq!(pg.timeout, Duration::from_secs(10));
    assert_eq!(pg.rules[1].role.display_name, "Contributor");
    let lines: Vec<usize> = pg.rules.iter().map(|r| r.line).collect();
    assert_eq!(lines, [12, 17], "each rule's [[…rules]] header");
    match &pg.kind {
        KindConfig::Postgresql(k) => {
            assert_eq!(k.password.as_ref().map(|s| s.expose()), Some(SECRET));
        }
        other => panic!("{other:?}"),
    }
    match &config.connectors[1].kind {
        KindConfig::Ldap(k) => assert_eq!(k.bind_password.expose(), SECRET),
        other => panic!("{other:?}"),
    }
    let vault = &config.connectors[2];
    assert_eq!(vault.timeout, Duration::from_secs(20));
    match &vault.kind {
        KindConfig::Exec(k) => {
            let names: Vec<&str> = k.env.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE"]);
            assert_eq!(k.workdir, "/");
        }
        other => panic!("{other:?}"),
    }
    // What `check` prints carries no secret.
    let shown = format!(
        "{}{}{config:?}",
        rolegate_connectors::check::text(&config),
        rolegate_connectors::check::json(&config)
    );
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("team-a"), "{shown}");
    assert!(
        shown.contains("analytics_read") && shown.contains("acdd72a7-3385-48ef-bd42-f606fba81ae7")
    );
    // An exec environment's values written in the file are shown, secrets are not (§2.3).
    let doc = rolegate_connectors::check::json(&config);
    assert_eq!(
        doc["connectors"][2]["env"],
        serde_json::json!({"VAULT_ADDR": "https://vault.example.net:8200",
                           "VAULT_TOKEN": "(secret)", "VAULT_NAMESPACE": "(secret)"})
    );
    assert!(doc["connectors"][0].get("env").is_none());
    assert!(
        rolegate_connectors::check::text(&config).contains(
            "environment     VAULT_ADDR=https://vault.example.net:8200 VAULT_TOKEN=(secret) VAULT_NAMESPACE=(secret)"
        )
    );
}

#[test]
fn every_problem_is_reported_at_once_at_its_line_and_column() {
    let text = r#"[connectors.pg_main]
kind = "postgresql"
url = "postgresql://prov@127.0.0.1/postgres"
password = "hunter2hunter2"
reconcile_intervall = "60s"

[[connectors.pg_main.rules]]
role = "Redaer"
scope = "/subscriptions/not-a-guid/resourceGroups/x/y"
target = "analytics_read"
"#;
    let p = problems(text);
    let lines: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "c.toml:4:12: connectors.pg_main.password: a secret may not be written in the file; use password_file or \"${NAME}\"",
            "c.toml:5:1: connectors.pg_main.reconcile_intervall: unknown key",
            "c.toml:8:8: connectors.pg_main.rules[0].role: unknown role definition \"Redaer\"; use a displayName such as \"Reader\" or a templateId",
            lines[3].as_str(),
        ]
    );
    assert!(
        lines[3].starts_with("c.toml:9:9: connectors.pg_main.rules[0].scope: not an ARM id"),
        "{}",
        lines[3]
    );
    let all = rolegate_connectors::config::report(&p);
    assert!(all.starts_with("rolegate: invalid connectors configuration (4 problems)\n"));
    assert!(
        !all.contains("hunter2"),
        "never echo a rejected secret: {all}"
    );
}

#[test]
fn syntax_errors_name_the_parsers_position() {
    let line = only_problem("[connectors.pg]\nkind = \"postgresql\n");
    assert!(line.starts_with("c.toml:2:"), "{line}");
    assert!(line.contains(": (syntax): "), "{line}");
}

#[test]
fn a_missing_key_points_at_its_table() {
    let line = only_problem(
        "\n[connectors.pg]\nurl = \"postgresql://p@localhost/db\"\n[[connectors.pg.rules]]\nrole = \"Reader\"\nscope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"r\"\n",
    );
    assert!(line.starts_with("c.toml:2:"), "{line}");
    assert!(line.contains("connectors.pg.kind: is required"), "{line}");
    let line = only_problem(
        "[connectors.pg]\nkind = \"postgresql\"\nurl = \"postgresql://p@localhost/db\"\n",
    );
    assert!(line.contains("connectors.pg.rules: is required"), "{line}");
}

#[test]
fn transport_must_be_verified_for_remote_hosts_unless_insecure() {
    let pg = |url: &str, insecure: bool| {
        format!(
            "[connectors.pg]\nkind = \"postgresql\"\nurl = \"{url}\"\ninsecure = {insecure}\n[[connectors.pg.rules]]\nrole = \"Reader\"\nscope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"r\"\n"
        )
    };
    assert!(
        only_problem(&pg("postgresql://p@db.example.net/db", false))
            .contains("sslmode=verify-full")
    );
    assert!(
        only_problem(&pg(
            "postgresql://p@db.example.net/db?sslmode=require",
            false
        ))
        .contains("sslmode=verify-full")
    );
    for ok in [
        "postgresql://p@db.example.net/db?sslmode=verify-ca",
        "postgresql://p@127.0.0.1:5432/db",
        "postgresql://p@[::1]/db",
        "postgresql:///db?host=/var/run/postgresql",
    ] {
        assert!(parse("c.toml", &pg(ok, false), &env()).is_ok(), "{ok}");
    }
    let insecure = parse(
        "c.toml",
        &pg("postgresql://p@db.example.net/db", true),
        &env(),
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(insecure.warnings.len(), 1, "insecure is warned about");
    assert!(
        only_problem(&pg("postgresql://p:pw@localhost/db", false))
            .contains("may not carry a password")
    );
    let line = only_problem(&pg(
        "postgresql://p@localhost/db?sslpassword=topsecret",
        false,
    ));
    assert!(
        line.contains("url") && !line.contains("topsecret"),
        "{line}"
    );

    let ldap = |url: &str, extra: &str| {
        format!(
            "[connectors.dir]\nkind = \"ldap\"\nurl = \"{url}\"\n{extra}\nbind_dn = \"cn=r,dc=x\"\nbind_password = \"${{LDAP_BIND_PASSWORD}}\"\n[[connectors.dir.rules]]\nrole = \"Owner\"\nscope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"cn=admins,dc=x\"\n"
        )
    };
    assert!(only_problem(&ldap("ldap://ldap.example.net", "")).contains("must use TLS"));
    assert!(
        parse(
            "c.toml",
            &ldap("ldap://ldap.example.net", "starttls = true"),
            &env()
        )
        .is_ok()
    );
    assert!(parse("c.toml", &ldap("ldap://127.0.0.1:3389", ""), &env()).is_ok());
    assert!(
        only_problem(&ldap("ldaps://ldap.example.net", "starttls = true")).contains("StartTLS")
    );
}

#[test]
fn secrets_come_from_set_variables_or_readable_files_only() {
    let with = |secret_lines: &str| {
        format!(
            "[connectors.dir]\nkind = \"ldap\"\nurl = \"ldaps://h\"\nbind_dn = \"cn=r,dc=x\"\n{secret_lines}\n[[connectors.dir.rules]]\nrole = \"Owner\"\nscope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"cn=admins,dc=x\"\n"
        )
    };
    assert!(
        only_problem(&with("bind_password = \"${UNSET_VARIABLE}\""))
            .contains("UNSET_VARIABLE is not set")
    );
    assert!(
        only_problem(&with("bind_password = \"pre${LDAP_BIND_PASSWORD}\""))
            .contains("may not be written in the file")
    );
    assert!(only_problem(&with("")).contains("bind_password: is required"));
    assert!(
        only_problem(&with("bind_password_file = \"/nonexistent/pw\"")).contains("cannot read")
    );
    let empty = secret_file("\n");
    assert!(
        only_problem(&with(&format!(
            "bind_password_file = \"{}\"",
            empty.0.display()
        )))
        .contains("is empty")
    );
    let pw = secret_file("x\r\n");
    let both = format!(
        "bind_password = \"${{LDAP_BIND_PASSWORD}}\"\nbind_password_file = \"{}\"",
        pw.0.display()
    );
    assert!(only_problem(&with(&both)).contains("not both"));
    // A CA file is read at load: one that holds no certificate is refused then.
    let line = only_problem(&with(&format!(
        "bind_password = \"${{LDAP_BIND_PASSWORD}}\"\ntls_ca_file = \"{}\"",
        pw.0.display()
    )));
    assert!(
        line.contains("tls_ca_file: ") && line.contains("holds no PEM certificate"),
        "{line}"
    );
    let c = parse(
        "c.toml",
        &with(&format!("bind_password_file = \"{}\"", pw.0.display())),
        &env(),
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    match &c.connectors[0].kind {
        KindConfig::Ldap(k) => {
            assert_eq!(k.bind_password.expose(), "x", "one trailing CRLF removed")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn targets_names_and_values_are_checked_per_kind() {
    let pg_target = |target: &str| {
        format!(
            "[connectors.pg]\nkind = \"postgresql\"\nurl = \"postgresql://p@localhost/db\"\n[[connectors.pg.rules]]\nrole = \"Reader\"\nscope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"{target}\"\n"
        )
    };
    assert!(only_problem(&pg_target(&"r".repeat(64))).contains("at most 63 bytes"));
    assert!(only_problem(&pg_target("")).contains("must not be empty"));
    assert!(only_problem(&pg_target("a\\u0000b")).contains("NUL"));
    let line = only_problem(
        &pg_target("x")
            .replace("[connectors.pg]", "[connectors.Pg]")
            .replace("connectors.pg.rules", "connectors.Pg.rules"),
    );
    assert!(line.contains("^[a-z][a-z0-9_-]{0,62}$"), "{line}");
    assert!(
        only_problem(&pg_target("x").replace("kind = \"postgresql\"", "kind = \"mysql\""))
            .contains("unknown kind \"mysql\"")
    );
    let line = only_problem(&pg_target("x").replace(
        "[[connectors.pg.rules]]",
        "concurrency = 65\n[[connectors.pg.rules]]",
    ));
    assert!(
        line.contains("concurrency: must be an integer from 1 to 64"),
        "{line}"
    );
    let line = only_problem(&pg_target("x").replace(
        "[[connectors.pg.rules]]",
        "timeout = \"10 minutes\"\n[[connectors.pg.rules]]",
    ));
    assert!(line.contains("timeout: must be a duration"), "{line}");
    let line = only_problem(&pg_target("x").replace(
        "[[connectors.pg.rules]]",
        "on_drift = \"ignore\"\n[[connectors.pg.rules]]",
    ));
    assert!(
        line.ends_with("connectors.pg.on_drift: must be \"revoke\" or \"report\""),
        "{line}"
    );
    // The same target on the same endpoint under two connectors.
    let twice = format!(
        "{}{}",
        pg_target("shared"),
        pg_target("shared").replace("connectors.pg", "connectors.pg2")
    );
    let line = only_problem(&twice);
    assert!(
        line.contains("already managed by connector \"pg\""),
        "{line}"
    );
    assert!(
        line.starts_with("c.toml:14:10: connectors.pg2.rules[0].target: "),
        "at the second connector's target: {line}"
    );
    let line = only_problem(&pg_target("x").replace(
        "[[connectors.pg.rules]]",
        "reconcile_interval = \"500ms\"\n[[connectors.pg.rules]]",
    ));
    assert!(
        line.ends_with("connectors.pg.reconcile_interval: must be at least PT1S"),
        "{line}"
    );

    let exec = |program: &str| {
        format!(
            "[connectors.x]\nkind = \"exec\"\ncommand = [\"{program}\"]\n[[connectors.x.rules]]\nrole = \"Reader\"\nscope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"{}\"\n",
            "t".repeat(1025)
        )
    };
    let p = problems(&exec("sh"));
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].message.contains("absolute path"));
    assert!(p[1].message.contains("at most 1024 bytes"));
}
