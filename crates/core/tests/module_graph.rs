//! The core's modules form no cycle (issue 9): rule modules sit below the storage port,
//! operations above it, so a rule can be read, tested and reused without the store.
//!
//! Every file of `src/` is a module (`request/decision.rs` is `request::decision`); a module
//! depends on another when its code (tests excluded) names it by a `crate::` or `super::`
//! path or a `use` of a child. Containment alone (a parent declaring `pub mod child`) is not
//! a dependency. Written here rather than with `cargo modules dependencies --acyclic`: that
//! tool builds rust-analyzer, several minutes of CI on two cores for one check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`""` for the crate root) → source file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // Test files mounted with `#[path]` belong to their module's tests.
            if !name.ends_with(".rs") || name.ends_with("_tests.rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The code of a module without comments and without its `#[cfg(test)] mod tests`.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `a::b::c` path that starts right after `prefix` at each occurrence of it.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        let after = &rest[i + prefix.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(after[..end].trim_end_matches(':'));
        }
        rest = &after[end..];
    }
    out
}

/// The longest module of `known` that `path` starts with.
fn resolve(known: &BTreeMap<String, PathBuf>, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    (1..=segs.len())
        .rev()
        .map(|n| segs[..n].join("::"))
        .find(|m| known.contains_key(m))
}

fn parent(module: &str) -> String {
    module.rsplit_once("::").map_or("", |(p, _)| p).to_string()
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}::{b}")
    }
}

/// Module → the modules it depends on.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let known = modules(src);
    let mut edges = BTreeMap::new();
    for (module, path) in &known {
        let code = code(path);
        let mut deps = BTreeSet::new();
        for p in paths_after(&code, "crate::") {
            deps.extend(resolve(&known, p));
        }
        for p in paths_after(&code, "super::") {
            let up = parent(module);
            deps.insert(resolve(&known, &join(&up, p)).unwrap_or(up));
        }
        // `use child::…` and `child::item` paths relative to this module.
        for p in paths_after(&code, "use ") {
            if let Some(child) = resolve(&known, &join(module, p))
                && child != *module
                && child.starts_with(module.as_str())
            {
                deps.insert(child);
            }
        }
        deps.remove(module);
        edges.insert(module.clone(), deps);
    }
    edges
}

/// A cycle of `edges`, as the modules along it, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(m) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|p| p == m).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(m.to_string(), Mark::Open);
        path.push(m.to_string());
        for d in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, edges, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(m.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in edges.keys() {
        if let Some(c) = visit(m, edges, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn core_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    // The graph is really read: the layers depend on each other as designed.
    assert!(edges["operation::request"].contains("request::decision"));
    assert!(edges["request::decision"].contains("request"));
    assert!(edges["store"].contains("request"));
    assert!(edges["operation"].contains("store"));
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "core's modules form a cycle: {}\n(rule modules must not reach the store; move the \
             code that loads or writes into crate::operation)",
            cycle.join(" → ")
        );
    }
}

#[test]
fn a_cycle_is_found() {
    let g = |pairs: &[(&str, &str)]| {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            e.entry((*a).into()).or_default().insert((*b).into());
            e.entry((*b).into()).or_default();
        }
        e
    };
    assert_eq!(
        find_cycle(&g(&[
            ("store", "request"),
            ("request", "change"),
            ("change", "store")
        ])),
        Some(vec![
            "change".to_string(),
            "store".to_string(),
            "request".to_string(),
            "change".to_string()
        ])
    );
    assert_eq!(
        find_cycle(&g(&[
            ("operation", "store"),
            ("store", "request"),
            ("operation", "request")
        ])),
        None
    );
    assert_eq!(
        paths_after("use crate::a::b::{C, D}; x::crate::y", "crate::"),
        vec!["a::b::", "y"]
            .into_iter()
            .map(|s| s.trim_end_matches(':'))
            .collect::<Vec<_>>()
    );
}
