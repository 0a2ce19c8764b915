//! hotline: an IVR and call-routing daemon for small phone hotlines.
//!
//! The folder layout is the architecture:
//! - [`config`]: the admin's `hotline.toml`, validated into plain data; a leaf,
//!   importing nothing from the modules below.
//! - `diag`: errors in the admin's files naming file, line and field, shared by
//!   config and roster.
//! - [`roster`]: the duty roster (who answers which station, when), reloaded on
//!   save without dropping calls.
//! - [`sip`]: our thin layer over `rsipstack` (transports, transactions, dialogs) plus SDP.
//! - [`media`]: codecs, RTP, DTMF detection, prompts and the shared media clock.
//! - [`call`]: the menu state machine and the straight-line call flow.
//! - [`store`]: call records in SQLite or PostgreSQL.
//! - [`selftest`]: `hotline selftest`, a call per station that rings nobody.
//! - [`server`]: wires it all together and owns graceful shutdown; `startup`
//!   writes the summary it logs at start.
//! - [`phone`]: `hotline phone`, a test caller and volunteer phone for admins.
//!
//! The public surface is what the binary (`src/main.rs`) and the tests in
//! `tests/` use: the top-level modules, `admin::status` (the `hotline status`
//! client), `media::{codec, prompts}` (the test phones' G.711 and prompt
//! fingerprints), `sip::{limits, stack, transport::tls}` (the stack-level limit
//! and TLS tests), and the few items those modules re-export. Everything else is
//! `pub(crate)`; `unreachable_pub` keeps it so, and rustc then reports dead code.

#![warn(unreachable_pub)]

pub mod admin;
pub mod call;
pub mod config;
pub(crate) mod diag;
pub mod media;
pub mod phone;
pub mod roster;
pub mod selftest;
pub mod server;
pub mod sip;
pub(crate) mod startup;
pub mod store;
