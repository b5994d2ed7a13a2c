//! Delivery of connector grants (connectors.md §6): the items a change requires, their
//! states, and the backoff between attempts. Pure: the stores keep items, the server's
//! planner and worker run them.
//!
//! Items are planned by comparing a connector's desired state (§4) with the **requested**
//! state of each key — what the newest item of that key asked for — so an item is written
//! only when the operation a key needs differs from the last one requested (§6.1), and a
//! planning pass run twice, or by two nodes one after the other, writes nothing the second
//! time.

use super::Desired;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// What an item does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemOperation {
    /// Make (target, principal) present.
    Grant,
    /// Make (target, principal) absent.
    Revoke,
}

impl ItemOperation {
    /// The wire name (`grant`, `revoke`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
        }
    }

    /// Reads a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "grant" => Some(Self::Grant),
            "revoke" => Some(Self::Revoke),
            _ => None,
        }
    }
}

/// Where an item stands (§6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemState {
    /// Written, not yet attempted (or due later).
    Pending,
    /// Claimed by a node, operation running.
    InProgress,
    /// The last attempt failed; another is due.
    Retrying,
    /// Applied.
    Succeeded,
    /// Every attempt failed; needs attention.
    Dead,
    /// Replaced by a newer item of its key before it ran.
    Superseded,
}

impl ItemState {
    /// Every state, in the order the API lists them.
    pub const ALL: [ItemState; 6] = [
        Self::Pending,
        Self::InProgress,
        Self::Retrying,
        Self::Succeeded,
        Self::Dead,
        Self::Superseded,
    ];

    /// The wire name (`pending`, `inProgress`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "inProgress",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Superseded => "superseded",
        }
    }

    /// Reads a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether an item in this state will still run (its key is not settled yet).
    pub fn unfinished(self) -> bool {
        matches!(self, Self::Pending | Self::InProgress | Self::Retrying)
    }
}

/// Why an item was written (§5.3's `cause` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// An assignment was created, changed or removed (also: what planning could not tell
    /// apart further, see [`refine_cause`]).
    Assignment,
    /// A schedule's start instant.
    Started,
    /// A schedule's end instant.
    Ended,
    /// Group membership changed.
    Membership,
    /// A subject was created, changed, deactivated or deleted.
    Directory,
    /// The target left management after a reload.
    Configuration,
    /// Drift found by reconciliation.
    Reconcile,
    /// Re-armed by an operator (`POST …/reconcile`).
    Operator,
}

impl Cause {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assignment => "assignment",
            Self::Started => "started",
            Self::Ended => "ended",
            Self::Membership => "membership",
            Self::Directory => "directory",
            Self::Configuration => "configuration",
            Self::Reconcile => "reconcile",
            Self::Operator => "operator",
        }
    }
}

/// What the newest item of a key asked for, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedKey {
    /// The operation last requested.
    pub operation: ItemOperation,
    /// The subject the principal stood for.
    pub subject_id: Option<String>,
    /// For a grant: when its assignments end (`None`: one is permanent).
    pub not_after: Option<Timestamp>,
    /// For a grant: the assignments that justified it (a later revoke names them).
    pub assignment_ids: Vec<String>,
}

/// An item to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedItem {
    /// The key: (target, principal).
    pub key: (String, String),
    /// Grant or revoke.
    pub operation: ItemOperation,
    /// The subject the principal stands for, when known.
    pub subject_id: Option<String>,
    /// Why.
    pub cause: Cause,
    /// The assignment that justifies a grant (the first), when there is one.
    pub cause_id: Option<String>,
    /// Every assignment that justifies a grant.
    pub assignment_ids: Vec<String>,
    /// For a grant: the latest end among its assignments.
    pub not_after: Option<Timestamp>,
    /// When the need arose (the planning instant, or the end instant of an ended grant):
    /// propagation is measured from it.
    pub due: Timestamp,
}

