//! SCIM documents: normalising what a client sends against the schema (canonical names,
//! type coercion such as Entra ID's `"False"`, unknown and read-only attributes dropped),
//! deriving the directory [`Subject`] from a document, rendering a stored document with
//! its server-set attributes, and `attributes` / `excludedAttributes` projection.

use super::schema::{
    self, AttrType, Attribute, ENTERPRISE_SCHEMA, Mutability, PathTarget, ResourceType,
};
use crate::directory::{Subject, SubjectKind};
use crate::error::{DomainError, Result, ScimType};
use serde_json::{Map, Value, json};

fn invalid_value(msg: impl Into<String>) -> DomainError {
    DomainError::scim(ScimType::InvalidValue, msg)
}

/// Normalises one value for attribute `a`: `None` when it is unassigned (null, empty
/// list, empty object). Booleans accept `"true"`/`"false"` in any case; strings accept
/// numbers; a complex attribute with a `value` sub-attribute accepts a bare value;
/// a multi-valued attribute accepts a single value. Unknown and read-only
/// sub-attributes are dropped.
pub fn value_for(a: &'static Attribute, v: &Value, path: &str) -> Result<Option<Value>> {
    if v.is_null() {
        return Ok(None);
    }
    if a.multi {
        let items: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for item in items {
            if let Some(x) = single_value(a, item, path)? {
                out.push(x);
            }
        }
        let primaries = out
            .iter()
            .filter(|x| x.get("primary") == Some(&Value::Bool(true)))
            .count();
        if primaries > 1 {
            return Err(invalid_value(format!(
                "`{path}`: at most one value may be primary"
            )));
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    single_value(a, v, path)
}

fn single_value(a: &'static Attribute, v: &Value, path: &str) -> Result<Option<Value>> {
    if v.is_null() {
        return Ok(None);
    }
    match a.ty {
        AttrType::Complex => {
            let obj = match v {
                Value::Object(o) => o.clone(),
                scalar if schema::sub_attribute(a, "value").is_some() && !scalar.is_array() => {
                    let mut o = Map::new();
                    o.insert("value".into(), scalar.clone());
                    o
                }
                _ => {
                    return Err(invalid_value(format!("`{path}` must be an object")));
                }
            };
            let mut out = Map::new();
            for (k, v) in &obj {
                let Some(sub) = schema::sub_attribute(a, k) else {
                    continue;
                };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(x) = single_value(sub, v, &format!("{path}.{}", sub.name))? {
                    out.insert(sub.name.to_string(), x);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        AttrType::Boolean => match v {
            Value::Bool(b) => Ok(Some(Value::Bool(*b))),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
            _ => Err(invalid_value(format!("`{path}` must be true or false"))),
        },
        AttrType::DateTime => match v {
            Value::String(s) => {
                crate::schedule::parse_datetime(s)
                    .map_err(|_| invalid_value(format!("`{path}` must be an ISO 8601 datetime")))?;
                Ok(Some(Value::String(s.clone())))
            }
            _ => Err(invalid_value(format!(
                "`{path}` must be an ISO 8601 datetime"
            ))),
        },
        AttrType::String | AttrType::Reference | AttrType::Binary => match v {
            Value::String(s) => Ok(Some(Value::String(s.clone()))),
            Value::Number(n) => Ok(Some(Value::String(n.to_string()))),
            Value::Bool(b) => Ok(Some(Value::String(b.to_string()))),
            _ => Err(invalid_value(format!("`{path}` must be a string"))),
        },
    }
}

/// Runs `f` on the object holding attributes of `extension` (the document itself for the
/// core schema), created when missing. Empty objects are left for [`tidy`].
pub fn with_container<R>(
    doc: &mut Map<String, Value>,
    extension: Option<&'static schema::Schema>,
    f: impl FnOnce(&mut Map<String, Value>) -> R,
) -> R {
    match extension {
        None => f(doc),
        Some(e) => {
            let mut inner = match doc.remove(e.id) {
                Some(Value::Object(o)) => o,
                _ => Map::new(),
            };
            let out = f(&mut inner);
            doc.insert(e.id.to_string(), Value::Object(inner));
            out
        }
    }
}

/// Drops empty extension objects and empty values left behind by edits.
pub fn tidy(doc: &mut Map<String, Value>) {
    doc.retain(|_, v| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => {
            o.retain(|_, x| match x {
                Value::Null => false,
                Value::Array(a) => !a.is_empty(),
                Value::Object(oo) => !oo.is_empty(),
                _ => true,
            });
            !o.is_empty()
        }
        _ => true,
    });
}

/// Sets one attribute (or sub-attribute of a single complex attribute) from client input,
/// normalised; `None` values remove it.
fn put(doc: &mut Map<String, Value>, r: &schema::Resolved, v: Option<Value>) {
    with_container(doc, r.extension, |c| match r.sub {
        None => {
            match v {
                Some(v) => c.insert(r.attr.name.to_string(), v),
                None => c.remove(r.attr.name),
            };
        }
        Some(sub) => {
            let slot = c
                .entry(r.attr.name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(o) = slot {
                match v {
                    Some(v) => o.insert(sub.name.to_string(), v),
                    None => o.remove(sub.name),
                };
            }
        }
    });
}

/// Normalises a whole resource a client sent (POST or PUT): canonical attribute names,
/// URN-qualified keys and extension objects folded in, read-only (`id`, `meta`, `groups`)
/// and write-only (`password`) attributes and unknown ones dropped, then checks that the
/// required ones are there. A user without `active` is active.
pub fn normalize(rt: ResourceType, input: &Map<String, Value>) -> Result<Map<String, Value>> {
    let mut doc = Map::new();
    for (k, v) in input {
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        apply_key(rt, &mut doc, k, v)?;
    }
    tidy(&mut doc);
    check_required(rt, &doc)?;
    // A user is active unless the client says otherwise; say so in the document.
    if rt == ResourceType::User && !doc.contains_key("active") {
        doc.insert("active".into(), Value::Bool(true));
    }
    Ok(doc)
}

/// Applies one key of a resource (or of a no-path PATCH value) as a replacement.
/// Unknown, read-only and write-only attributes are ignored.
pub fn apply_key(
    rt: ResourceType,
    doc: &mut Map<String, Value>,
    key: &str,
    v: &Value,
) -> Result<()> {
    match schema::resolve(rt, key) {
        Err(_) => Ok(()),
        Ok(PathTarget::Extension(s)) => {
            let Value::Object(o) = v else {
                if v.is_null() {
                    doc.remove(s.id);
                    return Ok(());
                }
                return Err(invalid_value(format!("`{}` must be an object", s.id)));
            };
            for (k, v) in o {
                apply_key(rt, doc, &format!("{}:{k}", s.id), v)?;
            }
            Ok(())
        }
        Ok(PathTarget::Attr(r)) => {
            let leaf = r.leaf();
            if r.is_common() && r.attr.name != "externalId" {
                return Ok(());
            }
            if r.attr.mutability == Mutability::ReadOnly || leaf.mutability == Mutability::ReadOnly
            {
                return Ok(());
            }
            if leaf.mutability == Mutability::WriteOnly {
                return Ok(());
            }
            if r.sub.is_some() && r.attr.multi {
                // `emails.value` as a key names no single place.
                return Ok(());
            }
            let v = value_for(leaf, v, &r.canonical())?;
            put(doc, &r, v);
            Ok(())
        }
    }
}

/// Checks the attributes a resource must have: `userName` (User), `displayName` (Group).
pub fn check_required(rt: ResourceType, doc: &Map<String, Value>) -> Result<()> {
    for a in rt.schema().attributes.iter().filter(|a| a.required) {
        let ok = match doc.get(a.name) {
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        if !ok {
            return Err(invalid_value(format!(
                "`{}` is required for a {}",
                a.name,
                rt.name()
            )));
        }
    }
    Ok(())
}

fn str_at<'a>(doc: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    doc.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The primary email of a document (else its first).
fn primary_email(doc: &Map<String, Value>) -> Option<String> {
    let list = doc.get("emails")?.as_array()?;
    list.iter()
        .find(|e| e.get("primary") == Some(&Value::Bool(true)))
        .or(list.first())
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The directory subject a (normalised) document describes, and for a group the member
/// ids it lists. `id` is the SCIM id.
pub fn to_subject(
    rt: ResourceType,
    id: &str,
    doc: &Map<String, Value>,
) -> (Subject, Option<Vec<String>>) {
    let external_id = str_at(doc, "externalId").map(str::to_string);
    match rt {
        ResourceType::User => {
            let user_name = str_at(doc, "userName").unwrap_or_default().to_string();
            let service = doc
                .get(ENTERPRISE_SCHEMA)
                .and_then(|e| e.get("employeeType"))
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("ServicePrincipal"));
            let subject = Subject {
                id: id.to_string(),
                external_id,
                kind: if service {
                    SubjectKind::ServicePrincipal
                } else {
                    SubjectKind::User
                },
                display_name: str_at(doc, "displayName")
                    .map(str::to_string)
                    .unwrap_or_else(|| user_name.clone()),
                principal_name: Some(user_name),
                email: primary_email(doc),
                active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
            };
            (subject, None)
        }
        ResourceType::Group => {
            let members = doc
                .get("members")
                .and_then(Value::as_array)
                .map(|list| {
                    let mut ids: Vec<String> = Vec::new();
                    for m in list {
                        if let Some(v) = m.get("value").and_then(Value::as_str)
                            && !ids.iter().any(|x| x == v)
                        {
                            ids.push(v.to_string());
                        }
                    }
                    ids
                })
                .unwrap_or_default();
            let subject = Subject {
                id: id.to_string(),
                external_id,
                kind: SubjectKind::Group,
                display_name: str_at(doc, "displayName").unwrap_or_default().to_string(),
                principal_name: None,
                email: None,
                active: true,
            };
            (subject, Some(members))
        }
    }
}

/// The resource type a subject is served as.
pub fn resource_type_of(kind: SubjectKind) -> ResourceType {
    if kind == SubjectKind::Group {
        ResourceType::Group
    } else {
        ResourceType::User
    }
}

/// The document of a subject that was not provisioned over SCIM (seeded, or stored before
/// SCIM documents were kept): its directory attributes as SCIM attributes.
pub fn synthesize(s: &Subject) -> Map<String, Value> {
    let mut doc = Map::new();
    if let Some(e) = &s.external_id {
        doc.insert("externalId".into(), json!(e));
    }
    doc.insert("displayName".into(), json!(s.display_name));
    if s.kind != SubjectKind::Group {
        if let Some(u) = &s.principal_name {
            doc.insert("userName".into(), json!(u));
        }
        doc.insert("active".into(), json!(s.active));
        if let Some(e) = &s.email {
            doc.insert(
                "emails".into(),
                json!([{"value": e, "primary": true, "type": "work"}]),
            );
        }
        if s.kind == SubjectKind::ServicePrincipal {
            doc.insert(
                ENTERPRISE_SCHEMA.into(),
                json!({"employeeType": "ServicePrincipal"}),
            );
        }
    }
    doc
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5), resolved.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    /// Whether `attributes` was given: then only those (plus `id` and `schemas`).
    pub restricted: bool,
    /// The attributes asked for.
    pub attributes: Vec<schema::PathTarget>,
    /// Not these.
    pub excluded: Vec<schema::PathTarget>,
}

impl Projection {
    /// Parses comma-separated attribute lists for `rt` (or every type). Unknown names are
    /// ignored, as the RFC allows.
    pub fn parse(rt: Option<ResourceType>, attributes: &[String], excluded: &[String]) -> Self {
        let resolve = |list: &[String]| -> Vec<PathTarget> {
            list.iter()
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .filter_map(|p| match rt {
                    Some(t) => schema::resolve(t, p).ok(),
                    None => ResourceType::ALL
                        .into_iter()
                        .find_map(|t| schema::resolve(t, p).ok()),
                })
                .collect()
        };
        let restricted = attributes
            .iter()
            .flat_map(|s| s.split(','))
            .any(|s| !s.trim().is_empty());
        Self {
            restricted,
            attributes: resolve(attributes),
            excluded: resolve(excluded),
        }
    }

    /// Whether top-level attribute `name` of the core schema is returned.
    pub fn wants(&self, name: &str) -> bool {
        let names = |t: &PathTarget| matches!(t, PathTarget::Attr(r) if r.extension.is_none() && r.attr.name == name);
        let whole = |t: &PathTarget| matches!(t, PathTarget::Attr(r) if r.extension.is_none() && r.attr.name == name && r.sub.is_none());
        if self.excluded.iter().any(whole) {
            return false;
        }
        !self.restricted || self.attributes.iter().any(names)
    }

    /// Applies it to a rendered resource.
    pub fn apply(&self, doc: &mut Map<String, Value>) {
        if self.restricted {
            let mut kept = Map::new();
            for k in ["schemas", "id"] {
                if let Some(v) = doc.get(k) {
                    kept.insert(k.into(), v.clone());
                }
            }
            for t in &self.attributes {
                copy_target(doc, &mut kept, t);
            }
            *doc = kept;
        }
        for t in &self.excluded {
            remove_target(doc, t);
        }
    }
}

fn copy_target(from: &Map<String, Value>, to: &mut Map<String, Value>, t: &PathTarget) {
    match t {
        PathTarget::Extension(s) => {
            if let Some(v) = from.get(s.id) {
                to.insert(s.id.into(), v.clone());
            }
        }
        PathTarget::Attr(r) => {
            let src = match r.extension {
                None => Some(from),
                Some(e) => from.get(e.id).and_then(Value::as_object),
            };
            let Some(v) = src.and_then(|c| c.get(r.attr.name)) else {
                return;
            };
            let v = match (r.sub, v) {
                (None, v) => v.clone(),
                (Some(sub), Value::Object(o)) => match o.get(sub.name) {
                    Some(x) => {
                        let mut m = match container_ref(to, r).and_then(|c| c.get(r.attr.name)) {
                            Some(Value::Object(prev)) => prev.clone(),
                            _ => Map::new(),
                        };
                        m.insert(sub.name.into(), x.clone());
                        Value::Object(m)
                    }
                    None => return,
                },
                (Some(sub), Value::Array(items)) => Value::Array(
                    items
                        .iter()
                        .filter_map(|i| i.get(sub.name).map(|x| json!({ sub.name: x })))
                        .collect(),
                ),
                (Some(_), _) => return,
            };
            with_container(to, r.extension, |c| c.insert(r.attr.name.into(), v));
        }
    }
}

fn container_ref<'d>(
    doc: &'d Map<String, Value>,
    r: &schema::Resolved,
) -> Option<&'d Map<String, Value>> {
    match r.extension {
        None => Some(doc),
        Some(e) => doc.get(e.id).and_then(Value::as_object),
    }
}

fn remove_target(doc: &mut Map<String, Value>, t: &PathTarget) {
    match t {
        PathTarget::Extension(s) => {
            doc.remove(s.id);
        }
        PathTarget::Attr(r) => {
            if r.extension.is_none() && r.sub.is_none() && r.attr.name == "id" {
                return;
            }
            let c = match r.extension {
                None => Some(&mut *doc),
                Some(e) => doc.get_mut(e.id).and_then(Value::as_object_mut),
            };
            let Some(c) = c else { return };
            match r.sub {
                None => {
                    c.remove(r.attr.name);
                }
                Some(sub) => match c.get_mut(r.attr.name) {
                    Some(Value::Object(o)) => {
                        o.remove(sub.name);
                    }
                    Some(Value::Array(items)) => {
                        for i in items.iter_mut() {
                            if let Some(o) = i.as_object_mut() {
                                o.remove(sub.name);
                            }
                        }
                    }
                    _ => {}
                },
            }
        }
    }
    tidy(doc);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    }

    #[test]
    fn normalises_names_types_and_extensions() {
        let doc = normalize(
            ResourceType::User,
            &obj(json!({
                "schemas": ["x"],
                "id": "client-chosen",
                "USERNAME": "jdoe",
                "Active": "False",
                "password": "secret",
                "groups": [{"value": "g"}],
                "unknownThing": 1,
                "name": {"GivenName": "Jane", "bogus": 1},
                "emails": {"value": "j@x.org", "type": "work"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "Ops", "manager": "m-1"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": 42,
            })),
        )
        .unwrap();
        assert_eq!(
            Value::Object(doc.clone()),
            json!({
                "userName": "jdoe",
                "active": false,
                "name": {"givenName": "Jane"},
                "emails": [{"value": "j@x.org", "type": "work"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops", "manager": {"value": "m-1"}, "employeeNumber": "42"},
            })
        );
        let (s, members) = to_subject(ResourceType::User, "u1", &doc);
        assert_eq!(s.principal_name.as_deref(), Some("jdoe"));
        assert_eq!(s.display_name, "jdoe");
        assert_eq!(s.email.as_deref(), Some("j@x.org"));
        assert!(!s.active);
        assert_eq!(members, None);
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            json!({"displayName": "no user name"}),
            json!({"userName": "   "}),
            json!({"userName": "x", "active": "maybe"}),
            json!({"userName": "x", "name": [1]}),
            json!({"userName": "x", "emails": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}),
        ] {
            let e = normalize(ResourceType::User, &obj(bad.clone())).err();
            assert!(e.is_some(), "{bad}");
        }
        assert!(normalize(ResourceType::Group, &obj(json!({"members": []}))).is_err());
    }

    #[test]
    fn projection_keeps_and_drops() {
        let mut d = obj(
            json!({"schemas": [], "id": "1", "userName": "u", "name": {"givenName": "g", "familyName": "f"}, "emails": [{"value": "e", "type": "work"}]}),
        );
        Projection::parse(
            Some(ResourceType::User),
            &["name.givenName,emails.value".into()],
            &[],
        )
        .apply(&mut d);
        assert_eq!(
            Value::Object(d),
            json!({"schemas": [], "id": "1", "name": {"givenName": "g"}, "emails": [{"value": "e"}]})
        );
        let mut d =
            obj(json!({"schemas": ["s"], "id": "1", "userName": "u", "name": {"givenName": "g"}}));
        let p = Projection::parse(Some(ResourceType::User), &[], &["name".into(), "id".into()]);
        assert!(!p.wants("name"));
        assert!(p.wants("userName"));
        p.apply(&mut d);
        assert_eq!(
            Value::Object(d),
            json!({"schemas": ["s"], "id": "1", "userName": "u"})
        );
        let mut d = obj(json!({"schemas": ["s"], "id": "1", "userName": "u"}));
        let p = Projection::parse(Some(ResourceType::User), &["nothingKnown".into()], &[]);
        assert!(!p.wants("userName"));
        p.apply(&mut d);
        assert_eq!(Value::Object(d), json!({"schemas": ["s"], "id": "1"}));
    }
}
