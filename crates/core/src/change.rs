//! The last step of every write: load → decide → apply.
//!
//! An operation first *loads* the facts it needs with reads, then *decides* with a pure
//! function that turns those facts into a list of [`Change`]s (or refuses with an error),
//! and [`apply`] writes them in the caller's write transaction. Each change is written
//! together with what always goes with it, in this order: the row, its change
//! notification ([`crate::notification`]) and its access-index change
//! ([`AccessChange`], returned for the caller to apply to its index once the transaction has
//! committed). Audit records and e-mail events are changes of their own, placed by the
//! decision. No other code writes assignment or request rows, so none pairs a notification
//! or an access change by hand, and connectors (a later issue) hook in here.
//!
//! The snapshot rule: a decision reads only its loaded facts, which are the store as read
//! at the start of the write transaction and the access index, which agrees with it then
//! (writes are serialised, and a node catches up with the shared access log before each
//! write). A decision never reads state that its own changes made.

use crate::access::{AccessChange, OpContext};
use crate::assignment::{EndReason, RoleAssignment};
use crate::audit::AuditRecord;
use crate::email::Event;
use crate::error::Result;
use crate::notification::{self, ChangeType};
use crate::request::{Approval, RoleAssignmentRequest};
use crate::store::Tx;
use jiff::Timestamp;

/// One change a decision makes.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new assignment; `administers` says whether its role is Owner or User Access
    /// Administrator (for the access index).
    InsertAssignment {
        /// The assignment.
        assignment: RoleAssignment,
        /// Whether its role administers access.
        administers: bool,
    },
    /// An assignment's new schedule.
    UpdateAssignment {
        /// The assignment as it is now.
        assignment: RoleAssignment,
        /// Whether its role administers access.
        administers: bool,
    },
    /// An expired assignment brought back from history (renewal).
    RestoreAssignment {
        /// The assignment with its new schedule.
        assignment: RoleAssignment,
        /// Whether its role administers access.
        administers: bool,
    },
    /// An assignment moved to history.
    EndAssignment {
        /// The assignment.
        assignment: RoleAssignment,
        /// When it ended.
        at: Timestamp,
        /// Why.
        reason: EndReason,
        /// The request that ended it, if one did.
        request_id: Option<String>,
    },
    /// A new request, with who may approve it when it awaits approval.
    InsertRequest {
        /// The request.
        request: RoleAssignmentRequest,
        /// The ApprovalRule's users and groups (empty unless `PendingApproval`).
        approvers: Vec<String>,
    },
    /// A request's new state; its `version` is one more than the stored one (optimistic
    /// concurrency: a request changed since it was loaded fails with `Conflict`).
    UpdateRequest(RoleAssignmentRequest),
    /// One approver's decision.
    InsertApproval(Approval),
    /// An audit record.
    Audit(AuditRecord),
    /// An e-mail event about a request (sent when e-mail is on).
    Email {
        /// The request as it is after the change.
        request: RoleAssignmentRequest,
        /// What happened.
        event: Event,
    },
}

/// Writes `changes` in order in `tx` at `ctx.now`, each with its change notification, and
/// returns the access-index changes they make, in order.
pub fn apply(tx: &mut dyn Tx, ctx: &OpContext, changes: Vec<Change>) -> Result<Vec<AccessChange>> {
    let mut access = Vec::new();
    for change in changes {
        match change {
            Change::InsertAssignment {
                assignment,
                administers,
            } => {
                tx.insert_assignment(&assignment)?;
                notification::assignment_changed(tx, ctx.now, &assignment, ChangeType::Created)?;
                access.push(AccessChange::Upsert(assignment, administers));
            }
            Change::UpdateAssignment {
                assignment,
                administers,
            } => {
                tx.update_assignment(&assignment)?;
                notification::assignment_changed(tx, ctx.now, &assignment, ChangeType::Updated)?;
                access.push(AccessChange::Upsert(assignment, administers));
            }
            Change::RestoreAssignment {
                assignment,
                administers,
            } => {
                tx.restore_assignment(&assignment)?;
                notification::assignment_changed(tx, ctx.now, &assignment, ChangeType::Updated)?;
                access.push(AccessChange::Upsert(assignment, administers));
            }
            Change::EndAssignment {
                assignment,
                at,
                reason,
                request_id,
            } => {
                tx.end_assignment(&assignment, at, reason, request_id.as_deref())?;
                notification::assignment_changed(tx, ctx.now, &assignment, ChangeType::Deleted)?;
                access.push(AccessChange::Remove {
                    subject_id: assignment.subject_id,
                    assignment_id: assignment.id,
                });
            }
            Change::InsertRequest { request, approvers } => {
                tx.insert_request(&request)?;
                notification::request_changed(tx, ctx.now, &request, ChangeType::Created)?;
                if !approvers.is_empty() {
                    tx.set_request_approvers(&request.id, &approvers)?;
                }
            }
            Change::UpdateRequest(request) => {
                tx.update_request(&request)?;
                notification::request_changed(tx, ctx.now, &request, ChangeType::Updated)?;
            }
            Change::InsertApproval(a) => tx.insert_approval(&a)?,
            Change::Audit(record) => tx.append_audit(&record)?,
            Change::Email { request, event } => crate::email::notify(tx, ctx, &request, event)?,
        }
    }
    Ok(access)
}