/// The items that bring a connector's requested state to `desired` at `now` (§6.1, §6.2):
/// a `grant` for every desired key whose last request was not a grant, a `revoke` for every
/// key last requested granted that is no longer desired. A revoke's cause is `ended` when
/// every assignment behind the grant had ended by `now`, `configuration` when no rule names
/// its target any more (`managed` holds the targets rules name), else `assignment`.
pub fn plan(
    desired: &Desired,
    requested: &BTreeMap<(String, String), RequestedKey>,
    managed: &BTreeSet<String>,
    now: Timestamp,
) -> Vec<PlannedItem> {
    let mut out = Vec::new();
    for (key, why) in &desired.grants {
        if requested
            .get(key)
            .is_some_and(|r| r.operation == ItemOperation::Grant)
        {
            continue;
        }
        let assignment_ids: Vec<String> = why.assignment_ids.iter().cloned().collect();
        out.push(PlannedItem {
            key: key.clone(),
            operation: ItemOperation::Grant,
            subject_id: Some(why.subject_id.clone()),
            cause: Cause::Assignment,
            cause_id: assignment_ids.first().cloned(),
            assignment_ids,
            not_after: why.not_after,
            due: now,
        });
    }
    for (key, r) in requested {
        if r.operation != ItemOperation::Grant || desired.grants.contains_key(key) {
            continue;
        }
        let (cause, due) = if !managed.contains(&key.0) {
            (Cause::Configuration, now)
        } else {
            match r.not_after {
                Some(end) if end <= now => (Cause::Ended, end),
                _ => (Cause::Assignment, now),
            }
        };
        out.push(PlannedItem {
            key: key.clone(),
            operation: ItemOperation::Revoke,
            subject_id: r.subject_id.clone(),
            cause,
            cause_id: r.assignment_ids.first().cloned(),
            assignment_ids: r.assignment_ids.clone(),
            not_after: None,
            due,
        });
    }
    out
}

/// A key whose last requested grant still stands, on other assignments than it was
/// requested for (a second activation, an extension, one of two ending): no item is
/// written (the operation does not change, §6.1), but the key's requested state follows,
/// so that a later revoke names the right assignments and end, and a dead grant item is
/// re-armed (§6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshedGrant {
    /// The key: (target, principal).
    pub key: (String, String),
    /// The assignments that justify it now.
    pub assignment_ids: Vec<String>,
    /// The latest end among them.
    pub not_after: Option<Timestamp>,
}

/// The keys of `desired` last requested granted whose assignments or end changed since.
pub fn refreshed_grants(
    desired: &Desired,
    requested: &BTreeMap<(String, String), RequestedKey>,
) -> Vec<RefreshedGrant> {
    desired
        .grants
        .iter()
        .filter_map(|(key, why)| {
            let r = requested.get(key)?;
            let ids: Vec<String> = why.assignment_ids.iter().cloned().collect();
            (r.operation == ItemOperation::Grant
                && (r.assignment_ids != ids || r.not_after != why.not_after))
                .then(|| RefreshedGrant {
                    key: key.clone(),
                    assignment_ids: ids,
                    not_after: why.not_after,
                })
        })
        .collect()
}

/// What planning knows about one assignment behind an item (a grant's justification, or
/// the one a revoked grant had), to name the item's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignmentFacts {
    /// Whether it is in effect now (live, started and not ended).
    pub in_effect: bool,
    /// Whether the item's subject holds it itself rather than through a group.
    pub direct: bool,
    /// Whether it justified some grant of the connector (or would have, for a subject
    /// without a principal) at the previous planning pass.
    pub known_before: bool,
    /// Whether, at the previous planning pass, it existed and was due to start later.
    pub upcoming_before: bool,
}

