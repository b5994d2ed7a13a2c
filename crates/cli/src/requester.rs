//! The requesters' and approvers' commands (cli.md §3): my roles, activate, deactivate,
//! extend, renew, my requests, one request, approvals, approve, deny. Every decision is the
//! server's; these only find what the names mean and say what came back.

use crate::error::{Exit, Failure, Outcome};
use crate::http::{encode, literal, with_query};
use crate::names::{self, BASE};
use crate::output::{self, Style, Table, human_duration, iso_duration, parse_duration, parse_time};
use crate::session::{Api, now};
use jiff::SignedDuration;
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// A rule of a role setting: `collection` (`userMemberSettings`…) rule `id`'s parsed setting.
pub fn rule(setting: &Value, collection: &str, id: &str) -> Value {
    setting[collection]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| text(r, "ruleIdentifier") == id)
        .map(|r| match &r["setting"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            other => other.clone(),
        })
        .unwrap_or(Value::Null)
}

/// `rolegate roles`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate roles
  rolegate roles --eligible --scope rg-web
  rolegate roles --active -o json")]
pub struct RolesArgs {
    /// Only eligible roles.
    #[arg(long, conflicts_with_all = ["active", "expired"])]
    pub eligible: bool,
    /// Only active roles.
    #[arg(long, conflicts_with = "expired")]
    pub active: bool,
    /// Roles whose eligibility ended in the last 30 days (to renew).
    #[arg(long)]
    pub expired: bool,
    /// Only roles that apply on this scope (held there or on an ancestor).
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,
}

/// `rolegate roles`: my roles.
pub fn roles(api: &mut Api, style: &Style, args: &RolesArgs) -> Outcome<()> {
    let me = api.my_id()?;
    let items = if args.expired {
        let mut items = api.list(&with_query(
            "/beta/me/expiredRoleAssignments",
            &[("$expand", "roleDefinition,resource")],
        ))?;
        if let Some(scope) = &args.scope {
            let resources: Vec<Value> = items.iter().map(|a| a["resource"].clone()).collect();
            let target = match names::resource_among(&resources, scope)? {
                Some(r) => r,
                None => names::resource(api, scope)?,
            };
            items.retain(|a| names::distance(a, &target, false).is_some());
        }
        items
    } else {
        let mut filter = format!("subjectId eq {}", literal(&me));
        if args.eligible {
            filter.push_str(" and assignmentState eq 'Eligible'");
        } else if args.active {
            filter.push_str(" and assignmentState eq 'Active'");
        }
        let path = match &args.scope {
            Some(scope) => {
                let target = names::resource(api, scope)?;
                format!(
                    "{BASE}/resources/{}/roleAssignments",
                    encode(text(&target, "id"))
                )
            }
            None => format!("{BASE}/roleAssignments"),
        };
        api.list(&with_query(
            &path,
            &[
                ("$filter", &filter),
                ("$expand", "roleDefinition,resource"),
                ("$top", "999"),
            ],
        ))?
    };
    let mut rows: Vec<&Value> = items.iter().collect();
    rows.sort_by_key(|a| {
        (
            text(a, "assignmentState") != "Active",
            text(&a["roleDefinition"], "displayName").to_lowercase(),
        )
    });
    let mut table = Table::new(&[
        "ROLE",
        "SCOPE",
        "STATE",
        "MEMBERSHIP",
        "STARTS",
        "ENDS",
        "+ID",
        "+SCOPE ID",
    ]);
    for a in rows {
        let state = if args.expired {
            "Expired"
        } else {
            text(a, "assignmentState")
        };
        table.row(vec![
            text(&a["roleDefinition"], "displayName").to_string(),
            text(&a["resource"], "displayName").to_string(),
            state.to_string(),
            text(a, "memberType").to_string(),
            style.cell_time(&a["startDateTime"]),
            if a["endDateTime"].is_null() {
                "permanent".to_string()
            } else {
                style.cell_time(&a["endDateTime"])
            },
            text(a, "id").to_string(),
            text(&a["resource"], "externalId").to_string(),
        ]);
    }
    table.print(style, &Value::Array(items.clone()), "No roles.")
}

