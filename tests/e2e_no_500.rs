//! Mutated INVITEs over UDP: whatever the daemon answers, it is never a 5xx for input
//! that is the client's fault (issue 8: 2,000 mutations drew 33 answers of 500).
//!
//! Each mutation starts from a well-formed INVITE with its own Call-ID, branch and tags
//! (so no two are retransmissions of each other), then replaces, removes or inserts a
//! few bytes. `HOTLINE_FUZZ_INVITES=20000 cargo test --test e2e_no_500` for a long run.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::*;
use common::phone::SipMessage;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;

const PORTS: (u16, u16) = (44000, 47999);

fn invite(server: std::net::SocketAddr, local: std::net::SocketAddr, n: usize) -> String {
    let body = format!(
        "v=0\r\no=- {n} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    );
    format!(
        "INVITE sip:6289110@{server} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKfz{n}x;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Fuzz\" <sip:13800138000@127.0.0.1>;tag=ft{n}\r\n\
To: <sip:6289110@{server}>\r\n\
Call-ID: fuzz-{n}@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:13800138000@{local}>\r\n\
User-Agent: fuzzer-phone\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn mutate(rng: &mut impl Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.gen_range(1..=8) {
        if v.is_empty() {
            break;
        }
        let i = rng.gen_range(0..v.len());
        match rng.gen_range(0..3) {
            0 => v[i] = rng.gen(),
            1 => {
                v.remove(i);
            }
            _ => v.insert(i, rng.gen()),
        }
    }
    v
}

fn count() -> usize {
    std::env::var("HOTLINE_FUZZ_INVITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_invites_never_draw_a_5xx() {
    bounded(Duration::from_secs(600), async {
        let d = Daemon::start(PORTS, |c| {
            c.menu.timeout_s = 1;
            c.menu.max_tries = 1;
        })
        .await;
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let local = sock.local_addr().unwrap();
        let answers: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let reader = {
            let (sock, answers) = (sock.clone(), answers.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                    answers.lock().unwrap().push(buf[..n].to_vec());
                }
            })
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut sent = HashMap::new();
        let n = count();
        for i in 0..n {
            let m = mutate(&mut rng, invite(d.addr, local, i).as_bytes());
            sock.send_to(&m, d.addr).await.unwrap();
            sent.insert(format!("fuzz-{i}@127.0.0.1"), m);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        reader.abort();
        let answers = answers.lock().unwrap().clone();
        let mut by_status: HashMap<u16, usize> = HashMap::new();
        let mut bad = Vec::new();
        for a in &answers {
            let Ok(msg) = SipMessage::parse(a) else {
                continue;
            };
            let Some(status) = msg.status() else {
                continue;
            };
            *by_status.entry(status).or_default() += 1;
            // 501 is the right answer to a method we do not know (RFC 3261 §8.2.1).
            if status >= 500 && status != 501 {
                let input = msg
                    .call_id()
                    .and_then(|c| sent.get(c))
                    .map(|m| String::from_utf8_lossy(m).to_string());
                bad.push(format!(
                    "{status} {}\n{}\nfor input:\n{}",
                    msg.reason(),
                    msg.header("Warning").unwrap_or_default(),
                    input.unwrap_or_else(|| "(Call-ID not found)".into())
                ));
            }
        }
        eprintln!("{n} mutated INVITEs, answers by status: {by_status:?}");
        assert!(
            bad.is_empty(),
            "{} answers of 5xx:\n{}",
            bad.len(),
            bad.join("\n-----\n")
        );
    })
    .await;
}

/// The same over TCP, one stream carrying all the mutations back to back: a mutated
/// Content-Length makes one message swallow the next, an unreadable one ends the
/// connection (we open another). Still never a 5xx, and a call goes through after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_invites_on_a_tcp_stream_never_draw_a_5xx() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(Duration::from_secs(600), async {
        let d = Daemon::start(PORTS, |c| {
            c.menu.timeout_s = 1;
            c.menu.max_tries = 1;
        })
        .await;
        let answers: Arc<Mutex<Vec<u8>>> = Arc::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(18);
        let n = count();
        let mut conn: Option<(tokio::net::tcp::OwnedWriteHalf, tokio::task::JoinHandle<()>)> = None;
        let mut connections = 0;
        for i in 0..n {
            if conn.as_ref().is_none_or(|(_, r)| r.is_finished()) {
                let s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
                let (mut r, w) = s.into_split();
                let answers = answers.clone();
                let reader = tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(k) = r.read(&mut buf).await {
                        if k == 0 {
                            break;
                        }
                        answers.lock().unwrap().extend_from_slice(&buf[..k]);
                    }
                });
                conn = Some((w, reader));
                connections += 1;
            }
            let Some((w, _)) = conn.as_mut() else { continue };
            let local = w.local_addr().unwrap();
            let m = mutate(&mut rng, invite(d.addr, local, i).replace("UDP", "TCP").as_bytes());
            let _ = w.write_all(&m).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut stream = answers.lock().unwrap().clone();
        let mut by_status: HashMap<u16, usize> = HashMap::new();
        let mut bad = Vec::new();
        while let Ok(Some(m)) = common::phone::take_stream_message(&mut stream) {
            let Some(status) = SipMessage::parse(&m).ok().and_then(|m| m.status()) else {
                continue;
            };
            *by_status.entry(status).or_default() += 1;
            if status >= 500 && status != 501 {
                bad.push(String::from_utf8_lossy(&m).to_string());
            }
        }
        eprintln!("{n} mutated INVITEs over {connections} TCP connections, answers by status: {by_status:?}");
        assert!(bad.is_empty(), "{} answers of 5xx:\n{}", bad.len(), bad.join("\n-----\n"));
        let phone = d.phone(common::phone::Transport::Tcp).await;
        let call = phone.call(common::phone::CallOptions::default()).await.unwrap();
        assert_eq!(call.status, 200);
    })
    .await;
}
