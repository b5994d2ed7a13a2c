//! Rolegate's storage: the domain's [`Store`](rolegate_core::store::Store) on an embedded
//! SQLite file (the default) or on PostgreSQL (several nodes on one database). Both run
//! the same SQL ([`sql`]); each backend module holds its connections, transactions and
//! migrations.

pub mod sql;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sql::odata;
pub use sqlite::{SqliteStore, Synchronous};
pub mod postgres;
