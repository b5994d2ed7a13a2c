//! Reminders before an assignment ends (decisions.md §10, §12, §13): the scheduler e-mails
//! the holder when an eligible or active assignment ends in 14 days and again in 1 day, and
//! when an activation ends in 15 minutes.
//!
//! Rules:
//!
//! * An *activation* (an active assignment linked to an eligible one, made by `UserAdd`)
//!   gets the 15-minute reminder only; every other assignment (eligible, or active and
//!   assigned directly) gets the 14-day and 1-day reminders.
//! * Only a current assignment (started, not ended) with an end is reminded.
//! * When several reminders of one assignment fall due at once (a 10-hour eligible
//!   assignment is within both 14 days and 1 day of its end when it is made, or the
//!   scheduler was down), only the nearest is sent; the wider ones are recorded as covered
//!   and never sent later.
//! * Each reminder is sent once per assignment, threshold and scheduled end: a
//!   `reminders_sent` row with that unique key is claimed in the transaction that writes the
//!   e-mail and the audit record, so restarts and several scheduler instances cannot send
//!   it twice. An assignment whose end moves (an extension, or an activation cut short)
//!   is reminded again before its new end.
//! * Recipients: the holder if it is a user; for a group assignment, the group's members
//!   (nested groups included), since they hold the access. Only subjects with an e-mail
//!   address are written to; a reminder with no recipient is still claimed and audited.
//! * With e-mail off nothing is claimed, so turning e-mail on later still reminds of ends
//!   ahead.
//!
//! This module decides what is due; the job that claims and sends it is
//! [`crate::operation::reminder`].

use crate::assignment::{AssignmentState, RoleAssignment};
use jiff::{SignedDuration, Timestamp};

/// Audit name of sending a reminder (decisions.md §13).
pub const REMINDER_ACTIVITY: &str = "Send reminder";

/// How long before an assignment's end a reminder is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reminder {
    /// 14 days before the end of an eligible or directly assigned active assignment.
    FourteenDays,
    /// 1 day before the end of an eligible or directly assigned active assignment.
    OneDay,
    /// 15 minutes before the end of an activation.
    FifteenMinutes,
}

impl Reminder {
    /// Every reminder, widest first.
    pub const ALL: [Reminder; 3] = [
        Reminder::FourteenDays,
        Reminder::OneDay,
        Reminder::FifteenMinutes,
    ];

    /// How long before the end it is due.
    pub fn lead(self) -> SignedDuration {
        match self {
            Self::FourteenDays => SignedDuration::from_hours(14 * 24),
            Self::OneDay => SignedDuration::from_hours(24),
            Self::FifteenMinutes => SignedDuration::from_mins(15),
        }
    }

    /// The stored name (an ISO 8601 duration), part of the `reminders_sent` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FourteenDays => "P14D",
            Self::OneDay => "P1D",
            Self::FifteenMinutes => "PT15M",
        }
    }

    /// How the subject line says when: `14 days`, `1 day`, `15 minutes`.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::FourteenDays => "14 days",
            Self::OneDay => "1 day",
            Self::FifteenMinutes => "15 minutes",
        }
    }

    /// Whether this reminder is sent for activations (only they get the 15-minute one,
    /// and they get no other).
    pub fn for_activations(self) -> bool {
        self == Self::FifteenMinutes
    }

    /// Whether `a` gets this reminder at all (whatever the time).
    pub fn applies_to(self, a: &RoleAssignment) -> bool {
        self.for_activations() == is_activation(a)
    }
}

/// Whether `a` is an activation: an active assignment made from an eligible one.
pub fn is_activation(a: &RoleAssignment) -> bool {
    a.state == AssignmentState::Active && a.linked_eligible_id.is_some()
}

/// The reminder to send for `a` at `now`, if one is due: `a` is current and has an end,
/// and the nearest reminder that applies to it has its end within its lead. (Which of
/// them were already sent is the store's to say.)
pub fn due(a: &RoleAssignment, now: Timestamp) -> Option<Reminder> {
    let end = a.schedule.end?;
    if !a.is_current(now) {
        return None;
    }
    let left = now.duration_until(end);
    Reminder::ALL
        .into_iter()
        .rev()
        .find(|r| r.applies_to(a) && left <= r.lead())
}

