//! The reminder job (decisions.md §10, §13): e-mails to holders of assignments ending soon,
//! once per assignment, threshold and end ([`crate::reminder`] says which are due,
//! [`crate::scheduler::remind`] decides what one sends).

use super::apply;
use crate::access::OpContext;
use crate::error::Result;
use crate::reminder::Reminder;
use crate::scheduler::Batch;
use crate::store::Tx;

/// Sends up to `limit` reminders per threshold due at `ctx.now`, in the caller's write
/// transaction: for each assignment found, loads its holders and names, decides with
/// [`crate::scheduler::remind`] and applies (the reminder recorded, one e-mail per recipient, one
/// audit record). Does nothing when e-mail is off.
pub fn send_due_reminders(tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
    let mut batch = Batch::default();
    if ctx.mail.is_none() {
        return Ok(batch);
    }
    tx.forget_reminders_ending_by(ctx.now)?;
    let mut full = false;
    for threshold in Reminder::ALL {
        let until = ctx.now.checked_add(threshold.lead()).unwrap_or(ctx.now);
        // Only assignments with no reminder recorded for their end: writes are serialised,
        // so none is recorded by another node between this query and the apply below.
        let candidates = tx.unreminded_assignments(
            threshold.as_str(),
            threshold.for_activations(),
            ctx.now,
            until,
            limit,
        )?;
        full |= candidates.len() >= limit as usize;
        for a in candidates {
            let recipients = super::email::holders(tx, &a.subject_id)?;
            let names = super::load_names(tx, &a.role_definition_id, &a.resource_id)?;
            if let Some(changes) = crate::scheduler::remind(ctx, &a, &recipients, &names) {
                apply(tx, ctx, changes)?;
                batch.done += 1;
            }
        }
    }
    batch.more = full && batch.done > 0;
    Ok(batch)
}
