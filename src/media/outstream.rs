//! One leg's outgoing RTP stream, and its only owner (RFC 3550 section 5.1).
//!
//! Everything a leg hears goes through one [`OutStream`]: prompt frames and tones
//! from the media clock, packets relayed from the other leg (early media, the
//! bridge), and the silence of a hold or between prompts. It alone holds the
//! leg's SSRC, next sequence number and timestamp, so continuity is its property:
//! - the sequence number goes up by one per packet sent, whoever feeds it;
//! - the timestamp advances by the media time that elapsed, including silence;
//! - the marker bit is set on the first packet after a switch or a silence,
//!   so the far end's jitter buffer resynchronises (RFC 3551 section 4.1).
//!
//! Relayed packets keep their own loss and reordering: per incoming source the
//! mapping is an offset (only differences between sequence numbers and
//! timestamps carry meaning), chosen again at each switch so the new source
//! continues where the last packet stopped.
//!
//! This is also the one place a packet is finished before it leaves: an SRTP
//! `protect` belongs right after [`OutStream::local_frame`] or
//! [`OutStream::forward`] wrote it (see `StreamTx::send` in `media::clock`).

use std::time::Instant;

use super::codec::transcode;
use super::relay::RelayDirection;
use super::rtp::{write_header, RtpView, RTP_HEADER_LEN};
use super::{FRAME_SAMPLES, SAMPLE_RATE};

/// A jump forward larger than this within one SSRC is a stream restart, not
/// loss (RFC 3550 appendix A.1, `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;
/// Packets up to this far behind the newest are late, not a restart (RFC 3550 A.1, `MAX_MISORDER`).
const MAX_MISORDER: u16 = 100;

/// Who currently feeds the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Nothing sent yet: the first packet uses the initial seq/ts as given.
    None,
    /// Frames generated here (ringback, prompts), or a switch is pending.
    Local,
    /// Packets from another leg with this SSRC, mapped by offsets.
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

/// What was sent, for RTCP sender reports (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SentStats {
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent (headers not counted).
    pub octets: u32,
    /// Timestamp just past the newest media sent.
    pub end_ts: u32,
}

/// The one owner of a leg's outgoing SSRC, sequence number and timestamp.
#[derive(Debug, Clone)]
pub(crate) struct OutStream {
    ssrc: u32,
    source: Source,
    /// Seq of the next packet if it follows the newest one sent.
    next_seq: u16,
    /// Timestamp just past the newest media sent (audio ts + samples, event ts + duration).
    end_ts: u32,
    /// When the newest packet was sent, to measure silence.
    last_sent: Option<Instant>,
    /// Samples per packet of the latest audio: how much time one packet stands for.
    frame: u32,
    /// A switch was announced: the next local packet carries the marker.
    pending_marker: bool,
    sent: SentStats,
}

