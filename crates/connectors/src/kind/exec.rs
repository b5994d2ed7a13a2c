//! `exec`: a program the operator provides, run without a shell with a JSON document on its
//! standard input (connectors.md §5.3): the kind's keys and their validation, and the
//! connector. The program is started directly (absolute path, no shell, no PATH lookup) in
//! a process group of its own, with exactly the environment the file lists; past its
//! timeout the whole group gets SIGTERM, then SIGKILL two seconds later.

use crate::config::{Doc, Table};
use crate::connector::{ApplyContext, BoxFuture, Connector, ConnectorError, Grant};
use crate::secret::{Secret, redact};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use toml::de::DeValue;

/// How much of standard error becomes `lastError`.
const STDERR_TAIL: usize = 4 * 1024;
/// How much of an apply's or revoke's standard output is read (then ignored).
const APPLY_OUTPUT: usize = 64 * 1024;
/// The largest answer to `list`.
const LIST_OUTPUT: usize = 1024 * 1024;

/// One variable of the program's environment.
#[derive(Debug, Clone)]
pub enum EnvValue {
    /// Written in the file (shown by `check`).
    Literal(String),
    /// From `"${NAME}"` or `{ file = "PATH" }`.
    Secret(Secret),
}

/// The keys of an `exec` connector.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// The program (an absolute path) and its arguments.
    pub command: Vec<String>,
    /// Exactly the environment the program gets.
    pub env: Vec<(String, EnvValue)>,
    /// Its working directory.
    pub workdir: String,
}

impl ExecConfig {
    /// The environment's secret values.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.env.iter().filter_map(|(_, v)| match v {
            EnvValue::Secret(s) => Some(s),
            EnvValue::Literal(_) => None,
        })
    }
}

pub(crate) fn read(doc: &mut Doc<'_>, t: &mut Table<'_, '_>) -> Option<ExecConfig> {
    let command = match t.strings(doc, "command") {
        None => {
            t.missing(doc, "command");
            None
        }
        Some(c) if c.is_empty() => {
            t.missing(doc, "command");
            None
        }
        Some(c) => {
            let program = &c[0];
            let problem = program_problem(program.get_ref());
            if let Some(message) = problem {
                doc.problem(
                    program.span(),
                    &format!("{}[0]", t.field("command")),
                    message,
                );
                None
            } else {
                Some(c.into_iter().map(toml::Spanned::into_inner).collect())
            }
        }
    };
    let env = read_env(doc, t);
    let workdir = match t.string(doc, "workdir") {
        None => Some("/".to_string()),
        Some(w) if w.get_ref().starts_with('/') && std::path::Path::new(w.get_ref()).is_dir() => {
            Some(w.into_inner())
        }
        Some(w) => {
            doc.problem(
                w.span(),
                &t.field("workdir"),
                format!("{} is not an absolute path to a directory", w.get_ref()),
            );
            None
        }
    };
    Some(ExecConfig {
        command: command?,
        env: env?,
        workdir: workdir?,
    })
}

/// Why `path` cannot be the program: not absolute, missing, not an executable regular file,
/// or writable by group or others (someone else could change what Rolegate runs).
fn program_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!(
            "the program must be an absolute path (no PATH lookup), not \"{path}\""
        ));
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot use {path}: {e}")),
    };
    let mode = meta.permissions().mode();
    if !meta.is_file() || mode & 0o111 == 0 {
        Some(format!("{path} is not an executable file"))
    } else if mode & 0o022 != 0 {
        Some(format!(
            "{path} is writable by group or others; make it 0755 or stricter"
        ))
    } else {
        None
    }
}

