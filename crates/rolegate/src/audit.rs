//! `rolegate audit verify` and `rolegate audit export` (decisions.md §11, §13): the
//! auditors' commands. The chain rules live in `rolegate_core::audit`; this only reads the
//! database and prints.

use clap::{Subcommand, ValueEnum};
use jiff::Timestamp;
use rolegate_core::audit::ChainReport;
use rolegate_core::error::DomainError;
use rolegate_core::operation::audit::verify_log;
use rolegate_core::store::{self, Store};
use serde_json::Value;
use std::io::Write;

/// The `audit` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Checks the hash chain of the audit log; exits non-zero naming the first broken record.
    Verify(VerifyArgs),
    /// Writes the audit records to standard output, oldest first.
    Export(ExportArgs),
    /// Lists audit records through a server's API (a client command: --server, login).
    List(rolegate_cli::admin::AuditListArgs),
}

/// `rolegate audit verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Database URL: `sqlite://PATH` or `postgres://…[?schema=NAME]`.
    #[arg(
        long,
        env = "ROLEGATE_DATABASE_URL",
        default_value = "sqlite://rolegate.db"
    )]
    database: String,
}

/// `rolegate audit export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Output format: one `directoryAudit` JSON document per line, or CSV with a header.
    #[arg(long, value_enum)]
    format: Format,
    /// Only records at or after this time (RFC 3339, e.g. `2024-05-01T00:00:00Z`, or a
    /// date, meaning its midnight UTC).
    #[arg(long, value_parser = parse_since)]
    since: Option<Timestamp>,
    /// Database URL: `sqlite://PATH` or `postgres://…[?schema=NAME]`.
    #[arg(
        long,
        env = "ROLEGATE_DATABASE_URL",
        default_value = "sqlite://rolegate.db"
    )]
    database: String,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// JSON lines.
    Jsonl,
    /// Comma-separated values.
    Csv,
}

fn parse_since(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .or_else(|_| format!("{s}T00:00:00Z").parse::<Timestamp>())
        .map_err(|_| format!("`{s}` is neither an RFC 3339 time nor a date (YYYY-MM-DD)"))
}

/// Runs an `audit` subcommand; `false` when it found the log broken (exit non-zero).
pub fn run(cmd: AuditCommand) -> anyhow::Result<bool> {
    match cmd {
        AuditCommand::Verify(a) => verify(&a.database),
        AuditCommand::Export(a) => {
            export(&a.database, a.format, a.since)?;
            Ok(true)
        }
        // Run by main before the server commands (it exits with the client's codes).
        AuditCommand::List(_) => Ok(true),
    }
}

fn verify(url: &str) -> anyhow::Result<bool> {
    let store = crate::database::Database::parse(url)?.open_existing()?;
    match verify_log(store.as_ref())? {
        ChainReport::Intact { checked, head } => {
            println!("audit log intact: {checked} records checked");
            println!("newest record hash: {head}");
            Ok(true)
        }
        ChainReport::Broken { checked, link } => {
            println!(
                "audit log broken at record {} (position {}): {}",
                link.id, link.seq, link.reason
            );
            println!("{checked} records before it are intact");
            Ok(false)
        }
    }
}

/// The CSV columns of an export.
const CSV_HEADER: &str = "id,activityDateTime,category,activityDisplayName,operationType,result,resultReason,\
correlationId,loggedByService,initiatedBy.user.id,initiatedBy.user.displayName,initiatedBy.user.userPrincipalName,\
targetResources,additionalDetails";

fn csv_row(doc: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Value, f: &dyn Fn(&Value) -> String| {
        v.as_array()
            .map(|items| items.iter().map(f).collect::<Vec<_>>().join("; "))
            .unwrap_or_default()
    };
    let user = &doc["initiatedBy"]["user"];
    let cells = [
        text(&doc["id"]),
        text(&doc["activityDateTime"]),
        text(&doc["category"]),
        text(&doc["activityDisplayName"]),
        text(&doc["operationType"]),
        text(&doc["result"]),
        text(&doc["resultReason"]),
        text(&doc["correlationId"]),
        text(&doc["loggedByService"]),
        rolegate_core::audit::initiator_id(&doc["initiatedBy"])
            .unwrap_or_default()
            .to_string(),
        rolegate_core::audit::initiator_name(&doc["initiatedBy"]).to_string(),
        text(&user["userPrincipalName"]),
        list(&doc["targetResources"], &|t| {
            format!("{}:{}", text(&t["type"]), text(&t["id"]))
        }),
        list(&doc["additionalDetails"], &|d| {
            format!("{}={}", text(&d["key"]), text(&d["value"]))
        }),
    ];
    cells
        .iter()
        .map(|c| rolegate_api::graph::csv_field(c))
        .collect::<Vec<_>>()
        .join(",")
}

fn export(url: &str, format: Format, since: Option<Timestamp>) -> anyhow::Result<()> {
    let store = crate::database::Database::parse(url)?.open_existing()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| DomainError::internal(format!("writing the export: {e}"));
    if format == Format::Csv {
        write!(out, "{CSV_HEADER}\r\n").map_err(io)?;
    }
    let store: &dyn Store = store.as_ref();
    store::read(store, |tx| {
        let mut after = 0;
        loop {
            let links = tx.audit_chain(after, since, 1000)?;
            if links.is_empty() {
                return Ok(());
            }
            for link in &links {
                let doc: Value = serde_json::from_str(&link.document).map_err(|e| {
                    DomainError::internal(format!("audit record {} is not JSON: {e}", link.id))
                })?;
                match format {
                    Format::Jsonl => writeln!(out, "{doc}").map_err(io)?,
                    Format::Csv => write!(out, "{}\r\n", csv_row(&doc)).map_err(io)?,
                }
                after = link.seq;
            }
        }
    })?;
    out.flush().map_err(io)?;
    Ok(())
}
