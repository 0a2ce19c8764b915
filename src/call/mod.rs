//! Calls: the menu and hunt state machines, and the call flow that drives them.
//!
//! - [`flow`] is one call as straight-line async code; [`forward`] rings the
//!   volunteers ([`hunt`] decides, [`ringback`] chooses what the caller hears),
//!   [`bridge`] connects caller and volunteer, [`voicemail`] takes a message.
//! - [`caller`] and [`volunteer`] are the two legs as the flow sees them: each hands
//!   it one stream of events, SIP and media together, and applies media changes
//!   itself. They are the only files here that call a `MediaSession`.
//! - [`busy`] makes sure one volunteer is rung by one call at a time.

pub(crate) mod bridge;
pub(crate) mod busy;
pub(crate) mod caller;
pub(crate) mod flow;
pub(crate) mod forward;
pub(crate) mod hunt;
pub(crate) mod menu;
pub(crate) mod ringback;
pub(crate) mod selftest;
pub(crate) mod voicemail;
pub(crate) mod volunteer;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::call::busy::BusyRegistry;
use crate::call::menu::MenuSpec;
use crate::config::{Config, Station, DESK_KEY};
use crate::media::clock::MediaClock;
use crate::media::prompts::{Prompt, PromptSet};
use crate::media::session::PortPool;
use crate::roster::{Phone, RosterHandle};
use crate::sip::outbound::Dialer;
use crate::store::Store;

/// Everything a call needs from the daemon, shared by all calls.
pub struct CallContext {
    pub(crate) settings: CallSettings,
    pub(crate) services: CallServices,
    /// Places the outbound legs to volunteers.
    pub(crate) dialer: Dialer,
}

/// What the admin's config says about calls, read once at start.
#[derive(Debug, Clone)]
pub(crate) struct CallSettings {
    /// The menu's stations, the desk (key 0) included.
    pub(crate) stations: Vec<Station>,
    /// The address written into our SDP.
    pub(crate) public_ip: IpAddr,
    /// Hang up when a leg's audio stops this long (not while on hold).
    pub(crate) rtp_timeout: Duration,
    pub(crate) menu_timeout: Duration,
    pub(crate) max_tries: u32,
    pub(crate) silent_tries: u32,
    pub(crate) ring_timeout: Duration,
    pub(crate) screen_timeout: Duration,
    pub(crate) voicemail: bool,
    pub(crate) voicemail_dir: PathBuf,
    pub(crate) voicemail_max: Duration,
    /// `[sip] sdes_over_plain`: SRTP keys may go over plain UDP/TCP signalling.
    pub(crate) sdes_over_plain: bool,
    /// `[selftest] token`: what a self-test call's header must carry, if set.
    pub(crate) selftest_token: Option<String>,
}

impl CallSettings {
    pub(crate) fn from_config(config: &Config, public_ip: IpAddr) -> CallSettings {
        CallSettings {
            stations: config.stations.clone(),
            public_ip,
            rtp_timeout: Duration::from_secs(config.media.rtp_timeout_s),
            menu_timeout: Duration::from_secs(config.menu.timeout_s),
            max_tries: config.menu.max_tries,
            silent_tries: config.menu.silent_tries,
            ring_timeout: Duration::from_secs(config.forward.ring_timeout_s),
            screen_timeout: Duration::from_secs(config.forward.screen_timeout_s),
            voicemail: config.forward.voicemail,
            voicemail_dir: config.forward.voicemail_dir.clone(),
            voicemail_max: Duration::from_secs(config.forward.voicemail_max_s),
            sdes_over_plain: config.sip.sdes_over_plain,
            selftest_token: config.selftest.token.clone(),
        }
    }

    /// The menu as the state machine takes it.
    pub(crate) fn menu_spec(&self) -> MenuSpec {
        MenuSpec {
            valid_keys: self.stations.iter().map(|s| s.key).collect(),
            desk_key: DESK_KEY,
            timeout: self.menu_timeout,
            max_tries: self.max_tries,
            silent_tries: self.silent_tries,
        }
    }
}

/// The daemon's shared services a call uses.
pub(crate) struct CallServices {
    pub(crate) prompts: Arc<PromptSet>,
    /// The ringback tone, rendered once from `[forward] ringback`.
    pub(crate) ringback: Arc<Prompt>,
    pub(crate) store: Store,
    pub(crate) clock: MediaClock,
    pub(crate) ports: PortPool,
    /// Who is on duty; swapped on reload. A call takes one snapshot at the key press
    /// and keeps it to its end.
    pub(crate) roster: RosterHandle,
    /// Volunteers being rung or talking, across all calls.
    pub(crate) busy: BusyRegistry,
    /// Fires when the drain timeout of a shutdown has passed: calls still going end now.
    pub(crate) shutdown: CancellationToken,
    /// Sees every record update first: the admin's live calls and call metrics.
    pub(crate) observer: Arc<crate::admin::Observer>,
    /// True while registered with the trunk; None when no `[trunk]` registers.
    pub(crate) trunk_registered: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl CallContext {
    /// Record an update of the call: to the admin's view, then to the store.
    pub(crate) fn record(&self, ev: crate::store::CallEvent) {
        self.services.observer.observe(&ev);
        self.services.store.record(ev);
    }

    /// The URI we dial for a roster phone: a SIP URI as written, a number through
    /// the trunk's domain; None for a number when no trunk is configured.
    pub(crate) fn dial_uri(&self, phone: &Phone) -> Option<String> {
        match (phone, self.dialer.trunk_domain()) {
            (Phone::Number(_), None) => None,
            (_, domain) => Some(phone.sip_uri(domain.unwrap_or(""))),
        }
    }
}

/// The prompts the menu cannot do without, by file name (without `.wav`).
pub fn required_prompts(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = [
        "welcome",
        "menu",
        "menu_short",
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
