//! E-mail notifications (decisions.md §10, §12): the events, the outbox row, and how a
//! message reads. Who is told what, the outbox rows (written in the same transaction as the
//! change, one per recipient) and composing a message from the store are in
//! [`crate::operation::email`]; a worker outside `core` sends them over SMTP with retries.
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

use crate::directory::Subject;
use crate::reminder::Reminder;
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

pub(crate) fn address_of(s: &Subject) -> Option<String> {
    s.email
        .as_deref()
        .map(str::trim)
        .filter(|e| s.active && valid_address(e))
        .map(str::to_string)
}

pub(crate) fn push(out: &mut Vec<(String, String)>, s: &Subject) {
    if let Some(a) = address_of(s)
        && !out.iter().any(|(id, _)| *id == s.id)
    {
        out.push((s.id.clone(), a));
    }
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
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The message: the lead, the facts as a list (text) or table (HTML), and the link.
pub(crate) fn render(
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
