//! The connectors' counters, gauges and histograms (connectors.md §10), kept per connector
//! in process-wide atomics and rendered in the Prometheus text format. Labels are the
//! connector's name and kind, never principals or targets.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds of every histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The operations counted per connector.
pub const OPERATIONS: [&str; 3] = ["grant", "revoke", "list"];
/// The drift findings counted per connector.
pub const FINDINGS: [&str; 3] = ["missing", "stale", "outside"];

/// One connector's metrics.
#[derive(Debug, Default)]
pub struct ConnectorMetrics {
    /// Per operation (grant, revoke, list): successes and failures.
    pub operations: [[AtomicU64; 2]; 3],
    /// Per operation: one call's duration.
    pub operation_seconds: [Histogram; 3],
    /// Per item operation (grant, revoke): from the cause to applied.
    pub propagation_seconds: [Histogram; 2],
    /// Items that went dead.
    pub dead_items: AtomicU64,
    /// Findings per kind (missing, stale, outside).
    pub drift: [AtomicU64; 3],
    /// Passes: successes and failures.
    pub reconciles: [AtomicU64; 2],
    /// Pass durations.
    pub reconcile_seconds: Histogram,
    /// Unix time of the last successful pass (0: none yet).
    pub last_reconcile_success: AtomicI64,
    /// Outside grants present after the last pass.
    pub outside_grants: AtomicU64,
    /// Subjects currently unmapped.
    pub unmapped_subjects: AtomicU64,
}

/// Index of an operation name in [`OPERATIONS`].
pub fn operation_index(name: &str) -> usize {
    OPERATIONS.iter().position(|o| *o == name).unwrap_or(0)
}

/// Adds one to a success/failure pair.
pub fn count(pair: &[AtomicU64; 2], success: bool) {
    pair[usize::from(!success)].fetch_add(1, Ordering::Relaxed);
}

/// What the database says about one connector at render time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// 1 when the last contact reached the target, 0 when not; `None` before any.
    pub up: Option<bool>,
    /// Items by state: pending, in_progress, retrying, dead.
    pub items: [u64; 4],
    /// Revokes due more than 60 s ago and not applied.
    pub overdue_revocations: u64,
}

/// Reads one per-connector series' value.
type Reading = fn(&ConnectorMetrics, &Snapshot) -> String;

