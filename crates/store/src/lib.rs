//! Rolegate's storage: the domain's [`Store`](rolegate_core::store::Store) on an embedded
//! SQLite file (the default) or on PostgreSQL (several nodes on one database). Both run
//! the same SQL ([`sql`]); each backend module holds its connections, transactions and
//! migrations. [`copy`] moves a whole tenant from one database to another.

pub mod copy;
pub mod sql;
pub mod sqlite;

pub use copy::{TABLES, Table, TableCount, copy};
pub use postgres::PostgresStore;
pub use sql::odata;
pub use sqlite::{SqliteStore, Synchronous};
pub mod postgres;

use rolegate_core::error::Result;
use rolegate_core::store::Store;

/// A [`Store`] on the shared SQL layer, which also runs raw SQL in its transactions: for
/// whole-database work such as [`copy()`], not for the domain (that goes through
/// [`Store`]'s transactions).
pub trait SqlStore: Store {
    /// Runs `f` in a read-only transaction that sees one consistent snapshot.
    fn read_sql(&self, f: &mut dyn FnMut(&dyn sql::Connection) -> Result<()>) -> Result<()>;
    /// Runs `f` in a write transaction, committed when `f` returns `Ok`, rolled back
    /// otherwise; write transactions are serialised as [`Store::write_dyn`]'s are.
    fn write_sql(&self, f: &mut dyn FnMut(&dyn sql::Connection) -> Result<()>) -> Result<()>;
}
