//! A connector's reconciler (connectors.md §7): once at start, then `reconcile_interval`
//! after each pass ends (or at once when asked), it reads the managed targets with `list`,
//! compares them with the desired state at one instant, and writes items for what differs:
//! missing grants restored, stale ones revoked, grants made outside Rolegate revoked or
//! reported. One pass per connector at a time in the whole cluster (a lease row); a `list`
//! that fails changes nothing; over `max_revocations_per_pass`, nothing is revoked.

use super::planner::plan_link;
use super::{Link, Provisioning, blocking, caller, metrics};
use rolegate_connectors::connector::ConnectorError;
use rolegate_core::error::Result;
use rolegate_core::provisioning::delivery::{
    Cause, ConnectorItem, ItemOperation, LedgerEntry, PlannedItem,
};
use rolegate_core::provisioning::records;
use rolegate_core::provisioning::{OnDrift, reconcile};
use rolegate_core::schedule::format_datetime;
use rolegate_core::store::{self, Tx};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// A dead item is re-armed by the first pass at least this long after it died (§6.4).
const REARM_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// Runs until `stop` turns true or a reload retires `link`; the first pass at once, with
/// `trigger` (`startup`, `reload`).
pub(super) async fn run(
    p: Arc<Provisioning>,
    link: Arc<Link>,
    mut stop: watch::Receiver<bool>,
    mut trigger: &'static str,
) {
    let mut retired = link.retired.subscribe();
    loop {
        if let Err(e) = pass(&p, &link, trigger).await {
            tracing::warn!(connector = %link.config.name, error = %e, "reconciliation pass could not be recorded");
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = retired.wait_for(|r| *r) => break,
            _ = link.reconcile.notified() => trigger = "operator",
            _ = tokio::time::sleep(link.config.reconcile_interval) => trigger = "interval",
        }
    }
}

/// The lease that keeps a connector's passes one at a time in the cluster.
fn lease_name(link: &Link) -> String {
    format!("reconcile:{}", link.config.name)
}

