//! `hotline report`: how many requests the hotline handled, per station and
//! per volunteer, for the figures the community publishes.
//!
//! The databases only hand over the few columns counted; the counting and
//! the median are done here, in Rust, so SQLite and PostgreSQL give the
//! same answer to the millisecond.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Serialize, Serializer};

use super::event::db_time;

/// Station shown for calls whose caller left before choosing one.
pub const NO_STATION: &str = "(none)";

/// Volunteer shown for an attempt with no volunteer recorded.
const NO_VOLUNTEER: &str = "(unknown)";

/// `station, outcome, started_at, connected_at` of one call.
pub(crate) type ReportCall = (Option<String>, Option<String>, String, Option<String>);

/// `volunteer, result` of one attempt.
pub(crate) type ReportAttempt = (Option<String>, Option<String>);

/// The figures for a range of days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// First local day counted: as asked, or else the day of the first call
    /// found. `None` only when not asked and there were no calls.
    pub from: Option<NaiveDate>,
    /// Last local day counted (inclusive), likewise.
    pub to: Option<NaiveDate>,
    /// The offset from UTC at which days start and end, e.g. `+08:00`.
    #[serde(serialize_with = "offset_text")]
    pub utc_offset: FixedOffset,
    /// One line per station (configured order is up to the formatter),
    /// sorted by station, with [`NO_STATION`] last.
    pub per_station: Vec<StationLine>,
    /// One line per volunteer rung, sorted by name.
    pub per_volunteer: Vec<VolunteerLine>,
    /// Every call in the range; `station` is `"total"`.
    pub totals: StationLine,
}

/// Calls to one station, by how they ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StationLine {
    /// The station as recorded, or [`NO_STATION`].
    pub station: String,
    /// Every call, whatever its outcome.
    pub calls: u64,
    /// Reached a volunteer.
    pub connected: u64,
    /// Left a voicemail.
    pub voicemail: u64,
    /// Caller hung up before reaching anyone.
    pub abandoned: u64,
    /// Nobody answered and no message was left.
    pub no_answer: u64,
    /// Broken on our side.
    pub failed: u64,
    /// No outcome recorded: still in progress, or its end was lost.
    pub unfinished: u64,
    /// Median of `connected_at - started_at` over connected calls: how long
    /// a caller waits for a person. Even counts take the mean of the middle
    /// two. In JSON, seconds as a number.
    #[serde(serialize_with = "opt_secs")]
    pub median_time_to_person: Option<Duration>,
}

/// How one volunteer's phone fared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VolunteerLine {
    /// Name from the roster.
    pub volunteer: String,
    /// Attempts they picked up.
    pub answered: u64,
    /// Attempts that ended no answer, busy, declined or failed. Attempts
    /// we cancelled (the caller left, or someone else answered) are not
    /// the volunteer's miss and count in neither.
    pub missed: u64,
}

/// The stored-text UTC bounds `[from, to)` for local days `from..=to`.
pub(crate) fn utc_bounds(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    offset: FixedOffset,
) -> (Option<String>, Option<String>) {
    let midnight = |d: NaiveDate| {
        let local = d.and_time(chrono::NaiveTime::MIN);
        // A fixed offset maps every local time to exactly one instant.
        let utc = local - offset;
        db_time(utc.and_utc())
    };
    (
        from.map(midnight),
        to.and_then(|d| d.succ_opt()).map(midnight),
    )
}

/// Counts the fetched rows into a [`Report`].
pub(crate) fn build_report(
    calls: &[ReportCall],
    attempts: &[ReportAttempt],
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    offset: FixedOffset,
) -> Report {
    let mut stations: BTreeMap<&str, (StationLine, Vec<i64>)> = BTreeMap::new();
    let mut all_waits = Vec::new();
    let mut totals = StationLine {
        station: "total".to_string(),
        ..StationLine::default()
    };
    let mut seen: Option<(NaiveDate, NaiveDate)> = None;
    for (station, outcome, started_at, connected_at) in calls {
        let started = DateTime::parse_from_rfc3339(started_at).ok();
        if let Some(day) = started.map(|t| t.with_timezone(&offset).date_naive()) {
            seen = Some(match seen {
                Some((lo, hi)) => (lo.min(day), hi.max(day)),
                None => (day, day),
            });
        }
        let station = station.as_deref().unwrap_or(NO_STATION);
        let (line, waits) = stations.entry(station).or_insert_with(|| {
            let line = StationLine {
                station: station.to_string(),
                ..StationLine::default()
            };
            (line, Vec::new())
        });
        for l in [&mut *line, &mut totals] {
            l.calls += 1;
            match outcome.as_deref() {
                Some("connected") => l.connected += 1,
                Some("voicemail") => l.voicemail += 1,
                Some("abandoned") => l.abandoned += 1,
                Some("no_answer") => l.no_answer += 1,
                Some("failed") => l.failed += 1,
                _ => l.unfinished += 1,
            }
        }
        if outcome.as_deref() == Some("connected") {
            let connected = connected_at
                .as_deref()
                .and_then(|c| DateTime::parse_from_rfc3339(c).ok());
            if let (Some(s), Some(c)) = (started, connected) {
                let wait = (c - s).num_milliseconds().max(0);
                waits.push(wait);
                all_waits.push(wait);
            }
        }
    }
    let mut per_station: Vec<StationLine> = stations
        .into_values()
        .map(|(mut line, mut waits)| {
            line.median_time_to_person = median_ms(&mut waits);
            line
        })
        .collect();
    // "(none)" sorts first by bytes; it reads better last.
    per_station.sort_by_key(|l| l.station == NO_STATION);
    totals.median_time_to_person = median_ms(&mut all_waits);

    let mut volunteers: BTreeMap<&str, VolunteerLine> = BTreeMap::new();
    for (volunteer, result) in attempts {
        let name = volunteer.as_deref().unwrap_or(NO_VOLUNTEER);
        let line = volunteers.entry(name).or_insert_with(|| VolunteerLine {
            volunteer: name.to_string(),
            ..VolunteerLine::default()
        });
        match result.as_deref() {
            Some("answered") => line.answered += 1,
            Some("no_answer" | "busy" | "declined" | "failed") => line.missed += 1,
            _ => {}
        }
    }

    Report {
        from: from.or(seen.map(|s| s.0)),
        to: to.or(seen.map(|s| s.1)),
        utc_offset: offset,
        per_station,
        per_volunteer: volunteers.into_values().collect(),
        totals,
    }
}

