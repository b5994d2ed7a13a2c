//! The running connectors seen through the operator API (connectors.md §9) and the metrics
//! (§10): documents built from each connector's configuration, its live status and what
//! the database holds.

use super::planner::desired_state;
use super::{Link, Provisioning, blocking, metrics};
use rolegate_api::connectors::{ConnectorOperator, OperatorFuture, PassOutcome};
use rolegate_core::error::Result;
use rolegate_core::provisioning::delivery::{Cause, ConnectorItem, ItemOperation, ItemState};
use rolegate_core::schedule::format_datetime;
use rolegate_core::store;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long `POST …/reconcile` waits for its pass.
const RECONCILE_WAIT: Duration = Duration::from_secs(30);
/// A revoke not applied this long after it was due is overdue (§8).
const OVERDUE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// The operator API's view of [`Provisioning`].
pub(super) struct Operator(pub(super) Arc<Provisioning>);

fn error_doc(code: &str, message: &str, at: jiff::Timestamp) -> Value {
    json!({"code": code, "message": message, "dateTime": format_datetime(at)})
}

fn item_doc(i: &ConnectorItem) -> Value {
    let time = |t: Option<jiff::Timestamp>| t.map(format_datetime);
    json!({
        "id": i.id, "connector": i.connector, "target": i.target, "principal": i.principal,
        "subjectId": i.subject_id, "operation": i.operation.as_str(), "cause": i.cause,
        "causeId": i.cause_id, "state": i.state.as_str(), "attempts": i.attempts,
        "createdDateTime": format_datetime(i.created), "dueDateTime": format_datetime(i.due),
        "nextAttemptDateTime": (i.state == ItemState::Retrying).then(|| format_datetime(i.next_attempt)),
        "lastAttemptDateTime": time(i.last_attempt), "completedDateTime": time(i.completed),
        "lastError": i.last_error.as_ref().map(|(code, message)| {
            error_doc(code, message, i.last_attempt.unwrap_or(i.created))
        }),
    })
}

/// How many of `counts` (per state, as the store counts them) are in `state`.
fn in_state(counts: &[(ItemState, u64)], state: ItemState) -> u64 {
    counts
        .iter()
        .find(|(s, _)| *s == state)
        .map_or(0, |(_, n)| *n)
}

/// One connector's document (§9 `Connector`).
async fn connector_doc(p: &Arc<Provisioning>, link: &Arc<Link>) -> Result<Value> {
    let (q, name) = (Arc::clone(p), link.config.name.clone());
    let (counts, pass, unmapped, outside) = blocking(move || {
        store::read(q.state.store.as_ref(), |tx| {
            Ok((
                tx.connector_item_counts(&name)?,
                tx.last_reconcile_pass(&name)?,
                tx.connector_findings(&name, "unmapped")?.len(),
                tx.connector_findings(&name, "outside")?.len(),
            ))
        })
    })
    .await?;
    let count = |s: ItemState| in_state(&counts, s);
    let status = link.status.lock().map(|s| s.clone()).unwrap_or_default();
    let last_pass_failed = pass.as_ref().is_some_and(|p| p["status"] == "failed");
    let health = match status.up {
        None => "unknown",
        Some(false) => "unreachable",
        Some(true) if count(ItemState::Dead) > 0 || last_pass_failed => "degraded",
        Some(true) => "ok",
    };
    let mut doc = rolegate_connectors::check::connector_json(&link.config);
    if let Some(rules) = doc["rules"].as_array_mut() {
        for r in rules {
            if let Some(o) = r.as_object_mut() {
                o.remove("line");
            }
        }
    }
    let more = json!({
        "status": health,
        "lastContactDateTime": status.last_contact.map(format_datetime),
        "lastError": status.last_error.as_ref().map(|(c, m, at)| error_doc(c, m, *at)),
        "items": {"pending": count(ItemState::Pending), "inProgress": count(ItemState::InProgress),
                  "retrying": count(ItemState::Retrying), "dead": count(ItemState::Dead)},
        "unmappedSubjects": unmapped, "outsideGrants": outside,
        "lastReconcile": pass,
    });
    if let (Some(d), Value::Object(m)) = (doc.as_object_mut(), more) {
        d.extend(m);
    }
    Ok(doc)
}

