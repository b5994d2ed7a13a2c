//! The SCIM 2.0 service provider's HTTP surface (RFC 7644): `/scim/v2/Users` and
//! `/scim/v2/Groups` (create, get, list and `/.search` with filters, paging, sorting and
//! attribute projection, PUT, PATCH, DELETE, ETags), discovery (`/ServiceProviderConfig`,
//! `/ResourceTypes`, `/Schemas`) and provisioning-client authentication. The rules live in
//! `rolegate_core::scim`; these handlers parse HTTP and render replies.
//!
//! Callers: tenant administrators (bearer JWT), or a provisioning client presenting the
//! long-lived secret of `--scim-token-file` (accepted on `/scim` only). Every error is a
//! SCIM error body (RFC 7644 §3.12) with `application/scim+json`.

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonObject, RequestId, authenticate, query_pairs};
use crate::state::{AppState, Operation};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rolegate_core::access::Caller;
use rolegate_core::error::{DomainError, ErrorCode, ScimType};
use rolegate_core::scim::{self, ListParams, Shown, schema::ResourceType};
use rolegate_core::visibility;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// The provisioning secret of `--scim-token-file`: only its SHA-256 digest is kept, and a
/// presented token is compared digest to digest in constant time. Never printed.
pub struct ProvisioningToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for ProvisioningToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProvisioningToken(<redacted>)")
    }
}

impl ProvisioningToken {
    /// The shortest secret accepted, in bytes (after trimming).
    pub const MIN_LEN: usize = 32;

    /// A token from the secret text (surrounding whitespace trimmed). Refuses an empty or
    /// short secret.
    pub fn new(secret: &str) -> Result<Self, String> {
        let s = secret.trim();
        if s.is_empty() {
            return Err("the SCIM token file is empty".into());
        }
        if s.len() < Self::MIN_LEN {
            return Err(format!(
                "the SCIM token must be at least {} bytes (it has {})",
                Self::MIN_LEN,
                s.len()
            ));
        }
        Ok(Self {
            digest: Sha256::digest(s.as_bytes()).into(),
        })
    }

    /// Reads the secret from `path`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the SCIM token file {}: {e}", path.display()))?;
        Self::new(&text)
    }

    /// Whether `presented` is the secret. Compares SHA-256 digests in constant time, so
    /// neither the secret's content nor its length leaks through timing.
    pub fn matches(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let diff = d
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// A caller of `/scim`: a tenant administrator or the provisioning client.
pub struct ScimAdmin(pub Caller);

fn bearer(parts: &Parts) -> Option<&str> {
    let h = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<Arc<AppState>> for ScimAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = &state.scim_token
            && bearer(parts).is_some_and(|b| token.matches(b))
        {
            return Ok(ScimAdmin(visibility::provisioning_client()));
        }
        let caller = authenticate(parts, state)
            .await
            .map_err(ApiError::into_scim)?;
        visibility::may_provision(&caller).map_err(ApiError::scim)?;
        Ok(ScimAdmin(caller))
    }
}

fn scim_err(e: ApiError) -> ApiError {
    e.into_scim()
}

/// A body that is not JSON is `invalidSyntax`.
fn body_err(e: ApiError) -> ApiError {
    if e.error.code == ErrorCode::BadRequest {
        ApiError::scim(DomainError::scim(ScimType::InvalidSyntax, e.error.message))
    } else {
        scim_err(e)
    }
}

/// `http(s)://HOST/scim/v2`, for `meta.location` and `$ref`.
fn base(h: &HeaderMap) -> String {
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let proto = h
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{proto}://{host}/scim/v2")
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn endpoint(p: &HashMap<String, String>) -> ApiResult<ResourceType> {
    p.get("coll")
        .and_then(|c| ResourceType::from_endpoint(c))
        .ok_or_else(|| {
            ApiError::scim(DomainError::new(
                ErrorCode::NotFound,
                "unknown SCIM endpoint: use /Users or /Groups",
            ))
        })
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/scim+json")],
        axum::Json(body),
    )
        .into_response()
}

