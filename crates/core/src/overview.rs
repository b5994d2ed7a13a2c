//! What a signed-in person's own pages show (portal.md §5.1): their eligible, active and
//! recently expired roles, each with the resource's ancestry, how it is held, and the
//! self-service requests the request rules (decisions.md §6) would accept for it. The
//! portal renders these; it decides nothing itself.

use crate::access::{AccessView, Caller};
use crate::assignment::{AssignmentState, RoleAssignment};
use crate::error::Result;
use crate::request::{EXTEND_WINDOW, RENEW_WINDOW};
use crate::resource::Resource;
use crate::role::RoleDefinition;
use crate::store::ReadTx;
use jiff::Timestamp;
use std::collections::HashMap;

/// How the person holds a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Their own assignment.
    Direct,
    /// Through a group they belong to (directly or through nesting).
    Group {
        /// The group's id.
        id: String,
        /// The group's display name.
        name: String,
    },
}

/// One row of "My roles".
#[derive(Debug, Clone)]
pub struct RoleRow {
    /// The assignment.
    pub assignment: RoleAssignment,
    /// Its role.
    pub role: RoleDefinition,
    /// Its resource, then its ancestors, nearest first.
    pub lineage: Vec<Resource>,
    /// How the person holds it.
    pub membership: Membership,
    /// An eligible row the person may activate (held now, directly or through a group).
    pub may_activate: bool,
    /// A `UserExtend` would be accepted: the person's own eligibility ending within 14 days.
    pub may_extend: bool,
    /// A `UserRemove` would be accepted: the person's own activation.
    pub may_deactivate: bool,
    /// A `UserRenew` would be accepted: the person's own eligibility expired in the last
    /// 30 days with nothing live of the same role there.
    pub may_renew: bool,
}

impl RoleRow {
    /// The resource the assignment is made on.
    pub fn resource(&self) -> Option<&Resource> {
        self.lineage.first()
    }
}

/// A person's roles, as "My roles" lists them.
#[derive(Debug, Clone, Default)]
pub struct MyRoles {
    /// Eligible assignments not ended (current or starting later), soonest end first.
    pub eligible: Vec<RoleRow>,
    /// Active assignments not ended, activations included.
    pub active: Vec<RoleRow>,
    /// The person's own eligible assignments that expired in the last 30 days.
    pub expired: Vec<RoleRow>,
}

/// Looks up and remembers roles, resources and group names for one page.
struct Names<'t> {
    tx: &'t mut dyn ReadTx,
    roles: HashMap<String, Option<RoleDefinition>>,
    resources: HashMap<String, Option<Resource>>,
}

impl<'t> Names<'t> {
    fn new(tx: &'t mut dyn ReadTx) -> Self {
        Self {
            tx,
            roles: HashMap::new(),
            resources: HashMap::new(),
        }
    }

    fn role(&mut self, id: &str) -> Result<Option<RoleDefinition>> {
        if let Some(r) = self.roles.get(id) {
            return Ok(r.clone());
        }
        let r = self.tx.role_definition(id)?;
        self.roles.insert(id.to_string(), r.clone());
        Ok(r)
    }

    fn resource(&mut self, id: &str) -> Result<Option<Resource>> {
        if let Some(r) = self.resources.get(id) {
            return Ok(r.clone());
        }
        let r = self.tx.resource(id)?;
        self.resources.insert(id.to_string(), r.clone());
        Ok(r)
    }

