//! Signed-in visits (portal.md §2, §3): the `rolegate_session` cookie, its session row in
//! the database, the caller it resolves to on every request (exactly as an API token's
//! subject is), the CSRF token and the same-origin check of every POST.

use crate::page::ErrorPage;
use crate::{Portal, S};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use rolegate_api::AppState;
use rolegate_core::access::Caller;
use rolegate_core::error::{DomainError, Result};
use rolegate_core::session::PortalSession;
use rolegate_core::store::{self, Tx};
use rolegate_core::visibility::{self, TokenIdentity};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "rolegate_session";

/// 32 random bytes, hex: a session id or a CSRF token.
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| DomainError::internal(format!("no randomness for a session id: {e}")))?;
    Ok(hex::encode(bytes))
}

/// What the database keeps of a session id.
pub fn hash_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The value of cookie `name` the browser sent, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The session id the browser sent, if any (64 hex digits).
pub fn presented_id(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that stores `id` (or, with `None`, clears the cookie).
pub fn set_cookie(portal: &Portal, id: Option<&str>) -> HeaderValue {
    let secure = portal
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let value = match id {
        Some(id) => format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Lax"),
        None => format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Lax; Max-Age=0"),
    };
    let value = if secure {
        format!("{value}; Secure")
    } else {
        value
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
}

/// Whether a state-changing request comes from the portal's own pages: its `Origin` is the
/// server's (the public URL's, else the `Host` the browser addressed), or, without
/// `Origin`, the browser says `Sec-Fetch-Site: same-origin`.
pub fn same_origin(portal: &Portal, headers: &HeaderMap) -> bool {
    let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = value(header::ORIGIN) {
        return match portal.config.public_url.as_deref() {
            Some(public) => origin_of(public).eq_ignore_ascii_case(origin),
            None => origin
                .split_once("://")
                .is_some_and(|(_, authority)| Some(authority) == value(header::HOST)),
        };
    }
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"same-origin")
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Runs `f` in a write transaction of the store, off the async runtime. Session rows
/// change nobody's access, so they skip the audited write path.
pub async fn write_sessions<T: Send + 'static>(
    app: &Arc<AppState>,
    f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
) -> Result<T> {
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || store::write(app.store.as_ref(), f))
        .await
        .map_err(|e| DomainError::internal(format!("session write failed: {e}")))?
}

/// A request of a signed-in person: the caller every read and operation runs as.
pub struct Visit {
    /// The signed-in person, resolved against the directory for this request.
    pub caller: Caller,
    /// Their session.
    pub session: PortalSession,
    /// This HTTP request's id (also the audit records' correlation id).
    pub request_id: String,
}

impl Visit {
    /// The viewer's time zone, as the browser reported it (UTC until then).
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        self.session
            .time_zone
            .as_deref()
            .and_then(crate::text::zone)
            .unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// Checks the form's CSRF token against the session's, in constant time.
    pub fn check_csrf(&self, presented: &str) -> std::result::Result<(), ErrorPage> {
        let ok: bool = presented
            .as_bytes()
            .ct_eq(self.session.csrf_token.as_bytes())
            .into();
        if ok {
            Ok(())
        } else {
            Err(ErrorPage::denied(&self.request_id))
        }
    }
}

/// Where an anonymous visitor goes: the sign-in page, then back to `path`.
pub fn to_sign_in(path: &str) -> Response {
    let back = percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC);
    Redirect::to(&format!("/ui/signin?return={back}")).into_response()
}

/// A path the sign-in may return to: the portal's own, never another site's.
pub fn safe_return(path: Option<&str>) -> String {
    match path {
        Some(p)
            if p.starts_with("/ui/")
                && !p.starts_with("/ui//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

impl FromRequestParts<S> for Visit {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &S,
    ) -> std::result::Result<Self, Response> {
        let request_id = parts
            .extensions
            .get::<rolegate_api::extract::RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        if parts.method != Method::GET
            && parts.method != Method::HEAD
            && !same_origin(portal, &parts.headers)
        {
            return Err(ErrorPage::denied(&request_id).into_response());
        }
        let back = if parts.method == Method::GET {
            parts
                .uri
                .path_and_query()
                .map_or("/ui/", |p| p.as_str())
                .to_string()
        } else {
            "/ui/".to_string()
        };
        let Some(id) = presented_id(&parts.headers) else {
            return Err(to_sign_in(&back));
        };
        let app = &portal.app;
        let hash = hash_id(&id);
        let now = app.clock.now();
        let lifetime = portal.config.lifetime;
        let lookup = hash.clone();
        let found = app
            .read(move |tx, _| {
                let Some(s) = tx.portal_session(&lookup)? else {
                    return Ok(None);
                };
                let subject = tx.subject(&s.subject)?;
                Ok(Some((s, subject)))
            })
            .await;
        let (session, subject) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Err(to_sign_in(&back)),
            Err(e) => return Err(ErrorPage::from_api(&request_id, e).into_response()),
        };
        let signed_in = lifetime
            .is_live(&session, now)
            .then(|| {
                visibility::sign_in(
                    &TokenIdentity {
                        subject: &session.subject,
                        name: session.name.as_deref(),
                        mfa: session.mfa,
                    },
                    subject,
                    |id| app.auth.is_admin([id]),
                )
                .ok()
            })
            .flatten();
        let Some(caller) = signed_in else {
            // Ended, or its subject was disabled or deleted: the session goes at once.
            let _ = write_sessions(app, move |tx| tx.delete_portal_session(&hash)).await;
            return Err(to_sign_in(&back));
        };
        if let Err(e) = app.rate_limits.check_subject(&caller.subject_id) {
            return Err(e.into_response());
        }
        if lifetime.needs_touch(&session, now) {
            let touched = hash.clone();
            if let Err(e) =
                write_sessions(app, move |tx| tx.touch_portal_session(&touched, now, None)).await
            {
                tracing::warn!(error = %e, "could not record a portal session's use");
            }
        }
        Ok(Visit {
            caller,
            session,
            request_id,
        })
    }
}
