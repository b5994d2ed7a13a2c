//! The AuthZEN search APIs (authzen.md §7): which subjects may do the action on the
//! resource, which resources the subject may do it on, which roles the subject holds there.
//! Each result, asked as an evaluation with the same other members, is permitted; pages are
//! cut from one stable order with tokens bound to the request.

use super::{
    ActionRef, Asker, ResolvedSubject, bad, instant, kind_name, member, object, parse_action,
    parse_resource, parse_subject, parse_time, required_object, required_string, resolve_resource,
    resolve_subject, subject_kind,
};
use crate::error::ApiResult;
use crate::extract::JsonObject;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rolegate_core::access::AccessView;
use rolegate_core::access_decision::{self, Action};
use rolegate_core::directory::SubjectKind;
use rolegate_core::error::{DomainError, Result};
use rolegate_core::store::ReadTx;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Results per page unless `page.limit` says otherwise, and the most one page holds.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// What is searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subject,
    Resource,
    Action,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Resource => "resource",
            Self::Action => "action",
        }
    }
}

/// `page` of a search request: where to start and how many.
struct Paging {
    offset: usize,
    limit: usize,
    fingerprint: String,
}

/// The request's identity for its tokens (authzen.md §7.1): the members the search reads
/// (not the ones it ignores, nor unknown ones), and the page size.
fn fingerprint(kind: Kind, body: &Map<String, Value>, limit: usize) -> String {
    let entity = |name: &str, keep_id: bool| -> Value {
        let Some(Value::Object(m)) = member(body, name) else {
            return Value::Null;
        };
        json!({"type": m.get("type"), "id": if keep_id { m.get("id").cloned() } else { None }})
    };
    let subject = entity("subject", kind != Kind::Subject);
    let resource = entity("resource", kind != Kind::Resource);
    let action = if kind == Kind::Action {
        Value::Null
    } else {
        member(body, "action").cloned().unwrap_or(Value::Null)
    };
    let time = match member(body, "context") {
        Some(Value::Object(c)) => member(c, "time").cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let text = json!([kind.name(), subject, resource, action, time, limit]).to_string();
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

fn paging(kind: Kind, body: &Map<String, Value>) -> Result<Paging> {
    let page = object(member(body, "page"), "page")?;
    let limit = match page.and_then(|p| member(p, "limit")) {
        None => DEFAULT_LIMIT,
        Some(v) => match v.as_u64() {
            Some(n) => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
            None => return Err(bad("`page.limit` must be a non-negative integer")),
        },
    };
    let fingerprint = fingerprint(kind, body, limit);
    let offset = match page.and_then(|p| member(p, "token")) {
        None => 0,
        Some(Value::String(token)) => {
            let refused = || {
                bad(
                    "`page.token` was not issued for this request (every other member must be the same)",
                )
            };
            let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(refused)?;
            let (offset, print) = text.split_once('.').ok_or_else(refused)?;
            if print != fingerprint {
                return Err(refused());
            }
            offset.parse().map_err(|_| refused())?
        }
        Some(_) => return Err(bad("`page.token` must be a string")),
    };
    Ok(Paging {
        offset,
        limit,
        fingerprint,
    })
}

/// The page of `all` that `p` asks for, with the `page` member of the response.
fn cut(all: Vec<Value>, p: &Paging) -> (Value, Vec<Value>) {
    let total = all.len();
    let results: Vec<Value> = all.into_iter().skip(p.offset).take(p.limit).collect();
    let end = p.offset.saturating_add(results.len());
    let next = if p.limit > 0 && end < total {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{end}.{}", p.fingerprint))
    } else {
        String::new()
    };
    (
        json!({"next_token": next, "count": results.len(), "total": total}),
        results,
    )
}

fn known_action(a: ActionRef, tx: &mut dyn ReadTx, anchor: Option<&str>) -> Result<Option<Action>> {
    Ok(match a {
        ActionRef::Known(a) => Some(a),
        ActionRef::Unknown(_) => None,
        ActionRef::RoleNamed(name) => {
            let template = rolegate_core::role::BUILT_IN_ROLES
                .iter()
                .find(|r| r.display_name.eq_ignore_ascii_case(&name))
                .map(|r| r.template_id);
            match (template, anchor) {
                (Some(t), Some(rid)) => {
                    tx.role_definition_by_template(rid, t)?
                        .map(|d| Action::Role {
                            template_id: d.template_id.to_ascii_lowercase(),
                        })
                }
                (Some(t), None) => Some(Action::Role {
                    template_id: t.to_string(),
                }),
                (None, _) => None,
            }
        }
    })
}

fn index(
    st: &AppState,
) -> Result<std::sync::RwLockReadGuard<'_, rolegate_core::access::AccessIndex>> {
    st.access
        .read()
        .map_err(|_| DomainError::internal("access index lock poisoned"))
}

/// What history holds that still counted after `at`, when `at` is before the request's
/// `now` (searches answer as evaluations do, authzen.md §4.4, §7.1).
fn history(
    tx: &mut dyn ReadTx,
    now: jiff::Timestamp,
    subjects: Option<&[String]>,
    resources: Option<&[String]>,
    at: jiff::Timestamp,
) -> Result<Vec<rolegate_core::assignment::RoleAssignment>> {
    if at >= now {
        return Ok(Vec::new());
    }
    tx.history_of(subjects, resources, at)
}

/// The history entries that were active at `at` with a role allowing `action`, as holdings.
fn allowing<'a>(
    ix: &'a rolegate_core::access::AccessIndex,
    past: &'a [rolegate_core::assignment::RoleAssignment],
    action: &'a Action,
    at: jiff::Timestamp,
) -> impl Iterator<Item = access_decision::Holding<'a>> + 'a {
    past.iter()
        .filter_map(|a| ix.holding_of(a, &a.resource_id))
        .filter(move |h| {
            h.state == rolegate_core::assignment::AssignmentState::Active
                && access_decision::in_effect(h.start, h.end, at)
                && access_decision::role_allows(h.template_id.as_deref(), h.permissions, action)
        })
}

