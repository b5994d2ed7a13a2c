//! The scheduler's jobs ([`crate::scheduler::Job`]) as operations: each batch finds due rows
//! inside the write transaction (writes are serialised, so what it finds is current),
//! decides with [`crate::scheduler`] and applies the changes.

use super::apply;
use crate::access::OpContext;
use crate::assignment::EndReason;
use crate::change::Change;
use crate::error::Result;
use crate::request::RoleAssignmentRequest;
use crate::scheduler::{Batch, Job, assignment_has_ended, assignment_record, catch_up};
use crate::store::Tx;

/// Runs one batch of `job` of at most `limit` rows inside the write transaction `tx`, at
/// `ctx.now`.
pub fn run(job: Job, tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
    match job {
        Job::TimeOutApprovals => time_out_approvals(tx, ctx, limit),
        Job::ProvisionGrants => provision_due_grants(tx, ctx, limit),
        Job::ExpireAssignments => expire_ended_assignments(tx, ctx, limit),
        Job::SendReminders => super::reminder::send_due_reminders(tx, ctx, limit),
    }
}

/// Marks up to `limit` granted requests whose start has come as `Provisioned`. Their
/// assignments already exist with their future start (the access index honours the start),
/// so only the stored status changes; no access change results.
pub fn provision_due_grants(tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
    let due = tx.due_grants(ctx.now, limit)?;
    catch_up_batch(tx, ctx, due, limit)
}

/// Marks up to `limit` pending approvals whose deadline has passed as `TimedOut`.
pub fn time_out_approvals(tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
    let expired = tx.expired_approvals(ctx.now, limit)?;
    catch_up_batch(tx, ctx, expired, limit)
}

/// Catches up each of `found` (loaded in this write transaction, so current: writes are
/// serialised) and applies the changes.
fn catch_up_batch(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    found: Vec<RoleAssignmentRequest>,
    limit: u32,
) -> Result<Batch> {
    let mut batch = Batch::default();
    let count = found.len();
    for r in found {
        let names = super::load_names(tx, &r.role_definition_id, &r.resource_id)?;
        if let Some((_, changes)) = catch_up(ctx, &r, &names) {
            batch.changes.extend(apply(tx, ctx, changes)?);
            batch.done += 1;
        }
    }
    Ok(batch.finish(count, limit))
}

/// Moves up to `limit` assignments whose end has passed to history (reason `Expired`, ended
/// at their scheduled end) and removes them from the access index. An expired assignment
/// can still be renewed: renewal finds it in history.
pub fn expire_ended_assignments(tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
    let ended = tx.ended_assignments(ctx.now, limit)?;
    let found = ended.len();
    let mut batch = Batch::default();
    for a in ended {
        let Some(end) = a.schedule.end else {
            continue;
        };
        if !assignment_has_ended(&a, ctx.now) || !tx.claim_ended_assignment(&a.id, ctx.now)? {
            continue;
        }
        let names = super::load_names(tx, &a.role_definition_id, &a.resource_id)?;
        let record = assignment_record(ctx, &a, &names);
        let changes = vec![
            Change::EndAssignment {
                assignment: a,
                at: end,
                reason: EndReason::Expired,
                request_id: None,
            },
            Change::Audit(record),
        ];
        batch.changes.extend(apply(tx, ctx, changes)?);
        batch.done += 1;
    }
    Ok(batch.finish(found, limit))
}
