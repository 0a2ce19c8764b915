//! Flood defence, after Kamailio's pike module: count requests per source address in
//! windows of `window`; an address that sends more than `limit` in one window is banned
//! for `ban`, and everything it sends meanwhile is dropped (its TCP connections closed).
//!
//! Sans I/O: [`Pike::check`] is fed `(now, addr)` and answers; the tests drive it with
//! virtual time. Memory is bounded: at most `cap` addresses are remembered, entries
//! expire once their window (or ban) is over, and a full table of live entries makes
//! new addresses pass untracked rather than evict a ban (a spoofed-source flood cannot
//! lift a real ban, and cannot make the table grow).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::sip::limits::canonical;

/// What pike says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PikeVerdict {
    /// Under the rate: serve it.
    Pass,
    /// This request crossed the rate: the address is banned from now on.
    NewBan,
    /// The address is banned: drop silently.
    Banned,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    count: u32,
    banned_until: Option<Instant>,
}

impl Entry {
    fn expired(&self, now: Instant, window: Duration) -> bool {
        match self.banned_until {
            Some(until) => now >= until,
            None => now.duration_since(self.window_start) >= window,
        }
    }
}

/// The per-address request counter and ban list.
#[derive(Debug)]
pub(crate) struct Pike {
    limit: u32,
    window: Duration,
    ban: Duration,
    cap: usize,
    entries: HashMap<IpAddr, Entry>,
    last_sweep: Option<Instant>,
}

