//! A SIP test phone: raw SIP text over real sockets, written from scratch so that it is an
//! honest peer for the daemon (it shares no code with the daemon's SIP stack).
//!
//! Layers, as in RFC 3261: a transport (one UDP socket, or one TCP connection to the server)
//! read by a background task; client transactions matched by (top Via branch, CSeq method);
//! a dialog per call; media in [`super::media`]. Requests from the server (BYE, INFO,
//! OPTIONS) are answered by the background task at any moment and recorded.
//!
//! One call at a time per phone (they share the RTP socket); use two phones for two calls.
//! Everything is time-bounded: no test can hang on the phone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

pub use super::error::{PhoneError, Result};
pub use super::g711::*;
pub use super::media::{lock, Frame, Media, FRAME_SAMPLES, PTIME};
pub use super::rtp::*;
pub use super::sdp::*;
pub use super::sip::*;
use super::srtp;

/// RFC 3261 Timer T1 (RTT estimate) and T2 (cap for non-INVITE retransmissions).
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// Default bound on one transaction or wait.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2); made with [`Phone::new_tls`].
    Tls,
}

impl Transport {
    fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// The writing half of a TCP or TLS connection.
type StreamWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// One SIP message as it arrived: the exact bytes, the parse (if they parse), source, time.
#[derive(Clone, Debug)]
pub struct Received {
    pub bytes: Vec<u8>,
    pub msg: Option<SipMessage>,
    pub from: SocketAddr,
    pub at: Instant,
}

/// How to place a call. `CallOptions::default()` is a well-behaved phone dialling 6289110.
#[derive(Clone, Debug)]
pub struct CallOptions {
    pub to_user: String,
    pub from_user: String,
    /// Call-ID to use; random when `None`.
    pub call_id: Option<String>,
    /// Put an SDP offer in the INVITE. Without it the 200 must carry the offer.
    pub offer_sdp: bool,
    /// Payload types offered, in preference order (dynamic 96-127 = telephone-event).
    pub codecs: Vec<u8>,
    /// Replaces the generated SDP body entirely (with `offer_sdp`).
    pub sdp_override: Option<String>,
    /// When the INVITE had no offer, answer the 200's offer in the ACK.
    pub sdp_in_ack: bool,
    /// Skip the ACK for the first final response; ACK its retransmission.
    pub drop_first_ack: bool,
    /// Never ACK: the server must retransmit its final response (Timer G / 2xx retransmission).
    pub never_ack: bool,
    /// Send the INVITE twice back to back, same branch: the server must absorb the copy.
    pub duplicate_invite: bool,
    /// Send silence every 20 ms while the call is up (false: test the daemon's RTP timeout).
    pub send_rtp: bool,
    pub extra_headers: Vec<(String, String)>,
    /// Bound on waiting for the final response.
    pub timeout: Duration,
    /// Offer RTP/SAVP with an SDES key (RFC 4568); media is SRTP if the answer keys it.
    pub srtp: bool,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            to_user: "6289110".into(),
            from_user: "tester".into(),
            call_id: None,
            offer_sdp: true,
            codecs: vec![0, 8, 101],
            sdp_override: None,
            sdp_in_ack: true,
            drop_first_ack: false,
            never_ack: false,
            duplicate_invite: false,
            send_rtp: true,
            extra_headers: Vec::new(),
            timeout: TRANSACTION_TIMEOUT,
            srtp: false,
        }
    }
}

impl CallOptions {
    /// Offer only G.729 (pt 18): a G.711-only server must answer 488.
    pub fn g729_only() -> Self {
        CallOptions {
            codecs: vec![18],
            ..Self::default()
        }
    }

    /// An INVITE without SDP: the offer comes in the 200, the answer goes in the ACK.
    pub fn no_sdp() -> Self {
        CallOptions {
            offer_sdp: false,
            ..Self::default()
        }
    }
}

/// Where the phone sends SIP.
#[derive(Clone)]
enum Wire {
    Udp {
        sock: Arc<UdpSocket>,
        server: SocketAddr,
    },
    Stream(Arc<tokio::sync::Mutex<StreamWriter>>),
}

impl Wire {
    async fn send(&self, bytes: &[u8]) -> Result<()> {
        match self {
            Wire::Udp { sock, server } => sock.send_to(bytes, *server).await.map(|_| ())?,
            Wire::Stream(w) => w.lock().await.write_all(bytes).await?,
        }
        Ok(())
    }

    /// Send a response: over UDP to where the request came from, over TCP on the connection.
    async fn reply(&self, bytes: &[u8], to: SocketAddr) -> Result<()> {
        match self {
            Wire::Udp { sock, .. } => sock.send_to(bytes, to).await.map(|_| ())?,
            Wire::Stream(w) => w.lock().await.write_all(bytes).await?,
        }
        Ok(())
    }
}

/// What the background reader knows about one call, by Call-ID.
struct DialogEvents {
    /// Turns true when the server's BYE arrives or ours is sent: media sending stops.
    ended: watch::Sender<bool>,
    bye_received: watch::Sender<bool>,
    requests: Mutex<Vec<SipMessage>>,
}

type TxnKey = (String, String);

struct Shared {
    wire: Wire,
    transport: Transport,
    local: SocketAddr,
    server: SocketAddr,
    txns: Mutex<HashMap<TxnKey, mpsc::UnboundedSender<Received>>>,
    dialogs: Mutex<HashMap<String, Arc<DialogEvents>>>,
    log: Mutex<Vec<Received>>,
}

