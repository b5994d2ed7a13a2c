//! The background scheduler's timer (decisions.md §10): every `--scheduler-interval` it runs
//! a pass of [`rolegate_core::scheduler`]'s jobs through the server's one write path
//! ([`AppState::write_as_system`]), so its transactions are serialised with the requests'
//! and the access index learns about every expiry before the next write commits.
//!
//! The first pass runs as soon as the server starts, so work that fell due while it was
//! down is done at once. A pass runs each job in batches until nothing due is left; each
//! batch is one write transaction, and the write lock is released between batches so
//! requests are not held up by a large backlog. Stopping (graceful shutdown) is checked
//! between batches: a transaction is never cut short.

use rolegate_api::AppState;
use rolegate_core::operation;
use rolegate_core::scheduler::{self, BATCH_SIZE, Job};
use rolegate_core::store::Tx;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Parses `--scheduler-interval`: seconds, fractions allowed (`0.5`), more than zero and at
/// most a day.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(format!(
            "the number of seconds must be more than 0 and at most 86400, not {s}"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

/// Runs passes every `every` until `stop` turns true or its sender is dropped; the pass in
/// progress (if any) finishes its current batch first.
pub async fn run(state: Arc<AppState>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    // A pass longer than the interval delays the next one instead of bunching ticks up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            // `Err` (the sender is gone: the server has stopped) stops it too.
            _ = stop.wait_for(|s| *s) => break,
            _ = ticks.tick() => {}
        }
        let s = Arc::clone(&state);
        let flag = stop.clone();
        match tokio::task::spawn_blocking(move || pass(&s, &|| stopping(&flag))).await {
            Ok(()) => {}
            Err(e) => tracing::error!(error = %e, "scheduler pass failed"),
        }
    }
    tracing::info!("scheduler stopped");
}

fn stopping(stop: &watch::Receiver<bool>) -> bool {
    // A dropped sender means the server is gone: stop too.
    *stop.borrow() || stop.has_changed().is_err()
}

/// One pass: every job, batch after batch, until nothing due is left or `stop()` says so.
/// A failing batch is rolled back and logged; the job is tried again at the next pass.
pub fn pass(state: &AppState, stop: &dyn Fn() -> bool) {
    // Nodes sharing a database: keep this node's access index current even when idle.
    if let Err(e) = state.refresh_access() {
        tracing::warn!(error = %e, "could not catch up with the access log");
    }
    let caller = scheduler::caller();
    for job in Job::ALL {
        loop {
            if stop() {
                return;
            }
            let correlation_id = rolegate_api::new_id();
            let batch = state.write_as_system(&caller, &correlation_id, |tx: &mut dyn Tx, ctx| {
                let mut b = operation::scheduler::run(job, tx, ctx, BATCH_SIZE)?;
                let changes = std::mem::take(&mut b.changes);
                Ok((b, changes))
            });
            match batch {
                Ok(b) => {
                    if b.done > 0 {
                        tracing::info!(
                            job = job.name(),
                            done = b.done,
                            "scheduler batch committed"
                        );
                    }
                    if !b.more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(job = job.name(), error = %e, "scheduler batch failed; retrying at the next pass");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_positive_seconds_with_fractions() {
        assert_eq!(parse_interval("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("0.2"), Ok(Duration::from_millis(200)));
        for bad in ["0", "-1", "nan", "inf", "abc", "", "86401"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
