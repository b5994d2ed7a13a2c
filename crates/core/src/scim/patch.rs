//! SCIM PATCH (RFC 7644 §3.5.2): `add`, `replace` and `remove`, with and without `path`,
//! value filters (`members[value eq "…"]`, `emails[type eq "work"].value`), sub-attributes
//! (`name.givenName`) and extension attributes, applied to a resource's document.
//!
//! What identity providers send beyond the letter of the RFC is accepted: capitalised
//! operations (`"Replace"`), string booleans (`"False"`), `remove` of `members` with a
//! `value` list (Entra ID), read-only attributes such as `id` inside a path-less `replace`
//! value (Okta, ignored), and an `add`/`replace` on `emails[type eq "work"].value` when no
//! work email exists yet (creates it).

use super::filter::{self, Cond};
use super::resource::{self, value_for, with_container};
use super::schema::{self, Attribute, Mutability, PATCH_OP, PathTarget, ResourceType};
use crate::error::{DomainError, Result, ScimType};
use serde_json::{Map, Value};

fn err(kind: ScimType, msg: impl Into<String>) -> DomainError {
    DomainError::scim(kind, msg)
}

/// One PATCH operation's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `remove`.
    Remove,
}

/// One operation of a PatchOp request.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The verb.
    pub op: OpKind,
    /// The target, if any.
    pub path: Option<String>,
    /// The value, if any.
    pub value: Option<Value>,
}

fn get_ci<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Parses a PatchOp request body.
pub fn parse(body: &Map<String, Value>) -> Result<Vec<Operation>> {
    let syntax = |m: &str| err(ScimType::InvalidSyntax, m);
    if let Some(s) = get_ci(body, "schemas") {
        let ok = s.as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(PATCH_OP)))
        });
        if !ok {
            return Err(syntax(&format!("`schemas` must contain `{PATCH_OP}`")));
        }
    }
    let ops = get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| syntax("`Operations` must be a list of operations"))?;
    if ops.is_empty() {
        return Err(syntax("`Operations` is empty"));
    }
    if ops.len() > 1000 {
        return Err(err(
            ScimType::TooMany,
            "at most 1000 operations per request",
        ));
    }
    ops.iter()
        .map(|o| {
            let o = o
                .as_object()
                .ok_or_else(|| syntax("each operation must be an object"))?;
            let op = match get_ci(o, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("add") => OpKind::Add,
                Some("replace") => OpKind::Replace,
                Some("remove") => OpKind::Remove,
                _ => return Err(syntax("`op` must be `add`, `replace` or `remove`")),
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(p.trim().to_string()),
                Some(_) => return Err(err(ScimType::InvalidPath, "`path` must be a string")),
            };
            let value = get_ci(o, "value").filter(|v| !v.is_null()).cloned();
            if op != OpKind::Remove && value.is_none() {
                return Err(err(
                    ScimType::InvalidValue,
                    "`add` and `replace` need a `value`",
                ));
            }
            Ok(Operation { op, path, value })
        })
        .collect()
}

