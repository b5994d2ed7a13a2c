//! What a decision changes: the [`Change`]s a pure decision returns and
//! [`crate::operation::apply`] writes (load → decide → apply; see [`crate::operation`]).

use crate::assignment::{EndReason, RoleAssignment};
use crate::audit::AuditRecord;
use crate::directory::Subject;
use crate::email::Event;
use crate::reminder::Reminder;
use crate::request::{Approval, RoleAssignmentRequest};
use crate::resource::Resource;
use crate::role::{RoleDefinition, RoleSetting};
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
    /// A new subject (user, group or service principal).
    InsertSubject(Subject),
    /// A subject's new attributes.
    UpdateSubject(Subject),
    /// A subject deleted with its memberships; `member_groups` gives each of its direct
    /// members' direct groups afterwards (for the access index).
    DeleteSubject {
        /// The subject.
        subject: Subject,
        /// Each direct member and its direct groups afterwards.
        member_groups: Vec<(String, Vec<String>)>,
    },
    /// A group's direct members replaced; `groups` gives, for each member who joined or
    /// left, its direct groups afterwards (for the access index).
    SetGroupMembers {
        /// The group.
        group_id: String,
        /// Its direct members now.
        members: Vec<String>,
        /// Each member who joined or left and its direct groups afterwards.
        groups: Vec<(String, Vec<String>)>,
    },
    /// A registered resource; `ancestors` are its ancestors' ids, nearest first.
    InsertResource {
        /// The resource.
        resource: Resource,
        /// Its ancestors' ids, nearest first.
        ancestors: Vec<String>,
    },
    /// A role definition with its role setting.
    InsertRoleDefinition {
        /// The definition.
        definition: RoleDefinition,
        /// Its setting.
        setting: RoleSetting,
    },
    /// A role setting's new rules.
    UpdateRoleSetting(RoleSetting),
    /// An audit record.
    Audit(AuditRecord),
    /// A reminder recorded as sent for an assignment's end (once per assignment, threshold
    /// and end).
    RecordReminder {
        /// The assignment.
        assignment_id: String,
        /// Which reminder.
        reminder: Reminder,
        /// The end it is about.
        end: Timestamp,
    },
    /// One e-mail outbox row whose recipient the decision already knows (reminders).
    QueueEmail(crate::email::Email),
    /// An e-mail event about a request (sent when e-mail is on).
    Email {
        /// The request as it is after the change.
        request: RoleAssignmentRequest,
        /// What happened.
        event: Event,
    },
}
