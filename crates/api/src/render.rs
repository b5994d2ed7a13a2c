//! Graph JSON for each entity, and OData `$select` / `$expand` applied to it. Expansion
//! loads related entities through the same read transaction, recursively for nested
//! `$expand`.

use jiff::Timestamp;
use rolegate_core::access::{AccessView, Caller};
use rolegate_core::assignment::{MemberType, RoleAssignment};
use rolegate_core::directory::Subject;
use rolegate_core::entity_cache::{EntityCache, JsonForm};
use rolegate_core::error::{DomainError, Result};
use rolegate_core::odata::{Expand, QueryOptions};
use rolegate_core::policy::RuleSetting;
use rolegate_core::request::RoleAssignmentRequest;
use rolegate_core::resource::Resource;
use rolegate_core::role::{RoleDefinition, RoleSetting};
use rolegate_core::schedule::{format_datetime, format_duration};
use rolegate_core::store::ReadTx;
use rolegate_core::visibility::{self, AccessLevel, Item};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Where related entities are looked up: the cache first when a read transaction renders
/// (it fills the cache with what it finds), the transaction alone when a write does (what it
/// sees is not committed yet).
#[derive(Clone, Copy)]
pub struct Lookup<'a> {
    cache: Option<&'a RwLock<EntityCache>>,
}

impl<'a> Lookup<'a> {
    /// Straight from the transaction.
    pub const DATABASE: Self = Self { cache: None };

    /// Through `cache`; for read transactions only.
    pub fn cached(cache: &'a RwLock<EntityCache>) -> Self {
        Self { cache: Some(cache) }
    }

    /// A resource by id.
    pub fn resource(&self, tx: &mut dyn ReadTx, id: &str) -> Result<Option<Resource>> {
        self.registered_one(
            tx,
            id,
            EntityCache::resource,
            EntityCache::keep_resource,
            |tx, id| tx.resource(id),
        )
    }

    /// A role definition by id.
    pub fn role_definition(&self, tx: &mut dyn ReadTx, id: &str) -> Result<Option<RoleDefinition>> {
        self.registered_one(
            tx,
            id,
            EntityCache::role_definition,
            EntityCache::keep_role_definition,
            |tx, id| tx.role_definition(id),
        )
    }

