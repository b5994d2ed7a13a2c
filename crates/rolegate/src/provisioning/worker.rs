//! A connector's worker (connectors.md §6.3, §6.4): it leases the items that may run (the
//! store never hands out an item while an older one of its key is unfinished), applies up
//! to `concurrency` at once, each within `timeout`, and settles each in one transaction
//! with its audit record: `succeeded` (the ledger follows), `retrying` after a backoff, or
//! `dead` after `max_attempts`. A lease outlives the operation's timeout, so while a node
//! lives nobody else takes its items; when it dies, its leases run out and another node
//! takes them over (applying twice is harmless: every operation is idempotent).

use super::{Link, Provisioning, blocking, metrics};
use rolegate_connectors::connector::{ApplyContext, ConnectorError, Grant};
use rolegate_core::provisioning::delivery::{ConnectorItem, ItemOperation, retry_delay};
use rolegate_core::provisioning::records::{self, Finding};
use rolegate_core::schedule::format_datetime;
use rolegate_core::store::{self, ItemOutcome};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often at most the worker looks for items nobody signalled (another node's items);
/// a retry falling due sooner wakes it at its time.
const POLL: Duration = Duration::from_secs(1);

/// Runs until `stop` turns true or a reload retires `link`; operations in flight then
/// finish and are settled.
pub(super) async fn run(p: Arc<Provisioning>, link: Arc<Link>, mut stop: watch::Receiver<bool>) {
    let concurrency = usize::try_from(link.config.concurrency.max(1)).unwrap_or(1);
    let mut retired = link.retired.subscribe();
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        // A cheap read first: the claim is a write (on PostgreSQL under the cluster's write
        // lock), made only when an item is due.
        let due = next_due(&p, &link).await;
        let now = p.state.clock.now();
        let room = concurrency.saturating_sub(running.len());
        if room > 0 && due.is_some_and(|d| d <= now) {
            match claim(&p, &link, room).await {
                Ok(items) => {
                    for item in items {
                        running.spawn(apply(Arc::clone(&p), Arc::clone(&link), item));
                    }
                }
                Err(e) => {
                    tracing::warn!(connector = %link.config.name, error = %e, "could not read the connector's items")
                }
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = retired.wait_for(|r| *r) => break,
            _ = link.work.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            // A due time already passed waits for a poll (or a finished operation, or new
            // work): an item can be due and still not claimable, behind an unfinished older
            // item of its key, and must not make this loop spin.
            _ = tokio::time::sleep(super::sleep_until(due.filter(|d| *d > now), now, POLL)) => {}
        }
    }
    while running.join_next().await.is_some() {}
}

/// When the connector's next item falls due (`None`: nothing unfinished, or the store
/// could not say: the next poll asks again).
async fn next_due(p: &Arc<Provisioning>, link: &Arc<Link>) -> Option<jiff::Timestamp> {
    let (q, name) = (Arc::clone(p), link.config.name.clone());
    match blocking(move || {
        store::read(q.state.store.as_ref(), |tx| {
            tx.next_connector_item_due(&name)
        })
    })
    .await
    {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(connector = %link.config.name, error = %e, "could not read the connector's items");
            None
        }
    }
}

/// Leases up to `room` items of `link`.
async fn claim(
    p: &Arc<Provisioning>,
    link: &Arc<Link>,
    room: usize,
) -> rolegate_core::error::Result<Vec<ConnectorItem>> {
    let (q, name) = (Arc::clone(p), link.config.name.clone());
    let timeout = link.config.timeout;
    blocking(move || {
        let now = q.state.clock.now();
        let lease = jiff::SignedDuration::try_from((timeout * 2).max(Duration::from_secs(30)))
            .unwrap_or(jiff::SignedDuration::from_secs(30));
        let until = now.checked_add(lease).unwrap_or(now);
        let limit = u32::try_from(room).unwrap_or(u32::MAX);
        store::write(q.state.store.as_ref(), |tx| {
            tx.claim_connector_items(&name, &q.node, now, until, limit)
        })
    })
    .await
}

