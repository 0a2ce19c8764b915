//! Accepting a new INVITE: is it for a number we serve, can we speak its audio, and
//! the dialog that carries the call. What comes out is our own [`InboundLeg`] and the
//! negotiated offer, so the call flow never sees the transaction or the dialog.

use std::net::SocketAddr;

use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{StatusCode, Uri};
use rsipstack::transaction::transaction::Transaction;
use tracing::{debug, info, warn};

use crate::sip::leg::{dialed_of, InboundLeg};
use crate::sip::sdp::{self, Negotiated};
use crate::sip::stack::SipStack;

/// An INVITE we took: the caller's leg for the call flow, and the server transaction
/// that must be driven until it ends.
pub(crate) struct Accepted {
    pub(crate) leg: InboundLeg,
    /// The negotiated SDP offer; `None` for an INVITE without SDP (our offer goes in
    /// the 200, the answer comes in the ACK).
    pub(crate) offer: Option<Negotiated>,
    pub(crate) transaction: InviteTransaction,
}

/// The INVITE server transaction of an accepted call.
pub(crate) struct InviteTransaction {
    dialog: InviteDialog,
    tx: Transaction,
}

impl InviteTransaction {
    /// Drive it to its end: 100 Trying, our 200's retransmissions until the ACK
    /// (RFC 3261 §13.3.1.4), a CANCEL before we answer (§9.2).
    pub(crate) async fn run(mut self) {
        if let Err(e) = self.dialog.handle(&mut self.tx).await {
            debug!("INVITE transaction ended with: {e}");
        }
    }
}

/// Check a new INVITE and create its dialog. A refusal is answered here (404 for a
/// number we do not serve, 488 for audio we cannot speak, 500 when the stack cannot
/// make a dialog) and logged in an operator's words; then `None`.
pub(crate) async fn accept(
    stack: &SipStack,
    numbers: &[String],
    mut tx: Transaction,
) -> Option<Accepted> {
    let dialed = dialed_of(&tx.original);
    if !numbers.contains(&dialed) {
        info!(%dialed, "refusing a call to a number we do not serve");
        reply(&mut tx, StatusCode::NotFound).await;
        return None;
    }
    let body = String::from_utf8_lossy(tx.original.body()).to_string();
    let offer = if body.trim().is_empty() {
        None
    } else {
        match sdp::parse(&body).and_then(|offer| sdp::negotiate(&offer)) {
            Ok(n) => Some(n),
            Err(e) => {
                info!("refusing a call whose audio we cannot speak: {e}");
                reply(&mut tx, StatusCode::NotAcceptableHere).await;
                return None;
            }
        }
    };
    let contact = contact_for(stack.public_addr(), &tx, &dialed);
    let (state_tx, state_rx) = stack.dialogs.new_dialog_state_channel();
    let dialog = match stack
        .dialogs
        .get_or_create_server_invite(&tx, state_tx, None, contact)
    {
        Ok(d) => d,
        Err(e) => {
            warn!("could not create a dialog for the call: {e}");
            reply(&mut tx, StatusCode::ServerInternalError).await;
            return None;
        }
    };
    let leg = InboundLeg::new(
        dialog.clone(),
        state_rx,
        stack.dialogs.clone(),
        &tx.original,
    );
    Some(Accepted {
        leg,
        offer,
        transaction: InviteTransaction { dialog, tx },
    })
}

/// Our Contact for a dialog: the public address, and the transport the call came on.
fn contact_for(addr: SocketAddr, tx: &Transaction, user: &str) -> Option<Uri> {
    let tcp = tx
        .connection
        .as_ref()
        .map(|c| c.is_reliable())
        .unwrap_or(false);
    let host = match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let uri = if tcp {
        format!("sip:{user}@{host};transport=tcp")
    } else {
        format!("sip:{user}@{host}")
    };
    Uri::try_from(uri.as_str()).ok()
}

/// Answer a request with a bare status; a failure to send is only worth a debug line
/// (the client retransmits, or has gone).
pub(crate) async fn reply(tx: &mut Transaction, status: StatusCode) {
    if let Err(e) = tx.reply(status.clone()).await {
        debug!("could not send {status}: {e}");
    }
}