/// `rolegate activate`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate activate Contributor --scope rg-web --for 2h --reason \"deploy hotfix\"
  rolegate activate owner --scope /subscriptions/1111…/resourceGroups/rg-web --ticket-system Jira --ticket-number OPS-42 --wait
  rolegate activate Reader --scope prod --start \"2026-12-07 09:00\" --for 1h")]
pub struct ActivateArgs {
    /// The role: display name (any case), template id or id.
    pub role: String,
    /// Where: an ARM id, a resource id or a unique display name.
    #[arg(long)]
    pub scope: String,
    /// How long (e.g. 2h, 1h30m, PT2H); the role's maximum when not given.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<SignedDuration>,
    /// When to start (RFC 3339 or `YYYY-MM-DD HH:MM` local); now when not given.
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Why (asked for on a terminal when the policy needs one).
    #[arg(long)]
    pub reason: Option<String>,
    /// The ticket system (with --ticket-number).
    #[arg(long, requires = "ticket_number")]
    pub ticket_system: Option<String>,
    /// The ticket number (with --ticket-system).
    #[arg(long, requires = "ticket_system")]
    pub ticket_number: Option<String>,
    /// Emergency access: without approval, when the role allows it (approvers are told).
    #[arg(long)]
    pub emergency: bool,
    /// The eligible assignment to activate, when several fit.
    #[arg(long, value_name = "ID")]
    pub eligibility: Option<String>,
    /// Wait until the request is granted, denied, cancelled or timed out.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 4).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m", requires = "wait")]
    pub timeout: SignedDuration,
}

/// My eligible or active assignments that apply on `target`, expanded.
fn mine_on(api: &mut Api, target: &Value, state: &str, expand: &str) -> Outcome<Vec<Value>> {
    let me = api.my_id()?;
    api.list(&with_query(
        &format!(
            "{BASE}/resources/{}/roleAssignments",
            encode(text(target, "id"))
        ),
        &[
            (
                "$filter",
                &format!(
                    "subjectId eq {} and assignmentState eq '{state}'",
                    literal(&me)
                ),
            ),
            ("$expand", expand),
            ("$top", "999"),
        ],
    ))
}

/// The one of `candidates` for `role` closest to `target` (or named by `pick`): on `target`
/// itself or an ancestor (`listed_as_applying`: the server listed them for `target`, so a
/// management group among them is an ancestor too).
fn closest(
    candidates: Vec<Value>,
    role: &str,
    target: &Value,
    pick: Option<&str>,
    what: &str,
    listed_as_applying: bool,
) -> Outcome<Value> {
    let mut fitting: Vec<(usize, Value)> = candidates
        .into_iter()
        .filter(|a| names::role_matches(&a["roleDefinition"], role))
        .filter(|a| pick.is_none_or(|id| text(a, "id").eq_ignore_ascii_case(id)))
        .filter_map(|a| names::distance(&a, target, listed_as_applying).map(|d| (d, a)))
        .collect();
    if fitting.is_empty() {
        return Err(Failure::usage(match pick {
            Some(id) => format!(
                "`{id}` is not {what} of `{role}` on {}",
                text(target, "displayName")
            ),
            None => format!(
                "you hold no {what} of `{role}` that applies on {} (`rolegate roles` lists yours)",
                text(target, "displayName")
            ),
        }));
    }
    fitting.sort_by_key(|(d, _)| *d);
    let best = fitting[0].0;
    let tied: Vec<&Value> = fitting
        .iter()
        .filter(|(d, _)| *d == best)
        .map(|(_, a)| a)
        .collect();
    if tied.len() > 1 {
        let mut message = format!("several {what}s of `{role}` fit; pick one with --eligibility:");
        for a in tied {
            message.push_str(&format!(
                "\n  {}  on {} ({})",
                text(a, "id"),
                text(&a["resource"], "displayName"),
                text(a, "memberType")
            ));
        }
        return Err(Failure::usage(message));
    }
    Ok(fitting.swap_remove(0).1)
}

/// Asks on the terminal for `what` (prompting `label`); without a terminal, bad usage
/// naming `flag`.
fn ask(label: &str, what: &str, flag: &str) -> Outcome<String> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(Failure::usage(format!(
            "this role needs {what}: pass {flag}"
        )));
    }
    eprint!("{label}: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::usage(format!("reading {what}: {e}")))?;
    let line = line.trim().to_string();
    if line.is_empty() {
        return Err(Failure::usage(format!("{what} is required: pass {flag}")));
    }
    Ok(line)
}

