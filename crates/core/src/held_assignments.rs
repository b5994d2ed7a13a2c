//! The assignments of recently listed subjects and resources, kept in memory in list order,
//! so the commonest lists are answered without a database statement: "my assignments"
//! (`roleAssignments?$filter=subjectId eq '<me>'`, which stands for the caller and the
//! groups it is in: decisions.md §6) and a resource's assignments
//! (`resources/{id}/roleAssignments`, its own and its ancestors').
//!
//! A held list is every row of the `assignments` table one subject holds, or made on one
//! resource (live, or ended and not yet swept), each with its list position (the table's
//! insertion order). Reads filter them by the clock, so a list stays right as assignments
//! start and end. Every committed change to an assignment is an [`AccessChange`] the node
//! applies (its own writes after they commit, other nodes' through the access log):
//! applying one drops the lists of its subject and its resource, and the next read loads
//! them again.
//!
//! A list loaded by a read transaction may be older than a change applied meanwhile. So a
//! reader takes a [`CacheTicket`] before its transaction begins, and the list it loaded is
//! kept only if no change to its key was applied since ([`HeldAssignmentCache::offer`]).
//! Changes are remembered by a hash of the key in a fixed table of ticks, so a change to
//! another key can, rarely, refuse a list too (it is loaded again next time).

use crate::access::AccessChange;
use crate::assignment::{AssignmentState, HeldAssignment, HeldBy, RoleAssignment};
use crate::odata::{CompareOp, Filter, Literal, Operand};
use crate::query::{ListQuery, Page, Restriction};
use crate::schedule::Schedule;
use crate::visibility::{Collection, Item, ReadScope};
use hashlink::LruCache;
use jiff::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

/// The rows of one subject or one resource, in list order.
pub type HeldList = Arc<[HeldRow]>;

/// An id as a held row keeps it: a GUID in its canonical text (lower case, hyphenated) as
/// its 16 bytes, any other text as is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HeldId {
    Guid([u8; 16]),
    Text(Box<str>),
}

impl HeldId {
    fn of(id: &str) -> Self {
        if let Ok(u) = uuid::Uuid::try_parse(id) {
            let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
            if u.hyphenated().encode_lower(&mut canonical).as_bytes() == id.as_bytes() {
                return Self::Guid(u.into_bytes());
            }
        }
        Self::Text(id.into())
    }

    fn text(&self) -> String {
        match self {
            Self::Guid(b) => crate::access::key_to_id(u128::from_be_bytes(*b)),
            Self::Text(t) => t.to_string(),
        }
    }
}

/// One assignment row of a held list, kept compactly (about a quarter of a
/// [`RoleAssignment`]'s memory): ids that are GUIDs as bytes, the subject, resource and role
/// ids shared by the rows of a list that name them; the schedule as is, so a row is current
/// exactly when its assignment is ([`Schedule::is_current`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRow {
    position: i64,
    id: HeldId,
    request_id: HeldId,
    linked_eligible_id: Option<HeldId>,
    subject_id: Arc<str>,
    resource_id: Arc<str>,
    role_definition_id: Arc<str>,
    state: AssignmentState,
    schedule: Schedule,
}

impl HeldRow {
    /// The assignment this row keeps.
    pub fn assignment(&self) -> RoleAssignment {
        RoleAssignment {
            id: self.id.text(),
            resource_id: self.resource_id.to_string(),
            role_definition_id: self.role_definition_id.to_string(),
            subject_id: self.subject_id.to_string(),
            state: self.state,
            linked_eligible_id: self.linked_eligible_id.as_ref().map(HeldId::text),
            schedule: self.schedule,
            request_id: self.request_id.text(),
        }
    }
}

/// `rows` (in list order) as a held list, the ids they share stored once.
pub fn held_list(rows: Vec<HeldAssignment>) -> HeldList {
    let mut shared: std::collections::HashMap<String, Arc<str>> = Default::default();
    let mut share = |s: String| -> Arc<str> {
        if let Some(a) = shared.get(&s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s.as_str());
        shared.insert(s, Arc::clone(&a));
        a
    };
    rows.into_iter()
        .map(|h| {
            let a = h.assignment;
            HeldRow {
                position: h.position,
                id: HeldId::of(&a.id),
                request_id: HeldId::of(&a.request_id),
                linked_eligible_id: a.linked_eligible_id.as_deref().map(HeldId::of),
                subject_id: share(a.subject_id),
                resource_id: share(a.resource_id),
                role_definition_id: share(a.role_definition_id),
                state: a.state,
                schedule: a.schedule,
            }
        })
        .collect()
}

