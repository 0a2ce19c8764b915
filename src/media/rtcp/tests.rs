use super::*;
use proptest::prelude::*;

fn t0() -> Instant {
    Instant::now()
}

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A peer that sent `n` packets of 20 ms, every `gap`-th missing (0: none missing).
fn received(start: Instant, n: u16, gap: u16) -> RxStats {
    let mut rx = RxStats::default();
    for i in 0..n {
        if gap != 0 && i % gap == gap - 1 {
            continue;
        }
        let at = start + Duration::from_millis(u64::from(i) * 20);
        rx.on_packet(0xabcd, 100 + i, u32::from(i) * 160, at);
    }
    rx
}

fn sending(packets: u32) -> Sending {
    Sending {
        ssrc: 0x1234,
        packets,
        octets: packets * 160,
        rtp_time: 9_000,
    }
}

#[test]
fn round_trip_is_rfc3550_6_4_1_example() {
    // A = 0xb710:8000 (46864.500 s), LSR = 0xb705:2000 (46853.125 s),
    // DLSR = 0x0005:4000 (5.250 s): RTT = 0x0006:2000 (6.125 s).
    let rtt = round_trip(0xb710_8000, 0xb705_2000, 0x0005_4000);
    assert_eq!(rtt, Some(Duration::from_millis(6125)));
    // No SR echoed, or a block from before a clock step: no figure.
    assert_eq!(round_trip(0xb710_8000, 0, 0), None);
    assert_eq!(round_trip(0x0000_1000, 0xb705_2000, 0), None);
}

#[test]
fn ntp_time_counts_from_1900() {
    // 1970-01-01 is 2,208,988,800 s after 1900-01-01; half a second is 2^31.
    assert_eq!(ntp(UNIX_EPOCH), 2_208_988_800 << 32);
    let half = UNIX_EPOCH + Duration::from_millis(500);
    assert_eq!(ntp(half), (2_208_988_800 << 32) | (1 << 31));
}

#[test]
fn first_report_after_half_an_interval_then_every_interval_randomised() {
    let start = t0();
    let mut r = Rtcp::new(start, wall(), "hotline@test", 7);
    assert_eq!(r.poll_timeout(), start + INTERVAL / 2);
    let rx = RxStats::default();
    assert!(r
        .handle_timeout(start + Duration::from_secs(1), sending(0), &rx)
        .is_none());
    let mut now = r.poll_timeout();
    for _ in 0..50 {
        assert!(r.handle_timeout(now, sending(10), &rx).is_some());
        let gap = r.poll_timeout() - now;
        assert!(gap >= INTERVAL / 2 && gap < INTERVAL * 3 / 2, "{gap:?}");
        now = r.poll_timeout();
    }
}

#[test]
fn sender_report_while_sending_with_a_block_about_the_peer() {
    let start = t0();
    let mut r = Rtcp::new(start, wall(), "hotline@test", 1);
    let rx = received(start, 250, 10); // 25 of 250 lost
    let now = r.poll_timeout();
    let bytes = r.handle_timeout(now, sending(120), &rx).unwrap();
    let packets = rtcp::packet::unmarshal(&mut &bytes[..]).unwrap();
    let sr = packets[0]
        .as_any()
        .downcast_ref::<SenderReport>()
        .expect("an SR first");
    assert_eq!(
        (sr.ssrc, sr.packet_count, sr.octet_count),
        (0x1234, 120, 19_200)
    );
    assert_eq!(sr.rtp_time, 9_000);
    // 2.5 s after the wall clock reading, in NTP.
    assert_eq!(sr.ntp_time, ntp(wall() + INTERVAL / 2));
    let block = &sr.reports[0];
    assert_eq!(block.ssrc, 0xabcd);
    // The last packet (index 249) is missing too: expected runs to seq 348.
    assert_eq!(block.last_sequence_number, 100 + 248);
    assert_eq!(block.total_lost, 24);
    assert_eq!(block.fraction_lost, (24 * 256 / 249) as u8);
    assert_eq!((block.last_sender_report, block.delay), (0, 0));
    let sdes = packets[1]
        .as_any()
        .downcast_ref::<SourceDescription>()
        .expect("SDES second");
    assert_eq!(&sdes.chunks[0].items[0].text[..], b"hotline@test");
}

#[test]
fn receiver_report_once_we_stop_sending_and_fraction_is_per_interval() {
    let start = t0();
    let mut r = Rtcp::new(start, wall(), "c", 1);
    let rx = received(start, 100, 4); // a quarter lost
    let now = r.poll_timeout();
    r.handle_timeout(now, sending(50), &rx).unwrap();
    // On hold: nothing more sent, and nothing more received since.
    let next = r.poll_timeout();
    let bytes = r.handle_timeout(next, sending(50), &rx).unwrap();
    let packets = rtcp::packet::unmarshal(&mut &bytes[..]).unwrap();
    let rr = packets[0]
        .as_any()
        .downcast_ref::<ReceiverReport>()
        .expect("an RR when we sent nothing since the last report");
    assert_eq!(rr.reports[0].fraction_lost, 0, "no loss in this interval");
    assert_eq!(rr.reports[0].total_lost, 24);
}

