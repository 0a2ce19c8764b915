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

/// Our outgoing stream without I/O: each [`tick`](Packetizer::tick) is 20 ms and
/// yields the packets to send then (one audio frame, or a key press's packets).
struct Packetizer {
    s: Sending,
    seq: u16,
    ts: u32,
    ssrc: u32,
    /// Samples of tone sent so far (the sine's phase).
    phase: u64,
    /// A key in progress: its event code, its timestamp, the next frame.
    pressing: Option<(u8, u32, u16)>,
    /// Frames of audio still to send before the next key, so presses stay apart.
    gap: u16,
}

impl Packetizer {
    fn new(s: Sending, seq: u16, ts: u32, ssrc: u32) -> Packetizer {
        Packetizer {
            s,
            seq,
            ts,
            ssrc,
            phase: 0,
            pressing: None,
            gap: 0,
        }
    }

    /// The next 20 ms: `next_key` is asked for a key only when one may start.
    fn tick(&mut self, next_key: impl FnOnce() -> Option<char>, out: &mut Vec<Vec<u8>>) {
        if self.pressing.is_none() && self.gap == 0 {
            if let Some(event) = next_key().and_then(key_to_event) {
                self.pressing = Some((event, self.ts, 0));
            }
        }
        match self.pressing {
            Some((event, start, frame)) => {
                self.key(event, start, frame, out);
                self.pressing = (frame + 1 < KEY_FRAMES).then_some((event, start, frame + 1));
                if self.pressing.is_none() {
                    self.gap = KEY_FRAMES;
                }
            }
            None => {
                self.gap = self.gap.saturating_sub(1);
                self.audio(out);
            }
        }
        self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
    }

    fn packet(&mut self, marker: bool, pt: u8, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0; RTP_HEADER_LEN + payload.len()];
        write_header(&mut p, marker, pt, self.seq, ts, self.ssrc);
        p[RTP_HEADER_LEN..].copy_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        p
    }

    fn audio(&mut self, out: &mut Vec<Vec<u8>>) {
        let mut pcm = [0i16; FRAME_SAMPLES];
        if let Some(hz) = self.s.tone_hz {
            for (i, s) in pcm.iter_mut().enumerate() {
                let t = (self.phase + i as u64) as f64 / f64::from(SAMPLE_RATE);
                *s = (TONE_AMPLITUDE * (TAU * hz * t).sin()).round() as i16;
            }
            self.phase += FRAME_SAMPLES as u64;
        }
        let mut frame = [0u8; FRAME_SAMPLES];
        self.s.codec.encode_into(&pcm, &mut frame);
        let p = self.packet(false, self.s.payload_type, self.ts, &frame);
        out.push(p);
    }

    /// One packet of a key press: `frame` 0..KEY_FRAMES, the last sent three
    /// times with the end bit (RFC 4733 section 2.5.1.4); all with the press's
    /// timestamp, the first with the marker bit.
    fn key(&mut self, event: u8, start_ts: u32, frame: u16, out: &mut Vec<Vec<u8>>) {
        let pt = self.s.telephone_event.unwrap_or(101);
        let duration = (frame + 1) * FRAME_SAMPLES as u16;
        let end = frame + 1 == KEY_FRAMES;
        let payload = encode_event(event, end, KEY_VOLUME, duration);
        for _ in 0..if end { 3 } else { 1 } {
            let p = self.packet(frame == 0, pt, start_ts, &payload);
            out.push(p);
        }
    }
}

async fn send_loop(socket: Arc<UdpSocket>, s: Sending, mut keys: mpsc::UnboundedReceiver<char>) {
    let mut stream = Packetizer::new(s, rand::random(), rand::random(), rand::random());
    let mut out = Vec::new();
    let mut tick = interval(PTIME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        tick.tick().await;
        stream.tick(|| keys.try_recv().ok(), &mut out);
        for p in out.drain(..) {
            // UDP: a full socket buffer loses the frame, as on any network.
            let _ = socket.try_send_to(&p, s.remote);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sending(tone_hz: Option<f64>) -> Sending {
        Sending {
            remote: SocketAddr::from(([127, 0, 0, 1], 9)),
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(101),
            tone_hz,
        }
    }

    #[test]
    fn a_key_is_five_updates_and_three_ends_at_one_timestamp_then_audio_goes_on() {
        let mut p = Packetizer::new(sending(None), 65534, 1000, 42);
        let mut keys = vec!['2', '5'];
        keys.reverse();
        let mut out = Vec::new();
        for _ in 0..20 {
            p.tick(|| keys.pop(), &mut out);
        }
        let views: Vec<RtpView<'_>> = out.iter().map(|b| parse(b).unwrap()).collect();
        // Sequence numbers run on across the wrap, one per packet.
        for (i, v) in views.iter().enumerate() {
            assert_eq!(v.seq, 65534u16.wrapping_add(i as u16));
            assert_eq!(v.ssrc, 42);
        }
        let events: Vec<_> = views.iter().take(7).collect();
        assert!(events
            .iter()
            .all(|v| v.payload_type == 101 && v.timestamp == 1000));
        assert!(events[0].marker && !events[1].marker);
        let durations: Vec<u16> = events
            .iter()
            .map(|v| u16::from_be_bytes([v.payload[2], v.payload[3]]))
            .collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
        assert!(events.iter().all(|v| v.payload[0] == 2));
        let ends = events.iter().filter(|v| v.payload[1] & 0x80 != 0).count();
        assert_eq!(ends, 3);
        // Then 100 ms of audio on the running clock, then the next key.
        let audio: Vec<_> = views[7..12].iter().collect();
        assert!(audio
            .iter()
            .all(|v| v.payload_type == 0 && v.payload.len() == 160));
        assert_eq!(audio[0].timestamp, 1000 + 5 * 160);
        assert_eq!(views[12].payload_type, 101);
        assert_eq!(views[12].payload[0], 5);
        assert_eq!(views[12].timestamp, 1000 + 10 * 160);
        assert!(views[12].marker);
    }

    #[test]
    fn the_tone_is_a_continuous_sine_across_frames() {
        let mut p = Packetizer::new(sending(Some(1000.0)), 0, 0, 1);
        let mut out = Vec::new();
        for _ in 0..3 {
            p.tick(|| None, &mut out);
        }
        let mut pcm = Vec::new();
        for b in &out {
            let v = parse(b).unwrap();
            let mut f = [0i16; FRAME_SAMPLES];
            Codec::Pcmu.decode_into(v.payload, &mut f);
            pcm.extend(f);
        }
        // 1000 Hz at 8 kHz: every 8 samples the sine repeats, across frame edges too.
        for i in 8..pcm.len() {
            assert!(
                (i32::from(pcm[i]) - i32::from(pcm[i - 8])).abs() < 200,
                "{i}"
            );
        }
        assert!(crate::phone::ear::rms(&pcm) > 3000.0);
    }
}
