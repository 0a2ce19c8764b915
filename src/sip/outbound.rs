//! A call we place to a volunteer: the B2BUA's second leg, as the call flow sees it.
//!
//! Like [`crate::sip::leg`], it hides rsipstack: the [`Dialer`] builds and sends the
//! INVITE (From, Contact, the trunk's proxy and credentials), a pump task turns the
//! dialog's states and the INVITE's final response into [`OutEvent`]s (SDP already
//! negotiated), answers in-dialog requests, and the leg removes its dialog from
//! rsipstack's table when dropped.
//!
//! A 200 OK that crosses our CANCEL (RFC 3261 §9.1) is ACKed and then ended with a BYE
//! by rsipstack itself (`bye_2xx_of_cancelled`), even after the leg is dropped; the
//! test `answer_crossing_our_cancel_is_acked_and_hung_up` pins that here.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{StatusCode, StatusCodeKind, Transport, Uri};
use rsipstack::transport::SipAddr;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::TrunkConfig;
use crate::media::srtp::SdesKey;
use crate::sip::in_dialog::{self, InDialog, SdpState};
use crate::sip::leg::LocalMedia;
use crate::sip::sdp::{self, Negotiated};
use crate::sip::stack::{Contacts, SipStack};

/// What happened on the volunteer's leg.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutEvent {
    /// 180 (or 183 without SDP): their phone rings.
    Ringing,
    /// 183 with SDP: their network plays its own ringback or announcement; the
    /// negotiated answer, or why it is unusable.
    EarlyMedia(Result<Negotiated, String>),
    /// 200 OK: they answered; the negotiated answer, or why it is unusable.
    Answered(Result<Negotiated, String>),
    /// A final non-2xx: busy, declined, unavailable, or a 3xx with its first Contact.
    Rejected {
        status: u16,
        contact: Option<String>,
    },
    /// They hung up after answering (BYE).
    HungUp,
    /// A key they pressed, sent as SIP INFO.
    Dtmf(char),
    /// A re-INVITE from their side moved media or put the call on hold.
    MediaChanged(Negotiated),
    /// No final response (timeout, transport failure).
    Failed(String),
}

/// Places our calls to volunteers: knows our SIP address and number, and the trunk
/// that numbers are called through.
pub(crate) struct Dialer {
    dialogs: Arc<DialogLayer>,
    /// Our SIP address, for From on direct calls.
    contact: SocketAddr,
    /// Our Contact per transport: a volunteer called over TLS gets a `sips:` one.
    contacts: Contacts,
    /// Our number, the From user on direct calls.
    number: String,
    trunk: Option<TrunkConfig>,
}

impl Dialer {
    pub(crate) fn new(stack: &SipStack, number: String, trunk: Option<TrunkConfig>) -> Dialer {
        Dialer {
            dialogs: stack.dialogs.clone(),
            contact: stack.public_addr(),
            contacts: stack.contacts(),
            number,
            trunk,
        }
    }

    /// The trunk's domain, where a number N is called as `sip:N@domain`; None
    /// without a trunk.
    pub(crate) fn trunk_domain(&self) -> Option<&str> {
        self.trunk.as_ref().map(|t| t.domain.as_str())
    }