/// `rolegate activate`: a `UserAdd` request.
pub fn activate(api: &mut Api, style: &Style, args: &ActivateArgs) -> Outcome<()> {
    let target = names::resource(api, &args.scope)?;
    let candidates = mine_on(api, &target, "Eligible", "roleDefinition,resource")?;
    let eligible = closest(
        candidates,
        &args.role,
        &target,
        args.eligibility.as_deref(),
        "eligibility",
        true,
    )?;
    let template = text(&eligible["roleDefinition"], "templateId").to_string();
    let role = names::role_at(api, text(&target, "id"), &template)?;
    let setting = &role["roleSetting"];
    let max = rule(setting, "userMemberSettings", "ExpirationRule")["maximumGrantPeriodInMinutes"]
        .as_i64()
        .map(SignedDuration::from_mins);
    let duration = match (args.duration, max) {
        (Some(d), _) => d,
        (None, Some(m)) => m,
        (None, None) => SignedDuration::from_hours(1),
    };
    let reason = match &args.reason {
        Some(r) => Some(r.clone()),
        None if rule(setting, "userMemberSettings", "JustificationRule")["required"] == true => {
            Some(ask("Reason", "a reason", "--reason TEXT")?)
        }
        None => None,
    };
    if args.ticket_number.is_none()
        && rule(setting, "userMemberSettings", "TicketingRule")["ticketingRequired"] == true
    {
        return Err(Failure::usage(
            "this role needs a ticket: pass --ticket-system S --ticket-number N",
        ));
    }
    let mut schedule = json!({"type": "Once", "duration": iso_duration(duration)});
    if let Some(start) = &args.start {
        let at = parse_time(start, &style.zone).map_err(Failure::usage)?;
        schedule["startDateTime"] = json!(at.to_string());
    }
    let me = api.my_id()?;
    let mut body = json!({
        "roleDefinitionId": role["id"],
        "resourceId": target["id"],
        "subjectId": me,
        "assignmentState": "Active",
        "type": "UserAdd",
        "reason": reason,
        "schedule": schedule,
        "linkedEligibleRoleAssignmentId": eligible["id"],
    });
    if let (Some(system), Some(number)) = (&args.ticket_system, &args.ticket_number) {
        body["ticketInfo"] = json!({"ticketSystem": system, "ticketNumber": number});
    }
    if args.emergency {
        body["emergency"] = json!(true);
    }
    let request = api.post(&format!("{BASE}/roleAssignmentRequests"), &body)?;
    let json = style.format == output::Format::Json;
    // With `-o json` and `--wait`, the one object printed is the request as it ended.
    if !(json && args.wait) {
        report_request(
            style,
            &request,
            &format!(
                "{} on {}",
                text(&role, "displayName"),
                text(&target, "displayName")
            ),
        )?;
    }
    if args.wait {
        let (last, outcome) = wait(api, style, &request, args.timeout);
        if json {
            style.print_json(&last)?;
        }
        outcome?;
    }
    Ok(())
}

fn sub_status(request: &Value) -> &str {
    request["status"]["subStatus"].as_str().unwrap_or_default()
}

/// Prints what a request came to (the object with `-o json`).
fn report_request(style: &Style, request: &Value, what: &str) -> Outcome<()> {
    if style.format == output::Format::Json {
        return style.print_json(request);
    }
    let schedule = &request["schedule"];
    let said = match sub_status(request) {
        "Provisioned" if request["type"] == "UserRemove" || request["type"] == "AdminRemove" => {
            "removed".to_string()
        }
        "Provisioned" if schedule["endDateTime"].is_string() => {
            format!("active until {}", style.time(&schedule["endDateTime"]))
        }
        "Provisioned" => "done".to_string(),
        "Revoked" => "removed".to_string(),
        "Granted" => format!(
            "granted, starting {}",
            style.time(&schedule["startDateTime"])
        ),
        "PendingApproval" => "waiting for approval".to_string(),
        "PendingAdminDecision" => "waiting for an administrator's decision".to_string(),
        "AdminDenied" | "Denied" => "denied".to_string(),
        "Canceled" => "cancelled".to_string(),
        "TimedOut" => "timed out".to_string(),
        other => other.to_string(),
    };
    output::emit(&format!(
        "{what}: {said} (request {})\n",
        text(request, "id")
    ))
}