impl Shared {
    fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.transport.via_name(),
            self.local
        )
    }

    fn contact(&self, user: &str) -> String {
        match self.transport {
            Transport::Udp => format!("<sip:{user}@{}>", self.local),
            Transport::Tcp => format!("<sip:{user}@{};transport=tcp>", self.local),
            Transport::Tls => format!("<sip:{user}@{};transport=tls>", self.local),
        }
    }
}

/// A test phone bound to one SIP server.
pub struct Phone {
    shared: Arc<Shared>,
    inbox: mpsc::UnboundedReceiver<Received>,
    rtp: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Phone {
    /// Bind the SIP socket (UDP) or connect to `server` (TCP), and bind the RTP socket,
    /// all on 127.0.0.1 with OS-chosen ports.
    pub async fn new(transport: Transport, server: SocketAddr) -> Result<Phone> {
        Self::new_from(transport, server, std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// Like [`Phone::new`] from another local address (all of 127.0.0.0/8 is loopback):
    /// a second "host" for tests of per-address limits.
    pub async fn new_from(
        transport: Transport,
        server: SocketAddr,
        ip: std::net::IpAddr,
    ) -> Result<Phone> {
        match transport {
            Transport::Udp => {
                let rtp = Arc::new(UdpSocket::bind((ip, 0)).await?);
                let (inbox_tx, inbox) = mpsc::unbounded_channel();
                let sock = Arc::new(UdpSocket::bind((ip, 0)).await?);
                let shared = Self::shared(
                    Wire::Udp {
                        sock: sock.clone(),
                        server,
                    },
                    transport,
                    sock.local_addr()?,
                    server,
                );
                let reader = tokio::spawn(read_udp(shared.clone(), sock, inbox_tx));
                Ok(Phone {
                    shared,
                    inbox,
                    rtp,
                    reader,
                })
            }
            Transport::Tcp => {
                let stream = connect_from(ip, server).await?;
                let local = stream.local_addr()?;
                Self::over_stream(stream, Transport::Tcp, local, server).await
            }
            Transport::Tls => Err(PhoneError::Protocol(
                "a TLS phone needs a connector: Phone::new_tls".into(),
            )),
        }
    }

    /// A phone over TLS from `ip` to `server`, verifying the server as `name`.
    pub async fn new_tls(
        server: SocketAddr,
        ip: std::net::IpAddr,
        connector: tokio_rustls::TlsConnector,
        name: rustls_pki_types::ServerName<'static>,
    ) -> Result<Phone> {
        let stream = connect_from(ip, server).await?;
        let local = stream.local_addr()?;
        let tls = timeout(TRANSACTION_TIMEOUT, connector.connect(name, stream))
            .await
            .map_err(|_| PhoneError::Timeout(format!("TLS handshake with {server}")))??;
        Self::over_stream(tls, Transport::Tls, local, server).await
    }

    fn shared(
        wire: Wire,
        transport: Transport,
        local: SocketAddr,
        server: SocketAddr,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            wire,
            transport,
            local,
            server,
            txns: Mutex::new(HashMap::new()),
            dialogs: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        })
    }

    async fn over_stream<S>(
        stream: S,
        transport: Transport,
        local: SocketAddr,
        server: SocketAddr,
    ) -> Result<Phone>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let rtp = Arc::new(UdpSocket::bind((local.ip(), 0)).await?);
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (r, w) = tokio::io::split(stream);
        let writer: StreamWriter = Box::new(w);
        let shared = Self::shared(
            Wire::Stream(Arc::new(tokio::sync::Mutex::new(writer))),
            transport,
            local,
            server,
        );
        let reader = tokio::spawn(read_stream(shared.clone(), r, inbox_tx));
        Ok(Phone {
            shared,
            inbox,
            rtp,
            reader,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn server(&self) -> SocketAddr {
        self.shared.server
    }

    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    pub fn rtp_addr(&self) -> Result<SocketAddr> {
        Ok(self.rtp.local_addr()?)
    }

    /// Every SIP message received so far, in order (whatever it was and whoever took it).
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.log).clone()
    }

    /// Send bytes as they are (over UDP one datagram, over TCP onto the stream).
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        self.shared.wire.send(bytes).await
    }

    /// The next received SIP message that no transaction of the phone claimed, whole:
    /// responses to raw requests, unparseable bytes, and requests from the server
    /// (which the phone has already answered). `None` after `wait`.
    pub async fn recv_raw(&mut self, wait: Duration) -> Option<Vec<u8>> {
        self.recv_message(wait).await.map(|r| r.bytes)
    }

    /// Like [`Phone::recv_raw`] with the parse and arrival details.
    pub async fn recv_message(&mut self, wait: Duration) -> Option<Received> {
        timeout(wait, self.inbox.recv()).await.ok().flatten()
    }

    /// Out-of-dialog OPTIONS to the hotline number; returns the final status.
    pub async fn options(&self) -> Result<u16> {
        let target = format!("sip:6289110@{}", self.shared.server);
        let req = SipMessage::request("OPTIONS", &target)
            .with("Via", self.shared.via(&new_branch()))
            .with("Max-Forwards", "70")
            .with(
                "From",
                format!("<sip:tester@127.0.0.1>;tag={}", random_token(10)),
            )
            .with("To", format!("<{target}>"))
            .with("Call-ID", format!("{}@127.0.0.1", random_token(16)))
            .with("CSeq", "1 OPTIONS")
            .with("Contact", self.shared.contact("tester"))
            .with("Accept", "application/sdp");
        let resp = non_invite(&self.shared, &req, TRANSACTION_TIMEOUT).await?;
        Ok(resp.status().unwrap_or(0))
    }

