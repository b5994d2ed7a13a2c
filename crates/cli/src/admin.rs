//! The administrators' commands (cli.md §3): resources, register, assignments (and their
//! CSV export), assign, unassign, role settings, and the audit log through the API.

use crate::error::{Failure, Outcome};
use crate::http::{encode, literal, with_query};
use crate::names::{self, BASE};
use crate::output::{self, Format, Style, Table, human_duration, parse_duration, parse_time};
use crate::requester::rule;
use crate::session::{Api, now};
use jiff::SignedDuration;
use serde_json::{Map, Value, json};

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// `rolegate resources`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate resources
  rolegate resources --tree
  rolegate resources --type resourcegroup --search web")]
pub struct ResourcesArgs {
    /// Show the hierarchy, children under their parent.
    #[arg(long)]
    pub tree: bool,
    /// Only this type (managementgroup, subscription, resourcegroup, or a provider type).
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Only resources whose name or ARM id contains this text.
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
}

/// `rolegate resources`: the registered resources I may see.
pub fn resources(api: &Api, style: &Style, args: &ResourcesArgs) -> Outcome<()> {
    let mut filters = Vec::new();
    if let Some(kind) = &args.kind {
        filters.push(format!("type eq {}", literal(kind.trim())));
    }
    if let Some(search) = &args.search {
        let s = literal(&search.trim().to_lowercase());
        filters.push(format!(
            "(contains(tolower(displayName),{s}) or contains(tolower(externalId),{s}))"
        ));
    }
    let mut params = vec![
        ("$expand", "parent".to_string()),
        ("$top", "999".to_string()),
    ];
    if !filters.is_empty() {
        params.push(("$filter", filters.join(" and ")));
    }
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let items = api.list(&with_query(&format!("{BASE}/resources"), &params))?;
    let ordered = if args.tree {
        tree_order(&items)
    } else {
        items.iter().map(|r| (r, 0)).collect()
    };
    let mut table = Table::new(&["NAME", "TYPE", "ARM ID", "+ID"]);
    for (r, depth) in ordered {
        table.row(vec![
            format!("{}{}", "  ".repeat(depth), text(r, "displayName")),
            text(r, "type").to_string(),
            text(r, "externalId").to_string(),
            text(r, "id").to_string(),
        ]);
    }
    table.print(style, &Value::Array(items.clone()), "No resources.")
}

/// Resources depth-first under their parents (roots: those whose parent is not listed).
fn tree_order(items: &[Value]) -> Vec<(&Value, usize)> {
    let ids: std::collections::HashSet<&str> = items.iter().map(|r| text(r, "id")).collect();
    fn parent<'a>(r: &'a Value, ids: &std::collections::HashSet<&str>) -> Option<&'a str> {
        r["parent"]["id"].as_str().filter(|p| ids.contains(p))
    }
    let mut out = Vec::new();
    let mut stack: Vec<(&Value, usize)> = items
        .iter()
        .filter(|r| parent(r, &ids).is_none())
        .rev()
        .map(|r| (r, 0))
        .collect();
    let mut seen = std::collections::HashSet::new();
    while let Some((r, depth)) = stack.pop() {
        if !seen.insert(text(r, "id")) {
            continue;
        }
        out.push((r, depth));
        let id = text(r, "id");
        let mut children: Vec<&Value> = items
            .iter()
            .filter(|c| parent(c, &ids) == Some(id))
            .collect();
        children.sort_by_key(|c| text(c, "displayName").to_lowercase());
        for c in children.into_iter().rev() {
            stack.push((c, depth + 1));
        }
    }
    out
}

/// `rolegate register`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate register /subscriptions/0f4c…/resourceGroups/rg-web
  rolegate register /subscriptions/0f4c… --display-name Production --parent /providers/Microsoft.Management/managementGroups/corp")]
pub struct RegisterArgs {
    /// The ARM id.
    pub arm_id: String,
    /// A display name (else the last segment of the ARM id).
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// The management group a subscription or management group sits under (its ARM id).
    #[arg(long, value_name = "MG")]
    pub parent: Option<String>,
}

