//! The connectors' operator API (connectors.md §9) under `/rolegate/v1`: tenant
//! administrators only, Graph error envelope, `{"value": […]}` collections. What it shows
//! comes from the running connectors, which the server binary provides through
//! [`ConnectorOperator`]; without a connectors file the collection is empty.

use crate::error::{ApiError, ApiResult};
use crate::extract::Auth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rolegate_core::access::Caller;
use rolegate_core::error::{DomainError, ErrorCode, Result};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A future the operator returns.
pub type OperatorFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// Filters of `GET …/grants` (exact matches).
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    /// `target`.
    pub target: Option<String>,
    /// `principal`.
    pub principal: Option<String>,
    /// `subjectId`.
    pub subject_id: Option<String>,
    /// `state`.
    pub state: Option<String>,
}

/// How a reconciliation asked for by an operator went.
#[derive(Debug, Clone)]
pub enum PassOutcome {
    /// It finished within the wait: its summary.
    Finished(Value),
    /// Still running: its summary so far.
    Running(Value),
}

/// The running connectors, as the operator API reads and drives them. `None` answers mean
/// "no connector of that name".
pub trait ConnectorOperator: Send + Sync {
    /// Every connector's document (§9 `Connector`), in file order.
    fn connectors(&self) -> OperatorFuture<Vec<Value>>;
    /// One connector's document.
    fn connector(&self, name: &str) -> OperatorFuture<Option<Value>>;
    /// One connector's grant rows (§9 `Grant`), filtered, sorted by target then principal.
    fn grants(&self, name: &str, filter: GrantFilter) -> OperatorFuture<Option<Vec<Value>>>;
    /// One connector's items (§9 `Item`), newest first, at most `top`.
    fn items(
        &self,
        name: &str,
        state: Option<String>,
        top: u32,
    ) -> OperatorFuture<Option<Vec<Value>>>;
    /// Re-arms the connector's dead items and runs a pass now (or joins the running one),
    /// waiting up to 30 s for it.
    fn reconcile(&self, name: &str) -> OperatorFuture<Option<PassOutcome>>;
    /// Re-reads the file given at start: the new connector documents, or the problem lines.
    fn reload(&self) -> OperatorFuture<std::result::Result<Vec<Value>, String>>;
    /// The `rolegate_connector*` metrics (§10) in the Prometheus text format.
    fn metrics(&self) -> OperatorFuture<String>;
}

fn admin_only(c: &Caller) -> ApiResult<()> {
    if c.is_tenant_admin {
        Ok(())
    } else {
        Err(
            DomainError::denied("only tenant administrators may use the connectors' operator API")
                .into(),
        )
    }
}

fn operator(s: &AppState) -> Option<Arc<dyn ConnectorOperator>> {
    s.connectors.get().cloned()
}

fn not_found(name: &str) -> ApiError {
    DomainError::new(
        ErrorCode::ConnectorNotFound,
        format!("there is no connector named `{name}`"),
    )
    .into()
}

fn collection(value: Vec<Value>) -> Response {
    Json(json!({"value": value})).into_response()
}

/// `GET /rolegate/v1/connectors`.
pub async fn list(State(s): State<Arc<AppState>>, Auth(c): Auth) -> ApiResult<Response> {
    admin_only(&c)?;
    let value = match operator(&s) {
        Some(o) => o.connectors().await?,
        None => Vec::new(),
    };
    Ok(collection(value))
}

/// `GET /rolegate/v1/connectors/{name}`.
pub async fn get(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    admin_only(&c)?;
    let o = operator(&s).ok_or_else(|| not_found(&name))?;
    let doc = o.connector(&name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(doc).into_response())
}

/// `GET /rolegate/v1/connectors/{name}/grants?target=&principal=&subjectId=&state=`.
pub async fn grants(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    admin_only(&c)?;
    let o = operator(&s).ok_or_else(|| not_found(&name))?;
    let filter = GrantFilter {
        target: q.get("target").cloned(),
        principal: q.get("principal").cloned(),
        subject_id: q.get("subjectId").cloned(),
        state: q.get("state").cloned(),
    };
    let rows = o
        .grants(&name, filter)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(collection(rows))
}

/// `GET /rolegate/v1/connectors/{name}/items?state=&top=`.
pub async fn items(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    admin_only(&c)?;
    let top = match q.get("top") {
        None => 100,
        Some(t) => match t.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(DomainError::new(
                    ErrorCode::BadRequest,
                    format!("top must be a whole number from 1 to 1000, not `{t}`"),
                )
                .into());
            }
        },
    };
    let state = q.get("state").cloned();
    if let Some(st) = &state
        && rolegate_core::provisioning::delivery::ItemState::parse(st).is_none()
    {
        return Err(DomainError::new(
            ErrorCode::BadRequest,
            format!("state must be one of pending, inProgress, retrying, succeeded, dead, superseded, not `{st}`"),
        )
        .into());
    }
    let o = operator(&s).ok_or_else(|| not_found(&name))?;
    let rows = o
        .items(&name, state, top)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(collection(rows))
}

/// `POST /rolegate/v1/connectors/{name}/reconcile`: `200` with the finished pass, or
/// `202` with it still running after 30 s.
pub async fn reconcile(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    admin_only(&c)?;
    let o = operator(&s).ok_or_else(|| not_found(&name))?;
    Ok(
        match o.reconcile(&name).await?.ok_or_else(|| not_found(&name))? {
            PassOutcome::Finished(summary) => Json(summary).into_response(),
            PassOutcome::Running(summary) => (StatusCode::ACCEPTED, Json(summary)).into_response(),
        },
    )
}

/// `POST /rolegate/v1/connectors/reload`.
pub async fn reload(State(s): State<Arc<AppState>>, Auth(c): Auth) -> ApiResult<Response> {
    admin_only(&c)?;
    let Some(o) = operator(&s) else {
        return Err(DomainError::new(
            ErrorCode::InvalidConnectorConfiguration,
            "the server was started without a connectors file (--connectors); there is nothing to reload",
        )
        .into());
    };
    match o.reload().await? {
        Ok(value) => Ok(collection(value)),
        Err(problems) => {
            Err(DomainError::new(ErrorCode::InvalidConnectorConfiguration, problems).into())
        }
    }
}
