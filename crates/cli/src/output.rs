//! How results are printed (cli.md §4): tables sized to the terminal, `-o json|csv|wide`,
//! times in the local zone (or UTC), colour only on a terminal and never with `NO_COLOR`;
//! and the durations and times people type (cli.md §3).

use crate::error::{Failure, Outcome};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use std::io::{IsTerminal, Write};

/// `-o`: the output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A table sized to the terminal (`text` names it too).
    #[default]
    #[value(alias = "text")]
    Table,
    /// The API's objects as they came (an array for lists).
    Json,
    /// The table as comma-separated values with a header.
    Csv,
    /// The table with ids.
    Wide,
}

/// How this run prints.
#[derive(Debug, Clone)]
pub struct Style {
    /// The output format.
    pub format: Format,
    /// Times in UTC instead of the local zone.
    pub utc: bool,
    /// Colour (a terminal, without `NO_COLOR`).
    pub color: bool,
    /// The terminal's width in columns (wide enough when not a terminal).
    pub width: usize,
    /// The local time zone.
    pub zone: TimeZone,
}

impl Style {
    /// The style for `format` on this process's stdout.
    pub fn detect(format: Format, utc: bool) -> Self {
        let terminal = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let width = terminal_size::terminal_size()
            .map(|(w, _)| usize::from(w.0))
            .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
            .filter(|w| *w >= 20)
            .unwrap_or(if terminal { 80 } else { 4096 });
        Self {
            format,
            utc,
            color: terminal && !no_color,
            width,
            zone: if utc {
                TimeZone::UTC
            } else {
                TimeZone::try_system().unwrap_or(TimeZone::UTC)
            },
        }
    }

    /// A time of the API (RFC 3339) as people read it here: `2026-12-06 14:30` in the local
    /// zone (with its abbreviation), or UTC with `--utc`; `-` when absent.
    pub fn time(&self, value: &Value) -> String {
        let Some(ts) = value.as_str().and_then(|s| s.parse::<Timestamp>().ok()) else {
            return "-".to_string();
        };
        let zoned = ts.to_zoned_datetime(self.zone.clone());
        if self.utc {
            zoned.strftime("%Y-%m-%d %H:%M UTC").to_string()
        } else {
            zoned.strftime("%Y-%m-%d %H:%M %Z").to_string()
        }
    }

    /// A time of the API in a table cell: `2026-12-06 14:30` in the local zone, or
    /// `2026-12-06 14:30Z` with `--utc`; `-` when absent.
    pub fn cell_time(&self, value: &Value) -> String {
        let Some(ts) = value.as_str().and_then(|s| s.parse::<Timestamp>().ok()) else {
            return "-".to_string();
        };
        let zoned = ts.to_zoned_datetime(self.zone.clone());
        if self.utc {
            zoned.strftime("%Y-%m-%d %H:%MZ").to_string()
        } else {
            zoned.strftime("%Y-%m-%d %H:%M").to_string()
        }
    }

    /// Prints the JSON document `doc` (pretty) for `-o json`.
    pub fn print_json(&self, doc: &Value) -> Outcome<()> {
        let text = serde_json::to_string_pretty(doc)
            .map_err(|e| Failure::server(format!("cannot print JSON: {e}")))?;
        emit(&format!("{text}\n"))
    }