/// `rolegate register`.
pub fn register(api: &Api, style: &Style, args: &RegisterArgs) -> Outcome<()> {
    let mut body = json!({"externalId": args.arm_id.trim()});
    if let Some(n) = &args.display_name {
        body["displayName"] = json!(n);
    }
    if let Some(p) = &args.parent {
        body["parentExternalId"] = json!(p.trim());
    }
    api.post(&format!("{BASE}/resources/register"), &body)?;
    let r = names::resource(api, &args.arm_id)?;
    if style.format == Format::Json {
        return style.print_json(&r);
    }
    output::emit(&format!(
        "{}\tregistered\t{} ({}) {}\n",
        text(&r, "id"),
        text(&r, "displayName"),
        text(&r, "type"),
        text(&r, "externalId")
    ))
}

/// `eligible` or `active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum State {
    /// Eligible assignments.
    Eligible,
    /// Active assignments.
    Active,
}

impl State {
    fn api(self) -> &'static str {
        match self {
            Self::Eligible => "Eligible",
            Self::Active => "Active",
        }
    }
}

/// `rolegate assignments`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate assignments --scope rg-web
  rolegate assignments --scope rg-web --role Owner --state active -o wide
  rolegate assignments --scope prod --export > prod-assignments.csv
  rolegate assignments --scope rg-web --expired")]
pub struct AssignmentsArgs {
    /// The resource: an ARM id, a resource id or a unique display name.
    #[arg(long)]
    pub scope: String,
    /// Only this role.
    #[arg(long)]
    pub role: Option<String>,
    /// Only this member's (userName, e-mail, externalId, display name or id).
    #[arg(long)]
    pub member: Option<String>,
    /// Only eligible or only active assignments.
    #[arg(long, value_enum, conflicts_with = "expired")]
    pub state: Option<State>,
    /// Assignments made here that expired in the last 30 days.
    #[arg(long, conflicts_with = "export")]
    pub expired: bool,
    /// Write the API's CSV export to standard output.
    #[arg(long)]
    pub export: bool,
}

/// `rolegate assignments`.
pub fn assignments(api: &Api, style: &Style, args: &AssignmentsArgs) -> Outcome<()> {
    let target = names::resource(api, &args.scope)?;
    let rid = text(&target, "id").to_string();
    let mut filters = Vec::new();
    let mut role_id = None;
    let mut member_id = None;
    if let Some(role) = &args.role {
        let d = names::role_at(api, &rid, role)?;
        filters.push(format!("roleDefinitionId eq {}", literal(text(&d, "id"))));
        role_id = Some(text(&d, "id").to_string());
    }
    if let Some(member) = &args.member {
        let m = names::member(api, member)?;
        filters.push(format!("subjectId eq {}", literal(text(&m, "id"))));
        member_id = Some(text(&m, "id").to_string());
    }
    if let Some(state) = args.state {
        filters.push(format!("assignmentState eq '{}'", state.api()));
    }
    let filter = filters.join(" and ");
    let base = format!("{BASE}/resources/{}/roleAssignments", encode(&rid));
    if args.export {
        let mut params = Vec::new();
        if !filter.is_empty() {
            params.push(("$filter", filter.as_str()));
        }
        let csv = api.get_text(&with_query(&format!("{base}/export()"), &params))?;
        return output::emit(&csv);
    }
    let items = if args.expired {
        let mut items = api.list(&with_query(
            &format!("{base}/expired()"),
            &[("$expand", "subject,roleDefinition,resource")],
        ))?;
        items.retain(|a| {
            role_id
                .as_deref()
                .is_none_or(|r| text(a, "roleDefinitionId") == r)
                && member_id
                    .as_deref()
                    .is_none_or(|m| text(a, "subjectId") == m)
        });
        items
    } else {
        let mut params = vec![
            ("$expand", "subject,roleDefinition,resource"),
            ("$top", "999"),
        ];
        if !filter.is_empty() {
            params.push(("$filter", filter.as_str()));
        }
        api.list(&with_query(&base, &params))?
    };
    let mut table = Table::new(&[
        "MEMBER",
        "KIND",
        "ROLE",
        "STATE",
        "MEMBERSHIP",
        "STARTS",
        "ENDS",
        "+HELD ON",
        "+ID",
        "+MEMBER ID",
    ]);
    for a in &items {
        let s = &a["subject"];
        table.row(vec![
            s["principalName"]
                .as_str()
                .filter(|p| !p.is_empty())
                .or(s["displayName"].as_str())
                .unwrap_or_default()
                .to_string(),
            text(s, "type").to_string(),
            text(&a["roleDefinition"], "displayName").to_string(),
            if args.expired {
                "Expired".to_string()
            } else {
                text(a, "assignmentState").to_string()
            },
            text(a, "memberType").to_string(),
            style.cell_time(&a["startDateTime"]),
            if a["endDateTime"].is_null() {
                "permanent".to_string()
            } else {
                style.cell_time(&a["endDateTime"])
            },
            text(&a["resource"], "displayName").to_string(),
            text(a, "id").to_string(),
            text(a, "subjectId").to_string(),
        ]);
    }
    table.print(style, &Value::Array(items.clone()), "No assignments.")
}