    /// One entity that never changes once registered: the cache's, else loaded and kept.
    fn registered_one<T: Clone>(
        &self,
        tx: &mut dyn ReadTx,
        id: &str,
        cached: for<'c> fn(&'c EntityCache, &str) -> Option<&'c T>,
        keep: fn(&mut EntityCache, &T),
        load: fn(&mut dyn ReadTx, &str) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let Some(cache) = self.cache else {
            return load(tx, id);
        };
        if let Some(x) = cached(&*read(cache)?, id) {
            return Ok(Some(x.clone()));
        }
        let found = load(tx, id)?;
        if let Some(x) = &found {
            keep(&mut *write(cache)?, x);
        }
        Ok(found)
    }

    /// The JSON `form` of the subject, resource or role definition `id` (of `kind`, as
    /// [`nav_key`] names it), when the cache holds it (and, for a role definition with its
    /// resource, that resource): written once, kept until it changes. `None`: not cached
    /// (or no cache), render it.
    fn cached_json(&self, kind: &str, id: &str, form: JsonForm) -> Result<Option<Arc<RawValue>>> {
        let Some(cache) = self.cache else {
            return Ok(None);
        };
        let c = read(cache)?;
        match (kind, form) {
            ("subject", JsonForm::Own) => {
                c.subject_json(id, |s| own_json(&Entity::Subject(s.clone())))
            }
            ("resource", JsonForm::Own) => {
                c.resource_json(id, |r| own_json(&Entity::Resource(r.clone())))
            }
            ("roleDefinition", JsonForm::Own) => {
                c.role_definition_json(id, form, |d| own_json(&Entity::RoleDefinition(d.clone())))
            }
            ("roleDefinition", JsonForm::WithResource) => {
                let Some(resource) = c
                    .role_definition(id)
                    .and_then(|d| c.resource(&d.resource_id))
                else {
                    return Ok(None);
                };
                c.role_definition_json(id, form, |d| {
                    // As `shape` writes `roleDefinition($expand=resource)`.
                    let mut json = own_properties(&Entity::RoleDefinition(d.clone()));
                    let resource = own_properties(&Entity::Resource(resource.clone()));
                    json.insert("resource".into(), Value::Object(resource));
                    raw_json(&json)
                })
            }
            _ => Ok(None),
        }
    }

    /// Those of `ids` (of `kind`, as [`nav_key`] names it) the cache does not hold: all of
    /// them without a cache.
    fn uncached<'i>(
        &self,
        kind: &str,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> Result<Vec<String>> {
        let ids = ids.into_iter();
        let Some(cache) = self.cache else {
            return Ok(ids.map(str::to_string).collect());
        };
        // The cache holds every subject: one it lacks does not exist, and needs no statement.
        if kind == "subject" {
            return Ok(Vec::new());
        }
        let c = read(cache)?;
        Ok(ids
            .filter(|id| match kind {
                "resource" => c.resource(id).is_none(),
                "roleDefinition" => c.role_definition(id).is_none(),
                _ => true,
            })
            .map(str::to_string)
            .collect())
    }

    /// A subject by id, else by external id.
    pub fn subject(&self, tx: &mut dyn ReadTx, id: &str) -> Result<Option<Subject>> {
        match self.cache {
            Some(cache) => Ok(read(cache)?.subject(id).cloned()),
            None => tx.subject(id),
        }
    }

    /// The resources of `ids` that exist (one statement for those not cached).
    fn resources_by_id(&self, tx: &mut dyn ReadTx, ids: &[String]) -> Result<Vec<Resource>> {
        self.registered(
            tx,
            ids,
            EntityCache::resource,
            EntityCache::keep_resource,
            |tx, ids| tx.resources_by_id(ids),
        )
    }

    /// The role definitions of `ids` that exist (one statement for those not cached).
    fn role_definitions_by_id(
        &self,
        tx: &mut dyn ReadTx,
        ids: &[String],
    ) -> Result<Vec<RoleDefinition>> {
        self.registered(
            tx,
            ids,
            EntityCache::role_definition,
            EntityCache::keep_role_definition,
            |tx, ids| tx.role_definitions_by_id(ids),
        )
    }

    /// Entities that never change once registered, of `ids`: those the cache has, and the
    /// others loaded by `load` in one statement and kept.
    fn registered<T: Clone>(
        &self,
        tx: &mut dyn ReadTx,
        ids: &[String],
        cached: for<'c> fn(&'c EntityCache, &str) -> Option<&'c T>,
        keep: fn(&mut EntityCache, &T),
        load: fn(&mut dyn ReadTx, &[String]) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let Some(cache) = self.cache else {
            return load(tx, ids);
        };
        let (mut found, missing) = {
            let c = read(cache)?;
            partition(ids, |id| cached(&c, id).cloned())
        };
        if !missing.is_empty() {
            let loaded = load(tx, &missing)?;
            let mut c = write(cache)?;
            for x in &loaded {
                keep(&mut c, x);
            }
            found.extend(loaded);
        }
        Ok(found)
    }

    /// The subject each of `ids` names, by id, else by external id (as `navigate` finds
    /// it), with the id it was asked by; ids naming none are left out.
    fn subjects_by_id(
        &self,
        tx: &mut dyn ReadTx,
        ids: &[String],
    ) -> Result<Vec<(String, Subject)>> {
        if let Some(cache) = self.cache {
            let c = read(cache)?;
            return Ok(ids
                .iter()
                .filter_map(|id| Some((id.clone(), c.subject(id)?.clone())))
                .collect());
        }
        let subjects = tx.subjects_by_id(ids)?;
        let by_id: HashMap<&str, &Subject> = subjects.iter().map(|s| (s.id.as_str(), s)).collect();
        let by_external: HashMap<&str, &Subject> = subjects
            .iter()
            .filter_map(|s| Some((s.external_id.as_deref()?, s)))
            .collect();
        Ok(ids
            .iter()
            .filter_map(|id| {
                let s = by_id
                    .get(id.as_str())
                    .or_else(|| by_external.get(id.as_str()))?;
                Some((id.clone(), (*s).clone()))
            })
            .collect())
    }
}

/// The own properties of a subject, resource or role definition (none of which depends on
/// the time).
fn own_properties(e: &Entity) -> Map<String, Value> {
    properties(e, Timestamp::UNIX_EPOCH)
}

/// [`own_properties`] as JSON.
fn own_json(e: &Entity) -> Result<Arc<RawValue>> {
    raw_json(&own_properties(e))
}

/// `v` written out as JSON, to be shared.
fn raw_json(v: &impl serde::Serialize) -> Result<Arc<RawValue>> {
    serde_json::value::to_raw_value(v)
        .map(Arc::from)
        .map_err(|e| DomainError::internal(format!("expansion not written: {e}")))
}