    /// Before dialing `target` directly over TCP: open the connection the INVITE
    /// will go on (rsipstack keeps it for the INVITE's transaction). rsipstack
    /// itself only logs a failed connect and retries it on Timer A until Timer B
    /// (32 s), so a phone with nothing listening would ring out as `no_answer`;
    /// here a refused (or otherwise failed) connect is the attempt's local failure,
    /// in words. A connect still pending after [`CONNECT_FIRST`] is left to
    /// rsipstack's retries, as before. UDP, TLS and the trunk are not touched.
    pub(crate) async fn connect_first(&self, target: &str, via_trunk: bool) -> Result<(), String> {
        if via_trunk {
            return Ok(());
        }
        let Some(addr) = Uri::try_from(target)
            .ok()
            .and_then(|u| SipAddr::try_from(&u).ok())
            .filter(|a| a.r#type == Some(Transport::Tcp))
        else {
            return Ok(());
        };
        let layer = &self.dialogs.endpoint.transport_layer;
        match tokio::time::timeout(CONNECT_FIRST, layer.lookup(&addr, None)).await {
            Ok(Ok(_)) | Err(_) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "cannot connect to {} over TCP: {}",
                addr.addr,
                connect_error(&e)
            )),
        }
    }

    /// Send the INVITE to `target`, offering media at `local`. `via_trunk` sends it
    /// to the trunk's proxy with its credentials (for phone numbers); otherwise it
    /// goes to the URI's host. `caller_number` is shown to the volunteer as the From
    /// display name. Errors are immediate refusals (a URI we cannot parse).
    #[cfg(test)]
    pub(crate) fn dial(
        &self,
        target: &str,
        via_trunk: bool,
        caller_number: &str,
        local: LocalMedia,
    ) -> Result<OutboundLeg, String> {
        self.dial_keyed(target, via_trunk, caller_number, local, None)
    }

    /// [`dial`](Self::dial), offering RTP/SAVP keyed with `srtp` when given; their
    /// answer must then be SRTP too (or the leg reports an unusable answer).
    pub(crate) fn dial_keyed(
        &self,
        target: &str,
        via_trunk: bool,
        caller_number: &str,
        local: LocalMedia,
        srtp: Option<SdesKey>,
    ) -> Result<OutboundLeg, String> {
        let trunk = self.trunk.as_ref().filter(|_| via_trunk);
        let from_user = trunk
            .and_then(|t| t.username.clone())
            .unwrap_or_else(|| self.number.clone());
        let from_host = trunk
            .map(|t| t.domain.clone())
            .unwrap_or_else(|| self.contact.to_string());
        let callee = Uri::try_from(target).map_err(|e| format!("cannot call {target:?}: {e}"))?;
        let caller = Uri::try_from(format!("sip:{from_user}@{from_host}").as_str())
            .map_err(|e| format!("bad From: {e}"))?;
        let contact_uri = self
            .contacts
            .uri(Contacts::transport_to(&callee), &from_user)
            .ok_or_else(|| format!("bad Contact for user {from_user:?}"))?;
        let destination = match trunk {
            Some(t) => Some(
                Uri::try_from(format!("sip:{}", t.proxy).as_str())
                    .ok()
                    .and_then(|u| SipAddr::try_from(&u).ok())
                    .ok_or_else(|| format!("bad trunk proxy {:?}", t.proxy))?,
            ),
            None => None,
        };
        let offer = sdp::keyed_offer(local.ip, local.port, local.session_id, local.version, srtp);
        let opt = InviteOption {
            caller_display_name: Some(caller_number.to_string()),
            caller,
            callee,
            destination,
            content_type: Some("application/sdp".into()),
            offer: Some(offer.into_bytes()),
            contact: contact_uri,
            credential: trunk.and_then(|t| {
                Some(Credential {
                    username: t.username.clone()?,
                    password: t.password.clone()?,
                    realm: None,
                    auth_username: None,
                })
            }),
            ..Default::default()
        };
        OutboundLeg::invite(self.dialogs.clone(), opt, (local, srtp), target)
    }
}

/// An outbound leg in progress.
pub(crate) struct OutboundLeg {
    dialog: InviteDialog,
    dialogs: Arc<DialogLayer>,
    events: mpsc::Receiver<OutEvent>,
    pump: JoinHandle<()>,
    answered: bool,
    ended: bool,
}

impl Drop for OutboundLeg {
    fn drop(&mut self) {
        self.pump.abort();
        self.dialogs.remove_dialog(&self.dialog.id());
    }
}

