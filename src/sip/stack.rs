//! Building the rsipstack endpoint: UDP (behind our policy) and TCP on one address,
//! TLS on its own (both through our accept loop, [`crate::sip::transport`]), the
//! transaction layer with RFC 3261 timers, and the dialog layer.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::{Method, Transport};
use rsipstack::transaction::endpoint::{EndpointOption, MessageInspector};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::channel::ChannelConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::sip::guard::GuardedUdp;
use crate::sip::limits::{raise_nofile, CallSlot, CallSlots, Counters, Limits};
use crate::sip::policy::Policy;
use crate::sip::transport::stream::Serving;
use crate::sip::transport::tls::{client_config, TlsError, TlsRequestFix, TlsServer, TlsSettings};
use crate::sip::transport::{tcp, ConnPin, ConnTable, StreamKind};

/// Errors starting the SIP side; they name the address so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot listen for SIP on udp {addr}: {source}")]
    Udp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for SIP on tcp {addr}: {detail}")]
    Tcp { addr: SocketAddr, detail: String },
    #[error("cannot listen for SIP on tls {addr}: {detail}")]
    Tls { addr: SocketAddr, detail: String },
    #[error("{0}")]
    TlsFiles(#[from] TlsError),
    #[error("SIP stack: {0}")]
    Stack(String),
}

/// Everything about the SIP side besides the address: the limits, TLS, and how many
/// RTP ports the calls may use (the connection cap leaves their sockets room).
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub limits: Limits,
    /// `[sip] tls_listen`, `tls_cert`, `tls_key`: serve SIP over TLS too.
    pub tls: Option<TlsSettings>,
    /// CA certificates (PEM) that verify the phones we call over TLS; the system
    /// bundle when `None`.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Ports in `[media] rtp_ports` (one socket each when every call is up).
    pub rtp_ports: usize,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            limits: Limits::default(),
            tls: None,
            tls_ca: None,
            rtp_ports: 1000,
        }
    }
}

/// The running SIP endpoint.
pub struct SipStack {
    endpoint: rsipstack::transaction::Endpoint,
    pub dialogs: Arc<DialogLayer>,
    /// The UDP address we actually listen on (port 0 in tests becomes a real port);
    /// TCP listens on the same.
    pub local: SocketAddr,
    /// The TLS address we listen on, if TLS is configured.
    pub tls_local: Option<SocketAddr>,
    /// The address written into Via, Contact and SDP.
    pub public_ip: IpAddr,
    policy: Arc<Policy>,
    table: Arc<ConnTable>,
    slots: Arc<CallSlots>,
    listeners: Mutex<Listeners>,
    cancel: CancellationToken,
    traffic: Arc<crate::sip::traffic::Traffic>,
}

#[derive(Default)]
struct Listeners {
    tcp: Option<std::net::TcpListener>,
    tls: Option<(std::net::TcpListener, Arc<TlsServer>)>,
}

/// Our public address with the port of each transport: what a Contact names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contacts {
    pub public_ip: IpAddr,
    /// UDP and TCP.
    pub port: u16,
    /// TLS, when we listen for it.
    pub tls_port: Option<u16>,
}

