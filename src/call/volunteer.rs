//! A volunteer's leg as the call flow sees it: the INVITE we sent, and its media.
//!
//! [`VolunteerLeg::next`] is the one stream of what happens on it: ringing, early
//! media, the answer or a refusal, a key they press (RFC 4733, in-band or SIP INFO),
//! their hanging up, their audio stopping. The SDP of a 183, a 200 or a re-INVITE is
//! applied to the leg's media here, before the flow hears of it.
//!
//! [`connect`] and [`disconnect`] join a volunteer's media to the caller's (the
//! bridge), [`VolunteerLeg::relay_early_media_to`] sends their early media to the
//! caller: with `call::caller`, the only code of the call that calls a
//! `MediaSession`.

use std::sync::Arc;

use tracing::{debug, warn};

use crate::call::caller::{apply, CallerLeg};
use crate::call::CallContext;
use crate::media::codec::Codec;
use crate::media::prompts::Prompt;
use crate::media::session::{MediaEvent, MediaInput, MediaSession, RxConfig};
use crate::media::srtp::SdesKey;
use crate::sip::leg::{sending_allowed, LocalMedia};
use crate::sip::outbound::{OutEvent, OutboundLeg};
use crate::sip::sdp;

/// Something that happened on a volunteer's leg.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VolunteerEvent {
    /// 180, or a 183 whose SDP we cannot use: their phone rings.
    Ringing,
    /// A 183 with usable SDP: their network plays its own ringback or announcement.
    EarlyMedia,
    /// 200 OK: they (or their voicemail) picked up.
    Answered,
    /// A final non-2xx: busy, declined, unavailable; a 3xx with its first Contact.
    Rejected {
        status: u16,
        contact: Option<String>,
    },
    /// A key they pressed (screening).
    Key(char),
    /// BYE after answering.
    HungUp,
    /// No RTP for `rtp_timeout` after answering.
    MediaTimeout,
    /// No final response (timeout, transport failure), or the leg broke.
    Failed(String),
}

/// One INVITE to one volunteer, with media of its own.
pub(crate) struct VolunteerLeg {
    sip: OutboundLeg,
    media: MediaSession,
    media_done: bool,
    /// Their early media is being relayed to the caller.
    relaying: bool,
    /// We offered SRTP only: an answer without it must not carry the call.
    secure: bool,
}

