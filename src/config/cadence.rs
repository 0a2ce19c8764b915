//! The ringback cadence's syntax, `"FREQ[+FREQ]@ON/OFF[/ON/OFF...]"`, checked
//! at load so a bad tone is a config error naming its line.

use std::fmt;
use std::str::FromStr;

/// A call-progress tone's frequencies and on/off rhythm, as the admin writes
/// it: `"425@1000/4000"` (Europe), `"440+480@2000/4000"` (North America),
/// `"400+450@400/200/400/2000"` (UK double ring). Only the numbers: the media
/// layer makes the sound (`Cadence::prompt` in `media::tone`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cadence {
    /// One or two frequencies in Hz, mixed.
    pub freqs: Vec<f64>,
    /// Alternating on and off durations in ms, starting with on (an even count).
    pub pattern_ms: Vec<u32>,
}

/// Parsing admits only finite frequencies, so equality is total.
impl Eq for Cadence {}

/// Why a cadence string was refused; the message shows the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tone cadence {input:?}: {reason} (expected e.g. \"425@1000/4000\" or \"440+480@2000/4000\")")]
pub struct CadenceError {
    /// The text as written.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for Cadence {
    type Err = CadenceError;

    /// Parses a cadence such as `"450@1000/4000"`.
    fn from_str(s: &str) -> Result<Cadence, CadenceError> {
        let err = |reason| CadenceError {
            input: s.to_string(),
            reason,
        };
        let (freqs, pattern) = s.trim().split_once('@').ok_or(err("missing '@'"))?;
        let freqs = freqs
            .split('+')
            .map(|f| f.trim().parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| err("frequency is not a number"))?;
        if freqs.is_empty() || freqs.len() > 2 {
            return Err(err("give one or two frequencies"));
        }
        // Below the telephone band's Nyquist frequency (4 kHz), and audible.
        if freqs.iter().any(|f| !(20.0..3900.0).contains(f)) {
            return Err(err("frequency must be between 20 and 3900 Hz"));
        }
        let pattern_ms = pattern
            .split('/')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| err("durations must be whole milliseconds"))?;
        if pattern_ms.len() % 2 != 0 {
            return Err(err("durations come in on/off pairs"));
        }
        if pattern_ms.iter().step_by(2).any(|&on| on == 0) {
            return Err(err("an 'on' duration is 0"));
        }
        if pattern_ms.iter().map(|&d| u64::from(d)).sum::<u64>() > 60_000 {
            return Err(err("one period is longer than 60 s"));
        }
        Ok(Cadence { freqs, pattern_ms })
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let freqs: Vec<String> = self.freqs.iter().map(|x| x.to_string()).collect();
        let pattern: Vec<String> = self.pattern_ms.iter().map(|x| x.to_string()).collect();
        write!(f, "{}@{}", freqs.join("+"), pattern.join("/"))
    }
}
