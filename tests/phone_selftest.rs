//! The test phone (tests/common) against a minimal fake UAS written here, over UDP and TCP
//! on loopback: proves the phone is a correct peer before the e2e tests trust it.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::phone::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

/// How the fake UAS treats a new INVITE.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 100, then 200 with SDP at once (488 if no G.711 offered).
    Answer,
    /// 100 and 180, then wait for CANCEL.
    Ring,
    /// Say nothing to the first INVITE (so the phone must retransmit), answer the next.
    IgnoreFirstInvite,
}

/// What the fake saw and did.
#[derive(Default)]
struct Seen {
    requests: Vec<(Instant, SipMessage)>,
    responses: Vec<SipMessage>,
    rtp: Vec<RtpPacket>,
    /// 2xx responses to INVITE sent, retransmissions included.
    oks_sent: usize,
    dialogs: usize,
}

impl Seen {
    fn requests(&self, method: &str) -> Vec<SipMessage> {
        self.requests
            .iter()
            .filter(|(_, m)| m.method() == Some(method))
            .map(|(_, m)| m.clone())
            .collect()
    }
}

enum Out {
    Udp(Arc<UdpSocket>),
    Tcp(OwnedWriteHalf),
}

impl Out {
    async fn send(&mut self, bytes: &[u8], to: SocketAddr) {
        let _ = match self {
            Out::Udp(s) => s.send_to(bytes, to).await.map(|_| ()),
            Out::Tcp(w) => w.write_all(bytes).await,
        };
    }
}

struct Fake {
    sip: SocketAddr,
    rtp: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    send_bye: mpsc::UnboundedSender<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Fake {
    fn seen<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
        f(&lock(&self.seen))
    }

    async fn start(transport: Transport, mode: Mode) -> Fake {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let rtp_addr = rtp.local_addr().unwrap();
        let mut tasks = vec![tokio::spawn(echo_rtp(rtp, seen.clone()))];
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (bye_tx, bye_rx) = mpsc::unbounded_channel();
        let sip = match transport {
            Transport::Udp => {
                let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                let addr = sock.local_addr().unwrap();
                let reader = sock.clone();
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, from)) = reader.recv_from(&mut buf).await {
                        let _ = in_tx.send((buf[..n].to_vec(), from));
                    }
                }));
                let out = Out::Udp(sock);
                tasks.push(tokio::spawn(run_uas(
                    out,
                    in_rx,
                    bye_rx,
                    seen.clone(),
                    mode,
                    addr,
                    rtp_addr,
                    "UDP",
                )));
                addr
            }
            Transport::Tls => unreachable!("the fake server speaks UDP and TCP"),
            Transport::Tcp => {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let seen2 = seen.clone();
                tasks.push(tokio::spawn(async move {
                    let Ok((stream, peer)) = listener.accept().await else {
                        return;
                    };
                    let (mut r, w) = stream.into_split();
                    let reader = tokio::spawn(async move {
                        let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 8192]);
                        while let Ok(n) = r.read(&mut chunk).await {
                            if n == 0 {
                                break;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                            while let Ok(Some(m)) = take_stream_message(&mut buf) {
                                let _ = in_tx.send((m, peer));
                            }
                        }
                    });
                    run_uas(
                        Out::Tcp(w),
                        in_rx,
                        bye_rx,
                        seen2,
                        mode,
                        addr,
                        rtp_addr,
                        "TCP",
                    )
                    .await;
                    reader.abort();
                }));
                addr
            }
        };
        Fake {
            sip,
            rtp: rtp_addr,
            seen,
            send_bye: bye_tx,
            tasks,
        }
    }
}

/// Record every RTP packet and send it straight back.
async fn echo_rtp(sock: Arc<UdpSocket>, seen: Arc<Mutex<Seen>>) {
    let mut buf = vec![0u8; 2048];
    while let Ok((n, from)) = sock.recv_from(&mut buf).await {
        if let Some(p) = parse_rtp(&buf[..n], Instant::now()) {
            lock(&seen).rtp.push(p);
        }
        let _ = sock.send_to(&buf[..n], from).await;
    }
}

/// A final response being retransmitted until the ACK (RFC 3261 13.3.1.4 / Timer G).
struct Pending {
    bytes: Vec<u8>,
    to: SocketAddr,
    next: Instant,
    interval: Duration,
    ok: bool,
    call_id: String,
}

