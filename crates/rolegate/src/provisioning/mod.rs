//! Provisioning connectors at run time (connectors.md §6, §7): the planner turns every
//! change of desired state into items, each connector's worker applies them in order per
//! key, and each connector's reconciler compares the target with the desired state at its
//! interval. The rules are `rolegate_core::provisioning`; the kinds are
//! `rolegate_connectors`; this module only schedules and records.
//!
//! Items are planned from the committed state rather than written by each request's own
//! transaction: after every commit (and at every start or end instant of an assignment a
//! rule matches) the planner computes each connector's desired state in one write
//! transaction and writes an item for every key whose requested operation must change.
//! Nothing acknowledged is lost that way: a node that stops between a commit and its
//! planning pass plans it at its next start (or another node does, from the access log),
//! and planning is idempotent, so several nodes planning the same change write its items
//! once (docs/connectors.md, "Delivery").

mod metrics;
mod operator;
mod planner;
mod reconciler;
mod worker;

use rolegate_api::AppState;
use rolegate_connectors::config::{ConnectorConfig, ConnectorsConfig};
use rolegate_connectors::connector::{Connector, ConnectorError};
use rolegate_core::access::Caller;
use rolegate_core::provisioning::records::{CONNECTORS_APP_ID, CONNECTORS_APP_NAME, RecordContext};
use rolegate_core::store;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, watch};

/// One configured connector with its live link to the target.
pub struct Link {
    /// Its validated configuration.
    pub config: ConnectorConfig,
    /// The kind's operations.
    connector: Box<dyn Connector>,
    /// What the last contact with the target said.
    pub status: Mutex<LinkStatus>,
    /// Wakes its worker (new items).
    work: Notify,
    /// Wakes its reconciler (a pass asked for now).
    reconcile: Notify,
    /// Its counters, gauges and histograms.
    metrics: metrics::ConnectorMetrics,
    /// The grants its targets held as of the last `list`, kept current by this node's
    /// operations since; `None` until a `list` succeeded.
    present: Mutex<Option<BTreeSet<(String, String)>>>,
    /// The principals it never touches, as its kind compares them
    /// (`ConnectorConfig::untouchable`).
    untouchable: BTreeSet<String>,
    /// Every subject's principal, with the directory generation it was computed at.
    principals: Mutex<Option<(i64, Arc<rolegate_core::provisioning::PrincipalTable>)>>,
    /// What this node's previous planning pass for it saw (for naming causes,
    /// `planner::name_causes`); `None` before the first.
    previous_plan: Mutex<Option<planner::SeenAssignments>>,
    /// Each rule's holders as planning last found them, reused while nothing they depend
    /// on changed (`rule_holders_since`).
    kept_holders: Mutex<rolegate_core::provisioning::KeptHolders>,
    /// What this node's last committed planning pass planned from; a pass that finds the
    /// same inputs is skipped (`planner::Settled`).
    settled: Mutex<Option<planner::Settled>>,
    /// Turns true when a reload replaced it: its tasks stop.
    retired: watch::Sender<bool>,
}

/// A connector's health as the last operation or `list` saw it (§8, §9).
#[derive(Debug, Clone, Default)]
pub struct LinkStatus {
    /// `None` before any contact; whether the target was reached last time.
    pub up: Option<bool>,
    /// When the target last answered.
    pub last_contact: Option<jiff::Timestamp>,
    /// The last failure: code, message (redacted), when.
    pub last_error: Option<(String, String, jiff::Timestamp)>,
}

