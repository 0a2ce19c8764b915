//! What the store hands back when asked about calls: plain rows with times
//! as the stored RFC 3339 text, ready for `hotline calls` or JSON.

use chrono::DateTime;
use serde::Serialize;
use sqlx::{ColumnIndex, Decode, Row, Type};
use unicode_width::UnicodeWidthStr as _;

/// One row of `calls`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRow {
    /// Row number, in insertion order.
    pub id: i64,
    /// SIP Call-ID of the caller's leg.
    pub call_id: String,
    /// Caller's number or URI.
    pub caller: Option<String>,
    /// Number dialed.
    pub dialed: Option<String>,
    /// When the INVITE arrived.
    pub started_at: String,
    /// When we answered.
    pub answered_at: Option<String>,
    /// Station chosen, if any.
    pub station: Option<String>,
    /// Every key pressed, in order.
    pub keys: String,
    /// Volunteer who answered, if any.
    pub volunteer: Option<String>,
    /// When the volunteer answered.
    pub connected_at: Option<String>,
    /// When the call ended; `None` while in progress.
    pub ended_at: Option<String>,
    /// `connected`, `voicemail`, `no_answer`, `abandoned`, `failed` or
    /// `interrupted` (the daemon stopped during the call).
    pub outcome: Option<String>,
    /// `caller`, `volunteer` or `system`.
    pub hangup_by: Option<String>,
    /// Path of the voicemail recording.
    pub voicemail: Option<String>,
    /// What went wrong on our side, in words: e.g. the voicemail could not
    /// be saved, or the daemon stopped during the call (`interrupted`).
    pub reason: Option<String>,
}

/// One row of `call_attempts`: one volunteer rung for one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRow {
    /// Row number, in insertion order.
    pub id: i64,
    /// Caller leg's Call-ID, linking to `calls.call_id`.
    pub call_id: String,
    /// 1, 2, 3... within the call.
    pub attempt_no: i64,
    /// Volunteer's name from the roster.
    pub volunteer: Option<String>,
    /// SIP URI or number rung.
    pub target: Option<String>,
    /// When the INVITE went out.
    pub started_at: Option<String>,
    /// When the attempt finished.
    pub ended_at: Option<String>,
    /// `answered`, `no_answer`, `busy`, `declined`, `failed`, `cancelled`
    /// or `interrupted`.
    pub result: Option<String>,
    /// Final SIP status code; `None` when no SIP answer came (a failure
    /// here, a timeout, a cancel).
    pub sip_status: Option<i32>,
    /// Why the attempt failed when the failure was ours, in words.
    pub reason: Option<String>,
}

/// Reads a [`CallRow`] from either backend's row type.
pub(crate) fn call_from_row<R>(row: &R) -> Result<CallRow, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(CallRow {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        caller: row.try_get("caller")?,
        dialed: row.try_get("dialed")?,
        started_at: row.try_get("started_at")?,
        answered_at: row.try_get("answered_at")?,
        station: row.try_get("station")?,
        keys: row.try_get("keys")?,
        volunteer: row.try_get("volunteer")?,
        connected_at: row.try_get("connected_at")?,
        ended_at: row.try_get("ended_at")?,
        outcome: row.try_get("outcome")?,
        hangup_by: row.try_get("hangup_by")?,
        voicemail: row.try_get("voicemail")?,
        reason: row.try_get("reason")?,
    })
}

/// Reads an [`AttemptRow`] from either backend's row type.
pub(crate) fn attempt_from_row<R>(row: &R) -> Result<AttemptRow, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(AttemptRow {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        attempt_no: row.try_get("attempt_no")?,
        volunteer: row.try_get("volunteer")?,
        target: row.try_get("target")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        result: row.try_get("result")?,
        sip_status: row.try_get("sip_status")?,
        reason: row.try_get("reason")?,
    })
}

/// One row of `call_quality`: how a leg's media went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QualityRow {
    /// Caller leg's Call-ID.
    pub call_id: String,
    /// 0 for the caller's leg, else the attempt that reached the volunteer.
    pub attempt_no: i64,
    /// `caller` or `volunteer`.
    pub leg: String,
    /// RTP packets we sent on the leg.
    pub packets_sent: i64,
    /// RTP packets we received.
    pub packets_received: i64,
    /// Packets lost on the way to us (expected minus received).
    pub packets_lost: i64,
    /// Interarrival jitter of what we received, microseconds.
    pub jitter_us: i64,
    /// Round trip from RTCP, microseconds; None when the peer's reports gave none.
    pub rtt_us: Option<i64>,
    /// Our packets the peer reported lost; None without RTCP from the peer.
    pub peer_lost: Option<i64>,
    /// Jitter the peer reported for our stream, microseconds.
    pub peer_jitter_us: Option<i64>,
    /// RTCP reports received from the peer.
    pub rtcp_reports: i64,
}

