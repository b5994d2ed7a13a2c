//! Row mapping: the columns each query selects and how a row becomes a domain value.

use super::tx::*;

pub(super) fn us(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(super) fn ts(v: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(v)
        .map_err(|e| DomainError::internal(format!("stored timestamp {v} is not valid: {e}")))
}

pub(super) fn bad_column(what: &str, value: &str) -> DomainError {
    DomainError::internal(format!("stored {what} `{value}` is not valid"))
}

pub(super) fn json_err(e: serde_json::Error) -> DomainError {
    DomainError::internal(format!("stored JSON is not valid: {e}"))
}

pub(super) const RESOURCE_COLS: &str = "r.id, r.external_id, r.resource_type, r.display_name, r.status, r.registered_at, r.registered_root, r.parent_id";

pub(super) fn resource_row(row: &Row) -> Result<Resource> {
    let status: String = row.get(4)?;
    Ok(Resource {
        id: row.get(0)?,
        external_id: row.get(1)?,
        resource_type: row.get(2)?,
        display_name: row.get(3)?,
        status: ResourceStatus::parse(&status)
            .ok_or_else(|| bad_column("resource status", &status))?,
        registered_at: ts(row.get(5)?)?,
        registered_root: row.get(6)?,
        parent_id: row.get(7)?,
    })
}

pub(super) const ROLE_COLS: &str =
    "d.id, d.resource_id, d.external_id, d.template_id, d.display_name";

pub(super) fn role_row(row: &Row) -> Result<RoleDefinition> {
    Ok(RoleDefinition {
        id: row.get(0)?,
        resource_id: row.get(1)?,
        external_id: row.get(2)?,
        template_id: row.get(3)?,
        display_name: row.get(4)?,
    })
}

pub(super) const SETTING_COLS: &str = "s.id, s.resource_id, s.role_definition_id, s.is_default, s.last_updated_at, s.last_updated_by, \
     s.admin_eligible, s.admin_member, s.user_eligible, s.user_member";

pub(super) fn rules_col(row: &Row, i: usize) -> Result<Vec<RuleSetting>> {
    let text: String = row.get(i)?;
    serde_json::from_str(&text).map_err(json_err)
}

pub(super) fn setting_row(row: &Row) -> Result<RoleSetting> {
    Ok(RoleSetting {
        id: row.get(0)?,
        resource_id: row.get(1)?,
        role_definition_id: row.get(2)?,
        is_default: row.get(3)?,
        last_updated_at: row.get::<Option<i64>>(4)?.map(ts).transpose()?,
        last_updated_by: row.get(5)?,
        rules: RoleRules {
            admin_eligible: rules_col(row, 6)?,
            admin_member: rules_col(row, 7)?,
            user_eligible: rules_col(row, 8)?,
            user_member: rules_col(row, 9)?,
        },
    })
}

pub(super) fn rules_json(rules: &[RuleSetting]) -> Result<String> {
    serde_json::to_string(rules).map_err(|e| DomainError::internal(format!("rules: {e}")))
}

pub(super) const SUBJECT_COLS: &str =
    "id, external_id, kind, display_name, principal_name, email, active";

pub(super) fn subject_row(row: &Row) -> Result<Subject> {
    let kind: String = row.get(2)?;
    Ok(Subject {
        id: row.get(0)?,
        external_id: row.get(1)?,
        kind: SubjectKind::parse(&kind).ok_or_else(|| bad_column("subject kind", &kind))?,
        display_name: row.get(3)?,
        principal_name: row.get(4)?,
        email: row.get(5)?,
        active: row.get(6)?,
    })
}

pub(super) const SCIM_SUBJECT_COLS: &str = "s.id, s.external_id, s.kind, s.display_name, s.principal_name, s.email, s.active, \
     s.scim_attributes, s.created_at, s.modified_at, s.version";

/// A subject and its SCIM record (the document synthesised when none is stored).
pub(super) fn scim_subject_row(row: &Row) -> Result<(Subject, ScimRecord)> {
    let subject = subject_row(row)?;
    let attributes = match row.get::<Option<String>>(7)? {
        Some(text) => match serde_json::from_str(&text).map_err(json_err)? {
            serde_json::Value::Object(o) => o,
            _ => rolegate_core::scim::resource::synthesize(&subject),
        },
        None => rolegate_core::scim::resource::synthesize(&subject),
    };
    let rec = ScimRecord {
        attributes,
        created: row.get::<Option<i64>>(8)?.map(ts).transpose()?,
        last_modified: row.get::<Option<i64>>(9)?.map(ts).transpose()?,
        version: u64::try_from(row.get::<i64>(10)?).unwrap_or(1),
    };
    Ok((subject, rec))
}

pub(super) const ASSIGNMENT_COLS: &str = "a.id, a.resource_id, a.role_definition_id, a.subject_id, a.state, a.linked_eligible_id, a.start_at, a.end_at, a.request_id";

pub(super) fn state(s: &str) -> Result<AssignmentState> {
    AssignmentState::parse(s).ok_or_else(|| bad_column("assignment state", s))
}

pub(super) fn assignment_row(row: &Row) -> Result<RoleAssignment> {
    let st: String = row.get(4)?;
    Ok(RoleAssignment {
        id: row.get(0)?,
        resource_id: row.get(1)?,
        role_definition_id: row.get(2)?,
        subject_id: row.get(3)?,
        state: state(&st)?,
        linked_eligible_id: row.get(5)?,
        schedule: Schedule {
            start: ts(row.get(6)?)?,
            end: row.get::<Option<i64>>(7)?.map(ts).transpose()?,
        },
        request_id: row.get(8)?,
    })
}

pub(super) const REQUEST_COLS: &str = "q.id, q.resource_id, q.role_definition_id, q.subject_id, q.kind, q.state, q.requested_at, \
     q.has_schedule, q.start_at, q.end_at, q.reason, q.sub_status, q.status_details, q.linked_eligible_id, q.ticket, \
     q.requested_by, q.assignment_id, q.emergency, q.approval_deadline, q.version";

pub(super) fn request_row(row: &Row) -> Result<RoleAssignmentRequest> {
    let kind: String = row.get(4)?;
    let st: String = row.get(5)?;
    let sub: String = row.get(11)?;
    let has_schedule: bool = row.get(7)?;
    let schedule = if has_schedule {
        Some(Schedule {
            start: ts(row.get(8)?)?,
            end: row.get::<Option<i64>>(9)?.map(ts).transpose()?,
        })
    } else {
        None
    };
    let details: Vec<(String, String)> =
        serde_json::from_str(&row.get::<String>(12)?).map_err(json_err)?;
    let ticket: Option<TicketInfo> = row
        .get::<Option<String>>(14)?
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(json_err)?;
    Ok(RoleAssignmentRequest {
        id: row.get(0)?,
        resource_id: row.get(1)?,
        role_definition_id: row.get(2)?,
        subject_id: row.get(3)?,
        kind: RequestType::parse(&kind).ok_or_else(|| bad_column("request type", &kind))?,
        state: state(&st)?,
        requested_at: ts(row.get(6)?)?,
        schedule,
        reason: row.get(10)?,
        sub_status: SubStatus::parse(&sub).ok_or_else(|| bad_column("request status", &sub))?,
        status_details: details
            .into_iter()
            .map(|(rule, result)| RuleResult { rule, result })
            .collect(),
        linked_eligible_id: row.get(13)?,
        ticket,
        requested_by: row.get(15)?,
        assignment_id: row.get(16)?,
        emergency: row.get(17)?,
        approval_deadline: row.get::<Option<i64>>(18)?.map(ts).transpose()?,
        version: row.get(19)?,
    })
}

pub(super) const AUDIT_COLS: &str = "l.record, l.resource_id";

pub(super) fn audit_row(row: &Row) -> Result<AuditEntry> {
    let text: String = row.get(0)?;
    let document = serde_json::from_str(&text).map_err(json_err)?;
    Ok(AuditEntry {
        document,
        resource_id: row.get(1)?,
    })
}

pub(super) const CHAIN_COLS: &str = "l.seq, l.id, l.record, l.prev_hash, l.hash, l.at, l.category, l.activity, l.result, \
     l.correlation_id, l.initiator_id, l.resource_id, l.request_id";

/// A chain link as stored; its target ids are filled in afterwards.
pub(super) fn chain_row(row: &Row) -> Result<ChainLink> {
    let columns = Timestamp::from_microsecond(row.get(5)?)
        .ok()
        .map(|at| -> Result<AuditIndex> {
            Ok(AuditIndex {
                id: row.get(1)?,
                at,
                category: row.get(6)?,
                activity: row.get(7)?,
                result: row.get(8)?,
                correlation_id: row.get(9)?,
                initiator_id: row.get(10)?,
                resource_id: row.get(11)?,
                request_id: row.get(12)?,
                target_ids: Vec::new(),
            })
        })
        .transpose()?;
    Ok(ChainLink {
        seq: row.get(0)?,
        id: row.get(1)?,
        document: row.get(2)?,
        prev_hash: row.get(3)?,
        hash: row.get(4)?,
        columns,
    })
}

pub(super) const SUBSCRIPTION_COLS: &str = "s.id, s.resource, s.entity, s.resource_id, s.change_types, s.notification_url, \
     s.client_state, s.expires_at, s.creator_id, s.created_at";

pub(super) fn subscription_row(row: &Row) -> Result<Subscription> {
    let entity: String = row.get(2)?;
    let changes: String = row.get(4)?;
    Ok(Subscription {
        id: row.get(0)?,
        resource: row.get(1)?,
        entity: NotifiedEntity::parse(&entity)
            .ok_or_else(|| bad_column("subscription entity", &entity))?,
        resource_id: row.get(3)?,
        change_types: notification::parse_change_types(&changes)
            .map_err(|_| bad_column("subscription change types", &changes))?,
        notification_url: row.get(5)?,
        client_state: row.get(6)?,
        expires_at: ts(row.get(7)?)?,
        creator_id: row.get(8)?,
        created_at: ts(row.get(9)?)?,
    })
}

pub(super) fn delivery_row(row: &Row) -> Result<Delivery> {
    let entity: String = row.get(11)?;
    let change: String = row.get(13)?;
    Ok(Delivery {
        subscription: subscription_row(row)?,
        id: row.get(10)?,
        entity: NotifiedEntity::parse(&entity)
            .ok_or_else(|| bad_column("notification entity", &entity))?,
        entity_id: row.get(12)?,
        change: ChangeType::parse(&change)
            .ok_or_else(|| bad_column("notification change type", &change))?,
        first_due: ts(row.get(14)?)?,
        attempts: row.get(15)?,
    })
}

pub(super) fn email_row(row: &Row) -> Result<rolegate_core::email::Email> {
    let event: String = row.get(2)?;
    Ok(rolegate_core::email::Email {
        id: row.get(0)?,
        request_id: row.get(1)?,
        event: rolegate_core::email::Event::parse(&event)
            .ok_or_else(|| bad_column("e-mail event", &event))?,
        recipient_id: row.get(3)?,
        address: row.get(4)?,
        first_due: ts(row.get(5)?)?,
        attempts: row.get(6)?,
        assignment_id: row.get(7)?,
    })
}
