//! Voicemail: the caller's audio collected in memory, then written as a WAV.
//!
//! The core ([`Recorder::push_rtp_payload`]) only decodes G.711 into a buffer
//! with a hard cap, so a caller who never hangs up cannot fill the disk or the
//! memory. Writing the file is one call at the end, off the media path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::codec::Codec;
use super::prompts::PROMPT_RATE;

/// Longest call-id part of a voicemail file name; the rest is cut off.
const MAX_ID_CHARS: usize = 64;

/// Why a voicemail could not be saved; each variant names the path, since the
/// admin fixes these (permissions, full disk) on that folder.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecorderError {
    /// The day's folder could not be created.
    #[error("cannot create voicemail folder {}: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Writing or finishing the WAV failed.
    #[error("cannot write voicemail {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What hound reported.
        #[source]
        source: hound::Error,
    },
    /// The finished file could not be moved into place.
    #[error("cannot move voicemail into place at {}: {source}", path.display())]
    Rename {
        /// The final file name.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// One voicemail being recorded: 8 kHz mono PCM, at most `max` long.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    pcm: Vec<i16>,
    max_samples: usize,
}

impl Recorder {
    /// A recorder that keeps at most `max` of audio (the admin's voicemail limit).
    pub(crate) fn new(max: Duration) -> Self {
        let max_samples =
            usize::try_from(max.as_millis() * u128::from(PROMPT_RATE) / 1000).unwrap_or(usize::MAX);
        Recorder {
            // Room for a minute up front; longer messages grow the buffer.
            pcm: Vec::with_capacity(max_samples.min(60 * PROMPT_RATE as usize)),
            max_samples,
        }
    }

    /// Decodes one G.711 RTP payload and appends it. Returns `false` once the
    /// maximum length is reached (the rest of this payload is discarded), so
    /// the call flow can play a goodbye and hang up.
    pub(crate) fn push_rtp_payload(&mut self, codec: Codec, payload: &[u8]) -> bool {
        let room = self.max_samples.saturating_sub(self.pcm.len());
        let take = payload.len().min(room);
        let start = self.pcm.len();
        self.pcm.resize(start + take, 0);
        codec.decode_into(&payload[..take], &mut self.pcm[start..]);
        self.pcm.len() < self.max_samples
    }

    /// How much audio has been recorded.
    pub(crate) fn duration(&self) -> Duration {
        Duration::from_micros(self.pcm.len() as u64 * 1_000_000 / u64::from(PROMPT_RATE))
    }

    /// True once the maximum length is reached.
    pub(crate) fn is_full(&self) -> bool {
        self.pcm.len() >= self.max_samples
    }

    /// The recorded audio, 8 kHz mono.
    #[cfg(test)]
    pub(crate) fn samples(&self) -> &[i16] {
        &self.pcm
    }

