//! The planner (connectors.md §6.1, §6.2): after every commit, and at every start or end
//! instant of an assignment a rule matches, one write transaction computes each
//! connector's desired state and writes the items that bring its requested state there.
//! Several nodes may plan the same change one after the other (the write lock orders them):
//! the second finds the requested state already right and writes nothing.
//!
//! Planning is incremental (§6.1): a connector none of whose inputs changed since this
//! node's last committed pass (its rules' holders, group membership, the directory, the
//! rules' anchors, and no start or end instant passed) is skipped, and within a connector
//! only the rules whose holders may have changed are recomputed.

use super::{Link, Provisioning, blocking, caller};
use rolegate_core::access::IndexStamp;
use rolegate_core::directory::Subject;
use rolegate_core::error::{DomainError, Result};
use rolegate_core::provisioning::delivery::{self, ConnectorItem};
use rolegate_core::provisioning::records;
use rolegate_core::provisioning::{self, Desired, PrincipalMapping};
use rolegate_core::store::{ReadTx, Tx};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the planner looks for work nobody signalled (another node's commit).
const POLL: Duration = Duration::from_secs(1);
/// A pass runs at least this often even when nothing seems to have changed (directory
/// changes on another node leave no access-log entry).
const IDLE_PASS: Duration = Duration::from_secs(30);

/// Settled items are pruned this often, keeping succeeded and superseded ones 30 days and
/// dead ones 90 (§6.4).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Runs until `stop` turns true.
pub(super) async fn run(p: Arc<Provisioning>, mut stop: watch::Receiver<bool>) {
    let mut pruned = tokio::time::Instant::now();
    let mut head_seen = i64::MIN;
    let mut last_pass = tokio::time::Instant::now();
    let mut next_instant: Option<jiff::Timestamp> = None;
    let mut due = true;
    loop {
        if due {
            let q = Arc::clone(&p);
            match blocking(move || pass(&q)).await {
                Ok(outcome) => {
                    next_instant = outcome.next_instant;
                    for (link, wrote) in outcome.links.iter().zip(outcome.written) {
                        if wrote > 0 {
                            link.work.notify_one();
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "connector planning failed; retrying in a second");
                    next_instant = p
                        .state
                        .clock
                        .now()
                        .checked_add(jiff::SignedDuration::from_secs(1))
                        .ok();
                }
            }
            last_pass = tokio::time::Instant::now();
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = tokio::time::Instant::now();
            let s = Arc::clone(&p.state);
            let done = blocking(move || {
                let now = s.clock.now();
                let days = |d: i64| {
                    now.checked_sub(jiff::SignedDuration::from_hours(24 * d))
                        .unwrap_or(now)
                };
                rolegate_core::store::write(s.store.as_ref(), |tx| {
                    tx.prune_connector_items(days(30), days(90))
                })
            })
            .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "could not prune settled connector items");
            }
        }
        // Sleep until the next instant a rule's assignment starts or ends, at most POLL.
        let now = p.state.clock.now();
        let wait = super::sleep_until(next_instant, now, POLL);
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = p.state.committed.notified() => { due = true; continue; }
            _ = tokio::time::sleep(wait) => {}
        }
        let now = p.state.clock.now();
        due = next_instant.is_some_and(|t| t <= now) || last_pass.elapsed() >= IDLE_PASS;
        if !due && p.state.store.shared() {
            // Another node's commit: its access-log entry moved the head.
            let s = Arc::clone(&p.state);
            if let Ok(head) = blocking(move || {
                rolegate_core::store::read(s.store.as_ref(), |tx| tx.access_log_head())
            })
            .await
            {
                due = head != head_seen;
                head_seen = head;
            }
        }
    }
    tracing::info!("connector planner stopped");
}

/// What one planning pass did.
#[derive(Default)]
struct PassOutcome {
    /// The connectors planned for.
    links: Arc<Vec<Arc<Link>>>,
    /// Items written, per connector (in `links` order).
    written: Vec<usize>,
    /// The next instant an assignment a rule matches starts or ends.
    next_instant: Option<jiff::Timestamp>,
    /// The connectors planned (not skipped), with what they were planned from.
    settled: Vec<(Arc<Link>, Settled)>,
    /// How many connectors were skipped: none of their inputs changed.
    skipped: usize,
}

