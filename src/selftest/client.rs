//! The calls `hotline selftest` places, with the daemon's own SIP stack: for each
//! station an INVITE (PCMU offer, an RTP socket bound but not read) carrying
//! [`SELFTEST_HEADER`], the ACK of the 200, the station's key by SIP INFO
//! (`application/dtmf-relay`), then a bounded wait for the daemon's BYE, whose
//! headers are the [`Answer`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, StatusCode, StatusCodeKind, Uri};
use rsipstack::transaction::TransactionReceiver;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};

use super::{Answer, TrunkState, SELFTEST_HEADER};
use crate::config::Station;
use crate::sip::stack::SipStack;

/// Where and how to call.
#[derive(Debug, Clone)]
pub struct Options {
    /// The daemon's SIP address (`[sip] listen`; 0.0.0.0 means loopback here).
    pub daemon: SocketAddr,
    /// The number to dial (`[sip] numbers`, the first).
    pub number: String,
    /// `[selftest] token`, sent as the header's value.
    pub token: Option<String>,
    /// The longest wait for each step: the 200, and the BYE after the key.
    pub step_timeout: Duration,
}

impl Options {
    /// The address to call for a daemon listening on `listen`.
    pub fn daemon_addr(listen: SocketAddr) -> SocketAddr {
        let ip = match listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, listen.port())
    }
}

/// One station's self-test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub key: char,
    pub station: String,
    /// The menu answered (200 OK); Err: what happened instead.
    pub answered: Result<(), String>,
    /// The daemon's answer; Err: why there is none.
    pub answer: Result<Answer, String>,
}

impl Checked {
    /// What is wrong, in words; empty when the station passed.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = &self.answered {
            out.push(format!("the menu did not answer: {e}"));
            return out;
        }
        match &self.answer {
            Err(e) => out.push(e.clone()),
            Ok(a) => {
                if a.station != self.station {
                    out.push(format!(
                        "key {} chose station {:?}, not {:?}",
                        self.key, a.station, self.station
                    ));
                }
                if a.hunt.is_empty() {
                    out.push("NOBODY reachable".into());
                }
                if a.trunk == TrunkState::Failed {
                    out.push("the trunk is not registered".into());
                }
            }
        }
        out
    }

    /// One line for the admin; `names` maps volunteer ids to names.
    pub fn line(&self, names: &HashMap<String, String>) -> String {
        let verdict = if self.problems().is_empty() {
            "OK  "
        } else {
            "FAIL"
        };
        let head = format!("{verdict} key {} {}", self.key, self.station);
        let answer = match (&self.answered, &self.answer) {
            (Err(e), _) => return format!("{head}: menu answered: no ({e})"),
            (Ok(()), Err(e)) => return format!("{head}: menu answered: yes; {e}"),
            (Ok(()), Ok(a)) => a,
        };
        let who = |id: &String| match names.get(id) {
            Some(name) => format!("{name} ({id})"),
            None => id.clone(),
        };
        let first = match answer.hunt.split_first() {
            None => "NOBODY reachable".to_string(),
            Some((first, [])) => format!("first volunteer: {}", who(first)),
            Some((first, rest)) => format!(
                "first volunteer: {}, then {}",
                who(first),
                rest.iter().map(who).collect::<Vec<_>>().join(", ")
            ),
        };
        let mut line = format!(
            "{head}: menu answered: yes; {first}; trunk: {}",
            answer.trunk.as_str()
        );
        if answer.station != self.station {
            line.push_str(&format!("; but the menu chose {:?}", answer.station));
        }
        line
    }
}

/// The pause between two stations' calls.
const PACE: Duration = Duration::from_millis(400);

/// Call the daemon once for each of `stations`, one after the other. Err only when
/// no call can be placed at all (our SIP stack cannot start).
pub async fn check(options: &Options, stations: &[Station]) -> Result<Vec<Checked>, String> {
    let local = SocketAddr::new(options.daemon.ip(), 0);
    let ua = concat!("hotline-selftest/", env!("CARGO_PKG_VERSION"));
    let stack = SipStack::bind(local, None, ua, Duration::from_millis(500))
        .await
        .map_err(|e| format!("cannot start the self-test's SIP stack: {e}"))?;
    let incoming = stack
        .start()
        .await
        .map_err(|e| format!("cannot start the self-test's SIP stack: {e}"))?;
    let (bye_tx, mut byes) = mpsc::unbounded_channel();
    let router = tokio::spawn(route(incoming, stack.dialogs.clone(), bye_tx));
    let mut out = Vec::new();
    for (i, s) in stations.iter().enumerate() {
        if i > 0 {
            // Three requests a call: paced below the flood ban (16 in 2 s), which
            // spares only loopback and [limits] trusted sources.
            tokio::time::sleep(PACE).await;
        }
        out.push(check_one(&stack, options, s, &mut byes).await);
    }
    router.abort();
    stack.shutdown();
    Ok(out)
}

