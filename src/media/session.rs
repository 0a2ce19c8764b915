//! One call's media: an RTP port pair, the sending stream on the shared clock, and a
//! receive task that turns the caller's packets into keys and liveness.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::media::clock::{MediaClock, PlayEnd, Registration, StreamTx};
use crate::media::codec::Codec;
use crate::media::prompts::Prompt;
use crate::media::receiver::{Receiver, RxMedia};
use crate::media::recorder::Recorder;
use crate::media::relay::{LegMedia, RelayDirection};
use crate::media::rtcp::{Quality, Rtcp};
use crate::media::socket::{Inbox, RtpSocket};

/// How a key reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DtmfMethod {
    Rfc4733,
    Inband,
    SipInfo,
}

impl DtmfMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DtmfMethod::Rfc4733 => "rfc4733",
            DtmfMethod::Inband => "inband",
            DtmfMethod::SipInfo => "sip-info",
        }
    }
}

/// What the receive side reports to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaEvent {
    Dtmf(char, DtmfMethod),
    /// No RTP for the configured time: the caller is most likely gone (no BYE came).
    RtpTimeout,
}

/// What [`MediaSession::next`] hands the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaInput {
    /// A key or the RTP timeout; None when the receive task is gone.
    Event(Option<MediaEvent>),
    /// The prompt played to its last frame.
    PromptFinished,
}