impl VolunteerLeg {
    /// Open media and send the INVITE to `uri` (through the trunk for numbers);
    /// `srtp`: offer only encrypted audio (the roster's `srtp = true`).
    pub(crate) async fn dial(
        ctx: &CallContext,
        uri: &str,
        via_trunk: bool,
        srtp: bool,
        caller_number: &str,
    ) -> Result<VolunteerLeg, String> {
        if srtp && !ctx.settings.sdes_over_plain && (via_trunk || !crate::roster::is_tls_uri(uri)) {
            return Err(format!(
                "not calling {uri}: the volunteer takes encrypted calls only (srtp = true) \
                 and its SRTP keys would travel over plain SIP; use a sips: URI \
                 (or ;transport=tls), or set [sip] sdes_over_plain = true"
            ));
        }
        // A phone we cannot connect to fails here, before any media is opened.
        ctx.dialer.connect_first(uri, via_trunk).await?;
        let media = MediaSession::open(
            &ctx.services.ports,
            &ctx.services.clock,
            None,
            RxConfig {
                codec: Codec::Pcmu,
                telephone_event: Some(sdp::OFFER_TELEPHONE_EVENT_PT),
                inband: false,
                rtp_timeout: ctx.settings.rtp_timeout,
                // A phone that rings sends no media: armed when they answer.
                timeout_armed: false,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let local = LocalMedia {
            ip: ctx.settings.public_ip,
            port: media.local_port,
            session_id: rand::random::<u32>() as u64,
            version: 1,
        };
        let key = srtp.then(SdesKey::generate);
        let sip = ctx
            .dialer
            .dial_keyed(uri, via_trunk, caller_number, local, key)?;
        Ok(VolunteerLeg {
            sip,
            media,
            media_done: false,
            relaying: false,
            secure: srtp,
        })
    }

    /// The next thing that happens on the leg. Cancel-safe.
    pub(crate) async fn next(&mut self) -> VolunteerEvent {
        loop {
            enum Got {
                Sip(OutEvent),
                Media(MediaInput),
            }
            let got = if self.media_done {
                Got::Sip(self.sip.next_event().await)
            } else {
                tokio::select! {
                    ev = self.sip.next_event() => Got::Sip(ev),
                    m = self.media.next() => Got::Media(m),
                }
            };
            match got {
                Got::Sip(OutEvent::Answered(Err(e))) if self.secure => {
                    // Never bridge a counselling call in the clear.
                    self.sip.hangup().await;
                    return VolunteerEvent::Failed(format!(
                        "volunteer answered without usable SRTP ({e}); hung up"
                    ));
                }
                Got::Sip(ev) => {
                    if let Some(ev) = self.on_sip(ev) {
                        return ev;
                    }
                }
                Got::Media(MediaInput::Event(Some(MediaEvent::Dtmf(key, _)))) => {
                    return VolunteerEvent::Key(key)
                }
                Got::Media(MediaInput::Event(_)) => {
                    // The RTP timeout, or the receive task gone: no more media either way.
                    self.media_done = true;
                    return VolunteerEvent::MediaTimeout;
                }
                // The screening prompt ended; the screening deadline is the hunt's.
                Got::Media(MediaInput::PromptFinished) => {}
            }
        }
    }

    /// Set up media for what the SIP side reported; None for what only media cares about.
    fn on_sip(&mut self, ev: OutEvent) -> Option<VolunteerEvent> {
        Some(match ev {
            OutEvent::Ringing => VolunteerEvent::Ringing,
            OutEvent::EarlyMedia(Ok(n)) => {
                // We send nothing before the answer; their direction matters then.
                apply(&self.media, &n, true);
                VolunteerEvent::EarlyMedia
            }
            OutEvent::EarlyMedia(Err(e)) => {
                debug!("volunteer's early media has unusable SDP ({e}); ringback stays");
                VolunteerEvent::Ringing
            }
            OutEvent::Answered(answer) => {
                self.media.arm_timeout();
                match answer {
                    Ok(n) => apply(&self.media, &n, sending_allowed(&n)),
                    Err(e) => warn!("volunteer's answer has unusable SDP: {e}"),
                }
                if self.relaying {
                    self.media.untap();
                    self.relaying = false;
                }
                VolunteerEvent::Answered
            }
            OutEvent::Rejected { status, contact } => VolunteerEvent::Rejected { status, contact },
            OutEvent::HungUp => VolunteerEvent::HungUp,
            OutEvent::Dtmf(key) => VolunteerEvent::Key(key),
            OutEvent::MediaChanged(n) => {
                apply(&self.media, &n, sending_allowed(&n));
                return None;
            }
            OutEvent::Failed(e) => VolunteerEvent::Failed(e),
        })
    }

    /// Play a prompt to the volunteer (screening: "press 1 to take this call").
    pub(crate) fn play(&mut self, prompt: Arc<Prompt>) {
        self.media.play(prompt);
    }

    /// Stop ringing them (CANCEL), or BYE once they answered.
    pub(crate) async fn cancel(&mut self) {
        self.sip.cancel().await;
    }

    /// How the leg's media went.
    pub(crate) fn media_quality(&self) -> crate::media::rtcp::Quality {
        self.media.quality()
    }

    /// End an answered leg (BYE). Idempotent.
    pub(crate) async fn hangup(&mut self) {
        self.sip.hangup().await;
    }

    /// RFC 3960: relay their early media (their ringback or announcement) to the
    /// caller in place of ours, continuing the caller's stream.
    pub(crate) fn relay_early_media_to(&mut self, caller: &mut CallerLeg) {
        let Some(to) = caller.media_for_relay() else {
            return;
        };
        self.media
            .bridge_to(to, to.relay_into(self.media.leg_media()));
        self.relaying = true;
    }
}

/// Bridge: stop whatever either side hears and relay each side's audio to the other.
pub(crate) fn connect(caller: &mut CallerLeg, volunteer: &mut VolunteerLeg) {
    let Some(c) = caller.media_for_relay() else {
        return;
    };
    let v = &mut volunteer.media;
    c.stop();
    v.stop();
    v.untap();
    volunteer.relaying = false;
    v.bridge_to(c, c.relay_into(v.leg_media()));
    c.bridge_to(v, v.relay_into(c.leg_media()));
}

/// Undo [`connect`]: neither side's audio goes anywhere any more.
pub(crate) fn disconnect(caller: &mut CallerLeg, volunteer: &mut VolunteerLeg) {
    volunteer.media.untap();
    if let Some(c) = caller.media_for_relay() {
        c.untap();
    }
}
