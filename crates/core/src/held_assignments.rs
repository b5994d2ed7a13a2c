//! The assignments recently listed subjects hold, kept in memory in list order, so the
//! commonest list, "my assignments" (`roleAssignments?$filter=subjectId eq '<me>'`, which
//! stands for the caller and the groups it is in: decisions.md §6), is answered without a
//! database statement.
//!
//! Each subject's list is every row of the `assignments` table it holds (live, or ended and
//! not yet swept), each with its list position (the table's insertion order). Reads filter
//! them by the clock, so a list stays right as assignments start and end. Every committed
//! change to a subject's assignments is an [`AccessChange`] the node applies (its own writes
//! after they commit, other nodes' through the access log): applying one drops that
//! subject's list, and the next read loads it again.
//!
//! A list loaded by a read transaction may be older than a change applied meanwhile. So a
//! reader takes a [`CacheTicket`] before its transaction begins, and the list it loaded is
//! kept only if no change to that subject was applied since ([`HeldAssignmentCache::offer`]).
//! Changes are remembered by a hash of the subject in a fixed table of ticks, so a change to
//! another subject can, rarely, refuse a list too (it is loaded again next time).

use crate::access::AccessChange;
use crate::assignment::{HeldAssignment, RoleAssignment};
use crate::error::Result;
use crate::odata::{CompareOp, Filter, Literal, Operand};
use crate::query::{ListQuery, Page, Restriction};
use crate::store::ReadTx;
use crate::visibility::{Collection, Item, ReadScope};
use hashlink::LruCache;
use jiff::Timestamp;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

/// One subject's assignments, in list order.
pub type HeldList = Arc<[HeldAssignment]>;

/// How many assignment rows the cache holds at most, over all subjects (about 0.5 KB
/// each); the least recently read subjects' lists go first.
pub const HELD_ROWS_BUDGET: usize = 200_000;

/// Slots of the table of recent changes (see the module's doc).
const CHANGE_SLOTS: usize = 256;

/// Where the cache stood when a reader began: lists loaded after it are kept only if no
/// change to their subject was applied since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTicket(u64);

/// Recently listed subjects' assignments (see the module's doc).
pub struct HeldAssignmentCache {
    lists: LruCache<String, HeldList>,
    rows: usize,
    budget: usize,
    tick: u64,
    changed_at: [u64; CHANGE_SLOTS],
}

impl std::fmt::Debug for HeldAssignmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldAssignmentCache")
            .field("subjects", &self.lists.len())
            .field("rows", &self.rows)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl Default for HeldAssignmentCache {
    fn default() -> Self {
        Self::with_budget(HELD_ROWS_BUDGET)
    }
}

impl HeldAssignmentCache {
    /// An empty cache holding at most `budget` rows.
    pub fn with_budget(budget: usize) -> Self {
        Self {
            lists: LruCache::new_unbounded(),
            rows: 0,
            budget,
            tick: 0,
            changed_at: [0; CHANGE_SLOTS],
        }
    }

    /// Where the cache stands now; take it before the read transaction that may load lists.
    pub fn ticket(&self) -> CacheTicket {
        CacheTicket(self.tick)
    }

    /// `subject`'s list, if held (it becomes the most recently read).
    pub fn get(&mut self, subject: &str) -> Option<HeldList> {
        self.lists.get(subject).cloned()
    }

    /// The lists of all of `subjects` if every one is held, else `None`.
    pub fn get_all(&mut self, subjects: &[String]) -> Option<Vec<HeldList>> {
        subjects.iter().map(|s| self.get(s)).collect()
    }

    /// Keeps `subject`'s list as a transaction begun after `ticket` loaded it, unless a
    /// change to `subject` was applied since (then that transaction may not have seen it).
    pub fn offer(&mut self, ticket: CacheTicket, subject: &str, list: HeldList) {
        if self.changed_at[slot(subject)] > ticket.0 || list.len() > self.budget {
            return;
        }
        self.rows += list.len();
        if let Some(old) = self.lists.insert(subject.to_string(), list) {
            self.rows -= old.len();
        }
        while self.rows > self.budget {
            match self.lists.remove_lru() {
                Some((_, evicted)) => self.rows -= evicted.len(),
                None => break,
            }
        }
    }

