//! The validated configuration: plain data the rest of the daemon reads and
//! turns into its own types.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

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
    /// Allow SRTP with SDES keys (RFC 4568) on legs whose SIP is plain UDP/TCP.
    /// The keys travel in the SDP, so without TLS anyone on the path can read them
    /// and the call's audio: off by default, and then such legs are refused.
    pub sdes_over_plain: bool,
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