/// Resolves when the playing prompt finishes; pending while nothing plays, and
/// forever for a prompt that was stopped.
async fn wait_playback(playing: &mut Option<oneshot::Receiver<PlayEnd>>) {
    match playing.as_mut() {
        Some(rx) => {
            let end = rx.await;
            *playing = None;
            if end != Ok(PlayEnd::Finished) {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Errors opening media.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MediaError {
    #[error("no free RTP port pair in {0}-{1} (all in use)")]
    NoPorts(u16, u16),
}

/// Hands out even RTP ports (RTCP on the odd one above) from the configured range.
pub(crate) struct PortPool {
    ip: IpAddr,
    first: u16,
    last: u16,
    cursor: AtomicU16,
}

impl PortPool {
    pub(crate) fn new(ip: IpAddr, first: u16, last: u16) -> Self {
        let first = first + (first % 2);
        PortPool {
            ip,
            first,
            last,
            cursor: AtomicU16::new(first),
        }
    }

    /// Bind the next free pair; a port someone else holds is skipped.
    pub(crate) async fn bind(&self) -> Result<(RtpSocket, RtpSocket), MediaError> {
        let pairs = ((self.last.saturating_sub(self.first)) / 2 + 1) as usize;
        for _ in 0..pairs {
            let port = self.next_port();
            let Ok(rtp) = RtpSocket::bind(SocketAddr::new(self.ip, port)) else {
                continue;
            };
            let Ok(rtcp) = RtpSocket::bind_rtcp(SocketAddr::new(self.ip, port + 1)) else {
                continue;
            };
            return Ok((rtp, rtcp));
        }
        Err(MediaError::NoPorts(self.first, self.last))
    }

    fn next_port(&self) -> u16 {
        let span = self.last.saturating_sub(self.first) / 2 + 1;
        let n = self.cursor.fetch_add(2, Ordering::Relaxed);
        self.first + ((n.wrapping_sub(self.first) / 2) % span) * 2
    }
}

/// Settings for one call's receive side.
#[derive(Debug, Clone)]
pub(crate) struct RxConfig {
    pub codec: Codec,
    /// The peer's telephone-event payload type, if negotiated.
    pub telephone_event: Option<u8>,
    /// Run the Goertzel detector on decoded audio (for gateways that send keys as
    /// sound). Off when telephone-event was negotiated, as Asterisk's dtmf_mode=auto.
    pub inband: bool,
    pub rtp_timeout: Duration,
    /// Whether the RTP timeout runs from the start. Off for a volunteer's leg
    /// until they answer: a phone that rings sends no media.
    pub timeout_armed: bool,
}

/// What the receive task does with a leg's packets besides detecting keys.
pub(crate) enum Tap {
    /// Nothing: keys and liveness only.
    None,
    /// Relay them to another leg (a bridge, or early media towards the caller).
    Bridge {
        relay: RelayDirection,
        peer: Arc<Mutex<StreamTx>>,
    },
    /// Keep them as audio (voicemail).
    Record(Recorder),
}

/// Receive-side state the call can change while the receive task runs.
pub(crate) struct RxShared {
    pub cfg: RxConfig,
    /// The telephone-event number we offered (a volunteer may send with it
    /// though their answer mapped another).
    our_event_pt: Option<u8>,
    /// The payload type the far end uses for `cfg.codec` (RFC 3264 section 6.1).
    payload_type: u8,
    pub tap: Tap,
    /// Latching, payload types, keys and the RTP timeout, without I/O.
    receiver: Receiver,
}

impl RxShared {
    fn rx_media(&self) -> RxMedia {
        RxMedia {
            codec: self.cfg.codec,
            audio_pts: [self.payload_type, self.cfg.codec.payload_type()],
            event_pts: [self.cfg.telephone_event, self.our_event_pt],
        }
    }
}

/// A call's media. Dropping it stops the receive task and frees the ports.
pub(crate) struct MediaSession {
    pub local_port: u16,
    tx: Arc<Mutex<StreamTx>>,
    rx: Arc<Mutex<RxShared>>,
    _registration: Registration,
    rtcp_socket: Arc<RtpSocket>,
    rtcp: Arc<Mutex<Rtcp>>,
    rx_task: JoinHandle<()>,
    rtcp_task: JoinHandle<()>,
    events: mpsc::Receiver<MediaEvent>,
    playing: Option<oneshot::Receiver<PlayEnd>>,
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.rx_task.abort();
        self.rtcp_task.abort();
    }
}

impl MediaSession {
    /// Open media on a fresh port pair. `remote` is the SDP address (None until an
    /// answer arrives, for INVITEs without SDP).
    pub(crate) async fn open(
        pool: &PortPool,
        clock: &MediaClock,
        remote: Option<SocketAddr>,
        rx: RxConfig,
    ) -> Result<MediaSession, MediaError> {
        let (rtp, rtcp) = pool.bind().await?;
        let local_port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
        let socket = Arc::new(rtp);
        let tx = Arc::new(Mutex::new(StreamTx::new(socket.clone(), remote, rx.codec)));
        let registration = clock.register(&tx);
        let (ev_tx, events) = mpsc::channel(32);
        let armed_at = rx.timeout_armed.then(Instant::now);
        let mut receiver = Receiver::new(
            RxMedia::new(rx.codec, rx.telephone_event),
            rx.inband,
            rx.rtp_timeout,
            armed_at,
        );
        receiver.set_remote(remote, true);
        let shared = Arc::new(Mutex::new(RxShared {
            our_event_pt: rx.telephone_event,
            payload_type: rx.codec.payload_type(),
            cfg: rx,
            tap: Tap::None,
            receiver,
        }));
        let rx_task = tokio::spawn(receive(socket, tx.clone(), shared.clone(), ev_tx));
        let rtcp_socket = Arc::new(rtcp);
        let cname = format!("hotline-{:016x}", rand::random::<u64>());
        let rtcp = Arc::new(Mutex::new(Rtcp::new(
            Instant::now(),
            SystemTime::now(),
            &cname,
            rand::random(),
        )));
        let rtcp_task = tokio::spawn(report(
            rtcp_socket.clone(),
            tx.clone(),
            shared.clone(),
            rtcp.clone(),
        ));
        Ok(MediaSession {
            local_port,
            tx,
            rx: shared,
            _registration: registration,
            rtcp_socket,
            rtcp,
            rx_task,
            rtcp_task,
            events,
            playing: None,
        })
    }

    /// Start playing a prompt, replacing any that is playing.
    pub(crate) fn play(&mut self, prompt: Arc<Prompt>) {
        if let Ok(mut tx) = self.tx.lock() {
            self.playing = Some(tx.play(prompt));
        }
    }

    /// Play a prompt over and over (ringback) until stopped or replaced.
    pub(crate) fn play_looped(&mut self, prompt: Arc<Prompt>) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.play_looped(prompt);
        }
        self.playing = None;
    }

    /// [`set_media`](Self::set_media) with the payload type the far end's SDP
    /// gave `codec` (a dynamic number such as 96 for PCMU): we send with it and
    /// accept it, and our own number, on receive.
    pub(crate) fn set_media_pt(&self, codec: Codec, payload_type: u8, telephone_event: Option<u8>) {
        if let Ok(mut rx) = self.rx.lock() {
            rx.cfg.codec = codec;
            rx.cfg.telephone_event = telephone_event;
            rx.cfg.inband = telephone_event.is_none();
            rx.payload_type = payload_type;
            let media = rx.rx_media();
            rx.receiver.set_media(media, telephone_event.is_none());
        }
        if let Ok(mut tx) = self.tx.lock() {
            tx.codec = codec;
            tx.payload_type = payload_type;
        }
    }

    /// What this leg speaks, for setting up a relay.
    pub(crate) fn leg_media(&self) -> LegMedia {
        let (codec, payload_type, telephone_event) = self
            .rx
            .lock()
            .map(|rx| (rx.cfg.codec, rx.payload_type, rx.cfg.telephone_event))
            .unwrap_or((Codec::Pcmu, 0, None));
        LegMedia {
            codec,
            payload_type,
            telephone_event,
        }
    }

    /// How packets of `from` become packets of this leg. They go out through this
    /// leg's one outgoing stream, so the far end hears one unbroken stream.
    pub(crate) fn relay_into(&self, from: LegMedia) -> RelayDirection {
        RelayDirection::new(from, self.leg_media())
    }

    /// Send this leg's incoming audio to `peer` (through `relay`), and stop
    /// whatever `peer` was playing: its far end now hears this leg.
    pub(crate) fn bridge_to(&self, peer: &MediaSession, relay: RelayDirection) {
        if let Ok(mut t) = peer.tx.lock() {
            t.stop();
            t.switch();
        }
        if let Ok(mut rx) = self.rx.lock() {
            // Nobody listens for this leg's keys in a bridge: no in-band detector.
            rx.receiver.want_keys(false);
            rx.tap = Tap::Bridge {
                relay,
                peer: peer.tx.clone(),
            };
        }
    }

    /// Start (or restart) the RTP timeout now: the volunteer answered.
    pub(crate) fn arm_timeout(&self) {
        if let Ok(mut rx) = self.rx.lock() {
            rx.receiver.arm(Instant::now());
        }
    }

    /// Stop relaying or recording.
    pub(crate) fn untap(&self) -> Tap {
        self.rx
            .lock()
            .map(|mut rx| {
                rx.receiver.want_keys(true);
                std::mem::replace(&mut rx.tap, Tap::None)
            })
            .unwrap_or(Tap::None)
    }

    /// Start recording this leg's incoming audio.
    pub(crate) fn record(&self, recorder: Recorder) {
        if let Ok(mut rx) = self.rx.lock() {
            rx.tap = Tap::Record(recorder);
        }
    }

    /// Whether a recording has reached its maximum length.
    pub(crate) fn recording_full(&self) -> bool {
        self.rx
            .lock()
            .map(|rx| matches!(&rx.tap, Tap::Record(r) if r.is_full()))
            .unwrap_or(false)
    }

    /// Stop the prompt at once (barge-in).
    pub(crate) fn stop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.stop();
        }
        self.playing = None;
    }

    /// The next thing from the media path: a key, the RTP timeout, or the end of the
    /// prompt that was playing. Cancel-safe, so it can sit in a `select!`.
    pub(crate) async fn next(&mut self) -> MediaInput {
        tokio::select! {
            ev = self.events.recv() => MediaInput::Event(ev),
            _ = wait_playback(&mut self.playing) => MediaInput::PromptFinished,
        }
    }

    /// SRTP keys from the SDP (None: plain RTP). Set before media flows: packets are
    /// protected and unprotected in the leg's socket (see `RtpSocket`).
    pub(crate) fn set_srtp(&self, keys: Option<crate::media::srtp::SrtpKeys>) {
        let socket = self.tx.lock().map(|tx| tx.socket());
        if let Ok(socket) = socket {
            for s in [&*socket, &*self.rtcp_socket] {
                if let Err(e) = s.set_srtp(keys) {
                    tracing::warn!("could not key SRTP for this leg: {e}");
                }
            }
        }
    }

    /// What this leg sent and received so far, with what RTCP told us.
    pub(crate) fn quality(&self) -> Quality {
        let sent = self
            .tx
            .lock()
            .map(|t| t.sending(Instant::now()).packets)
            .unwrap_or(0);
        let stats = self
            .rx
            .lock()
            .map(|rx| rx.receiver.stats().clone())
            .unwrap_or_default();
        self.rtcp
            .lock()
            .map(|r| r.quality(sent, &stats))
            .unwrap_or_default()
    }

    /// A re-INVITE moved the caller's media or put the call on hold.
    pub(crate) fn update_remote(&self, remote: Option<SocketAddr>, codec: Codec, sending: bool) {
        if let Ok(mut rx) = self.rx.lock() {
            rx.receiver.set_remote(remote, sending);
        }
        if let Ok(mut tx) = self.tx.lock() {
            if remote.is_some() {
                tx.remote = remote;
            }
            tx.codec = codec;
            tx.set_sending(sending);
        }
    }
}

