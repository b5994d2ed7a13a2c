//! Role assignment requests (`governanceRoleAssignmentRequest`): the only way assignments
//! change. This module holds the nine request types and the status state machine; the
//! rules of graph-pim-v2.md §6.15/§7.2 and decisions.md §6 and §13 are pure functions in
//! [`decision`] (facts in, changes out). [`crate::operation::request`] runs each operation
//! inside a write transaction: it loads the facts, decides, applies the changes
//! ([`crate::operation::apply`]) and returns the committed request with the access changes.

pub mod decision;

use crate::access::AccessChange;
use crate::assignment::{AssignmentKey, AssignmentState};
use crate::policy::{RuleResult, TicketInfo};
use crate::schedule::{Schedule, ScheduleInput};
use jiff::{SignedDuration, Timestamp};

/// How long before its end a user may ask to extend an assignment (decisions.md §6).
pub const EXTEND_WINDOW: SignedDuration = SignedDuration::from_hours(14 * 24);
/// How long after its end a user may ask to renew an assignment (decisions.md §6).
pub const RENEW_WINDOW: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The nine request types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    /// Admin assigns a role (eligible or active).
    AdminAdd,
    /// Admin changes an assignment's schedule.
    AdminUpdate,
    /// Admin removes an assignment.
    AdminRemove,
    /// Admin extends an assignment.
    AdminExtend,
    /// Admin renews an expired assignment.
    AdminRenew,
    /// User activates an eligible assignment.
    UserAdd,
    /// User deactivates an activation.
    UserRemove,
    /// User asks to extend an assignment ending soon.
    UserExtend,
    /// User asks to renew an expired assignment.
    UserRenew,
}

impl RequestType {
    const ALL: [Self; 9] = [
        Self::AdminAdd,
        Self::AdminUpdate,
        Self::AdminRemove,
        Self::AdminExtend,
        Self::AdminRenew,
        Self::UserAdd,
        Self::UserRemove,
        Self::UserExtend,
        Self::UserRenew,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminAdd => "AdminAdd",
            Self::AdminUpdate => "AdminUpdate",
            Self::AdminRemove => "AdminRemove",
            Self::AdminExtend => "AdminExtend",
            Self::AdminRenew => "AdminRenew",
            Self::UserAdd => "UserAdd",
            Self::UserRemove => "UserRemove",
            Self::UserExtend => "UserExtend",
            Self::UserRenew => "UserRenew",
        }
    }

    /// Parses a wire name, case-insensitively (clients in the wild send `adminAdd`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether an administrator (R3) makes it, rather than the subject.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Self::AdminAdd
                | Self::AdminUpdate
                | Self::AdminRemove
                | Self::AdminExtend
                | Self::AdminRenew
        )
    }
}

/// A request's fine state (`status.subStatus`); the coarse `status` follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubStatus {
    /// Accepted; the assignment starts later.
    Granted,
    /// Waiting for approvers (UserAdd under an ApprovalRule).
    PendingApproval,
    /// Waiting for an administrator (UserExtend, UserRenew).
    PendingAdminDecision,
    /// The assignment exists.
    Provisioned,
    /// The assignment was removed.
    Revoked,
    /// Canceled by the requester or an administrator.
    Canceled,
    /// Denied by an approver or administrator.
    AdminDenied,
    /// Not decided in time.
    TimedOut,
    /// Could not be carried out when approved.
    Failed,
}

impl SubStatus {
    const ALL: [Self; 9] = [
        Self::Granted,
        Self::PendingApproval,
        Self::PendingAdminDecision,
        Self::Provisioned,
        Self::Revoked,
        Self::Canceled,
        Self::AdminDenied,
        Self::TimedOut,
        Self::Failed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "Granted",
            Self::PendingApproval => "PendingApproval",
            Self::PendingAdminDecision => "PendingAdminDecision",
            Self::Provisioned => "Provisioned",
            Self::Revoked => "Revoked",
            Self::Canceled => "Canceled",
            Self::AdminDenied => "AdminDenied",
            Self::TimedOut => "TimedOut",
            Self::Failed => "Failed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// `InProgress` or `Closed`.
    pub fn coarse(self) -> &'static str {
        if self.is_open() {
            "InProgress"
        } else {
            "Closed"
        }
    }

    /// Whether the request may still change (pending a decision or a start).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Self::Granted | Self::PendingApproval | Self::PendingAdminDecision
        )
    }
}

