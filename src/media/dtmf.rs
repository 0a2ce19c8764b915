//! DTMF key detection, three ways a caller's keypress can reach us:
//! RFC 4733 telephone-events in RTP, in-band tones in the audio (Goertzel),
//! and SIP INFO bodies. Plus a tone generator for test phones.
//!
//! All of it is sans I/O: detectors are plain state fed with packets or samples.

use std::collections::VecDeque;

/// RFC 4733 section 3.2 event codes 0-15, in order.
const KEYS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// Maps an RFC 4733 event code to its key; `None` for non-DTMF events (flash, tones).
pub(crate) fn event_to_key(event: u8) -> Option<char> {
    KEYS.get(event as usize).copied()
}

/// Maps a key (`0-9 * # A-D`, letters in either case) to its RFC 4733 event code.
pub(crate) fn key_to_event(key: char) -> Option<u8> {
    let key = key.to_ascii_uppercase();
    KEYS.iter().position(|&k| k == key).map(|i| i as u8)
}

/// Builds an RFC 4733 section 2.3 payload (event, E bit, volume in -dBm0,
/// duration in timestamp units), for test phones and for relaying keys.
pub(crate) fn encode_event(key_event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [
        key_event,
        (u8::from(end) << 7) | (volume & 0x3F),
        d[0],
        d[1],
    ]
}

/// How many recent event timestamps to remember, so a late or reordered
/// end packet of an earlier press is not taken for a new press.
const EVENT_HISTORY: usize = 4;

/// The largest duration one RFC 4733 packet can report (section 2.5.1.3).
const MAX_SEGMENT: u16 = u16::MAX;

/// The newest press seen: enough to tell a long press's next segment from a new press.
#[derive(Debug, Clone, Copy)]
struct Segment {
    timestamp: u32,
    event: u8,
    /// Longest duration reported for it so far.
    duration: u16,
    /// An end packet was seen.
    ended: bool,
}

/// Turns the stream of RFC 4733 packets into one key per press.
///
/// A press is sent as several start/update packets and usually three end
/// packets, all with the same RTP timestamp (RFC 4733 section 2.5.1.4), so a
/// press is known by its timestamp: retransmitted, late or reordered packets of
/// it carry one already seen. The key is reported on the first packet seen,
/// without waiting for the end bit, so a caller can barge into a prompt
/// immediately. A press held past the 16-bit duration (8.2 s at 8 kHz) goes on
/// as a new segment with a new timestamp, where the last one ended (section
/// 2.5.1.3): that is the same press, not a new one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rfc4733Detector {
    recent: [Option<u32>; EVENT_HISTORY],
    next: usize,
    last: Option<Segment>,
}

impl Rfc4733Detector {
    /// A detector that has seen no events yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event payload; returns the key if this packet
    /// starts a press not seen before.
    pub(crate) fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<char> {
        if payload.len() < 4 {
            return None;
        }
        let event = payload[0];
        let ended = payload[1] & 0x80 != 0;
        let duration = u16::from_be_bytes([payload[2], payload[3]]);
        if self.recent.contains(&Some(rtp_timestamp)) {
            if let Some(last) = self.last.as_mut().filter(|l| l.timestamp == rtp_timestamp) {
                last.duration = last.duration.max(duration);
                last.ended |= ended;
            }
            return None;
        }
        let key = event_to_key(event)?;
        let continues = self.last.is_some_and(|l| {
            l.event == event
                && !l.ended
                && l.duration == MAX_SEGMENT
                && rtp_timestamp == l.timestamp.wrapping_add(u32::from(MAX_SEGMENT))
        });
        self.recent[self.next] = Some(rtp_timestamp);
        self.next = (self.next + 1) % EVENT_HISTORY;
        self.last = Some(Segment {
            timestamp: rtp_timestamp,
            event,
            duration,
            ended,
        });
        (!continues).then_some(key)
    }
}

/// Sample rate of the in-band detector and generator (G.711 narrowband).
const RATE: f64 = super::SAMPLE_RATE as f64;
/// Goertzel block: 20 ms, i.e. one G.711 frame; 50 Hz bins separate the
/// closest DTMF pair (697/770 Hz).
const BLOCK: usize = super::FRAME_SAMPLES;
const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Minimum mean power of each tone (a sine of amplitude ~140, about -47 dBFS).
const MIN_TONE_POWER: f64 = 10_000.0;
/// Strongest tone of a group must beat the others in its group by 8 dB.
const GROUP_PEAK_RATIO: f64 = 6.3;
/// Column (high group) may exceed row by 8 dB ("normal twist")...
const NORMAL_TWIST: f64 = 6.3;
/// ...and row may exceed column by 4 dB ("reverse twist"), as in ITU-T Q.24.
const REVERSE_TWIST: f64 = 2.5;
/// The two tones must carry this share of the block's energy: speech and
/// noise spread their energy, a real key does not.
const MIN_TONE_SHARE: f64 = 0.75;
/// Consecutive blocks with the same key before it counts (2 x 20 ms = 40 ms).
const MIN_BLOCKS: u32 = 2;