impl OutboundLeg {
    fn invite(
        dialogs: Arc<DialogLayer>,
        opt: InviteOption,
        (local, srtp): (LocalMedia, Option<SdesKey>),
        target: &str,
    ) -> Result<OutboundLeg, String> {
        let (state_tx, mut states) = dialogs.new_dialog_state_channel();
        let (dialog, join) = dialogs
            .do_invite_async(opt, state_tx)
            .map_err(|e| format!("cannot send INVITE to {target}: {e}"))?;
        let (tx, events) = mpsc::channel(16);
        let shared = Arc::new(Mutex::new(SdpState {
            local: Some(local),
            negotiated: None,
        }));
        let pump = tokio::spawn(async move {
            let mut join = Some(join);
            let mut answered = false;
            loop {
                let ev = tokio::select! {
                    state = states.recv() => match state {
                        None => return,
                        Some(s) => on_state(s, answered, &shared, srtp).await,
                    },
                    res = async {
                        match join.as_mut() {
                            Some(j) => j.await,
                            None => std::future::pending().await,
                        }
                    }, if join.is_some() => {
                        join = None;
                        let ev = on_final(res, srtp);
                        if let OutEvent::Answered(n) = &ev {
                            answered = true;
                            // Re-INVITEs without an offer are answered from this.
                            if let (Ok(n), Ok(mut s)) = (n, shared.lock()) {
                                s.negotiated = Some(*n);
                            }
                        }
                        Some(ev)
                    }
                };
                if let Some(ev) = ev {
                    let last = matches!(
                        ev,
                        OutEvent::HungUp | OutEvent::Failed(_) | OutEvent::Rejected { .. }
                    );
                    if tx.send(ev).await.is_err() || last {
                        return;
                    }
                }
            }
        });
        Ok(OutboundLeg {
            dialog,
            dialogs,
            events,
            pump,
            answered: false,
            ended: false,
        })
    }

    /// The next event. Cancel-safe.
    pub(crate) async fn next_event(&mut self) -> OutEvent {
        if self.ended {
            return std::future::pending().await;
        }
        match self.events.recv().await {
            Some(ev) => {
                match &ev {
                    OutEvent::Answered(_) => self.answered = true,
                    OutEvent::HungUp | OutEvent::Failed(_) | OutEvent::Rejected { .. } => {
                        self.ended = true
                    }
                    _ => {}
                }
                ev
            }
            None => {
                self.ended = true;
                OutEvent::Failed("the volunteer's leg vanished".into())
            }
        }
    }

    /// Stop ringing them (CANCEL), e.g. ring timeout or the caller hung up.
    pub(crate) async fn cancel(&mut self) {
        if self.ended {
            return;
        }
        if self.answered {
            self.hangup().await;
            return;
        }
        if let Err(e) = self.dialog.cancel().await {
            tracing::info!("CANCEL failed: {e}");
        }
    }

    /// End an answered leg (BYE).
    pub(crate) async fn hangup(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let Err(e) = self.dialog.hangup().await {
            tracing::info!("BYE to the volunteer failed: {e}");
        }
    }
}

async fn on_state(
    state: DialogState,
    answered: bool,
    sdp: &Mutex<SdpState>,
    srtp: Option<SdesKey>,
) -> Option<OutEvent> {
    match state {
        DialogState::Early(_, resp) => {
            let body = String::from_utf8_lossy(resp.body()).to_string();
            if resp.status_code == StatusCode::SessionProgress && !body.trim().is_empty() {
                Some(OutEvent::EarlyMedia(negotiate_answer(&body, srtp)))
            } else {
                Some(OutEvent::Ringing)
            }
        }
        DialogState::Terminated(_, reason) if answered => match reason {
            TerminatedReason::UacBye | TerminatedReason::UasBye => Some(OutEvent::HungUp),
            other => Some(OutEvent::Failed(format!(
                "volunteer's leg ended: {other:?}"
            ))),
        },
        other => match in_dialog::answer(other, sdp).await {
            Ok(Some(InDialog::Dtmf(k))) => Some(OutEvent::Dtmf(k)),
            Ok(Some(InDialog::MediaChanged(n))) => Some(OutEvent::MediaChanged(n)),
            Ok(None) | Err(_) => None,
        },
    }
}

