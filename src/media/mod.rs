//! Media: everything that touches audio and RTP.

pub mod clock;
pub mod codec;
pub mod dtmf;
pub mod prompts;
pub mod recorder;
pub mod relay;
pub mod rtp;
pub mod session;
pub mod socket;
pub mod srtp;
pub mod tone;
