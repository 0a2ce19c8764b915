//! What serde reads: every key optional, the values we check keeping their
//! `toml::Spanned` position, and deserializers whose errors an admin reads.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) sip: RawSip,
    pub(super) media: RawMedia,
    pub(super) database: RawDatabase,
    pub(super) menu: RawMenu,
    pub(super) station: Option<Vec<RawStation>>,
    pub(super) roster: RawRoster,
    pub(super) daemon: RawDaemon,
    pub(super) forward: RawForward,
    pub(super) trunk: Option<Spanned<RawTrunk>>,
    pub(super) limits: RawLimits,
    pub(super) admin: RawAdmin,
    pub(super) log: RawLog,
    pub(super) selftest: RawSelftest,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSelftest {
    pub(super) token: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) token: Option<Spanned<String>>,
    pub(super) ready_queue_limit: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSip {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) public_addr: Option<Spanned<String>>,
    pub(super) numbers: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) user_agent: Option<String>,
    pub(super) t1_ms: Option<Spanned<u64>>,
    pub(super) allow: Option<Vec<Spanned<String>>>,
    pub(super) tls_listen: Option<Spanned<String>>,
    pub(super) tls_cert: Option<Spanned<PathBuf>>,
    pub(super) tls_key: Option<Spanned<PathBuf>>,
    pub(super) tls_ca: Option<PathBuf>,
    pub(super) sdes_over_plain: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) tcp_per_source: Option<Spanned<u64>>,
    pub(super) tcp_total: Option<Spanned<u64>>,
    pub(super) idle_s: Option<Spanned<Seconds>>,
    pub(super) partial_s: Option<Spanned<Seconds>>,
    pub(super) handshake_s: Option<Spanned<Seconds>>,
    pub(super) max_message: Option<Spanned<u64>>,
    pub(super) scanners: Option<Vec<Spanned<String>>>,
    pub(super) pike_requests: Option<Spanned<u64>>,
    pub(super) pike_window_s: Option<Spanned<Seconds>>,
    pub(super) pike_ban_s: Option<Spanned<Seconds>>,
    pub(super) trusted: Option<Vec<Spanned<String>>>,
    pub(super) max_calls: Option<Spanned<u64>>,
    pub(super) retry_after_s: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMedia {
    pub(super) rtp_ports: Option<Spanned<String>>,
    pub(super) rtp_timeout_s: Option<Spanned<Seconds>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMenu {
    pub(super) language: Option<Spanned<String>>,
    pub(super) prompts_dir: Option<PathBuf>,
    pub(super) timeout_s: Option<Spanned<Seconds>>,
    pub(super) max_tries: Option<Spanned<Count>>,
    pub(super) silent_tries: Option<Spanned<Count>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStation {
    pub(super) key: Spanned<KeyText>,
    pub(super) id: Spanned<String>,
    pub(super) name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRoster {
    pub(super) file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) drain_timeout_s: Option<Seconds>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawForward {
    pub(super) ring_timeout_s: Option<Spanned<Seconds>>,
    pub(super) screen_timeout_s: Option<Spanned<Seconds>>,
    pub(super) ringback: Option<Spanned<String>>,
    pub(super) voicemail: Option<bool>,
    pub(super) voicemail_dir: Option<PathBuf>,
    pub(super) voicemail_max_s: Option<Spanned<Seconds>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrunk {
    pub(super) proxy: Spanned<String>,
    pub(super) domain: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    #[serde(default)]
    pub(super) register: bool,
    pub(super) register_expires_s: Option<Spanned<Seconds>>,
}

/// A whole number of seconds, with an error message an admin understands.
pub(super) struct Seconds(pub(super) u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_u64(WholeVisitor("a whole number of seconds"))
            .map(Seconds)
    }
}

/// A whole, non-negative count (tries).
pub(super) struct Count(pub(super) u32);

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

/// A station key as written: `"1"` or a bare `1`; checked by `validate`.
pub(super) struct KeyText(pub(super) String);

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
