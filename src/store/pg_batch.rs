//! PostgreSQL's batched writes: a batch of events in one transaction with
//! one multi-row statement per step of [`super::batch::plan`], instead of
//! one statement (one round trip to the server) per event. At 300 calls/s
//! a batch then costs about ten round trips instead of hundreds, which is
//! what keeps the "answered" and "connected" updates within a second of
//! happening on a busy machine (issue 8; measured in `cost.rs`).
//!
//! Each statement reads its rows from `UNNEST` over one array per column.
//! All arrays are `text[]` and the two integer columns are cast in SQL, so
//! every event turns into the same shape of values ([`values`]). The
//! statements change rows exactly as the per-event ones in `sql.rs` do
//! (inserts ignore a row already there, `alive_at` never moves back), and
//! each returns the key of every row it wrote, so the writer still learns
//! which updates found no row.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::batch::{plan, Kind, RowKey};
use super::event::{db_time, CallEvent};

/// The statement for a step of `kind`; its parameters are the columns of
/// [`values`], in order.
fn statement(kind: Kind) -> &'static str {
    match kind {
        Kind::Started => {
            "INSERT INTO calls (call_id, caller, dialed, started_at, alive_at) \
             SELECT call_id, caller, dialed, started_at, started_at \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY \
               AS v(call_id, caller, dialed, started_at, n) \
             ORDER BY n ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
        }
        Kind::Answered => concat!(
            "UPDATE calls SET answered_at = v.at, ",
            alive_since!("v.at"),
            " FROM UNNEST($1::text[], $2::text[]) AS v(call_id, at) \
             WHERE calls.call_id = v.call_id RETURNING calls.call_id"
        ),
        Kind::Key => {
            "UPDATE calls SET keys = v.keys FROM UNNEST($1::text[], $2::text[]) AS v(call_id, keys) \
             WHERE calls.call_id = v.call_id RETURNING calls.call_id"
        }
        Kind::Station => {
            "UPDATE calls SET station = v.station \
             FROM UNNEST($1::text[], $2::text[]) AS v(call_id, station) \
             WHERE calls.call_id = v.call_id RETURNING calls.call_id"
        }
        Kind::Connected => concat!(
            "UPDATE calls SET volunteer = v.volunteer, connected_at = v.at, ",
            alive_since!("v.at"),
            " FROM UNNEST($1::text[], $2::text[], $3::text[]) AS v(call_id, volunteer, at) \
             WHERE calls.call_id = v.call_id RETURNING calls.call_id"
        ),
        Kind::Voicemail => {
            "UPDATE calls SET voicemail = v.path \
             FROM UNNEST($1::text[], $2::text[]) AS v(call_id, path) \
             WHERE calls.call_id = v.call_id RETURNING calls.call_id"
        }
        Kind::Ended => {
            "UPDATE calls SET ended_at = v.at, outcome = v.outcome, hangup_by = v.hangup_by, \
               reason = v.reason \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
               AS v(call_id, at, outcome, hangup_by, reason) \
             WHERE calls.call_id = v.call_id RETURNING calls.call_id"
        }
        Kind::AttemptStarted => {
            "INSERT INTO call_attempts AS a (call_id, attempt_no, volunteer, target, started_at) \
             SELECT call_id, CAST(attempt_no AS BIGINT), volunteer, target, started_at \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
               WITH ORDINALITY AS v(call_id, attempt_no, volunteer, target, started_at, n) \
             ORDER BY n ON CONFLICT (call_id, attempt_no) DO NOTHING \
             RETURNING a.call_id, a.attempt_no"
        }
        Kind::AttemptEnded => {
            "UPDATE call_attempts AS a SET ended_at = v.at, result = v.result, \
               sip_status = CAST(v.sip_status AS INTEGER), reason = v.reason \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
               AS v(call_id, attempt_no, at, result, sip_status, reason) \
             WHERE a.call_id = v.call_id AND a.attempt_no = CAST(v.attempt_no AS BIGINT) \
             RETURNING a.call_id, a.attempt_no"
        }
        Kind::Quality => {
            "INSERT INTO call_quality AS q (call_id, attempt_no, leg, packets_sent, \
               packets_received, packets_lost, jitter_us, rtt_us, peer_lost, peer_jitter_us, \
               rtcp_reports) \
             SELECT call_id, CAST(attempt_no AS BIGINT), leg, CAST(sent AS BIGINT), \
               CAST(received AS BIGINT), CAST(lost AS BIGINT), CAST(jitter AS BIGINT), \
               CAST(rtt AS BIGINT), CAST(peer_lost AS BIGINT), CAST(peer_jitter AS BIGINT), \
               CAST(reports AS BIGINT) \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
               $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]) WITH ORDINALITY \
               AS v(call_id, attempt_no, leg, sent, received, lost, jitter, rtt, peer_lost, \
                    peer_jitter, reports, n) \
             ORDER BY n ON CONFLICT (call_id, attempt_no) DO NOTHING \
             RETURNING q.call_id, q.attempt_no"
        }
    }
}

