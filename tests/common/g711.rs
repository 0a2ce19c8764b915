//! G.711 mu-law and A-law, DTMF tone generation and a Goertzel detector, written out here so
//! the phone checks the daemon's audio with code the daemon does not share.

/// Samples per second of narrowband telephony.
pub const SAMPLE_RATE: f64 = 8000.0;

/// Peak of one sine at -10 dBm0 in 16-bit linear PCM. The G.711 full scale (peak 32124 mu-law)
/// is +3.17 dBm0, so 0 dBm0 peaks near 22 650 and -10 dBm0 near 7 160.
pub const PEAK_MINUS_10_DBM0: f64 = 7160.0;

/// Payload of 20 ms of silence: PCMU 0xFF, PCMA 0xD5.
pub fn silence_byte(pt: u8) -> u8 {
    if pt == 8 {
        0xD5
    } else {
        0xFF
    }
}

pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let exp = (u >> 4) & 0x07;
    let mant = (u & 0x0F) as i32;
    let mag = (((mant << 3) + 0x84) << exp) - 0x84;
    if u & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut x = sample as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    let mut exp = 7;
    while exp > 0 && x & (0x80 << exp) == 0 {
        exp -= 1;
    }
    let mant = (x >> (exp + 3)) & 0x0F;
    !(sign | (exp << 4) | mant) as u8
}

pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let exp = (a >> 4) & 0x07;
    let mant = (a & 0x0F) as i32;
    let mut mag = (mant << 4) + 8;
    if exp != 0 {
        mag = (mag + 0x100) << (exp - 1);
    }
    // In A-law a set sign bit means positive.
    if a & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign = if x >= 0 {
        0x80
    } else {
        x = -x;
        0
    };
    x = x.min(32767);
    let (exp, mant) = if x < 256 {
        (0, x >> 4)
    } else {
        let exp = (31 - (x as u32).leading_zeros() as i32 - 7).min(7);
        (exp, (x >> (exp + 3)) & 0x0F)
    };
    ((sign | (exp << 4) | mant) as u8) ^ 0x55
}

/// Decode a G.711 payload of payload type 0 (PCMU) or 8 (PCMA); other types give nothing.
pub fn decode(pt: u8, payload: &[u8]) -> Vec<i16> {
    match pt {
        0 => payload.iter().map(|b| ulaw_to_linear(*b)).collect(),
        8 => payload.iter().map(|b| alaw_to_linear(*b)).collect(),
        _ => Vec::new(),
    }
}

/// Encode linear PCM for payload type 8 (PCMA), otherwise PCMU.
pub fn encode(pt: u8, pcm: &[i16]) -> Vec<u8> {
    if pt == 8 {
        pcm.iter().map(|s| linear_to_alaw(*s)).collect()
    } else {
        pcm.iter().map(|s| linear_to_ulaw(*s)).collect()
    }
}

/// Row and column frequencies of a DTMF key (0-9, *, #, A-D).
pub fn dtmf_freqs(key: char) -> Option<(f64, f64)> {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const PAD: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    let key = key.to_ascii_uppercase();
    PAD.iter().enumerate().find_map(|(r, row)| {
        row.chars()
            .position(|k| k == key)
            .map(|c| (ROWS[r], COLS[c]))
    })
}

/// RFC 4733 event code of a DTMF key: 0-9, * = 10, # = 11, A-D = 12-15.
pub fn dtmf_event_code(key: char) -> Option<u8> {
    match key.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        l @ 'A'..='D' => Some(l as u8 - b'A' + 12),
        _ => None,
    }
}

/// A sine of `freq_hz`, `ms` long, with the given peak.
pub fn tone(freq_hz: f64, ms: u32, peak: f64) -> Vec<i16> {
    let n = (ms as f64 * SAMPLE_RATE / 1000.0) as usize;
    let w = 2.0 * std::f64::consts::PI * freq_hz / SAMPLE_RATE;
    (0..n)
        .map(|i| (peak * (w * i as f64).sin()).round() as i16)
        .collect()
}

/// The dual tone of a DTMF key at -10 dBm0 per tone, `ms` long.
pub fn dtmf_tone(key: char, ms: u32) -> Option<Vec<i16>> {
    let (lo, hi) = dtmf_freqs(key)?;
    let a = tone(lo, ms, PEAK_MINUS_10_DBM0);
    let b = tone(hi, ms, PEAK_MINUS_10_DBM0);
    Some(a.iter().zip(&b).map(|(x, y)| x + y).collect())
}

/// Share of the signal's energy that lies at `freq_hz` (Goertzel at the exact frequency):
/// about 1.0 for a pure sine at that frequency, about 0.5 for each tone of an equal-level
/// DTMF pair, near 0 for silence or other frequencies.
pub fn dominant_energy(pcm: &[i16], freq_hz: f64) -> f64 {
    let n = pcm.len() as f64;
    let total: f64 = pcm.iter().map(|s| (*s as f64) * (*s as f64)).sum();
    if pcm.is_empty() || total == 0.0 {
        return 0.0;
    }
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq_hz / SAMPLE_RATE).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in pcm {
        let s = *x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (total * n / 2.0)
}

/// Root mean square of PCM samples.
pub fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter().map(|s| (*s as f64) * (*s as f64)).sum::<f64>() / pcm.len() as f64).sqrt()
}
