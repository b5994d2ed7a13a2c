//! The SCIM 2.0 service provider (RFC 7643/7644, decisions.md §3): Users (with service
//! principals) and Groups over the directory of [`crate::directory`]. Each operation here
//! runs inside one transaction and goes through the directory's create/update/delete
//! flows, so disabling a user or removing a member ends activations exactly as any other
//! directory change does.
//!
//! A subject's SCIM document (every attribute the client sent that the schema knows, in
//! canonical form) is stored beside its directory columns; the columns (`userName`,
//! `displayName`, `externalId`, `active`, primary email) are derived from it. Group
//! members live in the membership table. `meta.version` counts changes (`W/"n"`).

pub mod filter;
pub mod patch;
pub mod record;
pub mod resource;
pub mod schema;

use crate::access::{AccessChange, OpContext};
use crate::directory::{self, Subject, SubjectKind};
use crate::error::{DomainError, ErrorCode, Result, ScimType};
use crate::store::{ReadTx, Tx};
use filter::{Column, Cond, Field, Op, Operand};
use jiff::Timestamp;
pub use record::{ScimRecord, Sort, SubjectQuery};
use resource::Projection;
use schema::{AttrType, ResourceType};
use serde_json::{Map, Value, json};

/// `W/"n"`, the ETag of version `n`.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Checks an `If-Match` header against the current version: `*`, or one of the listed
/// (weak or strong) tags, else `412`.
pub fn check_if_match(header: Option<&str>, version: u64) -> Result<()> {
    let Some(h) = header else { return Ok(()) };
    let want = version.to_string();
    let ok = h.split(',').map(str::trim).any(|t| {
        t == "*" || {
            let t = t.strip_prefix("W/").unwrap_or(t);
            t.trim_matches('"') == want
        }
    });
    if ok {
        Ok(())
    } else {
        Err(DomainError::new(
            ErrorCode::PreconditionFailed,
            format!(
                "If-Match `{h}` does not match the resource's version {}",
                etag(version)
            ),
        ))
    }
}

/// Whether an `If-None-Match` header names version `version` (a `GET` then answers `304`).
pub fn if_none_match(header: Option<&str>, version: u64) -> bool {
    header.is_some_and(|h| check_if_match(Some(h), version).is_ok())
}

/// The parameters of a list or `/.search`.
#[derive(Debug, Clone)]
pub struct ListParams {
    /// `filter`.
    pub filter: Option<String>,
    /// `startIndex` (1-based; below 1 counts as 1).
    pub start_index: u64,
    /// `count` (negative counts as 0; capped at [`schema::MAX_RESULTS`]).
    pub count: u32,
    /// `sortBy`.
    pub sort_by: Option<String>,
    /// `sortOrder` is `descending`.
    pub descending: bool,
    /// `attributes`.
    pub attributes: Vec<String>,
    /// `excludedAttributes`.
    pub excluded: Vec<String>,
}

/// Page size when `count` is not given.
pub const DEFAULT_COUNT: u32 = 100;

impl Default for ListParams {
    fn default() -> Self {
        Self {
            filter: None,
            start_index: 1,
            count: DEFAULT_COUNT,
            sort_by: None,
            descending: false,
            attributes: Vec::new(),
            excluded: Vec::new(),
        }
    }
}

fn bad_value(msg: impl Into<String>) -> DomainError {
    DomainError::scim(ScimType::InvalidValue, msg)
}

fn sort_order(s: &str) -> Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "ascending" => Ok(false),
        "descending" => Ok(true),
        _ => Err(bad_value("`sortOrder` must be `ascending` or `descending`")),
    }
}

