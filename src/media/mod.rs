//! Media: everything that touches audio and RTP.

use std::time::Duration;

pub(crate) mod clock;
pub mod codec;
pub(crate) mod dtmf;
pub(crate) mod outstream;
pub mod prompts;
pub(crate) mod receiver;
pub(crate) mod recorder;
pub(crate) mod relay;
pub(crate) mod rtcp;
pub(crate) mod rtp;
pub(crate) mod rxstats;
pub(crate) mod session;
pub(crate) mod socket;
pub(crate) mod srtp;
pub(crate) mod tone;

/// Sample rate of everything on the wire: G.711 and telephone-event (RFC 3551, RFC 4733).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (and G.711 bytes) in one 20 ms RTP frame at 8 kHz (RFC 3551 section 4.5).
pub const FRAME_SAMPLES: usize = 160;
/// The time one frame stands for.
pub const PTIME: Duration = Duration::from_millis(20);
