//! One media clock for every call.
//!
//! Rather than a timer per call, a single thread sends the next frame of every
//! stream that is playing, each stream every 20 ms (RFC 3551 §4.5: 20 ms of G.711 =
//! 160 samples), the streams spread over the 20 ms so no tick sends them all.
//! Streams that are silent only advance their RTP timestamp, so the next talk spurt
//! carries the right time. The per-tick work is a copy of a ready frame and a
//! non-blocking `send_to`: no allocation, no transcoding.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use std::time::Instant;

use tokio::sync::oneshot;

use crate::media::codec::Codec;
use crate::media::outstream::OutStream;
use crate::media::prompts::Prompt;
use crate::media::relay::RelayDirection;
use crate::media::rtp::RtpView;
use crate::media::socket::RtpSocket;
pub(crate) use crate::media::{FRAME_SAMPLES as SAMPLES_PER_FRAME, PTIME};

/// How a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlayEnd {
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

/// The sending half of one call leg's RTP, shared by the call, the clock (prompts,
/// tones) and the other leg's receive task (relayed audio). Every packet the leg
/// hears is numbered by its one [`OutStream`] and leaves through [`StreamTx::send`].
pub(crate) struct StreamTx {
    socket: Arc<RtpSocket>,
    /// Where to send: the SDP address at first, then wherever the caller's packets
    /// really come from (symmetric RTP, RFC 4961), which fixes NAT one-way audio.
    pub remote: Option<SocketAddr>,
    pub codec: Codec,
    /// The payload type the far end expects for `codec` (from its SDP; RFC 3264 6.1).
    pub payload_type: u8,
    /// When false (call on hold, a=sendonly/inactive from us), nothing is sent.
    sending: bool,
    out: OutStream,
    playing: Option<Playback>,
}

impl StreamTx {
    pub(crate) fn new(socket: Arc<RtpSocket>, remote: Option<SocketAddr>, codec: Codec) -> Self {
        StreamTx {
            socket,
            remote,
            codec,
            payload_type: codec.payload_type(),
            sending: true,
            out: OutStream::random(),
            playing: None,
        }
    }

    /// The leg's outgoing stream (for RTCP sender reports and tests).
    #[cfg(test)]
    pub(crate) fn out(&self) -> &OutStream {
        &self.out
    }

    /// Hold (false) or unhold (true). After a hold the first packet, whatever
    /// its source, starts a new talk spurt with the time of the hold in its timestamp.
    pub(crate) fn set_sending(&mut self, sending: bool) {
        if sending != self.sending {
            self.out.switch();
        }
        self.sending = sending;
    }

    /// Start a prompt; any prompt already playing is stopped first.
    pub(crate) fn play(&mut self, prompt: Arc<Prompt>) -> oneshot::Receiver<PlayEnd> {
        let (tx, rx) = oneshot::channel();
        self.start(prompt, false, Some(tx));
        rx
    }

    /// Play a prompt over and over (ringback) until stopped.
    pub(crate) fn play_looped(&mut self, prompt: Arc<Prompt>) {
        self.start(prompt, true, None);
    }

    fn start(&mut self, prompt: Arc<Prompt>, looped: bool, done: Option<oneshot::Sender<PlayEnd>>) {
        self.stop();
        self.out.switch();
        self.playing = Some(Playback {
            prompt,
            frame: 0,
            looped,
            done,
        });
    }

    /// The leg's outgoing SSRC (the peer's reports about us carry it).
    pub(crate) fn ssrc(&self) -> u32 {
        self.out.ssrc()
    }

    /// What this leg has sent, for its RTCP sender report at `now`.
    pub(crate) fn sending(&self, now: Instant) -> crate::media::rtcp::Sending {
        let sent = self.out.sent();
        crate::media::rtcp::Sending {
            ssrc: self.out.ssrc(),
            packets: sent.packets,
            octets: sent.octets,
            rtp_time: self.out.ts_at(now),
        }
    }

    /// This leg's RTP socket (where SRTP is keyed).
    pub(crate) fn socket(&self) -> Arc<RtpSocket> {
        self.socket.clone()
    }