/// What a held list gathers: the rows a subject holds itself, or those made on a resource.
pub type HeldKey = (HeldBy, String);

/// How many assignment rows the cache holds at most, over all lists (about 0.2 KB each);
/// the least recently read lists go first.
pub const HELD_ROWS_BUDGET: usize = 600_000;

/// Slots of the table of recent changes (see the module's doc).
const CHANGE_SLOTS: usize = 256;

/// Where the cache stood when a reader began: lists loaded after it are kept only if no
/// change to their key was applied since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTicket(u64);

/// Recently listed subjects' and resources' assignments (see the module's doc).
pub struct HeldAssignmentCache {
    lists: LruCache<HeldKey, HeldList>,
    rows: usize,
    budget: usize,
    tick: u64,
    changed_at: [u64; CHANGE_SLOTS],
}

impl std::fmt::Debug for HeldAssignmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldAssignmentCache")
            .field("lists", &self.lists.len())
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

    /// The list of `key`, if held (it becomes the most recently read).
    pub fn get(&mut self, key: &HeldKey) -> Option<HeldList> {
        self.lists.get(key).cloned()
    }

    /// The lists of all of `keys` if every one is held, else `None`.
    pub fn get_all(&mut self, keys: &[HeldKey]) -> Option<Vec<HeldList>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Keeps the list of `key` as a transaction begun after `ticket` loaded it, unless a
    /// change to `key` was applied since (then that transaction may not have seen it).
    pub fn offer(&mut self, ticket: CacheTicket, key: &HeldKey, list: HeldList) {
        if self.changed_at[slot(key)] > ticket.0 || list.len() > self.budget {
            return;
        }
        self.rows += list.len();
        if let Some(old) = self.lists.insert(key.clone(), list) {
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
                AccessChange::Upsert(a, _) => {
                    self.changed((HeldBy::Subject, a.subject_id.clone()));
                    self.changed((HeldBy::Resource, a.resource_id.clone()));
                }
                AccessChange::Remove {
                    subject_id,
                    resource_id,
                    ..
                } => {
                    self.changed((HeldBy::Subject, subject_id.clone()));
                    match resource_id {
                        Some(r) => self.changed((HeldBy::Resource, r.clone())),
                        // Logged by an older node: any resource's list may hold the row.
                        None => self.clear(),
                    }
                }
                AccessChange::SubjectRemoved(id) => self.changed((HeldBy::Subject, id.clone())),
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

    fn changed(&mut self, key: HeldKey) {
        self.tick += 1;
        self.changed_at[slot(&key)] = self.tick;
        if let Some(old) = self.lists.remove(&key) {
            self.rows -= old.len();
        }
    }
}

fn slot(key: &HeldKey) -> usize {
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    (h % CHANGE_SLOTS as u64) as usize
}

/// Groups `rows` (as [`crate::store::AssignmentRead::held_assignments`] returns them by
/// `by`, in list order) into one list per id of `ids`, empty lists included.
pub fn lists_by_key(
    by: HeldBy,
    ids: &[String],
    rows: Vec<HeldAssignment>,
) -> Vec<(HeldKey, HeldList)> {
    let mut lists: Vec<(String, Vec<HeldAssignment>)> =
        ids.iter().map(|s| (s.clone(), Vec::new())).collect();
    for row in rows {
        let id = match by {
            HeldBy::Subject => &row.assignment.subject_id,
            HeldBy::Resource => &row.assignment.resource_id,
        };
        if let Some((_, list)) = lists.iter_mut().find(|(s, _)| s == id) {
            list.push(row);
        }
    }
    lists
        .into_iter()
        .map(|(id, list)| ((by, id), held_list(list)))
        .collect()
}

/// A role-assignment list the held lists answer exactly as the store would: the rows of
/// some resources (a resource's lineage) or of some subjects (the filter's
/// `subjectId in (…)`, which "my assignments" becomes), maybe only of some subjects and of
/// one state, current now, in list order, with no other filter, restriction or order.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldListQuery {
    /// The lists whose rows are listed.
    pub keys: Vec<HeldKey>,
    subjects: Option<Vec<String>>,
    state: Option<String>,
    now: Timestamp,
}

