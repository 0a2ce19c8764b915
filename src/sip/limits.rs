//! The limits that keep a SIP port on the public internet usable (issue 8): how many
//! connections, how long they may idle, how large a message may be, who is a scanner,
//! how fast one address may send, who may call, and how many calls at once.
//!
//! [`Limits`] is a plain settings struct with the documented defaults, so the config
//! file (`[limits]`, `[sip] allow`) only has to fill it in. [`Counters`] counts what the
//! limits did, as plain atomics a metrics endpoint can read. [`CallSlots`] is the cap on
//! concurrent calls.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use ipnet::IpNet;

/// The scanner list is the config's default (`[limits] scanners`), kept in one place.
pub use crate::config::DEFAULT_SCANNERS;

/// Trusted unless the config says otherwise: this host's own loopback address.
pub const DEFAULT_TRUSTED: [&str; 2] = ["127.0.0.1/32", "::1/128"];

/// File descriptors kept back for everything that is neither a SIP connection nor an
/// RTP socket: listeners, the database, log files, prompt files being read.
pub const FD_RESERVE: u64 = 64;

/// Every limit, with the defaults a hotline on the internet should start from.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// TCP and TLS connections open at once from one address (AST-2016-005: one host
    /// must not be able to fill the file table).
    pub tcp_per_source: usize,
    /// TCP and TLS connections open at once in total; further capped at start by the
    /// process's file limit minus what the calls' RTP sockets need.
    pub tcp_total: usize,
    /// Close a connection that completes no request within this long of opening or of
    /// its last request (RFC 3261 Timer D, 32 s, as Asterisk's transport management).
    /// A connection that carries a call in progress is never closed for idling.
    pub idle: Duration,
    /// Close a connection whose partial message has not completed within this long
    /// (a slow-headers client trickling a byte every few seconds).
    pub partial: Duration,
    /// A TLS handshake must finish within this long.
    pub handshake: Duration,
    /// The largest SIP message accepted on any transport.
    pub max_message: usize,
    /// Requests whose User-Agent contains one of these (case-insensitive) are dropped
    /// without an answer: a scanner that hears nothing moves on.
    pub scanners: Vec<String>,
    /// Flood defence (Kamailio's pike): more than `pike_requests` requests within
    /// `pike_window` from one address bans it for `pike_ban`: its datagrams are dropped
    /// and its connections closed. IPv6 addresses count per /64.
    pub pike_requests: u32,
    pub pike_window: Duration,
    pub pike_ban: Duration,
    /// Addresses pike remembers at most (memory stays bounded under a spoofed flood).
    pub pike_table: usize,
    /// Exempt from pike and from the per-address connection cap: the trunk's
    /// addresses belong here, or a busy trunk would be banned like a flood. Default:
    /// this host's own loopback address (a local proxy, SIPp, a health check), which
    /// no packet from outside can carry.
    pub trusted: Vec<IpNet>,
    /// Who may call (`[sip] allow`): an INVITE from elsewhere gets 403 and creates no
    /// call. Empty: everyone.
    pub allow: Vec<IpNet>,
    /// Concurrent calls; `None`: derived from the RTP port range (see
    /// [`Limits::calls_for_ports`]). Beyond it: 503 with `Retry-After`.
    pub max_calls: Option<usize>,
    /// The `Retry-After` of that 503, in seconds.
    pub retry_after_s: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tcp_per_source: 64,
            tcp_total: 4096,
            idle: Duration::from_secs(32),
            partial: Duration::from_secs(10),
            handshake: Duration::from_secs(10),
            max_message: crate::sip::guard::MAX_MESSAGE,
            scanners: DEFAULT_SCANNERS.iter().map(|s| s.to_string()).collect(),
            pike_requests: 16,
            pike_window: Duration::from_secs(2),
            pike_ban: Duration::from_secs(300),
            pike_table: 16_384,
            trusted: DEFAULT_TRUSTED
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            allow: Vec::new(),
            max_calls: None,
            retry_after_s: 30,
        }
    }
}

impl Limits {
    /// Calls the RTP range can carry: each call has two legs (caller and volunteer),
    /// each leg an even/odd port pair, so `ports / 4`.
    pub fn calls_for_ports(rtp_ports: usize) -> usize {
        (rtp_ports / 2 / 2).max(1)
    }

    /// The call cap in force for an RTP range of `rtp_ports` ports.
    pub fn max_calls_for(&self, rtp_ports: usize) -> usize {
        self.max_calls
            .unwrap_or_else(|| Self::calls_for_ports(rtp_ports))
    }

    /// The connection cap in force: the configured total, but always below the file
    /// limit minus the RTP sockets (one per port of the range) and [`FD_RESERVE`].
    pub fn connections_for(&self, nofile: u64, rtp_ports: usize) -> usize {
        let spare = nofile.saturating_sub(rtp_ports as u64 + FD_RESERVE);
        self.tcp_total.min(spare as usize)
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        contains(&self.trusted, ip)
    }

    /// Whether `ip` may place calls.
    pub fn may_call(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || contains(&self.allow, ip)
    }

    /// Whether a User-Agent value names a scanner.
    pub fn is_scanner(&self, user_agent: &str) -> bool {
        let ua = user_agent.to_ascii_lowercase();
        self.scanners
            .iter()
            .any(|s| !s.is_empty() && ua.contains(&s.to_ascii_lowercase()))
    }
}

/// Whether any network in `nets` holds `ip` (an IPv4-mapped IPv6 address counts as IPv4).
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// `::ffff:a.b.c.d` is the IPv4 address a.b.c.d (a dual-stack socket reports it so).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Parse a CIDR (`"192.0.2.0/24"`) or a bare address (`"192.0.2.7"`, one host), for the
/// config's `allow` and `trusted` lists.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => Err(format!(
            "{s:?} is not an address or a CIDR such as \"192.0.2.0/24\""
        )),
    }
}