impl ListParams {
    /// From query parameters (names case-insensitive; values already decoded).
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self> {
        let mut p = Self::default();
        for (k, v) in pairs {
            match k.to_ascii_lowercase().as_str() {
                "filter" => p.filter = Some(v.clone()),
                "startindex" => p.set_start(
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| bad_value("`startIndex` must be an integer"))?,
                ),
                "count" => p.set_count(
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| bad_value("`count` must be an integer"))?,
                ),
                "sortby" => p.sort_by = Some(v.clone()).filter(|s| !s.trim().is_empty()),
                "sortorder" => p.descending = sort_order(v)?,
                "attributes" => p.attributes.push(v.clone()),
                "excludedattributes" => p.excluded.push(v.clone()),
                _ => {}
            }
        }
        Ok(p)
    }

    /// From a `/.search` body (RFC 7644 §3.4.3).
    pub fn from_search(body: &Map<String, Value>) -> Result<Self> {
        let mut p = Self::default();
        let strings = |v: &Value, name: &str| -> Result<Vec<String>> {
            match v {
                Value::String(s) => Ok(vec![s.clone()]),
                Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad_value(format!("`{name}` must list strings")))
                    })
                    .collect(),
                Value::Null => Ok(Vec::new()),
                _ => Err(bad_value(format!("`{name}` must list strings"))),
            }
        };
        for (k, v) in body {
            match k.to_ascii_lowercase().as_str() {
                "filter" => {
                    p.filter = match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Null => None,
                        _ => return Err(bad_value("`filter` must be a string")),
                    }
                }
                "startindex" => p.set_start(
                    v.as_i64()
                        .ok_or_else(|| bad_value("`startIndex` must be an integer"))?,
                ),
                "count" => p.set_count(
                    v.as_i64()
                        .ok_or_else(|| bad_value("`count` must be an integer"))?,
                ),
                "sortby" => p.sort_by = v.as_str().map(str::to_string),
                "sortorder" => {
                    if let Some(s) = v.as_str() {
                        p.descending = sort_order(s)?;
                    }
                }
                "attributes" => p.attributes = strings(v, "attributes")?,
                "excludedattributes" => p.excluded = strings(v, "excludedAttributes")?,
                _ => {}
            }
        }
        Ok(p)
    }

    fn set_start(&mut self, n: i64) {
        self.start_index = u64::try_from(n.max(1)).unwrap_or(1);
    }

    fn set_count(&mut self, n: i64) {
        self.count = u32::try_from(n.clamp(0, i64::from(schema::MAX_RESULTS))).unwrap_or(0);
    }

    /// The `attributes` / `excludedAttributes` projection for `rt`.
    pub fn projection(&self, rt: Option<ResourceType>) -> Projection {
        Projection::parse(rt, &self.attributes, &self.excluded)
    }
}

/// A resource as returned: its body, version and URI.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The rendered resource.
    pub body: Value,
    /// Its version (for the `ETag` header).
    pub version: u64,
    /// Its `meta.location`.
    pub location: String,
}

fn not_found(rt: ResourceType, id: &str) -> DomainError {
    DomainError::new(
        ErrorCode::NotFound,
        format!("{} `{id}` does not exist", rt.name()),
    )
}

/// Directory errors as SCIM errors: plain `400`s become `invalidValue`.
fn scimify(e: DomainError) -> DomainError {
    if e.code == ErrorCode::BadRequest {
        DomainError::scim(ScimType::InvalidValue, e.message)
    } else {
        e
    }
}

fn record_of(tx: &mut dyn ReadTx, s: &Subject) -> Result<ScimRecord> {
    Ok(tx.subject_scim(&s.id)?.unwrap_or_else(|| ScimRecord {
        attributes: resource::synthesize(s),
        created: None,
        last_modified: None,
        version: 1,
    }))
}

/// The subject with SCIM id `id` served as `rt` (never by `externalId`), with its record.
fn load(tx: &mut dyn ReadTx, rt: ResourceType, id: &str) -> Result<(Subject, ScimRecord)> {
    let s = tx
        .subject(id)?
        .filter(|s| s.id == id && resource::resource_type_of(s.kind) == rt)
        .ok_or_else(|| not_found(rt, id))?;
    let rec = record_of(tx, &s)?;
    Ok((s, rec))
}

fn location(base: &str, rt: ResourceType, id: &str) -> String {
    format!("{base}/{}/{id}", rt.endpoint())
}