#[allow(clippy::too_many_arguments)]
async fn run_uas(
    mut out: Out,
    mut input: mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>,
    mut bye_cmd: mpsc::UnboundedReceiver<()>,
    seen: Arc<Mutex<Seen>>,
    mode: Mode,
    me: SocketAddr,
    rtp: SocketAddr,
    proto: &'static str,
) {
    let tag = random_token(8);
    let mut pending: Option<Pending> = None;
    let mut answered: Vec<(String, Vec<u8>)> = Vec::new(); // INVITE branch, last response
    let mut ringing: Option<(SipMessage, SocketAddr)> = None;
    let mut dialog: Option<(SipMessage, SocketAddr)> = None;
    let mut ignored = false;
    loop {
        let wake = pending
            .as_ref()
            .map_or(Instant::now() + Duration::from_secs(3600), |p| p.next);
        tokio::select! {
            m = input.recv() => {
                let Some((bytes, from)) = m else { return };
                let Ok(msg) = SipMessage::parse(&bytes) else { continue };
                if !msg.is_request() {
                    lock(&seen).responses.push(msg);
                    continue;
                }
                lock(&seen).requests.push((Instant::now(), msg.clone()));
                let method = msg.method().unwrap_or("").to_string();
                let branch = msg.branch().unwrap_or_default();
                match method.as_str() {
                    "INVITE" => {
                        if let Some((_, last)) = answered.iter().find(|(b, _)| *b == branch) {
                            out.send(&last.clone(), from).await; // a retransmission: absorb
                            continue;
                        }
                        if mode == Mode::IgnoreFirstInvite && !ignored {
                            ignored = true;
                            continue;
                        }
                        let in_dialog = msg.tag("To").is_some();
                        if !in_dialog {
                            out.send(&response_to(&msg, 100, "Trying", &tag).to_bytes(), from).await;
                        }
                        if mode == Mode::Ring {
                            let r = response_to(&msg, 180, "Ringing", &tag).to_bytes();
                            out.send(&r, from).await;
                            answered.push((branch, r));
                            ringing = Some((msg, from));
                            continue;
                        }
                        let resp = answer_invite(&msg, &tag, me, rtp);
                        let ok = resp.status() == Some(200);
                        let bytes = resp.to_bytes();
                        out.send(&bytes, from).await;
                        if ok {
                            let mut s = lock(&seen);
                            s.oks_sent += 1;
                            s.dialogs += !in_dialog as usize;
                            dialog = Some((msg.clone(), from));
                        }
                        answered.push((branch, bytes.clone()));
                        pending = Some(Pending {
                            bytes,
                            to: from,
                            next: Instant::now() + T1,
                            interval: T1,
                            ok,
                            call_id: msg.call_id().unwrap_or_default().to_string(),
                        });
                    }
                    "ACK" => {
                        if pending.as_ref().map(|p| p.call_id.as_str()) == msg.call_id() {
                            pending = None;
                        }
                    }
                    "CANCEL" => match ringing.take() {
                        Some((inv, to)) if inv.branch() == msg.branch() => {
                            out.send(&response_to(&msg, 200, "OK", &tag).to_bytes(), from).await;
                            let r = response_to(&inv, 487, "Request Terminated", &tag).to_bytes();
                            out.send(&r, to).await;
                            pending = Some(Pending {
                                bytes: r,
                                to,
                                next: Instant::now() + T1,
                                interval: T1,
                                ok: false,
                                call_id: inv.call_id().unwrap_or_default().to_string(),
                            });
                        }
                        _ => {
                            let r = response_to(&msg, 481, "Call/Transaction Does Not Exist", &tag);
                            out.send(&r.to_bytes(), from).await;
                        }
                    },
                    _ => out.send(&response_to(&msg, 200, "OK", &tag).to_bytes(), from).await,
                }
            }
            c = bye_cmd.recv() => {
                if c.is_none() { return; }
                let Some((inv, to)) = &dialog else { continue };
                let from_hdr = format!("{};tag={tag}", inv.header("To").unwrap_or_default());
                let bye = SipMessage::request("BYE", &uri_in(inv.header("Contact").unwrap_or_default()))
                    .with("Via", format!("SIP/2.0/{proto} {me};branch={}", new_branch()))
                    .with("Max-Forwards", "70")
                    .with("From", from_hdr)
                    .with("To", inv.header("From").unwrap_or_default())
                    .with("Call-ID", inv.call_id().unwrap_or_default())
                    .with("CSeq", "100 BYE");
                out.send(&bye.to_bytes(), *to).await;
            }
            _ = sleep_until(wake), if pending.is_some() => {
                if let Some(p) = pending.as_mut() {
                    out.send(&p.bytes, p.to).await;
                    lock(&seen).oks_sent += p.ok as usize;
                    p.interval = (p.interval * 2).min(T2);
                    p.next = Instant::now() + p.interval;
                }
            }
        }
    }
}