/// The process's open-file limit, raised first to its hard limit (the soft limit is
/// often 1,024, far below what 4,096 connections plus the RTP sockets need).
pub fn raise_nofile() -> u64 {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
        let n = lim.rlim_cur as u64;
        n
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

/// What the limits did, for logs, tests and (issue 9) metrics. Plain counters only.
#[derive(Debug, Default)]
pub struct Counters {
    /// Addresses banned by the flood defence.
    pub bans: AtomicU64,
    /// Datagrams and messages dropped because their source was banned.
    pub banned_dropped: AtomicU64,
    /// Requests dropped silently for a scanner's User-Agent.
    pub scanners_dropped: AtomicU64,
    /// 400 Bad Request answers to malformed requests.
    pub bad_requests: AtomicU64,
    /// Malformed messages dropped without an answer (nothing to address one to).
    pub malformed_dropped: AtomicU64,
    /// 501 answers to methods we do not know.
    pub not_implemented: AtomicU64,
    /// 403 answers to INVITEs from outside `allow`.
    pub forbidden: AtomicU64,
    /// 503 answers to INVITEs beyond `max_calls`.
    pub calls_refused: AtomicU64,
    /// TCP/TLS connections accepted and served.
    pub connections_accepted: AtomicU64,
    /// Connections refused (closed at once) at the per-address cap.
    pub refused_per_source: AtomicU64,
    /// Connections refused at the total cap.
    pub refused_total: AtomicU64,
    /// Connections refused because their source was banned.
    pub refused_banned: AtomicU64,
    /// Connections closed for completing no request within `idle`.
    pub closed_idle: AtomicU64,
    /// Connections closed for a partial message older than `partial`.
    pub closed_partial: AtomicU64,
    /// Messages (and their connections) refused for exceeding `max_message`.
    pub oversize: AtomicU64,
    /// Connections closed because their framing was lost (an unreadable Content-Length).
    pub closed_unframeable: AtomicU64,
    /// TLS handshakes that failed or did not finish within `handshake`.
    pub tls_handshake_failed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Read one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The cap on concurrent calls. The server takes a [`CallSlot`] for each call it starts
/// and holds it until the call's task ends; when none is left the INVITE gets 503.
#[derive(Debug)]
pub struct CallSlots {
    max: usize,
    used: AtomicUsize,
}

impl CallSlots {
    pub fn new(max: usize) -> Arc<CallSlots> {
        Arc::new(CallSlots {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// Take a slot, or `None` when every slot is in use.
    pub fn try_acquire(self: &Arc<Self>) -> Option<CallSlot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| CallSlot {
                slots: self.clone(),
            })
    }

    /// True while every slot is taken: OPTIONS then answers 503, so a load balancer
    /// steers calls elsewhere.
    pub fn is_full(&self) -> bool {
        self.used.load(Ordering::Acquire) >= self.max
    }

    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// One call's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct CallSlot {
    slots: Arc<CallSlots>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.slots.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rtp_range_carries_250_calls() {
        // 20000-20999: 1,000 ports, 500 pairs, two legs a call.
        assert_eq!(Limits::default().max_calls_for(1000), 250);
        let set = Limits {
            max_calls: Some(7),
            ..Limits::default()
        };
        assert_eq!(set.max_calls_for(1000), 7);
    }

    #[test]
    fn connections_stay_below_the_file_limit_minus_the_rtp_sockets() {
        let l = Limits::default();
        assert_eq!(l.connections_for(1_048_576, 1000), 4096);
        assert_eq!(l.connections_for(1024, 1000), 0);
        assert_eq!(l.connections_for(4096, 1000), 4096 - 1000 - 64);
    }

    #[test]
    fn scanners_match_case_insensitive_substrings() {
        let l = Limits::default();
        assert!(l.is_scanner("friendly-scanner"));
        assert!(l.is_scanner("SIPVicious 0.3.4"));
        assert!(l.is_scanner("something vaxsipuseragent/3.1"));
        assert!(!l.is_scanner("Linphone/5.2 (belle-sip/5.2)"));
        assert!(!l.is_scanner(""));
    }

    #[test]
    fn allow_empty_means_everyone_and_cidrs_are_checked() {
        let mut l = Limits::default();
        assert!(l.may_call("203.0.113.9".parse().unwrap()));
        l.allow = vec![
            parse_net("192.0.2.0/24").unwrap(),
            parse_net("2001:db8::1").unwrap(),
        ];
        assert!(l.may_call("192.0.2.77".parse().unwrap()));
        assert!(l.may_call("::ffff:192.0.2.77".parse().unwrap()));
        assert!(l.may_call("2001:db8::1".parse().unwrap()));
        assert!(!l.may_call("2001:db8::2".parse().unwrap()));
        assert!(!l.may_call("198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn parse_net_takes_cidrs_and_bare_addresses_and_names_bad_ones() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("127.0.0.2").unwrap().to_string(), "127.0.0.2/32");
        assert!(parse_net("trunk.example")
            .unwrap_err()
            .contains("trunk.example"));
    }

    #[test]
    fn call_slots_refuse_beyond_the_cap_and_free_on_drop() {
        let slots = CallSlots::new(2);
        let a = slots.try_acquire().unwrap();
        let _b = slots.try_acquire().unwrap();
        assert!(slots.is_full());
        assert!(slots.try_acquire().is_none());
        drop(a);
        assert!(!slots.is_full());
        assert_eq!(slots.in_use(), 1);
        assert!(slots.try_acquire().is_some());
    }
}
