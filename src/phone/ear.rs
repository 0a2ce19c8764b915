//! The test phone's ear, without I/O: what a stream of received 20 ms G.711 frames
//! was, in words an admin reads (a prompt by name, ringback, a tone and its
//! frequency, silence, other sound).
//!
//! Prompts are recognised exactly. The daemon plays a prompt by copying the frames
//! it encoded once at start-up ([`Prompt::frames`]), so a received payload is,
//! byte for byte, frame `i` of some prompt encoded in the call's codec. The
//! [`PromptBook`] indexes every frame of every prompt WAV the phone loaded (through
//! the same loader, resampler and encoder the daemon uses); a run of a prompt goes
//! on while each next payload is the prompt's frame at the index the RTP timestamp
//! says it should be. A frame several prompts share (digital silence, most often)
//! continues a run but never starts one. A prompt played twice shows twice, since
//! the second playing starts again at frame 0. No fuzzy matching is needed, and a
//! prompt cut short by a key press still counts.
//!
//! Everything else is measured: RMS level (silence below [`SILENCE_RMS`]), and a
//! tone by zero crossings, checked with a Goertzel filter at that frequency
//! (most of the frame's power at one frequency). A tone at the configured
//! ringback frequency is ringback.

use std::collections::HashMap;

use crate::media::codec::Codec;
use crate::media::dtmf::goertzel_power;
use crate::media::prompts::Prompt;
use crate::media::{FRAME_SAMPLES, SAMPLE_RATE};

/// RMS (16-bit PCM) below which a frame is silence: about -50 dBFS.
pub(crate) const SILENCE_RMS: f64 = 100.0;
/// Share of a frame's power that must sit at one frequency for it to be a tone.
const TONE_PURITY: f64 = 0.6;
/// Tones within this many Hz of each other are the same tone.
const SAME_TONE_HZ: f64 = 25.0;
/// Non-prompt segments shorter than this many frames are transitions, not worth a line.
const MIN_FRAMES: usize = 3;
/// Silences shorter than this (ms) are pauses between prompts, not reported.
const MIN_SILENCE_MS: u64 = 1000;
/// Ringback bursts this close (ms of silence between) are one ringback.
const RINGBACK_GAP_MS: u64 = 6000;

/// One prompt frame's possible places: (prompt, frame index).
#[derive(Debug, Default)]
struct Entry {
    places: Vec<(usize, usize)>,
    /// Whether more than one prompt holds these bytes (e.g. digital silence).
    shared: bool,
}

/// Every frame of every loaded prompt, by its encoded bytes, per codec.
#[derive(Debug, Default)]
pub(crate) struct PromptBook {
    names: Vec<String>,
    pcmu: HashMap<Vec<u8>, Entry>,
    pcma: HashMap<Vec<u8>, Entry>,
}

impl PromptBook {
    /// Index `prompts` (each encoded as the daemon encodes it).
    pub(crate) fn new(prompts: &[Prompt]) -> PromptBook {
        let mut book = PromptBook::default();
        for (p, prompt) in prompts.iter().enumerate() {
            book.names.push(prompt.name.clone());
            for codec in [Codec::Pcmu, Codec::Pcma] {
                let map = match codec {
                    Codec::Pcmu => &mut book.pcmu,
                    Codec::Pcma => &mut book.pcma,
                };
                for (i, frame) in prompt.frames(codec).chunks_exact(FRAME_SAMPLES).enumerate() {
                    let e = map.entry(frame.to_vec()).or_default();
                    if e.places.iter().any(|&(q, _)| q != p) {
                        e.shared = true;
                    }
                    e.places.push((p, i));
                }
            }
        }
        book
    }

    fn lookup(&self, codec: Codec, payload: &[u8]) -> Option<&Entry> {
        match codec {
            Codec::Pcmu => self.pcmu.get(payload),
            Codec::Pcma => self.pcma.get(payload),
        }
    }
}