#[test]
fn nothing_received_means_no_report_block() {
    let start = t0();
    let mut r = Rtcp::new(start, wall(), "c", 1);
    let now = r.poll_timeout();
    let bytes = r
        .handle_timeout(now, sending(5), &RxStats::default())
        .unwrap();
    let packets = rtcp::packet::unmarshal(&mut &bytes[..]).unwrap();
    let sr = packets[0].as_any().downcast_ref::<SenderReport>().unwrap();
    assert!(sr.reports.is_empty());
}

/// Two legs' RTCP connected in memory with a one-way delay: each reads the
/// other's reports, and the round trip comes out as twice the delay.
#[test]
fn two_legs_measure_their_round_trip_in_virtual_time() {
    let start = t0();
    let delay = Duration::from_millis(40);
    let mut a = Rtcp::new(start, wall(), "a", 3);
    // B's wall clock is off by an hour: RTT needs no synchronised clocks.
    let mut b = Rtcp::new(start, wall() + Duration::from_secs(3600), "b", 5);
    let sa = Sending {
        ssrc: 0xa,
        ..sending(100)
    };
    let sb = Sending {
        ssrc: 0xb,
        ..sending(100)
    };
    let mut rx_a = RxStats::default();
    let mut rx_b = RxStats::default();
    rx_a.on_packet(0xb, 1, 0, start);
    rx_b.on_packet(0xa, 1, 0, start);
    let mut now = start;
    let end = start + Duration::from_secs(30);
    let mut in_flight: Vec<(Instant, bool, Vec<u8>)> = Vec::new();
    while now < end {
        now += Duration::from_millis(10);
        if let Some(p) = a.handle_timeout(now, sa, &rx_a) {
            in_flight.push((now + delay, true, p));
        }
        if let Some(p) = b.handle_timeout(now, sb, &rx_b) {
            in_flight.push((now + delay, false, p));
        }
        for (at, to_b, p) in std::mem::take(&mut in_flight) {
            if at > now {
                in_flight.push((at, to_b, p));
            } else if to_b {
                b.handle_packet(now, &p, 0xb).unwrap();
            } else {
                a.handle_packet(now, &p, 0xa).unwrap();
            }
        }
    }
    for q in [a.quality(100, &rx_a), b.quality(100, &rx_b)] {
        let rtt = q.rtt_us.expect("a round trip once SRs were echoed");
        assert!(rtt.abs_diff(80_000) < 12_000, "rtt {rtt} us");
        assert!(q.reports_received >= 4, "{q:?}");
        assert_eq!(q.peer_lost, Some(0));
    }
}

#[test]
fn quality_reports_jitter_in_milliseconds() {
    let start = t0();
    let mut rx = RxStats::default();
    for i in 0..200u32 {
        let late = if i % 2 == 1 { 10 } else { 0 };
        rx.on_packet(
            1,
            i as u16,
            i * 160,
            start + Duration::from_millis(u64::from(i) * 20 + late),
        );
    }
    let q = Rtcp::new(start, wall(), "c", 1).quality(0, &rx);
    // Jitter settles at 80 timestamp units: 10 ms.
    assert!(q.jitter_us.abs_diff(10_000) < 300, "{}", q.jitter_us);
    assert_eq!(
        (q.packets_received, q.rtt_us, q.peer_lost),
        (200, None, None)
    );
}

#[test]
fn reports_about_other_sources_and_other_packets_are_ignored() {
    let start = t0();
    let mut r = Rtcp::new(start, wall(), "c", 1);
    let rr = ReceiverReport {
        ssrc: 9,
        reports: vec![ReceptionReport {
            ssrc: 0x5555, // not ours
            fraction_lost: 10,
            ..Default::default()
        }],
        profile_extensions: Bytes::new(),
    };
    let bye = rtcp::goodbye::Goodbye {
        sources: vec![9],
        reason: Bytes::new(),
    };
    let bytes = rtcp::packet::marshal(&[Box::new(rr), Box::new(bye)]).unwrap();
    r.handle_packet(start, &bytes, 0x1234).unwrap();
    let q = r.quality(0, &RxStats::default());
    assert_eq!((q.reports_received, q.peer_lost), (1, None));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut r = Rtcp::new(t0(), wall(), "c", 1);
    for bytes in [
        &b""[..],
        b"\x80",
        b"\x80\xc8\x00\x06abc",
        b"\xff\xff\xff\xff",
    ] {
        assert!(r.handle_packet(t0(), bytes, 1).is_err(), "{bytes:?}");
    }
}

/// A valid compound packet (SR with a block, SDES) to mutate.
fn sample() -> Vec<u8> {
    let start = t0();
    let mut r = Rtcp::new(start, wall(), "hotline@example", 1);
    let now = r.poll_timeout();
    r.handle_timeout(now, sending(10), &received(start, 50, 7))
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// RTCP parsing (issue 8's fuzzing): arbitrary bytes never panic.
    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut r = Rtcp::new(t0(), wall(), "c", 1);
        let _ = r.handle_packet(t0(), &bytes, 0x1234);
        let _ = r.quality(0, &RxStats::default());
    }

    /// Valid reports with bytes flipped, cut or grown never panic either.
    #[test]
    fn mutated_reports_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut bytes = sample();
        for (at, b) in flips {
            let n = bytes.len();
            bytes[at % n] ^= b;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        bytes.extend(tail);
        let mut r = Rtcp::new(t0(), wall(), "c", 1);
        let _ = r.handle_packet(t0(), &bytes, 0x1234);
    }
}
