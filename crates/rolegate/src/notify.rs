//! The change-notification delivery worker (decisions.md §12, §13): it leases due rows of
//! the durable outbox (a guarded update, so several nodes can share it), renders each
//! changed entity as it is now, and POSTs it, signed, to the subscription's endpoint on a
//! blocking thread with a short timeout. A `2xx` acknowledges (the row is deleted);
//! anything else is retried with exponential backoff (first retry within 10 s, doubling)
//! until four hours have passed since the change, then given up. Deliveries run
//! concurrently, so a receiver that hangs delays only its own notifications.

use rolegate_api::AppState;
use rolegate_api::render::{self, Entity};
use rolegate_api::webhook;
use rolegate_core::assignment::MemberType;
use rolegate_core::error::Result;
use rolegate_core::notification::{self, ChangeType, Delivery, TargetPolicy};
use rolegate_core::schedule::format_datetime;
use rolegate_core::store;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// At most this many deliveries are in flight at once.
const MAX_IN_FLIGHT: usize = 32;

/// How the worker delivers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where webhooks may point (checked again at each delivery).
    pub policy: TargetPolicy,
    /// The first retry's delay; each further one doubles.
    pub retry_base: Duration,
    /// How long a receiver has to answer.
    pub timeout: Duration,
    /// How often the outbox is polled.
    pub poll: Duration,
    /// The `tenantId` of notifications.
    pub tenant_id: String,
}

/// Runs until `stop` turns true or its sender is dropped; deliveries in flight then
/// finish (each within its timeout), and their rows are acknowledged or rescheduled.
pub async fn run(state: Arc<AppState>, cfg: Config, mut stop: watch::Receiver<bool>) {
    let cfg = Arc::new(cfg);
    let owner = format!("node-{}", uuid::Uuid::new_v4().simple());
    let mut ticks = tokio::time::interval(cfg.poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = ticks.tick() => {}
        }
        while in_flight.try_join_next().is_some() {}
        let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
        if room == 0 {
            continue;
        }
        let (s, o, c) = (Arc::clone(&state), owner.clone(), Arc::clone(&cfg));
        let claimed = tokio::task::spawn_blocking(move || claim(&s, &o, &c, room)).await;
        let batch = match claimed {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not read the notification outbox");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "notification outbox task failed");
                continue;
            }
        };
        for d in batch {
            let (s, o, c) = (Arc::clone(&state), owner.clone(), Arc::clone(&cfg));
            in_flight.spawn_blocking(move || deliver_one(&s, &o, &c, d));
        }
    }
    while in_flight.join_next().await.is_some() {}
    tracing::info!("notification worker stopped");
}

fn claim(state: &AppState, owner: &str, cfg: &Config, limit: usize) -> Result<Vec<Delivery>> {
    let now = state.clock.now();
    // The lease outlives the delivery's timeout, so nobody else takes a row in flight.
    let lease = jiff::SignedDuration::try_from(cfg.timeout * 2 + Duration::from_secs(30))
        .unwrap_or(jiff::SignedDuration::from_secs(60));
    let until = now.checked_add(lease).unwrap_or(now);
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    store::write(state.store.as_ref(), |tx| {
        tx.claim_deliveries(owner, now, until, limit)
    })
}

/// The notification's JSON body (`{"value":[…]}`), with the entity as it is now.
fn body(state: &AppState, cfg: &Config, d: &Delivery) -> Result<Vec<u8>> {
    let now = state.clock.now();
    let (kind, collection) = match d.entity {
        notification::Entity::Request => (
            "#microsoft.graph.governanceRoleAssignmentRequest",
            d.entity.collection(),
        ),
        notification::Entity::Assignment => (
            "#microsoft.graph.governanceRoleAssignment",
            d.entity.collection(),
        ),
    };
    let mut data = Map::new();
    if d.change != ChangeType::Deleted {
        let entity = store::read(state.store.as_ref(), |tx| {
            Ok(match d.entity {
                notification::Entity::Request => tx.request(&d.entity_id)?.map(Entity::Request),
                notification::Entity::Assignment => tx
                    .assignment(&d.entity_id)?
                    .map(|a| Entity::Assignment(a, MemberType::Direct)),
            })
        })?;
        if let Some(e) = entity {
            data = render::properties(&e, now);
        }
    }
    data.insert("@odata.type".into(), json!(kind));
    data.insert(
        "@odata.id".into(),
        json!(format!(
            "privilegedAccess/azureResources/{collection}('{}')",
            d.entity_id
        )),
    );
    data.insert("id".into(), json!(d.entity_id));
    let s = &d.subscription;
    let doc = json!({"value": [{
        "id": d.id,
        "subscriptionId": s.id,
        "subscriptionExpirationDateTime": format_datetime(s.expires_at),
        "changeType": d.change.as_str(),
        "resource": format!("privilegedAccess/azureResources/{collection}/{}", d.entity_id),
        "clientState": s.client_state,
        "tenantId": cfg.tenant_id,
        "resourceData": Value::Object(data),
    }]});
    serde_json::to_vec(&doc)
        .map_err(|e| rolegate_core::DomainError::internal(format!("notification body: {e}")))
}

fn deliver_one(state: &AppState, owner: &str, cfg: &Config, d: Delivery) {
    let creator_is_admin = state.auth.is_admin([d.subscription.creator_id.as_str()]);
    let entitled = state.access.read().is_ok_and(|ix| {
        notification::creator_still_entitled(
            &d.subscription,
            creator_is_admin,
            &*ix,
            state.clock.now(),
        )
    });
    if !entitled {
        tracing::info!(notification = %d.id, subscription = %d.subscription.id, "the subscription's creator lost the rights it needs; notification dropped");
        if let Err(e) = store::write(state.store.as_ref(), |tx| tx.finish_delivery(&d.id, owner)) {
            tracing::warn!(notification = %d.id, error = %e, "could not drop a notification");
        }
        return;
    }
    let outcome = body(state, cfg, &d).map_err(|e| e.message).and_then(|b| {
        webhook::deliver(
            &cfg.policy,
            &d.subscription.notification_url,
            &b,
            &d.subscription.client_state,
            cfg.timeout,
        )
    });
    let now = state.clock.now();
    let done = match outcome {
        Ok(status) if (200..300).contains(&status) => {
            store::write(state.store.as_ref(), |tx| tx.finish_delivery(&d.id, owner))
        }
        failed => {
            let why = match failed {
                Ok(status) => format!("the receiver answered {status}"),
                Err(e) => e,
            };
            match notification::retry_at(d.first_due, now, d.attempts + 1, cfg.retry_base) {
                Some(at) => {
                    tracing::info!(notification = %d.id, subscription = %d.subscription.id, attempts = d.attempts + 1, error = %why, "notification not delivered; will retry");
                    store::write(state.store.as_ref(), |tx| {
                        tx.retry_delivery(&d.id, owner, at)
                    })
                }
                None => {
                    tracing::warn!(notification = %d.id, subscription = %d.subscription.id, error = %why, "notification given up after four hours of retries");
                    store::write(state.store.as_ref(), |tx| tx.finish_delivery(&d.id, owner))
                }
            }
        }
    };
    if let Err(e) = done {
        tracing::warn!(notification = %d.id, error = %e, "could not record a delivery attempt; the lease will run out and it will be tried again");
    }
}
