//! G.711 codecs (ITU-T G.711 mu-law and A-law).
//!
//! The companding follows the ITU-T G.191 reference implementation (`g711.c`):
//! negative samples are taken in one's complement, so `x` and `-x - 1` map to
//! mirror-image codes. Decoding and PCMU<->PCMA transcoding are 256-entry
//! tables built at compile time; encoding is a handful of integer operations.

/// A codec both legs can speak. Only G.711 for now: it is what every SIP trunk and phone offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 mu-law, RTP payload type 0 (North America, Japan; most SIP phones offer it first).
    Pcmu,
    /// G.711 A-law, RTP payload type 8 (Europe, China; what many trunks here use).
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
    /// The encoding name as written in SDP `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Maps a static RTP payload type (RFC 3551 table 4) back to a codec, so the
    /// receive path can tell what an incoming packet carries.
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The byte that decodes to (near) zero: used to pad the last frame of a
    /// prompt and to fill gaps, so padding is silent rather than a click.
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    /// Encodes linear PCM into `out` without allocating (one call per 20 ms frame).
    /// Only `min(pcm.len(), out.len())` samples are written.
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) {
        let enc = match self {
            Codec::Pcmu => ulaw_encode,
            Codec::Pcma => alaw_encode,
        };
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = enc(s);
        }
    }

    /// Decodes G.711 bytes into linear PCM without allocating (for the in-band
    /// DTMF detector and for recording). Only `min(data.len(), out.len())` samples are written.
    pub fn decode_into(self, data: &[u8], out: &mut [i16]) {
        let table = match self {
            Codec::Pcmu => &ULAW_DECODE,
            Codec::Pcma => &ALAW_DECODE,
        };
        for (o, &b) in out.iter_mut().zip(data) {
            *o = table[b as usize];
        }
    }
}

/// Encodes one linear sample to mu-law (G.711 section 2, G.191 `ulaw_compress`).
pub const fn ulaw_encode(lin: i16) -> u8 {
    // One's complement magnitude on 14 bits, plus the mu-law bias of 33.
    let mag = if lin < 0 { (!lin) >> 2 } else { lin >> 2 } as i32;
    let mut absno = mag + 33;
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    // Segment number 1..=8: one more than the bit length of absno >> 6.
    let segno = 1 + (32 - ((absno >> 6) as u32).leading_zeros()) as i32;
    let high = (8 - segno) as u8;
    let low = 0x0F - ((absno >> segno) & 0x0F) as u8;
    let out = (high << 4) | low;
    if lin >= 0 {
        out | 0x80
    } else {
        out
    }
}

/// Decodes one mu-law byte to linear PCM (G.191 `ulaw_expand`).
pub const fn ulaw_decode(code: u8) -> i16 {
    let inv = !code;
    let exponent = ((inv >> 4) & 0x07) as i32;
    let mantissa = (inv & 0x0F) as i32;
    let step = 4 << (exponent + 1);
    let mag = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    if code < 0x80 {
        -mag as i16
    } else {
        mag as i16
    }
}

/// Encodes one linear sample to A-law (G.711 section 3, G.191 `alaw_compress`).
pub const fn alaw_encode(lin: i16) -> u8 {
    // One's complement magnitude on 12 bits.
    let mut ix = if lin < 0 { (!lin) >> 4 } else { lin >> 4 } as i32;
    if ix > 15 {
        // Segment = bit length of ix minus 4; mantissa = the 4 bits below the leading one.
        let bits = 32 - (ix as u32).leading_zeros() as i32;
        let iexp = bits - 4;
        ix = ((ix >> (iexp - 1)) - 16) + (iexp << 4);
    }
    let mut out = ix as u8;
    if lin >= 0 {
        out |= 0x80;
    }
    out ^ 0x55
}

/// Decodes one A-law byte to linear PCM (G.191 `alaw_expand`).
pub const fn alaw_decode(code: u8) -> i16 {
    let ix = ((code ^ 0x55) & 0x7F) as i32;
    let iexp = ix >> 4;
    let mut mant = ix & 0x0F;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 0x08;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    if code > 127 {
        mant as i16
    } else {
        -mant as i16
    }
}

