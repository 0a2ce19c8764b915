//! The caller's leg as the call flow sees it: the SIP dialog and the media together.
//!
//! [`CallerLeg::next`] is the one stream of what happens on it: a key by any method
//! (RFC 4733, in-band, SIP INFO), the end of a prompt, the caller hanging up, their
//! audio stopping, a failure. A re-INVITE or UPDATE that moves the media or holds the
//! call never reaches the flow: the leg applies it to its media itself.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::call::flow::Gone;
use crate::call::CallContext;
use crate::media::codec::Codec;
use crate::media::prompts::Prompt;
use crate::media::recorder::Recorder;
use crate::media::session::{DtmfMethod, MediaEvent, MediaInput, MediaSession, RxConfig, Tap};
use crate::sip::leg::{sending_allowed, InboundLeg, LegEvent, LocalMedia};
use crate::sip::sdp::Negotiated;

/// Something that happened on the caller's leg.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallerEvent {
    Key(char, DtmfMethod),
    /// The prompt started with [`CallerLeg::play`] played to its end.
    PromptFinished,
    /// BYE (or CANCEL before we answered).
    HungUp,
    /// No RTP for `rtp_timeout` and no BYE: the caller is most likely gone.
    MediaTimeout,
    /// The dialog or the media broke (no ACK, transport error).
    Failed(String),
}

/// The caller's leg: the dialog, and once answered, the media.
pub(crate) struct CallerLeg {
    sip: InboundLeg,
    media: Option<MediaSession>,
    /// The media reported its end (timeout, receive task gone): no longer polled.
    media_done: bool,
    /// A prompt (not a loop) plays, and its end will be reported.
    prompt_playing: bool,
}

impl CallerLeg {
    pub(crate) fn new(sip: InboundLeg) -> CallerLeg {
        CallerLeg {
            sip,
            media: None,
            media_done: false,
            prompt_playing: false,
        }
    }

    pub(crate) fn call_id(&self) -> &str {
        &self.sip.call_id
    }

    /// The caller's number (the From user).
    pub(crate) fn number(&self) -> &str {
        &self.sip.caller
    }

    /// The number they dialled.
    pub(crate) fn dialed(&self) -> &str {
        &self.sip.dialed
    }

    /// Open media, send 200 OK with our SDP, wait for the ACK. `offer` is the
    /// negotiated SDP of the INVITE (None: our offer goes in the 200).
    pub(crate) async fn answer(
        &mut self,
        ctx: &CallContext,
        offer: Option<Negotiated>,
    ) -> Result<(), Gone> {
        let rx = RxConfig {
            codec: offer.map_or(Codec::Pcmu, |n| n.codec),
            telephone_event: offer.and_then(|n| n.telephone_event),
            inband: offer.is_none_or(|n| n.telephone_event.is_none()),
            rtp_timeout: ctx.settings.rtp_timeout,
            timeout_armed: true,
        };
        let services = &ctx.services;
        let opened = MediaSession::open(
            &services.ports,
            &services.clock,
            offer.map(|n| n.remote),
            rx,
        )
        .await;
        let media = match opened {
            Ok(m) => m,
            Err(e) => {
                self.sip.refuse_unavailable();
                return Err(Gone::Failed(e.to_string()));
            }
        };
        let local = LocalMedia {
            ip: ctx.settings.public_ip,
            port: media.local_port,
            session_id: rand::random::<u32>() as u64,
            version: 1,
        };
        if let Some(n) = &offer {
            apply(&media, n, sending_allowed(n));
        }
        self.media = Some(media);
        let in_ack = self.sip.answer(local, offer).await.map_err(gone)?;
        if let (Some(n), Some(media)) = (in_ack, &self.media) {
            apply(media, &n, sending_allowed(&n));
        }
        Ok(())
    }

