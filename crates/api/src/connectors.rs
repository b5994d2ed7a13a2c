//! The connectors' operator API (connectors.md §9) under `/rolegate/v1`: tenant
//! administrators only, Graph error envelope, `{"value": […]}` collections. What it shows
//! comes from the running connectors, which the server binary provides through
//! [`ConnectorOperator`]; without a connectors file the collection is empty.

use crate::error::ApiResult;
use crate::extract::Auth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rolegate_core::access::Caller;
use rolegate_core::error::{DomainError, ErrorCode, Result};
use rolegate_core::provisioning::delivery::ItemState;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A future the operator returns.
pub type OperatorFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// How a reconciliation asked for by an operator went.
#[derive(Debug, Clone)]
pub enum PassOutcome {
    /// It finished within the wait: its summary.
    Finished(Value),
    /// Still running: its summary so far.
    Running(Value),
}

/// The running connectors, as the operator API reads and drives them. A name that is not
/// a connector's answers [`connector_not_found`].
pub trait ConnectorOperator: Send + Sync {
    /// Every connector's document (§9 `Connector`), in file order.
    fn connectors(&self) -> OperatorFuture<Vec<Value>>;
    /// One connector's document.
    fn connector(&self, name: &str) -> OperatorFuture<Value>;
    /// Every grant row (§9 `Grant`) of one connector, sorted by target then principal.
    fn grants(&self, name: &str) -> OperatorFuture<Vec<Value>>;
    /// The grant rows, across connectors, that any of `assignment_ids` justifies, each with
    /// its `connector` and `kind`; only `only_subject`'s rows when given (a holder's own
    /// view, whose errors carry no message).
    fn assignment_grants(
        &self,
        assignment_ids: Vec<String>,
        only_subject: Option<String>,
    ) -> OperatorFuture<Vec<Value>>;
    /// One connector's items (§9 `Item`), newest first, at most `top`.
    fn items(&self, name: &str, state: Option<ItemState>, top: u32) -> OperatorFuture<Vec<Value>>;
    /// Re-arms the connector's dead items and runs a pass now (or joins the running one),
    /// waiting up to 30 s for it.
    fn reconcile(&self, name: &str) -> OperatorFuture<PassOutcome>;
    /// Re-reads the file given at start: the new connector documents, or the problem lines.
    fn reload(&self) -> OperatorFuture<std::result::Result<Vec<Value>, String>>;
    /// The `rolegate_connector*` metrics (§10) in the Prometheus text format.
    fn metrics(&self) -> OperatorFuture<String>;
}

/// `404 ConnectorNotFound` for `name`.
pub fn connector_not_found(name: &str) -> DomainError {
    DomainError::new(
        ErrorCode::ConnectorNotFound,
        format!("there is no connector named `{name}`"),
    )
}

/// Grant rows per page of `GET …/grants`.
const GRANTS_PAGE: usize = 1000;

/// The running connectors, for a tenant administrator; `None` without a connectors file.
fn operator(s: &AppState, c: &Caller) -> ApiResult<Option<Arc<dyn ConnectorOperator>>> {
    if !c.is_tenant_admin {
        return Err(DomainError::denied(
            "only tenant administrators may use the connectors' operator API",
        )
        .into());
    }
    Ok(s.connectors.get().cloned())
}

/// The running connectors, which must include `name`'s (checked by each call).
fn operator_of(s: &AppState, c: &Caller, name: &str) -> ApiResult<Arc<dyn ConnectorOperator>> {
    operator(s, c)?.ok_or_else(|| connector_not_found(name).into())
}

fn collection(value: Vec<Value>) -> Response {
    Json(json!({"value": value})).into_response()
}

