use std::time::{Duration, Instant};

use super::*;
use crate::media::codec::Codec;
use crate::media::relay::LegMedia;
use crate::media::rtp::parse;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn local(s: &mut OutStream, t: Instant) -> (bool, u16, u32) {
    let mut out = [0u8; 400];
    let n = s.local_frame(0, &[0xFF; 160], t, &mut out);
    let v = parse(&out[..n]).expect("own packet parses");
    (v.marker, v.seq, v.timestamp)
}

fn relay(s: &mut OutStream, t: Instant, ssrc: u32, seq: u16, ts: u32) -> (bool, u16, u32) {
    let legs = RelayDirection::new(
        LegMedia::new(Codec::Pcmu, None),
        LegMedia::new(Codec::Pcmu, None),
    );
    let mut p = [0xFFu8; RTP_HEADER_LEN + 160];
    write_header(&mut p, false, 0, seq, ts, ssrc);
    let mut out = [0u8; 400];
    let n = s.forward(&legs, &p, t, &mut out).expect("forwarded");
    let v = parse(&out[..n]).expect("own packet parses");
    (v.marker, v.seq, v.timestamp)
}

#[test]
fn marker_only_on_the_first_packet_of_a_talkspurt() {
    let t0 = Instant::now();
    let mut s = OutStream::new(7, 100, 1000);
    let got: Vec<_> = [0, 20, 40, 100, 120]
        .iter()
        .map(|&t| local(&mut s, t0 + ms(t)))
        .collect();
    assert_eq!(
        got,
        vec![
            (true, 100, 1000),
            (false, 101, 1160),
            (false, 102, 1320),
            // 100 ms is 800 samples after the first frame.
            (true, 103, 1800),
            (false, 104, 1960),
        ]
    );
}

#[test]
fn switch_marks_the_next_frame_even_without_a_pause() {
    let t0 = Instant::now();
    let mut s = OutStream::new(7, 0, 0);
    local(&mut s, t0);
    s.switch();
    assert_eq!(local(&mut s, t0 + ms(20)), (true, 1, 160));
    assert_eq!(local(&mut s, t0 + ms(40)), (false, 2, 320));
}

#[test]
fn relay_after_a_switch_reanchors_even_for_the_same_ssrc() {
    let t0 = Instant::now();
    let mut s = OutStream::new(7, 10, 0);
    relay(&mut s, t0, 5, 500, 0);
    assert_eq!(relay(&mut s, t0 + ms(20), 5, 501, 160), (false, 11, 160));
    s.switch();
    // Same SSRC, but 2,000 packets later (a hold): continues from 12, not 2,011.
    assert_eq!(relay(&mut s, t0 + ms(40_040), 5, 2501, 320_160).1, 12);
}

#[test]
fn seq_and_timestamp_wrap() {
    let t0 = Instant::now();
    let mut s = OutStream::new(1, 65535, u32::MAX - 100);
    assert_eq!(local(&mut s, t0).1, 65535);
    let (_, seq, ts) = local(&mut s, t0 + ms(20));
    assert_eq!((seq, ts), (0, 59));
}

#[test]
fn counts_what_was_sent_and_tells_the_timestamp_of_now() {
    let t0 = Instant::now();
    let mut s = OutStream::new(1, 0, 8000);
    assert_eq!(s.ts_at(t0), 8000, "nothing sent yet");
    local(&mut s, t0);
    local(&mut s, t0 + ms(20));
    let sent = s.sent();
    assert_eq!((sent.packets, sent.octets, sent.end_ts), (2, 320, 8320));
    // The second frame (ts 8160) went at 20 ms; 1 s later the media clock is at 8160 + 8000.
    assert_eq!(s.ts_at(t0 + ms(1020)), 8160 + 8000);
}

#[test]
fn a_late_tick_in_a_playback_does_not_cut_a_silence_into_it() {
    let t0 = Instant::now();
    let mut s = OutStream::new(1, 0, 0);
    let mut out = [0u8; 400];
    let mut next = |s: &mut OutStream, t| {
        let n = s.next_frame(0, &[0xFF; 160], t0 + ms(t), &mut out);
        let v = parse(&out[..n]).expect("parses");
        (v.marker, v.seq, v.timestamp)
    };
    assert_eq!(next(&mut s, 0), (true, 0, 0));
    // The clock stalled for 200 ms: the prompt's next frame still follows on.
    assert_eq!(next(&mut s, 200), (false, 1, 160));
    // A switch (a new prompt after silence) keeps the time that passed.
    s.switch();
    assert_eq!(next(&mut s, 1200), (true, 2, 8160));
}
