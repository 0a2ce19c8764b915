//! The TCP (and TLS) accept loop: every new connection is checked against the ban list
//! and the caps before it costs a task; beyond a cap it is closed at once (never
//! queued), so one address at its maximum never keeps another from being served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::stream::{serve, Serving};
use super::tls::TlsServer;
use super::{ConnPermit, Refusal, StreamKind};
use crate::sip::limits::{canonical, Counters};

/// Accept until shutdown. With `tls`, each connection does its handshake first.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    kind: StreamKind,
    tls: Option<Arc<TlsServer>>,
    serving: Arc<Serving>,
) {
    loop {
        let accepted = tokio::select! {
            _ = serving.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                let now = Instant::now();
                if let Some(held) = serving.policy.may_log(now, [0u8; 4].into(), "accept") {
                    warn!(
                        held_back = held,
                        "cannot accept {} connections: {e}",
                        kind.name()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = admit(&serving, kind, remote) else {
            refuse(stream);
            continue;
        };
        Counters::add(&serving.policy.counters.connections_accepted);
        let _ = stream.set_nodelay(true);
        let serving = serving.clone();
        match &tls {
            None => {
                tokio::spawn(serve(stream, remote, kind, serving, permit));
            }
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Some(s) = tls.handshake(stream, remote, &serving.policy).await {
                        serve(s, remote, kind, serving, permit).await;
                    }
                });
            }
        }
    }
}

/// The ban list, then the caps. Refusals are counted and logged once per source and
/// minute.
fn admit(serving: &Serving, kind: StreamKind, remote: SocketAddr) -> Option<ConnPermit> {
    let policy = &serving.policy;
    let now = Instant::now();
    let ip = canonical(remote.ip());
    if !policy.admit_connection(now, ip) {
        Counters::add(&policy.counters.refused_banned);
        return None;
    }
    match serving
        .table
        .try_open(kind, remote, policy.limits.is_trusted(ip))
    {
        Ok(p) => Some(p),
        Err(refusal) => {
            let (counter, cap, what) = match refusal {
                Refusal::PerSource => (
                    &policy.counters.refused_per_source,
                    policy.limits.tcp_per_source,
                    "from this address",
                ),
                Refusal::Total => (
                    &policy.counters.refused_total,
                    serving.table.cap(),
                    "in total",
                ),
            };
            Counters::add(counter);
            if let Some(held) = policy.may_log(now, ip, "refused") {
                warn!(
                    source = %remote,
                    transport = kind.name(),
                    held_back = held,
                    "refused a SIP connection: already {cap} open {what}"
                );
            }
            None
        }
    }
}

/// Close at once, with a reset rather than a FIN: nothing is queued, and no TIME_WAIT
/// is left on our side for a connection we never served.
fn refuse(stream: TcpStream) {
    if let Err(e) = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
        debug!("SO_LINGER on a refused connection: {e}");
    }
    drop(stream);
}
