//! E-mail notifications (decisions.md §10, §12): who is told what about a request, and what
//! the message says. Rows of a durable outbox are written in the same transaction as the
//! change (one per recipient); a worker outside `core` sends them over SMTP with retries.
//!
//! Recipients: a request that needs approval → its approvers (listed users, members of
//! listed groups; with none listed, the tenant administrators and the R3 holders of the
//! resource); one that needs an administrator's decision → the tenant administrators and
//! the R3 holders; every decision, timeout and activation → the requester; an emergency
//! activation → the approvers and the tenant administrators; a reminder before an
//! assignment ends ([`crate::reminder`]) → its holder (a group's members). R3 holders are
//! the subjects with a current active Owner or User Access Administrator assignment on the
//! resource or an ancestor, directly or through a group (a group's members are written
//! to). Only subjects with an e-mail address are written to; groups are expanded to their
//! members, nested groups included.

use crate::access::OpContext;
use crate::directory::{Subject, SubjectKind};
use crate::error::{DomainError, Result};
use crate::policy::{ApproverKind, RuleCollection};
use crate::reminder::{self, Reminder};
use crate::request::{RequestType, RoleAssignmentRequest};
use crate::schedule::format_datetime;
use crate::store::Tx;
use jiff::Timestamp;

/// E-mail is on: what the rules need besides the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailPolicy {
    /// The tenant administrators' subject ids (or external ids).
    pub admins: Vec<String>,
}

/// What happened to a request, from the point of view of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// An activation waits for the recipient's approval.
    ApprovalNeeded,
    /// An extension or renewal waits for an administrator's decision.
    DecisionNeeded,
    /// The recipient's request was approved.
    Approved,
    /// The recipient's request was denied.
    Denied,
    /// The recipient's request was approved but could not be provisioned.
    Failed,
    /// The recipient's request was not decided in time.
    TimedOut,
    /// The recipient activated a role.
    Activated,
    /// Someone used emergency access on a role the recipient approves or administers.
    EmergencyActivated,
    /// An assignment the recipient holds (or a group of theirs holds) ends within the
    /// reminder's lead.
    Ending(Reminder),
}

impl Event {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::ApprovalNeeded => "approval_needed",
            Event::DecisionNeeded => "decision_needed",
            Event::Approved => "approved",
            Event::Denied => "denied",
            Event::Failed => "failed",
            Event::TimedOut => "timed_out",
            Event::Activated => "activated",
            Event::EmergencyActivated => "emergency_activated",
            Event::Ending(Reminder::FourteenDays) => "ending_in_14_days",
            Event::Ending(Reminder::OneDay) => "ending_in_1_day",
            Event::Ending(Reminder::FifteenMinutes) => "ending_in_15_minutes",
        }
    }

    /// The stored name back.
    pub fn parse(s: &str) -> Option<Event> {
        [
            Event::ApprovalNeeded,
            Event::DecisionNeeded,
            Event::Approved,
            Event::Denied,
            Event::Failed,
            Event::TimedOut,
            Event::Activated,
            Event::EmergencyActivated,
        ]
        .into_iter()
        .chain(Reminder::ALL.map(Event::Ending))
        .find(|e| e.as_str() == s)
    }
}

/// One e-mail waiting in the outbox, as a worker claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The row's id.
    pub id: String,
    /// The request it is about (for a reminder: the request that made the assignment; empty
    /// for assignments made before requests were recorded on them).
    pub request_id: String,
    /// The assignment a reminder is about; `None` for e-mail about a request.
    pub assignment_id: Option<String>,
    /// What happened.
    pub event: Event,
    /// The recipient's subject id.
    pub recipient_id: String,
    /// The recipient's address.
    pub address: String,
    /// When it was first due (the change's time).
    pub first_due: Timestamp,
    /// Attempts so far.
    pub attempts: u32,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
}