impl HeldListQuery {
    /// The held-list form of `q` on `coll`, if it has one.
    pub fn of(coll: Collection, q: &ListQuery) -> Option<Self> {
        if coll != Collection::RoleAssignments || !q.orderby.is_empty() {
            return None;
        }
        let (resources, now) = match q.restrictions.as_slice() {
            [Restriction::CurrentAt(now)] => (None, now),
            [
                Restriction::ResourceIn(lineage),
                Restriction::CurrentAt(now),
            ] => (Some(lineage), now),
            _ => return None,
        };
        let mut conjuncts = Vec::new();
        if let Some(f) = &q.filter {
            and_terms(f, &mut conjuncts);
        }
        let mut subjects = None;
        let mut state = None;
        for term in conjuncts {
            match term {
                Filter::In {
                    operand: Operand::Property(path),
                    values,
                } if subjects.is_none() && is_path(path, "subjectId") => {
                    let mut ids = Vec::with_capacity(values.len());
                    for v in values {
                        let Literal::String(id) = v else {
                            return None;
                        };
                        if !ids.contains(id) {
                            ids.push(id.clone());
                        }
                    }
                    subjects = Some(ids);
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
        let keys = match (resources, &subjects) {
            (Some(lineage), _) => keyed(HeldBy::Resource, lineage),
            (None, Some(holders)) => keyed(HeldBy::Subject, holders),
            (None, None) => return None,
        };
        Some(Self {
            keys,
            subjects,
            state,
            now: *now,
        })
    }

    /// The page of the rows in `lists` (one per key) that `skip`, `top` and `count`
    /// select, each with its `memberType` as `scope` shows it.
    pub fn page(
        &self,
        lists: &[HeldList],
        scope: &ReadScope,
        skip: u32,
        top: u32,
        count: bool,
    ) -> Page<Item> {
        let mut in_order = self.in_order(lists).skip(skip as usize);
        let items: Vec<Item> = in_order
            .by_ref()
            .take(top as usize)
            .map(|h| {
                let a = h.assignment();
                let m = scope.member_type(&a);
                Item::Assignment(a, m)
            })
            .collect();
        let more = in_order.next().is_some();
        let total = count.then(|| {
            lists
                .iter()
                .flat_map(|l| l.iter())
                .filter(|h| self.matches(h))
                .count() as u64
        });
        Page { items, total, more }
    }

    /// The rows of `lists` this query selects, in list order: each list is in that order
    /// already, so they are merged, and a page reads only the rows up to its end.
    fn in_order<'l>(&'l self, lists: &'l [HeldList]) -> impl Iterator<Item = &'l HeldRow> + 'l {
        // The next selected row of list `l` from `i` on, as (position, l, index).
        let next = move |l: usize, i: usize| {
            let list: &[HeldRow] = &lists[l];
            let at = i + list.get(i..)?.iter().position(|h| self.matches(h))?;
            Some(Reverse((list[at].position, l, at)))
        };
        let mut heads: BinaryHeap<_> = (0..lists.len()).filter_map(|l| next(l, 0)).collect();
        std::iter::from_fn(move || {
            let Reverse((_, l, at)) = heads.pop()?;
            heads.extend(next(l, at + 1));
            Some(&lists[l][at])
        })
    }

    fn matches(&self, row: &HeldRow) -> bool {
        row.schedule.is_current(self.now)
            && self
                .subjects
                .as_ref()
                .is_none_or(|s| s.iter().any(|id| **id == *row.subject_id))
            && self
                .state
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(row.state.as_str()))
    }
}

/// The keys of `ids` (distinct already: the filter's subjects are deduplicated as read, a
/// lineage names each resource once).
fn keyed(by: HeldBy, ids: &[String]) -> Vec<HeldKey> {
    ids.iter().map(|id| (by, id.clone())).collect()
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
        held_list(rows)
    }

    fn subject(id: &str) -> HeldKey {
        (HeldBy::Subject, id.to_string())
    }

    fn resource(id: &str) -> HeldKey {
        (HeldBy::Resource, id.to_string())
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
            .find(|b| {
                slot(&subject(b)) != slot(&subject(&a)) && slot(&subject(b)) != slot(&resource("r"))
            })
            .unwrap();
        (a, b)
    }