/// Requests from the daemon: hand each to its dialog (which answers the BYE with
/// 200), and every BYE to the calls waiting for one.
async fn route(
    mut incoming: TransactionReceiver,
    dialogs: Arc<DialogLayer>,
    byes: mpsc::UnboundedSender<Request>,
) {
    while let Some(mut tx) = incoming.recv().await {
        let dialogs = dialogs.clone();
        let byes = byes.clone();
        tokio::spawn(async move {
            if tx.original.method == Method::Bye {
                let _ = byes.send(tx.original.clone());
            }
            match dialogs.match_dialog(&tx) {
                Some(mut dialog) => {
                    let _ = dialog.handle(&mut tx).await;
                }
                None if tx.original.method == Method::Ack => {}
                None => {
                    let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                }
            }
        });
    }
}

/// One station's call, from INVITE to the daemon's BYE.
async fn check_one(
    stack: &SipStack,
    options: &Options,
    station: &Station,
    byes: &mut mpsc::UnboundedReceiver<Request>,
) -> Checked {
    let mut checked = Checked {
        key: station.key,
        station: station.id.clone(),
        answered: Err("not called".into()),
        answer: Err("no answer".into()),
    };
    let (dialog, _rtp, _states) = match invite(stack, options).await {
        Ok(call) => call,
        Err(e) => {
            checked.answered = Err(e);
            return checked;
        }
    };
    checked.answered = Ok(());
    checked.answer = match press(&dialog, station.key).await {
        Ok(()) => wait_for_answer(&dialog, options.step_timeout, byes).await,
        Err(e) => Err(e),
    };
    if checked.answer.is_err() {
        let _ = dialog.bye().await;
    }
    stack.dialogs.remove_dialog(&dialog.id());
    checked
}

type Placed = (
    InviteDialog,
    UdpSocket,
    rsipstack::dialog::dialog::DialogStateReceiver,
);

/// Send the INVITE and wait for its 200 (rsipstack ACKs it). Returns the dialog,
/// the RTP socket our SDP names and the dialog's state channel (kept open).
async fn invite(stack: &SipStack, options: &Options) -> Result<Placed, String> {
    let ours = stack.public_addr();
    let rtp = UdpSocket::bind(SocketAddr::new(ours.ip(), 0))
        .await
        .map_err(|e| format!("cannot bind an RTP socket: {e}"))?;
    let rtp_port = rtp
        .local_addr()
        .map_err(|e| format!("cannot bind an RTP socket: {e}"))?
        .port();
    let uri = |s: String| Uri::try_from(s.as_str()).map_err(|e| format!("bad URI {s:?}: {e}"));
    let me = uri(format!("sip:selftest@{ours}"))?;
    let offer = crate::sip::sdp::offer(ours.ip(), rtp_port, rand::random::<u32>().into(), 1);
    let token = options.token.clone().unwrap_or_else(|| "1".into());
    let opt = InviteOption {
        caller_display_name: Some("hotline selftest".into()),
        caller: me.clone(),
        callee: uri(format!("sip:{}@{}", options.number, options.daemon))?,
        content_type: Some("application/sdp".into()),
        offer: Some(offer.into_bytes()),
        contact: me,
        headers: Some(vec![Header::Other(SELFTEST_HEADER.into(), token)]),
        ..Default::default()
    };
    let (state_tx, states) = stack.dialogs.new_dialog_state_channel();
    let (dialog, join) = stack
        .dialogs
        .do_invite_async(opt, state_tx)
        .map_err(|e| format!("cannot send the INVITE: {e}"))?;
    let daemon = options.daemon;
    let result = match timeout(options.step_timeout, join).await {
        Err(_) => {
            let _ = dialog.cancel().await;
            stack.dialogs.remove_dialog(&dialog.id());
            let s = options.step_timeout.as_secs();
            return Err(format!(
                "no answer from {daemon} within {s} s (is it running?)"
            ));
        }
        Ok(Err(e)) => return Err(format!("the INVITE task failed: {e}")),
        Ok(Ok(Err(e))) => return Err(format!("the INVITE failed: {e}")),
        Ok(Ok(Ok((_, resp)))) => resp,
    };
    match result {
        Some(r) if r.status_code.kind() == StatusCodeKind::Successful => Ok((dialog, rtp, states)),
        Some(r)
            if r.to_header()
                .ok()
                .and_then(|t| t.tag().ok().flatten())
                .is_none() =>
        {
            Err(format!("no response from {daemon} (is it running?)"))
        }
        Some(r) => Err(format!("the daemon answered {}", r.status_code)),
        None => Err(format!("no final response from {daemon}")),
    }
}