fn on_final(
    res: Result<rsipstack::dialog::invitation::InviteAsyncResult, tokio::task::JoinError>,
    srtp: Option<SdesKey>,
) -> OutEvent {
    match res {
        Ok(Ok((_, Some(resp)))) if is_made_up_timeout(&resp) => OutEvent::Failed(
            "no response at all from the volunteer's phone (SIP Timer B expired)".into(),
        ),
        Ok(Ok((_, Some(resp)))) => {
            let status = u16::from(resp.status_code.clone());
            match resp.status_code.kind() {
                StatusCodeKind::Successful => {
                    let body = String::from_utf8_lossy(resp.body());
                    OutEvent::Answered(negotiate_answer(&body, srtp))
                }
                StatusCodeKind::Redirection => OutEvent::Rejected {
                    status,
                    contact: resp
                        .contact_header()
                        .ok()
                        .and_then(|c| c.typed().ok())
                        .map(|c| c.uri.to_string()),
                },
                _ => OutEvent::Rejected {
                    status,
                    contact: None,
                },
            }
        }
        Ok(Ok((_, None))) => OutEvent::Failed("no final response".into()),
        Ok(Err(e)) => OutEvent::Failed(format!("INVITE failed: {e}")),
        Err(e) => OutEvent::Failed(format!("INVITE task failed: {e}")),
    }
}

/// How long [`Dialer::connect_first`] waits for a TCP connection: a refusal on
/// loopback or a LAN comes at once; the call flow waits on this, so it is short.
const CONNECT_FIRST: std::time::Duration = std::time::Duration::from_secs(2);

/// A failed connect in the words of the call record ("connection refused").
fn connect_error(e: &rsipstack::Error) -> String {
    use std::io::ErrorKind;
    match e {
        rsipstack::Error::IoError(io) => match io.kind() {
            ErrorKind::ConnectionRefused => "connection refused".into(),
            ErrorKind::ConnectionReset => "connection reset".into(),
            ErrorKind::HostUnreachable => "host unreachable".into(),
            ErrorKind::NetworkUnreachable => "network unreachable".into(),
            _ => io.to_string(),
        },
        other => other.to_string(),
    }
}

/// rsipstack answers its own INVITE with a 408 when Timer B fires (RFC 3261
/// 17.1.1.2: nothing came back). Nobody sent that 408: it is a copy of our
/// request's headers, so its To has no tag, which every real final response
/// from a UAS carries (RFC 3261 8.2.6.2).
fn is_made_up_timeout(resp: &rsipstack::sip::Response) -> bool {
    resp.status_code == StatusCode::RequestTimeout
        && resp
            .to_header()
            .ok()
            .and_then(|to| to.tag().ok())
            .flatten()
            .is_none()
}

