//! Role assignments (`governanceRoleAssignment`): eligible and active grants of a role on
//! a resource to a subject, each with a schedule. Whether one is current is always decided
//! against the clock, never by whether a sweeper has run.

use crate::schedule::Schedule;
use jiff::{SignedDuration, Timestamp};

/// Eligible (may activate) or active (holds the access).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AssignmentState {
    /// A standing right to activate the role.
    Eligible,
    /// Usable access.
    Active,
}

impl AssignmentState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eligible => "Eligible",
            Self::Active => "Active",
        }
    }

    /// Parses the wire name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Eligible, Self::Active]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

/// How the subject of a listing holds an assignment (decisions.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberType {
    /// The subject's own assignment on this resource.
    Direct,
    /// Held through a group the subject belongs to.
    Group,
    /// Made on an ancestor of the listed resource.
    Inherited,
}

impl MemberType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "Direct",
            Self::Group => "Group",
            Self::Inherited => "Inherited",
        }
    }
}

/// A grant of a role on a resource to a subject.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleAssignment {
    /// GUID.
    pub id: String,
    /// The resource it is made on.
    pub resource_id: String,
    /// The role (a definition of `resource_id`).
    pub role_definition_id: String,
    /// The user, group or service principal holding it.
    pub subject_id: String,
    /// Eligible or active.
    pub state: AssignmentState,
    /// For an activation: the eligible assignment it came from.
    pub linked_eligible_id: Option<String>,
    /// When it starts and ends.
    pub schedule: Schedule,
    /// The request that created it.
    pub request_id: String,
}

/// An assignment with its place in list order (the store's insertion sequence).
#[derive(Debug, Clone, PartialEq)]
pub struct HeldAssignment {
    /// Where it sorts in a list: lower first.
    pub position: i64,
    /// The assignment.
    pub assignment: RoleAssignment,
}

/// The column rows are gathered by into held lists ([`crate::held_assignments`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeldBy {
    /// The subject holding them.
    Subject,
    /// The resource they are made on.
    Resource,
}

impl RoleAssignment {
    /// Whether it grants anything at `now`.
    pub fn is_current(&self, now: Timestamp) -> bool {
        self.schedule.is_current(now)
    }

    /// Whether it has not ended at `now` (current or starting later).
    pub fn is_live(&self, now: Timestamp) -> bool {
        !self.schedule.has_ended(now)
    }

    /// What identifies "the same assignment" as this one.
    pub fn key(&self) -> AssignmentKey {
        AssignmentKey {
            resource_id: self.resource_id.clone(),
            role_definition_id: self.role_definition_id.clone(),
            subject_id: self.subject_id.clone(),
            state: self.state,
        }
    }

    /// Whether this is an activation of an eligible assignment.
    pub fn is_activation(&self) -> bool {
        self.linked_eligible_id.is_some()
    }

    /// Whether it ends within `window` of `now` (and has not ended).
    pub fn ends_within(&self, now: Timestamp, window: SignedDuration) -> bool {
        match self.schedule.end {
            Some(end) => end > now && end.duration_since(now) <= window,
            None => false,
        }
    }

    /// Whether it ended less than `window` before `now`.
    pub fn ended_within(&self, now: Timestamp, window: SignedDuration) -> bool {
        match self.schedule.end {
            Some(end) => end <= now && now.duration_since(end) < window,
            None => false,
        }
    }
}

/// Why an assignment left the live set (its row moves to history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its end passed.
    Expired,
    /// An AdminRemove or UserRemove request, or its eligibility was removed.
    Removed,
    /// Its request was canceled before it started.
    Canceled,
    /// Its subject was deleted from the directory.
    SubjectDeleted,
}

impl EndReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "Expired",
            Self::Removed => "Removed",
            Self::Canceled => "Canceled",
            Self::SubjectDeleted => "SubjectDeleted",
        }
    }
}

/// What identifies "the same assignment" for uniqueness: resource, role, subject, state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssignmentKey {
    /// Resource id.
    pub resource_id: String,
    /// Role definition id.
    pub role_definition_id: String,
    /// Subject id.
    pub subject_id: String,
    /// Eligible or active.
    pub state: AssignmentState,
}

/// Assignments for the core's tests.
#[cfg(test)]
pub(crate) mod for_tests {
    use super::{AssignmentState, RoleAssignment};
    use crate::schedule::Schedule;
    use jiff::{SignedDuration, Timestamp};

    /// Assignment number `n` of `role` on `resource` to `subject`, active or eligible, from
    /// `start` for `hours` (no end without).
    pub(crate) fn assignment(
        n: usize,
        (resource, role): (&str, &str),
        subject: &str,
        active: bool,
        start: Timestamp,
        hours: Option<i64>,
    ) -> RoleAssignment {
        RoleAssignment {
            id: format!("00000000-0000-0000-0000-{n:012x}"),
            resource_id: resource.into(),
            role_definition_id: role.into(),
            subject_id: subject.into(),
            state: if active {
                AssignmentState::Active
            } else {
                AssignmentState::Eligible
            },
            linked_eligible_id: None,
            schedule: Schedule {
                start,
                end: hours.map(|h| start + SignedDuration::from_hours(h)),
            },
            request_id: "r".into(),
        }
    }
}
