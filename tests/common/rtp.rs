//! RTP packets (RFC 3550), telephone-event payloads (RFC 4733) and receive statistics.

use std::time::Duration;

use tokio::time::Instant;

/// One RTP packet as received (or as a fake saw it), header fields decoded.
#[derive(Clone, Debug)]
pub struct RtpPacket {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
    pub arrival: Instant,
}

/// Decode an RTP packet; `None` for anything that is not RTP version 2 or is truncated.
pub fn parse_rtp(data: &[u8], arrival: Instant) -> Option<RtpPacket> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let cc = (data[0] & 0x0F) as usize;
    let mut start = 12 + 4 * cc;
    if data[0] & 0x10 != 0 {
        let ext = data.get(start + 2..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    let mut end = data.len();
    if data[0] & 0x20 != 0 {
        end = end.checked_sub(*data.last()? as usize)?;
    }
    Some(RtpPacket {
        pt: data[1] & 0x7F,
        marker: data[1] & 0x80 != 0,
        seq: u16::from_be_bytes([data[2], data[3]]),
        ts: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        payload: data.get(start..end)?.to_vec(),
        arrival,
    })
}

pub fn build_rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(pt | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An RFC 4733 section 2.3 named-event payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        if payload.len() < 4 {
            return None;
        }
        Some(TelephoneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3F,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// Summary of a received RTP stream, for assertions.
#[derive(Clone, Debug, Default)]
pub struct RtpStats {
    pub packets: usize,
    /// Distinct payload types, in order of first appearance.
    pub payload_types: Vec<u8>,
    /// Distinct SSRCs, in order of first appearance (more than one: the stream was restarted).
    pub ssrcs: Vec<u32>,
    /// Consecutive packets (same SSRC) whose sequence number is not the previous plus one.
    pub seq_discontinuities: usize,
    /// Consecutive G.711 packets (same SSRC) whose timestamp did not advance by the previous
    /// packet's sample count.
    pub ts_discontinuities: usize,
    pub markers: usize,
    pub first_arrival: Option<Instant>,
    pub last_arrival: Option<Instant>,
    /// Largest gap between two consecutive arrivals.
    pub max_interarrival: Duration,
}

pub fn rtp_stats(packets: &[RtpPacket]) -> RtpStats {
    let mut st = RtpStats {
        packets: packets.len(),
        first_arrival: packets.first().map(|p| p.arrival),
        last_arrival: packets.last().map(|p| p.arrival),
        ..RtpStats::default()
    };
    let mut prev: Option<&RtpPacket> = None;
    for p in packets {
        if !st.payload_types.contains(&p.pt) {
            st.payload_types.push(p.pt);
        }
        if !st.ssrcs.contains(&p.ssrc) {
            st.ssrcs.push(p.ssrc);
        }
        st.markers += p.marker as usize;
        if let Some(q) = prev {
            st.max_interarrival = st
                .max_interarrival
                .max(p.arrival.saturating_duration_since(q.arrival));
            if q.ssrc == p.ssrc {
                if p.seq != q.seq.wrapping_add(1) {
                    st.seq_discontinuities += 1;
                }
                let g711 = |x: u8| x == 0 || x == 8;
                if g711(p.pt) && g711(q.pt) && p.ts != q.ts.wrapping_add(q.payload.len() as u32) {
                    st.ts_discontinuities += 1;
                }
            }
        }
        prev = Some(p);
    }
    st
}
