//! The admin's configuration file (`config/hotline.toml`), validated on load.
//!
//! As with FreeSWITCH's IVR XML, the menu and stations are data the admin edits
//! without recompiling. A bad file must stop the daemon at start with a message
//! naming file, line and key, so every error here carries them.
//!
//! Config is a leaf: it imports nothing from the rest of the daemon, and the
//! callers build their own types from its plain data.
//!
//! Parsing is two steps: serde reads a "raw" shape (`raw`) where every key is
//! optional and the values we check keep their `toml::Spanned` position; then
//! `validate` turns it into [`Config`] (`model`), filling defaults
//! (`defaults`) and collecting every semantic error at once.

mod cadence;
mod defaults;
mod model;
mod raw;
mod security;
mod validate;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::diag::{parse_toml, read_file};
pub use crate::diag::{ConfigError, ConfigErrors};
pub use cadence::{Cadence, CadenceError};
pub use defaults::DEFAULT_SCANNERS;
pub use model::*;

/// What [`Config::source`] says when no file was read.
pub const EMBEDDED_SOURCE: &str = "<embedded defaults>";

/// Languages we have prompts for; the folder `prompts_dir/<language>/` must exist.
pub const LANGUAGES: &[&str] = &["zh", "en"];

/// Key of the duty desk, which every configuration must have.
pub const DESK_KEY: char = '0';

/// Station id of the duty desk, as the roster names it (`roster::DESK`).
pub const DESK_ID: &str = "desk";

/// `[menu] timeout_s` when left out: how long the menu waits for a key.
pub const DEFAULT_MENU_TIMEOUT_S: u64 = 6;

/// `[menu] max_tries` when left out: hearings of the menu before the desk.
pub const DEFAULT_MENU_MAX_TRIES: u32 = 3;

/// `[menu] silent_tries` when left out: a caller who presses nothing at all goes
/// to the duty desk after the first hearing of the menu.
pub const DEFAULT_MENU_SILENT_TRIES: u32 = 1;

/// `[forward] ring_timeout_s` when left out: about four rings.
pub const DEFAULT_RING_TIMEOUT_S: u64 = 20;

/// `[forward] screen_timeout_s` when left out: time a volunteer has to press 1.
pub const DEFAULT_SCREEN_TIMEOUT_S: u64 = 10;

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::from_str(&read_file(path)?, path)
    }

    /// Parses and validates config text; `source` names it in errors.
    #[allow(clippy::should_implement_trait)] // needs `source`, so not FromStr
    pub fn from_str(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
        validate::validate(parse_toml(text, source)?, text, source)
    }

    /// The defaults, for when the default file is absent: built in code
    /// (`defaults`), never read from the admin's `config/hotline.toml`, so that
    /// editing that file never rebuilds the program. A test keeps the shipped
    /// file stating exactly these values.
    pub fn embedded_default() -> Config {
        defaults::builtin_defaults()
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

#[cfg(test)]
mod tests;
