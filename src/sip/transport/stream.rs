//! One TCP or TLS connection: read, frame, judge, hand on; write what the stack sends;
//! close when a timer, a cap or a ban says so. The decisions live in
//! [`super::framing::StreamState`] and [`crate::sip::policy::Policy`]; this task only
//! moves bytes and sleeps until the next deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::sip::SipMessage;
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transport::channel::ChannelConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportEvent};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::framing::{Broken, Expired, Frame, StreamState};
use super::{ConnPermit, ConnTable, StreamKind};
use crate::sip::limits::{canonical, Counters};
use crate::sip::policy::{Decision, Policy};

/// A write that does not finish in this long means a peer that stopped reading: close.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection task shares.
pub(crate) struct Serving {
    pub policy: Arc<Policy>,
    pub table: Arc<ConnTable>,
    pub endpoint: EndpointInnerRef,
    pub cancel: CancellationToken,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    PeerClosed,
    Shutdown,
    Idle,
    Partial,
    TooLarge,
    Unframeable,
    Banned,
    WriteFailed,
}

/// Serve one connection until it ends. `permit` holds its place in the table.
pub(crate) async fn serve<S>(
    stream: S,
    remote: SocketAddr,
    kind: StreamKind,
    serving: Arc<Serving>,
    permit: ConnPermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (to_stack, from_us) = tokio::sync::mpsc::unbounded_channel();
    let (to_us, mut from_stack) = tokio::sync::mpsc::unbounded_channel();
    let sip_addr = SipAddr {
        r#type: Some(kind.transport()),
        addr: remote.into(),
    };
    // The connection's own token: cancelled when we close, which tells rsipstack's
    // flow affinity that in-dialog requests can no longer use it.
    let token = serving.cancel.child_token();
    let conn = match ChannelConnection::create_connection(
        from_us,
        to_us,
        sip_addr.clone(),
        Some(token.clone()),
    )
    .await
    {
        Ok(c) => SipConnection::Channel(c),
        Err(e) => {
            debug!(%remote, "could not create the stack's channel: {e}");
            return;
        }
    };
    serving
        .endpoint
        .transport_layer
        .add_connection(conn.clone());
    let limits = &serving.policy.limits;
    let mut state = StreamState::new(
        Instant::now(),
        limits.max_message,
        limits.idle,
        limits.partial,
    );
    let link = Link {
        serving: &serving,
        remote,
        kind,
        to_stack: &to_stack,
        conn: &conn,
        sip_addr: &sip_addr,
    };
    let mut chunk = vec![0u8; 8192];
    let end = loop {
        let pinned = permit.entry.pinned();
        // A pinned connection re-checks once per idle period: its call may have ended.
        let wake = state
            .deadline(pinned)
            .unwrap_or_else(|| Instant::now() + limits.idle)
            .min(Instant::now() + limits.idle);
        tokio::select! {
            _ = token.cancelled() => break End::Shutdown,
            read = rd.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => break End::PeerClosed,
                    Ok(n) => n,
                };
                let now = Instant::now();
                state.on_bytes(now, &chunk[..n]);
                if let Err(end) = link.drain(now, &mut state, &mut wr).await {
                    break end;
                }
            }
            out = from_stack.recv() => match out {
                Some(TransportEvent::Incoming(msg, _, _)) => {
                    if write(&mut wr, &msg.to_bytes()).await.is_err() {
                        break End::WriteFailed;
                    }
                }
                Some(_) => {}
                None => break End::Shutdown,
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                match state.expired(Instant::now(), permit.entry.pinned()) {
                    Some(Expired::Idle) => break End::Idle,
                    Some(Expired::Partial) => break End::Partial,
                    None => {}
                }
            }
        }
    };
    // Retire the flow first (affinity stops choosing it), then let rsipstack's reader
    // of our channel end: it removes the connection from its table.
    token.cancel();
    drop(to_stack);
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    note_end(&serving.policy, remote, kind, end);
    drop(permit);
}

/// What one connection hands the stack with each message it passes.
struct Link<'a> {
    serving: &'a Serving,
    remote: SocketAddr,
    kind: StreamKind,
    to_stack: &'a tokio::sync::mpsc::UnboundedSender<TransportEvent>,
    conn: &'a SipConnection,
    sip_addr: &'a SipAddr,
}

impl Link<'_> {
    /// Frame, judge and hand on every complete message in `state`; `Err` says why
    /// the connection must close.
    async fn drain<W: AsyncWrite + Unpin>(
        &self,
        now: Instant,
        state: &mut StreamState,
        wr: &mut W,
    ) -> Result<(), End> {
        let remote = self.remote;
        loop {
            let frame = match state.next_frame(now) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(Broken::TooLarge { reply }) => {
                    if let Some(r) = reply {
                        let _ = write(wr, &r).await;
                    }
                    return Err(End::TooLarge);
                }
                Err(Broken::Unframeable { reply }) => {
                    if let Some(r) = reply {
                        let _ = write(wr, &r).await;
                    }
                    return Err(End::Unframeable);
                }
            };
            let bytes = match frame {
                Frame::Ping => {
                    write(wr, b"\r\n").await.map_err(|_| End::WriteFailed)?;
                    continue;
                }
                Frame::Message(m) => m,
            };
            match self
                .serving
                .policy
                .judge(now, remote, self.kind.name(), &bytes)
            {
                Decision::Pass { message, request } => {
                    if request {
                        state.request_done(now);
                    }
                    let parsed = match message {
                        Some(m) => Ok(m),
                        None => SipMessage::try_from(bytes.as_slice()),
                    };
                    let Ok(msg) = parsed else { continue };
                    let Ok(msg) =
                        SipConnection::update_msg_received(msg, remote, self.kind.transport())
                    else {
                        continue;
                    };
                    let event =
                        TransportEvent::Incoming(msg, self.conn.clone(), self.sip_addr.clone());
                    self.to_stack.send(event).map_err(|_| End::Shutdown)?;
                }
                Decision::Answer(r) => write(wr, &r).await.map_err(|_| End::WriteFailed)?,
                Decision::Drop => {}
                Decision::Banned => return Err(End::Banned),
            }
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, async {
        wr.write_all(bytes).await?;
        wr.flush().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Count and (once per source and minute) log why a connection closed.
fn note_end(policy: &Policy, remote: SocketAddr, kind: StreamKind, end: End) {
    let c = &policy.counters;
    let (counter, what) = match end {
        End::PeerClosed | End::Shutdown | End::WriteFailed | End::Banned => return,
        End::Idle => (&c.closed_idle, "completed no request in time (idle)"),
        End::Partial => (&c.closed_partial, "left a message unfinished too long"),
        End::TooLarge => (&c.oversize, "sent a message over the size cap"),
        End::Unframeable => (&c.closed_unframeable, "sent an unreadable Content-Length"),
    };
    Counters::add(counter);
    let ip = canonical(remote.ip());
    if let Some(held) = policy.may_log(Instant::now(), ip, "closed") {
        info!(
            source = %remote,
            transport = kind.name(),
            held_back = held,
            "closed a SIP connection that {what}"
        );
    }
}
