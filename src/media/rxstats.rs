//! What a leg received, as RFC 3550 counts it for reception reports: packets
//! received, expected and lost (appendix A.3) and the interarrival jitter
//! (section 6.4.1, appendix A.8). Plain arithmetic over packets and arrival
//! times; the RTCP sender reads it.

use std::time::Instant;

use super::SAMPLE_RATE;

/// Sequence numbers this far apart are a restart, not loss (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;

/// Reception statistics of one leg's incoming stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct RxStats {
    /// The source being counted; a new SSRC starts its counts afresh.
    ssrc: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    /// Wraps of the 16-bit sequence number, times 65,536.
    cycles: u32,
    received: u32,
    /// Packets of earlier sources (the leg's total).
    received_before: u32,
    lost_before: i64,
    /// Relative transit time of the previous packet, in timestamp units.
    transit: Option<i64>,
    /// Jitter times 16 (RFC 3550 A.8's integer form).
    jitter16: u32,
    /// Arrival times are counted from here, in timestamp units.
    epoch: Option<Instant>,
}

impl RxStats {
    /// One audio packet of `ssrc` with `seq` and timestamp `ts`, arriving at `now`.
    pub(crate) fn on_packet(&mut self, ssrc: u32, seq: u16, ts: u32, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = (now.saturating_duration_since(epoch).as_micros() as u64
            * u64::from(SAMPLE_RATE)
            / 1_000_000) as i64;
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.received_before += self.received;
                self.lost_before += self.lost_this_source();
            }
            self.ssrc = Some(ssrc);
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
            self.cycles = 0;
            self.received = 0;
            self.transit = None;
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta > 0 && delta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        }
        self.received = self.received.wrapping_add(1);
        // A.8: D(i-1, i) = (Rj - Ri) - (Sj - Si), J += (|D| - J) / 16.
        let transit = arrival - i64::from(ts);
        if let Some(prev) = self.transit {
            let d = (transit - prev)
                .unsigned_abs()
                .min(u64::from(u32::MAX >> 5)) as u32;
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    fn expected_this_source(&self) -> i64 {
        if self.ssrc.is_none() {
            return 0;
        }
        i64::from(self.cycles) + i64::from(self.max_seq) - i64::from(self.base_seq) + 1
    }

    fn lost_this_source(&self) -> i64 {
        self.expected_this_source() - i64::from(self.received)
    }

    /// Packets received from the leg.
    pub(crate) fn received(&self) -> u32 {
        self.received_before + self.received
    }

    /// Packets lost (expected minus received; negative with duplicates, RFC 3550 6.4.1).
    pub(crate) fn lost(&self) -> i64 {
        self.lost_before + self.lost_this_source()
    }

    /// Extended highest sequence number received (for a report block).
    pub(crate) fn extended_max_seq(&self) -> u32 {
        self.cycles + u32::from(self.max_seq)
    }

    /// Interarrival jitter in timestamp units (1/8000 s for G.711).
    pub(crate) fn jitter(&self) -> u32 {
        self.jitter16 >> 4
    }

    /// The source counted now.
    pub(crate) fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t0: Instant, us: u64) -> Instant {
        t0 + Duration::from_micros(us)
    }

    #[test]
    fn steady_stream_has_no_jitter_and_no_loss() {
        let t0 = Instant::now();
        let mut s = RxStats::default();
        for i in 0..100u16 {
            s.on_packet(
                7,
                1000 + i,
                5000 + u32::from(i) * 160,
                at(t0, u64::from(i) * 20_000),
            );
        }
        assert_eq!((s.received(), s.lost(), s.jitter()), (100, 0, 0));
        assert_eq!(s.extended_max_seq(), 1099);
    }

    #[test]
    fn jitter_follows_rfc3550_a8() {
        // Every other packet 10 ms late: |D| = 80 samples for each pair after the first.
        // J converges to 80 (J += (|D| - J)/16); after n steps J = 80 (1 - (15/16)^n).
        let t0 = Instant::now();
        let mut s = RxStats::default();
        let mut j = 0.0f64;
        for i in 0..200u64 {
            let late = if i % 2 == 1 { 10_000 } else { 0 };
            s.on_packet(1, i as u16, i as u32 * 160, at(t0, i * 20_000 + late));
            if i > 0 {
                j += (80.0 - j) / 16.0;
            }
            // The integer form truncates (J >> 4): at most 1.5 below the real value.
            assert!(
                (f64::from(s.jitter()) - j).abs() <= 1.5,
                "packet {i}: {} vs {j:.2}",
                s.jitter()
            );
        }
        assert!(
            (79..=80).contains(&s.jitter()),
            "settles at 80: {}",
            s.jitter()
        );
    }

    #[test]
    fn loss_counts_gaps_across_a_seq_wrap() {
        let t0 = Instant::now();
        let mut s = RxStats::default();
        for (i, seq) in [65_533u16, 65_534, 0, 1, 4].iter().enumerate() {
            s.on_packet(1, *seq, i as u32 * 160, at(t0, i as u64 * 20_000));
        }
        // Expected 65533..=65540 (8), received 5: 65535, 2 and 3 lost.
        assert_eq!((s.received(), s.lost()), (5, 3));
        assert_eq!(s.extended_max_seq(), 65_536 + 4);
    }

    #[test]
    fn a_new_source_keeps_the_legs_totals() {
        let t0 = Instant::now();
        let mut s = RxStats::default();
        s.on_packet(1, 10, 0, t0);
        s.on_packet(1, 12, 320, at(t0, 40_000));
        s.on_packet(2, 500, 9, at(t0, 60_000));
        s.on_packet(2, 501, 169, at(t0, 80_000));
        assert_eq!((s.received(), s.lost(), s.ssrc()), (4, 1, Some(2)));
    }
}