/// Renders `rolegate_connector*` series for `(name, kind, metrics, snapshot)` and the
/// process's reload counters.
pub fn render(
    connectors: &[(&str, &str, &ConnectorMetrics, Snapshot)],
    reloads: &[AtomicU64; 2],
) -> String {
    let mut out = String::new();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    header(
        &mut out,
        "rolegate_connector_up",
        "gauge",
        "1 when the last operation or list reached the target",
    );
    for (name, kind, _, snap) in connectors {
        let _ = writeln!(
            out,
            "rolegate_connector_up{{connector=\"{name}\",kind=\"{kind}\"}} {}",
            u8::from(snap.up.unwrap_or(false))
        );
    }
    header(
        &mut out,
        "rolegate_connector_items",
        "gauge",
        "Items by state",
    );
    for (name, _, _, snap) in connectors {
        for (state, n) in ["pending", "in_progress", "retrying", "dead"]
            .iter()
            .zip(snap.items)
        {
            let _ = writeln!(
                out,
                "rolegate_connector_items{{connector=\"{name}\",state=\"{state}\"}} {n}"
            );
        }
    }
    header(
        &mut out,
        "rolegate_connector_operations_total",
        "counter",
        "Calls to the target",
    );
    for (name, _, m, _) in connectors {
        for (op, pair) in OPERATIONS.iter().zip(&m.operations) {
            for (result, n) in ["success", "failure"].iter().zip(pair) {
                let _ = writeln!(
                    out,
                    "rolegate_connector_operations_total{{connector=\"{name}\",operation=\"{op}\",result=\"{result}\"}} {}",
                    load(n)
                );
            }
        }
    }
    header(
        &mut out,
        "rolegate_connector_operation_duration_seconds",
        "histogram",
        "One call to the target",
    );
    for (name, _, m, _) in connectors {
        for (op, h) in OPERATIONS.iter().zip(&m.operation_seconds) {
            h.render(
                &mut out,
                "rolegate_connector_operation_duration_seconds",
                &format!("connector=\"{name}\",operation=\"{op}\""),
            );
        }
    }
    header(
        &mut out,
        "rolegate_connector_propagation_seconds",
        "histogram",
        "From the cause (commit, start or end instant) to applied",
    );
    for (name, _, m, _) in connectors {
        for (op, h) in ["grant", "revoke"].iter().zip(&m.propagation_seconds) {
            h.render(
                &mut out,
                "rolegate_connector_propagation_seconds",
                &format!("connector=\"{name}\",operation=\"{op}\""),
            );
        }
    }
    let gauges: [(&str, &str, &str, Reading); 5] = [
        (
            "rolegate_connector_overdue_revocations",
            "gauge",
            "Revokes due more than 60 s ago and not applied",
            |_, s| s.overdue_revocations.to_string(),
        ),
        (
            "rolegate_connector_dead_items_total",
            "counter",
            "Items that went dead",
            |m, _| m.dead_items.load(Ordering::Relaxed).to_string(),
        ),
        (
            "rolegate_connector_outside_grants",
            "gauge",
            "Grants made outside Rolegate present after the last pass",
            |m, _| m.outside_grants.load(Ordering::Relaxed).to_string(),
        ),
        (
            "rolegate_connector_unmapped_subjects",
            "gauge",
            "Subjects currently unmapped",
            |m, _| m.unmapped_subjects.load(Ordering::Relaxed).to_string(),
        ),
        (
            "rolegate_connector_last_reconcile_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful pass",
            |m, _| m.last_reconcile_success.load(Ordering::Relaxed).to_string(),
        ),
    ];
    for (metric, kind, help, value) in gauges {
        header(&mut out, metric, kind, help);
        for (name, _, m, snap) in connectors {
            let _ = writeln!(out, "{metric}{{connector=\"{name}\"}} {}", value(m, snap));
        }
    }
    header(
        &mut out,
        "rolegate_connector_drift_total",
        "counter",
        "Reconciliation findings",
    );
    for (name, _, m, _) in connectors {
        for (finding, n) in FINDINGS.iter().zip(&m.drift) {
            let _ = writeln!(
                out,
                "rolegate_connector_drift_total{{connector=\"{name}\",kind=\"{finding}\"}} {}",
                load(n)
            );
        }
    }
    header(
        &mut out,
        "rolegate_connector_reconcile_total",
        "counter",
        "Reconciliation passes",
    );
    for (name, _, m, _) in connectors {
        for (result, n) in ["success", "failure"].iter().zip(&m.reconciles) {
            let _ = writeln!(
                out,
                "rolegate_connector_reconcile_total{{connector=\"{name}\",result=\"{result}\"}} {}",
                load(n)
            );
        }
    }
    header(
        &mut out,
        "rolegate_connector_reconcile_duration_seconds",
        "histogram",
        "Pass duration",
    );
    for (name, _, m, _) in connectors {
        m.reconcile_seconds.render(
            &mut out,
            "rolegate_connector_reconcile_duration_seconds",
            &format!("connector=\"{name}\""),
        );
    }
    header(
        &mut out,
        "rolegate_connectors_reload_total",
        "counter",
        "Reloads of the connectors file",
    );
    for (result, n) in ["success", "failure"].iter().zip(reloads) {
        let _ = writeln!(
            out,
            "rolegate_connectors_reload_total{{result=\"{result}\"}} {}",
            load(n)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_series_carry_only_bounded_labels() {
        let m = ConnectorMetrics::default();
        m.propagation_seconds[0].observe(0.04);
        m.propagation_seconds[0].observe(0.3);
        count(&m.operations[operation_index("grant")], true);
        count(&m.operations[operation_index("list")], false);
        let text = render(
            &[(
                "pg",
                "postgresql",
                &m,
                Snapshot {
                    up: Some(true),
                    items: [1, 0, 2, 0],
                    overdue_revocations: 0,
                },
            )],
            &[AtomicU64::new(1), AtomicU64::new(0)],
        );
        for line in [
            "rolegate_connector_up{connector=\"pg\",kind=\"postgresql\"} 1",
            "rolegate_connector_items{connector=\"pg\",state=\"retrying\"} 2",
            "rolegate_connector_operations_total{connector=\"pg\",operation=\"grant\",result=\"success\"} 1",
            "rolegate_connector_operations_total{connector=\"pg\",operation=\"list\",result=\"failure\"} 1",
            "rolegate_connector_propagation_seconds_bucket{connector=\"pg\",operation=\"grant\",le=\"0.05\"} 1",
            "rolegate_connector_propagation_seconds_bucket{connector=\"pg\",operation=\"grant\",le=\"0.5\"} 2",
            "rolegate_connector_propagation_seconds_count{connector=\"pg\",operation=\"grant\"} 2",
            "rolegate_connectors_reload_total{result=\"success\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