/// What one stretch of the call sounded like.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A prompt, by file name.
    Prompt(String),
    /// Ringback tone at this frequency, in `bursts` bursts.
    Ringback { hz: u32, bursts: u32 },
    /// A steady tone (Hz, rounded to 10).
    Tone(u32),
    /// Sound that is neither a prompt nor a single tone (speech, music, noise).
    Sound,
    /// Silence (or comfort noise below [`SILENCE_RMS`]).
    Silence,
    /// A key we pressed.
    Pressed(char),
}

/// A stretch of the call, in ms since the call was answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    pub kind: Kind,
    pub start_ms: u64,
    pub end_ms: u64,
    frames: usize,
    /// Sum of per-frame tone frequencies, for the mean.
    hz_sum: f64,
}

/// One received frame, classified.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Frame {
    Prompt(usize),
    Tone(f64),
    Sound,
    Silence,
}

/// The prompt run in progress: which prompt, at which frame, at what timestamp.
#[derive(Debug, Clone, Copy)]
struct Run {
    prompt: usize,
    index: usize,
    ts: u32,
    ssrc: u32,
}

/// Listens to one call: feed it frames with [`Ear::frame`], read it with [`Ear::finish`].
#[derive(Debug)]
pub(crate) struct Ear {
    book: PromptBook,
    ringback_hz: Vec<f64>,
    run: Option<Run>,
    segments: Vec<Segment>,
    keys: Vec<(u64, char)>,
    /// Whether the last frame continued a run (so a new run starts a new segment).
    new_run: bool,
}

impl Ear {
    /// An ear that knows `book`'s prompts, and ringback at `ringback_hz` (one tone).
    pub(crate) fn new(book: PromptBook, ringback_hz: Vec<f64>) -> Ear {
        Ear {
            book,
            ringback_hz,
            run: None,
            segments: Vec::new(),
            keys: Vec::new(),
            new_run: false,
        }
    }

    /// One received RTP packet, `at_ms` after the answer. Payloads other than PCMU
    /// and PCMA (telephone-events, comfort noise) are ignored.
    pub(crate) fn frame(&mut self, at_ms: u64, pt: u8, ts: u32, ssrc: u32, payload: &[u8]) {
        let Some(codec) = Codec::from_payload_type(pt) else {
            return;
        };
        let frame = self.classify(codec, ts, ssrc, payload);
        self.push(at_ms, frame);
    }

    /// We pressed `key`, `at_ms` after the answer.
    pub(crate) fn pressed(&mut self, at_ms: u64, key: char) {
        self.keys.push((at_ms, key));
    }

    /// The names of the prompts heard so far, in order (a prompt played twice twice).
    pub(crate) fn prompts_so_far(&self) -> Vec<&str> {
        self.segments
            .iter()
            .filter_map(|s| match &s.kind {
                Kind::Prompt(p) => Some(p.as_str()),
                _ => None,
            })
            .collect()
    }

    fn classify(&mut self, codec: Codec, ts: u32, ssrc: u32, payload: &[u8]) -> Frame {
        self.new_run = false;
        if let Some(e) = self.book.lookup(codec, payload) {
            if let Some(run) = self.run.filter(|r| r.ssrc == ssrc) {
                let step = ts.wrapping_sub(run.ts) as usize / FRAME_SAMPLES;
                let want = (run.prompt, run.index + step);
                if step > 0 && e.places.contains(&want) {
                    self.run = Some(Run {
                        index: want.1,
                        ts,
                        ..run
                    });
                    return Frame::Prompt(run.prompt);
                }
            }
            if !e.shared {
                if let Some(&(prompt, index)) = e.places.first() {
                    self.run = Some(Run {
                        prompt,
                        index,
                        ts,
                        ssrc,
                    });
                    self.new_run = true;
                    return Frame::Prompt(prompt);
                }
            }
        }
        self.run = None;
        let mut pcm = [0i16; FRAME_SAMPLES];
        let n = payload.len().min(FRAME_SAMPLES);
        codec.decode_into(&payload[..n], &mut pcm[..n]);
        measure(&pcm[..n])
    }

