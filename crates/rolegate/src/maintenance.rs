//! `rolegate backup` and `rolegate copy`: the operator's commands that move whole
//! databases. The work itself is in `rolegate-store` (`SqliteStore::backup`,
//! `rolegate_store::copy`); this parses the URLs, refuses what cannot work and prints.

use crate::database::{Database, OpenOptions, without_password};
use anyhow::{Context, bail};
use rolegate_store::{SqliteStore, TableCount};
use std::path::{Path, PathBuf};

/// `rolegate backup`.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The database to back up: `sqlite://PATH` (for `postgres://…` the command prints the
    /// `pg_dump` command to use instead).
    #[arg(
        long,
        env = "ROLEGATE_DATABASE_URL",
        default_value = "sqlite://rolegate.db"
    )]
    database: String,
    /// The backup file to write; must not exist.
    #[arg(long)]
    to: PathBuf,
}

/// `rolegate copy`.
#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// The database to copy from: `sqlite://PATH` (must exist) or
    /// `postgres://…[?schema=NAME]` (at this build's schema version).
    #[arg(long)]
    from: String,
    /// The database to copy into: `sqlite://PATH` or `postgres://…[?schema=NAME]`, created
    /// and migrated when needed; must hold no data.
    #[arg(long)]
    to: String,
}

/// Writes a consistent copy of a (possibly live) SQLite database to a new file; refuses a
/// PostgreSQL URL, naming the `pg_dump` command that backs it up.
pub fn backup(args: &BackupArgs) -> anyhow::Result<()> {
    match Database::parse(&args.database)? {
        Database::Sqlite(path) => {
            SqliteStore::backup(&path, &args.to)
                .with_context(|| format!("backing up {}", path.display()))?;
            println!(
                "backed up sqlite://{} to {}",
                path.display(),
                args.to.display()
            );
            Ok(())
        }
        Database::Postgres(url) => {
            bail!(
                "rolegate backup copies SQLite databases; back up PostgreSQL with pg_dump:\n  {}",
                pg_dump_command(&url, &args.to)?
            )
        }
    }
}

/// The `pg_dump` command that backs up the schema of the Rolegate URL `url` into `file`
/// (the password left out: pg_dump asks, or reads `PGPASSWORD` or `~/.pgpass`).
fn pg_dump_command(url: &str, file: &Path) -> anyhow::Result<String> {
    let (libpq_url, schema) = rolegate_store::postgres::split_schema(url)?;
    Ok(format!(
        "pg_dump --schema={schema} --format=custom --file={} {}",
        shell_quote(&file.display().to_string()),
        shell_quote(&without_password(&libpq_url))
    ))
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Copies every table of one database into another, empty one, and prints the rows copied
/// per table.
pub fn copy(args: &CopyArgs) -> anyhow::Result<()> {
    let from = Database::parse(&args.from).context("--from")?;
    let to = Database::parse(&args.to).context("--to")?;
    // The source must exist (a mistyped path must not copy an empty database); the
    // destination is created and migrated like any database a server opens.
    let source = from.open_existing().context("--from")?;
    let destination = to.open(OpenOptions::default()).context("--to")?;
    let counts =
        rolegate_store::copy(source.as_ref(), destination.as_ref()).with_context(|| {
            format!(
                "copying {} to {} (nothing was written)",
                from.describe(),
                to.describe()
            )
        })?;
    print!("{}", report(&from, &to, &counts));
    Ok(())
}

/// What a copy prints: a line per table, then the total.
fn report(from: &Database, to: &Database, counts: &[TableCount]) -> String {
    let width = counts.iter().map(|c| c.table.len()).max().unwrap_or(0);
    let mut out = format!("copied {} to {}\n", from.describe(), to.describe());
    for c in counts {
        out.push_str(&format!("  {:<width$}  {:>8}\n", c.table, c.rows));
    }
    out.push_str(&format!(
        "{} rows in {} tables\n",
        counts.iter().map(|c| c.rows).sum::<u64>(),
        counts.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pg_dump_command_names_the_schema_and_no_password() -> anyhow::Result<()> {
        assert_eq!(
            pg_dump_command(
                "postgres://rg:s3cret@db:5432/rolegate?schema=tenant_a&sslmode=require",
                Path::new("backups/rolegate.dump")
            )?,
            "pg_dump --schema=tenant_a --format=custom --file=backups/rolegate.dump \
             'postgres://rg@db:5432/rolegate?sslmode=require'"
        );
        assert!(
            pg_dump_command("postgres://db/rolegate", Path::new("it's.dump"))?
                .starts_with("pg_dump --schema=public --format=custom --file='it'\\''s.dump' ")
        );
        assert!(pg_dump_command("postgres://db/x?schema=a;b", Path::new("f")).is_err());
        Ok(())
    }
}
