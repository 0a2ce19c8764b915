//! SIP over TLS (RFC 3261 §26.2): a call from a rustls test phone, the handshake
//! timeout, the connection caps on the TLS port, and an outgoing request to a `sips:`
//! URI verified against our CA. Certificates are made at test time with rcgen. The
//! per-address cap test, which needs two source addresses besides 127.0.0.1, runs in a
//! network namespace of its own (`common::netns`) and is skipped, saying why, when the
//! machine cannot make one (not root).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::daemon::bounded;
use common::phone::*;
use common::stack::{start_uas, Uas};
use common::tls::{busy_tls_phone, connector, pki, Pki};
use hotline::sip::limits::{Counters, Limits};
use hotline::sip::stack::StackOptions;
use hotline::sip::transport::tls::TlsSettings;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::Uri;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

const LIMIT: Duration = Duration::from_secs(30);
const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn tls_uas(pki: &Pki, limits: Limits, hold: Duration) -> Uas {
    start_uas(
        StackOptions {
            limits,
            tls: Some(TlsSettings {
                listen: "127.0.0.1:0".parse().unwrap(),
                cert: pki.cert.clone(),
                key: pki.key.clone(),
            }),
            tls_ca: Some(pki.ca.clone()),
            ..StackOptions::default()
        },
        hold,
    )
    .await
}

fn tls_addr(uas: &Uas) -> SocketAddr {
    uas.stack.tls_local.expect("TLS listening")
}