/// Renders a subject as its SCIM resource.
pub fn render(
    tx: &mut dyn ReadTx,
    s: &Subject,
    rec: &ScimRecord,
    base: &str,
    proj: &Projection,
) -> Result<Value> {
    let rt = resource::resource_type_of(s.kind);
    let mut doc = rec.attributes.clone();
    doc.remove("members");
    doc.remove("groups");
    doc.remove("password");
    let mut schemas = vec![json!(rt.schema().id)];
    for e in rt.extensions() {
        if doc.contains_key(e.id) {
            schemas.push(json!(e.id));
        }
    }
    doc.insert("schemas".into(), Value::Array(schemas));
    doc.insert("id".into(), json!(s.id));
    match &s.external_id {
        Some(e) => doc.insert("externalId".into(), json!(e)),
        None => doc.remove("externalId"),
    };
    match rt {
        ResourceType::Group if proj.wants("members") => {
            let mut members = Vec::new();
            for m in tx.group_members(&s.id)? {
                let Some(ms) = tx.subject(&m)? else { continue };
                let mrt = resource::resource_type_of(ms.kind);
                members.push(json!({
                    "value": ms.id,
                    "$ref": location(base, mrt, &ms.id),
                    "type": mrt.name(),
                }));
            }
            if !members.is_empty() {
                doc.insert("members".into(), Value::Array(members));
            }
        }
        ResourceType::User if proj.wants("groups") => {
            let direct = tx.groups_of(&s.id)?;
            let all = directory::group_closure(&s.id, |g| tx.groups_of(g))?;
            let mut groups = Vec::new();
            for g in all {
                let Some(gs) = tx.subject(&g)? else { continue };
                groups.push(json!({
                    "value": gs.id,
                    "$ref": location(base, ResourceType::Group, &gs.id),
                    "display": gs.display_name,
                    "type": if direct.contains(&g) { "direct" } else { "indirect" },
                }));
            }
            if !groups.is_empty() {
                doc.insert("groups".into(), Value::Array(groups));
            }
        }
        _ => {}
    }
    let mut meta = Map::new();
    meta.insert("resourceType".into(), json!(rt.name()));
    if let Some(c) = rec.created {
        meta.insert("created".into(), json!(c.to_string()));
    }
    if let Some(m) = rec.last_modified.or(rec.created) {
        meta.insert("lastModified".into(), json!(m.to_string()));
    }
    meta.insert("location".into(), json!(location(base, rt, &s.id)));
    meta.insert("version".into(), json!(etag(rec.version)));
    doc.insert("meta".into(), Value::Object(meta));
    proj.apply(&mut doc);
    Ok(Value::Object(doc))
}

fn shown(
    tx: &mut dyn ReadTx,
    s: &Subject,
    rec: &ScimRecord,
    base: &str,
    proj: &Projection,
) -> Result<Shown> {
    let rt = resource::resource_type_of(s.kind);
    Ok(Shown {
        body: render(tx, s, rec, base, proj)?,
        version: rec.version,
        location: location(base, rt, &s.id),
    })
}

/// `GET /{Users|Groups}/{id}`.
pub fn get(
    tx: &mut dyn ReadTx,
    rt: ResourceType,
    id: &str,
    base: &str,
    proj: &Projection,
) -> Result<Shown> {
    let (s, rec) = load(tx, rt, id)?;
    shown(tx, &s, &rec, base, proj)
}

fn kinds(rt: Option<ResourceType>) -> Vec<SubjectKind> {
    match rt {
        Some(ResourceType::User) => vec![SubjectKind::User, SubjectKind::ServicePrincipal],
        Some(ResourceType::Group) => vec![SubjectKind::Group],
        None => vec![
            SubjectKind::User,
            SubjectKind::ServicePrincipal,
            SubjectKind::Group,
        ],
    }
}