impl Contacts {
    /// Our Contact over `transport` (`None`: UDP): `sips:` at the TLS port over TLS
    /// (RFC 3261 §8.1.1.8; without a TLS listener, our UDP address), `;transport=tcp`
    /// over TCP.
    pub fn uri(&self, transport: Option<Transport>, user: &str) -> Option<rsipstack::sip::Uri> {
        let host = |port: u16| match SocketAddr::new(self.public_ip, port) {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let uri = match (transport, self.tls_port) {
            (Some(Transport::Tls), Some(tls)) => format!("sips:{user}@{}", host(tls)),
            (Some(Transport::Tcp), _) => format!("sip:{user}@{};transport=tcp", host(self.port)),
            _ => format!("sip:{user}@{}", host(self.port)),
        };
        rsipstack::sip::Uri::try_from(uri.as_str()).ok()
    }

    /// The transport a request to `target` goes over, as rsipstack picks it: the
    /// `transport` parameter, else TLS for a `sips:` URI, else UDP (`None`).
    pub fn transport_to(target: &rsipstack::sip::Uri) -> Option<Transport> {
        let param = target.params.iter().find_map(|p| match p {
            rsipstack::sip::Param::Transport(t) => Some(*t),
            _ => None,
        });
        match (param, &target.scheme) {
            (Some(Transport::Udp), _) => None,
            (Some(t), _) => Some(t),
            (None, Some(rsipstack::sip::Scheme::Sips)) => Some(Transport::Tls),
            (None, _) => None,
        }
    }
}

/// The methods we answer; `Allow` in 405 and OPTIONS answers, and in the
/// 400/501 that `sip::guard` writes by hand.
pub const ALLOWED: [Method; 6] = [
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Options,
    Method::Info,
];

/// A call's claim: its slot under `max_calls`, and a pin that keeps the TCP or TLS
/// connection it came on from being closed for idling while the call lasts (in-dialog
/// requests such as our BYE go back on it). Drop it when the call ends.
#[derive(Debug)]
pub struct CallClaim {
    _slot: CallSlot,
    _pin: Option<ConnPin>,
}

/// Our fixes to what rsipstack sends and receives: digest algorithm names, and the
/// Via and Contact of requests sent over TLS.
struct Inspector {
    tls: Option<TlsRequestFix>,
    traffic: Arc<crate::sip::traffic::Traffic>,
}

impl MessageInspector for Inspector {
    fn before_send(
        &self,
        msg: rsipstack::sip::SipMessage,
        dest: Option<&SipAddr>,
    ) -> rsipstack::sip::SipMessage {
        let msg = crate::sip::digest::DigestAlgorithmFix.before_send(msg, dest);
        self.traffic.sent(&msg);
        match &self.tls {
            Some(fix) => fix.apply(msg, dest),
            None => msg,
        }
    }

    fn after_received(
        &self,
        msg: rsipstack::sip::SipMessage,
        from: Option<&SipAddr>,
    ) -> rsipstack::sip::SipMessage {
        self.traffic.received(&msg);
        crate::sip::digest::DigestAlgorithmFix.after_received(msg, from)
    }
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// UDP and TCP on the same port, as every SIP server does; both bound here so that a
/// taken port stops the start with a clear error, and the port is open when `bind`
/// returns. When the OS picks the port (`:0`), the UDP port it gave may already be
/// some TCP connection's local port: then try another pair rather than fail.
async fn bind_udp_and_tcp(
    listen: SocketAddr,
) -> Result<(tokio::net::UdpSocket, std::net::TcpListener, SocketAddr), StackError> {
    const TRIES_ON_ANY_PORT: usize = 16;
    let mut tries = 0;
    loop {
        let socket = tokio::net::UdpSocket::bind(listen)
            .await
            .map_err(|source| StackError::Udp {
                addr: listen,
                source,
            })?;
        let local = socket.local_addr().map_err(|source| StackError::Udp {
            addr: listen,
            source,
        })?;
        match bind_tcp(local) {
            Ok(tcp) => return Ok((socket, tcp, local)),
            Err(e)
                if listen.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tries < TRIES_ON_ANY_PORT =>
            {
                tries += 1;
            }
            Err(e) => {
                return Err(StackError::Tcp {
                    addr: local,
                    detail: e.to_string(),
                })
            }
        }
    }
}

impl SipStack {
    /// Listen on `listen` over UDP and TCP (the same port for both), with the default
    /// limits and no TLS.
    pub async fn bind(
        listen: SocketAddr,
        public_ip: Option<IpAddr>,
        user_agent: &str,
        t1: std::time::Duration,
    ) -> Result<SipStack, StackError> {
        Self::bind_with(listen, public_ip, user_agent, t1, &StackOptions::default()).await
    }

    /// Listen on `listen` over UDP and TCP, and on `options.tls` over TLS, under
    /// `options.limits`.
    pub async fn bind_with(
        listen: SocketAddr,
        public_ip: Option<IpAddr>,
        user_agent: &str,
        t1: std::time::Duration,
        options: &StackOptions,
    ) -> Result<SipStack, StackError> {
        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());
        let limits = options.limits.clone();