/// The receive loop: moves datagrams into the leg's [`Receiver`] and acts on
/// what it says (send where the leg latched, relay, record, report keys and
/// the RTP timeout). Decisions are the receiver's.
async fn receive(
    socket: Arc<RtpSocket>,
    tx: Arc<Mutex<StreamTx>>,
    shared: Arc<Mutex<RxShared>>,
    events: mpsc::Sender<MediaEvent>,
) {
    let mut inbox = Inbox::default();
    let mut out = [0u8; 2048];
    loop {
        let deadline = shared.lock().ok().and_then(|rx| rx.receiver.poll_timeout());
        let recv = socket.recv_into(&mut inbox);
        let received = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), recv).await,
            // Not armed yet: wake up now and then to see whether it is.
            None => tokio::time::timeout(Duration::from_millis(500), recv).await,
        };
        let (packet, from) = match received {
            Err(_elapsed) => {
                let timeout = shared
                    .lock()
                    .ok()
                    .and_then(|mut rx| rx.receiver.handle_timeout(Instant::now()));
                if let Some(ev) = timeout {
                    let _ = events.send(ev).await;
                    return;
                }
                continue;
            }
            Ok(Err(_)) => continue, // ICMP unreachable and friends: keep listening
            Ok(Ok(r)) => r,
        };
        let key = {
            let Ok(mut guard) = shared.lock() else {
                return;
            };
            let rx = &mut *guard;
            let now = Instant::now();
            let Some(got) = rx.receiver.handle_packet(now, from, packet) else {
                continue;
            };
            if let Some(addr) = got.latched {
                // Symmetric RTP: send where the far end really is.
                if let Ok(mut t) = tx.lock() {
                    t.remote = Some(addr);
                }
            }
            match &mut rx.tap {
                Tap::None => {}
                Tap::Bridge { relay, peer } => {
                    // Our lock, then the peer's stream: nothing locks a stream and
                    // then a receive side, so the two legs cannot deadlock.
                    if let Ok(mut p) = peer.lock() {
                        p.relay_view(relay, &got.rtp, got.audio, now, &mut out);
                    }
                }
                Tap::Record(rec) => {
                    if got.audio {
                        rec.push_rtp_payload(rx.cfg.codec, got.rtp.payload);
                    }
                }
            }
            got.key
        };
        if let Some((key, method)) = key {
            if events.send(MediaEvent::Dtmf(key, method)).await.is_err() {
                return;
            }
        }
    }
}