fn reply_resource(status: StatusCode, s: Shown) -> Response {
    let mut r = reply(status, s.body);
    if let Ok(v) = HeaderValue::from_str(&scim::etag(s.version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&s.location)
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn operation(rt: ResourceType, activity: &'static str) -> Operation {
    Operation::new(
        if rt == ResourceType::Group {
            "GroupManagement"
        } else {
            "UserManagement"
        },
        activity,
    )
}

fn params(raw: Option<&str>) -> ApiResult<ListParams> {
    ListParams::from_query(&query_pairs(raw)).map_err(ApiError::scim)
}

/// `GET /scim/v2/ServiceProviderConfig`.
pub async fn service_provider_config(ScimAdmin(_): ScimAdmin, h: HeaderMap) -> Response {
    reply(
        StatusCode::OK,
        scim::schema::service_provider_config(&base(&h)),
    )
}

/// `GET /scim/v2/ResourceTypes`.
pub async fn resource_types(ScimAdmin(_): ScimAdmin, h: HeaderMap) -> ApiResult<Response> {
    let v = scim::resource_types(None, &base(&h)).map_err(ApiError::scim)?;
    Ok(reply(StatusCode::OK, v))
}

/// `GET /scim/v2/ResourceTypes/{id}`.
pub async fn resource_type(
    ScimAdmin(_): ScimAdmin,
    Path(id): Path<String>,
    h: HeaderMap,
) -> ApiResult<Response> {
    let v = scim::resource_types(Some(&id), &base(&h)).map_err(ApiError::scim)?;
    Ok(reply(StatusCode::OK, v))
}

/// `GET /scim/v2/Schemas`.
pub async fn schemas(ScimAdmin(_): ScimAdmin, h: HeaderMap) -> ApiResult<Response> {
    let v = scim::schemas(None, &base(&h)).map_err(ApiError::scim)?;
    Ok(reply(StatusCode::OK, v))
}

/// `GET /scim/v2/Schemas/{id}`.
pub async fn schema(
    ScimAdmin(_): ScimAdmin,
    Path(id): Path<String>,
    h: HeaderMap,
) -> ApiResult<Response> {
    let v = scim::schemas(Some(&id), &base(&h)).map_err(ApiError::scim)?;
    Ok(reply(StatusCode::OK, v))
}

async fn run_list(
    st: &Arc<AppState>,
    rt: Option<ResourceType>,
    lp: ListParams,
    h: &HeaderMap,
) -> ApiResult<Response> {
    let base = base(h);
    let v = st
        .read(move |tx, _| scim::list(tx, rt, &lp, &base))
        .await
        .map_err(scim_err)?;
    Ok(reply(StatusCode::OK, v))
}

/// `GET /scim/v2/{Users|Groups}` with `filter`, `startIndex`, `count`, `sortBy`,
/// `sortOrder`, `attributes`, `excludedAttributes`.
pub async fn list(
    State(st): State<Arc<AppState>>,
    ScimAdmin(_): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> ApiResult<Response> {
    let rt = endpoint(&p)?;
    run_list(&st, Some(rt), params(q.as_deref())?, &h).await
}

/// `POST /scim/v2/{Users|Groups}/.search`.
pub async fn search(
    State(st): State<Arc<AppState>>,
    ScimAdmin(_): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    h: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    let rt = endpoint(&p)?;
    let JsonObject(body) = body.map_err(body_err)?;
    let lp = ListParams::from_search(&body).map_err(ApiError::scim)?;
    run_list(&st, Some(rt), lp, &h).await
}

/// `POST /scim/v2/.search`: Users and Groups at once.
pub async fn search_all(
    State(st): State<Arc<AppState>>,
    ScimAdmin(_): ScimAdmin,
    h: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    let JsonObject(body) = body.map_err(body_err)?;
    let lp = ListParams::from_search(&body).map_err(ApiError::scim)?;
    run_list(&st, None, lp, &h).await
}

/// `GET /scim/v2/{Users|Groups}/{id}` (`304` when `If-None-Match` names its version).
pub async fn get(
    State(st): State<Arc<AppState>>,
    ScimAdmin(_): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> ApiResult<Response> {
    let rt = endpoint(&p)?;
    let id = p.get("id").cloned().unwrap_or_default();
    let proj = params(q.as_deref())?.projection(Some(rt));
    let base = base(&h);
    let shown = st
        .read(move |tx, _| scim::get(tx, rt, &id, &base, &proj))
        .await
        .map_err(scim_err)?;
    if scim::if_none_match(header_str(&h, header::IF_NONE_MATCH), shown.version) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&scim::etag(shown.version)) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    Ok(reply_resource(StatusCode::OK, shown))
}

/// `POST /scim/v2/{Users|Groups}`: `201` with the resource, `Location` and `ETag`.
pub async fn create(
    State(st): State<Arc<AppState>>,
    ScimAdmin(c): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    RequestId(rid): RequestId,
    h: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    let rt = endpoint(&p)?;
    let JsonObject(body) = body.map_err(body_err)?;
    let proj = params(q.as_deref())?.projection(Some(rt));
    let base = base(&h);
    let shown = st
        .write(c, rid, operation(rt, "Add subject"), move |tx, ctx| {
            scim::create(tx, ctx, rt, &body, &base, &proj)
        })
        .await
        .map_err(scim_err)?;
    Ok(reply_resource(StatusCode::CREATED, shown))
}

type Change = fn(
    &mut dyn rolegate_core::store::Tx,
    &rolegate_core::access::OpContext,
    ResourceType,
    &str,
    &Map<String, Value>,
    Option<&str>,
    &str,
    &scim::resource::Projection,
)
    -> rolegate_core::error::Result<(Shown, Vec<rolegate_core::access::AccessChange>)>;

#[allow(clippy::too_many_arguments)]
async fn change(
    st: Arc<AppState>,
    c: Caller,
    p: HashMap<String, String>,
    q: Option<String>,
    rid: String,
    h: HeaderMap,
    body: Result<JsonObject, ApiError>,
    activity: &'static str,
    f: Change,
) -> ApiResult<Response> {
    let rt = endpoint(&p)?;
    let JsonObject(body) = body.map_err(body_err)?;
    let id = p.get("id").cloned().unwrap_or_default();
    let proj = params(q.as_deref())?.projection(Some(rt));
    let if_match = header_str(&h, header::IF_MATCH).map(str::to_string);
    let base = base(&h);
    let shown = st
        .write(c, rid, operation(rt, activity), move |tx, ctx| {
            f(tx, ctx, rt, &id, &body, if_match.as_deref(), &base, &proj)
        })
        .await
        .map_err(scim_err)?;
    Ok(reply_resource(StatusCode::OK, shown))
}

/// `PUT /scim/v2/{Users|Groups}/{id}`: replace (honours `If-Match`).
pub async fn replace(
    State(st): State<Arc<AppState>>,
    ScimAdmin(c): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    RequestId(rid): RequestId,
    h: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    change(st, c, p, q, rid, h, body, "Update subject", scim::replace).await
}

/// `PATCH /scim/v2/{Users|Groups}/{id}` with a PatchOp (honours `If-Match`).
pub async fn patch(
    State(st): State<Arc<AppState>>,
    ScimAdmin(c): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    RequestId(rid): RequestId,
    h: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    change(st, c, p, q, rid, h, body, "Update subject", scim::patch).await
}

/// `DELETE /scim/v2/{Users|Groups}/{id}`: `204` (honours `If-Match`).
pub async fn delete(
    State(st): State<Arc<AppState>>,
    ScimAdmin(c): ScimAdmin,
    Path(p): Path<HashMap<String, String>>,
    RequestId(rid): RequestId,
    h: HeaderMap,
) -> ApiResult<Response> {
    let rt = endpoint(&p)?;
    let id = p.get("id").cloned().unwrap_or_default();
    let if_match = header_str(&h, header::IF_MATCH).map(str::to_string);
    st.write(c, rid, operation(rt, "Delete subject"), move |tx, ctx| {
        scim::delete(tx, ctx, rt, &id, if_match.as_deref()).map(|c| ((), c))
    })
    .await
    .map_err(scim_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioning_token_rules() {
        assert!(ProvisioningToken::new("").is_err());
        assert!(ProvisioningToken::new("   \n").is_err());
        assert!(ProvisioningToken::new("short").is_err());
        let secret = "0123456789abcdef0123456789abcdef";
        let t = ProvisioningToken::new(&format!("  {secret}\n")).unwrap();
        assert!(t.matches(secret));
        assert!(!t.matches(&format!("{secret}x")));
        assert!(!t.matches(""));
        assert!(!format!("{t:?}").contains(secret));
    }
}
