//! The validated configuration: plain data the rest of the daemon reads and
//! turns into its own types.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use ipnet::IpNet;

use super::Cadence;

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
    /// Connection caps, scanner and flood defence, the call cap (`[limits]`).
    pub limits: LimitsConfig,
    /// The admin HTTP listener: metrics, health, live status.
    pub admin: AdminConfig,
    /// How log lines are written.
    pub log: LogConfig,
    /// Who may place `hotline selftest` calls (`[selftest]`).
    pub selftest: SelftestConfig,
    /// The file it came from, or [`EMBEDDED_SOURCE`](super::EMBEDDED_SOURCE); for log lines and errors.
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
    /// Who may call (`allow`); empty: everyone. Others get 403 and no call is made.
    pub allow: Vec<IpNet>,
    /// SIP over TLS (`tls_listen`, `tls_cert`, `tls_key`); None: no TLS listener.
    pub tls: Option<TlsConfig>,
    /// CA certificates (PEM) that verify volunteers' phones called over TLS
    /// (`tls_ca`); None: the system's CA bundle.
    pub tls_ca: Option<PathBuf>,
    /// Allow SRTP with SDES keys (RFC 4568) on legs whose SIP is plain UDP/TCP.
    /// The keys travel in the SDP, so without TLS anyone on the path can read them
    /// and the call's audio: off by default, and then such legs are refused.
    pub sdes_over_plain: bool,
}

/// Where to serve SIP over TLS (RFC 3261 `sips:`) and with which certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `[sip] tls_listen`, e.g. `0.0.0.0:5061`.
    pub listen: SocketAddr,
    /// `[sip] tls_cert`: PEM, the certificate first, then its chain.
    pub cert: PathBuf,
    /// `[sip] tls_key`: PEM, PKCS#8, PKCS#1 or SEC1.
    pub key: PathBuf,
}

/// `[limits]`: what keeps a SIP port on the public internet usable. Plain numbers;
/// the server turns them into the SIP stack's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// TCP/TLS connections open at once from one address (AST-2016-005).
    pub tcp_per_source: usize,
    /// TCP/TLS connections open at once in total (also capped by the file limit).
    pub tcp_total: usize,
    /// Close a connection with no complete request for this long (Timer D, 32 s).
    pub idle_s: u64,
    /// Close a connection whose partial message is not complete within this long.
    pub partial_s: u64,
    /// A TLS handshake must finish within this long.
    pub handshake_s: u64,
    /// The largest SIP message, in bytes, on any transport.
    pub max_message: usize,
    /// User-Agent substrings (any case) whose requests are dropped unanswered.
    pub scanners: Vec<String>,
    /// Flood ban: more than `pike_requests` within `pike_window_s` from one address
    /// silences it for `pike_ban_s`.
    pub pike_requests: u32,
    pub pike_window_s: u64,
    pub pike_ban_s: u64,
    /// Exempt from the flood ban and the per-address connection cap (the trunk).
    pub trusted: Vec<IpNet>,
    /// Concurrent calls; None: derived from the RTP port range (ports / 4).
    pub max_calls: Option<usize>,
    /// `Retry-After` of the 503 beyond `max_calls`, in seconds.
    pub retry_after_s: u32,
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
    /// Prompt language, one of [`LANGUAGES`](super::LANGUAGES).
    pub language: String,
    /// Folder with one sub-folder per language.
    pub prompts_dir: PathBuf,
    /// Seconds to wait for a key after the menu prompt ends.
    pub timeout_s: u64,
    /// Failed tries before the caller goes to the duty desk.
    pub max_tries: u32,
    /// Hearings of the menu with no key pressed at all before the duty desk.
    pub silent_tries: u32,
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

/// The admin HTTP listener (`/metrics`, `/livez`, `/readyz`, `/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where to listen; None (`listen = ""`) turns the listener off.
    pub listen: Option<SocketAddr>,
    /// When set, every endpoint but `/livez` wants `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `/readyz` answers 503 while more call record updates than this wait for the database.
    pub ready_queue_limit: u64,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of words per event (the default).
    Text,
    /// One JSON object per line, with the call span's fields.
    Json,
}

/// `[log]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// `[selftest]`: which calls the daemon treats as `hotline selftest` calls (the
/// menu runs, the hunt list is reported back, nobody is rung).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelftestConfig {
    /// When set, a call's `X-Hotline-Selftest` header must carry this value, and then
    /// it may come from anywhere; None: only from loopback or a `[limits] trusted` address.
    pub token: Option<String>,
}
