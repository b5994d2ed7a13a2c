//! `exec`: a program the operator provides, run without a shell with a JSON document on its
//! standard input (connectors.md §5.3). This file holds the kind's keys and their
//! validation.

use crate::config::{Doc, Table};
use crate::secret::Secret;
use std::os::unix::fs::PermissionsExt;
use toml::de::DeValue;

/// One variable of the program's environment.
#[derive(Debug)]
pub enum EnvValue {
    /// Written in the file (shown by `check`).
    Literal(String),
    /// From `"${NAME}"` or `{ file = "PATH" }`.
    Secret(Secret),
}

/// The keys of an `exec` connector.
#[derive(Debug)]
pub struct ExecConfig {
    /// The program (an absolute path) and its arguments.
    pub command: Vec<String>,
    /// Exactly the environment the program gets.
    pub env: Vec<(String, EnvValue)>,
    /// Its working directory.
    pub workdir: String,
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