/// 200 with an SDP answer (or offer, for an INVITE without SDP), or 488 if no G.711 offered.
fn answer_invite(inv: &SipMessage, tag: &str, me: SocketAddr, rtp: SocketAddr) -> SipMessage {
    let (status, sdp) = if inv.body.is_empty() {
        (200, Some(build_sdp(rtp, &[0, 8, 101], "sendrecv", 1)))
    } else {
        let offer = parse_sdp(&inv.body_str()).unwrap();
        let direction = match offer.direction.as_str() {
            "sendonly" => "recvonly",
            "recvonly" => "sendonly",
            d => d,
        };
        match offer.audio_pt() {
            Some(pt) => {
                let mut pts = vec![pt];
                pts.extend(offer.telephone_event_pt);
                (200, Some(build_sdp(rtp, &pts, direction, 1)))
            }
            None => (488, None),
        }
    };
    let reason = if status == 200 {
        "OK"
    } else {
        "Not Acceptable Here"
    };
    let mut resp = response_to(inv, status, reason, tag);
    if let Some(sdp) = sdp {
        resp.push("Record-Route", format!("<sip:{me};lr>"));
        resp.push("Contact", format!("<sip:ivr@{me}>"));
        resp.set_body("application/sdp", sdp.into_bytes());
    }
    resp
}

async fn setup(transport: Transport, mode: Mode) -> (Fake, Phone) {
    let fake = Fake::start(transport, mode).await;
    let phone = Phone::new(transport, fake.sip).await.unwrap();
    (fake, phone)
}

#[test]
fn g711_decode_vectors() {
    assert_eq!(ulaw_to_linear(0xFF), 0);
    assert_eq!(ulaw_to_linear(0x7F), 0);
    assert_eq!(ulaw_to_linear(0x80), 32124);
    assert_eq!(ulaw_to_linear(0x00), -32124);
    assert_eq!(ulaw_to_linear(0xFE), 8); // segment 0, step 8
    assert_eq!(ulaw_to_linear(0xEF), 132); // segment 1 starts
    assert_eq!(alaw_to_linear(0xD5), 8);
    assert_eq!(alaw_to_linear(0x55), -8);
    assert_eq!(alaw_to_linear(0xAA), 32256);
    assert_eq!(alaw_to_linear(0x2A), -32256);
    assert_eq!(linear_to_ulaw(0), 0xFF);
    assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    assert_eq!(linear_to_alaw(0), 0xD5);
    // Every code decodes and re-encodes to itself (except mu-law's two zeros).
    for b in 0..=255u8 {
        assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "A-law {b:#x}");
        if b != 0x7F {
            assert_eq!(linear_to_ulaw(ulaw_to_linear(b)), b, "mu-law {b:#x}");
        }
    }
    // Quantisation error stays within one step of the segment (16 steps per segment).
    for s in (-32000i16..32000).step_by(97) {
        let bound = 16 + (s as i32).abs() / 8;
        let err = (ulaw_to_linear(linear_to_ulaw(s)) as i32 - s as i32).abs();
        assert!(err <= bound, "mu-law {s} err {err}");
        let err = (alaw_to_linear(linear_to_alaw(s)) as i32 - s as i32).abs();
        assert!(err <= bound, "A-law {s} err {err}");
    }
}

#[test]
fn goertzel_finds_both_dtmf_frequencies() {
    let pcm = dtmf_tone('5', 100).unwrap();
    assert!(dominant_energy(&pcm, 770.0) > 0.4);
    assert!(dominant_energy(&pcm, 1336.0) > 0.4);
    assert!(dominant_energy(&pcm, 697.0) < 0.05);
    assert!(dominant_energy(&pcm, 1209.0) < 0.05);
    assert_eq!(dominant_energy(&[0; 800], 770.0), 0.0);
    // -10 dBm0 per tone: about 7160 peak, RMS of the pair about 7160.
    let r = rms(&pcm);
    assert!((6500.0..7800.0).contains(&r), "rms {r}");
}

