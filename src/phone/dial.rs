//! `hotline phone --dial`: a caller. It dials, presses the keys once the menu
//! plays, stays on the line, hangs up, and reports what it heard, in order.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::sip::Uri;
use rsipstack::transport::SipAddr;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::phone::ear::{format_timeline, Ear};
use crate::phone::media::{self, Media, Sending};
use crate::phone::sip::{self, local_ip_towards, session_id};
use crate::sip::leg::LocalMedia;
use crate::sip::outbound::{Dialer, OutEvent, OutboundLeg};

/// After the second prompt (the menu, after the greeting) starts, wait this long
/// before pressing, as a person listening would.
const KEY_DELAY: Duration = Duration::from_millis(500);
/// Without a second prompt recognised, press anyway this long after the answer.
const KEY_FALLBACK: Duration = Duration::from_secs(40);
/// Between two keys.
const KEY_GAP: Duration = Duration::from_millis(300);

/// What the caller does.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub target: String,
    pub keys: String,
    /// Press this long after the answer instead of when the menu starts.
    pub key_after: Option<Duration>,
    pub hold: Duration,
    pub tone_hz: Option<f64>,
}

/// Why the call went the way it did, for the report and the exit status.
struct Outcome {
    answered_after: Option<Duration>,
    ended: String,
    failed: bool,
}

/// Place the call; the report goes to standard output. Err when the call failed.
pub(crate) async fn run(c: Caller, ear: Ear, stop: CancellationToken) -> Result<(), String> {
    let addr = target_addr(&c.target)?;
    let ip = local_ip_towards(addr)?;
    let stack = sip::start(SocketAddr::new(ip, 0), None).await?;
    let socket = Arc::new(media::bind(ip).await?);
    let local = LocalMedia {
        ip,
        port: socket.local_addr().map(|a| a.port()).unwrap_or(0),
        session_id: session_id(),
        version: 1,
    };
    let dialer = Dialer::new(&stack, "phone".into(), None);
    let started = Instant::now();
    let ear = Arc::new(Mutex::new(ear));
    let mut leg = dialer.dial_keyed(&c.target, false, "hotline phone", local, None)?;
    info!("calling {} from {}", c.target, stack.local);
    let mut call = Call {
        leg: &mut leg,
        socket,
        ear: ear.clone(),
        started,
        media: None,
        tone_hz: c.tone_hz,
        received: Arc::new(Mutex::new(0)),
    };
    let outcome = call.run(&c, &stop).await;
    let packets = call.received.lock().map(|n| *n).unwrap_or(0);
    drop(call);
    stack.shutdown();
    let heard = ear.lock().map(|e| e.finish()).unwrap_or_default();
    println!("hotline phone: called {}", c.target);
    match outcome.answered_after {
        Some(t) => println!("answered after {:.1} s", t.as_secs_f64()),
        None => println!("not answered"),
    }
    println!("{}", outcome.ended);
    println!("heard, in order (seconds since dialling):");
    print!("{}", format_timeline(&heard));
    if heard.is_empty() {
        println!("    nothing");
    }
    if outcome.failed {
        return Err(format!("hotline phone: the call failed: {}", outcome.ended));
    }
    if packets == 0 {
        return Err(
            "hotline phone: no audio came back (RTP blocked, or a wrong address in the SDP)".into(),
        );
    }
    Ok(())
}

/// Where the INVITE goes, for finding our own address towards it.
fn target_addr(target: &str) -> Result<SocketAddr, String> {
    let uri = Uri::try_from(target).map_err(|e| format!("--dial {target:?}: {e}"))?;
    let sip = SipAddr::try_from(&uri).map_err(|e| format!("--dial {target:?}: {e}"))?;
    let text = sip.addr.to_string();
    use std::net::ToSocketAddrs;
    let resolve = |t: &str| t.to_socket_addrs().ok().and_then(|mut a| a.next());
    resolve(&text)
        .or_else(|| resolve(&format!("{text}:5060")))
        .ok_or_else(|| format!("--dial {target:?}: cannot resolve {text}"))
}

/// The call in progress.
struct Call<'a> {
    leg: &'a mut OutboundLeg,
    socket: Arc<tokio::net::UdpSocket>,
    ear: Arc<Mutex<Ear>>,
    started: Instant,
    media: Option<Media>,
    tone_hz: Option<f64>,
    received: Arc<Mutex<u64>>,
}

