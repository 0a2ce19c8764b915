//! Stream continuity across every switch a caller's leg goes through, driven
//! with virtual time: the packets really leave on a loopback socket.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::*;
use crate::media::relay::LegMedia;
use crate::media::rtp::{parse, write_header, RTP_HEADER_LEN};

struct Leg {
    tx: StreamTx,
    ear: UdpSocket,
    buf: [u8; 1500],
}

/// (marker, seq, timestamp, ssrc) of one packet heard.
type Heard = (bool, u16, u32, u32);

impl Leg {
    fn new() -> Leg {
        let ear = UdpSocket::bind("127.0.0.1:0").expect("bind ear");
        ear.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let sock = RtpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let remote = ear.local_addr().expect("addr");
        Leg {
            tx: StreamTx::new(Arc::new(sock), Some(remote), Codec::Pcmu),
            ear,
            buf: [0; 1500],
        }
    }

    /// One clock tick at `t`; what the far end heard.
    fn tick(&mut self, t: Instant) -> Option<Heard> {
        let sent = self.tx.tick(&mut self.buf, t);
        sent.then(|| self.hear())
    }

    /// A packet from the other leg relayed at `t`.
    fn relay(&mut self, t: Instant, ssrc: u32, seq: u16, ts: u32) -> Option<Heard> {
        let mut p = [0xFFu8; RTP_HEADER_LEN + 160];
        write_header(&mut p, false, 0, seq, ts, ssrc);
        let legs = RelayDirection::new(
            LegMedia::new(Codec::Pcmu, Some(101)),
            LegMedia::new(Codec::Pcmu, Some(101)),
        );
        let sent = self.tx.relay(&legs, &p, t, &mut self.buf);
        sent.then(|| self.hear())
    }

    fn hear(&mut self) -> Heard {
        let mut b = [0u8; 1500];
        let n = self.ear.recv(&mut b).expect("packet heard");
        let v = parse(&b[..n]).expect("RTP");
        (v.marker, v.seq, v.timestamp, v.ssrc)
    }
}

fn prompt(frames: usize) -> Arc<Prompt> {
    Arc::new(Prompt::from_pcm(
        "p",
        vec![1000; frames * SAMPLES_PER_FRAME],
    ))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn one_stream_across_prompt_ringback_early_media_ringback_bridge_hold_unhold() {
    let t0 = Instant::now();
    let mut leg = Leg::new();
    let mut heard: Vec<(&str, Heard)> = Vec::new();
    let mut at = |name, h: Option<Heard>| heard.push((name, h.expect("sent")));

    // The menu prompt: three frames, then it ends.
    let _end = leg.tx.play(prompt(3));
    for i in 0..3 {
        at("prompt", leg.tick(t0 + ms(20 * i)));
    }
    // Ringback right after: looped.
    leg.tx.play_looped(prompt(2));
    for i in 3..6 {
        at("ringback", leg.tick(t0 + ms(20 * i)));
    }
    // 183 with SDP: the volunteer's early media replaces ringback.
    leg.tx.stop();
    leg.tx.switch();
    for i in 0..3u16 {
        let t = t0 + ms(125 + 20 * u64::from(i));
        at(
            "early",
            leg.relay(t, 0xE, 500 + i, 9000 + 160 * u32::from(i)),
        );
    }
    // The early media ends with a failed attempt: our ringback again.
    leg.tx.play_looped(prompt(2));
    for i in 10..12 {
        at("ringback2", leg.tick(t0 + ms(20 * i)));
    }
    // The next volunteer answers: bridge.
    leg.tx.stop();
    leg.tx.switch();
    for i in 0..3u16 {
        let t = t0 + ms(245 + 20 * u64::from(i));
        at(
            "bridge",
            leg.relay(t, 0xB, 40_000 + i, 7 + 160 * u32::from(i)),
        );
    }
    // Hold: the volunteer keeps talking, nothing reaches the caller, nothing is numbered.
    leg.tx.set_sending(false);
    for i in 3..53u16 {
        let t = t0 + ms(245 + 20 * u64::from(i));
        assert!(leg
            .relay(t, 0xB, 40_000 + i, 7 + 160 * u32::from(i))
            .is_none());
    }
    // Unhold after one second.
    leg.tx.set_sending(true);
    for i in 53..56u16 {
        let t = t0 + ms(245 + 20 * u64::from(i));
        at(
            "unhold",
            leg.relay(t, 0xB, 40_000 + i, 7 + 160 * u32::from(i)),
        );
    }

    let ssrc = heard[0].1 .3;
    for w in heard.windows(2) {
        let ((_, a), (name, b)) = (w[0], w[1]);
        assert_eq!(b.1, a.1.wrapping_add(1), "{name}: seq +1 per packet");
        assert!((b.2.wrapping_sub(a.2) as i32) >= 160, "{name}: ts moves on");
        assert_eq!(b.3, ssrc, "{name}: one SSRC");
    }
    // Marker on the first packet of each part, and only there.
    for (i, (name, h)) in heard.iter().enumerate() {
        let first = i == 0 || heard[i - 1].0 != *name;
        assert_eq!(h.0, first, "{name} packet {i}: marker on the first only");
    }
    // Timestamps follow media time: consecutive frames 160 apart; the switches
    // keep the silence between; the hold's second shows.
    let ts = |i: usize| heard[i].1 .2.wrapping_sub(heard[0].1 .2);
    let expected_ms = [
        0, 20, 40, 60, 80, 100, 125, 145, 165, 200, 220, 245, 265, 285, 1305, 1325, 1345,
    ];
    let got: Vec<u32> = (0..heard.len()).map(|i| ts(i) / 8).collect();
    assert_eq!(got, expected_ms.to_vec());
}

#[tokio::test]
async fn nothing_is_numbered_without_an_address() {
    let t0 = Instant::now();
    let mut leg = Leg::new();
    let remote = leg.tx.remote.take();
    leg.tx.play_looped(prompt(2));
    assert!(leg.tick(t0).is_none());
    assert!(leg.relay(t0 + ms(10), 1, 1, 1).is_none());
    leg.tx.remote = remote;
    let first = leg.tick(t0 + ms(20)).expect("sent");
    let second = leg.tick(t0 + ms(40)).expect("sent");
    assert!(first.0 && !second.0);
    assert_eq!(second.1, first.1.wrapping_add(1));
    assert_eq!(leg.tx.out().sent().packets, 2);
}
