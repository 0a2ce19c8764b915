//! The daemon's SIP stack on its own, with limits a test chooses, and a small UAS in
//! front of it that does what the server does with each request: OPTIONS 200 (503 at
//! `max_calls`), an INVITE claims a call slot (503 with Retry-After when none is left),
//! is answered, held for a while and hung up with a BYE.
//!
//! For tests of the stack's boundary (what reaches the call code, which connection a
//! BYE takes) with settings the daemon's config cannot give yet.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hotline::sip::stack::{SipStack, StackOptions};
use rsipstack::dialog::dialog::DialogState;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tokio::sync::mpsc;

/// What the UAS saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// An out-of-dialog request reached the stack's user (the "call code").
    Request(String),
    /// A call was answered (Call-ID).
    Answered(String),
    /// A call was refused with 503 at max_calls.
    Refused(String),
    /// Our BYE for this call was sent and the call's claim dropped.
    HungUp(String),
}

pub struct Uas {
    pub stack: Arc<SipStack>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    pub options: Arc<AtomicUsize>,
}

impl Uas {
    pub fn addr(&self) -> SocketAddr {
        self.stack.local
    }

    /// The next event within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Seen> {
        tokio::time::timeout(limit, self.seen.recv())
            .await
            .ok()
            .flatten()
    }

    pub fn options_seen(&self) -> usize {
        self.options.load(Ordering::SeqCst)
    }
}

/// Bind a stack on 127.0.0.1 (OS-chosen port) with `options`; calls are held for
/// `hold` after the ACK, then hung up by us.
pub async fn start_uas(options: StackOptions, hold: Duration) -> Uas {
    super::daemon::init_logs();
    let stack = SipStack::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        None,
        "hotline-test",
        Duration::from_millis(500),
        &options,
    )
    .await
    .expect("stack bind");
    let stack = Arc::new(stack);
    let mut incoming = stack.start().await.expect("stack start");
    let (tx, seen) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    let (s, c) = (stack.clone(), count.clone());
    tokio::spawn(async move {
        while let Some(t) = incoming.recv().await {
            tokio::spawn(handle(s.clone(), t, tx.clone(), c.clone(), hold));
        }
    });
    Uas {
        stack,
        seen,
        options: count,
    }
}

async fn handle(
    stack: Arc<SipStack>,
    mut tx: Transaction,
    seen: mpsc::UnboundedSender<Seen>,
    options: Arc<AtomicUsize>,
    hold: Duration,
) {
    let in_dialog = tx
        .original
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .is_some();
    if in_dialog {
        if let Some(mut d) = stack.dialogs.match_dialog(&tx) {
            let _ = d.handle(&mut tx).await;
        } else if tx.original.method != Method::Ack {
            let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
        }
        return;
    }
    let call_id = tx
        .original
        .call_id_header()
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    let _ = seen.send(Seen::Request(format!("{} {call_id}", tx.original.method)));
    match tx.original.method {
        Method::Options => {
            options.fetch_add(1, Ordering::SeqCst);
            let status = if stack.calls_full() {
                StatusCode::ServiceUnavailable
            } else {
                StatusCode::OK
            };
            let _ = tx.reply_with(status, vec![], None).await;
        }
        Method::Invite => {
            let Some(claim) = stack.claim_call(&tx) else {
                let _ = tx
                    .reply_with(
                        StatusCode::ServiceUnavailable,
                        vec![stack.retry_after()],
                        None,
                    )
                    .await;
                let _ = seen.send(Seen::Refused(call_id));
                return;
            };
            let contact = stack.contact_for(tx.connection.as_ref(), "6289110");
            let (state_tx, state_rx) = stack.dialogs.new_dialog_state_channel();
            let stack_dialogs = stack.dialogs.clone();
            let Ok(dialog) = stack
                .dialogs
                .get_or_create_server_invite(&tx, state_tx, None, contact)
            else {
                let _ = tx.reply(StatusCode::BadRequest).await;
                return;
            };
            let seen2 = seen.clone();
            let cid = call_id.clone();
            let answering = dialog.clone();
            tokio::spawn(async move {
                let _claim = claim;
                let mut states = state_rx;
                let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 9 RTP/AVP 0\r\na=sendrecv\r\n";
                let headers = vec![Header::ContentType("application/sdp".into())];
                if answering
                    .accept(Some(headers), Some(sdp.as_bytes().to_vec()))
                    .is_ok()
                {
                    // Wait for the ACK, hold the call, hang up.
                    let confirmed = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(state) = states.recv().await {
                            match state {
                                DialogState::Confirmed(..) => return true,
                                DialogState::Terminated(..) => return false,
                                _ => {}
                            }
                        }
                        false
                    })
                    .await
                    .unwrap_or(false);
                    if confirmed {
                        let _ = seen2.send(Seen::Answered(cid.clone()));
                        tokio::time::sleep(hold).await;
                        let _ = answering.bye().await;
                    }
                }
                stack_dialogs.remove_dialog(&answering.id());
                let _ = seen2.send(Seen::HungUp(cid));
            });
            let mut dialog = dialog;
            let _ = dialog.handle(&mut tx).await;
        }
        _ => {
            let _ = tx
                .reply_with(
                    StatusCode::MethodNotAllowed,
                    vec![Header::Allow("INVITE, ACK, BYE, CANCEL, OPTIONS".into())],
                    None,
                )
                .await;
        }
    }
}
