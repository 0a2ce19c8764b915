//! The defaults in code, for every key the file leaves out.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;

/// `[trunk] register_expires_s` when left out: re-register every 10 minutes.
pub(super) const DEFAULT_REGISTER_EXPIRES_S: u64 = 600;

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
            max_tries: 3,
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