/// `rolegate assign`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate assign alice@example.com Contributor --scope rg-web --for 90d --reason \"joins the web team\"
  rolegate assign oncall-group Owner --scope prod --until 2027-03-31
  rolegate assign bob Reader --scope prod --active --for 8h")]
pub struct AssignArgs {
    /// The member: userName, e-mail, externalId, unique display name or id.
    pub member: String,
    /// The role: display name (any case), template id or id.
    pub role: String,
    /// The resource: an ARM id, a resource id or a unique display name.
    #[arg(long)]
    pub scope: String,
    /// An active assignment (else eligible).
    #[arg(long)]
    pub active: bool,
    /// For how long (else the most the role allows).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration, conflicts_with_all = ["until", "permanent"])]
    pub duration: Option<SignedDuration>,
    /// Until when (RFC 3339 or `YYYY-MM-DD HH:MM` local).
    #[arg(long, value_name = "TIME", conflicts_with = "permanent")]
    pub until: Option<String>,
    /// No end (when the role's policy allows permanent assignments).
    #[arg(long)]
    pub permanent: bool,
    /// When to start (else now).
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Why.
    #[arg(long)]
    pub reason: Option<String>,
}

/// `rolegate assign`: `AdminAdd`.
pub fn assign(api: &Api, style: &Style, args: &AssignArgs) -> Outcome<()> {
    let target = names::resource(api, &args.scope)?;
    let rid = text(&target, "id").to_string();
    let role = names::role_at(api, &rid, &args.role)?;
    let member = names::member(api, &args.member)?;
    let state = if args.active { "Active" } else { "Eligible" };
    let mut schedule = json!({"type": "Once"});
    if let Some(start) = &args.start {
        schedule["startDateTime"] = json!(
            parse_time(start, &style.zone)
                .map_err(Failure::usage)?
                .to_string()
        );
    }
    if let Some(until) = &args.until {
        schedule["endDateTime"] = json!(
            parse_time(until, &style.zone)
                .map_err(Failure::usage)?
                .to_string()
        );
    } else if !args.permanent {
        let duration = match args.duration {
            Some(d) => d,
            None => {
                let collection = if args.active {
                    "adminMemberSettings"
                } else {
                    "adminEligibleSettings"
                };
                let minutes = rule(&role["roleSetting"], collection, "ExpirationRule")["maximumGrantPeriodInMinutes"]
                    .as_i64()
                    .unwrap_or(if args.active { 259_200 } else { 525_600 });
                SignedDuration::from_mins(minutes)
            }
        };
        schedule["duration"] = json!(output::iso_duration(duration));
    }
    let body = json!({
        "roleDefinitionId": role["id"],
        "resourceId": rid,
        "subjectId": member["id"],
        "assignmentState": state,
        "type": "AdminAdd",
        "reason": args.reason,
        "schedule": schedule,
    });
    let request = api.post(&format!("{BASE}/roleAssignmentRequests"), &body)?;
    if style.format == Format::Json {
        return style.print_json(&request);
    }
    output::emit(&format!(
        "{}\t{}\t{} {} of {} on {}\n",
        text(&request, "id"),
        request["status"]["subStatus"].as_str().unwrap_or_default(),
        text(&member, "displayName"),
        state.to_lowercase(),
        text(&role, "displayName"),
        text(&target, "displayName"),
    ))
}

/// `rolegate unassign`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate unassign alice@example.com Contributor --scope rg-web
  rolegate unassign bob Reader --scope prod --active")]
pub struct UnassignArgs {
    /// The member: userName, e-mail, externalId, unique display name or id.
    pub member: String,
    /// The role: display name (any case), template id or id.
    pub role: String,
    /// The resource: an ARM id, a resource id or a unique display name.
    #[arg(long)]
    pub scope: String,
    /// Remove the active assignment (else the eligible one).
    #[arg(long)]
    pub active: bool,
    /// Why.
    #[arg(long)]
    pub reason: Option<String>,
}

