//! The admin's configuration file (`config/hotline.toml`), validated on load.
//!
//! As with FreeSWITCH's IVR XML, the menu and stations are data the admin edits
//! without recompiling. A bad file must stop the daemon at start with a message
//! naming file, line and key, so every error here carries them.
//!
//! Parsing is two steps: serde reads a "raw" shape where every key is optional and
//! the values we check keep their `toml::Spanned` position; then [`validate`] turns
//! it into [`Config`], filling defaults and collecting every semantic error at once.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{parse_toml, read_file, Checker};
pub use crate::diag::{ConfigError, ConfigErrors};

/// The shipped configuration; also the defaults for every key left out.
const EMBEDDED: &str = include_str!("../config/hotline.toml");

/// What [`Config::source`] says when no file was read.
pub const EMBEDDED_SOURCE: &str = "<embedded defaults>";

/// Languages we have prompts for; the folder `prompts_dir/<language>/` must exist.
pub const LANGUAGES: &[&str] = &["zh", "en"];

/// Key of the duty desk, which every configuration must have.
pub const DESK_KEY: char = '0';

/// The whole daemon configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where and as whom we speak SIP.
    pub sip: SipConfig,
    /// RTP port range and media timeouts.
    pub media: MediaConfig,
    /// Where call records go.
    pub database: DatabaseConfig,
    /// Prompt language and menu timing.
    pub menu: MenuConfig,
    /// The service stations, in menu order (TOML `[[station]]`).
    pub stations: Vec<Station>,
    /// Where the duty roster lives.
    pub roster: RosterConfig,
    /// Process lifetime settings.
    pub daemon: DaemonConfig,
    /// Forwarding to volunteers: ring timeout, screening, ringback, voicemail.
    pub forward: ForwardConfig,
    /// The SIP trunk for phone numbers; None when every volunteer has a SIP URI.
    pub trunk: Option<TrunkConfig>,
    /// The file it came from, or [`EMBEDDED_SOURCE`]; for log lines and errors.
    pub source: PathBuf,
}

/// SIP endpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipConfig {
    /// Address to listen on, UDP and TCP.
    pub listen: SocketAddr,
    /// Address written into Contact, Via and SDP when behind NAT; default the listen IP.
    pub public_addr: Option<IpAddr>,
    /// SIP user parts we answer; calls to anything else are refused.
    pub numbers: Vec<String>,
    /// User-Agent / Server header value.
    pub user_agent: String,
    /// RFC 3261 Timer T1 (round-trip estimate) in milliseconds, default 500. Every
    /// retransmission timer scales from it (Timer H = 64*T1). As Asterisk's `timert1`.
    pub t1_ms: u64,
}

/// RTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Inclusive UDP port range; the first is even so RTP/RTCP pairs line up.
    pub rtp_ports: (u16, u16),
    /// Hang up when no RTP arrives for this many seconds.
    pub rtp_timeout_s: u64,
}

/// Call record storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite://...` or `postgres://...`, as sqlx takes it.
    pub url: String,
}

/// Menu prompts and timing; the keys themselves come from the stations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuConfig {
    /// Prompt language, one of [`LANGUAGES`].
    pub language: String,
    /// Folder with one sub-folder per language.
    pub prompts_dir: PathBuf,
    /// Seconds to wait for a key after the menu prompt ends.
    pub timeout_s: u64,
    /// Failed tries before the caller goes to the duty desk.
    pub max_tries: u32,
}

/// One service station a caller can choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    /// Phone key: 0-9, `*` or `#`.
    pub key: char,
    /// Short stable id used by the roster and call records.
    pub id: String,
    /// Human name, for logs and the admin.
    pub name: String,
}

/// Duty roster location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterConfig {
    /// The roster file.
    pub file: PathBuf,
}

/// How calls are forwarded to volunteers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// How long each volunteer's phone rings before the next one is tried.
    pub ring_timeout_s: u64,
    /// How long a screened volunteer has to press 1 before the hunt goes on.
    pub screen_timeout_s: u64,
    /// Ringback tone while a volunteer's phone rings, written "FREQ@ON/OFF" in
    /// Hz and ms (China: 450 Hz, 1 s on, 4 s off).
    pub ringback: Cadence,
    /// Take a message when nobody answers (else say "no volunteer is available,
    /// please call again later" and hang up).
    pub voicemail: bool,
    /// Folder for voicemail recordings.
    pub voicemail_dir: PathBuf,
    /// Longest voicemail message.
    pub voicemail_max_s: u64,
}

