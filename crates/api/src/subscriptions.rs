//! `/beta/subscriptions`: Graph change-notification subscriptions (decisions.md §12). The
//! rules are in [`rolegate_core::notification`]; this module parses, runs the endpoint
//! validation on a blocking thread (outside the write lock) and renders.

use crate::error::ApiResult;
use crate::extract::{Auth, Fields, JsonObject, RequestId};
use crate::state::{AppState, Operation};
use crate::webhook;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rolegate_core::access::{AccessChange, Caller, OpContext};
use rolegate_core::audit::About;
use rolegate_core::error::{DomainError, Result};
use rolegate_core::notification::{self, NewSubscription, Subscription, VALIDATION_TIMEOUT};
use rolegate_core::operation;
use rolegate_core::schedule::{format_datetime, parse_datetime};
use rolegate_core::visibility;
use serde_json::{Value, json};
use std::sync::Arc;

const CONTEXT: &str = "https://graph.microsoft.com/beta/$metadata#subscriptions";

/// A subscription as Graph renders it to `viewer` (`clientState` only where
/// [`visibility::sees_client_state`]).
fn render(s: &Subscription, viewer: &Caller) -> Value {
    let client_state = visibility::sees_client_state(viewer, s).then_some(s.client_state.as_str());
    json!({
        "id": s.id,
        "resource": s.resource,
        "changeType": s.change_type_list(),
        "notificationUrl": s.notification_url,
        "expirationDateTime": format_datetime(s.expires_at),
        "clientState": client_state,
        "creatorId": s.creator_id,
    })
}

/// Runs `f` with an operation context for `caller` at the current time.
fn with_ctx<T>(
    s: &AppState,
    caller: &Caller,
    correlation_id: &str,
    f: impl FnOnce(&OpContext) -> T,
) -> T {
    let view = s.access_view();
    let new_id = crate::new_id;
    f(&OpContext {
        caller,
        access: &view,
        now: s.clock.now(),
        correlation_id,
        new_id: &new_id,
        mail: s.mail.as_ref(),
    })
}

fn about(id: &str) -> About {
    About::entity("Subscription", id, "subscriptionId")
}

/// Audits a refusal found before the write (through the write path's refusal record) and
/// returns it.
async fn refuse(
    s: &Arc<AppState>,
    caller: Caller,
    rid: String,
    op: Operation,
    e: DomainError,
) -> crate::error::ApiError {
    match s
        .write(caller, rid, op, move |_, _| {
            Err::<((), Vec<AccessChange>), _>(e.clone())
        })
        .await
    {
        Ok(()) => DomainError::internal("a refusal was not refused").into(),
        Err(e) => e,
    }
}

/// `POST /beta/subscriptions`.
pub async fn create(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    RequestId(rid): RequestId,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let op = Operation::new("Notification", "Create subscription");
    let viewer = c.clone();
    let new = match parse_new(&body) {
        Ok(new) => new,
        Err(e) => return Err(refuse(&s, c, rid, op, e).await),
    };
    let prepared = with_ctx(&s, &c, &rid, |ctx| notification::prepare(ctx, &new));
    let sub = match prepared {
        Ok(sub) => sub,
        Err(e) => return Err(refuse(&s, c, rid, op, e).await),
    };
    let policy = s.webhooks.clone();
    let url = sub.notification_url.clone();
    let validated = tokio::task::spawn_blocking(move || {
        webhook::validate_endpoint(&policy, &url, VALIDATION_TIMEOUT)
    })
    .await
    .unwrap_or_else(|e| {
        Err(DomainError::internal(format!(
            "validation task failed: {e}"
        )))
    });
    if let Err(e) = validated {
        return Err(refuse(&s, c, rid, op.about(about(&sub.id)), e).await);
    }
    let sub = s
        .write(c, rid, op.about(about(&sub.id)), move |tx, ctx| {
            operation::subscription::create(tx, ctx, &sub)?;
            Ok((sub.clone(), Vec::new()))
        })
        .await?;
    let mut v = render(&sub, &viewer);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("@odata.context".into(), json!(format!("{CONTEXT}/$entity")));
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn parse_new(body: &serde_json::Map<String, Value>) -> Result<NewSubscription> {
    let required = |name: &str| -> Result<String> {
        body.opt_str(name)?
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| notification::invalid(format!("`{name}` is required")))
    };
    Ok(NewSubscription {
        change_type: required("changeType")?,
        notification_url: required("notificationUrl")?,
        resource: required("resource")?,
        expires_at: Some(parse_datetime(&required("expirationDateTime")?)?),
        client_state: body.opt_str("clientState")?,
    })
}

/// `GET /beta/subscriptions`: the caller's (all of them for tenant administrators).
pub async fn list(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    RequestId(rid): RequestId,
) -> ApiResult<Json<Value>> {
    let viewer = c.clone();
    let subs = s
        .read(move |tx, st| with_ctx(st, &c, &rid, |ctx| operation::subscription::list(tx, ctx)))
        .await?;
    Ok(Json(json!({
        "@odata.context": CONTEXT,
        "value": subs.iter().map(|x| render(x, &viewer)).collect::<Vec<_>>(),
    })))
}

/// `GET /beta/subscriptions/{id}`.
pub async fn get(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    RequestId(rid): RequestId,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let viewer = c.clone();
    let sub = s
        .read(move |tx, st| {
            with_ctx(st, &c, &rid, |ctx| {
                operation::subscription::get(tx, ctx, &id)
            })
        })
        .await?;
    Ok(Json(render(&sub, &viewer)))
}

/// `PATCH /beta/subscriptions/{id}`: renews it to `expirationDateTime`.
pub async fn renew(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    RequestId(rid): RequestId,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let op = Operation::new("Notification", "Renew subscription").about(about(&id));
    let viewer = c.clone();
    let at = match body.opt_str("expirationDateTime") {
        Ok(Some(v)) => parse_datetime(&v),
        Ok(None) => Err(notification::invalid("`expirationDateTime` is required")),
        Err(e) => Err(e),
    };
    let at = match at {
        Ok(at) => at,
        Err(e) => return Err(refuse(&s, c, rid, op, e).await),
    };
    let sub = s
        .write(c, rid, op, move |tx, ctx| {
            Ok((
                operation::subscription::renew(tx, ctx, &id, at)?,
                Vec::new(),
            ))
        })
        .await?;
    Ok(Json(render(&sub, &viewer)))
}

/// `DELETE /beta/subscriptions/{id}`.
pub async fn delete(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    RequestId(rid): RequestId,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let op = Operation::new("Notification", "Delete subscription").about(about(&id));
    s.write(c, rid, op, move |tx, ctx| {
        operation::subscription::delete(tx, ctx, &id)?;
        Ok(((), Vec::new()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