/// The reminders sending `sent` covers: itself and the wider ones that apply to the same
/// assignment (they are past their time and must not be sent after it).
pub fn covered_by(sent: Reminder, a: &RoleAssignment) -> Vec<Reminder> {
    Reminder::ALL
        .into_iter()
        .filter(|r| r.applies_to(a) && r.lead() >= sent.lead())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::Event;
    use crate::schedule::Schedule;
    use proptest::prelude::*;

    const MIN: i64 = 60;
    const DAY: i64 = 24 * 60 * MIN;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn assignment(
        state: AssignmentState,
        linked: bool,
        start: i64,
        end: Option<i64>,
    ) -> RoleAssignment {
        RoleAssignment {
            id: "a".into(),
            resource_id: "x".into(),
            role_definition_id: "d".into(),
            subject_id: "s".into(),
            state,
            linked_eligible_id: linked.then(|| "e".to_string()),
            schedule: Schedule {
                start: t(start),
                end: end.map(t),
            },
            request_id: "r".into(),
        }
    }

    #[test]
    fn eligible_assignments_are_reminded_14_days_then_1_day_before_their_end() {
        let a = assignment(AssignmentState::Eligible, false, 0, Some(60 * DAY));
        assert_eq!(due(&a, t(0)), None);
        assert_eq!(due(&a, t(46 * DAY - 1)), None);
        assert_eq!(due(&a, t(46 * DAY)), Some(Reminder::FourteenDays));
        assert_eq!(due(&a, t(59 * DAY - 1)), Some(Reminder::FourteenDays));
        assert_eq!(due(&a, t(59 * DAY)), Some(Reminder::OneDay));
        assert_eq!(due(&a, t(60 * DAY - 1)), Some(Reminder::OneDay));
        // Ended: nothing.
        assert_eq!(due(&a, t(60 * DAY)), None);
    }

    #[test]
    fn activations_get_the_15_minute_reminder_only() {
        let a = assignment(AssignmentState::Active, true, 0, Some(8 * 60 * MIN));
        assert_eq!(due(&a, t(0)), None);
        assert_eq!(due(&a, t(8 * 60 * MIN - 15 * MIN - 1)), None);
        assert_eq!(
            due(&a, t(8 * 60 * MIN - 15 * MIN)),
            Some(Reminder::FifteenMinutes)
        );
        assert_eq!(
            covered_by(Reminder::FifteenMinutes, &a),
            vec![Reminder::FifteenMinutes]
        );
        // A 10-minute activation is due at once.
        let short = assignment(AssignmentState::Active, true, 0, Some(10 * MIN));
        assert_eq!(due(&short, t(0)), Some(Reminder::FifteenMinutes));
        // A directly assigned active role is reminded like an eligible one.
        let direct = assignment(AssignmentState::Active, false, 0, Some(10 * MIN));
        assert_eq!(due(&direct, t(0)), Some(Reminder::OneDay));
    }

    #[test]
    fn permanent_and_future_assignments_are_not_reminded() {
        let permanent = assignment(AssignmentState::Eligible, false, 0, None);
        assert_eq!(due(&permanent, t(1000 * DAY)), None);
        let future = assignment(AssignmentState::Eligible, false, 10 * DAY, Some(11 * DAY));
        assert_eq!(due(&future, t(0)), None);
        assert_eq!(due(&future, t(10 * DAY)), Some(Reminder::OneDay));
    }

    #[test]
    fn the_nearest_reminder_covers_the_wider_ones() {
        let a = assignment(AssignmentState::Eligible, false, 0, Some(10 * 60 * MIN));
        assert_eq!(due(&a, t(0)), Some(Reminder::OneDay));
        assert_eq!(
            covered_by(Reminder::OneDay, &a),
            vec![Reminder::FourteenDays, Reminder::OneDay]
        );
        assert_eq!(
            covered_by(Reminder::FourteenDays, &a),
            vec![Reminder::FourteenDays]
        );
        for r in Reminder::ALL {
            assert_eq!(
                Event::parse(Event::Ending(r).as_str()),
                Some(Event::Ending(r))
            );
        }
    }

    proptest! {
        /// With the claims a store would record, a clock that moves forward in arbitrary
        /// steps sends each reminder at most once, never after the end, never before its
        /// lead, and always the nearest one last.
        #[test]
        fn each_reminder_is_sent_at_most_once_within_its_lead(
            active in any::<bool>(),
            linked in any::<bool>(),
            len in 1i64..(30 * DAY),
            steps in proptest::collection::vec(0i64..(3 * DAY), 1..40),
        ) {
            let state = if active { AssignmentState::Active } else { AssignmentState::Eligible };
            let a = assignment(state, linked, 0, Some(len));
            let mut claimed: Vec<Reminder> = Vec::new();
            let mut sent: Vec<(Reminder, i64)> = Vec::new();
            let mut now = 0;
            for step in steps {
                if let Some(r) = due(&a, t(now)).filter(|r| !claimed.contains(r)) {
                    sent.push((r, now));
                    claimed.extend(covered_by(r, &a));
                }
                now += step;
            }
            for (i, (r, at)) in sent.iter().enumerate() {
                prop_assert!(r.applies_to(&a));
                prop_assert!(*at < len);
                prop_assert!(len - at <= r.lead().as_secs());
                prop_assert!(sent.iter().skip(i + 1).all(|(later, _)| later.lead() < r.lead()));
            }
        }
    }
}