/// `rolegate unassign`: `AdminRemove`.
pub fn unassign(api: &Api, style: &Style, args: &UnassignArgs) -> Outcome<()> {
    let target = names::resource(api, &args.scope)?;
    let rid = text(&target, "id").to_string();
    let role = names::role_at(api, &rid, &args.role)?;
    let member = names::member(api, &args.member)?;
    let body = json!({
        "roleDefinitionId": role["id"],
        "resourceId": rid,
        "subjectId": member["id"],
        "assignmentState": if args.active { "Active" } else { "Eligible" },
        "type": "AdminRemove",
        "reason": args.reason,
    });
    let request = api.post(&format!("{BASE}/roleAssignmentRequests"), &body)?;
    if style.format == Format::Json {
        return style.print_json(&request);
    }
    output::emit(&format!(
        "{}\t{}\t{} no longer {} {} on {}\n",
        text(&request, "id"),
        request["status"]["subStatus"].as_str().unwrap_or_default(),
        text(&member, "displayName"),
        if args.active { "active" } else { "eligible" },
        text(&role, "displayName"),
        text(&target, "displayName"),
    ))
}

/// `rolegate settings show|set`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SettingsCommand {
    /// A role's activation and assignment rules on a resource.
    #[command(after_help = "Example:\n  rolegate settings show Contributor --scope rg-web")]
    Show {
        /// The role: display name (any case), template id or id.
        role: String,
        /// The resource: an ARM id, a resource id or a unique display name.
        #[arg(long)]
        scope: String,
    },
    /// Changes only the rules the flags name.
    Set(Box<SetArgs>),
}

/// `rolegate settings set`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate settings set Owner --scope prod --max-activation 2h --require-approval true --approver bob@example.com --required-approvals 1
  rolegate settings set Contributor --scope rg-web --require-ticket true --allow-emergency false")]
pub struct SetArgs {
    /// The role: display name (any case), template id or id.
    pub role: String,
    /// The resource: an ARM id, a resource id or a unique display name.
    #[arg(long)]
    pub scope: String,
    /// The longest activation.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_activation: Option<SignedDuration>,
    /// Activation needs MFA (the activation MfaRule).
    #[arg(long, value_name = "BOOL")]
    pub require_mfa: Option<bool>,
    /// Activation needs a reason.
    #[arg(long, value_name = "BOOL")]
    pub require_reason: Option<bool>,
    /// Activation needs a ticket.
    #[arg(long, value_name = "BOOL")]
    pub require_ticket: Option<bool>,
    /// Activation needs approval.
    #[arg(long, value_name = "BOOL")]
    pub require_approval: Option<bool>,
    /// An approver (repeatable; replaces the list): userName, e-mail, externalId, name or id.
    #[arg(long = "approver", value_name = "MEMBER")]
    pub approvers: Vec<String>,
    /// How many approvals grant a request.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub required_approvals: Option<u32>,
    /// How long a request waits for approval.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub approval_timeout: Option<SignedDuration>,
    /// Emergency activation may bypass approval.
    #[arg(long, value_name = "BOOL")]
    pub allow_emergency: Option<bool>,
}

/// `rolegate settings show|set`.
pub fn settings(api: &Api, style: &Style, command: &SettingsCommand) -> Outcome<()> {
    match command {
        SettingsCommand::Show { role, scope } => {
            let target = names::resource(api, scope)?;
            let d = names::role_at(api, text(&target, "id"), role)?;
            show_setting(style, &d, &target)
        }
        SettingsCommand::Set(args) => set_setting(api, style, args),
    }
}

fn minutes(v: &Value) -> String {
    v.as_i64()
        .map(|m| human_duration(SignedDuration::from_mins(m)))
        .unwrap_or_else(|| "-".into())
}

fn yes(v: &Value) -> &'static str {
    if v == true { "yes" } else { "no" }
}