const fn build_decode(ulaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if ulaw {
            ulaw_decode(i as u8)
        } else {
            alaw_decode(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_DECODE: [i16; 256] = build_decode(true);
static ALAW_DECODE: [i16; 256] = build_decode(false);

const fn build_transcode(ulaw_to_alaw: bool) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if ulaw_to_alaw {
            alaw_encode(ulaw_decode(i as u8))
        } else {
            ulaw_encode(alaw_decode(i as u8))
        };
        i += 1;
    }
    t
}

static ULAW_TO_ALAW: [u8; 256] = build_transcode(true);
static ALAW_TO_ULAW: [u8; 256] = build_transcode(false);

/// Converts G.711 bytes in place between mu-law and A-law, for bridging two
/// legs that negotiated different codecs. One table lookup per byte, via the
/// linear value (a no-op when `from == to`).
pub fn transcode(from: Codec, to: Codec, data: &mut [u8]) {
    let table = match (from, to) {
        (Codec::Pcmu, Codec::Pcma) => &ULAW_TO_ALAW,
        (Codec::Pcma, Codec::Pcmu) => &ALAW_TO_ULAW,
        _ => return,
    };
    for b in data.iter_mut() {
        *b = table[*b as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_vectors() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0x7E), -8);
    }

    #[test]
    fn alaw_known_vectors() {
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn codes_are_fixed_points_of_decode_then_encode() {
        for c in 0..=255u8 {
            // 0x7F is mu-law's negative zero: it decodes to 0, which encodes as 0xFF.
            if c != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(c)), c, "ulaw code {c:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(c)), c, "alaw code {c:#04x}");
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        for s in i16::MIN..=i16::MAX {
            let mag = (s as i32).unsigned_abs().max(1);
            // Quantisation step doubles per segment: error below ~1/16 of magnitude plus a floor.
            let u = ulaw_decode(ulaw_encode(s)) as i32;
            let a = alaw_decode(alaw_encode(s)) as i32;
            let bound_u = (mag / 16).max(8) as i32 + if mag > 32124 { 700 } else { 0 };
            let bound_a = (mag / 16).max(16) as i32 + if mag > 32256 { 600 } else { 0 };
            assert!((u - s as i32).abs() <= bound_u, "ulaw {s} -> {u}");
            assert!((a - s as i32).abs() <= bound_a, "alaw {s} -> {a}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut prev_u = ulaw_decode(ulaw_encode(i16::MIN));
        let mut prev_a = alaw_decode(alaw_encode(i16::MIN));
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= prev_u && a >= prev_a, "not monotonic at {s}");
            prev_u = u;
            prev_a = a;
        }
    }

    #[test]
    fn slices_encode_and_decode() {
        let pcm = [0i16, 1000, -1000, 32000, -32000];
        let mut enc = [0u8; 5];
        let mut dec = [0i16; 5];
        for codec in [Codec::Pcmu, Codec::Pcma] {
            codec.encode_into(&pcm, &mut enc);
            codec.decode_into(&enc, &mut dec);
            for (a, b) in pcm.iter().zip(dec.iter()) {
                assert!((*a as i32 - *b as i32).abs() <= 1024, "{codec:?} {a} {b}");
            }
        }
    }

    #[test]
    fn silence_bytes_decode_near_zero() {
        let mut out = [1i16; 1];
        Codec::Pcmu.decode_into(&[Codec::Pcmu.silence_byte()], &mut out);
        assert_eq!(out[0], 0);
        Codec::Pcma.decode_into(&[Codec::Pcma.silence_byte()], &mut out);
        assert_eq!(out[0], 8);
    }

    #[test]
    fn payload_types_round_trip() {
        for c in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(Codec::from_payload_type(c.payload_type()), Some(c));
        }
        assert_eq!(Codec::from_payload_type(101), None);
    }

    #[test]
    fn transcode_matches_linear_path() {
        let mut all: Vec<u8> = (0..=255).collect();
        transcode(Codec::Pcmu, Codec::Pcma, &mut all);
        for (c, &a) in all.iter().enumerate() {
            let lin = ulaw_decode(c as u8) as i32;
            let back = alaw_decode(a) as i32;
            // A-law's coarsest step near full scale is 1024.
            assert!((lin - back).abs() <= 512, "u {c:#04x} -> a {a:#04x}");
        }
        let mut s = [Codec::Pcmu.silence_byte()];
        transcode(Codec::Pcmu, Codec::Pcma, &mut s);
        assert_eq!(s[0], Codec::Pcma.silence_byte());
        transcode(Codec::Pcma, Codec::Pcmu, &mut s);
        // A-law has no zero: its silence is +8, which mu-law codes exactly as 0xFE.
        assert_eq!(s[0], 0xFE);
        let mut same = [0x12u8];
        transcode(Codec::Pcma, Codec::Pcma, &mut same);
        assert_eq!(same[0], 0x12);
    }
}
