//! SIP: our thin layer over rsipstack, so the call flow never depends on its API churn.
//!
//! - [`stack`] builds the endpoint (UDP behind [`guard`], TCP and TLS through our own
//!   [`transport`]) and the dialog layer.
//! - [`limits`] are the settings that keep the port usable on the internet (caps,
//!   timers, scanners, flood ban, `allow`, `max_calls`); `policy` applies them to
//!   every message, with `pike` (the flood ban) and `ratelog` (log once a minute).
//! - [`accept`] takes a new INVITE: number, SDP offer, a call slot, Contact, dialog.
//! - [`leg`] is the caller's leg as the call flow sees it; [`outbound`] a volunteer's,
//!   placed by its `Dialer`; [`in_dialog`] answers what arrives inside either dialog.
//! - [`sdp`] is offer/answer, without I/O.

pub(crate) mod accept;
pub(crate) mod digest;
#[cfg(test)]
pub(crate) mod fuzz;
pub(crate) mod guard;
pub(crate) mod in_dialog;
pub(crate) mod leg;
pub mod limits;
pub(crate) mod outbound;
pub(crate) mod pike;
pub(crate) mod policy;
pub(crate) mod ratelog;
pub(crate) mod register;
pub(crate) mod sdp;
pub mod stack;
pub(crate) mod traffic;
pub mod transport;
