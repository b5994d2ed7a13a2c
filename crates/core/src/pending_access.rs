//! Group commit's rule for effective access. Writes that arrive together are committed in
//! one database transaction, one after another, and each is decided as if it ran alone on
//! everything committed before it (the snapshot rule of [`crate::operation`]). Its store
//! reads see the batch's earlier writes (they ran in the same transaction); the access index
//! does not, because it is patched only once the batch has committed. [`PendingAccess`]
//! collects what those earlier writes change, and [`BatchView`] answers from the committed
//! index only when none of that can change the answer. When it could, the view marks the
//! write *stale*: the write is undone and runs again, first in the next batch, where nothing
//! is pending. So every decision reads an index that agrees with its store reads.

use crate::access::{AccessChange, AccessView};
use jiff::Timestamp;
use std::cell::Cell;
use std::collections::HashSet;

/// The access changes of a batch's writes that have run but not yet committed: whom they
/// touch, and whether they change group membership or the resource tree and role catalogue.
#[derive(Debug, Default)]
pub struct PendingAccess {
    /// Subjects (users or groups) whose own assignments changed.
    holders: HashSet<String>,
    /// A subject's groups changed, or a subject was deleted.
    membership: bool,
    /// A resource was registered or a role definition created.
    structure: bool,
}

impl PendingAccess {
    /// Adds one write's changes.
    pub fn add(&mut self, changes: &[AccessChange]) {
        for c in changes {
            match c {
                AccessChange::Upsert(a, _) => {
                    self.holders.insert(a.subject_id.clone());
                }
                AccessChange::Remove { subject_id, .. } => {
                    self.holders.insert(subject_id.clone());
                }
                AccessChange::Groups { .. } | AccessChange::SubjectRemoved(_) => {
                    self.membership = true;
                }
                AccessChange::Resource { .. } | AccessChange::Role { .. } => {
                    self.structure = true;
                }
                // Attributes: the index answers nothing from them (a write reads them
                // from its own transaction).
                AccessChange::Subject(_) => {}
            }
        }
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty() && !self.membership && !self.structure
    }

    /// Whether the pending changes could change what `subject_id` holds: its own or its
    /// groups' assignments changed, or membership or the tree did. `groups` are its
    /// groups in the committed index (right as long as membership did not change).
    fn touches_holdings(&self, subject_id: &str, groups: impl FnOnce() -> Vec<String>) -> bool {
        if self.membership || self.structure {
            return true;
        }
        if self.holders.is_empty() {
            return false;
        }
        self.holders.contains(subject_id) || groups().iter().any(|g| self.holders.contains(g))
    }
}

/// The committed access index as one write of a batch may read it: answers as `committed`
/// does, and marks itself stale when the batch's pending changes could make that answer
/// differ from the one the write would get after them.
pub struct BatchView<'a> {
    committed: &'a dyn AccessView,
    pending: &'a PendingAccess,
    stale: Cell<bool>,
}

impl<'a> BatchView<'a> {
    /// A view of `committed` for a write that runs after the writes of `pending`.
    pub fn new(committed: &'a dyn AccessView, pending: &'a PendingAccess) -> Self {
        Self {
            committed,
            pending,
            stale: Cell::new(false),
        }
    }

    /// Whether an answer given may differ from the index after the pending changes: the
    /// write must be undone and run again once they have committed.
    pub fn is_stale(&self) -> bool {
        self.stale.get()
    }

    fn mark_if(&self, affected: bool) {
        if affected {
            self.stale.set(true);
        }
    }

    fn holdings_of(&self, subject_id: &str) {
        self.mark_if(
            self.pending
                .touches_holdings(subject_id, || self.committed.groups_of(subject_id)),
        );
    }
}