/// The cause (§5.3) of an item [`plan`] named `assignment`, told apart as far as the
/// facts from this node's previous planning pass allow (`had_previous` false: there was
/// none, the cause stays `assignment`). A grant whose assignments all justified grants
/// already is `membership` when one is held through a group (the person joined it) and
/// `directory` otherwise (the person was enabled or renamed); one whose new assignments
/// were all waiting for their start is `started`. A revoke is `directory` when its
/// subject is gone or disabled, `assignment` when an assignment behind it is no longer in
/// effect, `membership` when one is held through a group, and `directory` otherwise.
/// Other causes are kept.
pub fn refine_cause(
    item: &PlannedItem,
    facts: &[AssignmentFacts],
    subject_active: bool,
    had_previous: bool,
) -> Cause {
    if !had_previous || item.cause != Cause::Assignment || facts.is_empty() {
        return item.cause;
    }
    let through_group = facts.iter().any(|f| !f.direct);
    match item.operation {
        ItemOperation::Grant => {
            if facts.iter().all(|f| f.known_before) {
                if through_group {
                    Cause::Membership
                } else {
                    Cause::Directory
                }
            } else if facts.iter().all(|f| f.known_before || f.upcoming_before) {
                Cause::Started
            } else {
                Cause::Assignment
            }
        }
        ItemOperation::Revoke => {
            if !subject_active {
                Cause::Directory
            } else if facts.iter().any(|f| !f.in_effect) {
                Cause::Assignment
            } else if through_group {
                Cause::Membership
            } else {
                Cause::Directory
            }
        }
    }
}

/// One stored item (§9's `Item`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorItem {
    /// GUID.
    pub id: String,
    /// The connector's name.
    pub connector: String,
    /// The target.
    pub target: String,
    /// The principal.
    pub principal: String,
    /// The subject it stands for, when known.
    pub subject_id: Option<String>,
    /// Grant or revoke.
    pub operation: ItemOperation,
    /// Why.
    pub cause: String,
    /// What caused it (an assignment id), when known.
    pub cause_id: Option<String>,
    /// The assignments that justify a grant.
    pub assignment_ids: Vec<String>,
    /// For a grant: the latest end among them.
    pub not_after: Option<Timestamp>,
    /// Where it stands.
    pub state: ItemState,
    /// Attempts made.
    pub attempts: u32,
    /// When it was written.
    pub created: Timestamp,
    /// When the need arose (propagation is measured from it).
    pub due: Timestamp,
    /// When the next attempt may start.
    pub next_attempt: Timestamp,
    /// When the last attempt started.
    pub last_attempt: Option<Timestamp>,
    /// When it succeeded, died or was superseded.
    pub completed: Option<Timestamp>,
    /// The last failure: code and (redacted) message.
    pub last_error: Option<(String, String)>,
}

impl ConnectorItem {
    /// A `pending` item of `connector` for `planned`, written at `now` with id `id`.
    pub fn new(id: String, connector: &str, planned: PlannedItem, now: Timestamp) -> Self {
        let (target, principal) = planned.key;
        Self {
            id,
            connector: connector.to_string(),
            target,
            principal,
            subject_id: planned.subject_id,
            operation: planned.operation,
            cause: planned.cause.as_str().to_string(),
            cause_id: planned.cause_id,
            assignment_ids: planned.assignment_ids,
            not_after: planned.not_after,
            state: ItemState::Pending,
            attempts: 0,
            created: now,
            due: planned.due,
            next_attempt: now,
            last_attempt: None,
            completed: None,
            last_error: None,
        }
    }
}

/// A grant Rolegate made and has not revoked (§6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The target.
    pub target: String,
    /// The principal.
    pub principal: String,
    /// The subject it was made for.
    pub subject_id: Option<String>,
    /// When it was applied.
    pub since: Timestamp,
    /// The item that made it.
    pub item_id: String,
}

/// The longest wait between two attempts.
const MAX_BACKOFF: SignedDuration = SignedDuration::from_mins(5);

