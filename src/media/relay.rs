//! The RTP relay between two call legs, one direction at a time: which
//! payload types of one leg become which of the other.
//!
//! When the daemon bridges the caller with a volunteer it is a back-to-back
//! user agent: each leg negotiated its own payload types and maybe its own
//! codec. A [`RelayDirection`] says how packets from leg `from` are read and
//! rewritten for leg `to`; the rewriting itself (SSRC, sequence number,
//! timestamp, marker) is done by the `to` leg's one outgoing stream,
//! [`OutStream::forward`](super::outstream::OutStream::forward), so relayed
//! packets continue the stream the leg already heard (ringback, prompts).

use super::codec::Codec;

/// What one leg negotiated in SDP, as far as the relay cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LegMedia {
    /// The audio codec this leg speaks.
    pub codec: Codec,
    /// The payload type this leg negotiated for `codec` (static 0/8 in practice,
    /// but a leg may map a dynamic number to it).
    pub payload_type: u8,
    /// The telephone-event payload type (RFC 4733), if this leg offered one.
    pub telephone_event: Option<u8>,
}

impl LegMedia {
    /// A leg using the static payload type of `codec`.
    #[cfg(test)]
    pub(crate) fn new(codec: Codec, telephone_event: Option<u8>) -> Self {
        LegMedia {
            codec,
            payload_type: codec.payload_type(),
            telephone_event,
        }
    }

    /// Whether `pt` is this leg's audio.
    #[cfg(test)]
    pub(crate) fn accepts_audio(&self, pt: u8) -> bool {
        pt == self.payload_type
    }

    /// Whether `pt` is this leg's telephone-event.
    #[cfg(test)]
    pub(crate) fn accepts_event(&self, pt: u8) -> bool {
        self.telephone_event == Some(pt)
    }
}

/// One direction of the relay: packets from leg `from` rewritten for leg `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RelayDirection {
    /// How the packets we receive are read.
    pub from: LegMedia,
    /// How the packets we send are written.
    pub to: LegMedia,
}