    fn bold(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends quietly.
pub fn emit(text: &str) -> Outcome<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::server(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// A table: its columns (some only with `-o wide`) and rows of text.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<(&'static str, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; a name starting with `+` shows only with `-o wide` (and
    /// in CSV).
    pub fn new(columns: &[&'static str]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|c| match c.strip_prefix('+') {
                    Some(name) => (name, true),
                    None => (*c, false),
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per column, wide ones included).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Prints it in `style` (`-o json` prints `json` instead); `empty` is said on stderr
    /// when a table has no rows.
    pub fn print(&self, style: &Style, json: &Value, empty: &str) -> Outcome<()> {
        match style.format {
            Format::Json => style.print_json(json),
            Format::Csv => emit(&self.csv()),
            Format::Table | Format::Wide => {
                if self.rows.is_empty() {
                    eprintln!("{empty}");
                    return Ok(());
                }
                emit(&self.text(style, style.format == Format::Wide))
            }
        }
    }

    /// All columns as CSV (RFC 4180), with a header line.
    pub fn csv(&self) -> String {
        let mut out = String::new();
        let line = |cells: Vec<&str>| {
            cells
                .iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(",")
        };
        out.push_str(&line(self.columns.iter().map(|(n, _)| *n).collect()));
        out.push_str("\r\n");
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push_str("\r\n");
        }
        out
    }

    /// The table as aligned text no wider than `style.width` (long cells cut with `…`).
    pub fn text(&self, style: &Style, wide: bool) -> String {
        let shown: Vec<usize> = (0..self.columns.len())
            .filter(|i| wide || !self.columns[*i].1)
            .collect();
        let cell = |row: &Vec<String>, i: usize| -> String {
            row.get(i).map(|c| clean(c)).unwrap_or_default()
        };
        let mut widths: Vec<usize> = shown
            .iter()
            .map(|&i| {
                self.rows
                    .iter()
                    .map(|r| cell(r, i).chars().count())
                    .chain([self.columns[i].0.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let fixed: Vec<bool> = shown
            .iter()
            .map(|&i| FIXED.contains(&self.columns[i].0))
            .collect();
        let least: Vec<usize> = shown
            .iter()
            .zip(&widths)
            .map(|(&i, &w)| self.columns[i].0.len().max(w.min(12)))
            .collect();
        fit(&mut widths, &fixed, &least, style.width);
        let mut out = String::new();
        let render = |cells: Vec<String>, out: &mut String, header: bool| {
            let last = cells.len().saturating_sub(1);
            for (k, text) in cells.into_iter().enumerate() {
                let w = widths[k];
                let text = cut(&text, w);
                let pad = if k == last {
                    String::new()
                } else {
                    " ".repeat(w.saturating_sub(text.chars().count()) + 2)
                };
                if header {
                    out.push_str(&style.bold(&text));
                } else {
                    out.push_str(&text);
                }
                out.push_str(&pad);
            }
            while out.ends_with(' ') {
                out.pop();
            }
            out.push('\n');
        };
        render(
            shown
                .iter()
                .map(|&i| self.columns[i].0.to_string())
                .collect(),
            &mut out,
            true,
        );
        for row in &self.rows {
            render(
                shown.iter().map(|&i| cell(row, i)).collect(),
                &mut out,
                false,
            );
        }
        out
    }
}

/// Columns whose text is cut last (times, ids, states): the others give way first.
const FIXED: [&str; 12] = [
    "STARTS",
    "ENDS",
    "REQUESTED",
    "WHEN",
    "AGE",
    "FOR",
    "ID",
    "STATE",
    "STATUS",
    "APPROVALS",
    "TYPE",
    "KIND",
];

/// Shrinks the widest columns that are not `fixed` (down to their `least`: the header, and
/// up to 12 characters of text) until the row fits `total` with two spaces between
/// columns; a row that still does not fit runs over (times and ids are never cut).
fn fit(widths: &mut [usize], fixed: &[bool], least: &[usize], total: usize) {
    let gaps = 2 * widths.len().saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > total {
        let Some((k, w)) = widths
            .iter()
            .copied()
            .enumerate()
            .filter(|(k, _)| !fixed.get(*k).copied().unwrap_or(false))
            .filter(|(k, w)| *w > least.get(*k).copied().unwrap_or(8))
            .max_by_key(|(_, w)| *w)
        else {
            return;
        };
        widths[k] = w - 1;
    }
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Text from the server made safe for a terminal: control characters (escape sequences,
/// line breaks, C1 controls) become spaces, so no reason or name can move the cursor, hide
/// text or fake a line.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn csv_field(s: &str) -> String {
    // A cell a spreadsheet would run as a formula is kept as text.
    let s = match s.chars().next() {
        Some('=' | '+' | '@' | '\t' | '\r') => format!("'{s}"),
        Some('-') if s.len() > 1 && !s[1..].starts_with(|c: char| c.is_ascii_digit()) => {
            format!("'{s}")
        }
        _ => s.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Parses a duration as people type it: `90d`, `4h`, `30m`, `1h30m`, `45s`, or ISO 8601
/// (`PT2H`, `P1D`).
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a duration: use e.g. 90d, 4h, 30m, 1h30m or PT2H");
    if t.starts_with(['P', 'p']) {
        let span: jiff::Span = t.parse().map_err(|_| bad())?;
        return span
            .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
            .ok()
            .filter(|d| d.is_positive())
            .ok_or_else(bad);
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: i64 = match c.to_ascii_lowercase() {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: i64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any || total <= 0 {
        return Err(bad());
    }
    Ok(SignedDuration::from_secs(total))
}

/// Parses a time as people type it: RFC 3339, or `YYYY-MM-DD HH:MM` (or a bare date, its
/// midnight) in `zone`.
pub fn parse_time(text: &str, zone: &TimeZone) -> Result<Timestamp, String> {
    let t = text.trim();
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    let civil = t
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| t.parse::<jiff::civil::Date>().map(|d| d.to_datetime(jiff::civil::Time::midnight())))
        .map_err(|_| {
            format!("`{text}` is not a time: use RFC 3339 (2026-12-06T14:30:00Z) or `YYYY-MM-DD HH:MM` in the local zone")
        })?;
    civil
        .to_zoned_datetime(zone.clone())
        .map(|z| z.timestamp())
        .map_err(|e| format!("`{text}`: {e}"))
}

/// An ISO 8601 duration for the API (`PT2H30M`).
pub fn iso_duration(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if s > 0 || (h == 0 && m == 0) {
        out.push_str(&format!("{s}S"));
    }
    out
}

/// A duration for people: `2h`, `1h30m`, `3d`, `45s`.
pub fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (days, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (h, "h"), (m, "m")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out = format!("{s}s");
    }
    out
}

/// The minutes of an ISO 8601 duration from the API (`PT8H`), if it is one.
pub fn api_duration(value: &Value) -> Option<SignedDuration> {
    value.as_str().and_then(|s| parse_duration(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_people_type() {
        let d = |s| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(d("90d"), Ok(90 * 86_400));
        assert_eq!(d("4h"), Ok(4 * 3600));
        assert_eq!(d("1h30m"), Ok(5400));
        assert_eq!(d("PT2H"), Ok(7200));
        assert_eq!(d("P1D"), Ok(86_400));
        for bad in [
            "",
            "h",
            "4",
            "4x",
            "-1h",
            "0m",
            "99999999999999999999d",
            "PT",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(iso_duration(SignedDuration::from_secs(5400)), "PT1H30M");
        assert_eq!(human_duration(SignedDuration::from_secs(90_000)), "1d1h");
    }

    #[test]
    fn times_people_type() {
        let zone = TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC);
        let t = parse_time("2026-12-06 14:30", &zone).map(|t| t.to_string());
        assert_eq!(t.as_deref(), Ok("2026-12-06T13:30:00Z"));
        let t = parse_time("2026-12-06T14:30:00Z", &zone).map(|t| t.to_string());
        assert_eq!(t.as_deref(), Ok("2026-12-06T14:30:00Z"));
        assert!(parse_time("tomorrow", &zone).is_err());
    }

    #[test]
    fn tables_fit_and_quote() {
        let mut t = Table::new(&["ROLE", "SCOPE", "+ID"]);
        t.row(vec!["Contributor".into(), "x".repeat(100), "id-1".into()]);
        let style = Style {
            format: Format::Table,
            utc: true,
            color: false,
            width: 40,
            zone: TimeZone::UTC,
        };
        let text = t.text(&style, false);
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(text.contains('…') && !text.contains("id-1"), "{text}");
        assert!(t.text(&style, true).contains("ID"));
        let mut c = Table::new(&["A"]);
        c.row(vec!["x, \"y\"".into()]);
        assert_eq!(c.csv(), "A\r\n\"x, \"\"y\"\"\"\r\n");
        let mut f = Table::new(&["A"]);
        f.row(vec!["=cmd()".into()]);
        f.row(vec!["-".into()]);
        f.row(vec!["-3".into()]);
        assert_eq!(f.csv(), "A\r\n'=cmd()\r\n-\r\n-3\r\n");
        assert_eq!(clean("a\u{1b}[2Jb\nc\u{9b}"), "a [2Jb c ");
    }
}
