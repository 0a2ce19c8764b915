//! One media clock for every call.
//!
//! Rather than a timer per call, a single task wakes every 20 ms and sends the next
//! frame of every stream that is playing (RFC 3551 §4.5: 20 ms of G.711 = 160 samples).
//! Streams that are silent only advance their RTP timestamp, so the next talk spurt
//! carries the right time. The per-tick work is a copy of a ready frame and a
//! non-blocking `send_to`: no allocation, no transcoding.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

use crate::media::codec::Codec;
use crate::media::prompts::Prompt;
use crate::media::rtp::RtpSender;

/// 20 ms of audio per packet.
pub const PTIME: Duration = Duration::from_millis(20);
/// Samples per packet at 8 kHz.
pub const SAMPLES_PER_FRAME: usize = 160;

/// How a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayEnd {
    /// The prompt played to its last frame.
    Finished,
    /// Someone stopped it (barge-in, hang-up).
    Stopped,
}

/// A prompt being played into one stream.
struct Playback {
    prompt: Arc<Prompt>,
    frame: usize,
    looped: bool,
    done: Option<oneshot::Sender<PlayEnd>>,
}

/// The sending half of one call's RTP stream, shared by the call and the clock.
pub struct StreamTx {
    socket: Arc<UdpSocket>,
    /// Where to send: the SDP address at first, then wherever the caller's packets
    /// really come from (symmetric RTP, RFC 4961), which fixes NAT one-way audio.
    pub remote: Option<SocketAddr>,
    pub codec: Codec,
    /// When false (call on hold, a=sendonly/inactive from us), nothing is sent.
    pub sending: bool,
    sender: RtpSender,
    playing: Option<Playback>,
}

impl StreamTx {
    pub fn new(socket: Arc<UdpSocket>, remote: Option<SocketAddr>, codec: Codec) -> Self {
        let ssrc: u32 = rand::random();
        let seq: u16 = rand::random();
        let ts: u32 = rand::random();
        StreamTx {
            socket,
            remote,
            codec,
            sending: true,
            sender: RtpSender::new(ssrc, seq, ts),
            playing: None,
        }
    }

    /// Start a prompt; any prompt already playing is stopped first.
    pub fn play(&mut self, prompt: Arc<Prompt>) -> oneshot::Receiver<PlayEnd> {
        self.stop();
        let (tx, rx) = oneshot::channel();
        self.sender.start_talkspurt();
        self.playing = Some(Playback {
            prompt,
            frame: 0,
            looped: false,
            done: Some(tx),
        });
        rx
    }

    /// Play a prompt over and over (ringback) until stopped.
    pub fn play_looped(&mut self, prompt: Arc<Prompt>) {
        self.stop();
        self.sender.start_talkspurt();
        self.playing = Some(Playback {
            prompt,
            frame: 0,
            looped: true,
            done: None,
        });
    }

    /// SSRC, next sequence number and timestamp: where a relay must continue.
    pub fn sender_state(&self) -> (u32, u16, u32) {
        (
            self.sender.ssrc(),
            self.sender.seq(),
            self.sender.timestamp(),
        )
    }

    /// The socket and address relayed packets for this leg go out on.
    pub fn relay_target(&self) -> Option<(Arc<UdpSocket>, SocketAddr)> {
        match (self.remote, self.sending) {
            (Some(addr), true) => Some((self.socket.clone(), addr)),
            _ => None,
        }
    }

