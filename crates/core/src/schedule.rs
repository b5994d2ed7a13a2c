//! Schedules of requests and assignments, and the wire formats of their parts: datetimes
//! ([`parse_datetime`], [`format_datetime`]), durations ([`parse_duration`],
//! [`format_duration`]), and [`Schedule::resolve`], which turns the raw wire fields
//! ([`ScheduleInput`]) into a start and an optional end (decisions.md §6).

use crate::error::DomainError;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// How far an explicit end may disagree with start + duration.
const TOLERANCE: Duration = Duration::from_secs(1);

/// Parses an RFC 3339 / ISO 8601 datetime: with `Z` or an offset, or with no offset at
/// all (then UTC, as the Python SDK sends), fractional seconds up to 9 digits.
pub fn parse_datetime(s: &str) -> Result<Timestamp, DomainError> {
    let bad = || {
        DomainError::bad_request(format!(
            "`{s}` is not a valid datetime (expected ISO 8601, e.g. `2018-05-12T23:28:43Z`)"
        ))
    };
    // The date ends at the time separator; an offset can only appear after it. Time zone
    // annotations (`[Europe/Paris]`) are not part of the contract.
    let time = s.find(['T', 't', ' ']).map(|i| &s[i + 1..]);
    let time = time.filter(|_| !s.contains('[')).ok_or_else(bad)?;
    if time.contains(['Z', 'z', '+', '-']) {
        s.parse::<Timestamp>().map_err(|_| bad())
    } else {
        let civil = s.parse::<DateTime>().map_err(|_| bad())?;
        TimeZone::UTC.to_timestamp(civil).map_err(|_| bad())
    }
}

/// `t` without its sub-microsecond part: stores keep microseconds, so what is returned at
/// creation must not be finer than what a later read returns.
pub fn truncate_to_micros(t: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

/// Formats `t` in UTC with `Z`, with a fraction only when non-zero
/// (`2018-05-12T23:28:43.537Z`).
pub fn format_datetime(t: Timestamp) -> String {
    t.to_string()
}

/// Parses a non-negative duration: ISO 8601 (`PT9H`, `P1DT2H`, `PT0.5S`, `P2W`) or
/// Python's `str(timedelta)` (`9:00:00`, `0:30:00.500000`, `1 day, 2:00:00`).
/// Years and months are refused (their length is ambiguous).
pub fn parse_duration(s: &str) -> Result<SignedDuration, DomainError> {
    let bad = |why: &str| DomainError::bad_request(format!("`{s}` is not a valid duration: {why}"));
    let nanos = if s.starts_with('-') {
        return Err(bad("it is negative"));
    } else if let Some(iso) = s.strip_prefix(['P', 'p']) {
        iso_nanos(iso).map_err(|why| bad(&why))?
    } else if s.contains(':') {
        timedelta_nanos(s)
            .ok_or_else(|| bad("expected `H:MM:SS[.ffffff]`, optionally after `N days, `"))?
    } else {
        return Err(bad("expected ISO 8601 (`PT9H`) or `H:MM:SS`"));
    };
    SignedDuration::try_from_nanos_i128(nanos).ok_or_else(|| bad("it is too long"))
}

/// Nanoseconds of an ISO 8601 duration (the part after `P`).
fn iso_nanos(s: &str) -> Result<i128, String> {
    const DATE: &[(u8, i128)] = &[(b'Y', 0), (b'M', 0), (b'W', 7 * 86_400), (b'D', 86_400)];
    const TIME: &[(u8, i128)] = &[(b'H', 3_600), (b'M', 60), (b'S', 1)];
    let s = s.to_ascii_uppercase();
    let (date, time) = match s.split_once('T') {
        Some((_, "")) => return Err("nothing follows `T`".into()),
        Some(parts) => parts,
        None => (s.as_str(), ""),
    };
    if date.is_empty() && time.is_empty() {
        return Err("it has no components".into());
    }
    let (mut total, mut had_fraction) = (0i128, false);
    for (mut rest, mut units) in [(date, DATE), (time, TIME)] {
        while !rest.is_empty() {
            let at = rest
                .find(|c: char| c.is_ascii_alphabetic())
                .ok_or("a number has no unit")?;
            let (number, unit) = (&rest[..at], rest.as_bytes()[at]);
            let Some((pos, &(_, unit_secs))) =
                units.iter().enumerate().find(|(_, (u, _))| *u == unit)
            else {
                return Err(format!("unexpected `{}`", unit as char));
            };
            if unit_secs == 0 {
                return Err(
                    "years and months are not supported (their length is ambiguous)".into(),
                );
            }
            if had_fraction {
                return Err("only the last number may have a fraction".into());
            }
            let (nanos, fraction) = decimal_nanos(number, unit_secs)
                .ok_or_else(|| format!("`{number}` is not a valid number"))?;
            total = total.checked_add(nanos).ok_or("it is too long")?;
            had_fraction = fraction;
            units = &units[pos + 1..];
            rest = &rest[at + 1..];
        }
    }
    Ok(total)
}

/// Nanoseconds of Python's `str(timedelta)`: `[N day[s], ]H:MM:SS[.ffffff]`.
fn timedelta_nanos(s: &str) -> Option<i128> {
    let (days, clock) = match s.split_once(", ") {
        Some((days, clock)) => {
            let n = days
                .strip_suffix(" days")
                .or_else(|| days.strip_suffix(" day"))?;
            (whole_nanos(n, 86_400)?, clock)
        }
        None => (0, s),
    };
    let [h, m, sec] = clock.split(':').collect::<Vec<_>>()[..] else {
        return None;
    };
    let two_digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit()) && x < "60";
    if !two_digits(m) || !two_digits(sec.split_once('.').map_or(sec, |(int, _)| int)) {
        return None;
    }
    let (sec, _) = decimal_nanos(sec, 1).filter(|_| !sec.contains(','))?;
    days.checked_add(whole_nanos(h, 3_600)?)?
        .checked_add(whole_nanos(m, 60)?)?
        .checked_add(sec)
}

