//! Translates a `$filter` / `$orderby` AST ([`rolegate_core::odata`]) to SQL (the portable
//! subset of SQLite and PostgreSQL). User input only ever reaches the database as bound parameters; column expressions come from the
//! collection's [`EntityFields`] whitelist.
//!
//! Storage encodings: text as TEXT, timestamps as INTEGER microseconds since the Unix epoch,
//! booleans as INTEGER 0/1, integers as INTEGER. Comparisons follow OData null semantics
//! (`null eq null` is true, `x ne 'a'` holds for a null `x`), and `not` treats an unknown
//! (SQL NULL) operand as false.

use super::Value;
use rolegate_core::error::DomainError;
use rolegate_core::odata::{
    self, CompareOp, EntityFields, Field, FieldType, Filter, Literal, Operand, OrderBy,
    StringFunction,
};

/// A piece of SQL with the values of its `?` placeholders, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlFragment {
    /// The SQL text, with `?` placeholders only.
    pub sql: String,
    /// One value per `?`, in order.
    pub params: Vec<Value>,
}

impl SqlFragment {
    fn push(&mut self, other: &SqlFragment) {
        self.sql.push_str(&other.sql);
        self.params.extend(other.params.iter().cloned());
    }

    /// Appends `template`, replacing each `{a}` / `{b}` with the fragment `a` / `b`.
    fn template(&mut self, template: &str, a: &SqlFragment, b: &SqlFragment) {
        let mut rest = template;
        while let Some(i) = rest.find('{') {
            self.sql.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{a}") {
                self.push(a);
                rest = after;
            } else if let Some(after) = tail.strip_prefix("{b}") {
                self.push(b);
                rest = after;
            } else {
                self.sql.push('{');
                rest = &tail[1..];
            }
        }
        self.sql.push_str(rest);
    }

    fn wrap(self, function: &str) -> SqlFragment {
        SqlFragment {
            sql: format!("{function}({})", self.sql),
            params: self.params,
        }
    }
}

/// Translates `filter` (validated against `fields` first) to a boolean SQL expression.
pub fn filter_to_sql(filter: &Filter, fields: &EntityFields) -> Result<SqlFragment, DomainError> {
    odata::validate(filter, fields)?;
    let mut out = SqlFragment::default();
    write_filter(filter, fields, &mut out)?;
    Ok(out)
}

/// Translates `$orderby` to an `ORDER BY` list such as `a.name ASC, a.start DESC` (empty for
/// none); case-insensitive text sorts by `lower(column)`.
pub fn orderby_to_sql(orderby: &[OrderBy], fields: &EntityFields) -> Result<String, DomainError> {
    odata::validate_orderby(orderby, fields)?;
    let mut items = Vec::new();
    for item in orderby {
        let field = resolve(&item.path, fields, "$orderby")?;
        let mut column = column(field);
        if field.ty == FieldType::TextCaseInsensitive {
            column = column.wrap("lower");
        }
        items.push(format!(
            "{} {}",
            column.sql,
            if item.descending { "DESC" } else { "ASC" }
        ));
    }
    Ok(items.join(", "))
}

fn resolve(
    path: &[String],
    fields: &EntityFields,
    option: &str,
) -> Result<&'static Field, DomainError> {
    fields.resolve(path).ok_or_else(|| {
        DomainError::bad_request(format!("unknown property `{}` in {option}", path.join("/")))
    })
}

/// The column expression, parenthesised unless it is a plain (qualified) name.
fn column(field: &Field) -> SqlFragment {
    let plain = field
        .column
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    let sql = if plain {
        field.column.to_owned()
    } else {
        format!("({})", field.column)
    };
    SqlFragment {
        sql,
        params: Vec::new(),
    }
}

fn param(value: &Literal) -> SqlFragment {
    let value = match value {
        Literal::String(s) => Value::Text(s.clone()),
        Literal::Int(i) => Value::Integer(*i),
        Literal::Float(f) => Value::Real(*f),
        Literal::Bool(b) => Value::Integer(i64::from(*b)),
        Literal::Null => Value::Null,
        Literal::DateTime(ts) => Value::Integer(ts.as_microsecond()),
    };
    SqlFragment {
        sql: "?".to_owned(),
        params: vec![value],
    }
}