impl Link {
    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.config.kind.name()
    }

    /// The facts of a provisioning audit record of this connector at `at`, with a fresh id.
    fn record_context(&self, at: jiff::Timestamp) -> RecordContext<'_> {
        RecordContext {
            id: rolegate_api::new_id(),
            connector: &self.config.name,
            kind: self.kind(),
            at,
        }
    }

    /// Every subject's principal in `directory` under `mapping`: the table computed last
    /// if the directory has not changed since (its generation), else a new one, kept.
    fn principals(
        &self,
        directory: &planner::Directory,
        mapping: &rolegate_core::provisioning::PrincipalMapping<'_>,
    ) -> rolegate_core::error::Result<Arc<rolegate_core::provisioning::PrincipalTable>> {
        let mut cache = self.principals.lock().map_err(|_| {
            rolegate_core::error::DomainError::internal("principal cache lock poisoned")
        })?;
        if let Some((at, table)) = cache.as_ref()
            && *at == directory.generation()
        {
            return Ok(Arc::clone(table));
        }
        let table = Arc::new(rolegate_core::provisioning::PrincipalTable::of(
            &directory.subjects,
            mapping,
        ));
        *cache = Some((directory.generation(), Arc::clone(&table)));
        Ok(table)
    }

    /// Whether `principal` is one it never grants, revokes nor reports: `ignore_members`
    /// or its own account.
    fn untouchable(&self, principal: &str) -> bool {
        !self.untouchable.is_empty()
            && self
                .untouchable
                .contains(&self.config.kind.comparable_principal(principal))
    }

    /// Notes that `key` is now present (`true`) or absent in the target.
    fn set_present(&self, key: (String, String), present: bool) {
        if let Ok(mut p) = self.present.lock()
            && let Some(set) = p.as_mut()
        {
            if present {
                set.insert(key);
            } else {
                set.remove(&key);
            }
        }
    }

    /// Records the outcome of one contact with the target.
    fn saw(&self, outcome: &Result<(), ConnectorError>, now: jiff::Timestamp) {
        let Ok(mut s) = self.status.lock() else {
            return;
        };
        match outcome {
            Ok(()) => {
                if s.up == Some(false) {
                    tracing::info!(connector = %self.config.name, kind = self.kind(), "connector target reachable again");
                }
                s.up = Some(true);
                s.last_contact = Some(now);
            }
            Err(e) => {
                if e.unreachable {
                    s.up = Some(false);
                } else {
                    s.up = Some(true);
                    s.last_contact = Some(now);
                }
                s.last_error = Some((e.code.clone(), e.message.clone(), now));
            }
        }
    }
}

/// Every connector of the file, running.
pub struct Provisioning {
    state: Arc<AppState>,
    /// The file given at start, re-read on reload.
    path: String,
    /// The connectors, in file order; replaced whole by a valid reload.
    links: RwLock<Arc<Vec<Arc<Link>>>>,
    /// This node's name on leases.
    node: String,
    /// Reloads: successes and failures.
    reloads: [std::sync::atomic::AtomicU64; 2],
    /// Stops every task.
    stop: watch::Receiver<bool>,
    /// The tasks started so far (awaited at shutdown).
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// The directory as planning last read it, with the generation it was read at
    /// (`planner::Directory::current`).
    directory: Mutex<Option<(i64, Arc<planner::Directory>)>>,
}

/// How long past a connector's `timeout` an operation may run before it is abandoned: the
/// kinds enforce `timeout` themselves (statement and connect timeouts, LDAP operation
/// timeouts, an `exec` run's process group stopped with SIGTERM then SIGKILL 2 s later), so
/// that their own error, not a bare "no answer", is what operators read.
const BACKSTOP: std::time::Duration = std::time::Duration::from_secs(5);

/// Who the connectors' writes run as (their records name the application instead).
fn caller() -> Caller {
    Caller {
        subject_id: CONNECTORS_APP_ID.into(),
        display_name: CONNECTORS_APP_NAME.into(),
        principal_name: None,
        is_tenant_admin: false,
        mfa: false,
    }
}

/// Builds the links of `config` (no network call yet).
fn links_of(config: ConnectorsConfig) -> Result<Vec<Arc<Link>>, String> {
    let mut links = Vec::new();
    for c in config.connectors {
        let connector = rolegate_connectors::kind::build(&c)
            .map_err(|e| format!("connector {}: {e}", c.name))?;
        let untouchable = c.untouchable();
        links.push(Arc::new(Link {
            config: c,
            connector,
            status: Mutex::new(LinkStatus::default()),
            work: Notify::new(),
            reconcile: Notify::new(),
            metrics: metrics::ConnectorMetrics::default(),
            present: Mutex::new(None),
            untouchable,
            principals: Mutex::new(None),
            previous_plan: Mutex::new(None),
            kept_holders: Mutex::new(Default::default()),
            settled: Mutex::new(None),
            retired: watch::channel(false).0,
        }));
    }
    Ok(links)
}

