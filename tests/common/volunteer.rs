//! A volunteer's phone for the forwarding tests: a SIP UAS over UDP on 127.0.0.1 that the
//! roster points at (`sip:<user>@127.0.0.1:<port>`), written from scratch like the caller's
//! [`super::phone`] so it shares no code with the daemon's SIP stack.
//!
//! Every INVITE with a new Call-ID becomes a [`Leg`] with its own RTP socket, handled as the
//! phone's current [`Behaviour`] says: ring and answer, busy, decline, ring forever, early
//! media, redirect. The reader task answers CANCEL (200, then 487 to the INVITE, RFC 3261
//! section 9.2), BYE, INFO and OPTIONS at any moment and records every request, so a test
//! can check what the daemon sent and when. Finals are retransmitted until ACKed (Timer G).
//! Everything is time-bounded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::error::{PhoneError, Result};
use super::g711::{dtmf_event_code, tone, PEAK_MINUS_10_DBM0};
use super::media::{lock, Frame, Media, FRAME_SAMPLES};
use super::phone::Received;
use super::rtp::{RtpPacket, TelephoneEvent};
use super::sdp::{build_sdp, parse_sdp, RemoteSdp};
use super::sip::{new_branch, random_token, response_to, uri_in, SipMessage};
use super::srtp::{self, PhoneSrtp};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// Bound on our own transactions (BYE, INFO) and on retransmitting a final response.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// What the phone does with each new INVITE.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// 100, 180, then after `after` a 200 OK with the SDP answer.
    Answer { after: Duration },
    /// 486 Busy Here.
    Busy,
    /// 603 Decline.
    Decline,
    /// 180, then nothing: only a CANCEL ends it.
    NoAnswer,
    /// 183 with SDP and a tone of `tone_hz` as early media; then a 200 after `answer_after`,
    /// or ring until cancelled.
    EarlyMedia {
        tone_hz: f64,
        answer_after: Option<Duration>,
    },
    /// 302 Moved Temporarily with this Contact URI.
    Redirect(String),
    /// 180, then a 200 OK sent just as the CANCEL arrives, so the two cross (RFC 3261
    /// section 9.1): the CANCEL gets 200 but no 487, and the caller side must ACK and BYE.
    AnswerWhenCancelled,
}

/// Where one INVITE stands, from the phone's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegState {
    /// Provisional responses only so far.
    Proceeding,
    /// 200 sent, no ACK yet.
    Answered,
    /// 200 ACKed: the call is up.
    Confirmed,
    /// A final non-2xx of ours (486, 603, 302).
    Rejected(u16),
    /// CANCEL arrived before we answered: 487 sent.
    Cancelled,
    /// BYE sent or received.
    Ended,
}

type Txns = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<SipMessage>>>>;

struct Shared {
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    user: String,
    behaviour: Mutex<Behaviour>,
    /// G.711 payload type we answer with (0 PCMU, 8 PCMA).
    codec: Mutex<u8>,
    /// Tone sent once answered (standing for the volunteer's voice); silence if `None`.
    talk_tone: Mutex<Option<f64>>,
    log: Mutex<Vec<Received>>,
    legs: Mutex<Vec<Arc<Leg>>>,
    leg_count: watch::Sender<usize>,
    txns: Txns,
}

