//! Calls: the menu state machine and the call flow that drives it.

pub mod flow;
pub mod forward;
pub mod hunt;
pub mod menu;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::dialog::dialog_layer::DialogLayer;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Station, TrunkConfig};
use crate::media::clock::MediaClock;
use crate::media::prompts::{Prompt, PromptSet};
use crate::media::session::PortPool;
use crate::roster::{Phone, RosterHandle};
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
    /// Who is on duty; swapped on reload, each hunt takes the roster of its moment.
    pub roster: RosterHandle,
    /// Volunteers being rung or talking, across all calls.
    pub busy: Arc<Mutex<HashSet<String>>>,
    pub trunk: Option<TrunkConfig>,
    pub ring_timeout: Duration,
    pub screen_timeout: Duration,
    pub ringback: Arc<Prompt>,
    pub voicemail: bool,
    pub voicemail_dir: PathBuf,
    pub voicemail_max: Duration,
    /// For outbound legs: rsipstack's dialogs, our SIP address, our number.
    pub dialogs: Arc<DialogLayer>,
    pub sip_addr: SocketAddr,
    pub number: String,
}

impl CallContext {
    /// The URI we dial for a roster phone: a SIP URI as written, a number through
    /// the trunk's domain; None for a number when no trunk is configured.
    pub fn dial_uri(&self, phone: &Phone) -> Option<String> {
        match (phone, &self.trunk) {
            (Phone::Number(_), None) => None,
            (_, trunk) => Some(phone.sip_uri(trunk.as_ref().map_or("", |t| t.domain.as_str()))),
        }
    }

    /// The URI the roster gives for a volunteer, as we dial it.
    pub fn roster_uri_of(&self, volunteer: &str) -> Option<String> {
        let roster = self.roster.current();
        self.dial_uri(&roster.volunteer(volunteer)?.phone)
    }
}

/// The prompts the menu cannot do without, by file name (without `.wav`).
pub fn required_prompts(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = [
        "welcome",
        "menu",
        "invalid",
        "no_volunteer",
        "all_busy",
        "beep",
        "screen",
        "goodbye",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend(config.stations.iter().map(|s| format!("station_{}", s.id)));
    names
}