fn sort_of(rt: Option<ResourceType>, by: &str, descending: bool) -> Result<Sort> {
    let bad = |why: String| bad_value(format!("`sortBy`: {why}"));
    let t = rt.unwrap_or(ResourceType::User);
    let r = schema::resolve_attr(t, by).map_err(bad)?;
    let leaf = r.leaf();
    if r.attr.multi || leaf.ty == AttrType::Complex {
        return Err(bad(format!(
            "`{by}` is not a single value; sort by a simple attribute"
        )));
    }
    let field = match (r.extension.is_some(), r.attr.name, r.sub.map(|s| s.name)) {
        (false, "id", None) => Field::Column(Column::Id),
        (false, "externalId", None) => Field::Column(Column::ExternalId),
        (false, "userName", None) => Field::Column(Column::UserName),
        (false, "displayName", None) => Field::Column(Column::DisplayName),
        (false, "active", None) => Field::Column(Column::Active),
        (false, "meta", Some("created")) => Field::Column(Column::Created),
        (false, "meta", Some("lastModified")) => Field::Column(Column::LastModified),
        (false, "meta", _) => return Err(bad(format!("`{by}` cannot be sorted on"))),
        _ => {
            let mut p = Vec::new();
            if let Some(e) = r.extension {
                p.push(e.id);
            }
            p.push(r.attr.name);
            if let Some(s) = r.sub {
                p.push(s.name);
            }
            Field::Doc(p)
        }
    };
    Ok(Sort {
        field,
        case_exact: leaf.case_exact,
        descending,
    })
}

/// `GET /{Users|Groups}` and `POST …/.search`; `rt` `None` is `POST /.search` over both.
pub fn list(
    tx: &mut dyn ReadTx,
    rt: Option<ResourceType>,
    p: &ListParams,
    base: &str,
) -> Result<Value> {
    let filter = match &p.filter {
        Some(f) if !f.trim().is_empty() => Some(filter::resolve(&filter::parse(f)?, rt)?),
        _ => None,
    };
    let sort = p
        .sort_by
        .as_deref()
        .map(|by| sort_of(rt, by, p.descending))
        .transpose()?;
    let page = tx.list_subjects(&SubjectQuery {
        kinds: kinds(rt),
        filter,
        sort,
        skip: p.start_index.saturating_sub(1),
        top: p.count,
    })?;
    let proj = p.projection(rt);
    let mut items = Vec::new();
    for (s, rec) in &page.items {
        items.push(render(tx, s, rec, base, &proj)?);
    }
    Ok(json!({
        "schemas": [schema::LIST_RESPONSE],
        "totalResults": page.total.unwrap_or(items.len() as u64),
        "startIndex": p.start_index,
        "itemsPerPage": items.len(),
        "Resources": items,
    }))
}

/// Users whose `userName` is `name` (case-insensitive, as SCIM compares it), at most `top`.
pub fn users_named(tx: &mut dyn ReadTx, name: &str, top: u32) -> Result<Vec<Subject>> {
    let page = tx.list_subjects(&SubjectQuery {
        kinds: kinds(Some(ResourceType::User)),
        filter: Some(Cond::Test {
            field: Field::Column(Column::UserName),
            op: Op::Eq,
            value: Operand::Text(name.to_string()),
            case_exact: false,
        }),
        sort: None,
        skip: 0,
        top,
    })?;
    Ok(page.items.into_iter().map(|(s, _)| s).collect())
}

