//! Translation of a SCIM list query ([`rolegate_core::scim::SubjectQuery`]) to SQL over
//! `subjects s`, with every value bound as a parameter. Attributes outside the directory
//! columns are read from the stored SCIM document with `json_extract`; multi-valued ones
//! (`emails`, …) with `json_each`; group members and a user's groups from `group_members`.

use super::odata::SqlFragment;
use super::{Dialect, Value};
use rolegate_core::error::Result;
use rolegate_core::scim::filter::{Collection, Column, Cond, Field, Op, Operand};
use rolegate_core::scim::{Sort, SubjectQuery};

/// Where an element field reads from inside `EXISTS (…)`.
#[derive(Clone, Copy)]
enum Scope {
    Row,
    JsonElement,
    Member,
    Group,
}

/// A path into a JSON document as the dialect spells it: `$."a"."b"` for SQLite's
/// `json_extract`, the text array `{"a","b"}` for PostgreSQL's `#>>`.
fn json_path(segments: &[&str], dialect: Dialect) -> Value {
    let mut p = String::new();
    match dialect {
        Dialect::Sqlite => {
            p.push('$');
            for s in segments {
                p.push_str(".\"");
                p.push_str(&s.replace('"', "\\\""));
                p.push('"');
            }
        }
        Dialect::Postgres => {
            p.push('{');
            for (i, s) in segments.iter().enumerate() {
                if i > 0 {
                    p.push(',');
                }
                p.push('"');
                p.push_str(&s.replace('\\', "\\\\").replace('"', "\\\""));
                p.push('"');
            }
            p.push('}');
        }
    }
    Value::Text(p)
}

/// The scalar at `path` (a bound parameter) of the JSON document `doc`, as SQL text.
fn json_scalar(doc: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => format!("json_extract({doc}, ?)"),
        Dialect::Postgres => format!("(({doc})::jsonb #>> ?::text[])"),
    }
}

/// The SQL expression of a field and the parameters it needs (a JSON path).
fn field_sql(field: &Field, scope: Scope, dialect: Dialect) -> (String, Vec<Value>) {
    match (field, scope) {
        (Field::Column(c), _) => (
            match c {
                Column::Id => "s.id",
                Column::ExternalId => "s.external_id",
                Column::UserName => "s.principal_name",
                Column::DisplayName => "s.display_name",
                Column::Active => "s.active",
                Column::Created => "s.created_at",
                Column::LastModified => "s.modified_at",
                Column::ResourceType => "(CASE WHEN s.kind = 'Group' THEN 'Group' ELSE 'User' END)",
            }
            .to_string(),
            Vec::new(),
        ),
        (Field::Doc(path), _) => (
            json_scalar("s.scim_attributes", dialect),
            vec![json_path(path, dialect)],
        ),
        (Field::Elem(_), Scope::Member) => ("gm.member_id".into(), Vec::new()),
        (Field::Elem(_), Scope::Group) => ("gm.group_id".into(), Vec::new()),
        (Field::Elem(Some(sub)), _) => (
            json_scalar("e.value", dialect),
            vec![json_path(&[sub], dialect)],
        ),
        (Field::Elem(None), _) => match dialect {
            Dialect::Sqlite => ("e.value".into(), Vec::new()),
            Dialect::Postgres => ("(e.value #>> '{}')".into(), Vec::new()),
        },
    }
}

fn push(out: &mut SqlFragment, sql: &str, params: impl IntoIterator<Item = Value>) {
    out.sql.push_str(sql);
    out.params.extend(params);
}

/// Appends `expr` with its parameters `times` times' worth: each use of the expression
/// repeats its placeholders, so its parameters are pushed again.
struct Expr {
    sql: String,
    params: Vec<Value>,
}

impl Expr {
    fn lower(&self, case_exact: bool) -> Expr {
        if case_exact {
            Expr {
                sql: self.sql.clone(),
                params: self.params.clone(),
            }
        } else {
            Expr {
                sql: format!("lower({})", self.sql),
                params: self.params.clone(),
            }
        }
    }
}

