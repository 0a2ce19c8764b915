//! `/metrics`: the daemon's figures in the Prometheus text format, through
//! `metrics-exporter-prometheus`. One recorder per daemon (never the global
//! one), so tests running several daemons in one process each see their own.
//!
//! Labels are bounded: outcomes, results, station ids, methods and classes,
//! never a caller's number, a Call-ID or a volunteer's phone.

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// Call outcomes as `hotline_calls_total{outcome}` shows them (the store's words).
pub(crate) const OUTCOMES: [&str; 6] = [
    "connected",
    "voicemail",
    "no_answer",
    "abandoned",
    "failed",
    "interrupted",
];

/// Hunt attempt results (the store's words).
pub(crate) const RESULTS: [&str; 6] = [
    "answered",
    "no_answer",
    "busy",
    "declined",
    "failed",
    "cancelled",
];

/// (name, kind, unit, help) of every metric.
const DESCRIBED: &[(&str, Kind, Option<Unit>, &str)] = &[
    (
        "hotline_calls_active",
        Kind::Gauge,
        None,
        "Calls in progress.",
    ),
    (
        "hotline_calls_total",
        Kind::Counter,
        None,
        "Calls ended, by outcome.",
    ),
    (
        "hotline_calls_by_station_total",
        Kind::Counter,
        None,
        "Calls ended, by the station chosen (\"none\": no choice) and outcome.",
    ),
    (
        "hotline_selftest_calls_total",
        Kind::Counter,
        None,
        "`hotline selftest` calls ended (not in hotline_calls_total).",
    ),
    (
        "hotline_hunt_attempts_total",
        Kind::Counter,
        None,
        "Volunteers rung, by how the ringing ended.",
    ),
    (
        "hotline_post_dial_delay_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "From the caller's key press to the first volunteer's INVITE.",
    ),
    (
        "hotline_time_to_person_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "From answering the caller to a volunteer connected.",
    ),
    (
        "hotline_volunteers_on_duty",
        Kind::Gauge,
        None,
        "Volunteers a call to the station would ring now.",
    ),
    (
        "hotline_volunteers_on_duty_next_hour",
        Kind::Gauge,
        None,
        "The fewest volunteers on duty at the station at any 10-minute mark of the next hour.",
    ),
    (
        "hotline_volunteers_busy",
        Kind::Gauge,
        None,
        "Volunteers being rung or talking.",
    ),
    (
        "hotline_media_late_ticks_total",
        Kind::Counter,
        None,
        "Media clock ticks whose packets left more than 2 ms late.",
    ),
    (
        "hotline_rtp_packets_total",
        Kind::Counter,
        None,
        "RTP packets, by direction (out: sent by the media clock; in: received, counted as each leg ends).",
    ),
    (
        "hotline_rtp_lost_packets_total",
        Kind::Counter,
        None,
        "RTP packets lost on the way to us (from sequence numbers), counted as each leg ends.",
    ),
    (
        "hotline_rtp_jitter_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Interarrival jitter of received RTP (RFC 3550 A.8), one observation per leg at its end.",
    ),
    (
        "hotline_store_queue_depth",
        Kind::Gauge,
        None,
        "Call record updates waiting for the database.",
    ),
    (
        "hotline_store_write_errors_total",
        Kind::Counter,
        None,
        "Failed call record writes (each retry counts).",
    ),
    (
        "hotline_store_last_success_timestamp_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "Unix time of the last call record write that succeeded.",
    ),
    (
        "hotline_trunk_registered",
        Kind::Gauge,
        None,
        "1 while registered with the SIP trunk (only with [trunk] register = true).",
    ),
    (
        "hotline_roster_reloads_total",
        Kind::Counter,
        None,
        "Roster re-reads, by result (ok, error).",
    ),
    (
        "hotline_roster_generation",
        Kind::Gauge,
        None,
        "Number of the roster reading in force (0: the one at start).",
    ),
    (
        "hotline_sip_requests_total",
        Kind::Counter,
        None,
        "SIP requests received, by method.",
    ),
    (
        "hotline_sip_responses_total",
        Kind::Counter,
        None,
        "SIP responses sent, by class.",
    ),
    (
        "hotline_sip_bans_total",
        Kind::Counter,
        None,
        "Source addresses banned by the flood defence.",
    ),
    (
        "hotline_sip_banned_dropped_total",
        Kind::Counter,
        None,
        "Messages dropped because their source was banned.",
    ),
    (
        "hotline_sip_scanners_dropped_total",
        Kind::Counter,
        None,
        "Requests dropped for a scanner's User-Agent.",
    ),
    (
        "hotline_sip_connections_refused_total",
        Kind::Counter,
        None,
        "TCP/TLS connections refused, by reason (per_source, total, banned).",
    ),
    (
        "hotline_sip_calls_refused_total",
        Kind::Counter,
        None,
        "INVITEs answered 503 beyond [limits] max_calls.",
    ),
    (
        "hotline_sip_bans_active",
        Kind::Gauge,
        None,
        "Source addresses banned now.",
    ),
];

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Buckets (seconds) of the two delay histograms: a person within a minute.
const DELAY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];
/// Buckets (seconds) of RTP jitter: 1 ms to 200 ms.
const JITTER_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.2];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// One daemon's metrics.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let histogram = |b: PrometheusBuilder, name: &str, buckets: &[f64]| {
            b.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
                .unwrap_or_else(|_| PrometheusBuilder::new())
        };
        let builder = PrometheusBuilder::new();
        let builder = histogram(builder, "hotline_post_dial_delay_seconds", DELAY_BUCKETS);
        let builder = histogram(builder, "hotline_time_to_person_seconds", DELAY_BUCKETS);
        let builder = histogram(builder, "hotline_rtp_jitter_seconds", JITTER_BUCKETS);
        let metrics = Metrics {
            recorder: builder.build_recorder(),
        };
        for &(name, kind, unit, help) in DESCRIBED {
            let r = &metrics.recorder;
            match kind {
                Kind::Counter => r.describe_counter(name.into(), unit, help.into()),
                Kind::Gauge => r.describe_gauge(name.into(), unit, help.into()),
                Kind::Histogram => r.describe_histogram(name.into(), unit, help.into()),
            }
        }
        metrics.preregister();
        metrics
    }

    /// Every series whose labels are known up front starts at 0, so a rate is
    /// defined before the first event and a scrape shows the full list.
    fn preregister(&self) {
        self.gauge("hotline_calls_active", &[]).set(0.0);
        for outcome in OUTCOMES {
            self.counter("hotline_calls_total", &[("outcome", outcome)])
                .increment(0);
        }
        self.counter("hotline_selftest_calls_total", &[])
            .increment(0);
        for result in RESULTS {
            self.counter("hotline_hunt_attempts_total", &[("result", result)])
                .increment(0);
        }
        for result in ["ok", "error"] {
            self.counter("hotline_roster_reloads_total", &[("result", result)])
                .increment(0);
        }
        self.counter("hotline_rtp_lost_packets_total", &[])
            .increment(0);
        self.counter("hotline_rtp_packets_total", &[("direction", "in")])
            .increment(0);
        for name in [
            "hotline_post_dial_delay_seconds",
            "hotline_time_to_person_seconds",
            "hotline_rtp_jitter_seconds",
        ] {
            // A histogram is rendered once it has a handle; no observation needed.
            let _ = self.histogram(name, &[]);
        }
    }

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect();
        Key::from_parts(name, labels)
    }

    pub(crate) fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    pub(crate) fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    pub(crate) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// The text a scrape gets.
    pub(crate) fn render(&self) -> String {
        self.recorder.handle().render()
    }
}
