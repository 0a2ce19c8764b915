//! Media: everything that touches audio and RTP.

pub mod clock;
pub mod codec;
pub mod dtmf;
pub mod prompts;
pub mod rtp;
pub mod session;