    /// Send the INVITE and return at once; see [`Inviting`].
    pub async fn invite(&self, opts: CallOptions) -> Result<Inviting> {
        let sh = &self.shared;
        let call_id = opts
            .call_id
            .clone()
            .unwrap_or_else(|| format!("{}@127.0.0.1", random_token(16)));
        let from_tag = random_token(10);
        let target = format!("sip:{}@{}", opts.to_user, sh.server);
        let rtp_addr = self.rtp.local_addr()?;
        let mut invite = SipMessage::request("INVITE", &target)
            .with("Via", sh.via(&new_branch()))
            .with("Max-Forwards", "70")
            .with(
                "From",
                format!(
                    "\"Hotline Test\" <sip:{}@127.0.0.1>;tag={from_tag}",
                    opts.from_user
                ),
            )
            .with("To", format!("<{target}>"))
            .with("Call-ID", call_id.clone())
            .with("CSeq", "1 INVITE")
            .with("Contact", sh.contact(&opts.from_user))
            .with("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO")
            .with("User-Agent", "hotline-test-phone");
        for (n, v) in &opts.extra_headers {
            invite.push(n, v.clone());
        }
        let srtp_key = opts.srtp.then(srtp::new_key);
        if opts.offer_sdp {
            let sdp = opts.sdp_override.clone().unwrap_or_else(|| {
                let plain = build_sdp(rtp_addr, &opts.codecs, "sendrecv", 1);
                match &srtp_key {
                    Some(k) => srtp::secure_sdp(&plain, k),
                    None => plain,
                }
            });
            invite.set_body("application/sdp", sdp.into_bytes());
        }
        let events = Arc::new(DialogEvents {
            ended: watch::channel(false).0,
            bye_received: watch::channel(false).0,
            requests: Mutex::new(Vec::new()),
        });
        lock(&sh.dialogs).insert(call_id.clone(), events.clone());
        let sent_at = Instant::now();
        let client = InviteClient::start(sh.clone(), &invite, opts.duplicate_invite).await?;
        Ok(Inviting {
            shared: sh.clone(),
            client,
            invite,
            opts,
            rtp: self.rtp.clone(),
            events,
            from_tag,
            provisional: Vec::new(),
            pending_final: None,
            sent_at,
            first_provisional_at: None,
            srtp_key,
        })
    }

    /// Place a call: INVITE, provisional responses, final response, ACK, media if answered.
    /// A non-2xx final is not an error: look at `call.status`.
    pub async fn call(&self, opts: CallOptions) -> Result<Call> {
        self.invite(opts).await?.finish().await
    }

    /// INVITE, wait up to 200 ms for a provisional response, CANCEL, and report what came
    /// back (RFC 3261 section 9.1). If the 200 crossed the CANCEL the call is ACKed and hung up.
    pub async fn invite_then_cancel(&self, opts: CallOptions) -> Result<CancelOutcome> {
        let mut inv = self.invite(opts).await?;
        inv.wait_provisional(Duration::from_millis(200)).await?;
        inv.cancel().await
    }
}

