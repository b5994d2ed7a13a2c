//! The connectors file (connectors.md §2): read, fully validated, every problem reported as
//! `PATH:LINE:COLUMN: FIELD: MESSAGE`, secrets resolved from files or the environment and
//! never echoed. The kind-specific keys are read by each kind's module (`crate::kind`).

use crate::kind::{self, KindConfig};
use crate::secret::{Environment, Secret};
use rolegate_core::provisioning::{OnDrift, PrincipalCase, PrincipalSource, Rule};
use rolegate_core::scope::ArmId;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem of a connectors file (§2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file.
    pub path: String,
    /// 1-based line and column of the offending value (or of the table missing a key);
    /// `None` when the file could not be read.
    pub position: Option<(usize, usize)>,
    /// The dotted key path (`connectors.pg.rules[3].target`), `(syntax)` or `(file)`.
    pub field: String,
    /// What is wrong; never a secret value.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(
                f,
                "{}:{line}:{column}: {}: {}",
                self.path, self.field, self.message
            ),
            None => write!(f, "{}: {}: {}", self.path, self.field, self.message),
        }
    }
}

/// The headline and one line per problem, as `serve` and `connectors check` print them.
pub fn report(problems: &[ConfigProblem]) -> String {
    let n = problems.len();
    let mut out = format!(
        "rolegate: invalid connectors configuration ({n} problem{})\n",
        if n == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&p.to_string());
        out.push('\n');
    }
    out
}

/// A validated connectors file.
#[derive(Debug)]
pub struct ConnectorsConfig {
    /// The connectors, in file order.
    pub connectors: Vec<ConnectorConfig>,
    /// Things worth a warning at load (an `insecure` connector, a secret file others can
    /// read): never a secret.
    pub warnings: Vec<String>,
}

/// One connector (§2.2).
#[derive(Debug)]
pub struct ConnectorConfig {
    /// Its name (used in URLs and metric labels).
    pub name: String,
    /// Its kind and the kind's own keys.
    pub kind: KindConfig,
    /// Its rules, in file order.
    pub rules: Vec<Rule>,
    /// Principal sources, in order (§3.2).
    pub principal: Vec<PrincipalSource>,
    /// Case applied to the mapped value.
    pub principal_case: PrincipalCase,
    /// Time between reconciliation passes.
    pub reconcile_interval: Duration,
    /// What to do with grants made outside Rolegate.
    pub on_drift: OnDrift,
    /// Reconciliation's safety valve (§7.3).
    pub max_revocations_per_pass: u32,
    /// Principals never touched nor reported.
    pub ignore_members: Vec<String>,
    /// Attempts per item before it is dead.
    pub max_attempts: u32,
    /// Items applied at once.
    pub concurrency: u32,
    /// Limit for one operation against the target.
    pub timeout: Duration,
    /// Whether an unencrypted or unverified connection to a remote host is allowed.
    pub insecure: bool,
}

impl ConnectorConfig {
    /// The principals Rolegate never grants, revokes nor reports in this connector, as
    /// the kind compares them: `ignore_members` and its own account (§2.2, §11.1).
    pub fn untouchable(&self) -> std::collections::BTreeSet<String> {
        self.ignore_members
            .iter()
            .cloned()
            .chain(self.kind.own_account())
            .map(|p| self.kind.comparable_principal(&p))
            .collect()
    }
}

/// Reads and validates the connectors file at `path`; `env` resolves `${NAME}`.
pub fn load(path: &str, env: &dyn Environment) -> Result<ConnectorsConfig, Vec<ConfigProblem>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text, env),
        Err(e) => Err(vec![ConfigProblem {
            path: path.to_string(),
            position: None,
            field: "(file)".into(),
            message: format!("cannot read the file: {e}"),
        }]),
    }
}

/// Validates the text of a connectors file (`path` names it in problems).
pub fn parse(
    path: &str,
    text: &str,
    env: &dyn Environment,
) -> Result<ConnectorsConfig, Vec<ConfigProblem>> {
    let mut doc = Doc {
        path,
        text,
        env,
        problems: Vec::new(),
        warnings: Vec::new(),
        targets: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            doc.problem(
                e.span().unwrap_or(0..0),
                "(syntax)",
                e.message().to_string(),
            );
            return Err(doc.problems);
        }
    };
    let connectors = read_connectors(&mut doc, &root);
    if doc.problems.is_empty() {
        Ok(ConnectorsConfig {
            connectors,
            warnings: doc.warnings,
        })
    } else {
        doc.problems.sort_by_key(|p| p.position);
        Err(doc.problems)
    }
}