fn test_sql(
    out: &mut SqlFragment,
    field: &Field,
    op: Op,
    value: &Operand,
    case_exact: bool,
    scope: Scope,
    dialect: Dialect,
) {
    let (sql, params) = field_sql(field, scope, dialect);
    let e = Expr { sql, params };
    let operand = match value {
        Operand::Text(t) => Some((Value::Text(t.clone()), true)),
        // Flags are 0/1 columns; inside a document SQLite reads JSON booleans as 0/1 and
        // PostgreSQL's `#>>` as the text `true`/`false`.
        Operand::Bool(b) => Some((
            match (field, dialect) {
                (Field::Column(_), _) | (_, Dialect::Sqlite) => Value::Integer(i64::from(*b)),
                (_, Dialect::Postgres) => Value::Text(b.to_string()),
            },
            false,
        )),
        Operand::Time(t) => Some((
            match field {
                Field::Column(_) => Value::Integer(t.as_microsecond()),
                _ => Value::Text(t.to_string()),
            },
            false,
        )),
        Operand::None => None,
    };
    let Some((v, text)) = operand else {
        // pr: present and, for text, not empty.
        push(
            out,
            &format!("({0} IS NOT NULL AND {0} <> '')", e.sql),
            e.params.clone(),
        );
        out.params.extend(e.params);
        return;
    };
    let insensitive = text && !case_exact;
    let lhs = e.lower(!insensitive);
    let rhs = if insensitive { "lower(?)" } else { "?" };
    let cmp = |sym: &str, out: &mut SqlFragment| {
        push(out, &format!("{} {sym} {rhs}", lhs.sql), lhs.params.clone());
        out.params.push(v.clone());
    };
    match op {
        // The userName index is partial (principal_name IS NOT NULL): say so to use it.
        Op::Eq if matches!(field, Field::Column(Column::UserName)) => {
            out.sql.push_str("(s.principal_name IS NOT NULL AND ");
            cmp("=", out);
            out.sql.push(')');
        }
        Op::Eq => cmp("=", out),
        Op::Gt => cmp(">", out),
        Op::Ge => cmp(">=", out),
        Op::Lt => cmp("<", out),
        Op::Le => cmp("<=", out),
        Op::Ne => {
            push(out, &format!("({} IS NULL OR ", e.sql), e.params.clone());
            cmp("<>", out);
            out.sql.push(')');
        }
        Op::Co => {
            push(
                out,
                &format!("instr({}, {rhs}) > 0", lhs.sql),
                lhs.params.clone(),
            );
            out.params.push(v);
        }
        Op::Sw => {
            push(
                out,
                &format!("substr({}, 1, length({rhs})) = {rhs}", lhs.sql),
                lhs.params.clone(),
            );
            out.params.push(v.clone());
            out.params.push(v);
        }
        Op::Ew => {
            push(
                out,
                &format!(
                    "({0} IS NOT NULL AND substr({1}, length({1}) - length({rhs}) + 1) = {rhs})",
                    e.sql, lhs.sql
                ),
                e.params.clone(),
            );
            out.params.extend(lhs.params.clone());
            out.params.extend(lhs.params.clone());
            out.params.push(v.clone());
            out.params.push(v);
        }
        Op::Pr => {}
    }
}

