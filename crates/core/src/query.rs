//! What a list call asks of the store: the caller's OData options plus the restrictions
//! that authorization and the route add, and the filterable fields of each collection.
//! Field names are the contract's; `column` names are the storage schema's, shared by
//! every backend.

use crate::odata::{EntityFields, Field, FieldType, Filter, OrderBy};
use jiff::Timestamp;

/// Restrictions the server adds to a list, on top of the caller's `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Restriction {
    /// `resource_id` is one of these.
    ResourceIn(Vec<String>),
    /// The row's resource is one of these or a descendant of one (R1 visibility).
    ResourceUnder(Vec<String>),
    /// `subject_id` is one of these.
    SubjectIn(Vec<String>),
    /// Any one of these holds.
    AnyOf(Vec<Restriction>),
    /// Only rows current at this instant (assignments).
    CurrentAt(Timestamp),
    /// Requests pending approval that name one of these subjects as an approver.
    AwaitingApproverIn(Vec<String>),
}

/// A list call: filter, restrictions, order and page.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// The caller's `$filter`, validated against the collection's fields.
    pub filter: Option<Filter>,
    /// Server-side restrictions, all of which must hold.
    pub restrictions: Vec<Restriction>,
    /// `$orderby`; the store adds `id` as a final tie-breaker.
    pub orderby: Vec<OrderBy>,
    /// Page size.
    pub top: u32,
    /// Rows to skip.
    pub skip: u32,
    /// Whether to count all matching rows.
    pub count: bool,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// All matching rows, when asked for.
    pub total: Option<u64>,
    /// Whether rows follow this page.
    pub more: bool,
}

impl<T> Page<T> {
    /// The page of `all` that `skip` and `top` select, with `all`'s length as the total when
    /// `count` asks for it (for lists decided in memory rather than by the store).
    pub fn window(all: Vec<T>, skip: u32, top: u32, count: bool) -> Page<T> {
        let total = all.len();
        let items: Vec<T> = all
            .into_iter()
            .skip(skip as usize)
            .take(top as usize)
            .collect();
        Page {
            more: (skip as usize).saturating_add(items.len()) < total,
            total: count.then_some(total as u64),
            items,
        }
    }

    /// The same page with each row mapped by `f`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            more: self.more,
        }
    }
}

const fn f(path: &'static str, column: &'static str, ty: FieldType) -> Field {
    Field { path, column, ty }
}

/// Filterable fields of `governanceResource`.
pub const RESOURCE_FIELDS: EntityFields = EntityFields {
    entity: "governanceResource",
    fields: &[
        f("id", "r.id", FieldType::Text),
        f(
            "externalId",
            "r.external_id",
            FieldType::TextCaseInsensitive,
        ),
        f("type", "r.resource_type", FieldType::TextCaseInsensitive),
        f("displayName", "r.display_name", FieldType::Text),
        f("status", "r.status", FieldType::Text),
        f(
            "registeredDateTime",
            "r.registered_at",
            FieldType::Timestamp,
        ),
        f(
            "registeredRoot",
            "r.registered_root",
            FieldType::TextCaseInsensitive,
        ),
        f("parent/id", "r.parent_id", FieldType::Text),
    ],
};

/// Filterable fields of `governanceRoleDefinition`.
pub const ROLE_DEFINITION_FIELDS: EntityFields = EntityFields {
    entity: "governanceRoleDefinition",
    fields: &[
        f("id", "d.id", FieldType::Text),
        f("resourceId", "d.resource_id", FieldType::Text),
        f("resource/id", "d.resource_id", FieldType::Text),
        f(
            "externalId",
            "d.external_id",
            FieldType::TextCaseInsensitive,
        ),
        f(
            "templateId",
            "d.template_id",
            FieldType::TextCaseInsensitive,
        ),
        f("displayName", "d.display_name", FieldType::Text),
    ],
};

