//! The reminder job (decisions.md §10, §13): e-mails to holders of assignments ending soon,
//! once per assignment, threshold and end ([`crate::reminder`] decides which are due).

use crate::access::OpContext;
use crate::assignment::RoleAssignment;
use crate::audit::{AuditRecord, Target};
use crate::email::{Email, Event};
use crate::error::Result;
use crate::reminder::{REMINDER_ACTIVITY, Reminder, covered_by, due};
use crate::schedule::format_datetime;
use crate::scheduler::Batch;
use crate::store::Tx;

/// Sends up to `limit` reminders per threshold due at `ctx.now`, in the caller's write
/// transaction: for each, claims it (and the wider ones it covers), writes one e-mail per
/// recipient to the outbox and one audit record. Does nothing when e-mail is off.
pub fn send_due_reminders(tx: &mut dyn Tx, ctx: &OpContext, limit: u32) -> Result<Batch> {
    let mut batch = Batch::default();
    if ctx.mail.is_none() {
        return Ok(batch);
    }
    tx.forget_reminders_ending_by(ctx.now)?;
    let mut full = false;
    for threshold in Reminder::ALL {
        let until = ctx.now.checked_add(threshold.lead()).unwrap_or(ctx.now);
        let candidates = tx.unreminded_assignments(
            threshold.as_str(),
            threshold.for_activations(),
            ctx.now,
            until,
            limit,
        )?;
        full |= candidates.len() >= limit as usize;
        for a in candidates {
            let (Some(reminder), Some(end)) = (due(&a, ctx.now), a.schedule.end) else {
                continue;
            };
            if !tx.claim_reminder(&a.id, reminder.as_str(), end, ctx.now)? {
                continue;
            }
            for wider in covered_by(reminder, &a) {
                if wider != reminder {
                    tx.claim_reminder(&a.id, wider.as_str(), end, ctx.now)?;
                }
            }
            let recipients = super::email::holders(tx, &a.subject_id)?;
            for (recipient_id, address) in &recipients {
                tx.enqueue_email(&Email {
                    id: (ctx.new_id)(),
                    request_id: a.request_id.clone(),
                    assignment_id: Some(a.id.clone()),
                    event: Event::Ending(reminder),
                    recipient_id: recipient_id.clone(),
                    address: address.clone(),
                    first_due: ctx.now,
                    attempts: 0,
                })?;
            }
            let record = reminder_record(tx, ctx, &a, reminder, recipients.len())?;
            tx.append_audit(&record)?;
            batch.done += 1;
        }
    }
    batch.more = full && batch.done > 0;
    Ok(batch)
}

fn reminder_record(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    a: &RoleAssignment,
    reminder: Reminder,
    recipients: usize,
) -> Result<AuditRecord> {
    let mut targets = vec![Target::new("RoleAssignment", &a.id, &a.id)];
    let mut details = vec![("assignmentId".to_string(), a.id.clone())];
    if !a.request_id.is_empty() {
        details.push(("requestId".into(), a.request_id.clone()));
    }
    details.push(("assignmentState".into(), a.state.as_str().into()));
    details.push(("reminder".into(), reminder.as_str().into()));
    super::load_names(tx, &a.role_definition_id, &a.resource_id)?
        .describe(&mut targets, &mut details);
    targets.push(Target::new("Subject", &a.subject_id, &a.subject_id));
    details.push((
        "endDateTime".into(),
        a.schedule.end.map(format_datetime).unwrap_or_default(),
    ));
    details.push(("recipients".into(), recipients.to_string()));
    Ok(crate::scheduler::record(
        ctx,
        REMINDER_ACTIVITY,
        "Update",
        reminder.as_str(),
        targets,
        details,
    ))
}