/// Mean power of one frequency in a block, via the Goertzel recurrence;
/// a full-block sine of amplitude `a` gives about `a*a/2`.
pub(crate) fn goertzel_power(block: &[f64], freq: f64, rate: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / rate).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in block {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let n = block.len().max(1) as f64;
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2.0 / (n * n)
}

/// Index and power of the strongest of four tones, if it clearly beats the rest.
fn dominant(powers: &[f64; 4]) -> Option<(usize, f64)> {
    let mut best = 0;
    for i in 1..4 {
        if powers[i] > powers[best] {
            best = i;
        }
    }
    let p = powers[best];
    let clear = (0..4).all(|i| i == best || powers[i] * GROUP_PEAK_RATIO < p);
    clear.then_some((best, p))
}

/// The key present in one 20 ms block, if any.
fn analyse_block(block: &[f64]) -> Option<char> {
    let energy = block.iter().map(|x| x * x).sum::<f64>() / block.len() as f64;
    if energy < 2.0 * MIN_TONE_POWER {
        return None;
    }
    let rows = ROWS.map(|f| goertzel_power(block, f, RATE));
    let cols = COLS.map(|f| goertzel_power(block, f, RATE));
    let (r, rp) = dominant(&rows)?;
    let (c, cp) = dominant(&cols)?;
    if rp < MIN_TONE_POWER || cp < MIN_TONE_POWER {
        return None;
    }
    if cp > rp * NORMAL_TWIST || rp > cp * REVERSE_TWIST {
        return None;
    }
    if rp + cp < MIN_TONE_SHARE * energy {
        return None;
    }
    Some(KEYPAD[r][c])
}

/// Detects DTMF tones in 8 kHz linear PCM, for phones and gateways that send
/// keys in-band instead of as RFC 4733 events.
///
/// Audio is cut into 20 ms blocks whatever the chunk size pushed. A key is
/// reported once it is present in two consecutive blocks, and reported again
/// only after a block without it (a gap or another key).
#[derive(Debug, Clone)]
pub(crate) struct InbandDetector {
    block: [f64; BLOCK],
    fill: usize,
    last: Option<char>,
    run: u32,
    reported: Option<char>,
    found: VecDeque<char>,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    /// A detector with an empty block and no key held.
    pub(crate) fn new() -> Self {
        InbandDetector {
            block: [0.0; BLOCK],
            fill: 0,
            last: None,
            run: 0,
            reported: None,
            found: VecDeque::with_capacity(4),
        }
    }

    /// Feeds samples of any length; returns a newly pressed key. If one chunk
    /// completes more than one key (chunks over ~60 ms), the later ones are
    /// returned by the following calls (an empty slice will do).
    pub(crate) fn push(&mut self, samples: &[i16]) -> Option<char> {
        for &s in samples {
            self.block[self.fill] = f64::from(s);
            self.fill += 1;
            if self.fill == BLOCK {
                self.fill = 0;
                let key = analyse_block(&self.block);
                self.on_block(key);
            }
        }
        self.found.pop_front()
    }

    fn on_block(&mut self, key: Option<char>) {
        if key == self.last {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = key;
            self.run = 1;
        }
        match key {
            None => self.reported = None,
            Some(k) => {
                if self.run >= MIN_BLOCKS && self.reported != Some(k) {
                    self.reported = Some(k);
                    self.found.push_back(k);
                }
            }
        }
    }
}

/// Generates a DTMF tone at 8 kHz for test phones: both tones at half of
/// `amplitude` each, so the sum never exceeds it. Unknown keys give silence.
#[cfg(test)]
pub(crate) fn tone_samples(key: char, ms: u32, amplitude: i16) -> Vec<i16> {
    let n = (ms as usize) * 8;
    let key = key.to_ascii_uppercase();
    let pos = KEYPAD
        .iter()
        .enumerate()
        .find_map(|(r, row)| row.iter().position(|&k| k == key).map(|c| (r, c)));
    let Some((r, c)) = pos else {
        return vec![0; n];
    };
    let a = f64::from(amplitude) / 2.0;
    let (wr, wc) = (
        2.0 * std::f64::consts::PI * ROWS[r] / RATE,
        2.0 * std::f64::consts::PI * COLS[c] / RATE,
    );
    (0..n)
        .map(|i| {
            let t = i as f64;
            (a * ((wr * t).sin() + (wc * t).sin())).round() as i16
        })
        .collect()
}

