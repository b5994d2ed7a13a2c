//! Operations: each write runs load → decide → apply inside one write transaction.
//!
//! An operation *loads* the facts it needs with reads, *decides* with a pure function of
//! the rule modules ([`crate::request::decision`], [`crate::policy`], [`crate::scheduler`],
//! …) that returns [`Change`]s or refuses, and [`apply`] writes them. Each change is
//! written together with what always goes with it, in this order: the row, its change
//! notification and its access-index change ([`AccessChange`], returned for the caller to
//! apply to its index once the transaction has committed). Audit records and e-mail events
//! are changes of their own, placed by the decision. No other code writes assignment or
//! request rows, so none pairs a notification or an access change by hand, and connectors
//! (a later issue) hook in here.
//!
//! The snapshot rule: a decision reads only its loaded facts, which are the store as read
//! at the start of the write transaction and the access index, which agrees with it then
//! (writes are serialised, and a node catches up with the shared access log before each
//! write). A decision never reads state that its own changes made.
//!
//! This is the layer above the storage port ([`crate::store`]): the rule modules below it
//! never reach the store, so the module graph has no cycle.

pub mod audit;
pub mod directory;
pub mod email;
pub mod reminder;
pub mod request;
pub mod resource;
pub mod role;
pub mod scheduler;
pub mod subscription;

use crate::access::{AccessChange, OpContext};
use crate::change::Change;
use crate::error::Result;
use crate::notification::{ChangeType, Entity};
use crate::store::{ReadTx, Tx};
use jiff::Timestamp;

/// Writes `changes` in order in `tx` at `ctx.now`, each with its change notification, and
/// Ends the portal sessions of a subject that is disabled or deleted (portal.md §2): those
/// signed in by its id and those by its external id (an OIDC token's `oid`/`sub`).
fn end_portal_sessions(tx: &mut dyn Tx, subject: &crate::directory::Subject) -> Result<()> {
    tx.delete_portal_sessions_of(&subject.id)?;
    if let Some(external) = &subject.external_id {
        tx.delete_portal_sessions_of(external)?;
    }
    Ok(())
}

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
                assignment_changed(tx, ctx.now, &assignment, ChangeType::Created)?;
                access.push(AccessChange::Upsert(assignment, administers));
            }
            Change::UpdateAssignment {
                assignment,
                administers,
            } => {
                tx.update_assignment(&assignment)?;
                assignment_changed(tx, ctx.now, &assignment, ChangeType::Updated)?;
                access.push(AccessChange::Upsert(assignment, administers));
            }
            Change::RestoreAssignment {
                assignment,
                administers,
            } => {
                tx.restore_assignment(&assignment)?;
                assignment_changed(tx, ctx.now, &assignment, ChangeType::Updated)?;
                access.push(AccessChange::Upsert(assignment, administers));
            }
            Change::EndAssignment {
                assignment,
                at,
                reason,
                request_id,
            } => {
                tx.end_assignment(&assignment, at, reason, request_id.as_deref())?;
                assignment_changed(tx, ctx.now, &assignment, ChangeType::Deleted)?;
                access.push(AccessChange::Remove {
                    subject_id: assignment.subject_id,
                    assignment_id: assignment.id,
                    resource_id: Some(assignment.resource_id),
                });
            }
            Change::InsertRequest { request, approvers } => {
                tx.insert_request(&request)?;
                request_changed(tx, ctx.now, &request, ChangeType::Created)?;
                if !approvers.is_empty() {
                    tx.set_request_approvers(&request.id, &approvers)?;
                }
            }
            Change::UpdateRequest(request) => {
                tx.update_request(&request)?;
                request_changed(tx, ctx.now, &request, ChangeType::Updated)?;
            }
            Change::InsertApproval(a) => tx.insert_approval(&a)?,
            Change::RecordReminder {
                assignment_id,
                reminder,
                end,
            } => {
                // Already recorded (the due query skips those) is recorded all the same.
                tx.claim_reminder(&assignment_id, reminder.as_str(), end, ctx.now)?;
            }
            Change::QueueEmail(e) => tx.enqueue_email(&e)?,
            Change::InsertResource {
                resource,
                ancestors,
            } => {
                tx.insert_resource(&resource, &ancestors)?;
                access.push(AccessChange::Resource {
                    id: resource.id,
                    parent_id: resource.parent_id,
                });
            }
            Change::InsertRoleDefinition {
                definition,
                setting,
            } => {
                tx.insert_role_definition(&definition, &setting)?;
                access.push(AccessChange::Role {
                    id: definition.id,
                    template_id: definition.template_id,
                });
            }
            Change::UpdateRoleSetting(setting) => tx.update_role_setting(&setting)?,
            Change::InsertSubject(subject) => {
                tx.insert_subject(&subject, ctx.now)?;
                access.push(AccessChange::Subject(subject));
            }
            Change::UpdateSubject(subject) => {
                tx.update_subject(&subject)?;
                if !subject.active {
                    end_portal_sessions(tx, &subject)?;
                }
                access.push(AccessChange::Subject(subject));
            }
            Change::SetGroupMembers {
                group_id,
                members,
                groups,
            } => {
                tx.set_group_members(&group_id, &members)?;
                access.extend(
                    groups
                        .into_iter()
                        .map(|(member_id, groups)| AccessChange::Groups { member_id, groups }),
                );
            }
            Change::DeleteSubject {
                subject,
                member_groups,
            } => {
                tx.delete_subject(&subject.id)?;
                end_portal_sessions(tx, &subject)?;
                access.extend(
                    member_groups
                        .into_iter()
                        .map(|(member_id, groups)| AccessChange::Groups { member_id, groups }),
                );
                access.push(AccessChange::SubjectRemoved(subject.id));
            }
            Change::Audit(record) => tx.append_audit(&record)?,
            Change::Email { request, event } => email::notify(tx, ctx, &request, event)?,
        }
    }
    Ok(access)
}

/// Records that `entity` `id` on resource `resource_id` had `change`: one outbox row per
/// live subscription that wants it, in the caller's transaction.
fn changed(
    tx: &mut dyn Tx,
    now: Timestamp,
    entity: Entity,
    id: &str,
    change: ChangeType,
    resource_id: &str,
) -> Result<()> {
    tx.enqueue_notifications(entity, id, change, resource_id, now)
}

/// Records a change of request `r` (see [`changed`]).
fn request_changed(
    tx: &mut dyn Tx,
    now: Timestamp,
    r: &crate::request::RoleAssignmentRequest,
    change: ChangeType,
) -> Result<()> {
    changed(tx, now, Entity::Request, &r.id, change, &r.resource_id)
}

/// Records a change of assignment `a` (see [`changed`]).
fn assignment_changed(
    tx: &mut dyn Tx,
    now: Timestamp,
    a: &crate::assignment::RoleAssignment,
    change: ChangeType,
) -> Result<()> {
    changed(tx, now, Entity::Assignment, &a.id, change, &a.resource_id)
}

/// Loads the names an audit record shows for role definition `role_id` and resource
/// `resource_id` (their ids when they no longer resolve).
pub fn load_names(
    tx: &mut dyn ReadTx,
    role_id: &str,
    resource_id: &str,
) -> Result<crate::scheduler::Names> {
    Ok(crate::scheduler::Names {
        role_id: role_id.to_string(),
        role: tx
            .role_definition(role_id)?
            .map_or_else(|| role_id.to_string(), |d| d.display_name),
        resource_id: resource_id.to_string(),
        resource: tx
            .resource(resource_id)?
            .map_or_else(|| resource_id.to_string(), |r| r.display_name),
    })
}