/// The file being read: where problems and warnings go.
pub(crate) struct Doc<'a> {
    path: &'a str,
    text: &'a str,
    env: &'a dyn Environment,
    problems: Vec<ConfigProblem>,
    warnings: Vec<String>,
    /// (endpoint, target, connector) of every rule read so far.
    targets: Vec<(String, String, String)>,
}

impl Doc<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map_or(1, |l| l.chars().count() + 1);
        (line, column)
    }

    /// Records a problem at `span`.
    pub(crate) fn problem(&mut self, span: Range<usize>, field: &str, message: String) {
        let position = Some(self.position(span.start));
        self.problems.push(ConfigProblem {
            path: self.path.to_string(),
            position,
            field: field.to_string(),
            message,
        });
    }

    /// Records a warning.
    pub(crate) fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    /// The environment `${NAME}` reads.
    pub(crate) fn env(&self) -> &dyn Environment {
        self.env
    }

    /// Records that `connector` manages `target` on `endpoint`; a problem at `span` when
    /// another connector of the file already does (§3.1).
    fn claim_target(
        &mut self,
        endpoint: &str,
        target: &str,
        connector: &str,
        span: Range<usize>,
        field: &str,
    ) {
        let other = self
            .targets
            .iter()
            .find(|(e, t, c)| e == endpoint && t == target && c != connector)
            .map(|(_, _, c)| c.clone());
        match other {
            Some(other) => self.problem(
                span,
                field,
                format!("target \"{target}\" on this endpoint is already managed by connector \"{other}\""),
            ),
            None => self
                .targets
                .push((endpoint.into(), target.into(), connector.into())),
        }
    }
}

/// A table being read: its dotted path, where it starts, and which keys were read (the
/// others are errors, §2.2).
pub(crate) struct Table<'t, 'i> {
    field: String,
    span: Range<usize>,
    entries: &'t DeTable<'i>,
    read: BTreeSet<String>,
}

impl<'t, 'i> Table<'t, 'i> {
    fn new(field: String, value: &'t Spanned<DeValue<'i>>, doc: &mut Doc<'_>) -> Option<Self> {
        match value.get_ref() {
            DeValue::Table(entries) => Some(Self {
                field,
                span: value.span(),
                entries,
                read: BTreeSet::new(),
            }),
            _ => {
                doc.problem(value.span(), &field, "must be a table".into());
                None
            }
        }
    }

