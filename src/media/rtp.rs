//! Allocation-free helpers over raw RTP packets (RFC 3550 section 5.1).
//!
//! Parsing wraps `rtp_rs::RtpReader`; writing is a fixed 12-byte header, since
//! we never send CSRCs, extensions or padding.

/// Length of the fixed RTP header we write (RFC 3550 section 5.1, no CSRC).
pub(crate) const RTP_HEADER_LEN: usize = 12;

/// Writes a version-2 RTP header with no padding, extension or CSRC into
/// `buf[..12]`, so a packet is one header write plus a payload copy.
///
/// Panics if `buf` is shorter than [`RTP_HEADER_LEN`]: buffers are ours, so
/// that is a programming error, not bad input.
pub(crate) fn write_header(
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
pub(crate) struct RtpView<'a> {
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
pub(crate) fn parse(buf: &[u8]) -> Option<RtpView<'_>> {
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
