//! Effective access: who holds what where, right now. The [`AccessIndex`] is an in-memory
//! view of every live assignment, the resource tree and group membership, built from the
//! store at start and patched after every commit. It answers R1 ("holds any current
//! assignment on the resource or an ancestor") and R3 ("holds a current active Owner or
//! User Access Administrator assignment on the resource or an ancestor") of decisions.md §7
//! in a few hash probes; the database stays the source of truth.
//!
//! Every check compares schedules with the clock, so an assignment past its end is never
//! honoured, whether or not it has been swept from the index.

use crate::assignment::{AssignmentState, RoleAssignment};
use jiff::Timestamp;
use std::collections::HashMap;

/// A stored instant back as a timestamp. Every stored value came from one, so the
/// fallback never applies; were it to, `MIN` errs towards "already ended".
fn instant(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::MIN)
}

/// One live assignment as the index keeps it (compact: ids interned, times as µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grant {
    assignment: u128,
    resource: u32,
    role: u32,
    administers_access: bool,
    state: AssignmentState,
    start_us: i64,
    end_us: Option<i64>,
}

impl Grant {
    fn is_current(&self, now_us: i64) -> bool {
        self.start_us <= now_us && self.end_us.is_none_or(|end| now_us < end)
    }
}

/// Interns string ids as small integers.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(|s| &**s)
    }
}

/// A 128-bit key for an assignment id: the GUID's bits, or a hash for other strings.
fn assignment_key(id: &str) -> u128 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32
        && let Ok(v) = u128::from_str_radix(&hex, 16)
    {
        return v;
    }
    // FNV-1a, 128-bit: only for ids that are not GUIDs (none are generated that way).
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in id.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// One holder's grants, sorted by resource, with their resources alongside in a compact
/// array: finding the grants on a scope binary-searches 4-byte keys (a few cache lines)
/// rather than 64-byte grants.
#[derive(Debug, Default)]
struct GrantList {
    resources: Vec<u32>,
    grants: Vec<Grant>,
}

impl GrantList {
    fn insert(&mut self, grant: Grant) {
        let at = self.resources.partition_point(|r| *r <= grant.resource);
        self.resources.insert(at, grant.resource);
        self.grants.insert(at, grant);
    }

    /// Removes the grants `remove` picks, and their keys; returns how many.
    fn remove_where(&mut self, remove: impl Fn(&Grant) -> bool) -> usize {
        let before = self.grants.len();
        let mut removed = self.grants.iter().map(&remove);
        self.resources.retain(|_| !removed.next().unwrap_or(false));
        self.grants.retain(|g| !remove(g));
        before - self.grants.len()
    }

    /// The grants on `scope`.
    fn on_scope(&self, scope: u32) -> &[Grant] {
        let from = self.resources.partition_point(|r| *r < scope);
        let to = from + self.resources[from..].partition_point(|r| *r == scope);
        &self.grants[from..to]
    }
}

impl<'a> IntoIterator for &'a GrantList {
    type Item = &'a Grant;
    type IntoIter = std::slice::Iter<'a, Grant>;

    fn into_iter(self) -> Self::IntoIter {
        self.grants.iter()
    }
}

impl std::ops::Deref for GrantList {
    type Target = [Grant];

    fn deref(&self) -> &[Grant] {
        &self.grants
    }
}

/// The in-memory index of live assignments, the resource tree and group membership.
#[derive(Debug, Default)]
pub struct AccessIndex {
    /// What changed when, so a reader can tell whether an answer it kept still holds.
    changes: Changes,
    subjects: Interner,
    resources: Interner,
    grants: HashMap<u32, GrantList>,
    parent: HashMap<u32, u32>,
    groups_of: HashMap<u32, Vec<u32>>,
    grant_count: usize,
    /// Role definition ids, and the role each one is (for permission checks).
    roles: Interner,
    role_of: HashMap<u32, KnownRole>,
    /// The eligible assignment each activated one came from (activations only, so few):
    /// decisions name it without a read.
    linked: HashMap<u128, u128>,
}

/// An active assignment in effect, as provisioning reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrant {
    /// Its subject: a user, a service principal or a group.
    pub holder_id: String,
    /// The assignment's id.
    pub assignment_id: String,
    /// When it ends (`None`: permanent).
    pub end: Option<Timestamp>,
}

/// One query's answer of [`AccessIndex::role_holders`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleHolders {
    /// The assignments in effect, by holder then assignment id.
    pub current: Vec<RoleGrant>,
    /// The ids of those that start later, sorted.
    pub upcoming: Vec<String>,
    /// The first instant one of them starts or ends.
    pub next_instant: Option<Timestamp>,
}

/// The index's change counters. Every change takes the next tick and stamps what it
/// touched: the holders of one role template, group membership, or the structure (the
/// resource tree and the role catalogue, which every answer depends on).
#[derive(Debug)]
struct Changes {
    /// Tells this index from any other (a rebuilt index starts its ticks again).
    epoch: u64,
    tick: u64,
    by_template: HashMap<Box<str>, u64>,
    membership: u64,
    structure: u64,
}