    /// The dotted path of `key` in this table.
    pub(crate) fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.field)
    }

    /// The raw value of `key`, marking it read.
    pub(crate) fn value(&mut self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.read.insert(key.to_string());
        self.entries.get(key)
    }

    /// A problem: `key` is required.
    pub(crate) fn missing(&self, doc: &mut Doc<'_>, key: &str) {
        doc.problem(self.span.clone(), &self.field(key), "is required".into());
    }

    /// An optional string.
    pub(crate) fn string(&mut self, doc: &mut Doc<'_>, key: &str) -> Option<Spanned<String>> {
        let v = self.value(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
            _ => {
                doc.problem(v.span(), &self.field(key), "must be a string".into());
                None
            }
        }
    }

    /// A required string.
    pub(crate) fn required_string(
        &mut self,
        doc: &mut Doc<'_>,
        key: &str,
    ) -> Option<Spanned<String>> {
        if self.entries.get(key).is_none() {
            self.read.insert(key.to_string());
            self.missing(doc, key);
            return None;
        }
        self.string(doc, key)
    }

    /// One of a few words (`options`); `default` when absent or wrong.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        doc: &mut Doc<'_>,
        key: &str,
        default: T,
        options: &[(&str, T)],
    ) -> T {
        let Some(s) = self.string(doc, key) else {
            return default;
        };
        if let Some((_, v)) = options.iter().find(|(word, _)| *word == s.get_ref()) {
            return *v;
        }
        let words: Vec<String> = options.iter().map(|(w, _)| format!("\"{w}\"")).collect();
        doc.problem(
            s.span(),
            &self.field(key),
            format!("must be {}", words.join(" or ")),
        );
        default
    }

    /// An optional boolean (`default` when absent).
    pub(crate) fn boolean(&mut self, doc: &mut Doc<'_>, key: &str, default: bool) -> bool {
        let Some(v) = self.value(key) else {
            return default;
        };
        match v.get_ref() {
            DeValue::Boolean(b) => *b,
            _ => {
                doc.problem(v.span(), &self.field(key), "must be true or false".into());
                default
            }
        }
    }

    /// An optional integer within `range` (`default` when absent).
    fn integer(
        &mut self,
        doc: &mut Doc<'_>,
        key: &str,
        range: std::ops::RangeInclusive<u32>,
        default: u32,
    ) -> u32 {
        let Some(v) = self.value(key) else {
            return default;
        };
        let n = match v.get_ref() {
            DeValue::Integer(i) => u32::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n {
            Some(n) if range.contains(&n) => n,
            _ => {
                let message = if *range.end() == u32::MAX {
                    format!("must be an integer of at least {}", range.start())
                } else {
                    format!(
                        "must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    )
                };
                doc.problem(v.span(), &self.field(key), message);
                default
            }
        }
    }

    /// An optional duration (§2.2): `"<integer><unit>"` or an integer of seconds, at least
    /// `min` (and never zero).
    pub(crate) fn duration(
        &mut self,
        doc: &mut Doc<'_>,
        key: &str,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(v) = self.value(key) else {
            return default;
        };
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(Duration::from_secs),
            DeValue::String(s) => parse_duration(s),
            _ => None,
        };
        match parsed {
            Some(d) if !d.is_zero() && d >= min => d,
            Some(d) if !d.is_zero() => {
                doc.problem(
                    v.span(),
                    &self.field(key),
                    format!("must be at least {}", iso_duration(min)),
                );
                default
            }
            _ => {
                doc.problem(
                    v.span(),
                    &self.field(key),
                    "must be a duration such as \"500ms\", \"60s\", \"5m\", \"1h\" or \"1d\", or a number of seconds".into(),
                );
                default
            }
        }
    }

    /// An optional array of strings.
    pub(crate) fn strings(&mut self, doc: &mut Doc<'_>, key: &str) -> Option<Vec<Spanned<String>>> {
        let v = self.value(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            doc.problem(
                v.span(),
                &self.field(key),
                "must be an array of strings".into(),
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
                _ => doc.problem(
                    item.span(),
                    &format!("{}[{i}]", self.field(key)),
                    "must be a string".into(),
                ),
            }
        }
        Some(out)
    }

    /// A secret (§2.3): `key` as `"${NAME}"` or `KEY_file` naming a file, not both.
    pub(crate) fn secret(&mut self, doc: &mut Doc<'_>, key: &str) -> Option<Secret> {
        let file_key = format!("{key}_file");
        let inline = self.value(key);
        let file = self.value(&file_key);
        match (inline, file) {
            (Some(_), Some(f)) => {
                doc.problem(
                    f.span(),
                    &self.field(&file_key),
                    format!("give either {key} or {file_key}, not both"),
                );
                None
            }
            (Some(v), None) => {
                let field = self.field(key);
                match v.get_ref() {
                    DeValue::String(s) => crate::secret::from_env(doc, v.span(), &field, s),
                    _ => {
                        doc.problem(
                            v.span(),
                            &field,
                            format!(
                                "must be \"${{NAME}}\" (an environment variable); or use {file_key}"
                            ),
                        );
                        None
                    }
                }
            }
            (None, Some(f)) => {
                let field = self.field(&file_key);
                match f.get_ref() {
                    DeValue::String(p) => crate::secret::from_file(doc, f.span(), &field, p),
                    _ => {
                        doc.problem(f.span(), &field, "must be a file path".into());
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// A required secret: `key` or `KEY_file` must be given.
    pub(crate) fn required_secret(&mut self, doc: &mut Doc<'_>, key: &str) -> Option<Secret> {
        let given = [key.to_string(), format!("{key}_file")]
            .iter()
            .any(|k| self.entries.get(k.as_str()).is_some());
        if !given {
            self.read.insert(key.to_string());
            self.missing(doc, key);
            return None;
        }
        self.secret(doc, key)
    }

    /// Takes every key as read: when the kind is missing or unknown, its own keys cannot be
    /// told from typos, and the kind's problem is the one worth reporting.
    fn accept_rest(&mut self) {
        for (key, _) in self.entries.iter() {
            self.read.insert(key.get_ref().to_string());
        }
    }

    /// Reports every key that was not read as unknown (§2.2: a typo must not silently
    /// disable a safety setting).
    pub(crate) fn finish(self, doc: &mut Doc<'_>) {
        for (key, _) in self.entries.iter() {
            if !self.read.contains(key.get_ref().as_ref()) {
                doc.problem(key.span(), &self.field(key.get_ref()), "unknown key".into());
            }
        }
    }
}

/// `"500ms"`, `"60s"`, `"5m"`, `"1h"`, `"1d"`, or digits alone (seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let seconds = |k: u64| n.checked_mul(k).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" | "" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => None,
    }
}

/// ISO 8601 for a duration (`PT60S`, `PT0.5S`), as `check` and the API show it.
pub fn iso_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("PT{}S", d.as_secs())
    } else {
        format!("PT{}S", d.as_secs_f64())
    }
}

fn read_connectors(doc: &mut Doc<'_>, root: &Spanned<DeTable<'_>>) -> Vec<ConnectorConfig> {
    let mut out = Vec::new();
    for (key, _) in root.get_ref().iter() {
        if key.get_ref() != "connectors" {
            doc.problem(
                key.span(),
                key.get_ref(),
                "unknown key: the file holds one table, connectors".into(),
            );
        }
    }
    let Some(connectors) = root.get_ref().get("connectors") else {
        return out;
    };
    let DeValue::Table(connectors) = connectors.get_ref() else {
        doc.problem(connectors.span(), "connectors", "must be a table".into());
        return out;
    };
    // File order: by where each connector's name first appears.
    let mut entries: Vec<_> = connectors.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (name, value) in entries {
        let field = format!("connectors.{}", name.get_ref());
        if !valid_name(name.get_ref()) {
            doc.problem(
                name.span(),
                &field,
                "a connector name must match ^[a-z][a-z0-9_-]{0,62}$ and not be \"reload\"".into(),
            );
            continue;
        }
        if let Some(c) = read_connector(doc, name.get_ref(), field, value) {
            out.push(c);
        }
    }
    out
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name != "reload"
        && name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn read_connector(
    doc: &mut Doc<'_>,
    name: &str,
    field: String,
    value: &Spanned<DeValue<'_>>,
) -> Option<ConnectorConfig> {
    let mut t = Table::new(field, value, doc)?;
    let kind_name = t.required_string(doc, "kind");
    let insecure = t.boolean(doc, "insecure", false);
    let known = kind_name
        .as_ref()
        .is_some_and(|k| kind::KINDS.contains(&k.get_ref().as_str()));
    let kind = match &kind_name {
        Some(k) => kind::read(doc, &mut t, k, insecure),
        None => None,
    };
    if !known {
        t.accept_rest();
    }
    let principal = match t.strings(doc, "principal") {
        None => vec![PrincipalSource::UserName],
        Some(list) if list.is_empty() => {
            doc.problem(
                t.span.clone(),
                &t.field("principal"),
                "must name at least one source".into(),
            );
            Vec::new()
        }
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let parsed = PrincipalSource::parse(s.get_ref());
                if parsed.is_none() {
                    doc.problem(
                        s.span(),
                        &format!("{}[{i}]", t.field("principal")),
                        format!(
                            "unknown principal source \"{}\"; use userName, userNameLocalPart, externalId or an extension attribute urn:…:attribute",
                            s.get_ref()
                        ),
                    );
                }
                parsed
            })
            .collect(),
    };
    let principal_case = t.choice(
        doc,
        "principal_case",
        PrincipalCase::Preserve,
        &[
            ("preserve", PrincipalCase::Preserve),
            ("lower", PrincipalCase::Lower),
        ],
    );
    let reconcile_interval = t.duration(
        doc,
        "reconcile_interval",
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    let on_drift = t.choice(
        doc,
        "on_drift",
        OnDrift::Revoke,
        &[("revoke", OnDrift::Revoke), ("report", OnDrift::Report)],
    );
    let max_revocations_per_pass = t.integer(doc, "max_revocations_per_pass", 1..=u32::MAX, 100);
    let ignore_members = t
        .strings(doc, "ignore_members")
        .unwrap_or_default()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    let max_attempts = t.integer(doc, "max_attempts", 1..=u32::MAX, 10);
    let concurrency = t.integer(doc, "concurrency", 1..=64, 4);
    let default_timeout = match kind {
        Some(KindConfig::Exec(_)) => Duration::from_secs(30),
        _ => Duration::from_secs(10),
    };
    let timeout = t.duration(doc, "timeout", default_timeout, Duration::ZERO);
    let endpoint = kind.as_ref().map(|k| (name, k.endpoint().to_string()));
    let rules = read_rules(
        doc,
        &mut t,
        kind_name.as_ref().map(|k| k.get_ref().as_str()),
        endpoint,
    );
    t.finish(doc);
    if insecure {
        doc.warn(format!(
            "connector {name}: insecure = true allows an unencrypted or unverified connection"
        ));
    }
    Some(ConnectorConfig {
        name: name.to_string(),
        kind: kind?,
        rules,
        principal,
        principal_case,
        reconcile_interval,
        on_drift,
        max_revocations_per_pass,
        ignore_members,
        max_attempts,
        concurrency,
        timeout,
        insecure,
    })
}

fn read_rules(
    doc: &mut Doc<'_>,
    t: &mut Table<'_, '_>,
    kind: Option<&str>,
    owner: Option<(&str, String)>,
) -> Vec<Rule> {
    let field = t.field("rules");
    let Some(v) = t.value("rules") else {
        t.missing(doc, "rules");
        return Vec::new();
    };
    let DeValue::Array(items) = v.get_ref() else {
        doc.problem(
            v.span(),
            &field,
            "must be an array of tables ([[…rules]])".into(),
        );
        return Vec::new();
    };
    if items.is_empty() {
        doc.problem(v.span(), &field, "must hold at least one rule".into());
    }
    let mut rules = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(mut r) = Table::new(format!("{field}[{index}]"), item, doc) else {
            continue;
        };
        let role = r.required_string(doc, "role").and_then(|s| {
            let found = rolegate_core::provisioning::resolve_role(s.get_ref());
            if found.is_none() {
                doc.problem(
                    s.span(),
                    &r.field("role"),
                    format!(
                        "unknown role definition \"{}\"; use a displayName such as \"Reader\" or a templateId",
                        s.get_ref()
                    ),
                );
            }
            found
        });
        let scope = r.required_string(doc, "scope").and_then(|s| {
            match ArmId::parse(s.get_ref().trim_end_matches('/')) {
                Ok(id) => Some(id),
                Err(e) => {
                    doc.problem(
                        s.span(),
                        &r.field("scope"),
                        format!("not an ARM id: {}", e.message),
                    );
                    None
                }
            }
        });
        let target = r.required_string(doc, "target").and_then(|s| {
            let problem = if s.get_ref().is_empty() {
                Some("must not be empty".to_string())
            } else {
                kind.and_then(|k| kind::target_problem(k, s.get_ref()))
            };
            if let Some(message) = problem {
                doc.problem(s.span(), &r.field("target"), message);
                return None;
            }
            if let Some((connector, endpoint)) = &owner {
                doc.claim_target(
                    endpoint,
                    s.get_ref(),
                    connector,
                    s.span(),
                    &r.field("target"),
                );
            }
            Some(s.into_inner())
        });
        let line = doc.position(item.span().start).0;
        r.finish(doc);
        if let (Some(role), Some(scope), Some(target)) = (role, scope, target) {
            rules.push(Rule {
                index,
                line,
                role,
                scope,
                target,
            });
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_are_seconds() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("42"), Some(Duration::from_secs(42)));
        for bad in ["", "s", "1.5s", "1w", "-1s", "1 s", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(iso_duration(Duration::from_secs(60)), "PT60S");
        assert_eq!(iso_duration(Duration::from_millis(1500)), "PT1.5S");
    }

    #[test]
    fn names_are_lower_case_identifiers_and_reload_is_reserved() {
        for ok in ["pg", "pg_main", "corp-ldap2", &"a".repeat(63)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Pg", "1pg", "pg.main", "reload", &"a".repeat(64), "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
