//! The RTP relay between two call legs, one direction at a time, without I/O.
//!
//! When the daemon bridges the caller with a volunteer it is a back-to-back
//! user agent: each leg negotiated its own SSRC, payload types and maybe its
//! own codec. A [`RelayDirection`] turns packets received from one leg into
//! packets for the other, and presents them as ONE outgoing stream whatever
//! feeds it: ringback generated here, then the volunteer's audio, then a
//! second volunteer after a failed screening, or a phone that restarts its
//! stream with a new SSRC. Receivers (and their jitter buffers) see
//! consecutive sequence numbers and timestamps that only move forward.
//!
//! The mapping per source is an offset (RFC 3550 section 5.1: only differences
//! between sequence numbers and timestamps carry meaning), chosen again at each
//! source change so the new source continues where the last one stopped, plus
//! the time that passed in between.

use std::time::Instant;

use super::codec::{transcode, Codec};
use super::rtp::{parse, write_header, RTP_HEADER_LEN};

/// Sample rate of G.711 and of telephone-event on our legs (RFC 3551, RFC 4733).
const CLOCK_RATE: u64 = 8000;
/// Samples in a 20 ms frame: the assumed frame length before any packet was seen.
const DEFAULT_FRAME: u32 = 160;
/// A jump forward larger than this within one SSRC is a stream restart, not
/// loss (RFC 3550 appendix A.1, `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;
/// Packets up to this far behind the newest are late, not a restart (RFC 3550 A.1, `MAX_MISORDER`).
const MAX_MISORDER: u16 = 100;

/// What one leg negotiated in SDP, as far as the relay cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMedia {
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
    pub fn new(codec: Codec, telephone_event: Option<u8>) -> Self {
        LegMedia {
            codec,
            payload_type: codec.payload_type(),
            telephone_event,
        }
    }
}

/// Who currently feeds the outgoing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Nothing sent yet: the first packet uses the initial seq/ts as given.
    None,
    /// Frames generated here (ringback, prompts).
    Local,
    /// Packets from the `from` leg with this SSRC, mapped by offsets.
    Remote {
        ssrc: u32,
        /// Out seq = in seq + `seq_offset`.
        seq_offset: u16,
        /// Out ts = in ts + `ts_offset`.
        ts_offset: u32,
        /// Incoming seq from which `seq_offset` holds; older packets are dropped
        /// (they belong to a mapping that no longer applies).
        anchor_seq: u16,
        /// Newest incoming seq seen from this source.
        newest_seq: u16,
    },
}

/// One direction of the relay: packets from leg `from` rewritten for leg `to`.
#[derive(Debug, Clone)]
pub struct RelayDirection {
    from: LegMedia,
    to: LegMedia,
    out_ssrc: u32,
    source: Source,
    /// Seq of the next packet if it follows the newest one sent.
    next_seq: u16,
    /// Timestamp just past the newest media sent (audio ts + samples, event ts + duration).
    end_ts: u32,
    /// When the newest packet was sent, to measure the gap at a source change.
    last_sent: Option<Instant>,
    /// Samples per packet of the latest audio: how much time one packet stands for.
    frame: u32,
}

