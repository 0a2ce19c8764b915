//! The defaults in code, for every key the file leaves out.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::*;

/// `[trunk] register_expires_s` when left out: re-register every 10 minutes.
pub(super) const DEFAULT_REGISTER_EXPIRES_S: u64 = 600;

/// `[admin] listen` when left out: 127.0.0.1:8110.
pub(super) const DEFAULT_ADMIN_PORT: u16 = 8110;

/// `[admin] ready_queue_limit` when left out.
pub(super) const DEFAULT_READY_QUEUE_LIMIT: u64 = 1000;

/// The defaults in code; a test keeps them equal to `config/hotline.toml`.
pub(super) fn builtin_defaults() -> Config {
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
            allow: Vec::new(),
            tls: None,
            tls_ca: None,
            sdes_over_plain: false,
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
            timeout_s: DEFAULT_MENU_TIMEOUT_S,
            max_tries: DEFAULT_MENU_MAX_TRIES,
            silent_tries: DEFAULT_MENU_SILENT_TRIES,
        },
        stations: vec![
            station('1', "property", "物业管理督导站"),
            station('2', "health", "健康咨询辅导站"),
            station('3', "counseling", "心理咨询疏导站"),
            station('4', "assistance", "帮扶助困服务站"),
            station('5', "culture", "文体娱乐活动站"),
            station('6', "party", "党建理论宣传站"),
            station(DESK_KEY, DESK_ID, "值班接待"),
        ],
        roster: RosterConfig {
            file: "config/roster.toml".into(),
        },
        daemon: DaemonConfig {
            drain_timeout_s: 30,
        },
        forward: ForwardConfig {
            ring_timeout_s: DEFAULT_RING_TIMEOUT_S,
            screen_timeout_s: DEFAULT_SCREEN_TIMEOUT_S,
            ringback: Cadence {
                freqs: vec![450.0],
                pattern_ms: vec![1000, 4000],
            },
            voicemail: true,
            voicemail_dir: "data/voicemail".into(),
            voicemail_max_s: 120,
        },
        trunk: None,
        limits: default_limits(),
        admin: AdminConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_ADMIN_PORT))),
            token: None,
            ready_queue_limit: DEFAULT_READY_QUEUE_LIMIT,
        },
        log: LogConfig {
            format: LogFormat::Text,
        },
        selftest: SelftestConfig { token: None },
        source: PathBuf::from(EMBEDDED_SOURCE),
    }
}

/// User-Agent substrings (case-insensitive) of the SIP scanners seen in the wild:
/// SIPVicious and its forks, sipcli, and the VoIP toll-fraud tools.
pub const DEFAULT_SCANNERS: [&str; 8] = [
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "VaxSIPUserAgent",
    "pplsip",
    "sundayddr",
    "iWar",
    "SIVuS",
];

/// `[limits]` when left out; a test in `server` keeps them equal to the SIP
/// stack's own defaults.
pub(super) fn default_limits() -> LimitsConfig {
    LimitsConfig {
        tcp_per_source: 64,
        tcp_total: 4096,
        idle_s: 32,
        partial_s: 10,
        handshake_s: 10,
        max_message: 16 * 1024,
        scanners: DEFAULT_SCANNERS.iter().map(|s| s.to_string()).collect(),
        pike_requests: 16,
        pike_window_s: 2,
        pike_ban_s: 300,
        trusted: vec![
            IpNet::from(IpAddr::from([127, 0, 0, 1])),
            IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
        ],
        max_calls: None,
        retry_after_s: 30,
    }
}