/// Our offer went in the INVITE (keyed with `srtp`, if any); this is their answer
/// (in a 183 or the 200).
fn negotiate_answer(body: &str, srtp: Option<SdesKey>) -> Result<Negotiated, String> {
    sdp::parse(body)
        .and_then(|a| sdp::negotiate_keyed_answer(&a, srtp))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::UdpSocket;
    use tokio::time::timeout;

    /// The value of header `name` in a SIP message (first occurrence).
    fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
        msg.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn timeout_response(to: &str) -> Result<rsipstack::sip::Response, rsipstack::sip::Error> {
        let raw = format!(
            "SIP/2.0 408 Request Timeout\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:hotline@127.0.0.1>;tag=a\r\nTo: {to}\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        rsipstack::sip::Response::try_from(raw.as_str())
    }

    #[test]
    fn only_the_stacks_own_408_counts_as_made_up() -> Result<(), rsipstack::sip::Error> {
        // rsipstack's Timer B 408 copies our To, which has no tag yet.
        assert!(is_made_up_timeout(&timeout_response(
            "<sip:zed@127.0.0.1>"
        )?));
        // A 408 the volunteer's side really sent carries its To tag.
        assert!(!is_made_up_timeout(&timeout_response(
            "<sip:zed@127.0.0.1>;tag=remote"
        )?));
        Ok(())
    }

    /// A response to `req` with the dialog headers copied (and a To tag).
    fn response(req: &str, status: &str, contact: &str, body: &str) -> String {
        let h = |n| header(req, n).unwrap_or_default();
        let to = h("To");
        let to = if to.contains("tag=") {
            to.to_string()
        } else {
            format!("{to};tag=uas1")
        };
        let ctype = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_string()
        };
        format!(
            "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             Contact: <{contact}>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            h("Via"),
            h("From"),
            h("Call-ID"),
            h("CSeq"),
            body.len()
        )
    }

    async fn recv(sock: &UdpSocket) -> (String, std::net::SocketAddr) {
        let mut buf = vec![0u8; 65536];
        let (n, from) = timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("nothing from the stack within 5 s")
            .expect("recv");
        (String::from_utf8_lossy(&buf[..n]).to_string(), from)
    }

    /// RFC 3261 §9.1: a 200 OK can cross our CANCEL. Our leg is dropped as soon as it
    /// is cancelled (the hunt has moved on), so it is rsipstack that must ACK the 200
    /// and end that dialog with a BYE; nothing of ours does. This pins it.
    #[tokio::test]
    async fn answer_crossing_our_cancel_is_acked_and_hung_up() {
        let stack = SipStack::bind(
            "127.0.0.1:0".parse().unwrap(),
            None,
            "hotline-test",
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        let _incoming = stack.start().await.unwrap();
        let dialer = Dialer::new(&stack, "6289110".into(), None);
        let uas = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let uas_addr = uas.local_addr().unwrap();
        let contact = format!("sip:alice@{uas_addr}");
        let local = LocalMedia {
            ip: "127.0.0.1".parse().unwrap(),
            port: 40000,
            session_id: 1,
            version: 1,
        };
        let mut leg = dialer.dial(&contact, false, "13912345678", local).unwrap();

        let (invite, from) = recv(&uas).await;
        assert!(invite.starts_with("INVITE "), "{invite}");
        let ringing = response(&invite, "180 Ringing", &contact, "");
        uas.send_to(ringing.as_bytes(), from).await.unwrap();
        assert_eq!(leg.next_event().await, OutEvent::Ringing);

        // We cancel; the phone answers the CANCEL and, crossing it, the INVITE.
        let cancelling = tokio::spawn(async move {
            leg.cancel().await;
            drop(leg);
        });
        let (cancel, from) = recv(&uas).await;
        assert!(cancel.starts_with("CANCEL "), "{cancel}");
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                   t=0 0\r\nm=audio 40002 RTP/AVP 0\r\n";
        let ok = response(&invite, "200 OK", &contact, sdp);
        uas.send_to(ok.as_bytes(), from).await.unwrap();
        let cancel_ok = response(&cancel, "200 OK", &contact, "");
        uas.send_to(cancel_ok.as_bytes(), from).await.unwrap();
        timeout(Duration::from_secs(5), cancelling)
            .await
            .expect("cancel hung")
            .unwrap();

        // ACK for the 2xx (its own transaction), then a BYE; either may be retransmitted.
        let mut acked = false;
        loop {
            let (msg, from) = recv(&uas).await;
            if msg.starts_with("ACK ") {
                acked = true;
            } else if msg.starts_with("BYE ") {
                assert!(acked, "BYE before the ACK of the crossing 200");
                let bye_ok = response(&msg, "200 OK", &contact, "");
                uas.send_to(bye_ok.as_bytes(), from).await.unwrap();
                break;
            }
        }
        stack.shutdown();
    }
}