        let nofile = raise_nofile();
        let mut total = limits.connections_for(nofile, options.rtp_ports);
        if total < limits.tcp_total {
            warn!(
                file_limit = nofile,
                rtp_ports = options.rtp_ports,
                "SIP connections capped at {total} (configured {}): the open-file limit \
                 must also hold the RTP sockets; raise `ulimit -n` to serve more",
                limits.tcp_total
            );
            // Never none at all: a TCP trunk must still reach us on a tiny limit.
            total = total.max(16.min(limits.tcp_total));
        }
        let table = ConnTable::new(limits.tcp_per_source, total);
        let slots = CallSlots::new(limits.max_calls_for(options.rtp_ports));
        let policy = Policy::new(limits);

        let (socket, tcp, local) = bind_udp_and_tcp(listen).await?;
        let public_ip = public_ip.unwrap_or(local.ip());
        let external = (public_ip != local.ip()).then(|| SocketAddr::new(public_ip, local.port()));
        let udp = UdpConnection::from_socket(
            Arc::new(GuardedUdp::new(socket, policy.clone())),
            external,
            Some(cancel.child_token()),
        )
        .await
        .map_err(|e| StackError::Stack(e.to_string()))?;
        transport.add_transport(udp.into());

        let (tls, tls_local) = match &options.tls {
            None => (None, None),
            Some(settings) => {
                let server = TlsServer::load(settings, policy.limits.handshake)?;
                let l = bind_tcp(settings.listen).map_err(|e| StackError::Tls {
                    addr: settings.listen,
                    detail: e.to_string(),
                })?;
                let addr = l.local_addr().map_err(|e| StackError::Tls {
                    addr: settings.listen,
                    detail: e.to_string(),
                })?;
                (Some((l, Arc::new(server))), Some(addr))
            }
        };
        if let Some(cfg) = client_config(options.tls_ca.as_deref())? {
            transport.set_tls_config(cfg);
        }

        let traffic = Arc::new(crate::sip::traffic::Traffic::default());
        let endpoint = EndpointBuilder::new()
            .with_user_agent(user_agent)
            .with_transport_layer(transport)
            .with_cancel_token(cancel.clone())
            .with_allows(ALLOWED.to_vec())
            .with_inspector(Box::new(Inspector {
                tls: tls_local.map(|t| TlsRequestFix {
                    udp: SocketAddr::new(public_ip, local.port()),
                    tls: SocketAddr::new(public_ip, t.port()),
                }),
                traffic: traffic.clone(),
            }))
            .with_option(EndpointOption {
                t1,
                t1x64: t1 * 64,
                ..EndpointOption::default()
            })
            .build();
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        Ok(SipStack {
            endpoint,
            dialogs,
            local,
            tls_local,
            public_ip,
            policy,
            table,
            slots,
            listeners: Mutex::new(Listeners {
                tcp: Some(tcp),
                tls,
            }),
            cancel,
            traffic,
        })
    }