    /// Drops the lists committed `changes` make stale.
    pub fn apply(&mut self, changes: &[AccessChange]) {
        for c in changes {
            match c {
                AccessChange::Upsert(a, _) => self.changed(&a.subject_id),
                AccessChange::Remove { subject_id, .. }
                | AccessChange::SubjectRemoved(subject_id) => self.changed(subject_id),
                AccessChange::Resource { .. }
                | AccessChange::Groups { .. }
                | AccessChange::Subject(_)
                | AccessChange::Role { .. } => {}
            }
        }
    }

    /// Drops every list, and refuses those loaded before now (the node rebuilt its view of
    /// the store from the tables).
    pub fn clear(&mut self) {
        self.tick += 1;
        self.changed_at = [self.tick; CHANGE_SLOTS];
        self.lists.clear();
        self.rows = 0;
    }

    fn changed(&mut self, subject: &str) {
        self.tick += 1;
        self.changed_at[slot(subject)] = self.tick;
        if let Some(old) = self.lists.remove(subject) {
            self.rows -= old.len();
        }
    }
}

fn slot(subject: &str) -> usize {
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(subject);
    (h % CHANGE_SLOTS as u64) as usize
}

/// Groups `rows` (as [`crate::store::AssignmentRead::held_assignments`] returns them, in
/// list order) into one list per subject of `subjects`, empty lists included.
pub fn lists_by_subject(subjects: &[String], rows: Vec<HeldAssignment>) -> Vec<(String, HeldList)> {
    let mut by_subject: Vec<(String, Vec<HeldAssignment>)> =
        subjects.iter().map(|s| (s.clone(), Vec::new())).collect();
    for row in rows {
        if let Some((_, list)) = by_subject
            .iter_mut()
            .find(|(s, _)| *s == row.assignment.subject_id)
        {
            list.push(row);
        }
    }
    by_subject
        .into_iter()
        .map(|(s, list)| (s, HeldList::from(list)))
        .collect()
}

/// A role-assignment list the held lists answer exactly as the store would: the rows of
/// some subjects (the filter's `subjectId in (…)`, which "my assignments" becomes), maybe
/// of one state, current now, in list order, with no other filter, restriction or order.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldListQuery {
    /// The subjects whose rows are listed.
    pub holders: Vec<String>,
    state: Option<String>,
    now: Timestamp,
}

impl HeldListQuery {
    /// The held-list form of `q` on `coll`, if it has one.
    pub fn of(coll: Collection, q: &ListQuery) -> Option<Self> {
        if coll != Collection::RoleAssignments || !q.orderby.is_empty() {
            return None;
        }
        let [Restriction::CurrentAt(now)] = q.restrictions.as_slice() else {
            return None;
        };
        let mut conjuncts = Vec::new();
        and_terms(q.filter.as_ref()?, &mut conjuncts);
        let mut holders = None;
        let mut state = None;
        for term in conjuncts {
            match term {
                Filter::In {
                    operand: Operand::Property(path),
                    values,
                } if holders.is_none() && is_path(path, "subjectId") => {
                    let mut ids = Vec::with_capacity(values.len());
                    for v in values {
                        let Literal::String(id) = v else {
                            return None;
                        };
                        if !ids.contains(id) {
                            ids.push(id.clone());
                        }
                    }
                    holders = Some(ids);
                }
                Filter::Compare {
                    left: Operand::Property(path),
                    op: CompareOp::Eq,
                    right: Operand::Literal(Literal::String(s)),
                } if state.is_none() && is_path(path, "assignmentState") && s.is_ascii() => {
                    state = Some(s.clone());
                }
                _ => return None,
            }
        }
        Some(Self {
            holders: holders?,
            state,
            now: *now,
        })
    }

