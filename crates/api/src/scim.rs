//! A minimal SCIM 2.0 service (RFC 7643/7644) for the directory: Users and Groups with
//! create, get, list (with `attr eq "value"` filters), replace and delete. Only tenant
//! administrators may call it; errors use the SCIM error body.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Fields, JsonObject, RequestId, authenticate};
use crate::state::{AppState, Operation};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rolegate_core::access::Caller;
use rolegate_core::directory::{self, Subject, SubjectKind};
use rolegate_core::error::{DomainError, ErrorCode, Result};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A tenant administrator calling `/scim`.
pub struct ScimAdmin(pub Caller);

impl FromRequestParts<Arc<AppState>> for ScimAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state)
            .await
            .map_err(|e| ApiError::scim(e.error))?;
        if !caller.is_tenant_admin {
            return Err(ApiError::scim(DomainError::denied(
                "only tenant administrators may call /scim",
            )));
        }
        Ok(ScimAdmin(caller))
    }
}

fn scim_err(e: ApiError) -> ApiError {
    ApiError::scim(e.error)
}

fn location(h: &HeaderMap, kind: SubjectKind, id: &str) -> String {
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let coll = if kind == SubjectKind::Group {
        "Groups"
    } else {
        "Users"
    };
    format!("http://{host}/scim/v2/{coll}/{id}")
}

fn user_json(s: &Subject, h: &HeaderMap) -> Value {
    let mut v = json!({
        "schemas": [USER_SCHEMA],
        "id": s.id,
        "externalId": s.external_id,
        "userName": s.principal_name,
        "displayName": s.display_name,
        "active": s.active,
        "emails": s.email.as_ref().map(|e| vec![json!({"value": e, "primary": true, "type": "work"})]).unwrap_or_default(),
        "meta": {"resourceType": "User", "location": location(h, s.kind, &s.id)},
    });
    if s.kind == SubjectKind::ServicePrincipal
        && let Some(o) = v.as_object_mut()
    {
        o.insert("schemas".into(), json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        o.insert(
            ENTERPRISE_SCHEMA.into(),
            json!({"employeeType": "ServicePrincipal"}),
        );
    }
    v
}

fn group_json(s: &Subject, members: &[String], h: &HeaderMap) -> Value {
    json!({
        "schemas": [GROUP_SCHEMA],
        "id": s.id,
        "externalId": s.external_id,
        "displayName": s.display_name,
        "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>(),
        "meta": {"resourceType": "Group", "location": location(h, s.kind, &s.id)},
    })
}

fn user_from(body: &Map<String, Value>, id: String) -> Result<Subject> {
    let user_name = body
        .opt_str("userName")?
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| DomainError::bad_request("`userName` is required"))?;
    let email = match body.get("emails") {
        Some(Value::Array(list)) => {
            let primary = list
                .iter()
                .find(|e| e.get("primary") == Some(&Value::Bool(true)))
                .or(list.first());
            primary
                .and_then(|e| e.get("value"))
                .and_then(Value::as_str)
                .map(str::to_string)
        }
        _ => None,
    };
    let service = body
        .get(ENTERPRISE_SCHEMA)
        .and_then(|e| e.get("employeeType"))
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("ServicePrincipal"));
    Ok(Subject {
        id,
        external_id: body.opt_str("externalId")?,
        kind: if service {
            SubjectKind::ServicePrincipal
        } else {
            SubjectKind::User
        },
        display_name: body
            .opt_str("displayName")?
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| user_name.clone()),
        principal_name: Some(user_name),
        email,
        active: body.opt_bool("active")?.unwrap_or(true),
    })
}

fn group_from(body: &Map<String, Value>, id: String) -> Result<(Subject, Vec<String>)> {
    let name = body
        .opt_str("displayName")?
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| DomainError::bad_request("`displayName` is required"))?;
    let members = match body.get("members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|m| {
                m.get("value")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| DomainError::bad_request("each member needs a `value`"))
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(DomainError::bad_request("`members` must be an array")),
    };
    let subject = Subject {
        id,
        external_id: body.opt_str("externalId")?,
        kind: SubjectKind::Group,
        display_name: name,
        principal_name: None,
        email: None,
        active: true,
    };
    Ok((subject, members))
}

fn is_group(coll: &str) -> bool {
    coll == "Groups"
}

fn collection(p: &HashMap<String, String>) -> Result<String> {
    match p.get("coll").map(String::as_str) {
        Some(c @ ("Users" | "Groups")) => Ok(c.to_string()),
        _ => Err(DomainError::new(
            ErrorCode::NotFound,
            "unknown SCIM resource type",
        )),
    }
}

fn render(tx: &mut dyn rolegate_core::store::Tx, s: &Subject, h: &HeaderMap) -> Result<Value> {
    Ok(if s.kind == SubjectKind::Group {
        group_json(s, &tx.group_members(&s.id)?, h)
    } else {
        user_json(s, h)
    })
}

/// `POST /scim/v2/{Users|Groups}`.
pub async fn create(
    State(st): State<Arc<AppState>>,
    ScimAdmin(c): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    RequestId(rid): RequestId,
    h: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    let coll = collection(&p).map_err(ApiError::scim)?;
    let JsonObject(body) = body.map_err(scim_err)?;
    let id = uuid::Uuid::new_v4().to_string();
    let (subject, members) = if is_group(&coll) {
        group_from(&body, id)
    } else {
        user_from(&body, id).map(|u| (u, Vec::new()))
    }
    .map_err(ApiError::scim)?;
    let v = st
        .write(
            c,
            rid,
            Operation::new("UserManagement", "Add subject"),
            move |tx, ctx| {
                let (s, changes) = directory::create_subject(tx, ctx, subject, members)?;
                Ok((render(tx, &s, &h)?, changes))
            },
        )
        .await
        .map_err(scim_err)?;
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/scim+json")],
        axum::Json(v),
    )
        .into_response())
}