/// What a PATCH path names.
enum Target {
    /// An attribute or a sub-attribute.
    Attr(schema::Resolved),
    /// Values of a multi-valued attribute matching a filter, or a sub-attribute of them.
    Filtered(schema::Resolved, Cond, Option<&'static Attribute>),
    /// A whole extension.
    Extension(&'static schema::Schema),
}

fn target(rt: ResourceType, path: &str) -> Result<Target> {
    let bad = |why: String| err(ScimType::InvalidPath, why);
    let Some(open) = path.find('[') else {
        return match schema::resolve(rt, path).map_err(bad)? {
            PathTarget::Attr(r) => Ok(Target::Attr(r)),
            PathTarget::Extension(s) => Ok(Target::Extension(s)),
        };
    };
    let close = path
        .rfind(']')
        .filter(|c| *c > open)
        .ok_or_else(|| bad(format!("`{path}`: `[` is not closed")))?;
    let head = &path[..open];
    let inner = &path[open + 1..close];
    let tail = &path[close + 1..];
    let r = schema::resolve_attr(rt, head).map_err(bad)?;
    if r.sub.is_some() || !r.attr.multi {
        return Err(bad(format!(
            "`{head}` is not multi-valued: it takes no filter"
        )));
    }
    let f = filter::parse(inner).map_err(|e| bad(format!("`{path}`: {}", e.message)))?;
    let cond = filter::resolve_value_filter(&f, r.attr)
        .map_err(|e| bad(format!("`{path}`: {}", e.message)))?;
    let sub = match tail {
        "" => None,
        t => {
            let name = t
                .strip_prefix('.')
                .ok_or_else(|| bad(format!("`{path}`: expected `.subAttribute` after `]`")))?;
            Some(
                schema::sub_attribute(r.attr, name)
                    .ok_or_else(|| bad(format!("`{name}` is not a sub-attribute of `{head}`")))?,
            )
        }
    };
    Ok(Target::Filtered(r, cond, sub))
}

/// Applies `ops` to `doc`, a resource's normalised document (for a group, with `members`
/// listing `{"value": id}`), in order. Fails as a whole: the caller keeps the original.
pub fn apply(rt: ResourceType, doc: &mut Map<String, Value>, ops: &[Operation]) -> Result<()> {
    for o in ops {
        match (&o.path, o.op) {
            (None, OpKind::Remove) => {
                return Err(err(ScimType::NoTarget, "`remove` needs a `path`"));
            }
            (None, op) => {
                let Some(Value::Object(values)) = &o.value else {
                    return Err(err(
                        ScimType::InvalidValue,
                        "without a `path`, `value` must be an object of attributes",
                    ));
                };
                for (k, v) in values {
                    if k.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    // Unknown and read-only attributes in a path-less value are ignored
                    // (Okta sends the group's `id` with a rename).
                    let Ok(t) = target(rt, k) else { continue };
                    if let Target::Attr(r) = &t
                        && (r.is_common() && r.attr.name != "externalId"
                            || r.attr.mutability == Mutability::ReadOnly
                            || r.leaf().mutability == Mutability::ReadOnly)
                    {
                        continue;
                    }
                    apply_one(rt, doc, op, t, Some(v), k)?;
                }
            }
            (Some(p), op) => {
                let t = target(rt, p)?;
                if let Target::Attr(r) | Target::Filtered(r, _, _) = &t {
                    let leaf = match &t {
                        Target::Filtered(_, _, Some(s)) => s,
                        _ => r.leaf(),
                    };
                    if (r.is_common() && r.attr.name != "externalId")
                        || r.attr.mutability == Mutability::ReadOnly
                        || leaf.mutability == Mutability::ReadOnly
                    {
                        return Err(err(ScimType::Mutability, format!("`{p}` is read-only")));
                    }
                }
                apply_one(rt, doc, op, t, o.value.as_ref(), p)?;
            }
        }
        resource::tidy(doc);
    }
    resource::check_required(rt, doc)
}

fn apply_one(
    rt: ResourceType,
    doc: &mut Map<String, Value>,
    op: OpKind,
    t: Target,
    value: Option<&Value>,
    path: &str,
) -> Result<()> {
    match t {
        Target::Extension(s) => match op {
            OpKind::Remove => {
                doc.remove(s.id);
                Ok(())
            }
            _ => {
                let Some(Value::Object(values)) = value else {
                    return Err(err(
                        ScimType::InvalidValue,
                        format!("`{path}` takes an object"),
                    ));
                };
                for (k, v) in values {
                    let Ok(t) = target(rt, &format!("{}:{k}", s.id)) else {
                        continue;
                    };
                    apply_one(rt, doc, op, t, Some(v), k)?;
                }
                Ok(())
            }
        },
        Target::Attr(r) => attr_op(doc, op, &r, value, path),
        Target::Filtered(r, cond, sub) => filtered_op(doc, op, &r, &cond, sub, value, path),
    }
}

fn normalized(a: &'static Attribute, v: Option<&Value>, path: &str) -> Result<Option<Value>> {
    match v {
        None => Ok(None),
        Some(v) => value_for(a, v, path),
    }
}

/// Whether two values of a multi-valued attribute are "the same value": members and other
/// values with a `value` compare by it, the rest as a whole.
fn same_item(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Makes `keep` the only primary value when it is primary.
fn one_primary(items: &mut [Value], keep: usize) {
    if items.get(keep).and_then(|v| v.get("primary")) != Some(&Value::Bool(true)) {
        return;
    }
    for (i, item) in items.iter_mut().enumerate() {
        if i != keep
            && let Some(o) = item.as_object_mut()
            && o.get("primary") == Some(&Value::Bool(true))
        {
            o.insert("primary".into(), Value::Bool(false));
        }
    }
}

fn merge(into: &mut Value, from: Value) {
    match (into.as_object_mut(), from) {
        (Some(o), Value::Object(f)) => {
            for (k, v) in f {
                o.insert(k, v);
            }
        }
        (_, f) => *into = f,
    }
}

fn attr_op(
    doc: &mut Map<String, Value>,
    op: OpKind,
    r: &schema::Resolved,
    value: Option<&Value>,
    path: &str,
) -> Result<()> {
    let attr = r.attr;
    with_container(doc, r.extension, |c| -> Result<()> {
        match (r.sub, attr.multi) {
            // A whole multi-valued attribute.
            (None, true) => {
                let new = normalized(attr, value, path)?;
                let items = match new {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                match op {
                    OpKind::Replace => {
                        if items.is_empty() {
                            c.remove(attr.name);
                        } else {
                            c.insert(attr.name.into(), Value::Array(items));
                        }
                    }
                    OpKind::Add => {
                        let mut list = match c.remove(attr.name) {
                            Some(Value::Array(l)) => l,
                            _ => Vec::new(),
                        };
                        for item in items {
                            match list.iter().position(|x| same_item(x, &item)) {
                                Some(i) => {
                                    if let Some(slot) = list.get_mut(i) {
                                        merge(slot, item);
                                    }
                                    one_primary(&mut list, i);
                                }
                                None => {
                                    list.push(item);
                                    let last = list.len() - 1;
                                    one_primary(&mut list, last);
                                }
                            }
                        }
                        c.insert(attr.name.into(), Value::Array(list));
                    }
                    OpKind::Remove => {
                        if items.is_empty() {
                            c.remove(attr.name);
                        } else if let Some(Value::Array(list)) = c.get_mut(attr.name) {
                            // Entra ID removes members by listing them in `value`.
                            list.retain(|x| !items.iter().any(|i| same_item(x, i)));
                        }
                    }
                }
            }
            // A sub-attribute of every value of a multi-valued attribute.
            (Some(sub), true) => {
                let v = normalized(sub, value, path)?;
                let list = c
                    .entry(attr.name.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list {
                    if items.is_empty() && op != OpKind::Remove {
                        if let Some(v) = v.clone() {
                            let mut m = Map::new();
                            m.insert(sub.name.into(), v);
                            items.push(Value::Object(m));
                        }
                    } else {
                        for item in items.iter_mut() {
                            if let Some(o) = item.as_object_mut() {
                                match (&v, op) {
                                    (Some(v), OpKind::Add | OpKind::Replace) => {
                                        o.insert(sub.name.into(), v.clone());
                                    }
                                    _ => {
                                        o.remove(sub.name);
                                    }
                                }
                            }
                        }
                        items.retain(|i| i.as_object().is_none_or(|o| !o.is_empty()));
                    }
                }
            }
            // A single-valued attribute.
            (None, false) => {
                let v = if op == OpKind::Remove {
                    None
                } else {
                    normalized(attr, value, path)?
                };
                match (v, op) {
                    (None, _) => {
                        c.remove(attr.name);
                    }
                    (Some(v), _) if attr.ty == schema::AttrType::Complex => {
                        // Sub-attributes not given are left as they are (RFC 7644 §3.5.2.1, .3).
                        let slot = c
                            .entry(attr.name.to_string())
                            .or_insert_with(|| Value::Object(Map::new()));
                        merge(slot, v);
                    }
                    (Some(v), _) => {
                        c.insert(attr.name.into(), v);
                    }
                }
            }
            // A sub-attribute of a single complex attribute (`name.givenName`).
            (Some(sub), false) => {
                let v = if op == OpKind::Remove {
                    None
                } else {
                    normalized(sub, value, path)?
                };
                let slot = c
                    .entry(attr.name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Some(o) = slot.as_object_mut() {
                    match v {
                        Some(v) => o.insert(sub.name.into(), v),
                        None => o.remove(sub.name),
                    };
                }
            }
        }
        Ok(())
    })
}

fn filtered_op(
    doc: &mut Map<String, Value>,
    op: OpKind,
    r: &schema::Resolved,
    cond: &Cond,
    sub: Option<&'static Attribute>,
    value: Option<&Value>,
    path: &str,
) -> Result<()> {
    let attr = r.attr;
    // The new value: of the sub-attribute, or one value of the attribute.
    let new = match (op, sub) {
        (OpKind::Remove, _) => None,
        (_, Some(s)) => normalized(s, value, path)?,
        (_, None) => {
            let v = value.map(|v| match v {
                Value::Array(a) if a.len() == 1 => a.first().cloned().unwrap_or(Value::Null),
                other => other.clone(),
            });
            match v {
                None => None,
                Some(v) => match value_for(attr, &Value::Array(vec![v]), path)? {
                    Some(Value::Array(mut a)) if a.len() == 1 => a.pop(),
                    _ => None,
                },
            }
        }
    };
    with_container(doc, r.extension, |c| -> Result<()> {
        let mut items = match c.remove(attr.name) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let hits: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, i)| filter::matches_elem(cond, i))
            .map(|(n, _)| n)
            .collect();
        let result = (|| -> Result<()> {
            if hits.is_empty() {
                if op == OpKind::Remove {
                    return Ok(());
                }
                // Entra ID adds `emails[type eq "work"].value` to a user without one.
                let implied = filter::implied_values(cond)
                    .ok_or_else(|| err(ScimType::NoTarget, format!("`{path}` matches no value")))?;
                let mut m = Map::new();
                for (k, v) in implied {
                    m.insert(k.into(), v);
                }
                let mut item = Value::Object(m);
                match (sub, new.clone()) {
                    (Some(s), Some(v)) => {
                        if let Some(o) = item.as_object_mut() {
                            o.insert(s.name.into(), v);
                        }
                    }
                    (None, Some(v)) => merge(&mut item, v),
                    (_, None) => {}
                }
                items.push(item);
                let last = items.len() - 1;
                one_primary(&mut items, last);
                return Ok(());
            }
            match (op, sub) {
                (OpKind::Remove, None) => {
                    let mut n = 0;
                    items.retain(|_| {
                        let keep = !hits.contains(&n);
                        n += 1;
                        keep
                    });
                }
                (OpKind::Remove, Some(s)) => {
                    for i in &hits {
                        if let Some(o) = items.get_mut(*i).and_then(Value::as_object_mut) {
                            o.remove(s.name);
                        }
                    }
                    items.retain(|i| i.as_object().is_none_or(|o| !o.is_empty()));
                }
                (_, Some(s)) => {
                    for i in &hits {
                        if let Some(o) = items.get_mut(*i).and_then(Value::as_object_mut) {
                            match &new {
                                Some(v) => o.insert(s.name.into(), v.clone()),
                                None => o.remove(s.name),
                            };
                        }
                        one_primary(&mut items, *i);
                    }
                }
                (OpKind::Add, None) => {
                    for i in &hits {
                        if let (Some(slot), Some(v)) = (items.get_mut(*i), new.clone()) {
                            merge(slot, v);
                        }
                        one_primary(&mut items, *i);
                    }
                }
                (OpKind::Replace, None) => {
                    for i in &hits {
                        if let (Some(slot), Some(v)) = (items.get_mut(*i), new.clone()) {
                            *slot = v;
                        }
                        one_primary(&mut items, *i);
                    }
                }
            }
            Ok(())
        })();
        if !items.is_empty() {
            c.insert(attr.name.into(), Value::Array(items));
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    }

    fn run(rt: ResourceType, doc: Value, ops: Value) -> Result<Value> {
        let mut d = obj(doc);
        let ops = parse(&obj(json!({"schemas": [PATCH_OP], "Operations": ops})))?;
        apply(rt, &mut d, &ops)?;
        Ok(Value::Object(d))
    }

    fn user() -> Value {
        json!({"userName": "u", "active": true, "emails": [{"value": "a@x", "type": "work", "primary": true}]})
    }

    #[test]
    fn entra_user_operations() {
        let d = run(
            ResourceType::User,
            user(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .unwrap();
        assert_eq!(d["active"], false);
        let d = run(
            ResourceType::User,
            user(),
            json!([
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "b@x"},
                {"op": "Add", "path": "emails[type eq \"home\"].value", "value": "h@x"},
                {"op": "Replace", "path": "name.givenName", "value": "Jane"},
                {"op": "Add", "path": "name.familyName", "value": "Doe"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "m-1"},
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"},
                {"op": "Replace", "value": {"displayName": "Jane Doe", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "7"}},
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({
                "userName": "u", "active": true, "displayName": "Jane Doe",
                "emails": [{"value": "b@x", "type": "work", "primary": true}, {"value": "h@x", "type": "home"}],
                "name": {"givenName": "Jane", "familyName": "Doe"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m-1"}, "department": "Ops", "employeeNumber": "7"},
            })
        );
        let d = run(ResourceType::User, d, json!([
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "remove", "path": "name.givenName"},
            {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"},
        ])).unwrap();
        assert_eq!(
            d["emails"],
            json!([{"value": "b@x", "type": "work", "primary": true}])
        );
        assert_eq!(d["name"], json!({"familyName": "Doe"}));
        assert!(
            d.get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
                .is_none()
        );
    }

    #[test]
    fn okta_operations() {
        let d = run(
            ResourceType::User,
            user(),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .unwrap();
        assert_eq!(d["active"], false);
        let g = json!({"displayName": "G", "members": [{"value": "a"}, {"value": "b"}]});
        let d = run(ResourceType::Group, g.clone(), json!([
            {"op": "replace", "value": {"id": "ignored", "displayName": "G2"}},
            {"op": "remove", "path": "members[value eq \"a\"]"},
            {"op": "add", "path": "members", "value": [{"value": "c", "display": "C"}, {"value": "b"}]},
        ])).unwrap();
        assert_eq!(
            d,
            json!({"displayName": "G2", "members": [{"value": "b"}, {"value": "c"}]})
        );
        // Entra ID removes members by value.
        let d = run(
            ResourceType::Group,
            g,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "b"}]}]),
        )
        .unwrap();
        assert_eq!(d["members"], json!([{"value": "a"}]));
        let d = run(
            ResourceType::Group,
            d,
            json!([{"op": "Replace", "path": "members", "value": []}]),
        )
        .unwrap();
        assert!(d.get("members").is_none());
    }

    #[test]
    fn primary_moves_and_errors() {
        let d = run(
            ResourceType::User,
            user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "n@x", "primary": true}]}]),
        )
        .unwrap();
        assert_eq!(
            d["emails"],
            json!([{"value": "a@x", "type": "work", "primary": false}, {"value": "n@x", "primary": true}])
        );
        for (ops, kind) in [
            (json!([{"op": "remove"}]), ScimType::NoTarget),
            (
                json!([{"op": "remove", "path": "userName"}]),
                ScimType::InvalidValue,
            ),
            (
                json!([{"op": "replace", "path": "id", "value": "x"}]),
                ScimType::Mutability,
            ),
            (
                json!([{"op": "replace", "path": "groups", "value": []}]),
                ScimType::Mutability,
            ),
            (
                json!([{"op": "replace", "path": "nope", "value": 1}]),
                ScimType::InvalidPath,
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq]", "value": 1}]),
                ScimType::InvalidPath,
            ),
            (
                json!([{"op": "replace", "path": "emails[display pr].value", "value": "x"}]),
                ScimType::NoTarget,
            ),
            (
                json!([{"op": "replace", "path": "active", "value": "perhaps"}]),
                ScimType::InvalidValue,
            ),
            (
                json!([{"op": "move", "path": "active"}]),
                ScimType::InvalidSyntax,
            ),
            (
                json!([{"op": "add", "path": "active"}]),
                ScimType::InvalidValue,
            ),
        ] {
            let e = run(ResourceType::User, user(), ops.clone())
                .err()
                .unwrap_or_else(|| panic!("{ops}"));
            assert_eq!(
                e.code,
                crate::error::ErrorCode::Scim(kind),
                "{ops}: {}",
                e.message
            );
        }
        let e = parse(&obj(json!({"schemas": ["nope"], "Operations": []})))
            .err()
            .unwrap();
        assert_eq!(
            e.code,
            crate::error::ErrorCode::Scim(ScimType::InvalidSyntax)
        );
    }
}
