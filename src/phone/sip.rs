//! The test phone's SIP side: the daemon's own stack ([`SipStack`]), and a small
//! dispatcher for what arrives on it (in-dialog requests to their dialog, new
//! INVITEs to the volunteer phone, OPTIONS answered, the rest refused).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tokio::sync::mpsc;
use tracing::debug;

use crate::sip::accept::reply;
use crate::sip::stack::SipStack;

/// RFC 3261's T1.
const T1: Duration = Duration::from_millis(500);

/// Listen for SIP on `listen` (UDP and TCP) and start the dispatcher. New INVITEs
/// go to `invites`; without it they are refused (603: a caller takes no calls).
pub(crate) async fn start(
    listen: SocketAddr,
    invites: Option<mpsc::Sender<Transaction>>,
) -> Result<Arc<SipStack>, String> {
    let stack = SipStack::bind(listen, None, "hotline-phone", T1)
        .await
        .map_err(|e| format!("cannot listen for SIP on {listen}: {e}"))?;
    let stack = Arc::new(stack);
    let mut incoming = stack
        .start()
        .await
        .map_err(|e| format!("cannot start SIP on {listen}: {e}"))?;
    let s = stack.clone();
    tokio::spawn(async move {
        while let Some(tx) = incoming.recv().await {
            let (s, invites) = (s.clone(), invites.clone());
            tokio::spawn(async move { route(&s, tx, invites).await });
        }
    });
    Ok(stack)
}

async fn route(stack: &SipStack, mut tx: Transaction, invites: Option<mpsc::Sender<Transaction>>) {
    let in_dialog = tx
        .original
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .is_some();
    let method = tx.original.method;
    if in_dialog {
        match stack.dialogs.match_dialog(&tx) {
            Some(mut dialog) => {
                if let Err(e) = dialog.handle(&mut tx).await {
                    debug!("in-dialog {method} not handled: {e}");
                }
            }
            None if method == Method::Ack => {}
            None => reply(&mut tx, StatusCode::CallTransactionDoesNotExist).await,
        }
        return;
    }
    match (method, invites) {
        (Method::Invite, Some(invites)) => {
            if let Err(mpsc::error::SendError(mut tx)) = invites.send(tx).await {
                reply(&mut tx, StatusCode::BusyHere).await;
            }
        }
        (Method::Invite, None) => reply(&mut tx, StatusCode::Decline).await,
        (Method::Options, _) => reply(&mut tx, StatusCode::OK).await,
        (Method::Ack, _) => {}
        (Method::Bye | Method::Cancel | Method::Info, _) => {
            reply(&mut tx, StatusCode::CallTransactionDoesNotExist).await
        }
        _ => reply(&mut tx, StatusCode::MethodNotAllowed).await,
    }
}

/// The address of ours that reaches `target` (the system's route to it), for
/// Contact, Via and SDP.
pub(crate) fn local_ip_towards(target: SocketAddr) -> Result<IpAddr, String> {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let probe =
        std::net::UdpSocket::bind(any).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    probe
        .connect(target)
        .and_then(|()| probe.local_addr())
        .map(|a| a.ip())
        .map_err(|e| format!("no route to {target}: {e}"))
}

/// A random SDP session id.
pub(crate) fn session_id() -> u64 {
    rand::random::<u32>().into()
}
