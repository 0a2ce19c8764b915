//! Forwarding a caller to the volunteer on duty: confirm the station while the first
//! volunteer already rings, hunt through the roster with ringback, screen if asked,
//! and hand over to [`crate::call::bridge`] or report that nobody answered.
//!
//! The decisions are [`Hunt`]'s and [`Ringback`]'s (sans-I/O state machines); this
//! file only carries them out on real legs and reports what happened back to them.

use std::sync::Arc;

use chrono::Utc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::call::busy::Claim;
use crate::call::caller::CallerEvent;
use crate::call::flow::{wait, Call, Gone, Wake};
use crate::call::hunt::{Hunt, HuntAction, HuntInput, HuntSpec, Target};
use crate::call::ringback::{Ringback, Sound};
use crate::call::volunteer::{VolunteerEvent, VolunteerLeg};
use crate::roster::{Phone, Roster};
use crate::store::{AttemptResult, CallEvent, HangupBy};

/// How forwarding ended.
pub(crate) enum Forwarded {
    /// Bridged to a volunteer; the call is over now, ended by this side.
    Connected { hangup_by: HangupBy },
    /// Everyone on the hunt list was tried (or nobody was on duty). The
    /// confirmation may still be playing.
    NobodyAnswered,
}

/// One try at one volunteer: their leg, and our claim on them (held until the try
/// ends, or through the bridge).
pub(crate) struct Attempt {
    pub(crate) no: u32,
    pub(crate) volunteer: String,
    pub(crate) leg: VolunteerLeg,
    pub(crate) claim: Claim,
}

/// The state of one forwarding, beside the call.
struct Forwarding {
    /// The roster as it was at the key press: the whole call uses this one.
    roster: Arc<Roster>,
    hunt: Hunt,
    sound: Ringback,
    current: Option<Attempt>,
    /// The caller left; reported once the hunt has cleaned up.
    caller_gone: Option<Gone>,
}

impl Call {
    /// Play the confirmation of `station` and, at the same moment, start ringing the
    /// volunteers on duty for it, in turn, until one takes the call.
    pub(crate) async fn forward(&mut self, station: &str) -> Result<Forwarded, Gone> {
        let confirmation = self.prompt(&format!("station_{station}"))?;
        self.caller.play(confirmation);
        let roster = self.ctx.services.roster.current();
        let targets = self.targets(&roster, station);
        if targets.is_empty() {
            warn!(%station, "nobody on the roster can be called for this station right now");
        } else {
            info!(
                %station,
                hunt_list = ?targets.iter().map(|t| t.volunteer_id.as_str()).collect::<Vec<_>>(),
                "calling the volunteers on duty"
            );
        }
        let spec = HuntSpec {
            ring_timeout: self.ctx.settings.ring_timeout,
            screen_timeout: self.ctx.settings.screen_timeout,
        };
        let mut f = Forwarding {
            roster,
            hunt: Hunt::new(targets, spec),
            sound: Ringback::confirming(),
            current: None,
            caller_gone: None,
        };
        f.hunt.start(Instant::now().into_std());
        let shutdown = self.ctx.services.shutdown.clone();
        loop {
            while let Some(action) = f.hunt.poll_action() {
                if let Some(done) = self.carry_out(&mut f, action).await? {
                    return Ok(done);
                }
            }
            self.apply_sound(&mut f);
            if let Some(gone) = f.caller_gone.take() {
                if f.hunt.is_done() {
                    return Err(gone);
                }
                f.caller_gone = Some(gone);
            }
            let deadline = f.hunt.poll_timeout().map(Instant::from_std);
            let volunteer = f.current.as_mut().map(|a| &mut a.leg);
            let wake = wait(&mut self.caller, volunteer, deadline, &shutdown).await;
            let now = Instant::now().into_std();
            let input = match wake {
                Wake::Caller(CallerEvent::Key(key, method)) => {
                    if f.sound.is_confirming() {
                        self.note_key(key, method);
                    }
                    None
                }
                Wake::Caller(CallerEvent::PromptFinished) => {
                    f.sound.confirmation_done();
                    None
                }
                Wake::Caller(ev) => Some(caller_left(&mut f, Gone::from_caller(ev))),
                Wake::Shutdown => Some(caller_left(&mut f, Gone::shutdown())),
                Wake::Deadline => {
                    f.hunt.timeout(now);
                    None
                }
                Wake::Volunteer(ev) => self.on_volunteer(&mut f, ev),
            };
            if let Some(input) = input {
                f.hunt.handle(input, now);
            }
        }
    }