#[test]
fn parses_folded_compact_and_list_headers() {
    let raw = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKa, SIP/2.0/UDP 5.6.7.8;branch=z9hG4bKb\r\nRecord-Route: <sip:p1;lr>,\r\n <sip:p2;lr>\r\nt: <sip:x@y>;tag=abc\r\ni: cid\r\nCSeq: 7 INVITE\r\nl: 4\r\n\r\nbodyEXTRA";
    let m = SipMessage::parse(raw).unwrap();
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.branch().as_deref(), Some("z9hG4bKa"));
    assert_eq!(m.header_values("Via").len(), 2);
    assert_eq!(
        m.header_values("Record-Route"),
        ["<sip:p1;lr>", "<sip:p2;lr>"]
    );
    assert_eq!(m.tag("To").as_deref(), Some("abc"));
    assert_eq!(m.cseq(), Some((7, "INVITE".to_string())));
    assert_eq!(m.body, b"body");
    let mut stream = [raw.as_slice(), b"\r\n", raw].concat();
    stream.truncate(stream.len() - 20);
    assert!(take_stream_message(&mut stream).unwrap().is_some());
    assert!(take_stream_message(&mut stream).unwrap().is_none());
}

/// Call, ACK with the dialog's tags, RTP both ways, BYE through the route set.
async fn call_ack_media_hangup(transport: Transport) {
    let (fake, phone) = setup(transport, Mode::Answer).await;
    let call = phone.call(CallOptions::default()).await.unwrap();
    assert_eq!(call.status, 200);
    assert_eq!(call.provisional, [100]);
    assert_eq!(call.payload_type, Some(0));
    assert_eq!(call.telephone_event_pt, 101);
    assert_eq!(call.remote_rtp, Some(fake.rtp));
    assert_eq!(call.route_set, [format!("<sip:{};lr>", fake.sip)]);
    assert!(call.to_tag.is_some());
    assert!(call.answer_delay() < Duration::from_millis(200));
    assert!(call
        .first_provisional_at
        .is_some_and(|t| t <= call.final_at));

    sleep(Duration::from_millis(300)).await;
    let invite = fake.seen(|s| s.requests("INVITE")).remove(0);
    let via = invite.header("Via").unwrap();
    assert!(via.starts_with(&format!("SIP/2.0/{transport:?}").to_uppercase()));
    assert!(via.contains(";branch=z9hG4bK") && via.ends_with(";rport"));
    assert_eq!(
        invite.uri(),
        Some(format!("sip:6289110@{}", fake.sip).as_str())
    );
    assert!(invite.tag("From").is_some());
    assert_eq!(invite.header("Max-Forwards"), Some("70"));
    let offer = parse_sdp(&invite.body_str()).unwrap();
    assert_eq!(offer.payload_types, [0, 8, 101]);
    assert!(offer.raw.contains("a=fmtp:101 0-16"));

    let acks = fake.seen(|s| s.requests("ACK"));
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].cseq(), Some((1, "ACK".into())));
    assert_eq!(acks[0].tag("To"), call.to_tag);
    assert_ne!(
        acks[0].branch(),
        invite.branch(),
        "2xx ACK is its own transaction"
    );
    assert_eq!(
        acks[0].uri(),
        Some(format!("sip:ivr@{}", fake.sip).as_str())
    );

    let rtp = fake.seen(|s| s.rtp.clone());
    assert!(rtp.len() >= 8, "silence every 20 ms, got {}", rtp.len());
    assert!(rtp.iter().all(|p| p.pt == 0 && p.payload == [0xFF; 160]));
    let st = call.rtp_stats();
    assert!(st.packets >= 8);
    assert_eq!(st.payload_types, [0]);
    assert_eq!(st.ssrcs.len(), 1);
    assert_eq!((st.seq_discontinuities, st.ts_discontinuities), (0, 0));
    assert_eq!(call.rms_of_last(100), 0.0);

    assert_eq!(call.hangup().await.unwrap(), 200);
    let bye = fake.seen(|s| s.requests("BYE")).remove(0);
    assert_eq!(
        bye.header("Route"),
        Some(format!("<sip:{};lr>", fake.sip).as_str())
    );
    assert_eq!(bye.cseq(), Some((2, "BYE".into())));
    sleep(Duration::from_millis(100)).await;
    let n = fake.seen(|s| s.rtp.len());
    sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.seen(|s| s.rtp.len()), n, "no RTP after BYE");
}

