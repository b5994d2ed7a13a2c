//! The `exec` kind with a small program written by the test (connectors.md §5.3): apply,
//! revoke and list through the JSON documents, a cleared environment, a non-zero exit with
//! its standard error (secrets redacted), a run past its timeout stopped with its whole
//! process group, and invalid list answers refused. Skipped, saying so, without python3.

use rolegate_connectors::config::parse;
use rolegate_connectors::connector::{ApplyContext, Connector, Grant};
use rolegate_connectors::kind::KindConfig;
use rolegate_connectors::kind::exec::ExecConnector;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const PYTHON: &str = "/usr/bin/python3";
const TOKEN: &str = "vault-token-Secret-77";

/// The program: keeps its grants in $STATE (a JSON list), records each document and its
/// environment, fails for principal "fail", hangs (with a child in its group) for "slow",
/// and answers list with a foreign target too (to be ignored), or garbage for "garbage".
const PROGRAM: &str = r#"#!/usr/bin/python3
import json, os, subprocess, sys, time
doc = json.load(sys.stdin)
state = os.environ["STATE"]
grants = json.load(open(state)) if os.path.exists(state) else []
with open(state + ".log", "a") as log:
    # The environment it was started with (python adds LC_CTYPE to its own os.environ).
    env = [v.split("=")[0] for v in open("/proc/self/environ").read().split("\0") if v]
    log.write(json.dumps({"doc": doc, "env": sorted(env)}) + "\n")
op = doc["operation"]
if op == "list":
    if "garbage" in doc["targets"]:
        print("not json")
        sys.exit(0)
    asked = [g for g in grants if g[0] in doc["targets"]] + [["foreign", "zed"]]
    print(json.dumps({"grants": [{"target": t, "principal": p} for t, p in asked]}))
    sys.exit(0)
key = [doc["target"], doc["principal"]]
if doc["principal"] == "fail":
    sys.stderr.write("cannot reach vault with token " + os.environ["VAULT_TOKEN"] + "\n")
    sys.exit(3)
if doc["principal"] == "linger":
    # Exits at once, but leaves a child holding stdout open.
    subprocess.Popen(["/bin/sleep", "30"])
    sys.exit(0)
if doc["principal"] == "slow":
    child = subprocess.Popen(["/bin/sleep", "30"])
    open(state + ".child", "w").write(str(child.pid))
    time.sleep(30)
if op == "apply" and key not in grants:
    grants.append(key)
if op == "revoke" and key in grants:
    grants.remove(key)
json.dump(grants, open(state, "w"))
"#;

struct Fixture {
    dir: PathBuf,
    connector: ExecConnector,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(timeout: &str) -> Option<Fixture> {
    if !Path::new(PYTHON).exists() {
        eprintln!("SKIPPED the exec connector tests: no {PYTHON}");
        return None;
    }
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rolegate-exec-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let program = dir.join("helper");
    std::fs::write(&program, PROGRAM).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "[connectors.vault]\nkind = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"{timeout}\"\n\
         env = {{ STATE = \"{}\", VAULT_TOKEN = {{ file = \"{}\" }} }}\n\
         [[connectors.vault.rules]]\nrole = \"Contributor\"\n\
         scope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"db/payments-rw\"\n",
        program.display(),
        dir.join("state.json").display(),
        token.display()
    );
    let config = parse("t.toml", &text, &[("UNUSED", "")]).unwrap_or_else(|p| panic!("{p:#?}"));
    let c = config.connectors.into_iter().next()?;
    let KindConfig::Exec(exec) = c.kind else {
        panic!("{:?}", c.kind)
    };
    Some(Fixture {
        connector: ExecConnector::new(&c.name, exec, c.timeout),
        dir,
    })
}

fn grant(principal: &str) -> Grant {
    Grant {
        target: "db/payments-rw".into(),
        principal: principal.into(),
    }
}