/// `ids` split into what `cached` has and the ids it lacks.
fn partition<T>(ids: &[String], cached: impl Fn(&str) -> Option<T>) -> (Vec<T>, Vec<String>) {
    let mut found = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        match cached(id) {
            Some(x) => found.push(x),
            None => missing.push(id.clone()),
        }
    }
    (found, missing)
}

fn read(cache: &RwLock<EntityCache>) -> Result<std::sync::RwLockReadGuard<'_, EntityCache>> {
    cache
        .read()
        .map_err(|_| DomainError::internal("entity cache lock poisoned"))
}

fn write(cache: &RwLock<EntityCache>) -> Result<std::sync::RwLockWriteGuard<'_, EntityCache>> {
    cache
        .write()
        .map_err(|_| DomainError::internal("entity cache lock poisoned"))
}

/// An entity about to be rendered.
#[derive(Debug, Clone)]
pub enum Entity {
    /// `governanceResource`.
    Resource(Resource),
    /// `governanceRoleDefinition`.
    RoleDefinition(RoleDefinition),
    /// `governanceRoleSetting`.
    RoleSetting(RoleSetting),
    /// `governanceRoleAssignment`, with how the viewer holds it.
    Assignment(RoleAssignment, MemberType),
    /// `governanceRoleAssignmentRequest`.
    Request(RoleAssignmentRequest),
    /// `governanceSubject`.
    Subject(Subject),
    /// `directoryAudit`: the stored document, rendered as is.
    DirectoryAudit(Map<String, Value>),
}

impl From<Item> for Entity {
    fn from(item: Item) -> Self {
        match item {
            Item::Resource(r) => Self::Resource(r),
            Item::RoleDefinition(d) => Self::RoleDefinition(d),
            Item::RoleSetting(s) => Self::RoleSetting(s),
            Item::Assignment(a, m) => Self::Assignment(a, m),
            Item::Request(r) => Self::Request(r),
            Item::AuditEntry(e) => Self::DirectoryAudit(e.document),
        }
    }
}

/// Who is looking, and when: for time-derived fields and `permissions`.
pub struct Viewer<'a> {
    /// The caller.
    pub caller: &'a Caller,
    /// Effective access.
    pub access: &'a dyn AccessView,
    /// Now.
    pub now: Timestamp,
    /// Where related entities come from.
    lookup: Lookup<'a>,
    /// Entities already loaded for `$expand` in this response (rows of a page share their
    /// role definitions and resources).
    expanded: RefCell<HashMap<&'static str, HashMap<String, Option<Entity>>>>,
    /// Expansions already written out in this response, by the top-level `$expand` item
    /// asking (its place in `$expand`: on a list's items it always names one navigation)
    /// and the id of the entity it leads to.
    written: RefCell<HashMap<usize, HashMap<String, Option<SharedJson>>>>,
}

/// JSON written once and shared by every item that includes it (an expanded role
/// definition or subject appears on many rows of a page; a cached entity's own properties
/// are written once for every response, [`EntityCache::subject_json`]).
#[derive(Clone)]
pub struct SharedJson(Arc<RawValue>);

impl serde::Serialize for SharedJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'a> Viewer<'a> {
    /// A viewer for one response.
    pub fn new(caller: &'a Caller, access: &'a dyn AccessView, now: Timestamp) -> Self {
        Self {
            caller,
            access,
            now,
            lookup: Lookup::DATABASE,
            expanded: RefCell::new(HashMap::new()),
            written: RefCell::new(HashMap::new()),
        }
    }

    /// The same viewer, looking related entities up through `lookup`.
    pub fn looking_up(mut self, lookup: Lookup<'a>) -> Self {
        self.lookup = lookup;
        self
    }

    /// `navigate`, remembered for the rest of the response by the entity it leads to.
    fn navigate_cached(
        &self,
        tx: &mut dyn ReadTx,
        e: &Entity,
        nav: &str,
    ) -> Result<Option<Entity>> {
        let Some((kind, id)) = nav_key(e, nav) else {
            return navigate(tx, self.lookup, e, nav);
        };
        if let Some(found) = self.expanded.borrow().get(kind).and_then(|m| m.get(id)) {
            return Ok(found.clone());
        }
        let found = navigate(tx, self.lookup, e, nav)?;
        self.expanded
            .borrow_mut()
            .entry(kind)
            .or_default()
            .insert(id.to_string(), found.clone());
        Ok(found)
    }
}