#[tokio::test]
async fn udp_call_ack_media_hangup() {
    call_ack_media_hangup(Transport::Udp).await;
}

#[tokio::test]
async fn tcp_call_ack_media_hangup() {
    call_ack_media_hangup(Transport::Tcp).await;
}

#[tokio::test]
async fn rfc4733_event_packets() {
    let (fake, phone) = setup(Transport::Udp, Mode::Answer).await;
    let call = phone.call(CallOptions::default()).await.unwrap();
    call.send_dtmf_rfc4733('5', 100).await.unwrap();
    sleep(Duration::from_millis(60)).await;
    let rtp = fake.seen(|s| s.rtp.clone());
    let ev: Vec<_> = rtp.iter().filter(|p| p.pt == 101).collect();
    assert_eq!(ev.len(), 5 + 3);
    let te: Vec<_> = ev
        .iter()
        .map(|p| TelephoneEvent::parse(&p.payload).unwrap())
        .collect();
    assert!(ev[0].marker && ev[1..].iter().all(|p| !p.marker));
    assert!(
        ev.iter().all(|p| p.ts == ev[0].ts),
        "one timestamp per event"
    );
    assert!(ev.windows(2).all(|w| w[1].seq == w[0].seq.wrapping_add(1)));
    assert!(te.iter().all(|t| t.event == 5 && t.volume == 10));
    let durations: Vec<u16> = te.iter().map(|t| t.duration).collect();
    assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800, 800]);
    assert_eq!(te.iter().filter(|t| t.end).count(), 3);
    assert!(te[5..].iter().all(|t| t.end));
    // Audio resumes on the same clock, after the event.
    let last = ev[7];
    let next_audio = rtp
        .iter()
        .find(|p| p.pt == 0 && p.seq == last.seq.wrapping_add(1));
    assert!(next_audio.is_some_and(|p| p.ts.wrapping_sub(last.ts) >= 800));
}

#[tokio::test]
async fn info_dtmf_over_tcp() {
    let (fake, phone) = setup(Transport::Tcp, Mode::Answer).await;
    let call = phone.call(CallOptions::default()).await.unwrap();
    assert_eq!(call.send_dtmf_info('5').await.unwrap(), 200);
    assert_eq!(call.send_dtmf_info('#').await.unwrap(), 200);
    let infos = fake.seen(|s| s.requests("INFO"));
    assert_eq!(infos.len(), 2);
    assert_eq!(
        infos[0].header("Content-Type"),
        Some("application/dtmf-relay")
    );
    assert_eq!(infos[0].body, b"Signal=5\r\nDuration=160\r\n");
    assert_eq!(infos[1].body, b"Signal=#\r\nDuration=160\r\n");
    assert_eq!(infos[0].cseq(), Some((2, "INFO".into())));
    assert_eq!(infos[1].cseq(), Some((3, "INFO".into())));
}

#[tokio::test]
async fn inband_dtmf_has_both_tones() {
    let (fake, phone) = setup(Transport::Udp, Mode::Answer).await;
    let call = phone.call(CallOptions::default()).await.unwrap();
    call.send_dtmf_inband('9', 200).await.unwrap();
    sleep(Duration::from_millis(60)).await;
    let rtp = fake.seen(|s| s.rtp.clone());
    let loud: Vec<i16> = rtp
        .iter()
        .map(|p| decode(p.pt, &p.payload))
        .filter(|f| rms(f) > 1000.0)
        .flatten()
        .collect();
    assert_eq!(loud.len(), 200 * 8, "200 ms of tone");
    assert!(dominant_energy(&loud, 852.0) > 0.4);
    assert!(dominant_energy(&loud, 1477.0) > 0.4);
    assert!(dominant_energy(&loud, 941.0) < 0.05);
    // The echo came back through the phone's receiver and decoder.
    let pcm = call.received_pcm();
    let loud: Vec<i16> = pcm
        .chunks(160)
        .filter(|f| rms(f) > 1000.0)
        .flatten()
        .copied()
        .collect();
    assert_eq!(loud.len(), 200 * 8);
    assert!(dominant_energy(&loud, 852.0) > 0.4 && dominant_energy(&loud, 1477.0) > 0.4);
    assert!(call.rms_of_last(40) < 100.0, "silence after the tone");
}