impl Provisioning {
    /// Starts every connector of `config`, read from `path`: the planner, and a worker and
    /// a reconciler per connector, until `stop` turns true; and serves the operator API
    /// and the metrics from them.
    pub fn start(
        state: Arc<AppState>,
        path: &str,
        config: ConnectorsConfig,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Self>> {
        let links = links_of(config).map_err(|e| anyhow::anyhow!(e))?;
        let p = Arc::new(Self {
            state,
            path: path.to_string(),
            links: RwLock::new(Arc::new(Vec::new())),
            node: format!("node-{}", uuid::Uuid::new_v4().simple()),
            reloads: Default::default(),
            stop,
            tasks: Mutex::new(Vec::new()),
            reloading: tokio::sync::Mutex::new(()),
            directory: Mutex::new(None),
        });
        let operator: Arc<dyn rolegate_api::connectors::ConnectorOperator> =
            Arc::new(operator::Operator(Arc::clone(&p)));
        if p.state.connectors.set(operator).is_err() {
            tracing::warn!("the connectors' operator API was already set");
        }
        p.spawn(tokio::spawn(planner::run(Arc::clone(&p), p.stop.clone())));
        p.install(links, "startup");
        Ok(p)
    }

    /// The connectors now, in file order.
    pub fn links(&self) -> Arc<Vec<Arc<Link>>> {
        self.links
            .read()
            .map(|l| Arc::clone(&l))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()))
    }

    /// `e` with every loaded connector's secrets replaced by `***` (§2.3): a kind redacts
    /// its own, this catches one connector's secret in another's error (a shared
    /// password, a program printing its neighbour's token).
    fn scrubbed(&self, mut e: ConnectorError) -> ConnectorError {
        let links = self.links();
        e.message = rolegate_connectors::secret::redact(
            &e.message,
            links.iter().flat_map(|l| l.config.kind.secrets()),
        );
        e
    }

    /// The connector named `name`, or `404 ConnectorNotFound`.
    fn named(&self, name: &str) -> rolegate_core::error::Result<Arc<Link>> {
        self.links()
            .iter()
            .find(|l| l.config.name == name)
            .cloned()
            .ok_or_else(|| rolegate_api::connectors::connector_not_found(name))
    }

    fn spawn(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Puts `links` in force: the old ones retire (their operations in flight finish),
    /// each new one gets a worker and a reconciler whose first pass runs at once with
    /// `trigger`, and the planner plans against them.
    fn install(self: &Arc<Self>, links: Vec<Arc<Link>>, trigger: &'static str) {
        let old = {
            let mut current = self.links.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *current, Arc::new(links))
        };
        for link in old.iter() {
            link.retired.send_replace(true);
        }
        // Off the runtime's threads: the PostgreSQL store blocks.
        let p = Arc::clone(self);
        self.spawn(tokio::spawn(
            async move { p.warn_unregistered_scopes().await },
        ));
        for link in self.links().iter() {
            self.spawn(tokio::spawn(worker::run(
                Arc::clone(self),
                Arc::clone(link),
                self.stop.clone(),
            )));
            self.spawn(tokio::spawn(reconciler::run(
                Arc::clone(self),
                Arc::clone(link),
                self.stop.clone(),
                trigger,
            )));
        }
        self.state.committed.notify_one();
    }

    /// Logs a warning for every rule whose scope is not registered (§3.1): it counts the
    /// assignments on its registered ancestors until it is registered.
    async fn warn_unregistered_scopes(self: Arc<Self>) {
        let (links, state) = (self.links(), Arc::clone(&self.state));
        let missing = blocking(move || {
            rolegate_core::store::read(state.store.as_ref(), |tx| {
                let mut missing = Vec::new();
                for link in links.iter() {
                    for rule in &link.config.rules {
                        if tx.resource_by_external_key(&rule.scope.key())?.is_none() {
                            missing.push((link.config.name.clone(), rule.scope.to_string()));
                        }
                    }
                }
                Ok(missing)
            })
        })
        .await;
        match missing {
            Ok(missing) => {
                for (connector, scope) in missing {
                    tracing::warn!(connector = %connector, scope = %scope, "a connector rule's scope is not registered: it counts the assignments on its registered ancestors until it is");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check the connector rules' scopes"),
        }
    }

    /// Re-reads the file (`SIGHUP`, `POST /rolegate/v1/connectors/reload`): valid, it
    /// replaces the running configuration and every connector starts a pass at once, and
    /// the items of a connector no longer in the file are superseded; invalid, nothing
    /// changes and the problem lines are returned. Either way one audit record and one
    /// count of `rolegate_connectors_reload_total`.
    pub async fn reload(self: &Arc<Self>) -> rolegate_core::error::Result<Result<(), String>> {
        let _one = self.reloading.lock().await;
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            rolegate_connectors::config::load(
                &path,
                &rolegate_connectors::secret::ProcessEnvironment,
            )
        })
        .await
        .map_err(|e| rolegate_core::DomainError::internal(format!("reload task failed: {e}")))?;
        let outcome = loaded
            .map_err(|problems| rolegate_connectors::config::report(&problems))
            .and_then(|config| {
                let warnings = config.warnings.clone();
                links_of(config).map(|links| (links, warnings))
            });
        let now = self.state.clock.now();
        let (failure, left_behind) = match &outcome {
            Err(problems) => {
                for line in problems.lines() {
                    tracing::error!(problem = %line, "connectors reload refused; the running configuration stays");
                }
                (Some(problems.clone()), Vec::new())
            }
            Ok((links, _)) => {
                let removed: Vec<String> = self
                    .links()
                    .iter()
                    .map(|l| l.config.name.clone())
                    .filter(|n| !links.iter().any(|l| &l.config.name == n))
                    .collect();
                (None, removed)
            }
        };
        let (q, path) = (Arc::clone(self), self.path.clone());
        let (fail, removed) = (failure.clone(), left_behind.clone());
        blocking(move || {
            store::write(q.state.store.as_ref(), |tx| {
                let mut left = 0usize;
                for name in &removed {
                    tx.supersede_connector_items(name, now)?;
                    left += tx.connector_ledger(name)?.len();
                }
                let record = rolegate_core::provisioning::records::reload_record(
                    &rolegate_api::new_id(),
                    now,
                    &path,
                    fail.as_deref(),
                    &removed,
                    left,
                );
                tx.append_audit(&record)
            })
        })
        .await?;
        self.reloads[usize::from(failure.is_some())]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match outcome {
            Err(problems) => Ok(Err(problems)),
            Ok((links, warnings)) => {
                for w in &warnings {
                    tracing::warn!(warning = %w, "connectors configuration");
                }
                tracing::info!(
                    connectors = links.len(),
                    "connectors configuration reloaded"
                );
                self.install(links, "reload");
                Ok(Ok(()))
            }
        }
    }

    /// Waits for every task to stop (after `stop` turned true).
    pub async fn finished(&self) {
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "connector task failed");
            }
        }
    }
}