/// `number` (digits, optionally `.` or `,` and 1–9 more digits) times `unit_secs`, in
/// nanoseconds; the flag says whether it had a fraction.
fn decimal_nanos(number: &str, unit_secs: i128) -> Option<(i128, bool)> {
    let (int, frac) = match number.split_once(['.', ',']) {
        Some((int, frac)) => (int, frac),
        None => (number, ""),
    };
    let digits = |d: &str, max: usize| d.len() <= max && d.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int, 20) || !digits(frac, 9) || number.ends_with(['.', ',']) {
        return None;
    }
    let unit = unit_secs * NANOS_PER_SEC;
    let whole = int.parse::<i128>().ok()?.checked_mul(unit)?;
    let part = match frac {
        "" => 0,
        f => f.parse::<i128>().ok()? * unit / 10i128.pow(f.len() as u32),
    };
    Some((whole.checked_add(part)?, !frac.is_empty()))
}

/// `number` (digits only) times `unit_secs`, in nanoseconds.
fn whole_nanos(number: &str, unit_secs: i128) -> Option<i128> {
    decimal_nanos(number, unit_secs)
        .filter(|&(_, fraction)| !fraction)
        .map(|(n, _)| n)
}

/// Formats `d` as ISO 8601: `PT0S`, `PT9H`, `PT1H30M`, `P1DT2H`, `PT0.5S` (days from 24 h;
/// a negative duration gets a leading `-`).
pub fn format_duration(d: SignedDuration) -> String {
    if d.is_zero() {
        return "PT0S".into();
    }
    let abs = d.unsigned_abs();
    let (secs, nanos) = (abs.as_secs(), abs.subsec_nanos());
    let (days, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::from(if d.is_negative() { "-P" } else { "P" });
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if h > 0 || m > 0 || s > 0 || nanos > 0 {
        out.push('T');
    }
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push_str(&format!("{s}.{}S", fraction.trim_end_matches('0')));
    } else if s > 0 {
        out.push_str(&format!("{s}S"));
    }
    out
}