/// One pass, unless another node is running one.
async fn pass(p: &Arc<Provisioning>, link: &Arc<Link>, trigger: &str) -> Result<()> {
    let (q, lease) = (Arc::clone(p), lease_name(link));
    let hold = (link.config.timeout * 3).max(Duration::from_secs(60));
    let taken = blocking(move || {
        let now = q.state.clock.now();
        let until = now
            .checked_add(jiff::SignedDuration::try_from(hold).unwrap_or(REARM_AFTER))
            .unwrap_or(now);
        store::write(q.state.store.as_ref(), |tx| {
            tx.claim_connector_lease(&lease, &q.node, now, until)
        })
    })
    .await?;
    if !taken {
        return Ok(());
    }
    let started = p.state.clock.now();
    let targets: Vec<String> = link
        .config
        .rules
        .iter()
        .map(|r| r.target.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let began = std::time::Instant::now();
    let listed = match tokio::time::timeout(
        link.config.timeout + super::BACKSTOP,
        link.connector.list(&targets),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(ConnectorError::unreachable(format!(
            "list gave no answer within the timeout of {} ms",
            link.config.timeout.as_millis()
        ))),
    };
    let listed = listed.map_err(|e| p.scrubbed(e));
    link.saw(
        &listed.as_ref().map(|_| ()).map_err(Clone::clone),
        p.state.clock.now(),
    );
    let m = &link.metrics;
    let list = metrics::operation_index("list");
    m.operation_seconds[list].observe(began.elapsed().as_secs_f64());
    metrics::count(&m.operations[list], listed.is_ok());
    if let (Ok(grants), Ok(mut present)) = (&listed, link.present.lock()) {
        *present = Some(
            grants
                .iter()
                .map(|g| (g.target.clone(), g.principal.clone()))
                .collect(),
        );
    }
    let listed_ok = listed.is_ok();
    let (q, l, trigger) = (Arc::clone(p), Arc::clone(link), trigger.to_string());
    let summary = blocking(move || {
        let correlation_id = rolegate_api::new_id();
        q.state
            .write_unsignalled(&caller(), &correlation_id, |tx: &mut dyn Tx, ctx| {
                let summary = compare(tx, &q, &l, &trigger, started, ctx.now, listed, ctx.new_id)?;
                tx.record_reconcile_pass(&l.config.name, &summary)?;
                tx.release_connector_lease(&lease_name(&l), &q.node)?;
                Ok((summary, Vec::new()))
            })
    })
    .await?;
    let number = |k: &str| summary[k].as_u64().unwrap_or(0);
    let found = metrics::FINDINGS.iter().any(|k| number(k) > 0);
    let succeeded = summary["status"] == "succeeded";
    metrics::count(&m.reconciles, succeeded);
    m.reconcile_seconds.observe(began.elapsed().as_secs_f64());
    // Findings count once the targets were read, also in a pass the safety valve
    // refused (what it found is drift all the same).
    if listed_ok {
        for (finding, counter) in metrics::FINDINGS.iter().zip(&m.drift) {
            counter.fetch_add(number(finding), Ordering::Relaxed);
        }
        m.outside_grants.store(number("outside"), Ordering::Relaxed);
        m.unmapped_subjects
            .store(number("unmapped"), Ordering::Relaxed);
    }
    if succeeded {
        m.last_reconcile_success
            .store(p.state.clock.now().as_second(), Ordering::Relaxed);
    }
    if summary["status"] == "failed" {
        tracing::warn!(connector = %link.config.name, error = %summary["error"], "reconciliation pass failed");
    } else if found {
        tracing::info!(connector = %link.config.name, missing = %summary["missing"], stale = %summary["stale"], outside = %summary["outside"], "reconciliation pass found drift");
    }
    link.work.notify_one();
    Ok(())
}

/// Compares, writes the items and findings, and returns the pass summary (§7.4).
#[allow(clippy::too_many_arguments)]
fn compare(
    tx: &mut dyn Tx,
    p: &Provisioning,
    link: &Link,
    trigger: &str,
    started: jiff::Timestamp,
    now: jiff::Timestamp,
    listed: std::result::Result<Vec<rolegate_connectors::connector::Grant>, ConnectorError>,
    new_id: &dyn Fn() -> String,
) -> Result<Value> {
    let c = &link.config;
    let name = &c.name;
    let pass_id = new_id();
    let mut summary = json!({
        "id": pass_id, "trigger": trigger, "status": "succeeded",
        "startDateTime": format_datetime(started), "endDateTime": format_datetime(now),
        "error": null, "desired": 0, "actual": 0, "missing": 0, "stale": 0, "outside": 0,
        "granted": 0, "revoked": 0, "reported": 0, "unmapped": 0,
    });
    let actual = match listed {
        // Whatever a kind lists, ignored principals and its own account are not its
        // business (`exec` programs list everything).
        Ok(mut grants) => {
            grants.retain(|g| !link.untouchable(&g.principal));
            grants
        }
        Err(e) => {
            summary["status"] = json!("failed");
            summary["error"] = json!(e.to_string());
            return Ok(summary);
        }
    };
    let rearmed = tx.rearm_dead_items(name, now.checked_sub(REARM_AFTER).ok(), None, now)?;
    if rearmed > 0 {
        tracing::info!(connector = %name, rearmed, "dead connector items re-armed an hour after they died");
    }
    // Plan first: a change not planned yet gets its own item (and is then settling), not a
    // "missing" or "stale" finding.
    let directory = super::planner::Directory::current(tx, p, std::iter::once(link))?;
    let anchors = super::planner::rule_anchors(tx, link)?;
    let desired = plan_link(tx, p, link, &directory, &anchors, now, new_id)?.desired;
    // Principals compare as the kind compares them (an LDAP DN in any spelling).
    let same = |principal: &str| c.kind.comparable_principal(principal);
    let desired_keys: BTreeMap<(String, String), (String, String)> = desired
        .grants
        .keys()
        .map(|(t, p)| ((t.clone(), same(p)), (t.clone(), p.clone())))
        .collect();
    let actual_keys: BTreeMap<(String, String), (String, String)> = actual
        .iter()
        .map(|g| {
            (
                (g.target.clone(), same(&g.principal)),
                (g.target.clone(), g.principal.clone()),
            )
        })
        .collect();
    let ledger = tx.connector_ledger(name)?;
    let ledger_keys: BTreeSet<(String, String)> = ledger
        .iter()
        .map(|e| (e.target.clone(), same(&e.principal)))
        .collect();
    // Keys still moving, and keys an item settled since `list` read the target (the list
    // may predate it): left out on both sides, so a grant applied meanwhile is not taken
    // for a missing one, nor a revoke for a grant made outside Rolegate.
    let mut settling: BTreeSet<(String, String)> = tx
        .settling_items(name, now.checked_sub(REARM_AFTER).unwrap_or(now))?
        .into_iter()
        .map(|i| (i.target, same(&i.principal)))
        .collect();
    settling.extend(
        tx.succeeded_since(name, started)?
            .into_iter()
            .map(|(target, principal)| (target, same(&principal))),
    );
    let plan = reconcile(
        &desired_keys.keys().cloned().collect(),
        &actual_keys.keys().cloned().collect(),
        &ledger_keys,
        &settling,
        c.on_drift,
        usize::try_from(c.max_revocations_per_pass).unwrap_or(usize::MAX),
    );
    let enqueue = |tx: &mut dyn Tx, key: &(String, String), operation, subject_id| {
        let grant = desired.grants.get(key);
        let planned = PlannedItem {
            key: key.clone(),
            operation,
            subject_id,
            cause: Cause::Reconcile,
            // The pass that found it (audit records name it `reconcileId`).
            cause_id: Some(pass_id.clone()),
            assignment_ids: grant
                .map(|g| g.assignment_ids.iter().cloned().collect())
                .unwrap_or_default(),
            not_after: grant.and_then(|g| g.not_after),
            due: now,
        };
        tx.enqueue_connector_item(&ConnectorItem::new(new_id(), name, planned, now))
    };
    for key in &plan.missing {
        let original = &desired_keys[key];
        let subject = desired.grants.get(original).map(|g| g.subject_id.clone());
        enqueue(tx, original, ItemOperation::Grant, subject)?;
    }
    let mut revoked = 0u64;
    if plan.refused.is_none() {
        let subject_of = |key: &(String, String)| {
            ledger
                .iter()
                .find(|e| e.target == key.0 && same(&e.principal) == key.1)
                .and_then(|e| e.subject_id.clone())
        };
        for key in &plan.stale {
            enqueue(
                tx,
                &actual_keys[key],
                ItemOperation::Revoke,
                subject_of(key),
            )?;
            revoked += 1;
        }
        if c.on_drift == OnDrift::Revoke {
            for key in &plan.outside {
                enqueue(tx, &actual_keys[key], ItemOperation::Revoke, None)?;
                revoked += 1;
            }
        }
    }
    for key in &plan.adopt {
        let (target, principal) = &actual_keys[key];
        let subject_id = desired
            .grants
            .get(&desired_keys[key])
            .map(|g| g.subject_id.clone());
        tx.adopt_connector_grant(
            name,
            &LedgerEntry {
                target: target.clone(),
                principal: principal.clone(),
                subject_id,
                since: now,
                item_id: String::new(),
            },
        )?;
    }
    let reported = report_outside(tx, link, &plan.outside, &actual_keys, &pass_id, now)?;
    if let Some(why) = &plan.refused {
        summary["status"] = json!("failed");
        summary["error"] = json!(why);
        tracing::error!(connector = %name, error = %why, "reconciliation refused by the safety valve");
        let ctx = link.record_context(now);
        let record = records::record(
            &ctx,
            "Reconcile connector",
            "Other",
            Some(why),
            &pass_id,
            &c.rules
                .first()
                .map(|r| r.target.clone())
                .unwrap_or_default(),
            None,
            None,
            vec![
                ("cause".into(), "reconcile".into()),
                ("reconcileId".into(), pass_id.clone()),
            ],
        );
        tx.append_audit(&record)?;
    }
    let count = |n: usize| json!(n);
    summary["desired"] = count(desired_keys.len());
    summary["actual"] = count(actual_keys.len());
    summary["missing"] = count(plan.missing.len());
    summary["stale"] = count(plan.stale.len());
    summary["outside"] = count(plan.outside.len());
    summary["granted"] = count(plan.missing.len());
    summary["revoked"] = json!(revoked);
    summary["reported"] = json!(reported);
    summary["unmapped"] = count(desired.unmapped.len());
    Ok(summary)
}

/// Under `on_drift = "report"`: records each grant made outside Rolegate once, when first
/// seen (and again only after it disappeared and came back); returns how many were new.
fn report_outside(
    tx: &mut dyn Tx,
    link: &Link,
    outside: &[(String, String)],
    actual_keys: &BTreeMap<(String, String), (String, String)>,
    pass_id: &str,
    now: jiff::Timestamp,
) -> Result<u64> {
    if link.config.on_drift != OnDrift::Report {
        return Ok(0);
    }
    let name = &link.config.name;
    let before: BTreeSet<(String, String)> = tx
        .connector_findings(name, "outside")?
        .into_iter()
        .map(|(t, p, _)| (t, p))
        .collect();
    let mut rows = Vec::new();
    let mut reported = 0;
    for key in outside {
        let (target, principal) = &actual_keys[key];
        rows.push((target.clone(), principal.clone(), String::new()));
        if before.contains(&(target.clone(), principal.clone())) {
            continue;
        }
        reported += 1;
        let ctx = link.record_context(now);
        let record = records::record(
            &ctx,
            "Report grant made outside Rolegate",
            "Other",
            None,
            &ctx.id,
            target,
            Some((principal, true)),
            None,
            vec![
                ("cause".into(), "reconcile".into()),
                ("reconcileId".into(), pass_id.to_string()),
            ],
        );
        tx.append_audit(&record)?;
    }
    tx.replace_connector_findings(name, "outside", &rows)?;
    Ok(reported)
}
