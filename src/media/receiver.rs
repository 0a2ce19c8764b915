//! The receive side of one leg as a sans-I/O state machine.
//!
//! The async loop in `media::session` only moves bytes: it hands every datagram
//! to [`Receiver::handle_packet`], sleeps until [`Receiver::poll_timeout`] and
//! then calls [`Receiver::handle_timeout`]. Everything else is decided here,
//! from inputs and "now", so it is unit-tested with virtual time:
//! - latching: the first RTP packet's source is where the leg really is
//!   (symmetric RTP, RFC 4961), and packets from anyone else are dropped;
//! - re-latching: a re-INVITE or UPDATE that moves the remote
//!   ([`Receiver::set_remote`]) lets the next packet latch again, except a
//!   straggler from the old address;
//! - payload types: only what was negotiated, audio or telephone-event, in
//!   either side's numbering;
//! - DTMF: RFC 4733 events, and the in-band detector while a key can matter;
//! - the RTP timeout, with the hold exemption: a held call may be silent.
//!
//! An SRTP `unprotect` belongs at the top of [`Receiver::handle_packet`],
//! before the packet is parsed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::codec::Codec;
use super::dtmf::{InbandDetector, Rfc4733Detector};
use super::rtp::{parse, RtpView};
use super::rxstats::RxStats;
use super::session::{DtmfMethod, MediaEvent};
use super::FRAME_SAMPLES;

/// After a move, packets from the old address only are dropped this long; if
/// nothing else comes, the old address is the leg's stream after all (the SDP
/// changed but the NAT mapping did not).
const RELATCH_GRACE: Duration = Duration::from_millis(500);

/// What the receive side needs to know about the leg's negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RxMedia {
    pub codec: Codec,
    /// The payload types that carry `codec`: the peer's number and ours
    /// (they differ when the two SDPs mapped it differently).
    pub audio_pts: [u8; 2],
    /// The telephone-event payload types (RFC 4733), the peer's and ours.
    pub event_pts: [Option<u8>; 2],
}

impl RxMedia {
    /// Static payload type for `codec`, one telephone-event number.
    pub(crate) fn new(codec: Codec, telephone_event: Option<u8>) -> RxMedia {
        RxMedia {
            codec,
            audio_pts: [codec.payload_type(); 2],
            event_pts: [telephone_event; 2],
        }
    }

    fn is_audio(&self, pt: u8) -> bool {
        self.audio_pts.contains(&pt)
    }

    fn is_event(&self, pt: u8) -> bool {
        self.event_pts.contains(&Some(pt))
    }
}

/// A packet of the leg's own stream, as the caller of `handle_packet` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepted<'a> {
    /// The parsed packet.
    pub rtp: RtpView<'a>,
    /// Audio in the leg's codec (else telephone-event).
    pub audio: bool,
    /// A key pressed, detected in this packet.
    pub key: Option<(char, DtmfMethod)>,
    /// The leg's stream latched to this address just now: send there (RFC 4961).
    pub latched: Option<SocketAddr>,
}

/// One leg's receive side.
pub(crate) struct Receiver {
    media: RxMedia,
    /// Run the Goertzel detector on audio (the peer sends keys as sound).
    inband: bool,
    /// Whether a key can matter now (menu, screening): in-band detection costs
    /// CPU on every packet, so it runs only then.
    keys_wanted: bool,
    rtp_timeout: Duration,
    /// The address the leg's RTP comes from, once seen.
    latched: Option<SocketAddr>,
    /// The remote moved: the next packet may latch, except from this old address.
    relatch_from: Option<Option<SocketAddr>>,
    /// The SDP address, to notice a move.
    remote: Option<SocketAddr>,
    /// When the first straggler from the old address came, during a re-latch.
    straggling_since: Option<Instant>,
    /// The far end put the call on hold: silence is expected.
    on_hold: bool,
    /// When the RTP timeout started counting (None: not armed).
    armed_at: Option<Instant>,
    last_packet: Option<Instant>,
    timed_out: bool,
    rfc4733: Rfc4733Detector,
    detector: InbandDetector,
    pcm: [i16; 4 * FRAME_SAMPLES],
    /// Received, lost and jitter of the leg's audio, for RTCP (RFC 3550 6.4.1).
    stats: RxStats,
}