/// Whether `address` is safe to put on an SMTP command line and in a header: one `@`,
/// printable ASCII without spaces, angle brackets or line breaks.
pub fn valid_address(address: &str) -> bool {
    let ok_chars = address
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '(' | ')' | ',' | ';'));
    let parts: Vec<&str> = address.split('@').collect();
    ok_chars && address.len() <= 254 && parts.len() == 2 && parts.iter().all(|p| !p.is_empty())
}

fn address_of(s: &Subject) -> Option<String> {
    s.email
        .as_deref()
        .map(str::trim)
        .filter(|e| s.active && valid_address(e))
        .map(str::to_string)
}

/// At most this many groups are expanded for one subject (nested groups included).
const MAX_EXPANDED_GROUPS: usize = 1024;

/// Adds `id`'s address (a user; a group's members, nested groups included) to `out`, once
/// each.
fn add_subject(tx: &mut dyn Tx, id: &str, out: &mut Vec<(String, String)>) -> Result<()> {
    let Some(s) = tx.subject(id)? else {
        return Ok(());
    };
    if s.kind != SubjectKind::Group {
        push(out, &s);
        return Ok(());
    }
    let mut groups = vec![s.id];
    let mut i = 0;
    while let Some(group) = groups.get(i).cloned() {
        i += 1;
        for m in tx.group_members(&group)? {
            let Some(member) = tx.subject(&m)? else {
                continue;
            };
            if member.kind != SubjectKind::Group {
                push(out, &member);
            } else if !groups.contains(&member.id) && groups.len() < MAX_EXPANDED_GROUPS {
                groups.push(member.id);
            }
        }
    }
    Ok(())
}

/// The people who hold an assignment of `subject_id`: the subject itself if it is a user
/// or service principal, a group's members (nested groups included) otherwise; as
/// `(subject id, address)` pairs, only those with an address, each once.
pub fn holders(tx: &mut dyn Tx, subject_id: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    add_subject(tx, subject_id, &mut out)?;
    Ok(out)
}

/// Adds the R3 holders of `r`'s resource at `ctx.now`: subjects with a current active
/// Owner or User Access Administrator assignment on it or an ancestor (a group's members).
fn add_access_administrators(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    r: &RoleAssignmentRequest,
    out: &mut Vec<(String, String)>,
) -> Result<()> {
    let scopes = ctx.access.ancestors_or_self(&r.resource_id);
    for a in tx.access_administrators(&scopes, ctx.now)? {
        if a.is_current(ctx.now) {
            add_subject(tx, &a.subject_id, out)?;
        }
    }
    Ok(())
}

fn push(out: &mut Vec<(String, String)>, s: &Subject) {
    if let Some(a) = address_of(s)
        && !out.iter().any(|(id, _)| *id == s.id)
    {
        out.push((s.id.clone(), a));
    }
}

fn approvers(tx: &mut dyn Tx, r: &RoleAssignmentRequest) -> Result<Vec<Approver>> {
    let Some(setting) = tx.role_setting_of(&r.role_definition_id)? else {
        return Ok(Vec::new());
    };
    let policy = setting.rules.policy(RuleCollection::UserMember)?;
    Ok(policy
        .approval
        .map(|a| {
            a.approvers
                .into_iter()
                .map(|a| Approver {
                    id: a.id,
                    group: a.kind == ApproverKind::Group,
                    email: a.email,
                })
                .collect()
        })
        .unwrap_or_default())
}

struct Approver {
    id: String,
    group: bool,
    email: Option<String>,
}

fn add_approvers(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    r: &RoleAssignmentRequest,
    mail: &MailPolicy,
    out: &mut Vec<(String, String)>,
) -> Result<()> {
    let listed = approvers(tx, r)?;
    if listed.is_empty() {
        add_admins(tx, mail, out)?;
        return add_access_administrators(tx, ctx, r, out);
    }
    for a in listed {
        let before = out.len();
        add_subject(tx, &a.id, out)?;
        // A listed user unknown to the directory (or without an address there) is written
        // to at the address the rule gives, if any.
        if out.len() == before
            && !a.group
            && let Some(e) = a
                .email
                .as_deref()
                .map(str::trim)
                .filter(|e| valid_address(e))
            && !out.iter().any(|(id, _)| *id == a.id)
        {
            out.push((a.id.clone(), e.to_string()));
        }
    }
    Ok(())
}