fn cond_sql(c: &Cond, scope: Scope, dialect: Dialect, out: &mut SqlFragment) {
    match c {
        Cond::And(a, b) | Cond::Or(a, b) => {
            out.sql.push('(');
            cond_sql(a, scope, dialect, out);
            out.sql.push_str(if matches!(c, Cond::And(..)) {
                " AND "
            } else {
                " OR "
            });
            cond_sql(b, scope, dialect, out);
            out.sql.push(')');
        }
        Cond::Not(a) => {
            // An absent value makes a test NULL; `not` of it must be true.
            out.sql.push_str("NOT coalesce((");
            cond_sql(a, scope, dialect, out);
            out.sql.push_str("), FALSE)");
        }
        Cond::Test {
            field,
            op,
            value,
            case_exact,
        } => test_sql(out, field, *op, value, *case_exact, scope, dialect),
        Cond::Any { over, cond } => {
            let inner = match over {
                Collection::Doc(path) => {
                    let elements = match dialect {
                        Dialect::Sqlite => "json_each(s.scim_attributes, ?) e",
                        // Anything but an array (absent, a string, an object) has no elements.
                        Dialect::Postgres => {
                            "jsonb_array_elements(CASE WHEN jsonb_typeof(s.scim_attributes::jsonb #> ?::text[]) = 'array' \
                             THEN s.scim_attributes::jsonb #> ?::text[] ELSE '[]'::jsonb END) e(value)"
                        }
                    };
                    out.sql.push_str("EXISTS (SELECT 1 FROM ");
                    out.sql.push_str(elements);
                    out.sql.push_str(" WHERE ");
                    out.params.push(json_path(path, dialect));
                    if dialect == Dialect::Postgres {
                        out.params.push(json_path(path, dialect));
                    }
                    Scope::JsonElement
                }
                Collection::Members => {
                    out.sql.push_str(
                        "EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = s.id AND ",
                    );
                    Scope::Member
                }
                Collection::Groups => {
                    out.sql.push_str(
                        "EXISTS (SELECT 1 FROM group_members gm WHERE gm.member_id = s.id AND ",
                    );
                    Scope::Group
                }
            };
            cond_sql(cond, inner, dialect, out);
            out.sql.push(')');
        }
    }
}

/// `WHERE …` (without the keyword) for a query.
pub(crate) fn where_sql(q: &SubjectQuery, dialect: Dialect) -> Result<SqlFragment> {
    let mut out = SqlFragment {
        sql: String::new(),
        params: Vec::new(),
    };
    // Users are most of the table: reading it in rowid order (the default order) beats the
    // kind index plus a sort, so the index is left to groups.
    if dialect == Dialect::Sqlite
        && q.kinds
            .contains(&rolegate_core::directory::SubjectKind::User)
    {
        out.sql.push('+');
    }
    out.sql.push_str("s.kind IN (");
    for (i, k) in q.kinds.iter().enumerate() {
        if i > 0 {
            out.sql.push_str(", ");
        }
        out.sql.push('?');
        out.params.push(Value::Text(k.as_str().into()));
    }
    if q.kinds.is_empty() {
        out.sql.push_str("NULL");
    }
    out.sql.push(')');
    if let Some(f) = &q.filter {
        out.sql.push_str(" AND (");
        cond_sql(f, Scope::Row, dialect, &mut out);
        out.sql.push(')');
    }
    Ok(out)
}

/// `ORDER BY …` (without the keyword): the sort key with unassigned values last, then
/// creation order.
pub(crate) fn order_sql(sort: Option<&Sort>, dialect: Dialect) -> SqlFragment {
    let mut out = SqlFragment {
        sql: String::new(),
        params: Vec::new(),
    };
    if let Some(s) = sort {
        let (sql, params) = field_sql(&s.field, Scope::Row, dialect);
        let key = if s.case_exact
            || !matches!(
                s.field,
                Field::Doc(_) | Field::Column(Column::UserName | Column::DisplayName)
            ) {
            sql.clone()
        } else {
            format!("lower({sql})")
        };
        out.sql = format!(
            "{sql} IS NULL, {key} {}, ",
            if s.descending { "DESC" } else { "ASC" }
        );
        out.params.extend(params.clone());
        out.params.extend(params);
    }
    out.sql.push_str("s.rowid");
    out
}

#[cfg(test)]
mod tests {
    use crate::sql::tx::SqlTx;
    use crate::sqlite::SqliteConnection;
    use rolegate_core::directory::{Subject, SubjectKind};
    use rolegate_core::scim::filter::{parse, resolve};
    use rolegate_core::scim::schema::ResourceType;
    use rolegate_core::scim::{ScimRecord, SubjectQuery};
    use rolegate_core::store::{DirectoryRead, DirectoryWrite};
    use rusqlite::Connection;
    use serde_json::json;