impl Receiver {
    /// A receiver for `media`; the RTP timeout counts from `armed_at` if given.
    pub(crate) fn new(
        media: RxMedia,
        inband: bool,
        rtp_timeout: Duration,
        armed_at: Option<Instant>,
    ) -> Self {
        Receiver {
            media,
            inband,
            keys_wanted: true,
            rtp_timeout,
            latched: None,
            relatch_from: None,
            remote: None,
            straggling_since: None,
            on_hold: false,
            armed_at,
            last_packet: None,
            timed_out: false,
            rfc4733: Rfc4733Detector::new(),
            detector: InbandDetector::new(),
            pcm: [0; 4 * FRAME_SAMPLES],
            stats: RxStats::default(),
        }
    }

    /// The negotiated payload types, after an answer or re-INVITE.
    pub(crate) fn set_media(&mut self, media: RxMedia, inband: bool) {
        self.media = media;
        self.inband = inband;
    }

    /// What the leg's SDP says now: where it sends from (`remote`) and whether it
    /// put us on hold (`sending` false). A new address lets the stream re-latch.
    pub(crate) fn set_remote(&mut self, remote: Option<SocketAddr>, sending: bool) {
        self.on_hold = !sending;
        if remote.is_some() && remote != self.remote {
            // The first address we learn (a volunteer's answer) is no move: a
            // stream already latched (NAT) stays.
            if self.remote.is_some() {
                self.relatch_from = Some(self.latched);
                self.straggling_since = None;
            }
            self.remote = remote;
        }
    }

    /// Whether in-band keys matter now (menu, screening) or not (the bridge).
    pub(crate) fn want_keys(&mut self, wanted: bool) {
        self.keys_wanted = wanted;
    }

    /// Start (or restart) the RTP timeout at `now`: the volunteer answered.
    pub(crate) fn arm(&mut self, now: Instant) {
        self.armed_at = Some(now);
    }

    /// Whether the media is being checked for keys by ear (for tests and logs).
    pub(crate) fn inband_running(&self) -> bool {
        self.inband && self.keys_wanted
    }

    /// One datagram from `from` at `now`: the packet if it is this leg's stream
    /// and a negotiated payload type, else `None` (dropped).
    pub(crate) fn handle_packet<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &'a [u8],
    ) -> Option<Accepted<'a>> {
        let rtp = parse(bytes)?;
        let audio = self.media.is_audio(rtp.payload_type);
        if !audio && !self.media.is_event(rtp.payload_type) {
            return None; // a payload type we did not negotiate
        }
        let latched = match (self.latched, self.relatch_from) {
            (_, Some(old)) if Some(from) != old || Some(from) == self.remote => {
                self.relatch_from = None;
                self.latched = Some(from);
                Some(from)
            }
            (_, Some(_)) => {
                // A straggler from where the leg was, unless only it keeps coming.
                let since = *self.straggling_since.get_or_insert(now);
                if now.saturating_duration_since(since) < RELATCH_GRACE {
                    return None;
                }
                self.relatch_from = None;
                None
            }
            (Some(addr), None) if addr != from => return None, // not this leg's stream
            (Some(_), None) => None,
            (None, None) => {
                self.latched = Some(from);
                Some(from)
            }
        };
        self.last_packet = Some(now);
        if audio {
            self.stats.on_packet(rtp.ssrc, rtp.seq, rtp.timestamp, now);
        }
        let key = if !audio {
            self.rfc4733
                .on_packet(rtp.timestamp, rtp.payload)
                .map(|k| (k, DtmfMethod::Rfc4733))
        } else if self.inband_running() {
            let n = rtp.payload.len().min(self.pcm.len());
            self.media
                .codec
                .decode_into(&rtp.payload[..n], &mut self.pcm[..n]);
            self.detector
                .push(&self.pcm[..n])
                .map(|k| (k, DtmfMethod::Inband))
        } else {
            None
        };
        Some(Accepted {
            rtp,
            audio,
            key,
            latched,
        })
    }

    /// What the leg's stream looked like on arrival (for RTCP reports).
    pub(crate) fn stats(&self) -> &RxStats {
        &self.stats
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next run; None while
    /// nothing is due (not armed, or already timed out).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.timed_out {
            return None;
        }
        let armed = self.armed_at?;
        let from = self.last_packet.map_or(armed, |l| l.max(armed));
        Some(from + self.rtp_timeout)
    }

    /// Time passed: the RTP timeout, once, unless the call is on hold (then
    /// the silence is legitimate and the count starts again).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<MediaEvent> {
        let due = self.poll_timeout()?;
        if now < due {
            return None;
        }
        if self.on_hold {
            self.last_packet = Some(now);
            return None;
        }
        self.timed_out = true;
        Some(MediaEvent::RtpTimeout)
    }
}

#[cfg(test)]
mod tests;