/// A call-progress tone's frequencies and on/off rhythm, as the admin writes
/// it: `"425@1000/4000"` (Europe), `"440+480@2000/4000"` (North America),
/// `"400+450@400/200/400/2000"` (UK double ring). Only the numbers: the media
/// layer makes the sound (`Cadence::prompt` in `media::tone`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cadence {
    /// One or two frequencies in Hz, mixed.
    pub freqs: Vec<f64>,
    /// Alternating on and off durations in ms, starting with on (an even count).
    pub pattern_ms: Vec<u32>,
}

/// Parsing admits only finite frequencies, so equality is total.
impl Eq for Cadence {}

/// Why a cadence string was refused; the message shows the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tone cadence {input:?}: {reason} (expected e.g. \"425@1000/4000\" or \"440+480@2000/4000\")")]
pub struct CadenceError {
    /// The text as written.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for Cadence {
    type Err = CadenceError;

    /// Parses a cadence such as `"450@1000/4000"`.
    fn from_str(s: &str) -> Result<Cadence, CadenceError> {
        let err = |reason| CadenceError {
            input: s.to_string(),
            reason,
        };
        let (freqs, pattern) = s.trim().split_once('@').ok_or(err("missing '@'"))?;
        let freqs = freqs
            .split('+')
            .map(|f| f.trim().parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| err("frequency is not a number"))?;
        if freqs.is_empty() || freqs.len() > 2 {
            return Err(err("give one or two frequencies"));
        }
        // Below the telephone band's Nyquist frequency (4 kHz), and audible.
        if freqs.iter().any(|f| !(20.0..3900.0).contains(f)) {
            return Err(err("frequency must be between 20 and 3900 Hz"));
        }
        let pattern_ms = pattern
            .split('/')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| err("durations must be whole milliseconds"))?;
        if pattern_ms.len() % 2 != 0 {
            return Err(err("durations come in on/off pairs"));
        }
        if pattern_ms.iter().step_by(2).any(|&on| on == 0) {
            return Err(err("an 'on' duration is 0"));
        }
        if pattern_ms.iter().map(|&d| u64::from(d)).sum::<u64>() > 60_000 {
            return Err(err("one period is longer than 60 s"));
        }
        Ok(Cadence { freqs, pattern_ms })
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let freqs: Vec<String> = self.freqs.iter().map(|x| x.to_string()).collect();
        let pattern: Vec<String> = self.pattern_ms.iter().map(|x| x.to_string()).collect();
        write!(f, "{}@{}", freqs.join("+"), pattern.join("/"))
    }
}

/// The SIP trunk that reaches mobile and landline numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkConfig {
    /// Where INVITEs and REGISTERs go: "host:port".
    pub proxy: String,
    /// Domain for numbers: a number N is called as sip:N@domain.
    pub domain: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Register with the trunk (needed by trunks that only route to registered users).
    pub register: bool,
    pub register_expires_s: u64,
}

/// Process lifetime settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// On SIGTERM, how long calls in progress may go on before being cut.
    pub drain_timeout_s: u64,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::from_str(&read_file(path)?, path)
    }

    /// Parses and validates config text; `source` names it in errors.
    #[allow(clippy::should_implement_trait)] // needs `source`, so not FromStr
    pub fn from_str(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
        validate(parse_toml(text, source)?, text, source)
    }

    /// The shipped `config/hotline.toml`, for when the default file is absent.
    pub fn embedded_default() -> Config {
        // The embedded text is tested to parse; should it ever not, the built-in
        // values are the same settings, so the daemon still starts.
        Config::from_str(EMBEDDED, Path::new(EMBEDDED_SOURCE)).unwrap_or_else(|e| {
            tracing::error!("embedded default config is invalid: {e}");
            builtin_defaults()
        })
    }

    /// The folder with this language's prompts: `prompts_dir/language`.
    pub fn prompts_path(&self) -> PathBuf {
        self.menu.prompts_dir.join(&self.menu.language)
    }

    /// The address to advertise in SIP and SDP.
    pub fn public_ip(&self) -> IpAddr {
        self.sip.public_addr.unwrap_or(self.sip.listen.ip())
    }

    /// The station a key picks, if any.
    pub fn station(&self, key: char) -> Option<&Station> {
        self.stations.iter().find(|s| s.key == key)
    }
}