/// A volunteer's phone. Dropping it stops its reader and every leg's media.
pub struct VolunteerPhone {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

impl Drop for VolunteerPhone {
    fn drop(&mut self) {
        self.reader.abort();
        for leg in lock(&self.shared.legs).iter() {
            leg.stop.send_replace(true);
            lock(&leg.media).take();
        }
    }
}

impl VolunteerPhone {
    /// Bind a UDP socket on 127.0.0.1 and answer INVITEs to `user` as `behaviour` says,
    /// in PCMU, with silence as the volunteer's audio (see [`VolunteerPhone::set_codec`],
    /// [`VolunteerPhone::set_talk_tone`]).
    pub async fn new(user: &str, behaviour: Behaviour) -> Result<VolunteerPhone> {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let shared = Arc::new(Shared {
            local: sock.local_addr()?,
            sock,
            user: user.to_string(),
            behaviour: Mutex::new(behaviour),
            codec: Mutex::new(0),
            talk_tone: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            legs: Mutex::new(Vec::new()),
            leg_count: watch::channel(0).0,
            txns: Arc::new(Mutex::new(HashMap::new())),
        });
        let reader = tokio::spawn(read_loop(shared.clone()));
        Ok(VolunteerPhone { shared, reader })
    }

    /// The URI to put in the roster.
    pub fn uri(&self) -> String {
        format!("sip:{}@{}", self.shared.user, self.shared.local)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// What to do with the next INVITEs.
    pub fn set_behaviour(&self, b: Behaviour) {
        *lock(&self.shared.behaviour) = b;
    }

    /// Answer with this G.711 payload type (0 or 8).
    pub fn set_codec(&self, pt: u8) {
        *lock(&self.shared.codec) = pt;
    }

    /// After answering, send a continuous tone of this frequency instead of silence.
    pub fn set_talk_tone(&self, freq_hz: Option<f64>) {
        *lock(&self.shared.talk_tone) = freq_hz;
    }

    /// Every SIP message received, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.log).clone()
    }

    /// The legs (one per INVITE with a new Call-ID), in arrival order.
    pub fn legs(&self) -> Vec<Arc<Leg>> {
        lock(&self.shared.legs).clone()
    }

    /// Wait for the `n`th INVITE (1-based) to arrive.
    pub async fn wait_for_leg(&self, n: usize, limit: Duration) -> Result<Arc<Leg>> {
        let mut rx = self.shared.leg_count.subscribe();
        let got = timeout(limit, async { rx.wait_for(|c| *c >= n).await.map(|_| ()) }).await;
        match got {
            Ok(Ok(_)) => Ok(lock(&self.shared.legs)[n - 1].clone()),
            _ => Err(PhoneError::Timeout(format!(
                "{}: INVITE #{n} not received within {limit:?}",
                self.shared.user
            ))),
        }
    }
}

/// One INVITE to the phone and the dialog it may become.
pub struct Leg {
    /// The INVITE as first received.
    pub invite: SipMessage,
    pub invite_at: Instant,
    /// Where the INVITE came from (responses go back there).
    pub peer: SocketAddr,
    /// The daemon's SDP offer.
    pub offer: Option<RemoteSdp>,
    /// G.711 type of our answer, and the telephone-event type.
    pub audio_pt: u8,
    pub event_pt: u8,
    behaviour: Behaviour,
    talk_tone: Option<f64>,
    to_tag: String,
    sock: Arc<UdpSocket>,
    rtp: Arc<UdpSocket>,
    local: SocketAddr,
    user: String,
    txns: Txns,
    state: watch::Sender<LegState>,
    /// Our last response to the INVITE (sent again on a retransmitted INVITE).
    last_response: Mutex<Option<Vec<u8>>>,
    final_acked: watch::Sender<bool>,
    cancel_at: watch::Sender<Option<Instant>>,
    bye_at: watch::Sender<Option<Instant>>,
    requests: Mutex<Vec<(Instant, SipMessage)>>,
    media: Mutex<Option<Arc<Media>>>,
    stop: watch::Sender<bool>,
    cseq: AtomicU32,
    /// Our SDES key and the leg's SRTP, when the daemon offered RTP/SAVP with a key.
    srtp: Option<([u8; 30], Arc<PhoneSrtp>)>,
}

impl Leg {
    pub fn state(&self) -> LegState {
        *self.state.borrow()
    }

