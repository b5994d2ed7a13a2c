//! What `rolegate connectors check` prints (connectors.md §2.1): the effective rules of a
//! valid file, or its problems, as text or JSON. Never a secret: the endpoint carries none
//! (a URL with a password is refused), and of an `exec` environment only the values written
//! in the file are shown (§2.3); the operator API shows no environment at all.

use crate::config::{ConfigProblem, ConnectorConfig, ConnectorsConfig, iso_duration};
use rolegate_core::provisioning::{OnDrift, PrincipalCase};
use serde_json::{Value, json};

fn on_drift(c: &ConnectorConfig) -> &'static str {
    match c.on_drift {
        OnDrift::Revoke => "revoke",
        OnDrift::Report => "report",
    }
}

fn principal_case(c: &ConnectorConfig) -> &'static str {
    match c.principal_case {
        PrincipalCase::Preserve => "preserve",
        PrincipalCase::Lower => "lower",
    }
}

/// The `-o json` document of a valid file.
pub fn json(config: &ConnectorsConfig) -> Value {
    let connectors: Vec<Value> = config
        .connectors
        .iter()
        .map(|c| {
            let mut doc = connector_json(c);
            if let Some(env) = exec_env(c) {
                doc["env"] = Value::Object(
                    env.into_iter()
                        .map(|(name, value)| (name, Value::String(value)))
                        .collect(),
                );
            }
            doc
        })
        .collect();
    json!({"valid": true, "connectors": connectors})
}

/// An `exec` connector's environment as `check` shows it: values written in the file as
/// they are, secrets (`"${NAME}"`, `{ file = … }`) as `(secret)`; `None` for other kinds.
fn exec_env(c: &ConnectorConfig) -> Option<Vec<(String, String)>> {
    let crate::kind::KindConfig::Exec(e) = &c.kind else {
        return None;
    };
    Some(
        e.env
            .iter()
            .map(|(name, value)| {
                let shown = match value {
                    crate::kind::exec::EnvValue::Literal(v) => v.clone(),
                    crate::kind::exec::EnvValue::Secret(_) => "(secret)".to_string(),
                };
                (name.clone(), shown)
            })
            .collect(),
    )
}

/// One connector's effective rules and settings, as `check -o json` and the operator API
/// (connectors.md §9) show them; never a secret.
pub fn connector_json(c: &ConnectorConfig) -> Value {
    let rules: Vec<Value> = c
        .rules
        .iter()
        .map(|r| {
            json!({"index": r.index, "line": r.line, "role": r.role.display_name,
                   "templateId": r.role.template_id, "scope": r.scope.as_str(),
                   "target": r.target})
        })
        .collect();
    let principal: Vec<String> = c.principal.iter().map(|p| p.as_text()).collect();
    json!({"name": c.name, "kind": c.kind.name(), "endpoint": c.kind.endpoint(),
           "reconcileInterval": iso_duration(c.reconcile_interval),
           "onDrift": on_drift(c), "principal": principal,
           "principalCase": principal_case(c), "ignoreMembers": c.ignore_members,
           "insecure": c.insecure, "rules": rules})
}

/// What `--connect` found for one connector: the grants `list` read on its managed
/// targets, or why it could not.
pub type Reach = Result<usize, String>;

/// Runs `list`, read-only, against every connector of `config` (in order).
pub async fn connect(config: &ConnectorsConfig) -> Vec<Reach> {
    let mut out = Vec::new();
    for c in &config.connectors {
        let mut targets: Vec<String> = c.rules.iter().map(|r| r.target.clone()).collect();
        targets.sort();
        targets.dedup();
        let reach = match crate::kind::build(c) {
            Ok(connector) => connector
                .list(&targets)
                .await
                .map(|g| g.len())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        out.push(reach);
    }
    out
}

/// Adds what `--connect` found to the `-o json` document of a valid file.
pub fn with_reach(mut doc: Value, reach: &[Reach]) -> Value {
    if let Some(list) = doc.get_mut("connectors").and_then(Value::as_array_mut) {
        for (c, r) in list.iter_mut().zip(reach) {
            match r {
                Ok(n) => {
                    c["reachable"] = json!(true);
                    c["grants"] = json!(n);
                }
                Err(e) => {
                    c["reachable"] = json!(false);
                    c["error"] = json!(e);
                }
            }
        }
    }
    doc
}

/// The text lines of what `--connect` found.
pub fn reach_text(config: &ConnectorsConfig, reach: &[Reach]) -> String {
    let mut out = String::new();
    for (c, r) in config.connectors.iter().zip(reach) {
        match r {
            Ok(n) => out.push_str(&format!(
                "connector {}: reachable, {n} grants on its targets\n",
                c.name
            )),
            Err(e) => out.push_str(&format!("connector {}: NOT reachable: {e}\n", c.name)),
        }
    }
    out
}

/// The `-o json` document of an invalid file.
pub fn json_problems(problems: &[ConfigProblem]) -> Value {
    let errors: Vec<Value> = problems
        .iter()
        .map(|p| {
            json!({"path": p.path, "line": p.position.map(|(l, _)| l),
                   "column": p.position.map(|(_, c)| c), "field": p.field,
                   "message": p.message})
        })
        .collect();
    json!({"valid": false, "errors": errors})
}

/// The text output of a valid file.
pub fn text(config: &ConnectorsConfig) -> String {
    let mut out = String::new();
    if config.connectors.is_empty() {
        out.push_str("valid: no connectors\n");
    }
    for c in &config.connectors {
        let endpoint = match c.kind.endpoint() {
            Value::String(s) => s,
            other => other.to_string(),
        };
        out.push_str(&format!("connector {} ({})\n", c.name, c.kind.name()));
        out.push_str(&format!("  endpoint        {endpoint}\n"));
        let every = c.reconcile_interval;
        let every = if every.subsec_millis() == 0 {
            format!("{} s", every.as_secs())
        } else {
            format!("{} ms", every.as_millis())
        };
        out.push_str(&format!(
            "  reconcile       every {every}, drift: {}\n",
            on_drift(c)
        ));
        let principal: Vec<String> = c.principal.iter().map(|p| p.as_text()).collect();
        out.push_str(&format!(
            "  principal       {} (case: {})\n",
            principal.join(", then "),
            principal_case(c)
        ));
        if !c.ignore_members.is_empty() {
            out.push_str(&format!(
                "  ignore members  {}\n",
                c.ignore_members.join(", ")
            ));
        }
        if c.insecure {
            out.push_str(
                "  insecure        yes: the connection is not verified or not encrypted\n",
            );
        }
        if let Some(env) = exec_env(c).filter(|e| !e.is_empty()) {
            let shown: Vec<String> = env.iter().map(|(n, v)| format!("{n}={v}")).collect();
            out.push_str(&format!("  environment     {}\n", shown.join(" ")));
        }
        out.push_str("  rules\n");
        for r in &c.rules {
            out.push_str(&format!(
                "    [{}] {} ({}) on {} -> {}\n",
                r.index,
                r.role.display_name,
                r.role.template_id,
                r.scope.as_str(),
                r.target
            ));
        }
    }
    out
}
