//! Call-progress tones generated at start-up as ready [`Prompt`]s.
//!
//! A tone is just another prompt: one cadence period of 8 kHz PCM, encoded
//! once per codec, which the shared media clock loops while the hunt rings
//! volunteers. So ringback costs the same per tick as any prompt: a frame copy.

use std::f64::consts::TAU;

use super::prompts::{Prompt, PROMPT_RATE};

/// Peak amplitude of a generated tone: about -13 dBm0 (G.711's 0 dBm0 sine
/// peaks near 22 700 in 16-bit PCM), comfortable and clearly not speech.
pub(crate) const TONE_AMPLITUDE: f64 = 5000.0;
/// Fade in and out over 4 ms, so the tone starts and stops without a click.
const RAMP_SAMPLES: usize = 32;

/// The cadence is configuration, parsed and checked at load.
pub(crate) use crate::config::Cadence;

impl Cadence {
    /// One period of the cadence as a prompt called `name`, for the caller to loop.
    pub fn prompt(&self, name: &str) -> Prompt {
        let mut pcm = Vec::new();
        for (i, &ms) in self.pattern_ms.iter().enumerate() {
            if i % 2 == 0 {
                pcm.extend(tone_pcm(&self.freqs, ms));
            } else {
                pcm.extend(std::iter::repeat_n(0i16, samples(ms)));
            }
        }
        Prompt::from_pcm(name, pcm)
    }
}

fn samples(ms: u32) -> usize {
    (u64::from(ms) * u64::from(PROMPT_RATE) / 1000) as usize
}

/// `ms` of the mixed frequencies at [`TONE_AMPLITUDE`] peak, with short fades.
fn tone_pcm(freqs: &[f64], ms: u32) -> Vec<i16> {
    let n = samples(ms);
    let rate = f64::from(PROMPT_RATE);
    let amp = TONE_AMPLITUDE / freqs.len().max(1) as f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let edge = i.min(n - 1 - i);
            let gain = if edge < RAMP_SAMPLES {
                edge as f64 / RAMP_SAMPLES as f64
            } else {
                1.0
            };
            let v: f64 = freqs.iter().map(|f| (TAU * f * t).sin()).sum();
            (amp * gain * v).round() as i16
        })
        .collect()
}

/// One ringback period (`on_ms` of `freq_hz`, then `off_ms` of silence),
/// named `"ringback"`; loop it while the volunteer's phone rings. Lengths are
/// rounded up to whole 20 ms frames, since prompts play frame by frame.
#[cfg(test)]
pub(crate) fn ringback(freq_hz: f64, on_ms: u32, off_ms: u32) -> Prompt {
    Cadence {
        freqs: vec![freq_hz],
        pattern_ms: vec![on_ms.max(1), off_ms],
    }
    .prompt("ringback")
}

/// A single beep of `ms` (e.g. before voicemail recording starts), named `"beep"`.
#[cfg(test)]
pub(crate) fn beep(freq_hz: f64, ms: u32) -> Prompt {
    Prompt::from_pcm("beep", tone_pcm(&[freq_hz], ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Codec;
    use crate::media::dtmf::goertzel_power;
    use std::time::Duration;

    fn power(pcm: &[i16], freq: f64) -> f64 {
        let x: Vec<f64> = pcm.iter().map(|&s| f64::from(s)).collect();
        goertzel_power(&x, freq, 8000.0)
    }

    #[test]
    fn ringback_has_the_frequency_and_cadence() {
        let p = ringback(450.0, 1000, 4000);
        assert_eq!(p.name, "ringback");
        assert_eq!(p.duration(), Duration::from_secs(5));
        assert_eq!(p.pcm.len(), 40_000);
        let on = &p.pcm[..8000];
        let (p450, p400, p500, p1k) = (
            power(on, 450.0),
            power(on, 400.0),
            power(on, 500.0),
            power(on, 1000.0),
        );
        assert!(p450 > 100.0 * p400 && p450 > 100.0 * p500 && p450 > 1000.0 * p1k);
        // Mean power of a sine of peak 5000 is 5000^2 / 2 (less a little for the fades).
        let expect = TONE_AMPLITUDE * TONE_AMPLITUDE / 2.0;
        assert!(p450 > 0.95 * expect && p450 < 1.05 * expect, "{p450}");
        assert!(p.pcm[8000..].iter().all(|&s| s == 0), "off part is silent");
        let peak = on.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((4900..=5000).contains(&peak), "{peak}");
        // Fades: no click at the edges.
        assert!(on[0] == 0 && on[7999].abs() < 200);
        for codec in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(p.frames(codec).len(), 40_000);
        }
    }

    #[test]
    fn odd_lengths_round_up_to_frames() {
        let p = ringback(425.0, 1010, 0);
        assert_eq!(p.frame_count(), 51);
        let b = beep(1000.0, 250);
        assert_eq!(b.name, "beep");
        assert_eq!(b.frame_count(), 13);
        assert_eq!(b.pcm.len(), 2000);
        assert!(power(&b.pcm, 1000.0) > 1000.0 * power(&b.pcm, 1400.0));
    }

    #[test]
    fn a_cadence_prompt_is_one_period() {
        // Parsing is the config's (config::tests::parses_cadences).
        let uk = " 400+450 @ 400/200/400/2000 "
            .parse::<Cadence>()
            .expect("valid");
        assert_eq!(uk.prompt("rb").duration(), Duration::from_millis(3000));
    }

    #[test]
    fn dual_tone_has_both_frequencies_and_same_peak() {
        let c = "440+480@2000/4000".parse::<Cadence>().expect("valid");
        let p = c.prompt("na");
        let on = &p.pcm[..16_000];
        let (a, b, between) = (power(on, 440.0), power(on, 480.0), power(on, 460.0));
        assert!(a > 100.0 * between && b > 100.0 * between);
        let peak = on.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak <= 5000);
    }
}