async fn tls_phone(pki: &Pki, uas: &Uas, ip: IpAddr) -> Phone {
    Phone::new_tls(
        tls_addr(uas),
        ip,
        connector(pki),
        ServerName::IpAddress(LOCALHOST.into()),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tls_gets_a_sips_contact_no_retransmissions_and_our_bye_on_the_same_connection()
{
    bounded(LIMIT, async {
        let pki = pki();
        let uas = tls_uas(&pki, Limits::default(), Duration::from_millis(800)).await;
        let phone = tls_phone(&pki, &uas, LOCALHOST).await;
        assert_eq!(phone.options().await.unwrap(), 200);
        let call = phone.call(CallOptions::default()).await.unwrap();
        assert_eq!(call.status, 200);
        let contact = call
            .response
            .header("Contact")
            .unwrap_or_default()
            .to_string();
        let port = tls_addr(&uas).port();
        assert!(
            contact.contains(&format!("sips:6289110@127.0.0.1:{port}")),
            "Contact {contact:?}"
        );
        assert!(call
            .response
            .header("Via")
            .unwrap_or_default()
            .starts_with("SIP/2.0/TLS"));
        // Our BYE comes over the TLS connection the call came on (the only way the
        // phone can receive anything).
        call.wait_for_bye(Duration::from_secs(5)).await.unwrap();
        // A reliable transport: the 200 was sent once (RFC 3261 §17.2.1).
        assert!(
            call.ok_retransmissions().is_empty(),
            "{:?}",
            call.ok_retransmissions()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_does_not_finish_in_time_is_closed_and_counted() {
    bounded(LIMIT, async {
        let pki = pki();
        let uas = tls_uas(
            &pki,
            Limits {
                handshake: Duration::from_secs(1),
                ..Limits::default()
            },
            Duration::from_millis(100),
        )
        .await;
        let start = Instant::now();
        let mut silent = TcpStream::connect(tls_addr(&uas)).await.unwrap();
        let mut buf = [0u8; 64];
        let r = timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "a silent client was kept: {r:?}"
        );
        let after = start.elapsed();
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(4),
            "{after:?}"
        );
        // Plain SIP on the TLS port: the handshake fails at once.
        let mut plain = TcpStream::connect(tls_addr(&uas)).await.unwrap();
        let _ = plain
            .write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\r\n")
            .await;
        let r = timeout(Duration::from_secs(2), plain.read(&mut buf)).await;
        assert!(r.is_ok(), "plain text on the TLS port was kept");
        assert_eq!(Counters::get(&uas.stack.counters().tls_handshake_failed), 2);
        // A real TLS phone is still served.
        let phone = tls_phone(&pki, &uas, LOCALHOST).await;
        assert_eq!(phone.options().await.unwrap(), 200);
    })
    .await;
}

#[test]
fn tls_connections_count_against_the_same_per_address_cap_as_tcp() {
    common::netns::run("per-source", || async {
        bounded(LIMIT, async {
            let pki = pki();
            let uas = tls_uas(
                &pki,
                Limits {
                    tcp_per_source: 2,
                    ..Limits::default()
                },
                Duration::from_millis(100),
            )
            .await;
            let ip: IpAddr = "127.0.0.11".parse().unwrap();
            let a = tls_phone(&pki, &uas, ip).await;
            let b = Phone::new_from(Transport::Tcp, uas.addr(), ip)
                .await
                .unwrap();
            assert_eq!(a.options().await.unwrap(), 200);
            assert_eq!(b.options().await.unwrap(), 200);
            // A third, over either transport, is refused at once.
            let third = Phone::new_tls(
                tls_addr(&uas),
                ip,
                connector(&pki),
                ServerName::IpAddress(LOCALHOST.into()),
            )
            .await;
            assert!(
                third.is_err(),
                "a third connection from one address got through"
            );
            assert_eq!(Counters::get(&uas.stack.counters().refused_per_source), 1);
            // Another address is served.
            let other = tls_phone(&pki, &uas, "127.0.0.12".parse().unwrap()).await;
            assert_eq!(other.options().await.unwrap(), 200);
        })
        .await;
    });
}

async fn dial(uas: &Uas, target: &str) -> std::result::Result<(), String> {
    let stack = &uas.stack;
    let opt = InviteOption {
        caller: Uri::try_from("sip:6289110@127.0.0.1").unwrap(),
        callee: Uri::try_from(target).unwrap(),
        // As the volunteer leg writes it today: our UDP address. Over TLS it must
        // become a sips: Contact at the TLS port (RFC 3261 §8.1.1.8).
        contact: Uri::try_from(format!("sip:6289110@{}", stack.public_addr()).as_str()).unwrap(),
        content_type: Some("application/sdp".into()),
        offer: Some(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n".to_vec()),
        ..Default::default()
    };
    let (state_tx, _states) = stack.dialogs.new_dialog_state_channel();
    let (_dialog, join) = stack
        .dialogs
        .do_invite_async(opt, state_tx)
        .map_err(|e| e.to_string())?;
    match timeout(Duration::from_secs(10), join).await {
        Ok(Ok(Ok((_, Some(resp))))) => {
            if resp.status_code.code() == 486 {
                Ok(())
            } else {
                Err(format!("final {}", resp.status_code))
            }
        }
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_invite_to_a_sips_uri_goes_over_tls_with_a_tls_via_and_sips_contact() {
    bounded(LIMIT, async {
        let pki = pki();
        let uas = tls_uas(&pki, Limits::default(), Duration::from_millis(100)).await;
        let ours = tls_addr(&uas).port();
        for form in [
            "sips:vol@127.0.0.1:{}",
            "sip:vol@127.0.0.1:{};transport=tls",
        ] {
            let (addr, phone) = busy_tls_phone(&pki, true).await;
            let target = form.replace("{}", &addr.port().to_string());
            dial(&uas, &target)
                .await
                .unwrap_or_else(|e| panic!("{target}: {e}"));
            let invite = phone
                .await
                .unwrap()
                .expect("the phone got an INVITE over TLS");
            let via = invite
                .lines()
                .find(|l| l.starts_with("Via:"))
                .unwrap_or_default();
            assert!(
                via.contains(&format!("SIP/2.0/TLS 127.0.0.1:{ours}")),
                "{target}: {via}"
            );
            let contact = invite
                .lines()
                .find(|l| l.starts_with("Contact:"))
                .unwrap_or_default();
            assert!(
                contact.contains(&format!("sips:6289110@127.0.0.1:{ours}")),
                "{contact}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_tls_call_to_a_phone_our_ca_did_not_sign_is_not_made() {
    bounded(LIMIT, async {
        let pki = pki();
        let uas = tls_uas(&pki, Limits::default(), Duration::from_millis(100)).await;
        let (addr, phone) = busy_tls_phone(&pki, false).await;
        let target = format!("sips:vol@127.0.0.1:{}", addr.port());
        let result = dial(&uas, &target).await;
        assert!(result.is_err(), "a call went to an unverified phone");
        assert_eq!(
            phone.await.unwrap(),
            None,
            "the unverified phone got a request"
        );
    })
    .await;
}
