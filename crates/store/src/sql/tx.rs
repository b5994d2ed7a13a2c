//! The transaction every backend runs ([`SqlTx`]): row mapping, the translation of list
//! queries (OData filter + server restrictions + paging) to SQL, and the helpers the
//! storage port's implementations share. The port itself is implemented one aggregate per
//! file beside this one (`directory.rs`, `catalog.rs`, `assignments.rs`, `requests.rs`,
//! `due_work.rs`, `outbox.rs`, `audit.rs`, `access_log.rs`).

pub(super) use super::odata::{SqlFragment, filter_to_sql, orderby_to_sql};
pub(super) use super::{Connection, Dialect, Row, Value, params};
pub(super) use jiff::Timestamp;
pub(super) use rolegate_core::access::AccessChange;
pub(super) use rolegate_core::assignment::{AssignmentState, EndReason, RoleAssignment};
pub(super) use rolegate_core::audit::{
    AuditEntry, AuditIndex, AuditRecord, ChainLink, GENESIS_HASH, chain_hash,
};
pub(super) use rolegate_core::directory::{Subject, SubjectKind};
pub(super) use rolegate_core::error::{DomainError, ErrorCode, Result};
pub(super) use rolegate_core::notification::{
    self, ChangeType, Delivery, Entity as NotifiedEntity, Subscription,
};
pub(super) use rolegate_core::odata::EntityFields;
pub(super) use rolegate_core::policy::{RoleRules, RuleResult, RuleSetting, TicketInfo};
pub(super) use rolegate_core::query::{
    DIRECTORY_AUDIT_FIELDS, ListQuery, Page, RESOURCE_FIELDS, ROLE_ASSIGNMENT_FIELDS,
    ROLE_ASSIGNMENT_REQUEST_FIELDS, ROLE_DEFINITION_FIELDS, ROLE_SETTING_FIELDS, Restriction,
};
pub(super) use rolegate_core::request::{Approval, RequestType, RoleAssignmentRequest, SubStatus};
pub(super) use rolegate_core::resource::{Resource, ResourceStatus};
pub(super) use rolegate_core::role::{RoleDefinition, RoleSetting, is_access_admin_template};
pub(super) use rolegate_core::schedule::Schedule;
pub(super) use rolegate_core::scim::{ScimRecord, SubjectQuery};
pub(super) use rolegate_core::store::*;

/// The [`Tx`] of one open transaction on a [`Connection`].
pub struct SqlTx<'c> {
    pub(super) c: &'c dyn Connection,
}

impl<'c> SqlTx<'c> {
    /// The domain's transaction over `c`, a connection inside an open transaction.
    pub fn new(c: &'c dyn Connection) -> Self {
        Self { c }
    }
}

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

/// Where a collection keeps the columns that restrictions refer to.
pub(super) struct Shape {
    from: &'static str,
    /// `from` joined with the role definitions, for filters on `roleDefinition/…`.
    from_with_roles: Option<&'static str>,
    /// Stable row order (and paging tie-breaker).
    order: &'static str,
    /// A unique column: the page is chosen on it first (from indexes alone), then only the
    /// page's rows are read.
    key: &'static str,
    cols: &'static str,
    resource: &'static str,
    subject: Option<&'static str>,
    fields: &'static EntityFields,
}

pub(super) const RESOURCES: Shape = Shape {
    from: "resources r",
    from_with_roles: None,
    order: "r.id",
    key: "r.id",
    cols: RESOURCE_COLS,
    resource: "r.id",
    subject: None,
    fields: &RESOURCE_FIELDS,
};
pub(super) const ROLE_DEFINITIONS: Shape = Shape {
    from: "role_definitions d",
    from_with_roles: None,
    order: "d.id",
    key: "d.id",
    cols: ROLE_COLS,
    resource: "d.resource_id",
    subject: None,
    fields: &ROLE_DEFINITION_FIELDS,
};
pub(super) const ROLE_SETTINGS: Shape = Shape {
    from: "role_settings s",
    from_with_roles: None,
    order: "s.id",
    key: "s.id",
    cols: SETTING_COLS,
    resource: "s.resource_id",
    subject: None,
    fields: &ROLE_SETTING_FIELDS,
};
pub(super) const ASSIGNMENTS: Shape = Shape {
    from: "assignments a",
    from_with_roles: Some("assignments a JOIN role_definitions d ON d.id = a.role_definition_id"),
    order: "a.seq",
    key: "a.seq",
    cols: ASSIGNMENT_COLS,
    resource: "a.resource_id",
    subject: Some("a.subject_id"),
    fields: &ROLE_ASSIGNMENT_FIELDS,
};
pub(super) const REQUESTS: Shape = Shape {
    from: "requests q",
    from_with_roles: None,
    order: "q.seq",
    key: "q.seq",
    cols: REQUEST_COLS,
    resource: "q.resource_id",
    subject: Some("q.subject_id"),
    fields: &ROLE_ASSIGNMENT_REQUEST_FIELDS,
};
pub(super) const AUDITS: Shape = Shape {
    from: "audit_log l",
    from_with_roles: None,
    order: "l.seq DESC",
    key: "l.seq",
    cols: AUDIT_COLS,
    resource: "l.resource_id",
    subject: None,
    fields: &DIRECTORY_AUDIT_FIELDS,
};

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
     l.correlation_id, l.initiator_id, l.resource_id";

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