    /// The page of the rows in `lists` (one per holder) that `skip`, `top` and `count`
    /// select, each with its `memberType` as `scope` shows it.
    pub fn page(
        &self,
        lists: &[HeldList],
        scope: &ReadScope,
        skip: u32,
        top: u32,
        count: bool,
    ) -> Page<Item> {
        let mut rows: Vec<&HeldAssignment> = lists
            .iter()
            .flat_map(|l| l.iter())
            .filter(|h| self.matches(&h.assignment))
            .collect();
        rows.sort_unstable_by_key(|h| h.position);
        Page::window(rows, skip, top, count).map(|h| {
            let a = h.assignment.clone();
            let m = scope.member_type(&a);
            Item::Assignment(a, m)
        })
    }

    fn matches(&self, a: &RoleAssignment) -> bool {
        a.is_current(self.now)
            && self.holders.contains(&a.subject_id)
            && self
                .state
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(a.state.as_str()))
    }
}

fn is_path(path: &[String], name: &str) -> bool {
    matches!(path, [p] if p.eq_ignore_ascii_case(name))
}

fn and_terms<'f>(f: &'f Filter, out: &mut Vec<&'f Filter>) {
    match f {
        Filter::And(a, b) => {
            and_terms(a, out);
            and_terms(b, out);
        }
        other => out.push(other),
    }
}