/// "Owner on rg-web" (and "for Alice" with `subject`) from a request's expansions.
fn request_what(request: &Value, subject: bool) -> String {
    let mut what = format!(
        "{} on {}",
        text(&request["roleDefinition"], "displayName"),
        text(&request["resource"], "displayName")
    );
    if subject {
        what.push_str(&format!(
            " for {}",
            text(&request["subject"], "displayName")
        ));
    }
    what
}

/// Polls the request until it leaves the pending states, or `timeout` passes (exit 4); the
/// request as last seen, and how the wait ended.
fn wait(
    api: &Api,
    style: &Style,
    request: &Value,
    timeout: SignedDuration,
) -> (Value, Outcome<()>) {
    let mut last = request.clone();
    let outcome = wait_for(api, style, &mut last, timeout);
    (last, outcome)
}

fn wait_for(api: &Api, style: &Style, current: &mut Value, timeout: SignedDuration) -> Outcome<()> {
    let id = text(current, "id").to_string();
    let path = format!("{BASE}/roleAssignmentRequests/{}", encode(&id));
    let poll = std::env::var("ROLEGATE_WAIT_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(2));
    // No wait is longer than a week (and no timeout overflows the clock).
    let limit = Duration::from_secs(timeout.as_secs().clamp(0, 7 * 24 * 3600).unsigned_abs());
    let deadline = Instant::now()
        .checked_add(limit)
        .unwrap_or_else(Instant::now);
    loop {
        match sub_status(current) {
            "PendingApproval" | "PendingAdminDecision" | "PendingEvaluation" | "Accepted" => {}
            "Granted" | "Provisioned" | "AdminApproved" => {
                if style.format != output::Format::Json {
                    eprintln!("Request {id}: {}.", sub_status(current));
                }
                return Ok(());
            }
            "Denied" | "AdminDenied" => {
                return Err(Failure::new(
                    Exit::Denied,
                    format!("request {id} was denied"),
                ));
            }
            "TimedOut" => {
                return Err(Failure::new(
                    Exit::TimedOut,
                    format!("request {id} timed out: nobody decided in time"),
                ));
            }
            "Canceled" => {
                return Err(Failure::new(
                    Exit::TimedOut,
                    format!("request {id} was cancelled"),
                ));
            }
            other => {
                return Err(Failure::server(format!("request {id} ended as {other}")));
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                Exit::TimedOut,
                format!(
                    "still waiting after {}; request {id} stays pending (`rolegate request show {id}`)",
                    human_duration(timeout)
                ),
            ));
        }
        std::thread::sleep(
            poll.min(deadline.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(10)),
        );
        *current = api.get(&path)?;
    }
}

/// `rolegate deactivate`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Example:
  rolegate deactivate Contributor --scope rg-web")]
pub struct DeactivateArgs {
    /// The role: display name (any case), template id or id.
    pub role: String,
    /// Where it is active: an ARM id, a resource id or a unique display name.
    #[arg(long)]
    pub scope: String,
}

/// `rolegate deactivate`: a `UserRemove` of my activation.
pub fn deactivate(api: &mut Api, style: &Style, args: &DeactivateArgs) -> Outcome<()> {
    let target = names::resource(api, &args.scope)?;
    let mut active = mine_on(api, &target, "Active", "roleDefinition,resource")?;
    // My activations, not an active assignment an administrator gave me (which only they
    // remove), when there are any.
    if active
        .iter()
        .any(|a| !text(a, "linkedEligibleRoleAssignmentId").is_empty())
    {
        active.retain(|a| !text(a, "linkedEligibleRoleAssignmentId").is_empty());
    }
    let a = closest(active, &args.role, &target, None, "activation", true)?;
    let me = api.my_id()?;
    let body = json!({
        "roleDefinitionId": a["roleDefinitionId"],
        "resourceId": a["resourceId"],
        "subjectId": me,
        "assignmentState": "Active",
        "type": "UserRemove",
        "linkedEligibleRoleAssignmentId": a["linkedEligibleRoleAssignmentId"],
    });
    let request = api.post(&format!("{BASE}/roleAssignmentRequests"), &body)?;
    report_request(
        style,
        &request,
        &format!(
            "{} on {}",
            text(&a["roleDefinition"], "displayName"),
            text(&a["resource"], "displayName")
        ),
    )
}