    /// Stop whatever is playing (barge-in); what comes next starts a new talk spurt.
    pub(crate) fn stop(&mut self) {
        if let Some(mut p) = self.playing.take() {
            self.out.switch();
            if let Some(done) = p.done.take() {
                let _ = done.send(PlayEnd::Stopped);
            }
        }
    }

    /// Another source feeds the stream from now on (a bridge, early media).
    pub(crate) fn switch(&mut self) {
        self.out.switch();
    }

    /// Relay one packet received on the other leg into this one; true if sent.
    /// Nothing is numbered while nothing can be sent (on hold, no address yet),
    /// so the far end never sees a gap for packets it was never going to get.
    #[cfg(test)]
    pub(crate) fn relay(
        &mut self,
        legs: &RelayDirection,
        packet: &[u8],
        now: Instant,
        buf: &mut [u8],
    ) -> bool {
        let Some(rtp) = crate::media::rtp::parse(packet) else {
            return false;
        };
        let audio = legs.from.accepts_audio(rtp.payload_type);
        if !audio && !legs.from.accepts_event(rtp.payload_type) {
            return false;
        }
        self.relay_view(legs, &rtp, audio, now, buf)
    }

    /// [`relay`](Self::relay) for a packet the receive side already classified.
    pub(crate) fn relay_view(
        &mut self,
        legs: &RelayDirection,
        rtp: &RtpView<'_>,
        audio: bool,
        now: Instant,
        buf: &mut [u8],
    ) -> bool {
        let Some(remote) = self.remote.filter(|_| self.sending) else {
            return false;
        };
        match self.out.forward_view(legs, rtp, audio, now, buf) {
            Some(n) => {
                self.send(&buf[..n], remote);
                true
            }
            None => false,
        }
    }

    /// The one place a leg's RTP leaves (SRTP `protect` happens below, in
    /// `RtpSocket::try_send_to`, once the leg is keyed). Sends now or not at all:
    /// the clock never waits on one socket.
    fn send(&self, packet: &[u8], remote: SocketAddr) {
        send(&self.socket, packet, remote);
    }

    /// One 20 ms tick at `now`: send the next frame of what is playing.
    fn tick(&mut self, buf: &mut [u8], now: Instant) -> bool {
        let Some(p) = self.playing.as_mut() else {
            return false;
        };
        let frames = p.prompt.frames(self.codec);
        let start = p.frame * SAMPLES_PER_FRAME;
        let mut sent = false;
        if let Some(payload) = frames.get(start..start + SAMPLES_PER_FRAME) {
            if let (Some(remote), true) = (self.remote, self.sending) {
                let len = self.out.next_frame(self.payload_type, payload, now, buf);
                if len > 0 {
                    send(&self.socket, &buf[..len], remote);
                    sent = true;
                }
            }
            p.frame += 1;
        }
        if (p.frame + 1) * SAMPLES_PER_FRAME > frames.len() {
            if p.looped {
                p.frame = 0;
            } else if let Some(mut p) = self.playing.take() {
                self.out.switch();
                if let Some(done) = p.done.take() {
                    let _ = done.send(PlayEnd::Finished);
                }
            }
        }
        sent
    }
}

/// Where every RTP packet of a leg leaves: [`StreamTx::send`] and the clock's tick.
fn send(socket: &RtpSocket, packet: &[u8], remote: SocketAddr) {
    let _ = socket.try_send_to(packet, remote);
}

/// Figures the clock keeps about itself, for the benchmark and the shutdown log.
#[derive(Debug, Default)]
pub(crate) struct ClockStats {
    /// Phase ticks run (one every millisecond).
    pub ticks: AtomicU64,
    /// Packets sent.
    pub packets: AtomicU64,
    /// Phase ticks whose last packet left more than 2 ms after the slot.
    pub late_ticks: AtomicU64,
    /// The worst delay, slot to last packet, in microseconds.
    pub max_delay_us: AtomicU64,
}

/// Streams are spread over this many phases of the 20 ms period, one phase per
/// millisecond, so each tick sends about 1/20 of the packets: with 2,000 calls,
/// 100 sends a millisecond instead of 2,000 in a burst that would leave the last
/// ones 10 ms late.
pub(crate) const PHASES: usize = 20;

type Registry = Mutex<Vec<Vec<(u64, Weak<Mutex<StreamTx>>)>>>;

