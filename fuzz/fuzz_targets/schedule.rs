//! Schedules and role-setting rules. The input, as text, is tried as:
//! - a duration (`PT8H`, `1 day, 2:00:00`) and a datetime (`2024-05-01T10:00:00Z`): what
//!   parses formats back to text that parses to the same value;
//! - a schedule, `type|startDateTime|endDateTime|duration` (empty = absent), resolved as a
//!   request's is: a resolved end follows the start;
//! - the setting of each known rule, merged into the default rules by a PATCH: a setting the
//!   merge accepts gives a policy that parses and evaluates.
#![no_main]

use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use rolegate_core::policy::{RequestFacts, RoleRules, RoleRulesPatch, RuleCollection, RuleSetting};
use rolegate_core::schedule::{
    Schedule, ScheduleInput, format_datetime, format_duration, parse_datetime, parse_duration,
};

/// The rules whose settings are parsed (plus one the server stores without judging).
const RULES: [&str; 6] = [
    "ExpirationRule",
    "MfaRule",
    "JustificationRule",
    "TicketingRule",
    "ApprovalRule",
    "NotificationRule",
];

fn durations_and_datetimes(s: &str) {
    if let Ok(d) = parse_duration(s) {
        assert!(!d.is_negative(), "`{s}` gave {d:?}");
        let text = format_duration(d);
        let again = parse_duration(&text);
        assert_eq!(again.ok(), Some(d), "`{s}` → `{text}`");
    }
    if let Ok(t) = parse_datetime(s) {
        let text = format_datetime(t);
        let again = parse_datetime(&text);
        assert_eq!(again.ok(), Some(t), "`{s}` → `{text}`");
    }
}

fn schedule(s: &str, now: Timestamp) {
    let mut parts = s
        .splitn(4, '|')
        .map(|p| Some(p.to_string()).filter(|p| !p.is_empty()));
    let mut next = || parts.next().flatten();
    let input = ScheduleInput {
        kind: next(),
        start: next(),
        end: next(),
        duration: next(),
    };
    let Ok(sch) = Schedule::resolve(&input, now) else {
        return;
    };
    assert!(sch.is_current(sch.start), "{input:?} → {sch:?}");
    if let Some(end) = sch.end {
        assert!(end > sch.start, "{input:?} → {sch:?}");
        assert!(sch.has_ended(end) && !sch.is_current(end));
        assert!(sch.duration().is_some_and(|d| d.is_positive()));
    }
}

fn rule_settings(s: &str) {
    for rule in RULES {
        let patch = RoleRulesPatch {
            user_member: Some(vec![RuleSetting::new(rule, s)]),
            ..RoleRulesPatch::default()
        };
        let mut rules = RoleRules::defaults();
        if rules.apply_patch(patch).is_err() {
            continue;
        }
        let policy = match rules.policy(RuleCollection::UserMember) {
            Ok(p) => p,
            Err(e) => panic!("accepted {rule} `{s}` does not parse back: {e}"),
        };
        let _ = policy.approval_required();
        for duration in [
            None,
            Some(SignedDuration::from_hours(1)),
            Some(SignedDuration::MAX),
        ] {
            let facts = RequestFacts {
                duration,
                mfa: true,
                reason: Some("fuzz"),
                ticket: None,
            };
            let _ = policy.evaluate(&facts);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let now = Timestamp::constant(1_767_225_600, 0); // 2026-01-01T00:00:00Z
    durations_and_datetimes(s);
    schedule(s, now);
    rule_settings(s);
});