/// Applies one leased item and settles it.
async fn apply(p: Arc<Provisioning>, link: Arc<Link>, item: ConnectorItem) {
    let name = link.config.name.clone();
    let subject = match &item.subject_id {
        Some(id) => {
            let (s, id) = (Arc::clone(&p.state), id.clone());
            blocking(move || store::read(s.store.as_ref(), |tx| tx.subject(&id)))
                .await
                .ok()
                .flatten()
        }
        None => None,
    };
    let ctx = ApplyContext {
        item_id: item.id.clone(),
        subject: subject.as_ref().map(|s| {
            serde_json::json!({
                "id": s.id, "type": s.kind.as_str(), "userName": s.principal_name,
                "externalId": s.external_id, "displayName": s.display_name,
            })
        }),
        cause: item.cause.clone(),
        assignment_ids: item.assignment_ids.clone(),
        not_after: item.not_after.map(format_datetime),
        created: format_datetime(item.created),
    };
    let grant = Grant {
        target: item.target.clone(),
        principal: item.principal.clone(),
    };
    let operation = async {
        match item.operation {
            ItemOperation::Grant => link.connector.apply(&grant, &ctx).await,
            ItemOperation::Revoke => link.connector.revoke(&grant, &ctx).await,
        }
    };
    let began = std::time::Instant::now();
    // The kind enforces `timeout` itself (an `exec` run's process group gets SIGTERM, then
    // SIGKILL 2 s later, and its standard error becomes the error): this is a backstop.
    let result = match tokio::time::timeout(link.config.timeout + super::BACKSTOP, operation).await
    {
        Ok(r) => r,
        Err(_) => Err(ConnectorError::unreachable(format!(
            "no answer within the timeout of {} ms",
            link.config.timeout.as_millis()
        ))),
    };
    let result = result.map_err(|e| p.scrubbed(e));
    let now = p.state.clock.now();
    link.saw(&result, now);
    let m = &link.metrics;
    let op = metrics::operation_index(item.operation.as_str());
    m.operation_seconds[op].observe(began.elapsed().as_secs_f64());
    metrics::count(&m.operations[op], result.is_ok());
    let outcome = match &result {
        Ok(()) => ItemOutcome::Succeeded,
        Err(e) if item.attempts >= link.config.max_attempts => ItemOutcome::Dead {
            code: e.code.clone(),
            message: e.message.clone(),
        },
        Err(e) => ItemOutcome::Retry {
            next_attempt: now
                .checked_add(retry_delay(item.attempts, super::jitter()))
                .unwrap_or(now),
            code: e.code.clone(),
            message: e.message.clone(),
        },
    };
    let settled = {
        let (q, l, i, o) = (
            Arc::clone(&p),
            Arc::clone(&link),
            item.clone(),
            outcome.clone(),
        );
        blocking(move || settle(&q, &l, &i, &o, subject.as_ref(), now)).await
    };
    let (target, principal, attempt) = (&item.target, &item.principal, item.attempts);
    match (&settled, &result) {
        (Err(e), _) => {
            tracing::warn!(connector = %name, item_id = %item.id, error = %e, "could not record a connector attempt; the lease will run out and it will be tried again")
        }
        (Ok(false), _) => {
            tracing::warn!(connector = %name, item_id = %item.id, "a connector item's lease ran out while it ran; another node took it over")
        }
        (Ok(true), Ok(())) => {
            let granted = item.operation == ItemOperation::Grant;
            link.set_present((item.target.clone(), item.principal.clone()), granted);
            let since_due = now.duration_since(item.due).as_secs_f64();
            m.propagation_seconds[usize::from(!granted)].observe(since_due);
            tracing::info!(connector = %name, kind = link.kind(), %target, %principal, item_id = %item.id, operation = item.operation.as_str(), cause = %item.cause, "connector item applied")
        }
        (Ok(true), Err(e)) => {
            if matches!(outcome, ItemOutcome::Dead { .. }) {
                m.dead_items
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(connector = %name, kind = link.kind(), %target, %principal, item_id = %item.id, attempt, error = %e, "connector item failed for good (dead)")
            } else {
                tracing::warn!(connector = %name, kind = link.kind(), %target, %principal, item_id = %item.id, attempt, error = %e, "connector attempt failed; will retry")
            }
        }
    }
}

/// Settles `item` with `outcome` in one transaction, with its audit record when it
/// succeeded or died.
fn settle(
    p: &Provisioning,
    link: &Link,
    item: &ConnectorItem,
    outcome: &ItemOutcome,
    subject: Option<&rolegate_core::directory::Subject>,
    now: jiff::Timestamp,
) -> rolegate_core::error::Result<bool> {
    store::write(p.state.store.as_ref(), |tx| {
        // Which reconciliation finding a reconcile item answers: a revoke of a grant in
        // the ledger is stale, of one outside it made outside Rolegate.
        let finding = if item.cause == "reconcile" {
            Some(match item.operation {
                ItemOperation::Grant => Finding::Missing,
                ItemOperation::Revoke
                    if tx.in_connector_ledger(
                        &item.connector,
                        &item.target,
                        &item.principal,
                    )? =>
                {
                    Finding::Stale
                }
                ItemOperation::Revoke => Finding::Outside,
            })
        } else {
            None
        };
        if !tx.settle_connector_item(item, &p.node, outcome, now)? {
            return Ok(false);
        }
        let error = match outcome {
            ItemOutcome::Succeeded => None,
            ItemOutcome::Dead { code, message } => Some(format!("{code}: {message}")),
            ItemOutcome::Retry { .. } => return Ok(true),
        };
        let ctx = link.record_context(now);
        // The assignment, for its resource (its R3 holders read the record too) and its
        // request (a revoke's assignment may have moved to history already).
        let assignment = match item.assignment_ids.first() {
            Some(a) => match tx.assignment(a)? {
                Some(live) => Some(live),
                None => tx.assignment_in_history(a)?,
            },
            None => None,
        };
        let record = records::item_record(
            &ctx,
            item,
            finding,
            error.as_deref(),
            subject,
            assignment.as_ref(),
        );
        tx.append_audit(&record)?;
        Ok(true)
    })
}
