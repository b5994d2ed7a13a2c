//! What every page shares (portal.md §4): the layout's data ([`Chrome`]), the response
//! headers of §3, and the error pages.

use crate::assets;
use crate::session::Visit;
use crate::{Portal, S};
use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rolegate_api::error::ApiError;
use rolegate_core::error::{DomainError, ErrorCode};
use rolegate_core::visibility;

/// The content security policy of every page (portal.md §3).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// An HTML response with the portal's headers.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A file to save (`Content-Disposition: attachment`), never cached.
pub fn download(body: String, content_type: &'static str, file_name: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Renders `t` as a page, or the error page when it cannot be rendered.
pub fn render(status: StatusCode, t: &impl Template, request_id: &str) -> Response {
    match t.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "a portal template failed to render");
            ErrorPage::internal(request_id).into_response()
        }
    }
}

/// One link of the main navigation.
#[derive(Debug, Clone)]
pub struct NavLink {
    /// Its text ("Approvals (2)").
    pub label: String,
    /// Where it goes.
    pub href: &'static str,
    /// Whether it is the page shown.
    pub current: bool,
}

/// The frame around every signed-in page: title, navigation, who is signed in, messages.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The page name (the `<title>` is "{title} · Rolegate").
    pub title: String,
    /// The signed-in person's display name.
    pub user: String,
    /// The session's CSRF token, for every form.
    pub csrf: String,
    /// The main navigation.
    pub nav: Vec<NavLink>,
    /// A success message (`role="status"`).
    pub status: Option<String>,
    /// A failure message (`role="alert"`).
    pub alert: Option<String>,
    /// The stylesheet's hashed path.
    pub css: &'static str,
    /// The script's hashed path.
    pub js: &'static str,
    /// The viewer's time zone (UTC until the browser has said).
    pub tz: jiff::tz::TimeZone,
    /// Whether the browser has said its time zone (the script tells it once).
    pub tz_known: bool,
}

/// The sections of the main navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// "My roles".
    MyRoles,
    /// "My requests".
    MyRequests,
    /// "Approvals".
    Approvals,
    /// "Resources".
    Resources,
    /// "Audit log".
    Audit,
}

impl Chrome {
    /// The frame of a page of `section` for `visit`, counting the approvals that wait for
    /// the caller (the API's `asApprover()` read).
    pub async fn new(
        portal: &S,
        visit: &Visit,
        section: Section,
        title: impl Into<String>,
    ) -> Result<Self, Response> {
        Self::counted(portal, visit, section, title, None).await
    }

    /// [`Chrome::new`] for a page that has just counted the approvals waiting for the
    /// caller (`pending`), so the count is not read twice.
    pub async fn counted(
        portal: &S,
        visit: &Visit,
        section: Section,
        title: impl Into<String>,
        pending: Option<usize>,
    ) -> Result<Self, Response> {
        let caller = visit.caller.clone();
        let known = pending;
        let (pending, auditor) = portal
            .app
            .read(move |tx, st| {
                let access = st.access_view();
                let now = st.clock.now();
                let pending = match known {
                    Some(n) => n,
                    None => visibility::awaiting_decision(tx, &caller, &access, now, None)?.len(),
                };
                let auditor = visibility::audit_restriction(&caller, &access, now).is_ok();
                Ok((pending, auditor))
            })
            .await
            .map_err(|e| ErrorPage::from_api(&visit.request_id, e).into_response())?;
        let approvals = if pending > 0 {
            format!("Approvals ({pending})")
        } else {
            "Approvals".to_string()
        };
        let mut links = vec![
            (Section::MyRoles, "My roles".to_string(), "/ui/"),
            (
                Section::MyRequests,
                "My requests".to_string(),
                "/ui/requests",
            ),
            (Section::Approvals, approvals, "/ui/approvals"),
            (Section::Resources, "Resources".to_string(), "/ui/resources"),
        ];
        // "Audit log" only for those who may read it (decisions.md §11).
        if auditor {
            links.push((Section::Audit, "Audit log".to_string(), "/ui/audit"));
        }
        let nav = links
            .into_iter()
            .map(|(s, label, href)| NavLink {
                label,
                href,
                current: s == section,
            })
            .collect();
        Ok(Self {
            title: title.into(),
            user: visit.caller.display_name.clone(),
            csrf: visit.session.csrf_token.clone(),
            nav,
            status: None,
            alert: None,
            css: assets::css(),
            js: assets::js(),
            tz: visit.time_zone(),
            tz_known: visit.session.time_zone.is_some(),
        })
    }

    /// The same frame showing `message` as a success.
    pub fn with_status(mut self, message: Option<String>) -> Self {
        self.status = message;
        self
    }

    /// The same frame showing `message` as a failure.
    pub fn with_alert(mut self, message: Option<String>) -> Self {
        self.alert = message;
        self
    }
}

/// "Not found", "Access denied" or "Something went wrong", with the request id and nothing
/// else (portal.md §3).
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    status: StatusCode,
    title: &'static str,
    detail: String,
    request_id: String,
    css: &'static str,
}

impl ErrorPage {
    fn new(status: StatusCode, title: &'static str, detail: &str, request_id: &str) -> Self {
        Self {
            status,
            title,
            detail: detail.to_string(),
            request_id: request_id.to_string(),
            css: assets::css(),
        }
    }

    /// The page for a path that does not exist, or an item the caller may not see.
    pub fn not_found(request_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here, or nothing you may see.",
            request_id,
        )
    }

    /// The page for a refused action or page.
    pub fn denied(request_id: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Access denied",
            "You may not use this page or action.",
            request_id,
        )
    }

    /// The page for a failure of the server's own.
    pub fn internal(request_id: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The server could not finish this request; its log has the details.",
            request_id,
        )
    }

    /// The page for an error of the core: not found, denied, or the server's own.
    pub fn from_domain(request_id: &str, e: &DomainError) -> Self {
        match e.code.status() {
            404 => Self::not_found(request_id),
            401 | 403 => Self::denied(request_id),
            400..=499 => Self::new(
                StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST),
                "Something went wrong",
                &e.message,
                request_id,
            ),
            _ => {
                tracing::error!(error = %e, "portal request failed");
                Self::internal(request_id)
            }
        }
    }

    /// [`ErrorPage::from_domain`] of an API-layer error.
    pub fn from_api(request_id: &str, e: ApiError) -> Self {
        Self::from_domain(request_id, &e.error)
    }
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        let status = self.status;
        match self.render() {
            Ok(body) => html(status, body),
            Err(_) => html(
                status,
                format!("{} (request {})", self.title, self.request_id),
            ),
        }
    }
}

/// Whether a core error belongs next to the form that caused it (a refused input or
/// policy), rather than on an error page.
pub fn is_form_error(e: &DomainError) -> bool {
    let s = e.code.status();
    (400..500).contains(&s) && !matches!(s, 401 | 403 | 404) && e.code != ErrorCode::TooManyRequests
}

/// The clock's now.
pub fn now(portal: &Portal) -> jiff::Timestamp {
    portal.app.clock.now()
}
