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
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        Self { error, scim: false }
    }
}

impl ApiError {
    /// An error for a SCIM route.
    pub fn scim(error: DomainError) -> Self {
        Self { error, scim: true }
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
        if self.scim {
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/scim+json"),
            );
        }
        resp
    }
}