/// The row of (`target`, `principal`), made with its defaults when new.
fn row<'a>(
    rows: &'a mut BTreeMap<(String, String), Map<String, Value>>,
    present: &Option<std::collections::BTreeSet<(String, String)>>,
    target: &str,
    principal: &str,
) -> &'a mut Map<String, Value> {
    rows.entry((target.to_string(), principal.to_string()))
        .or_insert_with(|| {
            let p = present
                .as_ref()
                .map(|set| set.contains(&(target.to_string(), principal.to_string())));
            let mut m = Map::new();
            for (k, v) in [
                ("target", json!(target)),
                ("principal", json!(principal)),
                ("subjectId", Value::Null),
                ("desired", json!(false)),
                ("present", json!(p)),
                ("madeByRolegate", json!(false)),
                ("operation", Value::Null),
                ("itemId", Value::Null),
                ("attempts", json!(0)),
                ("lastError", Value::Null),
                ("nextAttemptDateTime", Value::Null),
                ("since", Value::Null),
                ("notAfter", Value::Null),
                ("assignmentIds", json!([])),
                ("unmappedReason", Value::Null),
            ] {
                m.insert(k.to_string(), v);
            }
            m
        })
}

/// One connector's grant rows (§9 `Grant`).
async fn grant_rows(p: &Arc<Provisioning>, link: &Arc<Link>) -> Result<Vec<Value>> {
    let (q, l) = (Arc::clone(p), Arc::clone(link));
    let (desired, ledger, items) = blocking(move || {
        store::read(q.state.store.as_ref(), |tx| {
            let now = q.state.clock.now();
            let directory =
                super::planner::Directory::current(tx, &q, std::iter::once(l.as_ref()))?;
            let anchors = super::planner::rule_anchors(tx, &l)?;
            let desired = desired_state(&q, &l, &directory, &anchors, now)?.desired;
            let name = &l.config.name;
            Ok((
                desired,
                tx.connector_ledger(name)?,
                tx.settling_items(name, jiff::Timestamp::MIN)?,
            ))
        })
    })
    .await?;
    let present = link.present.lock().ok().and_then(|p| p.clone());
    let mut rows: BTreeMap<(String, String), Map<String, Value>> = BTreeMap::new();
    for ((target, principal), why) in &desired.grants {
        let r = row(&mut rows, &present, target, principal);
        r.insert("desired".into(), json!(true));
        r.insert("subjectId".into(), json!(why.subject_id));
        r.insert("assignmentIds".into(), json!(why.assignment_ids));
        r.insert("notAfter".into(), json!(why.not_after.map(format_datetime)));
    }
    for e in &ledger {
        let r = row(&mut rows, &present, &e.target, &e.principal);
        r.insert("madeByRolegate".into(), json!(true));
        r.insert("since".into(), json!(format_datetime(e.since)));
        if r["subjectId"].is_null() {
            r.insert("subjectId".into(), json!(e.subject_id));
        }
    }
    if let Some(set) = &present {
        for (target, principal) in set {
            row(&mut rows, &present, target, principal);
        }
    }
    for i in &items {
        let r = row(&mut rows, &present, &i.target, &i.principal);
        r.insert("operation".into(), json!(i.operation.as_str()));
        r.insert("itemId".into(), json!(i.id));
        r.insert("attempts".into(), json!(i.attempts));
        r.insert(
            "lastError".into(),
            json!(i.last_error.as_ref().map(|(c, m)| error_doc(
                c,
                m,
                i.last_attempt.unwrap_or(i.created)
            ))),
        );
        if i.state == ItemState::Retrying {
            r.insert(
                "nextAttemptDateTime".into(),
                json!(format_datetime(i.next_attempt)),
            );
        }
        r.insert("state".into(), json!(i.state.as_str()));
        if r["subjectId"].is_null() {
            r.insert("subjectId".into(), json!(i.subject_id));
        }
    }
    let on_report = link.config.on_drift == rolegate_core::provisioning::OnDrift::Report;
    let mut out: Vec<Value> = rows
        .into_values()
        .map(|mut r| {
            let item_state = r.get("state").and_then(Value::as_str).map(str::to_string);
            let desired = r["desired"] == true;
            let state = match item_state.as_deref().and_then(ItemState::parse) {
                Some(ItemState::Retrying) => "retrying",
                Some(ItemState::Dead) => "failed",
                Some(_) => "pending",
                None if desired => "applied",
                None if on_report && r["present"] == true && r["madeByRolegate"] == false => {
                    "outside"
                }
                None => "applied",
            };
            if item_state.is_none() {
                // No item is waiting: the row is settled, so no operation shows.
                r.insert("operation".into(), Value::Null);
            }
            r.insert("state".into(), json!(state));
            Value::Object(r)
        })
        .collect();
    for (subject, u) in &desired.unmapped {
        for (target, assignment_ids) in &u.targets {
            out.push(json!({
                "target": target, "principal": null, "subjectId": subject, "desired": true,
                "present": null, "madeByRolegate": false, "state": "unmapped",
                "operation": null, "itemId": null, "attempts": 0, "lastError": null,
                "nextAttemptDateTime": null, "since": null, "notAfter": null,
                "assignmentIds": assignment_ids, "unmappedReason": u.reason.as_str(),
            }));
        }
    }
    let text = |r: &Value, key: &str| r[key].as_str().unwrap_or_default().to_string();
    out.sort_by_cached_key(|r| (text(r, "target"), text(r, "principal")));
    Ok(out)
}

