//! Extractors: the request id, the authenticated caller, OData query options and JSON
//! bodies with Graph-style errors.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use rolegate_core::access::Caller;
use rolegate_core::error::{DomainError, ErrorCode};
use rolegate_core::odata::{QueryOptions, parse_query};
use rolegate_core::visibility::{self, TokenIdentity};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The id of this HTTP request (also the audit `correlationId`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(crate::new_id())))
    }
}

/// The authenticated caller of a Graph route.
#[derive(Debug, Clone)]
pub struct Auth(pub Caller);

/// Authenticates `parts` against the state: token, then directory subject.
pub async fn authenticate(parts: &Parts, state: &Arc<AppState>) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let claims = state.auth.verify(header).await?;
    // Only a verified token names a subject: forged ones were counted per client address.
    state.rate_limits.check_subject(claims.subject())?;
    let subject = state.token_subject(claims.subject()).await?;
    let token = TokenIdentity {
        subject: claims.subject(),
        name: claims.name.as_deref(),
        mfa: claims.mfa(),
    };
    Ok(visibility::sign_in(&token, subject, |id| {
        state.auth.is_admin([id])
    })?)
}

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state).await.map(Auth)
    }
}

/// Percent-decodes a query string into name/value pairs (`+` is a space).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Parsed OData query options.
#[derive(Debug, Clone, Default)]
pub struct OData(pub QueryOptions);

impl<S: Send + Sync> FromRequestParts<S> for OData {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(OData(parse_query(&query_pairs(parts.uri.query()))?))
    }
}

/// A JSON object body. Malformed JSON or a non-object → `400 BadRequest`; over the size
/// limit → `413`. Unknown properties (and `@odata.type`) are left for the handler to ignore.
#[derive(Debug, Clone)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                DomainError::new(
                    ErrorCode::PayloadTooLarge,
                    "the request body is larger than 1 MiB",
                )
            } else {
                DomainError::bad_request(format!("could not read the request body: {e}"))
            }
        })?;
        Ok(JsonObject(decode_json_object(&bytes)?))
    }
}

/// Decodes a request body as [`JsonObject`] does: an empty or all-whitespace body is an empty
/// object; malformed JSON or anything but an object is `400 BadRequest`.
pub fn decode_json_object(bytes: &[u8]) -> Result<Map<String, Value>, DomainError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) if holds_nul(&m) => Err(DomainError::bad_request(
            "the request body holds a NUL character (\\u0000), which no field may contain",
        )),
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(DomainError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(DomainError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// Whether a key or string anywhere in `m` holds a NUL character (PostgreSQL refuses it in
/// text; no field of the contract may hold one).
fn holds_nul(m: &Map<String, Value>) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(value),
            Value::Object(m) => holds_nul(m),
            _ => false,
        }
    }
    m.iter().any(|(k, v)| k.contains('\0') || value(v))
}

/// Typed access to JSON object fields with messages that name the field.
pub trait Fields {
    /// A string field; absent or null is `None`; anything else but a string is an error.
    fn opt_str(&self, name: &str) -> Result<Option<String>, DomainError>;
    /// A boolean field.
    fn opt_bool(&self, name: &str) -> Result<Option<bool>, DomainError>;
    /// An object field.
    fn opt_obj(&self, name: &str) -> Result<Option<&Map<String, Value>>, DomainError>;
}

impl Fields for Map<String, Value> {
    fn opt_str(&self, name: &str) -> Result<Option<String>, DomainError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(DomainError::bad_request(format!(
                "`{name}` must be a string"
            ))),
        }
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, DomainError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(DomainError::bad_request(format!(
                "`{name}` must be true or false"
            ))),
        }
    }

    fn opt_obj(&self, name: &str) -> Result<Option<&Map<String, Value>>, DomainError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(DomainError::bad_request(format!(
                "`{name}` must be an object"
            ))),
        }
    }
}
