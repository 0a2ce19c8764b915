//! Reading the daemon for one admin request: counters and snapshots only.

use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{TimeZone as _, Utc};

use super::status::{RosterStatus, Status, StoreStatus};
use crate::server::Server;

/// A series' labels, as [`super::metrics::Metrics`] takes them.
type Labels<'a> = &'a [(&'static str, &'a str)];

/// Why the daemon should not get traffic now, or None when it is ready.
pub(super) fn not_ready(server: &Server, queue_limit: u64) -> Option<String> {
    if server.is_draining() {
        return Some("shutting down: not taking new calls".into());
    }
    if !server.stack().is_serving() {
        return Some("SIP is not listening".into());
    }
    if !server.roster_loaded() {
        return Some(format!(
            "no roster loaded from {}",
            server.roster_file().display()
        ));
    }
    let depth = server.store().pending() as u64;
    if depth > queue_limit {
        return Some(format!(
            "call records database is behind: {depth} updates waiting (limit {queue_limit})"
        ));
    }
    None
}

/// Brings the gauges and mirrored counters up to date, then renders.
pub(super) fn metrics(server: &Server) -> String {
    let m = &server.observer().metrics;
    let stack = server.stack();
    let counters = stack.counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mirrored: [(&'static str, Labels, u64); 9] = [
        ("hotline_sip_bans_total", &[], load(&counters.bans)),
        (
            "hotline_sip_banned_dropped_total",
            &[],
            load(&counters.banned_dropped),
        ),
        (
            "hotline_sip_scanners_dropped_total",
            &[],
            load(&counters.scanners_dropped),
        ),
        (
            "hotline_sip_connections_refused_total",
            &[("reason", "per_source")],
            load(&counters.refused_per_source),
        ),
        (
            "hotline_sip_connections_refused_total",
            &[("reason", "total")],
            load(&counters.refused_total),
        ),
        (
            "hotline_sip_connections_refused_total",
            &[("reason", "banned")],
            load(&counters.refused_banned),
        ),
        (
            "hotline_sip_calls_refused_total",
            &[],
            load(&counters.calls_refused),
        ),
        (
            "hotline_media_late_ticks_total",
            &[],
            load(&server.clock_stats().late_ticks),
        ),
        (
            "hotline_rtp_packets_total",
            &[("direction", "out")],
            load(&server.clock_stats().packets),
        ),
    ];
    for (name, labels, value) in mirrored {
        m.counter(name, labels).absolute(value);
    }
    let traffic = stack.traffic();
    for (method, n) in traffic.requests() {
        m.counter("hotline_sip_requests_total", &[("method", method)])
            .absolute(n);
    }
    for (class, n) in traffic.responses() {
        m.counter("hotline_sip_responses_total", &[("code_class", class)])
            .absolute(n);
    }
    m.gauge("hotline_sip_bans_active", &[])
        .set(stack.banned().len() as f64);
    let store = server.store();
    m.gauge("hotline_store_queue_depth", &[])
        .set(store.pending() as f64);
    m.counter("hotline_store_write_errors_total", &[])
        .absolute(store.write_errors());
    m.gauge("hotline_store_last_success_timestamp_seconds", &[])
        .set(store.last_success_unix() as f64);
    if let Some(up) = server.trunk_registered() {
        m.gauge("hotline_trunk_registered", &[])
            .set(if up { 1.0 } else { 0.0 });
    }
    let roster = server.roster();
    let (ok, err) = roster.reload_counts();
    m.counter("hotline_roster_reloads_total", &[("result", "ok")])
        .absolute(ok);
    m.counter("hotline_roster_reloads_total", &[("result", "error")])
        .absolute(err);
    m.gauge("hotline_roster_generation", &[])
        .set(roster.generation() as f64);
    duty(server);
    m.gauge("hotline_volunteers_busy", &[])
        .set(server.busy_volunteers() as f64);
    m.render()
}

/// On duty now and the fewest at any 10-minute mark of the next hour, per station.
fn duty(server: &Server) {
    let m = &server.observer().metrics;
    let roster = server.roster().current();
    let now = Utc::now();
    for station in server.stations() {
        let id = station.id.as_str();
        let at = |minutes: i64| {
            roster
                .hunt_list(id, now + chrono::Duration::minutes(minutes))
                .len()
        };
        let fewest = (0..=6).map(|i| at(i * 10)).min().unwrap_or(0);
        m.gauge("hotline_volunteers_on_duty", &[("station", id)])
            .set(at(0) as f64);
        m.gauge("hotline_volunteers_on_duty_next_hour", &[("station", id)])
            .set(fewest as f64);
    }
}

/// `/status`.
pub(super) fn status(server: &Server, started: Instant) -> Status {
    let roster = server.roster().current();
    let store = server.store();
    let last = i64::try_from(store.last_success_unix()).unwrap_or(0);
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: started.elapsed().as_secs(),
        draining: server.is_draining(),
        calls: server.observer().active(),
        trunk_registered: server.trunk_registered(),
        roster: RosterStatus {
            file: server.roster_file().display().to_string(),
            generation: server.roster().generation(),
            volunteers: roster.volunteers.len(),
            shifts: roster.shifts.len(),
        },
        store: StoreStatus {
            queue_depth: store.pending() as u64,
            last_write: Utc
                .timestamp_opt(last, 0)
                .single()
                .filter(|_| last > 0)
                .map(|t| t.to_rfc3339()),
            write_errors: store.write_errors(),
        },
        bans: server
            .stack()
            .banned()
            .into_iter()
            .map(|ip| ip.to_string())
            .collect(),
    }
}