impl Viewer<'_> {
    /// Loads what `expand` leads to from all of `items` at once, level by level: one
    /// statement per navigation to resources, role definitions or subjects (two for
    /// subjects named by external id), whatever the page size; rendering each item then
    /// finds them cached. Other navigations load item by item as they are rendered.
    pub fn prefetch(&self, tx: &mut dyn ReadTx, items: &[Entity], expand: &[Expand]) -> Result<()> {
        self.prefetch_at(tx, items, expand, 0)
    }

    fn prefetch_at(
        &self,
        tx: &mut dyn ReadTx,
        items: &[Entity],
        expand: &[Expand],
        depth: usize,
    ) -> Result<()> {
        // What these items lead to would render past the deepest level: nothing to load
        // (rendering refuses the request).
        if depth >= MAX_EXPAND_DEPTH {
            return Ok(());
        }
        for x in expand {
            let mut wanted: std::collections::BTreeMap<
                &'static str,
                std::collections::BTreeSet<&str>,
            > = std::collections::BTreeMap::new();
            for e in items {
                let Some(name) = navigation(e, &x.path) else {
                    continue;
                };
                if let Some((kind, id)) = nav_key(e, name)
                    && !self
                        .expanded
                        .borrow()
                        .get(kind)
                        .is_some_and(|m| m.contains_key(id))
                {
                    wanted.entry(kind).or_default().insert(id);
                }
            }
            let nested = !x.options.expand.is_empty();
            let mut loaded = Vec::new();
            for (kind, ids) in wanted {
                // What the cache holds needs no statement: rendering finds it there. A
                // nested `$expand` needs the entities themselves, to look further.
                let ids: Vec<String> = if nested {
                    ids.into_iter().map(str::to_string).collect()
                } else {
                    self.lookup.uncached(kind, ids)?
                };
                if ids.is_empty() {
                    continue;
                }
                let found: Vec<(String, Entity)> = match kind {
                    "resource" => self
                        .lookup
                        .resources_by_id(tx, &ids)?
                        .into_iter()
                        .map(|r| (r.id.clone(), Entity::Resource(r)))
                        .collect(),
                    "roleDefinition" => self
                        .lookup
                        .role_definitions_by_id(tx, &ids)?
                        .into_iter()
                        .map(|d| (d.id.clone(), Entity::RoleDefinition(d)))
                        .collect(),
                    "subject" => self
                        .lookup
                        .subjects_by_id(tx, &ids)?
                        .into_iter()
                        .map(|(id, s)| (id, Entity::Subject(s)))
                        .collect(),
                    _ => continue,
                };
                let mut cache = self.expanded.borrow_mut();
                let cache = cache.entry(kind).or_default();
                for (id, e) in found {
                    if nested {
                        loaded.push(e.clone());
                    }
                    cache.insert(id, Some(e));
                }
                // Not found: the navigation is empty, as `navigate` would say.
                for id in ids {
                    cache.entry(id).or_insert(None);
                }
            }
            self.prefetch_at(tx, &loaded, &x.options.expand, depth + 1)?;
        }
        Ok(())
    }
}

/// What a navigation leads to, as (target kind, id), for caching.
fn nav_key<'e>(e: &'e Entity, nav: &str) -> Option<(&'static str, &'e str)> {
    Some(match (e, nav) {
        (Entity::Resource(r), "parent") => ("resource", r.parent_id.as_deref()?),
        (Entity::RoleDefinition(d), "resource") => ("resource", &d.resource_id),
        (Entity::RoleDefinition(d), "roleSetting") => ("settingOf", &d.id),
        (Entity::RoleSetting(s), "resource") => ("resource", &s.resource_id),
        (Entity::RoleSetting(s), "roleDefinition") => ("roleDefinition", &s.role_definition_id),
        (Entity::Assignment(a, _), "resource") => ("resource", &a.resource_id),
        (Entity::Assignment(a, _), "roleDefinition") => ("roleDefinition", &a.role_definition_id),
        (Entity::Assignment(a, _), "subject") => ("subject", &a.subject_id),
        (Entity::Request(r), "resource") => ("resource", &r.resource_id),
        (Entity::Request(r), "roleDefinition") => ("roleDefinition", &r.role_definition_id),
        (Entity::Request(r), "subject") => ("subject", &r.subject_id),
        _ => return None,
    })
}

/// The entity set name used in `@odata.context`.
pub fn entity_set(e: &Entity) -> &'static str {
    match e {
        Entity::Resource(_) => "governanceResources",
        Entity::RoleDefinition(_) => "governanceRoleDefinitions",
        Entity::RoleSetting(_) => "governanceRoleSettings",
        Entity::Assignment(..) => "governanceRoleAssignments",
        Entity::Request(_) => "governanceRoleAssignmentRequests",
        Entity::Subject(_) => "governanceSubjects",
        Entity::DirectoryAudit(_) => "auditLogs/directoryAudits",
    }
}

