//! The transaction every backend runs ([`SqlTx`]): row mapping, the translation of list
//! queries (OData filter + server restrictions + paging) to SQL, and the helpers the
//! storage port's implementations share. The port itself is implemented one aggregate per
//! file beside this one (`directory.rs`, `catalog.rs`, `assignments.rs`, `requests.rs`,
//! `due_work.rs`, `outbox.rs`, `audit.rs`, `access_log.rs`, `sessions.rs`, `connectors.rs`).

pub(super) use super::odata::{SqlFragment, filter_to_sql, orderby_to_sql};
pub(super) use super::rows::*;
pub(super) use super::{Connection, Dialect, Row, Value, params};
pub(super) use jiff::Timestamp;
pub(super) use rolegate_core::access::AccessChange;
pub(super) use rolegate_core::assignment::{AssignmentState, EndReason, RoleAssignment};
pub(super) use rolegate_core::assignment::{HeldAssignment, HeldBy};
pub(super) use rolegate_core::audit::{
    AuditEntry, AuditIndex, AuditRecord, ChainLink, GENESIS_HASH, canonical_json, chain_hash,
    chain_hash_of_canonical,
};
pub(super) use rolegate_core::directory::{Subject, SubjectKind};
pub(super) use rolegate_core::error::{DomainError, ErrorCode, Result};
pub(super) use rolegate_core::notification::{
    self, ChangeType, Delivery, Entity as NotifiedEntity, Subscription,
};
pub(super) use rolegate_core::odata::EntityFields;
pub(super) use rolegate_core::policy::{RoleRules, RuleResult, RuleSetting, TicketInfo};
pub(super) use rolegate_core::provisioning::delivery::{
    ConnectorItem, ItemOperation, ItemState, LedgerEntry, RefreshedGrant, RequestedKey,
};
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

impl Savepoints for SqlTx<'_> {
    fn savepoint(&mut self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<Result<()>> {
        self.c.execute("SAVEPOINT batched_write", &[])?;
        let outcome = f(self);
        if outcome.is_err() {
            self.c.execute("ROLLBACK TO SAVEPOINT batched_write", &[])?;
        }
        self.c.execute("RELEASE SAVEPOINT batched_write", &[])?;
        Ok(outcome)
    }

    fn rows_written(&self) -> Option<u64> {
        self.c.rows_written()
    }
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

/// Writes `doc` as the next record of the chain, with its index columns and targets.
pub(super) fn insert_audit_document(c: &dyn Connection, doc: &serde_json::Value) -> Result<()> {
    let ix = AuditIndex::of(doc)?;
    let prev = last_audit_hash(c)?;
    // The canonical form is valid JSON: it is both what is hashed and what is stored.
    let text = canonical_json(doc);
    let hash = chain_hash_of_canonical(&prev, &text);
    let mut seq = None;
    c.query_each(
        "INSERT INTO audit_log (id, at, category, activity, result, correlation_id, initiator_id, record, resource_id, request_id, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        &params![
            ix.id,
            us(ix.at),
            ix.category,
            ix.activity,
            ix.result,
            ix.correlation_id,
            ix.initiator_id,
            text,
            ix.resource_id,
            ix.request_id,
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

/// Indexes record `seq` under each of `targets`, in one statement.
pub(super) fn insert_audit_targets(c: &dyn Connection, seq: i64, targets: &[String]) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let rows = vec!["(?, ?)"; targets.len()].join(", ");
    let p: Vec<Value> = targets
        .iter()
        .flat_map(|t| [Value::Text(t.clone()), Value::Integer(seq)])
        .collect();
    c.execute(
        &format!(
            "INSERT INTO audit_targets (target_id, audit_seq) VALUES {rows} ON CONFLICT DO NOTHING"
        ),
        &p,
    )?;
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
            "UPDATE audit_log SET at = ?, resource_id = ?, request_id = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            &params![us(ix.at), ix.resource_id, ix.request_id, prev, hash, seq],
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

    /// The rows of `select` (a statement without `WHERE`) whose `column` (or one of
    /// `columns`, joined by `OR`) is one of `ids`, in one statement; none, and no
    /// statement, for no ids. The list is padded to a power of two (with its last id), so
    /// pages of any size share a few statements in the prepared-statement caches.
    pub(super) fn many_in<T>(
        &self,
        select: &str,
        columns: &[&str],
        ids: &[String],
        map: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let Some(last) = ids.last() else {
            return Ok(Vec::new());
        };
        let padded: Vec<String> = ids
            .iter()
            .chain(std::iter::repeat_n(
                last,
                ids.len().next_power_of_two() - ids.len(),
            ))
            .cloned()
            .collect();
        let list = placeholders(padded.len());
        let mut out = SqlFragment::default();
        let mut clauses = Vec::new();
        for column in columns {
            clauses.push(format!("{column} IN ({list})"));
            push_ids(&mut out, &padded);
        }
        let sql = format!("{select} WHERE {}", clauses.join(" OR "));
        self.many(&sql, &out.params, map)
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
