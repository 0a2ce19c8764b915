//! In-dialog requests that the caller's leg and a volunteer's leg answer alike:
//! keys sent as SIP INFO, re-INVITEs and UPDATEs (hold, a new address), OPTIONS,
//! and what we do not take (NOTIFY, REFER, MESSAGE, PUBLISH).

use std::sync::Mutex;

use rsipstack::dialog::dialog::{DialogState, TransactionHandle};
use rsipstack::sip::{Header, Request, StatusCode};

use crate::media::dtmf;
use crate::sip::leg::LocalMedia;
use crate::sip::sdp::{self, Negotiated};

/// The SDP a dialog answers re-INVITEs from: our address and what was agreed.
#[derive(Debug, Default)]
pub(crate) struct SdpState {
    pub local: Option<LocalMedia>,
    pub negotiated: Option<Negotiated>,
}

/// What an in-dialog request meant for the call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InDialog {
    /// A key, sent as SIP INFO.
    Dtmf(char),
    /// The far end moved its media or changed hold; already answered.
    MediaChanged(Negotiated),
}

/// Answer `state` if it is an in-dialog request; hand back any other state
/// (the dialog's own life: early, confirmed, terminated) untouched.
pub(crate) async fn answer(
    state: DialogState,
    sdp: &Mutex<SdpState>,
) -> Result<Option<InDialog>, DialogState> {
    match state {
        DialogState::Info(_, req, handle) => {
            match dtmf::parse_info_body(&content_type(&req), req.body()) {
                Some(key) => {
                    let _ = handle.reply(StatusCode::OK).await;
                    Ok(Some(InDialog::Dtmf(key)))
                }
                None => {
                    let _ = handle.reply(StatusCode::UnsupportedMediaType).await;
                    Ok(None)
                }
            }
        }
        DialogState::Updated(_, req, handle) => Ok(answer_offer(sdp, &req, handle)
            .await
            .map(InDialog::MediaChanged)),
        DialogState::Options(_, _, handle) => {
            let _ = handle.reply(StatusCode::OK).await;
            Ok(None)
        }
        DialogState::Notify(_, _, handle)
        | DialogState::Refer(_, _, handle)
        | DialogState::Message(_, _, handle)
        | DialogState::Publish(_, _, handle) => {
            let _ = handle.reply(StatusCode::MethodNotAllowed).await;
            Ok(None)
        }
        other => Err(other),
    }
}

fn content_type(req: &Request) -> String {
    req.headers
        .iter()
        .find_map(|h| match h {
            Header::ContentType(c) => Some(c.value().to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A re-offer keeps the call's security: an SRTP call stays SRTP under our key (the
/// peer may re-key its own, RFC 4568 section 7.1.4), and a plain call stays plain,
/// so a re-INVITE can neither strip the encryption nor bring keys over a transport
/// the call was not checked for.
fn same_security(
    current: Option<&Negotiated>,
    mut n: Negotiated,
) -> Result<Negotiated, sdp::SdpError> {
    match (current.and_then(|c| c.srtp), n.srtp.as_mut()) {
        (Some(ours), Some(keys)) => keys.local = ours.local,
        (None, None) => {}
        (Some(_), None) => return Err(sdp::SdpError::Srtp("re-offer drops the encryption")),
        (None, Some(_)) => return Err(sdp::SdpError::Srtp("re-offer adds encryption mid-call")),
    }
    Ok(n)
}

/// A re-INVITE (hold, new address) or UPDATE: answer it from the same port, with
/// the SDP version bumped (RFC 3264 §8). Without an offer, ours goes in the 200.
async fn answer_offer(
    state: &Mutex<SdpState>,
    req: &Request,
    handle: TransactionHandle,
) -> Option<Negotiated> {
    let body = String::from_utf8_lossy(req.body()).to_string();
    let offer =
        (!body.trim().is_empty()).then(|| sdp::parse(&body).and_then(|o| sdp::negotiate(&o)));
    let (reply, changed) = {
        let Ok(mut s) = state.lock() else {
            return None;
        };
        let SdpState { local, negotiated } = &mut *s;
        let offer = offer.map(|o| o.and_then(|n| same_security(negotiated.as_ref(), n)));
        match (local.as_mut(), offer) {
            (None, _) => (Err(StatusCode::ServiceUnavailable), None),
            (Some(local), None) => {
                local.version += 1;
                let sdp = match negotiated {
                    Some(current) => sdp::answer(
                        local.ip,
                        local.port,
                        current,
                        local.session_id,
                        local.version,
                    ),
                    None => sdp::offer(local.ip, local.port, local.session_id, local.version),
                };
                (Ok(sdp), None)
            }
            (Some(local), Some(Ok(n))) => {
                local.version += 1;
                let sdp = sdp::answer(local.ip, local.port, &n, local.session_id, local.version);
                *negotiated = Some(n);
                (Ok(sdp), Some(n))
            }
            (Some(_), Some(Err(e))) => {
                tracing::info!("re-INVITE offer refused: {e}");
                (Err(StatusCode::NotAcceptableHere), None)
            }
        }
    };
    match reply {
        Ok(sdp) => {
            let headers = vec![Header::ContentType("application/sdp".into())];
            let _ = handle
                .respond(StatusCode::OK, Some(headers), Some(sdp.into_bytes()))
                .await;
        }
        Err(status) => {
            let _ = handle.reply(status).await;
        }
    }
    changed
}