/// One approver's decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The request.
    pub request_id: String,
    /// Who decided.
    pub approver_id: String,
    /// Their display name.
    pub approver_name: String,
    /// Approved (true) or denied.
    pub approved: bool,
    /// Their justification.
    pub justification: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleAssignmentRequest {
    /// GUID.
    pub id: String,
    /// Target resource.
    pub resource_id: String,
    /// Target role definition.
    pub role_definition_id: String,
    /// Target subject.
    pub subject_id: String,
    /// The operation.
    pub kind: RequestType,
    /// Eligible or active.
    pub state: AssignmentState,
    /// When it was made.
    pub requested_at: Timestamp,
    /// The resolved schedule (None for removals).
    pub schedule: Option<Schedule>,
    /// The requester's justification.
    pub reason: Option<String>,
    /// Stored state; see [`RoleAssignmentRequest::status_at`] for the state at a given time.
    pub sub_status: SubStatus,
    /// One entry per rule evaluated.
    pub status_details: Vec<RuleResult>,
    /// For activations: the eligible assignment used.
    pub linked_eligible_id: Option<String>,
    /// Ticket reference (Rolegate extension).
    pub ticket: Option<TicketInfo>,
    /// Who made it.
    pub requested_by: String,
    /// The assignment it created, changes or removed.
    pub assignment_id: Option<String>,
    /// Emergency access (decisions.md §10).
    pub emergency: bool,
    /// When a pending approval times out.
    pub approval_deadline: Option<Timestamp>,
    /// Optimistic-concurrency version, 1 on insert.
    pub version: i64,
}

impl RoleAssignmentRequest {
    /// The state at `now`, without waiting for the scheduler: a granted request whose start
    /// has come is provisioned; a pending approval past its deadline has timed out.
    pub fn status_at(&self, now: Timestamp) -> SubStatus {
        match self.sub_status {
            SubStatus::Granted if self.schedule.is_some_and(|s| s.start <= now) => {
                SubStatus::Provisioned
            }
            SubStatus::PendingApproval if self.approval_deadline.is_some_and(|d| d <= now) => {
                SubStatus::TimedOut
            }
            s => s,
        }
    }

    /// The assignment key this request is about.
    pub fn key(&self) -> AssignmentKey {
        AssignmentKey {
            resource_id: self.resource_id.clone(),
            role_definition_id: self.role_definition_id.clone(),
            subject_id: self.subject_id.clone(),
            state: self.state,
        }
    }
}

/// A request as the caller made it (already decoded from JSON).
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    /// Target resource id.
    pub resource_id: String,
    /// Target role definition id.
    pub role_definition_id: String,
    /// Target subject id.
    pub subject_id: String,
    /// Operation.
    pub kind: Option<RequestType>,
    /// Eligible or active.
    pub state: Option<AssignmentState>,
    /// Schedule as sent.
    pub schedule: Option<ScheduleInput>,
    /// Justification.
    pub reason: Option<String>,
    /// For activations: the eligible assignment to activate.
    pub linked_eligible_id: Option<String>,
    /// Ticket reference.
    pub ticket: Option<TicketInfo>,
    /// Emergency access asked for.
    pub emergency: bool,
}

/// An approver's or administrator's decision (`updateRequest`).
#[derive(Debug, Clone, Default)]
pub struct DecisionInput {
    /// `AdminApproved` or `AdminDenied`.
    pub decision: String,
    /// Justification.
    pub reason: Option<String>,
    /// For admin decisions: the schedule to grant (defaults to the requested one).
    pub schedule: Option<ScheduleInput>,
}

/// The outcome of an operation: the request as committed and the access changes.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The request.
    pub request: RoleAssignmentRequest,
    /// Changes for the access index.
    pub changes: Vec<AccessChange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn request_types_parse_case_insensitively_and_print_exactly() {
        assert_eq!(RequestType::parse("adminAdd"), Some(RequestType::AdminAdd));
        assert_eq!(
            RequestType::parse("USERRENEW"),
            Some(RequestType::UserRenew)
        );
        assert_eq!(RequestType::parse("AdminDelete"), None);
        for k in RequestType::ALL {
            assert_eq!(RequestType::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn status_is_derived_from_the_clock() {
        let r = RoleAssignmentRequest {
            id: "r".into(),
            resource_id: "x".into(),
            role_definition_id: "d".into(),
            subject_id: "s".into(),
            kind: RequestType::AdminAdd,
            state: AssignmentState::Eligible,
            requested_at: t(0),
            schedule: Some(Schedule {
                start: t(100),
                end: Some(t(200)),
            }),
            reason: None,
            sub_status: SubStatus::Granted,
            status_details: Vec::new(),
            linked_eligible_id: None,
            ticket: None,
            requested_by: "a".into(),
            assignment_id: None,
            emergency: false,
            approval_deadline: None,
            version: 1,
        };
        assert_eq!(r.status_at(t(99)), SubStatus::Granted);
        assert_eq!(r.status_at(t(100)), SubStatus::Provisioned);
        let pending = RoleAssignmentRequest {
            sub_status: SubStatus::PendingApproval,
            approval_deadline: Some(t(50)),
            ..r
        };
        assert_eq!(pending.status_at(t(49)), SubStatus::PendingApproval);
        assert_eq!(pending.status_at(t(50)), SubStatus::TimedOut);
        assert_eq!(SubStatus::TimedOut.coarse(), "Closed");
        assert_eq!(SubStatus::PendingAdminDecision.coarse(), "InProgress");
    }
}
