//! Who may talk to us, applied in front of the SIP stack on every transport (UDP
//! datagrams, and each message framed off a TCP or TLS connection): the flood ban
//! ([`Pike`]), the scanner list, the syntax guard ([`guard::inspect`]), and `allow`.
//!
//! [`Policy::judge`] is fed `(now, source, bytes)` and decides; the transports only move
//! bytes. Every refusal is counted in [`Counters`] and logged at most once per source,
//! kind and minute ([`LogGate`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rsipstack::sip::SipMessage;
use tracing::{info, warn};

use crate::sip::guard::{self, Verdict};
use crate::sip::limits::{canonical, Counters, Limits};
use crate::sip::pike::{Pike, PikeVerdict};
use crate::sip::ratelog::LogGate;

/// What to do with one message.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Hand it to the stack; `message` is the parse, `request` says which kind.
    Pass {
        message: Option<SipMessage>,
        request: bool,
    },
    /// Send these bytes back to the source and hand nothing on (400, 403, 501).
    Answer(Vec<u8>),
    /// Say nothing (a scanner, or garbage no answer can be addressed to).
    Drop,
    /// The source is banned: say nothing, and close a stream it came on.
    Banned,
}

/// The policy, shared by every transport task.
#[derive(Debug)]
pub(crate) struct Policy {
    pub limits: Limits,
    pub counters: Arc<Counters>,
    pike: Mutex<Pike>,
    logs: Mutex<LogGate>,
}

/// Entries the log gate remembers: a few thousand sources get their own line a minute,
/// the rest share one.
const LOG_SOURCES: usize = 4096;

impl Policy {
    pub(crate) fn new(limits: Limits) -> Arc<Policy> {
        let pike = Pike::new(
            limits.pike_requests,
            limits.pike_window,
            limits.pike_ban,
            limits.pike_table,
        );
        Arc::new(Policy {
            limits,
            counters: Arc::new(Counters::default()),
            pike: Mutex::new(pike),
            logs: Mutex::new(LogGate::new(LOG_SOURCES)),
        })
    }

    /// `Some(held_back)` when an event of `kind` from `ip` may be logged now.
    pub(crate) fn may_log(&self, now: Instant, ip: IpAddr, kind: &'static str) -> Option<u64> {
        self.logs.lock().ok()?.admit(now, ip, kind)
    }

    /// Count one request from `ip` against the flood limit.
    fn pike(&self, now: Instant, ip: IpAddr) -> PikeVerdict {
        if self.limits.is_trusted(ip) {
            return PikeVerdict::Pass;
        }
        let verdict = match self.pike.lock() {
            Ok(mut p) => p.check(now, ip),
            Err(_) => PikeVerdict::Pass,
        };
        match verdict {
            PikeVerdict::Pass => {}
            PikeVerdict::NewBan => {
                Counters::add(&self.counters.bans);
                if let Some(held) = self.may_log(now, ip, "ban") {
                    warn!(
                        source = %ip,
                        ban_s = self.limits.pike_ban.as_secs(),
                        held_back = held,
                        "flood: banning {ip} for {} s after more than {} requests in {} ms \
                         (add it to [limits] trusted if it is our trunk)",
                        self.limits.pike_ban.as_secs(),
                        self.limits.pike_requests,
                        self.limits.pike_window.as_millis()
                    );
                }
            }
            PikeVerdict::Banned => Counters::add(&self.counters.banned_dropped),
        }
        verdict
    }

    /// Addresses banned at `now`.
    pub(crate) fn banned(&self, now: Instant) -> Vec<IpAddr> {
        self.pike.lock().map(|p| p.banned(now)).unwrap_or_default()
    }

    /// Whether `ip` is banned now (responses and new connections are not counted, only
    /// refused while a ban lasts).
    pub(crate) fn is_banned(&self, now: Instant, ip: IpAddr) -> bool {
        !self.limits.is_trusted(ip)
            && self
                .pike
                .lock()
                .map(|p| p.is_banned(now, canonical(ip)))
                .unwrap_or(false)
    }