/// `PUT /scim/v2/{Users|Groups}/{id}`: replace.
pub async fn replace(
    State(st): State<Arc<AppState>>,
    ScimAdmin(c): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    RequestId(rid): RequestId,
    h: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    let coll = collection(&p).map_err(ApiError::scim)?;
    let JsonObject(body) = body.map_err(scim_err)?;
    let id = p.get("id").cloned().unwrap_or_default();
    let (subject, members) = if is_group(&coll) {
        group_from(&body, id).map(|(g, m)| (g, Some(m)))
    } else {
        user_from(&body, id).map(|u| (u, None))
    }
    .map_err(ApiError::scim)?;
    let v = st
        .write(
            c,
            rid,
            Operation::new("UserManagement", "Update subject"),
            move |tx, ctx| {
                // The path names the SCIM `id`, never an `externalId`.
                let kind_matches = tx.subject(&subject.id)?.is_some_and(|s| {
                    s.id == subject.id
                        && (s.kind == SubjectKind::Group) == (subject.kind == SubjectKind::Group)
                });
                if !kind_matches {
                    return Err(DomainError::new(
                        ErrorCode::NotFound,
                        format!("`{}` does not exist", subject.id),
                    ));
                }
                let (s, changes) = directory::update_subject(tx, ctx, subject, members)?;
                Ok((render(tx, &s, &h)?, changes))
            },
        )
        .await
        .map_err(scim_err)?;
    Ok((
        [(header::CONTENT_TYPE, "application/scim+json")],
        axum::Json(v),
    )
        .into_response())
}

/// `GET /scim/v2/{Users|Groups}/{id}`.
pub async fn get(
    State(st): State<Arc<AppState>>,
    ScimAdmin(_): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult<Response> {
    let coll = collection(&p).map_err(ApiError::scim)?;
    let id = p.get("id").cloned().unwrap_or_default();
    let v = st
        .read(move |tx, _| {
            let s = tx
                .subject(&id)?
                .filter(|s| s.id == id && (s.kind == SubjectKind::Group) == is_group(&coll))
                .ok_or_else(|| {
                    DomainError::new(ErrorCode::NotFound, format!("`{id}` does not exist"))
                })?;
            render(tx, &s, &h)
        })
        .await
        .map_err(scim_err)?;
    Ok((
        [(header::CONTENT_TYPE, "application/scim+json")],
        axum::Json(v),
    )
        .into_response())
}

/// Parses `attr eq "value"`, the filter identity providers send to find a user or group.
fn parse_filter(f: &str) -> Result<(String, String)> {
    let bad = || {
        DomainError::bad_request(format!(
            "unsupported filter `{f}`: use `attribute eq \"value\"`"
        ))
    };
    let (attr, rest) = f.trim().split_once(char::is_whitespace).ok_or_else(bad)?;
    let (op, value) = rest
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(bad)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(bad());
    }
    let value = value
        .trim()
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(bad)?;
    Ok((attr.to_string(), value.replace("\\\"", "\"")))
}

/// `GET /scim/v2/{Users|Groups}` with `filter`, `startIndex`, `count`.
pub async fn list(
    State(st): State<Arc<AppState>>,
    ScimAdmin(_): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> ApiResult<Response> {
    let coll = collection(&p).map_err(ApiError::scim)?;
    let filter = q
        .get("filter")
        .map(|f| parse_filter(f))
        .transpose()
        .map_err(ApiError::scim)?;
    let num = |name: &str, default: u32| -> Result<u32> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse::<u32>().map_err(|_| {
                DomainError::bad_request(format!("`{name}` must be a non-negative integer"))
            })
        })
    };
    let start = num("startIndex", 1).map_err(ApiError::scim)?.max(1);
    let count = num("count", 100).map_err(ApiError::scim)?.min(1000);
    let v = st
        .read(move |tx, _| {
            let kind = if is_group(&coll) { SubjectKind::Group } else { SubjectKind::User };
            let page = tx.list_subjects(kind, filter.as_ref().map(|(a, v)| (a.as_str(), v.as_str())), start - 1, count)?;
            let mut items = Vec::new();
            for s in &page.items {
                items.push(render(tx, s, &h)?);
            }
            Ok(json!({"schemas": [LIST_SCHEMA], "totalResults": page.total.unwrap_or(0), "startIndex": start, "itemsPerPage": items.len(), "Resources": items}))
        })
        .await
        .map_err(scim_err)?;
    Ok((
        [(header::CONTENT_TYPE, "application/scim+json")],
        axum::Json(v),
    )
        .into_response())
}

/// `DELETE /scim/v2/{Users|Groups}/{id}`: `204`.
pub async fn delete(
    State(st): State<Arc<AppState>>,
    ScimAdmin(c): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    RequestId(rid): RequestId,
) -> ApiResult<Response> {
    let coll = collection(&p).map_err(ApiError::scim)?;
    let id = p.get("id").cloned().unwrap_or_default();
    st.write(
        c,
        rid,
        Operation::new("UserManagement", "Delete subject"),
        move |tx, ctx| {
            let found = tx
                .subject(&id)?
                .is_some_and(|s| s.id == id && (s.kind == SubjectKind::Group) == is_group(&coll));
            if !found {
                return Err(DomainError::new(
                    ErrorCode::NotFound,
                    format!("`{id}` does not exist"),
                ));
            }
            directory::delete_subject(tx, ctx, &id).map(|c| ((), c))
        },
    )
    .await
    .map_err(scim_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