fn respond(
    endpoint: crate::metrics::AuthzenEndpoint,
    evaluated_at: jiff::Timestamp,
    page: Value,
    results: Vec<Value>,
) -> Response {
    crate::metrics::record_authzen(endpoint, None);
    let body = json!({
        "page": page,
        "context": {"evaluated_at": instant(evaluated_at)},
        "results": results,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::Json(body),
    )
        .into_response()
}

/// `POST /access/v1/search/subject` (§7.2).
pub async fn subjects(
    State(s): State<Arc<AppState>>,
    asker: Asker,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    s.read(move |tx, st| {
        let now = st.clock.now();
        let subject = required_object(member(&body, "subject"), "subject")?;
        let kind = match string_member(subject, "type")? {
            Some(t) => subject_kind(t).ok_or_else(|| {
                bad("`subject.type` must be `user`, `group` or `servicePrincipal`")
            })?,
            None => return Err(bad("`subject.type` is required")),
        };
        let resource = parse_resource(member(&body, "resource"), "resource")?;
        let action = parse_action(member(&body, "action"), "action")?;
        let context = object(member(&body, "context"), "context")?;
        let at = parse_time(context, "context", now)?;
        let paging = paging(Kind::Subject, &body)?;
        let anchor = resolve_resource(tx, st.lookup(), &resource)?;
        match (&asker, &anchor) {
            (Asker::Privileged, _) => {}
            (Asker::Subject(c), Some(a))
                if st.access_view().administers(&c.subject_id, &a.resource.id, now) => {}
            _ => {
                return Err(DomainError::denied(
                    "searching subjects needs an administrator of the resource (Owner or User Access Administrator)",
                ));
            }
        }
        let mut found = Vec::new();
        if let Some(a) = &anchor
            && let Some(action) = known_action(action, tx, Some(&a.resource.id))?
        {
            let chain = index(st)?.ancestors_or_self(&a.resource.id);
            let past = history(tx, now, None, Some(&chain), at)?;
            let ix = index(st)?;
            let mut holders = ix.holders_allowed(&a.resource.id, &action, at);
            holders.extend(
                allowing(&ix, &past, &action, at).map(|h| h.holder_id.into_owned()),
            );
            // The holders, and everyone inside the holding groups (nested groups included);
            // the asked kind is picked below.
            let candidates = ix.members_of_any(&holders);
            drop(ix);
            for id in candidates {
                let Some(subject) = tx.subject(&id)? else { continue };
                if subject.id != id || subject.kind != kind || (!subject.active && kind != SubjectKind::Group) {
                    continue;
                }
                let mut props = Map::new();
                props.insert("displayName".into(), json!(subject.display_name));
                if let Some(u) = &subject.principal_name {
                    props.insert("userName".into(), json!(u));
                }
                found.push(json!({"type": kind_name(kind), "id": subject.id, "properties": props}));
            }
        }
        let (page, results) = cut(found, &paging);
        Ok(respond(crate::metrics::AuthzenEndpoint::SearchSubject, at, page, results))
    })
    .await
}

fn string_member<'a>(o: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>> {
    match member(o, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("`subject.{name}` must be a string"))),
    }
}