fn add_admins(tx: &mut dyn Tx, mail: &MailPolicy, out: &mut Vec<(String, String)>) -> Result<()> {
    for id in &mail.admins {
        if let Some(s) = tx.subject(id)?
            && s.kind == SubjectKind::User
        {
            push(out, &s);
        }
    }
    Ok(())
}

/// Who is told about `event` on `r` at `ctx.now`: `(subject id, address)` pairs, each once.
pub fn recipients(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    mail: &MailPolicy,
    r: &RoleAssignmentRequest,
    event: Event,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    match event {
        Event::ApprovalNeeded => add_approvers(tx, ctx, r, mail, &mut out)?,
        Event::DecisionNeeded => {
            add_admins(tx, mail, &mut out)?;
            add_access_administrators(tx, ctx, r, &mut out)?;
        }
        Event::EmergencyActivated => {
            add_approvers(tx, ctx, r, mail, &mut out)?;
            add_admins(tx, mail, &mut out)?;
        }
        Event::Approved
        | Event::Denied
        | Event::Failed
        | Event::TimedOut
        | Event::Activated
        | Event::Ending(_) => {
            add_subject(tx, &r.subject_id, &mut out)?;
        }
    }
    // Nobody is asked to approve their own request or told of their own emergency access.
    if matches!(
        event,
        Event::ApprovalNeeded | Event::DecisionNeeded | Event::EmergencyActivated
    ) {
        out.retain(|(id, _)| *id != r.subject_id && *id != r.requested_by);
    }
    Ok(out)
}

