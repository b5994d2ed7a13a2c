//! `rolegate connectors check` (connectors.md §2.1): validates a connectors file exactly as
//! `serve` will, without a database, and prints its effective rules or every problem.

use clap::Subcommand;
use rolegate_connectors::{check, config, secret::ProcessEnvironment};

/// The `connectors` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConnectorsCommand {
    /// Validates a connectors file as `serve --connectors` does and prints its effective
    /// rules (run it with the server's environment: it resolves "${NAME}" secrets and reads
    /// password files). Exit 0 when valid, 2 with one line per problem when not.
    #[command(after_help = "Examples:
  rolegate connectors check /etc/rolegate/connectors.toml
  rolegate connectors check connectors.toml -o json")]
    Check {
        /// The connectors file.
        path: String,
    },
}

/// Runs a `connectors` subcommand; returns the process's exit code.
pub fn run(command: &ConnectorsCommand, json: bool) -> i32 {
    match command {
        ConnectorsCommand::Check { path } => match config::load(path, &ProcessEnvironment) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                if json {
                    println!("{}", check::json(&c));
                } else {
                    print!("{}", check::text(&c));
                }
                0
            }
            Err(problems) => {
                if json {
                    println!("{}", check::json_problems(&problems));
                }
                eprint!("{}", config::report(&problems));
                2
            }
        },
    }
}
