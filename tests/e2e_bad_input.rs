//! Malformed input on the wire: the daemon answers 400 where a response can be addressed,
//! stays silent where it cannot, and keeps taking calls afterwards (RFC 3261 sections
//! 8.2 and 18.3).

mod common;

use std::time::Duration;

use common::daemon::*;
use common::phone::*;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const PORTS: (u16, u16) = (43000, 43999);
const LIMIT: Duration = Duration::from_secs(30);

/// An OPTIONS with every mandatory header, over UDP from `phone`. `start_line` and the
/// headers to drop or add let each test break exactly one thing.
fn request(phone: &Phone, start_line: &str, drop: &[&str], extra: &str, body: &str) -> Vec<u8> {
    let server = phone.server();
    let headers = [
        (
            "Via",
            format!(
                "SIP/2.0/UDP {};branch={};rport",
                phone.local_addr(),
                new_branch()
            ),
        ),
        ("Max-Forwards", "70".to_string()),
        (
            "From",
            format!("<sip:tester@127.0.0.1>;tag={}", random_token(8)),
        ),
        ("To", format!("<sip:6289110@{server}>")),
        ("Call-ID", "bad-input-1@127.0.0.1".to_string()),
        ("CSeq", "1 OPTIONS".to_string()),
    ];
    let mut text = format!("{start_line}\r\n");
    for (name, value) in headers.iter().filter(|(n, _)| !drop.contains(n)) {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(extra);
    if !extra.contains("Content-Length") {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

fn options_line(phone: &Phone) -> String {
    format!("OPTIONS sip:6289110@{} SIP/2.0", phone.server())
}

/// Everything the daemon sends back within `wait`.
async fn answers(phone: &mut Phone, wait: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match phone.recv_raw(left).await {
            Some(b) => out.push(b),
            None => break,
        }
    }
    out
}

/// The daemon still answers OPTIONS and completes a whole call.
async fn still_takes_calls(d: &Daemon, transport: Transport) {
    let phone = d.phone(transport).await;
    assert_eq!(phone.options().await.unwrap(), 200);
    let call = phone.call(CallOptions::default()).await.unwrap();
    assert_eq!(call.status, 200);
    wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
    assert_eq!(call.send_dtmf_info('2').await.unwrap(), 200);
    call.wait_for_bye(Duration::from_secs(5)).await.unwrap();
    let row = d
        .ended_record(&call.dialog.call_id, Duration::from_secs(3))
        .await;
    assert_eq!(row.station.as_deref(), Some("health"));
    assert_eq!(row.outcome.as_deref(), Some("no_answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_request_line_gets_400_naming_the_request() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let mut phone = d.phone(Transport::Udp).await;
        let srv = phone.server();
        // Each line is broken in one way; every header is fine, so a 400 can be addressed.
        let lines = [
            format!("OPTIONS sip:6289110@{srv}"),          // no version
            format!("OPTIONS  sip:6289110@{srv} SIP/2.0"), // empty URI between two spaces
            "OPTIONS SIP/2.0".to_string(),                 // no URI
            format!("OPT!ONS sip:6289110@{srv} SIP/2.0"),  // not a token
            format!("OPTIONS sip:6289110@{srv} SIP/2.0 extra"),
        ];
        let mut wrong = Vec::new();
        for line in &lines {
            phone
                .send_raw(&request(&phone, line, &[], "", ""))
                .await
                .unwrap();
            let got = answers(&mut phone, Duration::from_millis(700)).await;
            let resp: Vec<_> = got
                .iter()
                .filter_map(|g| SipMessage::parse(g).ok())
                .collect();
            let ok = resp.len() == 1
                && resp[0].status() == Some(400)
                && resp[0].call_id() == Some("bad-input-1@127.0.0.1")
                && resp[0].cseq() == Some((1, "OPTIONS".into()));
            if !ok {
                let statuses: Vec<_> = resp.iter().map(|m| m.status()).collect();
                wrong.push(format!("{line:?} -> {} answers {statuses:?}", got.len()));
            }
        }
        assert!(wrong.is_empty(), "expected one 400 each, got: {wrong:#?}");
        still_takes_calls(&d, Transport::Udp).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_larger_than_body_gets_400() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let mut phone = d.phone(Transport::Udp).await;
        let line = options_line(&phone);
        let body = "v=0\r\n";
        let extra = "Content-Type: application/sdp\r\nContent-Length: 200\r\n";
        phone
            .send_raw(&request(&phone, &line, &[], extra, body))
            .await
            .unwrap();
        let got = answers(&mut phone, Duration::from_secs(1)).await;
        assert_eq!(got.len(), 1, "expected one 400, got {} answers", got.len());
        let resp = SipMessage::parse(&got[0]).unwrap();
        assert_eq!(resp.status(), Some(400));
        assert_eq!(resp.call_id(), Some("bad-input-1@127.0.0.1"));
        still_takes_calls(&d, Transport::Udp).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_call_id_gets_no_answer() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let mut phone = d.phone(Transport::Udp).await;
        let line = options_line(&phone);
        phone
            .send_raw(&request(&phone, &line, &["Call-ID"], "", ""))
            .await
            .unwrap();
        let got = answers(&mut phone, Duration::from_secs(1)).await;
        assert!(
            got.is_empty(),
            "answered: {:?}",
            String::from_utf8_lossy(&got[0])
        );
        still_takes_calls(&d, Transport::Udp).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_datagrams_get_no_answer() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let mut phone = d.phone(Transport::Udp).await;
        let junk: Vec<Vec<u8>> = vec![
            b"hello there\r\n\r\n".to_vec(),
            (0..=255u8).cycle().take(700).collect(),
            vec![0u8; 1],
            b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
            // 20 KB of junk that starts like a request.
            [
                format!("INVITE sip:6289110@{} SIP/2.0\r\nX: ", phone.server()).as_bytes(),
                &vec![b'A'; 20 * 1024],
            ]
            .concat(),
            vec![b'Z'; 20 * 1024],
        ];
        for j in &junk {
            phone.send_raw(j).await.unwrap();
        }
        let got = answers(&mut phone, Duration::from_secs(1)).await;
        assert!(
            got.is_empty(),
            "answered garbage: {:?}",
            got.iter()
                .map(|g| String::from_utf8_lossy(&g[..g.len().min(80)]).to_string())
                .collect::<Vec<_>>()
        );
        still_takes_calls(&d, Transport::Udp).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_takes_calls_after_a_burst_of_bad_input() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let phone = d.phone(Transport::Udp).await;
        let line = options_line(&phone);
        let bad = [
            request(&phone, "OPTIONS sip:x", &[], "", ""),
            request(&phone, &line, &[], "Content-Length: 99\r\n", ""),
            request(&phone, &line, &["Call-ID"], "", ""),
            request(&phone, &line, &["Via"], "", ""),
            request(&phone, &line, &[], "CSeq: banana\r\n", ""),
            vec![0xFF; 5000],
        ];
        for _ in 0..20 {
            for b in &bad {
                phone.send_raw(b).await.unwrap();
            }
        }
        still_takes_calls(&d, Transport::Udp).await;
        still_takes_calls(&d, Transport::Tcp).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_tcp_message_then_close_does_not_break_the_daemon() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        d.wait_tcp_listening().await;
        for cut in [10usize, 120, 400] {
            let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let sdp = build_sdp(
                "127.0.0.1:40000".parse().unwrap(),
                &[0, 8, 101],
                "sendrecv",
                1,
            );
            let invite = format!(
                "INVITE sip:6289110@{srv} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch={br}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:tester@127.0.0.1>;tag=t1\r\n\
                 To: <sip:6289110@{srv}>\r\nCall-ID: trunc-{cut}@127.0.0.1\r\nCSeq: 1 INVITE\r\n\
                 Contact: <sip:tester@{local};transport=tcp>\r\n\
                 Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
                srv = d.addr,
                br = new_branch(),
                len = sdp.len(),
            );
            let cut = cut.min(invite.len() - 1);
            s.write_all(&invite.as_bytes()[..cut]).await.unwrap();
            s.flush().await.unwrap();
            drop(s);
        }
        // A message cut inside its body, then closed.
        let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        s.write_all(b"OPTIONS sip:6289110@127.0.0.1 SIP/2.0\r\nContent-Length: 500\r\n\r\nabc")
            .await
            .unwrap();
        drop(s);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(d.server().active_calls(), 0);
        still_takes_calls(&d, Transport::Tcp).await;
        still_takes_calls(&d, Transport::Udp).await;
    })
    .await;
}
