//! Backend-neutral SQL. One text of every statement serves SQLite and PostgreSQL: the
//! statements use `?` placeholders and the portable subset of both dialects (timestamps as
//! integer microseconds, flags as integer 0/1, JSON as text), and each backend's
//! [`Connection`] adapts the few spellings that differ (placeholders, `rowid`). The rare
//! statement that cannot be portable asks [`Connection::dialect`].

mod access_log;
mod assignments;
mod audit;
mod catalog;
mod connectors;
mod directory;
mod due_work;
pub mod odata;
mod outbox;
mod requests;
mod rows;
pub(crate) mod scim;
mod sessions;
pub(crate) mod tx;
pub use tx::SqlTx;

use rolegate_core::error::{DomainError, Result};

/// A value bound to a placeholder or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (also flags and timestamps in microseconds).
    Integer(i64),
    /// A double.
    Real(f64),
    /// Text (also JSON documents).
    Text(String),
}

/// The SQL dialect of a connection, for the statements that cannot be written portably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.35 or later.
    Sqlite,
    /// PostgreSQL 13 or later.
    Postgres,
}

/// One connection inside an open transaction: the only thing the SQL code needs of a
/// backend.
pub trait Connection {
    /// The connection's dialect.
    fn dialect(&self) -> Dialect;
    /// Runs `sql` and calls `each` with every row, in order.
    fn query_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&Row) -> Result<()>,
    ) -> Result<()>;
    /// Runs a statement and returns the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64>;
    /// How many rows the connection's statements have written so far, when the database
    /// counts them cheaply (SQLite) and the transaction is still open; `None` otherwise.
    fn rows_written(&self) -> Option<u64> {
        None
    }
}

/// A result row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as a `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(v).ok_or_else(|| {
            DomainError::internal(format!(
                "column {i}: cannot read {v:?} as {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A Rust type a column value converts to.
pub trait FromValue: Sized {
    /// The converted value, or `None` when the value has another type.
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A Rust value bound as a parameter.
pub trait ToValue {
    /// The bound value.
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Integer(*self)
    }
}

impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// The parameters of a statement, from expressions of any [`ToValue`] type.
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        vec![$($crate::sql::ToValue::to_value(&$x)),*] as Vec<$crate::sql::Value>
    };
}
pub(crate) use params;

/// Rewrites `?` and `?N` placeholders outside quoted text and identifiers with `f`, which
/// gets the 1-based parameter number and writes the replacement.
pub(crate) fn rewrite_placeholders(sql: &str, mut f: impl FnMut(usize, &mut String)) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 0usize;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    digits.push(d);
                }
                // As SQLite numbers them: `?N` is N, a bare `?` is one more than the
                // largest number so far.
                let n = match digits.parse::<usize>() {
                    Ok(n) => n,
                    Err(_) => next + 1,
                };
                next = next.max(n);
                f(n, &mut out);
            }
            None => out.push(c),
        }
    }
    out
}

/// Runs `f` on a fresh, migrated in-memory SQLite database (the SQL modules' unit tests).
#[cfg(test)]
pub(super) fn with_memory_tx(f: impl FnOnce(tx::SqlTx<'_>) -> Result<()>) -> Result<()> {
    let c = rusqlite::Connection::open_in_memory().map_err(crate::sqlite::db)?;
    crate::sqlite::migrate(&c)?;
    let conn = crate::sqlite::SqliteConnection(&c);
    f(tx::SqlTx::new(&conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_savepoint_keeps_what_succeeds_and_undoes_what_fails_in_one_transaction() {
        use rolegate_core::access::AccessChange;
        use rolegate_core::error::DomainError;
        use rolegate_core::store::{AccessLogRead, Savepoints};
        with_memory_tx(|mut tx| {
            assert_eq!(tx.rows_written(), None, "no transaction is open yet");
            tx.c.execute("BEGIN", &[])?;
            let written = |tx: &tx::SqlTx<'_>| tx.rows_written().expect("a transaction is open");
            let start = written(&tx);
            let at = jiff::Timestamp::UNIX_EPOCH;
            let kept = [AccessChange::SubjectRemoved("kept".into())];
            let undone = [AccessChange::SubjectRemoved("undone".into())];
            let first = tx.savepoint(&mut |tx| tx.log_access_changes(&kept, at).map(|_| ()))?;
            assert!(first.is_ok());
            let after_first = written(&tx);
            assert!(after_first > start);
            let second = tx.savepoint(&mut |tx| {
                tx.log_access_changes(&undone, at)?;
                Err(DomainError::bad_request("refused"))
            })?;
            assert_eq!(second.unwrap_err().message, "refused");
            let after_second = written(&tx);
            assert!(
                after_second > after_first,
                "undone rows still count: the count tells that a failed write had written"
            );
            let refused = tx.savepoint(&mut |_| Err(DomainError::bad_request("refused")))?;
            assert!(refused.is_err());
            assert_eq!(written(&tx), after_second, "refused before writing");
            // The transaction goes on after the undone one.
            let third = tx.savepoint(&mut |tx| tx.log_access_changes(&kept, at).map(|_| ()))?;
            assert!(third.is_ok());
            let logged: Vec<_> = tx
                .access_changes_since(0, 10)?
                .into_iter()
                .flat_map(|e| e.changes.unwrap_or_default())
                .collect();
            assert_eq!(logged, [kept.clone(), kept].concat());
            tx.c.execute("COMMIT", &[])?;
            assert_eq!(tx.rows_written(), None, "the transaction has ended");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        let sql = "SELECT '?', \"a?\" FROM t WHERE a = ? AND b = ?2 AND c IN (?, ?)";
        let out = rewrite_placeholders(sql, |n, s| s.push_str(&format!("${n}")));
        assert_eq!(
            out,
            "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b = $2 AND c IN ($3, $4)"
        );
    }

    #[test]
    fn values_convert_both_ways() -> Result<()> {
        let row = Row(params![7i64, "x", None::<String>, true]);
        assert_eq!(row.get::<i64>(0)?, 7);
        assert_eq!(row.get::<String>(1)?, "x");
        assert_eq!(row.get::<Option<String>>(2)?, None);
        assert!(row.get::<bool>(3)?);
        assert!(row.get::<String>(0).is_err());
        Ok(())
    }
}