/// The lists of `holders`: those `cache` holds, the others loaded in one statement of `tx`
/// and offered to it with `ticket` (taken before `tx` began).
pub fn held_lists(
    cache: &std::sync::Mutex<HeldAssignmentCache>,
    ticket: CacheTicket,
    tx: &mut dyn ReadTx,
    holders: &[String],
) -> Result<Vec<HeldList>> {
    let poisoned = || crate::error::DomainError::internal("held assignment cache lock poisoned");
    let mut found: Vec<Option<HeldList>> = {
        let mut c = cache.lock().map_err(|_| poisoned())?;
        holders.iter().map(|h| c.get(h)).collect()
    };
    let missing: Vec<String> = holders
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(h, _)| h.clone())
        .collect();
    if !missing.is_empty() {
        let loaded = lists_by_subject(&missing, tx.held_assignments(&missing)?);
        let mut c = cache.lock().map_err(|_| poisoned())?;
        for (subject, list) in loaded {
            c.offer(ticket, &subject, list.clone());
            if let Some(i) = holders.iter().position(|h| *h == subject) {
                found[i] = Some(list);
            }
        }
    }
    Ok(found.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assignment::AssignmentState;
    use crate::odata::parse_filter;
    use crate::schedule::Schedule;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn row(
        position: i64,
        subject: &str,
        state: AssignmentState,
        from: i64,
        to: Option<i64>,
    ) -> HeldAssignment {
        HeldAssignment {
            position,
            assignment: RoleAssignment {
                id: format!("a{position}"),
                resource_id: "r".into(),
                role_definition_id: "d".into(),
                subject_id: subject.into(),
                state,
                linked_eligible_id: None,
                schedule: Schedule {
                    start: t(from),
                    end: to.map(t),
                },
                request_id: format!("q{position}"),
            },
        }
    }

    fn list(rows: Vec<HeldAssignment>) -> HeldList {
        HeldList::from(rows)
    }

    fn upsert(subject: &str) -> AccessChange {
        AccessChange::Upsert(
            row(0, subject, AssignmentState::Active, 0, None).assignment,
            false,
        )
    }

    /// Two subjects whose changes land in different slots.
    fn apart() -> (String, String) {
        let a = "s-0".to_string();
        let b = (1..)
            .map(|i| format!("s-{i}"))
            .find(|b| slot(b) != slot(&a))
            .unwrap();
        (a, b)
    }

    #[test]
    fn a_list_loaded_before_a_change_to_its_subject_is_refused() {
        let (a, b) = apart();
        let mut c = HeldAssignmentCache::default();
        let before = c.ticket();
        c.apply(&[upsert(&a)]);
        c.offer(before, &a, list(vec![]));
        assert!(c.get(&a).is_none(), "loaded before the change: maybe stale");
        // Another subject's change says nothing about `b`'s list.
        c.offer(before, &b, list(vec![]));
        assert!(c.get(&b).is_some());
        // Loaded after the change: kept, until the next change drops it.
        c.offer(c.ticket(), &a, list(vec![]));
        assert!(c.get(&a).is_some());
        c.apply(&[AccessChange::Remove {
            subject_id: a.clone(),
            assignment_id: "x".into(),
        }]);
        assert!(c.get(&a).is_none());
        c.offer(c.ticket(), &a, list(vec![]));
        c.apply(&[AccessChange::SubjectRemoved(a.clone())]);
        assert!(c.get(&a).is_none());
    }

    #[test]
    fn changes_to_membership_resources_and_roles_keep_the_lists() {
        let mut c = HeldAssignmentCache::default();
        let ticket = c.ticket();
        c.apply(&[
            AccessChange::Groups {
                member_id: "s".into(),
                groups: vec!["g".into()],
            },
            AccessChange::Resource {
                id: "r".into(),
                parent_id: None,
            },
            AccessChange::Role {
                id: "d".into(),
                template_id: "t".into(),
            },
        ]);
        c.offer(ticket, "s", list(vec![]));
        assert!(c.get("s").is_some());
    }

    #[test]
    fn clearing_refuses_every_list_loaded_before() {
        let mut c = HeldAssignmentCache::default();
        c.offer(c.ticket(), "s", list(vec![]));
        let before = c.ticket();
        c.clear();
        assert!(c.get("s").is_none());
        c.offer(before, "t", list(vec![]));
        assert!(c.get("t").is_none());
    }

    proptest! {
        /// Whatever is offered, read and changed, the cache holds at most its budget of
        /// rows, counts them right, keeps what was read most recently, and answers a held
        /// subject with the list last offered for it.
        #[test]
        fn the_cache_keeps_to_its_budget(
            steps in proptest::collection::vec((0..3u8, 0..6usize, 0..5usize), 1..60),
        ) {
            let budget = 8;
            let mut c = HeldAssignmentCache::with_budget(budget);
            let mut last: std::collections::HashMap<String, usize> = Default::default();
            for (op, s, n) in steps {
                let subject = format!("s{s}");
                match op {
                    0 => {
                        let rows = (0..n as i64)
                            .map(|i| row(i, &subject, AssignmentState::Eligible, 0, None))
                            .collect();
                        c.offer(c.ticket(), &subject, list(rows));
                        last.insert(subject.clone(), n);
                        prop_assert!(c.get(&subject).is_some(), "the newest list stays");
                    }
                    1 => {
                        if let Some(l) = c.get(&subject) {
                            prop_assert_eq!(Some(&l.len()), last.get(&subject));
                        }
                    }
                    _ => c.apply(&[upsert(&subject)]),
                }
                let held: usize = c.lists.iter().map(|(_, l)| l.len()).sum();
                prop_assert_eq!(held, c.rows);
                prop_assert!(c.rows <= budget);
            }
        }
    }

    fn query(filter: &str, restrictions: Vec<Restriction>) -> ListQuery {
        ListQuery {
            filter: Some(parse_filter(filter).unwrap()),
            restrictions,
            top: 100,
            ..ListQuery::default()
        }
    }

    #[test]
    fn only_plain_lists_of_current_rows_by_subject_are_answered_from_held_lists() {
        let now = vec![Restriction::CurrentAt(t(5))];
        let of = |f: &str, r: Vec<Restriction>| {
            HeldListQuery::of(Collection::RoleAssignments, &query(f, r))
        };
        let q = of(
            "subjectId in ('u', 'g', 'u') and assignmentState eq 'Active'",
            now.clone(),
        )
        .unwrap();
        assert_eq!(q.holders, vec!["u".to_string(), "g".to_string()]);
        assert!(of("SubjectId in ('u')", now.clone()).is_some());
        // Anything the held lists cannot decide exactly goes to the store.
        for f in [
            "subjectId eq 'u'",
            "subjectId in ('u') or assignmentState eq 'Active'",
            "subjectId in ('u') and resourceId eq 'r'",
            "subjectId in ('u') and assignmentState eq 'Äctive'",
            "subjectId in ('u') and subjectId in ('v')",
            "assignmentState eq 'Active'",
        ] {
            assert_eq!(of(f, now.clone()), None, "{f}");
        }
        assert_eq!(of("subjectId in ('u')", vec![]), None);
        let visible = Restriction::SubjectIn(vec!["u".into()]);
        assert_eq!(
            of("subjectId in ('u')", vec![visible, now[0].clone()]),
            None
        );
        let mut ordered = query("subjectId in ('u')", now.clone());
        ordered.orderby = vec![crate::odata::OrderBy {
            path: vec!["id".into()],
            descending: false,
        }];
        assert_eq!(
            HeldListQuery::of(Collection::RoleAssignments, &ordered),
            None
        );
        assert_eq!(
            HeldListQuery::of(
                Collection::RoleAssignmentRequests,
                &query("subjectId in ('u')", now)
            ),
            None
        );
    }

    #[test]
    fn a_page_merges_the_holders_lists_in_list_order_and_keeps_current_rows() {
        use AssignmentState::{Active, Eligible};
        let mine = list(vec![
            row(1, "u", Eligible, 0, None),
            row(4, "u", Active, 0, Some(5)), // ended at 5
            row(6, "u", Active, 6, None),    // starts after 5
            row(7, "u", Active, 0, Some(9)),
        ]);
        let group = list(vec![
            row(2, "g", Eligible, 0, None),
            row(8, "g", Active, 5, None),
        ]);
        // "My assignments" of `u`, a member of `g`, as the list route scopes it.
        let mut ix = crate::access::AccessIndex::new();
        ix.add_membership("g", "u");
        let u = crate::access::Caller {
            subject_id: "u".into(),
            display_name: "u".into(),
            principal_name: None,
            is_tenant_admin: false,
            mfa: false,
        };
        let filter = parse_filter("subjectId eq 'u'").unwrap();
        let scope = crate::visibility::read_scope(
            Collection::RoleAssignments,
            None,
            Some(filter),
            &u,
            &ix,
            t(5),
        )
        .unwrap();
        let q = HeldListQuery::of(
            Collection::RoleAssignments,
            &ListQuery {
                filter: scope.filter.clone(),
                restrictions: scope.restrictions.clone(),
                ..ListQuery::default()
            },
        )
        .unwrap();
        assert_eq!(q.holders, vec!["u".to_string(), "g".to_string()]);
        let ids = |p: &Page<Item>| -> Vec<(String, crate::assignment::MemberType)> {
            p.items
                .iter()
                .map(|i| match i {
                    Item::Assignment(a, m) => (a.id.clone(), *m),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        use crate::assignment::MemberType::{Direct, Group};
        let all = q.page(&[mine.clone(), group.clone()], &scope, 0, 100, true);
        assert_eq!(
            ids(&all),
            vec![
                ("a1".into(), Direct),
                ("a2".into(), Group),
                ("a7".into(), Direct),
                ("a8".into(), Group)
            ]
        );
        assert_eq!((all.total, all.more), (Some(4), false));
        let second = q.page(&[group, mine], &scope, 1, 2, false);
        assert_eq!(
            ids(&second),
            vec![("a2".into(), Group), ("a7".into(), Direct)]
        );
        assert_eq!((second.total, second.more), (None, true));
    }

    #[test]
    fn rows_are_grouped_by_subject_in_the_order_given() {
        let rows = vec![
            row(1, "g", AssignmentState::Eligible, 0, None),
            row(2, "u", AssignmentState::Eligible, 0, None),
            row(3, "g", AssignmentState::Eligible, 0, None),
        ];
        let lists = lists_by_subject(&["u".into(), "g".into(), "x".into()], rows);
        let positions: Vec<(String, Vec<i64>)> = lists
            .iter()
            .map(|(s, l)| (s.clone(), l.iter().map(|h| h.position).collect()))
            .collect();
        assert_eq!(
            positions,
            vec![
                ("u".into(), vec![2]),
                ("g".into(), vec![1, 3]),
                ("x".into(), vec![])
            ]
        );
    }
}