    #[test]
    fn a_list_loaded_before_a_change_to_its_subject_is_refused() {
        let (a, b) = apart();
        let mut c = HeldAssignmentCache::default();
        let before = c.ticket();
        c.apply(&[upsert(&a)]);
        c.offer(before, &subject(&a), list(vec![]));
        assert!(
            c.get(&subject(&a)).is_none(),
            "loaded before the change: maybe stale"
        );
        // Another subject's change says nothing about `b`'s list.
        c.offer(before, &subject(&b), list(vec![]));
        assert!(c.get(&subject(&b)).is_some());
        // Loaded after the change: kept, until the next change drops it.
        c.offer(c.ticket(), &subject(&a), list(vec![]));
        assert!(c.get(&subject(&a)).is_some());
        c.offer(c.ticket(), &resource("r"), list(vec![]));
        c.apply(&[AccessChange::Remove {
            subject_id: a.clone(),
            assignment_id: "x".into(),
            resource_id: Some("r".into()),
        }]);
        assert!(
            c.get(&resource("r")).is_none(),
            "the row's resource list too"
        );
        assert!(c.get(&subject(&a)).is_none());
        c.offer(c.ticket(), &subject(&a), list(vec![]));
        c.apply(&[AccessChange::SubjectRemoved(a.clone())]);
        assert!(c.get(&subject(&a)).is_none());
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
        c.offer(ticket, &subject("s"), list(vec![]));
        assert!(c.get(&subject("s")).is_some());
    }