    /// The From display name of the INVITE, unquoted (the daemon puts the caller's number there).
    pub fn caller_display_name(&self) -> Option<String> {
        let from = self.invite.header("From")?;
        let name = from[..from.find('<')?].trim().trim_matches('"').trim();
        (!name.is_empty()).then(|| name.to_string())
    }

    pub fn request_uri(&self) -> String {
        self.invite.uri().unwrap_or_default().to_string()
    }

    /// Every request received in this Call-ID after the INVITE (ACK, CANCEL, BYE, INFO...).
    pub fn requests(&self) -> Vec<SipMessage> {
        lock(&self.requests)
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub fn methods_received(&self) -> Vec<String> {
        lock(&self.requests)
            .iter()
            .filter_map(|(_, m)| m.method().map(str::to_string))
            .collect()
    }

    /// When the CANCEL arrived, if it did.
    pub fn cancel_at(&self) -> Option<Instant> {
        *self.cancel_at.borrow()
    }

    pub async fn wait_for_cancel(&self, limit: Duration) -> Result<Instant> {
        let mut rx = self.cancel_at.subscribe();
        let got = timeout(limit, async {
            rx.wait_for(|c| c.is_some()).await.map(|v| *v)
        })
        .await;
        match got {
            Ok(Ok(at)) => Ok(at.unwrap()),
            _ => Err(PhoneError::Timeout(format!("no CANCEL within {limit:?}"))),
        }
    }

    pub fn bye_received(&self) -> bool {
        self.bye_at.borrow().is_some()
    }

    pub async fn wait_for_bye(&self, limit: Duration) -> Result<Instant> {
        let mut rx = self.bye_at.subscribe();
        let got = timeout(limit, async {
            rx.wait_for(|c| c.is_some()).await.map(|v| *v)
        })
        .await;
        match got {
            Ok(Ok(at)) => Ok(at.unwrap()),
            _ => Err(PhoneError::Timeout(format!("no BYE within {limit:?}"))),
        }
    }

    /// Wait until the state satisfies `want`.
    pub async fn wait_state(
        &self,
        want: impl Fn(LegState) -> bool,
        limit: Duration,
    ) -> Result<LegState> {
        let mut rx = self.state.subscribe();
        let got = timeout(limit, async { rx.wait_for(|s| want(*s)).await.map(|v| *v) }).await;
        match got {
            Ok(Ok(s)) => Ok(s),
            _ => Err(PhoneError::Timeout(format!(
                "leg state still {:?} after {limit:?}",
                self.state()
            ))),
        }
    }

    /// Wait for the ACK of our 200.
    pub async fn wait_confirmed(&self, limit: Duration) -> Result<()> {
        self.wait_state(
            |s| matches!(s, LegState::Confirmed | LegState::Ended),
            limit,
        )
        .await
        .map(|_| ())
    }

    /// Whether the daemon ACKed our final response.
    pub fn final_acked(&self) -> bool {
        *self.final_acked.borrow()
    }

    pub fn rtp_packets(&self) -> Vec<RtpPacket> {
        lock(&self.media)
            .as_ref()
            .map(|m| m.packets())
            .unwrap_or_default()
    }

    fn media(&self) -> Result<Arc<Media>> {
        lock(&self.media)
            .clone()
            .ok_or_else(|| PhoneError::Protocol("leg has no media".into()))
    }

    /// Send a continuous tone (or silence with `None`) from now on.
    pub fn play_tone(&self, freq_hz: Option<f64>) -> Result<()> {
        self.media()?
            .set_fill(freq_hz.map(|f| tone(f, 1000, PEAK_MINUS_10_DBM0)));
        Ok(())
    }

    /// An RFC 4733 key press: start with marker, updates, three end packets.
    pub async fn send_dtmf_rfc4733(&self, key: char, duration_ms: u32) -> Result<()> {
        let event = dtmf_event_code(key)
            .ok_or_else(|| PhoneError::Protocol(format!("not a DTMF key: {key:?}")))?;
        let updates = (duration_ms / 20).max(1);
        let frames = (0..updates + 3)
            .map(|i| {
                let te = TelephoneEvent {
                    event,
                    end: i >= updates,
                    volume: 10,
                    duration: ((i.min(updates - 1) + 1) * FRAME_SAMPLES as u32) as u16,
                };
                Frame {
                    pt: self.event_pt,
                    marker: i == 0,
                    payload: te.to_bytes().to_vec(),
                    event: true,
                }
            })
            .collect();
        self.media()?.send_frames(frames).await
    }

    /// A key press by SIP INFO (application/dtmf-relay); returns the final status.
    pub async fn send_dtmf_info(&self, key: char) -> Result<u16> {
        let mut req = self.request("INFO");
        req.set_body(
            "application/dtmf-relay",
            format!("Signal={key}\r\nDuration=160\r\n").into_bytes(),
        );
        Ok(self.transact(&req).await?.status().unwrap_or(0))
    }

    /// Hang up (BYE); returns the final status.
    pub async fn hangup(&self) -> Result<u16> {
        self.stop.send_replace(true);
        self.state.send_replace(LegState::Ended);
        let req = self.request("BYE");
        Ok(self.transact(&req).await?.status().unwrap_or(0))
    }

    /// A request in our dialog (RFC 3261 section 12.2.1.1): we are the UAS, so From is the
    /// INVITE's To with our tag, the Request-URI is the daemon's Contact.
    fn request(&self, method: &str) -> SipMessage {
        let inv = &self.invite;
        let target = inv
            .header("Contact")
            .map(uri_in)
            .unwrap_or_else(|| format!("sip:{}", self.peer));
        let cseq = self.cseq.fetch_add(1, Ordering::SeqCst) + 1;
        let mut req = SipMessage::request(method, &target)
            .with(
                "Via",
                format!("SIP/2.0/UDP {};branch={};rport", self.local, new_branch()),
            )
            .with("Max-Forwards", "70")
            .with(
                "From",
                format!(
                    "{};tag={}",
                    inv.header("To").unwrap_or_default(),
                    self.to_tag
                ),
            )
            .with("To", inv.header("From").unwrap_or_default())
            .with("Call-ID", inv.call_id().unwrap_or_default())
            .with("CSeq", format!("{cseq} {method}"));
        for r in inv.header_values("Record-Route") {
            req.push("Route", r);
        }
        if method != "BYE" {
            req.push("Contact", format!("<sip:{}@{}>", self.user, self.local));
        }
        req
    }

    /// Non-INVITE client transaction over UDP (Timer E), bounded.
    async fn transact(&self, req: &SipMessage) -> Result<SipMessage> {
        let branch = req.branch().unwrap_or_default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.txns).insert(branch.clone(), tx);
        let dest = req.uri().and_then(host_port).unwrap_or(self.peer);
        let bytes = req.to_bytes();
        let deadline = Instant::now() + TRANSACTION_TIMEOUT;
        let mut interval = T1;
        let out = loop {
            self.sock.send_to(&bytes, dest).await?;
            let wake = (Instant::now() + interval).min(deadline);
            let got = loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) if m.status().unwrap_or(0) >= 200 => break Some(m),
                        Some(_) => continue,
                        None => break None,
                    },
                    _ = sleep_until(wake) => break None,
                }
            };
            if let Some(m) = got {
                break Ok(m);
            }
            if Instant::now() >= deadline {
                break Err(PhoneError::Timeout(format!(
                    "{}: no final response within {TRANSACTION_TIMEOUT:?}",
                    req.method().unwrap_or("?")
                )));
            }
            interval = (interval * 2).min(T2);
        };
        lock(&self.txns).remove(&branch);
        out
    }

    /// A response to the INVITE with our To tag.
    fn response(&self, status: u16, reason: &str) -> SipMessage {
        response_to(&self.invite, status, reason, &self.to_tag)
    }

    async fn send_response(&self, resp: &SipMessage) {
        let bytes = resp.to_bytes();
        *lock(&self.last_response) = Some(bytes.clone());
        let _ = self.sock.send_to(&bytes, self.peer).await;
    }

    async fn provisional(&self, status: u16, reason: &str) {
        if self.state() == LegState::Proceeding {
            let resp = self
                .response(status, reason)
                .with("Contact", format!("<sip:{}@{}>", self.user, self.local));
            self.send_response(&resp).await;
        }
    }

    fn answer_sdp(&self) -> String {
        let plain = build_sdp(
            self.rtp.local_addr().expect("RTP socket address"),
            &[self.audio_pt, self.event_pt],
            "sendrecv",
            1,
        );
        match &self.srtp {
            Some((key, _)) => srtp::secure_sdp(&plain, key),
            None => plain,
        }
    }

    /// Whether this leg's media is SRTP (the daemon offered RTP/SAVP with a key).
    pub fn is_srtp(&self) -> bool {
        self.srtp.is_some()
    }

    /// Packets that arrived and did not unprotect (SRTP legs only).
    pub fn srtp_failures(&self) -> u64 {
        lock(&self.media).as_ref().map_or(0, |m| m.srtp_failures())
    }

    /// Start media toward the daemon's offer (once); the pacer sends silence or `fill`.
    fn start_media(&self, fill: Option<f64>) {
        let mut m = lock(&self.media);
        if m.is_none() {
            *m = Some(Arc::new(Media::start_srtp(
                self.rtp.clone(),
                self.offer.as_ref().and_then(|o| o.rtp_addr),
                (self.audio_pt, self.event_pt),
                true,
                self.stop.subscribe(),
                self.srtp.as_ref().map(|(_, s)| s.clone()),
            )));
        }
        if let Some(media) = m.as_ref() {
            media.set_fill(fill.map(|f| tone(f, 1000, PEAK_MINUS_10_DBM0)));
        }
    }

    async fn early_media(&self, tone_hz: f64) {
        if self.state() != LegState::Proceeding {
            return;
        }
        let mut resp = self
            .response(183, "Session Progress")
            .with("Contact", format!("<sip:{}@{}>", self.user, self.local));
        resp.set_body("application/sdp", self.answer_sdp().into_bytes());
        self.start_media(Some(tone_hz));
        self.send_response(&resp).await;
    }

    /// 200 OK with the SDP answer, unless the INVITE was cancelled meanwhile.
    async fn answer(self: &Arc<Self>, talk_tone: Option<f64>) {
        let won = self.state.send_if_modified(|s| {
            let go = *s == LegState::Proceeding;
            if go {
                *s = LegState::Answered;
            }
            go
        });
        if !won {
            return;
        }
        let mut resp = self
            .response(200, "OK")
            .with("Contact", format!("<sip:{}@{}>", self.user, self.local));
        resp.set_body("application/sdp", self.answer_sdp().into_bytes());
        self.start_media(talk_tone);
        self.send_response(&resp).await;
        self.clone().retransmit_final(resp.to_bytes());
    }

    /// A final non-2xx (with a Contact for 3xx), unless cancelled meanwhile.
    async fn reject(self: &Arc<Self>, status: u16, reason: &str, contact: Option<&str>) {
        let won = self.state.send_if_modified(|s| {
            let go = *s == LegState::Proceeding;
            if go {
                *s = LegState::Rejected(status);
            }
            go
        });
        if !won {
            return;
        }
        let mut resp = self.response(status, reason);
        if let Some(c) = contact {
            resp.push("Contact", format!("<{c}>"));
        }
        self.send_response(&resp).await;
        self.clone().retransmit_final(resp.to_bytes());
    }

    /// Send a final response again at T1, 2 T1, ... (capped at T2) until the ACK (RFC 3261
    /// sections 13.3.1.4 and 17.2.1), bounded.
    fn retransmit_final(self: Arc<Self>, bytes: Vec<u8>) {
        tokio::spawn(async move {
            let mut acked = self.final_acked.subscribe();
            let deadline = Instant::now() + 2 * TRANSACTION_TIMEOUT;
            let mut interval = T1;
            loop {
                let wake = (Instant::now() + interval).min(deadline);
                tokio::select! {
                    _ = acked.wait_for(|a| *a) => return,
                    _ = sleep_until(wake) => {}
                }
                if Instant::now() >= deadline || *self.stop.borrow() && self.bye_received() {
                    return;
                }
                let _ = self.sock.send_to(&bytes, self.peer).await;
                interval = (interval * 2).min(T2);
            }
        });
    }
}

