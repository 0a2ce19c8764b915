//! Calls: the menu state machine and the call flow that drives it.

pub mod flow;
pub mod hunt;
pub mod menu;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Station};
use crate::media::clock::MediaClock;
use crate::media::prompts::PromptSet;
use crate::media::session::PortPool;
use crate::store::Store;

/// Everything a call needs from the daemon, shared by all calls.
pub struct CallContext {
    pub prompts: Arc<PromptSet>,
    pub store: Store,
    pub clock: MediaClock,
    pub ports: PortPool,
    pub stations: Vec<Station>,
    pub public_ip: IpAddr,
    pub rtp_timeout: Duration,
    pub menu_timeout: Duration,
    pub max_tries: u32,
    /// Fires when the drain timeout of a shutdown has passed: calls still going end now.
    pub shutdown: CancellationToken,
}

/// The prompts the menu cannot do without, by file name (without `.wav`).
pub fn required_prompts(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = ["welcome", "menu", "invalid", "no_volunteer"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend(config.stations.iter().map(|s| format!("station_{}", s.id)));
    names
}
