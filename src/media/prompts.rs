//! The menu's recorded prompts, loaded once at start-up.
//!
//! Each WAV is downmixed, resampled to 8 kHz with a band-limited resampler and
//! encoded once per codec, so playing a prompt on a call is a copy of ready
//! 20 ms frames, never a per-call transcode.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::codec::Codec;

pub use super::FRAME_SAMPLES;
/// Prompts are kept at the wire's rate.
pub use super::SAMPLE_RATE as PROMPT_RATE;

/// Why a prompt could not be loaded. Every variant names the file, since the
/// admin fixes these by replacing a recording and the daemon refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file does not exist (a prompt named in the menu was never recorded).
    #[error("prompt file {} is missing", path.display())]
    Missing {
        /// The path looked for.
        path: PathBuf,
    },
    /// The file exists but is not a WAV hound can read (wrong format, truncated, I/O error).
    #[error("prompt file {} is not a readable WAV: {source}", path.display())]
    Unreadable {
        /// The offending file.
        path: PathBuf,
        /// What hound reported.
        #[source]
        source: hound::Error,
    },
    /// A WAV we do not decode (e.g. 12-bit, 64-bit float, zero channels).
    #[error("prompt file {} has an unsupported format: {detail}", path.display())]
    Unsupported {
        /// The offending file.
        path: PathBuf,
        /// Which part of the format is unsupported.
        detail: String,
    },
    /// A WAV without a single sample: playing it would be dead air.
    #[error("prompt file {} contains no audio", path.display())]
    Empty {
        /// The offending file.
        path: PathBuf,
    },
}

/// One prompt, ready to play: 8 kHz mono PCM plus pre-encoded G.711 frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The name the menu refers to it by (file stem).
    pub name: String,
    /// 8 kHz mono linear PCM (kept for in-band mixing and tests).
    pub pcm: Vec<i16>,
    pcmu: Vec<u8>,
    pcma: Vec<u8>,
}

impl Prompt {
    /// Builds a prompt from 8 kHz mono PCM (also for generated tones and tests),
    /// encoding it once per codec and padding the last frame with silence.
    pub fn from_pcm(name: impl Into<String>, pcm: Vec<i16>) -> Prompt {
        let padded = pcm.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES;
        let encode = |codec: Codec| {
            let mut out = vec![codec.silence_byte(); padded];
            codec.encode_into(&pcm, &mut out);
            out
        };
        Prompt {
            name: name.into(),
            pcmu: encode(Codec::Pcmu),
            pcma: encode(Codec::Pcma),
            pcm,
        }
    }

    /// The encoded bytes for `codec`: a whole number of 20 ms frames
    /// (`len % 160 == 0`), so the sender can slice `chunks_exact(160)`.
    pub fn frames(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    /// Number of 20 ms frames, for scheduling the end of playback.
    pub fn frame_count(&self) -> usize {
        self.pcmu.len() / FRAME_SAMPLES
    }

    /// Playing time (whole frames), so the menu knows when to start its timeout.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.frame_count() as u64 * 20)
    }
}

/// Loads one WAV of any common format as an 8 kHz mono [`Prompt`] named after the file stem.
///
/// Accepts 8/16/24/32-bit integer and 32-bit float PCM, any channel count
/// (averaged to mono) and any sample rate (band-limited FFT resampling).
pub fn load_wav(path: &Path) -> Result<Prompt, PromptError> {
    let unreadable = |source: hound::Error| match source {
        hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::NotFound => {
            PromptError::Missing {
                path: path.to_path_buf(),
            }
        }
        hound::Error::Unsupported => PromptError::Unsupported {
            path: path.to_path_buf(),
            detail: "WAV encoding not supported by the reader".into(),
        },
        source => PromptError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    };
    let unsupported = |detail: String| PromptError::Unsupported {
        path: path.to_path_buf(),
        detail,
    };

    let mut reader = hound::WavReader::open(path).map_err(unreadable)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(unsupported("zero channels".into()));
    }
    if spec.sample_rate == 0 {
        return Err(unsupported("sample rate 0".into()));
    }
    // Interleaved samples scaled to -1.0..1.0.
    let interleaved: Vec<f64> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            // hound yields signed values in the file's own range (8-bit is re-centred).
            let scale = 1.0 / 2f64.powi(i32::from(bits) - 1);
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| f64::from(v) * scale))
                .collect::<Result<_, _>>()
                .map_err(unreadable)?
        }
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .map(|s| s.map(f64::from))
            .collect::<Result<_, _>>()
            .map_err(unreadable)?,
        (format, bits) => return Err(unsupported(format!("{bits}-bit {format:?} samples"))),
    };
    let mono: Vec<f64> = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f64>() / channels as f64)
        .collect();
    if mono.is_empty() {
        return Err(PromptError::Empty {
            path: path.to_path_buf(),
        });
    }
    let resampled = if spec.sample_rate == PROMPT_RATE {
        mono
    } else {
        resample(&mono, spec.sample_rate as usize).map_err(unsupported)?
    };
    let pcm = resampled
        .iter()
        .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Prompt::from_pcm(name, pcm))
}