    /// Carry out one of the hunt's actions; `Some` when forwarding is over.
    async fn carry_out(
        &mut self,
        f: &mut Forwarding,
        action: HuntAction,
    ) -> Result<Option<Forwarded>, Gone> {
        match action {
            HuntAction::Dial { attempt, uri } => self.ring(f, attempt, uri).await,
            HuntAction::Cancel { attempt } => {
                if let Some(a) = f.current.as_mut().filter(|a| a.no == attempt) {
                    a.leg.cancel().await;
                }
            }
            HuntAction::Hangup { attempt } => {
                if let Some(a) = f.current.as_mut().filter(|a| a.no == attempt) {
                    a.leg.hangup().await;
                }
            }
            HuntAction::StartRingback => f.sound.ringback(true),
            HuntAction::StopRingback => f.sound.ringback(false),
            HuntAction::PlayScreenPrompt { attempt } => {
                let prompt = self.prompt("screen")?;
                if let Some(a) = f.current.as_mut().filter(|a| a.no == attempt) {
                    info!(volunteer = %a.volunteer, "volunteer answered; asking them to press 1 to accept");
                    a.leg.play(prompt);
                }
            }
            HuntAction::AttemptEnded {
                attempt,
                result,
                sip_status,
                reason,
            } => {
                self.ctx.record(CallEvent::AttemptEnded {
                    call_id: self.caller.call_id().to_string(),
                    attempt_no: attempt,
                    at: Utc::now(),
                    result,
                    sip_status,
                    reason,
                });
                // An answered attempt goes on to the bridge.
                if result != AttemptResult::Answered {
                    if let Some(a) = f.current.take_if(|a| a.no == attempt) {
                        info!(volunteer = %a.volunteer, result = result.as_str(), "volunteer did not take the call");
                        f.sound.early_media_over(attempt);
                    }
                }
            }
            HuntAction::Bridge { attempt } => {
                let Some(a) = f.current.take_if(|a| a.no == attempt) else {
                    return Err(Gone::Failed("bridge to an attempt that is gone".into()));
                };
                return self.bridge(a).await.map(Some);
            }
            HuntAction::Exhausted => {
                info!("no volunteer took the call");
                self.apply_sound(f);
                return Ok(Some(Forwarded::NobodyAnswered));
            }
        }
        Ok(None)
    }

    /// The hunt's `Dial`: claim the volunteer, record the attempt, send the INVITE.
    async fn ring(&mut self, f: &mut Forwarding, attempt: u32, uri: String) {
        let now = || Instant::now().into_std();
        let Some(target) = f.hunt.target_of(attempt).cloned() else {
            return;
        };
        let volunteer = target.volunteer_id;
        // Following a redirect is the same try at the same volunteer: our claim on
        // them carries over from the INVITE that was redirected.
        let redirected = f.current.take_if(|a| a.no == attempt);
        if redirected.is_some() {
            // Any early media of the redirected INVITE went with its leg.
            f.sound.early_media_over(attempt);
        }
        let held = redirected
            .map(|old| old.claim)
            .filter(|c| c.volunteer() == volunteer);
        let claim = match held.or_else(|| self.ctx.services.busy.try_claim(&volunteer)) {
            Some(c) => c,
            None => {
                info!(%volunteer, "skipping a volunteer who is on another call");
                f.hunt.handle(HuntInput::OnAnotherCall, now());
                return;
            }
        };
        self.ctx.record(CallEvent::AttemptStarted {
            call_id: self.caller.call_id().to_string(),
            attempt_no: attempt,
            volunteer: volunteer.clone(),
            target: uri.clone(),
            at: Utc::now(),
        });
        info!(%volunteer, target = %uri, attempt, "ringing a volunteer");
        // Numbers go through the trunk; SIP URIs are called directly.
        let entry = f.roster.volunteer(&volunteer);
        let via_trunk = entry.is_some_and(|v| matches!(v.phone, Phone::Number(_)));
        let srtp = entry.is_some_and(|v| v.srtp);
        let caller_number = self.caller.number().to_string();
        match VolunteerLeg::dial(&self.ctx, &uri, via_trunk, srtp, &caller_number).await {
            Ok(leg) => {
                f.current = Some(Attempt {
                    no: attempt,
                    volunteer,
                    leg,
                    claim,
                })
            }
            Err(e) => {
                warn!(%volunteer, "could not ring the volunteer: {e}");
                drop(claim);
                // A failure here, not an answer from their phone: no SIP status.
                let why = format!("could not ring the volunteer: {e}");
                f.hunt.handle(HuntInput::LocalFailure(why), now());
            }
        }
    }