/// Send `key` by SIP INFO once the dialog is confirmed (the ACK sent).
async fn press(dialog: &InviteDialog, key: char) -> Result<(), String> {
    let headers = vec![Header::ContentType("application/dtmf-relay".into())];
    let body = format!("Signal={key}\r\nDuration=160\r\n").into_bytes();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match dialog.info(Some(headers.clone()), Some(body.clone())).await {
            Ok(Some(r)) if r.status_code.kind() == StatusCodeKind::Successful => return Ok(()),
            Ok(Some(r)) => {
                return Err(format!(
                    "the daemon refused the key by SIP INFO: {}",
                    r.status_code
                ))
            }
            // Not confirmed yet: the ACK is on its way.
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(None) => return Err("the call was never confirmed, so no key was sent".into()),
            Err(e) => return Err(format!("cannot send the key by SIP INFO: {e}")),
        }
    }
}

/// Wait for the daemon's BYE on this call and read its answer.
async fn wait_for_answer(
    dialog: &InviteDialog,
    limit: Duration,
    byes: &mut mpsc::UnboundedReceiver<Request>,
) -> Result<Answer, String> {
    let call_id = dialog.id().call_id.clone();
    let deadline = Instant::now() + limit;
    loop {
        let bye = match timeout_at(deadline, byes.recv()).await {
            Ok(Some(bye)) => bye,
            Ok(None) => return Err("the SIP stack stopped".into()),
            Err(_) => {
                return Err(format!(
                    "no BYE with the self-test's answer within {} s of the key",
                    limit.as_secs()
                ))
            }
        };
        let same = bye
            .call_id_header()
            .is_ok_and(|c| c.value() == call_id.as_str());
        if !same {
            continue;
        }
        let headers = bye.headers.iter().filter_map(|h| match h {
            Header::Other(name, value) => Some((name.as_str(), value.as_str())),
            _ => None,
        });
        return Answer::from_headers(headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(answered: Result<(), String>, answer: Result<Answer, String>) -> Checked {
        Checked {
            key: '2',
            station: "health".into(),
            answered,
            answer,
        }
    }

    fn answer(hunt: &[&str], trunk: TrunkState) -> Result<Answer, String> {
        Ok(Answer {
            station: "health".into(),
            hunt: hunt.iter().map(|s| s.to_string()).collect(),
            trunk,
        })
    }

    #[test]
    fn a_station_with_someone_reachable_passes_with_names() {
        let names = HashMap::from([("ann".to_string(), "Ann Li".to_string())]);
        let c = checked(Ok(()), answer(&["ann", "bo"], TrunkState::None));
        assert!(c.problems().is_empty());
        assert_eq!(
            c.line(&names),
            "OK   key 2 health: menu answered: yes; first volunteer: Ann Li (ann), then bo; trunk: none"
        );
    }

    #[test]
    fn nobody_reachable_an_unregistered_trunk_and_no_answer_fail() {
        let names = HashMap::new();
        let c = checked(Ok(()), answer(&[], TrunkState::Registered));
        assert_eq!(c.problems(), ["NOBODY reachable"]);
        assert!(c.line(&names).starts_with("FAIL key 2 health:"));
        assert!(c.line(&names).contains("NOBODY reachable"));
        let c = checked(Ok(()), answer(&["ann"], TrunkState::Failed));
        assert_eq!(c.problems(), ["the trunk is not registered"]);
        let c = checked(
            Err("the daemon answered 403 Forbidden".into()),
            Err("x".into()),
        );
        assert_eq!(c.problems().len(), 1);
        assert!(c
            .line(&names)
            .contains("menu answered: no (the daemon answered 403"));
    }

    #[test]
    fn a_wrong_station_fails() {
        let mut a = answer(&["ann"], TrunkState::None).unwrap();
        a.station = "desk".into();
        let c = checked(Ok(()), Ok(a));
        assert!(c.problems()[0].contains("chose station \"desk\""));
    }

    #[test]
    fn a_daemon_on_every_interface_is_called_on_loopback() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            Options::daemon_addr(addr("0.0.0.0:5060")),
            addr("127.0.0.1:5060")
        );
        assert_eq!(Options::daemon_addr(addr("[::]:5060")), addr("[::1]:5060"));
        assert_eq!(
            Options::daemon_addr(addr("192.0.2.1:5070")),
            addr("192.0.2.1:5070")
        );
    }
}