impl Default for Changes {
    fn default() -> Self {
        static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            epoch: EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tick: 0,
            by_template: HashMap::new(),
            membership: 0,
            structure: 0,
        }
    }
}

impl Changes {
    fn next(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn template(&mut self, template: &str) {
        let tick = self.next();
        match self.by_template.get_mut(template) {
            Some(t) => *t = tick,
            None => {
                self.by_template.insert(template.into(), tick);
            }
        }
    }

    fn membership(&mut self) {
        self.membership = self.next();
    }

    fn structure(&mut self) {
        self.structure = self.next();
    }
}

/// Where an [`AccessIndex`] stood for some of its answers: equal stamps of one index mean
/// those answers have not changed (see [`AccessIndex::holders_stamp`] and
/// [`AccessIndex::membership_stamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStamp {
    epoch: u64,
    structure: u64,
    tick: u64,
}

/// A role definition as decisions need it: its template and the permissions Rolegate
/// knows for it.
#[derive(Debug, Clone)]
struct KnownRole {
    template_id: Box<str>,
    permissions: Option<&'static [crate::permissions::PermissionEntry]>,
}

impl AccessIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of assignments held.
    pub fn len(&self) -> usize {
        self.grant_count
    }

    /// Whether no assignment is held.
    pub fn is_empty(&self) -> bool {
        self.grant_count == 0
    }

    /// Records a resource and its parent.
    pub fn add_resource(&mut self, id: &str, parent: Option<&str>) {
        self.changes.structure();
        let r = self.resources.intern(id);
        if let Some(p) = parent {
            let p = self.resources.intern(p);
            self.parent.insert(r, p);
        }
    }

    /// Records which role (template) the role definition `role_definition_id` is.
    pub fn add_role(&mut self, role_definition_id: &str, template_id: &str) {
        self.changes.structure();
        let r = self.roles.intern(role_definition_id);
        let permissions = crate::permissions::built_in(template_id).map(|p| &p.permissions[..]);
        self.role_of.insert(
            r,
            KnownRole {
                template_id: template_id.to_ascii_lowercase().into(),
                permissions,
            },
        );
    }

    /// Adds or replaces an assignment. `administers_access` says whether its role is Owner
    /// or User Access Administrator.
    pub fn upsert(&mut self, a: &RoleAssignment, administers_access: bool) {
        self.remove(&a.subject_id, &a.id);
        let subject = self.subjects.intern(&a.subject_id);
        let grant = Grant {
            assignment: assignment_key(&a.id),
            resource: self.resources.intern(&a.resource_id),
            role: self.roles.intern(&a.role_definition_id),
            administers_access,
            state: a.state,
            start_us: a.schedule.start.as_microsecond(),
            end_us: a.schedule.end.map(|e| e.as_microsecond()),
        };
        if let Some(linked) = &a.linked_eligible_id {
            self.linked.insert(grant.assignment, assignment_key(linked));
        }
        self.touch_role(grant.role);
        self.grants.entry(subject).or_default().insert(grant);
        self.grant_count += 1;
    }

    /// Forgets the assignment `assignment_id` held by `subject_id`.
    pub fn remove(&mut self, subject_id: &str, assignment_id: &str) {
        let Some(subject) = self.subjects.get(subject_id) else {
            return;
        };
        let key = assignment_key(assignment_id);
        self.linked.remove(&key);
        let Some(list) = self.grants.get_mut(&subject) else {
            return;
        };
        let roles: Vec<u32> = list
            .iter()
            .filter(|g| g.assignment == key)
            .map(|g| g.role)
            .collect();
        self.grant_count -= list.remove_where(|g| g.assignment == key);
        for role in roles {
            self.touch_role(role);
        }
    }

    /// Stamps a change of the holders of `role`'s template (none for a role the index
    /// does not know: no answer counts its grants until [`AccessIndex::add_role`], which
    /// changes the structure).
    fn touch_role(&mut self, role: u32) {
        if let Some(known) = self.role_of.get(&role) {
            self.changes.template(&known.template_id);
        }
    }

    /// Where the index stands for the holders of `template`'s roles
    /// ([`AccessIndex::role_holders`] of that template, on any resource, at any instant):
    /// a later stamp equal to this one means every such answer is unchanged.
    pub fn holders_stamp(&self, template: &str) -> IndexStamp {
        IndexStamp {
            epoch: self.changes.epoch,
            structure: self.changes.structure,
            tick: self
                .changes
                .by_template
                .get(template.to_ascii_lowercase().as_str())
                .copied()
                .unwrap_or(0),
        }
    }

    /// Where the index stands for group membership (who belongs to which group, through
    /// nesting): a later stamp equal to this one means membership is unchanged.
    pub fn membership_stamp(&self) -> IndexStamp {
        IndexStamp {
            epoch: self.changes.epoch,
            structure: self.changes.structure,
            tick: self.changes.membership,
        }
    }

    /// Replaces the direct groups of `member`.
    pub fn set_groups(&mut self, member: &str, groups: &[String]) {
        let m = self.subjects.intern(member);
        let gs: Vec<u32> = groups.iter().map(|g| self.subjects.intern(g)).collect();
        self.changes.membership();
        if gs.is_empty() {
            self.groups_of.remove(&m);
        } else {
            self.groups_of.insert(m, gs);
        }
    }

    /// Adds `member` to `group`.
    pub fn add_membership(&mut self, group: &str, member: &str) {
        let (g, m) = (self.subjects.intern(group), self.subjects.intern(member));
        self.changes.membership();
        let list = self.groups_of.entry(m).or_default();
        if !list.contains(&g) {
            list.push(g);
        }
    }

    /// Removes `member` from `group`.
    pub fn remove_membership(&mut self, group: &str, member: &str) {
        if let (Some(g), Some(m)) = (self.subjects.get(group), self.subjects.get(member))
            && let Some(list) = self.groups_of.get_mut(&m)
        {
            list.retain(|x| *x != g);
            self.changes.membership();
        }
    }

    /// Forgets a deleted subject: its assignments and memberships.
    pub fn remove_subject(&mut self, subject_id: &str) {
        let Some(s) = self.subjects.get(subject_id) else {
            return;
        };
        if let Some(list) = self.grants.remove(&s) {
            self.grant_count -= list.len();
            for g in &list {
                self.linked.remove(&g.assignment);
                self.touch_role(g.role);
            }
        }
        self.changes.membership();
        self.groups_of.remove(&s);
        for groups in self.groups_of.values_mut() {
            groups.retain(|g| *g != s);
        }
    }

    fn closure(&self, subject: u32) -> Vec<u32> {
        let direct = |s: &u32| {
            Ok::<_, std::convert::Infallible>(self.groups_of.get(s).into_iter().flatten().copied())
        };
        match crate::directory::closure(subject, direct) {
            Ok(all) => all,
            Err(never) => match never {},
        }
    }

    /// The groups `subject` belongs to, directly or through nesting (not itself).
    pub fn groups_of(&self, subject_id: &str) -> Vec<String> {
        let Some(s) = self.subjects.get(subject_id) else {
            return Vec::new();
        };
        self.closure(s)
            .into_iter()
            .skip(1)
            .filter_map(|g| self.subjects.name(g).map(str::to_string))
            .collect()
    }

    fn ancestry(&self, resource: u32) -> Vec<u32> {
        let mut out = vec![resource];
        let mut at = resource;
        while let Some(p) = self.parent.get(&at) {
            if out.contains(p) || out.len() > 64 {
                break;
            }
            out.push(*p);
            at = *p;
        }
        out
    }

    /// `resource_id` and its ancestors, nearest first.
    pub fn ancestors_or_self(&self, resource_id: &str) -> Vec<String> {
        match self.resources.get(resource_id) {
            Some(r) => self
                .ancestry(r)
                .into_iter()
                .filter_map(|x| self.resources.name(x).map(str::to_string))
                .collect(),
            None => vec![resource_id.to_string()],
        }
    }

    /// Whether one of the grants of `subject` (or its groups) on `resource` or an ancestor
    /// satisfies `pred`: a few binary searches per holder, whatever the holders hold
    /// elsewhere.
    fn any_on_scopes(&self, subject: u32, resource: u32, pred: impl Fn(&Grant) -> bool) -> bool {
        let scopes = self.ancestry(resource);
        self.closure(subject)
            .iter()
            .filter_map(|x| self.grants.get(x))
            .any(|list| {
                scopes
                    .iter()
                    .any(|scope| list.on_scope(*scope).iter().any(&pred))
            })
    }

    fn any_grant(
        &self,
        subject_id: &str,
        resource_id: &str,
        now: Timestamp,
        pred: impl Fn(&Grant) -> bool,
    ) -> bool {
        let (Some(s), Some(r)) = (
            self.subjects.get(subject_id),
            self.resources.get(resource_id),
        ) else {
            return false;
        };
        let now_us = now.as_microsecond();
        self.any_on_scopes(s, r, |g| g.is_current(now_us) && pred(g))
    }

    /// R1: `subject_id` holds a current assignment (any state, directly, through a group,
    /// or on an ancestor) on `resource_id`.
    pub fn holds_any(&self, subject_id: &str, resource_id: &str, now: Timestamp) -> bool {
        self.any_grant(subject_id, resource_id, now, |_| true)
    }

    /// R3 (without the tenant-administrator part): a current active Owner or User Access
    /// Administrator assignment on `resource_id` or an ancestor.
    pub fn administers(&self, subject_id: &str, resource_id: &str, now: Timestamp) -> bool {
        self.any_grant(subject_id, resource_id, now, |g| {
            g.state == AssignmentState::Active && g.administers_access
        })
    }

    /// The resources on which `subject_id` (or one of its groups) holds a current assignment;
    /// with `administering`, only active Owner/User Access Administrator ones.
    pub fn anchors(&self, subject_id: &str, now: Timestamp, administering: bool) -> Vec<String> {
        let now_us = now.as_microsecond();
        self.resources_where(subject_id, |g| {
            g.is_current(now_us)
                && (!administering || (g.state == AssignmentState::Active && g.administers_access))
        })
    }

    /// The resources (each once) of the grants of `subject_id` or its groups that satisfy
    /// `pred`.
    fn resources_where(&self, subject_id: &str, pred: impl Fn(&Grant) -> bool) -> Vec<String> {
        let Some(s) = self.subjects.get(subject_id) else {
            return Vec::new();
        };
        let mut out: Vec<u32> = Vec::new();
        for g in self
            .closure(s)
            .iter()
            .filter_map(|x| self.grants.get(x))
            .flatten()
        {
            if pred(g) && !out.contains(&g.resource) {
                out.push(g.resource);
            }
        }
        out.into_iter()
            .filter_map(|r| self.resources.name(r).map(str::to_string))
            .collect()
    }

    /// `subject_id` and every group it belongs to, directly or through nesting: whose
    /// assignments count for it.
    pub fn holders(&self, subject_id: &str) -> Vec<String> {
        let mut out = vec![subject_id.to_string()];
        out.extend(self.groups_of(subject_id));
        out
    }
}