    /// Translate a volunteer-leg event for the hunt (and for what the caller hears).
    fn on_volunteer(&self, f: &mut Forwarding, ev: VolunteerEvent) -> Option<HuntInput> {
        let a = f.current.as_ref()?;
        Some(match ev {
            VolunteerEvent::Ringing => HuntInput::Provisional(180),
            VolunteerEvent::EarlyMedia => {
                f.sound.early_media(a.no);
                HuntInput::EarlyMedia
            }
            VolunteerEvent::Answered => {
                f.sound.early_media_over(a.no);
                HuntInput::Answered
            }
            VolunteerEvent::Rejected {
                status,
                contact: Some(c),
            } if (300..400).contains(&status) => {
                let original = f.hunt.target_of(a.no).map(|t| t.uri.as_str());
                if original.is_some_and(|o| self.redirect_allowed(o, &c)) {
                    info!(volunteer = %a.volunteer, contact = %c, "following the volunteer's redirect");
                    HuntInput::Redirect(c)
                } else {
                    warn!(volunteer = %a.volunteer, contact = %c, "refusing to follow a redirect to a place the roster does not name (toll-fraud guard)");
                    HuntInput::Final(status)
                }
            }
            VolunteerEvent::Rejected { status, .. } => HuntInput::Final(status),
            VolunteerEvent::HungUp => HuntInput::VolunteerGone,
            VolunteerEvent::Key(key) => HuntInput::ScreenKey(key),
            // Armed only once answered; the screening deadline is shorter.
            VolunteerEvent::MediaTimeout => return None,
            VolunteerEvent::Failed(e) => {
                info!(volunteer = %a.volunteer, "call to the volunteer failed: {e}");
                HuntInput::LocalFailure(e)
            }
        })
    }

    /// Make the caller hear what [`Ringback`] says they should.
    fn apply_sound(&mut self, f: &mut Forwarding) {
        while let Some(sound) = f.sound.poll() {
            match sound {
                Sound::Ringback => {
                    let tone = self.ctx.services.ringback.clone();
                    self.caller.play_looped(tone);
                }
                Sound::Silence => self.caller.stop(),
                Sound::EarlyMedia { attempt } => {
                    if let Some(a) = f.current.as_mut().filter(|a| a.no == attempt) {
                        a.leg.relay_early_media_to(&mut self.caller);
                    }
                }
            }
        }
    }

    /// The hunt list for `station` in `roster` now, as dialable targets. Whether a
    /// volunteer is on another call is decided when they are dialled (a claim), not
    /// here, so that two calls can never ring one person.
    pub(crate) fn targets(&self, roster: &Roster, station: &str) -> Vec<Target> {
        let mut out = Vec::new();
        for v in roster.hunt_list(station, Utc::now()) {
            let Some(uri) = self.ctx.dial_uri(&v.phone) else {
                warn!(volunteer = %v.id, "volunteer has a phone number but no [trunk] is configured; skipping");
                continue;
            };
            out.push(Target {
                volunteer_id: v.id.clone(),
                uri,
                screen: v.screen,
            });
        }
        out
    }

    /// Whether we may follow a redirect to `contact` from `original`: only to the
    /// same host, or through our own trunk. A caller can never make us dial out
    /// (toll-fraud guard): every URI we INVITE came from the roster or the config.
    fn redirect_allowed(&self, original: &str, contact: &str) -> bool {
        fn host(uri: &str) -> Option<String> {
            let rest = uri.trim_start_matches('<');
            let rest = rest
                .strip_prefix("sips:")
                .or_else(|| rest.strip_prefix("sip:"))?;
            let after_at = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            let h = after_at
                .split([':', ';', '>', '?'])
                .next()
                .unwrap_or_default();
            (!h.is_empty()).then(|| h.to_ascii_lowercase())
        }
        match (host(original), host(contact)) {
            (Some(a), Some(b)) if a == b => true,
            (_, Some(b)) => self
                .ctx
                .dialer
                .trunk_domain()
                .is_some_and(|d| d.eq_ignore_ascii_case(&b)),
            _ => false,
        }
    }
}

/// The caller left while we hunt: the hunt cancels or hangs up the volunteer's leg,
/// then the call ends with `gone`.
fn caller_left(f: &mut Forwarding, gone: Gone) -> HuntInput {
    info!("caller hung up while a volunteer's phone was ringing");
    f.caller_gone = Some(gone);
    HuntInput::CallerGone
}