    /// Start the transport and timer loops and the accept loops; returns the stream of
    /// new server transactions once UDP, TCP (and TLS) take traffic.
    pub async fn start(&self) -> Result<TransactionReceiver, StackError> {
        let incoming = self
            .endpoint
            .incoming_transactions()
            .map_err(|e| StackError::Stack(e.to_string()))?;
        let inner = self.endpoint.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.serve().await {
                tracing::error!("SIP endpoint stopped: {e}");
            }
        });
        self.wait_udp_serving().await?;
        // Our TLS address among the stack's listeners, so requests we send over TLS
        // carry a Via with the TLS port (RFC 3261 §18.1.1). It is a placeholder the
        // stack never serves; added after its listeners started, so it is not tried.
        if let Some(addr) = self.tls_local {
            let via = SipAddr {
                r#type: Some(Transport::Tls),
                addr: SocketAddr::new(self.public_ip, addr.port()).into(),
            };
            let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let placeholder = ChannelConnection::create_connection(rx, tx, via, None)
                .await
                .map_err(|e| StackError::Stack(e.to_string()))?;
            self.endpoint
                .inner
                .transport_layer
                .add_transport(placeholder.into());
        }
        let serving = Arc::new(Serving {
            policy: self.policy.clone(),
            table: self.table.clone(),
            endpoint: self.endpoint.inner.clone(),
            cancel: self.cancel.child_token(),
        });
        let (tcp, tls) = {
            let mut l = self
                .listeners
                .lock()
                .map_err(|_| StackError::Stack("listener lock poisoned".into()))?;
            (l.tcp.take(), l.tls.take())
        };
        if let Some(l) = tcp {
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| StackError::Tcp {
                addr: self.local,
                detail: e.to_string(),
            })?;
            tokio::spawn(tcp::accept_loop(l, StreamKind::Tcp, None, serving.clone()));
        }
        if let Some((l, server)) = tls {
            let addr = self.tls_local.unwrap_or(self.local);
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| StackError::Tls {
                addr,
                detail: e.to_string(),
            })?;
            tokio::spawn(tcp::accept_loop(l, StreamKind::Tls, Some(server), serving));
        }
        info!(
            per_source = self.policy.limits.tcp_per_source,
            total = self.table.cap(),
            max_calls = self.slots.max(),
            pike = format!(
                "{} requests / {} ms, ban {} s",
                self.policy.limits.pike_requests,
                self.policy.limits.pike_window.as_millis(),
                self.policy.limits.pike_ban.as_secs()
            ),
            "SIP limits in force"
        );
        Ok(incoming)
    }

    /// rsipstack starts its UDP reader inside the task just spawned. A keep-alive ping
    /// (RFC 5626) is answered by that reader: once the pong comes back, UDP takes
    /// traffic and the stack has started all its listeners.
    async fn wait_udp_serving(&self) -> Result<(), StackError> {
        let target = match self.local.ip() {
            ip if ip.is_unspecified() => SocketAddr::new(
                if ip.is_ipv4() {
                    IpAddr::from([127, 0, 0, 1])
                } else {
                    IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
                },
                self.local.port(),
            ),
            _ => self.local,
        };
        let bind: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| StackError::Stack("addr".into()))?
        } else {
            "[::]:0"
                .parse()
                .map_err(|_| StackError::Stack("addr".into()))?
        };
        let probe = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|source| StackError::Udp {
                addr: self.local,
                source,
            })?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 16];
        while tokio::time::Instant::now() < deadline {
            let _ = probe.send_to(b"\r\n\r\n", target).await;
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(20), probe.recv_from(&mut buf)).await
            {
                return Ok(());
            }
        }
        Err(StackError::Stack(format!(
            "the UDP listener on {} did not come up",
            self.local
        )))
    }

    /// The address the rest of the world should send SIP to.
    pub fn public_addr(&self) -> SocketAddr {
        SocketAddr::new(self.public_ip, self.local.port())
    }

    /// Claim a slot for the call this INVITE would start, or `None` at `max_calls`
    /// (answer 503 with [`SipStack::retry_after`]). Hold the claim for the call's life.
    pub fn claim_call(&self, tx: &Transaction) -> Option<CallClaim> {
        let Some(slot) = self.slots.try_acquire() else {
            Counters::add(&self.policy.counters.calls_refused);
            let now = std::time::Instant::now();
            if let Some(held) = self.policy.may_log(now, [0u8; 4].into(), "max_calls") {
                warn!(
                    max_calls = self.slots.max(),
                    held_back = held,
                    "refusing a call with 503: {} calls in progress, the [limits] max_calls",
                    self.slots.max()
                );
            }
            return None;
        };
        let pin = tx.connection.as_ref().and_then(|c| self.pin(c));
        Some(CallClaim {
            _slot: slot,
            _pin: pin,
        })
    }

    fn pin(&self, conn: &SipConnection) -> Option<ConnPin> {
        let SipConnection::Channel(c) = conn else {
            return None;
        };
        let addr = c.get_addr();
        let kind = match addr.r#type {
            Some(Transport::Tcp) => StreamKind::Tcp,
            Some(Transport::Tls) => StreamKind::Tls,
            _ => return None,
        };
        self.table.pin(kind, addr.get_socketaddr().ok()?)
    }

    /// True at `max_calls`: OPTIONS should answer 503 so a load balancer steers away.
    pub fn calls_full(&self) -> bool {
        self.slots.is_full()
    }

    /// The `Retry-After` header for a 503 at `max_calls`.
    pub fn retry_after(&self) -> rsipstack::sip::Header {
        rsipstack::sip::Header::RetryAfter(self.policy.limits.retry_after_s.to_string().into())
    }

    /// The counters of every limit (bans, refusals, 400s), for logs and metrics.
    pub fn counters(&self) -> Arc<Counters> {
        self.policy.counters.clone()
    }

    /// SIP requests received and responses sent, for `/metrics`.
    pub fn traffic(&self) -> Arc<crate::sip::traffic::Traffic> {
        self.traffic.clone()
    }

    /// Source addresses the flood defence bans now.
    pub fn banned(&self) -> Vec<std::net::IpAddr> {
        self.policy.banned(std::time::Instant::now())
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.policy.limits
    }

    /// SIP connections open now.
    pub fn connections_open(&self) -> usize {
        self.table.open()
    }

    /// Our Contact for a dialog on `conn`: the public address and port of the
    /// transport the request came on (`;transport=tcp`, or `sips:` at the TLS port:
    /// RFC 3261 §8.1.1.8, a request over TLS wants a SIPS Contact).
    pub fn contact_for(
        &self,
        conn: Option<&SipConnection>,
        user: &str,
    ) -> Option<rsipstack::sip::Uri> {
        let transport = match conn {
            Some(SipConnection::Channel(c)) => c.get_addr().r#type,
            Some(c) if c.is_reliable() => Some(Transport::Tcp),
            _ => None,
        };
        self.contact_uri(transport, user)
    }

    /// Whether a request came over TLS: the only transport on which SDES keys in its
    /// SDP are not readable by anyone on the path (RFC 4568 section 8.3).
    pub fn is_tls(conn: Option<&SipConnection>) -> bool {
        matches!(conn, Some(SipConnection::Channel(c)) if c.get_addr().r#type == Some(Transport::Tls))
    }

    /// Our Contact for requests and dialogs over `transport` (`None`: UDP). Over TLS it
    /// is a `sips:` URI at the TLS port, so in-dialog requests come back encrypted.
    pub fn contact_uri(
        &self,
        transport: Option<Transport>,
        user: &str,
    ) -> Option<rsipstack::sip::Uri> {
        self.contacts().uri(transport, user)
    }

    /// Our Contact addresses, for the legs the dialer places.
    pub fn contacts(&self) -> Contacts {
        Contacts {
            public_ip: self.public_ip,
            port: self.local.port(),
            tls_port: self.tls_local.map(|t| t.port()),
        }
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Whether the listeners are up (from `start` until `shutdown`).
    pub fn is_serving(&self) -> bool {
        !self.cancel.is_cancelled()
    }
}

impl Drop for SipStack {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> rsipstack::sip::Uri {
        rsipstack::sip::Uri::try_from(s).unwrap()
    }

    #[test]
    fn a_volunteer_called_over_tls_gets_a_sips_contact_at_our_tls_port() {
        let c = Contacts {
            public_ip: IpAddr::from([203, 0, 113, 10]),
            port: 5060,
            tls_port: Some(5061),
        };
        let contact = |target: &str| {
            c.uri(Contacts::transport_to(&uri(target)), "6289110")
                .unwrap()
                .to_string()
        };
        assert_eq!(
            contact("sips:vol@pbx.example.org"),
            "sips:6289110@203.0.113.10:5061"
        );
        assert_eq!(
            contact("sip:vol@pbx.example.org;transport=tls"),
            "sips:6289110@203.0.113.10:5061"
        );
        assert_eq!(
            contact("sip:vol@pbx.example.org;transport=tcp"),
            "sip:6289110@203.0.113.10:5060;transport=TCP"
        );
        assert_eq!(
            contact("sip:vol@pbx.example.org"),
            "sip:6289110@203.0.113.10:5060"
        );
        assert_eq!(
            contact("sips:vol@pbx.example.org;transport=udp"),
            "sip:6289110@203.0.113.10:5060"
        );
        // Without a TLS listener there is no sips: address to give.
        let no_tls = Contacts {
            tls_port: None,
            ..c
        };
        let t = Contacts::transport_to(&uri("sips:vol@pbx.example.org"));
        assert_eq!(
            no_tls.uri(t, "6289110").unwrap().to_string(),
            "sip:6289110@203.0.113.10:5060"
        );
    }
}
