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