/// An operand's SQL and whether it is a case-insensitive text column.
fn operand(op: &Operand, fields: &EntityFields) -> Result<(SqlFragment, bool), DomainError> {
    Ok(match op {
        Operand::Property(path) => {
            let field = resolve(path, fields, "$filter")?;
            (column(field), field.ty == FieldType::TextCaseInsensitive)
        }
        Operand::Literal(value) => (param(value), false),
        Operand::ToLower(inner) => (operand(inner, fields)?.0.wrap("lower"), false),
        Operand::ToUpper(inner) => (operand(inner, fields)?.0.wrap("upper"), false),
    })
}

/// Both operands, lowercased when either is a case-insensitive column.
fn operands(
    a: &Operand,
    b: &Operand,
    fields: &EntityFields,
) -> Result<(SqlFragment, SqlFragment), DomainError> {
    let ((a, a_ci), (b, b_ci)) = (operand(a, fields)?, operand(b, fields)?);
    Ok(match a_ci || b_ci {
        true => (a.wrap("lower"), b.wrap("lower")),
        false => (a, b),
    })
}

fn write_filter(
    filter: &Filter,
    fields: &EntityFields,
    out: &mut SqlFragment,
) -> Result<(), DomainError> {
    match filter {
        Filter::And(a, b) | Filter::Or(a, b) => {
            out.sql.push('(');
            write_filter(a, fields, out)?;
            out.sql.push_str(if matches!(filter, Filter::And(..)) {
                " AND "
            } else {
                " OR "
            });
            write_filter(b, fields, out)?;
            out.sql.push(')');
        }
        Filter::Not(inner) => {
            out.sql.push_str("NOT coalesce(");
            write_filter(inner, fields, out)?;
            out.sql.push_str(", FALSE)");
        }
        Filter::Compare { left, op, right } => {
            let null = |o: &Operand| matches!(o, Operand::Literal(Literal::Null));
            let (a, b) = operands(left, right, fields)?;
            let template = match op {
                CompareOp::Eq if null(right) => "{a} IS NULL",
                CompareOp::Eq if null(left) => "{b} IS NULL",
                CompareOp::Ne if null(right) => "{a} IS NOT NULL",
                CompareOp::Ne if null(left) => "{b} IS NOT NULL",
                CompareOp::Eq => "{a} = {b}",
                CompareOp::Ne => "{a} IS DISTINCT FROM {b}",
                CompareOp::Gt => "{a} > {b}",
                CompareOp::Ge => "{a} >= {b}",
                CompareOp::Lt => "{a} < {b}",
                CompareOp::Le => "{a} <= {b}",
            };
            out.template(template, &a, &b);
        }
        Filter::In {
            operand: target,
            values,
        } => {
            let (target, ci) = operand(target, fields)?;
            let target = if ci { target.wrap("lower") } else { target };
            let mut list = SqlFragment::default();
            for value in values.iter().filter(|v| **v != Literal::Null) {
                let value = if ci {
                    param(value).wrap("lower")
                } else {
                    param(value)
                };
                list.sql
                    .push_str(if list.sql.is_empty() { "" } else { ", " });
                list.push(&value);
            }
            let has_null = values.contains(&Literal::Null);
            let template = match (has_null, list.sql.is_empty()) {
                (false, false) => "{a} IN ({b})",
                (true, false) => "({a} IS NULL OR {a} IN ({b}))",
                (true, true) => "{a} IS NULL",
                (false, true) => "1 = 0",
            };
            out.template(template, &target, &list);
        }
        Filter::Any {
            collection,
            property,
            value,
            ..
        } => {
            let path: Vec<String> = collection.iter().chain(property).cloned().collect();
            let field = resolve(&path, fields, "$filter")?;
            if field.ty != FieldType::AnyText {
                return Err(DomainError::bad_request(format!(
                    "`{}` is not a collection: `any` cannot be used on it",
                    collection.join("/")
                )));
            }
            // The whitelisted predicate, with the value bound to its one placeholder.
            out.sql.push('(');
            out.sql.push_str(field.column);
            out.sql.push(')');
            out.params.extend(param(value).params);
        }
        Filter::Function { func, target, arg } => {
            let (a, b) = operands(target, arg, fields)?;
            let template = match func {
                StringFunction::Contains => "instr({a}, {b}) > 0",
                StringFunction::StartsWith => "substr({a}, 1, length({b})) = {b}",
                // Unlike `length(b) = 0 OR substr(a, -length(b)) = b`, false for a null `a`.
                StringFunction::EndsWith => "substr({a}, length({a}) - length({b}) + 1) = {b}",
            };
            out.template(template, &a, &b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rolegate_core::odata::parse_filter;
    use rusqlite::{Connection, params_from_iter};

    const FIELDS: EntityFields = EntityFields {
        entity: "item",
        fields: &[
            Field::new("displayName", "t.name", FieldType::Text),
            Field::new("type", "t.kind", FieldType::TextCaseInsensitive),
            Field::new("startDateTime", "t.start", FieldType::Timestamp),
            Field::new("isActive", "t.active", FieldType::Bool),
            Field::new("count", "t.n", FieldType::Int),
            Field::new(
                "status/subStatus",
                "coalesce(t.sub, t.name)",
                FieldType::Text,
            ),
            Field::new(
                "tags/name",
                "t.id IN (SELECT item FROM tags WHERE name = ?)",
                FieldType::AnyText,
            ),
        ],
    };

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, kind TEXT, start INTEGER,
                             active INTEGER, n INTEGER, sub TEXT);
             INSERT INTO t VALUES (1, 'alice', 'ResourceGroup', NULL, 1, 5, 'PendingApproval'),
                                  (2, 'O''Brien', 'subscription', NULL, 0, 10, NULL),
                                  (3, NULL, 'Subscription', NULL, 1, NULL, 'Granted'),
                                  (4, 'bob', 'managementGroup', NULL, 0, -3, 'Provisioned');
             CREATE TABLE tags (item INTEGER, name TEXT);
             INSERT INTO tags VALUES (1, 'red'), (1, 'blue'), (2, 'red'), (4, 'green');",
        )
        .unwrap();
        for (id, at) in [
            (1, "2024-01-01T00:00:00Z"),
            (2, "2024-06-01T12:30:00.5Z"),
            (4, "2023-12-31T23:59:59Z"),
        ] {
            let us = at.parse::<jiff::Timestamp>().unwrap().as_microsecond();
            conn.execute("UPDATE t SET start = ? WHERE id = ?", (us, id))
                .unwrap();
        }
        conn
    }

    fn ids(conn: &Connection, filter: &str) -> Vec<i64> {
        let frag = filter_to_sql(&parse_filter(filter).unwrap(), &FIELDS).unwrap();
        let sql = format!("SELECT id FROM t WHERE {} ORDER BY id", frag.sql);
        let mut stmt = conn.prepare(&sql).unwrap();
        let rows = stmt
            .query_map(params_from_iter(frag.params), |r| r.get(0))
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn filters_select_expected_rows() {
        let conn = db();
        let cases: &[(&str, &[i64])] = &[
            ("displayName eq 'alice'", &[1]),
            ("displayName eq 'ALICE'", &[]),
            ("displayName eq 'O''Brien'", &[2]),
            ("'bob' eq displayName", &[4]),
            ("displayName eq null", &[3]),
            ("null eq displayName", &[3]),
            ("displayName ne null", &[1, 2, 4]),
            ("displayName ne 'alice'", &[2, 3, 4]),
            ("not (displayName eq 'alice')", &[2, 3, 4]),
            ("type eq 'SUBSCRIPTION'", &[2, 3]),
            ("type ne 'subscription'", &[1, 4]),
            ("type in ('resourcegroup', 'MANAGEMENTGROUP')", &[1, 4]),
            (
                "(type eq 'resourcegroup' or type eq 'subscription')",
                &[1, 2, 3],
            ),
            ("startDateTime ge 2024-01-01T00:00:00Z", &[1, 2]),
            ("startDateTime lt 2024-01-01T01:00:00+01:00", &[4]),
            ("startDateTime eq 2024-06-01T12:30:00.5Z", &[2]),
            ("startDateTime eq null", &[3]),
            ("not (startDateTime gt 2024-01-01T00:00:00Z)", &[1, 3, 4]),
            ("isActive eq true", &[1, 3]),
            ("isActive ne true", &[2, 4]),
            ("count gt 0", &[1, 2]),
            ("count le 5.5", &[1, 4]),
            ("count in (5, -3, null)", &[1, 3, 4]),
            ("count in (null)", &[3]),
            ("displayName in ('alice', 'bob')", &[1, 4]),
            ("status/subStatus eq 'PendingApproval'", &[1]),
            ("status/subStatus eq 'O''Brien'", &[2]),
            ("contains(displayName, 'li')", &[1]),
            ("contains(displayName, 'LI')", &[]),
            ("contains(tolower(displayName), 'o''b')", &[2]),
            ("contains(type, 'GROUP')", &[1, 4]),
            ("startswith(displayName, 'b')", &[4]),
            ("startswith(displayName, '')", &[1, 2, 4]),
            ("startswith(toupper(type), 'SUB')", &[2, 3]),
            ("endswith(displayName, 'ce')", &[1]),
            ("endswith(displayName, 'much longer than any name')", &[]),
            ("endswith(displayName, '')", &[1, 2, 4]),
            ("endswith(displayName, 'xalice')", &[]),
            ("contains(displayName, '')", &[1, 2, 4]),
            ("not contains(displayName, 'x')", &[1, 2, 3, 4]),
            ("tolower(displayName) eq 'o''brien'", &[2]),
            (
                "isActive eq true and (count gt 1 or count eq null)",
                &[1, 3],
            ),
            (
                "not (isActive eq true and not (type eq 'subscription'))",
                &[2, 3, 4],
            ),
            (
                "type eq 'subscription' and not (displayName ne null) or count lt 0",
                &[3, 4],
            ),
            ("tags/any(x: x/name eq 'red')", &[1, 2]),
            (
                "tags/any(x: x/name eq 'green') or tags/any(t: t/name eq 'blue')",
                &[1, 4],
            ),
            ("not tags/any(x: x/name eq 'red')", &[3, 4]),
            ("tags/any(x: x/name eq 'none')", &[]),
            (
                "tags/any(x: x/name eq 'red') and displayName eq 'alice'",
                &[1],
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(ids(&conn, filter), *expected, "{filter}");
        }
    }

    #[test]
    fn sql_shape_and_parameters() {
        let input =
            "type eq 'x' and endswith(displayName, 'y') and startDateTime gt 1970-01-01T00:00:01Z";
        let frag = filter_to_sql(&parse_filter(input).unwrap(), &FIELDS).unwrap();
        let ends = "substr(t.name, length(t.name) - length(?) + 1) = ?";
        assert_eq!(
            frag.sql,
            format!("((lower(t.kind) = lower(?) AND {ends}) AND t.start > ?)")
        );
        let (x, y) = (Value::Text("x".into()), Value::Text("y".into()));
        assert_eq!(frag.params, [x, y.clone(), y, Value::Integer(1_000_000)]);
        let frag = filter_to_sql(
            &parse_filter("status/subStatus in ('a', 'b')").unwrap(),
            &FIELDS,
        );
        assert_eq!(frag.unwrap().sql, "(coalesce(t.sub, t.name)) IN (?, ?)");
    }

    #[test]
    fn invalid_filters_are_rejected() {
        for (filter, message) in [
            ("nope eq 1", "unknown property `nope` in $filter"),
            ("startDateTime eq 'x'", "type mismatch"),
            ("contains(count, 'x')", "takes strings"),
            (
                "tags/name eq 'red'",
                "belongs to the members of a collection",
            ),
            (
                "displayName/any(x: x/y eq 'a')",
                "unknown property `displayName/y`",
            ),
        ] {
            let e = filter_to_sql(&parse_filter(filter).unwrap(), &FIELDS).unwrap_err();
            assert!(e.message.contains(message), "{filter}: {}", e.message);
        }
    }

    #[test]
    fn orderby() {
        let ob = |path: &str, descending| {
            let path = path.split('/').map(String::from).collect();
            OrderBy { path, descending }
        };
        assert_eq!(orderby_to_sql(&[], &FIELDS).unwrap(), "");
        let items = [
            ob("DisplayName", false),
            ob("type", true),
            ob("status/subStatus", false),
        ];
        let expected = "t.name ASC, lower(t.kind) DESC, (coalesce(t.sub, t.name)) ASC";
        assert_eq!(orderby_to_sql(&items, &FIELDS).unwrap(), expected);
        let e = orderby_to_sql(&[ob("nope", false)], &FIELDS).unwrap_err();
        assert_eq!(e.message, "unknown property `nope` in $orderby");
        let order_by = orderby_to_sql(&[ob("count", true)], &FIELDS).unwrap();
        let conn = db();
        let mut stmt = conn
            .prepare(&format!("SELECT id FROM t ORDER BY {order_by}"))
            .unwrap();
        let order: Vec<i64> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(order, [2, 1, 4, 3]);
    }

    fn literal(ty: Option<FieldType>) -> BoxedStrategy<Literal> {
        let string = "[a-zA-Z' %_]{0,4}".prop_map(Literal::String);
        let int = any::<i64>().prop_map(Literal::Int);
        let float = (-1e6f64..1e6).prop_map(Literal::Float);
        let bool = any::<bool>().prop_map(Literal::Bool);
        let at = (0i64..4_000_000_000)
            .prop_map(|s| Literal::DateTime(jiff::Timestamp::from_second(s).unwrap()));
        match ty {
            Some(FieldType::Text | FieldType::TextCaseInsensitive | FieldType::AnyText) => {
                string.boxed()
            }
            Some(FieldType::Timestamp) => at.boxed(),
            Some(FieldType::Bool) => bool.boxed(),
            Some(FieldType::Int) => prop_oneof![int, float].boxed(),
            None => prop_oneof![string, int, float, bool, Just(Literal::Null), at].boxed(),
        }
    }

    /// A field (text fields only if `text`) and, mostly, a literal of its type.
    fn field_and_literal(text: bool) -> impl Strategy<Value = (Operand, Literal)> {
        let is_text = |f: &&Field| matches!(f.ty, FieldType::Text | FieldType::TextCaseInsensitive);
        let fields: Vec<Field> = FIELDS
            .fields
            .iter()
            .filter(|f| !text || is_text(f))
            .cloned()
            .collect();
        prop::sample::select(fields).prop_flat_map(|f| {
            let path = Operand::Property(f.path.split('/').map(String::from).collect());
            let value = prop_oneof![10 => literal(Some(f.ty)), 1 => literal(None)];
            (Just(path), value)
        })
    }

    fn operand_strategy() -> impl Strategy<Value = Operand> {
        let leaf = prop_oneof![
            field_and_literal(false).prop_map(|(field, _)| field),
            literal(None).prop_map(Operand::Literal),
        ];
        leaf.prop_recursive(2, 3, 1, |inner| {
            prop_oneof![
                inner.clone().prop_map(|o| Operand::ToLower(Box::new(o))),
                inner.prop_map(|o| Operand::ToUpper(Box::new(o))),
            ]
        })
    }

    fn filter_strategy() -> impl Strategy<Value = Filter> {
        use CompareOp::*;
        let op = || prop::sample::select(vec![Eq, Ne, Gt, Ge, Lt, Le]);
        let funcs = [
            StringFunction::Contains,
            StringFunction::StartsWith,
            StringFunction::EndsWith,
        ];
        let func = prop::sample::select(funcs.to_vec());
        let leaf = prop_oneof![
            4 => (field_and_literal(false), op(), any::<bool>()).prop_map(|((field, value), op, flip)| {
                let (left, right) = (field, Operand::Literal(value));
                let (left, right) = if flip { (right, left) } else { (left, right) };
                Filter::Compare { left, op, right }
            }),
            2 => (field_and_literal(false), prop::collection::vec(literal(None), 0..3)).prop_map(
                |((operand, value), mut values)| {
                    values.push(value);
                    Filter::In { operand, values }
                }
            ),
            2 => (func.clone(), field_and_literal(true), any::<bool>()).prop_map(|(func, (field, value), lower)| {
                let target = if lower { Operand::ToLower(Box::new(field)) } else { field };
                Filter::Function { func, target, arg: Operand::Literal(value) }
            }),
            1 => (operand_strategy(), op(), operand_strategy())
                .prop_map(|(left, op, right)| Filter::Compare { left, op, right }),
            1 => (func, operand_strategy(), operand_strategy())
                .prop_map(|(func, target, arg)| Filter::Function { func, target, arg }),
            1 => literal(None).prop_map(|value| Filter::Any {
                collection: vec!["tags".into()],
                variable: "x".into(),
                property: vec!["name".into()],
                value,
            }),
        ];
        leaf.prop_recursive(3, 8, 2, |inner| {
            let boxed = |a| Box::new(a);
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(move |(a, b)| Filter::And(boxed(a), boxed(b))),
                (inner.clone(), inner.clone())
                    .prop_map(move |(a, b)| Filter::Or(boxed(a), boxed(b))),
                inner.prop_map(move |a| Filter::Not(boxed(a))),
            ]
        })
    }

    proptest! {
        #[test]
        fn generated_sql_always_prepares_and_runs(filter in filter_strategy()) {
            let conn = db();
            if let Ok(frag) = filter_to_sql(&filter, &FIELDS) {
                prop_assert_eq!(frag.sql.matches('?').count(), frag.params.len());
                let sql = format!("SELECT id FROM t WHERE {}", frag.sql);
                let fail = |e: rusqlite::Error| TestCaseError::fail(format!("{sql}: {e}"));
                let mut stmt = conn.prepare(&sql).map_err(fail)?;
                let rows = stmt.query_map(params_from_iter(frag.params), |r| r.get::<_, i64>(0));
                prop_assert!(rows.map_err(fail)?.all(|row| row.is_ok()));
            }
        }
    }
}