/// Filterable fields of `governanceRoleSetting`.
pub const ROLE_SETTING_FIELDS: EntityFields = EntityFields {
    entity: "governanceRoleSetting",
    fields: &[
        f("id", "s.id", FieldType::Text),
        f("resourceId", "s.resource_id", FieldType::Text),
        f("resource/id", "s.resource_id", FieldType::Text),
        f("roleDefinitionId", "s.role_definition_id", FieldType::Text),
        f("roleDefinition/id", "s.role_definition_id", FieldType::Text),
        f("isDefault", "s.is_default", FieldType::Bool),
        f(
            "lastUpdatedDateTime",
            "s.last_updated_at",
            FieldType::Timestamp,
        ),
        f("lastUpdatedBy", "s.last_updated_by", FieldType::Text),
    ],
};

/// Filterable fields of `governanceRoleAssignment`.
pub const ROLE_ASSIGNMENT_FIELDS: EntityFields = EntityFields {
    entity: "governanceRoleAssignment",
    fields: &[
        f("id", "a.id", FieldType::Text),
        f("resourceId", "a.resource_id", FieldType::Text),
        f("resource/id", "a.resource_id", FieldType::Text),
        f(
            "roleDefinition/resource/id",
            "a.resource_id",
            FieldType::Text,
        ),
        f("roleDefinitionId", "a.role_definition_id", FieldType::Text),
        f("roleDefinition/id", "a.role_definition_id", FieldType::Text),
        f(
            "roleDefinition/templateId",
            "d.template_id",
            FieldType::TextCaseInsensitive,
        ),
        f(
            "roleDefinition/displayName",
            "d.display_name",
            FieldType::Text,
        ),
        f("subjectId", "a.subject_id", FieldType::Text),
        f("subject/id", "a.subject_id", FieldType::Text),
        f(
            "linkedEligibleRoleAssignmentId",
            "a.linked_eligible_id",
            FieldType::Text,
        ),
        f("assignmentState", "a.state", FieldType::TextCaseInsensitive),
        f("startDateTime", "a.start_at", FieldType::Timestamp),
        f("endDateTime", "a.end_at", FieldType::Timestamp),
        f("status", "'Provisioned'", FieldType::Text),
    ],
};

/// Filterable fields of `governanceRoleAssignmentRequest`.
pub const ROLE_ASSIGNMENT_REQUEST_FIELDS: EntityFields = EntityFields {
    entity: "governanceRoleAssignmentRequest",
    fields: &[
        f("id", "q.id", FieldType::Text),
        f("resourceId", "q.resource_id", FieldType::Text),
        f("resource/id", "q.resource_id", FieldType::Text),
        f("roleDefinitionId", "q.role_definition_id", FieldType::Text),
        f("roleDefinition/id", "q.role_definition_id", FieldType::Text),
        f("subjectId", "q.subject_id", FieldType::Text),
        f("subject/id", "q.subject_id", FieldType::Text),
        f("type", "q.kind", FieldType::TextCaseInsensitive),
        f("assignmentState", "q.state", FieldType::TextCaseInsensitive),
        f("requestedDateTime", "q.requested_at", FieldType::Timestamp),
        f("reason", "q.reason", FieldType::Text),
        f(
            "linkedEligibleRoleAssignmentId",
            "q.linked_eligible_id",
            FieldType::Text,
        ),
        f("status/status", "q.status", FieldType::Text),
        f("status/subStatus", "q.sub_status", FieldType::Text),
        f("schedule/startDateTime", "q.start_at", FieldType::Timestamp),
        f("schedule/endDateTime", "q.end_at", FieldType::Timestamp),
    ],
};

/// Filterable fields of `directoryAudit` (decisions.md §11). `targetResources/id` is
/// matched through `targetResources/any(t: t/id eq '…')` against the indexed target table.
pub const DIRECTORY_AUDIT_FIELDS: EntityFields = EntityFields {
    entity: "directoryAudit",
    fields: &[
        f("id", "l.id", FieldType::Text),
        f("activityDateTime", "l.at", FieldType::Timestamp),
        f("category", "l.category", FieldType::Text),
        f("activityDisplayName", "l.activity", FieldType::Text),
        f("result", "l.result", FieldType::Text),
        f("correlationId", "l.correlation_id", FieldType::Text),
        f("initiatedBy/user/id", "l.initiator_id", FieldType::Text),
        f("loggedByService", "'PIM'", FieldType::Text),
        f(
            "targetResources/id",
            "l.seq IN (SELECT audit_seq FROM audit_targets WHERE target_id = ?)",
            FieldType::AnyText,
        ),
    ],
};