/// Reads a [`QualityRow`] from either backend's row type.
pub(crate) fn quality_from_row<R>(row: &R) -> Result<QualityRow, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(QualityRow {
        call_id: row.try_get("call_id")?,
        attempt_no: row.try_get("attempt_no")?,
        leg: row.try_get("leg")?,
        packets_sent: row.try_get("packets_sent")?,
        packets_received: row.try_get("packets_received")?,
        packets_lost: row.try_get("packets_lost")?,
        jitter_us: row.try_get("jitter_us")?,
        rtt_us: row.try_get("rtt_us")?,
        peer_lost: row.try_get("peer_lost")?,
        peer_jitter_us: row.try_get("peer_jitter_us")?,
        rtcp_reports: row.try_get("rtcp_reports")?,
    })
}

/// `   media caller: sent 1500, received 1498, lost 2 (0.1%), jitter 1.2 ms,
/// round trip 0.4 ms; their end lost 0, jitter 0.9 ms`.
fn quality_line(q: &QualityRow) -> String {
    let ms = |us: i64| format!("{:.1} ms", us as f64 / 1000.0);
    let expected = q.packets_received + q.packets_lost.max(0);
    let pct = if expected > 0 {
        q.packets_lost.max(0) as f64 * 100.0 / expected as f64
    } else {
        0.0
    };
    let who = if q.attempt_no == 0 {
        "caller".to_string()
    } else {
        format!("volunteer (attempt {})", q.attempt_no)
    };
    let mut line = format!(
        "     media {who}: sent {}, received {}, lost {} ({pct:.1}%), jitter {}",
        q.packets_sent,
        q.packets_received,
        q.packets_lost,
        ms(q.jitter_us)
    );
    if let Some(rtt) = q.rtt_us {
        line.push_str(&format!(", round trip {}", ms(rtt)));
    }
    match (q.peer_lost, q.peer_jitter_us) {
        (Some(lost), Some(jitter)) => {
            line.push_str(&format!("; their end lost {lost}, jitter {}", ms(jitter)))
        }
        _ if q.rtcp_reports == 0 => line.push_str("; no RTCP from their end"),
        _ => {}
    }
    line
}

/// Renders calls as an aligned text table for `hotline calls`, so a
/// coordinator can read the log in a terminal without SQL.
pub fn format_calls_table(rows: &[CallRow]) -> String {
    if rows.is_empty() {
        return "no calls recorded yet\n".to_string();
    }
    let mut out = String::new();
    for line in calls_table_lines(rows.iter()) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A call with the volunteers rung for it, for `hotline calls --json`:
/// the call's columns, plus `attempts` in attempt order and the media
/// `quality` of each leg (caller first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallWithAttempts {
    /// The call's row; its fields appear at the top level in JSON.
    #[serde(flatten)]
    pub call: CallRow,
    /// Its attempts, by `attempt_no`.
    pub attempts: Vec<AttemptRow>,
    /// Its legs' media figures, by `attempt_no` (0, the caller, first).
    pub quality: Vec<QualityRow>,
}

/// The calls table with each call's attempts indented under its line:
/// `  -> 1. wang sip:13800138000@trunk.example busy (486) 00:00:03`.
pub fn format_calls_with_attempts(calls: &[CallWithAttempts]) -> String {
    if calls.is_empty() {
        return "no calls recorded yet\n".to_string();
    }
    let mut lines = calls_table_lines(calls.iter().map(|c| &c.call));
    let mut out = String::new();
    if let Some(header) = lines.next() {
        out.push_str(&header);
        out.push('\n');
    }
    for (c, line) in calls.iter().zip(lines) {
        out.push_str(&line);
        out.push('\n');
        for q in c.quality.iter().filter(|q| q.attempt_no == 0) {
            out.push_str(&quality_line(q));
            out.push('\n');
        }
        for a in &c.attempts {
            out.push_str(&attempt_line(&c.call, a));
            out.push('\n');
            for q in c.quality.iter().filter(|q| q.attempt_no == a.attempt_no) {
                out.push_str(&quality_line(q));
                out.push('\n');
            }
        }
    }
    out
}

/// One indented attempt line; the result reads `ringing` while the call
/// is still on and no result came.
fn attempt_line(call: &CallRow, a: &AttemptRow) -> String {
    let result = match (a.result.as_deref(), call.ended_at.is_some()) {
        (Some(r), _) => r,
        (None, false) => "ringing",
        (None, true) => "no result",
    };
    let mut line = format!(
        "  -> {}. {} {} {result}",
        a.attempt_no,
        dash(a.volunteer.as_deref()),
        dash(a.target.as_deref()),
    );
    if let Some(status) = a.sip_status {
        line.push_str(&format!(" ({status})"));
    } else if let Some(reason) = a.reason.as_deref().filter(|_| a.result.is_some()) {
        line.push_str(&format!(" ({reason})"));
    }
    line.push(' ');
    line.push_str(&hms(a.started_at.as_deref(), a.ended_at.as_deref()));
    line
}

