//! Rolegate's HTTP layer: one axum router for the Graph PIM routes under `/beta`, the
//! SCIM 2.0 directory under `/scim/v2`, and `/healthz`, `/readyz`. Every response gets
//! a `request-id`; every error gets the Graph (or SCIM) error envelope.

pub mod auth;
pub mod authzen;
pub mod catch_up_turns;
pub mod connectors;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod graph;
pub mod group_commit;
pub mod limits;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod render;
pub mod scim;
pub mod state;
pub mod subscriptions;
pub mod webhook;

use crate::extract::RequestId;
use crate::graph::Collection;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use rolegate_core::error::{DomainError, ErrorCode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;

pub use state::AppState;

/// Request bodies larger than this are refused with `413` (decisions.md §8).
pub const MAX_BODY_BYTES: usize = 1 << 20;

type S = Arc<AppState>;

fn list_route(c: Collection) -> MethodRouter<S> {
    get(move |s, a, o, p, u, h| graph::list_route(s, a, o, p, u, h, c))
}

fn count_route(c: Collection) -> MethodRouter<S> {
    get(move |s, a, o, p, u, h| graph::count_route(s, a, o, p, u, h, c))
}

fn item_route(c: Collection) -> MethodRouter<S> {
    get(move |s, a, o, p, h| graph::item_route(s, a, o, p, h, c))
}

/// A router that remembers the paths it registers (for the OpenAPI document's test).
#[derive(Default)]
struct Routes {
    router: Router<S>,
    paths: Vec<String>,
}

impl Routes {
    fn route(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.paths.push(path.to_string());
        self.router = self.router.route(path, method_router);
        self
    }
}

/// Every path registered by [`router`], in registration order.
pub fn route_paths() -> Vec<String> {
    routes().paths
}

/// The whole HTTP surface.
pub fn router(state: S) -> Router {
    router_with(state, None)
}

/// The HTTP surface with `extra` routes (the web portal) served beside the API, inside the
/// same request ids, body limit, rate limits and timeouts.
pub fn router_with(state: S, extra: Option<Router>) -> Router {
    let api = routes()
        .router
        .fallback(|| async { (StatusCode::NOT_FOUND, "") })
        .method_not_allowed_fallback(|| async { (StatusCode::METHOD_NOT_ALLOWED, "") })
        .with_state(Arc::clone(&state));
    let app = match extra {
        Some(extra) => api.merge(extra),
        None => api,
    };
    app.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            (StatusCode::INTERNAL_SERVER_ERROR, "").into_response()
        }))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            limit_per_client,
        ))
        .layer(middleware::from_fn(refuse_nul))
        .layer(middleware::from_fn(request_context))
        .layer(middleware::from_fn(echo_pep_request_id))
}