/// Median in whole milliseconds (mean of the middle two, rounded down).
fn median_ms(ms: &mut [i64]) -> Option<Duration> {
    if ms.is_empty() {
        return None;
    }
    ms.sort_unstable();
    let mid = ms.len() / 2;
    let m = if ms.len() % 2 == 1 {
        ms[mid]
    } else {
        (ms[mid - 1] + ms[mid]) / 2
    };
    Some(Duration::from_millis(u64::try_from(m).unwrap_or(0)))
}

/// Renders a report for people: a headline, then calls per station and
/// attempts per volunteer. `station_names` maps the station ids recorded to
/// the names to show, and gives their order; configured stations with no
/// calls still get a line, so a quiet station is visible.
pub fn format_report(r: &Report, station_names: &[(String, String)]) -> String {
    let mut out = headline(r);
    out.push('\n');
    let _ = writeln!(out, "Days run midnight to midnight at UTC{}.", r.utc_offset);

    let named: HashMap<&str, &str> = station_names
        .iter()
        .map(|(id, name)| (id.as_str(), name.as_str()))
        .collect();
    let mut lines: Vec<StationLine> = station_names
        .iter()
        .map(|(id, _)| {
            r.per_station
                .iter()
                .find(|l| l.station == *id)
                .cloned()
                .unwrap_or_else(|| StationLine {
                    station: id.clone(),
                    ..StationLine::default()
                })
        })
        .collect();
    lines.extend(
        r.per_station
            .iter()
            .filter(|l| !named.contains_key(l.station.as_str()))
            .cloned(),
    );
    let station_row = |label: String, l: &StationLine| {
        vec![
            label,
            l.calls.to_string(),
            l.connected.to_string(),
            l.voicemail.to_string(),
            l.abandoned.to_string(),
            l.no_answer.to_string(),
            l.failed.to_string(),
            l.median_time_to_person.map_or_else(|| "-".into(), clock),
        ]
    };
    let mut rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let label = named.get(l.station.as_str()).copied();
            station_row(label.unwrap_or(&l.station).to_string(), l)
        })
        .collect();
    rows.push(station_row("TOTAL".to_string(), &r.totals));
    out.push('\n');
    out.push_str(&table(
        &[
            "STATION",
            "CALLS",
            "CONNECTED",
            "VOICEMAIL",
            "ABANDONED",
            "NO ANSWER",
            "FAILED",
            "MEDIAN WAIT",
        ],
        &rows,
    ));

    out.push('\n');
    if r.per_volunteer.is_empty() {
        out.push_str("no volunteers rung\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .per_volunteer
            .iter()
            .map(|v| {
                vec![
                    v.volunteer.clone(),
                    v.answered.to_string(),
                    v.missed.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&["VOLUNTEER", "ANSWERED", "MISSED"], &rows));
    }
    out
}

/// `2026-11-01 to 2026-11-30: 512 calls, 487 reached a person (95.1%), ...`
fn headline(r: &Report) -> String {
    let range = match (r.from, r.to) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a} to {b}"),
        (Some(a), None) => format!("from {a}"),
        (None, Some(b)) => format!("up to {b}"),
        (None, None) => "All time".to_string(),
    };
    let t = &r.totals;
    let mut s = format!("{range}: {}", plural(t.calls, "call", "calls"));
    if t.calls > 0 {
        // Counts fit f64 exactly far beyond any hotline's lifetime.
        let pct = t.connected as f64 * 100.0 / t.calls as f64;
        let _ = write!(s, ", {} reached a person ({pct:.1}%)", t.connected);
        let _ = write!(s, ", {}", plural(t.voicemail, "voicemail", "voicemails"));
        let _ = write!(s, ", {} abandoned", t.abandoned);
        for (n, what) in [
            (t.no_answer, "unanswered"),
            (t.failed, "failed"),
            (t.unfinished, "unfinished"),
        ] {
            if n > 0 {
                let _ = write!(s, ", {n} {what}");
            }
        }
    }
    s
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `m:ss`, or `h:mm:ss` from an hour on; whole seconds, rounded down.
pub(crate) fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Aligned columns: the first left-aligned, the rest right-aligned.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            if i == 0 {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.push_str("  ");
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn offset_text<S: Serializer>(o: &FixedOffset, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(o)
}

fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}
