//! The test phone's audio: one RTP socket, a task that sends a 20 ms frame every
//! 20 ms (a sine tone or silence, and RFC 4733 key presses when asked), and a task
//! that hands every received packet to the caller's closure (the ear or the meter).

use std::f64::consts::TAU;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::media::codec::Codec;
use crate::media::dtmf::{encode_event, key_to_event};
use crate::media::rtp::{parse, write_header, RtpView, RTP_HEADER_LEN};
use crate::media::tone::TONE_AMPLITUDE;
use crate::media::{FRAME_SAMPLES, PTIME, SAMPLE_RATE};

/// A key press lasts 100 ms (5 frames), as most phones send it.
const KEY_FRAMES: u16 = 5;
/// Volume field of our telephone-events: -10 dBm0 (RFC 4733 section 2.3.2).
const KEY_VOLUME: u8 = 10;

/// An RTP socket on `ip`, on a port the system picks.
pub(crate) async fn bind(ip: IpAddr) -> Result<UdpSocket, String> {
    UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| format!("cannot open an RTP port on {ip}: {e}"))
}

/// What and where to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sending {
    pub remote: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
    /// The telephone-event payload type they accept, if any.
    pub telephone_event: Option<u8>,
    /// A sine tone of this frequency, or silence.
    pub tone_hz: Option<f64>,
}

/// The audio of one call. Dropping it stops both tasks.
pub(crate) struct Media {
    keys: mpsc::UnboundedSender<char>,
    sender: JoinHandle<()>,
    receiver: JoinHandle<()>,
    can_press: bool,
}

impl Drop for Media {
    fn drop(&mut self) {
        self.sender.abort();
        self.receiver.abort();
    }
}

impl Media {
    /// Start sending as `sending` says, and pass each received RTP packet, with
    /// its arrival time, to `heard`.
    pub(crate) fn start(
        socket: Arc<UdpSocket>,
        sending: Sending,
        heard: impl FnMut(Instant, RtpView<'_>) + Send + 'static,
    ) -> Media {
        let (keys, queue) = mpsc::unbounded_channel();
        Media {
            keys,
            sender: tokio::spawn(send_loop(socket.clone(), sending, queue)),
            receiver: tokio::spawn(receive_loop(socket, heard)),
            can_press: sending.telephone_event.is_some(),
        }
    }

    /// Queue a key press (RFC 4733); Err when the other side takes no telephone-events.
    pub(crate) fn press(&self, key: char) -> Result<(), String> {
        if !self.can_press {
            return Err("the other side accepts no RFC 4733 telephone-events".into());
        }
        if key_to_event(key).is_none() {
            return Err(format!("{key:?} is not a phone key (0-9, *, #, A-D)"));
        }
        self.keys
            .send(key)
            .map_err(|_| "the audio sender has stopped".to_string())
    }
}

/// Builds and sends our packets.
struct Sender {
    socket: Arc<UdpSocket>,
    s: Sending,
    seq: u16,
    ts: u32,
    ssrc: u32,
    /// Samples of tone sent so far (the sine's phase).
    phase: u64,
    buf: [u8; RTP_HEADER_LEN + FRAME_SAMPLES],
}

impl Sender {
    fn send(&mut self, marker: bool, pt: u8, ts: u32, payload_len: usize) {
        write_header(&mut self.buf, marker, pt, self.seq, ts, self.ssrc);
        self.seq = self.seq.wrapping_add(1);
        // UDP: a full socket buffer loses the frame, as on any network.
        let _ = self
            .socket
            .try_send_to(&self.buf[..RTP_HEADER_LEN + payload_len], self.s.remote);
    }

    fn audio(&mut self) {
        let mut pcm = [0i16; FRAME_SAMPLES];
        if let Some(hz) = self.s.tone_hz {
            for (i, s) in pcm.iter_mut().enumerate() {
                let t = (self.phase + i as u64) as f64 / f64::from(SAMPLE_RATE);
                *s = (TONE_AMPLITUDE * (TAU * hz * t).sin()).round() as i16;
            }
            self.phase += FRAME_SAMPLES as u64;
        }
        self.s
            .codec
            .encode_into(&pcm, &mut self.buf[RTP_HEADER_LEN..]);
        self.send(false, self.s.payload_type, self.ts, FRAME_SAMPLES);
    }

    /// One packet of a key press: `frame` 0..KEY_FRAMES, the last sent three
    /// times with the end bit (RFC 4733 section 2.5.1.4).
    fn key(&mut self, event: u8, start_ts: u32, frame: u16) {
        let pt = self.s.telephone_event.unwrap_or(101);
        let duration = (frame + 1) * FRAME_SAMPLES as u16;
        let end = frame + 1 == KEY_FRAMES;
        let payload = encode_event(event, end, KEY_VOLUME, duration);
        self.buf[RTP_HEADER_LEN..RTP_HEADER_LEN + 4].copy_from_slice(&payload);
        for _ in 0..if end { 3 } else { 1 } {
            self.send(frame == 0, pt, start_ts, 4);
        }
    }
}

async fn send_loop(socket: Arc<UdpSocket>, s: Sending, mut keys: mpsc::UnboundedReceiver<char>) {
    let mut tx = Sender {
        socket,
        s,
        seq: rand::random(),
        ts: rand::random(),
        ssrc: rand::random(),
        phase: 0,
        buf: [0; RTP_HEADER_LEN + FRAME_SAMPLES],
    };
    // A key in progress: its event code, its timestamp, the next frame.
    let mut pressing: Option<(u8, u32, u16)> = None;
    // Frames of audio still to send before the next key, so presses stay apart.
    let mut gap = 0u16;
    let mut tick = interval(PTIME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        tick.tick().await;
        if pressing.is_none() && gap == 0 {
            if let Ok(key) = keys.try_recv() {
                pressing = key_to_event(key).map(|e| (e, tx.ts, 0));
            }
        }
        match pressing {
            Some((event, start, frame)) => {
                tx.key(event, start, frame);
                pressing = (frame + 1 < KEY_FRAMES).then_some((event, start, frame + 1));
                if pressing.is_none() {
                    gap = KEY_FRAMES;
                }
            }
            None => {
                gap = gap.saturating_sub(1);
                tx.audio();
            }
        }
        tx.ts = tx.ts.wrapping_add(FRAME_SAMPLES as u32);
    }
}

async fn receive_loop(
    socket: Arc<UdpSocket>,
    mut heard: impl FnMut(Instant, RtpView<'_>) + Send + 'static,
) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, _)) => {
                if let Some(p) = parse(&buf[..n]) {
                    heard(Instant::now(), p);
                }
            }
            // An ICMP "port unreachable" from an earlier send: keep listening.
            Err(_) => tokio::time::sleep(PTIME).await,
        }
    }
}
