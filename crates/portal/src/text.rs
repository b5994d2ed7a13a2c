//! How the portal writes times, durations and states in words.

use jiff::{SignedDuration, Timestamp};

/// The UTC instant for `<time datetime="…">`.
pub fn iso(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A time as people read it, in UTC.
pub fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time as people read it in time zone `tz` ("2026-12-05 22:45 CET").
pub fn when_in(t: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    if *tz == jiff::tz::TimeZone::UTC {
        return when(t);
    }
    t.to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// A form's date and time (`datetime-local`, in the viewer's zone `tz`) as the UTC instant
/// an API schedule takes (`…Z`).
pub fn local_input(raw: &str, tz: &jiff::tz::TimeZone) -> Option<String> {
    let dt: jiff::civil::DateTime = raw.trim().parse().ok()?;
    let t = dt.to_zoned_datetime(tz.clone()).ok()?.timestamp();
    Some(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// An instant as a `datetime-local` value in the viewer's zone `tz`.
pub fn local_value(t: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%dT%H:%M")
        .to_string()
}

/// The name a form's hint gives the viewer's zone ("Europe/Paris", or "UTC").
pub fn zone_name(tz: &jiff::tz::TimeZone) -> String {
    tz.iana_name().unwrap_or("UTC").to_string()
}

/// The time zone an IANA name (as a browser reports it) names, if this system knows it.
pub fn zone(name: &str) -> Option<jiff::tz::TimeZone> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    jiff::tz::db().get(name).ok()
}

/// A length of time in words: "8 hours", "1 hour 30 minutes", "45 minutes", "2 days".
pub fn duration_words(d: SignedDuration) -> String {
    let mins = d.as_mins().max(0);
    let (days, hours, minutes) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    let unit = |n: i64, one: &str| match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    };
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(unit(days, "day"));
    }
    if hours > 0 {
        parts.push(unit(hours, "hour"));
    }
    if minutes > 0 || parts.is_empty() {
        parts.push(unit(minutes, "minute"));
    }
    parts.join(" ")
}

/// A short relative length: "1 h 59 min", "3 d 4 h", "45 min".
pub fn short_duration(d: SignedDuration) -> String {
    let mins = d.as_mins().max(0);
    let (days, hours, minutes) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} min"),
        (0, h) => format!("{h} h {minutes} min"),
        (d, h) => format!("{d} d {h} h"),
    }
}

/// "ends in 1 h 59 min" / "ended 5 min ago".
pub fn relative_end(now: Timestamp, end: Timestamp) -> String {
    if end > now {
        format!("ends in {}", short_duration(end.duration_since(now)))
    } else {
        format!("ended {} ago", short_duration(now.duration_since(end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_contract_writes_them() {
        assert_eq!(duration_words(SignedDuration::from_hours(8)), "8 hours");
        assert_eq!(
            duration_words(SignedDuration::from_mins(90)),
            "1 hour 30 minutes"
        );
        assert_eq!(duration_words(SignedDuration::from_mins(45)), "45 minutes");
        assert_eq!(duration_words(SignedDuration::from_mins(60)), "1 hour");
        assert_eq!(duration_words(SignedDuration::from_hours(48)), "2 days");
        assert_eq!(short_duration(SignedDuration::from_mins(119)), "1 h 59 min");
    }

    #[test]
    fn times_read_in_the_viewers_zone() {
        let t: Timestamp = "2026-12-05T21:45:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let paris = zone("Europe/Paris").unwrap_or(jiff::tz::TimeZone::UTC);
        assert_eq!(when_in(t, &paris), "2026-12-05 22:45 CET");
        assert_eq!(when_in(t, &jiff::tz::TimeZone::UTC), "2026-12-05 21:45 UTC");
        assert!(zone("Mars/Olympus_Mons").is_none());
        assert!(zone("").is_none());
        assert_eq!(
            local_input("2026-07-01T10:00", &paris).as_deref(),
            Some("2026-07-01T08:00:00Z"),
            "summer time"
        );
        assert_eq!(local_value(t, &paris), "2026-12-05T22:45");
        assert!(local_input("tomorrow", &paris).is_none());
    }

    #[test]
    fn ends_are_relative_to_now() {
        let now = Timestamp::UNIX_EPOCH;
        let later = now + SignedDuration::from_mins(119);
        assert_eq!(relative_end(now, later), "ends in 1 h 59 min");
        assert_eq!(relative_end(later, now), "ended 1 h 59 min ago");
        assert_eq!(iso(now), "1970-01-01T00:00:00Z");
    }
}
