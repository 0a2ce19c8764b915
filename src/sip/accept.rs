//! Accepting a new INVITE: is it for a number we serve, can we speak its audio, and
//! the dialog that carries the call. What comes out is our own [`InboundLeg`] and the
//! negotiated offer, so the call flow never sees the transaction or the dialog.

use std::net::IpAddr;

use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Request, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::SipConnection;
use tracing::{debug, info, warn};

use crate::selftest::{self, Verdict};
use crate::sip::leg::{dialed_of, InboundLeg};
use crate::sip::sdp::{self, Negotiated};
use crate::sip::stack::{CallClaim, SipStack};

/// An INVITE we took: the caller's leg for the call flow, and the server transaction
/// that must be driven until it ends.
pub(crate) struct Accepted {
    pub(crate) leg: InboundLeg,
    /// The negotiated SDP offer; `None` for an INVITE without SDP (our offer goes in
    /// the 200, the answer comes in the ACK).
    pub(crate) offer: Option<Negotiated>,
    pub(crate) transaction: InviteTransaction,
    /// The call's slot under `max_calls` (and its TCP/TLS connection held open):
    /// keep it until the call ends.
    pub(crate) claim: CallClaim,
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
/// number we do not serve, 488 for audio we cannot speak or SRTP keys sent in the
/// clear, 503 with Retry-After beyond `max_calls`, 500 when the stack cannot make a
/// dialog) and logged in an operator's words; then `None`. `sdes_over_plain` is
/// `[sip] sdes_over_plain`: SDES keys may come over plain UDP/TCP.
pub(crate) async fn accept(
    stack: &SipStack,
    numbers: &[String],
    sdes_over_plain: bool,
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
            Ok(n)
                if n.srtp.is_some()
                    && !sdes_over_plain
                    && !SipStack::is_tls(tx.connection.as_ref()) =>
            {
                info!(
                    "refusing a call that offers SRTP with its keys over plain SIP \
                     (anyone on the path can read them; call over TLS, or set \
                     [sip] sdes_over_plain = true)"
                );
                reply(&mut tx, StatusCode::NotAcceptableHere).await;
                return None;
            }
            Ok(n) => Some(n),
            Err(e) => {
                info!("refusing a call whose audio we cannot speak: {e}");
                reply(&mut tx, StatusCode::NotAcceptableHere).await;
                return None;
            }
        }
    };
    let Some(claim) = stack.claim_call(&tx) else {
        // Beyond max_calls (logged by the stack): 503, try again later.
        let retry = vec![stack.retry_after()];
        if let Err(e) = tx
            .reply_with(StatusCode::ServiceUnavailable, retry, None)
            .await
        {
            debug!("could not send 503: {e}");
        }
        return None;
    };
    let contact = stack.contact_for(tx.connection.as_ref(), &dialed);
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
        claim,
    })
}

/// Answer a request with a bare status; a failure to send is only worth a debug line
/// (the client retransmits, or has gone).
pub(crate) async fn reply(tx: &mut Transaction, status: StatusCode) {
    if let Err(e) = tx.reply(status.clone()).await {
        debug!("could not send {status}: {e}");
    }
}

/// Whether this INVITE is a `hotline selftest` call, and may be one (see
/// [`selftest::authorise`]); `token` is `[selftest] token`.
pub(crate) fn selftest_verdict(stack: &SipStack, req: &Request, token: Option<&str>) -> Verdict {
    let header = req.headers.iter().find_map(|h| match h {
        Header::Other(name, value) if name.eq_ignore_ascii_case(selftest::SELFTEST_HEADER) => {
            Some(value.as_str())
        }
        _ => None,
    });
    selftest::authorise(header, source_ip(req), &stack.limits().trusted, token)
}

/// The address a request came from: rsipstack writes it into the top Via as
/// `received` when it differs from the Via's own host (RFC 3261 §18.2.1), so the
/// Via, thus corrected, names the real source.
fn source_ip(req: &Request) -> Option<IpAddr> {
    let via = req.via_header().ok()?;
    let (_, host) = SipConnection::parse_target_from_via(via).ok()?;
    host.host.to_string().trim_matches(['[', ']']).parse().ok()
}
