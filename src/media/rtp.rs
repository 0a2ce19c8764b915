//! Allocation-free helpers over raw RTP packets (RFC 3550 section 5.1).
//!
//! Parsing wraps `rtp_rs::RtpReader`; writing is a fixed 12-byte header, since
//! we never send CSRCs, extensions or padding.

use super::dtmf::encode_event;

/// Length of the fixed RTP header we write (RFC 3550 section 5.1, no CSRC).
pub const RTP_HEADER_LEN: usize = 12;

/// Writes a version-2 RTP header with no padding, extension or CSRC into
/// `buf[..12]`, so a packet is one header write plus a payload copy.
///
/// Panics if `buf` is shorter than [`RTP_HEADER_LEN`]: buffers are ours, so
/// that is a programming error, not bad input.
pub fn write_header(
    buf: &mut [u8],
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
) {
    let h = &mut buf[..RTP_HEADER_LEN];
    h[0] = 0x80; // V=2, P=0, X=0, CC=0
    h[1] = (u8::from(marker) << 7) | (payload_type & 0x7F);
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&timestamp.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// A validated, borrowed view of a received RTP packet: the fields the media
/// path needs, with CSRCs, header extension and padding already stripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    /// Payload type (RFC 3551): picks the codec or the telephone-event handler.
    pub payload_type: u8,
    /// Marker bit: start of a talk spurt, or the first packet of an RFC 4733 event.
    pub marker: bool,
    /// Sequence number, for loss and reorder detection.
    pub seq: u16,
    /// Media timestamp; also the identity of an RFC 4733 event.
    pub timestamp: u32,
    /// Synchronisation source, to notice a remote stream restart.
    pub ssrc: u32,
    /// The payload bytes, without header, extension or padding.
    pub payload: &'a [u8],
}

/// Parses an RTP packet from the network; `None` for anything malformed
/// (too short, version not 2, truncated CSRC/extension, bad padding), so a
/// stray UDP datagram is dropped instead of crashing a call.
pub fn parse(buf: &[u8]) -> Option<RtpView<'_>> {
    let r = rtp_rs::RtpReader::new(buf).ok()?;
    Some(RtpView {
        payload_type: r.payload_type(),
        marker: r.mark(),
        seq: u16::from(r.sequence_number()),
        timestamp: r.timestamp(),
        ssrc: r.ssrc(),
        payload: r.payload(),
    })
}

/// The sending side of one RTP stream: keeps SSRC, sequence number and
/// timestamp consistent across audio, silence and DTMF events, without I/O.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    pending_marker: bool,
    /// Timestamp of the RFC 4733 event in progress (all its packets share it).
    event_ts: Option<u32>,
}

impl RtpSender {
    /// Starts a stream; seq and timestamp should be random (RFC 3550 section 5.1).
    /// The first packet carries the marker, as it begins a talk spurt.
    pub fn new(ssrc: u32, initial_seq: u16, initial_ts: u32) -> Self {
        RtpSender {
            ssrc,
            seq: initial_seq,
            timestamp: initial_ts,
            pending_marker: true,
            event_ts: None,
        }
    }

    /// The SSRC this stream sends with (for SDP/RTCP and tests).
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number the next packet will carry.
    pub fn seq(&self) -> u16 {
        self.seq
    }

    /// Timestamp the next audio packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Writes header + payload into `buf` and returns the packet length;
    /// advances seq by 1 and the timestamp by `samples`.
    ///
    /// Panics if `buf` cannot hold `RTP_HEADER_LEN + payload.len()` bytes
    /// (our own buffer, so a programming error).
    pub fn next_packet(
        &mut self,
        buf: &mut [u8],
        payload_type: u8,
        payload: &[u8],
        samples: u32,
    ) -> usize {
        let len = RTP_HEADER_LEN + payload.len();
        write_header(
            buf,
            self.pending_marker,
            payload_type,
            self.seq,
            self.timestamp,
            self.ssrc,
        );
        buf[RTP_HEADER_LEN..len].copy_from_slice(payload);
        self.pending_marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        len
    }

    /// Marks the next audio packet as the start of a talk spurt (RFC 3551
    /// section 4.1), e.g. when a prompt starts after silence, so the far
    /// end's jitter buffer can resynchronise.
    pub fn start_talkspurt(&mut self) {
        self.pending_marker = true;
    }

    /// Advances the timestamp over `samples` of time that we do not send
    /// (silence suppression, or the duration of a DTMF event), keeping the
    /// media clock honest.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Writes one RFC 4733 telephone-event packet and returns its length.
    ///
    /// All packets of one event carry the timestamp at which the event began
    /// and the first carries the marker (RFC 4733 section 2.5.1). Call it every
    /// 50 ms or so with the growing `duration` (in samples), call
    /// [`skip`](Self::skip) for the time that passes, send the `end` packet three
    /// times, then call [`end_event`](Self::end_event).
    pub fn next_event_packet(
        &mut self,
        buf: &mut [u8],
        payload_type: u8,
        key_event: u8,
        end: bool,
        volume: u8,
        duration: u16,
    ) -> usize {
        let (ts, marker) = match self.event_ts {
            Some(ts) => (ts, false),
            None => {
                self.event_ts = Some(self.timestamp);
                (self.timestamp, true)
            }
        };
        write_header(buf, marker, payload_type, self.seq, ts, self.ssrc);
        let payload = encode_event(key_event, end, volume, duration);
        buf[RTP_HEADER_LEN..RTP_HEADER_LEN + 4].copy_from_slice(&payload);
        self.seq = self.seq.wrapping_add(1);
        RTP_HEADER_LEN + 4
    }

