//! From the raw shape to [`Config`]: defaults for what is left out, and
//! every problem reported with file, line and field. One function per
//! section of the file; each starts from the section's defaults.

use std::path::Path;
use std::str::FromStr;

use toml::Spanned;

use super::defaults::{builtin_defaults, DEFAULT_REGISTER_EXPIRES_S};
use super::raw::*;
use super::*;
use crate::diag::Checker;

/// The [`Config`] the raw shape describes, or every problem in it.
pub(super) fn validate(raw: RawConfig, text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Checker::new(text, source);
    let mut cfg = builtin_defaults();
    cfg.source = source.to_path_buf();
    let mut raw_sip = raw.sip;
    super::security::sip_security(&mut c, &mut raw_sip, &mut cfg.sip);
    sip(&mut c, raw_sip, &mut cfg.sip);
    super::security::limits(&mut c, raw.limits, &mut cfg.limits);
    media(&mut c, raw.media, &mut cfg.media);
    database(&mut c, raw.database, &mut cfg.database);
    menu(&mut c, raw.menu, &mut cfg.menu);
    if let Some(stations) = raw.station {
        cfg.stations = station_list(&mut c, stations);
    }
    if let Some(v) = raw.roster.file {
        cfg.roster.file = v;
    }
    if let Some(v) = raw.daemon.drain_timeout_s {
        cfg.daemon.drain_timeout_s = v.0;
    }
    forward(&mut c, raw.forward, &mut cfg.forward);
    cfg.trunk = raw.trunk.map(|t| trunk(&mut c, t));
    admin(&mut c, raw.admin, &mut cfg.admin);
    log(&mut c, raw.log, &mut cfg.log);
    selftest(&mut c, raw.selftest, &mut cfg.selftest);
    c.finish(cfg)
}

/// `v` parsed, or an error at it: "expected {expected}, found "...""; the
/// check of every key whose value is text with a syntax of its own.
pub(super) fn parsed<T: FromStr>(
    c: &mut Checker,
    v: &Spanned<String>,
    field: &str,
    expected: &str,
) -> Option<T> {
    let parsed = v.get_ref().parse().ok();
    if parsed.is_none() {
        let found = v.get_ref();
        c.error(
            v.span(),
            field,
            format!("expected {expected}, found {found:?}"),
        );
    }
    parsed
}

/// Sets `slot` to a duration that must be at least 1 second.
pub(super) fn seconds(c: &mut Checker, v: Option<Spanned<Seconds>>, field: &str, slot: &mut u64) {
    if let Some(v) = v {
        if v.get_ref().0 == 0 {
            c.error(v.span(), field, "must be at least 1 second".into());
        }
        *slot = v.into_inner().0;
    }
}

fn sip(c: &mut Checker, raw: RawSip, sip: &mut SipConfig) {
    if let Some(v) = raw.listen {
        let expected = "an address and port like \"127.0.0.1:5060\"";
        if let Some(a) = parsed(c, &v, "[sip] listen", expected) {
            sip.listen = a;
        }
    }
    if let Some(v) = raw.public_addr {
        let expected = "an IP address like \"203.0.113.10\"";
        if let Some(a) = parsed(c, &v, "[sip] public_addr", expected) {
            sip.public_addr = Some(a);
        }
    }
    if let Some(v) = raw.numbers {
        let span = v.span();
        let numbers = v.into_inner();
        if numbers.is_empty() {
            let message = "must list at least one number to answer".into();
            c.error(span, "[sip] numbers", message);
        }
        for n in &numbers {
            let ok = !n.get_ref().is_empty()
                && n.get_ref()
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "+-_.*#".contains(ch));
            if !ok {
                let message = format!("{:?} is not a phone number or SIP user name", n.get_ref());
                c.error(n.span(), "[sip] numbers", message);
            }
        }
        sip.numbers = numbers.into_iter().map(Spanned::into_inner).collect();
    }
    if let Some(v) = raw.user_agent {
        sip.user_agent = v;
    }
    if let Some(v) = raw.sdes_over_plain {
        sip.sdes_over_plain = v;
    }
    if let Some(v) = raw.t1_ms {
        if !(10..=5000).contains(v.get_ref()) {
            let message = format!(
                "must be between 10 and 5000 milliseconds, found {}",
                v.get_ref()
            );
            c.error(v.span(), "[sip] t1_ms", message);
        }
        sip.t1_ms = v.into_inner();
    }
}