/// The grant rows of `link` that any of `assignment_ids` justifies, as people see them on
/// their assignment (docs/connectors.md "The grant's state for the person who activated"),
/// only `only`'s when given (whose errors then carry no message: it may name the target's
/// hosts and accounts). Built from what planning stored (each key's last requested
/// operation with the assignments behind it, unfinished and dead items, the ledger, the
/// subjects without a principal) rather than from a fresh desired state, so a person's
/// page reads the connector's keys, not the whole directory. In the milliseconds between
/// a commit and its planning pass, a new activation has no row yet.
fn planned_rows(
    tx: &mut dyn store::ReadTx,
    p: &Provisioning,
    link: &Link,
    assignment_ids: &[String],
    only: Option<&str>,
) -> Result<Vec<Value>> {
    let name = &link.config.name;
    let wanted = |ids: &[String]| ids.iter().any(|id| assignment_ids.contains(id));
    let theirs = |subject: Option<&str>| only.is_none_or(|o| subject == Some(o));
    let requested = tx.requested_keys(name)?;
    let keys: Vec<_> = requested
        .iter()
        .filter(|(_, r)| {
            r.operation == ItemOperation::Grant
                && wanted(&r.assignment_ids)
                && theirs(r.subject_id.as_deref())
        })
        .collect();
    let mut out = Vec::new();
    if !keys.is_empty() {
        let ledger: BTreeMap<(String, String), jiff::Timestamp> = tx
            .connector_ledger(name)?
            .into_iter()
            .map(|e| ((e.target, e.principal), e.since))
            .collect();
        // The store gives each key's newest unfinished or dead item only.
        let newest: BTreeMap<(String, String), ConnectorItem> = tx
            .settling_items(name, jiff::Timestamp::MIN)?
            .into_iter()
            .map(|i| ((i.target.clone(), i.principal.clone()), i))
            .collect();
        for (key, r) in keys {
            let since = ledger.get(key).copied();
            // A dead item that an applied grant followed no longer says anything.
            let item = newest
                .get(key)
                .filter(|i| !(i.state == ItemState::Dead && since.is_some_and(|s| s > i.created)));
            let state = match (item.map(|i| i.state), since) {
                (Some(ItemState::Retrying), _) => "retrying",
                (Some(ItemState::Dead), _) => "failed",
                (Some(_), _) | (None, None) => "pending",
                (None, Some(_)) => "applied",
            };
            let last_error = item.and_then(|i| {
                i.last_error.as_ref().map(|(code, message)| {
                    let message = if only.is_some() {
                        "the target refused or could not be reached; a tenant administrator sees why"
                    } else {
                        message.as_str()
                    };
                    error_doc(code, message, i.last_attempt.unwrap_or(i.created))
                })
            });
            out.push(json!({
                "connector": name, "kind": link.kind(), "target": key.0, "principal": key.1,
                "subjectId": r.subject_id, "state": state,
                "operation": item.map(|i| i.operation.as_str()),
                "attempts": item.map_or(0, |i| i.attempts),
                "lastError": last_error,
                "nextAttemptDateTime": item
                    .filter(|i| i.state == ItemState::Retrying)
                    .map(|i| format_datetime(i.next_attempt)),
                "since": since.map(format_datetime),
                "notAfter": r.not_after.map(format_datetime),
                "assignmentIds": r.assignment_ids, "unmappedReason": null,
            }));
        }
    }
    // Subjects without a principal: a row per target a rule would give them through these
    // assignments.
    let unmapped = tx.connector_findings(name, "unmapped")?;
    if unmapped.iter().any(|(subject, _, _)| theirs(Some(subject))) {
        // The database first, then the index's lock only for what it answers.
        let anchors = super::planner::rule_anchors(tx, link)?;
        let mut held = Vec::with_capacity(assignment_ids.len());
        for id in assignment_ids {
            if let Some(a) = tx.assignment(id)?
                && let Some(role) = tx.role_definition(&a.role_definition_id)?
            {
                held.push((id, a, role));
            }
        }
        let index = p.state.access.read().map_err(|_| {
            rolegate_core::error::DomainError::internal("access index lock poisoned")
        })?;
        for (id, a, role) in held {
            let people = index.members_of_any(std::slice::from_ref(&a.subject_id));
            let targets: Vec<&str> = link
                .config
                .rules
                .iter()
                .zip(&anchors)
                .filter(|(rule, anchor)| {
                    a.state == rolegate_core::assignment::AssignmentState::Active
                        && rule
                            .role
                            .template_id
                            .eq_ignore_ascii_case(&role.template_id)
                        && anchor
                            .as_ref()
                            .is_some_and(|an| index.ancestors_or_self(an).contains(&a.resource_id))
                })
                .map(|(rule, _)| rule.target.as_str())
                .collect();
            for (subject, _, reason) in &unmapped {
                let holds = *subject == a.subject_id || people.contains(subject);
                if !holds || !theirs(Some(subject)) {
                    continue;
                }
                for target in &targets {
                    out.push(json!({
                        "connector": name, "kind": link.kind(), "target": target,
                        "principal": null, "subjectId": subject, "state": "unmapped",
                        "operation": null, "attempts": 0, "lastError": null,
                        "nextAttemptDateTime": null, "since": null, "notAfter": null,
                        "assignmentIds": [id], "unmappedReason": reason,
                    }));
                }
            }
        }
    }
    Ok(out)
}