/// `a` is after `b` in 32-bit RTP timestamp arithmetic.
fn ts_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl RelayDirection {
    /// A relay whose first outgoing packet carries `out_seq` and `out_ts`
    /// (random, RFC 3550 section 5.1) and every packet `out_ssrc`.
    pub fn new(from: LegMedia, to: LegMedia, out_ssrc: u32, out_seq: u16, out_ts: u32) -> Self {
        RelayDirection {
            from,
            to,
            out_ssrc,
            source: Source::None,
            next_seq: out_seq,
            end_ts: out_ts,
            last_sent: None,
            frame: DEFAULT_FRAME,
        }
    }

    /// A different leg now feeds this direction (the next volunteer answered):
    /// its packets are read with its own codec and payload types, and its first
    /// packet starts a new source even if it happens to reuse an SSRC.
    pub fn set_from(&mut self, from: LegMedia) {
        self.from = from;
        if matches!(self.source, Source::Remote { .. }) {
            self.source = Source::Local;
        }
    }

    /// The SSRC of the outgoing stream (for SDP `a=ssrc` and tests).
    pub fn ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// Timestamp at which a source starting `now` continues: the end of the
    /// newest media plus any silence since then beyond one frame. A packet that
    /// arrives sooner than one frame later still starts after the newest one.
    fn continue_ts(&self, now: Instant) -> u32 {
        let Some(last) = self.last_sent else {
            return self.end_ts;
        };
        let elapsed = now.saturating_duration_since(last);
        let samples = (elapsed.as_micros() as u64 * CLOCK_RATE / 1_000_000)
            .min(u64::from(u32::MAX / 2)) as u32;
        self.end_ts.wrapping_add(samples.saturating_sub(self.frame))
    }

    /// Rewrites one packet received from the `from` leg into `out` and returns
    /// its length, or `None` to drop it: malformed, a payload type this leg did
    /// not negotiate, telephone-event the `to` leg cannot take, a packet too
    /// late to map, or an `out` too small.
    ///
    /// The new stream gets our SSRC; seq and timestamp are the source's plus
    /// offsets, so loss and reordering within one source stay visible to the
    /// receiver's jitter buffer, while a source change (new SSRC, a new `from`
    /// leg, after local frames, or a seq jump of a restarted sender) continues
    /// from the last packet sent with the marker bit set.
    pub fn forward(&mut self, packet: &[u8], now: Instant, out: &mut [u8]) -> Option<usize> {
        let rtp = parse(packet)?;
        let audio = rtp.payload_type == self.from.payload_type;
        let event = self.from.telephone_event == Some(rtp.payload_type);
        let out_pt = if audio {
            Some(self.to.payload_type)
        } else if event {
            self.to.telephone_event
        } else {
            None
        };
        let len = RTP_HEADER_LEN + rtp.payload.len();
        let (Some(out_pt), true) = (out_pt, out.len() >= len) else {
            self.consume_dropped(rtp.ssrc, rtp.seq);
            return None;
        };

        // Same source, and close enough in seq to be loss or reorder?
        let mapping = match self.source {
            Source::Remote {
                ssrc,
                seq_offset,
                ts_offset,
                anchor_seq,
                newest_seq,
            } if ssrc == rtp.ssrc => {
                let ahead = rtp.seq.wrapping_sub(newest_seq);
                let behind = newest_seq.wrapping_sub(rtp.seq);
                if ahead <= MAX_DROPOUT || behind <= MAX_MISORDER {
                    if (rtp.seq.wrapping_sub(anchor_seq) as i16) < 0 {
                        return None; // from before the current mapping: cannot be placed
                    }
                    Some((seq_offset, ts_offset, false))
                } else {
                    None // a restart inside one SSRC
                }
            }
            _ => None,
        };
        let (seq_offset, ts_offset, marker) = match mapping {
            Some(m) => m,
            None => {
                let seq_offset = self.next_seq.wrapping_sub(rtp.seq);
                let ts_offset = self.continue_ts(now).wrapping_sub(rtp.timestamp);
                self.source = Source::Remote {
                    ssrc: rtp.ssrc,
                    seq_offset,
                    ts_offset,
                    anchor_seq: rtp.seq,
                    newest_seq: rtp.seq,
                };
                (seq_offset, ts_offset, true)
            }
        };

        let out_seq = rtp.seq.wrapping_add(seq_offset);
        let out_ts = rtp.timestamp.wrapping_add(ts_offset);
        write_header(
            out,
            rtp.marker || marker,
            out_pt,
            out_seq,
            out_ts,
            self.out_ssrc,
        );
        let body = &mut out[RTP_HEADER_LEN..len];
        body.copy_from_slice(rtp.payload);
        let end = if audio {
            transcode(self.from.codec, self.to.codec, body);
            // G.711: one byte per sample.
            let samples = body.len() as u32;
            if samples > 0 {
                self.frame = samples;
            }
            out_ts.wrapping_add(samples)
        } else {
            // RFC 4733 section 2.3: bytes 2-3 are the duration so far, from the event's timestamp.
            let duration = match rtp.payload {
                [_, _, hi, lo, ..] => u32::from(u16::from_be_bytes([*hi, *lo])),
                _ => 0,
            };
            out_ts.wrapping_add(duration)
        };

        if let Source::Remote { newest_seq, .. } = &mut self.source {
            if (rtp.seq.wrapping_sub(*newest_seq) as i16) > 0 {
                *newest_seq = rtp.seq;
            }
        }
        if (out_seq.wrapping_sub(self.next_seq) as i16) >= 0 {
            self.next_seq = out_seq.wrapping_add(1);
        }
        if ts_after(end, self.end_ts) || self.last_sent.is_none() {
            self.end_ts = end;
        }
        self.last_sent = Some(now);
        Some(len)
    }

    /// A well-formed packet of the current source that we drop must not leave
    /// a gap in the outgoing seq (a receiver would count it as loss), so the
    /// mapping shifts by one from the packet after it.
    fn consume_dropped(&mut self, ssrc: u32, seq: u16) {
        if let Source::Remote {
            ssrc: cur,
            seq_offset,
            anchor_seq,
            newest_seq,
            ..
        } = &mut self.source
        {
            let ahead = seq.wrapping_sub(*newest_seq);
            if *cur == ssrc && (1..=MAX_DROPOUT).contains(&ahead) {
                // Lost packets before it keep their gap; only the dropped one is squeezed out.
                *seq_offset = seq_offset.wrapping_sub(1);
                *newest_seq = seq;
                *anchor_seq = seq.wrapping_add(1);
            }
        }
    }

    /// Sends one locally generated frame (ringback, a prompt), already encoded
    /// in the `to` leg's codec, as part of the same outgoing stream; returns the
    /// packet length, or 0 (nothing sent, nothing changed) if `out` is too small.
    ///
    /// Frames from a local source that keeps up (one per frame time) are
    /// consecutive; after a gap longer than two frames, or after relayed
    /// packets, the timestamp jumps by the time that passed and the marker is set.
    pub fn local_frame(&mut self, payload: &[u8], now: Instant, out: &mut [u8]) -> usize {
        let len = RTP_HEADER_LEN + payload.len();
        if out.len() < len {
            return 0;
        }
        let (ts, marker) = match (self.source, self.last_sent) {
            (Source::Local, Some(last)) => {
                let gap =
                    now.saturating_duration_since(last).as_micros() as u64 * CLOCK_RATE / 1_000_000;
                if gap > 2 * u64::from(self.frame) {
                    (self.continue_ts(now), true)
                } else {
                    (self.end_ts, false)
                }
            }
            (Source::Local, None) => (self.end_ts, false),
            (Source::None, _) => (self.end_ts, true),
            (Source::Remote { .. }, _) => (self.continue_ts(now), true),
        };
        write_header(
            out,
            marker,
            self.to.payload_type,
            self.next_seq,
            ts,
            self.out_ssrc,
        );
        out[RTP_HEADER_LEN..len].copy_from_slice(payload);
        let samples = payload.len() as u32;
        if samples > 0 {
            self.frame = samples;
        }
        self.source = Source::Local;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.end_ts = ts.wrapping_add(samples);
        self.last_sent = Some(now);
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::encode_event;
    use crate::media::rtp::RtpView;
    use std::time::Duration;

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
    fn fwd(
        r: &mut RelayDirection,
        p: &[u8],
        now: Instant,
    ) -> Option<(bool, u8, u16, u32, u32, Vec<u8>)> {
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

    fn local(r: &mut RelayDirection, now: Instant) -> (bool, u16, u32) {
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
        let mut r = RelayDirection::new(PCMU, PCMU, 0xABCD, 500, 9000);
        let p = fwd(&mut r, &audio(7, 123, 1), t0).expect("forwarded");
        assert_eq!((p.0, p.1, p.2, p.3, p.4), (true, 0, 500, 9000, 0xABCD));
        let p = fwd(&mut r, &audio(8, 283, 1), t0 + ms(20)).expect("forwarded");
        assert_eq!((p.0, p.2, p.3), (false, 501, 9160));
    }

    #[test]
    fn loss_gaps_and_reorder_are_preserved_within_one_source() {
        let t0 = Instant::now();
        let mut r = RelayDirection::new(PCMU, PCMU, 1, 100, 0);
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
        let mut r = RelayDirection::new(PCMU, PCMU, 1, 1000, 50_000);
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
        let mut r = RelayDirection::new(PCMU, PCMU, 1, 0, 0);
        fwd(&mut r, &audio(100, 0, 5), t0);
        let p = fwd(&mut r, &audio(40_000, 160, 5), t0 + ms(20)).expect("forwarded");
        assert_eq!((p.0, p.2, p.3), (true, 1, 160));
    }

    #[test]
    fn local_then_relayed_then_local_is_one_stream() {
        let t0 = Instant::now();
        let mut r = RelayDirection::new(PCMU, PCMU, 1, 65_534, u32::MAX - 200);
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
        let mut r = RelayDirection::new(PCMU, PCMU, 1, 10, 0);
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

        let mut r = RelayDirection::new(PCMU, PCMA, 1, 0, 0);
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

        let mut same = RelayDirection::new(PCMU, PCMU, 1, 0, 0);
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
        let mut r = RelayDirection::new(dynamic_from, PCMA, 1, 0, 0);
        let p = fwd(&mut r, &packet(110, true, 1, 0, 3, &[0x55; 160]), t0).expect("forwarded");
        assert_eq!((p.0, p.1), (true, 8));
        assert_eq!(p.5, vec![0x55; 160]);
        // The static number of the same codec is not what this leg negotiated.
        assert!(fwd(&mut r, &packet(8, false, 2, 160, 3, &[0x55; 160]), t0).is_none());
    }

    #[test]
    fn telephone_events_pass_through_with_the_other_legs_pt() {
        let t0 = Instant::now();
        let mut r = RelayDirection::new(PCMU, PCMA, 1, 0, 1000);
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
        let mut r = RelayDirection::new(PCMU, no_events, 1, 0, 0);
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
        let mut r = RelayDirection::new(PCMU, PCMA, 1, 0, 0);
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
        let mut r = RelayDirection::new(PCMU, PCMU, 1, 0, 0);
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
        let mut r = RelayDirection::new(PCMU, PCMU, 1, 65_535, u32::MAX - 159);
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
        let mut r = RelayDirection::new(PCMU, PCMU, 1, 7, 0);
        let mut out = [0u8; 100];
        assert_eq!(r.local_frame(&[0xFF; 160], t0, &mut out), 0);
        assert_eq!(local(&mut r, t0), (true, 7, 0));
    }
}
