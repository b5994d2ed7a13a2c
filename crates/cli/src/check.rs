//! `rolegate check`: asks the server's AuthZEN decision point (authzen.md §5) whether a
//! member may do an action on a resource, now or at `--at`, and prints the decision with its
//! reasons. Exit 0 when permitted, 3 when denied.

use crate::error::{Exit, Failure, Outcome};
use crate::names;
use crate::output::{self, Format, Style, parse_time};
use crate::session::Api;
use serde_json::{Value, json};

/// `rolegate check`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate check --member alice@contoso.example --action Microsoft.Compute/virtualMachines/start/action \\
      --resource /subscriptions/…/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01
  rolegate check --member alice --role Contributor --resource rg-web --at \"2026-12-07 09:00\"
  rolegate check --member bob --data --action Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read --resource /subscriptions/…")]
pub struct CheckArgs {
    /// Who: a userName, e-mail, externalId or id (the caller itself unless it administers).
    #[arg(long)]
    pub member: String,
    /// The member's kind.
    #[arg(long = "type", value_enum, default_value_t = MemberKind::User)]
    pub kind: MemberKind,
    /// An Azure operation, e.g. Microsoft.Compute/virtualMachines/start/action.
    #[arg(long, required_unless_present = "role", conflicts_with = "role")]
    pub action: Option<String>,
    /// The operation is a data action (isDataAction).
    #[arg(long, requires = "action")]
    pub data: bool,
    /// Instead of an operation: does the member hold this role (display name or template id)?
    #[arg(long)]
    pub role: Option<String>,
    /// Where: an ARM id (registered or below a registered one), a resource id or a unique
    /// display name.
    #[arg(long)]
    pub resource: String,
    /// Decide at this instant instead of now (RFC 3339 or `YYYY-MM-DD HH:MM` local).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

/// The member kinds AuthZEN knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MemberKind {
    /// A user.
    User,
    /// A group.
    Group,
    /// A service principal.
    ServicePrincipal,
}

fn looks_like_template(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// `rolegate check`.
pub fn check(api: &Api, style: &Style, args: &CheckArgs) -> Outcome<()> {
    let resource = if args.resource.trim().starts_with('/') {
        args.resource.trim().to_string()
    } else {
        let r = names::resource(api, &args.resource)?;
        r["id"].as_str().unwrap_or_default().to_string()
    };
    let action = match (&args.action, &args.role) {
        (Some(name), _) => json!({"name": name, "properties": {"isDataAction": args.data}}),
        (None, Some(role)) if looks_like_template(role) => {
            json!({"name": "role", "properties": {"templateId": role}})
        }
        (None, Some(role)) => json!({"name": "role", "properties": {"displayName": role}}),
        (None, None) => return Err(Failure::usage("pass --action OPERATION or --role ROLE")),
    };
    let kind = match args.kind {
        MemberKind::User => "user",
        MemberKind::Group => "group",
        MemberKind::ServicePrincipal => "servicePrincipal",
    };
    let mut body = json!({
        "subject": {"type": kind, "id": args.member.trim()},
        "resource": {"type": "azureResource", "id": resource},
        "action": action,
    });
    if let Some(at) = &args.at {
        let t = parse_time(at, &style.zone).map_err(Failure::usage)?;
        body["context"] = json!({"time": t.to_string()});
    }
    let d = api.post("/access/v1/evaluation", &body)?;
    let permitted = d["decision"] == true;
    if style.format == Format::Json {
        style.print_json(&d)?;
    } else {
        output::emit(&describe(style, &d))?;
    }
    if permitted {
        Ok(())
    } else {
        let code = d["context"]["reason_admin"]["code"]
            .as_str()
            .unwrap_or("denied");
        Err(Failure::new(Exit::Denied, format!("denied ({code})")))
    }
}

/// `s` quoted for a POSIX shell when it holds anything but plain characters.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// The decision as a few lines for people.
fn describe(style: &Style, d: &Value) -> String {
    let c = &d["context"];
    let mut out = String::new();
    if d["decision"] == true {
        out.push_str("PERMITTED\n");
        for g in c["reason_admin"]["grants"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  by {} on {} ({}, {}){}\n",
                text(g, "roleName"),
                text(g, "scope"),
                text(g, "memberType"),
                text(g, "assignmentState"),
                match g["endDateTime"].as_str() {
                    Some(_) => format!(" until {}", style.time(&g["endDateTime"])),
                    None => " permanently".to_string(),
                }
            ));
        }
    } else {
        out.push_str(&format!(
            "DENIED: {}\n",
            text(&c["reason_admin"], "message")
        ));
        if let Some(m) = c["reason_user"]["message"].as_str() {
            out.push_str(&format!("  {m}\n"));
        }
        for e in c["eligible"].as_array().into_iter().flatten() {
            let scope = e["activate"]["resourceId"]
                .as_str()
                .unwrap_or_else(|| text(e, "scope"));
            out.push_str(&format!(
                "  eligible: {} on {} (rolegate activate {} --scope {})\n",
                text(e, "roleName"),
                text(e, "scope"),
                shell_word(text(e, "roleName")),
                shell_word(scope),
            ));
        }
    }
    if c["next_change_at"].is_string() {
        out.push_str(&format!(
            "  changes at {}\n",
            style.time(&c["next_change_at"])
        ));
    }
    out.lines()
        .map(|l| format!("{}\n", output::clean(l)))
        .collect()
}
