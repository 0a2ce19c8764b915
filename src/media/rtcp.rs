//! RTCP (RFC 3550 section 6) for one leg, without I/O: when the next report is
//! due, what goes in it (a sender report while we send, else a receiver report,
//! each with an SDES CNAME as section 6.1 asks), and what the peer's reports tell
//! us: how much of our stream they lost, their jitter, and the round trip. The
//! packet format is the `rtcp` crate's (webrtc-rs); the task in `session.rs`
//! moves the bytes. A peer that sends no RTCP is normal: nothing here ends a call.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};

use super::rxstats::RxStats;
use super::SAMPLE_RATE;

/// The report interval: RFC 3550's recommended minimum (section 6.2), which is
/// also what Asterisk and FreeSWITCH send at.
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The cumulative loss field is 24 bits, signed (RFC 3550 6.4.1).
const MAX_TOTAL_LOST: i64 = 0x7f_ffff;

/// The longest round trip believed, in 1/65536 s: a minute.
const MAX_RTT: u32 = 60 << 16;

/// The 64-bit NTP timestamp of a wall-clock time (RFC 3550 section 4).
pub(crate) fn ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp: the unit of LSR and DLSR, 1/65536 s.
fn middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// The round trip from a report block (RFC 3550 6.4.1): arrival time minus the
/// LSR it echoes minus the delay the peer held it, all in 1/65536 s. None when
/// the block echoes no SR of ours or the result is over a minute (a block from
/// before a clock step, or a peer that fills the fields wrongly).
pub(crate) fn round_trip(arrival: u32, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let rtt = arrival.wrapping_sub(lsr).wrapping_sub(dlsr);
    if rtt > MAX_RTT {
        return None;
    }
    Some(Duration::from_micros(u64::from(rtt) * 1_000_000 / 65_536))
}

/// What the outgoing stream has sent, read when a report is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sending {
    pub ssrc: u32,
    pub packets: u32,
    pub octets: u32,
    /// The RTP timestamp that corresponds to the report's time.
    pub rtp_time: u32,
}

/// What the peer's latest report said about our stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerView {
    /// Our packets they lost in all.
    total_lost: u32,
    /// Interarrival jitter of our stream at their end, in timestamp units.
    jitter: u32,
}

/// A leg's media quality, for the call record and `/metrics`; times in
/// microseconds, as the record keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Quality {
    pub packets_sent: u32,
    pub packets_received: u32,
    /// Expected minus received (RFC 3550 A.3; negative with duplicates).
    pub packets_lost: i64,
    /// Interarrival jitter of what we received.
    pub jitter_us: u32,
    /// The latest round trip, when the peer's reports allowed one.
    pub rtt_us: Option<u32>,
    /// Our packets the peer reported lost, and its jitter for our stream,
    /// when it sent reports about us.
    pub peer_lost: Option<u32>,
    pub peer_jitter_us: Option<u32>,
    pub reports_received: u32,
}

/// Timestamp units (1/8000 s) in microseconds.
fn ts_to_us(units: u32) -> u32 {
    units.saturating_mul(1_000_000 / SAMPLE_RATE)
}

