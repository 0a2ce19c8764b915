//! The daemon on the public internet, with its default limits (issue 8): idle TCP
//! exhaustion from one address while others are served, slow headers, oversize
//! messages, malformed requests over TCP, scanners, and a flooding address.
//!
//! The tests that need source addresses other than 127.0.0.1 (127.0.0.2, .3, ... as
//! other "hosts" to the per-address limits) run in a network namespace of their own
//! (`common::netns`), where all of 127.0.0.0/8 is the test's, and are skipped, saying
//! why, when the machine cannot make one (not root). The rest run on the host's
//! 127.0.0.1, which is trusted by default (the host's own loopback), as
//! `the_hosts_own_loopback_is_trusted_and_never_banned` proves.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::daemon::*;
use common::phone::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};

const PORTS: (u16, u16) = (48000, 48999);

async fn tcp_from(ip: &str, server: SocketAddr) -> TcpStream {
    try_tcp_from(ip, server).await.expect("connect failed")
}

/// A refused connection may already be reset when `connect` returns.
async fn try_tcp_from(ip: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    timeout(Duration::from_secs(5), socket.connect(server))
        .await
        .expect("connect timed out")
}

/// Whether a new connection from `ip` is closed at once (refused).
async fn refused(ip: &str, server: SocketAddr) -> bool {
    match try_tcp_from(ip, server).await {
        Err(_) => true,
        Ok(mut s) => read_until_closed(&mut s, Duration::from_secs(2)).await.1,
    }
}