/// IPv6 hosts get a /64 each, so one host rotating addresses inside its own prefix
/// counts once (RFC 6177 prefixes are per site, /64 per link).
fn key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Pike {
    pub(crate) fn new(limit: u32, window: Duration, ban: Duration, cap: usize) -> Pike {
        Pike {
            limit: limit.max(1),
            window: window.max(Duration::from_millis(1)),
            ban,
            cap: cap.max(1),
            entries: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Count one request from `ip` at `now`.
    pub(crate) fn check(&mut self, now: Instant, ip: IpAddr) -> PikeVerdict {
        let k = key(ip);
        if !self.entries.contains_key(&k) && self.entries.len() >= self.cap {
            self.sweep(now);
            if self.entries.len() >= self.cap {
                return PikeVerdict::Pass;
            }
        }
        let (window, ban, limit) = (self.window, self.ban, self.limit);
        let e = self.entries.entry(k).or_insert(Entry {
            window_start: now,
            count: 0,
            banned_until: None,
        });
        if let Some(until) = e.banned_until {
            if now < until {
                return PikeVerdict::Banned;
            }
            // The ban is over: start counting afresh.
            *e = Entry {
                window_start: now,
                count: 0,
                banned_until: None,
            };
        }
        if now.duration_since(e.window_start) >= window {
            e.window_start = now;
            e.count = 0;
        }
        e.count += 1;
        if e.count > limit {
            e.banned_until = Some(now + ban);
            return PikeVerdict::NewBan;
        }
        PikeVerdict::Pass
    }

    /// Whether `ip` is banned at `now`, without counting anything (a new connection
    /// from a banned address is refused before it costs a task).
    pub(crate) fn is_banned(&self, now: Instant, ip: IpAddr) -> bool {
        self.entries
            .get(&key(ip))
            .and_then(|e| e.banned_until)
            .is_some_and(|until| now < until)
    }

    /// Addresses (IPv6: /64 prefixes) banned at `now`, for the admin's status.
    pub(crate) fn banned(&self, now: Instant) -> Vec<IpAddr> {
        let mut list: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| e.banned_until.is_some_and(|until| now < until))
            .map(|(ip, _)| *ip)
            .collect();
        list.sort();
        list
    }

    /// Addresses remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drop expired entries; at most once per window, so a full table under a flood
    /// costs one scan per window rather than one per packet.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < self.window)
        {
            return;
        }
        self.last_sweep = Some(now);
        let window = self.window;
        self.entries.retain(|_, e| !e.expired(now, window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pike() -> Pike {
        Pike::new(16, Duration::from_secs(2), Duration::from_secs(300), 1000)
    }

    #[test]
    fn sixteen_requests_in_two_seconds_pass_and_the_seventeenth_bans() {
        let mut p = pike();
        let t0 = Instant::now();
        for i in 0..16 {
            let t = t0 + Duration::from_millis(100 * i);
            assert_eq!(
                p.check(t, ip("192.0.2.1")),
                PikeVerdict::Pass,
                "request {i}"
            );
        }
        let t = t0 + Duration::from_millis(1700);
        assert_eq!(p.check(t, ip("192.0.2.1")), PikeVerdict::NewBan);
        assert_eq!(p.check(t, ip("192.0.2.1")), PikeVerdict::Banned);
        assert!(p.is_banned(t, ip("192.0.2.1")));
        // Another address is untouched.
        assert_eq!(p.check(t, ip("192.0.2.2")), PikeVerdict::Pass);
    }

    #[test]
    fn a_steady_rate_under_the_limit_is_never_banned() {
        let mut p = pike();
        let t0 = Instant::now();
        // 7 requests a second for ten minutes: 14 per window.
        for i in 0..4200u64 {
            let t = t0 + Duration::from_millis(i * 1000 / 7);
            assert_eq!(p.check(t, ip("192.0.2.1")), PikeVerdict::Pass, "at {i}");
        }
    }

    #[test]
    fn the_ban_lasts_its_time_then_the_address_is_served_again() {
        let mut p = pike();
        let t0 = Instant::now();
        for _ in 0..17 {
            p.check(t0, ip("192.0.2.1"));
        }
        let almost = t0 + Duration::from_secs(299);
        assert_eq!(p.check(almost, ip("192.0.2.1")), PikeVerdict::Banned);
        let after = t0 + Duration::from_secs(300);
        assert!(!p.is_banned(after, ip("192.0.2.1")));
        assert_eq!(p.check(after, ip("192.0.2.1")), PikeVerdict::Pass);
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_count_together() {
        let mut p = pike();
        let t0 = Instant::now();
        for i in 0..16 {
            assert_eq!(
                p.check(t0, ip(&format!("2001:db8:1:2::{i:x}"))),
                PikeVerdict::Pass
            );
        }
        assert_eq!(p.check(t0, ip("2001:db8:1:2::ffff")), PikeVerdict::NewBan);
        assert_eq!(p.check(t0, ip("2001:db8:1:3::1")), PikeVerdict::Pass);
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_address() {
        let mut p = pike();
        let t0 = Instant::now();
        for _ in 0..17 {
            p.check(t0, ip("::ffff:192.0.2.9"));
        }
        assert!(p.is_banned(t0, ip("192.0.2.9")));
    }

    #[test]
    fn memory_is_bounded_and_expired_entries_make_room() {
        let mut p = Pike::new(16, Duration::from_secs(2), Duration::from_secs(300), 100);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            p.check(t0, IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        }
        assert_eq!(p.len(), 100);
        // Past the window the old entries expire and new addresses are tracked again.
        let later = t0 + Duration::from_secs(3);
        for _ in 0..17 {
            p.check(later, ip("192.0.2.1"));
        }
        assert!(p.is_banned(later, ip("192.0.2.1")));
        assert!(p.len() <= 100);
    }

    #[test]
    fn a_full_table_never_evicts_a_live_ban() {
        let mut p = Pike::new(16, Duration::from_secs(2), Duration::from_secs(300), 10);
        let t0 = Instant::now();
        for _ in 0..17 {
            p.check(t0, ip("192.0.2.66"));
        }
        // A spoofed flood from fresh addresses, long after the windows have passed.
        for round in 0..5u64 {
            let t = t0 + Duration::from_secs(10 * (round + 1));
            for i in 0..100u32 {
                p.check(t, IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
            }
            assert!(p.is_banned(t, ip("192.0.2.66")), "round {round}");
            assert!(p.len() <= 10);
        }
    }
}
