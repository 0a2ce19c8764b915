//! The caller's leg of a call, as the call flow sees it: answer, events, hang up.
//!
//! This is the small interface of our own that hides rsipstack's dialog API. The rule
//! it serves: `call/` never names an rsipstack type, so the stack's API churn stops in
//! `sip/`, and a fake leg could stand in for this one in a test of the call flow.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Request, StatusCode};

use crate::sip::in_dialog::{self, InDialog, SdpState};
use crate::sip::sdp::{self, Direction, Negotiated};

/// Something that happened on the caller's leg.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LegEvent {
    /// A key sent as SIP INFO.
    Dtmf(char),
    /// The caller hung up (BYE) or cancelled before we answered.
    HungUp,
    /// A re-INVITE moved media or changed hold; already answered.
    MediaChanged(Negotiated),
    /// The dialog died for another reason (no ACK within Timer H, transport error).
    Failed(String),
}

/// The local half of the SDP we keep answering with.
#[derive(Debug, Clone)]
pub(crate) struct LocalMedia {
    pub ip: IpAddr,
    pub port: u16,
    pub session_id: u64,
    pub version: u64,
}

/// An incoming call's dialog. Dropping it removes the dialog from rsipstack's table
/// (its dialog table leaked in past releases, so we never rely on it cleaning up).
pub(crate) struct InboundLeg {
    pub call_id: String,
    /// The caller's number: the From user part, or the whole URI if it has none.
    pub caller: String,
    /// The number dialled: the Request-URI user part.
    pub dialed: String,
    dialog: InviteDialog,
    dialogs: Arc<DialogLayer>,
    shared: Arc<Mutex<SdpState>>,
    events: mpsc::Receiver<PumpEvent>,
    pump: JoinHandle<()>,
    confirmed: bool,
    ended: bool,
}

/// The pump's output: leg events, plus the ACK that confirms the dialog.
enum PumpEvent {
    Confirmed(Option<String>),
    Leg(LegEvent),
}

impl Drop for InboundLeg {
    fn drop(&mut self) {
        self.pump.abort();
        self.dialogs.remove_dialog(&self.dialog.id());
    }
}

/// The user part of a request's From, or the URI when there is none.
pub(crate) fn caller_of(req: &Request) -> String {
    match req.from_header().and_then(|f| f.uri()) {
        Ok(uri) => uri
            .user()
            .map(|u| u.to_string())
            .unwrap_or_else(|| uri.to_string()),
        Err(_) => String::new(),
    }
}

/// The user part of the Request-URI (the number dialled).
pub(crate) fn dialed_of(req: &Request) -> String {
    req.uri.user().map(|u| u.to_string()).unwrap_or_default()
}

impl InboundLeg {
    /// Wrap a new server dialog. A task starts at once that answers in-dialog
    /// requests, so the call flow can `select!` on [`next_event`](Self::next_event)
    /// without ever cancelling a half-sent reply.
    pub(crate) fn new(
        dialog: InviteDialog,
        states: DialogStateReceiver,
        dialogs: Arc<DialogLayer>,
        req: &Request,
    ) -> Self {
        let shared = Arc::new(Mutex::new(SdpState::default()));
        let (tx, events) = mpsc::channel(16);
        let pump = tokio::spawn(pump(dialog.clone(), states, shared.clone(), tx));
        InboundLeg {
            call_id: dialog.id().call_id.clone(),
            caller: caller_of(req),
            dialed: dialed_of(req),
            dialog,
            dialogs,
            shared,
            events,
            pump,
            confirmed: false,
            ended: false,
        }
    }

    /// Answer with 200 OK carrying our SDP and wait for the ACK (RFC 3261 §13.3.1.4:
    /// the 200 is retransmitted until then). `offer` is the INVITE's negotiated offer;
    /// without one, our offer goes in the 200 and the answer must come in the ACK
    /// (RFC 3261 §13.2.1), which is returned. Err when the caller left first, no ACK
    /// came within Timer H, or the ACK's answer is unusable.
    pub(crate) async fn answer(
        &mut self,
        local: LocalMedia,
        offer: Option<Negotiated>,
    ) -> Result<Option<Negotiated>, LegEvent> {
        let body = match &offer {
            Some(n) => sdp::answer(local.ip, local.port, n, local.session_id, local.version),
            None => sdp::offer(local.ip, local.port, local.session_id, local.version),
        };
        if let Ok(mut s) = self.shared.lock() {
            s.local = Some(local);
            s.negotiated = offer;
        }
        let headers = vec![Header::ContentType("application/sdp".into())];
        if let Err(e) = self.dialog.accept(Some(headers), Some(body.into_bytes())) {
            self.ended = true;
            return Err(self.why_not_answered(e.to_string()).await);
        }
        let ack_body = loop {
            match self.events.recv().await {
                Some(PumpEvent::Confirmed(ack_body)) => {
                    self.confirmed = true;
                    break ack_body;
                }
                Some(PumpEvent::Leg(ev @ (LegEvent::HungUp | LegEvent::Failed(_)))) => {
                    self.ended = true;
                    return Err(ev);
                }
                Some(PumpEvent::Leg(_)) => {} // a key before the ACK: too early to matter
                None => {
                    self.ended = true;
                    return Err(LegEvent::Failed("dialog vanished".into()));
                }
            }
        };
        if offer.is_some() {
            return Ok(None);
        }
        let answer = ack_body
            .ok_or_else(|| LegEvent::Failed("the ACK carried no SDP answer to our offer".into()))?;
        let n = sdp::parse(&answer)
            .and_then(|a| sdp::negotiate_answer(&a))
            .map_err(|e| LegEvent::Failed(format!("unusable SDP answer in the ACK: {e}")))?;
        if let Ok(mut s) = self.shared.lock() {
            s.negotiated = Some(n);
        }
        Ok(Some(n))
    }

