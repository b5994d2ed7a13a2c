//! Rolegate's web portal (portal.md): server-rendered pages under `/ui/` for requesters,
//! approvers, administrators and auditors, on the same listener as the API. Pages read
//! through [`rolegate_core::visibility`] and [`rolegate_core::overview`] and change things
//! only through [`rolegate_core::operation`], with the signed-in person as the caller, so
//! every permission, policy, audit record and e-mail is the API's. Every action is a plain
//! form (POST, then redirect, then GET); sessions live in the database.

mod activate;
mod approvals;
mod assets;
mod audit;
mod my_roles;
pub mod oidc;
mod page;
mod requests;
mod resources;
mod session;
mod settings;
mod signin;
mod text;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rolegate_api::AppState;
use rolegate_core::session::SessionLifetime;
use std::sync::Arc;

/// A demo user the development sign-in page offers as a button.
#[derive(Debug, Clone)]
pub struct DemoUser {
    /// What the button signs in as (a directory `userName`, or an administrator's id).
    pub user_name: String,
    /// The button's name: "Sign in as {display_name}".
    pub display_name: String,
}

/// How the portal is set up.
#[derive(Debug, Clone, Default)]
pub struct PortalConfig {
    /// The server's public URL (`--public-url`): the origin forms must come from, and
    /// `Secure` cookies when it is `https`. Without it, the request's `Host` is the origin.
    pub public_url: Option<String>,
    /// Whether the development sign-in page exists (development or demo authentication).
    pub development_sign_in: bool,
    /// Buttons of the development sign-in page (`--demo`).
    pub demo_users: Vec<DemoUser>,
    /// Session timeouts.
    pub lifetime: SessionLifetime,
    /// Sign-in with the organisation's OpenID provider (then there is no development
    /// sign-in).
    pub oidc: Option<oidc::OidcClient>,
}

/// The portal's state: the API's, and its own set-up.
pub struct Portal {
    app: Arc<AppState>,
    config: PortalConfig,
}

type S = Arc<Portal>;

/// The portal's routes, `/ui/…` and the browser redirect of `GET /`, ready to merge into
/// the API router (which adds request ids, limits and timeouts around them).
pub fn router(app: Arc<AppState>, config: PortalConfig) -> Router {
    let portal = Arc::new(Portal { app, config });
    Router::new()
        .route("/", get(root))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(my_roles::page))
        .route("/ui/signin", get(signin::form).post(signin::submit))
        .route("/ui/signout", post(signin::sign_out))
        .route("/ui/signed-out", get(signin::signed_out))
        .route("/ui/timezone", post(signin::time_zone))
        .route("/ui/auth/callback", get(oidc::callback))
        .route("/ui/auth/step-up", post(oidc::step_up))
        .route(
            "/ui/activate/{id}",
            get(activate::form).post(activate::submit),
        )
        .route(
            "/ui/extend/{id}",
            get(my_roles::extend_form).post(my_roles::extend),
        )
        .route(
            "/ui/renew/{id}",
            get(my_roles::renew_form).post(my_roles::renew),
        )
        .route(
            "/ui/deactivate/{id}",
            get(my_roles::deactivate_form).post(my_roles::deactivate),
        )
        .route("/ui/requests", get(requests::list))
        .route("/ui/requests/{id}", get(requests::show))
        .route("/ui/requests/{id}/cancel", post(requests::cancel))
        .route("/ui/approvals", get(approvals::list))
        .route(
            "/ui/approvals/{id}/{decision}",
            get(approvals::form).post(approvals::decide),
        )
        .route("/ui/resources", get(resources::list))
        .route(
            "/ui/resources/register",
            get(resources::register_form).post(resources::register),
        )
        .route("/ui/resources/{id}", get(resources::show))
        .route("/ui/resources/{id}/export.csv", get(resources::export))
        .route(
            "/ui/resources/{id}/assign",
            get(resources::assign_form).post(resources::assign),
        )
        .route(
            "/ui/resources/{id}/assignments/{aid}/{action}",
            get(resources::change_form).post(resources::change),
        )
        .route(
            "/ui/resources/{id}/settings/{role}",
            get(settings::form).post(settings::save),
        )
        .route("/ui/audit", get(audit::list))
        .route("/ui/audit/verify", post(audit::verify))
        .route("/ui/audit/export.csv", get(audit::export_csv))
        .route("/ui/audit/export.jsonl", get(audit::export_jsonl))
        .route("/ui/audit/{id}", get(audit::show))
        .route("/ui/assets/{name}", get(assets::serve))
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .with_state(portal)
}

/// `GET /`: a browser goes to the portal; API clients get the API's `404`.
async fn root(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        (StatusCode::FOUND, [(header::LOCATION, "/ui/")]).into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn not_found(rid: rolegate_api::extract::RequestId) -> Response {
    page::ErrorPage::not_found(&rid.0).into_response()
}