/// Users, groups and service principals whose display name, `userName` or e-mail contains
/// `text` (case-insensitive), at most `top`: the portal's member search.
pub fn find_subjects(tx: &mut dyn ReadTx, text: &str, top: u32) -> Result<Vec<Subject>> {
    let t = text.trim().replace('\\', "\\\\").replace('"', "\\\"");
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let users = format!(r#"displayName co "{t}" or userName co "{t}" or emails co "{t}""#);
    let groups = format!(r#"displayName co "{t}""#);
    let mut out = Vec::new();
    for (rt, f) in [(ResourceType::User, users), (ResourceType::Group, groups)] {
        let page = tx.list_subjects(&SubjectQuery {
            kinds: kinds(Some(rt)),
            filter: Some(filter::resolve(&filter::parse(&f)?, Some(rt))?),
            sort: None,
            skip: 0,
            top,
        })?;
        out.extend(page.items.into_iter().map(|(s, _)| s));
    }
    out.sort_by(|a, b| {
        a.display_name
            .to_lowercase()
            .cmp(&b.display_name.to_lowercase())
    });
    out.truncate(top as usize);
    Ok(out)
}

/// Refuses a `userName` or `externalId` another subject has: `409 uniqueness`.
fn ensure_unique(tx: &mut dyn ReadTx, s: &Subject) -> Result<()> {
    let taken = |what: &str, v: &str| {
        DomainError::scim(
            ScimType::Uniqueness,
            format!("{what} `{v}` is already in use"),
        )
    };
    if let Some(ext) = &s.external_id
        && tx.subject(ext)?.is_some_and(|o| o.id != s.id)
    {
        return Err(taken("externalId", ext));
    }
    if let Some(name) = &s.principal_name
        && users_named(tx, name, 2)?.iter().any(|o| o.id != s.id)
    {
        return Err(taken("userName", name));
    }
    Ok(())
}

fn stored(mut doc: Map<String, Value>) -> Map<String, Value> {
    doc.remove("members");
    doc
}

/// `POST /{Users|Groups}`: `201` with the new resource.
pub fn create(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    rt: ResourceType,
    body: &Map<String, Value>,
    base: &str,
    proj: &Projection,
) -> Result<(Shown, Vec<AccessChange>)> {
    let doc = resource::normalize(rt, body)?;
    let id = (ctx.new_id)();
    let (subject, members) = resource::to_subject(rt, &id, &doc);
    ensure_unique(tx, &subject)?;
    let (s, changes) =
        crate::operation::directory::create_subject(tx, ctx, subject, members.unwrap_or_default())
            .map_err(scimify)?;
    let rec = ScimRecord {
        attributes: stored(doc),
        created: Some(ctx.now),
        last_modified: Some(ctx.now),
        version: 1,
    };
    tx.set_subject_scim(&s.id, &rec)?;
    Ok((shown(tx, &s, &rec, base, proj)?, changes))
}

/// Stores a changed document through the directory's update flow (which ends activations
/// of a disabled user and of removed members) and bumps the version.
#[allow(clippy::too_many_arguments)]
fn store_update(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    rt: ResourceType,
    id: &str,
    rec: &ScimRecord,
    doc: Map<String, Value>,
    members: Option<Vec<String>>,
    base: &str,
    proj: &Projection,
) -> Result<(Shown, Vec<AccessChange>)> {
    let (subject, _) = resource::to_subject(rt, id, &doc);
    ensure_unique(tx, &subject)?;
    let (s, changes) =
        crate::operation::directory::update_subject(tx, ctx, subject, members).map_err(scimify)?;
    let rec = ScimRecord {
        attributes: stored(doc),
        created: rec.created,
        last_modified: Some(ctx.now),
        version: rec.version + 1,
    };
    tx.set_subject_scim(&s.id, &rec)?;
    Ok((shown(tx, &s, &rec, base, proj)?, changes))
}

/// `PUT /{Users|Groups}/{id}`: replaces every attribute (a group's members too).
#[allow(clippy::too_many_arguments)]
pub fn replace(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    rt: ResourceType,
    id: &str,
    body: &Map<String, Value>,
    if_match: Option<&str>,
    base: &str,
    proj: &Projection,
) -> Result<(Shown, Vec<AccessChange>)> {
    let (s, rec) = load(tx, rt, id)?;
    check_if_match(if_match, rec.version)?;
    let doc = resource::normalize(rt, body)?;
    let (_, members) = resource::to_subject(rt, &s.id, &doc);
    store_update(tx, ctx, rt, &s.id, &rec, doc, members, base, proj)
}

/// `PATCH /{Users|Groups}/{id}` with a PatchOp body.
#[allow(clippy::too_many_arguments)]
pub fn patch(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    rt: ResourceType,
    id: &str,
    body: &Map<String, Value>,
    if_match: Option<&str>,
    base: &str,
    proj: &Projection,
) -> Result<(Shown, Vec<AccessChange>)> {
    let ops = patch::parse(body)?;
    let (s, rec) = load(tx, rt, id)?;
    check_if_match(if_match, rec.version)?;
    let mut doc = stored(rec.attributes.clone());
    let before = if rt == ResourceType::Group {
        let ids = tx.group_members(&s.id)?;
        doc.insert(
            "members".into(),
            Value::Array(ids.iter().map(|m| json!({ "value": m })).collect()),
        );
        ids
    } else {
        Vec::new()
    };
    let original = doc.clone();
    patch::apply(rt, &mut doc, &ops)?;
    if doc == original {
        // Nothing changed (an identity provider repeating itself): no write, no new version.
        return Ok((shown(tx, &s, &rec, base, proj)?, Vec::new()));
    }
    let (_, members) = resource::to_subject(rt, &s.id, &doc);
    let members = members.filter(|m| {
        let mut a = m.clone();
        let mut b = before.clone();
        a.sort();
        b.sort();
        a != b
    });
    store_update(tx, ctx, rt, &s.id, &rec, doc, members, base, proj)
}

/// Bumps the version of a group whose members changed as a side effect.
fn touch(tx: &mut dyn Tx, id: &str, now: Timestamp) -> Result<()> {
    if let Some(s) = tx.subject(id)?
        && s.id == id
    {
        let mut rec = record_of(tx, &s)?;
        rec.version += 1;
        rec.last_modified = Some(now);
        tx.set_subject_scim(id, &rec)?;
    }
    Ok(())
}

/// `DELETE /{Users|Groups}/{id}`: the subject's assignments end, its pending requests are
/// canceled, it leaves its groups (whose versions change).
pub fn delete(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    rt: ResourceType,
    id: &str,
    if_match: Option<&str>,
) -> Result<Vec<AccessChange>> {
    let (s, rec) = load(tx, rt, id)?;
    check_if_match(if_match, rec.version)?;
    let parents = tx.groups_of(&s.id)?;
    let changes = crate::operation::directory::delete_subject(tx, ctx, &s.id).map_err(scimify)?;
    for g in parents {
        touch(tx, &g, ctx.now)?;
    }
    Ok(changes)
}

/// `/Schemas` (all, or the one with URN `id`).
pub fn schemas(id: Option<&str>, base: &str) -> Result<Value> {
    let all = schema::all_schemas();
    match id {
        None => Ok(schema::list_of(
            all.iter().map(|s| schema::schema_json(s, base)).collect(),
        )),
        Some(id) => all
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id))
            .map(|s| schema::schema_json(s, base))
            .ok_or_else(|| DomainError::new(ErrorCode::NotFound, format!("no schema `{id}`"))),
    }
}

