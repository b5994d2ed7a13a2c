//! In-memory copies of the entities nearly every read looks up and few writes change, so a
//! read finds them without a database round trip:
//! - every subject of the directory, kept whole and current by the same committed changes
//!   that patch the access index ([`AccessChange::Subject`], [`AccessChange::SubjectRemoved`];
//!   the access log carries them to other nodes), so a subject missing here is missing in
//!   the database as of the index's position;
//! - resources and role definitions, which are never changed nor deleted once registered:
//!   the resources there were at start, and those and the role definitions read
//!   transactions found since (a miss says nothing: ask the database).
//!
//! Only committed data may enter: fill resources and role definitions from read
//! transactions, never from a write transaction that could still roll back.
//!
//! Each entity is kept with its own properties as JSON, written the first time a response
//! asks for them ([`EntityCache::subject_json`] and its siblings) and dropped with the
//! entity: a page that expands a subject on every row copies that text instead of
//! rendering the subject again.

use crate::access::AccessChange;
use crate::directory::Subject;
use crate::resource::Resource;
use crate::role::RoleDefinition;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The cached entities (see the module's doc).
#[derive(Debug, Default, Clone)]
pub struct EntityCache {
    subjects: HashMap<String, Kept<Subject>>,
    /// External id → id, for lookups by either.
    external_ids: HashMap<String, String>,
    resources: HashMap<String, Kept<Resource>>,
    roles: HashMap<String, Kept<RoleDefinition>>,
}

/// Which JSON of a cached entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonForm {
    /// Its own properties.
    Own,
    /// A role definition's own properties and its resource (`$expand=resource`): both
    /// never change once registered.
    WithResource,
}

/// An entity, and its JSON forms once written.
#[derive(Debug, Clone)]
struct Kept<T> {
    entity: T,
    json: [OnceLock<Arc<RawValue>>; 2],
}

impl<T> Kept<T> {
    fn new(entity: T) -> Self {
        Self {
            entity,
            json: Default::default(),
        }
    }

    /// The JSON `form` kept, else the one `write` makes (then kept: two readers racing
    /// keep the first, and both wrote the same entity).
    fn json<E>(
        &self,
        form: JsonForm,
        write: impl FnOnce(&T) -> Result<Arc<RawValue>, E>,
    ) -> Result<Arc<RawValue>, E> {
        let kept = &self.json[form as usize];
        if let Some(json) = kept.get() {
            return Ok(Arc::clone(json));
        }
        let json = write(&self.entity)?;
        Ok(Arc::clone(kept.get_or_init(|| json)))
    }
}

impl EntityCache {
    /// A cache holding `subjects`: the whole directory as one transaction saw it.
    pub fn new(subjects: impl IntoIterator<Item = Subject>) -> Self {
        let mut cache = Self::default();
        for s in subjects {
            cache.put_subject(s);
        }
        cache
    }

    /// Holds `subjects` instead of the subjects it held (the directory read again whole);
    /// keeps the resources and role definitions.
    pub fn replace_subjects(&mut self, subjects: impl IntoIterator<Item = Subject>) {
        let fresh = Self::new(subjects);
        self.subjects = fresh.subjects;
        self.external_ids = fresh.external_ids;
    }

    /// The subject with id `id`, else the one with external id `id`, as
    /// [`crate::store::DirectoryRead::subject`] answers.
    pub fn subject(&self, id: &str) -> Option<&Subject> {
        self.kept_subject(id).map(|k| &k.entity)
    }

    fn kept_subject(&self, id: &str) -> Option<&Kept<Subject>> {
        self.subjects.get(id).or_else(|| {
            self.external_ids
                .get(id)
                .and_then(|own| self.subjects.get(own))
        })
    }

    /// The JSON of the subject [`Self::subject`] finds for `id`: kept, else written by
    /// `write` and kept until the subject changes. `None` when the cache has no such
    /// subject.
    pub fn subject_json<E>(
        &self,
        id: &str,
        write: impl FnOnce(&Subject) -> Result<Arc<RawValue>, E>,
    ) -> Result<Option<Arc<RawValue>>, E> {
        self.kept_subject(id)
            .map(|k| k.json(JsonForm::Own, write))
            .transpose()
    }

    /// The JSON of the resource `id`, as [`Self::subject_json`] keeps a subject's.
    pub fn resource_json<E>(
        &self,
        id: &str,
        write: impl FnOnce(&Resource) -> Result<Arc<RawValue>, E>,
    ) -> Result<Option<Arc<RawValue>>, E> {
        self.resources
            .get(id)
            .map(|k| k.json(JsonForm::Own, write))
            .transpose()
    }