/// Records `event` on `r` in the caller's transaction: one outbox row per recipient, when
/// e-mail is on (`ctx.mail`); nothing otherwise.
pub fn notify(
    tx: &mut dyn Tx,
    ctx: &OpContext,
    r: &RoleAssignmentRequest,
    event: Event,
) -> Result<()> {
    let Some(mail) = ctx.mail else {
        return Ok(());
    };
    for (id, address) in recipients(tx, ctx, mail, r, event)? {
        tx.enqueue_email(&Email {
            id: (ctx.new_id)(),
            request_id: r.id.clone(),
            assignment_id: None,
            event,
            recipient_id: id,
            address,
            first_due: ctx.now,
            attempts: 0,
        })?;
    }
    Ok(())
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of a header: control characters become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Renders `e` (with the request or assignment, role, resource and people as they are
/// now). The link points at
/// `{base_url}/beta/privilegedAccess/azureResources/roleAssignmentRequests/{id}`, or for a
/// reminder at `…/roleAssignments/{id}`. `None`: there is nothing to send any more (the
/// assignment a reminder is about has ended or changed its end since).
pub fn compose(tx: &mut dyn Tx, e: &Email, base_url: &str) -> Result<Option<Message>> {
    match e.event {
        Event::Ending(reminder) => {
            let assignment_id = e.assignment_id.as_deref().ok_or_else(|| {
                DomainError::internal(format!("reminder `{}` names no assignment", e.id))
            })?;
            compose_reminder(tx, e, reminder, assignment_id, base_url)
        }
        _ => compose_request(tx, e, base_url).map(Some),
    }
}

fn name_of_role_and_resource(
    tx: &mut dyn Tx,
    role_definition_id: &str,
    resource_id: &str,
) -> Result<(String, String)> {
    let names = crate::scheduler::Names::load(tx, role_definition_id, resource_id)?;
    Ok((one_line(&names.role), one_line(&names.resource)))
}

fn compose_reminder(
    tx: &mut dyn Tx,
    e: &Email,
    reminder: Reminder,
    assignment_id: &str,
    base_url: &str,
) -> Result<Option<Message>> {
    let Some(a) = tx.assignment(assignment_id)? else {
        return Ok(None);
    };
    // Extended since (or made permanent): this reminder no longer says the truth.
    let Some(end) = a
        .schedule
        .end
        .filter(|end| e.first_due.duration_until(*end) <= reminder.lead())
    else {
        return Ok(None);
    };
    let (role, resource) = name_of_role_and_resource(tx, &a.role_definition_id, &a.resource_id)?;
    let what = if reminder::is_activation(&a) {
        "your activation of"
    } else if a.state == crate::assignment::AssignmentState::Eligible {
        "your eligible assignment of"
    } else {
        "your active assignment of"
    };
    // A group's assignment reaches its members: name the group.
    let group = if a.subject_id == e.recipient_id {
        None
    } else {
        let name = tx
            .subject(&a.subject_id)?
            .map(|s| s.display_name)
            .unwrap_or_else(|| a.subject_id.clone());
        Some(one_line(&name))
    };
    let through = group
        .as_ref()
        .map_or_else(String::new, |g| format!(" through the group {g}"));
    let end_text = format_datetime(end);
    let subject = format!(
        "Reminder: {what} {role} on {resource}{through} ends in {} ({end_text})",
        reminder.phrase()
    );
    let mut lead = format!(
        "{what} the {role} role on {resource}{through} ends at {end_text}, in {} or less.{}",
        reminder.phrase(),
        if reminder::is_activation(&a) {
            " Activate the role again if you still need it."
        } else {
            " Ask an administrator to extend it, or request an extension, if you still need it."
        }
    );
    lead[..1].make_ascii_uppercase();
    let link = format!(
        "{}/beta/privilegedAccess/azureResources/roleAssignments/{}",
        base_url.trim_end_matches('/'),
        a.id
    );
    let mut facts: Vec<(&str, String)> = vec![("Role", role), ("Resource", resource)];
    if let Some(g) = group {
        facts.push(("Held by", g));
    }
    facts.push(("Start", format_datetime(a.schedule.start)));
    facts.push(("End", end_text));
    facts.push(("Assignment", a.id.clone()));
    Ok(Some(render(
        e,
        &subject,
        &lead,
        &facts,
        "View the assignment",
        &link,
    )))
}

fn compose_request(tx: &mut dyn Tx, e: &Email, base_url: &str) -> Result<Message> {
    let r = tx
        .request(&e.request_id)?
        .ok_or_else(|| DomainError::internal(format!("request `{}` is gone", e.request_id)))?;
    let role = tx
        .role_definition(&r.role_definition_id)?
        .map(|d| d.display_name)
        .unwrap_or_else(|| r.role_definition_id.clone());
    let resource = tx
        .resource(&r.resource_id)?
        .map(|x| x.display_name)
        .unwrap_or_else(|| r.resource_id.clone());
    let requester = tx
        .subject(&r.subject_id)?
        .map(|s| s.display_name)
        .unwrap_or_else(|| r.subject_id.clone());
    let (role, resource, requester) = (one_line(&role), one_line(&resource), one_line(&requester));
    let what = match r.kind {
        RequestType::UserExtend => "an extension of",
        RequestType::UserRenew => "a renewal of",
        _ => "",
    };
    let (subject, lead, action) = match e.event {
        Event::ApprovalNeeded => (
            format!("Approval needed: {requester} requests {role} on {resource}"),
            format!("{requester} requests the {role} role on {resource}. Your approval is needed."),
            "Review the request",
        ),
        Event::DecisionNeeded => (
            format!("Decision needed: {requester} requests {what} {role} on {resource}"),
            format!(
                "{requester} requests {what} the {role} role on {resource}. An administrator's decision is needed."
            ),
            "Review the request",
        ),
        Event::Approved => (
            format!("Approved: your request for {role} on {resource}"),
            format!("Your request for the {role} role on {resource} was approved."),
            "View the request",
        ),
        Event::Denied => (
            format!("Denied: your request for {role} on {resource}"),
            format!("Your request for the {role} role on {resource} was denied."),
            "View the request",
        ),
        Event::Failed => (
            format!("Not granted: your request for {role} on {resource}"),
            format!(
                "Your request for the {role} role on {resource} was approved, but could not be granted (the eligibility it relies on is gone)."
            ),
            "View the request",
        ),
        Event::TimedOut => (
            format!("Timed out: your request for {role} on {resource}"),
            format!(
                "Your request for the {role} role on {resource} was not decided in time and has been closed."
            ),
            "View the request",
        ),
        Event::Activated => (
            format!("Activated: {role} on {resource}"),
            format!("You activated the {role} role on {resource}."),
            "View the request",
        ),
        Event::EmergencyActivated => (
            format!("Emergency access: {requester} activated {role} on {resource}"),
            format!(
                "{requester} used emergency access to activate the {role} role on {resource} without approval."
            ),
            "Review the request",
        ),
        Event::Ending(_) => {
            return Err(DomainError::internal(
                "a reminder is rendered from its assignment, not a request",
            ));
        }
    };
    let subject = subject.replace("  ", " ");
    let lead = lead.replace("  ", " ");
    let link = format!(
        "{}/beta/privilegedAccess/azureResources/roleAssignmentRequests/{}",
        base_url.trim_end_matches('/'),
        r.id
    );
    let mut facts: Vec<(&str, String)> = vec![
        ("Requester", requester.clone()),
        ("Role", role.clone()),
        ("Resource", resource.clone()),
    ];
    if let Some(s) = r.schedule {
        facts.push(("Start", format_datetime(s.start)));
        facts.push((
            "End",
            s.end
                .map_or_else(|| "permanent".to_string(), format_datetime),
        ));
    }
    if let Some(reason) = r.reason.as_deref().filter(|x| !x.trim().is_empty()) {
        facts.push(("Justification", reason.trim().to_string()));
    }
    facts.push(("Request", r.id.clone()));
    Ok(render(e, &subject, &lead, &facts, action, &link))
}

/// The message: the lead, the facts as a list (text) or table (HTML), and the link.
fn render(
    e: &Email,
    subject: &str,
    lead: &str,
    facts: &[(&str, String)],
    action: &str,
    link: &str,
) -> Message {
    let mut text = format!("{lead}\n\n");
    for (k, v) in facts {
        text.push_str(&format!("{k}: {}\n", one_line(v)));
    }
    text.push_str(&format!("\n{action}: {link}\n\n-- \nRolegate\n"));
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n<body style=\"font-family: sans-serif; font-size: 14px; color: #222;\">\n",
    );
    html.push_str(&format!(
        "<p>{}</p>\n<table cellpadding=\"4\">\n",
        html_escape(lead)
    ));
    for (k, v) in facts {
        html.push_str(&format!(
            "<tr><td style=\"color: #666;\">{}</td><td>{}</td></tr>\n",
            html_escape(k),
            html_escape(v)
        ));
    }
    html.push_str(&format!(
        "</table>\n<p><a href=\"{}\">{}</a></p>\n<p style=\"color: #888; font-size: 12px;\">Rolegate</p>\n</body></html>\n",
        html_escape(link),
        html_escape(action)
    ));
    Message {
        to: e.address.clone(),
        subject: one_line(subject),
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_addresses_are_checked() {
        for e in [
            Event::ApprovalNeeded,
            Event::EmergencyActivated,
            Event::TimedOut,
        ] {
            assert_eq!(Event::parse(e.as_str()), Some(e));
        }
        assert!(valid_address("alice@example.com"));
        for bad in [
            "alice",
            "a@b@c",
            "a b@c",
            "a@b\r\nRCPT TO:<x@y>",
            "<a@b>",
            "@b",
            "a@",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
