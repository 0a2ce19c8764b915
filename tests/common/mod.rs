//! Shared helpers for the end-to-end tests in `tests/`.
//!
//! Each file in `tests/` is its own crate and pulls this in with `mod common;`,
//! so not every helper is used by every test: hence the `dead_code` allowance.
//!
//! - [`phone`]: a SIP test phone written from scratch (raw SIP text over real
//!   sockets), independent of the daemon's own SIP stack so it is an honest peer.
//! - [`sip`], [`sdp`], [`rtp`], [`g711`]: the small pieces the phone is built from,
//!   public so tests can also use them to build fakes or check what they received.
//! - [`volunteer`]: a volunteer's phone (a UAS) for the forwarding tests.
//! - [`srtp`]: SDES keys in SDP and SRTP packets for both phones.
//! - [`stack`]: the daemon's SIP stack alone, with chosen limits, behind a small UAS.
//! - [`tls`]: test certificates (rcgen) and a rustls client trusting them.
//! - [`netns`]: run a test in a network namespace of its own (several addresses).
// Test crates each use a different part, and the phone re-exports its building blocks.
#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod error;
pub mod g711;
pub mod media;
pub mod netns;
pub mod phone;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod srtp;
pub mod stack;
pub mod tls;
pub mod volunteer;
