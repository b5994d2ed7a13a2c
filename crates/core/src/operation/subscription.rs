//! Change-notification subscriptions (decisions.md §12): create, read, list, renew and
//! delete, each audited; who may is decided by [`crate::notification`].

use crate::access::OpContext;
use crate::audit::{AuditRecord, Target};
use crate::error::{DomainError, ErrorCode, Result};
use crate::notification::{Subscription, authorize, check_expiration, invalid, may_manage};
use crate::store::{ReadTx, Tx};
use jiff::Timestamp;

fn audit(ctx: &OpContext, s: &Subscription, activity: &str, operation: &str) -> AuditRecord {
    let mut details = vec![
        ("subscriptionId".to_string(), s.id.clone()),
        ("resource".to_string(), s.resource.clone()),
        ("changeType".to_string(), s.change_type_list()),
        (
            "expirationDateTime".to_string(),
            crate::schedule::format_datetime(s.expires_at),
        ),
    ];
    if let Some(r) = &s.resource_id {
        details.push(("resourceId".to_string(), r.clone()));
    }
    AuditRecord {
        target_resources: vec![Target::new("Subscription", &s.id, &s.resource)],
        additional_details: details,
        ..AuditRecord::by(ctx, "Notification", activity, operation)
    }
}

/// Stores a prepared subscription (authorization checked again) with its audit record.
pub fn create(tx: &mut dyn Tx, ctx: &OpContext, s: &Subscription) -> Result<()> {
    authorize(ctx, s.resource_id.as_deref())?;
    if let Some(r) = &s.resource_id
        && tx.resource(r)?.is_none()
    {
        return Err(invalid(format!("resource `{r}` does not exist")));
    }
    tx.insert_subscription(s)?;
    tx.append_audit(&audit(ctx, s, "Create subscription", "Add"))
}

fn not_found(id: &str) -> DomainError {
    DomainError::new(
        ErrorCode::NotFound,
        format!("subscription `{id}` not found"),
    )
}

/// A subscription the caller may manage; others are not found.
pub fn get(tx: &mut dyn ReadTx, ctx: &OpContext, id: &str) -> Result<Subscription> {
    tx.subscription(id)?
        .filter(|s| may_manage(ctx, s))
        .ok_or_else(|| not_found(id))
}

/// The subscriptions the caller may manage.
pub fn list(tx: &mut dyn ReadTx, ctx: &OpContext) -> Result<Vec<Subscription>> {
    Ok(tx
        .subscriptions()?
        .into_iter()
        .filter(|s| may_manage(ctx, s))
        .collect())
}

/// Renews a subscription to `expires_at` (at most [`crate::notification::MAX_LIFETIME`] ahead).
pub fn renew(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    id: &str,
    expires_at: Timestamp,
) -> Result<Subscription> {
    let mut s = get(tx, ctx, id)?;
    // Renewing is subscribing again: the caller needs the rights a new subscription needs.
    authorize(ctx, s.resource_id.as_deref())?;
    check_expiration(expires_at, ctx.now)?;
    s.expires_at = expires_at;
    tx.renew_subscription(&s.id, expires_at)?;
    tx.append_audit(&audit(ctx, &s, "Renew subscription", "Update"))?;
    Ok(s)
}

/// Deletes a subscription and its undelivered notifications.
pub fn delete(tx: &mut dyn Tx, ctx: &OpContext, id: &str) -> Result<()> {
    let s = get(tx, ctx, id)?;
    tx.delete_subscription(&s.id)?;
    tx.append_audit(&audit(ctx, &s, "Delete subscription", "Delete"))
}