    /// Writes the recording as an 8 kHz mono 16-bit WAV at `path`, creating
    /// its folder. The file is written under a `.part` name and renamed at the
    /// end, so whoever collects voicemails never picks up half a file.
    pub(crate) fn write_wav(&self, path: &Path) -> Result<(), RecorderError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| RecorderError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let write_err = |source| RecorderError::Write {
            path: path.to_path_buf(),
            source,
        };
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: PROMPT_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let result = (|| {
            let mut w = hound::WavWriter::create(&part, spec)?;
            for &s in &self.pcm {
                w.write_sample(s)?;
            }
            w.finalize()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&part);
            return Err(write_err(e));
        }
        std::fs::rename(&part, path).map_err(|source| {
            let _ = std::fs::remove_file(&part);
            RecorderError::Rename {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// Where a voicemail goes: `<dir>/<YYYY-MM-DD>/<HHMMSS>_<call-id>.wav`, one
/// folder per day (UTC) so a coordinator can find and clear them by date.
///
/// The Call-ID comes from the network, so it is reduced to `[A-Za-z0-9._-]`
/// (anything else becomes `_`) and cut to 64 characters: it can never name
/// another folder or escape `dir`.
pub(crate) fn voicemail_path(dir: &Path, call_id: &str, at: DateTime<Utc>) -> PathBuf {
    let mut id: String = call_id
        .chars()
        .take(MAX_ID_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        id.push_str("no-call-id");
    }
    dir.join(at.format("%Y-%m-%d").to_string())
        .join(format!("{}_{id}.wav", at.format("%H%M%S")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::Component;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 21, 5, 9)
            .single()
            .expect("valid date")
    }

    #[test]
    fn writes_a_readable_wav_of_the_recorded_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Recorder::new(Duration::from_secs(60));
        let pcm: Vec<i16> = (0..160).map(|i| (i * 100 - 8000) as i16).collect();
        let mut frame = [0u8; 160];
        for (i, codec) in [Codec::Pcmu, Codec::Pcma]
            .iter()
            .cycle()
            .take(100)
            .enumerate()
        {
            codec.encode_into(&pcm, &mut frame);
            assert!(r.push_rtp_payload(*codec, &frame), "frame {i}");
        }
        assert_eq!(r.duration(), Duration::from_secs(2));
        let path = voicemail_path(dir.path(), "abc@host", at());
        r.write_wav(&path).expect("written");
        assert!(!path.with_extension("wav.part").exists());

        let mut reader = hound::WavReader::open(&path).expect("readable");
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8000, 16)
        );
        assert_eq!(reader.duration(), 16_000);
        let back: Vec<i16> = reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .expect("samples");
        assert_eq!(back, r.samples());
        for (a, b) in pcm.iter().zip(&back[160..320]) {
            assert!((i32::from(*a) - i32::from(*b)).abs() <= 256, "{a} {b}");
        }
    }

    #[test]
    fn stops_at_the_maximum() {
        let mut r = Recorder::new(Duration::from_millis(50)); // 400 samples
        assert!(r.push_rtp_payload(Codec::Pcmu, &[0xFF; 160]));
        assert!(r.push_rtp_payload(Codec::Pcmu, &[0xFF; 160]));
        assert!(!r.push_rtp_payload(Codec::Pcmu, &[0xFF; 160]));
        assert!(r.is_full());
        assert!(!r.push_rtp_payload(Codec::Pcmu, &[0xFF; 160]));
        assert_eq!(r.samples().len(), 400);
        assert_eq!(r.duration(), Duration::from_millis(50));
        // An empty payload is harmless.
        let mut e = Recorder::new(Duration::from_secs(1));
        assert!(e.push_rtp_payload(Codec::Pcma, &[]));
        assert_eq!(e.duration(), Duration::ZERO);
    }

    #[test]
    fn empty_recording_is_still_a_valid_wav() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/empty.wav");
        Recorder::new(Duration::from_secs(1))
            .write_wav(&path)
            .expect("written");
        let reader = hound::WavReader::open(&path).expect("readable");
        assert_eq!(reader.duration(), 0);
    }

    #[test]
    fn write_error_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").expect("write");
        let path = blocker.join("day/vm.wav");
        let err = Recorder::new(Duration::from_secs(1))
            .write_wav(&path)
            .expect_err("parent is a file");
        assert!(matches!(err, RecorderError::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains(&blocker.display().to_string()));
    }

    #[test]
    fn path_is_dated_and_named_by_time_and_call_id() {
        let p = voicemail_path(
            Path::new("/var/vm"),
            "a84b4c76e66710@pc33.example.com",
            at(),
        );
        assert_eq!(
            p,
            PathBuf::from("/var/vm/2026-11-28/210509_a84b4c76e66710_pc33.example.com.wav")
        );
    }

    #[test]
    fn hostile_call_ids_cannot_escape_the_folder() {
        let base = Path::new("/var/vm");
        for id in [
            "../../etc/passwd",
            "..",
            "/abs/path",
            "a\\..\\b",
            "x\0y",
            "nl\r\nz",
            "ünïcödé",
            "",
            &"a".repeat(500),
        ] {
            let p = voicemail_path(base, id, at());
            let rest = p.strip_prefix(base).expect("stays under dir");
            let parts: Vec<Component> = rest.components().collect();
            assert_eq!(parts.len(), 2, "{id:?} -> {p:?}");
            assert!(parts.iter().all(|c| matches!(c, Component::Normal(_))));
            let name = p.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
            assert!(name.starts_with("210509_") && name.ends_with(".wav"));
            assert!(name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
            assert!(name.len() <= 7 + MAX_ID_CHARS + 4);
        }
        assert_eq!(
            voicemail_path(base, "../../etc/passwd", at()),
            PathBuf::from("/var/vm/2026-11-28/210509_.._.._etc_passwd.wav")
        );
    }
}
