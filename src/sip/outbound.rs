//! A call we place to a volunteer: the B2BUA's second leg, as the call flow sees it.
//!
//! Like [`crate::sip::leg`], it hides rsipstack: a pump task turns the dialog's states
//! and the INVITE's final response into [`OutEvent`]s, answers in-dialog requests, and
//! the leg removes its dialog from rsipstack's table when dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{StatusCode, StatusCodeKind, Uri};
use rsipstack::transport::SipAddr;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::sip::in_dialog::{self, InDialog, SdpState};
use crate::sip::leg::LocalMedia;
use crate::sip::sdp::Negotiated;

/// What happened on the volunteer's leg.
#[derive(Debug, Clone, PartialEq)]
pub enum OutEvent {
    /// 180 (or 183 without SDP): their phone rings.
    Ringing,
    /// 183 with SDP: their network plays its own ringback or announcement.
    EarlyMedia(String),
    /// 200 OK: they answered; the SDP answer.
    Answered(String),
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

/// Everything needed to ring one volunteer.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The URI in the Request-URI and To: `sip:1001@192.0.2.10` or `sip:NUMBER@trunk`.
    pub target: String,
    /// Where to send it, when not the target's host (the trunk's proxy), "host:port".
    pub proxy: Option<String>,
    /// Our From URI user and host.
    pub from_user: String,
    pub from_host: String,
    /// The resident's number, shown to the volunteer as the From display name.
    pub caller_number: String,
    /// Digest credentials for the trunk (401/407 are answered with them).
    pub credential: Option<(String, String)>,
    /// Our SDP offer, and what we answer re-INVITEs from.
    pub offer: String,
    pub local: LocalMedia,
}

/// An outbound leg in progress.
pub struct OutboundLeg {
    pub call_id: String,
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
    /// Send the INVITE. Errors are immediate refusals (a URI we cannot parse).
    pub fn dial(
        dialogs: Arc<DialogLayer>,
        contact: SocketAddr,
        d: Dial,
    ) -> Result<OutboundLeg, String> {
        let callee = Uri::try_from(d.target.as_str())
            .map_err(|e| format!("cannot call {:?}: {e}", d.target))?;
        let caller = Uri::try_from(format!("sip:{}@{}", d.from_user, d.from_host).as_str())
            .map_err(|e| format!("bad From: {e}"))?;
        let contact_uri = Uri::try_from(format!("sip:{}@{}", d.from_user, contact).as_str())
            .map_err(|e| format!("bad Contact: {e}"))?;
        let destination = match &d.proxy {
            Some(p) => Some(
                Uri::try_from(format!("sip:{p}").as_str())
                    .ok()
                    .and_then(|u| SipAddr::try_from(&u).ok())
                    .ok_or_else(|| format!("bad trunk proxy {p:?}"))?,
            ),
            None => None,
        };
        let opt = InviteOption {
            caller_display_name: Some(d.caller_number.clone()),
            caller,
            callee,
            destination,
            content_type: Some("application/sdp".into()),
            offer: Some(d.offer.clone().into_bytes()),
            contact: contact_uri,
            credential: d.credential.clone().map(|(username, password)| Credential {
                username,
                password,
                realm: None,
                auth_username: None,
            }),
            ..Default::default()
        };
        let (state_tx, mut states) = dialogs.new_dialog_state_channel();
        let (dialog, join) = dialogs
            .do_invite_async(opt, state_tx)
            .map_err(|e| format!("cannot send INVITE to {}: {e}", d.target))?;
        let call_id = dialog.id().call_id.clone();
        let (tx, events) = mpsc::channel(16);
        let shared = Arc::new(Mutex::new(SdpState {
            local: Some(d.local),
            negotiated: None,
        }));
        let pump = tokio::spawn(async move {
            let mut join = Some(join);
            let mut answered = false;
            loop {
                let ev = tokio::select! {
                    state = states.recv() => match state {
                        None => return,
                        Some(s) => on_state(s, answered, &shared).await,
                    },
                    res = async {
                        match join.as_mut() {
                            Some(j) => j.await,
                            None => std::future::pending().await,
                        }
                    }, if join.is_some() => {
                        join = None;
                        let ev = on_final(res);
                        answered = matches!(ev, OutEvent::Answered(_));
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
            call_id,
            dialog,
            dialogs,
            events,
            pump,
            answered: false,
            ended: false,
        })
    }

    /// The next event. Cancel-safe.
    pub async fn next_event(&mut self) -> OutEvent {
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
    pub async fn cancel(&mut self) {
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
    pub async fn hangup(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let Err(e) = self.dialog.hangup().await {
            tracing::info!("BYE to the volunteer failed: {e}");
        }
    }
}

async fn on_state(state: DialogState, answered: bool, sdp: &Mutex<SdpState>) -> Option<OutEvent> {
    match state {
        DialogState::Early(_, resp) => {
            let body = String::from_utf8_lossy(resp.body()).to_string();
            if resp.status_code == StatusCode::SessionProgress && !body.trim().is_empty() {
                Some(OutEvent::EarlyMedia(body))
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
) -> OutEvent {
    match res {
        Ok(Ok((_, Some(resp)))) => {
            let status = u16::from(resp.status_code.clone());
            match resp.status_code.kind() {
                StatusCodeKind::Successful => {
                    OutEvent::Answered(String::from_utf8_lossy(resp.body()).to_string())
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
