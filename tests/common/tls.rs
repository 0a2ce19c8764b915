//! Test certificates made at test time with rcgen, and a rustls client that trusts
//! only their CA: for the TLS tests of the stack and of the daemon.

use std::path::PathBuf;
use std::sync::Arc;

use std::net::SocketAddr;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::rustls;

use super::sip::{response_to, take_stream_message, SipMessage};

/// A test CA and a certificate it issued for 127.0.0.1, as PEM files in a temp dir.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca_pem: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hotline test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_pem = ca_cert.pem();
    Pki {
        ca: write("ca.pem", &ca_pem),
        cert: write("cert.pem", &format!("{}{}", leaf.pem(), ca_pem)),
        key: write("key.pem", &leaf_key.serialize_pem()),
        ca_pem,
        _dir: dir,
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client that trusts only the test CA.
pub fn connector(pki: &Pki) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A TLS "volunteer phone" that reads one request and answers 486 Busy Here.
pub async fn busy_tls_phone(
    pki: &Pki,
    certificate_of_ours: bool,
) -> (SocketAddr, tokio::task::JoinHandle<Option<String>>) {
    let (certs, key) = if certificate_of_ours {
        (
            CertificateDer::pem_file_iter(&pki.cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect::<Vec<_>>(),
            PrivateKeyDer::from_pem_file(&pki.key).unwrap(),
        )
    } else {
        let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        (
            vec![other.cert.der().clone()],
            PrivateKeyDer::from_pem_slice(other.signing_key.serialize_pem().as_bytes()).unwrap(),
        )
    };
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.ok()?;
        let mut tls = acceptor.accept(tcp).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let invite = loop {
            if let Ok(Some(m)) = take_stream_message(&mut buf) {
                break m;
            }
            let n = tls.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let req = SipMessage::parse(&invite).ok()?;
        let busy = response_to(&req, 486, "Busy Here", "vol1");
        tls.write_all(&busy.to_bytes()).await.ok()?;
        // Wait for the ACK, so the stack's transaction ends cleanly.
        let _ = timeout(Duration::from_secs(2), tls.read(&mut chunk)).await;
        Some(String::from_utf8_lossy(&invite).to_string())
    });
    (addr, task)
}