fn dt(t: Timestamp) -> Value {
    Value::String(format_datetime(t))
}

fn rules(list: &[RuleSetting]) -> Value {
    Value::Array(
        list.iter()
            .map(|r| json!({"ruleIdentifier": r.rule_identifier, "setting": r.setting}))
            .collect(),
    )
}

/// The entity's own properties.
pub fn properties(e: &Entity, now: Timestamp) -> Map<String, Value> {
    let v = match e {
        Entity::Resource(r) => json!({
            "id": r.id, "externalId": r.external_id, "type": r.resource_type, "displayName": r.display_name,
            "status": r.status.as_str(), "registeredDateTime": dt(r.registered_at), "registeredRoot": r.registered_root,
        }),
        Entity::RoleDefinition(d) => json!({
            "id": d.id, "resourceId": d.resource_id, "externalId": d.external_id, "templateId": d.template_id,
            "displayName": d.display_name,
        }),
        Entity::RoleSetting(s) => json!({
            "id": s.id, "resourceId": s.resource_id, "roleDefinitionId": s.role_definition_id, "isDefault": s.is_default,
            "lastUpdatedDateTime": s.last_updated_at.map(dt), "lastUpdatedBy": s.last_updated_by,
            "adminEligibleSettings": rules(&s.rules.admin_eligible), "adminMemberSettings": rules(&s.rules.admin_member),
            "userEligibleSettings": rules(&s.rules.user_eligible), "userMemberSettings": rules(&s.rules.user_member),
        }),
        Entity::Assignment(a, member) => {
            serde_json::to_value(AssignmentProperties::of(a, *member)).unwrap_or_default()
        }
        Entity::Request(r) => {
            let status = r.status_at(now);
            let mut v = json!({
                "id": r.id, "resourceId": r.resource_id, "roleDefinitionId": r.role_definition_id, "subjectId": r.subject_id,
                "linkedEligibleRoleAssignmentId": r.linked_eligible_id.clone().unwrap_or_default(),
                "type": r.kind.as_str(), "assignmentState": r.state.as_str(), "requestedDateTime": dt(r.requested_at),
                "reason": r.reason,
                "schedule": r.schedule.map(|s| json!({
                    "type": "Once", "startDateTime": dt(s.start), "endDateTime": s.end.map(dt),
                    "duration": s.duration().map(format_duration),
                })),
                "status": {
                    "status": status.coarse(), "subStatus": status.as_str(),
                    "statusDetails": r.status_details.iter().map(|d| json!({"key": d.rule, "value": d.result})).collect::<Vec<_>>(),
                },
            });
            if let (Some(t), Some(obj)) = (&r.ticket, v.as_object_mut()) {
                obj.insert(
                    "ticketInfo".into(),
                    json!({"ticketNumber": t.ticket_number, "ticketSystem": t.ticket_system}),
                );
            }
            if let (true, Some(obj)) = (r.emergency, v.as_object_mut()) {
                obj.insert("emergency".into(), Value::Bool(true));
            }
            v
        }
        Entity::Subject(s) => json!({
            "id": s.id, "type": s.kind.as_str(), "displayName": s.display_name,
            "email": s.email.clone().unwrap_or_default(), "principalName": s.principal_name.clone().unwrap_or_default(),
        }),
        Entity::DirectoryAudit(doc) => return doc.clone(),
    };
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A `governanceRoleAssignment`'s properties, and the navigations `$expand` asks for,
/// written straight to the response (a page of them is most of what the Graph API serves),
/// in the order a JSON object of them always had (alphabetical).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentProperties<'a> {
    assignment_state: &'static str,
    end_date_time: Option<String>,
    /// Always `null`.
    external_id: Option<&'a str>,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    linked_eligible_role_assignment: Option<Option<SharedJson>>,
    linked_eligible_role_assignment_id: Option<&'a str>,
    member_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Option<SharedJson>>,
    resource_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role_definition: Option<Option<SharedJson>>,
    role_definition_id: &'a str,
    start_date_time: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Option<SharedJson>>,
    subject_id: &'a str,
}

impl<'a> AssignmentProperties<'a> {
    fn of(a: &'a RoleAssignment, member: MemberType) -> Self {
        Self {
            assignment_state: a.state.as_str(),
            end_date_time: a.schedule.end.map(format_datetime),
            external_id: None,
            id: &a.id,
            linked_eligible_role_assignment: None,
            linked_eligible_role_assignment_id: a.linked_eligible_id.as_deref(),
            member_type: member.as_str(),
            resource: None,
            resource_id: &a.resource_id,
            role_definition: None,
            role_definition_id: &a.role_definition_id,
            start_date_time: format_datetime(a.schedule.start),
            status: "Provisioned",
            subject: None,
            subject_id: &a.subject_id,
        }
    }
}

