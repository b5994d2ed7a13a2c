//! `GET /metrics` in the Prometheus text format: request counts by status class, a latency
//! histogram, and the size of the access index. Counters are process-wide atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 9] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

struct HttpMetrics {
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

static HTTP: HttpMetrics = HttpMetrics {
    by_class: [const { AtomicU64::new(0) }; 5],
    buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
    count: AtomicU64::new(0),
    sum_us: AtomicU64::new(0),
};

/// Records one handled request.
pub fn record(status: u16, elapsed: std::time::Duration) {
    let class = usize::from((status / 100).clamp(1, 5)) - 1;
    if let Some(c) = HTTP.by_class.get(class) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    let secs = elapsed.as_secs_f64();
    for (bound, bucket) in BUCKETS.iter().zip(&HTTP.buckets) {
        if secs <= *bound {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }
    HTTP.count.fetch_add(1, Ordering::Relaxed);
    HTTP.sum_us.fetch_add(
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// The AuthZEN endpoints counted in `rolegate_authzen_requests_total` (authzen.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzenEndpoint {
    /// `POST /access/v1/evaluation` (counted per decision).
    Evaluation,
    /// `POST /access/v1/evaluations` (counted per decision of each item).
    Evaluations,
    /// `POST /access/v1/search/subject`.
    SearchSubject,
    /// `POST /access/v1/search/resource`.
    SearchResource,
    /// `POST /access/v1/search/action`.
    SearchAction,
}

const AUTHZEN_NAMES: [&str; 5] = [
    "evaluation",
    "evaluations",
    "search/subject",
    "search/resource",
    "search/action",
];

/// Per endpoint: denials, permits (searches count in the first).
static AUTHZEN: [[AtomicU64; 2]; 5] = [const { [const { AtomicU64::new(0) }; 2] }; 5];

/// Counts one AuthZEN decision (`permitted` is `None` for a search).
pub fn record_authzen(endpoint: AuthzenEndpoint, permitted: Option<bool>) {
    let i = endpoint as usize;
    if let Some(row) = AUTHZEN.get(i) {
        row[usize::from(permitted == Some(true))].fetch_add(1, Ordering::Relaxed);
    }
}

/// Group commit: transactions committed, writes they carried, writes run again,
/// transactions rolled back to run again with savepoints.
static BATCHES: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Counts one committed batch of `writes` writes, `reruns` of which must run again.
pub fn record_batch(writes: usize, reruns: usize) {
    BATCHES[0].fetch_add(1, Ordering::Relaxed);
    BATCHES[1].fetch_add(writes as u64, Ordering::Relaxed);
    BATCHES[2].fetch_add(reruns as u64, Ordering::Relaxed);
}

/// Counts one batch rolled back to run again with a savepoint per write.
pub fn record_guarded_rerun() {
    BATCHES[3].fetch_add(1, Ordering::Relaxed);
}

/// The exposition text, with `assignments` live assignments in the access index.
pub fn render(assignments: usize) -> String {
    let mut out = String::new();
    out.push_str("# HELP rolegate_http_requests_total HTTP requests handled, by status class.\n");
    out.push_str("# TYPE rolegate_http_requests_total counter\n");
    for (i, c) in HTTP.by_class.iter().enumerate() {
        out.push_str(&format!(
            "rolegate_http_requests_total{{class=\"{}xx\"}} {}\n",
            i + 1,
            c.load(Ordering::Relaxed)
        ));
    }
    out.push_str("# HELP rolegate_http_request_duration_seconds Time to handle a request.\n");
    out.push_str("# TYPE rolegate_http_request_duration_seconds histogram\n");
    for (bound, bucket) in BUCKETS.iter().zip(&HTTP.buckets) {
        out.push_str(&format!(
            "rolegate_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}\n",
            bucket.load(Ordering::Relaxed)
        ));
    }
    let count = HTTP.count.load(Ordering::Relaxed);
    out.push_str(&format!(
        "rolegate_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n"
    ));
    out.push_str(&format!(
        "rolegate_http_request_duration_seconds_sum {}\n",
        HTTP.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    ));
    out.push_str(&format!(
        "rolegate_http_request_duration_seconds_count {count}\n"
    ));
    out.push_str("# HELP rolegate_authzen_requests_total AuthZEN decisions (by endpoint and decision) and searches (by endpoint).\n");
    out.push_str("# TYPE rolegate_authzen_requests_total counter\n");
    for (i, name) in AUTHZEN_NAMES.iter().enumerate() {
        let row = &AUTHZEN[i];
        if name.starts_with("search/") {
            out.push_str(&format!(
                "rolegate_authzen_requests_total{{endpoint=\"{name}\"}} {}\n",
                row[0].load(Ordering::Relaxed)
            ));
        } else {
            for (d, label) in [(1, "permit"), (0, "deny")] {
                out.push_str(&format!(
                    "rolegate_authzen_requests_total{{endpoint=\"{name}\",decision=\"{label}\"}} {}\n",
                    row[d].load(Ordering::Relaxed)
                ));
            }
        }
    }
    for (i, (name, help)) in [
        (
            "rolegate_write_batches_total",
            "Write transactions committed for handlers' writes (group commit).",
        ),
        (
            "rolegate_batched_writes_total",
            "Handlers' writes run in those transactions (refusals included).",
        ),
        (
            "rolegate_write_reruns_total",
            "Writes run again in the next batch: the batch had changed what they read.",
        ),
        (
            "rolegate_write_batches_guarded_total",
            "Write transactions rolled back to run again with a savepoint per write: one of their writes failed after writing.",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        out.push_str(&format!("{name} {}\n", BATCHES[i].load(Ordering::Relaxed)));
    }
    out.push_str(
        "# HELP rolegate_access_index_assignments Live assignments held in the access index.\n",
    );
    out.push_str("# TYPE rolegate_access_index_assignments gauge\n");
    out.push_str(&format!(
        "rolegate_access_index_assignments {assignments}\n"
    ));
    out
}