    /// A new TCP or TLS connection from `ip`: refused while the address is banned.
    /// Opening one is not counted as a request (as in Kamailio's pike): how many one
    /// address may hold is the per-address cap's job, and what it sends is counted.
    pub(crate) fn admit_connection(&self, now: Instant, ip: IpAddr) -> bool {
        !self.is_banned(now, ip)
    }

    /// Judge one message from `from` (`transport` names it in logs).
    pub(crate) fn judge(
        &self,
        now: Instant,
        from: SocketAddr,
        transport: &str,
        buf: &[u8],
    ) -> Decision {
        let ip = canonical(from.ip());
        let response = buf.starts_with(b"SIP/");
        if response {
            if self.is_banned(now, ip) {
                Counters::add(&self.counters.banned_dropped);
                return Decision::Banned;
            }
        } else if self.pike(now, ip) != PikeVerdict::Pass {
            return Decision::Banned;
        }
        if !response {
            if let Some(ua) = user_agent(buf) {
                if self.limits.is_scanner(&ua) {
                    Counters::add(&self.counters.scanners_dropped);
                    if let Some(held) = self.may_log(now, ip, "scanner") {
                        info!(
                            source = %from,
                            transport,
                            held_back = held,
                            "dropped a request from a SIP scanner (User-Agent {:?}), no answer",
                            ua.chars().take(60).collect::<String>()
                        );
                    }
                    return Decision::Drop;
                }
            }
        }
        let seen = guard::inspect(buf, self.limits.max_message);
        if let Verdict::Reject { reason, response } = seen.verdict {
            let kind = match &response {
                Some(r) if r.starts_with(b"SIP/2.0 501") => &self.counters.not_implemented,
                Some(_) => &self.counters.bad_requests,
                None => &self.counters.malformed_dropped,
            };
            Counters::add(kind);
            if let Some(held) = self.may_log(now, ip, "malformed") {
                info!(
                    source = %from,
                    transport,
                    answered = response.is_some(),
                    held_back = held,
                    "rejected a malformed SIP message: {reason}"
                );
            }
            return match response {
                Some(r) => Decision::Answer(r),
                None => Decision::Drop,
            };
        }
        if seen.method == "INVITE" && !seen.in_dialog && !self.limits.may_call(ip) {
            Counters::add(&self.counters.forbidden);
            if let Some(held) = self.may_log(now, ip, "forbidden") {
                info!(
                    source = %from,
                    transport,
                    held_back = held,
                    "refused a call from {ip}: not in [sip] allow (403)"
                );
            }
            return match guard::reply_from_raw(buf, "403 Forbidden", "caller not allowed") {
                Some(r) => Decision::Answer(r),
                None => Decision::Drop,
            };
        }
        Decision::Pass {
            message: seen.message,
            request: !response,
        }
    }
}