/// `a` is after `b` in 32-bit RTP timestamp arithmetic.
fn ts_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl OutStream {
    /// A stream whose first packet carries `seq` and `ts` and every packet `ssrc`.
    pub(crate) fn new(ssrc: u32, seq: u16, ts: u32) -> Self {
        OutStream {
            ssrc,
            source: Source::None,
            next_seq: seq,
            end_ts: ts,
            last_sent: None,
            frame: FRAME_SAMPLES as u32,
            pending_marker: false,
            sent: SentStats::default(),
        }
    }

    /// A stream with random SSRC, sequence number and timestamp (RFC 3550 section 5.1).
    pub(crate) fn random() -> Self {
        OutStream::new(rand::random(), rand::random(), rand::random())
    }

    /// Packets and octets sent so far.
    pub(crate) fn sent(&self) -> SentStats {
        SentStats {
            end_ts: self.end_ts,
            ..self.sent
        }
    }

    /// The RTP timestamp that corresponds to `now` (for an RTCP sender report):
    /// the end of the newest media plus the time since it was sent.
    pub(crate) fn ts_at(&self, now: Instant) -> u32 {
        match self.last_sent {
            Some(last) => self
                .end_ts
                .wrapping_sub(self.frame)
                .wrapping_add(elapsed_samples(last, now)),
            None => self.end_ts,
        }
    }

    /// The stream's SSRC (reports about it carry it).
    pub(crate) fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// A different source feeds the stream from now on (a prompt starts, ringback,
    /// early media, a bridge, a new volunteer, unhold): its first packet starts a
    /// new mapping with the marker set, even if it reuses an SSRC.
    pub(crate) fn switch(&mut self) {
        if matches!(self.source, Source::Remote { .. }) {
            self.source = Source::Local;
        }
        self.pending_marker = true;
    }

    /// Timestamp at which a source starting `now` continues: the end of the
    /// newest media plus any silence since then beyond one frame. A packet that
    /// arrives sooner than one frame later still starts after the newest one.
    fn continue_ts(&self, now: Instant) -> u32 {
        let Some(last) = self.last_sent else {
            return self.end_ts;
        };
        let samples = elapsed_samples(last, now);
        self.end_ts.wrapping_add(samples.saturating_sub(self.frame))
    }

    /// Rewrites one packet received from `legs.from` into `out` and returns its
    /// length, or `None` to drop it: malformed, a payload type that leg did not
    /// negotiate, telephone-event the `to` leg cannot take, a packet too late to
    /// map, or an `out` too small.
    ///
    /// The packet gets our SSRC; seq and timestamp are the source's plus offsets,
    /// so loss and reordering within one source stay visible to the receiver,
    /// while a source change (new SSRC, after local frames or a [`switch`](Self::switch),
    /// or a seq jump of a restarted sender) continues from the last packet sent
    /// with the marker bit set.
    #[cfg(test)]
    pub(crate) fn forward(
        &mut self,
        legs: &RelayDirection,
        packet: &[u8],
        now: Instant,
        out: &mut [u8],
    ) -> Option<usize> {
        let rtp = super::rtp::parse(packet)?;
        let audio = legs.from.accepts_audio(rtp.payload_type);
        if !audio && !legs.from.accepts_event(rtp.payload_type) {
            self.consume_dropped(rtp.ssrc, rtp.seq);
            return None;
        }
        self.forward_view(legs, &rtp, audio, now, out)
    }

    /// [`forward`](Self::forward) for a packet the receive side already parsed
    /// and classified (`audio`, else telephone-event) by the `from` leg's
    /// payload types, in either side's numbering.
    pub(crate) fn forward_view(
        &mut self,
        legs: &RelayDirection,
        rtp: &RtpView<'_>,
        audio: bool,
        now: Instant,
        out: &mut [u8],
    ) -> Option<usize> {
        let out_pt = if audio {
            Some(legs.to.payload_type)
        } else {
            legs.to.telephone_event
        };
        let len = RTP_HEADER_LEN + rtp.payload.len();
        let (Some(out_pt), true) = (out_pt, out.len() >= len) else {
            self.consume_dropped(rtp.ssrc, rtp.seq);
            return None;
        };
        let (seq_offset, ts_offset, marker) = match self.mapping_for(rtp.ssrc, rtp.seq) {
            Mapping::Keep(seq_offset, ts_offset) => (seq_offset, ts_offset, false),
            Mapping::TooLate => return None,
            Mapping::New => {
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
            self.ssrc,
        );
        let body = &mut out[RTP_HEADER_LEN..len];
        body.copy_from_slice(rtp.payload);
        let end = if audio {
            transcode(legs.from.codec, legs.to.codec, body);
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
        self.pending_marker = false;
        self.count(now, rtp.payload.len());
        Some(len)
    }

    /// Whether a packet of `ssrc`/`seq` continues the current remote mapping.
    fn mapping_for(&self, in_ssrc: u32, seq: u16) -> Mapping {
        match self.source {
            Source::Remote {
                ssrc,
                seq_offset,
                ts_offset,
                anchor_seq,
                newest_seq,
            } if ssrc == in_ssrc => {
                let ahead = seq.wrapping_sub(newest_seq);
                let behind = newest_seq.wrapping_sub(seq);
                if ahead <= MAX_DROPOUT || behind <= MAX_MISORDER {
                    if (seq.wrapping_sub(anchor_seq) as i16) < 0 {
                        return Mapping::TooLate;
                    }
                    Mapping::Keep(seq_offset, ts_offset)
                } else {
                    Mapping::New // a restart inside one SSRC
                }
            }
            _ => Mapping::New,
        }
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
    /// in the leg's codec with payload type `pt`; returns the packet length, or 0
    /// (nothing sent, nothing changed) if `out` is too small.
    ///
    /// Frames from a local source that keeps up (one per frame time) are
    /// consecutive; after a gap longer than two frames, or after relayed
    /// packets, the timestamp jumps by the time that passed and the marker is
    /// set; after a [`switch`](Self::switch) the marker is set.
    #[cfg(test)]
    pub(crate) fn local_frame(
        &mut self,
        pt: u8,
        payload: &[u8],
        now: Instant,
        out: &mut [u8],
    ) -> usize {
        self.local(pt, payload, now, out, false)
    }

    /// The next frame of a playback already under way (the clock's next tick):
    /// contiguous in media time even when the tick ran late, so a stalled clock
    /// never cuts a silence into a prompt. A switch still starts a new spurt.
    pub(crate) fn next_frame(
        &mut self,
        pt: u8,
        payload: &[u8],
        now: Instant,
        out: &mut [u8],
    ) -> usize {
        self.local(pt, payload, now, out, true)
    }

    fn local(
        &mut self,
        pt: u8,
        payload: &[u8],
        now: Instant,
        out: &mut [u8],
        continuous: bool,
    ) -> usize {
        let len = RTP_HEADER_LEN + payload.len();
        if out.len() < len {
            return 0;
        }
        let (ts, marker) = match (self.source, self.last_sent) {
            // A switch: the new source starts at the time that really passed.
            (Source::Local, Some(_)) if self.pending_marker => (self.continue_ts(now), true),
            (Source::Local, Some(last)) => {
                let gap = u64::from(elapsed_samples(last, now));
                if !continuous && gap > 2 * u64::from(self.frame) {
                    (self.continue_ts(now), true)
                } else {
                    (self.end_ts, false)
                }
            }
            (Source::Local, None) => (self.end_ts, self.pending_marker),
            (Source::None, _) => (self.end_ts, true),
            (Source::Remote { .. }, _) => (self.continue_ts(now), true),
        };
        write_header(out, marker, pt, self.next_seq, ts, self.ssrc);
        out[RTP_HEADER_LEN..len].copy_from_slice(payload);
        let samples = payload.len() as u32;
        if samples > 0 {
            self.frame = samples;
        }
        self.source = Source::Local;
        self.pending_marker = false;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.end_ts = ts.wrapping_add(samples);
        self.count(now, payload.len());
        len
    }

    fn count(&mut self, now: Instant, payload: usize) {
        self.last_sent = Some(now);
        self.sent.packets = self.sent.packets.wrapping_add(1);
        self.sent.octets = self.sent.octets.wrapping_add(payload as u32);
    }
}

/// How a relayed packet maps onto the stream.
enum Mapping {
    /// Same source: these offsets.
    Keep(u16, u32),
    /// From before the current mapping: cannot be placed.
    TooLate,
    /// A new source (or restart): anchor a new mapping.
    New,
}

/// Media samples in the time from `from` to `to`, capped well inside 32 bits.
fn elapsed_samples(from: Instant, to: Instant) -> u32 {
    let us = to.saturating_duration_since(from).as_micros() as u64;
    (us * u64::from(SAMPLE_RATE) / 1_000_000).min(u64::from(u32::MAX / 2)) as u32
}

#[cfg(test)]
mod tests;
