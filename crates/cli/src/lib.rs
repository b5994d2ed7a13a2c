//! `rolegate` as a client (cli.md): sign in, activate, approve and administer from a
//! terminal, through the server's public HTTP APIs only (Graph PIM v2, SCIM), never its
//! database, so it works against any Rolegate with the caller's own rights. The binary's
//! clap tree flattens [`ClientCommand`] next to the server's commands.

pub mod admin;
pub mod check;
pub mod config;
pub mod error;
pub mod http;
pub mod login;
pub mod names;
pub mod output;
pub mod requester;
pub mod session;

pub use error::{Exit, Failure, Outcome};
pub use session::Connection;

use output::{Format, Style};
use session::Api;

/// The output flags every client command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Output: a table, the API's JSON, CSV, or a wide table with ids.
    #[arg(
        short = 'o',
        long,
        global = true,
        value_enum,
        default_value_t,
        help_heading = "Output"
    )]
    pub output: Format,
    /// Times in UTC instead of the local time zone.
    #[arg(long, global = true, help_heading = "Output")]
    pub utc: bool,
}

/// The client commands (cli.md §3).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Signs in to a server (device code by default; --browser, --dev-user, --token-stdin).
    Login(login::LoginArgs),
    /// Forgets this profile's tokens.
    #[command(after_help = "Example:\n  rolegate logout --profile prod")]
    Logout,
    /// Who I am on the server: subject, names, token expiry, MFA.
    #[command(after_help = "Example:\n  rolegate whoami -o json")]
    Whoami,
    /// My roles: eligible, active, or recently expired.
    Roles(requester::RolesArgs),
    /// Activates an eligible role (a UserAdd request).
    Activate(Box<requester::ActivateArgs>),
    /// Ends my activation early (a UserRemove request).
    Deactivate(requester::DeactivateArgs),
    /// Asks for my eligibility to last longer (a UserExtend request).
    Extend(requester::ChangeArgs),
    /// Asks for an expired eligibility back (a UserRenew request).
    Renew(requester::ChangeArgs),
    /// My requests, newest first.
    Requests(requester::RequestsArgs),
    /// One of my requests: show or cancel it.
    #[command(subcommand)]
    Request(requester::RequestCommand),
    /// Requests waiting for my decision.
    #[command(after_help = "Example:\n  rolegate approvals")]
    Approvals,
    /// Approves a request.
    Approve(requester::DecideArgs),
    /// Denies a request.
    Deny(requester::DecideArgs),
    /// The registered resources I may see.
    Resources(admin::ResourcesArgs),
    /// Registers a resource by ARM id.
    Register(admin::RegisterArgs),
    /// A resource's role assignments (or its CSV export).
    Assignments(admin::AssignmentsArgs),
    /// Assigns a role to a member (an AdminAdd request).
    Assign(Box<admin::AssignArgs>),
    /// Removes a member's assignment (an AdminRemove request).
    Unassign(admin::UnassignArgs),
    /// A role's settings on a resource: show them, or change some.
    #[command(subcommand)]
    Settings(admin::SettingsCommand),
    /// May a member do an action on a resource, now? (the AuthZEN decision point)
    Check(Box<check::CheckArgs>),
}

/// Prints a failure on stderr, one line each, and returns its exit code.
pub fn report(failure: &Failure) -> i32 {
    for line in failure.lines() {
        eprintln!("{line}");
    }
    failure.exit as i32
}

/// Runs a client command; returns the process exit code (errors already printed).
pub fn run(conn: &Connection, out: &OutputArgs, command: &ClientCommand) -> i32 {
    match dispatch(conn, out, command) {
        Ok(()) => 0,
        Err(f) => report(&f),
    }
}

/// Runs `rolegate audit list`; returns the process exit code.
pub fn run_audit_list(conn: &Connection, out: &OutputArgs, args: &admin::AuditListArgs) -> i32 {
    let result = Api::connect(conn)
        .and_then(|api| admin::audit_list(&api, &Style::detect(out.output, out.utc), args));
    match result {
        Ok(()) => 0,
        Err(f) => report(&f),
    }
}

fn dispatch(conn: &Connection, out: &OutputArgs, command: &ClientCommand) -> Outcome<()> {
    use ClientCommand as C;
    let style = Style::detect(out.output, out.utc);
    match command {
        C::Login(args) => return login::login(conn, args),
        C::Logout => return login::logout(conn),
        _ => {}
    }
    let mut api = Api::connect(conn)?;
    match command {
        C::Login(_) | C::Logout => Ok(()),
        C::Whoami => whoami(&api, &style),
        C::Roles(a) => requester::roles(&mut api, &style, a),
        C::Activate(a) => requester::activate(&mut api, &style, a),
        C::Deactivate(a) => requester::deactivate(&mut api, &style, a),
        C::Extend(a) => requester::change(&mut api, &style, a, false),
        C::Renew(a) => requester::change(&mut api, &style, a, true),
        C::Requests(a) => requester::requests(&mut api, &style, a),
        C::Request(c) => requester::request(&mut api, &style, c),
        C::Approvals => requester::approvals(&mut api, &style),
        C::Approve(a) => requester::decide(&mut api, &style, a, true),
        C::Deny(a) => requester::decide(&mut api, &style, a, false),
        C::Resources(a) => admin::resources(&api, &style, a),
        C::Register(a) => admin::register(&api, &style, a),
        C::Assignments(a) => admin::assignments(&api, &style, a),
        C::Assign(a) => admin::assign(&api, &style, a),
        C::Unassign(a) => admin::unassign(&api, &style, a),
        C::Settings(c) => admin::settings(&api, &style, c),
        C::Check(a) => check::check(&api, &style, a),
    }
}

/// `rolegate whoami`.
fn whoami(api: &Api, style: &Style) -> Outcome<()> {
    let mut me = api.me()?;
    let expires = session::token_expiry(&api.token())
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| serde_json::Value::String(t.to_string()))
        .unwrap_or(serde_json::Value::Null);
    me["server"] = serde_json::json!(api.server);
    me["tokenExpirationDateTime"] = expires.clone();
    if style.format == Format::Json {
        return style.print_json(&me);
    }
    let text = |k: &str| me[k].as_str().unwrap_or_default().to_string();
    let yes = |k: &str| if me[k] == true { "yes" } else { "no" }.to_string();
    let lines = [
        ("Server", api.server.clone()),
        ("Subject", text("id")),
        ("Name", text("displayName")),
        ("User name", text("principalName")),
        ("Type", text("type")),
        (
            "Token expires",
            if expires.is_null() {
                "-".into()
            } else {
                style.time(&expires)
            },
        ),
        ("MFA", yes("mfa")),
        ("Tenant admin", yes("isTenantAdministrator")),
    ];
    let mut out = String::new();
    for (k, v) in lines {
        out.push_str(&format!("{k:<14} {}\n", output::clean(&v)));
    }
    output::emit(&out)
}
