//! The daemon: load what a call needs, listen for SIP, hand each request to the
//! right place, and shut down gracefully (stop taking calls, let calls finish within
//! the drain time, flush call records).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::call::{flow, required_prompts, CallContext};
use crate::config::Config;
use crate::media::clock::MediaClock;
use crate::media::prompts::PromptSet;
use crate::media::session::PortPool;
use crate::roster::{Roster, RosterHandle};
use crate::sip::leg::{dialed_of, InboundLeg};
use crate::sip::sdp;
use crate::sip::stack::{SipStack, ALLOWED};
use crate::store::Store;

/// Errors that stop the daemon from starting, in words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Prompts(#[from] crate::media::prompts::PromptError),
    #[error("call records database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Sip(#[from] crate::sip::stack::StackError),
    #[error("{0}")]
    Roster(crate::config::ConfigErrors),
    #[error("{0}")]
    Config(String),
}

/// The roster at start: a missing file means nobody on duty yet (the daemon still
/// answers and takes voicemail); a bad file stops the start, naming file and line.
fn load_roster(config: &Config) -> Result<RosterHandle, StartError> {
    let path = &config.roster.file;
    if !path.exists() {
        warn!(
            file = %path.display(),
            "no roster file: nobody is on duty, calls will go to voicemail until it exists"
        );
        return Ok(RosterHandle::new(Roster::empty()));
    }
    let roster = Roster::load(path, &config.stations).map_err(StartError::Roster)?;
    info!(
        file = %path.display(),
        volunteers = roster.volunteers.len(),
        shifts = roster.shifts.len(),
        "loaded the duty roster"
    );
    Ok(RosterHandle::new(roster))
}

/// A running daemon.
pub struct Server {
    stack: SipStack,
    roster_file: std::path::PathBuf,
    stations: Vec<crate::config::Station>,
    _roster_watch: tokio::task::JoinHandle<()>,
    ctx: Arc<CallContext>,
    numbers: Vec<String>,
    calls: TaskTracker,
    draining: AtomicBool,
}

/// Handle kept by `main` (or a test) to stop the daemon.
pub struct Running {
    pub server: Arc<Server>,
}

impl Server {
    /// Load prompts, open the store, bind SIP, and start serving.
    pub async fn start(config: &Config) -> Result<Running, StartError> {
        let names = required_prompts(config);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let prompts = PromptSet::load(&config.prompts_path(), &names)?;
        info!(
            count = names.len(),
            dir = %config.prompts_path().display(),
            "loaded prompts"
        );
        let store = Store::open(&config.database.url).await?;
        let stack = SipStack::bind(
            config.sip.listen,
            config.sip.public_addr,
            &config.sip.user_agent,
            Duration::from_millis(config.sip.t1_ms),
        )
        .await?;
        let roster = load_roster(config)?;
        let cadence = crate::media::tone::parse_cadence(&config.forward.ringback)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let public_ip = stack.public_ip;
        let media_ip = config.sip.listen.ip();
        let (first, last) = config.media.rtp_ports;
        let ctx = Arc::new(CallContext {
            prompts: Arc::new(prompts),
            store,
            clock: MediaClock::start(),
            ports: PortPool::new(media_ip, first, last),
            stations: config.stations.clone(),
            public_ip,
            rtp_timeout: Duration::from_secs(config.media.rtp_timeout_s),
            menu_timeout: Duration::from_secs(config.menu.timeout_s),
            max_tries: config.menu.max_tries,
            shutdown: CancellationToken::new(),
            roster: roster.clone(),
            busy: Arc::new(std::sync::Mutex::new(std::collections::HashSet::new())),
            trunk: config.trunk.clone(),
            ring_timeout: Duration::from_secs(config.forward.ring_timeout_s),
            screen_timeout: Duration::from_secs(config.forward.screen_timeout_s),
            ringback: Arc::new(cadence.prompt("ringback")),
            voicemail: config.forward.voicemail,
            voicemail_dir: config.forward.voicemail_dir.clone(),
            voicemail_max: Duration::from_secs(config.forward.voicemail_max_s),
            dialogs: stack.dialogs.clone(),
            sip_addr: stack.public_addr(),
            number: config.sip.numbers.first().cloned().unwrap_or_default(),
        });
        let roster_watch = crate::roster::watch(
            roster.clone(),
            config.roster.file.clone(),
            config.stations.clone(),
            Duration::from_secs(1),
        );
        if let Some(trunk) = &config.trunk {
            if trunk.register {
                crate::sip::register::spawn(&stack, trunk.clone(), ctx.shutdown.clone());
            }
        }
        let incoming = stack.start().await?;
        let server = Arc::new(Server {
            stack,
            roster_file: config.roster.file.clone(),
            stations: config.stations.clone(),
            _roster_watch: roster_watch,
            ctx,
            numbers: config.sip.numbers.clone(),
            calls: TaskTracker::new(),
            draining: AtomicBool::new(false),
        });
        info!(
            udp_tcp = %server.stack.local,
            numbers = ?server.numbers,
            "hotline is answering calls"
        );
        let dispatcher = server.clone();
        tokio::spawn(async move {
            let mut incoming = incoming;
            while let Some(tx) = incoming.recv().await {
                let s = dispatcher.clone();
                tokio::spawn(async move { s.handle(tx).await });
            }
        });
        Ok(Running { server })
    }