    /// Stop whatever is playing (barge-in).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.playing.take() {
            if let Some(done) = p.done.take() {
                let _ = done.send(PlayEnd::Stopped);
            }
        }
    }

    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// One 20 ms tick: send the next frame, or let the timestamp run on in silence.
    fn tick(&mut self, buf: &mut [u8]) -> bool {
        let samples = SAMPLES_PER_FRAME as u32;
        let Some(p) = self.playing.as_mut() else {
            self.sender.skip(samples);
            return false;
        };
        let frames = p.prompt.frames(self.codec);
        let start = p.frame * SAMPLES_PER_FRAME;
        let mut sent = false;
        if let Some(payload) = frames.get(start..start + SAMPLES_PER_FRAME) {
            match (self.remote, self.sending) {
                (Some(remote), true) => {
                    let len =
                        self.sender
                            .next_packet(buf, self.codec.payload_type(), payload, samples);
                    // try_send_to: the clock never waits on one socket.
                    let _ = self.socket.try_send_to(&buf[..len], remote);
                    sent = true;
                }
                _ => self.sender.skip(samples),
            }
            p.frame += 1;
        }
        if (p.frame + 1) * SAMPLES_PER_FRAME > frames.len() {
            if p.looped {
                p.frame = 0;
            } else if let Some(mut p) = self.playing.take() {
                if let Some(done) = p.done.take() {
                    let _ = done.send(PlayEnd::Finished);
                }
            }
        }
        sent
    }
}

/// Figures the clock keeps about itself, for the benchmark and the shutdown log.
#[derive(Debug, Default)]
pub struct ClockStats {
    /// Ticks run.
    pub ticks: AtomicU64,
    /// Packets sent.
    pub packets: AtomicU64,
    /// Ticks whose last packet left more than 2 ms after the tick's slot.
    pub late_ticks: AtomicU64,
    /// The worst delay, slot to last packet, in microseconds.
    pub max_delay_us: AtomicU64,
}

/// The shared clock. Cloning is cheap; the ticking task lives while any clone does.
#[derive(Clone)]
pub struct MediaClock {
    streams: Arc<Mutex<HashMap<u64, Weak<Mutex<StreamTx>>>>>,
    next_id: Arc<AtomicU64>,
    pub stats: Arc<ClockStats>,
}

/// Keeps a stream registered with the clock; dropping it unregisters.
pub struct Registration {
    id: u64,
    streams: Weak<Mutex<HashMap<u64, Weak<Mutex<StreamTx>>>>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(streams) = self.streams.upgrade() {
            if let Ok(mut s) = streams.lock() {
                s.remove(&self.id);
            }
        }
    }
}

impl MediaClock {
    /// Start the clock task on the current tokio runtime.
    pub fn start() -> MediaClock {
        let clock = MediaClock {
            streams: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(1)),
            stats: Arc::new(ClockStats::default()),
        };
        let weak = Arc::downgrade(&clock.streams);
        let stats = clock.stats.clone();
        tokio::spawn(run(weak, stats));
        clock
    }

    pub fn register(&self, stream: &Arc<Mutex<StreamTx>>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.streams.lock() {
            s.insert(id, Arc::downgrade(stream));
        }
        Registration {
            id,
            streams: Arc::downgrade(&self.streams),
        }
    }

    pub fn active_streams(&self) -> usize {
        self.streams.lock().map(|s| s.len()).unwrap_or(0)
    }
}

async fn run(streams: Weak<Mutex<HashMap<u64, Weak<Mutex<StreamTx>>>>>, stats: Arc<ClockStats>) {
    let mut interval = tokio::time::interval(PTIME);
    // Burst: after a stall, catch up so timestamps keep matching wall time.
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut buf = [0u8; 12 + 4 * SAMPLES_PER_FRAME];
    let mut batch: Vec<Arc<Mutex<StreamTx>>> = Vec::new();
    loop {
        let slot: Instant = interval.tick().await;
        let Some(streams) = streams.upgrade() else {
            return;
        };
        batch.clear();
        if let Ok(s) = streams.lock() {
            batch.extend(s.values().filter_map(Weak::upgrade));
        }
        drop(streams);
        let mut sent = 0u64;
        for stream in &batch {
            if let Ok(mut tx) = stream.lock() {
                if tx.tick(&mut buf) {
                    sent += 1;
                }
            }
        }
        batch.clear();
        let delay = Instant::now().saturating_duration_since(slot);
        let delay_us = delay.as_micros() as u64;
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        stats.packets.fetch_add(sent, Ordering::Relaxed);
        stats.max_delay_us.fetch_max(delay_us, Ordering::Relaxed);
        if delay > Duration::from_millis(2) && sent > 0 {
            stats.late_ticks.fetch_add(1, Ordering::Relaxed);
        }
    }
}