/// AuthZEN routes answer with the enforcement point's `X-Request-ID`, byte for byte,
/// whatever the status (authzen.md §2); Rolegate's own `request-id` stays its own.
async fn echo_pep_request_id(req: Request, next: Next) -> Response {
    let echo = req
        .uri()
        .path()
        .starts_with("/access/")
        .then(|| req.headers().get("x-request-id").cloned())
        .flatten();
    let mut resp = next.run(req).await;
    if let Some(v) = echo {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Refuses a path or query that decodes to a NUL character with `400 BadRequest`, before
/// routing: no id, filter or option holds one, and PostgreSQL refuses NUL in text, so one
/// would otherwise fail deep inside a store (JSON bodies are checked where they are decoded,
/// [`extract::decode_json_object`]).
async fn refuse_nul(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let decoded_nul = |s: &str| percent_encoding::percent_decode_str(s).any(|b| b == 0);
    if decoded_nul(uri.path()) || uri.query().is_some_and(decoded_nul) {
        let e = error::ApiError::from(DomainError::bad_request(
            "the URL holds a NUL character (%00), which no id or query option may contain",
        ));
        return if uri.path().starts_with("/scim") {
            e.into_scim()
        } else {
            e
        }
        .into_response();
    }
    next.run(req).await
}

/// Routes that load balancers and scrapers poll; never rate limited.
const UNLIMITED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The per-client-address rate limit, before authentication (so a request with a forged
/// token still counts). The address is the TCP peer's, or the client a trusted proxy names;
/// a router served without peer addresses (unit tests) limits nothing here.
async fn limit_per_client(State(s): State<S>, req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>()
        && !UNLIMITED_PATHS.contains(&req.uri().path())
        && let Err(e) = s.rate_limits.check_client(peer.ip(), req.headers())
    {
        let e = if req.uri().path().starts_with("/scim") {
            e.into_scim()
        } else {
            e
        };
        return e.into_response();
    }
    next.run(req).await
}

/// Answers `503 ServiceUnavailable` (with `Retry-After`) when the handler has not answered
/// within the request timeout, reading the body included. Work already handed to the
/// database finishes in the background: a timed-out write may still have been applied.
async fn request_timeout(State(s): State<S>, req: Request, next: Next) -> Response {
    let scim = req.uri().path().starts_with("/scim");
    let limit = s.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(timeout_s = limit.as_secs_f64(), "request timed out");
            let e = error::ApiError::from(DomainError::new(
                ErrorCode::ServiceUnavailable,
                format!(
                    "the request took longer than {} s and was abandoned; a change it asked for may still have been applied, so read before retrying",
                    limit.as_secs_f64()
                ),
            ))
            .retry_after(1);
            if scim { e.into_scim() } else { e }.into_response()
        }
    }
}

/// Every route, before the fallbacks, layers and state.
fn routes() -> Routes {
    let p = "/beta/privilegedAccess/{provider}";
    let mut r = Routes::default()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi::serve))
        .route("/readyz", get(readyz))
        .route("/.well-known/rolegate-configuration", get(discovery::serve))
        .route(
            "/.well-known/authzen-configuration",
            get(authzen::configuration),
        )
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/access/v1/search/subject", post(authzen::search::subjects))
        .route(
            "/access/v1/search/resource",
            post(authzen::search::resources),
        )
        .route("/access/v1/search/action", post(authzen::search::actions))
        .route("/beta/me", get(graph::me))
        .route(
            "/beta/me/expiredRoleAssignments",
            get(graph::my_expired_assignments),
        )
        .route("/metrics", get(metrics_text))
        .route("/rolegate/v1/connectors", get(connectors::list))
        .route("/rolegate/v1/connectors/reload", post(connectors::reload))
        .route("/rolegate/v1/connectors/{name}", get(connectors::get))
        .route(
            "/rolegate/v1/connectors/{name}/grants",
            get(connectors::grants),
        )
        .route(
            "/rolegate/v1/connectors/{name}/items",
            get(connectors::items),
        )
        .route(
            "/rolegate/v1/connectors/{name}/reconcile",
            post(connectors::reconcile),
        )
        .route("/beta/privilegedAccess", get(graph::providers))
        .route(p, get(graph::providers))
        .route(&format!("{p}/resources"), list_route(Collection::Resources))
        .route(
            &format!("{p}/resources/$count"),
            count_route(Collection::Resources),
        )
        .route(&format!("{p}/resources/register"), post(graph::register))
        .route(
            &format!("{p}/resources/{{rid}}"),
            item_route(Collection::Resources),
        )
        .route(
            &format!("{p}/resources/{{rid}}/parent"),
            get(
                |s, a, o, Path(mut params): Path<HashMap<String, String>>, h| async move {
                    params.insert("nav".into(), "parent".into());
                    graph::item_route(s, a, o, Path(params), h, Collection::Resources).await
                },
            ),
        );
    for prefix in [p.to_string(), format!("{p}/resources/{{rid}}")] {
        for (name, c) in [
            ("roleDefinitions", Collection::RoleDefinitions),
            ("roleSettings", Collection::RoleSettings),
            ("roleAssignments", Collection::RoleAssignments),
            ("roleAssignmentRequests", Collection::RoleAssignmentRequests),
        ] {
            let base = format!("{prefix}/{name}");
            let mut coll = list_route(c);
            let mut item = item_route(c);
            match c {
                Collection::RoleAssignmentRequests => coll = coll.post(graph::create_request),
                Collection::RoleSettings => item = item.patch(graph::patch_role_setting),
                _ => {}
            }
            r = r
                .route(&base, coll)
                .route(&format!("{base}/$count"), count_route(c))
                .route(&format!("{base}/{{id}}"), item)
                .route(&format!("{base}/{{id}}/{{nav}}"), item_route(c))
                .route(&format!("{base}/{{id}}/{{nav}}/{{nav2}}"), item_route(c));
        }
        r = r
            .route(
                &format!("{prefix}/roleAssignments/export"),
                get(graph::export),
            )
            .route(
                &format!("{prefix}/roleAssignments/export()"),
                get(graph::export),
            )
            .route(
                &format!("{prefix}/roleAssignments/{{id}}/connectorGrants"),
                get(graph::assignment_connector_grants),
            )
            .route(
                &format!("{prefix}/roleAssignmentRequests/{{id}}/cancel"),
                post(graph::cancel_request),
            )
            .route(
                &format!("{prefix}/roleAssignmentRequests/{{id}}/updateRequest"),
                post(graph::update_request),
            );
    }
    r = r.route(
        &format!("{p}/resources/{{rid}}/roleAssignments/expired()"),
        get(graph::expired_assignments),
    );
    let audits = "/beta/auditLogs/directoryAudits";
    r = r
        .route(audits, list_route(Collection::DirectoryAudits))
        .route(
            &format!("{audits}/$count"),
            count_route(Collection::DirectoryAudits),
        )
        .route(
            &format!("{audits}/{{id}}"),
            item_route(Collection::DirectoryAudits),
        );
    r = r
        .route(
            "/beta/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/beta/subscriptions/{id}",
            get(subscriptions::get)
                .patch(subscriptions::renew)
                .delete(subscriptions::delete),
        );
    r = r
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(scim::service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(scim::resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(scim::resource_type))
        .route("/scim/v2/Schemas", get(scim::schemas))
        .route("/scim/v2/Schemas/{id}", get(scim::schema))
        .route("/scim/v2/.search", post(scim::search_all))
        .route("/scim/v2/{coll}", get(scim::list).post(scim::create))
        .route("/scim/v2/{coll}/.search", post(scim::search))
        .route(
            "/scim/v2/{coll}/{id}",
            get(scim::get)
                .put(scim::replace)
                .patch(scim::patch)
                .delete(scim::delete),
        );
    r
}