/// Band-limited resampling of a whole mono clip to 8 kHz (rubato's FFT
/// resampler: its anti-aliasing filter keeps a 44.1 kHz recording's top
/// octaves from folding into the telephone band).
fn resample(mono: &[f64], rate_in: usize) -> Result<Vec<f64>, String> {
    let mut resampler = Fft::<f64>::new(rate_in, PROMPT_RATE as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| format!("cannot resample from {rate_in} Hz: {e}"))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| e.to_string())?;
    let out = resampler
        .process_all(&input, mono.len(), None)
        .map_err(|e| format!("resampling from {rate_in} Hz failed: {e}"))?;
    Ok(out.take_data())
}

/// All prompts of a menu, loaded at start-up and shared by every call.
/// Cloning is cheap: prompts are behind `Arc`.
#[derive(Debug, Clone, Default)]
pub struct PromptSet {
    prompts: HashMap<String, Arc<Prompt>>,
}

impl PromptSet {
    /// Loads `<dir>/<name>.wav` for every name, failing on the first bad file
    /// so a broken recording stops the daemon at start rather than mid-call.
    pub fn load(dir: &Path, names: &[&str]) -> Result<PromptSet, PromptError> {
        let mut prompts = HashMap::with_capacity(names.len());
        for &name in names {
            let mut prompt = load_wav(&dir.join(format!("{name}.wav")))?;
            prompt.name = name.to_string();
            prompts.insert(name.to_string(), Arc::new(prompt));
        }
        Ok(PromptSet { prompts })
    }

    /// The prompt called `name`, if it was loaded.
    pub fn get(&self, name: &str) -> Option<Arc<Prompt>> {
        self.prompts.get(name).cloned()
    }

    /// Adds or replaces a prompt (generated tones, tests).
    pub fn insert(&mut self, prompt: Prompt) {
        self.prompts.insert(prompt.name.clone(), Arc::new(prompt));
    }

    /// Number of prompts loaded.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// True when no prompt is loaded.
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::goertzel_power;
    use std::f64::consts::TAU;