impl AccessView for BatchView<'_> {
    fn holds_any(&self, subject_id: &str, resource_id: &str, now: Timestamp) -> bool {
        self.holdings_of(subject_id);
        self.committed.holds_any(subject_id, resource_id, now)
    }

    fn administers(&self, subject_id: &str, resource_id: &str, now: Timestamp) -> bool {
        self.holdings_of(subject_id);
        self.committed.administers(subject_id, resource_id, now)
    }

    fn groups_of(&self, subject_id: &str) -> Vec<String> {
        self.mark_if(self.pending.membership);
        self.committed.groups_of(subject_id)
    }

    fn ancestors_or_self(&self, resource_id: &str) -> Vec<String> {
        self.mark_if(self.pending.structure);
        self.committed.ancestors_or_self(resource_id)
    }

    fn anchors(&self, subject_id: &str, now: Timestamp) -> Vec<String> {
        self.holdings_of(subject_id);
        self.committed.anchors(subject_id, now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::access::AccessIndex;
    use crate::assignment::for_tests::assignment;
    use jiff::SignedDuration;
    use proptest::prelude::*;

    const TREE: &[(&str, Option<&str>)] = &[
        ("root", None),
        ("sub", Some("root")),
        ("rg1", Some("sub")),
        ("rg2", Some("sub")),
        ("vm", Some("rg1")),
    ];
    const USERS: usize = 4;
    const GROUPS: usize = 2;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn subject(n: usize) -> String {
        if n < USERS {
            format!("u{n}")
        } else {
            format!("g{}", n - USERS)
        }
    }

    /// An assignment: (number, holder, resource, active, administers, start offset h,
    /// length h).
    type Spec = (usize, usize, usize, bool, bool, i64, Option<i64>);

    fn upsert((n, holder, resource, active, admin, from, len): Spec) -> AccessChange {
        let scope = TREE[resource].0;
        AccessChange::Upsert(
            assignment(
                n,
                (scope, &format!("{scope}/role")),
                &subject(holder),
                active,
                now() + SignedDuration::from_hours(from),
                len,
            ),
            admin,
        )
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0..8usize,
            0..USERS + GROUPS,
            0..TREE.len(),
            any::<bool>(),
            any::<bool>(),
            -2i64..2,
            proptest::option::of(1i64..3),
        )
    }

    fn change() -> impl Strategy<Value = AccessChange> {
        prop_oneof![
            4 => spec().prop_map(upsert),
            2 => (0..USERS + GROUPS, 0..8usize).prop_map(|(s, n)| AccessChange::Remove {
                subject_id: subject(s),
                assignment_id: format!("00000000-0000-0000-0000-{n:012x}"),
                resource_id: None,
            }),
            1 => (0..USERS, proptest::collection::vec(0..GROUPS, 0..3)).prop_map(|(m, gs)| {
                AccessChange::Groups {
                    member_id: subject(m),
                    groups: gs.into_iter().map(|g| subject(USERS + g)).collect(),
                }
            }),
            1 => (0..USERS + GROUPS).prop_map(|s| AccessChange::SubjectRemoved(subject(s))),
            1 => (0..2usize, 0..TREE.len()).prop_map(|(k, p)| AccessChange::Resource {
                id: format!("new{k}"),
                parent_id: Some(TREE[p].0.into()),
            }),
            1 => Just(AccessChange::Role { id: "new0/role".into(), template_id: "t".into() }),
        ]
    }

    /// One question a decision asks: (kind, subject, resource, hours from now).
    fn question() -> impl Strategy<Value = (u8, usize, usize, i64)> {
        (0..5u8, 0..USERS + GROUPS, 0..TREE.len() + 1, -1i64..3)
    }

    fn ask(view: &dyn AccessView, (kind, s, r, h): (u8, usize, usize, i64)) -> Vec<String> {
        let s = subject(s);
        let r = TREE.get(r).map_or("new0", |t| t.0);
        let at = now() + SignedDuration::from_hours(h);
        let mut out = match kind {
            0 => vec![view.holds_any(&s, r, at).to_string()],
            1 => vec![view.administers(&s, r, at).to_string()],
            2 => view.groups_of(&s),
            3 => view.ancestors_or_self(r),
            _ => view.anchors(&s, at),
        };
        out.sort();
        out
    }

    fn index(committed: &[AccessChange]) -> AccessIndex {
        let mut ix = AccessIndex::new();
        for (r, parent) in TREE {
            ix.add_resource(r, *parent);
            ix.add_role(&format!("{r}/role"), "t");
        }
        for (group, member) in [("g0", "u0"), ("g0", "u1"), ("g1", "u2"), ("g0", "g1")] {
            ix.add_membership(group, member);
        }
        ix.apply(committed);
        ix
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// Whatever the batch's earlier writes changed, an answer the view does not mark
        /// stale is the answer of the index with those changes applied.
        #[test]
        fn an_answer_not_marked_stale_is_the_answer_after_the_pending_changes(
            committed in proptest::collection::vec(change(), 0..16),
            earlier in proptest::collection::vec(proptest::collection::vec(change(), 0..3), 0..4),
            questions in proptest::collection::vec(question(), 1..6),
        ) {
            let before = index(&committed);
            let mut after = index(&committed);
            let mut pending = PendingAccess::default();
            for changes in &earlier {
                after.apply(changes);
                pending.add(changes);
            }
            for q in questions {
                let view = BatchView::new(&before, &pending);
                let answer = ask(&view, q);
                if !view.is_stale() {
                    prop_assert_eq!(answer, ask(&after, q), "{:?} after {:?}", q, earlier);
                }
            }
        }
    }

    #[test]
    fn nothing_pending_marks_nothing_stale() {
        let before = index(&[upsert((1, 0, 2, true, true, -1, None))]);
        let pending = PendingAccess::default();
        let view = BatchView::new(&before, &pending);
        assert!(view.holds_any("u0", "vm", now()));
        assert!(view.administers("u0", "rg1", now()));
        assert_eq!(view.anchors("u0", now()), vec!["rg1".to_string()]);
        assert_eq!(view.groups_of("u0"), ["g0"]);
        assert_eq!(view.ancestors_or_self("rg1"), ["rg1", "sub", "root"]);
        assert!(!view.is_stale());
        assert!(pending.is_empty());
    }

    #[test]
    fn another_holders_change_leaves_a_subject_fresh_and_its_own_or_its_groups_do_not() {
        let before = index(&[]);
        let mut pending = PendingAccess::default();
        pending.add(&[upsert((1, 0, 2, true, false, -1, None))]);
        let fresh = BatchView::new(&before, &pending);
        fresh.holds_any("u3", "rg1", now());
        fresh.groups_of("u0");
        fresh.ancestors_or_self("vm");
        assert!(!fresh.is_stale(), "u3 is not u0");
        let own = BatchView::new(&before, &pending);
        own.anchors("u0", now());
        assert!(own.is_stale());
        pending.add(&[upsert((2, USERS, 3, true, false, -1, None))]);
        let through_group = BatchView::new(&before, &pending);
        through_group.administers("u1", "rg2", now());
        assert!(
            through_group.is_stale(),
            "u1 is in g0, whose assignments changed"
        );
    }

    #[test]
    fn membership_and_structure_changes_mark_what_they_reach() {
        let before = index(&[]);
        let mut pending = PendingAccess::default();
        pending.add(&[AccessChange::Groups {
            member_id: "u0".into(),
            groups: vec!["g0".into()],
        }]);
        let view = BatchView::new(&before, &pending);
        view.ancestors_or_self("vm");
        assert!(!view.is_stale());
        view.groups_of("u3");
        assert!(view.is_stale());
        let mut pending = PendingAccess::default();
        pending.add(&[AccessChange::Resource {
            id: "new0".into(),
            parent_id: Some("rg2".into()),
        }]);
        let view = BatchView::new(&before, &pending);
        view.groups_of("u3");
        assert!(!view.is_stale());
        view.holds_any("u3", "new0", now());
        assert!(view.is_stale());
    }
}
