//! Building the rsipstack endpoint: UDP (behind our guard) and TCP on one address,
//! the transaction layer with RFC 3261 timers, and the dialog layer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::Method;
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use tokio_util::sync::CancellationToken;

use crate::sip::guard::GuardedUdp;

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
    #[error("SIP stack: {0}")]
    Stack(String),
}

/// The running SIP endpoint.
pub struct SipStack {
    endpoint: rsipstack::transaction::Endpoint,
    pub dialogs: Arc<DialogLayer>,
    /// The UDP address we actually listen on (port 0 in tests becomes a real port).
    pub local: SocketAddr,
    /// The address written into Via, Contact and SDP.
    pub public_ip: IpAddr,
    cancel: CancellationToken,
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

impl SipStack {
    /// Listen on `listen` over UDP and TCP (the same port for both).
    pub async fn bind(
        listen: SocketAddr,
        public_ip: Option<IpAddr>,
        user_agent: &str,
        t1: std::time::Duration,
    ) -> Result<SipStack, StackError> {
        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());

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
        let public_ip = public_ip.unwrap_or(local.ip());
        let external = (public_ip != local.ip()).then(|| SocketAddr::new(public_ip, local.port()));
        let udp = UdpConnection::from_socket(
            Arc::new(GuardedUdp::new(socket)),
            external,
            Some(cancel.child_token()),
        )
        .await
        .map_err(|e| StackError::Stack(e.to_string()))?;
        transport.add_transport(udp.into());

        let tcp_addr = local; // same port as UDP, as every SIP server does
        let tcp = TcpListenerConnection::new(tcp_addr, external)
            .await
            .map_err(|e| StackError::Tcp {
                addr: tcp_addr,
                detail: e.to_string(),
            })?;
        transport.add_transport(tcp.into());

        let endpoint = EndpointBuilder::new()
            .with_user_agent(user_agent)
            .with_transport_layer(transport)
            .with_cancel_token(cancel.clone())
            .with_allows(ALLOWED.to_vec())
            .with_inspector(Box::new(crate::sip::digest::DigestAlgorithmFix))
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
            public_ip,
            cancel,
        })
    }

    /// Start the transport and timer loops; returns the stream of new server
    /// transactions once both UDP and TCP take traffic.
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
        // rsipstack binds the TCP listener inside the task just spawned, and only
        // logs a failure. Wait until it accepts, so "answering calls" is true and
        // a port taken by someone else stops the start with a clear error.
        let addr = self.local;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_probe) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(StackError::Tcp {
                        addr,
                        detail: format!("the TCP listener did not come up: {e}"),
                    })
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
        Ok(incoming)
    }

    /// The address the rest of the world should send SIP to.
    pub fn public_addr(&self) -> SocketAddr {
        SocketAddr::new(self.public_ip, self.local.port())
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for SipStack {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