    fn push(&mut self, at_ms: u64, frame: Frame) {
        let kind = match frame {
            Frame::Prompt(p) => Kind::Prompt(self.book.names[p].clone()),
            Frame::Tone(hz) => Kind::Tone(hz.round() as u32),
            Frame::Sound => Kind::Sound,
            Frame::Silence => Kind::Silence,
        };
        let hz = match frame {
            Frame::Tone(hz) => hz,
            _ => 0.0,
        };
        let new_run = self.new_run;
        if let Some(last) = self.segments.last_mut() {
            let same = match (&last.kind, &kind) {
                (Kind::Prompt(a), Kind::Prompt(b)) => a == b && !new_run,
                (Kind::Tone(_), Kind::Tone(_)) => {
                    (last.hz_sum / last.frames as f64 - hz).abs() <= SAME_TONE_HZ
                }
                (a, b) => a == b,
            };
            if same {
                last.frames += 1;
                last.hz_sum += hz;
                last.end_ms = at_ms + 20;
                return;
            }
        }
        self.segments.push(Segment {
            kind,
            start_ms: at_ms,
            end_ms: at_ms + 20,
            frames: 1,
            hz_sum: hz,
        });
    }

    /// The call as heard, in order, with our key presses in their places: short
    /// transitions and pauses dropped, tones at their mean frequency, ringback bursts
    /// made one ringback.
    pub(crate) fn finish(&self) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        for s in &self.segments {
            let mut s = s.clone();
            let keep = match s.kind {
                Kind::Prompt(_) => true,
                Kind::Silence => s.end_ms - s.start_ms >= MIN_SILENCE_MS,
                _ => s.frames >= MIN_FRAMES,
            };
            if !keep {
                continue;
            }
            if let Kind::Tone(_) = s.kind {
                let hz = s.hz_sum / s.frames as f64;
                s.kind = if self
                    .ringback_hz
                    .iter()
                    .any(|r| (r - hz).abs() <= SAME_TONE_HZ)
                {
                    Kind::Ringback {
                        hz: round10(hz),
                        bursts: 1,
                    }
                } else {
                    Kind::Tone(round10(hz))
                };
            }
            merge_into(&mut out, s);
        }
        for &(at, key) in &self.keys {
            let seg = Segment {
                kind: Kind::Pressed(key),
                start_ms: at,
                end_ms: at,
                frames: 0,
                hz_sum: 0.0,
            };
            let pos = out.partition_point(|s| s.start_ms <= at);
            out.insert(pos, seg);
        }
        out
    }
}

/// Append `s`, joining it to the last segment when they are one thing: the same
/// tone or sound once a dropped transition is gone, ringback bursts with the
/// silences between them.
fn merge_into(out: &mut Vec<Segment>, s: Segment) {
    if let Kind::Ringback { hz, .. } = s.kind {
        // Ringback, silence, ringback: one ringback with one more burst.
        let n = out.len();
        let back = match out.last().map(|l| &l.kind) {
            Some(Kind::Silence) if n >= 2 => 2,
            _ => 1,
        };
        if let Some(prev) = n.checked_sub(back).map(|i| &out[i]) {
            if let Kind::Ringback { hz: h, bursts } = prev.kind {
                if h == hz && s.start_ms.saturating_sub(prev.end_ms) <= RINGBACK_GAP_MS {
                    out.truncate(n - back + 1);
                    if let Some(p) = out.last_mut() {
                        p.kind = Kind::Ringback {
                            hz,
                            bursts: bursts + 1,
                        };
                        p.end_ms = s.end_ms;
                    }
                    return;
                }
            }
        }
    }
    if let Some(last) = out.last_mut() {
        let same = match (&last.kind, &s.kind) {
            (Kind::Tone(a), Kind::Tone(b)) => a.abs_diff(*b) <= SAME_TONE_HZ as u32,
            (Kind::Sound, Kind::Sound) | (Kind::Silence, Kind::Silence) => true,
            _ => false,
        };
        if same {
            last.end_ms = s.end_ms;
            last.frames += s.frames;
            return;
        }
    }
    out.push(s);
}

fn round10(hz: f64) -> u32 {
    ((hz / 10.0).round() * 10.0) as u32
}

/// Root mean square of 16-bit PCM.
pub(crate) fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / pcm.len() as f64).sqrt()
}

/// A level in dB below full scale, for logs.
pub(crate) fn dbfs(rms: f64) -> f64 {
    20.0 * (rms.max(1.0) / 32768.0).log10()
}