    /// `id` and its ancestors, nearest first.
    fn lineage(&mut self, id: &str) -> Result<Vec<Resource>> {
        let mut out = Vec::new();
        let mut next = Some(id.to_string());
        while let Some(id) = next.take() {
            // A parent chain longer than the hierarchy's four levels is a broken row.
            if out.len() > 8 {
                break;
            }
            if let Some(r) = self.resource(&id)? {
                next = r.parent_id.clone();
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// Resource `id` and its ancestors, nearest first (empty when it does not exist).
pub fn lineage(tx: &mut dyn ReadTx, id: &str) -> Result<Vec<Resource>> {
    Names::new(tx).lineage(id)
}

impl Names<'_> {
    fn row(&mut self, a: RoleAssignment, membership: Membership) -> Result<Option<RoleRow>> {
        let Some(role) = self.role(&a.role_definition_id)? else {
            return Ok(None);
        };
        let lineage = self.lineage(&a.resource_id)?;
        Ok(Some(RoleRow {
            assignment: a,
            role,
            lineage,
            membership,
            may_activate: false,
            may_extend: false,
            may_deactivate: false,
            may_renew: false,
        }))
    }
}

/// The roles of `caller` at `now`: held directly or through groups (never "Inherited":
/// a person's own list shows each assignment where it is made, decisions.md §6).
pub fn my_roles(
    tx: &mut dyn ReadTx,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
) -> Result<MyRoles> {
    let me = caller.subject_id.clone();
    let mut holders = vec![(me.clone(), Membership::Direct)];
    for g in access.groups_of(&me) {
        if let Some(s) = tx.subject(&g)? {
            holders.push((
                g,
                Membership::Group {
                    id: s.id,
                    name: s.display_name,
                },
            ));
        }
    }
    let mut live = Vec::new();
    for (id, membership) in &holders {
        for a in tx.live_assignments_of(id)? {
            live.push((a, membership.clone()));
        }
    }
    let since = now.checked_sub(RENEW_WINDOW).unwrap_or(Timestamp::MIN);
    let mut expired: Vec<RoleAssignment> = tx.expired_assignments_of(&me, since)?;
    let mut names = Names::new(tx);
    let mut out = MyRoles::default();
    for (a, membership) in live {
        if a.schedule.has_ended(now) {
            // Ended but not yet moved to history by the scheduler.
            if membership == Membership::Direct
                && a.state == AssignmentState::Eligible
                && a.schedule.end.is_some_and(|e| e > since)
            {
                expired.push(a);
            }
            continue;
        }
        let direct = membership == Membership::Direct;
        let state = a.state;
        let Some(mut row) = names.row(a, membership)? else {
            continue;
        };
        match state {
            AssignmentState::Eligible => {
                row.may_activate = row.assignment.is_current(now);
                row.may_extend = direct && row.assignment.ends_within(now, EXTEND_WINDOW);
                out.eligible.push(row);
            }
            AssignmentState::Active => {
                row.may_deactivate = direct && row.assignment.is_activation();
                out.active.push(row);
            }
        }
    }
    // An eligibility already activated (or waiting for that) is not offered again.
    let activated: Vec<String> = out
        .active
        .iter()
        .filter_map(|r| r.assignment.linked_eligible_id.clone())
        .collect();
    for r in &mut out.eligible {
        if activated.contains(&r.assignment.id) {
            r.may_activate = false;
        }
    }
    let live_keys: Vec<_> = out
        .eligible
        .iter()
        .filter(|r| r.membership == Membership::Direct)
        .map(|r| r.assignment.key())
        .collect();
    expired.sort_by_key(|a| std::cmp::Reverse(a.schedule.end));
    let mut seen = Vec::new();
    for a in expired {
        let key = a.key();
        if a.state != AssignmentState::Eligible || seen.contains(&key) {
            continue;
        }
        seen.push(key.clone());
        let renewable = !live_keys.contains(&key);
        if let Some(mut row) = names.row(a, Membership::Direct)? {
            row.may_renew = renewable;
            out.expired.push(row);
        }
    }
    let end = |r: &RoleRow| {
        (
            r.assignment.schedule.end.unwrap_or(Timestamp::MAX),
            r.role.display_name.clone(),
        )
    };
    out.eligible.sort_by_key(end);
    out.active.sort_by_key(end);
    Ok(out)
}

/// One resource an activation may be narrowed to, with the role's definition there.
#[derive(Debug, Clone)]
pub struct ActivationScope {
    /// The resource (the eligible one first, then its registered descendants).
    pub resource: Resource,
    /// The definition of the eligible role's template on it.
    pub role_definition_id: String,
}

/// What the "Activate" form offers for one eligibility: where, for how long, and which rules
/// the request will meet (the same `UserAdd` rules [`crate::request::decision`] applies).
#[derive(Debug, Clone)]
pub struct ActivationOffer {
    /// The eligibility.
    pub row: RoleRow,
    /// Where the activation may be made.
    pub scopes: Vec<ActivationScope>,
    /// The role's activation rules.
    pub policy: crate::policy::Policy,
    /// The approvers' display names, when approval is required.
    pub approvers: Vec<String>,
}

/// The "Activate" form of eligible assignment `eligible_id` for `caller`: `404` unless it
/// is one of the caller's current eligibilities (directly or through a group).
pub fn activation_offer(
    tx: &mut dyn ReadTx,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
    eligible_id: &str,
) -> Result<ActivationOffer> {
    let not_found = || {
        crate::error::DomainError::new(
            crate::error::ErrorCode::RoleAssignmentNotFound,
            format!("you hold no eligible assignment `{eligible_id}` to activate"),
        )
    };
    let roles = my_roles(tx, caller, access, now)?;
    let row = roles
        .eligible
        .into_iter()
        .find(|r| r.assignment.id == eligible_id && r.may_activate)
        .ok_or_else(not_found)?;
    let setting = tx.role_setting_of(&row.role.id)?.ok_or_else(not_found)?;
    let policy = setting
        .rules
        .policy(crate::request::decision::collection_for(
            crate::request::RequestType::UserAdd,
            AssignmentState::Active,
        ))?;
    let mut approvers = Vec::new();
    if let Some(rule) = policy.approval_required() {
        for a in &rule.approvers {
            let name = match tx.subject(&a.id)? {
                Some(s) => s.display_name,
                None => a.display_name.clone().unwrap_or_else(|| a.id.clone()),
            };
            approvers.push(name);
        }
    }
    let mut scopes = Vec::new();
    if let Some(here) = row.resource().cloned() {
        let q = crate::query::ListQuery {
            restrictions: vec![crate::query::Restriction::ResourceUnder(vec![
                here.id.clone(),
            ])],
            top: 500,
            ..Default::default()
        };
        let mut under = tx.list_resources(&q)?.items;
        under.retain(|r| r.id != here.id);
        under.sort_by(|a, b| a.external_id.cmp(&b.external_id));
        scopes.push(ActivationScope {
            resource: here,
            role_definition_id: row.role.id.clone(),
        });
        for r in under {
            if let Some(d) = tx.role_definition_by_template(&r.id, &row.role.template_id)? {
                scopes.push(ActivationScope {
                    resource: r,
                    role_definition_id: d.id,
                });
            }
        }
    }
    Ok(ActivationOffer {
        row,
        scopes,
        policy,
        approvers,
    })
}

/// A request as its page shows it: the request, its role and resource, the approvals
/// recorded, and its history from the audit log.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The request.
    pub request: crate::request::RoleAssignmentRequest,
    /// Its role.
    pub role: Option<RoleDefinition>,
    /// Its resource, then its ancestors, nearest first.
    pub lineage: Vec<Resource>,
    /// The approval decisions recorded for it.
    pub approvals: Vec<crate::request::Approval>,
    /// How many approvals it needs (its role's ApprovalRule now), when it waits for them.
    pub required_approvals: Option<u32>,
    /// The audit records naming it, oldest first (whoever may read the request may read
    /// its history: the requester sees who decided, as the e-mails tell them).
    pub history: Vec<crate::audit::AuditEntry>,
}

/// Request `id` with everything its page shows, if `caller` may read it (the API's rule,
/// [`crate::visibility::load_item`]).
pub fn request_record(
    tx: &mut dyn ReadTx,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
    id: &str,
) -> Result<RequestRecord> {
    use crate::visibility::{Collection, Item, load_item};
    let Item::Request(request) = load_item(
        tx,
        Collection::RoleAssignmentRequests,
        id,
        None,
        caller,
        access,
        now,
    )?
    else {
        return Err(Collection::RoleAssignmentRequests.not_found(id));
    };
    let mut names = Names::new(tx);
    let role = names.role(&request.role_definition_id)?;
    let lineage = names.lineage(&request.resource_id)?;
    let approvals = tx.approvals(&request.id)?;
    let required_approvals = required_approvals(tx, &request, now)?;
    let history = tx.request_history(&request.id, 200)?;
    Ok(RequestRecord {
        request,
        role,
        lineage,
        approvals,
        required_approvals,
        history,
    })
}

/// How many approvals `request` needs, while it waits for them (its role's ApprovalRule).
pub fn required_approvals(
    tx: &mut dyn ReadTx,
    request: &crate::request::RoleAssignmentRequest,
    now: Timestamp,
) -> Result<Option<u32>> {
    if request.status_at(now) != crate::request::SubStatus::PendingApproval {
        return Ok(None);
    }
    Ok(tx
        .role_setting_of(&request.role_definition_id)?
        .and_then(|s| {
            s.rules
                .policy(crate::request::decision::collection_for(
                    request.kind,
                    request.state,
                ))
                .ok()
        })
        .and_then(|p| p.approval_required().map(|a| a.required_approvals)))
}

/// One assignment row of a resource's page.
#[derive(Debug, Clone)]
pub struct AssignmentRow {
    /// The assignment.
    pub assignment: RoleAssignment,
    /// Its role.
    pub role: RoleDefinition,
    /// Who holds it (absent when the subject is gone from the directory).
    pub member: Option<crate::directory::Subject>,
    /// `Direct`, or `Inherited` from an ancestor of the resource.
    pub member_type: crate::assignment::MemberType,
}

/// What a resource's page lists (portal.md §5.6), as the API lists it for the caller.
#[derive(Debug, Clone, Default)]
pub struct ResourceAssignments {
    /// Eligible assignments current or starting later, made here or on an ancestor.
    pub eligible: Vec<AssignmentRow>,
    /// Active assignments likewise (activations included).
    pub active: Vec<AssignmentRow>,
    /// Assignments made here that expired in the last 30 days.
    pub expired: Vec<AssignmentRow>,
    /// Whether each table (eligible, active, expired) has rows after this page.
    pub more: [bool; 3],
}

/// Which page of each of a resource's tables (eligible, active, expired) to read.
#[derive(Debug, Clone, Copy)]
pub struct TablePages {
    /// Rows per page.
    pub top: u32,
    /// Rows to skip in each table.
    pub skip: [u32; 3],
}

/// The most expired rows a resource's page pages through (its last 30 days).
const EXPIRED_LIMIT: u32 = 10_000;

/// Filters of a resource's assignment tables.
#[derive(Debug, Clone, Default)]
pub struct AssignmentFilter {
    /// Only this role definition.
    pub role_definition_id: Option<String>,
    /// Only these subjects (a member search's matches).
    pub subjects: Option<Vec<String>>,
}

/// The assignments of resource `rid` that `caller` may read (R1, the API's
/// `resources/{id}/roleAssignments`), one page of each table.
pub fn resource_assignments(
    tx: &mut dyn ReadTx,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
    rid: &str,
    filter: &AssignmentFilter,
    pages: TablePages,
) -> Result<ResourceAssignments> {
    use crate::visibility::{Collection, Item, list, read_scope};
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut clauses = Vec::new();
    if let Some(role) = &filter.role_definition_id {
        clauses.push(format!("roleDefinitionId eq {}", quote(role)));
    }
    if let Some(subjects) = &filter.subjects {
        if subjects.is_empty() {
            return Ok(ResourceAssignments::default());
        }
        let list: Vec<String> = subjects.iter().map(|s| quote(s)).collect();
        clauses.push(format!("subjectId in ({})", list.join(",")));
    }
    let mut out = ResourceAssignments::default();
    let mut names = Names::new(tx);
    for (table, state) in [AssignmentState::Eligible, AssignmentState::Active]
        .into_iter()
        .enumerate()
    {
        let mut parts = clauses.clone();
        parts.push(format!("assignmentState eq '{}'", state.as_str()));
        let parsed = crate::odata::parse_filter(&parts.join(" and "))?;
        let scope = read_scope(
            Collection::RoleAssignments,
            Some(rid),
            Some(parsed),
            caller,
            access,
            now,
        )?;
        let q = crate::query::ListQuery {
            filter: scope.filter.clone(),
            restrictions: scope.restrictions.clone(),
            top: pages.top,
            skip: pages.skip[table],
            ..Default::default()
        };
        let page = list(names.tx, Collection::RoleAssignments, &q, &scope)?;
        out.more[table] = page.more;
        for item in page.items {
            let Item::Assignment(a, member_type) = item else {
                continue;
            };
            let Some(role) = names.role(&a.role_definition_id)? else {
                continue;
            };
            let member = names.tx.subject(&a.subject_id)?;
            let row = AssignmentRow {
                assignment: a,
                role,
                member,
                member_type,
            };
            match state {
                AssignmentState::Eligible => out.eligible.push(row),
                AssignmentState::Active => out.active.push(row),
            }
        }
    }
    let expired: Vec<RoleAssignment> = expired_on(names.tx, caller, access, now, rid)?
        .into_iter()
        .filter(|a| {
            filter
                .role_definition_id
                .as_ref()
                .is_none_or(|r| *r == a.role_definition_id)
                && filter
                    .subjects
                    .as_ref()
                    .is_none_or(|s| s.contains(&a.subject_id))
        })
        .collect();
    let (skip, top) = (pages.skip[2] as usize, pages.top as usize);
    out.more[2] = expired.len() > skip.saturating_add(top);
    for a in expired.into_iter().skip(skip).take(top) {
        let Some(role) = names.role(&a.role_definition_id)? else {
            continue;
        };
        let member = names.tx.subject(&a.subject_id)?;
        out.expired.push(AssignmentRow {
            assignment: a,
            role,
            member,
            member_type: crate::assignment::MemberType::Direct,
        });
    }
    Ok(out)
}

/// The assignments made on resource `rid` that ended by expiry in the renewal window,
/// latest end first, for a caller who may read its assignments (R1).
pub fn expired_on(
    tx: &mut dyn ReadTx,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
    rid: &str,
) -> Result<Vec<RoleAssignment>> {
    use crate::visibility::{Collection, read_scope};
    read_scope(
        Collection::RoleAssignments,
        Some(rid),
        None,
        caller,
        access,
        now,
    )?;
    let since = now.checked_sub(RENEW_WINDOW).unwrap_or(Timestamp::MIN);
    tx.expired_assignments_on(rid, since, EXPIRED_LIMIT)
}

/// Who a person with nothing eligible should ask: the display names of the R3 holders
/// (active Owners and User Access Administrators) of the resources where the person holds
/// anything, or their ancestors; at most `limit`, the nearest first.
pub fn administrators_to_ask(
    tx: &mut dyn ReadTx,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<String>> {
    let mut lineage: Vec<String> = Vec::new();
    for anchor in access.anchors(&caller.subject_id, now) {
        for r in access.ancestors_or_self(&anchor) {
            if !lineage.contains(&r) {
                lineage.push(r);
            }
        }
    }
    if lineage.is_empty() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for a in tx.access_administrators(&lineage, now)? {
        if a.subject_id == caller.subject_id || names.len() >= limit {
            continue;
        }
        if let Some(s) = tx.subject(&a.subject_id)?
            && !names.contains(&s.display_name)
        {
            names.push(s.display_name);
        }
    }
    Ok(names)
}
