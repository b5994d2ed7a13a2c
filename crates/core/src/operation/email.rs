//! E-mail (decisions.md §12): who is told of an event (approvers, administrators, the
//! requester, holders), the outbox rows written in the change's transaction, and the
//! message composed for a worker to send.

use crate::access::OpContext;
use crate::directory::SubjectKind;
use crate::email::{Email, Event, MailPolicy, Message, one_line, push, render, valid_address};
use crate::error::{DomainError, Result};
use crate::policy::{ApproverKind, RuleCollection};
use crate::reminder::{self, Reminder};
use crate::request::{RequestType, RoleAssignmentRequest};
use crate::schedule::format_datetime;
use crate::store::{ReadTx, Tx};

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
    let everyone = crate::directory::member_expansion(&s.id, |g| tx.group_members(g))?;
    for m in everyone.iter().skip(1) {
        if let Some(member) = tx.subject(m)?
            && member.kind != SubjectKind::Group
        {
            push(out, &member);
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

/// Renders `e` (with the request or assignment, role, resource and people as they are
/// now). The link points at
/// `{base_url}/beta/privilegedAccess/azureResources/roleAssignmentRequests/{id}`, or for a
/// reminder at `…/roleAssignments/{id}`. `None`: there is nothing to send any more (the
/// assignment a reminder is about has ended or changed its end since).
pub fn compose(tx: &mut dyn ReadTx, e: &Email, base_url: &str) -> Result<Option<Message>> {
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
    tx: &mut dyn ReadTx,
    role_definition_id: &str,
    resource_id: &str,
) -> Result<(String, String)> {
    let names = super::load_names(tx, role_definition_id, resource_id)?;
    Ok((one_line(&names.role), one_line(&names.resource)))
}

fn compose_reminder(
    tx: &mut dyn ReadTx,
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

fn compose_request(tx: &mut dyn ReadTx, e: &Email, base_url: &str) -> Result<Message> {
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