/// The defaults in code; a test keeps them equal to `config/hotline.toml`.
fn builtin_defaults() -> Config {
    let station = |key, id: &str, name: &str| Station {
        key,
        id: id.into(),
        name: name.into(),
    };
    Config {
        sip: SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            public_addr: None,
            numbers: vec!["6289110".into()],
            user_agent: concat!("hotline/", env!("CARGO_PKG_VERSION")).into(),
            t1_ms: 500,
        },
        media: MediaConfig {
            rtp_ports: (20000, 20999),
            rtp_timeout_s: 30,
        },
        database: DatabaseConfig {
            url: "sqlite://data/hotline.db".into(),
        },
        menu: MenuConfig {
            language: "zh".into(),
            prompts_dir: "prompts".into(),
            timeout_s: 6,
            max_tries: 3,
        },
        stations: vec![
            station('1', "property", "物业管理督导站"),
            station('2', "health", "健康咨询辅导站"),
            station('3', "counseling", "心理咨询疏导站"),
            station('4', "assistance", "帮扶助困服务站"),
            station('5', "culture", "文体娱乐活动站"),
            station('6', "party", "党建理论宣传站"),
            station('0', "desk", "值班接待"),
        ],
        roster: RosterConfig {
            file: "config/roster.toml".into(),
        },
        daemon: DaemonConfig {
            drain_timeout_s: 30,
        },
        forward: ForwardConfig {
            ring_timeout_s: 20,
            screen_timeout_s: 10,
            ringback: Cadence {
                freqs: vec![450.0],
                pattern_ms: vec![1000, 4000],
            },
            voicemail: true,
            voicemail_dir: "data/voicemail".into(),
            voicemail_max_s: 120,
        },
        trunk: None,
        source: PathBuf::from(EMBEDDED_SOURCE),
    }
}