fn log(f: &Fixture) -> Vec<serde_json::Value> {
    std::fs::read_to_string(f.dir.join("state.json.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn apply_revoke_and_list_through_the_documents() {
    let Some(f) = fixture("10s") else { return };
    let c = &f.connector;
    let ctx = ApplyContext {
        item_id: "0b6e4f55-5c2e-4d53-9d68-7a1f1c9e3a10".into(),
        subject: Some(
            serde_json::json!({"id": "9f1c", "type": "User", "userName": "alice@example.net"}),
        ),
        cause: "assignment".into(),
        assignment_ids: vec!["5e7a".into()],
        not_after: Some("2026-12-05T18:00:00Z".into()),
        created: "2026-12-05T10:00:00.012Z".into(),
    };
    c.apply(&grant("alice"), &ctx).await.unwrap();
    c.apply(&grant("alice"), &ctx).await.unwrap();
    c.apply(&grant("bob"), &ctx).await.unwrap();
    let targets = vec!["db/payments-rw".to_string()];
    assert_eq!(
        c.list(&targets).await.unwrap(),
        vec![grant("alice"), grant("bob")],
        "the foreign target's entry is ignored"
    );
    c.revoke(&grant("alice"), &ctx).await.unwrap();
    assert_eq!(c.list(&targets).await.unwrap(), vec![grant("bob")]);

    let entries = log(&f);
    let first = &entries[0];
    assert_eq!(
        first["doc"],
        serde_json::json!({"version": 1, "operation": "apply", "connector": "vault",
            "itemId": "0b6e4f55-5c2e-4d53-9d68-7a1f1c9e3a10", "target": "db/payments-rw",
            "principal": "alice", "subject": {"id": "9f1c", "type": "User", "userName": "alice@example.net"},
            "cause": "assignment", "assignmentIds": ["5e7a"], "notAfter": "2026-12-05T18:00:00Z",
            "createdDateTime": "2026-12-05T10:00:00.012Z"})
    );
    // Exactly the listed environment: no PATH, no HOME, nothing of the test's own.
    assert_eq!(first["env"], serde_json::json!(["STATE", "VAULT_TOKEN"]));
    let list = entries
        .iter()
        .find(|e| e["doc"]["operation"] == "list")
        .unwrap();
    assert_eq!(
        list["doc"],
        serde_json::json!({"version": 1, "operation": "list", "connector": "vault", "targets": ["db/payments-rw"]})
    );
    let revoke = entries
        .iter()
        .find(|e| e["doc"]["operation"] == "revoke")
        .unwrap();
    assert!(revoke["doc"].get("notAfter").is_none());
}

#[tokio::test]
async fn a_failure_carries_its_stderr_without_secrets() {
    let Some(f) = fixture("10s") else { return };
    let e = f
        .connector
        .apply(&grant("fail"), &ApplyContext::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, "ProgramFailed");
    assert!(!e.unreachable);
    assert!(e.message.contains("exited with status 3"), "{e}");
    assert!(
        e.message.contains("cannot reach vault with token ***"),
        "{e}"
    );
    assert!(!e.message.contains(TOKEN), "{e}");
    let e = f
        .connector
        .apply(&grant("linger"), &ApplyContext::default())
        .await
        .unwrap_err();
    assert!(
        e.message.contains("left a process holding its output open"),
        "{e}"
    );
    let e = f
        .connector
        .list(&["garbage".to_string()])
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidListOutput", "{e}");
}

#[tokio::test]
async fn a_run_past_its_timeout_is_stopped_with_its_process_group() {
    let Some(f) = fixture("1s") else { return };
    let started = std::time::Instant::now();
    let e = f
        .connector
        .apply(&grant("slow"), &ApplyContext::default())
        .await
        .unwrap_err();
    assert!(e.message.contains("ran past its timeout"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // The program's own child (same process group) is gone too.
    let child = std::fs::read_to_string(f.dir.join("state.json.child")).unwrap();
    let proc = PathBuf::from(format!("/proc/{}", child.trim()));
    let gone = (0..50).any(|_| {
        let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its (dead) parent's reaper.
        let done = stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'));
        if !done {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        done
    });
    assert!(gone, "the sleep child of the timed-out program was killed");
}