fn read_env(doc: &mut Doc<'_>, t: &mut Table<'_, '_>) -> Option<Vec<(String, EnvValue)>> {
    let field = t.field("env");
    let Some(v) = t.value("env") else {
        return Some(Vec::new());
    };
    let DeValue::Table(vars) = v.get_ref() else {
        doc.problem(v.span(), &field, "must be a table of variables".into());
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    let mut entries: Vec<_> = vars.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (name, value) in entries {
        let vf = format!("{field}.{}", name.get_ref());
        let shape = "must be a string, \"${NAME}\" or { file = \"PATH\" }";
        let parsed = match value.get_ref() {
            DeValue::String(s) if s.starts_with("${") => {
                crate::secret::from_env(doc, value.span(), &vf, s).map(EnvValue::Secret)
            }
            DeValue::String(s) => Some(EnvValue::Literal(s.to_string())),
            DeValue::Table(f) => match (f.len(), f.get("file").map(|p| p.get_ref())) {
                (1, Some(DeValue::String(p))) => {
                    crate::secret::from_file(doc, value.span(), &vf, p).map(EnvValue::Secret)
                }
                _ => {
                    doc.problem(value.span(), &vf, shape.into());
                    None
                }
            },
            _ => {
                doc.problem(value.span(), &vf, shape.into());
                None
            }
        };
        match parsed {
            Some(p) => out.push((name.get_ref().to_string(), p)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// The principal of a mapped value: the value as is, up to 1024 bytes (§3.2).
pub fn principal(mapped: &str) -> Result<String, rolegate_core::provisioning::UnmappedReason> {
    match target_problem(mapped) {
        None => Ok(mapped.to_string()),
        Some(_) => Err(rolegate_core::provisioning::UnmappedReason::InvalidValue),
    }
}

/// An `exec` connector.
pub struct ExecConnector {
    name: String,
    config: ExecConfig,
    timeout: Duration,
}

/// What a finished run left: its standard output (up to the limit) and whether it
/// overflowed.
struct Run {
    stdout: Vec<u8>,
    overflow: bool,
}

/// Reads `from` to its end, keeping the first `limit` bytes (or, with `tail`, the last).
async fn drain(mut from: impl AsyncRead + Unpin, limit: usize, tail: bool) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut overflow = false;
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, overflow),
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > limit {
                    overflow = true;
                    if tail {
                        kept.drain(..kept.len() - limit);
                    } else {
                        kept.truncate(limit);
                    }
                }
            }
        }
    }
}

impl ExecConnector {
    /// The connector `name` of `config`, each run limited to `timeout`.
    pub fn new(name: &str, config: ExecConfig, timeout: Duration) -> Self {
        Self {
            name: name.to_string(),
            config,
            timeout,
        }
    }

    /// Runs the program once with `document` on its standard input.
    async fn run(&self, document: &Value, limit: usize) -> Result<Run, ConnectorError> {
        let Some((program, args)) = self.config.command.split_first() else {
            return Err(ConnectorError::refused("ProgramFailed", "no command"));
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .current_dir(&self.config.workdir)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.config.env {
            match v {
                EnvValue::Literal(l) => cmd.env(k, l),
                EnvValue::Secret(s) => cmd.env(k, s.expose()),
            };
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ConnectorError::unreachable(format!("cannot start {program}: {e}")))?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ConnectorError::unreachable(
                "the program's pipes are missing",
            ));
        };
        let input = format!("{document}\n");
        let writer = tokio::spawn(async move {
            // A program that does not read its input is its own business.
            let _ = stdin.write_all(input.as_bytes()).await;
        });
        let out = tokio::spawn(drain(stdout, limit, false));
        let err = tokio::spawn(drain(stderr, STDERR_TAIL, true));
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => status.map_err(|e| ConnectorError::unreachable(e.to_string()))?,
            Err(_) => {
                if let Some(g) = group {
                    let _ = rustix::process::kill_process_group(g, rustix::process::Signal::TERM);
                }
                if tokio::time::timeout(Duration::from_secs(2), child.wait())
                    .await
                    .is_err()
                    && let Some(g) = group
                {
                    let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
                }
                let _ = child.wait().await;
                return Err(ConnectorError::unreachable(format!(
                    "{program} ran past its timeout of {} s and was stopped",
                    self.timeout.as_secs_f64()
                )));
            }
        };
        writer.abort();
        // A program that left a process behind holding its output open would keep the
        // pipes from closing: wait a little, then stop the group and fail the run.
        let outputs = async { (out.await, err.await) };
        let (out, err) = match tokio::time::timeout(Duration::from_secs(2), outputs).await {
            Ok(both) => both,
            Err(_) => {
                if let Some(g) = group {
                    let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
                }
                return Err(ConnectorError::refused(
                    "ProgramFailed",
                    format!("{program} exited but left a process holding its output open"),
                ));
            }
        };
        let (stdout, overflow) = out.unwrap_or_default();
        let (stderr, _) = err.unwrap_or_default();
        if !status.success() {
            let tail = String::from_utf8_lossy(&stderr).trim().to_string();
            let how = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_string(),
            };
            let message = if tail.is_empty() {
                format!("{program} {how}")
            } else {
                format!("{program} {how}: {tail}")
            };
            return Err(ConnectorError::refused(
                "ProgramFailed",
                redact(&message, self.config.secrets()),
            ));
        }
        Ok(Run { stdout, overflow })
    }

    /// Runs an apply or a revoke: the program's output is read and ignored.
    async fn change(
        &self,
        operation: &str,
        grant: &Grant,
        ctx: &ApplyContext,
    ) -> Result<(), ConnectorError> {
        self.run(&self.document(operation, grant, ctx), APPLY_OUTPUT)
            .await
            .map(|_| ())
    }

    fn document(&self, operation: &str, grant: &Grant, ctx: &ApplyContext) -> Value {
        let mut d = json!({"version": 1, "operation": operation, "connector": self.name,
            "itemId": ctx.item_id, "target": grant.target, "principal": grant.principal,
            "subject": ctx.subject, "cause": ctx.cause, "createdDateTime": ctx.created});
        if operation == "apply" {
            d["assignmentIds"] = json!(ctx.assignment_ids);
            d["notAfter"] = json!(ctx.not_after);
        }
        d
    }
}