impl ConnectorOperator for Operator {
    fn connectors(&self) -> OperatorFuture<Vec<Value>> {
        let p = Arc::clone(&self.0);
        Box::pin(async move {
            let mut out = Vec::new();
            for link in p.links().iter() {
                out.push(connector_doc(&p, link).await?);
            }
            Ok(out)
        })
    }

    fn connector(&self, name: &str) -> OperatorFuture<Value> {
        let (p, name) = (Arc::clone(&self.0), name.to_string());
        Box::pin(async move { connector_doc(&p, &p.named(&name)?).await })
    }

    fn grants(&self, name: &str) -> OperatorFuture<Vec<Value>> {
        let (p, name) = (Arc::clone(&self.0), name.to_string());
        Box::pin(async move { grant_rows(&p, &p.named(&name)?).await })
    }

    fn assignment_grants(
        &self,
        assignment_ids: Vec<String>,
        only_subject: Option<String>,
    ) -> OperatorFuture<Vec<Value>> {
        let p = Arc::clone(&self.0);
        Box::pin(async move {
            let mut out = Vec::new();
            if assignment_ids.is_empty() {
                return Ok(out);
            }
            for link in p.links().iter() {
                let (q, l) = (Arc::clone(&p), Arc::clone(link));
                let (ids, only) = (assignment_ids.clone(), only_subject.clone());
                out.extend(
                    blocking(move || {
                        store::read(q.state.store.as_ref(), |tx| {
                            planned_rows(tx, &q, &l, &ids, only.as_deref())
                        })
                    })
                    .await?,
                );
            }
            Ok(out)
        })
    }