/// `sip:user@host:port` to a socket address (ours are all numeric).
fn host_port(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("sip:")?;
    let hp = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    hp.split(';').next()?.parse().ok()
}

async fn read_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = match shared.sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(_) => {
                sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let rec = Received {
            msg: SipMessage::parse(&buf[..n]).ok(),
            bytes: buf[..n].to_vec(),
            from,
            at: Instant::now(),
        };
        lock(&shared.log).push(rec.clone());
        let Some(msg) = rec.msg else { continue };
        if msg.is_request() {
            on_request(&shared, msg, from, rec.at).await;
        } else if let Some(branch) = msg.branch() {
            if let Some(tx) = lock(&shared.txns).get(&branch) {
                let _ = tx.send(msg);
            }
        }
    }
}

async fn on_request(shared: &Arc<Shared>, req: SipMessage, from: SocketAddr, at: Instant) {
    let method = req.method().unwrap_or_default().to_string();
    let call_id = req.call_id().unwrap_or_default().to_string();
    let leg = lock(&shared.legs)
        .iter()
        .find(|l| l.invite.call_id() == Some(call_id.as_str()))
        .cloned();
    let reply = |status: u16, reason: &str| {
        let resp = response_to(&req, status, reason, &random_token(10));
        let sock = shared.sock.clone();
        async move {
            let _ = sock.send_to(&resp.to_bytes(), from).await;
        }
    };
    let Some(leg) = leg else {
        match method.as_str() {
            "INVITE" => new_leg(shared, req, from, at).await,
            "OPTIONS" => reply(200, "OK").await,
            "ACK" => {}
            _ => reply(481, "Call/Transaction Does Not Exist").await,
        }
        return;
    };
    lock(&leg.requests).push((at, req.clone()));
    let same_txn = req.branch() == leg.invite.branch();
    match method.as_str() {
        "INVITE" if same_txn => {
            // A retransmission: our last response again.
            let last = lock(&leg.last_response).clone();
            if let Some(b) = last {
                let _ = shared.sock.send_to(&b, from).await;
            }
        }
        "INVITE" => {
            // A re-INVITE: keep media as it is.
            let mut resp = response_to(&req, 200, "OK", &leg.to_tag)
                .with("Contact", format!("<sip:{}@{}>", leg.user, leg.local));
            resp.set_body("application/sdp", leg.answer_sdp().into_bytes());
            let _ = shared.sock.send_to(&resp.to_bytes(), from).await;
        }
        "ACK" => {
            leg.final_acked.send_replace(true);
            leg.state.send_if_modified(|s| {
                let up = *s == LegState::Answered;
                if up {
                    *s = LegState::Confirmed;
                }
                up
            });
        }
        "CANCEL" => {
            if same_txn {
                if matches!(leg.behaviour, Behaviour::AnswerWhenCancelled) {
                    leg.answer(leg.talk_tone).await;
                }
                reply(200, "OK").await;
                let cancelled = leg.state.send_if_modified(|s| {
                    let go = *s == LegState::Proceeding;
                    if go {
                        *s = LegState::Cancelled;
                    }
                    go
                });
                if cancelled {
                    leg.stop.send_replace(true);
                    let resp = leg.response(487, "Request Terminated");
                    leg.send_response(&resp).await;
                    leg.clone().retransmit_final(resp.to_bytes());
                }
            } else {
                reply(481, "Call/Transaction Does Not Exist").await;
            }
            // Last, so that a test woken by it sees the state the CANCEL led to.
            leg.cancel_at.send_if_modified(|c| {
                let first = c.is_none();
                if first {
                    *c = Some(at);
                }
                first
            });
        }
        "BYE" => {
            reply(200, "OK").await;
            leg.stop.send_replace(true);
            leg.state.send_replace(LegState::Ended);
            leg.bye_at.send_if_modified(|b| {
                let first = b.is_none();
                if first {
                    *b = Some(at);
                }
                first
            });
        }
        "INFO" | "OPTIONS" | "UPDATE" | "NOTIFY" => reply(200, "OK").await,
        _ => reply(501, "Not Implemented").await,
    }
}

