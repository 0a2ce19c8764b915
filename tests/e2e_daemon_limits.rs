//! The `[limits]` and `[sip] allow`/`tls_*` config keys, through the whole daemon
//! (issue 8): each test sets the keys in the daemon's config and checks what a caller
//! on the wire gets. The tests that need several source addresses run in a network
//! namespace of their own (`common::netns`) and are skipped, saying why, when the
//! machine cannot make one (not root). The last test calls a volunteer over TLS.

mod common;

use std::time::Duration;

use common::daemon::*;
use common::phone::*;
use common::tls::{busy_tls_phone, connector, pki};
use hotline::config::{IpNet, TlsConfig};
use rustls_pki_types::ServerName;
use tokio::net::UdpSocket;
use tokio::time::timeout;

const PORTS: (u16, u16) = (47000, 47999);

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Send `count` OPTIONS from `sock` and count the answers.
async fn answers_to_burst(sock: &UdpSocket, server: std::net::SocketAddr, count: usize) -> usize {
    let local = sock.local_addr().unwrap();
    for _ in 0..count {
        let req = options_request(local, server, "UDP", "burst");
        sock.send_to(&req, server).await.unwrap();
    }
    let mut answered = 0;
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(_)) = timeout(Duration::from_millis(1500), sock.recv_from(&mut buf)).await {
        answered += 1;
    }
    answered
}

#[test]
fn allow_refuses_an_outsider_with_403_and_no_call_record() {
    common::netns::run("allow", || async {
        bounded(Duration::from_secs(40), async {
            let d = Daemon::start(PORTS, |c| c.sip.allow = vec![net("127.0.0.9/32")]).await;
            let outsider = d.phone_from(Transport::Udp, "127.0.0.7").await;
            let opts = CallOptions {
                call_id: Some("outsider@allow".into()),
                ..CallOptions::default()
            };
            let call = outsider.call(opts).await.unwrap();
            assert_eq!(call.status, 403);
            assert!(
                d.all_records().await.is_empty(),
                "a refused call left a record"
            );

            let insider = d.phone_from(Transport::Udp, "127.0.0.9").await;
            let opts = CallOptions {
                call_id: Some("insider@allow".into()),
                ..CallOptions::default()
            };
            let call = insider.call(opts).await.unwrap();
            assert_eq!(call.status, 200);
            wait_for_prompt(&call, "menu", Duration::from_secs(5)).await;
            assert_eq!(call.hangup().await.unwrap(), 200);
            d.ended_record("insider@allow", Duration::from_secs(10))
                .await;
            let ids: Vec<String> = d
                .all_records()
                .await
                .into_iter()
                .map(|r| r.call_id)
                .collect();
            assert_eq!(ids, ["insider@allow"]);
        })
        .await
    });
}