impl RelayDirection {
    /// Packets of `from` rewritten for `to`.
    pub(crate) fn new(from: LegMedia, to: LegMedia) -> Self {
        RelayDirection { from, to }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::encode_event;
    use crate::media::outstream::OutStream;
    use crate::media::rtp::{parse, write_header, RtpView, RTP_HEADER_LEN};
    use std::time::{Duration, Instant};

    /// One direction of a bridge as the receive path runs it: the legs' payload
    /// types, and the `to` leg's one outgoing stream.
    struct Relay {
        legs: RelayDirection,
        out: OutStream,
    }

    impl Relay {
        fn new(from: LegMedia, to: LegMedia, ssrc: u32, seq: u16, ts: u32) -> Self {
            Relay {
                legs: RelayDirection::new(from, to),
                out: OutStream::new(ssrc, seq, ts),
            }
        }

        fn forward(&mut self, p: &[u8], now: Instant, out: &mut [u8]) -> Option<usize> {
            self.out.forward(&self.legs, p, now, out)
        }

        fn local_frame(&mut self, payload: &[u8], now: Instant, out: &mut [u8]) -> usize {
            self.out
                .local_frame(self.legs.to.payload_type, payload, now, out)
        }

        /// The next volunteer answered: their packets feed the stream now.
        fn set_from(&mut self, from: LegMedia) {
            self.legs.from = from;
            self.out.switch();
        }
    }

    const PCMU: LegMedia = LegMedia {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
    };
    const PCMA: LegMedia = LegMedia {
        codec: Codec::Pcma,
        payload_type: 8,
        telephone_event: Some(96),
    };

    fn packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; RTP_HEADER_LEN + payload.len()];
        write_header(&mut p, marker, pt, seq, ts, ssrc);
        p[RTP_HEADER_LEN..].copy_from_slice(payload);
        p
    }

    fn audio(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        packet(0, false, seq, ts, ssrc, &[0xFF; 160])
    }

    /// Forwards and returns (marker, pt, seq, ts, ssrc, payload).
    fn fwd(r: &mut Relay, p: &[u8], now: Instant) -> Option<(bool, u8, u16, u32, u32, Vec<u8>)> {
        let mut out = [0u8; 1500];
        let n = r.forward(p, now, &mut out)?;
        let v: RtpView = parse(&out[..n]).expect("own output parses");
        Some((
            v.marker,
            v.payload_type,
            v.seq,
            v.timestamp,
            v.ssrc,
            v.payload.to_vec(),
        ))
    }

    fn local(r: &mut Relay, now: Instant) -> (bool, u16, u32) {
        let mut out = [0u8; 1500];
        let n = r.local_frame(&[0xFF; 160], now, &mut out);
        let v = parse(&out[..n]).expect("own output parses");
        (v.marker, v.seq, v.timestamp)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_packet_uses_initial_seq_ts_and_our_ssrc() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMU, 0xABCD, 500, 9000);
        let p = fwd(&mut r, &audio(7, 123, 1), t0).expect("forwarded");
        assert_eq!((p.0, p.1, p.2, p.3, p.4), (true, 0, 500, 9000, 0xABCD));
        let p = fwd(&mut r, &audio(8, 283, 1), t0 + ms(20)).expect("forwarded");
        assert_eq!((p.0, p.2, p.3), (false, 501, 9160));
    }

    #[test]
    fn loss_gaps_and_reorder_are_preserved_within_one_source() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMU, 1, 100, 0);
        let seqs: Vec<u16> = [(10u16, 0u64), (11, 1), (13, 3), (12, 2), (14, 4)]
            .iter()
            .map(|&(s, i)| {
                fwd(&mut r, &audio(s, u32::from(s) * 160, 9), t0 + ms(20 * i))
                    .expect("forwarded")
                    .2
            })
            .collect();
        assert_eq!(seqs, vec![100, 101, 103, 102, 104]);
    }

    #[test]
    fn ssrc_change_continues_seq_and_timestamp() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMU, 1, 1000, 50_000);
        for i in 0..3u16 {
            fwd(
                &mut r,
                &audio(200 + i, 7000 + u32::from(i) * 160, 0xAAAA),
                t0 + ms(20 * u64::from(i)),
            );
        }
        // Last packet: seq 1002, ts 50320, sent at 40 ms. The phone restarts at 60 ms
        // with random seq/ts: the next frame continues seamlessly.
        let p = fwd(&mut r, &audio(9, 4_000_000, 0xBBBB), t0 + ms(60)).expect("forwarded");
        assert_eq!((p.0, p.2, p.3, p.4), (true, 1003, 50_480, 1));
        let p = fwd(&mut r, &audio(10, 4_000_160, 0xBBBB), t0 + ms(80)).expect("forwarded");
        assert_eq!((p.0, p.2, p.3), (false, 1004, 50_640));
        // A restart after 1 s of silence keeps the silence in the timestamps.
        let p = fwd(&mut r, &audio(60_000, 5, 0xCCCC), t0 + ms(1080)).expect("forwarded");
        assert_eq!((p.0, p.2, p.3), (true, 1005, 50_800 + 8000 - 160));
        // The old SSRC straggling in is a new switch, still monotonic.
        let p = fwd(&mut r, &audio(11, 4_000_320, 0xBBBB), t0 + ms(1085)).expect("forwarded");
        assert_eq!((p.0, p.2, p.3), (true, 1006, 50_800 + 8000));
    }

    #[test]
    fn seq_jump_inside_one_ssrc_is_a_restart() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMU, 1, 0, 0);
        fwd(&mut r, &audio(100, 0, 5), t0);
        let p = fwd(&mut r, &audio(40_000, 160, 5), t0 + ms(20)).expect("forwarded");
        assert_eq!((p.0, p.2, p.3), (true, 1, 160));
    }

    #[test]
    fn local_then_relayed_then_local_is_one_stream() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMU, 1, 65_534, u32::MAX - 200);
        let mut t = t0;
        // Ringback: consecutive frames, marker on the first only.
        assert_eq!(local(&mut r, t), (true, 65_534, u32::MAX - 200));
        t += ms(20);
        assert_eq!(local(&mut r, t), (false, 65_535, u32::MAX - 40));
        t += ms(21); // tick jitter does not move the timestamp
        assert_eq!(local(&mut r, t), (false, 0, 119));
        // The volunteer answers 5 ms later: no overlap with the last ringback frame.
        t += ms(5);
        let p = fwd(&mut r, &audio(3, 77, 42), t).expect("forwarded");
        assert_eq!((p.0, p.2, p.3), (true, 1, 279));
        t += ms(20);
        let p = fwd(&mut r, &audio(4, 237, 42), t).expect("forwarded");
        assert_eq!((p.0, p.2, p.3), (false, 2, 439));
        // Screening failed: a prompt plays again 100 ms after the last relayed packet.
        t += ms(100);
        assert_eq!(local(&mut r, t), (true, 3, 599 + 800 - 160));
        // And a silent pause in local audio of 1 s is kept, with a marker.
        t += ms(1000);
        assert_eq!(local(&mut r, t), (true, 4, 1399 + 8000 - 160));
    }

    #[test]
    fn new_from_leg_starts_a_new_source_even_with_same_ssrc() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMU, 1, 10, 0);
        fwd(&mut r, &audio(500, 0, 7), t0);
        r.set_from(PCMA);
        let p = fwd(
            &mut r,
            &packet(8, false, 3, 9, 7, &[0xD5; 160]),
            t0 + ms(20),
        )
        .expect("forwarded");
        assert_eq!((p.0, p.1, p.2, p.3), (true, 0, 11, 160));
        // PCMA silence arrives as mu-law +8.
        assert!(p.5.iter().all(|&b| b == 0xFE));
    }

    #[test]
    fn transcodes_only_when_codecs_differ() {
        let t0 = Instant::now();
        let pcm: Vec<i16> = (0..160)
            .map(|i| (12_000.0 * (i as f64 * 0.3).sin()) as i16)
            .collect();
        let mut ulaw = [0u8; 160];
        Codec::Pcmu.encode_into(&pcm, &mut ulaw);

        let mut r = Relay::new(PCMU, PCMA, 1, 0, 0);
        let p = fwd(&mut r, &packet(0, false, 1, 0, 3, &ulaw), t0).expect("forwarded");
        assert_eq!(p.1, 8);
        let mut via_u = [0i16; 160];
        let mut via_a = [0i16; 160];
        Codec::Pcmu.decode_into(&ulaw, &mut via_u);
        Codec::Pcma.decode_into(&p.5, &mut via_a);
        for ((&orig, &u), &a) in pcm.iter().zip(&via_u).zip(&via_a) {
            // Within one A-law step of the mu-law value, and of the original.
            let step = (i32::from(u).abs() / 16).max(16);
            assert!((i32::from(u) - i32::from(a)).abs() <= step, "{u} vs {a}");
            assert!(
                (i32::from(orig) - i32::from(a)).abs() <= 2 * step,
                "{orig} vs {a}"
            );
        }

        let mut same = Relay::new(PCMU, PCMU, 1, 0, 0);
        let p = fwd(&mut same, &packet(0, false, 1, 0, 3, &ulaw), t0).expect("forwarded");
        assert_eq!(p.5, ulaw.to_vec(), "same codec: bytes untouched");
    }

    #[test]
    fn payload_type_is_rewritten_to_the_other_legs_number() {
        let t0 = Instant::now();
        let dynamic_from = LegMedia {
            codec: Codec::Pcma,
            payload_type: 110,
            telephone_event: None,
        };
        let mut r = Relay::new(dynamic_from, PCMA, 1, 0, 0);
        let p = fwd(&mut r, &packet(110, true, 1, 0, 3, &[0x55; 160]), t0).expect("forwarded");
        assert_eq!((p.0, p.1), (true, 8));
        assert_eq!(p.5, vec![0x55; 160]);
        // The static number of the same codec is not what this leg negotiated.
        assert!(fwd(&mut r, &packet(8, false, 2, 160, 3, &[0x55; 160]), t0).is_none());
    }

    #[test]
    fn telephone_events_pass_through_with_the_other_legs_pt() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMA, 1, 0, 1000);
        fwd(&mut r, &audio(1, 0, 3), t0);
        let ev = encode_event(1, false, 10, 400);
        let p = fwd(&mut r, &packet(101, true, 2, 160, 3, &ev), t0 + ms(20)).expect("forwarded");
        assert_eq!((p.0, p.1, p.2, p.3), (true, 96, 1, 1160));
        assert_eq!(p.5, ev.to_vec(), "event payload untouched");
        let end = encode_event(1, true, 10, 800);
        let p = fwd(&mut r, &packet(101, false, 3, 160, 3, &end), t0 + ms(70)).expect("forwarded");
        assert_eq!((p.0, p.1, p.2, p.3), (false, 96, 2, 1160));
    }

    #[test]
    fn telephone_events_are_dropped_without_a_seq_gap_when_the_other_leg_has_none() {
        let t0 = Instant::now();
        let no_events = LegMedia {
            telephone_event: None,
            ..PCMU
        };
        let mut r = Relay::new(PCMU, no_events, 1, 0, 0);
        fwd(&mut r, &audio(1, 0, 3), t0);
        let ev = encode_event(5, false, 10, 160);
        assert!(fwd(&mut r, &packet(101, true, 2, 160, 3, &ev), t0).is_none());
        assert!(
            fwd(&mut r, &packet(13, false, 3, 160, 3, &[40]), t0).is_none(),
            "comfort noise"
        );
        let p = fwd(&mut r, &audio(4, 160, 3), t0 + ms(20)).expect("forwarded");
        assert_eq!(p.2, 1, "dropped packets leave no gap");
        // A late packet from before the drops can no longer be placed.
        assert!(fwd(&mut r, &audio(1, 0, 3), t0 + ms(21)).is_none());
        // Loss after that is still a gap.
        let p = fwd(&mut r, &audio(6, 480, 3), t0 + ms(60)).expect("forwarded");
        assert_eq!(p.2, 3);
    }

    #[test]
    fn malformed_and_unknown_packets_are_dropped() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMA, 1, 0, 0);
        let mut out = [0u8; 1500];
        assert_eq!(r.forward(&[], t0, &mut out), None);
        assert_eq!(r.forward(&[0x80, 0, 0], t0, &mut out), None);
        let mut v1 = audio(1, 0, 3);
        v1[0] = 0x40;
        assert_eq!(r.forward(&v1, t0, &mut out), None, "RTP version 1");
        assert_eq!(
            r.forward(&packet(18, false, 1, 0, 3, &[1; 20]), t0, &mut out),
            None,
            "G.729"
        );
        assert_eq!(
            r.forward(&audio(1, 0, 3), t0, &mut out[..100]),
            None,
            "out too small"
        );
        // Nothing above moved the stream: the first good packet gets the initial seq.
        let p = fwd(&mut r, &audio(1, 0, 3), t0).expect("forwarded");
        assert_eq!((p.0, p.2), (true, 0));
    }

    #[test]
    fn marker_from_the_source_is_kept() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMU, 1, 0, 0);
        fwd(&mut r, &audio(1, 0, 3), t0);
        let p = fwd(
            &mut r,
            &packet(0, true, 2, 800, 3, &[0xFF; 160]),
            t0 + ms(100),
        )
        .expect("fwd");
        assert!(p.0);
        let p = fwd(
            &mut r,
            &packet(0, false, 3, 960, 3, &[0xFF; 160]),
            t0 + ms(120),
        )
        .expect("fwd");
        assert!(!p.0);
    }

    #[test]
    fn seq_and_timestamp_wrap_across_sources() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMU, 1, 65_535, u32::MAX - 159);
        let p = fwd(&mut r, &audio(65_535, u32::MAX - 159, 3), t0).expect("fwd");
        assert_eq!((p.2, p.3), (65_535, u32::MAX - 159));
        // The source wraps too: 65535 -> 0 is the next packet, not a restart.
        let p = fwd(&mut r, &audio(0, 0, 3), t0 + ms(20)).expect("fwd");
        assert_eq!((p.0, p.2, p.3), (false, 0, 0));
        let p = fwd(&mut r, &audio(1, 160, 3), t0 + ms(40)).expect("fwd");
        assert_eq!((p.0, p.2, p.3), (false, 1, 160));
        assert_eq!(local(&mut r, t0 + ms(60)), (true, 2, 320));
    }

    #[test]
    fn local_frame_into_a_small_buffer_sends_nothing() {
        let t0 = Instant::now();
        let mut r = Relay::new(PCMU, PCMU, 1, 7, 0);
        let mut out = [0u8; 100];
        assert_eq!(r.local_frame(&[0xFF; 160], t0, &mut out), 0);
        assert_eq!(local(&mut r, t0), (true, 7, 0));
    }
}