/// Read SIP datagrams until the phone is dropped.
async fn read_udp(
    shared: Arc<Shared>,
    sock: Arc<UdpSocket>,
    inbox: mpsc::UnboundedSender<Received>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => dispatch(&shared, buf[..n].to_vec(), from, &inbox).await,
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// A TCP connection from `ip` (any port) to `server`, without Nagle's delay.
async fn connect_from(ip: std::net::IpAddr, server: SocketAddr) -> Result<TcpStream> {
    let socket = match ip {
        std::net::IpAddr::V4(_) => TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    let stream = timeout(TRANSACTION_TIMEOUT, socket.connect(server))
        .await
        .map_err(|_| PhoneError::Timeout(format!("TCP connect to {server}")))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Read the TCP or TLS stream, cutting messages by Content-Length, until it closes.
async fn read_stream<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    mut r: R,
    inbox: mpsc::UnboundedSender<Received>,
) {
    let peer = shared.server;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    loop {
        loop {
            match take_stream_message(&mut buf) {
                Ok(Some(m)) => dispatch(&shared, m, peer, &inbox).await,
                Ok(None) => break,
                Err(_) => {
                    // Unframeable garbage: hand it over as it is and start afresh.
                    let junk = std::mem::take(&mut buf);
                    dispatch(&shared, junk, peer, &inbox).await;
                }
            }
        }
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Route one received message: responses to their client transaction, requests to the
/// automatic answerer; whatever nobody claims goes to the inbox for `recv_raw`.
async fn dispatch(
    shared: &Arc<Shared>,
    bytes: Vec<u8>,
    from: SocketAddr,
    inbox: &mpsc::UnboundedSender<Received>,
) {
    let rec = Received {
        msg: SipMessage::parse(&bytes).ok(),
        bytes,
        from,
        at: Instant::now(),
    };
    lock(&shared.log).push(rec.clone());
    if let Some(m) = &rec.msg {
        if m.is_request() {
            answer_request(shared, m, from).await;
        } else if let (Some(branch), Some((_, method))) = (m.branch(), m.cseq()) {
            let tx = lock(&shared.txns).get(&(branch, method)).cloned();
            if let Some(tx) = tx {
                if tx.send(rec.clone()).is_ok() {
                    return;
                }
            }
        }
    }
    let _ = inbox.send(rec);
}

/// The phone as a UAS: BYE/INFO/NOTIFY in a known dialog get 200, OPTIONS always 200.
async fn answer_request(shared: &Arc<Shared>, req: &SipMessage, from: SocketAddr) {
    let Some(method) = req.method() else { return };
    let dialog = req
        .call_id()
        .and_then(|c| lock(&shared.dialogs).get(c).cloned());
    if let Some(d) = &dialog {
        lock(&d.requests).push(req.clone());
    }
    if method == "ACK" {
        return;
    }
    let (status, reason) = match (method, dialog.is_some()) {
        ("OPTIONS", _) => (200, "OK"),
        ("BYE" | "INFO" | "NOTIFY" | "UPDATE", true) => (200, "OK"),
        ("BYE" | "INFO" | "NOTIFY" | "UPDATE" | "CANCEL", false) => {
            (481, "Call/Transaction Does Not Exist")
        }
        ("INVITE", true) => (488, "Not Acceptable Here"),
        ("INVITE", false) => (486, "Busy Here"),
        _ => (501, "Not Implemented"),
    };
    let resp = response_to(req, status, reason, &random_token(10));
    let _ = shared.wire.reply(&resp.to_bytes(), from).await;
    if let (Some(d), "BYE") = (&dialog, method) {
        d.ended.send_replace(true);
        d.bye_received.send_replace(true);
    }
}

/// A client transaction's mailbox; unregistered when dropped.
struct ClientTxn {
    shared: Arc<Shared>,
    key: TxnKey,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl ClientTxn {
    fn new(shared: Arc<Shared>, req: &SipMessage) -> Result<ClientTxn> {
        let branch = req
            .branch()
            .ok_or_else(|| PhoneError::Protocol("request without Via branch".into()))?;
        let method = req
            .cseq()
            .map(|(_, m)| m)
            .ok_or_else(|| PhoneError::Protocol("request without CSeq".into()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let key = (branch, method);
        lock(&shared.txns).insert(key.clone(), tx);
        Ok(ClientTxn { shared, key, rx })
    }
}

impl Drop for ClientTxn {
    fn drop(&mut self) {
        lock(&self.shared.txns).remove(&self.key);
    }
}

/// Non-INVITE client transaction (RFC 3261 section 17.1.2): send, retransmit over UDP per
/// Timer E, return the final response or time out.
async fn non_invite(shared: &Arc<Shared>, req: &SipMessage, limit: Duration) -> Result<SipMessage> {
    let mut txn = ClientTxn::new(shared.clone(), req)?;
    let what = txn.key.1.clone();
    let bytes = req.to_bytes();
    shared.wire.send(&bytes).await?;
    let deadline = Instant::now() + limit;
    let udp = shared.transport == Transport::Udp;
    let mut interval = T1;
    let mut next = Instant::now() + T1;
    loop {
        let wake = if udp { next.min(deadline) } else { deadline };
        tokio::select! {
            r = txn.rx.recv() => {
                let Some(rec) = r else {
                    return Err(PhoneError::Protocol(format!("{what}: transaction dropped")));
                };
                if let Some(m) = rec.msg {
                    if m.status().unwrap_or(0) >= 200 {
                        return Ok(m);
                    }
                    interval = T2; // Proceeding: retransmit at T2
                }
            }
            _ = sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Err(PhoneError::Timeout(format!("{what}: no final response within {limit:?}")));
                }
                shared.wire.send(&bytes).await?;
                interval = (interval * 2).min(T2);
                next = Instant::now() + interval;
            }
        }
    }
}

/// INVITE client transaction (RFC 3261 section 17.1.1): retransmits over UDP per Timer A
/// (T1, doubling) until any response arrives.
struct InviteClient {
    txn: ClientTxn,
    bytes: Vec<u8>,
    retransmit: Option<(Instant, Duration)>,
}

impl InviteClient {
    async fn start(shared: Arc<Shared>, invite: &SipMessage, twice: bool) -> Result<Self> {
        let txn = ClientTxn::new(shared.clone(), invite)?;
        let bytes = invite.to_bytes();
        shared.wire.send(&bytes).await?;
        if twice {
            shared.wire.send(&bytes).await?;
        }
        let retransmit = (shared.transport == Transport::Udp).then(|| (Instant::now() + T1, T1));
        Ok(InviteClient {
            txn,
            bytes,
            retransmit,
        })
    }

    /// Next response of this transaction, `None` at `deadline`.
    async fn next(&mut self, deadline: Instant) -> Result<Option<Received>> {
        loop {
            let wake = self.retransmit.map_or(deadline, |(t, _)| t.min(deadline));
            tokio::select! {
                r = self.txn.rx.recv() => {
                    self.retransmit = None;
                    return Ok(r);
                }
                _ = sleep_until(wake) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    if let Some((_, iv)) = self.retransmit {
                        self.txn.shared.wire.send(&self.bytes).await?;
                        self.retransmit = Some((Instant::now() + iv * 2, iv * 2));
                    }
                }
            }
        }
    }

    /// Wait for the final response, collecting provisional ones and the first one's arrival.
    async fn final_response(
        &mut self,
        deadline: Instant,
        provisional: &mut Vec<SipMessage>,
        first_provisional_at: &mut Option<Instant>,
    ) -> Result<Received> {
        loop {
            let rec = self
                .next(deadline)
                .await?
                .ok_or_else(|| PhoneError::Timeout("INVITE: no final response in time".into()))?;
            match rec.msg.as_ref().and_then(SipMessage::status) {
                Some(s) if s >= 200 => return Ok(rec),
                Some(_) => {
                    first_provisional_at.get_or_insert(rec.at);
                    provisional.extend(rec.msg);
                }
                None => {}
            }
        }
    }
}

/// What happened to a cancelled INVITE.
#[derive(Clone, Debug, Default)]
pub struct CancelOutcome {
    pub provisional: Vec<u16>,
    /// Final status for the CANCEL (200, or 481 if it came too late).
    pub cancel_status: Option<u16>,
    /// Final status for the INVITE (487, or 200 if it crossed the CANCEL).
    pub invite_status: Option<u16>,
    /// Status of the BYE sent when the INVITE was answered anyway.
    pub bye_status: Option<u16>,
}

/// An INVITE sent, final response not yet taken. `finish()` makes it a [`Call`],
/// `cancel()` cancels it.
pub struct Inviting {
    shared: Arc<Shared>,
    client: InviteClient,
    pub invite: SipMessage,
    opts: CallOptions,
    rtp: Arc<UdpSocket>,
    events: Arc<DialogEvents>,
    from_tag: String,
    pub provisional: Vec<SipMessage>,
    pending_final: Option<Received>,
    sent_at: Instant,
    first_provisional_at: Option<Instant>,
    /// Our SDES key when we offered SRTP.
    srtp_key: Option<[u8; 30]>,
}

impl Inviting {
    /// First provisional status within `within`; `None` if none came (or the final came first).
    pub async fn wait_provisional(&mut self, within: Duration) -> Result<Option<u16>> {
        let deadline = Instant::now() + within;
        while self.pending_final.is_none() {
            let Some(rec) = self.client.next(deadline).await? else {
                return Ok(None);
            };
            match rec.msg.as_ref().and_then(SipMessage::status) {
                Some(s) if s < 200 => {
                    self.first_provisional_at.get_or_insert(rec.at);
                    self.provisional.extend(rec.msg);
                    return Ok(Some(s));
                }
                Some(_) => self.pending_final = Some(rec),
                None => {}
            }
        }
        Ok(None)
    }

    async fn wait_final(&mut self) -> Result<Received> {
        if let Some(f) = self.pending_final.take() {
            return Ok(f);
        }
        let deadline = Instant::now() + self.opts.timeout;
        self.client
            .final_response(
                deadline,
                &mut self.provisional,
                &mut self.first_provisional_at,
            )
            .await
    }

    /// Wait for the final response and ACK it; media starts if it is a 2xx.
    pub async fn finish(mut self) -> Result<Call> {
        let fin = self.wait_final().await?;
        self.establish(fin).await
    }

    /// Send CANCEL for this INVITE and collect the statuses (RFC 3261 section 9.1).
    pub async fn cancel(mut self) -> Result<CancelOutcome> {
        let inv = &self.invite;
        let (n, _) = inv
            .cseq()
            .ok_or_else(|| PhoneError::Protocol("INVITE without CSeq".into()))?;
        let mut cancel = SipMessage::request("CANCEL", inv.uri().unwrap_or_default());
        for name in ["Via", "Max-Forwards", "From", "To", "Call-ID"] {
            if let Some(v) = inv.header(name) {
                cancel.push(name, v);
            }
        }
        cancel.push("CSeq", format!("{n} CANCEL"));
        let shared = self.shared.clone();
        let limit = self.opts.timeout;
        let cancel_task = tokio::spawn(async move { non_invite(&shared, &cancel, limit).await });
        let fin = self.wait_final().await;
        let cancel_status = match cancel_task.await {
            Ok(Ok(m)) => m.status(),
            _ => None,
        };
        let mut out = CancelOutcome {
            provisional: self.provisional.iter().filter_map(|m| m.status()).collect(),
            cancel_status,
            ..CancelOutcome::default()
        };
        if let Ok(fin) = fin {
            let call = self.establish(fin).await?;
            out.invite_status = Some(call.status);
            if call.is_answered() {
                out.bye_status = Some(call.hangup().await?);
            }
        }
        Ok(out)
    }

    /// Turn the final response into a [`Call`]: ACK (same transaction for non-2xx, new
    /// transaction in the dialog for 2xx), keep re-ACKing retransmissions, start media.
    async fn establish(self, fin: Received) -> Result<Call> {
        let resp = fin
            .msg
            .clone()
            .ok_or_else(|| PhoneError::Parse("final response".into()))?;
        let status = resp.status().unwrap_or(0);
        let answered = (200..300).contains(&status);
        let sh = self.shared.clone();
        let opts = &self.opts;
        let invite = &self.invite;
        let (cseq, _) = invite
            .cseq()
            .ok_or_else(|| PhoneError::Protocol("INVITE without CSeq".into()))?;
        let call_id = invite.call_id().unwrap_or_default().to_string();
        let remote_sdp = resp
            .header("Content-Type")
            .filter(|ct| ct.to_ascii_lowercase().contains("sdp"))
            .and_then(|_| parse_sdp(&resp.body_str()).ok());
        let route_set: Vec<String> = if answered {
            resp.header_values("Record-Route")
                .into_iter()
                .rev()
                .collect()
        } else {
            Vec::new()
        };
        let dialog = Dialog {
            call_id: call_id.clone(),
            local_tag: self.from_tag.clone(),
            remote_tag: resp.tag("To"),
            local_uri: invite.header("From").unwrap_or_default().to_string(),
            remote_uri: resp.header("To").unwrap_or_default().to_string(),
            remote_target: resp
                .header("Contact")
                .filter(|_| answered)
                .map(uri_in)
                .unwrap_or_else(|| invite.uri().unwrap_or_default().to_string()),
            route_set: route_set.clone(),
            contact: sh.contact(&opts.from_user),
        };
        let local_rtp = self.rtp.local_addr()?;

        // Which codec and event type the media uses, and the answer if we owe one.
        let mut ack_body = None;
        let (audio_pt, event_pt) = match (&remote_sdp, opts.offer_sdp) {
            (Some(sdp), true) => (sdp.audio_pt(), sdp.telephone_event_pt.unwrap_or(101)),
            (Some(sdp), false) => {
                let audio = sdp.audio_pt();
                if let (Some(a), true) = (audio, opts.sdp_in_ack && answered) {
                    let mut pts = vec![a];
                    pts.extend(sdp.telephone_event_pt);
                    ack_body = Some(build_sdp(local_rtp, &pts, "sendrecv", 1));
                }
                (audio, sdp.telephone_event_pt.unwrap_or(101))
            }
            (None, _) => (None, 101),
        };

        let mut ack;
        if answered {
            ack = dialog.request("ACK", cseq, &sh.via(&new_branch()));
            if let Some(b) = ack_body {
                ack.set_body("application/sdp", b.into_bytes());
            }
        } else {
            // RFC 3261 section 17.1.1.3: same branch, To with the response's tag.
            ack = SipMessage::request("ACK", invite.uri().unwrap_or_default());
            for name in ["Via", "Max-Forwards", "From"] {
                if let Some(v) = invite.header(name) {
                    ack.push(name, v);
                }
            }
            ack.push("To", resp.header("To").unwrap_or_default());
            ack.push("Call-ID", call_id.clone());
            ack.push("CSeq", format!("{cseq} ACK"));
        }
        let ack_bytes = ack.to_bytes();
        let never_ack = opts.never_ack;
        let ack_first = !never_ack && !opts.drop_first_ack;
        if ack_first {
            sh.wire.send(&ack_bytes).await?;
        }
        let ok_times = Arc::new(Mutex::new(if answered { vec![fin.at] } else { vec![] }));
        let mut client = self.client;
        let watcher = {
            let ok_times = ok_times.clone();
            let wire = sh.wire.clone();
            tokio::spawn(async move {
                // Retransmitted finals: count 2xx, and ACK each (unless told to misbehave).
                while let Some(rec) = client.txn.rx.recv().await {
                    let st = rec.msg.as_ref().and_then(SipMessage::status).unwrap_or(0);
                    if st < 200 {
                        continue;
                    }
                    if answered && (200..300).contains(&st) {
                        lock(&ok_times).push(rec.at);
                    }
                    if !never_ack {
                        let _ = wire.send(&ack_bytes).await;
                    }
                }
            })
        };
        // SRTP only when we offered it and the answer keyed it (else media stays off:
        // a secure call never falls back to plain RTP).
        let keys = match (&self.srtp_key, &remote_sdp) {
            (None, _) => Some(None),
            (Some(ours), Some(sdp)) if srtp::is_secure(&sdp.raw) => srtp::remote_key(&sdp.raw)
                .map(|theirs| Some(Arc::new(srtp::PhoneSrtp::new(ours, &theirs)))),
            (Some(_), _) => None,
        };
        let media = match (answered, audio_pt, keys) {
            (true, Some(pt), Some(keys)) => Some(Media::start_srtp(
                self.rtp.clone(),
                remote_sdp.as_ref().and_then(|s| s.rtp_addr),
                (pt, event_pt),
                opts.send_rtp,
                self.events.ended.subscribe(),
                keys,
            )),
            _ => None,
        };
        Ok(Call {
            status,
            reason: resp.reason().to_string(),
            provisional: self.provisional.iter().filter_map(|m| m.status()).collect(),
            to_tag: resp.tag("To"),
            remote_rtp: remote_sdp.as_ref().and_then(|s| s.rtp_addr),
            payload_type: audio_pt,
            telephone_event_pt: event_pt,
            remote_sdp,
            route_set,
            dialog,
            invite: self.invite,
            ack,
            response: resp,
            invite_sent_at: self.sent_at,
            first_provisional_at: self.first_provisional_at,
            final_at: fin.at,
            local_rtp,
            shared: sh,
            events: self.events,
            media,
            ok_times,
            watcher,
            cseq: AtomicU32::new(cseq),
        })
    }
}

/// The dialog state a UAC keeps (RFC 3261 section 12.1.2).
#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our From header value (with tag).
    pub local_uri: String,
    /// The To header value of the final response (with the remote tag).
    pub remote_uri: String,
    /// Request-URI of in-dialog requests: the Contact of the 2xx.
    pub remote_target: String,
    /// Record-Route of the 2xx, reversed.
    pub route_set: Vec<String>,
    pub contact: String,
}

impl Dialog {
    /// An in-dialog request (RFC 3261 section 12.2.1.1), loose routing assumed.
    pub fn request(&self, method: &str, cseq: u32, via: &str) -> SipMessage {
        let mut req = SipMessage::request(method, &self.remote_target)
            .with("Via", via)
            .with("Max-Forwards", "70")
            .with("From", self.local_uri.clone())
            .with("To", self.remote_uri.clone())
            .with("Call-ID", self.call_id.clone())
            .with("CSeq", format!("{cseq} {method}"));
        for r in &self.route_set {
            req.push("Route", r.clone());
        }
        if method != "ACK" && method != "BYE" {
            req.push("Contact", self.contact.clone());
        }
        req
    }
}

/// The result of a re-INVITE.
#[derive(Clone, Debug)]
pub struct ReinviteOutcome {
    pub status: u16,
    pub remote_sdp: Option<RemoteSdp>,
}

/// A call after its final response. Dropping it stops its media and background tasks.
pub struct Call {
    pub status: u16,
    pub reason: String,
    /// Provisional statuses seen, in order (e.g. [100, 180]).
    pub provisional: Vec<u16>,
    pub to_tag: Option<String>,
    pub remote_sdp: Option<RemoteSdp>,
    /// Where the phone sends RTP (from the answer).
    pub remote_rtp: Option<SocketAddr>,
    /// The G.711 payload type chosen by the answer.
    pub payload_type: Option<u8>,
    /// The answer's telephone-event payload type, or 101.
    pub telephone_event_pt: u8,
    pub dialog: Dialog,
    pub route_set: Vec<String>,
    pub invite: SipMessage,
    pub ack: SipMessage,
    pub response: SipMessage,
    pub invite_sent_at: Instant,
    pub first_provisional_at: Option<Instant>,
    pub final_at: Instant,
    pub local_rtp: SocketAddr,
    shared: Arc<Shared>,
    events: Arc<DialogEvents>,
    media: Option<Media>,
    ok_times: Arc<Mutex<Vec<Instant>>>,
    watcher: JoinHandle<()>,
    cseq: AtomicU32,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl Call {
    pub fn is_answered(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Time from sending the INVITE to the final response.
    pub fn answer_delay(&self) -> Duration {
        self.final_at.duration_since(self.invite_sent_at)
    }

    /// Retransmissions of the 2xx seen after the first, as offsets from the first.
    pub fn ok_retransmissions(&self) -> Vec<Duration> {
        let t = lock(&self.ok_times);
        t.iter().skip(1).map(|x| x.duration_since(t[0])).collect()
    }

    /// Requests the server sent in this dialog (BYE, INFO, ACK, ...), in order.
    pub fn requests_received(&self) -> Vec<SipMessage> {
        lock(&self.events.requests).clone()
    }

    pub fn bye_received(&self) -> bool {
        *self.events.bye_received.borrow()
    }

    /// All G.711 audio received so far, decoded.
    pub fn received_pcm(&self) -> Vec<i16> {
        self.media.as_ref().map(Media::pcm).unwrap_or_default()
    }

    pub fn rtp_packets(&self) -> Vec<RtpPacket> {
        self.media.as_ref().map(Media::packets).unwrap_or_default()
    }

    /// Whether media is running (false on an SRTP call whose answer had no usable key).
    pub fn has_media(&self) -> bool {
        self.media.is_some()
    }

    /// Packets dropped because they did not unprotect (SRTP calls only).
    pub fn srtp_failures(&self) -> u64 {
        self.media.as_ref().map(Media::srtp_failures).unwrap_or(0)
    }

    pub fn rtp_stats(&self) -> RtpStats {
        rtp_stats(&self.rtp_packets())
    }

    /// When the first RTP packet of each RFC 4733 key sent so far left this phone.
    pub fn dtmf_sent_at(&self) -> Vec<Instant> {
        self.media
            .as_ref()
            .map(Media::event_starts)
            .unwrap_or_default()
    }

    /// RMS of the last `ms` milliseconds of received audio.
    pub fn rms_of_last(&self, ms: u32) -> f64 {
        let pcm = self.received_pcm();
        let n = (ms as usize * 8).min(pcm.len());
        rms(&pcm[pcm.len() - n..])
    }

    /// Build the next in-dialog request (new branch, next CSeq), to send with [`Call::send_request`].
    pub fn request(&self, method: &str) -> SipMessage {
        let cseq = self.cseq.fetch_add(1, Ordering::SeqCst) + 1;
        self.dialog
            .request(method, cseq, &self.shared.via(&new_branch()))
    }

    /// Run a non-INVITE client transaction; returns the final response.
    pub async fn send_request(&self, req: &SipMessage) -> Result<SipMessage> {
        non_invite(&self.shared, req, TRANSACTION_TIMEOUT).await
    }

    /// Send BYE, stop media, return the final status.
    pub async fn hangup(&self) -> Result<u16> {
        self.events.ended.send_replace(true);
        let resp = self.send_request(&self.request("BYE")).await?;
        Ok(resp.status().unwrap_or(0))
    }

    /// Wait for the server's BYE (the background task answers it with 200).
    pub async fn wait_for_bye(&self, limit: Duration) -> Result<()> {
        let mut rx = self.events.bye_received.subscribe();
        match timeout(limit, async { rx.wait_for(|b| *b).await.map(|_| ()) }).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PhoneError::Protocol("dialog state dropped".into())),
            Err(_) => Err(PhoneError::Timeout(format!("no BYE within {limit:?}"))),
        }
    }

    fn media(&self) -> Result<&Media> {
        self.media
            .as_ref()
            .ok_or_else(|| PhoneError::Protocol("call has no media".into()))
    }

    /// Send a continuous sine of `freq_hz` (about -10 dBm0) in place of silence, as if the
    /// caller were speaking; `None` goes back to silence.
    pub fn play_tone(&self, freq_hz: Option<f64>) -> Result<()> {
        self.media()?
            .set_fill(freq_hz.map(|f| tone(f, 1000, PEAK_MINUS_10_DBM0)));
        Ok(())
    }

    /// Stop sending RTP (silence included) for the rest of the call.
    pub fn stop_rtp(&mut self) {
        if let Some(m) = self.media.as_mut() {
            m.stop_sending();
        }
    }

    /// An RFC 4733 event: start packet with marker, an update every 20 ms with growing
    /// duration and the same timestamp, then three end packets (E bit) with the final duration.
    pub async fn send_dtmf_rfc4733(&self, key: char, duration_ms: u32) -> Result<()> {
        let event = dtmf_event_code(key)
            .ok_or_else(|| PhoneError::Protocol(format!("not a DTMF key: {key:?}")))?;
        let media = self.media()?;
        let updates = (duration_ms / 20).max(1);
        let mut frames = Vec::new();
        for i in 0..updates + 3 {
            let end = i >= updates;
            let duration = (i.min(updates - 1) + 1) * FRAME_SAMPLES as u32;
            let te = TelephoneEvent {
                event,
                end,
                volume: 10,
                duration: duration.min(u16::MAX as u32) as u16,
            };
            frames.push(Frame {
                pt: self.telephone_event_pt,
                marker: i == 0,
                payload: te.to_bytes().to_vec(),
                event: true,
            });
        }
        media.send_frames(frames).await
    }

    /// DTMF by SIP INFO (application/dtmf-relay); returns the final status.
    pub async fn send_dtmf_info(&self, key: char) -> Result<u16> {
        dtmf_event_code(key)
            .ok_or_else(|| PhoneError::Protocol(format!("not a DTMF key: {key:?}")))?;
        let mut req = self.request("INFO");
        req.set_body(
            "application/dtmf-relay",
            format!("Signal={key}\r\nDuration=160\r\n").into_bytes(),
        );
        Ok(self.send_request(&req).await?.status().unwrap_or(0))
    }

    /// In-band DTMF: the dual tone at -10 dBm0 per tone in the G.711 stream, then 100 ms
    /// of silence.
    pub async fn send_dtmf_inband(&self, key: char, duration_ms: u32) -> Result<()> {
        let media = self.media()?;
        let mut pcm = dtmf_tone(key, duration_ms)
            .ok_or_else(|| PhoneError::Protocol(format!("not a DTMF key: {key:?}")))?;
        let frames_of_tone = pcm.len().div_ceil(FRAME_SAMPLES);
        pcm.resize((frames_of_tone + 5) * FRAME_SAMPLES, 0);
        let frames = pcm
            .chunks(FRAME_SAMPLES)
            .map(|c| Frame {
                pt: media.audio_pt,
                marker: false,
                payload: encode(media.audio_pt, c),
                event: false,
            })
            .collect();
        media.send_frames(frames).await
    }

    /// Put the call on hold: re-INVITE with a=sendonly, ACK the answer.
    pub async fn reinvite_hold(&self) -> Result<ReinviteOutcome> {
        let pt = self.payload_type.unwrap_or(0);
        let sdp = build_sdp(
            self.local_rtp,
            &[pt, self.telephone_event_pt],
            "sendonly",
            2,
        );
        self.reinvite_with(sdp).await
    }

    /// Send a re-INVITE offering `sdp` (e.g. media moved to another port), ACK the answer.
    pub async fn reinvite_with(&self, sdp: String) -> Result<ReinviteOutcome> {
        let mut req = self.request("INVITE");
        req.set_body("application/sdp", sdp.into_bytes());
        let (cseq, _) = req.cseq().unwrap_or((0, String::new()));
        let mut client = InviteClient::start(self.shared.clone(), &req, false).await?;
        let deadline = Instant::now() + TRANSACTION_TIMEOUT;
        let fin = client
            .final_response(deadline, &mut Vec::new(), &mut None)
            .await?;
        let resp = fin
            .msg
            .ok_or_else(|| PhoneError::Parse("re-INVITE response".into()))?;
        let status = resp.status().unwrap_or(0);
        let ack = if (200..300).contains(&status) {
            self.dialog
                .request("ACK", cseq, &self.shared.via(&new_branch()))
        } else {
            // Non-2xx: same transaction, so the INVITE's Via (and Route) again.
            self.dialog
                .request("ACK", cseq, req.header("Via").unwrap_or(""))
        };
        self.shared.wire.send(&ack.to_bytes()).await?;
        Ok(ReinviteOutcome {
            status,
            remote_sdp: parse_sdp(&resp.body_str()).ok(),
        })
    }
}