/// The header line, then one aligned line per call, without newlines.
fn calls_table_lines<'a>(rows: impl Iterator<Item = &'a CallRow>) -> impl Iterator<Item = String> {
    let header = [
        "STARTED (UTC)",
        "CALLER",
        "STATION",
        "KEYS",
        "VOLUNTEER",
        "OUTCOME",
        "HUNG UP",
        "LENGTH",
    ];
    let body: Vec<[String; 8]> = rows
        .map(|r| {
            [
                short_time(&r.started_at),
                dash(r.caller.as_deref()),
                dash(r.station.as_deref()),
                dash(Some(r.keys.as_str())),
                dash(r.volunteer.as_deref()),
                r.outcome
                    .clone()
                    .unwrap_or_else(|| "in progress".to_string()),
                dash(r.hangup_by.as_deref()),
                length(&r.started_at, r.ended_at.as_deref()),
            ]
        })
        .collect();
    // Terminal columns, not characters: a Chinese name takes two per character.
    let mut widths = header.map(|h| h.width());
    for line in &body {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.width());
        }
    }
    let render = move |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.width());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        line.trim_end().to_string()
    };
    let mut lines = vec![render(&mut header.iter().copied())];
    for line in &body {
        lines.push(render(&mut line.iter().map(String::as_str)));
    }
    lines.into_iter()
}

/// `hh:mm:ss` between two stored times, `-` if either is missing or unreadable.
fn hms(started: Option<&str>, ended: Option<&str>) -> String {
    let (Some(Ok(s)), Some(Ok(e))) = (
        started.map(DateTime::parse_from_rfc3339),
        ended.map(DateTime::parse_from_rfc3339),
    ) else {
        return "-".to_string();
    };
    let secs = (e - s).num_seconds().max(0);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `2026-11-28T05:00:00.123Z` -> `2026-11-28 05:00:00`; anything else as is.
fn short_time(stored: &str) -> String {
    match DateTime::parse_from_rfc3339(stored) {
        Ok(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => stored.to_string(),
    }
}

fn dash(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

/// Call length as `m:ss` (or `h:mm:ss`), `-` while in progress or unreadable.
fn length(started: &str, ended: Option<&str>) -> String {
    let (Ok(s), Some(Ok(e))) = (
        DateTime::parse_from_rfc3339(started),
        ended.map(DateTime::parse_from_rfc3339),
    ) else {
        return "-".to_string();
    };
    let secs = (e - s).num_seconds().max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(call_id: &str, started: &str, ended: Option<&str>, outcome: Option<&str>) -> CallRow {
        CallRow {
            id: 1,
            call_id: call_id.to_string(),
            caller: Some("+4930123".to_string()),
            dialed: Some("6289110".to_string()),
            started_at: started.to_string(),
            answered_at: None,
            station: Some("housing".to_string()),
            keys: "2".to_string(),
            volunteer: None,
            connected_at: None,
            ended_at: ended.map(str::to_string),
            outcome: outcome.map(str::to_string),
            hangup_by: None,
            voicemail: None,
            reason: None,
        }
    }

    #[test]
    fn table_shows_times_lengths_and_in_progress_calls() {
        let rows = [
            row(
                "a",
                "2026-11-28T05:00:00.123Z",
                Some("2026-11-28T06:02:03.000Z"),
                Some("voicemail"),
            ),
            row("b", "2026-11-28T05:10:00.000Z", None, None),
        ];
        let table = format_calls_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("STARTED (UTC)        CALLER"));
        assert!(lines[1].starts_with("2026-11-28 05:00:00  +4930123"));
        assert!(lines[1].ends_with("1:02:02"), "{}", lines[1]);
        assert!(lines[2].contains("in progress"));
        assert!(lines[2].ends_with('-'));
    }

    #[test]
    fn chinese_names_keep_the_columns_aligned() {
        let mut wang = row("a", "2026-11-28T05:00:00.000Z", None, Some("connected"));
        wang.volunteer = Some("王阿姨".to_string());
        let mut li = row("b", "2026-11-28T05:10:00.000Z", None, Some("voicemail"));
        li.volunteer = Some("li".to_string());
        let table = format_calls_table(&[wang, li]);
        // The OUTCOME column starts at the same terminal column on every line.
        let columns: Vec<usize> = table
            .lines()
            .map(|l| {
                let at = ["OUTCOME", "connected", "voicemail"]
                    .iter()
                    .find_map(|w| l.find(w))
                    .unwrap_or(0);
                l[..at].width()
            })
            .collect();
        assert_eq!(columns.len(), 3, "{table}");
        assert!(columns.iter().all(|&c| c == columns[0] && c > 0), "{table}");
    }

    #[test]
    fn empty_table_says_so() {
        assert_eq!(format_calls_table(&[]), "no calls recorded yet\n");
    }

    #[test]
    fn short_calls_show_minutes_and_seconds() {
        assert_eq!(
            length("2026-11-28T05:00:00.000Z", Some("2026-11-28T05:01:05.900Z")),
            "1:05"
        );
        assert_eq!(length("garbage", Some("2026-11-28T05:01:05.900Z")), "-");
    }
}