#[tokio::test]
async fn never_ack_sees_200_retransmissions() {
    let (fake, phone) = setup(Transport::Udp, Mode::Answer).await;
    let opts = CallOptions {
        never_ack: true,
        ..CallOptions::default()
    };
    let call = phone.call(opts).await.unwrap();
    // The fake retransmits at 0.5 s, 1.5 s, 3.5 s after the first 200 (T1 doubling).
    sleep(Duration::from_millis(2200)).await;
    let re = call.ok_retransmissions();
    assert_eq!(re.len(), 2, "{re:?}");
    let ms = |d: Duration| d.as_millis();
    assert!((400..900).contains(&ms(re[0])), "{re:?}");
    assert!((1300..2000).contains(&ms(re[1])), "{re:?}");
    assert_eq!(fake.seen(|s| s.requests("ACK").len()), 0);
    assert_eq!(fake.seen(|s| s.oks_sent), 3);
}

#[tokio::test]
async fn drop_first_ack_acks_the_retransmission() {
    let (fake, phone) = setup(Transport::Udp, Mode::Answer).await;
    let opts = CallOptions {
        drop_first_ack: true,
        ..CallOptions::default()
    };
    let call = phone.call(opts).await.unwrap();
    sleep(Duration::from_millis(1800)).await;
    assert_eq!(call.ok_retransmissions().len(), 1);
    assert_eq!(fake.seen(|s| s.requests("ACK").len()), 1);
}

#[tokio::test]
async fn duplicate_invite_same_branch() {
    let (fake, phone) = setup(Transport::Udp, Mode::Answer).await;
    let opts = CallOptions {
        duplicate_invite: true,
        call_id: Some("dup-test@127.0.0.1".into()),
        ..CallOptions::default()
    };
    let call = phone.call(opts).await.unwrap();
    assert_eq!(call.status, 200);
    assert_eq!(call.dialog.call_id, "dup-test@127.0.0.1");
    sleep(Duration::from_millis(100)).await;
    let invites = fake.seen(|s| s.requests("INVITE"));
    assert_eq!(invites.len(), 2);
    assert_eq!(invites[0], invites[1]);
    assert_eq!(fake.seen(|s| s.dialogs), 1);
}

#[tokio::test]
async fn udp_invite_retransmitted_per_timer_a() {
    let (fake, phone) = setup(Transport::Udp, Mode::IgnoreFirstInvite).await;
    let call = phone.call(CallOptions::default()).await.unwrap();
    assert_eq!(call.status, 200);
    let times: Vec<Instant> = fake.seen(|s| {
        s.requests
            .iter()
            .filter(|(_, m)| m.method() == Some("INVITE"))
            .map(|(t, _)| *t)
            .collect()
    });
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(gap > Duration::from_millis(450) && gap < Duration::from_millis(900));
}

#[tokio::test]
async fn g729_only_gets_488_and_same_transaction_ack() {
    let (fake, phone) = setup(Transport::Udp, Mode::Answer).await;
    let call = phone.call(CallOptions::g729_only()).await.unwrap();
    assert_eq!(call.status, 488);
    assert!(call.payload_type.is_none());
    sleep(Duration::from_millis(100)).await;
    let invite = fake.seen(|s| s.requests("INVITE")).remove(0);
    assert!(invite.body_str().contains("m=audio") && invite.body_str().contains(" RTP/AVP 18\r\n"));
    let acks = fake.seen(|s| s.requests("ACK"));
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].branch(), invite.branch());
    assert_eq!(acks[0].uri(), invite.uri());
    assert_eq!(acks[0].tag("To"), call.to_tag);
}

#[tokio::test]
async fn no_sdp_invite_answers_in_ack() {
    let (fake, phone) = setup(Transport::Tcp, Mode::Answer).await;
    let call = phone.call(CallOptions::no_sdp()).await.unwrap();
    assert_eq!(call.status, 200);
    assert_eq!(call.payload_type, Some(0));
    sleep(Duration::from_millis(100)).await;
    assert!(fake.seen(|s| s.requests("INVITE"))[0].body.is_empty());
    let ack = fake.seen(|s| s.requests("ACK")).remove(0);
    assert_eq!(ack.header("Content-Type"), Some("application/sdp"));
    let answer = parse_sdp(&ack.body_str()).unwrap();
    assert_eq!(answer.payload_types, [0, 101]);
    assert_eq!(answer.rtp_addr, Some(call.local_rtp));
}