/// `rolegate extend` and `rolegate renew`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate extend Contributor --scope rg-web --for 90d --reason \"project runs to March\"
  rolegate renew Reader --scope prod --until 2027-06-30")]
pub struct ChangeArgs {
    /// The role: display name (any case), template id or id.
    pub role: String,
    /// Where the eligibility is: an ARM id, a resource id or a unique display name.
    #[arg(long)]
    pub scope: String,
    /// Why.
    #[arg(long)]
    pub reason: Option<String>,
    /// For how long from now (default: the most the role allows).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration, conflicts_with = "until")]
    pub duration: Option<SignedDuration>,
    /// Until when (RFC 3339 or `YYYY-MM-DD HH:MM` local).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// `rolegate extend` (`UserExtend`) or, with `renew`, `rolegate renew` (`UserRenew`).
pub fn change(api: &mut Api, style: &Style, args: &ChangeArgs, renew: bool) -> Outcome<()> {
    let expand = "roleDefinition($expand=roleSetting),resource";
    let held = if renew {
        // An expired eligibility may leave nothing readable on its resource: the scope is
        // first looked for among the expired ones themselves.
        let items = api.list(&with_query(
            "/beta/me/expiredRoleAssignments",
            &[("$expand", expand)],
        ))?;
        let resources: Vec<Value> = items.iter().map(|a| a["resource"].clone()).collect();
        let target = match names::resource_among(&resources, &args.scope)? {
            Some(r) => r,
            None => names::resource(api, &args.scope)?,
        };
        closest(
            items,
            &args.role,
            &target,
            None,
            "expired eligibility",
            false,
        )?
    } else {
        let target = names::resource(api, &args.scope)?;
        let items = mine_on(api, &target, "Eligible", expand)?;
        closest(items, &args.role, &target, None, "eligibility", true)?
    };
    let resource_id = text(&held, "resourceId").to_string();
    let role = held["roleDefinition"].clone();
    let end = match (&args.until, args.duration) {
        (Some(t), _) => parse_time(t, &style.zone).map_err(Failure::usage)?,
        (None, Some(d)) => now()
            .checked_add(d)
            .map_err(|e| Failure::usage(e.to_string()))?,
        (None, None) => {
            let max = rule(
                &role["roleSetting"],
                "adminEligibleSettings",
                "ExpirationRule",
            )["maximumGrantPeriodInMinutes"]
                .as_i64()
                .unwrap_or(525_600)
                .min(5 * 525_600);
            now()
                .checked_add(SignedDuration::from_mins(max))
                .map_err(|e| Failure::usage(e.to_string()))?
        }
    };
    let me = api.my_id()?;
    let body = json!({
        "roleDefinitionId": held["roleDefinitionId"],
        "resourceId": resource_id,
        "subjectId": me,
        "assignmentState": "Eligible",
        "type": if renew { "UserRenew" } else { "UserExtend" },
        "reason": args.reason,
        "schedule": {"type": "Once", "endDateTime": end.to_string()},
    });
    let request = api.post(&format!("{BASE}/roleAssignmentRequests"), &body)?;
    report_request(
        style,
        &request,
        &format!(
            "{} on {}",
            text(&role, "displayName"),
            text(&held["resource"], "displayName")
        ),
    )
}

/// `rolegate requests`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate requests
  rolegate requests --pending -o json")]
pub struct RequestsArgs {
    /// Only pending requests.
    #[arg(long, conflicts_with = "all")]
    pub pending: bool,
    /// Every request, however old.
    #[arg(long)]
    pub all: bool,
}

const PENDING: &str = "status/subStatus in ('PendingApproval','PendingAdminDecision','Granted')";

/// `rolegate requests`: my requests, newest first.
pub fn requests(api: &mut Api, style: &Style, args: &RequestsArgs) -> Outcome<()> {
    let me = api.my_id()?;
    let mine = format!("subjectId eq {}", literal(&me));
    let filter = if args.pending {
        format!("{mine} and {PENDING}")
    } else if args.all {
        mine
    } else {
        let since = now() - SignedDuration::from_hours(30 * 24);
        format!("{mine} and (requestedDateTime ge {since} or {PENDING})")
    };
    let items = api.list(&with_query(
        &format!("{BASE}/roleAssignmentRequests"),
        &[
            ("$filter", &filter),
            ("$orderby", "requestedDateTime desc"),
            ("$expand", "roleDefinition,resource"),
            ("$top", "999"),
        ],
    ))?;
    let mut table = Table::new(&[
        "ID",
        "ROLE",
        "SCOPE",
        "TYPE",
        "STATUS",
        "REQUESTED",
        "REASON",
    ]);
    for r in &items {
        table.row(vec![
            text(r, "id").to_string(),
            text(&r["roleDefinition"], "displayName").to_string(),
            text(&r["resource"], "displayName").to_string(),
            text(r, "type").to_string(),
            sub_status(r).to_string(),
            style.cell_time(&r["requestedDateTime"]),
            text(r, "reason").to_string(),
        ]);
    }
    table.print(style, &Value::Array(items.clone()), "No requests.")
}

/// `rolegate request show|cancel`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RequestCommand {
    /// One request with its history (approvals included).
    #[command(after_help = "Example:\n  rolegate request show 5b1c…")]
    Show {
        /// The request id.
        id: String,
    },
    /// Cancels a pending request of mine.
    #[command(after_help = "Example:\n  rolegate request cancel 5b1c…")]
    Cancel {
        /// The request id.
        id: String,
    },
}