/// An entity with its own properties only (no `$select`, no `$expand`), serialized as
/// [`properties`] gives them; assignments without an intermediate JSON tree.
pub struct Plain<'a> {
    /// The entity.
    pub entity: &'a Entity,
    /// Now, for time-derived properties.
    pub now: Timestamp,
}

impl serde::Serialize for Plain<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.entity {
            Entity::Assignment(a, member) => AssignmentProperties::of(a, *member).serialize(s),
            other => properties(other, self.now).serialize(s),
        }
    }
}

/// Properties returned only when `$select`ed (governanceResource only).
const RESOURCE_OPTIONAL: [&str; 3] = ["roleAssignmentCount", "roleDefinitionCount", "permissions"];

/// The navigation property of `e` named `path` (any case), spelled as the contract does.
fn navigation(e: &Entity, path: &str) -> Option<&'static str> {
    navigations(e)
        .iter()
        .find(|n| n.eq_ignore_ascii_case(path))
        .copied()
}

fn navigations(e: &Entity) -> &'static [&'static str] {
    match e {
        Entity::Resource(_) => &["parent"],
        Entity::RoleDefinition(_) => &["resource", "roleSetting"],
        Entity::RoleSetting(_) => &["resource", "roleDefinition"],
        Entity::Assignment(..) => &[
            "resource",
            "roleDefinition",
            "subject",
            "linkedEligibleRoleAssignment",
        ],
        Entity::Request(_) => &["resource", "roleDefinition", "subject"],
        Entity::Subject(_) | Entity::DirectoryAudit(_) => &[],
    }
}

/// The entity a single-valued navigation leads to (`None` = the navigation is empty).
pub fn navigate(
    tx: &mut dyn ReadTx,
    lookup: Lookup,
    e: &Entity,
    nav: &str,
) -> Result<Option<Entity>> {
    let name = navigation(e, nav).ok_or_else(|| {
        DomainError::bad_request(format!(
            "`{nav}` is not a navigation property of {}",
            entity_set(e)
        ))
    })?;
    let resource = |tx: &mut dyn ReadTx, id: &str| -> Result<Option<Entity>> {
        Ok(lookup.resource(tx, id)?.map(Entity::Resource))
    };
    let role = |tx: &mut dyn ReadTx, id: &str| -> Result<Option<Entity>> {
        Ok(lookup.role_definition(tx, id)?.map(Entity::RoleDefinition))
    };
    let subject = |tx: &mut dyn ReadTx, id: &str| -> Result<Option<Entity>> {
        Ok(lookup.subject(tx, id)?.map(Entity::Subject))
    };
    match (e, name) {
        (Entity::Resource(r), "parent") => match &r.parent_id {
            Some(p) => resource(tx, p),
            None => Ok(None),
        },
        (Entity::RoleDefinition(d), "resource") => resource(tx, &d.resource_id),
        (Entity::RoleDefinition(d), _) => Ok(tx.role_setting_of(&d.id)?.map(Entity::RoleSetting)),
        (Entity::RoleSetting(s), "resource") => resource(tx, &s.resource_id),
        (Entity::RoleSetting(s), _) => role(tx, &s.role_definition_id),
        (Entity::Assignment(a, _), "resource") => resource(tx, &a.resource_id),
        (Entity::Assignment(a, _), "roleDefinition") => role(tx, &a.role_definition_id),
        (Entity::Assignment(a, _), "subject") => subject(tx, &a.subject_id),
        (Entity::Assignment(a, _), _) => match &a.linked_eligible_id {
            Some(id) => Ok(tx
                .assignment(id)?
                .map(|x| Entity::Assignment(x, MemberType::Direct))),
            None => Ok(None),
        },
        (Entity::Request(r), "resource") => resource(tx, &r.resource_id),
        (Entity::Request(r), "roleDefinition") => role(tx, &r.role_definition_id),
        (Entity::Request(r), _) => subject(tx, &r.subject_id),
        _ => Ok(None),
    }
}

/// The navigation `x` expands on `e`, spelled as the contract does; a `400` if `e` has none
/// by that name.
fn expansion_of(e: &Entity, x: &Expand) -> Result<&'static str> {
    navigation(e, &x.path).ok_or_else(|| {
        DomainError::bad_request(format!("cannot $expand `{}` on {}", x.path, entity_set(e)))
    })
}