/// One event's values, the columns of its kind's statement in order.
fn values(ev: &CallEvent) -> Vec<Option<String>> {
    let s = |v: &str| Some(v.to_string());
    match ev {
        CallEvent::Started(c) => vec![
            s(&c.call_id),
            s(&c.caller),
            s(&c.dialed),
            Some(db_time(c.started_at)),
        ],
        CallEvent::Answered { call_id, at } => vec![s(call_id), Some(db_time(*at))],
        CallEvent::Key { call_id, keys } => vec![s(call_id), s(keys)],
        CallEvent::Station { call_id, station } => vec![s(call_id), s(station)],
        CallEvent::Connected {
            call_id,
            volunteer,
            at,
        } => vec![s(call_id), s(volunteer), Some(db_time(*at))],
        CallEvent::Voicemail { call_id, path } => vec![s(call_id), s(path)],
        CallEvent::Ended {
            call_id,
            at,
            outcome,
            hangup_by,
            reason,
        } => vec![
            s(call_id),
            Some(db_time(*at)),
            s(outcome.as_str()),
            s(hangup_by.as_str()),
            reason.clone(),
        ],
        CallEvent::AttemptStarted {
            call_id,
            attempt_no,
            volunteer,
            target,
            at,
        } => vec![
            s(call_id),
            Some(attempt_no.to_string()),
            s(volunteer),
            s(target),
            Some(db_time(*at)),
        ],
        CallEvent::AttemptEnded {
            call_id,
            attempt_no,
            at,
            result,
            sip_status,
            reason,
        } => vec![
            s(call_id),
            Some(attempt_no.to_string()),
            Some(db_time(*at)),
            s(result.as_str()),
            sip_status.map(|c| c.to_string()),
            reason.clone(),
        ],
        CallEvent::Quality(q) => vec![
            s(&q.call_id),
            Some(q.attempt_no.to_string()),
            s(q.leg()),
            Some(q.packets_sent.to_string()),
            Some(q.packets_received.to_string()),
            Some(q.packets_lost.to_string()),
            Some(q.jitter_us.to_string()),
            q.rtt_us.map(|v| v.to_string()),
            q.peer_lost.map(|v| v.to_string()),
            q.peer_jitter_us.map(|v| v.to_string()),
            Some(q.rtcp_reports.to_string()),
        ],
    }
}

/// The events' values turned into one array per column (all events of a
/// step have the same columns).
fn columns(rows: impl Iterator<Item = Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    let mut cols: Vec<Vec<Option<String>>> = Vec::new();
    for row in rows {
        if cols.is_empty() {
            cols.resize_with(row.len(), Vec::new);
        }
        for (col, value) in cols.iter_mut().zip(row) {
            col.push(value);
        }
    }
    cols
}

/// The key of a row a statement returned.
fn returned_key(kind: Kind, row: &PgRow) -> Result<(String, Option<i64>), sqlx::Error> {
    let call_id: String = row.try_get(0)?;
    let attempt_no = match kind {
        Kind::AttemptStarted | Kind::AttemptEnded | Kind::Quality => Some(row.try_get(1)?),
        _ => None,
    };
    Ok((call_id, attempt_no))
}

/// Applies `evs` in one transaction, a statement per step; returns the
/// rows each event wrote (0 or 1), as one statement per event would.
pub(crate) async fn apply(pool: &PgPool, evs: &[CallEvent]) -> Result<Vec<u64>, sqlx::Error> {
    let mut touched = vec![0u64; evs.len()];
    let mut tx = pool.begin().await?;
    for step in plan(evs) {
        let mut query = sqlx::query(statement(step.kind));
        for column in columns(step.events.iter().map(|&i| values(&evs[i]))) {
            query = query.bind(column);
        }
        // No two events of a step write the same row, so a row's key
        // names its event.
        let by_key: HashMap<RowKey<'_>, usize> = step
            .events
            .iter()
            .map(|&i| (RowKey::of(&evs[i]), i))
            .collect();
        for row in query.fetch_all(&mut *tx).await? {
            let (call_id, attempt_no) = returned_key(step.kind, &row)?;
            let key = match attempt_no.map(u32::try_from) {
                None => RowKey::Call(&call_id),
                Some(Ok(n)) => RowKey::Attempt(&call_id, n),
                Some(Err(_)) => continue,
            };
            if let Some(&i) = by_key.get(&key) {
                touched[i] += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(touched)
}
