//! The phone's media: a receiver that records every RTP packet and decodes G.711, and a
//! 20 ms pacer that sends silence and whatever the DTMF functions queued.
//!
//! One clock drives everything sent, so audio and telephone-event packets share one
//! sequence space and one timestamp clock, as a real phone's would.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use super::error::{PhoneError, Result};
use super::g711::{decode, encode, silence_byte};
use super::rtp::{build_rtp, parse_rtp, RtpPacket};
use super::srtp::PhoneSrtp;

/// Samples in one 20 ms G.711 frame.
pub const FRAME_SAMPLES: usize = 160;
pub const PTIME: Duration = Duration::from_millis(20);

/// Lock a std mutex, ignoring poisoning: a panicked test task must not hide the real failure.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One packet for the pacer to send at its next tick.
#[derive(Clone, Debug)]
pub struct Frame {
    pub pt: u8,
    pub marker: bool,
    pub payload: Vec<u8>,
    /// A telephone-event packet: it carries the timestamp of its event's first packet
    /// (the one with the marker), RFC 4733 section 2.5.1.
    pub event: bool,
}

#[derive(Default)]
struct Received {
    packets: Vec<RtpPacket>,
    pcm: Vec<i16>,
    /// Packets dropped because they did not unprotect (SRTP legs only).
    srtp_failures: u64,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    pushed: u64,
    /// Audio looped in place of silence (a test tone standing for a voice).
    fill: Option<Vec<i16>>,
    /// When the first packet of each RFC 4733 event was handed to the socket.
    event_starts: Vec<Instant>,
}

/// Media of one call. Dropping it stops both tasks.
pub struct Media {
    received: Arc<Mutex<Received>>,
    queue: Arc<Mutex<Queue>>,
    sent: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
    pub remote: Option<SocketAddr>,
    pub audio_pt: u8,
    pub event_pt: u8,
}

impl Media {
    /// Start receiving on `sock`, and, when `remote` is known, pacing packets to it.
    /// Silence goes out every 20 ms only if `send_silence`; queued frames always do.
    /// Sending stops for good once `stop` turns true (BYE sent or received).
    pub fn start(
        sock: Arc<UdpSocket>,
        remote: Option<SocketAddr>,
        audio_pt: u8,
        event_pt: u8,
        send_silence: bool,
        stop: watch::Receiver<bool>,
    ) -> Media {
        Self::start_srtp(sock, remote, (audio_pt, event_pt), send_silence, stop, None)
    }

    /// [`Media::start`], with every packet protected and unprotected by `srtp`.
    pub fn start_srtp(
        sock: Arc<UdpSocket>,
        remote: Option<SocketAddr>,
        (audio_pt, event_pt): (u8, u8),
        send_silence: bool,
        stop: watch::Receiver<bool>,
        srtp: Option<Arc<PhoneSrtp>>,
    ) -> Media {
        let received = Arc::new(Mutex::new(Received::default()));
        let queue = Arc::new(Mutex::new(Queue::default()));
        let (sent_tx, sent) = watch::channel(0u64);
        let mut tasks = vec![tokio::spawn(receive(
            sock.clone(),
            received.clone(),
            srtp.clone(),
        ))];
        if let Some(remote) = remote {
            tasks.push(tokio::spawn(pace(
                (sock, srtp),
                remote,
                audio_pt,
                send_silence,
                queue.clone(),
                sent_tx,
                stop,
            )));
        }
        Media {
            received,
            queue,
            sent,
            tasks,
            remote,
            audio_pt,
            event_pt,
        }
    }

    /// Queue frames and wait until the pacer has sent them all.
    pub async fn send_frames(&self, frames: Vec<Frame>) -> Result<()> {
        if self.remote.is_none() {
            return Err(PhoneError::Protocol(
                "no remote RTP address to send to".into(),
            ));
        }
        let budget = PTIME * (frames.len() as u32 + 50);
        let target = {
            let mut q = lock(&self.queue);
            q.pushed += frames.len() as u64;
            q.frames.extend(frames);
            q.pushed
        };
        let mut sent = self.sent.clone();
        match timeout(budget, async {
            sent.wait_for(|n| *n >= target).await.map(|_| ())
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PhoneError::Protocol(
                "RTP sending stopped (call ended)".into(),
            )),
            Err(_) => Err(PhoneError::Timeout("RTP frames not sent".into())),
        }
    }