fn show_setting(style: &Style, role: &Value, target: &Value) -> Outcome<()> {
    let s = &role["roleSetting"];
    if style.format == Format::Json {
        return style.print_json(s);
    }
    let user = |id: &str| rule(s, "userMemberSettings", id);
    let approval = user("ApprovalRule");
    let approvers: Vec<String> = approval["Approvers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            a["DisplayName"]
                .as_str()
                .or(a["Id"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let eligible = rule(s, "adminEligibleSettings", "ExpirationRule");
    let member = rule(s, "adminMemberSettings", "ExpirationRule");
    let lines = [
        (
            "Role",
            format!(
                "{} on {}",
                text(role, "displayName"),
                text(target, "displayName")
            ),
        ),
        (
            "Max activation",
            minutes(&user("ExpirationRule")["maximumGrantPeriodInMinutes"]),
        ),
        (
            "Require MFA",
            yes(&user("MfaRule")["mfaRequired"]).to_string(),
        ),
        (
            "Require reason",
            yes(&user("JustificationRule")["required"]).to_string(),
        ),
        (
            "Require ticket",
            yes(&user("TicketingRule")["ticketingRequired"]).to_string(),
        ),
        ("Require approval", yes(&approval["Enabled"]).to_string()),
        (
            "Approvers",
            if approvers.is_empty() {
                "(tenant and resource administrators)".into()
            } else {
                approvers.join(", ")
            },
        ),
        (
            "Approvals needed",
            approval["RequiredApprovals"]
                .as_i64()
                .unwrap_or(1)
                .to_string(),
        ),
        (
            "Approval timeout",
            minutes(
                &approval
                    .get("ApprovalTimeoutInMinutes")
                    .cloned()
                    .unwrap_or(json!(1440)),
            ),
        ),
        (
            "Allow emergency",
            yes(&approval["AllowEmergencyBypass"]).to_string(),
        ),
        (
            "Eligible up to",
            if eligible["permanentAssignment"] == true {
                "permanent allowed".into()
            } else {
                minutes(&eligible["maximumGrantPeriodInMinutes"])
            },
        ),
        (
            "Active up to",
            if member["permanentAssignment"] == true {
                "permanent allowed".into()
            } else {
                minutes(&member["maximumGrantPeriodInMinutes"])
            },
        ),
        ("Default", yes(&s["isDefault"]).to_string()),
    ];
    let mut out = String::new();
    for (k, v) in lines {
        out.push_str(&format!("{k:<17} {}\n", output::clean(&v)));
    }
    output::emit(&out)
}

/// The setting of `rule_id` in `setting`'s `userMemberSettings` as an object to change.
fn current_rule(setting: &Value, rule_id: &str) -> Map<String, Value> {
    rule(setting, "userMemberSettings", rule_id)
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn set_setting(api: &Api, style: &Style, args: &SetArgs) -> Outcome<()> {
    let target = names::resource(api, &args.scope)?;
    let role = names::role_at(api, text(&target, "id"), &args.role)?;
    let setting = &role["roleSetting"];
    let mut changed: Vec<(&str, Map<String, Value>)> = Vec::new();
    let mut change = |id: &'static str, f: &dyn Fn(&mut Map<String, Value>)| {
        let mut r = changed
            .iter()
            .position(|(n, _)| *n == id)
            .map(|i| changed.remove(i).1)
            .unwrap_or_else(|| current_rule(setting, id));
        f(&mut r);
        changed.push((id, r));
    };
    if let Some(d) = args.max_activation {
        let m = d.as_secs() / 60;
        if m < 1 {
            return Err(Failure::usage("--max-activation must be at least a minute"));
        }
        change("ExpirationRule", &|r| {
            r.insert("maximumGrantPeriodInMinutes".into(), json!(m));
            r.entry("permanentAssignment").or_insert(json!(false));
        });
    }
    if let Some(b) = args.require_mfa {
        change("MfaRule", &|r| {
            r.insert("mfaRequired".into(), json!(b));
        });
    }
    if let Some(b) = args.require_reason {
        change("JustificationRule", &|r| {
            r.insert("required".into(), json!(b));
        });
    }
    if let Some(b) = args.require_ticket {
        change("TicketingRule", &|r| {
            r.insert("ticketingRequired".into(), json!(b));
        });
    }
    let mut approvers = Vec::new();
    for a in &args.approvers {
        let m = names::member(api, a)?;
        // An approver's kind matters (a group's members approve); an id the caller could
        // not look up has none.
        let kind = match text(&m, "type") {
            "Group" => "Group",
            "User" | "ServicePrincipal" => "User",
            _ => {
                return Err(Failure::usage(format!(
                    "cannot tell whether `{a}` is a user or a group: only tenant administrators may look members up"
                )));
            }
        };
        approvers.push(json!({"Id": m["id"], "Type": kind, "DisplayName": m["displayName"]}));
    }
    let approval_flags = args.require_approval.is_some()
        || !approvers.is_empty()
        || args.required_approvals.is_some()
        || args.approval_timeout.is_some()
        || args.allow_emergency.is_some();
    if approval_flags {
        let timeout = match args.approval_timeout {
            Some(d) if d.as_secs() < 60 => {
                return Err(Failure::usage(
                    "--approval-timeout must be at least a minute",
                ));
            }
            Some(d) => Some(d.as_secs() / 60),
            None => None,
        };
        change("ApprovalRule", &|r| {
            r.entry("Enabled").or_insert(json!(false));
            if let Some(b) = args.require_approval {
                r.insert("Enabled".into(), json!(b));
            }
            if !approvers.is_empty() {
                r.insert("Approvers".into(), json!(approvers));
            }
            if let Some(n) = args.required_approvals {
                r.insert("RequiredApprovals".into(), json!(n));
            }
            if let Some(m) = timeout {
                r.insert("ApprovalTimeoutInMinutes".into(), json!(m));
            }
            if let Some(b) = args.allow_emergency {
                r.insert("AllowEmergencyBypass".into(), json!(b));
            }
        });
    }
    if changed.is_empty() {
        return Err(Failure::usage(
            "nothing to change: name a rule with a flag (see --help)",
        ));
    }
    let rules: Vec<Value> = changed
        .iter()
        .map(|(id, r)| json!({"ruleIdentifier": id, "setting": Value::Object(r.clone()).to_string()}))
        .collect();
    let id = text(setting, "id");
    if id.is_empty() {
        return Err(Failure::server(
            "the server sent the role without its setting",
        ));
    }
    api.patch(
        &format!(
            "{BASE}/resources/{}/roleSettings/{}",
            encode(text(&target, "id")),
            encode(id)
        ),
        &json!({"userMemberSettings": rules}),
    )?;
    let fresh = names::role_at(api, text(&target, "id"), text(&role, "id"))?;
    show_setting(style, &fresh, &target)
}

/// `rolegate audit list`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate audit list --since 24h
  rolegate audit list --activity \"Add member to role\" --initiator alice@example.com -o json")]
pub struct AuditListArgs {
    /// Only records of the last DURATION (e.g. 24h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "24h")]
    pub since: SignedDuration,
    /// Only this activity (its display name, e.g. "Add member to role").
    #[arg(long)]
    pub activity: Option<String>,
    /// Only records about this target id (a request, assignment, resource…).
    #[arg(long, value_name = "ID")]
    pub target: Option<String>,
    /// Only records initiated by this member (userName, e-mail, externalId, name or id).
    #[arg(long, value_name = "MEMBER")]
    pub initiator: Option<String>,
}

/// `rolegate audit list`: audit records through the API, newest first.
pub fn audit_list(api: &Api, style: &Style, args: &AuditListArgs) -> Outcome<()> {
    use rolegate_core::audit::{initiator_id, initiator_name};
    let since = now()
        .checked_sub(args.since)
        .map_err(|_| Failure::usage("--since reaches back too far"))?;
    let mut filters = vec![format!("activityDateTime ge {since}")];
    if let Some(a) = &args.activity {
        filters.push(format!("activityDisplayName eq {}", literal(a)));
    }
    if let Some(t) = &args.target {
        filters.push(format!("targetResources/any(t: t/id eq {})", literal(t)));
    }
    if let Some(m) = &args.initiator {
        let id = if names::looks_like_id(m) {
            m.clone()
        } else {
            text(&names::member(api, m)?, "id").to_string()
        };
        filters.push(format!("initiatedBy/user/id eq {}", literal(&id)));
    }
    let items = api.list(&with_query(
        "/beta/auditLogs/directoryAudits",
        &[
            ("$filter", &filters.join(" and ")),
            ("$orderby", "activityDateTime desc"),
            ("$top", "999"),
        ],
    ))?;
    let mut table = Table::new(&[
        "WHEN", "ACTIVITY", "BY", "TARGET", "RESULT", "+ID", "+REASON",
    ]);
    for r in &items {
        let by = &r["initiatedBy"]["user"];
        let target = r["targetResources"]
            .as_array()
            .and_then(|t| t.first())
            .map(|t| {
                t["displayName"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .or(t["id"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default();
        table.row(vec![
            style.cell_time(&r["activityDateTime"]),
            text(r, "activityDisplayName").to_string(),
            by["userPrincipalName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .or_else(|| Some(initiator_name(&r["initiatedBy"])).filter(|s| !s.is_empty()))
                .or_else(|| initiator_id(&r["initiatedBy"]))
                .unwrap_or_default()
                .to_string(),
            target,
            text(r, "result").to_string(),
            text(r, "id").to_string(),
            text(r, "resultReason").to_string(),
        ]);
    }
    table.print(style, &Value::Array(items.clone()), "No audit records.")
}
