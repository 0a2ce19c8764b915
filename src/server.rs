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
use crate::selftest::Verdict;
use crate::sip::accept::{self, reply};
use crate::sip::limits::Limits;
use crate::sip::outbound::Dialer;
use crate::sip::stack::{SipStack, StackOptions, ALLOWED};
use crate::sip::transport::tls::TlsSettings;
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
    #[error("admin listener: cannot listen on {addr} ({detail}); set [admin] listen to a free port, or \"\" to turn it off")]
    Admin { addr: SocketAddr, detail: String },
}

/// The roster at start: a missing file means nobody on duty yet (the daemon still
/// answers and takes voicemail); a bad file stops the start, naming file and line.
/// Reading the file is blocking work: off the async runtime.
async fn load_roster(config: &Config) -> Result<(RosterHandle, bool), StartError> {
    let path = config.roster.file.clone();
    let stations = config.stations.clone();
    tokio::task::spawn_blocking(move || read_roster(&path, &stations))
        .await
        .map_err(|e| StartError::Config(format!("loading the roster failed: {e}")))?
}

/// The roster handle, and whether a file was loaded (for `/readyz`).
fn read_roster(
    path: &std::path::Path,
    stations: &[crate::config::Station],
) -> Result<(RosterHandle, bool), StartError> {
    if !path.exists() {
        warn!(
            file = %path.display(),
            "no roster file: nobody is on duty, calls will go to voicemail until it exists"
        );
        return Ok((RosterHandle::new(Roster::empty()), false));
    }
    let roster = Roster::load(path, stations).map_err(StartError::Roster)?;
    info!(
        file = %path.display(),
        volunteers = roster.volunteers.len(),
        shifts = roster.shifts.len(),
        "loaded the duty roster"
    );
    Ok((RosterHandle::new(roster), true))
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
    /// Whether a roster file was loaded at start (a reload counts later).
    roster_at_start: bool,
    /// True while registered with the trunk; None without registration.
    trunk_registered: Option<Arc<AtomicBool>>,
    /// Where the admin listener took requests, and what stops it.
    admin_addr: Option<SocketAddr>,
    admin_stop: CancellationToken,
}