    /// A database at schema version 3 with subjects stored before SCIM documents existed,
    /// then migrated: each gets its directory attributes as its document.
    #[test]
    fn migration_backfills_documents() {
        let c = Connection::open_in_memory().unwrap();
        for (_, sql) in crate::sqlite::MIGRATIONS.iter().filter(|(v, _)| *v <= 3) {
            c.execute_batch(sql).unwrap();
        }
        c.execute_batch(
            "INSERT INTO subjects (id, external_id, kind, display_name, principal_name, email, active) VALUES
               ('u1', 'ext-1', 'User', 'Una', 'una@x.test', 'una@x.test', 1),
               ('u2', NULL, 'User', 'Ulf', 'ulf@x.test', NULL, 0),
               ('sp', NULL, 'ServicePrincipal', 'Robot', 'robot@x.test', NULL, 1),
               ('g1', NULL, 'Group', 'Team', NULL, NULL, 1);
             INSERT INTO group_members (group_id, member_id) VALUES ('g1', 'u1');",
        )
        .unwrap();
        let (_, v4) = crate::sqlite::MIGRATIONS
            .iter()
            .find(|(v, _)| *v == 4)
            .unwrap();
        c.execute_batch(v4).unwrap();
        let conn = SqliteConnection(&c);
        let mut tx = SqlTx::new(&conn);
        let rec = |tx: &mut SqlTx, id: &str| tx.subject_scim(id).unwrap().unwrap();
        let u1 = rec(&mut tx, "u1");
        assert_eq!(
            serde_json::Value::Object(u1.attributes),
            json!({"userName": "una@x.test", "displayName": "Una", "externalId": "ext-1", "active": true,
                   "emails": [{"value": "una@x.test", "primary": true, "type": "work"}]})
        );
        assert_eq!(u1.version, 1);
        assert!(u1.created.is_some() && u1.last_modified.is_some());
        assert_eq!(
            serde_json::Value::Object(rec(&mut tx, "u2").attributes),
            json!({"userName": "ulf@x.test", "displayName": "Ulf", "active": false})
        );
        assert_eq!(
            rec(&mut tx, "sp").attributes["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            json!({"employeeType": "ServicePrincipal"})
        );
        assert_eq!(
            serde_json::Value::Object(rec(&mut tx, "g1").attributes),
            json!({"displayName": "Team"})
        );
        // Filters over the migrated rows.
        let ids = |tx: &mut SqlTx, rt: ResourceType, f: &str| -> Vec<String> {
            let kinds = if rt == ResourceType::Group {
                vec![SubjectKind::Group]
            } else {
                vec![SubjectKind::User, SubjectKind::ServicePrincipal]
            };
            tx.list_subjects(&SubjectQuery {
                kinds,
                filter: Some(resolve(&parse(f).unwrap(), Some(rt)).unwrap()),
                sort: None,
                skip: 0,
                top: 10,
            })
            .unwrap()
            .items
            .into_iter()
            .map(|(s, _)| s.id)
            .collect()
        };
        assert_eq!(
            ids(&mut tx, ResourceType::User, r#"emails.value ew "@X.TEST""#),
            ["u1"]
        );
        assert_eq!(ids(&mut tx, ResourceType::User, "active eq false"), ["u2"]);
        assert_eq!(
            ids(
                &mut tx,
                ResourceType::User,
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeType eq "servicePrincipal""#
            ),
            ["sp"]
        );
        assert_eq!(
            ids(&mut tx, ResourceType::Group, r#"members eq "u1""#),
            ["g1"]
        );
        assert_eq!(
            ids(&mut tx, ResourceType::User, r#"groups[value eq "g1"]"#),
            ["u1"]
        );
        assert_eq!(
            ids(
                &mut tx,
                ResourceType::User,
                r#"not (externalId pr) and userName sw "r""#
            ),
            ["sp"]
        );
        // A subject inserted afterwards (the seed tool's way) gets its document at once.
        tx.insert_subject(
            &Subject {
                id: "u3".into(),
                external_id: None,
                kind: SubjectKind::User,
                display_name: "Uma".into(),
                principal_name: Some("uma@x.test".into()),
                email: Some("uma@x.test".into()),
                active: true,
            },
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(
            ids(&mut tx, ResourceType::User, r#"emails eq "uma@x.test""#),
            ["u3"]
        );
        let mut r = rec(&mut tx, "u3");
        r.version = 9;
        tx.set_subject_scim("u3", &r).unwrap();
        assert_eq!(rec(&mut tx, "u3"), ScimRecord { version: 9, ..r });
    }

    /// What identity providers filter on most runs on an index; the default order needs
    /// no sort.
    #[test]
    fn common_lookups_use_indexes() {
        let c = Connection::open_in_memory().unwrap();
        crate::sqlite::migrate(&c).unwrap();
        let plan = |rt: ResourceType, f: Option<&str>| -> String {
            let kinds = if rt == ResourceType::Group {
                vec![SubjectKind::Group]
            } else {
                vec![SubjectKind::User, SubjectKind::ServicePrincipal]
            };
            let q = SubjectQuery {
                kinds,
                filter: f.map(|f| resolve(&parse(f).unwrap(), Some(rt)).unwrap()),
                sort: None,
                skip: 0,
                top: 10,
            };
            let wh = super::where_sql(&q, super::Dialect::Sqlite).unwrap();
            let order = super::order_sql(None, super::Dialect::Sqlite);
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT s.id FROM subjects s WHERE {} ORDER BY {} LIMIT 10",
                wh.sql, order.sql
            );
            let mut st = c.prepare(&sql).unwrap();
            let rows = st
                .query_map(rusqlite::params_from_iter(wh.params.iter()), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let p = plan(ResourceType::User, Some(r#"userName eq "A@B.C""#));
        assert!(p.contains("subjects_principal_name"), "{p}");
        let p = plan(ResourceType::User, Some(r#"externalId eq "x""#));
        assert!(p.contains("sqlite_autoindex_subjects_2"), "{p}");
        let p = plan(ResourceType::Group, Some(r#"displayName eq "Team""#));
        assert!(p.contains("subjects_kind_lower_name"), "{p}");
        let p = plan(ResourceType::User, None);
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Whatever filter parses and resolves becomes SQL that prepares and runs: no
        /// filter input can make a list fail with a 500.
        #[test]
        fn every_accepted_filter_runs(terms in proptest::collection::vec((
            proptest::sample::select(vec![
                "userName", "displayName", "externalId", "id", "active", "title", "name.givenName",
                "emails", "emails.value", "emails.type", "members", "members.value", "groups",
                "meta.created", "meta.lastModified", "meta.resourceType", "emails[type eq \"work\"].value",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            ]),
            proptest::sample::select(vec!["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr"]),
            proptest::sample::select(vec![
                "\"a%_\\\"\"", "\"\"", "\"2020-01-01T00:00:00Z\"", "true", "false", "null", "7",
            ]),
            proptest::sample::select(vec![" and ", " or ", " and not (", ") or ("]),
        ), 1..6), group in proptest::bool::ANY) {
            let mut text = String::new();
            let mut open = 0usize;
            for (i, (attr, op, value, join)) in terms.iter().enumerate() {
                if i > 0 {
                    text.push_str(join);
                    open += join.matches('(').count();
                    open = open.saturating_sub(join.matches(')').count());
                }
                text.push_str(attr);
                text.push(' ');
                text.push_str(op);
                if *op != "pr" {
                    text.push(' ');
                    text.push_str(value);
                }
            }
            text.push_str(&")".repeat(open));
            let rt = if group { ResourceType::Group } else { ResourceType::User };
            if let Some(cond) = parse(&text).ok().and_then(|f| resolve(&f, Some(rt)).ok()) {
                let c = Connection::open_in_memory().unwrap();
                crate::sqlite::migrate(&c).unwrap();
                let conn = SqliteConnection(&c);
        let mut tx = SqlTx::new(&conn);
                let r = tx.list_subjects(&SubjectQuery {
                    kinds: vec![SubjectKind::User, SubjectKind::Group],
                    filter: Some(cond),
                    sort: None,
                    skip: 0,
                    top: 5,
                });
                proptest::prop_assert!(r.is_ok(), "{text}: {:?}", r.err());
            }
        }
    }
}
