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

mod planner;
mod reconciler;
mod worker;

use rolegate_api::AppState;
use rolegate_connectors::config::{ConnectorConfig, ConnectorsConfig};
use rolegate_connectors::connector::{Connector, ConnectorError};
use rolegate_core::access::Caller;
use rolegate_core::provisioning::records::CONNECTORS_APP_ID;
use std::sync::{Arc, Mutex};
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
    /// The connectors, in file order.
    pub links: Vec<Arc<Link>>,
    /// This node's name on leases.
    node: String,
}

/// Who the connectors' writes run as (their records name the application instead).
fn caller() -> Caller {
    Caller {
        subject_id: CONNECTORS_APP_ID.into(),
        display_name: "Rolegate connectors".into(),
        principal_name: None,
        is_tenant_admin: false,
        mfa: false,
    }
}

impl Provisioning {
    /// Builds every connector of `config` (no network call yet).
    pub fn new(state: Arc<AppState>, config: ConnectorsConfig) -> anyhow::Result<Arc<Self>> {
        let mut links = Vec::new();
        for c in config.connectors {
            let connector = rolegate_connectors::kind::build(&c)
                .map_err(|e| anyhow::anyhow!("connector {}: {e}", c.name))?;
            links.push(Arc::new(Link {
                config: c,
                connector,
                status: Mutex::new(LinkStatus::default()),
                work: Notify::new(),
                reconcile: Notify::new(),
            }));
        }
        Ok(Arc::new(Self {
            state,
            links,
            node: format!("node-{}", uuid::Uuid::new_v4().simple()),
        }))
    }

    /// Starts the planner, and a worker and a reconciler per connector; they stop when
    /// `stop` turns true.
    pub fn start(self: &Arc<Self>, stop: &watch::Sender<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(planner::run(
            Arc::clone(self),
            stop.subscribe(),
        ))];
        for link in &self.links {
            tasks.push(tokio::spawn(worker::run(
                Arc::clone(self),
                Arc::clone(link),
                stop.subscribe(),
            )));
            tasks.push(tokio::spawn(reconciler::run(
                Arc::clone(self),
                Arc::clone(link),
                stop.subscribe(),
            )));
        }
        tasks
    }
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