    fn sine(rate: u32, freqs: &[f64], secs: f64) -> Vec<f64> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                freqs.iter().map(|f| 0.4 * (TAU * f * t).sin()).sum()
            })
            .collect()
    }

    /// Writes `samples` (-1..1) as a WAV with the given layout, same signal on every channel.
    fn write_wav(path: &Path, rate: u32, bits: u16, float: bool, channels: u16, samples: &[f64]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create test wav");
        for &s in samples {
            for _ in 0..channels {
                match (float, bits) {
                    (true, _) => w.write_sample(s as f32),
                    (false, 8) => w.write_sample((s * 127.0) as i8),
                    (false, 16) => w.write_sample((s * 32767.0) as i16),
                    (false, b) => w.write_sample((s * f64::from((1u32 << (b - 1)) - 1)) as i32),
                }
                .expect("write test sample");
            }
        }
        w.finalize().expect("finalize test wav");
    }

    fn power(pcm: &[i16], freq: f64) -> f64 {
        // Skip the edges, where the resampler's filter rings.
        let mid: Vec<f64> = pcm[400..pcm.len() - 400]
            .iter()
            .map(|&s| f64::from(s))
            .collect();
        goertzel_power(&mid, freq, 8000.0)
    }

    #[test]
    fn loads_every_rate_depth_and_layout_as_8k_1khz() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cases = Vec::new();
        for rate in [8000, 16000, 22050, 44100, 48000] {
            for bits in [8u16, 16] {
                for channels in [1u16, 2] {
                    cases.push((rate, bits, false, channels));
                }
            }
        }
        cases.push((44100, 24, false, 2));
        cases.push((16000, 32, false, 1));
        cases.push((48000, 32, true, 1));
        for (rate, bits, float, channels) in cases {
            let path = dir
                .path()
                .join(format!("p{rate}_{bits}_{float}_{channels}.wav"));
            write_wav(
                &path,
                rate,
                bits,
                float,
                channels,
                &sine(rate, &[1000.0], 1.0),
            );
            let p = load_wav(&path).expect("loads");
            let what = format!("{rate} Hz {bits}-bit float={float} {channels} ch");
            assert!(
                (p.pcm.len() as i64 - 8000).abs() <= 80,
                "{what}: {} samples",
                p.pcm.len()
            );
            let (p1k, p500, p2k) = (
                power(&p.pcm, 1000.0),
                power(&p.pcm, 500.0),
                power(&p.pcm, 2000.0),
            );
            assert!(
                p1k > 1000.0 * p500 && p1k > 1000.0 * p2k,
                "{what}: {p1k} {p500} {p2k}"
            );
            // Amplitude preserved: 0.4 full scale -> mean power ~ (0.4*32768)^2/2.
            let expect = (0.4f64 * 32768.0).powi(2) / 2.0;
            assert!(
                p1k > 0.8 * expect && p1k < 1.2 * expect,
                "{what}: level {p1k}"
            );
            for codec in [Codec::Pcmu, Codec::Pcma] {
                assert_eq!(p.frames(codec).len() % FRAME_SAMPLES, 0);
                assert_eq!(p.frames(codec).len() / FRAME_SAMPLES, p.frame_count());
            }
            assert_eq!(p.frame_count(), 50, "{what}");
            assert_eq!(p.duration(), Duration::from_secs(1));
        }
    }

    #[test]
    fn resampling_is_band_limited() {
        // A 6 kHz tone in a 48 kHz file is above the 4 kHz telephone Nyquist: dropping
        // samples would fold it to 2 kHz; a proper resampler removes it.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alias.wav");
        write_wav(
            &path,
            48000,
            16,
            false,
            1,
            &sine(48000, &[1000.0, 6000.0], 1.0),
        );
        let p = load_wav(&path).expect("loads");
        assert!(power(&p.pcm, 1000.0) > 1000.0 * power(&p.pcm, 2000.0));
    }

    #[test]
    fn last_frame_is_padded_with_silence() {
        let p = Prompt::from_pcm("x", vec![1000; 170]);
        assert_eq!(p.frame_count(), 2);
        assert_eq!(p.duration(), Duration::from_millis(40));
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let f = p.frames(codec);
            assert_eq!(f.len(), 320);
            assert!(f[170..].iter().all(|&b| b == codec.silence_byte()));
            assert!(f[..170].iter().all(|&b| b != codec.silence_byte()));
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = PromptSet::load(dir.path(), &["menu"]).expect_err("missing");
        let path = dir.path().join("menu.wav");
        assert!(matches!(err, PromptError::Missing { .. }));
        assert_eq!(
            err.to_string(),
            format!("prompt file {} is missing", path.display())
        );
    }

    #[test]
    fn non_wav_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("menu.wav");
        std::fs::write(&path, b"this is not a wav file at all").expect("write");
        let err = load_wav(&path).expect_err("not a wav");
        assert!(matches!(err, PromptError::Unreadable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "prompt file {} is not a readable WAV: ",
                path.display()
            )),
            "{msg}"
        );
    }

    #[test]
    fn empty_wav_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.wav");
        write_wav(&path, 8000, 16, false, 1, &[]);
        let err = load_wav(&path).expect_err("empty");
        assert!(matches!(err, PromptError::Empty { .. }));
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn prompt_set_loads_and_shares() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["welcome", "menu"] {
            write_wav(
                &dir.path().join(format!("{name}.wav")),
                16000,
                16,
                false,
                1,
                &sine(16000, &[440.0], 0.5),
            );
        }
        let set = PromptSet::load(dir.path(), &["welcome", "menu"]).expect("loads");
        assert_eq!(set.len(), 2);
        let a = set.get("menu").expect("menu present");
        let b = set.clone().get("menu").expect("menu present");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.name, "menu");
        assert_eq!(a.frame_count(), 25);
        assert!(set.get("goodbye").is_none());
    }
}