    /// The JSON `form` of the role definition `id`, as [`Self::subject_json`] keeps a
    /// subject's.
    pub fn role_definition_json<E>(
        &self,
        id: &str,
        form: JsonForm,
        write: impl FnOnce(&RoleDefinition) -> Result<Arc<RawValue>, E>,
    ) -> Result<Option<Arc<RawValue>>, E> {
        self.roles.get(id).map(|k| k.json(form, write)).transpose()
    }

    /// How many subjects the directory holds.
    pub fn subject_count(&self) -> usize {
        self.subjects.len()
    }

    /// A resource read before, if any.
    pub fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.get(id).map(|k| &k.entity)
    }

    /// A role definition read before, if any.
    pub fn role_definition(&self, id: &str) -> Option<&RoleDefinition> {
        self.roles.get(id).map(|k| &k.entity)
    }

    /// Keeps a resource a read transaction found (committed, so it never changes).
    pub fn keep_resource(&mut self, r: &Resource) {
        self.resources
            .entry(r.id.clone())
            .or_insert_with(|| Kept::new(r.clone()));
    }

    /// Keeps a role definition a read transaction found (committed, so it never changes).
    pub fn keep_role_definition(&mut self, d: &RoleDefinition) {
        self.roles
            .entry(d.id.clone())
            .or_insert_with(|| Kept::new(d.clone()));
    }

    /// Applies committed changes, in order: subjects written or deleted.
    pub fn apply(&mut self, changes: &[AccessChange]) {
        for c in changes {
            match c {
                AccessChange::Subject(s) => self.put_subject(s.clone()),
                AccessChange::SubjectRemoved(id) => self.remove_subject(id),
                AccessChange::Upsert(..)
                | AccessChange::Remove { .. }
                | AccessChange::Resource { .. }
                | AccessChange::Groups { .. }
                | AccessChange::Role { .. } => {}
            }
        }
    }

    fn put_subject(&mut self, s: Subject) {
        self.remove_subject(&s.id);
        if let Some(ext) = &s.external_id {
            self.external_ids.insert(ext.clone(), s.id.clone());
        }
        self.subjects.insert(s.id.clone(), Kept::new(s));
    }

    fn remove_subject(&mut self, id: &str) {
        if let Some(old) = self.subjects.remove(id)
            && let Some(ext) = old.entity.external_id
            && self.external_ids.get(&ext).is_some_and(|own| own == id)
        {
            self.external_ids.remove(&ext);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::SubjectKind;
    use proptest::prelude::*;

    fn subject(id: &str, ext: Option<&str>, name: &str) -> Subject {
        Subject {
            id: id.into(),
            external_id: ext.map(str::to_string),
            kind: SubjectKind::User,
            display_name: name.into(),
            principal_name: None,
            email: None,
            active: true,
        }
    }

    #[test]
    fn a_subject_is_found_by_id_then_by_external_id() {
        let cache = EntityCache::new([subject("a", Some("x"), "A"), subject("x", None, "X")]);
        // An id wins over another subject's external id, as the database lookup answers.
        assert_eq!(cache.subject("x").map(|s| s.id.as_str()), Some("x"));
        assert_eq!(cache.subject("a").map(|s| s.id.as_str()), Some("a"));
        assert!(cache.subject("nobody").is_none());
        assert_eq!(cache.subject_count(), 2);
    }

    #[test]
    fn a_changed_external_id_no_longer_finds_the_subject_by_the_old_one() {
        let mut cache = EntityCache::new([subject("a", Some("old"), "A")]);
        cache.apply(&[AccessChange::Subject(subject("a", Some("new"), "A2"))]);
        assert!(cache.subject("old").is_none());
        assert_eq!(
            cache.subject("new").map(|s| s.display_name.as_str()),
            Some("A2")
        );
        cache.apply(&[AccessChange::SubjectRemoved("a".into())]);
        assert!(cache.subject("a").is_none() && cache.subject("new").is_none());
    }

    #[test]
    fn an_entitys_json_is_written_once_and_dropped_when_it_changes() {
        let mut cache = EntityCache::new([subject("a", Some("x"), "A")]);
        let writes = std::cell::Cell::new(0);
        let written = |cache: &EntityCache, id: &str| {
            cache
                .subject_json(id, |s| {
                    writes.set(writes.get() + 1);
                    RawValue::from_string(format!("\"{}\"", s.display_name)).map(Arc::from)
                })
                .map(|j| j.map(|j| j.get().to_string()))
        };
        assert_eq!(
            written(&cache, "a").ok().flatten().as_deref(),
            Some("\"A\"")
        );
        // By external id: the same subject, its JSON already written.
        assert_eq!(
            written(&cache, "x").ok().flatten().as_deref(),
            Some("\"A\"")
        );
        assert_eq!(writes.get(), 1);
        cache.apply(&[AccessChange::Subject(subject("a", Some("x"), "B"))]);
        assert_eq!(
            written(&cache, "a").ok().flatten().as_deref(),
            Some("\"B\"")
        );
        assert_eq!(writes.get(), 2);
        assert_eq!(written(&cache, "nobody").ok(), Some(None));
        assert_eq!(writes.get(), 2);
        // Resources and role definitions are written once too, and only once kept.
        let resource = Resource {
            id: "r".into(),
            external_id: "/r".into(),
            resource_type: "subscription".into(),
            display_name: "R".into(),
            status: crate::resource::ResourceStatus::Active,
            registered_at: jiff::Timestamp::UNIX_EPOCH,
            registered_root: "/r".into(),
            parent_id: None,
        };
        let text = |r: &Resource| RawValue::from_string(format!("\"{}\"", r.id)).map(Arc::from);
        assert!(matches!(cache.resource_json("r", text), Ok(None)));
        cache.keep_resource(&resource);
        let json = cache.resource_json("r", text).ok().flatten();
        assert_eq!(json.map(|j| j.get().to_string()).as_deref(), Some("\"r\""));
        let twice = cache.resource_json("r", |_| RawValue::from_string("0".into()).map(Arc::from));
        assert_eq!(
            twice.ok().flatten().map(|j| j.get().to_string()).as_deref(),
            Some("\"r\"")
        );
        // A role definition's two forms are kept apart.
        let role = RoleDefinition {
            id: "d".into(),
            resource_id: "r".into(),
            external_id: "/r/d".into(),
            template_id: "t".into(),
            display_name: "D".into(),
        };
        cache.keep_role_definition(&role);
        let form = |cache: &EntityCache, form: JsonForm, text: &str| {
            let json = cache.role_definition_json("d", form, |_| {
                RawValue::from_string(text.to_string()).map(Arc::from)
            });
            json.ok().flatten().map(|j| j.get().to_string())
        };
        assert_eq!(form(&cache, JsonForm::Own, "1").as_deref(), Some("1"));
        assert_eq!(
            form(&cache, JsonForm::WithResource, "2").as_deref(),
            Some("2")
        );
        assert_eq!(form(&cache, JsonForm::Own, "3").as_deref(), Some("1"));
        assert_eq!(
            form(&cache, JsonForm::WithResource, "4").as_deref(),
            Some("2")
        );
    }

    proptest! {
        /// After any sequence of writes and deletions, every lookup answers as a plain list
        /// of the subjects written last (the database's rows) does.
        #[test]
        fn lookups_match_the_rows_after_any_changes(
            ops in proptest::collection::vec((0..4usize, proptest::option::of(0..4usize), any::<bool>()), 0..40)
        ) {
            let mut cache = EntityCache::default();
            let mut rows: Vec<Subject> = Vec::new();
            for (n, (id, ext, delete)) in ops.into_iter().enumerate() {
                let id = format!("s{id}");
                if delete {
                    rows.retain(|s| s.id != id);
                    cache.apply(&[AccessChange::SubjectRemoved(id)]);
                    continue;
                }
                let ext = ext.map(|e| format!("e{e}"));
                // External ids are unique in the database: a write taking one is refused.
                if ext.as_ref().is_some_and(|e| {
                    rows.iter().any(|s| s.id != id && s.external_id.as_ref() == Some(e))
                }) {
                    continue;
                }
                let s = subject(&id, ext.as_deref(), &format!("v{n}"));
                rows.retain(|r| r.id != id);
                rows.push(s.clone());
                cache.apply(&[AccessChange::Subject(s)]);
            }
            for key in (0..4).map(|i| format!("s{i}")).chain((0..4).map(|i| format!("e{i}"))) {
                let expected = rows
                    .iter()
                    .find(|s| s.id == key)
                    .or_else(|| rows.iter().find(|s| s.external_id.as_deref() == Some(key.as_str())));
                prop_assert_eq!(cache.subject(&key), expected);
            }
            prop_assert_eq!(cache.subject_count(), rows.len());
        }
    }
}
