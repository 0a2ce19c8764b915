//! End-to-end media details over loopback: dynamic payload types, a phone that
//! moves its RTP. The daemon runs in-process; the far end is a plain UDP socket
//! where the test phone cannot do what is needed.

mod common;

use std::time::Duration;

use common::daemon::*;
use common::g711::decode;
use common::phone::*;
use common::rtp::parse_rtp;
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

/// RTP ports for this test binary (the others use their own ranges).
const PORTS: (u16, u16) = (49000, 49499);
const LIMIT: Duration = Duration::from_secs(30);

/// An offer mapping PCMU to 96 and telephone-event to 97 (both dynamic numbers).
fn offer_pt96(rtp_port: u16) -> String {
    format!(
        "v=0\r\no=tester 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 96 97\r\na=rtpmap:96 PCMU/8000\r\n\
         a=rtpmap:97 telephone-event/8000\r\na=fmtp:97 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_using_pt_96_for_pcmu_hears_the_prompt() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let phone = d.phone(Transport::Udp).await;
        let ear = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = ear.local_addr().unwrap().port();
        let call = phone
            .call(CallOptions {
                sdp_override: Some(offer_pt96(port)),
                ..CallOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(call.status, 200);
        let answer = call
            .remote_sdp
            .as_ref()
            .map(|s| s.raw.clone())
            .unwrap_or_default();
        assert!(answer.contains("RTP/AVP 96"), "answer keeps 96: {answer}");
        assert!(answer.contains("a=rtpmap:96 PCMU/8000"), "{answer}");

        // The greeting arrives as PCMU on 96, never on 0.
        let mut buf = [0u8; 2048];
        let mut welcome_frames = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while welcome_frames < 10 && Instant::now() < deadline {
            let Ok(Ok(n)) = timeout(Duration::from_secs(2), ear.recv(&mut buf)).await else {
                continue;
            };
            let Some(p) = parse_rtp(&buf[..n], Instant::now()) else {
                continue;
            };
            assert_eq!(p.pt, 96, "audio goes out with the peer's number");
            if classify_frame(&decode(0, &p.payload)) == Some("welcome") {
                welcome_frames += 1;
            }
        }
        assert!(
            welcome_frames >= 10,
            "heard {welcome_frames} frames of the welcome"
        );
        call.hangup().await.unwrap();
    })
    .await;
}

/// The middle 32 bits of a 64-bit NTP timestamp (RFC 3550 6.4.1, LSR).
fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// RTCP on the wire (RFC 3550): the daemon sends the caller's leg a sender
/// report (with SDES CNAME) to where the peer's RTCP comes from, takes the
/// peer's receiver report, and stores a round trip computed from its LSR/DLSR
/// with the call's `call_quality` row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_sender_report_and_peer_receiver_report_give_a_round_trip() {
    use rtcp::packet::{marshal, unmarshal};
    use rtcp::receiver_report::ReceiverReport;
    use rtcp::reception_report::ReceptionReport;
    use rtcp::sender_report::SenderReport;
    use rtcp::source_description::SourceDescription;

    bounded(LIMIT, async {
        // A long menu timeout: the caller sits in the menu while reports go by.
        let d = Daemon::start(PORTS, |c| c.menu.timeout_s = 20).await;
        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::default()).await.unwrap();
        assert_eq!(call.status, 200);
        let daemon_rtp = call.remote_rtp.expect("answer has a media address");
        let daemon_rtcp = std::net::SocketAddr::new(daemon_rtp.ip(), daemon_rtp.port() + 1);

        // Our RTCP socket: an empty receiver report from it shows the daemon where
        // our reports come from, and its reports come back there.
        let ours: u32 = 0x5eed_0001;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let hello = ReceiverReport {
            ssrc: ours,
            ..Default::default()
        };
        let bytes = marshal(&[Box::new(hello)]).unwrap();
        sock.send_to(&bytes, daemon_rtcp).await.unwrap();

        // The daemon's first report is due about 2.5 s after the answer.
        let mut buf = [0u8; 1500];
        let (sr, cname) = loop {
            let (n, from) = timeout(Duration::from_secs(8), sock.recv_from(&mut buf))
                .await
                .expect("the daemon sent no RTCP within 8 s")
                .unwrap();
            assert_eq!(from, daemon_rtcp, "RTCP comes from the RTP port + 1");
            let packets = unmarshal(&mut &buf[..n]).expect("a valid RTCP compound packet");
            let sr = packets
                .iter()
                .find_map(|p| p.as_any().downcast_ref::<SenderReport>().cloned());
            let cname = packets
                .iter()
                .find_map(|p| p.as_any().downcast_ref::<SourceDescription>().cloned());
            if let Some(sr) = sr {
                break (sr, cname);
            }
        };
        let got_sr_at = Instant::now();
        assert!(sr.packet_count > 0, "the prompts were counted: {sr:?}");
        assert!(cname.is_some(), "a compound report carries SDES CNAME");

        // Answer with a report block about the daemon's stream, 20 ms after its SR.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let held = got_sr_at.elapsed();
        let rr = ReceiverReport {
            ssrc: ours,
            reports: vec![ReceptionReport {
                ssrc: sr.ssrc,
                last_sender_report: ntp_middle(sr.ntp_time),
                delay: (held.as_micros() * 65_536 / 1_000_000) as u32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = marshal(&[Box::new(rr)]).unwrap();
        sock.send_to(&bytes, daemon_rtcp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let call_id = call.dialog.call_id.clone();
        call.hangup().await.unwrap();
        let _ = d.ended_record(&call_id, LIMIT).await;
        let store = d.server().store();
        store.flush(Duration::from_secs(5)).await.unwrap();
        let calls = store.recent_calls_with_attempts(10).await.unwrap();
        let this = calls
            .iter()
            .find(|c| c.call.call_id == call_id)
            .expect("the call is recorded");
        let caller = this
            .quality
            .iter()
            .find(|q| q.attempt_no == 0)
            .expect("the caller's leg has a call_quality row");
        assert!(
            caller.rtcp_reports >= 2,
            "both our reports were read: {caller:?}"
        );
        let rtt = caller.rtt_us.expect("a round trip from our LSR/DLSR");
        // Loopback: the true round trip is well under 100 ms even on a busy machine.
        assert!(rtt < 100_000, "round trip {rtt} us");
        assert!(caller.packets_sent > 0, "{caller:?}");
    })
    .await;
}