    #[test]
    fn clearing_refuses_every_list_loaded_before() {
        let mut c = HeldAssignmentCache::default();
        c.offer(c.ticket(), &subject("s"), list(vec![]));
        let before = c.ticket();
        c.clear();
        assert!(c.get(&subject("s")).is_none());
        c.offer(before, &subject("t"), list(vec![]));
        assert!(c.get(&subject("t")).is_none());
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
            let mut last: std::collections::HashMap<HeldKey, usize> = Default::default();
            for (op, s, n) in steps {
                let key = if s % 2 == 0 { subject(&format!("s{s}")) } else { resource(&format!("r{s}")) };
                match op {
                    0 => {
                        let rows = (0..n as i64)
                            .map(|i| row(i, "s", AssignmentState::Eligible, 0, None))
                            .collect();
                        c.offer(c.ticket(), &key, list(rows));
                        last.insert(key.clone(), n);
                        prop_assert!(c.get(&key).is_some(), "the newest list stays");
                    }
                    1 => {
                        if let Some(l) = c.get(&key) {
                            prop_assert_eq!(Some(&l.len()), last.get(&key));
                        }
                    }
                    _ => c.apply(&[upsert(&key.1)]),
                }
                let held: usize = c.lists.iter().map(|(_, l)| l.len()).sum();
                prop_assert_eq!(held, c.rows);
                prop_assert!(c.rows <= budget);
            }
        }
    }

    /// Ids as stores hold them: canonical GUIDs, GUIDs in other spellings, other text.
    fn any_id() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u128>().prop_map(|v| uuid::Uuid::from_u128(v).hyphenated().to_string()),
            any::<u128>().prop_map(|v| uuid::Uuid::from_u128(v)
                .hyphenated()
                .to_string()
                .to_uppercase()),
            any::<u128>().prop_map(|v| uuid::Uuid::from_u128(v).simple().to_string()),
            any::<u128>().prop_map(|v| uuid::Uuid::from_u128(v).braced().to_string()),
            "[a-zA-Z0-9/_-]{0,40}",
        ]
    }

    proptest! {
        /// A held row gives back exactly the assignment it was made from.
        #[test]
        fn a_held_row_keeps_its_assignment_exactly(
            ids in proptest::collection::vec(any_id(), 6),
            linked in any::<bool>(),
            active in any::<bool>(),
            start in -4_000_000_000_000_000i64..4_000_000_000_000_000,
            len in proptest::option::of(1i64..1_000_000_000_000),
            position in any::<i64>(),
        ) {
            let a = RoleAssignment {
                id: ids[0].clone(),
                resource_id: ids[1].clone(),
                role_definition_id: ids[2].clone(),
                subject_id: ids[3].clone(),
                state: if active { AssignmentState::Active } else { AssignmentState::Eligible },
                linked_eligible_id: linked.then(|| ids[4].clone()),
                schedule: Schedule {
                    start: Timestamp::from_microsecond(start).unwrap(),
                    end: len.map(|l| Timestamp::from_microsecond(start + l).unwrap()),
                },
                request_id: ids[5].clone(),
            };
            let held = list(vec![HeldAssignment { position, assignment: a.clone() }]);
            prop_assert_eq!(held[0].position, position);
            prop_assert_eq!(held[0].assignment(), a);
        }
    }

    proptest! {
        /// A page from held lists holds the rows a sorted, filtered, windowed list of all of
        /// them would, and says the same about the rest.
        #[test]
        fn a_page_is_the_window_of_all_matching_rows_in_list_order(
            rows in proptest::collection::vec((0..3usize, any::<bool>(), 0i64..10, proptest::option::of(1i64..10)), 0..40),
            skip in 0u32..45,
            top in 0u32..45,
            count in any::<bool>(),
        ) {
            let mut lists = vec![Vec::new(), Vec::new(), Vec::new()];
            for (i, (list, active, from, len)) in rows.iter().enumerate() {
                let state = if *active { AssignmentState::Active } else { AssignmentState::Eligible };
                lists[*list].push(row(i as i64 * 7 % 41, "s", state, *from, len.map(|l| from + l)));
            }
            for l in &mut lists {
                l.sort_by_key(|h| h.position);
            }
            let mut all: Vec<HeldAssignment> = lists.iter().flatten().cloned().collect();
            all.sort_by_key(|h| h.position);
            let now = t(5);
            let q = HeldListQuery {
                keys: Vec::new(),
                subjects: None,
                state: Some("active".into()),
                now,
            };
            let expected: Vec<String> = all
                .iter()
                .filter(|h| h.assignment.is_current(now) && h.assignment.state == AssignmentState::Active)
                .map(|h| h.assignment.id.clone())
                .collect();
            let held: Vec<HeldList> = lists.into_iter().map(list).collect();
            let scope = crate::visibility::read_scope(
                Collection::RoleAssignments,
                None,
                None,
                &crate::access::Caller {
                    subject_id: "admin".into(),
                    display_name: "admin".into(),
                    principal_name: None,
                    is_tenant_admin: true,
                    mfa: false,
                },
                &crate::access::AccessIndex::new(),
                now,
            )
            .unwrap();
            let page = q.page(&held, &scope, skip, top, count);
            let got: Vec<String> = page
                .items
                .iter()
                .map(|i| match i {
                    Item::Assignment(a, _) => a.id.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            let window = Page::window(expected, skip, top, count);
            prop_assert_eq!(got, window.items);
            prop_assert_eq!(page.total, window.total);
            prop_assert_eq!(page.more, window.more);
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
        assert_eq!(q.keys, vec![subject("u"), subject("g")]);
        assert!(of("SubjectId in ('u')", now.clone()).is_some());
        // A resource's lineage, maybe only some subjects' rows there.
        let lineage = Restriction::ResourceIn(vec!["rg".into(), "sub".into()]);
        let q = of(
            "subjectId in ('u') and assignmentState eq 'Eligible'",
            vec![lineage.clone(), now[0].clone()],
        )
        .unwrap();
        assert_eq!(q.keys, vec![resource("rg"), resource("sub")]);
        let q = HeldListQuery::of(
            Collection::RoleAssignments,
            &ListQuery {
                restrictions: vec![lineage.clone(), now[0].clone()],
                ..ListQuery::default()
            },
        )
        .unwrap();
        assert_eq!(q.keys, vec![resource("rg"), resource("sub")]);
        assert_eq!(
            of("resourceId in ('rg')", vec![lineage, now[0].clone()]),
            None
        );
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
        assert_eq!(q.keys, vec![subject("u"), subject("g")]);
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
    fn rows_are_grouped_by_key_in_the_order_given() {
        let rows = vec![
            row(1, "g", AssignmentState::Eligible, 0, None),
            row(2, "u", AssignmentState::Eligible, 0, None),
            row(3, "g", AssignmentState::Eligible, 0, None),
        ];
        let lists = lists_by_key(HeldBy::Subject, &["u".into(), "g".into(), "x".into()], rows);
        let positions: Vec<(HeldKey, Vec<i64>)> = lists
            .iter()
            .map(|(k, l)| (k.clone(), l.iter().map(|h| h.position).collect()))
            .collect();
        assert_eq!(
            positions,
            vec![
                (subject("u"), vec![2]),
                (subject("g"), vec![1, 3]),
                (subject("x"), vec![])
            ]
        );
    }
}