impl Server {
    /// Load prompts, open the store, bind SIP, and start serving. The handle is kept by
    /// `main` (or a test) to stop the daemon.
    pub async fn start(config: &Config) -> Result<Arc<Server>, StartError> {
        let (prompts, ringback) = load_prompts(config).await?;
        let store = Store::open(&config.database.url).await?;
        store.close_interrupted().await?;
        let options = stack_options(config);
        let stack = SipStack::bind_with(
            config.sip.listen,
            config.sip.public_addr,
            &config.sip.user_agent,
            Duration::from_millis(config.sip.t1_ms),
            &options,
        )
        .await?;
        let (roster, roster_at_start) = load_roster(config).await?;
        let admin_listener = match config.admin.listen {
            Some(addr) => Some(
                crate::admin::bind(addr)
                    .await
                    .map_err(|e| StartError::Admin {
                        addr,
                        detail: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let (first, last) = config.media.rtp_ports;
        // True while registered with the trunk; None when it does not register.
        let trunk_registered = config
            .trunk
            .as_ref()
            .filter(|t| t.register)
            .map(|_| Arc::new(AtomicBool::new(false)));
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
                observer: Arc::new(crate::admin::Observer::new(&config.stations)),
                trunk_registered: trunk_registered.clone(),
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
        if let (Some(trunk), Some(state)) = (&config.trunk, &trunk_registered) {
            let stop = ctx.services.shutdown.clone();
            crate::sip::register::spawn(&stack, trunk.clone(), stop, state.clone());
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
            roster_at_start,
            trunk_registered,
            admin_addr: admin_listener.as_ref().and_then(|l| l.local_addr().ok()),
            admin_stop: CancellationToken::new(),
        });
        if let Some(listener) = admin_listener {
            let options = crate::admin::AdminOptions {
                token: config.admin.token.clone(),
                ready_queue_limit: config.admin.ready_queue_limit,
            };
            let stop = server.admin_stop.clone();
            crate::admin::serve(listener, server.clone(), options, stop);
        }
        crate::startup::log(
            config,
            &server.roster().current(),
            roster_at_start,
            crate::startup::Bound {
                sip: server.stack.local,
                tls: server.stack.tls_local,
                admin: server.admin_addr,
            },
        );
        info!(
            udp_tcp = %server.stack.local,
            tls = ?server.stack.tls_local,
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

    /// The SIP-over-TLS address we listen on, when `[sip] tls_listen` is set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.stack.tls_local
    }

    /// The call-records store, for tests and the shutdown flush.
    pub fn store(&self) -> &Store {
        &self.ctx.services.store
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Where the admin listener takes requests (None: `[admin] listen = ""`).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub(crate) fn stack(&self) -> &SipStack {
        &self.stack
    }

    pub(crate) fn observer(&self) -> &crate::admin::Observer {
        &self.ctx.services.observer
    }

    pub(crate) fn clock_stats(&self) -> &crate::media::clock::ClockStats {
        &self.ctx.services.clock.stats
    }

    pub(crate) fn busy_volunteers(&self) -> usize {
        self.ctx.services.busy.count()
    }

    pub(crate) fn stations(&self) -> &[crate::config::Station] {
        &self.stations
    }

    pub(crate) fn roster_file(&self) -> &std::path::Path {
        &self.roster_file
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A roster file has been loaded (at start or by a reload since).
    pub(crate) fn roster_loaded(&self) -> bool {
        self.roster_at_start || self.roster().generation() > 0
    }

    pub(crate) fn trunk_registered(&self) -> Option<bool> {
        self.trunk_registered
            .as_ref()
            .map(|s| s.load(Ordering::Relaxed))
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
            let token = self.ctx.settings.selftest_token.as_deref();
            let selftest = match accept::selftest_verdict(&self.stack, &tx.original, token) {
                Verdict::Ordinary => false,
                Verdict::SelfTest => true,
                Verdict::Refused(why) => {
                    warn!("refusing a self-test call with 403: {why}");
                    reply(&mut tx, StatusCode::Forbidden).await;
                    return;
                }
            };
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
            let call_flow = flow::run(self.ctx.clone(), call.leg, call.offer, selftest);
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
        self.admin_stop.cancel();
    }
}

/// The SIP stack's settings from the config's plain data: `[limits]`, `[sip] allow`
/// and `tls_*`, and the size of the RTP range (the connection and call caps leave the
/// calls' sockets room).
pub fn stack_options(config: &Config) -> StackOptions {
    let l = &config.limits;
    let (first_port, last_port) = config.media.rtp_ports;
    StackOptions {
        limits: Limits {
            tcp_per_source: l.tcp_per_source,
            tcp_total: l.tcp_total,
            idle: Duration::from_secs(l.idle_s),
            partial: Duration::from_secs(l.partial_s),
            handshake: Duration::from_secs(l.handshake_s),
            max_message: l.max_message,
            scanners: l.scanners.clone(),
            pike_requests: l.pike_requests,
            pike_window: Duration::from_secs(l.pike_window_s),
            pike_ban: Duration::from_secs(l.pike_ban_s),
            trusted: l.trusted.clone(),
            allow: config.sip.allow.clone(),
            max_calls: l.max_calls,
            retry_after_s: l.retry_after_s,
            ..Limits::default()
        },
        tls: config.sip.tls.as_ref().map(|t| TlsSettings {
            listen: t.listen,
            cert: t.cert.clone(),
            key: t.key.clone(),
        }),
        tls_ca: config.sip.tls_ca.clone(),
        rtp_ports: usize::from(last_port.saturating_sub(first_port)) + 1,
    }
}

fn allow_header() -> Header {
    let allow: Vec<String> = ALLOWED.iter().map(|m| m.to_string()).collect();
    Header::Allow(allow.join(", ").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config's defaults are the SIP stack's: leaving `[limits]` out changes nothing.
    #[test]
    fn config_defaults_give_the_stacks_default_limits() {
        let cfg = Config::embedded_default();
        let options = stack_options(&cfg);
        assert_eq!(options.limits, Limits::default());
        assert_eq!(options.tls, None);
        assert_eq!(options.tls_ca, None);
        assert_eq!(options.rtp_ports, 1000);
    }

    #[test]
    fn config_limits_reach_the_stack() {
        let text = "[sip]\nallow = [\"192.0.2.0/24\"]\ntls_listen = \"0.0.0.0:5061\"\n\
                    tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_ca = \"ca.pem\"\n\
                    [limits]\ntcp_per_source = 3\nidle_s = 5\npike_window_s = 4\n\
                    trusted = [\"198.51.100.7\"]\nmax_calls = 2\nretry_after_s = 9\n";
        let cfg = Config::from_str(text, std::path::Path::new("t.toml")).unwrap();
        let o = stack_options(&cfg);
        assert_eq!(o.limits.tcp_per_source, 3);
        assert_eq!(o.limits.idle, Duration::from_secs(5));
        assert_eq!(o.limits.pike_window, Duration::from_secs(4));
        assert!(o.limits.is_trusted("198.51.100.7".parse().unwrap()));
        assert!(!o.limits.is_trusted("127.0.0.1".parse().unwrap()));
        assert!(o.limits.may_call("192.0.2.9".parse().unwrap()));
        assert!(!o.limits.may_call("192.0.3.9".parse().unwrap()));
        assert_eq!(o.limits.max_calls, Some(2));
        assert_eq!(o.limits.retry_after_s, 9);
        let tls = o.tls.unwrap();
        assert_eq!(tls.listen, "0.0.0.0:5061".parse().unwrap());
        assert_eq!(tls.cert, std::path::PathBuf::from("c.pem"));
        assert_eq!(o.tls_ca, Some(std::path::PathBuf::from("ca.pem")));
    }
}