/// `GET /rolegate/v1/connectors`.
pub async fn list(State(s): State<Arc<AppState>>, Auth(c): Auth) -> ApiResult<Response> {
    let value = match operator(&s, &c)? {
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
    let doc = operator_of(&s, &c, &name)?.connector(&name).await?;
    Ok(Json(doc).into_response())
}

/// `GET /rolegate/v1/connectors/{name}/grants?target=&principal=&subjectId=&state=`: exact
/// matches, 1000 rows a page with `@odata.nextLink` (`$skip`).
pub async fn grants(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let skip = match q.get("$skip").or(q.get("skip")) {
        None => 0,
        Some(n) => n.parse::<usize>().map_err(|_| {
            DomainError::bad_request(format!("$skip must be a whole number, not `{n}`"))
        })?,
    };
    let rows = operator_of(&s, &c, &name)?.grants(&name).await?;
    let wanted = |row: &Value, key: &str, param: &str| {
        q.get(param)
            .is_none_or(|w| row[key].as_str() == Some(w.as_str()))
    };
    let matching: Vec<Value> = rows
        .into_iter()
        .filter(|r| {
            wanted(r, "target", "target")
                && wanted(r, "principal", "principal")
                && wanted(r, "subjectId", "subjectId")
                && wanted(r, "state", "state")
        })
        .collect();
    let (page, next) = page_of(matching, skip);
    let mut body = json!({"value": page});
    if let Some(next) = next {
        body["@odata.nextLink"] = json!(crate::graph::next_link(
            &headers,
            &uri,
            u64::try_from(next).unwrap_or(u64::MAX)
        ));
    }
    Ok(Json(body).into_response())
}

/// The page of `rows` from `skip` ([`GRANTS_PAGE`] at most), and where the next one starts
/// when there is one.
fn page_of(rows: Vec<Value>, skip: usize) -> (Vec<Value>, Option<usize>) {
    let next = skip.saturating_add(GRANTS_PAGE);
    let more = rows.len() > next;
    let page = rows.into_iter().skip(skip).take(GRANTS_PAGE).collect();
    (page, more.then_some(next))
}

/// `GET /rolegate/v1/connectors/{name}/items?state=&top=`.
pub async fn items(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let o = operator_of(&s, &c, &name)?;
    let top = match q.get("top") {
        None => 100,
        Some(t) => match t.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(DomainError::bad_request(format!(
                    "top must be a whole number from 1 to 1000, not `{t}`"
                ))
                .into());
            }
        },
    };
    let state = match q.get("state") {
        None => None,
        Some(st) => Some(ItemState::parse(st).ok_or_else(|| {
            DomainError::bad_request(format!(
                "state must be one of pending, inProgress, retrying, succeeded, dead, superseded, not `{st}`"
            ))
        })?),
    };
    Ok(collection(o.items(&name, state, top).await?))
}

/// `POST /rolegate/v1/connectors/{name}/reconcile`: `200` with the finished pass, or
/// `202` with it still running after 30 s.
pub async fn reconcile(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(match operator_of(&s, &c, &name)?.reconcile(&name).await? {
        PassOutcome::Finished(summary) => Json(summary).into_response(),
        PassOutcome::Running(summary) => (StatusCode::ACCEPTED, Json(summary)).into_response(),
    })
}

/// `POST /rolegate/v1/connectors/reload`.
pub async fn reload(State(s): State<Arc<AppState>>, Auth(c): Auth) -> ApiResult<Response> {
    let Some(o) = operator(&s, &c)? else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_rows_come_a_thousand_a_page_with_the_next_page_named() {
        let rows = |n: usize| (0..n).map(|i| json!(i)).collect::<Vec<_>>();
        let (page, next) = page_of(rows(2500), 0);
        assert_eq!(
            (page.len(), page[0].clone(), next),
            (1000, json!(0), Some(1000))
        );
        let (page, next) = page_of(rows(2500), 2000);
        assert_eq!(
            (page.len(), page[0].clone(), next),
            (500, json!(2000), None)
        );
        assert_eq!(page_of(rows(1000), 0).1, None);
        assert_eq!(page_of(rows(3), 10).0.len(), 0);
    }
}