/// How long to sleep from `now` to wake at `at`, at most `poll`: nothing when `at` has
/// passed already (a pass that outlasted the gap to the next instant wakes at once, not a
/// poll later), `poll` when there is no such instant.
fn sleep_until(
    at: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
    poll: std::time::Duration,
) -> std::time::Duration {
    at.map_or(poll, |t| {
        std::time::Duration::try_from(t.duration_since(now))
            .unwrap_or(std::time::Duration::ZERO)
            .min(poll)
    })
}

/// A random factor in [-0.2, 0.2] for backoff jitter (from a v4 UUID's random bits).
fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits as f64 / u64::MAX as f64) * 0.4 - 0.2
}

/// Runs `f` on a blocking thread (the stores are synchronous).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> rolegate_core::error::Result<T> + Send + 'static,
) -> rolegate_core::error::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(rolegate_core::DomainError::internal(format!(
            "blocking task failed: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_instant_already_passed_wakes_at_once_and_none_waits_a_poll() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let poll = Duration::from_secs(1);
        let at = |ms: i64| Some(now + jiff::SignedDuration::from_millis(ms));
        assert_eq!(sleep_until(at(-5), now, poll), Duration::ZERO);
        assert_eq!(sleep_until(at(0), now, poll), Duration::ZERO);
        assert_eq!(sleep_until(at(20), now, poll), Duration::from_millis(20));
        assert_eq!(sleep_until(at(5_000), now, poll), poll);
        assert_eq!(sleep_until(None, now, poll), poll);
    }
}
