//! The Graph error envelope (decisions.md §8): every error is
//! `{"error":{"code","message","innerError":{"date","request-id"}}}` with the status of its
//! code. Internal causes are logged, never returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rolegate_core::error::{DomainError, ErrorCode};
use serde_json::json;

/// An error rendered as the Graph envelope (or, under `/scim`, as a SCIM error).
#[derive(Debug)]
pub struct ApiError {
    /// The domain error.
    pub error: DomainError,
    /// Render the SCIM error body (RFC 7644 §3.12) instead of the Graph one.
    pub scim: bool,
    /// Whole seconds for the `Retry-After` header (`429`, and `503` on a timeout).
    pub retry_after_seconds: Option<u64>,
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        Self {
            error,
            scim: false,
            retry_after_seconds: None,
        }
    }
}

impl ApiError {
    /// An error for a SCIM route.
    pub fn scim(error: DomainError) -> Self {
        Self {
            error,
            scim: true,
            retry_after_seconds: None,
        }
    }

    /// The same error rendered for a SCIM route (keeping its `Retry-After`).
    pub fn into_scim(self) -> Self {
        Self { scim: true, ..self }
    }

    /// The same error, telling the client to retry after `seconds`.
    pub fn retry_after(self, seconds: u64) -> Self {
        Self {
            retry_after_seconds: Some(seconds),
            ..self
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.error.code;
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if code == ErrorCode::InternalServerError {
            tracing::error!(error = %self.error.message, "internal error");
            "an internal error occurred; the server log has the details".to_string()
        } else {
            self.error.message
        };
        let body = if self.scim {
            let mut b = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": status.as_u16().to_string(),
                "detail": message,
            });
            if let ErrorCode::Scim(t) = code {
                b["scimType"] = json!(t.as_str());
            }
            b
        } else {
            // The request id and date are filled in by the request-id middleware.
            json!({"error": {"code": code.as_str(), "message": message, "innerError": {}}})
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if code == ErrorCode::InvalidAuthenticationToken {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after_seconds {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.scim {
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/scim+json"),
            );
        }
        resp
    }
}