/// What navigation `name` of `e` expands to with `x`'s options, at `depth`.
fn expanded(
    tx: &mut dyn ReadTx,
    e: &Entity,
    name: &'static str,
    x: &Expand,
    viewer: &Viewer,
    depth: usize,
) -> Result<Value> {
    Ok(match viewer.navigate_cached(tx, e, name)? {
        // A resource the viewer may not navigate to (a parent without R1) expands to null.
        Some(Entity::Resource(r)) if !viewer.may_navigate_to_resource(name, &r.id) => Value::Null,
        Some(related) => Value::Object(shape_at(tx, &related, &x.options, viewer, depth + 1)?),
        None => Value::Null,
    })
}

fn expand_one(
    tx: &mut dyn ReadTx,
    e: &Entity,
    x: &Expand,
    viewer: &Viewer,
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<()> {
    let name = expansion_of(e, x)?;
    let value = expanded(tx, e, name, x, viewer, depth)?;
    out.insert(name.to_string(), value);
    Ok(())
}

impl Viewer<'_> {
    /// Whether the viewer may follow navigation `name` to resource `id` (a parent needs
    /// R1: [`visibility::may_navigate_to_resource`]); if not, it expands to `null`.
    fn may_navigate_to_resource(&self, name: &str, id: &str) -> bool {
        visibility::may_navigate_to_resource(self.caller, self.access, name, id, self.now).is_ok()
    }

    /// [`expanded`] at the top level, written out once per response for each entity it
    /// leads to (`None`: `null`).
    fn written(
        &self,
        tx: &mut dyn ReadTx,
        e: &Entity,
        name: &'static str,
        (asking, x): (usize, &Expand),
    ) -> Result<Option<SharedJson>> {
        let key = nav_key(e, name);
        // Expanded without options (or a role definition with its resource): as the cache
        // keeps them.
        if let Some((kind, id)) = key
            && let Some(form) = cached_form(kind, &x.options)
            && let Some(json) = self.lookup.cached_json(kind, id, form)?
        {
            let hidden = kind == "resource" && !self.may_navigate_to_resource(name, id);
            return Ok((!hidden).then_some(SharedJson(json)));
        }
        let target = key.map(|(_, id)| id);
        if let Some(done) = target.and_then(|id| {
            self.written
                .borrow()
                .get(&asking)
                .and_then(|m| m.get(id).cloned())
        }) {
            return Ok(done);
        }
        let json = match expanded(tx, e, name, x, self, 0)? {
            Value::Null => None,
            v => Some(SharedJson(raw_json(&v)?)),
        };
        if let Some(id) = target {
            self.written
                .borrow_mut()
                .entry(asking)
                .or_default()
                .insert(id.to_string(), json.clone());
        }
        Ok(json)
    }
}

/// The form of the cached JSON that is an expansion of `kind` with `options`, if any.
fn cached_form(kind: &str, options: &QueryOptions) -> Option<JsonForm> {
    let plain = |o: &QueryOptions| o.select.is_none() && o.expand.is_empty();
    if options.select.is_some() {
        return None;
    }
    match options.expand.as_slice() {
        [] => Some(JsonForm::Own),
        [x] if kind == "roleDefinition"
            && x.path.eq_ignore_ascii_case("resource")
            && plain(&x.options) =>
        {
            Some(JsonForm::WithResource)
        }
        _ => None,
    }
}

/// An item of a list as written: an assignment with `$expand` and without `$select`
/// straight out, each distinct expansion written once per response; any other as a JSON
/// object ([`shape`]).
pub enum Shaped<'a> {
    /// Built as an object.
    Object(Map<String, Value>),
    /// An assignment and its expansions.
    Assignment(Box<AssignmentProperties<'a>>),
}

impl serde::Serialize for Shaped<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Object(o) => o.serialize(s),
            Self::Assignment(a) => a.serialize(s),
        }
    }
}

/// [`shape`] of a list item, written straight out where it can be ([`Shaped`]).
pub fn shape_item<'e>(
    tx: &mut dyn ReadTx,
    e: &'e Entity,
    opts: &QueryOptions,
    viewer: &Viewer,
) -> Result<Shaped<'e>> {
    let Entity::Assignment(a, member) = e else {
        return Ok(Shaped::Object(shape(tx, e, opts, viewer)?));
    };
    if opts.select.is_some() {
        return Ok(Shaped::Object(shape(tx, e, opts, viewer)?));
    }
    let mut out = AssignmentProperties::of(a, *member);
    for (i, x) in opts.expand.iter().enumerate() {
        let name = expansion_of(e, x)?;
        let json = Some(viewer.written(tx, e, name, (i, x))?);
        match name {
            "resource" => out.resource = json,
            "roleDefinition" => out.role_definition = json,
            "subject" => out.subject = json,
            _ => out.linked_eligible_role_assignment = json,
        }
    }
    Ok(Shaped::Assignment(Box::new(out)))
}