    fn items(&self, name: &str, state: Option<ItemState>, top: u32) -> OperatorFuture<Vec<Value>> {
        let (p, name) = (Arc::clone(&self.0), name.to_string());
        Box::pin(async move {
            p.named(&name)?;
            let q = Arc::clone(&p);
            let items = blocking(move || {
                store::read(q.state.store.as_ref(), |tx| {
                    tx.connector_items(&name, state, top)
                })
            })
            .await?;
            Ok(items.iter().map(item_doc).collect())
        })
    }

    fn reconcile(&self, name: &str) -> OperatorFuture<PassOutcome> {
        let (p, name) = (Arc::clone(&self.0), name.to_string());
        Box::pin(async move {
            let link = p.named(&name)?;
            let asked = p.state.clock.now();
            let (q, n) = (Arc::clone(&p), name.clone());
            let rearmed = blocking(move || {
                store::write(q.state.store.as_ref(), |tx| {
                    tx.rearm_dead_items(&n, None, Some(Cause::Operator.as_str()), asked)
                })
            })
            .await?;
            if rearmed > 0 {
                tracing::info!(connector = %name, rearmed, "dead connector items re-armed by an operator");
                link.work.notify_one();
            }
            link.reconcile.notify_one();
            let deadline = tokio::time::Instant::now() + RECONCILE_WAIT;
            loop {
                let (q, n) = (Arc::clone(&p), name.clone());
                let last = blocking(move || {
                    store::read(q.state.store.as_ref(), |tx| tx.last_reconcile_pass(&n))
                })
                .await?;
                // A pass that ended since the ask: one this ask started, or the one
                // running when it came (on this node or another), which it joins (§9).
                let newer = last.filter(|pass| {
                    pass["endDateTime"]
                        .as_str()
                        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|ended| ended >= asked)
                });
                if let Some(pass) = newer {
                    return Ok(PassOutcome::Finished(pass));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(PassOutcome::Running(json!({
                        "id": null, "trigger": "operator", "status": "running",
                        "startDateTime": format_datetime(asked), "endDateTime": null,
                    })));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn reload(&self) -> OperatorFuture<std::result::Result<Vec<Value>, String>> {
        let p = Arc::clone(&self.0);
        Box::pin(async move {
            Ok(match p.reload().await? {
                Ok(()) => {
                    let mut out = Vec::new();
                    for link in p.links().iter() {
                        out.push(connector_doc(&p, link).await?);
                    }
                    Ok(out)
                }
                Err(problems) => Err(problems),
            })
        })
    }

    fn metrics(&self) -> OperatorFuture<String> {
        let p = Arc::clone(&self.0);
        Box::pin(async move {
            let links = p.links();
            let mut snapshots = Vec::new();
            for link in links.iter() {
                let (q, name) = (Arc::clone(&p), link.config.name.clone());
                let (counts, open) = blocking(move || {
                    store::read(q.state.store.as_ref(), |tx| {
                        Ok((
                            tx.connector_item_counts(&name)?,
                            tx.settling_items(&name, jiff::Timestamp::MAX)?,
                        ))
                    })
                })
                .await?;
                let count = |s: ItemState| in_state(&counts, s);
                let now = p.state.clock.now();
                let overdue = open
                    .iter()
                    .filter(|i| {
                        i.operation == ItemOperation::Revoke
                            && i.due.checked_add(OVERDUE).is_ok_and(|t| t < now)
                    })
                    .count();
                snapshots.push(metrics::Snapshot {
                    up: link.status.lock().ok().and_then(|s| s.up),
                    items: [
                        count(ItemState::Pending),
                        count(ItemState::InProgress),
                        count(ItemState::Retrying),
                        count(ItemState::Dead),
                    ],
                    overdue_revocations: u64::try_from(overdue).unwrap_or(u64::MAX),
                });
            }
            let series: Vec<_> = links
                .iter()
                .zip(snapshots)
                .map(|(l, s)| (l.config.name.as_str(), l.kind(), &l.metrics, s))
                .collect();
            Ok(metrics::render(&series, &p.reloads))
        })
    }
}