#[test]
fn a_trusted_address_is_never_banned_while_a_flooding_one_is() {
    common::netns::run("trusted", || async {
        bounded(Duration::from_secs(60), async {
            let d = Daemon::start(PORTS, |c| {
                c.limits.trusted = vec![net("127.0.0.3/32")];
                c.limits.pike_requests = 10;
            })
            .await;
            let flood = UdpSocket::bind("127.0.0.5:0").await.unwrap();
            // The configured 10 per 2 s, then silence.
            assert_eq!(answers_to_burst(&flood, d.addr, 40).await, 10);
            assert_eq!(answers_to_burst(&flood, d.addr, 1).await, 0, "ban lifted");

            let trunk = UdpSocket::bind("127.0.0.3:0").await.unwrap();
            assert_eq!(answers_to_burst(&trunk, d.addr, 60).await, 60);
            // And the trusted address still places a whole call.
            let phone = d.phone_from(Transport::Udp, "127.0.0.3").await;
            let call = phone.call(CallOptions::default()).await.unwrap();
            assert_eq!(call.status, 200);
            wait_for_prompt(&call, "menu", Duration::from_secs(5)).await;
            assert_eq!(call.hangup().await.unwrap(), 200);
            // 127.0.0.1 is no longer trusted once the list is set: it is banned too.
            let local = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            assert_eq!(answers_to_burst(&local, d.addr, 30).await, 10);
        })
        .await
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_calls_from_the_config_gives_503_with_its_retry_after_and_options_503() {
    bounded(Duration::from_secs(40), async {
        let d = Daemon::start(PORTS, |c| {
            c.limits.max_calls = Some(1);
            c.limits.retry_after_s = 7;
            c.menu.timeout_s = 5;
        })
        .await;
        let a = d.phone(Transport::Udp).await;
        let first = a.call(CallOptions::default()).await.unwrap();
        assert_eq!(first.status, 200);
        let b = d.phone(Transport::Udp).await;
        let opts = CallOptions {
            call_id: Some("refused@max_calls".into()),
            ..CallOptions::default()
        };
        let refused = b.call(opts).await.unwrap();
        assert_eq!(refused.status, 503);
        assert_eq!(refused.response.header("Retry-After"), Some("7"));
        assert_eq!(b.options().await.unwrap(), 503);
        assert!(d.record("refused@max_calls").await.is_none());
        assert_eq!(first.hangup().await.unwrap(), 200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while b.options().await.unwrap() != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slot was not freed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_scanner_list_is_dropped_and_replaces_the_default() {
    bounded(Duration::from_secs(30), async {
        let d = Daemon::start(PORTS, |c| c.limits.scanners = vec!["EvilDialer".into()]).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        let mut buf = vec![0u8; 4096];
        let req = options_request(local, d.addr, "UDP", "evildialer/2.1 (any case)");
        sock.send_to(&req, d.addr).await.unwrap();
        let got = timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await;
        assert!(got.is_err(), "a configured scanner was answered");
        // The list was replaced: a name only on the default list is answered now.
        let req = options_request(local, d.addr, "UDP", "friendly-scanner");
        sock.send_to(&req, d.addr).await.unwrap();
        let got = timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await;
        assert!(
            matches!(got, Ok(Ok(_))),
            "an ordinary User-Agent got no answer"
        );
        assert!(String::from_utf8_lossy(&buf).starts_with("SIP/2.0 200"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tls_to_the_daemon_reaches_the_menu() {
    bounded(Duration::from_secs(40), async {
        let pki = pki();
        let (cert, key) = (pki.cert.clone(), pki.key.clone());
        let d = Daemon::start(PORTS, move |c| {
            c.sip.tls = Some(TlsConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                cert,
                key,
            });
        })
        .await;
        let tls = d.server().tls_addr().expect("the daemon listens for TLS");
        let phone = Phone::new_tls(
            tls,
            "127.0.0.1".parse().unwrap(),
            connector(&pki),
            ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        )
        .await
        .unwrap();
        let opts = CallOptions {
            call_id: Some("tls@daemon".into()),
            ..CallOptions::default()
        };
        let call = phone.call(opts).await.unwrap();
        assert_eq!(call.status, 200);
        let contact = call
            .response
            .header("Contact")
            .unwrap_or_default()
            .to_string();
        assert!(
            contact.contains(&format!("sips:6289110@127.0.0.1:{}", tls.port())),
            "{contact}"
        );
        wait_for_prompt(&call, "menu", Duration::from_secs(5)).await;
        call.send_dtmf_rfc4733('0', 120).await.unwrap();
        wait_for_prompt(&call, "station_desk", Duration::from_secs(5)).await;
        assert_eq!(call.hangup().await.unwrap(), 200);
        let row = d.ended_record("tls@daemon", Duration::from_secs(10)).await;
        assert!(row.ended_at.is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volunteer_written_sips_is_called_over_tls_with_a_tls_via_and_sips_contact() {
    bounded(Duration::from_secs(60), async {
        let pki = pki();
        let (vol_addr, vol) = busy_tls_phone(&pki, true).await;
        let (cert, key, ca) = (pki.cert.clone(), pki.key.clone(), pki.ca.clone());
        let d = Daemon::start(PORTS, move |c| {
            c.sip.tls = Some(TlsConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                cert,
                key,
            });
            c.sip.tls_ca = Some(ca);
        })
        .await;
        let roster = format!(
            "timezone = \"Asia/Shanghai\"\n\n[[volunteer]]\nid = \"wang\"\nname = \"Wang\"\n\
             phone = \"sips:wang@127.0.0.1:{}\"\n\n[[shift]]\nstation = \"desk\"\n\
             volunteer = \"wang\"\ndays = \"daily\"\nstart = \"00:00\"\nend = \"24:00\"\n",
            vol_addr.port()
        );
        std::fs::write(d.tmp.path().join("roster.toml"), roster).unwrap();
        d.server().reload_roster();
        assert_eq!(d.server().roster().current().volunteers.len(), 1);

        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::default()).await.unwrap();
        assert_eq!(call.status, 200);
        wait_for_prompt(&call, "menu", Duration::from_secs(5)).await;
        call.send_dtmf_rfc4733('0', 120).await.unwrap();
        let invite = timeout(Duration::from_secs(20), vol)
            .await
            .expect("the volunteer was not called")
            .unwrap()
            .expect("the volunteer got an INVITE over TLS");
        let ours = d.server().tls_addr().unwrap().port();
        let header = |name: &str| {
            invite
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            invite.starts_with("INVITE sips:wang@127.0.0.1:"),
            "{invite}"
        );
        let via = header("Via:");
        assert!(
            via.contains(&format!("SIP/2.0/TLS 127.0.0.1:{ours}")),
            "{via}"
        );
        let contact = header("Contact:");
        assert!(
            contact.contains(&format!("sips:6289110@127.0.0.1:{ours}")),
            "{contact}"
        );
        let _ = call.hangup().await;
    })
    .await;
}