/// Why a datagram on the RTCP port was not a report we could read.
#[derive(Debug, thiserror::Error)]
#[error("not an RTCP packet we can read: {0}")]
pub(crate) struct RtcpError(#[from] rtcp::Error);

/// One leg's RTCP state.
#[derive(Debug)]
pub(crate) struct Rtcp {
    cname: Bytes,
    /// Instant `base` is NTP time `base_ntp`: reports carry NTP, the state machine
    /// only ever sees `Instant`s.
    base: Instant,
    base_ntp: u64,
    next: Instant,
    /// xorshift state for the interval's randomisation (RFC 3550 6.3.1).
    rng: u64,
    /// For the fraction lost of our report blocks (RFC 3550 A.3).
    expected_prior: i64,
    received_prior: u32,
    /// Packets sent as of our previous report: SR only while we send (6.4).
    packets_at_last_report: Option<u32>,
    /// The peer's newest SR (middle 32 bits of its NTP time) and when it came.
    last_sr: Option<(u32, Instant)>,
    peer: Option<PeerView>,
    rtt: Option<Duration>,
    reports_received: u32,
}

impl Rtcp {
    /// A leg's RTCP starting at `now`, when the wall clock reads `wall`. The first
    /// report goes out after half an interval (RFC 3550 6.2); `seed` randomises
    /// the intervals so that legs opened together do not report together.
    pub(crate) fn new(now: Instant, wall: SystemTime, cname: &str, seed: u64) -> Rtcp {
        Rtcp {
            cname: Bytes::copy_from_slice(cname.as_bytes()),
            base: now,
            base_ntp: ntp(wall),
            next: now + INTERVAL / 2,
            rng: seed | 1,
            expected_prior: 0,
            received_prior: 0,
            packets_at_last_report: None,
            last_sr: None,
            peer: None,
            rtt: None,
            reports_received: 0,
        }
    }

    fn ntp_at(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.base);
        let units = (d.as_nanos() << 32) / 1_000_000_000;
        self.base_ntp.wrapping_add(units as u64)
    }

    /// When the next report is due.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// The interval times a factor in [0.5, 1.5) (RFC 3550 6.3.1).
    fn next_interval(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let permille = 500 + self.rng % 1000;
        INTERVAL * permille as u32 / 1000
    }

    /// The report due at `now`, if one is: a compound packet ready to send.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        sending: Sending,
        rx: &RxStats,
    ) -> Option<Vec<u8>> {
        if now < self.next {
            return None;
        }
        self.next = now + self.next_interval();
        self.build(now, sending, rx)
    }

    fn build(&mut self, now: Instant, sending: Sending, rx: &RxStats) -> Option<Vec<u8>> {
        let reports: Vec<ReceptionReport> = self.report_block(now, rx).into_iter().collect();
        let sent_since = self
            .packets_at_last_report
            .is_none_or(|before| sending.packets != before);
        self.packets_at_last_report = Some(sending.packets);
        let report: Box<dyn Packet + Send + Sync> = if sending.packets > 0 && sent_since {
            Box::new(SenderReport {
                ssrc: sending.ssrc,
                ntp_time: self.ntp_at(now),
                rtp_time: sending.rtp_time,
                packet_count: sending.packets,
                octet_count: sending.octets,
                reports,
                profile_extensions: Bytes::new(),
            })
        } else {
            Box::new(ReceiverReport {
                ssrc: sending.ssrc,
                reports,
                profile_extensions: Bytes::new(),
            })
        };
        let sdes = SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: sending.ssrc,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: self.cname.clone(),
                }],
            }],
        };
        rtcp::packet::marshal(&[report, Box::new(sdes)])
            .ok()
            .map(|b| b.to_vec())
    }

    /// Our report on what the peer sent (RFC 3550 6.4.1, A.3), when it sent anything.
    fn report_block(&mut self, now: Instant, rx: &RxStats) -> Option<ReceptionReport> {
        let ssrc = rx.ssrc()?;
        let received = rx.received();
        let lost = rx.lost();
        let expected = i64::from(received) + lost;
        let expected_interval = expected - self.expected_prior;
        let received_interval = i64::from(received.wrapping_sub(self.received_prior));
        let lost_interval = expected_interval - received_interval;
        self.expected_prior = expected;
        self.received_prior = received;
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let (last_sender_report, delay) = match self.last_sr {
            Some((lsr, at)) => {
                let held = now.saturating_duration_since(at);
                (lsr, (held.as_micros() * 65_536 / 1_000_000) as u32)
            }
            None => (0, 0),
        };
        Some(ReceptionReport {
            ssrc,
            fraction_lost,
            total_lost: lost.clamp(0, MAX_TOTAL_LOST) as u32,
            last_sequence_number: rx.extended_max_seq(),
            jitter: rx.jitter(),
            last_sender_report,
            delay,
        })
    }

    /// A datagram from the peer's RTCP port. `our_ssrc` picks the report blocks
    /// about our stream out of reports that may cover others too.
    pub(crate) fn handle_packet(
        &mut self,
        now: Instant,
        bytes: &[u8],
        our_ssrc: u32,
    ) -> Result<(), RtcpError> {
        let packets = rtcp::packet::unmarshal(&mut &bytes[..])?;
        for p in &packets {
            let any = p.as_any();
            let blocks = if let Some(sr) = any.downcast_ref::<SenderReport>() {
                self.last_sr = Some((middle(sr.ntp_time), now));
                self.reports_received += 1;
                &sr.reports
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                self.reports_received += 1;
                &rr.reports
            } else {
                continue; // SDES, BYE, feedback: nothing we keep
            };
            for b in blocks.iter().filter(|b| b.ssrc == our_ssrc) {
                self.on_block(now, b);
            }
        }
        Ok(())
    }

    fn on_block(&mut self, now: Instant, b: &ReceptionReport) {
        self.peer = Some(PeerView {
            total_lost: b.total_lost,
            jitter: b.jitter,
        });
        let arrival = middle(self.ntp_at(now));
        if let Some(rtt) = round_trip(arrival, b.last_sender_report, b.delay) {
            self.rtt = Some(rtt);
        }
    }

    /// The leg's figures so far.
    pub(crate) fn quality(&self, sent_packets: u32, rx: &RxStats) -> Quality {
        Quality {
            packets_sent: sent_packets,
            packets_received: rx.received(),
            packets_lost: rx.lost(),
            jitter_us: ts_to_us(rx.jitter()),
            // round_trip caps it at a minute, well inside u32 microseconds.
            rtt_us: self.rtt.map(|d| d.as_micros() as u32),
            peer_lost: self.peer.map(|p| p.total_lost),
            peer_jitter_us: self.peer.map(|p| ts_to_us(p.jitter)),
            reports_received: self.reports_received,
        }
    }
}

#[cfg(test)]
mod tests;