    /// Closes the current RFC 4733 event, so the next event packet starts a
    /// new event at the current timestamp, and audio after it starts a talk spurt.
    pub fn end_event(&mut self) {
        self.event_ts = None;
        self.pending_marker = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip() {
        let mut buf = [0u8; 64];
        write_header(&mut buf, true, 8, 0xBEEF, 0xDEAD_BEEF, 0x1234_5678);
        buf[12..16].copy_from_slice(&[1, 2, 3, 4]);
        let v = parse(&buf[..16]).expect("valid packet");
        assert_eq!(
            v,
            RtpView {
                payload_type: 8,
                marker: true,
                seq: 0xBEEF,
                timestamp: 0xDEAD_BEEF,
                ssrc: 0x1234_5678,
                payload: &[1, 2, 3, 4],
            }
        );
        write_header(&mut buf, false, 0, 1, 2, 3);
        let v = parse(&buf[..12]).expect("header only");
        assert!(!v.marker);
        assert_eq!(v.payload_type, 0);
        assert!(v.payload.is_empty());
    }

    #[test]
    fn parse_skips_csrc_extension_and_padding() {
        let mut p = vec![0xB2u8, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]; // V=2 P X CC=2
        p.extend_from_slice(&[9; 8]); // two CSRCs
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 7, 7, 7, 7]); // one-word extension
        p.extend_from_slice(&[0xAA, 0xBB]); // payload
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes padding
        let v = parse(&p).expect("valid packet");
        assert_eq!(v.payload, &[0xAA, 0xBB]);
        assert_eq!(v.ssrc, 3);
    }

    #[test]
    fn malformed_packets_are_rejected() {
        let mut ok = [0u8; 20];
        write_header(&mut ok, false, 0, 0, 0, 0);
        assert!(parse(&ok[..11]).is_none(), "too short");
        let mut v1 = ok;
        v1[0] = 0x40;
        assert!(parse(&v1).is_none(), "version 1");
        let mut pad0 = ok;
        pad0[0] |= 0x20;
        pad0[19] = 0;
        assert!(parse(&pad0).is_none(), "zero padding length");
        let mut pad_big = ok;
        pad_big[0] |= 0x20;
        pad_big[19] = 9;
        assert!(parse(&pad_big).is_none(), "padding longer than payload");
        let mut csrc = ok;
        csrc[0] |= 0x0F;
        assert!(parse(&csrc).is_none(), "15 CSRCs do not fit");
        let mut ext = ok;
        ext[0] |= 0x10;
        ext[14] = 0;
        ext[15] = 5;
        assert!(parse(&ext).is_none(), "extension runs past the end");
    }

    #[test]
    fn marker_only_on_first_packet_of_talkspurt() {
        let mut s = RtpSender::new(7, 100, 1000);
        let mut buf = [0u8; 200];
        let payload = [0xFFu8; 160];
        let mut markers = Vec::new();
        for i in 0..5 {
            if i == 3 {
                s.skip(480);
                s.start_talkspurt();
            }
            let n = s.next_packet(&mut buf, 0, &payload, 160);
            assert_eq!(n, 172);
            let v = parse(&buf[..n]).expect("own packet parses");
            markers.push((v.marker, v.seq, v.timestamp));
        }
        assert_eq!(
            markers,
            vec![
                (true, 100, 1000),
                (false, 101, 1160),
                (false, 102, 1320),
                (true, 103, 1960),
                (false, 104, 2120),
            ]
        );
    }

    #[test]
    fn seq_and_timestamp_wrap() {
        let mut s = RtpSender::new(1, 65535, u32::MAX - 100);
        let mut buf = [0u8; 200];
        let n = s.next_packet(&mut buf, 0, &[0; 160], 160);
        assert_eq!(parse(&buf[..n]).map(|v| v.seq), Some(65535));
        let n = s.next_packet(&mut buf, 0, &[0; 160], 160);
        let v = parse(&buf[..n]).expect("parses");
        assert_eq!(v.seq, 0);
        assert_eq!(v.timestamp, 59);
    }

    #[test]
    fn event_packets_share_timestamp_and_mark_first() {
        let mut s = RtpSender::new(1, 10, 8000);
        let mut buf = [0u8; 200];
        let mut seen = Vec::new();
        for (end, dur) in [(false, 400u16), (false, 800), (true, 960), (true, 960)] {
            let n = s.next_event_packet(&mut buf, 101, 5, end, 10, dur);
            s.skip(if end { 0 } else { 400 });
            let v = parse(&buf[..n]).expect("parses");
            seen.push((v.marker, v.seq, v.timestamp, v.payload.to_vec()));
        }
        s.end_event();
        assert!(seen.iter().all(|p| p.2 == 8000));
        assert_eq!(seen.iter().filter(|p| p.0).count(), 1);
        assert_eq!(seen[2].3, vec![5, 0x80 | 10, 0x03, 0xC0]);
        let n = s.next_packet(&mut buf, 0, &[0; 160], 160);
        let v = parse(&buf[..n]).expect("parses");
        assert_eq!((v.marker, v.seq, v.timestamp), (true, 14, 8800));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(v) = parse(&bytes) {
                prop_assert!(v.payload.len() + RTP_HEADER_LEN <= bytes.len());
            }
        }

        #[test]
        fn parse_never_panics_on_v2(mut bytes in proptest::collection::vec(any::<u8>(), 12..200)) {
            bytes[0] = (bytes[0] & 0x3F) | 0x80;
            let _ = parse(&bytes);
        }
    }
}