/// The User-Agent header's value, read from the raw bytes (no full parse needed to
/// recognise a scanner).
pub(crate) fn user_agent(buf: &[u8]) -> Option<String> {
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..head_end]);
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("user-agent")
            .then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::limits::parse_net;
    use std::time::Duration;

    fn options(ua: &str) -> Vec<u8> {
        format!(
            "OPTIONS sip:6289110@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport\r\n\
From: <sip:x@192.0.2.1>;tag=1\r\nTo: <sip:6289110@127.0.0.1>\r\n\
Call-ID: c1@192.0.2.1\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn invite() -> Vec<u8> {
        "INVITE sip:6289110@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK2;rport\r\n\
From: <sip:x@192.0.2.1>;tag=1\r\nTo: <sip:6289110@127.0.0.1>\r\n\
Call-ID: c2@192.0.2.1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@192.0.2.1:5070>\r\n\
Content-Length: 0\r\n\r\n"
            .as_bytes()
            .to_vec()
    }

    fn from(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn status(d: &Decision) -> Option<String> {
        match d {
            Decision::Answer(b) => Some(String::from_utf8_lossy(&b[..11]).to_string()),
            _ => None,
        }
    }

    #[test]
    fn scanners_are_dropped_without_an_answer_and_counted() {
        let p = Policy::new(Limits::default());
        let now = Instant::now();
        for ua in [
            "friendly-scanner",
            "sipvicious",
            "SIPCLI/v1.63",
            "VaxSIPUserAgent/3.1",
            "pplsip",
        ] {
            assert!(
                matches!(
                    p.judge(now, from("192.0.2.1:5070"), "udp", &options(ua)),
                    Decision::Drop
                ),
                "{ua}"
            );
        }
        assert_eq!(Counters::get(&p.counters.scanners_dropped), 5);
        assert!(matches!(
            p.judge(now, from("192.0.2.2:5070"), "udp", &options("Linphone/5.2")),
            Decision::Pass { request: true, .. }
        ));
    }

    #[test]
    fn a_flooding_address_is_banned_then_silenced_and_others_are_served() {
        let p = Policy::new(Limits::default());
        let t0 = Instant::now();
        let flood = from("192.0.2.66:5070");
        let mut passed = 0;
        for i in 0..100 {
            let t = t0 + Duration::from_millis(i * 10);
            if let Decision::Pass { .. } = p.judge(t, flood, "udp", &options("x")) {
                passed += 1;
            }
        }
        assert_eq!(passed, 16);
        assert_eq!(Counters::get(&p.counters.bans), 1);
        assert_eq!(Counters::get(&p.counters.banned_dropped), 83);
        assert!(!p.admit_connection(t0 + Duration::from_secs(1), flood.ip()));
        assert!(matches!(
            p.judge(t0, from("192.0.2.7:5070"), "udp", &options("x")),
            Decision::Pass { .. }
        ));
    }

    #[test]
    fn trusted_addresses_are_never_banned() {
        let p = Policy::new(Limits {
            trusted: vec![parse_net("192.0.2.0/28").unwrap()],
            ..Limits::default()
        });
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(matches!(
                p.judge(t0, from("192.0.2.5:5060"), "udp", &options("trunk")),
                Decision::Pass { .. }
            ));
        }
        assert_eq!(Counters::get(&p.counters.bans), 0);
    }

    #[test]
    fn an_invite_from_outside_allow_gets_403_but_other_requests_pass() {
        let p = Policy::new(Limits {
            allow: vec![parse_net("198.51.100.0/24").unwrap()],
            ..Limits::default()
        });
        let now = Instant::now();
        let d = p.judge(now, from("192.0.2.1:5070"), "udp", &invite());
        assert_eq!(status(&d).as_deref(), Some("SIP/2.0 403"));
        assert!(matches!(
            p.judge(now, from("192.0.2.1:5070"), "udp", &options("x")),
            Decision::Pass { .. }
        ));
        assert!(matches!(
            p.judge(now, from("198.51.100.9:5060"), "udp", &invite()),
            Decision::Pass { .. }
        ));
        // An in-dialog request (a volunteer's phone hanging up) is not a new call.
        let reinvite = String::from_utf8(invite()).unwrap().replace(
            "<sip:6289110@127.0.0.1>",
            "<sip:6289110@127.0.0.1>;tag=ours",
        );
        assert!(matches!(
            p.judge(now, from("192.0.2.1:5070"), "udp", reinvite.as_bytes()),
            Decision::Pass { .. }
        ));
        assert_eq!(Counters::get(&p.counters.forbidden), 1);
    }

    #[test]
    fn malformed_requests_get_400_and_are_counted() {
        let p = Policy::new(Limits::default());
        let bad = String::from_utf8(invite())
            .unwrap()
            .replace("Contact: <sip:x@192.0.2.1:5070>\r\n", "");
        let d = p.judge(
            Instant::now(),
            from("192.0.2.1:5070"),
            "tcp",
            bad.as_bytes(),
        );
        assert_eq!(status(&d).as_deref(), Some("SIP/2.0 400"));
        assert_eq!(Counters::get(&p.counters.bad_requests), 1);
    }

    #[test]
    fn responses_are_not_counted_against_the_flood_limit() {
        let p = Policy::new(Limits::default());
        let resp = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK9\r\n\
From: <sip:6289110@127.0.0.1>;tag=a\r\nTo: <sip:v@192.0.2.1>;tag=b\r\nCall-ID: v1\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let now = Instant::now();
        for _ in 0..100 {
            assert!(matches!(
                p.judge(now, from("192.0.2.1:5060"), "udp", resp),
                Decision::Pass { request: false, .. }
            ));
        }
    }
}