/// `POST /access/v1/search/resource` (§7.3).
pub async fn resources(
    State(s): State<Arc<AppState>>,
    asker: Asker,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    s.read(move |tx, st| {
        let now = st.clock.now();
        let subject = parse_subject(member(&body, "subject"), "subject")?;
        let action = parse_action(member(&body, "action"), "action")?;
        let resource = required_object(member(&body, "resource"), "resource")?;
        let rtype = required_string(resource, "type", "resource")?;
        if !rtype.eq_ignore_ascii_case("azureResource") {
            return Err(bad("`resource.type` must be `azureResource`"));
        }
        let context = object(member(&body, "context"), "context")?;
        let at = parse_time(context, "context", now)?;
        let paging = paging(Kind::Resource, &body)?;
        let resolved = resolve_subject(tx, st.lookup(), &subject)?;
        let access = st.access_view();
        // Who may see which results (§9).
        let limit_to: Option<String> = match (&asker, &resolved) {
            (Asker::Privileged, _) => None,
            (Asker::Subject(c), ResolvedSubject::Found(s) | ResolvedSubject::Disabled(s))
                if s.id == c.subject_id =>
            {
                None
            }
            (Asker::Subject(c), _) => {
                let administers_somewhere = st
                    .access
                    .read()
                    .map(|ix| !ix.anchors(&c.subject_id, now, true).is_empty())
                    .unwrap_or(false);
                if !administers_somewhere {
                    return Err(DomainError::denied(
                        "searching another subject's resources needs an administrator role somewhere",
                    ));
                }
                Some(c.subject_id.clone())
            }
        };
        let mut found: Vec<(String, Value)> = Vec::new();
        if let ResolvedSubject::Found(subject) = &resolved
            && let Some(action) = known_action(action, tx, None)?
        {
            let holders = index(st)?.holders(&subject.id);
            let past = history(tx, now, Some(&holders), None, at)?;
            let ids = {
                let ix = index(st)?;
                let mut roots = ix.resources_allowed(&subject.id, &action, at);
                roots.extend(allowing(&ix, &past, &action, at).map(|h| h.resource_id.into_owned()));
                ix.subtrees(&roots)
            };
            for id in ids {
                if let Some(caller) = &limit_to
                    && !access.administers(caller, &id, now)
                {
                    continue;
                }
                let Some(r) = tx.resource(&id)? else { continue };
                found.push((
                    r.external_id.to_ascii_lowercase(),
                    json!({"type": "azureResource", "id": r.external_id,
                           "properties": {"resourceId": r.id, "displayName": r.display_name, "resourceType": r.resource_type}}),
                ));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let (page, results) = cut(found.into_iter().map(|(_, v)| v).collect(), &paging);
        Ok(respond(crate::metrics::AuthzenEndpoint::SearchResource, at, page, results))
    })
    .await
}

/// `POST /access/v1/search/action` (§7.4): the roles the subject holds at the resource.
pub async fn actions(
    State(s): State<Arc<AppState>>,
    asker: Asker,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    s.read(move |tx, st| {
        let now = st.clock.now();
        let subject = parse_subject(member(&body, "subject"), "subject")?;
        let resource = parse_resource(member(&body, "resource"), "resource")?;
        let context = object(member(&body, "context"), "context")?;
        let at = parse_time(context, "context", now)?;
        let paging = paging(Kind::Action, &body)?;
        let resolved = resolve_subject(tx, st.lookup(), &subject)?;
        if let Asker::Subject(c) = &asker {
            let own = matches!(&resolved, ResolvedSubject::Found(s) | ResolvedSubject::Disabled(s) if s.id == c.subject_id);
            if !own {
                return Err(DomainError::denied("you may ask only about yourself"));
            }
        }
        let anchor = resolve_resource(tx, st.lookup(), &resource)?;
        let mut roles: Vec<(String, String, Value)> = Vec::new();
        if let (ResolvedSubject::Found(subject), Some(a)) = (&resolved, &anchor) {
            let (mut holdings, holders, chain) = {
                let ix = index(st)?;
                let holders = ix.holders(&subject.id);
                (
                    ix.holdings(&subject.id, &a.resource.id)
                        .into_iter()
                        .map(access_decision::Holding::into_owned)
                        .collect::<Vec<_>>(),
                    holders,
                    ix.ancestors_or_self(&a.resource.id),
                )
            };
            let past = history(tx, now, Some(&holders), Some(&chain), at)?;
            {
                let ix = index(st)?;
                holdings.extend(
                    past.iter()
                        .filter_map(|h| ix.holding_of(h, &a.resource.id))
                        .map(access_decision::Holding::into_owned),
                );
            }
            for h in holdings.iter().filter(|h| {
                h.state == rolegate_core::assignment::AssignmentState::Active
                    && access_decision::in_effect(h.start, h.end, at)
            }) {
                let Some(template) = &h.template_id else { continue };
                if roles.iter().any(|(_, t, _)| t == template.as_ref()) {
                    continue;
                }
                let name = match tx.role_definition(&h.role_definition_id)? {
                    Some(d) => d.display_name,
                    None => continue,
                };
                let permissions = rolegate_core::permissions::built_in(template)
                    .map(|p| json!(p.permissions))
                    .unwrap_or_else(|| json!([]));
                roles.push((
                    name.clone(),
                    template.to_string(),
                    json!({"name": "role", "properties": {"templateId": template, "displayName": name, "permissions": permissions}}),
                ));
            }
        }
        roles.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let (page, results) = cut(roles.into_iter().map(|(_, _, v)| v).collect(), &paging);
        Ok(respond(crate::metrics::AuthzenEndpoint::SearchAction, at, page, results))
    })
    .await
}