/// One planning pass over every connector, in one write transaction.
fn pass(p: &Provisioning) -> Result<PassOutcome> {
    let correlation_id = rolegate_api::new_id();
    let started = std::time::Instant::now();
    let outcome = p
        .state
        .write_unsignalled(&caller(), &correlation_id, |tx: &mut dyn Tx, ctx| {
            let now = ctx.now;
            let links = p.links();
            let directory = Directory::current(tx, p, links.iter().map(AsRef::as_ref))?;
            let mut out = PassOutcome {
                links,
                ..PassOutcome::default()
            };
            for link in out.links.clone().iter() {
                let inputs = PlanInputs::read(tx, p, link, &directory)?;
                let until = match link.settled_until(&inputs, now)? {
                    Some(until) => {
                        out.skipped += 1;
                        out.written.push(0);
                        until
                    }
                    None => {
                        let planned =
                            plan_link(tx, p, link, &directory, &inputs.anchors, now, ctx.new_id)?;
                        out.written.push(planned.written);
                        out.settled.push((
                            Arc::clone(link),
                            Settled {
                                inputs,
                                at: now,
                                until: planned.next_instant,
                            },
                        ));
                        planned.next_instant
                    }
                };
                out.next_instant = match (out.next_instant, until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok((out, Vec::new()))
        });
    let mut outcome = outcome?;
    // Committed: what each planned connector was planned from now stands.
    for (link, settled) in outcome.settled.drain(..) {
        *link
            .settled
            .lock()
            .map_err(|_| DomainError::internal("planner state lock poisoned"))? = Some(settled);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        items = outcome.written.iter().sum::<usize>(),
        skipped = outcome.skipped,
        "connector planning pass"
    );
    Ok(outcome)
}

/// What a connector's desired state is computed from, besides the instant: two passes
/// that read equal inputs, neither past the first one's next start or end instant,
/// compute the same desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlanInputs {
    /// Each rule's anchor (`rule_anchors`).
    anchors: Vec<Option<String>>,
    /// Where the access index stood for each rule's role.
    holders: Vec<IndexStamp>,
    /// Where it stood for group membership.
    membership: IndexStamp,
    /// The directory generation (subjects, their state and attributes).
    directory: i64,
}

impl PlanInputs {
    /// `link`'s inputs now. Read before planning: a change landing in between makes them
    /// older than the plan, which only costs the next pass a recomputation.
    fn read(
        tx: &mut dyn ReadTx,
        p: &Provisioning,
        link: &Link,
        directory: &Directory,
    ) -> Result<Self> {
        let anchors = rule_anchors(tx, link)?;
        let index = p
            .state
            .access
            .read()
            .map_err(|_| DomainError::internal("access index lock poisoned"))?;
        Ok(Self {
            anchors,
            holders: link
                .config
                .rules
                .iter()
                .map(|r| index.holders_stamp(r.role.template_id))
                .collect(),
            membership: index.membership_stamp(),
            directory: directory.generation(),
        })
    }
}

/// A committed planning pass of one connector: what it planned from, and the next instant
/// its desired state could change without a write.
#[derive(Debug, Clone)]
pub(super) struct Settled {
    inputs: PlanInputs,
    /// The instant it planned at.
    at: jiff::Timestamp,
    until: Option<jiff::Timestamp>,
}

impl Link {
    /// When this node's last committed pass planned from `inputs` and `now` is before its
    /// next instant, that instant (the requested state already matches the desired state,
    /// so the pass can be skipped); `None` when the connector must be planned.
    fn settled_until(
        &self,
        inputs: &PlanInputs,
        now: jiff::Timestamp,
    ) -> Result<Option<Option<jiff::Timestamp>>> {
        let settled = self
            .settled
            .lock()
            .map_err(|_| DomainError::internal("planner state lock poisoned"))?;
        Ok(settled
            .as_ref()
            // Between the instant it planned at and its next instant (a clock stepped back
            // plans again).
            .filter(|s| s.inputs == *inputs && s.at <= now && s.until.is_none_or(|t| now < t))
            .map(|s| s.until))
    }
}

/// What planning one connector did.
pub(super) struct Planned {
    /// The connector's desired state at the planning instant.
    pub desired: Desired,
    /// Items written or re-armed (the worker has work).
    pub written: usize,
    /// The next instant its desired state may change without a write.
    pub next_instant: Option<jiff::Timestamp>,
}

/// Plans one connector at `now` inside the caller's write transaction: the items that bring
/// its requested state to its desired state, and the subjects that became unmapped. The
/// reconciler plans first too, so that what planning would do is never taken for drift.
/// `anchors` are its rules' ([`rule_anchors`]).
pub(super) fn plan_link(
    tx: &mut dyn Tx,
    p: &Provisioning,
    link: &Link,
    directory: &Directory,
    anchors: &[Option<String>],
    now: jiff::Timestamp,
    new_id: &dyn Fn() -> String,
) -> Result<Planned> {
    let DesiredState {
        desired,
        next_instant,
        upcoming,
    } = desired_state(p, link, directory, anchors, now)?;
    let name = &link.config.name;
    let mut requested = tx.requested_keys(name)?;
    // Principals never touched: neither granted nor revoked, whatever maps to them.
    requested.retain(|(_, principal), _| !link.untouchable(principal));
    let managed: BTreeSet<String> = link.config.rules.iter().map(|r| r.target.clone()).collect();
    let mut items = delivery::plan(&desired, &requested, &managed, now);
    let before = name_causes(tx, link, &desired, upcoming, directory, &mut items, now)?;
    for planned in &items {
        tx.enqueue_connector_item(&ConnectorItem::new(new_id(), name, planned.clone(), now))?;
    }
    let mut rearmed = 0;
    for refreshed in delivery::refreshed_grants(&desired, &requested) {
        if tx.refresh_requested_grant(name, &refreshed, now)? {
            tracing::info!(connector = %name, target = %refreshed.key.0, principal = %refreshed.key.1, "dead connector item re-armed by a newer change of its key");
            rearmed += 1;
        }
    }
    record_unmapped(tx, link, &desired, directory, before.as_ref(), now)?;
    Ok(Planned {
        desired,
        written: items.len() + rearmed,
        next_instant,
    })
}

/// Tells the causes of `items` apart (`membership`, `directory`, `started`, §5.3) from
/// the assignments behind each and what this node's previous pass for the connector saw
/// (see [`delivery::refine_cause`]), then remembers this pass: the assignments that
/// justify grants (or would, for subjects without a principal) and the `upcoming` ones.
/// A pass whose transaction rolls back is remembered all the same: causes inform, they
/// never decide. Returns what the previous pass saw.
fn name_causes(
    tx: &mut dyn Tx,
    link: &Link,
    desired: &Desired,
    upcoming: BTreeSet<String>,
    directory: &Directory,
    items: &mut [delivery::PlannedItem],
    now: jiff::Timestamp,
) -> Result<Option<SeenAssignments>> {
    let justified: BTreeSet<String> = desired
        .grants
        .values()
        .flat_map(|g| g.assignment_ids.iter().cloned())
        .chain(
            desired
                .unmapped
                .values()
                .flat_map(|u| u.targets.values().flatten().cloned()),
        )
        .collect();
    let previous = link
        .previous_plan
        .lock()
        .map_err(|_| DomainError::internal("planner state lock poisoned"))?
        .replace(SeenAssignments {
            justified,
            upcoming,
        });
    if let Some(before) = &previous {
        for item in items
            .iter_mut()
            .filter(|i| i.cause == delivery::Cause::Assignment)
        {
            item.cause = cause_of(tx, before, directory, item, now)?;
        }
    }
    Ok(previous)
}

/// The cause of `item`, planned with cause `assignment`, told apart by
/// [`delivery::refine_cause`] from its assignments and what the previous pass saw.
fn cause_of(
    tx: &mut dyn Tx,
    before: &SeenAssignments,
    directory: &Directory,
    item: &delivery::PlannedItem,
    now: jiff::Timestamp,
) -> Result<delivery::Cause> {
    let mut facts = Vec::with_capacity(item.assignment_ids.len());
    for id in &item.assignment_ids {
        let a = tx.assignment(id)?;
        facts.push(delivery::AssignmentFacts {
            in_effect: a.as_ref().is_some_and(|a| a.is_current(now)),
            direct: a
                .as_ref()
                .is_none_or(|a| item.subject_id.as_deref() == Some(a.subject_id.as_str())),
            known_before: before.justified.contains(id),
            upcoming_before: before.upcoming.contains(id),
        });
    }
    let active = item
        .subject_id
        .as_deref()
        .and_then(|s| directory.subject(s))
        .is_some_and(|d| d.active);
    Ok(delivery::refine_cause(item, &facts, active, true))
}

/// What a planning pass saw of the assignments its connector's rules match.
pub(super) struct SeenAssignments {
    /// Those that justified a grant, or would have for a subject without a principal.
    justified: BTreeSet<String>,
    /// Those due to start later.
    upcoming: BTreeSet<String>,
}

/// One connector's desired state at `now` (§4) from the access index, which the write
/// transaction has caught up with the committed database, and the next instant it may
/// change without a write.
pub(super) fn desired_state(
    p: &Provisioning,
    link: &Link,
    directory: &Directory,
    anchors: &[Option<String>],
    now: jiff::Timestamp,
) -> Result<DesiredState> {
    let c = &link.config;
    let finish = |v: &str| c.kind.principal(v);
    let extension =
        |s: &Subject, schema: &str, attribute: &str| directory.extension(&s.id, schema, attribute);
    let mapping = PrincipalMapping {
        sources: &c.principal,
        case: c.principal_case,
        finish: &finish,
        extension: &extension,
    };
    // Before the index's lock: rebuilding the table after a directory change walks every
    // subject, and commits wait for that lock.
    let principals = link.principals(directory, &mapping)?;
    let index = p
        .state
        .access
        .read()
        .map_err(|_| DomainError::internal("access index lock poisoned"))?;
    let (holders, recomputed) = {
        let mut kept = link
            .kept_holders
            .lock()
            .map_err(|_| DomainError::internal("planner state lock poisoned"))?;
        provisioning::rule_holders_since(&c.rules, anchors, &index, now, &mut kept)
    };
    tracing::trace!(connector = %c.name, recomputed, rules = c.rules.len(), "rule holders");
    let mut desired = provisioning::desired_from(
        &c.rules,
        &holders,
        &index,
        &|id| directory.subject(id),
        &principals,
    );
    desired
        .grants
        .retain(|(_, principal), _| !link.untouchable(principal));
    let next_instant = holders.iter().filter_map(|h| h.next_instant).min();
    let upcoming = holders.into_iter().flat_map(|h| h.upcoming).collect();
    Ok(DesiredState {
        desired,
        next_instant,
        upcoming,
    })
}

/// The directory as planning reads it: every subject and, when a connector maps
/// principals from extension attributes, their SCIM documents.
pub(super) struct Directory {
    /// Every subject.
    pub subjects: Vec<Subject>,
    /// Each subject's position in `subjects`.
    by_id: HashMap<String, usize>,
    /// SCIM documents by subject id (empty when no connector needs them).
    documents: HashMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Whether `documents` were read.
    with_documents: bool,
    /// The directory generation it was read at.
    generation: i64,
}

/// Whether `link` maps principals from SCIM extension attributes.
fn maps_extensions(link: &Link) -> bool {
    link.config
        .principal
        .iter()
        .any(|s| matches!(s, provisioning::PrincipalSource::Extension { .. }))
}

impl Directory {
    /// The directory for `links`: the one read last if no subject changed since (the
    /// database's directory generation says so, whichever node changed it), else a fresh
    /// read, kept for the next pass. Reading 100,000 subjects costs far more than a pass
    /// that finds nothing to do.
    pub(super) fn current<'a>(
        tx: &mut dyn ReadTx,
        p: &Provisioning,
        links: impl Iterator<Item = &'a Link>,
    ) -> Result<Arc<Self>> {
        let with_documents = links.into_iter().any(maps_extensions);
        let generation = tx.directory_generation()?;
        let mut cache = p
            .directory
            .lock()
            .map_err(|_| DomainError::internal("directory cache lock poisoned"))?;
        if let Some((at, d)) = cache.as_ref()
            && *at == generation
            && (d.with_documents || !with_documents)
        {
            return Ok(Arc::clone(d));
        }
        let mut d = Self::read(tx, with_documents)?;
        d.generation = generation;
        let d = Arc::new(d);
        *cache = Some((generation, Arc::clone(&d)));
        Ok(d)
    }

    /// Reads it, with the SCIM documents when `with_documents`.
    fn read(tx: &mut dyn ReadTx, with_documents: bool) -> Result<Self> {
        let (subjects, documents) = if with_documents {
            let mut documents = HashMap::new();
            let subjects = tx
                .all_subjects_with_scim()?
                .into_iter()
                .map(|(subject, record)| {
                    documents.insert(subject.id.clone(), record.attributes);
                    subject
                })
                .collect();
            (subjects, documents)
        } else {
            (tx.all_subjects()?, HashMap::new())
        };
        let by_id = subjects
            .iter()
            .enumerate()
            .map(|(i, s): (usize, &Subject)| (s.id.clone(), i))
            .collect();
        Ok(Self {
            subjects,
            by_id,
            documents,
            with_documents,
            generation: 0,
        })
    }

    /// The directory generation it was read at.
    pub(super) fn generation(&self) -> i64 {
        self.generation
    }

    /// Subject `id`.
    pub(super) fn subject(&self, id: &str) -> Option<&Subject> {
        self.by_id.get(id).and_then(|i| self.subjects.get(*i))
    }

    /// The value of an extension attribute of subject `id`'s SCIM document.
    fn extension(&self, id: &str, schema: &str, attribute: &str) -> Option<String> {
        provisioning::extension_value(self.documents.get(id)?, schema, attribute)
    }
}

