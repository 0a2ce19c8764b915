//! SIP: our thin layer over rsipstack, so the call flow never depends on its API churn.
//!
//! - [`stack`] builds the endpoint (UDP behind [`guard`], TCP) and the dialog layer.
//! - [`accept`] takes a new INVITE: number, SDP offer, Contact, dialog.
//! - [`leg`] is the caller's leg as the call flow sees it; [`outbound`] a volunteer's,
//!   placed by its `Dialer`; [`in_dialog`] answers what arrives inside either dialog.
//! - [`sdp`] is offer/answer, without I/O.

pub mod accept;
pub mod digest;
pub mod guard;
pub mod in_dialog;
pub mod leg;
pub mod outbound;
pub mod register;
pub mod sdp;
pub mod stack;