/// Renders `e` with `$expand` and `$select` of `opts` applied.
pub fn shape(
    tx: &mut dyn ReadTx,
    e: &Entity,
    opts: &QueryOptions,
    viewer: &Viewer,
) -> Result<Map<String, Value>> {
    shape_at(tx, e, opts, viewer, 0)
}

/// How deep `$expand` may nest: an entity at a deeper level is refused.
const MAX_EXPAND_DEPTH: usize = 4;

fn shape_at(
    tx: &mut dyn ReadTx,
    e: &Entity,
    opts: &QueryOptions,
    viewer: &Viewer,
    depth: usize,
) -> Result<Map<String, Value>> {
    if depth > MAX_EXPAND_DEPTH {
        return Err(DomainError::bad_request("$expand is nested too deeply"));
    }
    let mut out = properties(e, viewer.now);
    for x in &opts.expand {
        expand_one(tx, e, x, viewer, &mut out, depth)?;
    }
    let Some(select) = &opts.select else {
        return Ok(out);
    };
    let star = select.iter().any(|s| s == "*");
    let mut picked = Map::new();
    for s in select.iter().filter(|s| *s != "*") {
        let known = out.keys().find(|k| k.eq_ignore_ascii_case(s)).cloned();
        match known {
            Some(k) => {
                if let Some(v) = out.get(&k) {
                    picked.insert(k, v.clone());
                }
            }
            None => match optional_property(tx, e, s, viewer)? {
                Some((name, value)) => {
                    picked.insert(name, value);
                }
                None if navigations(e).iter().any(|n| n.eq_ignore_ascii_case(s)) => {}
                None => {
                    return Err(DomainError::bad_request(format!(
                        "`{s}` is not a property of {}",
                        entity_set(e)
                    )));
                }
            },
        }
    }
    if star {
        out.extend(picked);
        return Ok(out);
    }
    for x in &opts.expand {
        if let Some((k, v)) = out.iter().find(|(k, _)| k.eq_ignore_ascii_case(&x.path)) {
            picked.insert(k.clone(), v.clone());
        }
    }
    Ok(picked)
}

/// A property returned only when `$select` names it: a resource's counts and permissions,
/// a request's `approvals` (Rolegate: the decisions so far).
fn optional_property(
    tx: &mut dyn ReadTx,
    e: &Entity,
    name: &str,
    viewer: &Viewer,
) -> Result<Option<(String, Value)>> {
    match e {
        Entity::Resource(r) => match RESOURCE_OPTIONAL
            .iter()
            .find(|o| o.eq_ignore_ascii_case(name))
        {
            Some(n) => Ok(Some(((*n).to_string(), resource_extra(tx, r, n, viewer)?))),
            None => Ok(None),
        },
        Entity::Request(r) if name.eq_ignore_ascii_case("approvals") => {
            let list: Vec<Value> = tx
                .approvals(&r.id)?
                .into_iter()
                .map(|a| {
                    json!({
                        "approverId": a.approver_id, "approverDisplayName": a.approver_name,
                        "decision": if a.approved { "AdminApproved" } else { "AdminDenied" },
                        "reason": a.justification, "decidedDateTime": dt(a.at),
                    })
                })
                .collect();
            Ok(Some(("approvals".to_string(), Value::Array(list))))
        }
        _ => Ok(None),
    }
}

fn resource_extra(tx: &mut dyn ReadTx, r: &Resource, name: &str, viewer: &Viewer) -> Result<Value> {
    Ok(match name {
        "roleAssignmentCount" => json!(tx.resource_counts(&r.id, viewer.now)?.0),
        "roleDefinitionCount" => json!(tx.resource_counts(&r.id, viewer.now)?.1),
        _ => {
            let level = visibility::access_level(viewer.caller, viewer.access, &r.id, viewer.now);
            let name = match level {
                AccessLevel::AdminReadWrite => "AdminReadWrite",
                AccessLevel::UserRead => "UserRead",
                AccessLevel::None => "None",
            };
            json!({
                "accessLevel": name,
                "isActive": level == AccessLevel::AdminReadWrite,
                "isEligible": level == AccessLevel::UserRead,
            })
        }
    })
}