/// One connector's desired state at an instant, and what comes next.
pub(super) struct DesiredState {
    /// The desired state (§4).
    pub desired: Desired,
    /// The next instant it may change without a write.
    pub next_instant: Option<jiff::Timestamp>,
    /// The assignments a rule matches that start later.
    pub upcoming: BTreeSet<String>,
}

/// For each rule of `link`, the registered resource covering its scope: the scope itself,
/// or its nearest registered ancestor; `None` when none is registered.
pub(super) fn rule_anchors(tx: &mut dyn ReadTx, link: &Link) -> Result<Vec<Option<String>>> {
    let mut anchors = Vec::with_capacity(link.config.rules.len());
    for rule in &link.config.rules {
        let mut anchor = None;
        for scope in std::iter::once(rule.scope.clone()).chain(rule.scope.ancestors()) {
            if let Some(r) = tx.resource_by_external_key(&scope.key())? {
                anchor = Some(r.id);
                break;
            }
        }
        anchors.push(anchor);
    }
    Ok(anchors)
}

/// Records the subjects a rule would grant something that have no usable principal (§3.2):
/// each one that was not unmapped before gets one `Subject not mapped` record and a
/// warning.
fn record_unmapped(
    tx: &mut dyn Tx,
    link: &Link,
    desired: &Desired,
    directory: &Directory,
    previous: Option<&SeenAssignments>,
    now: jiff::Timestamp,
) -> Result<()> {
    let name = &link.config.name;
    let before: BTreeSet<String> = tx
        .connector_findings(name, "unmapped")?
        .into_iter()
        .map(|(subject, _, _)| subject)
        .collect();
    link.metrics.unmapped_subjects.store(
        u64::try_from(desired.unmapped.len()).unwrap_or(u64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut rows = Vec::new();
    for (subject_id, u) in &desired.unmapped {
        let (reason, targets) = (u.reason, &u.targets);
        rows.push((
            subject_id.clone(),
            String::new(),
            reason.as_str().to_string(),
        ));
        if before.contains(subject_id) {
            continue;
        }
        let subject = directory.subject(subject_id);
        tracing::warn!(connector = %name, subject = %subject_id, reason = reason.as_str(), "subject not mapped to a principal; nothing granted");
        // One record per subject that becomes unmapped, naming its first target and, in
        // its details, every target it would get.
        let Some((first, _)) = targets.first_key_value() else {
            continue;
        };
        // Named as a grant of its first target would be (§5.3).
        let would_grant = delivery::PlannedItem {
            key: (first.clone(), String::new()),
            operation: delivery::ItemOperation::Grant,
            subject_id: Some(subject_id.clone()),
            cause: delivery::Cause::Assignment,
            cause_id: None,
            assignment_ids: targets.values().flatten().cloned().collect(),
            not_after: None,
            due: now,
        };
        let cause = match previous {
            Some(seen) => cause_of(tx, seen, directory, &would_grant, now)?,
            None => delivery::Cause::Assignment,
        };
        let ctx = link.record_context(now);
        let record = records::record(
            &ctx,
            "Subject not mapped",
            "Other",
            Some(&format!(
                "the subject has no usable principal ({})",
                reason.as_str()
            )),
            &ctx.id,
            first,
            None,
            subject,
            vec![
                ("cause".into(), cause.as_str().to_string()),
                ("subjectId".into(), subject_id.clone()),
                ("reason".into(), reason.as_str().to_string()),
                (
                    "targets".into(),
                    targets.keys().cloned().collect::<Vec<_>>().join(","),
                ),
            ],
        );
        tx.append_audit(&record)?;
    }
    if rows.len() != before.len() || rows.iter().any(|(s, _, _)| !before.contains(s)) {
        tx.replace_connector_findings(name, "unmapped", &rows)?;
    }
    Ok(())
}
