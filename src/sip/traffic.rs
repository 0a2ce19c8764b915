//! SIP traffic counts for `/metrics`: requests received by method, responses
//! sent by class. Counted by the endpoint's inspector, which sees every message
//! rsipstack parses or sends (retransmissions included), so no reply path can
//! be missed.

use std::sync::atomic::{AtomicU64, Ordering};

use rsipstack::sip::SipMessage;

/// Methods counted by name; anything else counts as "other" (bounded labels).
pub(crate) const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "MESSAGE",
    "REFER",
];

/// Response classes, "1xx" to "6xx".
pub(crate) const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// The counters; shared by the inspector and the admin listener.
#[derive(Debug, Default)]
pub struct Traffic {
    requests: [AtomicU64; METHODS.len() + 1],
    responses: [AtomicU64; CLASSES.len()],
}

impl Traffic {
    /// A request that arrived.
    pub(crate) fn received(&self, msg: &SipMessage) {
        if let SipMessage::Request(req) = msg {
            let name = req.method.to_string();
            let i = METHODS
                .iter()
                .position(|m| *m == name)
                .unwrap_or(METHODS.len());
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A response we sent.
    pub(crate) fn sent(&self, msg: &SipMessage) {
        if let SipMessage::Response(resp) = msg {
            let class = usize::from(resp.status_code.code() / 100);
            if let Some(c) = class.checked_sub(1).and_then(|i| self.responses.get(i)) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// (method label, requests received), "other" last.
    pub fn requests(&self) -> Vec<(&'static str, u64)> {
        METHODS
            .iter()
            .copied()
            .chain(["other"])
            .zip(&self.requests)
            .map(|(m, c)| (m, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// (class label, responses sent).
    pub fn responses(&self) -> Vec<(&'static str, u64)> {
        CLASSES
            .iter()
            .copied()
            .zip(&self.responses)
            .map(|(m, c)| (m, c.load(Ordering::Relaxed)))
            .collect()
    }
}