    /// The next thing that happens on the leg. Cancel-safe, so it can sit in a
    /// `select!` beside the volunteer's leg and the flow's deadline.
    pub(crate) async fn next(&mut self) -> CallerEvent {
        loop {
            enum Got {
                Sip(LegEvent),
                Media(MediaInput),
            }
            let got = match self.media.as_mut().filter(|_| !self.media_done) {
                Some(media) => tokio::select! {
                    ev = self.sip.next_event() => Got::Sip(ev),
                    m = media.next() => Got::Media(m),
                },
                None => Got::Sip(self.sip.next_event().await),
            };
            match got {
                Got::Sip(LegEvent::Dtmf(key)) => return CallerEvent::Key(key, DtmfMethod::SipInfo),
                Got::Sip(LegEvent::MediaChanged(n)) => {
                    if let Some(media) = &self.media {
                        apply(media, &n, sending_allowed(&n));
                    }
                    info!(
                        on_hold = !sending_allowed(&n),
                        "caller changed the media (re-INVITE or UPDATE)"
                    );
                }
                Got::Sip(LegEvent::HungUp) => return CallerEvent::HungUp,
                Got::Sip(LegEvent::Failed(why)) => return CallerEvent::Failed(why),
                Got::Media(MediaInput::Event(Some(MediaEvent::Dtmf(key, method)))) => {
                    return CallerEvent::Key(key, method)
                }
                Got::Media(MediaInput::Event(Some(MediaEvent::RtpTimeout))) => {
                    self.media_done = true;
                    return CallerEvent::MediaTimeout;
                }
                Got::Media(MediaInput::Event(None)) => {
                    self.media_done = true;
                    return CallerEvent::Failed("media receive stopped".into());
                }
                Got::Media(MediaInput::PromptFinished) => {
                    self.prompt_playing = false;
                    return CallerEvent::PromptFinished;
                }
            }
        }
    }

    /// Play a prompt, replacing whatever plays; its end comes as
    /// [`CallerEvent::PromptFinished`].
    pub(crate) fn play(&mut self, prompt: Arc<Prompt>) {
        if let Some(media) = self.media.as_mut() {
            media.play(prompt);
            self.prompt_playing = true;
        }
    }

    /// Loop a tone (ringback) until stopped or replaced.
    pub(crate) fn play_looped(&mut self, prompt: Arc<Prompt>) {
        if let Some(media) = self.media.as_mut() {
            media.play_looped(prompt);
        }
        self.prompt_playing = false;
    }

    /// Stop what plays at once (barge-in); a stopped prompt reports no end.
    pub(crate) fn stop(&mut self) {
        if let Some(media) = self.media.as_mut() {
            media.stop();
        }
        self.prompt_playing = false;
    }

    /// Whether a prompt started with [`play`](Self::play) is still playing.
    pub(crate) fn is_playing_prompt(&self) -> bool {
        self.prompt_playing
    }

    /// Start recording the caller's audio (voicemail), at most `max` long.
    pub(crate) fn start_recording(&mut self, max: Duration) {
        if let Some(media) = &self.media {
            media.record(Recorder::new(max));
        }
    }

    /// Whether the recording has reached its maximum length.
    pub(crate) fn recording_full(&self) -> bool {
        self.media.as_ref().is_some_and(|m| m.recording_full())
    }

    /// Stop recording and hand over what was recorded.
    pub(crate) fn stop_recording(&mut self) -> Option<Recorder> {
        match self.media.as_ref()?.untap() {
            Tap::Record(r) => Some(r),
            _ => None,
        }
    }

    /// How the media went so far; None if it never opened.
    pub(crate) fn media_quality(&self) -> Option<crate::media::rtcp::Quality> {
        self.media.as_ref().map(MediaSession::quality)
    }

    /// Free the RTP ports: the call is over.
    pub(crate) fn close_media(&mut self) {
        self.media = None;
        self.prompt_playing = false;
    }

    /// Hang up from our side (BYE once answered). Idempotent.
    pub(crate) async fn hangup(&mut self) {
        self.sip.hangup().await;
    }

    /// [`hangup`](Self::hangup) with these extra headers on the BYE, as (name, value).
    pub(crate) async fn hangup_with(&mut self, headers: Vec<(String, String)>) {
        self.sip.hangup_with(headers).await;
    }

    /// Whether the dialog has ended (either side).
    pub(crate) fn is_ended(&self) -> bool {
        self.sip.is_ended()
    }

    /// The media, for relaying a volunteer's audio into it (see `call::volunteer`):
    /// the relay replaces whatever was playing.
    pub(super) fn media_for_relay(&mut self) -> Option<&mut MediaSession> {
        self.prompt_playing = false;
        self.media.as_mut()
    }
}

/// Apply a negotiation (the offer, the ACK's answer, a re-INVITE, a 183 or 200 from
/// a volunteer) to a leg's media: codec, telephone-event, where to send, and whether
/// to send at all (`sending`: false on hold). The one place that does it.
pub(super) fn apply(media: &MediaSession, n: &Negotiated, sending: bool) {
    media.set_media_pt(n.codec, n.payload_type, n.telephone_event);
    media.set_srtp(n.srtp);
    media.update_remote(Some(n.remote), n.codec, sending);
}

/// Why the call stops, from an event that ended the caller's dialog.
fn gone(ev: LegEvent) -> Gone {
    match ev {
        LegEvent::HungUp => Gone::CallerHungUp,
        LegEvent::Failed(why) => Gone::Failed(why),
        other => Gone::Failed(format!("unexpected {other:?}")),
    }
}