/// Writes `doc` as the next record of the chain, with its index columns and targets.
pub(super) fn insert_audit_document(c: &dyn Connection, doc: &serde_json::Value) -> Result<()> {
    let ix = AuditIndex::of(doc)?;
    let prev = last_audit_hash(c)?;
    let hash = chain_hash(&prev, doc);
    let mut seq = None;
    c.query_each(
        "INSERT INTO audit_log (id, at, category, activity, result, correlation_id, initiator_id, record, resource_id, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        &params![
            ix.id,
            us(ix.at),
            ix.category,
            ix.activity,
            ix.result,
            ix.correlation_id,
            ix.initiator_id,
            doc.to_string(),
            ix.resource_id,
            prev,
            hash
        ],
        &mut |r| {
            seq = Some(r.get::<i64>(0)?);
            Ok(())
        },
    )?;
    let seq = seq.ok_or_else(|| DomainError::internal("audit insert returned no seq"))?;
    insert_audit_targets(c, seq, &ix.target_ids)
}

pub(super) fn insert_audit_targets(c: &dyn Connection, seq: i64, targets: &[String]) -> Result<()> {
    for t in targets {
        c.execute(
            "INSERT INTO audit_targets (target_id, audit_seq) VALUES (?, ?) ON CONFLICT DO NOTHING",
            &params![t, seq],
        )?;
    }
    Ok(())
}

/// The hash of the newest record ([`GENESIS_HASH`] for an empty log). A newest record with
/// no hash (the chain was tampered with) also yields the genesis hash, so writes go on and
/// `rolegate audit verify` reports the break.
pub(super) fn last_audit_hash(c: &dyn Connection) -> Result<String> {
    let mut last: Option<String> = None;
    c.query_each(
        "SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        &[],
        &mut |r| {
            last = r.get(0)?;
            Ok(())
        },
    )?;
    Ok(last.unwrap_or_else(|| GENESIS_HASH.to_string()))
}