/// The RTCP loop: the leg's report when it is due, and the peer's reports as
/// they come. Reports go where the peer's RTCP comes from when it comes from the
/// leg's media address, else to the RTP port + 1 (RFC 3550 11); a datagram from
/// anywhere else is ignored, so the port reflects nothing to strangers.
async fn report(
    socket: Arc<RtpSocket>,
    tx: Arc<Mutex<StreamTx>>,
    shared: Arc<Mutex<RxShared>>,
    rtcp: Arc<Mutex<Rtcp>>,
) {
    let mut buf = [0u8; 1500];
    let mut latched: Option<SocketAddr> = None;
    loop {
        let Ok(due) = rtcp.lock().map(|r| r.poll_timeout()) else {
            return;
        };
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = got else { continue };
                let Ok((ssrc, remote)) = tx.lock().map(|t| (t.ssrc(), t.remote)) else {
                    return;
                };
                if remote.is_some_and(|r| r.ip() != from.ip()) {
                    continue;
                }
                let read = rtcp.lock().map(|mut r| r.handle_packet(Instant::now(), &buf[..len], ssrc));
                match read {
                    Ok(Ok(())) => latched = Some(from),
                    Ok(Err(e)) => tracing::trace!(%from, "RTCP datagram ignored: {e}"),
                    Err(_) => return,
                }
            }
            _ = tokio::time::sleep_until(due.into()) => {
                let now = Instant::now();
                let Ok((sending, remote)) = tx.lock().map(|t| (t.sending(now), t.remote)) else {
                    return;
                };
                let Ok(stats) = shared.lock().map(|rx| rx.receiver.stats().clone()) else {
                    return;
                };
                let Ok(packet) = rtcp.lock().map(|mut r| r.handle_timeout(now, sending, &stats)) else {
                    return;
                };
                let to = match (latched, remote) {
                    (Some(l), Some(r)) if l.ip() == r.ip() => Some(l),
                    (_, Some(r)) => Some(SocketAddr::new(r.ip(), r.port().wrapping_add(1))),
                    (l, None) => l,
                };
                if let (Some(packet), Some(to)) = (packet, to) {
                    let _ = socket.try_send_to(&packet, to);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pool_hands_out_even_ports_in_range_and_wraps() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 20000, 20005);
        let ports: Vec<u16> = (0..7).map(|_| pool.next_port()).collect();
        assert_eq!(ports, vec![20000, 20002, 20004, 20000, 20002, 20004, 20000]);
    }

    #[test]
    fn odd_first_port_is_rounded_up_to_even() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 20001, 20010);
        assert_eq!(pool.next_port(), 20002);
    }
}
