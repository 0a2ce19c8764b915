//! The calls in progress as the admin sees them, and the call metrics, both
//! kept from the call flow's record updates ([`CallEvent`]): one place sees
//! every call start, key, ring, connect and end, in order.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::metrics::Metrics;
use crate::store::CallEvent;

/// Where a call is, for `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Hearing the menu, choosing a station.
    Menu,
    /// A volunteer's phone is ringing.
    Ringing,
    /// Talking with a volunteer.
    Bridged,
    /// Nobody answered: leaving a message.
    Voicemail,
}

/// One call in progress, as `/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCall {
    pub call_id: String,
    /// The caller's number, all but the last 4 digits masked.
    pub caller: String,
    /// The station's id, once chosen.
    pub station: Option<String>,
    pub state: CallState,
    /// The volunteer's roster id, once connected.
    pub volunteer: Option<String>,
    pub duration_s: u64,
}

struct Live {
    caller: String,
    started: Instant,
    station: Option<String>,
    state: CallState,
    volunteer: Option<String>,
    answered: Option<Instant>,
    keyed: Option<Instant>,
    rung: bool,
}

/// Watches record updates; shared by the call flow and the admin listener.
pub(crate) struct Observer {
    pub(crate) metrics: Metrics,
    calls: Mutex<HashMap<String, Live>>,
    /// (name, id) of each station: the flow records the name, labels use the id.
    stations: Vec<(String, String)>,
}

impl Observer {
    pub(crate) fn new(stations: &[crate::config::Station]) -> Observer {
        Observer {
            metrics: Metrics::new(),
            calls: Mutex::new(HashMap::new()),
            stations: stations
                .iter()
                .map(|s| (s.name.clone(), s.id.clone()))
                .collect(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn station_id(&self, station: &str) -> String {
        self.stations
            .iter()
            .find(|(name, id)| name == station || id == station)
            .map(|(_, id)| id.clone())
            .unwrap_or_else(|| "other".into())
    }

    /// One update from the call flow (before it goes to the store).
    pub(crate) fn observe(&self, ev: &CallEvent) {
        let now = Instant::now();
        let mut calls = self.lock();
        match ev {
            CallEvent::Started(c) => {
                calls.insert(
                    c.call_id.clone(),
                    Live {
                        caller: mask(&c.caller),
                        started: now,
                        station: None,
                        state: CallState::Menu,
                        volunteer: None,
                        answered: None,
                        keyed: None,
                        rung: false,
                    },
                );
            }
            CallEvent::Ended {
                call_id, outcome, ..
            } => {
                let station = calls
                    .remove(call_id)
                    .and_then(|c| c.station)
                    .unwrap_or_else(|| "none".into());
                let m = &self.metrics;
                if *outcome == crate::store::Outcome::Selftest {
                    // Not a resident's call: counted apart from them.
                    m.counter("hotline_selftest_calls_total", &[]).increment(1);
                    return self.set_active(&calls);
                }
                let outcome = outcome.as_str();
                m.counter("hotline_calls_total", &[("outcome", outcome)])
                    .increment(1);
                let labels = [("station", station.as_str()), ("outcome", outcome)];
                m.counter("hotline_calls_by_station_total", &labels)
                    .increment(1);
            }
            CallEvent::Quality(q) => {
                let m = &self.metrics;
                m.counter("hotline_rtp_packets_total", &[("direction", "in")])
                    .increment(u64::from(q.packets_received));
                m.counter("hotline_rtp_lost_packets_total", &[])
                    .increment(q.packets_lost.max(0) as u64);
                if q.packets_received > 0 {
                    m.histogram("hotline_rtp_jitter_seconds", &[])
                        .record(f64::from(q.jitter_us) / 1e6);
                }
            }
            CallEvent::AttemptEnded { result, .. } => {
                self.metrics
                    .counter(
                        "hotline_hunt_attempts_total",
                        &[("result", result.as_str())],
                    )
                    .increment(1);
            }
            other => {
                if let Some(call) = calls.get_mut(other.call_id()) {
                    self.update(call, other, now);
                }
            }
        }
        self.set_active(&calls);
    }

    fn set_active(&self, calls: &HashMap<String, Live>) {
        self.metrics
            .gauge("hotline_calls_active", &[])
            .set(calls.len() as f64);
    }

    fn update(&self, call: &mut Live, ev: &CallEvent, now: Instant) {
        match ev {
            CallEvent::Answered { .. } => call.answered = Some(now),
            CallEvent::Station { station, .. } => {
                call.station = Some(self.station_id(station));
                call.keyed = Some(now);
            }
            CallEvent::AttemptStarted { .. } => {
                call.state = CallState::Ringing;
                if let (false, Some(keyed)) = (call.rung, call.keyed) {
                    self.metrics
                        .histogram("hotline_post_dial_delay_seconds", &[])
                        .record(now.duration_since(keyed).as_secs_f64());
                }
                call.rung = true;
            }
            CallEvent::Connected { volunteer, .. } => {
                call.state = CallState::Bridged;
                call.volunteer = Some(volunteer.clone());
                if let Some(answered) = call.answered {
                    self.metrics
                        .histogram("hotline_time_to_person_seconds", &[])
                        .record(now.duration_since(answered).as_secs_f64());
                }
            }
            CallEvent::Voicemail { .. } => call.state = CallState::Voicemail,
            _ => {}
        }
    }

    /// The calls in progress, oldest first.
    pub(crate) fn active(&self) -> Vec<ActiveCall> {
        let now = Instant::now();
        let calls = self.lock();
        let mut list: Vec<(Instant, ActiveCall)> = calls
            .iter()
            .map(|(id, c)| {
                let call = ActiveCall {
                    call_id: id.clone(),
                    caller: c.caller.clone(),
                    station: c.station.clone(),
                    state: c.state,
                    volunteer: c.volunteer.clone(),
                    duration_s: now.duration_since(c.started).as_secs(),
                };
                (c.started, call)
            })
            .collect();
        list.sort_by_key(|(t, _)| *t);
        list.into_iter().map(|(_, c)| c).collect()
    }
}

/// The caller as an admin may see it: every digit but the last 4 masked
/// ("sip:" and domains dropped), e.g. `+86 138 0013 8000` → `*********8000`.
pub(crate) fn mask(caller: &str) -> String {
    let user = caller
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .split(['@', ';'])
        .next()
        .unwrap_or("");
    let chars: Vec<char> = user.chars().filter(|c| !c.is_whitespace()).collect();
    let keep = chars.len().saturating_sub(4);
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < keep { '*' } else { *c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_is_masked_but_the_last_four_digits() {
        assert_eq!(mask("13800138000"), "*******8000");
        assert_eq!(mask("sip:13800138000@10.0.0.1;user=phone"), "*******8000");
        assert_eq!(mask("123"), "123");
        assert_eq!(mask(""), "");
    }
}
