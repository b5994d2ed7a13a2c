//! `rolegate connectors check` through the built binary (connectors.md §2.1): the effective
//! rules of a valid file as text and JSON with exit 0; every problem on stderr as
//! `PATH:LINE:COLUMN: FIELD: MESSAGE` with exit 2; secrets resolved but never printed.

use crate::harness::binary;
use std::process::{Command, Output};

const SECRET: &str = "pg-Secret-Value-42";

fn check(file: &std::path::Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(["connectors", "check"])
        .arg(file)
        .args(args)
        .env_clear()
        .env("PG_PASSWORD", SECRET)
        .output()
        .unwrap_or_else(|e| panic!("run rolegate: {e}"))
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

const VALID: &str = r#"# The five-minute path of docs/connectors.md.
[connectors.pg_main]
kind = "postgresql"
url = "postgresql://rolegate_provisioner@127.0.0.1:5432/postgres"
password = "${PG_PASSWORD}"
principal = ["userNameLocalPart"]

[[connectors.pg_main.rules]]
role = "Reader"
scope = "/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301/resourceGroups/analytics"
target = "analytics_read"

[[connectors.pg_main.rules]]
role = "b24988ac-6180-42a0-ab88-20f7382dd24c"
scope = "/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301"
target = "app_admin"
"#;

#[test]
fn a_valid_file_prints_its_effective_rules() {
    let dir = std::env::temp_dir().join(format!(
        "rolegate-it-connectors-{}",
        crate::harness::uuid_like()
    ));
    let file = write(&dir, "connectors.toml", VALID);
    let out = check(&file, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("connector pg_main (postgresql)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[1] Contributor (b24988ac-6180-42a0-ab88-20f7382dd24c) on /subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301 -> app_admin"),
        "{stdout}"
    );
    let out = check(&file, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["valid"], true);
    let c = &doc["connectors"][0];
    assert_eq!(c["name"], "pg_main");
    assert_eq!(
        c["endpoint"],
        "postgresql://rolegate_provisioner@127.0.0.1:5432/postgres"
    );
    assert_eq!(c["reconcileInterval"], "PT60S");
    assert_eq!(c["principal"], serde_json::json!(["userNameLocalPart"]));
    assert_eq!(c["rules"][0]["role"], "Reader");
    assert_eq!(
        c["rules"][0]["templateId"],
        "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    );
    assert_eq!(c["rules"][0]["line"], 8);
    assert_eq!(c["rules"][1]["role"], "Contributor");
    for o in [
        check(&file, &[]),
        check(&file, &["-o", "json"]),
        check(&file, &["-o", "text"]),
    ] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!all.contains(SECRET), "the secret is never printed: {all}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_invalid_file_lists_every_problem_and_exits_2() {
    let dir = std::env::temp_dir().join(format!(
        "rolegate-it-connectors-{}",
        crate::harness::uuid_like()
    ));
    let bad = VALID
        .replace("\"${PG_PASSWORD}\"", "\"written-in-the-file\"")
        .replace("role = \"Reader\"", "role = \"Redaer\"")
        .replace(
            "[[connectors.pg_main.rules]]\nrole = \"b24988ac",
            "on_drfit = \"report\"\n[[connectors.pg_main.rules]]\nrole = \"b24988ac",
        );
    let file = write(&dir, "connectors.toml", &bad);
    let out = check(&file, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let path = file.display();
    assert_eq!(
        stderr,
        format!(
            "rolegate: invalid connectors configuration (3 problems)\n\
             {path}:5:12: connectors.pg_main.password: a secret may not be written in the file; use password_file or \"${{NAME}}\"\n\
             {path}:9:8: connectors.pg_main.rules[0].role: unknown role definition \"Redaer\"; use a displayName such as \"Reader\" or a templateId\n\
             {path}:13:1: connectors.pg_main.rules[0].on_drfit: unknown key\n"
        )
    );
    assert!(!stderr.contains("written-in-the-file"));
    let out = check(&file, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["valid"], false);
    assert_eq!(
        doc["errors"][1]["field"],
        "connectors.pg_main.rules[0].role"
    );
    assert_eq!(doc["errors"][1]["line"], 9);
    assert_eq!(doc["errors"][1]["column"], 8);
    // A file that cannot be read, and a variable that is not set.
    let out = check(&dir.join("missing.toml"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.toml: (file): cannot read the file")
    );
    let unset = write(
        &dir,
        "unset.toml",
        &VALID.replace("PG_PASSWORD", "NOT_SET_HERE"),
    );
    let out = check(&unset, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "connectors.pg_main.password: the environment variable NOT_SET_HERE is not set or empty"
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn connect_reads_each_target_and_exits_1_when_one_is_down() {
    let dir = std::env::temp_dir().join(format!(
        "rolegate-it-connectors-{}",
        crate::harness::uuid_like()
    ));
    // One role with one member on the test PostgreSQL, when there is one.
    let role = format!("rgc{}_app", std::process::id());
    let member = format!("rgc{}_alice", std::process::id());
    let pg = crate::harness::postgres_client().ok();
    if let Some(mut client) = pg {
        client
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {member}; DROP ROLE IF EXISTS {role};
                 CREATE ROLE {role} NOLOGIN; CREATE ROLE {member} LOGIN; GRANT {role} TO {member}"
            ))
            .unwrap_or_else(|e| panic!("{e}"));
        let file = write(
            &dir,
            "up.toml",
            &format!(
                "[connectors.pg]\nkind = \"postgresql\"\nurl = \"postgresql://postgres@127.0.0.1:5432/postgres\"\n\
                 [[connectors.pg.rules]]\nrole = \"Reader\"\n\
                 scope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"{role}\"\n"
            ),
        );
        let out = check(&file, &["--connect", "-o", "json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(out.status.code(), Some(0), "{doc}");
        assert_eq!(doc["connectors"][0]["reachable"], true, "{doc}");
        assert_eq!(doc["connectors"][0]["grants"], 1, "{doc}");
        let out = check(&file, &["--connect"]);
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains("connector pg: reachable, 1 grants on its targets")
        );
        let _ = client.batch_execute(&format!("DROP ROLE {member}; DROP ROLE {role}"));
    } else {
        eprintln!("SKIPPED the reachable half of check --connect: no PostgreSQL");
    }
    // Nothing listens on port 9.
    let file = write(
        &dir,
        "down.toml",
        "[connectors.pg]\nkind = \"postgresql\"\nurl = \"postgresql://postgres@127.0.0.1:9/postgres\"\n\
         [[connectors.pg.rules]]\nrole = \"Reader\"\n\
         scope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"app\"\n",
    );
    let out = check(&file, &["--connect", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["connectors"][0]["reachable"], false);
    assert!(
        doc["connectors"][0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Unreachable: ")),
        "{doc}"
    );
    // Without --connect nothing is contacted: the same file is valid.
    assert_eq!(check(&file, &[]).status.code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}