/// The shared clock. Cloning is cheap; its thread lives while any clone does.
#[derive(Clone)]
pub(crate) struct MediaClock {
    streams: Arc<Registry>,
    next_id: Arc<AtomicU64>,
    pub stats: Arc<ClockStats>,
}

/// Keeps a stream registered with the clock; dropping it unregisters.
pub(crate) struct Registration {
    id: u64,
    phase: usize,
    streams: Weak<Registry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(streams) = self.streams.upgrade() {
            if let Ok(mut s) = streams.lock() {
                if let Some(bucket) = s.get_mut(self.phase) {
                    bucket.retain(|(id, _)| *id != self.id);
                }
            }
        }
    }
}

impl MediaClock {
    /// Start the clock on a thread of its own, so SIP work on the async runtime
    /// never delays a packet.
    pub(crate) fn start() -> MediaClock {
        let clock = MediaClock {
            streams: Arc::new(Mutex::new(vec![Vec::new(); PHASES])),
            next_id: Arc::new(AtomicU64::new(1)),
            stats: Arc::new(ClockStats::default()),
        };
        let weak = Arc::downgrade(&clock.streams);
        let stats = clock.stats.clone();
        let spawned = std::thread::Builder::new()
            .name("media-clock".into())
            .spawn(move || run(weak, stats));
        if let Err(e) = spawned {
            tracing::error!("cannot start the media clock thread: {e}; no audio will play");
        }
        clock
    }

    /// Put a stream on the clock, in the phase with the fewest streams.
    pub(crate) fn register(&self, stream: &Arc<Mutex<StreamTx>>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut phase = 0;
        if let Ok(mut s) = self.streams.lock() {
            phase = (0..s.len()).min_by_key(|&p| s[p].len()).unwrap_or(0);
            s[phase].push((id, Arc::downgrade(stream)));
        }
        Registration {
            id,
            phase,
            streams: Arc::downgrade(&self.streams),
        }
    }
}

/// Ask the kernel to run the clock thread ahead of ordinary work (nice -10), as
/// Asterisk does for its timing threads. Needs CAP_SYS_NICE (root, or
/// `AmbientCapabilities=CAP_SYS_NICE` under systemd); without it the clock runs at
/// normal priority and only the benchmark's pacing figures show the difference.
fn raise_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, -10)
        };
        if rc != 0 {
            tracing::info!(
                "media clock runs at normal priority (no CAP_SYS_NICE); pacing may suffer under load"
            );
        }
    }
}

/// The clock thread: every millisecond, one phase's streams each send a frame.
fn run(streams: Weak<Registry>, stats: Arc<ClockStats>) {
    raise_priority();
    let tick = PTIME / PHASES as u32;
    let mut buf = [0u8; 12 + 4 * SAMPLES_PER_FRAME];
    let mut batch: Vec<Arc<Mutex<StreamTx>>> = Vec::new();
    let mut next = Instant::now() + tick;
    let mut phase = 0usize;
    loop {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let slot = next;
        let Some(registry) = streams.upgrade() else {
            return;
        };
        batch.clear();
        if let Ok(s) = registry.lock() {
            if let Some(bucket) = s.get(phase) {
                batch.extend(bucket.iter().filter_map(|(_, w)| w.upgrade()));
            }
        }
        drop(registry);
        let mut sent = 0u64;
        for stream in &batch {
            if let Ok(mut tx) = stream.lock() {
                if tx.tick(&mut buf, slot) {
                    sent += 1;
                }
            }
        }
        batch.clear();
        let delay = Instant::now().saturating_duration_since(slot);
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        stats.packets.fetch_add(sent, Ordering::Relaxed);
        stats
            .max_delay_us
            .fetch_max(delay.as_micros() as u64, Ordering::Relaxed);
        if delay > Duration::from_millis(2) && sent > 0 {
            stats.late_ticks.fetch_add(1, Ordering::Relaxed);
        }
        phase = (phase + 1) % PHASES;
        next += tick;
        // After a long stall (a suspended process), catch up at most one period.
        let now = Instant::now();
        if now > next + PTIME {
            next = now;
        }
    }
}

#[cfg(test)]
mod tests;