    /// Re-read the roster now (SIGHUP). A bad file is logged and the old roster stays.
    pub fn reload_roster(&self) {
        match self.ctx.roster.reload(&self.roster_file, &self.stations) {
            Ok(changes) if changes.is_empty() => info!("roster reloaded: no changes"),
            Ok(changes) => info!("roster reloaded: {}", changes.join("; ")),
            Err(e) => tracing::error!(
                "roster {} rejected, keeping the previous roster:\n{e}",
                self.roster_file.display()
            ),
        }
    }

    /// The live roster (for tests and tools).
    pub fn roster(&self) -> &RosterHandle {
        &self.ctx.roster
    }

    /// The SIP address we listen on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.stack.local
    }

    /// The call-records store, for tests and the shutdown flush.
    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// One new server transaction: route it by method and dialog.
    async fn handle(&self, mut tx: Transaction) {
        let req = &tx.original;
        let in_dialog = req
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        let method = req.method;
        if in_dialog {
            match self.stack.dialogs.match_dialog(&tx) {
                Some(mut dialog) => {
                    if let Err(e) = dialog.handle(&mut tx).await {
                        debug!("in-dialog {method} not handled: {e}");
                    }
                }
                None if method == Method::Ack => {}
                None => {
                    // RFC 3261 §12.2.2: a request for a dialog we do not know.
                    reply(&mut tx, StatusCode::CallTransactionDoesNotExist).await;
                }
            }
            return;
        }
        match method {
            Method::Invite => self.new_call(tx).await,
            Method::Options => {
                let status = if self.draining.load(Ordering::Relaxed) {
                    StatusCode::ServiceUnavailable
                } else {
                    StatusCode::OK
                };
                let headers = vec![allow_header(), Header::Accept("application/sdp".into())];
                if let Err(e) = tx.reply_with(status, headers, None).await {
                    debug!("OPTIONS reply failed: {e}");
                }
            }
            Method::Ack => {}
            Method::Bye | Method::Info | Method::Update | Method::PRack | Method::Cancel => {
                reply(&mut tx, StatusCode::CallTransactionDoesNotExist).await;
            }
            Method::Register
            | Method::Subscribe
            | Method::Notify
            | Method::Publish
            | Method::Message
            | Method::Refer => {
                // We are not a registrar or presence server: say so with Allow.
                if let Err(e) = tx
                    .reply_with(StatusCode::MethodNotAllowed, vec![allow_header()], None)
                    .await
                {
                    debug!("405 reply failed: {e}");
                }
            }
        }
    }

    /// A new INVITE: check it, create the dialog, start the call flow, and drive the
    /// INVITE server transaction (100 Trying, 200 retransmission, ACK, CANCEL).
    async fn new_call(&self, mut tx: Transaction) {
        let call_id = tx
            .original
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let span = tracing::info_span!("call", call_id = %call_id);
        async move {
            if self.draining.load(Ordering::Relaxed) {
                info!("refusing a new call: the daemon is shutting down");
                reply(&mut tx, StatusCode::ServiceUnavailable).await;
                return;
            }
            let dialed = dialed_of(&tx.original);
            if !self.numbers.contains(&dialed) {
                info!(%dialed, "refusing a call to a number we do not serve");
                reply(&mut tx, StatusCode::NotFound).await;
                return;
            }
            let body = String::from_utf8_lossy(tx.original.body()).to_string();
            let negotiated = if body.trim().is_empty() {
                None
            } else {
                match sdp::parse(&body).and_then(|offer| sdp::negotiate(&offer)) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        info!("refusing a call whose audio we cannot speak: {e}");
                        reply(&mut tx, StatusCode::NotAcceptableHere).await;
                        return;
                    }
                }
            };
            let contact = self.contact_for(&tx, &dialed);
            let (state_tx, state_rx) = self.stack.dialogs.new_dialog_state_channel();
            let dialog = match self
                .stack
                .dialogs
                .get_or_create_server_invite(&tx, state_tx, None, contact)
            {
                Ok(d) => d,
                Err(e) => {
                    warn!("could not create a dialog for the call: {e}");
                    reply(&mut tx, StatusCode::ServerInternalError).await;
                    return;
                }
            };
            let leg = InboundLeg::new(
                dialog.clone(),
                state_rx,
                self.stack.dialogs.clone(),
                &tx.original,
            );
            self.calls
                .spawn(flow::run(self.ctx.clone(), leg, negotiated).in_current_span());
            let mut dialog = dialog;
            if let Err(e) = dialog.handle(&mut tx).await {
                debug!("INVITE transaction ended with: {e}");
            }
        }
        .instrument(span)
        .await
    }

    /// Our Contact for a dialog: the public address, and the transport the call came on.
    fn contact_for(&self, tx: &Transaction, user: &str) -> Option<rsipstack::sip::Uri> {
        let addr = self.stack.public_addr();
        let tcp = tx
            .connection
            .as_ref()
            .map(|c| c.is_reliable())
            .unwrap_or(false);
        let host = match addr {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let uri = if tcp {
            format!("sip:{user}@{host};transport=tcp")
        } else {
            format!("sip:{user}@{host}")
        };
        rsipstack::sip::Uri::try_from(uri.as_str()).ok()
    }

    /// Graceful shutdown: refuse new calls (503), let calls in progress end within
    /// `drain`, end the rest, flush call records.
    pub async fn shutdown(&self, drain: Duration) {
        self.draining.store(true, Ordering::Relaxed);
        self.calls.close();
        let active = self.calls.len();
        if active > 0 {
            info!(
                active,
                drain_s = drain.as_secs(),
                "shutting down: waiting for calls in progress to end"
            );
        }
        if tokio::time::timeout(drain, self.calls.wait())
            .await
            .is_err()
        {
            warn!(
                still_active = self.calls.len(),
                "drain time is over: hanging up the calls still in progress"
            );
            self.ctx.shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.calls.wait()).await;
        }
        match self.ctx.store.flush(Duration::from_secs(10)).await {
            Ok(()) => info!("call records flushed"),
            Err(e) => warn!("call records not all written before exit: {e}"),
        }
        let stats = &self.ctx.clock.stats;
        info!(
            ticks = stats.ticks.load(Ordering::Relaxed),
            packets = stats.packets.load(Ordering::Relaxed),
            late_ticks = stats.late_ticks.load(Ordering::Relaxed),
            max_delay_us = stats.max_delay_us.load(Ordering::Relaxed),
            "media clock figures"
        );
        self.stack.shutdown();
    }
}

fn allow_header() -> Header {
    let allow: Vec<String> = ALLOWED.iter().map(|m| m.to_string()).collect();
    Header::Allow(allow.join(", ").into())
}

async fn reply(tx: &mut Transaction, status: StatusCode) {
    if let Err(e) = tx.reply(status.clone()).await {
        debug!("could not send {status}: {e}");
    }
}
