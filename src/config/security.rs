//! The keys that make the daemon safe on the public internet: `[limits]` and
//! `[sip] allow` and `tls_*`. Checked as every other section: each problem names
//! file, line and field.

use std::net::IpAddr;

use toml::Spanned;

use super::raw::{RawLimits, RawSip};
use super::validate::{parsed, seconds};
use super::*;
use crate::diag::Checker;

/// `[sip] allow`, `tls_listen`, `tls_cert`, `tls_key`, `tls_ca`.
pub(super) fn sip_security(c: &mut Checker, raw: &mut RawSip, sip: &mut SipConfig) {
    if let Some(list) = raw.allow.take() {
        sip.allow = nets(c, list, "[sip] allow");
    }
    if let Some(v) = raw.tls_ca.take() {
        sip.tls_ca = Some(v);
    }
    let (listen, cert, key) = (
        raw.tls_listen.take(),
        raw.tls_cert.take(),
        raw.tls_key.take(),
    );
    if listen.is_none() && cert.is_none() && key.is_none() {
        return;
    }
    // TLS needs all three; name the first missing one at the key that was given.
    let span = [
        listen.as_ref().map(|v| v.span()),
        cert.as_ref().map(|v| v.span()),
        key.as_ref().map(|v| v.span()),
    ]
    .into_iter()
    .flatten()
    .next();
    for (missing, field) in [
        (listen.is_none(), "[sip] tls_listen"),
        (cert.is_none(), "[sip] tls_cert"),
        (key.is_none(), "[sip] tls_key"),
    ] {
        if missing {
            let message = "TLS needs tls_listen, tls_cert and tls_key together; \
                           this one is missing"
                .into();
            c.error(span.clone(), field, message);
        }
    }
    let expected = "an address and port like \"0.0.0.0:5061\"";
    let addr = listen.and_then(|v| parsed(c, &v, "[sip] tls_listen", expected));
    if let (Some(listen), Some(cert), Some(key)) = (addr, cert, key) {
        sip.tls = Some(TlsConfig {
            listen,
            cert: cert.into_inner(),
            key: key.into_inner(),
        });
    }
}

/// A list of networks: CIDRs (`"192.0.2.0/24"`) or bare addresses (one host).
fn nets(c: &mut Checker, list: Vec<Spanned<String>>, field: &str) -> Vec<IpNet> {
    let mut out = Vec::new();
    for v in list {
        match parse_net(v.get_ref()) {
            Some(net) => out.push(net),
            None => {
                let message = format!(
                    "expected an address or a CIDR like \"192.0.2.0/24\", found {:?}",
                    v.get_ref()
                );
                c.error(v.span(), field, message);
            }
        }
    }
    out
}

/// `"192.0.2.0/24"`, `"2001:db8::/32"` or a bare address; host bits are cleared.
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// A whole number within `range`, or an error naming it.
fn bounded(
    c: &mut Checker,
    v: Option<Spanned<u64>>,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Option<u64> {
    let v = v?;
    if !range.contains(v.get_ref()) {
        let message = format!(
            "must be between {} and {}, found {}",
            range.start(),
            range.end(),
            v.get_ref()
        );
        c.error(v.span(), field, message);
        return None;
    }
    Some(v.into_inner())
}

/// `[limits]`.
pub(super) fn limits(c: &mut Checker, raw: RawLimits, l: &mut LimitsConfig) {
    let count = |c: &mut Checker, v, field, max| bounded(c, v, field, 1..=max);
    if let Some(n) = count(c, raw.tcp_per_source, "[limits] tcp_per_source", 1 << 20) {
        l.tcp_per_source = n as usize;
    }
    if let Some(n) = count(c, raw.tcp_total, "[limits] tcp_total", 1 << 20) {
        l.tcp_total = n as usize;
    }
    seconds(c, raw.idle_s, "[limits] idle_s", &mut l.idle_s);
    seconds(c, raw.partial_s, "[limits] partial_s", &mut l.partial_s);
    seconds(
        c,
        raw.handshake_s,
        "[limits] handshake_s",
        &mut l.handshake_s,
    );
    let field = "[limits] max_message";
    if let Some(n) = bounded(c, raw.max_message, field, 1024..=1 << 20) {
        l.max_message = n as usize;
    }
    if let Some(list) = raw.scanners {
        l.scanners = Vec::new();
        for v in list {
            if v.get_ref().trim().is_empty() {
                let message = "an empty User-Agent pattern would match every phone".into();
                c.error(v.span(), "[limits] scanners", message);
            } else {
                l.scanners.push(v.into_inner());
            }
        }
    }
    if let Some(n) = count(c, raw.pike_requests, "[limits] pike_requests", 1 << 20) {
        l.pike_requests = n as u32;
    }
    seconds(
        c,
        raw.pike_window_s,
        "[limits] pike_window_s",
        &mut l.pike_window_s,
    );
    seconds(c, raw.pike_ban_s, "[limits] pike_ban_s", &mut l.pike_ban_s);
    if let Some(list) = raw.trusted {
        l.trusted = nets(c, list, "[limits] trusted");
    }
    if let Some(n) = count(c, raw.max_calls, "[limits] max_calls", 1 << 20) {
        l.max_calls = Some(n as usize);
    }
    let field = "[limits] retry_after_s";
    if let Some(n) = bounded(c, raw.retry_after_s, field, 0..=86_400) {
        l.retry_after_s = n as u32;
    }
}
