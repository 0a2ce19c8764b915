//! Media: everything that touches audio and RTP.

use std::time::Duration;

pub mod clock;
pub mod codec;
pub mod dtmf;
pub mod outstream;
pub mod prompts;
pub mod receiver;
pub mod recorder;
pub mod relay;
pub mod rtp;
pub mod rxstats;
pub mod session;
pub mod socket;
pub mod srtp;
pub mod tone;

/// Sample rate of everything on the wire: G.711 and telephone-event (RFC 3551, RFC 4733).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (and G.711 bytes) in one 20 ms RTP frame at 8 kHz (RFC 3551 section 4.5).
pub const FRAME_SAMPLES: usize = 160;
/// The time one frame stands for.
pub const PTIME: Duration = Duration::from_millis(20);
