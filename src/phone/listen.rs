//! `hotline phone --listen`: a volunteer's phone. It rings, answers after a while,
//! plays a tone, and says once a second what it hears from the caller.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::media::codec::Codec;
use crate::media::dtmf::Rfc4733Detector;
use crate::phone::ear::Meter;
use crate::phone::media::{self, Media, Sending};
use crate::phone::sip::{self, session_id};
use crate::sip::accept::{accept, Accepted};
use crate::sip::leg::{dialed_of, LegEvent, LocalMedia};
use crate::sip::sdp::Negotiated;

/// How the volunteer phone behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Volunteer {
    pub listen: SocketAddr,
    pub answer_after: Duration,
    pub tone_hz: Option<f64>,
    /// Exit after this many calls have ended.
    pub calls: Option<u32>,
}

/// Take calls until `stop` (Ctrl-C) or `--calls` calls have ended.
pub(crate) async fn run(v: Volunteer, stop: CancellationToken) -> Result<(), String> {
    let (invites, mut incoming) = mpsc::channel(8);
    let stack = sip::start(v.listen, Some(invites)).await?;
    let tone = match v.tone_hz {
        Some(hz) => format!("a {hz} Hz tone"),
        None => "silence".into(),
    };
    info!(
        "volunteer phone listening on {} (UDP and TCP): answers after {} s and plays {tone}; \
         a roster line for it: phone = \"sip:1001@{}\"",
        stack.local,
        v.answer_after.as_secs_f64(),
        stack.local
    );
    let (ended_tx, mut ended) = mpsc::channel::<()>(8);
    let mut done = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(()) = ended.recv() => {
                done += 1;
                if v.calls.is_some_and(|n| done >= n) {
                    info!("{done} call(s) taken; stopping");
                    break;
                }
            }
            Some(tx) = incoming.recv() => {
                let dialed = dialed_of(&tx.original);
                let Some(call) = accept(&stack, &[dialed], false, tx).await else {
                    continue;
                };
                let (stop, ended_tx, ip) = (stop.clone(), ended_tx.clone(), stack.local.ip());
                tokio::spawn(async move {
                    take_call(call, v, ip, stop).await;
                    let _ = ended_tx.send(()).await;
                });
            }
        }
    }
    stack.shutdown();
    info!("volunteer phone stopped");
    Ok(())
}

async fn take_call(call: Accepted, v: Volunteer, ip: std::net::IpAddr, stop: CancellationToken) {
    let Accepted {
        mut leg,
        offer,
        transaction,
        claim: _claim,
    } = call;
    tokio::spawn(transaction.run());
    if offer.is_some_and(|n| n.srtp.is_some()) {
        warn!("refusing a call that offers SRTP: the test phone sends plain RTP only");
        leg.refuse_unavailable();
        return;
    }
    info!(
        "incoming call from {:?} for {:?}: ringing, answering in {} s",
        leg.caller,
        leg.dialed,
        v.answer_after.as_secs_f64()
    );
    leg.ring();
    tokio::select! {
        _ = tokio::time::sleep(v.answer_after) => {}
        ev = leg.next_event() => {
            info!("the call ended before we answered: {}", words(&ev));
            return;
        }
        _ = stop.cancelled() => return,
    }
    let socket = match media::bind(ip).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            warn!("{e}; refusing the call");
            leg.refuse_unavailable();
            return;
        }
    };
    let local = LocalMedia {
        ip,
        port: socket.local_addr().map(|a| a.port()).unwrap_or(0),
        session_id: session_id(),
        version: 1,
    };
    let negotiated = match leg.answer(local, offer).await {
        Ok(Some(n)) => n,
        Ok(None) => match offer {
            Some(n) => n,
            None => return,
        },
        Err(ev) => {
            info!("could not answer: {}", words(&ev));
            return;
        }
    };
    let answered = Instant::now();
    info!(
        "answered: sending {} to {}",
        negotiated.codec.name(),
        negotiated.remote
    );
    let meter = Arc::new(Mutex::new(Meter::default()));
    let mut _media = start_media(&socket, &negotiated, v.tone_hz, &meter);
    let mut second =
        tokio::time::interval_at(answered + Duration::from_secs(1), Duration::from_secs(1));
    let ended = loop {
        tokio::select! {
            _ = second.tick() => {
                let heard = meter.lock().map(|mut m| m.take()).unwrap_or_default();
                info!("{:>4} s: hearing {heard}", answered.elapsed().as_secs());
            }
            ev = leg.next_event() => match ev {
                LegEvent::Dtmf(key) => info!("the caller pressed {key} (SIP INFO)"),
                LegEvent::MediaChanged(n) => {
                    info!("the call's audio moved to {}", n.remote);
                    _media = start_media(&socket, &n, v.tone_hz, &meter);
                }
                ev => break words(&ev),
            },
            _ = stop.cancelled() => {
                leg.hangup().await;
                break "we hung up (stopped)".into();
            }
        }
    };
    info!(
        "call ended after {:.1} s: {ended}",
        answered.elapsed().as_secs_f64()
    );
}

fn start_media(
    socket: &Arc<tokio::net::UdpSocket>,
    n: &Negotiated,
    tone_hz: Option<f64>,
    meter: &Arc<Mutex<Meter>>,
) -> Media {
    let (meter, te) = (meter.clone(), n.telephone_event);
    let mut keys = Rfc4733Detector::new();
    Media::start(
        socket.clone(),
        Sending {
            remote: n.remote,
            codec: n.codec,
            payload_type: n.payload_type,
            telephone_event: n.telephone_event,
            tone_hz,
        },
        move |_, p| {
            if Some(p.payload_type) == te {
                if let Some(key) = keys.on_packet(p.timestamp, p.payload) {
                    info!("the caller pressed {key} (RFC 4733)");
                }
            } else if Codec::from_payload_type(p.payload_type).is_some() {
                if let Ok(mut m) = meter.lock() {
                    m.frame(p.payload_type, p.payload);
                }
            }
        },
    )
}

/// A leg's last event in words.
fn words(ev: &LegEvent) -> String {
    match ev {
        LegEvent::HungUp => "the caller hung up".into(),
        LegEvent::Failed(why) => format!("the call failed: {why}"),
        other => format!("{other:?}"),
    }
}