#[tokio::test]
async fn answers_the_servers_bye() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let (fake, phone) = setup(transport, Mode::Answer).await;
        let call = phone.call(CallOptions::default()).await.unwrap();
        assert!(call.wait_for_bye(Duration::from_millis(100)).await.is_err());
        fake.send_bye.send(()).unwrap();
        call.wait_for_bye(Duration::from_secs(2)).await.unwrap();
        assert!(call.bye_received());
        assert_eq!(
            call.requests_received()
                .last()
                .and_then(|m| m.method().map(String::from)),
            Some("BYE".into())
        );
        sleep(Duration::from_millis(50)).await;
        let resp = fake.seen(|s| s.responses.clone());
        assert_eq!(resp.len(), 1);
        assert_eq!(resp[0].status(), Some(200));
        assert_eq!(resp[0].cseq(), Some((100, "BYE".into())));
    }
}

#[tokio::test]
async fn invite_then_cancel_gets_487() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let (fake, phone) = setup(transport, Mode::Ring).await;
        let out = phone
            .invite_then_cancel(CallOptions::default())
            .await
            .unwrap();
        assert_eq!(out.provisional.first(), Some(&100));
        assert_eq!(out.cancel_status, Some(200));
        assert_eq!(out.invite_status, Some(487));
        assert_eq!(out.bye_status, None);
        sleep(Duration::from_millis(50)).await;
        let invite = fake.seen(|s| s.requests("INVITE")).remove(0);
        let cancel = fake.seen(|s| s.requests("CANCEL")).remove(0);
        let ack = fake.seen(|s| s.requests("ACK")).remove(0);
        assert_eq!(cancel.branch(), invite.branch());
        assert_eq!(cancel.cseq(), Some((1, "CANCEL".into())));
        assert_eq!(ack.branch(), invite.branch());
    }
}

#[tokio::test]
async fn reinvite_hold_gets_recvonly() {
    let (fake, phone) = setup(Transport::Udp, Mode::Answer).await;
    let call = phone.call(CallOptions::default()).await.unwrap();
    let out = call.reinvite_hold().await.unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(out.remote_sdp.unwrap().direction, "recvonly");
    sleep(Duration::from_millis(50)).await;
    let invites = fake.seen(|s| s.requests("INVITE"));
    assert_eq!(invites.len(), 2);
    assert!(invites[1].body_str().contains("a=sendonly"));
    assert_eq!(invites[1].tag("To"), call.to_tag);
    assert_eq!(fake.seen(|s| s.requests("ACK")).len(), 2);
}

#[tokio::test]
async fn options_and_raw_messages() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let (_fake, mut phone) = setup(transport, Mode::Answer).await;
        assert_eq!(phone.options().await.unwrap(), 200);
        let raw = format!(
            "OPTIONS sip:6289110@{0} SIP/2.0\r\nVia: SIP/2.0/{1} {2};branch=z9hG4bKraw1\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:6289110@{0}>\r\nCall-ID: raw1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            phone.server(),
            if transport == Transport::Udp { "UDP" } else { "TCP" },
            phone.local_addr()
        );
        phone.send_raw(raw.as_bytes()).await.unwrap();
        let got = phone.recv_raw(Duration::from_secs(2)).await.unwrap();
        let m = SipMessage::parse(&got).unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.call_id(), Some("raw1"));
        assert!(phone.recv_raw(Duration::from_millis(50)).await.is_none());
    }
}

#[tokio::test]
async fn no_rtp_when_send_rtp_is_false() {
    let (fake, phone) = setup(Transport::Udp, Mode::Answer).await;
    let opts = CallOptions {
        send_rtp: false,
        ..CallOptions::default()
    };
    let call = phone.call(opts).await.unwrap();
    sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.seen(|s| s.rtp.len()), 0);
    // Queued DTMF still goes out.
    call.send_dtmf_rfc4733('1', 40).await.unwrap();
    sleep(Duration::from_millis(30)).await;
    assert_eq!(fake.seen(|s| s.rtp.len()), 2 + 3);
}