/// Reads a key from a SIP INFO body, for phones that send DTMF that way.
///
/// `application/dtmf-relay` carries `Signal=5` lines (keys case-insensitive,
/// `Signal=10`/`11` meaning `*`/`#`); `application/dtmf` carries the bare key.
/// Content-type parameters after `;` are ignored.
pub(crate) fn parse_info_body(content_type: &str, body: &[u8]) -> Option<char> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let text = std::str::from_utf8(body).ok()?;
    if mime.eq_ignore_ascii_case("application/dtmf-relay") {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            if k.trim().eq_ignore_ascii_case("signal") {
                parse_key(v)
            } else {
                None
            }
        })
    } else if mime.eq_ignore_ascii_case("application/dtmf") {
        parse_key(text)
    } else {
        None
    }
}

/// A key written as itself (`5`, `*`, `a`) or as its event number (`10` = `*`).
fn parse_key(s: &str) -> Option<char> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u8>() {
        return event_to_key(n);
    }
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => key_to_event(c).and_then(event_to_key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_KEYS: &str = "0123456789*#ABCD";

    #[test]
    fn event_codes_map_both_ways() {
        for (i, k) in ALL_KEYS.chars().enumerate() {
            assert_eq!(event_to_key(i as u8), Some(k));
            assert_eq!(key_to_event(k), Some(i as u8));
        }
        assert_eq!(key_to_event('b'), Some(13));
        assert_eq!(event_to_key(16), None);
        assert_eq!(key_to_event('x'), None);
    }

    #[test]
    fn encode_event_layout() {
        assert_eq!(encode_event(11, true, 10, 1280), [11, 0x8A, 0x05, 0x00]);
        assert_eq!(encode_event(1, false, 0x7F, 0), [1, 0x3F, 0, 0]);
    }

    /// One press the way phones send it: 3 updates and 3 end packets, same timestamp.
    fn press(d: &mut Rfc4733Detector, ts: u32, event: u8) -> Vec<char> {
        let mut got = Vec::new();
        for (end, dur) in [
            (false, 160),
            (false, 320),
            (false, 480),
            (true, 640),
            (true, 640),
            (true, 640),
        ] {
            got.extend(d.on_packet(ts, &encode_event(event, end, 10, dur)));
        }
        got
    }

    #[test]
    fn rfc4733_reports_each_press_once() {
        let mut d = Rfc4733Detector::new();
        for (i, k) in ALL_KEYS.chars().enumerate() {
            let ts = 1000 + i as u32 * 2000;
            assert_eq!(press(&mut d, ts, i as u8), vec![k]);
        }
    }

    #[test]
    fn rfc4733_same_key_twice_is_two_presses() {
        let mut d = Rfc4733Detector::new();
        assert_eq!(press(&mut d, 500, 5), vec!['5']);
        assert_eq!(press(&mut d, 2500, 5), vec!['5']);
        // A late end packet of the first press is not a third press.
        assert_eq!(d.on_packet(500, &encode_event(5, true, 10, 640)), None);
    }

    #[test]
    fn rfc4733_end_only_still_reports_and_short_payload_ignored() {
        let mut d = Rfc4733Detector::new();
        assert_eq!(d.on_packet(9, &[1, 2, 3]), None);
        assert_eq!(d.on_packet(10, &encode_event(0, true, 10, 800)), Some('0'));
        assert_eq!(d.on_packet(10, &encode_event(0, true, 10, 800)), None);
        assert_eq!(d.on_packet(20, &encode_event(16, false, 10, 0)), None);
    }

    /// Issue 11 item 8: late, reordered and retransmitted packets of one press are
    /// that press, whatever order they arrive in among the next press's packets.
    #[test]
    fn rfc4733_late_reordered_and_retransmitted_packets_are_one_press() {
        let mut d = Rfc4733Detector::new();
        let pkt = |event, end, dur| encode_event(event, end, 10, dur);
        let mut got = Vec::new();
        let arrivals = [
            (1000, pkt(2, false, 480)), // the start and first updates were lost
            (1000, pkt(2, false, 160)), // ...or come late, reordered
            (1000, pkt(2, true, 800)),
            (1000, pkt(2, false, 640)), // an update after the end
            (1000, pkt(2, true, 800)),  // end retransmissions
            (1000, pkt(2, true, 800)),
            (3000, pkt(3, false, 160)), // the next press
            (1000, pkt(2, true, 800)),  // a straggler of the first, after it
            (3000, pkt(3, true, 480)),
            (3000, pkt(3, true, 480)),
            (1000, pkt(2, false, 320)),
        ];
        for (ts, p) in arrivals {
            got.extend(d.on_packet(ts, &p));
        }
        assert_eq!(got, vec!['2', '3']);
    }

    /// RFC 4733 section 2.5.1.3: a key held past 8.2 s goes on in a new segment (new
    /// timestamp where the last ended, no E bit before): one press, one key.
    #[test]
    fn rfc4733_long_press_in_two_segments_is_one_press() {
        let mut d = Rfc4733Detector::new();
        let ts = 4_294_900_000u32; // the second segment's timestamp wraps
        assert_eq!(d.on_packet(ts, &encode_event(9, false, 10, 160)), Some('9'));
        assert_eq!(d.on_packet(ts, &encode_event(9, false, 10, u16::MAX)), None);
        let next = ts.wrapping_add(u32::from(u16::MAX));
        for dur in [160, 320, 320, 320] {
            let end = dur == 320;
            assert_eq!(d.on_packet(next, &encode_event(9, end, 10, dur)), None);
        }
        // A new press of the same key later is a press again.
        let later = next.wrapping_add(4000);
        assert_eq!(
            d.on_packet(later, &encode_event(9, false, 10, 160)),
            Some('9')
        );
    }

    #[test]
    fn rfc4733_a_press_at_the_next_segments_time_after_an_end_is_new() {
        let mut d = Rfc4733Detector::new();
        assert_eq!(
            d.on_packet(0, &encode_event(1, true, 10, u16::MAX)),
            Some('1')
        );
        // The first press ended: the same timestamp arithmetic is a new press.
        let next = u32::from(u16::MAX);
        assert_eq!(
            d.on_packet(next, &encode_event(1, false, 10, 160)),
            Some('1')
        );
        // Another key where a segment would go on is a new press too.
        let mut d = Rfc4733Detector::new();
        assert_eq!(
            d.on_packet(0, &encode_event(1, false, 10, u16::MAX)),
            Some('1')
        );
        assert_eq!(
            d.on_packet(next, &encode_event(2, false, 10, 160)),
            Some('2')
        );
    }

    fn detect_all(samples: &[i16], chunk: usize) -> Vec<char> {
        let mut d = InbandDetector::new();
        let mut got = Vec::new();
        for c in samples.chunks(chunk) {
            got.extend(d.push(c));
        }
        got.extend(d.push(&[]));
        got
    }

    #[test]
    fn inband_detects_every_key_at_several_levels_and_chunkings() {
        for amp in [1_000i16, 8_000, 30_000] {
            for (i, k) in ALL_KEYS.chars().enumerate() {
                let mut s = vec![0i16; 37];
                s.extend(tone_samples(k, 80, amp));
                s.extend(vec![0i16; 400]);
                let chunk = [160, 7, 113, 1000][i % 4];
                assert_eq!(
                    detect_all(&s, chunk),
                    vec![k],
                    "key {k} amp {amp} chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn inband_survives_g711_round_trip() {
        use crate::media::codec::Codec;
        for codec in [Codec::Pcmu, Codec::Pcma] {
            for k in ALL_KEYS.chars() {
                let pcm = tone_samples(k, 60, 4000);
                let mut enc = vec![0u8; pcm.len()];
                let mut dec = vec![0i16; pcm.len()];
                codec.encode_into(&pcm, &mut enc);
                codec.decode_into(&enc, &mut dec);
                assert_eq!(detect_all(&dec, 160), vec![k], "{codec:?} {k}");
            }
        }
    }

    #[test]
    fn inband_needs_a_gap_before_repeating() {
        let long = tone_samples('5', 500, 8000);
        assert_eq!(detect_all(&long, 160), vec!['5']);
        let mut two = tone_samples('5', 100, 8000);
        two.extend(vec![0i16; 480]);
        two.extend(tone_samples('5', 100, 8000));
        assert_eq!(detect_all(&two, 160), vec!['5', '5']);
        let mut seq = tone_samples('1', 100, 8000);
        seq.extend(tone_samples('2', 100, 8000));
        assert_eq!(detect_all(&seq, 160), vec!['1', '2']);
    }

    #[test]
    fn inband_ignores_short_and_quiet_tones() {
        assert!(detect_all(&tone_samples('5', 25, 8000), 160).is_empty());
        assert!(detect_all(&tone_samples('5', 200, 150), 160).is_empty());
    }

    #[test]
    fn inband_ignores_strong_twist() {
        // Row tone 12 dB above column tone.
        let s: Vec<i16> = (0..1600)
            .map(|i| {
                let t = i as f64 / RATE;
                let tau = 2.0 * std::f64::consts::PI;
                (8000.0 * (tau * 770.0 * t).sin() + 2000.0 * (tau * 1336.0 * t).sin()) as i16
            })
            .collect();
        assert!(detect_all(&s, 160).is_empty());
    }

    fn tones(freqs: &[f64], amp: f64, ms: usize) -> Vec<i16> {
        let tau = 2.0 * std::f64::consts::PI;
        (0..ms * 8)
            .map(|i| {
                let t = i as f64 / RATE;
                freqs.iter().map(|f| amp * (tau * f * t).sin()).sum::<f64>() as i16
            })
            .collect()
    }

    #[test]
    fn inband_does_not_fire_on_prompt_like_audio() {
        // Ringback (450 Hz, China), dial tones, and a vowel-like harmonic series.
        assert!(detect_all(&tones(&[450.0], 12000.0, 2000), 160).is_empty());
        assert!(detect_all(&tones(&[350.0, 440.0], 8000.0, 2000), 160).is_empty());
        assert!(detect_all(&tones(&[480.0, 620.0], 8000.0, 2000), 160).is_empty());
        let vowel: Vec<f64> = (1..=20).map(|h| 120.0 * h as f64).collect();
        assert!(detect_all(&tones(&vowel, 1500.0, 2000), 160).is_empty());
        let vowel2: Vec<f64> = (1..=15).map(|h| 210.0 * h as f64).collect();
        assert!(detect_all(&tones(&vowel2, 2000.0, 2000), 160).is_empty());
        // One DTMF frequency together with a non-DTMF one.
        assert!(detect_all(&tones(&[697.0, 1000.0], 8000.0, 2000), 160).is_empty());
    }

    #[test]
    fn inband_does_not_fire_on_noise() {
        // Deterministic white noise (xorshift), moderate level.
        let mut x: u32 = 0x1234_5678;
        let noise: Vec<i16> = (0..16000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                ((x >> 16) as i16) / 4
            })
            .collect();
        assert!(detect_all(&noise, 160).is_empty());
    }

    #[test]
    fn tone_generator_length_and_peak() {
        let s = tone_samples('9', 100, 10000);
        assert_eq!(s.len(), 800);
        assert!(s.iter().all(|v| v.abs() <= 10000));
        assert!(s.iter().any(|v| v.abs() > 9000));
        assert!(tone_samples('x', 20, 1000).iter().all(|&v| v == 0));
    }

    #[test]
    fn info_bodies() {
        let relay = "application/dtmf-relay";
        for k in ALL_KEYS.chars() {
            let body = format!("Signal={k}\r\nDuration=160\r\n");
            assert_eq!(parse_info_body(relay, body.as_bytes()), Some(k));
            assert_eq!(
                parse_info_body("application/dtmf", k.to_string().as_bytes()),
                Some(k)
            );
        }
        assert_eq!(
            parse_info_body(relay, b"Signal= #\r\nDuration=100"),
            Some('#')
        );
        assert_eq!(parse_info_body(relay, b"signal=10\n"), Some('*'));
        assert_eq!(parse_info_body(relay, b"SIGNAL=11"), Some('#'));
        assert_eq!(
            parse_info_body(
                "Application/DTMF-Relay; charset=utf-8",
                b"Duration=1\r\nSignal=c"
            ),
            Some('C')
        );
        assert_eq!(parse_info_body("application/dtmf", b" 7\r\n"), Some('7'));
        assert_eq!(parse_info_body("application/dtmf", b"11"), Some('#'));
        assert_eq!(parse_info_body("application/sdp", b"5"), None);
        assert_eq!(parse_info_body(relay, b"Duration=160"), None);
        assert_eq!(parse_info_body(relay, b"Signal=xy"), None);
        assert_eq!(parse_info_body(relay, b"Signal=99"), None);
        assert_eq!(parse_info_body(relay, &[0xFF, 0xFE]), None);
    }
}