impl Call<'_> {
    async fn run(&mut self, c: &Caller, stop: &CancellationToken) -> Outcome {
        let mut out = Outcome {
            answered_after: None,
            ended: String::new(),
            failed: true,
        };
        // Until answered.
        loop {
            let ev = tokio::select! {
                ev = self.leg.next_event() => ev,
                _ = stop.cancelled() => {
                    self.leg.cancel().await;
                    out.ended = "stopped before the answer (CANCEL sent)".into();
                    return out;
                }
            };
            match ev {
                OutEvent::Ringing => info!("ringing"),
                OutEvent::EarlyMedia(Ok(n)) => self.listen(&n),
                OutEvent::Answered(Ok(n)) => {
                    self.listen(&n);
                    out.answered_after = Some(self.started.elapsed());
                    info!("answered");
                    break;
                }
                OutEvent::Answered(Err(e)) | OutEvent::EarlyMedia(Err(e)) => {
                    self.leg.hangup().await;
                    out.ended = format!("their audio is unusable: {e}");
                    return out;
                }
                OutEvent::Rejected { status, .. } => {
                    out.ended = format!("refused with SIP {status}");
                    return out;
                }
                OutEvent::Failed(e) => {
                    out.ended = format!("no answer: {e}");
                    return out;
                }
                OutEvent::HungUp => {
                    out.ended = "they hung up at once".into();
                    return out;
                }
                OutEvent::Dtmf(_) | OutEvent::MediaChanged(_) => {}
            }
        }
        let answered = Instant::now();
        // Until the keys are pressed.
        for (i, key) in c.keys.chars().enumerate() {
            let wait = match (i, c.key_after) {
                (0, Some(after)) => Some(answered + after),
                (0, None) => None,
                _ => Some(Instant::now() + KEY_GAP),
            };
            if let Some(ended) = self.until_key_time(wait, answered, stop).await {
                out.ended = format!("{ended} before we pressed {key}");
                return out;
            }
            match self.media.as_ref().map(|m| m.press(key)) {
                Some(Ok(())) => {
                    let at = self.ms();
                    if let Ok(mut e) = self.ear.lock() {
                        e.pressed(at, key);
                    }
                    info!("pressed {key}");
                }
                Some(Err(e)) => {
                    self.leg.hangup().await;
                    out.ended = format!("could not press {key}: {e}");
                    return out;
                }
                None => {}
            }
        }
        out.failed = false;
        // On the line.
        let held = tokio::select! {
            _ = sleep(c.hold) => None,
            ended = self.until_hung_up() => Some(ended),
            _ = stop.cancelled() => None,
        };
        out.ended = match held {
            Some(ended) => format!(
                "{ended} after {:.1} s",
                self.started.elapsed().as_secs_f64()
            ),
            None => {
                self.leg.hangup().await;
                format!(
                    "we hung up after {:.1} s",
                    self.started.elapsed().as_secs_f64()
                )
            }
        };
        out
    }

    /// Wait until `at`, or (for `None`) until the menu has been playing for
    /// [`KEY_DELAY`]. Some(words) when the call ended meanwhile.
    async fn until_key_time(
        &mut self,
        at: Option<Instant>,
        answered: Instant,
        stop: &CancellationToken,
    ) -> Option<String> {
        let mut menu_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let due = match at {
                Some(at) => now >= at,
                None => {
                    let second = self.ear.lock().map(|e| e.prompts_so_far().len() >= 2);
                    if second.unwrap_or(false) {
                        menu_since.get_or_insert(now);
                    }
                    if now >= answered + KEY_FALLBACK {
                        warn!("no menu recognised after the greeting; pressing anyway");
                        true
                    } else {
                        menu_since.is_some_and(|t| now >= t + KEY_DELAY)
                    }
                }
            };
            if due {
                return None;
            }
            tokio::select! {
                _ = sleep(Duration::from_millis(20)) => {}
                ended = self.until_hung_up() => return Some(ended),
                _ = stop.cancelled() => {
                    self.leg.hangup().await;
                    return Some("stopped".into());
                }
            }
        }
    }

    /// Wait for the far end to end the call; its words. Cancel-safe.
    async fn until_hung_up(&mut self) -> String {
        loop {
            match self.leg.next_event().await {
                OutEvent::HungUp => return "they hung up".into(),
                OutEvent::Failed(e) => return format!("the call failed: {e}"),
                OutEvent::MediaChanged(n) => self.listen(&n),
                _ => {}
            }
        }
    }

    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Send to and hear from the negotiated address (again, when it moved).
    fn listen(&mut self, n: &crate::sip::sdp::Negotiated) {
        let (ear, started, count) = (self.ear.clone(), self.started, self.received.clone());
        self.media = Some(Media::start(
            self.socket.clone(),
            Sending {
                remote: n.remote,
                codec: n.codec,
                payload_type: n.payload_type,
                telephone_event: n.telephone_event,
                tone_hz: self.tone_hz,
            },
            move |at, p| {
                let ms = at.saturating_duration_since(started).as_millis() as u64;
                if let Ok(mut c) = count.lock() {
                    *c += 1;
                }
                if let Ok(mut e) = ear.lock() {
                    e.frame(ms, p.payload_type, p.timestamp, p.ssrc, p.payload);
                }
            },
        ));
    }
}