async fn metrics_text(State(s): State<S>) -> Response {
    let assignments = s.access.read().map(|ix| ix.len()).unwrap_or(0);
    let mut text = metrics::render(assignments);
    if let Some(o) = s.connectors.get() {
        match o.metrics().await {
            Ok(more) => text.push_str(&more),
            Err(e) => tracing::warn!(error = %e, "could not read the connectors' metrics"),
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn readyz(State(s): State<S>) -> Response {
    let store = Arc::clone(&s.store);
    match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response(),
    }
}

/// Headers every response carries unless the handler set them.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("cache-control", "no-store"),
];

/// A new id for something Rolegate makes (a request, an assignment, an audit record, a
/// request's correlation id): a GUID whose leading bits are the time (UUID version 7), so
/// each is inserted at the end of its indexes rather than on a random page of each. Never
/// for secrets (those stay version 4: all random).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Gives every request an id, logs it, and completes error bodies: bare 404/405/413/500
/// responses get the envelope, and every Graph error gets `innerError` with the date and
/// the request id.
async fn request_context(mut req: Request, next: Next) -> Response {
    let id = new_id();
    let client_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let scim = req.uri().path().starts_with("/scim");
    // An error may be answered before the request body is read (401, 403, 405, 413, 429);
    // an HTTP/1.x connection is then closed, so say so instead of letting a keep-alive
    // client reuse it (HTTP/2 resets just the stream and has no `Connection` header).
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let close_after_error = has_body && req.version() < axum::http::Version::HTTP_2;
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        resp = complete_error(resp, &id, client_id.as_deref(), scim).await;
        if close_after_error {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("request-id", v);
    }
    // API responses carry personal data and are never meant to be rendered or cached.
    for (name, value) in SECURITY_HEADERS {
        resp.headers_mut()
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    if let Some(Ok(v)) = client_id.as_deref().map(HeaderValue::from_str) {
        resp.headers_mut().insert("client-request-id", v);
    }
    let elapsed = started.elapsed();
    metrics::record(status.as_u16(), elapsed);
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            elapsed_us = elapsed.as_micros() as u64,
            "handled"
        )
    });
    resp
}

async fn complete_error(resp: Response, id: &str, client_id: Option<&str>, scim: bool) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut value = if bytes.is_empty() {
        let (code, msg) = match parts.status {
            StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => (
                ErrorCode::MethodNotAllowed,
                "this method is not allowed on this route",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                ErrorCode::PayloadTooLarge,
                "the request body is larger than 1 MiB",
            ),
            _ => (
                ErrorCode::InternalServerError,
                "an internal error occurred; the server log has the details",
            ),
        };
        let error = DomainError::new(code, msg);
        let err = if scim {
            error::ApiError::scim(error)
        } else {
            error::ApiError::from(error)
        };
        let (p2, b2) = err.into_response().into_parts();
        parts.headers.insert(
            header::CONTENT_TYPE,
            p2.headers
                .get(header::CONTENT_TYPE)
                .cloned()
                .unwrap_or(HeaderValue::from_static("application/json")),
        );
        let b = axum::body::to_bytes(b2, 64 * 1024)
            .await
            .unwrap_or_default();
        serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null)
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v,
            Err(_) => return Response::from_parts(parts, Body::from(bytes)),
        }
    };
    if let Some(inner) = value.get_mut("error").and_then(|e| e.as_object_mut()) {
        let date = rolegate_core::schedule::format_datetime(rolegate_core::clock::Clock::now(
            &rolegate_core::clock::SystemClock,
        ));
        inner.insert(
            "innerError".into(),
            serde_json::json!({"date": date, "request-id": id, "client-request-id": client_id}),
        );
    }
    let body = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
