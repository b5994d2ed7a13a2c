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
  rolegate connectors check connectors.toml -o json
  rolegate connectors check connectors.toml --connect     also read each target (exit 1 if one is down)")]
    Check {
        /// The connectors file.
        path: String,
        /// Also run `list`, read-only, against every connector: reachability and the number
        /// of grants found. Exit 1 when one cannot be reached.
        #[arg(long)]
        connect: bool,
    },
}

/// Runs a `connectors` subcommand; returns the process's exit code.
pub fn run(command: &ConnectorsCommand, json: bool) -> i32 {
    match command {
        ConnectorsCommand::Check { path, connect } => check_file(path, *connect, json),
    }
}

/// `connectors check`: 0 valid (and reachable with `connect`), 1 a connector down, 2 an
/// invalid file.
fn check_file(path: &str, connect: bool, json: bool) -> i32 {
    let c = match config::load(path, &ProcessEnvironment) {
        Ok(c) => c,
        Err(problems) => {
            if json {
                println!("{}", check::json_problems(&problems));
            }
            eprint!("{}", config::report(&problems));
            return 2;
        }
    };
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    let reach = if connect {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => Some(rt.block_on(check::connect(&c))),
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    if json {
        let doc = check::json(&c);
        let doc = match &reach {
            Some(r) => check::with_reach(doc, r),
            None => doc,
        };
        println!("{doc}");
    } else {
        print!("{}", check::text(&c));
        if let Some(r) = &reach {
            print!("{}", check::reach_text(&c, r));
        }
    }
    i32::from(reach.is_some_and(|r| r.iter().any(Result::is_err)))
}
