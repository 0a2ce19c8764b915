//! SIP over TLS (RFC 3261 §26.2, `sips:`, port 5061) with rustls.
//!
//! Incoming: our own accept loop ([`super::tcp`]) under the same caps as TCP, then a
//! handshake that must finish within `handshake` (10 s), then the same connection task
//! as TCP. Outgoing (a volunteer's phone written `sips:...` or `;transport=tls`):
//! rsipstack picks TLS from the URI (`transport=tls`, or the `sips` scheme when there is
//! no transport parameter) and dials it with its own rustls client, which trusts only
//! the CA certificates we hand it ([`client_config`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::sip::limits::{canonical, Counters};
use crate::sip::policy::Policy;

/// Where to listen for TLS and with which certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// `[sip] tls_listen`, e.g. `0.0.0.0:5061`.
    pub listen: SocketAddr,
    /// `[sip] tls_cert`: PEM, the server certificate first, then its chain.
    pub cert: PathBuf,
    /// `[sip] tls_key`: PEM, PKCS#8, PKCS#1 or SEC1.
    pub key: PathBuf,
}

/// Errors loading certificates, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {detail}")]
    Cert { path: PathBuf, detail: String },
    #[error("TLS key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("TLS CA certificates {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
    #[error("TLS: {0}")]
    Config(String),
}

/// The process uses one rustls crypto provider: ring, the one rsipstack is built with.
/// Installed before the first TLS use, so a second backend linked in by another crate
/// cannot make rustls refuse to choose.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The TLS side of the accept loop.
pub struct TlsServer {
    acceptor: TlsAcceptor,
    handshake: Duration,
}

impl TlsServer {
    /// Load the certificate chain and key (start-up code: blocking file reads are fine).
    pub fn load(settings: &TlsSettings, handshake: Duration) -> Result<TlsServer, TlsError> {
        install_crypto_provider();
        let certs = read_certs(&settings.cert).map_err(|detail| TlsError::Cert {
            path: settings.cert.clone(),
            detail,
        })?;
        let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| TlsError::Key {
            path: settings.key.clone(),
            detail: e.to_string(),
        })?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Key {
            path: settings.key.clone(),
            detail: format!("does not match the certificate or is unusable: {e}"),
        })?;
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshake,
        })
    }

    /// The handshake, bounded in time; failures are counted and logged once per source
    /// and minute.
    pub(crate) async fn handshake(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
        policy: &Policy,
    ) -> Option<TlsStream<TcpStream>> {
        let why = match tokio::time::timeout(self.handshake, self.acceptor.accept(stream)).await {
            Ok(Ok(s)) => return Some(s),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("not finished within {} s", self.handshake.as_secs()),
        };
        Counters::add(&policy.counters.tls_handshake_failed);
        if let Some(held) = policy.may_log(Instant::now(), canonical(remote.ip()), "tls") {
            info!(source = %remote, held_back = held, "TLS handshake failed: {why}");
        }
        None
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

/// The system's CA bundle (Debian, Ubuntu, Alpine; Fedora and RHEL), used to verify
/// volunteers' phones when no CA file is configured.
const SYSTEM_CAS: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// rsipstack's outgoing TLS settings: the CA certificates that verify the phones we
/// dial (`ca`, else the system bundle). rsipstack trusts nothing implicitly.
pub fn client_config(
    ca: Option<&Path>,
) -> Result<Option<rsipstack::transport::TlsConfig>, TlsError> {
    install_crypto_provider();
    let path = match ca {
        Some(p) => p.to_path_buf(),
        None => match SYSTEM_CAS.iter().map(Path::new).find(|p| p.exists()) {
            Some(p) => p.to_path_buf(),
            None => return Ok(None),
        },
    };
    let pem = std::fs::read(&path).map_err(|e| TlsError::Ca {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    read_certs(&path).map_err(|detail| TlsError::Ca {
        path: path.clone(),
        detail,
    })?;
    Ok(Some(rsipstack::transport::TlsConfig {
        ca_certs: Some(pem),
        ..Default::default()
    }))
}

/// rsipstack 0.7.14 writes the Via of an out-of-dialog request to a `sips:` URI (no
/// `;transport=tls`) from the UDP listener, then sends it over TLS: the far end sees
/// `SIP/2.0/UDP` on a TLS connection, and a Contact at our UDP address, though a
/// request to a SIPS URI must carry a SIPS Contact (RFC 3261 §8.1.1.8, §18.1.1). On
/// the way out, a request going over TLS gets our TLS address in the top Via (when it
/// names our UDP address) and a `sips:` Contact at our TLS port (when it names our UDP
/// address). Responses still match: transactions are keyed by branch, not transport.
#[derive(Debug, Clone, Copy)]
pub struct TlsRequestFix {
    /// Our public UDP (and TCP) address, as rsipstack writes it.
    pub udp: SocketAddr,
    /// Our public TLS address.
    pub tls: SocketAddr,
}

impl TlsRequestFix {
    pub fn apply(
        &self,
        msg: rsipstack::sip::SipMessage,
        dest: Option<&rsipstack::transport::SipAddr>,
    ) -> rsipstack::sip::SipMessage {
        use rsipstack::sip::prelude::ToTypedHeader;
        use rsipstack::sip::{Header, HostWithPort, Scheme, SipMessage, Transport};
        let rsipstack::sip::SipMessage::Request(mut req) = msg else {
            return msg;
        };
        if dest.and_then(|d| d.r#type) != Some(Transport::Tls) {
            return SipMessage::Request(req);
        }
        let udp: HostWithPort = self.udp.into();
        let tls: HostWithPort = self.tls.into();
        let mut top_via = true;
        for h in req.headers.iter_mut() {
            match h {
                Header::Via(v) if top_via => {
                    top_via = false;
                    if let Ok(mut via) = v.typed() {
                        if via.transport == Transport::Udp && via.uri.host_with_port == udp {
                            via.transport = Transport::Tls;
                            via.uri.host_with_port = tls.clone();
                            *h = Header::Via(via.into());
                        }
                    }
                }
                Header::Contact(c) => {
                    if let Ok(mut contact) = c.typed() {
                        if contact.uri.host_with_port == udp
                            && contact.uri.scheme != Some(Scheme::Sips)
                        {
                            contact.uri.scheme = Some(Scheme::Sips);
                            contact.uri.host_with_port = tls.clone();
                            *h = Header::Contact(contact.into());
                        }
                    }
                }
                _ => {}
            }
        }
        SipMessage::Request(req)
    }
}
