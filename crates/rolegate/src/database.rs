//! The `--database URL` every command takes: `sqlite://PATH` (the embedded default) or
//! `postgres://…` (several nodes on one database).

use anyhow::{Context, bail};
use rolegate_store::{PostgresStore, SqlStore, SqliteStore, Synchronous};
use std::path::PathBuf;
use std::sync::Arc;

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (libpq syntax plus Rolegate's `schema=NAME`).
    Postgres(String),
}

/// How to open a database.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// SQLite durability.
    pub sync: Synchronous,
    /// PostgreSQL: connections this process may hold.
    pub pool_size: usize,
    /// PostgreSQL: apply pending migrations (else refuse an outdated schema).
    pub migrate: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            sync: Synchronous::Full,
            pool_size: 16,
            migrate: true,
        }
    }
}

impl Database {
    /// Parses `url`.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .with_context(|| {
                format!("unsupported database URL `{url}`; use sqlite://PATH or postgres://…")
            })?;
        if path.is_empty() {
            bail!("the database URL `{url}` names no file");
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }

    /// The database for logs and messages, without a password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => redact(url),
        }
    }

    /// Opens the database, creating and migrating it as `options` say.
    pub fn open(&self, options: OpenOptions) -> anyhow::Result<Arc<dyn SqlStore>> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(
                SqliteStore::open(path, options.sync)
                    .with_context(|| format!("opening {}", path.display()))?,
            ),
            Self::Postgres(url) => Arc::new(
                PostgresStore::open(url, options.pool_size, options.migrate)
                    .with_context(|| format!("opening {}", redact(url)))?,
            ),
        })
    }

    /// Opens a database that must exist already (an auditor pointing at the wrong path
    /// must not get an empty, "intact" log).
    pub fn open_existing(&self) -> anyhow::Result<Arc<dyn SqlStore>> {
        if let Self::Sqlite(path) = self
            && !path.is_file()
        {
            bail!("no database at {}", path.display());
        }
        self.open(OpenOptions {
            migrate: false,
            ..OpenOptions::default()
        })
    }
}

/// `url` without the password of its user info, for commands an operator copies (the
/// tool then asks, or reads `PGPASSWORD` or `~/.pgpass`).
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `url` with the password of its user info replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_passwords_never_show() -> anyhow::Result<()> {
        assert_eq!(
            Database::parse("sqlite://x.db")?,
            Database::Sqlite("x.db".into())
        );
        assert!(Database::parse("mysql://h/db").is_err());
        assert!(Database::parse("sqlite://").is_err());
        let pg = Database::parse("postgres://rg:s3cret@db:5432/rolegate?schema=a")?;
        assert_eq!(pg.describe(), "postgres://rg:***@db:5432/rolegate?schema=a");
        assert!(!pg.describe().contains("s3cret"));
        assert_eq!(
            without_password("postgres://rg:s3cret@db:5432/rolegate?sslmode=require"),
            "postgres://rg@db:5432/rolegate?sslmode=require"
        );
        assert_eq!(without_password("postgres://rg@db/x"), "postgres://rg@db/x");
        Ok(())
    }
}
