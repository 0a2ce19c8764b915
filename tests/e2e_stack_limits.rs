//! The limits that need settings other than the defaults, at the SIP stack's boundary
//! (see `common::stack`): `allow`, `max_calls`, the trusted list, and a call holding
//! its TCP connection open past the idle time. The tests that need source addresses
//! other than 127.0.0.1 run in a network namespace of their own (`common::netns`) and
//! are skipped, saying why, when the machine cannot make one (not root).

mod common;

use std::time::Duration;

use common::daemon::bounded;
use common::phone::*;
use common::stack::{start_uas, Seen};
use hotline::sip::limits::{parse_net, Limits};
use hotline::sip::stack::StackOptions;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, UdpSocket};
use tokio::time::{timeout, Instant};

const LIMIT: Duration = Duration::from_secs(30);

fn options_with(limits: Limits) -> StackOptions {
    StackOptions {
        limits,
        ..StackOptions::default()
    }
}

#[test]
fn an_invite_from_outside_allow_gets_403_and_reaches_no_call_code() {
    common::netns::run("allow", || async {
        bounded(LIMIT, async {
            let mut uas = start_uas(
                options_with(Limits {
                    allow: vec![parse_net("127.0.0.9").unwrap()],
                    ..Limits::default()
                }),
                Duration::from_millis(200),
            )
            .await;
            let outsider = Phone::new_from(Transport::Udp, uas.addr(), "127.0.0.7".parse().unwrap())
                .await
                .unwrap();
            let call = outsider.call(CallOptions::default()).await.unwrap();
            assert_eq!(call.status, 403);
            // An outsider may still ask OPTIONS; only calls are refused.
            assert_eq!(outsider.options().await.unwrap(), 200);
            assert!(matches!(uas.next(Duration::from_secs(1)).await, Some(Seen::Request(r)) if r.starts_with("OPTIONS")));
            assert_eq!(uas.next(Duration::from_millis(500)).await, None, "the INVITE reached the call code");

            // Over TCP too.
            let tcp = Phone::new_from(Transport::Tcp, uas.addr(), "127.0.0.7".parse().unwrap())
                .await
                .unwrap();
            assert_eq!(tcp.call(CallOptions::default()).await.unwrap().status, 403);
            assert_eq!(uas.next(Duration::from_millis(500)).await, None);

            // From inside the list the call goes through.
            let insider = Phone::new_from(Transport::Udp, uas.addr(), "127.0.0.9".parse().unwrap())
                .await
                .unwrap();
            let call = insider.call(CallOptions::default()).await.unwrap();
            assert_eq!(call.status, 200);
            assert!(matches!(uas.next(Duration::from_secs(1)).await, Some(Seen::Request(r)) if r.starts_with("INVITE")));
            call.wait_for_bye(Duration::from_secs(3)).await.unwrap();
        })
        .await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_calls_an_invite_gets_503_with_retry_after_and_options_says_503() {
    bounded(LIMIT, async {
        let mut uas = start_uas(
            options_with(Limits {
                max_calls: Some(1),
                ..Limits::default()
            }),
            Duration::from_secs(2),
        )
        .await;
        let first = Phone::new(Transport::Udp, uas.addr()).await.unwrap();
        let call = first.call(CallOptions::default()).await.unwrap();
        assert_eq!(call.status, 200);
        assert!(uas.stack.calls_full());

        let second = Phone::new(Transport::Udp, uas.addr()).await.unwrap();
        let mut inv = second.invite(CallOptions::default()).await.unwrap();
        let _ = inv.wait_provisional(Duration::from_millis(200)).await;
        let refused = inv.finish().await.unwrap();
        assert_eq!(refused.status, 503);
        assert_eq!(refused.response.header("Retry-After"), Some("30"));
        assert_eq!(second.options().await.unwrap(), 503);

        // When the first call ends, calls are taken again.
        call.wait_for_bye(Duration::from_secs(5)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while uas.stack.calls_full() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(second.options().await.unwrap(), 200);
        let again = second.call(CallOptions::default()).await.unwrap();
        assert_eq!(again.status, 200);
        let mut refusals = 0;
        while let Some(s) = uas.next(Duration::from_millis(100)).await {
            refusals += matches!(s, Seen::Refused(_)) as usize;
        }
        assert_eq!(refusals, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_holds_its_tcp_connection_open_past_the_idle_time() {
    bounded(LIMIT, async {
        let mut uas = start_uas(
            options_with(Limits {
                idle: Duration::from_secs(1),
                ..Limits::default()
            }),
            Duration::from_secs(3),
        )
        .await;
        // Without a call an idle connection goes after 1 s.
        let socket = TcpSocket::new_v4().unwrap();
        let mut idle = socket.connect(uas.addr()).await.unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let r = timeout(Duration::from_secs(3), idle.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection stayed"
        );
        assert!(start.elapsed() >= Duration::from_millis(900));

        // A call over TCP lasts 3 s with no request after the ACK: its BYE still goes
        // out on the same connection, which stays open for the call.
        let phone = Phone::new(Transport::Tcp, uas.addr()).await.unwrap();
        let call = phone.call(CallOptions::default()).await.unwrap();
        assert_eq!(call.status, 200);
        let answered = Instant::now();
        call.wait_for_bye(Duration::from_secs(6)).await.unwrap();
        assert!(answered.elapsed() >= Duration::from_millis(2500));
        while let Some(s) = uas.next(Duration::from_millis(200)).await {
            if let Seen::HungUp(_) = s {
                break;
            }
        }
        // After the call the idle timer runs again and closes it.
        assert_eq!(uas.stack.connections_open(), 1);
        let deadline = Instant::now() + Duration::from_secs(4);
        while uas.stack.connections_open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            uas.stack.connections_open(),
            0,
            "closed after the call ended"
        );
    })
    .await;
}

#[test]
fn a_trusted_cidr_is_exempt_from_the_flood_ban_and_others_are_not() {
    common::netns::run("trusted", || async {
        bounded(LIMIT, async {
            let uas = start_uas(
                options_with(Limits {
                    trusted: vec![parse_net("127.0.0.8/32").unwrap()],
                    ..Limits::default()
                }),
                Duration::from_millis(100),
            )
            .await;
            for (ip, expected) in [("127.0.0.8", 50), ("127.0.0.10", 16)] {
                let sock = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
                let local = sock.local_addr().unwrap();
                for i in 0..50 {
                    let req = format!(
                        "OPTIONS sip:6289110@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\n\
From: <sip:trunk@{ip}>;tag=t{i}\r\nTo: <sip:6289110@{srv}>\r\nCall-ID: flood{i}@{ip}\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                        new_branch(),
                        srv = uas.addr()
                    );
                    sock.send_to(req.as_bytes(), uas.addr()).await.unwrap();
                }
                let mut answered = 0;
                let mut buf = vec![0u8; 4096];
                while let Ok(Ok(_)) = timeout(Duration::from_millis(700), sock.recv_from(&mut buf)).await {
                    answered += 1;
                }
                assert_eq!(answered, expected, "answers to 50 requests from {ip}");
            }
            let bans = hotline::sip::limits::Counters::get(&uas.stack.counters().bans);
            assert_eq!(bans, 1);
        })
        .await;
    });
}

#[test]
fn a_tcp_request_gets_received_and_rport_in_its_via_as_on_udp() {
    common::netns::run("received", || async {
        use tokio::io::AsyncWriteExt;
        bounded(LIMIT, async {
            let uas = start_uas(StackOptions::default(), Duration::from_millis(100)).await;
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.13:0".parse().unwrap()).unwrap();
            let mut s = socket.connect(uas.addr()).await.unwrap();
            let local = s.local_addr().unwrap();
            // A Via that names another host (a phone behind NAT): RFC 3261 §18.2.1 and
            // RFC 3581 want received= and rport= with the connection's real source.
            let req = format!(
                "OPTIONS sip:6289110@{srv} SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.50:5060;branch={};rport\r\n\
From: <sip:nat@192.0.2.50>;tag=n1\r\nTo: <sip:6289110@{srv}>\r\nCall-ID: nat1@192.0.2.50\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                new_branch(),
                srv = uas.addr()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let resp = loop {
                if let Ok(Some(m)) = take_stream_message(&mut buf) {
                    break SipMessage::parse(&m).unwrap();
                }
                let n = timeout(Duration::from_secs(3), s.read(&mut chunk))
                    .await
                    .expect("no answer")
                    .unwrap();
                assert!(n > 0, "closed without an answer");
                buf.extend_from_slice(&chunk[..n]);
            };
            assert_eq!(resp.status(), Some(200));
            let via = resp.header("Via").unwrap_or_default();
            assert!(via.contains("received=127.0.0.13"), "{via}");
            assert!(via.contains(&format!("rport={}", local.port())), "{via}");
        })
        .await;
    });
}