/// How long to wait after the `failures`-th failed attempt (§6.4): min(1 s × 2^(n−1), 5 min),
/// scaled by `1 + jitter` where `jitter` is drawn from [-0.2, 0.2] by the caller (clamped
/// here).
pub fn retry_delay(failures: u32, jitter: f64) -> SignedDuration {
    let exponent = failures.saturating_sub(1).min(16);
    let base = SignedDuration::from_secs(1i64 << exponent).min(MAX_BACKOFF);
    let factor = 1.0 + jitter.clamp(-0.2, 0.2);
    SignedDuration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::DesiredGrant;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn key(t: &str, p: &str) -> (String, String) {
        (t.to_string(), p.to_string())
    }

    fn desired(keys: &[(&str, &str, Option<i64>)]) -> Desired {
        let mut d = Desired::default();
        for (t, p, end) in keys {
            d.grants.insert(
                key(t, p),
                DesiredGrant {
                    subject_id: format!("subject-{p}"),
                    assignment_ids: BTreeSet::from([format!("a-{p}")]),
                    not_after: end.map(at),
                },
            );
        }
        d
    }

    fn granted(end: Option<i64>) -> RequestedKey {
        RequestedKey {
            operation: ItemOperation::Grant,
            subject_id: Some("s".into()),
            not_after: end.map(at),
            assignment_ids: vec!["a-before".into()],
        }
    }

    #[test]
    fn only_keys_whose_operation_changes_get_an_item() {
        let managed = BTreeSet::from(["t".to_string(), "u".to_string()]);
        let d = desired(&[("t", "alice", Some(100)), ("t", "bob", None)]);
        let mut requested = BTreeMap::new();
        requested.insert(key("t", "alice"), granted(Some(100)));
        requested.insert(
            key("t", "bob"),
            RequestedKey {
                operation: ItemOperation::Revoke,
                subject_id: None,
                not_after: None,
                assignment_ids: Vec::new(),
            },
        );
        requested.insert(key("u", "carol"), granted(None));
        let items = plan(&d, &requested, &managed, at(10));
        let summary: Vec<_> = items
            .iter()
            .map(|i| (i.key.1.as_str(), i.operation, i.cause))
            .collect();
        assert_eq!(
            summary,
            [
                ("bob", ItemOperation::Grant, Cause::Assignment),
                ("carol", ItemOperation::Revoke, Cause::Assignment)
            ]
        );
        assert_eq!(items[0].cause_id.as_deref(), Some("a-bob"));
        assert_eq!(items[0].due, at(10));
        // Planned again once the items are requested: nothing more.
        for i in &items {
            requested.insert(
                i.key.clone(),
                RequestedKey {
                    operation: i.operation,
                    subject_id: i.subject_id.clone(),
                    not_after: i.not_after,
                    assignment_ids: i.assignment_ids.clone(),
                },
            );
        }
        assert!(plan(&d, &requested, &managed, at(11)).is_empty());
    }

    #[test]
    fn a_revoke_says_whether_the_grant_ended_or_left_management() {
        let managed = BTreeSet::from(["t".to_string()]);
        let requested = BTreeMap::from([
            (key("t", "ended"), granted(Some(5))),
            (key("t", "removed"), granted(Some(50))),
            (key("gone", "x"), granted(Some(5))),
        ]);
        let items = plan(&Desired::default(), &requested, &managed, at(10));
        let causes: Vec<_> = items
            .iter()
            .map(|i| (i.key.1.as_str(), i.cause, i.due))
            .collect();
        assert_eq!(
            causes,
            [
                ("x", Cause::Configuration, at(10)),
                ("ended", Cause::Ended, at(5)),
                ("removed", Cause::Assignment, at(10))
            ]
        );
    }

    #[test]
    fn a_grant_that_stands_on_other_assignments_is_refreshed_without_an_item() {
        let d = desired(&[("t", "alice", Some(100)), ("t", "bob", None)]);
        let mut requested = BTreeMap::new();
        // alice's grant was requested for another assignment that ends earlier.
        requested.insert(key("t", "alice"), granted(Some(50)));
        // bob's is exactly as requested.
        requested.insert(
            key("t", "bob"),
            RequestedKey {
                operation: ItemOperation::Grant,
                subject_id: Some("subject-bob".into()),
                not_after: None,
                assignment_ids: vec!["a-bob".into()],
            },
        );
        let managed = BTreeSet::from(["t".to_string()]);
        assert!(plan(&d, &requested, &managed, at(10)).is_empty());
        assert_eq!(
            refreshed_grants(&d, &requested),
            [RefreshedGrant {
                key: key("t", "alice"),
                assignment_ids: vec!["a-alice".into()],
                not_after: Some(at(100)),
            }]
        );
    }

    #[test]
    fn a_revoke_names_the_assignments_of_the_grant_it_undoes() {
        let managed = BTreeSet::from(["t".to_string()]);
        let requested = BTreeMap::from([(key("t", "p"), granted(Some(50)))]);
        let items = plan(&Desired::default(), &requested, &managed, at(10));
        assert_eq!(items[0].assignment_ids, ["a-before"]);
        assert_eq!(items[0].cause_id.as_deref(), Some("a-before"));
    }

    #[test]
    fn causes_are_told_apart_from_the_facts() {
        let fact = |in_effect, direct, known_before, upcoming_before| AssignmentFacts {
            in_effect,
            direct,
            known_before,
            upcoming_before,
        };
        let item = |operation| PlannedItem {
            key: key("t", "p"),
            operation,
            subject_id: Some("s".into()),
            cause: Cause::Assignment,
            cause_id: None,
            assignment_ids: vec!["a".into()],
            not_after: None,
            due: at(10),
        };
        let (grant, revoke) = (item(ItemOperation::Grant), item(ItemOperation::Revoke));
        let cause =
            |i: &PlannedItem, f: &[AssignmentFacts], active| refine_cause(i, f, active, true);
        // Grants.
        let group_known = [fact(true, false, true, false)];
        assert_eq!(cause(&grant, &group_known, true), Cause::Membership);
        let direct_known = [fact(true, true, true, false)];
        assert_eq!(cause(&grant, &direct_known, true), Cause::Directory);
        let waiting = [fact(true, true, false, true), fact(true, true, true, false)];
        assert_eq!(cause(&grant, &waiting, true), Cause::Started);
        let new = [
            fact(true, true, false, false),
            fact(true, true, false, true),
        ];
        assert_eq!(cause(&grant, &new, true), Cause::Assignment);
        // Revokes.
        assert_eq!(cause(&revoke, &group_known, false), Cause::Directory);
        let gone = [fact(false, true, true, false)];
        assert_eq!(cause(&revoke, &gone, true), Cause::Assignment);
        assert_eq!(cause(&revoke, &group_known, true), Cause::Membership);
        assert_eq!(cause(&revoke, &direct_known, true), Cause::Directory);
        // Without a previous pass, without facts, or another cause: kept.
        assert_eq!(
            refine_cause(&grant, &group_known, true, false),
            Cause::Assignment
        );
        assert_eq!(cause(&revoke, &[], false), Cause::Assignment);
        let ended = PlannedItem {
            cause: Cause::Ended,
            ..revoke.clone()
        };
        assert_eq!(cause(&ended, &group_known, false), Cause::Ended);
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_five_minutes_with_jitter() {
        let secs = |n, j| retry_delay(n, j).as_secs_f64();
        assert_eq!(secs(1, 0.0), 1.0);
        assert_eq!(secs(2, 0.0), 2.0);
        assert_eq!(secs(9, 0.0), 256.0);
        assert_eq!(secs(10, 0.0), 300.0);
        assert_eq!(secs(u32::MAX, 0.0), 300.0);
        assert_eq!(secs(3, 0.2), 4.8);
        assert_eq!(secs(3, -0.9), 3.2);
        // With the default 10 attempts an item dies about 9 minutes after its first failure.
        let total: f64 = (1..10).map(|n| secs(n, 0.0)).sum();
        assert!((500.0..600.0).contains(&total), "{total}");
    }

    #[test]
    fn states_and_operations_round_trip_their_wire_names() {
        for s in ItemState::ALL {
            assert_eq!(ItemState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ItemState::parse("done"), None);
        for o in [ItemOperation::Grant, ItemOperation::Revoke] {
            assert_eq!(ItemOperation::parse(o.as_str()), Some(o));
        }
        assert!(ItemState::Retrying.unfinished() && !ItemState::Dead.unfinished());
    }
}
