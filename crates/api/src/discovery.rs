//! `GET /.well-known/rolegate-configuration` (cli.md §1): what a client learns about this
//! server before it signs in. Public, like the issuer's own discovery document.

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;

/// How clients sign in here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClientDiscovery {
    /// The OpenID issuer whose tokens the server accepts (`--oidc-issuer`).
    pub issuer: Option<String>,
    /// The public client the command line signs in as (`--oidc-cli-client-id`).
    pub cli_client_id: Option<String>,
    /// The scopes the command line asks for.
    pub scopes: Vec<String>,
    /// The issuer offers the device authorization grant (RFC 8628).
    pub device_authorization: bool,
    /// Development authentication (HS256 tokens; `rolegate login --dev-user`).
    pub development: bool,
}

/// The scopes every command-line sign-in asks for, before `--oidc-cli-scope`.
pub const BASE_CLI_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// `GET /.well-known/rolegate-configuration`: no authentication.
pub async fn serve(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        axum::Json(&s.discovery),
    )
        .into_response()
}