fn media(c: &mut Checker, raw: RawMedia, media: &mut MediaConfig) {
    if let Some(v) = raw.rtp_ports {
        match parse_port_range(v.get_ref()) {
            Ok(r) => media.rtp_ports = r,
            Err(m) => c.error(v.span(), "[media] rtp_ports", m),
        }
    }
    let field = "[media] rtp_timeout_s";
    seconds(c, raw.rtp_timeout_s, field, &mut media.rtp_timeout_s);
}

fn database(c: &mut Checker, raw: RawDatabase, database: &mut DatabaseConfig) {
    if let Some(v) = raw.url {
        // The two databases the store speaks (`store::backend::open`).
        let url = v.get_ref();
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !known.iter().any(|k| url.starts_with(k)) {
            // Only the scheme of a URL: the rest may hold a password.
            let found = match url.split_once("://") {
                Some((scheme, _)) => format!("a {scheme}:// URL, which is not supported"),
                None => format!("{url:?}"),
            };
            let message =
                format!("expected \"sqlite://PATH\" or \"postgres://USER@HOST/DB\", found {found}");
            c.error(v.span(), "[database] url", message);
        }
        database.url = v.into_inner();
    }
}

fn menu(c: &mut Checker, raw: RawMenu, menu: &mut MenuConfig) {
    if let Some(v) = raw.language {
        if !LANGUAGES.contains(&v.get_ref().as_str()) {
            let message = format!(
                "unknown language {:?}; expected one of {}",
                v.get_ref(),
                LANGUAGES.join(", ")
            );
            c.error(v.span(), "[menu] language", message);
        }
        menu.language = v.into_inner();
    }
    if let Some(v) = raw.prompts_dir {
        menu.prompts_dir = v;
    }
    seconds(c, raw.timeout_s, "[menu] timeout_s", &mut menu.timeout_s);
    at_least_one(c, raw.max_tries, "[menu] max_tries", &mut menu.max_tries);
    at_least_one(
        c,
        raw.silent_tries,
        "[menu] silent_tries",
        &mut menu.silent_tries,
    );
}

/// A count of tries, which must be at least 1.
fn at_least_one(c: &mut Checker, raw: Option<Spanned<Count>>, field: &str, out: &mut u32) {
    if let Some(v) = raw {
        if v.get_ref().0 == 0 {
            c.error(v.span(), field, "must be at least 1".into());
        }
        *out = v.into_inner().0;
    }
}

/// `[[station]]`: keys and ids unique, and the duty desk present.
fn station_list(c: &mut Checker, raw: Vec<RawStation>) -> Vec<Station> {
    let mut stations: Vec<Station> = Vec::new();
    let first_span = raw.first().map(|s| s.key.span());
    for s in raw {
        if let Some(station) = station(c, s, &stations) {
            stations.push(station);
        }
    }
    if !stations.iter().any(|s| s.key == DESK_KEY) {
        let message = format!(
            "no station with key \"{DESK_KEY}\": the duty desk is required, \
             callers who choose nothing are put through to it"
        );
        c.error(first_span, "[[station]]", message);
    }
    stations
}

/// One station, checked against those before it; None if its key is unusable.
fn station(c: &mut Checker, s: RawStation, before: &[Station]) -> Option<Station> {
    let key_span = s.key.span();
    let key_text = s.key.into_inner().0;
    let mut chars = key_text.chars();
    let key = match (chars.next(), chars.next()) {
        (Some(k), None) if k.is_ascii_digit() || k == '*' || k == '#' => k,
        _ => {
            let message = format!("expected one phone key: 0-9, * or #, found {key_text:?}");
            c.error(key_span, "[[station]] key", message);
            return None;
        }
    };
    if before.iter().any(|o| o.key == key) {
        let message = format!("key {key:?} is used by two stations");
        c.error(key_span, "[[station]] key", message);
    }
    let id_span = s.id.span();
    let id = s.id.into_inner();
    if id.trim().is_empty() {
        c.error(
            id_span.clone(),
            "[[station]] id",
            "must not be empty".into(),
        );
    }
    if before.iter().any(|o| o.id == id) {
        let message = format!("id {id:?} is used by two stations");
        c.error(id_span, "[[station]] id", message);
    }
    Some(Station {
        key,
        id,
        name: s.name,
    })
}