// ---- raw shape: what serde reads ----

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    sip: RawSip,
    media: RawMedia,
    database: RawDatabase,
    menu: RawMenu,
    station: Option<Vec<RawStation>>,
    roster: RawRoster,
    daemon: RawDaemon,
    forward: RawForward,
    trunk: Option<Spanned<RawTrunk>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawSip {
    listen: Option<Spanned<String>>,
    public_addr: Option<Spanned<String>>,
    numbers: Option<Spanned<Vec<Spanned<String>>>>,
    user_agent: Option<String>,
    t1_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawMedia {
    rtp_ports: Option<Spanned<String>>,
    rtp_timeout_s: Option<Spanned<Seconds>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawDatabase {
    url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawMenu {
    language: Option<Spanned<String>>,
    prompts_dir: Option<PathBuf>,
    timeout_s: Option<Spanned<Seconds>>,
    max_tries: Option<Spanned<Count>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    key: Spanned<KeyText>,
    id: Spanned<String>,
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawRoster {
    file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawDaemon {
    drain_timeout_s: Option<Seconds>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawForward {
    ring_timeout_s: Option<Spanned<Seconds>>,
    screen_timeout_s: Option<Spanned<Seconds>>,
    ringback: Option<Spanned<String>>,
    voicemail: Option<bool>,
    voicemail_dir: Option<PathBuf>,
    voicemail_max_s: Option<Spanned<Seconds>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrunk {
    proxy: Spanned<String>,
    domain: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(default)]
    register: bool,
    register_expires_s: Option<Spanned<Seconds>>,
}

/// A whole number of seconds, with an error message an admin understands.
struct Seconds(u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_u64(WholeVisitor("a whole number of seconds"))
            .map(Seconds)
    }
}

/// A whole, non-negative count (tries).
struct Count(u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = d.deserialize_u64(WholeVisitor("a whole number"))?;
        u32::try_from(n).map(Count).map_err(|_| {
            de::Error::custom(format!("expected a whole number, found {n} (too large)"))
        })
    }
}

struct WholeVisitor(&'static str);

impl Visitor<'_> for WholeVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }
}

/// A station key as written: `"1"` or a bare `1`; checked in [`validate`].
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a phone key: \"0\" to \"9\", \"*\" or \"#\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---- validation ----

fn validate(raw: RawConfig, text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Checker::new(text, source);
    let mut cfg = builtin_defaults();
    cfg.source = source.to_path_buf();

    // [sip]
    if let Some(v) = raw.sip.listen {
        match v.get_ref().parse() {
            Ok(a) => cfg.sip.listen = a,
            Err(_) => c.error(
                Some(v.span()),
                "[sip] listen",
                format!(
                    "expected an address and port like \"127.0.0.1:5060\", found {:?}",
                    v.get_ref()
                ),
            ),
        }
    }
    if let Some(v) = raw.sip.public_addr {
        match v.get_ref().parse() {
            Ok(a) => cfg.sip.public_addr = Some(a),
            Err(_) => c.error(
                Some(v.span()),
                "[sip] public_addr",
                format!(
                    "expected an IP address like \"203.0.113.10\", found {:?}",
                    v.get_ref()
                ),
            ),
        }
    }
    if let Some(v) = raw.sip.numbers {
        let span = v.span();
        let numbers = v.into_inner();
        if numbers.is_empty() {
            c.error(
                Some(span),
                "[sip] numbers",
                "must list at least one number to answer".into(),
            );
        }
        for n in &numbers {
            let ok = !n.get_ref().is_empty()
                && n.get_ref()
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "+-_.*#".contains(ch));
            if !ok {
                c.error(
                    Some(n.span()),
                    "[sip] numbers",
                    format!("{:?} is not a phone number or SIP user name", n.get_ref()),
                );
            }
        }
        cfg.sip.numbers = numbers.into_iter().map(Spanned::into_inner).collect();
    }
    if let Some(v) = raw.sip.user_agent {
        cfg.sip.user_agent = v;
    }
    if let Some(v) = raw.sip.t1_ms {
        if !(10..=5000).contains(v.get_ref()) {
            c.error(
                Some(v.span()),
                "[sip] t1_ms",
                format!(
                    "must be between 10 and 5000 milliseconds, found {}",
                    v.get_ref()
                ),
            );
        }
        cfg.sip.t1_ms = v.into_inner();
    }

    // [media]
    if let Some(v) = raw.media.rtp_ports {
        match parse_port_range(v.get_ref()) {
            Ok(r) => cfg.media.rtp_ports = r,
            Err(m) => c.error(Some(v.span()), "[media] rtp_ports", m),
        }
    }
    if let Some(v) = raw.media.rtp_timeout_s {
        if v.get_ref().0 == 0 {
            c.error(
                Some(v.span()),
                "[media] rtp_timeout_s",
                "must be at least 1 second".into(),
            );
        }
        cfg.media.rtp_timeout_s = v.into_inner().0;
    }

    // [database]
    if let Some(v) = raw.database.url {
        if !v.get_ref().contains("://") {
            c.error(
                Some(v.span()),
                "[database] url",
                format!(
                    "expected a URL like \"sqlite://data/hotline.db\", found {:?}",
                    v.get_ref()
                ),
            );
        }
        cfg.database.url = v.into_inner();
    }

    // [menu]
    if let Some(v) = raw.menu.language {
        if !LANGUAGES.contains(&v.get_ref().as_str()) {
            c.error(
                Some(v.span()),
                "[menu] language",
                format!(
                    "unknown language {:?}; expected one of {}",
                    v.get_ref(),
                    LANGUAGES.join(", ")
                ),
            );
        }
        cfg.menu.language = v.into_inner();
    }
    if let Some(v) = raw.menu.prompts_dir {
        cfg.menu.prompts_dir = v;
    }
    if let Some(v) = raw.menu.timeout_s {
        if v.get_ref().0 == 0 {
            c.error(
                Some(v.span()),
                "[menu] timeout_s",
                "must be at least 1 second".into(),
            );
        }
        cfg.menu.timeout_s = v.into_inner().0;
    }
    if let Some(v) = raw.menu.max_tries {
        if v.get_ref().0 == 0 {
            c.error(
                Some(v.span()),
                "[menu] max_tries",
                "must be at least 1".into(),
            );
        }
        cfg.menu.max_tries = v.into_inner().0;
    }

    // [[station]]
    if let Some(raw_stations) = raw.station {
        let mut stations: Vec<Station> = Vec::new();
        let mut first_span = None;
        for s in raw_stations {
            first_span.get_or_insert(s.key.span());
            let key_span = s.key.span();
            let key_text = s.key.into_inner().0;
            let mut chars = key_text.chars();
            let key = match (chars.next(), chars.next()) {
                (Some(k), None) if k.is_ascii_digit() || k == '*' || k == '#' => k,
                _ => {
                    c.error(
                        Some(key_span),
                        "[[station]] key",
                        format!("expected one phone key: 0-9, * or #, found {key_text:?}"),
                    );
                    continue;
                }
            };
            if stations.iter().any(|o| o.key == key) {
                c.error(
                    Some(key_span),
                    "[[station]] key",
                    format!("key {key:?} is used by two stations"),
                );
            }
            let id_span = s.id.span();
            let id = s.id.into_inner();
            if id.trim().is_empty() {
                c.error(
                    Some(id_span.clone()),
                    "[[station]] id",
                    "must not be empty".into(),
                );
            }
            if stations.iter().any(|o| o.id == id) {
                c.error(
                    Some(id_span),
                    "[[station]] id",
                    format!("id {id:?} is used by two stations"),
                );
            }
            stations.push(Station {
                key,
                id,
                name: s.name,
            });
        }
        if !stations.iter().any(|s| s.key == DESK_KEY) {
            c.error(
                first_span,
                "[[station]]",
                format!(
                    "no station with key \"{DESK_KEY}\": the duty desk is required, \
                     callers who choose nothing are put through to it"
                ),
            );
        }
        cfg.stations = stations;
    }

    // [roster], [daemon]
    if let Some(v) = raw.roster.file {
        cfg.roster.file = v;
    }
    if let Some(v) = raw.daemon.drain_timeout_s {
        cfg.daemon.drain_timeout_s = v.0;
    }

    // [forward]
    let f = raw.forward;
    for (v, field, slot) in [
        (
            f.ring_timeout_s,
            "[forward] ring_timeout_s",
            &mut cfg.forward.ring_timeout_s,
        ),
        (
            f.screen_timeout_s,
            "[forward] screen_timeout_s",
            &mut cfg.forward.screen_timeout_s,
        ),
        (
            f.voicemail_max_s,
            "[forward] voicemail_max_s",
            &mut cfg.forward.voicemail_max_s,
        ),
    ] {
        if let Some(v) = v {
            if v.get_ref().0 == 0 {
                c.error(Some(v.span()), field, "must be at least 1 second".into());
            }
            *slot = v.into_inner().0;
        }
    }
    if let Some(v) = f.ringback {
        match v.get_ref().parse() {
            Ok(cadence) => cfg.forward.ringback = cadence,
            Err(e) => c.error(Some(v.span()), "[forward] ringback", e.to_string()),
        }
    }
    if let Some(v) = f.voicemail {
        cfg.forward.voicemail = v;
    }
    if let Some(v) = f.voicemail_dir {
        cfg.forward.voicemail_dir = v;
    }

    // [trunk]
    if let Some(t) = raw.trunk {
        let span = t.span();
        let t = t.into_inner();
        let proxy = t.proxy.get_ref().trim().to_string();
        let ok = proxy
            .rsplit_once(':')
            .map(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            .unwrap_or(!proxy.is_empty() && !proxy.contains(' '));
        if !ok {
            c.error(
                Some(t.proxy.span()),
                "[trunk] proxy",
                format!("expected \"host:port\" like \"sip.example.net:5060\", found {proxy:?}"),
            );
        }
        if t.register && (t.username.is_none() || t.password.is_none()) {
            c.error(
                Some(span),
                "[trunk] register",
                "registering needs both username and password".into(),
            );
        }
        let host = proxy
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or(proxy.clone());
        cfg.trunk = Some(TrunkConfig {
            domain: t.domain.unwrap_or(host),
            proxy,
            username: t.username,
            password: t.password,
            register: t.register,
            register_expires_s: t
                .register_expires_s
                .map(|v| v.into_inner().0)
                .unwrap_or(600),
        });
    }

    c.finish(cfg)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_str(text, Path::new("config/hotline.toml"))
    }

    fn one_error(text: &str) -> ConfigError {
        let errs = parse(text).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn embedded_default_parses_and_matches_builtin_defaults() {
        let parsed = Config::from_str(EMBEDDED, Path::new(EMBEDDED_SOURCE)).unwrap();
        assert_eq!(parsed, builtin_defaults());
        let cfg = Config::embedded_default();
        assert_eq!(cfg.source, PathBuf::from("<embedded defaults>"));
        assert_eq!(cfg.sip.listen, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(cfg.sip.numbers, vec!["6289110"]);
        assert!(cfg.sip.user_agent.starts_with("hotline/"));
        assert_eq!(cfg.media.rtp_ports, (20000, 20999));
        assert_eq!(cfg.menu.timeout_s, 6);
        assert_eq!(cfg.menu.max_tries, 3);
        let keys: String = cfg.stations.iter().map(|s| s.key).collect();
        assert_eq!(keys, "1234560");
        assert_eq!(cfg.station('0').unwrap().id, "desk");
        assert_eq!(cfg.station('3').unwrap().name, "心理咨询疏导站");
        assert_eq!(cfg.prompts_path(), PathBuf::from("prompts/zh"));
        assert_eq!(cfg.public_ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
        // What the menu is built from: desk key 0, 6 s, seven keys.
        assert_eq!(DESK_KEY, '0');
        assert_eq!(cfg.menu.timeout_s, 6);
        assert_eq!(cfg.stations.len(), 7);
        assert_eq!(cfg.forward.ringback.to_string(), "450@1000/4000");
    }

    #[test]
    fn parses_cadences() {
        let c: Cadence = "450@1000/4000".parse().expect("valid");
        assert_eq!(c.freqs, vec![450.0]);
        assert_eq!(c.pattern_ms, vec![1000, 4000]);
        assert_eq!(c.to_string(), "450@1000/4000");
        let uk: Cadence = " 400+450 @ 400/200/400/2000 ".parse().expect("valid");
        assert_eq!(uk.freqs, vec![400.0, 450.0]);
        assert_eq!(uk.pattern_ms.iter().sum::<u32>(), 3000);
        for bad in [
            "",
            "450",
            "450@",
            "x@1000/4000",
            "450@1000",
            "450@0/4000",
            "5000@1000/4000",
            "1+2+3@1/1",
            "450@1000/-4",
            "450@50000/50000",
        ] {
            let e = bad.parse::<Cadence>().expect_err(bad);
            assert!(e.to_string().contains("expected e.g."), "{e}");
        }
    }

    #[test]
    fn bad_ringback_names_line_and_field() {
        let e = one_error("[forward]\nringback = \"450@1000\"\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.field.as_deref(), Some("[forward] ringback"));
        assert!(e.message.contains("on/off pairs"), "{}", e.message);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(
            Config {
                source: PathBuf::from(EMBEDDED_SOURCE),
                ..cfg.clone()
            },
            Config::embedded_default()
        );
        assert_eq!(cfg.source, PathBuf::from("config/hotline.toml"));
        assert!(parse("# only a comment\n\n[menu]\n").is_ok());
    }

    #[test]
    fn partial_file_overrides_only_what_it_says() {
        let cfg =
            parse("[sip]\npublic_addr = \"2001:db8::1\"\n[menu]\nlanguage = \"en\"\n").unwrap();
        assert_eq!(cfg.public_ip(), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(cfg.prompts_path(), PathBuf::from("prompts/en"));
        assert_eq!(cfg.menu.timeout_s, 6);
        assert_eq!(cfg.stations.len(), 7);
    }

    #[test]
    fn typo_key_is_reported_with_line_and_field() {
        let e = one_error(
            "[sip]\nlisten = \"0.0.0.0:5060\"\n\n[menu]\nlanguage = \"zh\"\ntimout_s = 6\n",
        );
        assert_eq!(e.line, Some(6));
        assert_eq!(e.field.as_deref(), Some("[menu] timout_s"));
        assert!(
            e.message.contains("unknown field `timout_s`"),
            "{}",
            e.message
        );
        assert!(e
            .to_string()
            .starts_with("config/hotline.toml:6: [menu] timout_s: "));
    }

    #[test]
    fn unknown_table_is_reported() {
        let e = one_error("[sip]\n\n[sipp]\nlisten = \"x\"\n");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.field.as_deref(), Some("sipp"));
    }

    #[test]
    fn wrong_type_is_reported_with_line() {
        let e = one_error("# comment\n[menu]\nlanguage = \"zh\"\ntimeout_s = \"six\"\n");
        assert_eq!(
            e.to_string(),
            "config/hotline.toml:4: [menu] timeout_s: expected a whole number of seconds, found \"six\""
        );
        let e = one_error("[menu]\nmax_tries = -1\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.field.as_deref(), Some("[menu] max_tries"));
        let e = one_error("[sip]\nnumbers = \"6289110\"\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.field.as_deref(), Some("[sip] numbers"));
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let e = one_error("[sip]\nlisten = \"127.0.0.1:5060\n");
        assert_eq!(e.line, Some(2));
    }

    const STATIONS: &str = "[[station]]\nkey = \"1\"\nid = \"property\"\nname = \"a\"\n\n\
                            [[station]]\nkey = \"0\"\nid = \"desk\"\nname = \"b\"\n\n";

    #[test]
    fn duplicate_station_key_reported_at_the_second() {
        let text = format!("{STATIONS}[[station]]\nkey = \"1\"\nid = \"health\"\nname = \"c\"\n");
        let e = one_error(&text);
        assert_eq!(e.line, Some(12));
        assert_eq!(e.field.as_deref(), Some("[[station]] key"));
        assert!(e.message.contains("used by two stations"));
    }

    #[test]
    fn duplicate_station_id_and_bad_key_are_all_reported() {
        let text = format!(
            "{STATIONS}[[station]]\nkey = 2\nid = \"property\"\nname = \"c\"\n\n\
             [[station]]\nkey = \"12\"\nid = \"x\"\nname = \"d\"\n"
        );
        let errs = parse(&text).unwrap_err().0;
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line, Some(13));
        assert_eq!(errs[0].field.as_deref(), Some("[[station]] id"));
        assert_eq!(errs[1].line, Some(17));
        assert_eq!(errs[1].field.as_deref(), Some("[[station]] key"));
    }

    #[test]
    fn station_typo_and_missing_field_are_reported() {
        let e = one_error(&format!(
            "{STATIONS}[[station]]\nkey = \"2\"\nid = \"health\"\nnmae = \"c\"\n"
        ));
        assert_eq!(e.line, Some(14));
        assert_eq!(e.field.as_deref(), Some("[[station]] nmae"));
        let e = one_error("[[station]]\nkey = \"0\"\nid = \"desk\"\n");
        assert!(e.message.contains("missing field `name`"), "{e}");
        assert!(e.line.is_some());
    }

    #[test]
    fn bare_integer_station_key_is_accepted() {
        let cfg = parse("[[station]]\nkey = 0\nid = \"desk\"\nname = \"d\"\n").unwrap();
        assert_eq!(cfg.stations[0].key, '0');
    }

    #[test]
    fn missing_desk_station_is_an_error() {
        let e = one_error("[menu]\n\n[[station]]\nkey = \"1\"\nid = \"property\"\nname = \"a\"\n");
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("duty desk"), "{}", e.message);
    }

    #[test]
    fn bad_rtp_ports_are_reported() {
        for bad in ["20001-20999", "20000", "30000-20000", "a-b", "20000-70000"] {
            let e = one_error(&format!("[media]\nrtp_ports = \"{bad}\"\n"));
            assert_eq!(e.line, Some(2), "{bad}");
            assert_eq!(e.field.as_deref(), Some("[media] rtp_ports"));
        }
        let cfg = parse("[media]\nrtp_ports = \"10000-10001\"\n").unwrap();
        assert_eq!(cfg.media.rtp_ports, (10000, 10001));
    }

    #[test]
    fn other_semantic_errors_name_their_lines() {
        let text = "[sip]\nlisten = \"localhost\"\nnumbers = []\n[menu]\nlanguage = \"fr\"\ntimeout_s = 0\n";
        let errs = parse(text).unwrap_err().0;
        let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(2), Some(3), Some(5), Some(6)]);
        let all = ConfigErrors(errs).to_string();
        assert!(all.contains("config/hotline.toml:5: [menu] language: unknown language \"fr\""));
    }

    #[test]
    fn load_reads_a_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        std::fs::write(&path, "[daemon]\ndrain_timeout_s = 5\n").unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.daemon.drain_timeout_s, 5);
        assert_eq!(cfg.source, path);

        let missing = dir.path().join("nope.toml");
        let e = Config::load(&missing).unwrap_err();
        assert_eq!(e.0[0].file, missing);
        assert!(e.to_string().contains("cannot read"));
    }
}