/// Seals audit records written before the hash chain existed (schema v3): fills their
/// index columns, targets and hashes in seq order. Runs only while every unsealed record
/// is older than every sealed one, so clearing the hash of a record in a sealed chain never
/// gets it re-sealed (verification reports it instead). Returns how many it sealed.
pub(crate) fn seal_unsealed(c: &dyn Connection) -> Result<u64> {
    let (unsealed_max, sealed_min): (Option<i64>, Option<i64>) = SqlTx::new(c)
        .one(
            "SELECT (SELECT max(seq) FROM audit_log WHERE hash IS NULL), (SELECT min(seq) FROM audit_log WHERE hash IS NOT NULL)",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .unwrap_or((None, None));
    let Some(unsealed_max) = unsealed_max else {
        return Ok(0);
    };
    if sealed_min.is_some() {
        return Ok(0);
    }
    let rows: Vec<(i64, String)> = SqlTx::new(c).many(
        "SELECT seq, record FROM audit_log WHERE seq <= ? ORDER BY seq",
        &params![unsealed_max],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut prev = GENESIS_HASH.to_string();
    for (seq, text) in &rows {
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| DomainError::internal(format!("audit record {seq} is not JSON: {e}")))?;
        let ix = AuditIndex::of(&doc)?;
        let hash = chain_hash(&prev, &doc);
        c.execute(
            "UPDATE audit_log SET at = ?, resource_id = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            &params![us(ix.at), ix.resource_id, prev, hash, seq],
        )?;
        insert_audit_targets(c, *seq, &ix.target_ids)?;
        prev = hash;
    }
    Ok(rows.len() as u64)
}

/// Whether `sql` refers to a column of table alias `alias` (`d.x`, not `linked.x`).
pub(super) fn mentions_alias(sql: &str, alias: char) -> bool {
    let b = sql.as_bytes();
    b.windows(3).any(|w| {
        w[1] == alias as u8 && w[2] == b'.' && !(w[0].is_ascii_alphanumeric() || w[0] == b'_')
    }) || sql.starts_with(&format!("{alias}."))
}

pub(super) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

pub(super) fn restriction_sql(shape: &Shape, r: &Restriction, out: &mut SqlFragment) -> Result<()> {
    match r {
        Restriction::ResourceIn(ids) => {
            out.sql.push_str(&format!(
                "{} IN ({})",
                shape.resource,
                placeholders(ids.len().max(1))
            ));
            push_ids(out, ids);
        }
        Restriction::ResourceUnder(ids) => {
            out.sql.push_str(&format!(
                "{} IN (SELECT resource_id FROM resource_ancestors WHERE ancestor_id IN ({}))",
                shape.resource,
                placeholders(ids.len().max(1))
            ));
            push_ids(out, ids);
        }
        Restriction::SubjectIn(ids) => {
            let col = shape.subject.ok_or_else(|| {
                DomainError::internal("subject restriction on a collection without subjects")
            })?;
            out.sql
                .push_str(&format!("{col} IN ({})", placeholders(ids.len().max(1))));
            push_ids(out, ids);
        }
        Restriction::AnyOf(list) => {
            out.sql.push('(');
            if list.is_empty() {
                out.sql.push_str("1 = 0");
            }
            for (i, x) in list.iter().enumerate() {
                if i > 0 {
                    out.sql.push_str(" OR ");
                }
                out.sql.push('(');
                restriction_sql(shape, x, out)?;
                out.sql.push(')');
            }
            out.sql.push(')');
        }
        Restriction::AwaitingApproverIn(ids) => {
            out.sql.push_str(&format!(
                "q.sub_status = 'PendingApproval' AND q.id IN \
                 (SELECT request_id FROM request_approvers WHERE approver_id IN ({}))",
                placeholders(ids.len().max(1))
            ));
            push_ids(out, ids);
        }
        Restriction::CurrentAt(t) => {
            out.sql
                .push_str("a.start_at <= ? AND (a.end_at IS NULL OR a.end_at > ?)");
            out.params.push(Value::Integer(us(*t)));
            out.params.push(Value::Integer(us(*t)));
        }
    }
    Ok(())
}

pub(super) fn push_ids(out: &mut SqlFragment, ids: &[String]) {
    if ids.is_empty() {
        out.params.push(Value::Null);
    }
    out.params
        .extend(ids.iter().map(|i| Value::Text(i.clone())));
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

impl SqlTx<'_> {
    pub(super) fn one<T>(
        &self,
        sql: &str,
        p: &[Value],
        map: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut map = Some(map);
        let mut out = None;
        self.c.query_each(sql, p, &mut |row| {
            if let Some(map) = map.take() {
                out = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    pub(super) fn many<T>(
        &self,
        sql: &str,
        p: &[Value],
        mut map: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.c.query_each(sql, p, &mut |row| {
            out.push(map(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    pub(super) fn exec(&self, sql: &str, p: &[Value]) -> Result<u64> {
        self.c.execute(sql, p)
    }

    pub(super) fn list<T>(
        &self,
        shape: &Shape,
        q: &ListQuery,
        map: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Page<T>> {
        let mut wh = SqlFragment {
            sql: String::new(),
            params: Vec::new(),
        };
        let mut parts = 0;
        if let Some(f) = &q.filter {
            let frag = filter_to_sql(f, shape.fields)?;
            wh.sql.push('(');
            wh.sql.push_str(&frag.sql);
            wh.sql.push(')');
            wh.params.extend(frag.params);
            parts += 1;
        }
        for r in &q.restrictions {
            if parts > 0 {
                wh.sql.push_str(" AND ");
            }
            wh.sql.push('(');
            restriction_sql(shape, r, &mut wh)?;
            wh.sql.push(')');
            parts += 1;
        }
        let where_sql = if parts > 0 {
            format!(" WHERE {}", wh.sql)
        } else {
            String::new()
        };
        let order = orderby_to_sql(&q.orderby, shape.fields)?;
        let order = if order.is_empty() {
            shape.order.to_string()
        } else {
            format!("{order}, {}", shape.order)
        };
        // Join the role definitions only when a filter or order refers to them.
        let from = match shape.from_with_roles {
            Some(joined) if mentions_alias(&where_sql, 'd') || mentions_alias(&order, 'd') => {
                joined
            }
            _ => shape.from,
        };
        // Pick the page's keys first: filter and order usually run on an index alone, so
        // only the rows of the page are read from the table.
        let sql = format!(
            "SELECT {cols} FROM {from} WHERE {key} IN \
             (SELECT {key} FROM {from}{where_sql} ORDER BY {order} LIMIT {limit} OFFSET {skip}) \
             ORDER BY {order}",
            cols = shape.cols,
            key = shape.key,
            limit = u64::from(q.top) + 1,
            skip = q.skip
        );
        let mut items = self.many(&sql, &wh.params, map)?;
        let more = items.len() > q.top as usize;
        items.truncate(q.top as usize);
        let total = if q.count {
            let sql = format!("SELECT count(*) FROM {from}{where_sql}");
            self.one(&sql, &wh.params, |r| r.get::<i64>(0))?
                .map(|n| n.max(0) as u64)
        } else {
            None
        };
        Ok(Page { items, total, more })
    }

    pub(super) fn insert_assignment_into(&self, table: &str, a: &RoleAssignment) -> Result<()> {
        let sql = format!(
            "INSERT INTO {table} (id, resource_id, role_definition_id, subject_id, state, linked_eligible_id, start_at, end_at, request_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        self.exec(
            &sql,
            &params![
                a.id,
                a.resource_id,
                a.role_definition_id,
                a.subject_id,
                a.state.as_str(),
                a.linked_eligible_id,
                us(a.schedule.start),
                a.schedule.end.map(us),
                a.request_id
            ],
        )?;
        Ok(())
    }

    pub(super) fn write_request(&self, r: &RoleAssignmentRequest, insert: bool) -> Result<u64> {
        let details: Vec<(&str, &str)> = r
            .status_details
            .iter()
            .map(|d| (d.rule.as_str(), d.result.as_str()))
            .collect();
        let details = serde_json::to_string(&details)
            .map_err(|e| DomainError::internal(format!("details: {e}")))?;
        let ticket = r
            .ticket
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| DomainError::internal(format!("ticket: {e}")))?;
        let sql = if insert {
            "INSERT INTO requests (resource_id, role_definition_id, subject_id, kind, state, requested_at, has_schedule, start_at, end_at, \
             reason, status, sub_status, status_details, linked_eligible_id, ticket, requested_by, assignment_id, emergency, approval_deadline, version, id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        } else {
            "UPDATE requests SET resource_id = ?, role_definition_id = ?, subject_id = ?, kind = ?, state = ?, requested_at = ?, \
             has_schedule = ?, start_at = ?, end_at = ?, reason = ?, status = ?, sub_status = ?, status_details = ?, linked_eligible_id = ?, \
             ticket = ?, requested_by = ?, assignment_id = ?, emergency = ?, approval_deadline = ?, version = ? \
             WHERE id = ? AND version = ? - 1"
        };
        let mut p: Vec<Value> = vec![
            Value::Text(r.resource_id.clone()),
            Value::Text(r.role_definition_id.clone()),
            Value::Text(r.subject_id.clone()),
            Value::Text(r.kind.as_str().into()),
            Value::Text(r.state.as_str().into()),
            Value::Integer(us(r.requested_at)),
            Value::Integer(i64::from(r.schedule.is_some())),
            r.schedule
                .map_or(Value::Null, |s| Value::Integer(us(s.start))),
            r.schedule
                .and_then(|s| s.end)
                .map_or(Value::Null, |e| Value::Integer(us(e))),
            r.reason.clone().map_or(Value::Null, Value::Text),
            Value::Text(r.sub_status.coarse().into()),
            Value::Text(r.sub_status.as_str().into()),
            Value::Text(details),
            r.linked_eligible_id
                .clone()
                .map_or(Value::Null, Value::Text),
            ticket.map_or(Value::Null, Value::Text),
            Value::Text(r.requested_by.clone()),
            r.assignment_id.clone().map_or(Value::Null, Value::Text),
            Value::Integer(i64::from(r.emergency)),
            r.approval_deadline
                .map_or(Value::Null, |d| Value::Integer(us(d))),
            Value::Integer(r.version),
            Value::Text(r.id.clone()),
        ];
        if !insert {
            p.push(Value::Integer(r.version));
        }
        self.exec(sql, &p)
    }
}

// The scheduler's candidate queries, after `SELECT … FROM requests q` or `… assignments a`.
// The status literals are constants, not input: SQLite uses a partial index
// (0002_scheduler.sql) only when the query repeats its WHERE term literally. Every value
// is a bound parameter.
pub(super) const DUE_GRANTS: &str =
    "WHERE q.sub_status = 'Granted' AND q.start_at <= ? ORDER BY q.start_at LIMIT ?";
pub(super) const EXPIRED_APPROVALS: &str = "WHERE q.sub_status = 'PendingApproval' AND q.approval_deadline <= ? \
     ORDER BY q.approval_deadline LIMIT ?";
pub(super) const ENDED_ASSIGNMENTS: &str =
    "WHERE a.end_at IS NOT NULL AND a.end_at <= ? ORDER BY a.end_at LIMIT ?";

#[cfg(test)]
mod scheduler_tests {
    use super::*;
    use crate::sqlite::db;
    use rusqlite::Connection;

    /// Each scheduler query is one range scan of its index, already in due order: no
    /// table scan, no sort, whatever the size of the tables.
    #[test]
    fn scheduler_queries_scan_their_index_in_due_order() -> Result<()> {
        let c = Connection::open_in_memory().map_err(db)?;
        crate::sqlite::migrate(&c)?;
        for (sql, index) in [
            (
                format!("SELECT {REQUEST_COLS} FROM requests q {DUE_GRANTS}"),
                "requests_granted_start",
            ),
            (
                format!("SELECT {REQUEST_COLS} FROM requests q {EXPIRED_APPROVALS}"),
                "requests_approval_deadline",
            ),
            (
                format!("SELECT {ASSIGNMENT_COLS} FROM assignments a {ENDED_ASSIGNMENTS}"),
                "assignments_end",
            ),
        ] {
            let mut stmt = c
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .map_err(db)?;
            let plan: Vec<String> = stmt
                .query_map([0, 10], |r| r.get(3))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?;
            assert_eq!(plan.len(), 1, "{sql}: {plan:?}");
            assert!(
                plan[0].contains(&format!("USING INDEX {index}")),
                "{sql}: {plan:?}"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod outbox_tests {
    use super::*;
    use crate::sqlite::{SqliteConnection, db};
    use rusqlite::Connection;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Leases are exclusive until they run out; only the holder acknowledges or retries;
    /// retries wait; rows of expired subscriptions are dropped.
    #[test]
    fn outbox_rows_are_leased_to_one_worker_at_a_time() -> Result<()> {
        let c = Connection::open_in_memory().map_err(db)?;
        crate::sqlite::migrate(&c)?;
        let conn = SqliteConnection(&c);
        let mut tx = SqlTx::new(&conn);
        let sub = Subscription {
            id: "s1".into(),
            resource: "privilegedAccess/azureResources/roleAssignments".into(),
            entity: NotifiedEntity::Assignment,
            resource_id: None,
            change_types: vec![ChangeType::Created],
            notification_url: "https://example.com/hook".into(),
            client_state: "k".into(),
            expires_at: at(1000),
            creator_id: "admin".into(),
            created_at: at(0),
        };
        tx.insert_subscription(&sub)?;
        tx.enqueue_notifications(
            NotifiedEntity::Assignment,
            "a1",
            ChangeType::Created,
            "r",
            at(1),
        )?;
        // Not wanted: another change type, another entity.
        tx.enqueue_notifications(
            NotifiedEntity::Assignment,
            "a1",
            ChangeType::Updated,
            "r",
            at(1),
        )?;
        tx.enqueue_notifications(
            NotifiedEntity::Request,
            "q1",
            ChangeType::Created,
            "r",
            at(1),
        )?;
        let got = tx.claim_deliveries("A", at(1), at(61), 10)?;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].entity_id, "a1");
        assert_eq!(got[0].subscription, sub);
        assert!(tx.claim_deliveries("B", at(2), at(62), 10)?.is_empty());
        // A's lease ran out: B takes the row, and A can no longer settle it.
        let again = tx.claim_deliveries("B", at(61), at(121), 10)?;
        assert_eq!(again.len(), 1);
        assert!(!tx.finish_delivery(&got[0].id, "A")?);
        assert!(tx.retry_delivery(&got[0].id, "B", at(70))?);
        assert!(tx.claim_deliveries("A", at(69), at(129), 10)?.is_empty());
        let retried = tx.claim_deliveries("A", at(70), at(130), 10)?;
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].attempts, 1);
        assert_eq!(retried[0].first_due, at(1));
        assert!(tx.finish_delivery(&retried[0].id, "A")?);
        assert!(tx.claim_deliveries("A", at(999), at(1999), 10)?.is_empty());
        // A row of a subscription that has expired is dropped, not delivered.
        tx.enqueue_notifications(
            NotifiedEntity::Assignment,
            "a2",
            ChangeType::Created,
            "r",
            at(5),
        )?;
        assert!(tx.claim_deliveries("A", at(1000), at(1060), 10)?.is_empty());
        tx.renew_subscription("s1", at(5000))?;
        assert!(tx.claim_deliveries("A", at(1000), at(1060), 10)?.is_empty());
        Ok(())
    }
}

#[cfg(test)]
mod email_outbox_tests {
    use super::*;
    use crate::sqlite::{SqliteConnection, db};
    use rolegate_core::email::{Email, Event};
    use rusqlite::Connection;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// E-mail rows are leased to one worker at a time; only the holder settles them; a
    /// retried row waits for its time and counts the attempt.
    #[test]
    fn email_rows_are_leased_to_one_worker_at_a_time() -> Result<()> {
        let c = Connection::open_in_memory().map_err(db)?;
        crate::sqlite::migrate(&c)?;
        let conn = SqliteConnection(&c);
        let mut tx = SqlTx::new(&conn);
        let mail = Email {
            id: "e1".into(),
            request_id: "r1".into(),
            assignment_id: None,
            event: Event::ApprovalNeeded,
            recipient_id: "u1".into(),
            address: "bob@example.com".into(),
            first_due: at(1),
            attempts: 0,
        };
        tx.enqueue_email(&mail)?;
        assert!(tx.claim_emails("A", at(0), at(60), 10)?.is_empty());
        let got = tx.claim_emails("A", at(1), at(61), 10)?;
        assert_eq!(got, vec![mail.clone()]);
        assert!(tx.claim_emails("B", at(2), at(62), 10)?.is_empty());
        assert!(!tx.finish_email("e1", "B")?);
        assert!(tx.retry_email("e1", "A", at(70))?);
        assert!(tx.claim_emails("B", at(69), at(129), 10)?.is_empty());
        let retried = tx.claim_emails("B", at(70), at(130), 10)?;
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].attempts, 1);
        assert_eq!(retried[0].first_due, at(1));
        assert!(tx.finish_email("e1", "B")?);
        assert!(tx.claim_emails("A", at(999), at(1999), 10)?.is_empty());
        Ok(())
    }

    #[test]
    fn a_reminder_is_claimed_once_per_assignment_threshold_and_end() -> Result<()> {
        let c = Connection::open_in_memory().map_err(db)?;
        crate::sqlite::migrate(&c)?;
        let conn = SqliteConnection(&c);
        let mut tx = SqlTx::new(&conn);
        assert!(tx.claim_reminder("a1", "P1D", at(100), at(10))?);
        assert!(!tx.claim_reminder("a1", "P1D", at(100), at(11))?);
        // Another threshold, another end (an extension), another assignment: new keys.
        assert!(tx.claim_reminder("a1", "P14D", at(100), at(10))?);
        assert!(tx.claim_reminder("a1", "P1D", at(200), at(12))?);
        assert!(tx.claim_reminder("a2", "P1D", at(100), at(10))?);
        // Ends that have passed are forgotten; later ones are kept.
        tx.forget_reminders_ending_by(at(100))?;
        assert!(!tx.claim_reminder("a1", "P1D", at(200), at(101))?);
        let left: i64 = c
            .query_row("SELECT count(*) FROM reminders_sent", [], |r| r.get(0))
            .map_err(db)?;
        assert_eq!(left, 1);
        Ok(())
    }
}