/// `/ResourceTypes` (all, or the one named `id`).
pub fn resource_types(id: Option<&str>, base: &str) -> Result<Value> {
    match id {
        None => Ok(schema::list_of(
            ResourceType::ALL
                .iter()
                .map(|t| schema::resource_type_json(*t, base))
                .collect(),
        )),
        Some(id) => ResourceType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(id))
            .map(|t| schema::resource_type_json(t, base))
            .ok_or_else(|| {
                DomainError::new(ErrorCode::NotFound, format!("no resource type `{id}`"))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        assert!(check_if_match(None, 3).is_ok());
        assert!(check_if_match(Some("*"), 3).is_ok());
        assert!(check_if_match(Some("W/\"3\""), 3).is_ok());
        assert!(check_if_match(Some("\"3\""), 3).is_ok());
        assert!(check_if_match(Some("W/\"1\", W/\"3\""), 3).is_ok());
        let e = check_if_match(Some("W/\"2\""), 3).err().unwrap();
        assert_eq!(e.code.status(), 412);
        assert!(if_none_match(Some("W/\"3\""), 3));
        assert!(!if_none_match(None, 3));
    }

    #[test]
    fn list_params() {
        let q = |pairs: &[(&str, &str)]| {
            ListParams::from_query(
                &pairs
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        let p = q(&[("startIndex", "0"), ("count", "-5")]).unwrap();
        assert_eq!((p.start_index, p.count), (1, 0));
        let p = q(&[("startindex", "3"), ("COUNT", "100000")]).unwrap();
        assert_eq!((p.start_index, p.count), (3, schema::MAX_RESULTS));
        assert!(q(&[("count", "ten")]).is_err());
        assert!(q(&[("sortOrder", "sideways")]).is_err());
        assert!(sort_of(Some(ResourceType::User), "emails", false).is_err());
        assert!(sort_of(Some(ResourceType::User), "name.familyName", true).is_ok());
    }
}