/// Silence, a single tone (its frequency), or other sound.
fn measure(pcm: &[i16]) -> Frame {
    let level = rms(pcm);
    if level < SILENCE_RMS {
        return Frame::Silence;
    }
    match tone_hz(pcm, level) {
        Some(hz) => Frame::Tone(hz),
        None => Frame::Sound,
    }
}

/// The frequency of a frame that is one steady tone, else None. Zero crossings,
/// placed between samples by linear interpolation, give the frequency; a Goertzel
/// filter at it must then hold most of the frame's power.
fn tone_hz(pcm: &[i16], level: f64) -> Option<f64> {
    let mut first = None;
    let mut last = 0.0;
    let mut crossings = 0u32;
    for (i, w) in pcm.windows(2).enumerate() {
        let (a, b) = (f64::from(w[0]), f64::from(w[1]));
        if (a < 0.0) != (b < 0.0) {
            let t = i as f64 + a / (a - b);
            first.get_or_insert(t);
            last = t;
            crossings += 1;
        }
    }
    let first = first?;
    if crossings < 3 || last <= first {
        return None;
    }
    let hz = f64::from(crossings - 1) / 2.0 / ((last - first) / f64::from(SAMPLE_RATE));
    let block: Vec<f64> = pcm.iter().map(|&s| f64::from(s)).collect();
    let purity = goertzel_power(&block, hz, f64::from(SAMPLE_RATE)) / (level * level);
    (purity >= TONE_PURITY).then_some(hz)
}

/// What a second of the caller's audio was, for the volunteer phone's log.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    frames: usize,
    sum_sq: f64,
    samples: usize,
    silent: usize,
    tones: Vec<f64>,
}

impl Meter {
    /// One received G.711 frame (other payload types ignored).
    pub(crate) fn frame(&mut self, pt: u8, payload: &[u8]) {
        let Some(codec) = Codec::from_payload_type(pt) else {
            return;
        };
        let mut pcm = [0i16; FRAME_SAMPLES];
        let n = payload.len().min(FRAME_SAMPLES);
        codec.decode_into(&payload[..n], &mut pcm[..n]);
        let pcm = &pcm[..n];
        self.frames += 1;
        self.samples += n;
        self.sum_sq += pcm
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>();
        match measure(pcm) {
            Frame::Silence => self.silent += 1,
            Frame::Tone(hz) => self.tones.push(hz),
            _ => {}
        }
    }

    /// The words for what came since the last call, and start again.
    pub(crate) fn take(&mut self) -> String {
        let m = std::mem::take(self);
        if m.frames == 0 {
            return "nothing received".into();
        }
        let level = dbfs((m.sum_sq / m.samples.max(1) as f64).sqrt());
        if m.silent * 10 >= m.frames * 9 {
            return "silence".into();
        }
        if m.tones.len() * 10 >= m.frames * 6 {
            let hz = m.tones.iter().sum::<f64>() / m.tones.len() as f64;
            return format!("a tone of {} Hz at {level:.0} dBFS", round10(hz));
        }
        format!("sound at {level:.0} dBFS (speech, music or noise)")
    }
}

/// The report of a call, one line per segment: time since the answer, then what.
pub(crate) fn format_timeline(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        let len = (s.end_ms - s.start_ms) as f64 / 1000.0;
        let what = match &s.kind {
            Kind::Prompt(p) => format!("prompt {p} ({len:.1} s)"),
            Kind::Ringback { hz, bursts } => {
                let b = if *bursts == 1 { "burst" } else { "bursts" };
                format!("ringback {hz} Hz ({bursts} {b}, {len:.1} s)")
            }
            Kind::Tone(hz) => format!("tone {hz} Hz ({len:.1} s)"),
            Kind::Sound => format!("sound, not a prompt or a tone ({len:.1} s)"),
            Kind::Silence => format!("silence ({len:.1} s)"),
            Kind::Pressed(k) => format!("pressed key {k}"),
        };
        out.push_str(&format!("{:>7.1} s  {what}\n", s.start_ms as f64 / 1000.0));
    }
    out
}

#[cfg(test)]
mod tests;