fn forward(c: &mut Checker, raw: RawForward, forward: &mut ForwardConfig) {
    let field = "[forward] ring_timeout_s";
    seconds(c, raw.ring_timeout_s, field, &mut forward.ring_timeout_s);
    let field = "[forward] screen_timeout_s";
    seconds(
        c,
        raw.screen_timeout_s,
        field,
        &mut forward.screen_timeout_s,
    );
    let field = "[forward] voicemail_max_s";
    seconds(c, raw.voicemail_max_s, field, &mut forward.voicemail_max_s);
    if let Some(v) = raw.ringback {
        match v.get_ref().parse() {
            Ok(cadence) => forward.ringback = cadence,
            Err(e) => c.error(v.span(), "[forward] ringback", e.to_string()),
        }
    }
    if let Some(v) = raw.voicemail {
        forward.voicemail = v;
    }
    if let Some(v) = raw.voicemail_dir {
        forward.voicemail_dir = v;
    }
}

/// `[trunk]`: the proxy is "host:port" (or a bare host), and registering
/// needs credentials; the domain defaults to the proxy's host.
fn trunk(c: &mut Checker, raw: Spanned<RawTrunk>) -> TrunkConfig {
    let span = raw.span();
    let t = raw.into_inner();
    let proxy = t.proxy.get_ref().trim().to_string();
    let ok = proxy
        .rsplit_once(':')
        .map(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        .unwrap_or(!proxy.is_empty() && !proxy.contains(' '));
    if !ok {
        let message =
            format!("expected \"host:port\" like \"sip.example.net:5060\", found {proxy:?}");
        c.error(t.proxy.span(), "[trunk] proxy", message);
    }
    if t.register && (t.username.is_none() || t.password.is_none()) {
        let message = "registering needs both username and password".into();
        c.error(span, "[trunk] register", message);
    }
    let host = proxy
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or(proxy.clone());
    TrunkConfig {
        domain: t.domain.unwrap_or(host),
        proxy,
        username: t.username,
        password: t.password,
        register: t.register,
        register_expires_s: t
            .register_expires_s
            .map(|v| v.into_inner().0)
            .unwrap_or(DEFAULT_REGISTER_EXPIRES_S),
    }
}

/// `"20000-20999"` -> (20000, 20999): inclusive, first even, room for one RTP/RTCP pair.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("expected a port range like \"20000-20999\", found {s:?}");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || b <= a {
        return Err(format!(
            "{s:?}: the first port must be above 0 and below the last"
        ));
    }
    if !a.is_multiple_of(2) {
        return Err(format!(
            "{s:?}: the first port must be even (RTP uses even ports, RTCP the odd one above)"
        ));
    }
    Ok((a, b))
}

fn admin(c: &mut Checker, raw: RawAdmin, admin: &mut AdminConfig) {
    if let Some(v) = raw.listen {
        if v.get_ref().is_empty() {
            admin.listen = None;
        } else {
            let expected = "an address and port like \"127.0.0.1:8110\", or \"\" for off";
            if let Some(a) = parsed(c, &v, "[admin] listen", expected) {
                admin.listen = Some(a);
            }
        }
    }
    if let Some(v) = raw.token {
        if v.get_ref().trim().is_empty() {
            let message = "must not be empty (leave the key out for no token)".into();
            c.error(v.span(), "[admin] token", message);
        } else {
            admin.token = Some(v.into_inner());
        }
    }
    if let Some(v) = raw.ready_queue_limit {
        admin.ready_queue_limit = v;
    }
}

fn log(c: &mut Checker, raw: RawLog, log: &mut LogConfig) {
    if let Some(v) = raw.format {
        match v.get_ref().as_str() {
            "text" => log.format = LogFormat::Text,
            "json" => log.format = LogFormat::Json,
            other => {
                let message = format!("expected \"text\" or \"json\", found {other:?}");
                c.error(v.span(), "[log] format", message);
            }
        }
    }
}

fn selftest(c: &mut Checker, raw: RawSelftest, selftest: &mut SelftestConfig) {
    if let Some(v) = raw.token {
        let ok =
            !v.get_ref().trim().is_empty() && v.get_ref().chars().all(|ch| ch.is_ascii_graphic());
        if ok {
            selftest.token = Some(v.into_inner());
        } else {
            let message = "must be printable ASCII without spaces, and not empty \
                           (leave the key out for no token)"
                .into();
            c.error(v.span(), "[selftest] token", message);
        }
    }
}