impl Connector for ExecConnector {
    fn apply<'a>(
        &'a self,
        grant: &'a Grant,
        ctx: &'a ApplyContext,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(self.change("apply", grant, ctx))
    }

    fn revoke<'a>(
        &'a self,
        grant: &'a Grant,
        ctx: &'a ApplyContext,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(self.change("revoke", grant, ctx))
    }

    fn list<'a>(
        &'a self,
        targets: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Grant>, ConnectorError>> {
        Box::pin(async move {
            let doc = json!({"version": 1, "operation": "list", "connector": self.name,
                             "targets": targets});
            let run = self.run(&doc, LIST_OUTPUT).await?;
            let invalid = |why: &str| {
                ConnectorError::refused(
                    "InvalidListOutput",
                    format!(
                        "the answer to list {why}; expected {{\"grants\": [{{\"target\": …, \"principal\": …}}]}}"
                    ),
                )
            };
            if run.overflow {
                return Err(invalid("is over 1 MiB"));
            }
            let answer: Value =
                serde_json::from_slice(&run.stdout).map_err(|_| invalid("is not JSON"))?;
            let Some(grants) = answer.get("grants").and_then(Value::as_array) else {
                return Err(invalid("has no grants array"));
            };
            let mut out = Vec::new();
            for g in grants {
                let (Some(target), Some(principal)) = (
                    g.get("target").and_then(Value::as_str),
                    g.get("principal").and_then(Value::as_str),
                ) else {
                    return Err(invalid("holds an entry without a target and a principal"));
                };
                if targets.iter().any(|t| t == target) {
                    out.push(Grant {
                        target: target.to_string(),
                        principal: principal.to_string(),
                    });
                }
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
    }
}

/// Any string of at most 1024 bytes.
pub(crate) fn target_problem(target: &str) -> Option<String> {
    (target.len() > 1024)
        .then(|| format!("must be at most 1024 bytes (this one has {})", target.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_an_absolute_executable_others_cannot_change() {
        assert_eq!(program_problem("/bin/sh"), None);
        assert!(program_problem("sh").is_some_and(|m| m.contains("absolute")));
        assert!(program_problem("/nonexistent/helper").is_some());
        assert!(program_problem("/etc/passwd").is_some_and(|m| m.contains("executable")));
        assert!(program_problem("/tmp").is_some());
        let open = std::env::temp_dir().join(format!("rolegate-exec-{}", std::process::id()));
        std::fs::write(&open, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let problem = program_problem(&open.to_string_lossy());
        std::fs::remove_file(&open).unwrap();
        assert!(problem.is_some_and(|m| m.contains("writable by group or others")));
    }
}