/// Read until the peer closes (EOF or reset) or `limit` passes; what was read, and
/// whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return (got, false);
        };
        match timeout(left, s.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Read one SIP message off a raw stream (by Content-Length), within `limit`.
async fn read_message(s: &mut TcpStream, limit: Duration) -> Option<SipMessage> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(m)) = take_stream_message(&mut buf) {
            return SipMessage::parse(&m).ok();
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

async fn full_call(phone: &Phone) {
    let call = phone.call(CallOptions::default()).await.unwrap();
    assert_eq!(call.status, 200);
    wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
    assert_eq!(call.hangup().await.unwrap(), 200);
}

#[test]
fn idle_connections_from_one_address_leave_others_served_and_close_after_32_s() {
    common::netns::run("idle", || async {
        bounded(Duration::from_secs(60), async {
            let d = Daemon::start(PORTS, |_| {}).await;
            let opened = Instant::now();
            // 64 idle connections from one address: the per-address cap.
            let mut idle = Vec::new();
            for _ in 0..64 {
                idle.push(tcp_from("127.0.0.2", d.addr).await);
            }
            // The 65th is refused at once: closed, not queued.
            assert!(
                refused("127.0.0.2", d.addr).await,
                "the 65th connection from one address was kept"
            );
            // The 64 are served: a request on the last one is answered.
            let last = idle.last_mut().unwrap();
            let local = last.local_addr().unwrap();
            last.write_all(&options_request(local, d.addr, "TCP", "probe"))
                .await
                .unwrap();
            let resp = read_message(last, Duration::from_secs(3)).await;
            assert_eq!(resp.and_then(|r| r.status()), Some(200));

            // Another address is served over TCP and UDP while the first holds its maximum.
            let tcp = d.phone_from(Transport::Tcp, "127.0.0.3").await;
            assert_eq!(tcp.options().await.unwrap(), 200);
            full_call(&tcp).await;
            let udp = d.phone_from(Transport::Udp, "127.0.0.3").await;
            full_call(&udp).await;

            // RFC 3261 Timer D (32 s) without a request: the idle ones are closed.
            let first = &mut idle[0];
            let (_, closed) = read_until_closed(first, Duration::from_secs(40)).await;
            let after = opened.elapsed();
            assert!(closed, "an idle connection was still open after {after:?}");
            assert!(
                after >= Duration::from_secs(31),
                "closed after only {after:?}, before the 32 s idle time"
            );
        })
        .await;
    });
}

#[test]
fn slow_headers_a_byte_every_two_seconds_are_closed_after_ten() {
    common::netns::run("slowloris", || async {
        bounded(Duration::from_secs(40), async {
            let d = Daemon::start(PORTS, |_| {}).await;
            let s = tcp_from("127.0.0.4", d.addr).await;
            let local = s.local_addr().unwrap();
            let (mut r, mut w) = s.into_split();
            let msg = options_request(local, d.addr, "TCP", "slowloris");
            let start = Instant::now();
            let writer = tokio::spawn(async move {
                for b in msg {
                    if w.write_all(&[b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
            let mut buf = [0u8; 64];
            let closed = timeout(Duration::from_secs(20), async {
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            writer.abort();
            let after = start.elapsed();
            assert!(
                closed.is_ok(),
                "a slow-headers connection was kept for 20 s"
            );
            assert!(
                after >= Duration::from_secs(9) && after <= Duration::from_secs(14),
                "closed after {after:?}, expected about 10 s"
            );
        })
        .await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_over_tcp_is_refused_and_the_connection_closed() {
    bounded(Duration::from_secs(30), async {
        let d = Daemon::start(PORTS, |_| {}).await;
        // Declared body past the 16 KiB cap: 413, then closed without reading it.
        let mut s = tcp_from("127.0.0.1", d.addr).await;
        let local = s.local_addr().unwrap();
        let head = String::from_utf8(options_request(local, d.addr, "TCP", "big"))
            .unwrap()
            .replace(
                "Content-Length: 0",
                "Content-Type: text/plain\r\nContent-Length: 20000",
            );
        s.write_all(head.as_bytes()).await.unwrap();
        let resp = read_message(&mut s, Duration::from_secs(3)).await;
        assert_eq!(
            resp.as_ref().and_then(|r| r.status()),
            Some(413),
            "{resp:?}"
        );
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        assert!(closed, "the connection stayed open after the 413");

        // Headers that never end: closed at the cap, nothing answered.
        let mut s = tcp_from("127.0.0.1", d.addr).await;
        let mut junk = format!("OPTIONS sip:6289110@{} SIP/2.0\r\nX-Pad: ", d.addr).into_bytes();
        junk.extend(std::iter::repeat_n(b'a', 20 * 1024));
        let _ = s.write_all(&junk).await;
        let (got, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        assert!(closed, "endless headers kept the connection open");
        assert!(
            got.is_empty(),
            "answered: {}",
            String::from_utf8_lossy(&got)
        );

        // The daemon still serves TCP.
        let phone = d.phone(Transport::Tcp).await;
        assert_eq!(phone.options().await.unwrap(), 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_over_tcp_gets_400_and_the_connection_still_carries_a_call() {
    bounded(Duration::from_secs(30), async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let mut phone = d.phone(Transport::Tcp).await;
        let local = phone.local_addr();
        let good = String::from_utf8(options_request(local, d.addr, "TCP", "x")).unwrap();
        let broken = [
            // A request line without a version.
            good.replace(" SIP/2.0\r\nVia", "\r\nVia"),
            // A header line without a colon.
            good.replace("Max-Forwards: 70", "Max-Forwards 70"),
            // An INVITE with no Contact: once a 500 from the dialog layer.
            good.replace("OPTIONS sip:", "INVITE sip:")
                .replace("1 OPTIONS", "1 INVITE"),
        ];
        for bad in &broken {
            phone.send_raw(bad.as_bytes()).await.unwrap();
            let got = phone.recv_message(Duration::from_secs(2)).await;
            let status = got
                .as_ref()
                .and_then(|r| r.msg.as_ref())
                .and_then(|m| m.status());
            assert_eq!(status, Some(400), "for {bad:?}");
        }
        // The same connection is still usable: an OPTIONS and a whole call.
        assert_eq!(phone.options().await.unwrap(), 200);
        full_call(&phone).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanners_get_no_answer_over_udp_or_tcp() {
    bounded(Duration::from_secs(30), async {
        let d = Daemon::start(PORTS, |_| {}).await;
        for transport in [Transport::Udp, Transport::Tcp] {
            let mut phone = d.phone(transport).await;
            let name = if transport == Transport::Udp {
                "UDP"
            } else {
                "TCP"
            };
            for ua in [
                "friendly-scanner",
                "sipvicious",
                "sipcli/v1.8",
                "VaxSIPUserAgent/3.1",
                "pplsip",
            ] {
                let req = options_request(phone.local_addr(), d.addr, name, ua);
                phone.send_raw(&req).await.unwrap();
            }
            let got = phone.recv_message(Duration::from_secs(1)).await;
            assert!(got.is_none(), "a scanner was answered over {name}: {got:?}");
            // A real phone from the same address is answered.
            assert_eq!(phone.options().await.unwrap(), 200);
        }
    })
    .await;
}

#[test]
fn a_flooding_address_is_banned_while_another_places_a_call() {
    common::netns::run("flood", || async {
        bounded(Duration::from_secs(40), async {
            let d = Daemon::start(PORTS, |_| {}).await;
            let flood = UdpSocket::bind("127.0.0.5:0").await.unwrap();
            let local = flood.local_addr().unwrap();
            for _ in 0..60 {
                flood
                    .send_to(&options_request(local, d.addr, "UDP", "flood"), d.addr)
                    .await
                    .unwrap();
            }
            let mut answered = 0;
            let mut buf = vec![0u8; 4096];
            while let Ok(Ok(_)) =
                timeout(Duration::from_millis(700), flood.recv_from(&mut buf)).await
            {
                answered += 1;
            }
            // Kamailio-pike default: 16 requests per 2 s, then silence.
            assert_eq!(answered, 16, "answers to a 60-request burst");
            // Still silenced a while later, over UDP and TCP.
            tokio::time::sleep(Duration::from_secs(2)).await;
            flood
                .send_to(&options_request(local, d.addr, "UDP", "flood"), d.addr)
                .await
                .unwrap();
            let later = timeout(Duration::from_secs(1), flood.recv_from(&mut buf)).await;
            assert!(later.is_err(), "a banned address was answered again");
            assert!(
                refused("127.0.0.5", d.addr).await,
                "a banned address got a TCP connection"
            );

            // Another address places a whole call meanwhile.
            let phone = d.phone_from(Transport::Udp, "127.0.0.6").await;
            full_call(&phone).await;
        })
        .await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_own_loopback_is_trusted_and_never_banned() {
    bounded(Duration::from_secs(30), async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        for _ in 0..100 {
            sock.send_to(&options_request(local, d.addr, "UDP", "monitor"), d.addr)
                .await
                .unwrap();
        }
        let mut answered = 0;
        let mut buf = vec![0u8; 4096];
        while let Ok(Ok(_)) = timeout(Duration::from_millis(700), sock.recv_from(&mut buf)).await {
            answered += 1;
        }
        assert_eq!(answered, 100);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_calls_derived_from_the_rtp_range_an_invite_gets_503_with_retry_after() {
    bounded(Duration::from_secs(40), async {
        // 8 RTP ports: 4 pairs, two legs a call, so max_calls = 2.
        let d = Daemon::start((49000, 49007), |c| c.menu.timeout_s = 3).await;
        let a = d.phone(Transport::Udp).await;
        let b = d.phone(Transport::Udp).await;
        let first = a.call(CallOptions::default()).await.unwrap();
        let second = b.call(CallOptions::default()).await.unwrap();
        assert_eq!((first.status, second.status), (200, 200));

        let c = d.phone(Transport::Udp).await;
        let refused = c.call(CallOptions::default()).await.unwrap();
        assert_eq!(refused.status, 503);
        assert_eq!(refused.response.header("Retry-After"), Some("30"));
        // At the cap OPTIONS says 503 too, so a load balancer steers elsewhere.
        assert_eq!(c.options().await.unwrap(), 503);

        assert_eq!(first.hangup().await.unwrap(), 200);
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.options().await.unwrap() != 200 {
            assert!(Instant::now() < deadline, "the slot was not freed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let third = c.call(CallOptions::default()).await.unwrap();
        assert_eq!(third.status, 200);
        assert_eq!(third.hangup().await.unwrap(), 200);
        assert_eq!(second.hangup().await.unwrap(), 200);
    })
    .await;
}