    /// Why the 200 OK could not go out: a CANCEL that arrived just before it
    /// ends the INVITE's transaction (487), and the caller left, as they did.
    /// Anything else is a failure. Waits at most a moment for the dialog's news.
    async fn why_not_answered(&mut self, error: String) -> LegEvent {
        let news = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            loop {
                match self.events.recv().await {
                    Some(PumpEvent::Leg(ev @ (LegEvent::HungUp | LegEvent::Failed(_)))) => {
                        return Some(ev)
                    }
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await;
        match news {
            Ok(Some(LegEvent::HungUp)) => LegEvent::HungUp,
            _ => LegEvent::Failed(format!("could not send 200 OK: {error}")),
        }
    }

    /// Say the phone is ringing (180 Ringing), before answering; for the test phone.
    pub(crate) fn ring(&self) {
        if let Err(e) = self.dialog.ringing(None, None) {
            tracing::info!("could not send 180 Ringing: {e}");
        }
    }

    /// Refuse the call before answering: 503, we cannot take it now (no media ports).
    pub(crate) fn refuse_unavailable(&mut self) {
        let _ = self
            .dialog
            .reject(Some(StatusCode::ServiceUnavailable), None);
        self.ended = true;
    }

    /// The next event on the leg. Cancel-safe.
    pub(crate) async fn next_event(&mut self) -> LegEvent {
        if self.ended {
            return std::future::pending().await;
        }
        loop {
            match self.events.recv().await {
                Some(PumpEvent::Leg(ev)) => {
                    if matches!(ev, LegEvent::HungUp | LegEvent::Failed(_)) {
                        self.ended = true;
                    }
                    return ev;
                }
                Some(PumpEvent::Confirmed(_)) => {}
                None => {
                    self.ended = true;
                    return LegEvent::Failed("dialog vanished".into());
                }
            }
        }
    }

    /// Hang up from our side: BYE once confirmed. Idempotent.
    pub(crate) async fn hangup(&mut self) {
        self.hangup_with(Vec::new()).await;
    }

    /// [`hangup`](Self::hangup), with these extra headers, as (name, value), on the BYE.
    pub(crate) async fn hangup_with(&mut self, headers: Vec<(String, String)>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.confirmed {
            let headers: Vec<Header> = headers
                .into_iter()
                .map(|(name, value)| Header::Other(name, value))
                .collect();
            let sent = if headers.is_empty() {
                self.dialog.bye().await
            } else {
                self.dialog.bye_with_headers(Some(headers)).await
            };
            if let Err(e) = sent {
                tracing::info!("BYE to the caller failed: {e}");
            }
        }
    }

    /// Whether the caller has already gone.
    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }
}

/// Whether our side may send media under this negotiation (not on hold).
pub(crate) fn sending_allowed(n: &Negotiated) -> bool {
    matches!(n.direction, Direction::SendRecv | Direction::SendOnly)
}

/// Drains the dialog's state channel for the life of the call.
async fn pump(
    dialog: InviteDialog,
    mut states: DialogStateReceiver,
    shared: Arc<Mutex<SdpState>>,
    tx: mpsc::Sender<PumpEvent>,
) {
    while let Some(state) = states.recv().await {
        let ev = match state {
            DialogState::Confirmed(..) => {
                let ack_body = dialog
                    .last_remote_ack()
                    .map(|ack| String::from_utf8_lossy(ack.body()).to_string())
                    .filter(|b| !b.trim().is_empty());
                Some(PumpEvent::Confirmed(ack_body))
            }
            DialogState::Terminated(_, reason) => Some(PumpEvent::Leg(terminated(reason))),
            other => match in_dialog::answer(other, &shared).await {
                Ok(Some(InDialog::Dtmf(key))) => Some(PumpEvent::Leg(LegEvent::Dtmf(key))),
                Ok(Some(InDialog::MediaChanged(n))) => {
                    Some(PumpEvent::Leg(LegEvent::MediaChanged(n)))
                }
                Ok(None) | Err(_) => None,
            },
        };
        if let Some(ev) = ev {
            let last = matches!(ev, PumpEvent::Leg(LegEvent::HungUp | LegEvent::Failed(_)));
            if tx.send(ev).await.is_err() || last {
                return;
            }
        }
    }
}

fn terminated(reason: TerminatedReason) -> LegEvent {
    match reason {
        TerminatedReason::UacBye | TerminatedReason::UacCancel => LegEvent::HungUp,
        TerminatedReason::Timeout => {
            LegEvent::Failed("no ACK for our 200 OK (Timer H expired)".into())
        }
        other => LegEvent::Failed(format!("dialog ended: {other:?}")),
    }
}