    /// Loop `pcm` (8 kHz) in place of silence from the next tick on, `None` for silence
    /// again. Queued frames (DTMF) still go first. A tone of whole cycles per loop
    /// (e.g. 1 s of any whole-Hz sine) sounds continuous.
    pub fn set_fill(&self, pcm: Option<Vec<i16>>) {
        lock(&self.queue).fill = pcm.filter(|p| !p.is_empty());
    }

    pub fn packets(&self) -> Vec<RtpPacket> {
        lock(&self.received).packets.clone()
    }

    /// When the first packet of each RFC 4733 event sent so far left, in order.
    pub fn event_starts(&self) -> Vec<Instant> {
        lock(&self.queue).event_starts.clone()
    }

    pub fn pcm(&self) -> Vec<i16> {
        lock(&self.received).pcm.clone()
    }

    /// Packets that arrived on an SRTP leg and did not authenticate.
    pub fn srtp_failures(&self) -> u64 {
        lock(&self.received).srtp_failures
    }

    /// Stop sending (receiving goes on, so tests can still inspect late packets).
    pub fn stop_sending(&mut self) {
        for t in self.tasks.iter().skip(1) {
            t.abort();
        }
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn receive(
    sock: Arc<UdpSocket>,
    received: Arc<Mutex<Received>>,
    srtp: Option<Arc<PhoneSrtp>>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let n = match sock.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            // Linux reports ICMP errors from earlier sends here; keep listening.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let plain = match &srtp {
            None => buf[..n].to_vec(),
            Some(s) => match s.unprotect(&buf[..n]) {
                Some(p) => p,
                None => {
                    lock(&received).srtp_failures += 1;
                    continue;
                }
            },
        };
        if let Some(p) = parse_rtp(&plain, Instant::now()) {
            let mut r = lock(&received);
            let pcm = decode(p.pt, &p.payload);
            r.pcm.extend(pcm);
            r.packets.push(p);
        }
    }
}

async fn pace(
    (sock, srtp): (Arc<UdpSocket>, Option<Arc<PhoneSrtp>>),
    remote: SocketAddr,
    audio_pt: u8,
    send_silence: bool,
    queue: Arc<Mutex<Queue>>,
    sent_tx: watch::Sender<u64>,
    stop: watch::Receiver<bool>,
) {
    let mut fill_pos = 0usize;
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut clock: u32 = rand::random::<u32>() & 0x7FFF_FFFF;
    let mut event_ts = clock;
    let mut sent = 0u64;
    let silence = vec![silence_byte(audio_pt); FRAME_SAMPLES];
    let mut tick = tokio::time::interval(PTIME);
    loop {
        tick.tick().await;
        if *stop.borrow() {
            return;
        }
        // A queued frame, else the next 20 ms of the fill, else silence (if asked).
        let (frame, fill_frame) = {
            let mut q = lock(&queue);
            match q.frames.pop_front() {
                Some(f) => (Some(f), None),
                None => (
                    None,
                    q.fill.as_ref().map(|pcm| {
                        let frame: Vec<i16> = (0..FRAME_SAMPLES)
                            .map(|i| pcm[(fill_pos + i) % pcm.len()])
                            .collect();
                        fill_pos = (fill_pos + FRAME_SAMPLES) % pcm.len();
                        frame
                    }),
                ),
            }
        };
        let pkt = match (frame, fill_frame) {
            (Some(f), _) => {
                sent += 1;
                if f.event && f.marker {
                    event_ts = clock;
                }
                let ts = if f.event { event_ts } else { clock };
                Some(build_rtp(f.pt, f.marker, seq, ts, ssrc, &f.payload))
            }
            (None, Some(pcm)) => {
                let payload = encode(audio_pt, &pcm);
                Some(build_rtp(audio_pt, false, seq, clock, ssrc, &payload))
            }
            (None, None) if send_silence => {
                Some(build_rtp(audio_pt, false, seq, clock, ssrc, &silence))
            }
            (None, None) => None,
        };
        if let Some(pkt) = pkt {
            seq = seq.wrapping_add(1);
            let event_start = pkt[1] & 0x80 != 0 && pkt[1] & 0x7F != audio_pt;
            let at = Instant::now();
            // A lost packet is the daemon's problem to survive, not ours to report.
            let pkt = match &srtp {
                Some(s) => s.protect(&pkt),
                None => pkt,
            };
            let _ = sock.send_to(&pkt, remote).await;
            if event_start {
                lock(&queue).event_starts.push(at);
            }
        }
        clock = clock.wrapping_add(FRAME_SAMPLES as u32);
        sent_tx.send_replace(sent);
    }
}
