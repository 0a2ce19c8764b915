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
use unicode_width::UnicodeWidthStr as _;

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
    /// The daemon stopped (crash, kill) during the call; closed at restart.
    pub interrupted: u64,
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
                Some("interrupted") => l.interrupted += 1,
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
    // Calls cut off by a daemon crash get a column once there are any.
    let show_interrupted = r.totals.interrupted > 0;
    let station_row = |label: String, l: &StationLine| {
        let mut row = vec![
            label,
            l.calls.to_string(),
            l.connected.to_string(),
            l.voicemail.to_string(),
            l.abandoned.to_string(),
            l.no_answer.to_string(),
            l.failed.to_string(),
        ];
        if show_interrupted {
            row.push(l.interrupted.to_string());
        }
        row.push(l.median_time_to_person.map_or_else(|| "-".into(), clock));
        row
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
    let mut header = vec![
        "STATION",
        "CALLS",
        "CONNECTED",
        "VOICEMAIL",
        "ABANDONED",
        "NO ANSWER",
        "FAILED",
    ];
    if show_interrupted {
        header.push("INTERRUPTED");
    }
    header.push("MEDIAN WAIT");
    out.push_str(&table(&header, &rows));

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
            (t.interrupted, "interrupted"),
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

/// Aligned columns: the first left-aligned, the rest right-aligned, padded
/// by terminal columns (a Chinese character takes two).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.width()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.width());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            let pad = w.saturating_sub(cell.width());
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::tests::TestResult;
    use crate::store::{
        AttemptResult, CallEvent, CallWithAttempts, HangupBy, NewCall, Outcome, Store, StoreError,
    };
    use chrono::{Offset, TimeZone, Utc};

    fn shanghai() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap_or(utc())
    }

    fn utc() -> FixedOffset {
        Utc.fix()
    }

    fn day(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: i64) -> DateTime<Utc> {
        let t = Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single();
        t.unwrap_or_default() + chrono::Duration::milliseconds(ms)
    }

    /// One volunteer rung: who, how it ended, SIP status, seconds ringing.
    type Ring = (&'static str, AttemptResult, Option<u16>, i64);

    /// Records one call: it arrives at `t`, picks `station` 5 s later, then
    /// rings `rings` one after the other. An answered ring connects the
    /// call, so its wait is 5 s plus the ringing. `outcome: None` leaves it
    /// in progress.
    fn call(
        ev: &mut Vec<CallEvent>,
        id: &str,
        t: DateTime<Utc>,
        station: Option<&str>,
        rings: &[Ring],
        outcome: Option<Outcome>,
    ) {
        let s = |secs: i64| t + chrono::Duration::seconds(secs);
        ev.push(CallEvent::Started(NewCall {
            call_id: id.to_string(),
            caller: "+8613900000000".into(),
            dialed: "12355".into(),
            started_at: t,
        }));
        ev.push(CallEvent::Answered {
            call_id: id.into(),
            at: s(1),
        });
        if let Some(station) = station {
            ev.push(CallEvent::Station {
                call_id: id.into(),
                station: station.into(),
            });
        }
        let mut clock = 5;
        for (n, (vol, result, status, secs)) in (1..).zip(rings) {
            ev.push(CallEvent::AttemptStarted {
                call_id: id.into(),
                attempt_no: n,
                volunteer: vol.to_string(),
                target: format!("sip:{vol}@trunk.example"),
                at: s(clock),
            });
            clock += secs;
            ev.push(CallEvent::AttemptEnded {
                call_id: id.into(),
                attempt_no: n,
                at: s(clock),
                result: *result,
                sip_status: *status,
                reason: None,
            });
            if *result == AttemptResult::Answered {
                ev.push(CallEvent::Connected {
                    call_id: id.into(),
                    volunteer: vol.to_string(),
                    at: s(clock),
                });
            }
        }
        if outcome == Some(Outcome::Voicemail) {
            ev.push(CallEvent::Voicemail {
                call_id: id.into(),
                path: format!("voicemail/{id}.wav"),
            });
        }
        if let Some(outcome) = outcome {
            ev.push(CallEvent::Ended {
                call_id: id.into(),
                at: s(clock + 240),
                outcome,
                hangup_by: HangupBy::Caller,
                reason: None,
            });
        }
    }

    /// November 2026 in Shanghai, plus calls either side of its edges.
    ///
    /// | station | calls | conn | vm | aband | no ans | failed | unfin | waits (s)    |
    /// | housing | 6     | 3    | 1  | 1     | 1      | 0      | 0     | 20, 40, 90   |
    /// | legal   | 5     | 2    | 1  | 1     | 0      | 1      | 0     | 10, 25       |
    /// | (none)  | 3     | 0    | 0  | 2     | 0      | 0      | 1     |              |
    #[rustfmt::skip] // one call per line reads as a table
    pub(crate) fn november() -> Vec<CallEvent> {
        use AttemptResult::{Answered as Ans, Busy, Cancelled as Cxl, Declined, Failed, NoAnswer as Nah};
        use Outcome::{Abandoned as Aband, Connected as Conn, NoAnswer as Unans, Voicemail as Vm};
        let nov = |d: u32, h: u32| utc_ms(2026, 11, d, h, 0, 0, 0);
        let hou = Some("housing");
        let leg = Some("legal");
        let ev = &mut Vec::new();
        call(ev, "h1", nov(2, 1), hou, &[("ana", Ans, Some(200), 15)], Some(Conn));
        call(ev, "h2", nov(4, 3), hou, &[("ana", Busy, Some(486), 3), ("ben", Ans, Some(200), 32)], Some(Conn));
        call(ev, "h3", nov(9, 12), hou, &[("ana", Nah, None, 30), ("ben", Declined, Some(603), 5), ("chen", Ans, Some(200), 50)], Some(Conn));
        call(ev, "h4", nov(11, 6), hou, &[("ana", Nah, None, 30), ("ben", Nah, None, 30)], Some(Vm));
        call(ev, "h5", nov(15, 8), hou, &[("ana", Nah, None, 30), ("ben", Failed, Some(503), 1)], Some(Unans));
        call(ev, "l1", nov(3, 2), leg, &[("dan", Ans, Some(200), 5)], Some(Conn));
        call(ev, "l2", nov(17, 4), leg, &[("dan", Busy, Some(486), 2), ("ana", Ans, Some(200), 18)], Some(Conn));
        call(ev, "l3", nov(20, 9), leg, &[("dan", Cxl, Some(487), 12)], Some(Aband));
        call(ev, "l4", nov(22, 10), leg, &[], Some(Outcome::Failed));
        call(ev, "n1", nov(5, 7), None, &[], Some(Aband));
        call(ev, "n2", nov(25, 11), None, &[], Some(Aband));
        call(ev, "n3", nov(28, 5), None, &[], None);
        // Edges: local midnight in Shanghai is 16:00 UTC the day before.
        call(ev, "b0", utc_ms(2026, 10, 31, 15, 59, 59, 999), leg, &[], Some(Aband));
        call(ev, "b1", utc_ms(2026, 10, 31, 16, 0, 0, 0), leg, &[], Some(Vm));
        call(ev, "b2", utc_ms(2026, 11, 30, 15, 59, 59, 999), hou, &[("ana", Cxl, Some(487), 4)], Some(Aband));
        // 2026-12-01 01:00 in Shanghai.
        call(ev, "b3", utc_ms(2026, 11, 30, 17, 0, 0, 0), hou, &[("ana", Ans, Some(200), 0)], Some(Conn));
        std::mem::take(ev)
    }

    pub(crate) async fn record_november(store: &Store) -> Result<(), StoreError> {
        for e in november() {
            store.record(e);
        }
        store.flush(std::time::Duration::from_secs(10)).await
    }

    fn station(name: &str, counts: [u64; 7], median_ms: Option<u64>) -> StationLine {
        let [calls, connected, voicemail, abandoned, no_answer, failed, unfinished] = counts;
        StationLine {
            station: name.to_string(),
            calls,
            connected,
            voicemail,
            abandoned,
            no_answer,
            failed,
            interrupted: 0,
            unfinished,
            median_time_to_person: median_ms.map(Duration::from_millis),
        }
    }

    fn vol(name: &str, answered: u64, missed: u64) -> VolunteerLine {
        VolunteerLine {
            volunteer: name.to_string(),
            answered,
            missed,
        }
    }

    /// The November figures, exactly. Shared by both backends' tests.
    pub(crate) async fn check_report(store: &Store) -> Result<(), StoreError> {
        record_november(store).await?;
        let r = store
            .report(day(2026, 11, 1), day(2026, 11, 30), shanghai())
            .await?;
        assert_eq!(
            r.per_station,
            [
                station("housing", [6, 3, 1, 1, 1, 0, 0], Some(40_000)),
                station("legal", [5, 2, 1, 1, 0, 1, 0], Some(17_500)),
                station(NO_STATION, [3, 0, 0, 2, 0, 0, 1], None),
            ]
        );
        assert_eq!(
            r.totals,
            station("total", [14, 5, 2, 4, 1, 1, 1], Some(25_000))
        );
        assert_eq!(
            r.per_volunteer,
            [
                vol("ana", 2, 4),
                vol("ben", 1, 3),
                vol("chen", 1, 0),
                vol("dan", 1, 1)
            ]
        );
        assert_eq!((r.from, r.to), (day(2026, 11, 1), day(2026, 11, 30)));

        // 2026-11-30T17:00Z is already 2026-12-01 in Shanghai.
        let dec = store
            .report(day(2026, 12, 1), day(2026, 12, 1), shanghai())
            .await?;
        assert_eq!(
            dec.totals,
            station("total", [1, 1, 0, 0, 0, 0, 0], Some(5_000))
        );
        assert_eq!(dec.per_volunteer, [vol("ana", 1, 0)]);
        let oct = store.report(None, day(2026, 10, 31), shanghai()).await?;
        assert_eq!(
            oct.totals.calls, 1,
            "only b0, a millisecond before midnight"
        );
        assert_eq!(oct.from, day(2026, 10, 31), "open start: first call's day");

        // The same month counted in UTC loses b1 and gains b3.
        let in_utc = store
            .report(day(2026, 11, 1), day(2026, 11, 30), utc())
            .await?;
        assert_eq!(in_utc.totals.calls, 14);
        assert_eq!(in_utc.totals.connected, 6);
        assert_eq!(in_utc.totals.voicemail, 1);

        let all = store.report(None, None, shanghai()).await?;
        assert_eq!(all.totals.calls, 16);
        assert_eq!((all.from, all.to), (day(2026, 10, 31), day(2026, 12, 1)));
        assert_eq!(all.per_volunteer[0], vol("ana", 3, 4));
        Ok(())
    }

    /// Attempts grouped under their calls in `attempt_no` order, even when
    /// recorded out of order and interleaved with another call's.
    pub(crate) async fn check_calls_with_attempts(store: &Store) -> Result<(), StoreError> {
        record_november(store).await?;
        let t = utc_ms(2026, 12, 2, 0, 0, 0, 0);
        let mut interleaved = Vec::new();
        for (id, start) in [("x", t), ("y", t + chrono::Duration::seconds(1))] {
            interleaved.push(CallEvent::Started(NewCall {
                call_id: id.into(),
                caller: "+8613900000001".into(),
                dialed: "12355".into(),
                started_at: start,
            }));
        }
        for (id, n, who) in [
            ("x", 2, "ben"),
            ("y", 1, "dan"),
            ("x", 1, "ana"),
            ("x", 3, "chen"),
        ] {
            interleaved.push(CallEvent::AttemptStarted {
                call_id: id.into(),
                attempt_no: n,
                volunteer: who.into(),
                target: format!("sip:{who}@trunk.example"),
                at: t,
            });
        }
        for e in interleaved {
            store.record(e);
        }
        store.flush(std::time::Duration::from_secs(10)).await?;

        let listed = store.recent_calls_with_attempts(100).await?;
        assert_eq!(listed.len(), 18);
        let shape = |i: usize| -> (String, Vec<(i64, String)>) {
            let CallWithAttempts {
                call: c,
                attempts: a,
                ..
            } = &listed[i];
            let a = a
                .iter()
                .map(|a| (a.attempt_no, a.volunteer.clone().unwrap_or_default()));
            (c.call_id.clone(), a.collect())
        };
        let owned = |v: &[(i64, &str)]| v.iter().map(|(n, s)| (*n, s.to_string())).collect();
        assert_eq!(shape(0), ("y".into(), owned(&[(1, "dan")])));
        assert_eq!(
            shape(1),
            ("x".into(), owned(&[(1, "ana"), (2, "ben"), (3, "chen")]))
        );
        let h3 = listed.iter().find(|c| c.call.call_id == "h3");
        let h3: Vec<&str> = h3
            .map(|c| {
                c.attempts
                    .iter()
                    .filter_map(|a| a.volunteer.as_deref())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(h3, ["ana", "ben", "chen"]);
        for c in &listed {
            assert!(c.attempts.iter().all(|a| a.call_id == c.call.call_id));
        }
        let total: usize = listed.iter().map(|c| c.attempts.len()).sum();
        assert_eq!(total, 16 + 4);

        let newest = store.recent_calls_with_attempts(1).await?;
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].call.call_id, "y");
        assert_eq!(
            newest[0].attempts.len(),
            1,
            "older calls' attempts are not handed out"
        );
        assert!(store.recent_calls_with_attempts(0).await?.is_empty());
        Ok(())
    }

    async fn sqlite_store() -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("hotline.db").display());
        Ok((dir, Store::open(&url).await?))
    }

    #[tokio::test]
    async fn sqlite_report_counts_a_month_exactly() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        check_report(&store).await?;
        Ok(())
    }

    #[tokio::test]
    async fn sqlite_calls_come_with_their_attempts_in_order() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        check_calls_with_attempts(&store).await?;
        Ok(())
    }

    #[test]
    fn table_pads_chinese_names_by_display_width() {
        let rows = vec![
            vec!["健康咨询".to_string(), "12".to_string()],
            vec!["Legal aid".to_string(), "3".to_string()],
        ];
        let text = table(&["STATION", "CALLS"], &rows);
        // Every line ends at the same terminal column: the counts line up.
        let widths: Vec<usize> = text.lines().map(|l| l.width()).collect();
        assert_eq!(widths, [16, 16, 16], "{text}");
        assert!(text.contains("健康咨询      12"), "{text}");
    }

    #[tokio::test]
    async fn formatted_report_has_headline_stations_and_volunteers() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        record_november(&store).await?;
        let r = store
            .report(day(2026, 11, 1), day(2026, 11, 30), shanghai())
            .await?;
        let names = [
            ("legal".to_string(), "Legal aid".to_string()),
            ("housing".to_string(), "Housing".to_string()),
            ("food".to_string(), "Food bank".to_string()),
        ];
        let text = format_report(&r, &names);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            text.lines().next(),
            Some(
                "2026-11-01 to 2026-11-30: 14 calls, 5 reached a person (35.7%), \
                 2 voicemails, 4 abandoned, 1 unanswered, 1 failed, 1 unfinished"
            )
        );
        assert!(
            text.contains("Days run midnight to midnight at UTC+08:00."),
            "{text}"
        );
        let pos = |cells: &[&str]| lines.iter().position(|l| l == cells);
        let legal = pos(&["Legal", "aid", "5", "2", "1", "1", "0", "1", "0:17"]);
        let housing = pos(&["Housing", "6", "3", "1", "1", "1", "0", "0:40"]);
        let food = pos(&["Food", "bank", "0", "0", "0", "0", "0", "0", "-"]);
        let none = pos(&["(none)", "3", "0", "0", "2", "0", "0", "-"]);
        let total = pos(&["TOTAL", "14", "5", "2", "4", "1", "1", "0:25"]);
        let order = [legal, housing, food, none, total];
        assert!(order.iter().all(Option::is_some), "{text}");
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "configured order:\n{text}"
        );
        assert!(
            pos(&["VOLUNTEER", "ANSWERED", "MISSED"]).is_some(),
            "{text}"
        );
        assert!(pos(&["ana", "2", "4"]).is_some(), "{text}");
        assert!(pos(&["dan", "1", "1"]).is_some(), "{text}");
        Ok(())
    }

    #[tokio::test]
    async fn formatted_calls_show_attempts_under_each_call() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        record_november(&store).await?;
        let text =
            crate::store::format_calls_with_attempts(&store.recent_calls_with_attempts(100).await?);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("STARTED (UTC)"));
        let h2 = lines
            .iter()
            .position(|l| l.starts_with("2026-11-04 03:00:00"));
        let h2 = h2.ok_or("h2 missing")?;
        assert_eq!(
            lines[h2 + 1],
            "  -> 1. ana sip:ana@trunk.example busy (486) 00:00:03"
        );
        assert_eq!(
            lines[h2 + 2],
            "  -> 2. ben sip:ben@trunk.example answered (200) 00:00:32"
        );
        assert!(!lines[h2 + 3].starts_with("  ->"));
        let h3 = text.find("  -> 1. ana sip:ana@trunk.example no_answer 00:00:30");
        assert!(h3.is_some(), "no status, no brackets:\n{text}");
        assert_eq!(lines.len(), 1 + 16 + 16, "header, calls, attempts");
        Ok(())
    }

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_middle_two() {
        let ms = |v: &[i64]| median_ms(&mut v.to_vec()).map(|d| d.as_millis());
        assert_eq!(ms(&[]), None);
        assert_eq!(ms(&[7]), Some(7));
        assert_eq!(ms(&[90, 20, 40]), Some(40));
        assert_eq!(ms(&[25_000, 10_000]), Some(17_500));
        assert_eq!(ms(&[4, 1, 3, 2]), Some(2), "2.5 ms rounds down");
    }

    #[test]
    fn local_days_become_utc_bounds() {
        let (lo, hi) = utc_bounds(day(2026, 11, 1), day(2026, 11, 30), shanghai());
        assert_eq!(lo.as_deref(), Some("2026-10-31T16:00:00.000Z"));
        assert_eq!(hi.as_deref(), Some("2026-11-30T16:00:00.000Z"));
        assert_eq!(utc_bounds(None, None, shanghai()), (None, None));
        let west = FixedOffset::west_opt(5 * 3600).unwrap_or(utc());
        let (lo, _) = utc_bounds(day(2026, 1, 1), None, west);
        assert_eq!(lo.as_deref(), Some("2026-01-01T05:00:00.000Z"));
    }

    #[test]
    fn headline_for_an_empty_day_and_singular_counts() {
        let mut r = build_report(&[], &[], day(2026, 11, 5), day(2026, 11, 5), shanghai());
        assert_eq!(headline(&r), "2026-11-05: 0 calls");
        r.totals = station("total", [1, 0, 1, 0, 0, 0, 0], None);
        assert_eq!(
            headline(&r),
            "2026-11-05: 1 call, 0 reached a person (0.0%), 1 voicemail, 0 abandoned"
        );
        let text = format_report(&r, &[]);
        assert!(text.contains("no volunteers rung"), "{text}");
    }

    #[test]
    fn interrupted_calls_are_counted_and_shown() {
        let calls: Vec<ReportCall> = vec![
            (
                Some("health".into()),
                Some("interrupted".into()),
                "2026-11-05T01:00:00.000Z".into(),
                None,
            ),
            (None, None, "2026-11-05T02:00:00.000Z".into(), None),
        ];
        let attempts: Vec<ReportAttempt> = vec![(Some("ana".into()), Some("interrupted".into()))];
        let r = build_report(&calls, &attempts, None, None, shanghai());
        assert_eq!((r.totals.interrupted, r.totals.unfinished), (1, 1));
        assert!(headline(&r).ends_with(", 1 interrupted, 1 unfinished"));
        let text = format_report(&r, &[]);
        assert!(text.contains("INTERRUPTED"), "{text}");
        // Not the volunteer's miss: the daemon stopped.
        assert_eq!(
            (r.per_volunteer[0].answered, r.per_volunteer[0].missed),
            (0, 0)
        );
    }

    #[test]
    fn report_serializes_median_as_seconds() -> TestResult {
        let r = build_report(&[], &[], None, None, shanghai());
        let json = serde_json::to_value(&r)?;
        assert_eq!(json["utc_offset"], "+08:00");
        assert!(json["totals"]["median_time_to_person"].is_null());
        let line = station("x", [1, 1, 0, 0, 0, 0, 0], Some(17_500));
        let json = serde_json::to_value(&line)?;
        assert_eq!(json["median_time_to_person"], 17.5);
        Ok(())
    }
}
