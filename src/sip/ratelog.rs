//! "Once per source and minute": a flood must not become a flood of log lines.
//!
//! [`LogGate::admit`] says whether an event of one kind from one address may be logged
//! now, and how many like it were held back since the last line (the counters in
//! [`crate::sip::limits::Counters`] still count every one). Sans I/O, bounded: at most
//! `cap` (address, kind) pairs are remembered; past that, every other address shares one
//! line a minute.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

pub(crate) const PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct LogGate {
    cap: usize,
    seen: HashMap<(IpAddr, &'static str), (Instant, u64)>,
    last_sweep: Option<Instant>,
}

/// The address that stands for "every source we had no room to remember".
const OTHERS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl LogGate {
    pub(crate) fn new(cap: usize) -> LogGate {
        LogGate {
            cap: cap.max(1),
            seen: HashMap::new(),
            last_sweep: None,
        }
    }

    /// `Some(held_back)` if this event may be logged now, `None` to stay quiet.
    pub(crate) fn admit(&mut self, now: Instant, ip: IpAddr, kind: &'static str) -> Option<u64> {
        let mut key = (ip, kind);
        if !self.seen.contains_key(&key) && self.seen.len() >= self.cap {
            self.sweep(now);
            if self.seen.len() >= self.cap {
                key = (OTHERS, kind);
            }
        }
        match self.seen.get_mut(&key) {
            Some((last, held)) if now.duration_since(*last) < PERIOD => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                let n = *held;
                *last = now;
                *held = 0;
                Some(n)
            }
            None => {
                self.seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < PERIOD)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.seen
            .retain(|k, (last, _)| k.0 == OTHERS || now.duration_since(*last) < PERIOD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_source_and_kind_and_minute() {
        let mut g = LogGate::new(100);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(g.admit(t0, a, "scanner"), Some(0));
        for i in 1..1000 {
            assert_eq!(g.admit(t0 + Duration::from_millis(i), a, "scanner"), None);
        }
        assert_eq!(g.admit(t0, a, "400"), Some(0));
        assert_eq!(g.admit(t0, b, "scanner"), Some(0));
        assert_eq!(g.admit(t0 + PERIOD, a, "scanner"), Some(999));
    }

    #[test]
    fn beyond_the_cap_other_sources_share_one_line_a_minute() {
        let mut g = LogGate::new(10);
        let t0 = Instant::now();
        let lines = (0..10_000u32)
            .filter(|i| {
                g.admit(t0, IpAddr::from((0x0a00_0000 + i).to_be_bytes()), "ban")
                    .is_some()
            })
            .count();
        assert_eq!(lines, 11);
        assert!(g.seen.len() <= 11);
    }
}