/// Whether two durations differ by at most [`TOLERANCE`].
fn agree(a: SignedDuration, b: SignedDuration) -> bool {
    a.checked_sub(b)
        .is_some_and(|diff| diff.unsigned_abs() <= TOLERANCE)
}

/// The raw wire fields of a schedule; the HTTP layer maps `stopDateTime` into `end`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleInput {
    /// `schedule.type`; only `Once` is supported.
    pub kind: Option<String>,
    /// `schedule.startDateTime`.
    pub start: Option<String>,
    /// `schedule.endDateTime` (or `stopDateTime`).
    pub end: Option<String>,
    /// `schedule.duration`.
    pub duration: Option<String>,
}

/// A resolved schedule: when it starts and, unless permanent, when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// The first instant covered.
    pub start: Timestamp,
    /// The first instant no longer covered; `None` means permanent.
    pub end: Option<Timestamp>,
}

impl Schedule {
    /// Resolves wire fields (decisions.md §6): `type` must be `Once`; start defaults to
    /// `now`; the end is `endDateTime`, else start + a non-zero duration, else permanent.
    /// An end and a non-zero duration must agree within 1 s; the end must follow the start.
    pub fn resolve(input: &ScheduleInput, now: Timestamp) -> Result<Schedule, DomainError> {
        let in_field = |field: &'static str| {
            move |e: DomainError| {
                DomainError::bad_request(format!("schedule.{field}: {}", e.message))
            }
        };
        if let Some(kind) = input
            .kind
            .as_deref()
            .filter(|k| !k.eq_ignore_ascii_case("Once"))
        {
            return Err(DomainError::bad_request(format!(
                "schedule.type must be `Once`, not `{kind}`"
            )));
        }
        let start = truncate_to_micros(match input.start.as_deref() {
            Some(s) => parse_datetime(s).map_err(in_field("startDateTime"))?,
            None => now,
        });
        let end = input
            .end
            .as_deref()
            .map(parse_datetime)
            .transpose()
            .map_err(in_field("endDateTime"))?;
        let duration = input
            .duration
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(in_field("duration"))?;
        let duration = duration.filter(|d| !d.is_zero());
        let end = match (end, duration) {
            (Some(end), Some(d)) if !agree(end.duration_since(start), d) => {
                return Err(DomainError::bad_request(format!(
                    "schedule.endDateTime `{}` and schedule.duration `{}` disagree",
                    input.end.as_deref().unwrap_or_default(),
                    input.duration.as_deref().unwrap_or_default(),
                )));
            }
            (Some(end), _) => Some(end),
            (None, Some(d)) => Some(start.checked_add(d).map_err(|_| {
                DomainError::bad_request(format!(
                    "schedule.duration `{}` runs past the latest supported datetime",
                    input.duration.as_deref().unwrap_or_default(),
                ))
            })?),
            (None, None) => None,
        };
        let end = end.map(truncate_to_micros);
        if end.is_some_and(|end| end <= start) {
            return Err(DomainError::bad_request(
                "schedule.endDateTime must be after schedule.startDateTime",
            ));
        }
        Ok(Schedule { start, end })
    }

    /// How long the schedule lasts; `None` when permanent.
    pub fn duration(&self) -> Option<SignedDuration> {
        self.end.map(|end| end.duration_since(self.start))
    }

    /// Whether `now` falls within the schedule.
    pub fn is_current(&self, now: Timestamp) -> bool {
        self.start <= now && self.end.is_none_or(|end| now < end)
    }

    /// Whether the schedule has an end and it has passed.
    pub fn has_ended(&self, now: Timestamp) -> bool {
        self.end.is_some_and(|end| end <= now)
    }

    /// Whether `self` ends no later than `other` (a permanent schedule ends latest).
    pub fn ends_no_later_than(&self, other: &Schedule) -> bool {
        match (self.end, other.end) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a <= b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn dur(s: &str) -> SignedDuration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn input(
        kind: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
        duration: Option<&str>,
    ) -> ScheduleInput {
        let own = |o: Option<&str>| o.map(String::from);
        ScheduleInput {
            kind: own(kind),
            start: own(start),
            end: own(end),
            duration: own(duration),
        }
    }

    fn resolve_err(i: ScheduleInput) -> String {
        let err = Schedule::resolve(&i, ts("2024-01-01T00:00:00Z")).unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::BadRequest);
        err.message
    }

    #[test]
    fn datetimes_in_every_accepted_form() {
        let cases = [
            ("2018-05-12T23:28:43Z", "2018-05-12T23:28:43Z"),
            ("2018-05-12T23:28:43.5370000Z", "2018-05-12T23:28:43.537Z"),
            (
                "2018-05-12T23:28:43.123456789Z",
                "2018-05-12T23:28:43.123456789Z",
            ),
            ("2018-05-12T23:28:43+02:00", "2018-05-12T21:28:43Z"),
            ("2018-05-12T23:28:43-05:30", "2018-05-13T04:58:43Z"),
            ("2018-05-12T23:28:43.5+00:00", "2018-05-12T23:28:43.5Z"),
            ("2018-05-12t23:28:43z", "2018-05-12T23:28:43Z"),
            ("2018-05-12T23:28:43", "2018-05-12T23:28:43Z"),
            ("2018-05-12T23:28:43.537000", "2018-05-12T23:28:43.537Z"),
            ("2018-05-12 23:28:43", "2018-05-12T23:28:43Z"),
        ];
        for (given, want) in cases {
            let got = parse_datetime(given).unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(format_datetime(got), want, "{given}");
        }
    }

    #[test]
    fn malformed_datetimes_are_bad_requests_naming_the_value() {
        for s in [
            "",
            "2018-05-12",
            "yesterday",
            "2018-13-12T23:28:43Z",
            "2018-05-12T25:28:43Z",
            "2018-05-12T23:28:43.1234567891Z",
            " 2018-05-12T23:28:43Z",
            "2018-05-12T23:28:43Z ",
            "2018-05-12T23:28:43Z[UTC]",
            "2018-05-12T23:28:43[Europe/Paris]",
            "9999-12-31T23:59:59Z",
        ] {
            let err = parse_datetime(s).expect_err(s);
            assert_eq!(err.code, crate::ErrorCode::BadRequest);
            assert!(
                err.message
                    .starts_with(&format!("`{s}` is not a valid datetime")),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn format_datetime_omits_a_zero_fraction() {
        assert_eq!(
            format_datetime(ts("2018-05-12T23:28:43Z")),
            "2018-05-12T23:28:43Z"
        );
        assert_eq!(
            format_datetime(ts("2018-05-12T23:28:43.100Z")),
            "2018-05-12T23:28:43.1Z"
        );
    }

    #[test]
    fn durations_in_every_accepted_form() {
        let h = SignedDuration::from_hours;
        let cases = [
            ("PT9H", h(9)),
            ("P1DT2H", h(26)),
            ("PT1H30M", SignedDuration::from_mins(90)),
            ("PT0.5S", SignedDuration::from_millis(500)),
            ("PT0,5S", SignedDuration::from_millis(500)),
            ("PT1.5H", SignedDuration::from_mins(90)),
            ("P2W", h(14 * 24)),
            ("P1D", h(24)),
            ("PT0S", SignedDuration::ZERO),
            ("pt9h", h(9)),
            ("PT36H", h(36)),
            ("PT0.0000001S", SignedDuration::from_nanos(100)),
            ("9:00:00", h(9)),
            ("0:30:00.500000", SignedDuration::new(1800, 500_000_000)),
            ("1 day, 2:00:00", h(26)),
            ("3 days, 0:00:00", h(72)),
            ("0:00:00", SignedDuration::ZERO),
        ];
        for (given, want) in cases {
            assert_eq!(dur(given), want, "{given}");
        }
    }

    #[test]
    fn bad_durations_are_bad_requests() {
        for s in [
            "",
            "P",
            "PT",
            "P1DT",
            "P1Y",
            "P1M",
            "P1Y2D",
            "PT-1H",
            "-PT1H",
            "-1 day, 23:00:00",
            "-0:30:00",
            "PT1H1H",
            "PT1M1H",
            "P1H",
            "PT1D",
            "PT1",
            "P1.5DT1H",
            "PT.5S",
            "PT1.S",
            "PT0.1234567891S",
            "1H",
            "9:00",
            "9:0:00",
            "9:00:60",
            "9:00:00,5",
            "1 week, 0:00:00",
            "1 day 2:00:00",
            " PT1H",
            "PT1H ",
            "P99999999999999999999999W",
            "P999999999999999D",
            "99999999999999999999 days, 0:00:00",
        ] {
            let err = parse_duration(s).expect_err(s);
            assert_eq!(err.code, crate::ErrorCode::BadRequest);
            assert!(
                err.message
                    .starts_with(&format!("`{s}` is not a valid duration: ")),
                "{}",
                err.message
            );
        }
        assert!(
            parse_duration("P1M")
                .unwrap_err()
                .message
                .contains("ambiguous")
        );
        assert!(
            parse_duration("-PT1H")
                .unwrap_err()
                .message
                .contains("negative")
        );
        assert!(
            parse_duration("P999999999999999D")
                .unwrap_err()
                .message
                .contains("too long")
        );
    }

    #[test]
    fn format_duration_is_iso() {
        let cases = [
            (SignedDuration::ZERO, "PT0S"),
            (SignedDuration::from_hours(9), "PT9H"),
            (SignedDuration::from_mins(90), "PT1H30M"),
            (SignedDuration::from_hours(26), "P1DT2H"),
            (SignedDuration::from_hours(48), "P2D"),
            (SignedDuration::from_millis(500), "PT0.5S"),
            (SignedDuration::new(86_461, 1_000), "P1DT1M1.000001S"),
            (-SignedDuration::from_hours(1), "-PT1H"),
            (SignedDuration::MIN, "-P106751991167300DT15H30M8.999999999S"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(d), want);
        }
    }

    #[test]
    fn resolve_defaults_to_now_and_permanent() {
        let now = ts("2024-01-01T00:00:00Z");
        let s = Schedule::resolve(&ScheduleInput::default(), now).unwrap();
        assert_eq!(
            s,
            Schedule {
                start: now,
                end: None
            }
        );
        assert_eq!(s.duration(), None);
        let s = Schedule::resolve(&input(Some("once"), None, None, Some("PT0S")), now).unwrap();
        assert_eq!(
            s,
            Schedule {
                start: now,
                end: None
            },
            "a zero duration means no end"
        );
        let s = Schedule::resolve(&input(Some("Once"), None, None, Some("0:00:00")), now).unwrap();
        assert_eq!(s.end, None);
    }

    #[test]
    fn resolve_end_from_duration_or_end() {
        let now = ts("2024-01-01T00:00:00Z");
        let start = "2024-02-01T08:00:00Z";
        let s = Schedule::resolve(&input(None, Some(start), None, Some("PT9H")), now).unwrap();
        assert_eq!(s.end, Some(ts("2024-02-01T17:00:00Z")));
        assert_eq!(s.duration(), Some(SignedDuration::from_hours(9)));
        let s = Schedule::resolve(&input(None, None, None, Some("1 day, 2:00:00")), now).unwrap();
        assert_eq!(s.end, Some(ts("2024-01-02T02:00:00Z")));
        let s = Schedule::resolve(
            &input(None, Some(start), Some("2024-02-02T08:00:00"), None),
            now,
        )
        .unwrap();
        assert_eq!(s.end, Some(ts("2024-02-02T08:00:00Z")));
        let agreeing = input(
            None,
            Some(start),
            Some("2024-02-01T17:00:00.9Z"),
            Some("PT9H"),
        );
        assert_eq!(
            Schedule::resolve(&agreeing, now).unwrap().end,
            Some(ts("2024-02-01T17:00:00.9Z"))
        );
        let zero = input(
            None,
            Some(start),
            Some("2024-02-01T17:00:00Z"),
            Some("PT0S"),
        );
        assert_eq!(
            Schedule::resolve(&zero, now).unwrap().end,
            Some(ts("2024-02-01T17:00:00Z"))
        );
        let past = input(None, Some("2020-01-01T00:00:00Z"), None, Some("PT1H"));
        assert!(Schedule::resolve(&past, now).unwrap().has_ended(now));
    }

    #[test]
    fn resolve_refusals_name_the_field() {
        let msg = resolve_err(input(Some("Recurring"), None, None, None));
        assert_eq!(msg, "schedule.type must be `Once`, not `Recurring`");
        let msg = resolve_err(input(None, Some("soon"), None, None));
        assert!(msg.starts_with("schedule.startDateTime: `soon`"), "{msg}");
        let msg = resolve_err(input(None, None, Some("later"), None));
        assert!(msg.starts_with("schedule.endDateTime: `later`"), "{msg}");
        let msg = resolve_err(input(None, None, None, Some("P1M")));
        assert!(msg.starts_with("schedule.duration: `P1M`"), "{msg}");
        let msg = resolve_err(input(
            None,
            None,
            Some("2024-01-01T09:00:02Z"),
            Some("PT9H"),
        ));
        assert_eq!(
            msg,
            "schedule.endDateTime `2024-01-01T09:00:02Z` and schedule.duration `PT9H` disagree"
        );
        let msg = resolve_err(input(None, None, Some("2024-01-01T00:00:00Z"), None));
        assert_eq!(
            msg,
            "schedule.endDateTime must be after schedule.startDateTime"
        );
        let msg = resolve_err(input(
            None,
            Some("2024-02-01T00:00:00Z"),
            Some("2024-01-31T00:00:00Z"),
            None,
        ));
        assert_eq!(
            msg,
            "schedule.endDateTime must be after schedule.startDateTime"
        );
        let msg = resolve_err(input(None, None, None, Some("P3000000D")));
        assert!(msg.starts_with("schedule.duration `P3000000D`"), "{msg}");
        let huge = input(
            None,
            None,
            Some("2024-01-02T00:00:00Z"),
            Some("P106751991167300D"),
        );
        assert!(resolve_err(huge).contains("disagree"));
    }

    #[test]
    fn schedule_predicates() {
        let t = |h: i64| {
            ts("2024-01-01T00:00:00Z")
                .checked_add(SignedDuration::from_hours(h))
                .unwrap()
        };
        let s = Schedule {
            start: t(1),
            end: Some(t(3)),
        };
        assert!(
            !s.is_current(t(0)) && s.is_current(t(1)) && s.is_current(t(2)) && !s.is_current(t(3))
        );
        assert!(!s.has_ended(t(2)) && s.has_ended(t(3)));
        let forever = Schedule {
            start: t(1),
            end: None,
        };
        assert!(forever.is_current(t(1000)) && !forever.has_ended(t(1000)));
        let shorter = Schedule {
            start: t(0),
            end: Some(t(2)),
        };
        assert!(shorter.ends_no_later_than(&s) && !s.ends_no_later_than(&shorter));
        assert!(s.ends_no_later_than(&s));
        assert!(s.ends_no_later_than(&forever) && forever.ends_no_later_than(&forever));
        assert!(!forever.ends_no_later_than(&s));
    }

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second() - 1);
        (min..max, 0..1_000_000_000i32).prop_map(|(s, n)| Timestamp::new(s, n).unwrap())
    }

    proptest! {
        #[test]
        fn durations_round_trip(micros in 0i64..10 * 366 * 86_400 * 1_000_000) {
            let d = SignedDuration::from_micros(micros);
            prop_assert_eq!(parse_duration(&format_duration(d)).map_err(|e| TestCaseError::fail(e.message))?, d);
        }

        #[test]
        fn parse_duration_never_panics(s in "\\PC{0,40}|[Pp]?[0-9TWDHMSYP.,:]{0,30}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn parse_datetime_never_panics(s in "\\PC{0,40}|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:.,Zz+-]{0,25}") {
            let _ = parse_datetime(&s);
        }

        #[test]
        fn datetimes_round_trip(t in timestamp()) {
            let text = format_datetime(t);
            prop_assert_eq!(parse_datetime(&text).map_err(|e| TestCaseError::fail(e.message))?, t);
        }
    }
}