/// The GUID text of an assignment key (the ids Rolegate makes are GUIDs).
pub(crate) fn key_to_id(key: u128) -> String {
    let mut text = uuid::Uuid::encode_buffer();
    uuid::Uuid::from_u128(key)
        .hyphenated()
        .encode_lower(&mut text)
        .to_string()
}

impl AccessIndex {
    /// Every live assignment (any state, any schedule) of `subject_id` or its groups on
    /// `resource_id` or its ancestors: what a decision about them starts from.
    pub fn holdings(
        &self,
        subject_id: &str,
        resource_id: &str,
    ) -> Vec<crate::access_decision::Holding<'_>> {
        let (Some(s), Some(r)) = (
            self.subjects.get(subject_id),
            self.resources.get(resource_id),
        ) else {
            return Vec::new();
        };
        let scopes = self.ancestry(r);
        let mut out = Vec::new();
        for holder in self.closure(s) {
            let Some(list) = self.grants.get(&holder) else {
                continue;
            };
            let holder_id = self.subjects.name(holder).unwrap_or_default();
            for (distance, g) in scopes
                .iter()
                .enumerate()
                .flat_map(|(d, scope)| list.on_scope(*scope).iter().map(move |g| (d, g)))
            {
                let role = self.role_of.get(&g.role);
                out.push(crate::access_decision::Holding {
                    assignment_id: key_to_id(g.assignment).into(),
                    holder_id: holder_id.into(),
                    resource_id: self.resources.name(g.resource).unwrap_or_default().into(),
                    distance,
                    role_definition_id: self.roles.name(g.role).unwrap_or_default().into(),
                    template_id: role.map(|k| (&*k.template_id).into()),
                    permissions: role.and_then(|k| k.permissions),
                    state: g.state,
                    start: instant(g.start_us),
                    end: g.end_us.map(instant),
                    linked_eligible_id: self
                        .linked
                        .get(&g.assignment)
                        .map(|l| key_to_id(*l).into()),
                });
            }
        }
        out
    }

    /// `a` (say, from history) as a holding at `resource_id`, when it applies there.
    pub fn holding_of<'a>(
        &'a self,
        a: &'a RoleAssignment,
        resource_id: &str,
    ) -> Option<crate::access_decision::Holding<'a>> {
        let r = self.resources.get(resource_id)?;
        let at = self.resources.get(&a.resource_id)?;
        let distance = self.ancestry(r).iter().position(|x| *x == at)?;
        let role = self
            .roles
            .get(&a.role_definition_id)
            .and_then(|k| self.role_of.get(&k));
        Some(crate::access_decision::Holding {
            assignment_id: a.id.as_str().into(),
            holder_id: a.subject_id.as_str().into(),
            resource_id: a.resource_id.as_str().into(),
            distance,
            role_definition_id: a.role_definition_id.as_str().into(),
            template_id: role.map(|k| (&*k.template_id).into()),
            permissions: role.and_then(|k| k.permissions),
            state: a.state,
            start: a.schedule.start,
            end: a.schedule.end,
            linked_eligible_id: a.linked_eligible_id.as_deref().map(Into::into),
        })
    }

    /// The holders (subjects or groups) of an active assignment in effect at `at` on
    /// `resource_id` or an ancestor whose role allows `action` (authzen.md §7.2): one pass
    /// over every assignment.
    pub fn holders_allowed(
        &self,
        resource_id: &str,
        action: &crate::access_decision::Action,
        at: Timestamp,
    ) -> Vec<String> {
        let at_us = at.as_microsecond();
        let mut out: Vec<String> = Vec::new();
        for (holder, g) in self.on_chain_of_every_holder(resource_id) {
            let allows = g.state == AssignmentState::Active
                && g.is_current(at_us)
                && self.role_allows(g.role, action);
            if allows && let Some(name) = self.subjects.name(holder) {
                out.push(name.to_string());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// For each query (a resource id and a role template), what connectors.md §4 and §6.2
    /// ask of the active assignments of that role on the resource or an ancestor, all
    /// queries answered in one pass over the holders: those in effect at `at` (by holder,
    /// then assignment), the ids of those that start later, and the first instant after
    /// `at` at which one starts or ends (when the answer may next change without a write).
    /// A query on an unknown resource gets an empty answer.
    pub fn role_holders(&self, queries: &[(&str, &str)], at: Timestamp) -> Vec<RoleHolders> {
        let at_us = at.as_microsecond();
        // Per query: its scopes (the resource and its ancestors) and the role ids of its
        // template, so the pass compares integers only.
        let plans: Vec<(Vec<u32>, std::collections::HashSet<u32>)> = queries
            .iter()
            .map(|(resource, template)| {
                let scopes = self
                    .resources
                    .get(resource)
                    .map(|r| self.ancestry(r))
                    .unwrap_or_default();
                let roles = self
                    .role_of
                    .iter()
                    .filter(|(_, k)| k.template_id.eq_ignore_ascii_case(template))
                    .map(|(id, _)| *id)
                    .collect();
                (scopes, roles)
            })
            .collect();
        let mut out: Vec<RoleHolders> = queries.iter().map(|_| RoleHolders::default()).collect();
        let mut next: Vec<Option<i64>> = vec![None; queries.len()];
        for (holder, list) in &self.grants {
            for (q, (scopes, roles)) in plans.iter().enumerate() {
                for scope in scopes {
                    for g in list.on_scope(*scope) {
                        if g.state != AssignmentState::Active || !roles.contains(&g.role) {
                            continue;
                        }
                        if g.is_current(at_us) {
                            out[q].current.push(RoleGrant {
                                holder_id: self
                                    .subjects
                                    .name(*holder)
                                    .unwrap_or_default()
                                    .to_string(),
                                assignment_id: key_to_id(g.assignment),
                                end: g.end_us.map(instant),
                            });
                        } else if g.start_us > at_us {
                            out[q].upcoming.push(key_to_id(g.assignment));
                        }
                        for t in [Some(g.start_us), g.end_us].into_iter().flatten() {
                            if t > at_us && next[q].is_none_or(|n| t < n) {
                                next[q] = Some(t);
                            }
                        }
                    }
                }
            }
        }
        // The pass runs in the holders' hash order: sort, so an answer does not depend on it.
        for (answer, next) in out.iter_mut().zip(next) {
            answer.current.sort_by(|a, b| {
                (&a.holder_id, &a.assignment_id).cmp(&(&b.holder_id, &b.assignment_id))
            });
            answer.upcoming.sort();
            answer.next_instant = next.map(instant);
        }
        out
    }

    /// Every holder's grants on `resource_id` or its ancestors: one pass over all holders,
    /// a few binary searches each.
    fn on_chain_of_every_holder<'a>(
        &'a self,
        resource_id: &str,
    ) -> impl Iterator<Item = (u32, &'a Grant)> + 'a {
        let scopes = self
            .resources
            .get(resource_id)
            .map(|r| self.ancestry(r))
            .unwrap_or_default();
        self.grants.iter().flat_map(move |(holder, list)| {
            scopes
                .clone()
                .into_iter()
                .flat_map(move |scope| list.on_scope(scope).iter().map(move |g| (*holder, g)))
        })
    }

    /// The resources where `subject_id` (or one of its groups) holds an active assignment in
    /// effect at `at` whose role allows `action` (authzen.md §7.3).
    pub fn resources_allowed(
        &self,
        subject_id: &str,
        action: &crate::access_decision::Action,
        at: Timestamp,
    ) -> Vec<String> {
        let at_us = at.as_microsecond();
        self.resources_where(subject_id, |g| {
            g.state == AssignmentState::Active
                && g.is_current(at_us)
                && self.role_allows(g.role, action)
        })
    }

    /// Every subject that is one of `groups` or belongs to one, directly or through nested
    /// groups, `groups` themselves included.
    pub fn members_of_any(&self, groups: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self
            .members_of_each(groups)
            .into_values()
            .flatten()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// For each of `groups`, every subject that belongs to it, directly or through nested
    /// groups (the group itself included), in one pass over the directory.
    pub fn members_of_each(&self, groups: &[String]) -> HashMap<String, Vec<String>> {
        let wanted: HashMap<u32, &String> = groups
            .iter()
            .filter_map(|g| self.subjects.get(g).map(|id| (id, g)))
            .collect();
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        if wanted.is_empty() {
            return out;
        }
        for (id, name) in self.subjects.names.iter().enumerate() {
            let Ok(id) = u32::try_from(id) else { continue };
            for g in self.closure(id) {
                if let Some(group) = wanted.get(&g) {
                    out.entry((*group).clone())
                        .or_default()
                        .push(name.to_string());
                }
            }
        }
        for members in out.values_mut() {
            members.sort();
        }
        out
    }

    /// `roots` and every resource below them, each once, as the index knows the tree.
    pub fn subtrees(&self, roots: &[String]) -> Vec<String> {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (child, parent) in &self.parent {
            children.entry(*parent).or_default().push(*child);
        }
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<u32> = roots.iter().filter_map(|r| self.resources.get(r)).collect();
        let mut out = Vec::new();
        while let Some(at) = stack.pop() {
            if !seen.insert(at) {
                continue;
            }
            out.push(at);
            stack.extend(children.get(&at).into_iter().flatten().copied());
        }
        out.into_iter()
            .filter_map(|r| self.resources.name(r).map(str::to_string))
            .collect()
    }

    fn role_allows(&self, role: u32, action: &crate::access_decision::Action) -> bool {
        self.role_of.get(&role).is_some_and(|k| {
            crate::access_decision::role_allows(Some(&k.template_id), k.permissions, action)
        })
    }

    /// Whether an active assignment of `subject_id` (or its groups) on `resource_id` or an
    /// ancestor, in effect at `at`, allows `action`: the decision of authzen.md §4 without
    /// its explanation, in a few hash probes.
    pub fn permits(
        &self,
        subject_id: &str,
        resource_id: &str,
        action: &crate::access_decision::Action,
        at: Timestamp,
    ) -> bool {
        let (Some(s), Some(r)) = (
            self.subjects.get(subject_id),
            self.resources.get(resource_id),
        ) else {
            return false;
        };
        let at_us = at.as_microsecond();
        self.any_on_scopes(s, r, |g| {
            g.state == AssignmentState::Active
                && g.is_current(at_us)
                && self.role_allows(g.role, action)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;
    use jiff::SignedDuration;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn assignment(
        id: &str,
        subject: &str,
        resource: &str,
        state: AssignmentState,
        from: i64,
        to: Option<i64>,
    ) -> RoleAssignment {
        RoleAssignment {
            id: id.into(),
            resource_id: resource.into(),
            role_definition_id: "role".into(),
            subject_id: subject.into(),
            state,
            linked_eligible_id: None,
            schedule: Schedule {
                start: t(from),
                end: to.map(t),
            },
            request_id: "req".into(),
        }
    }

    fn tree() -> AccessIndex {
        let mut ix = AccessIndex::new();
        ix.add_resource("mg", None);
        ix.add_resource("sub", Some("mg"));
        ix.add_resource("rg", Some("sub"));
        ix.add_resource("vm", Some("rg"));
        ix.add_resource("other", Some("mg"));
        ix
    }

    #[test]
    fn role_holders_answer_every_query_in_one_pass() {
        let mut ix = tree();
        ix.add_role("role", "b24988ac-6180-42a0-ab88-20f7382dd24c");
        let id = |n: u32| format!("00000000-0000-0000-0000-{n:012x}");
        for (n, subject, resource, state, from, to) in [
            (1, "u1", "sub", AssignmentState::Active, 0, Some(100)), // in effect on the chain
            (2, "u2", "mg", AssignmentState::Active, 50, Some(80)),  // starts later
            (3, "u3", "vm", AssignmentState::Active, 0, None),       // below the scope
            (4, "u4", "sub", AssignmentState::Eligible, 0, None),    // eligible
            (5, "u5", "other", AssignmentState::Active, 0, None),    // a sibling
        ] {
            ix.upsert(
                &assignment(&id(n), subject, resource, state, from, to),
                false,
            );
        }
        let contributor = "B24988AC-6180-42A0-AB88-20F7382DD24C";
        let answers = ix.role_holders(
            &[
                ("rg", contributor),
                ("rg", "acdd72a7-3385-48ef-bd42-f606fba81ae7"),
                ("nowhere", contributor),
            ],
            t(10),
        );
        let current: Vec<(&str, &str)> = answers[0]
            .current
            .iter()
            .map(|g| (g.holder_id.as_str(), g.assignment_id.as_str()))
            .collect();
        assert_eq!(current, [("u1", id(1).as_str())]);
        assert_eq!(answers[0].current[0].end, Some(t(100)));
        assert_eq!(answers[0].upcoming, [id(2)]);
        assert_eq!(answers[0].next_instant, Some(t(50)));
        // Another role, an unknown resource: nothing.
        assert_eq!(answers[1], RoleHolders::default());
        assert_eq!(answers[2], RoleHolders::default());
        // Later, the next instant moves on.
        let later = ix.role_holders(&[("rg", contributor)], t(60));
        assert_eq!(later[0].current.len(), 2);
        assert_eq!(later[0].next_instant, Some(t(80)));
    }

    proptest::proptest! {
        /// A GUID's key reads back as the same GUID text, in lower case.
        #[test]
        fn a_guid_key_reads_back_as_its_text(key in proptest::prelude::any::<u128>()) {
            let text = key_to_id(key);
            proptest::prop_assert_eq!(&text, &uuid_text(key));
            proptest::prop_assert_eq!(assignment_key(&text), key);
            proptest::prop_assert_eq!(assignment_key(&text.to_ascii_uppercase()), key);
        }
    }

    /// The 8-4-4-4-12 text of `key`, written the obvious way.
    fn uuid_text(key: u128) -> String {
        let h = format!("{key:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    #[test]
    fn removing_a_grant_keeps_the_resource_keys_in_step() {
        let mut ix = tree();
        for (id, r) in [("a1", "vm"), ("a2", "rg"), ("a3", "sub"), ("a4", "rg")] {
            ix.upsert(
                &assignment(id, "u", r, AssignmentState::Active, 0, None),
                false,
            );
        }
        ix.remove("u", "a2");
        let mut on: Vec<(String, usize)> = ix
            .holdings("u", "vm")
            .into_iter()
            .map(|h| (h.resource_id.into_owned(), h.distance))
            .collect();
        on.sort();
        assert_eq!(
            on,
            vec![("rg".into(), 1), ("sub".into(), 2), ("vm".into(), 0)]
        );
        let list = &ix.grants[&ix.subjects.get("u").unwrap()];
        let keys: Vec<u32> = list.grants.iter().map(|g| g.resource).collect();
        assert_eq!(list.resources, keys);
    }

    #[test]
    fn an_activation_names_its_eligibility_until_it_leaves() {
        let mut ix = tree();
        let eligible_id = "00000000-0000-0000-0000-00000000000e";
        let active_id = "00000000-0000-0000-0000-00000000000a";
        let mut active = assignment(active_id, "u", "rg", AssignmentState::Active, 0, None);
        active.linked_eligible_id = Some(eligible_id.into());
        ix.upsert(
            &assignment(eligible_id, "u", "sub", AssignmentState::Eligible, 0, None),
            false,
        );
        ix.upsert(&active, false);
        let linked = |ix: &AccessIndex| {
            ix.holdings("u", "vm")
                .into_iter()
                .map(|h| {
                    (
                        h.assignment_id.into_owned(),
                        h.distance,
                        h.linked_eligible_id.map(|l| l.into_owned()),
                    )
                })
                .collect::<Vec<_>>()
        };
        let mut got = linked(&ix);
        got.sort();
        assert_eq!(
            got,
            vec![
                (active_id.to_string(), 1, Some(eligible_id.to_string())),
                (eligible_id.to_string(), 2, None),
            ]
        );
        // Replaced without a link (say, by an administrator's assignment), then removed.
        ix.upsert(
            &assignment(active_id, "u", "rg", AssignmentState::Active, 0, None),
            false,
        );
        assert!(linked(&ix).iter().all(|(_, _, l)| l.is_none()));
        ix.remove("u", active_id);
        assert_eq!(linked(&ix).len(), 1);
        assert!(ix.linked.is_empty());
    }

    #[test]
    fn inherits_down_the_tree_and_through_nested_groups() {
        let mut ix = tree();
        ix.upsert(
            &assignment("a1", "g2", "sub", AssignmentState::Active, 0, None),
            true,
        );
        ix.add_membership("g1", "alice");
        ix.add_membership("g2", "g1");
        assert!(ix.holds_any("alice", "vm", t(10)));
        assert!(ix.administers("alice", "rg", t(10)));
        assert!(!ix.holds_any("alice", "other", t(10)));
        assert!(!ix.holds_any("alice", "mg", t(10)));
        ix.remove_membership("g2", "g1");
        assert!(!ix.holds_any("alice", "vm", t(10)));
    }

    #[test]
    fn time_bounds_are_honoured_without_any_sweep() {
        let mut ix = tree();
        ix.upsert(
            &assignment("a1", "bob", "rg", AssignmentState::Active, 100, Some(200)),
            true,
        );
        assert!(!ix.administers("bob", "vm", t(99)));
        assert!(ix.administers("bob", "vm", t(100)));
        assert!(ix.administers("bob", "vm", t(199)));
        assert!(!ix.administers("bob", "vm", t(200)));
        assert!(!ix.holds_any("bob", "vm", t(200) + SignedDuration::from_secs(1)));
    }

    #[test]
    fn eligible_counts_for_r1_not_r3_and_remove_forgets() {
        let mut ix = tree();
        ix.upsert(
            &assignment("a1", "carol", "sub", AssignmentState::Eligible, 0, None),
            true,
        );
        assert!(ix.holds_any("carol", "vm", t(1)));
        assert!(!ix.administers("carol", "vm", t(1)));
        assert_eq!(ix.anchors("carol", t(1), false), vec!["sub".to_string()]);
        assert!(ix.anchors("carol", t(1), true).is_empty());
        ix.remove("carol", "a1");
        assert!(!ix.holds_any("carol", "vm", t(1)));
        assert!(ix.is_empty());
    }

    #[test]
    fn upsert_replaces_the_same_assignment() {
        let mut ix = tree();
        let a = assignment(
            "7c53453e-d5a4-41e0-8eb1-32d5ec8bfdee",
            "dave",
            "rg",
            AssignmentState::Active,
            0,
            Some(50),
        );
        ix.upsert(&a, false);
        let mut longer = a.clone();
        longer.schedule.end = Some(t(500));
        ix.upsert(&longer, false);
        assert_eq!(ix.len(), 1);
        assert!(ix.holds_any("dave", "rg", t(100)));
    }
}

/// The authenticated caller of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The directory subject id (or the token's subject for a tenant administrator who is
    /// not in the directory).
    pub subject_id: String,
    /// Display name, for audit and `lastUpdatedBy`.
    pub display_name: String,
    /// User principal name, when known.
    pub principal_name: Option<String>,
    /// Named at start with `--admin`: may do everything (decisions.md §2).
    pub is_tenant_admin: bool,
    /// The token's `amr` claim contains `mfa`.
    pub mfa: bool,
}

/// Read access to effective access, as operations need it.
pub trait AccessView {
    /// R1 without the tenant-administrator part.
    fn holds_any(&self, subject_id: &str, resource_id: &str, now: Timestamp) -> bool;
    /// R3 without the tenant-administrator part.
    fn administers(&self, subject_id: &str, resource_id: &str, now: Timestamp) -> bool;
    /// Group closure of a subject.
    fn groups_of(&self, subject_id: &str) -> Vec<String>;
    /// A resource and its ancestors, nearest first.
    fn ancestors_or_self(&self, resource_id: &str) -> Vec<String>;
    /// Resources where the subject (or a group of it) holds a current assignment.
    fn anchors(&self, subject_id: &str, now: Timestamp) -> Vec<String>;
}

impl AccessView for AccessIndex {
    fn holds_any(&self, subject_id: &str, resource_id: &str, now: Timestamp) -> bool {
        AccessIndex::holds_any(self, subject_id, resource_id, now)
    }
    fn administers(&self, subject_id: &str, resource_id: &str, now: Timestamp) -> bool {
        AccessIndex::administers(self, subject_id, resource_id, now)
    }
    fn groups_of(&self, subject_id: &str) -> Vec<String> {
        AccessIndex::groups_of(self, subject_id)
    }
    fn ancestors_or_self(&self, resource_id: &str) -> Vec<String> {
        AccessIndex::ancestors_or_self(self, resource_id)
    }
    fn anchors(&self, subject_id: &str, now: Timestamp) -> Vec<String> {
        AccessIndex::anchors(self, subject_id, now, false)
    }
}

impl Caller {
    /// R1: tenant administrator, or any current assignment on the resource or an ancestor.
    pub fn may_read(&self, access: &dyn AccessView, resource_id: &str, now: Timestamp) -> bool {
        self.is_tenant_admin || access.holds_any(&self.subject_id, resource_id, now)
    }

    /// R3: tenant administrator, or a current active Owner / User Access Administrator
    /// assignment on the resource or an ancestor.
    pub fn may_administer(
        &self,
        access: &dyn AccessView,
        resource_id: &str,
        now: Timestamp,
    ) -> bool {
        self.is_tenant_admin || access.administers(&self.subject_id, resource_id, now)
    }
}

/// A committed change the access index must learn about.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AccessChange {
    /// An assignment was created or changed; the flag says whether its role administers access.
    Upsert(RoleAssignment, bool),
    /// An assignment left the live set.
    Remove {
        /// Its subject.
        subject_id: String,
        /// Its id.
        assignment_id: String,
        /// Its resource (absent from entries logged before it was recorded).
        #[serde(default)]
        resource_id: Option<String>,
    },
    /// A resource was registered.
    Resource {
        /// Its id.
        id: String,
        /// Its parent's id.
        parent_id: Option<String>,
    },
    /// A subject's direct groups changed.
    Groups {
        /// The member.
        member_id: String,
        /// Its direct groups now.
        groups: Vec<String>,
    },
    /// A subject was created or its attributes changed (the read cache keeps subjects
    /// whole: [`crate::entity_cache`]); access is not affected by it.
    Subject(crate::directory::Subject),
    /// A subject was deleted.
    SubjectRemoved(String),
    /// A role definition was created.
    Role {
        /// Its id.
        id: String,
        /// Its template id.
        template_id: String,
    },
}

impl AccessIndex {
    /// Applies committed changes, in order.
    pub fn apply(&mut self, changes: &[AccessChange]) {
        for c in changes {
            match c {
                AccessChange::Upsert(a, admin) => self.upsert(a, *admin),
                AccessChange::Remove {
                    subject_id,
                    assignment_id,
                    ..
                } => self.remove(subject_id, assignment_id),
                AccessChange::Resource { id, parent_id } => {
                    self.add_resource(id, parent_id.as_deref())
                }
                AccessChange::Groups { member_id, groups } => self.set_groups(member_id, groups),
                AccessChange::SubjectRemoved(id) => self.remove_subject(id),
                AccessChange::Role { id, template_id } => self.add_role(id, template_id),
                AccessChange::Subject(_) => {}
            }
        }
    }
}

/// What every operation needs besides its arguments: who calls, what they may do, the
/// time, the HTTP request id for audit correlation, and a source of fresh ids.
pub struct OpContext<'a> {
    /// The caller.
    pub caller: &'a Caller,
    /// Effective access.
    pub access: &'a dyn AccessView,
    /// The current time.
    pub now: Timestamp,
    /// The request id of the HTTP call.
    pub correlation_id: &'a str,
    /// Makes fresh GUIDs.
    pub new_id: &'a dyn Fn() -> String,
    /// E-mail notifications, when on (decisions.md §12).
    pub mail: Option<&'a crate::email::MailPolicy>,
}

impl OpContext<'_> {
    /// The caller as an audit initiator.
    pub fn initiator(&self) -> crate::audit::Initiator {
        crate::audit::Initiator {
            id: self.caller.subject_id.clone(),
            display_name: self.caller.display_name.clone(),
            user_principal_name: self.caller.principal_name.clone(),
            application: false,
        }
    }
}
