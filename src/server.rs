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

use crate::call::busy::BusyRegistry;
use crate::call::{flow, required_prompts, CallContext, CallServices, CallSettings};
use crate::config::Config;
use crate::media::clock::MediaClock;
use crate::media::prompts::{Prompt, PromptSet};
use crate::media::session::PortPool;
use crate::roster::{Roster, RosterHandle};
use crate::sip::accept::{self, reply};
use crate::sip::outbound::Dialer;
use crate::sip::stack::{SipStack, StackOptions, ALLOWED};
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
/// Reading the file is blocking work: off the async runtime.
async fn load_roster(config: &Config) -> Result<RosterHandle, StartError> {
    let path = config.roster.file.clone();
    let stations = config.stations.clone();
    tokio::task::spawn_blocking(move || read_roster(&path, &stations))
        .await
        .map_err(|e| StartError::Config(format!("loading the roster failed: {e}")))?
}

fn read_roster(
    path: &std::path::Path,
    stations: &[crate::config::Station],
) -> Result<RosterHandle, StartError> {
    if !path.exists() {
        warn!(
            file = %path.display(),
            "no roster file: nobody is on duty, calls will go to voicemail until it exists"
        );
        return Ok(RosterHandle::new(Roster::empty()));
    }
    let roster = Roster::load(path, stations).map_err(StartError::Roster)?;
    info!(
        file = %path.display(),
        volunteers = roster.volunteers.len(),
        shifts = roster.shifts.len(),
        "loaded the duty roster"
    );
    Ok(RosterHandle::new(roster))
}

/// The prompts and the ringback tone, decoded (and resampled to 8 kHz) off the async
/// runtime: reading and converting files is blocking work.
async fn load_prompts(config: &Config) -> Result<(PromptSet, Prompt), StartError> {
    let names = required_prompts(config);
    let dir = config.prompts_path();
    let ringback = config.forward.ringback.clone();
    let count = names.len();
    let loaded = tokio::task::spawn_blocking(move || {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let prompts = PromptSet::load(&dir, &names)?;
        Ok::<_, StartError>((prompts, ringback.prompt("ringback")))
    })
    .await
    .map_err(|e| StartError::Config(format!("loading the prompts failed: {e}")))??;
    info!(
        count,
        dir = %config.prompts_path().display(),
        "loaded prompts"
    );
    Ok(loaded)
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

impl Server {
    /// Load prompts, open the store, bind SIP, and start serving. The handle is kept by
    /// `main` (or a test) to stop the daemon.
    pub async fn start(config: &Config) -> Result<Arc<Server>, StartError> {
        let (prompts, ringback) = load_prompts(config).await?;
        let store = Store::open(&config.database.url).await?;
        let (first_port, last_port) = config.media.rtp_ports;
        let options = StackOptions {
            rtp_ports: usize::from(last_port.saturating_sub(first_port)) + 1,
            ..StackOptions::default()
        };
        let stack = SipStack::bind_with(
            config.sip.listen,
            config.sip.public_addr,
            &config.sip.user_agent,
            Duration::from_millis(config.sip.t1_ms),
            &options,
        )
        .await?;
        let roster = load_roster(config).await?;
        let (first, last) = config.media.rtp_ports;
        let ctx = Arc::new(CallContext {
            settings: CallSettings::from_config(config, stack.public_ip),
            services: CallServices {
                prompts: Arc::new(prompts),
                ringback: Arc::new(ringback),
                store,
                clock: MediaClock::start(),
                ports: PortPool::new(config.sip.listen.ip(), first, last),
                roster: roster.clone(),
                busy: BusyRegistry::default(),
                shutdown: CancellationToken::new(),
            },
            dialer: Dialer::new(
                &stack,
                config.sip.numbers.first().cloned().unwrap_or_default(),
                config.trunk.clone(),
            ),
        });
        let roster_watch = crate::roster::watch(
            roster.clone(),
            config.roster.file.clone(),
            config.stations.clone(),
            Duration::from_secs(1),
        );
        if let Some(trunk) = &config.trunk {
            if trunk.register {
                crate::sip::register::spawn(&stack, trunk.clone(), ctx.services.shutdown.clone());
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
        Ok(server)
    }

    /// Re-read the roster now (SIGHUP). A bad file is logged and the old roster stays.
    pub fn reload_roster(&self) {
        match self
            .ctx
            .services
            .roster
            .reload(&self.roster_file, &self.stations)
        {
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
        &self.ctx.services.roster
    }

    /// The SIP address we listen on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.stack.local
    }

    /// The call-records store, for tests and the shutdown flush.
    pub fn store(&self) -> &Store {
        &self.ctx.services.store
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
                let status = if self.draining.load(Ordering::Relaxed) || self.stack.calls_full() {
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

    /// A new INVITE: accept it (see [`crate::sip::accept`]), start the call flow, and
    /// drive the INVITE server transaction (100 Trying, 200 retransmission, ACK, CANCEL).
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
            let Some(call) = accept::accept(
                &self.stack,
                &self.numbers,
                self.ctx.settings.sdes_over_plain,
                tx,
            )
            .await
            else {
                return;
            };
            let call_flow = flow::run(self.ctx.clone(), call.leg, call.offer);
            let claim = call.claim;
            self.calls.spawn(
                async move {
                    let _claim = claim; // the call's slot (and its TCP/TLS connection) until it ends
                    call_flow.await
                }
                .in_current_span(),
            );
            call.transaction.run().await;
        }
        .instrument(span)
        .await
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
            self.ctx.services.shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.calls.wait()).await;
        }
        match self.ctx.services.store.flush(Duration::from_secs(10)).await {
            Ok(()) => info!("call records flushed"),
            Err(e) => warn!("call records not all written before exit: {e}"),
        }
        let stats = &self.ctx.services.clock.stats;
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