async fn new_leg(shared: &Arc<Shared>, invite: SipMessage, from: SocketAddr, at: Instant) {
    let rtp = match UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => Arc::new(s),
        Err(_) => return,
    };
    let offer = parse_sdp(&invite.body_str()).ok();
    let srtp = offer
        .as_ref()
        .filter(|o| srtp::is_secure(&o.raw))
        .and_then(|o| srtp::remote_key(&o.raw))
        .map(|theirs| {
            let ours = srtp::new_key();
            (ours, Arc::new(PhoneSrtp::new(&ours, &theirs)))
        });
    let leg = Arc::new(Leg {
        offer: offer.clone(),
        audio_pt: *lock(&shared.codec),
        event_pt: offer
            .as_ref()
            .and_then(|o| o.telephone_event_pt)
            .unwrap_or(101),
        behaviour: lock(&shared.behaviour).clone(),
        talk_tone: *lock(&shared.talk_tone),
        invite,
        invite_at: at,
        peer: from,
        to_tag: random_token(10),
        sock: shared.sock.clone(),
        rtp,
        local: shared.local,
        user: shared.user.clone(),
        txns: shared.txns.clone(),
        state: watch::channel(LegState::Proceeding).0,
        last_response: Mutex::new(None),
        final_acked: watch::channel(false).0,
        cancel_at: watch::channel(None).0,
        bye_at: watch::channel(None).0,
        requests: Mutex::new(Vec::new()),
        media: Mutex::new(None),
        stop: watch::channel(false).0,
        cseq: AtomicU32::new(1000),
        srtp,
    });
    let count = {
        let mut legs = lock(&shared.legs);
        legs.push(leg.clone());
        legs.len()
    };
    shared.leg_count.send_replace(count);
    let behaviour = lock(&shared.behaviour).clone();
    let talk_tone = *lock(&shared.talk_tone);
    let trying = response_to(&leg.invite, 100, "Trying", "");
    leg.send_response(&trying).await;
    tokio::spawn(async move {
        match behaviour {
            Behaviour::Answer { after } => {
                leg.provisional(180, "Ringing").await;
                sleep(after).await;
                leg.answer(talk_tone).await;
            }
            Behaviour::Busy => leg.reject(486, "Busy Here", None).await,
            Behaviour::Decline => leg.reject(603, "Decline", None).await,
            Behaviour::NoAnswer | Behaviour::AnswerWhenCancelled => {
                leg.provisional(180, "Ringing").await
            }
            Behaviour::EarlyMedia {
                tone_hz,
                answer_after,
            } => {
                leg.early_media(tone_hz).await;
                if let Some(after) = answer_after {
                    sleep(after).await;
                    leg.answer(talk_tone).await;
                }
            }
            Behaviour::Redirect(contact) => {
                leg.reject(302, "Moved Temporarily", Some(&contact)).await
            }
        }
    });
}