/// `rolegate request show|cancel`.
pub fn request(api: &mut Api, style: &Style, command: &RequestCommand) -> Outcome<()> {
    match command {
        RequestCommand::Show { id } => show_request(api, style, id),
        RequestCommand::Cancel { id } => {
            api.post(
                &format!("{BASE}/roleAssignmentRequests/{}/cancel", encode(id)),
                &json!({}),
            )?;
            let request = api.get(&with_query(
                &format!("{BASE}/roleAssignmentRequests/{}", encode(id)),
                &[("$expand", "roleDefinition,resource")],
            ))?;
            report_request(style, &request, &request_what(&request, false))
        }
    }
}

fn show_request(api: &mut Api, style: &Style, id: &str) -> Outcome<()> {
    let request = api.get(&with_query(
        &format!("{BASE}/roleAssignmentRequests/{}", encode(id)),
        &[
            ("$select", "*,approvals"),
            (
                "$expand",
                "roleDefinition($expand=roleSetting),resource,subject",
            ),
        ],
    ))?;
    if style.format == output::Format::Json {
        return style.print_json(&request);
    }
    let field = |k: &str, v: String| format!("{k:<12} {}\n", output::clean(&v));
    let mut out = String::new();
    out.push_str(&field("Request", text(&request, "id").to_string()));
    out.push_str(&field(
        "Status",
        format!(
            "{} / {}",
            request["status"]["status"].as_str().unwrap_or_default(),
            sub_status(&request)
        ),
    ));
    out.push_str(&field(
        "Type",
        format!(
            "{} ({})",
            text(&request, "type"),
            text(&request, "assignmentState")
        ),
    ));
    out.push_str(&field(
        "Role",
        text(&request["roleDefinition"], "displayName").to_string(),
    ));
    out.push_str(&field(
        "Scope",
        format!(
            "{}  {}",
            text(&request["resource"], "displayName"),
            text(&request["resource"], "externalId")
        ),
    ));
    out.push_str(&field(
        "Requester",
        format!(
            "{}  {}",
            text(&request["subject"], "displayName"),
            text(&request["subject"], "principalName")
        ),
    ));
    out.push_str(&field(
        "Requested",
        style.time(&request["requestedDateTime"]),
    ));
    let schedule = &request["schedule"];
    if !schedule.is_null() {
        out.push_str(&field("Starts", style.time(&schedule["startDateTime"])));
        out.push_str(&field(
            "Ends",
            if schedule["endDateTime"].is_null() {
                "permanent".into()
            } else {
                style.time(&schedule["endDateTime"])
            },
        ));
    }
    out.push_str(&field("Reason", text(&request, "reason").to_string()));
    if let Some(t) = request["ticketInfo"].as_object() {
        let part = |k: &str| {
            t.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        out.push_str(&field(
            "Ticket",
            format!("{} {}", part("ticketSystem"), part("ticketNumber")),
        ));
    }
    for d in request["status"]["statusDetails"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push_str(&field(
            "Rule",
            format!("{}: {}", text(d, "key"), text(d, "value")),
        ));
    }
    let approvals = request["approvals"].as_array().cloned().unwrap_or_default();
    let required = rule(
        &request["roleDefinition"]["roleSetting"],
        "userMemberSettings",
        "ApprovalRule",
    )["RequiredApprovals"]
        .as_i64()
        .unwrap_or(1);
    let received = approvals
        .iter()
        .filter(|a| a["decision"] == "AdminApproved")
        .count();
    out.push_str(&field("Approvals", format!("{received} of {required}")));
    output::emit(&out)?;
    if !approvals.is_empty() {
        let mut table = Table::new(&["WHEN", "BY", "DECISION", "REASON"]);
        for a in &approvals {
            table.row(vec![
                style.cell_time(&a["decidedDateTime"]),
                text(a, "approverDisplayName").to_string(),
                text(a, "decision").to_string(),
                text(a, "reason").to_string(),
            ]);
        }
        output::emit("\n")?;
        output::emit(&table.text(style, style.format == output::Format::Wide))?;
    }
    Ok(())
}

/// `rolegate approvals`: the requests waiting for my decision.
pub fn approvals(api: &mut Api, style: &Style) -> Outcome<()> {
    let items = api.list(&with_query(
        &format!("{BASE}/roleAssignmentRequests"),
        &[
            ("$filter", "asApprover()"),
            ("$select", "*,approvals"),
            (
                "$expand",
                "subject,roleDefinition($expand=roleSetting),resource",
            ),
        ],
    ))?;
    let mut table = Table::new(&[
        "ID",
        "REQUESTER",
        "ROLE",
        "SCOPE",
        "FOR",
        "REASON",
        "TICKET",
        "APPROVALS",
        "AGE",
    ]);
    let at = now();
    for r in &items {
        let required = rule(
            &r["roleDefinition"]["roleSetting"],
            "userMemberSettings",
            "ApprovalRule",
        )["RequiredApprovals"]
            .as_i64()
            .unwrap_or(1);
        let received = r["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["decision"] == "AdminApproved")
            .count();
        let age = r["requestedDateTime"]
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|t| human_duration(at.duration_since(t)))
            .unwrap_or_default();
        let ticket = r["ticketInfo"]["ticketNumber"].as_str().unwrap_or_default();
        table.row(vec![
            text(r, "id").to_string(),
            r["subject"]["principalName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .or(r["subject"]["displayName"].as_str())
                .unwrap_or_default()
                .to_string(),
            text(&r["roleDefinition"], "displayName").to_string(),
            text(&r["resource"], "displayName").to_string(),
            output::api_duration(&r["schedule"]["duration"])
                .map(human_duration)
                .unwrap_or_default(),
            text(r, "reason").to_string(),
            ticket.to_string(),
            format!("{received}/{required}"),
            age,
        ]);
    }
    table.print(
        style,
        &Value::Array(items.clone()),
        "Nothing waits for your decision.",
    )
}

/// `rolegate approve` and `rolegate deny`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate approve 5b1c… --reason \"matches OPS-42\"
  rolegate deny 5b1c… --reason \"use the staging subscription\"")]
pub struct DecideArgs {
    /// The request id (`rolegate approvals` lists them).
    pub id: String,
    /// Why (recorded in the audit log).
    #[arg(long)]
    pub reason: String,
}

/// `rolegate approve` / `rolegate deny`: `updateRequest` with `AdminApproved` / `AdminDenied`.
pub fn decide(api: &mut Api, style: &Style, args: &DecideArgs, approve: bool) -> Outcome<()> {
    if args.reason.trim().is_empty() {
        return Err(Failure::usage("--reason is empty"));
    }
    let path = format!("{BASE}/roleAssignmentRequests/{}", encode(&args.id));
    let request = api.get(&with_query(
        &path,
        &[("$expand", "roleDefinition,resource,subject")],
    ))?;
    let mut body = json!({
        "decision": if approve { "AdminApproved" } else { "AdminDenied" },
        "reason": args.reason,
    });
    if approve {
        body["assignmentState"] = request["assignmentState"].clone();
        body["schedule"] = request["schedule"].clone();
    }
    let updated = api.post(&format!("{path}/updateRequest"), &body)?;
    report_request(style, &updated, &request_what(&request, true))
}
