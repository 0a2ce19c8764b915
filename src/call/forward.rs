//! Forwarding a caller to the volunteer on duty: hunt through the roster with
//! ringback, screen if asked, bridge, and take a voicemail when nobody answers.
//!
//! The decisions are [`Hunt`]'s (a sans-I/O state machine); this file only carries
//! them out on real legs and reports what happened back to it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::call::flow::{Call, Gone};
use crate::call::hunt::{Hunt, HuntAction, HuntInput, HuntSpec, Target};
use crate::media::codec::Codec;
use crate::media::recorder::{voicemail_path, Recorder};
use crate::media::session::{MediaEvent, MediaInput, MediaSession, RxConfig, Tap};
use crate::roster::Phone;
use crate::sip::leg::{sending_allowed, LegEvent, LocalMedia};
use crate::sip::outbound::{Dial, OutEvent, OutboundLeg};
use crate::sip::sdp;
use crate::store::{CallEvent, HangupBy};

/// How forwarding ended.
pub enum Forwarded {
    /// Bridged to a volunteer; the call is over now, ended by this side.
    Connected { hangup_by: HangupBy },
    /// Everyone on the hunt list was tried (or nobody was on duty).
    NobodyAnswered,
}

/// How a voicemail attempt ended.
pub struct Voicemail {
    /// The recording's path, if the caller said anything.
    pub path: Option<String>,
    pub hangup_by: HangupBy,
}

/// One INVITE to one volunteer, with its own media.
struct Attempt {
    no: u32,
    volunteer: String,
    leg: OutboundLeg,
    media: MediaSession,
    /// The volunteer's side is playing early media to the caller.
    early_media: bool,
}

/// A volunteer marked busy while rung or bridged; released on drop, so a
/// volunteer is never left marked busy by a call that failed half-way.
struct BusyGuard {
    busy: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    id: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Ok(mut b) = self.busy.lock() {
            b.remove(&self.id);
        }
    }
}

impl Call {
    /// The hunt list for `station` right now, as dialable targets. Volunteers
    /// already on a call (rung or bridged by another caller) are skipped: a
    /// volunteer on duty at several stations is one person.
    fn targets(&self, station: &str) -> Vec<Target> {
        let roster = self.ctx.roster.current();
        let busy = self.ctx.busy.lock().map(|b| b.clone()).unwrap_or_default();
        let mut out = Vec::new();
        for v in roster.hunt_list(station, Utc::now()) {
            if busy.contains(&v.id) {
                info!(volunteer = %v.id, "skipping a volunteer who is on another call");
                continue;
            }
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
                .trunk
                .as_ref()
                .is_some_and(|t| t.domain.eq_ignore_ascii_case(&b)),
            _ => false,
        }
    }

    /// Ring the volunteers on duty for `station` in turn until one takes the call.
    pub(crate) async fn forward(&mut self, station: &str) -> Result<Forwarded, Gone> {
        let targets = self.targets(station);
        if targets.is_empty() {
            warn!(%station, "nobody on the roster can be called for this station right now");
            return Ok(Forwarded::NobodyAnswered);
        }
        info!(
            %station,
            hunt_list = ?targets.iter().map(|t| t.volunteer_id.as_str()).collect::<Vec<_>>(),
            "calling the volunteers on duty"
        );
        let spec = HuntSpec {
            ring_timeout: self.ctx.ring_timeout,
            screen_timeout: self.ctx.screen_timeout,
        };
        let mut hunt = Hunt::new(targets, spec);
        let mut current: Option<Attempt> = None;
        let mut guards: Vec<BusyGuard> = Vec::new();
        let mut caller_gone: Option<Gone> = None;
        hunt.start(Instant::now().into_std());
        loop {
            while let Some(action) = hunt.poll_action() {
                match action {
                    HuntAction::Dial {
                        attempt,
                        target_index: _,
                        uri,
                    } => {
                        let volunteer = hunt
                            .target_of(attempt)
                            .map(|t| t.volunteer_id.clone())
                            .unwrap_or_default();
                        if let Ok(mut b) = self.ctx.busy.lock() {
                            b.insert(volunteer.clone());
                        }
                        guards.push(BusyGuard {
                            busy: self.ctx.busy.clone(),
                            id: volunteer.clone(),
                        });
                        self.ctx.store.record(CallEvent::AttemptStarted {
                            call_id: self.leg.call_id.clone(),
                            attempt_no: attempt,
                            volunteer: volunteer.clone(),
                            target: uri.clone(),
                            at: Utc::now(),
                        });
                        info!(%volunteer, target = %uri, attempt, "ringing a volunteer");
                        match self.dial(attempt, &volunteer, &uri).await {
                            Ok(a) => current = Some(a),
                            Err(e) => {
                                warn!(%volunteer, "could not ring the volunteer: {e}");
                                current = None;
                                hunt.handle(HuntInput::Final(500), Instant::now().into_std());
                            }
                        }
                    }
                    HuntAction::Cancel { attempt } => {
                        if let Some(a) = current.as_mut().filter(|a| a.no == attempt) {
                            a.leg.cancel().await;
                        }
                    }
                    HuntAction::Hangup { attempt } => {
                        if let Some(a) = current.as_mut().filter(|a| a.no == attempt) {
                            a.leg.hangup().await;
                        }
                    }
                    HuntAction::StartRingback => {
                        let rb = self.ctx.ringback.clone();
                        self.media_mut()?.play_looped(rb);
                    }
                    HuntAction::StopRingback => self.media_mut()?.stop(),
                    HuntAction::PlayScreenPrompt { attempt } => {
                        let prompt = self.prompt("screen")?;
                        if let Some(a) = current.as_mut().filter(|a| a.no == attempt) {
                            info!(volunteer = %a.volunteer, "volunteer answered; asking them to press 1 to accept");
                            a.media.play(prompt);
                        }
                    }
                    HuntAction::AttemptEnded {
                        attempt,
                        result,
                        sip_status,
                    } => {
                        self.ctx.store.record(CallEvent::AttemptEnded {
                            call_id: self.leg.call_id.clone(),
                            attempt_no: attempt,
                            at: Utc::now(),
                            result,
                            sip_status,
                        });
                        if result == crate::store::AttemptResult::Answered {
                            continue; // Bridge follows
                        }
                        if let Some(a) = current.take_if(|a| a.no == attempt) {
                            info!(volunteer = %a.volunteer, result = result.as_str(), "volunteer did not take the call");
                            guards.retain(|g| g.id != a.volunteer);
                            if a.early_media && !hunt.is_done() {
                                // Their early media replaced our ringback; bring it back.
                                let rb = self.ctx.ringback.clone();
                                self.media_mut()?.play_looped(rb);
                            }
                        }
                    }
                    HuntAction::Bridge { attempt } => {
                        let Some(a) = current.take_if(|a| a.no == attempt) else {
                            return Err(Gone::Failed("bridge to an attempt that is gone".into()));
                        };
                        return self.bridge(a).await;
                    }
                    HuntAction::Exhausted => {
                        info!(%station, "no volunteer took the call");
                        return Ok(Forwarded::NobodyAnswered);
                    }
                }
            }
            if let Some(gone) = caller_gone.take() {
                if hunt.is_done() {
                    return Err(gone);
                }
                caller_gone = Some(gone);
            }
            let deadline = hunt.poll_timeout().map(Instant::from_std);
            let input = self.hunt_input(&mut current, deadline).await;
            let now = Instant::now().into_std();
            match input {
                HuntWait::Caller(gone) => {
                    info!("caller hung up while a volunteer's phone was ringing");
                    caller_gone = Some(gone);
                    hunt.handle(HuntInput::CallerGone, now);
                }
                HuntWait::Timeout => hunt.timeout(now),
                HuntWait::Input(i) => hunt.handle(i, now),
                HuntWait::Nothing => {}
            }
        }
    }

    /// Send the INVITE for one attempt, with media of its own.
    async fn dial(&mut self, no: u32, volunteer: &str, uri: &str) -> Result<Attempt, String> {
        let ctx = self.ctx.clone();
        let media = MediaSession::open(
            &ctx.ports,
            &ctx.clock,
            None,
            RxConfig {
                codec: Codec::Pcmu,
                telephone_event: Some(sdp::OFFER_TELEPHONE_EVENT_PT),
                inband: false,
                rtp_timeout: ctx.rtp_timeout,
                timeout_armed: false,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let local = LocalMedia {
            ip: ctx.public_ip,
            port: media.local_port,
            session_id: rand::random::<u32>() as u64,
            version: 1,
        };
        let offer = sdp::offer(local.ip, local.port, local.session_id, local.version);
        // Numbers go through the trunk; SIP URIs are called directly.
        let is_number = ctx
            .roster
            .current()
            .volunteer(volunteer)
            .is_some_and(|v| matches!(v.phone, Phone::Number(_)));
        let via_trunk = ctx.trunk.as_ref().filter(|_| is_number);
        let dial = Dial {
            target: uri.to_string(),
            proxy: via_trunk.map(|t| t.proxy.clone()),
            from_user: via_trunk
                .and_then(|t| t.username.clone())
                .unwrap_or_else(|| ctx.number.clone()),
            from_host: via_trunk
                .map(|t| t.domain.clone())
                .unwrap_or_else(|| ctx.sip_addr.to_string()),
            caller_number: self.leg.caller.clone(),
            credential: via_trunk.and_then(|t| Some((t.username.clone()?, t.password.clone()?))),
            offer,
            local,
        };
        let leg = OutboundLeg::dial(ctx.dialogs.clone(), ctx.sip_addr, dial)?;
        Ok(Attempt {
            no,
            volunteer: volunteer.to_string(),
            leg,
            media,
            early_media: false,
        })
    }

    /// Wait for the next thing that matters to the hunt.
    async fn hunt_input(
        &mut self,
        current: &mut Option<Attempt>,
        deadline: Option<Instant>,
    ) -> HuntWait {
        let shutdown = self.ctx.shutdown.clone();
        let Some(caller_media) = self.media.as_mut() else {
            return HuntWait::Caller(Gone::Failed("no media".into()));
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let out_ev = async {
            match current.as_mut() {
                Some(a) => {
                    tokio::select! {
                        ev = a.leg.next_event() => Some(Ok(ev)),
                        m = a.media.next() => Some(Err(m)),
                    }
                }
                None => std::future::pending().await,
            }
        };
        let got = tokio::select! {
            ev = self.leg.next_event() => Got::Caller(ev),
            m = caller_media.next() => Got::CallerMedia(m),
            ev = out_ev => Got::Out(ev),
            _ = sleep => Got::Timeout,
            _ = shutdown.cancelled() => Got::Shutdown,
        };
        match got {
            Got::Caller(LegEvent::MediaChanged(n)) => {
                caller_media.update_remote(Some(n.remote), n.codec, sending_allowed(&n));
                HuntWait::Nothing
            }
            Got::Caller(LegEvent::Dtmf(_)) => HuntWait::Nothing,
            Got::Caller(LegEvent::HungUp) => HuntWait::Caller(Gone::CallerHungUp),
            Got::Caller(LegEvent::Failed(e)) => HuntWait::Caller(Gone::Failed(e)),
            Got::CallerMedia(MediaInput::Event(Some(MediaEvent::RtpTimeout))) => {
                HuntWait::Caller(Gone::MediaTimeout)
            }
            Got::CallerMedia(MediaInput::Event(None)) => {
                HuntWait::Caller(Gone::Failed("media receive stopped".into()))
            }
            Got::CallerMedia(_) => HuntWait::Nothing,
            Got::Timeout => HuntWait::Timeout,
            Got::Shutdown => HuntWait::Caller(Gone::Failed(
                "the daemon is shutting down and the drain time is over".into(),
            )),
            Got::Out(None) => HuntWait::Nothing,
            Got::Out(Some(Err(m))) => match m {
                MediaInput::Event(Some(MediaEvent::Dtmf(k, _))) => {
                    HuntWait::Input(HuntInput::ScreenKey(k))
                }
                _ => HuntWait::Nothing,
            },
            Got::Out(Some(Ok(ev))) => {
                let Some(a) = current.as_mut() else {
                    return HuntWait::Nothing;
                };
                self.on_out_event(a, ev)
            }
        }
    }

    /// Translate a volunteer-leg event for the hunt, setting up media on the way.
    fn on_out_event(&mut self, a: &mut Attempt, ev: OutEvent) -> HuntWait {
        match ev {
            OutEvent::Ringing => HuntWait::Input(HuntInput::Provisional(180)),
            OutEvent::EarlyMedia(body) => {
                if let Ok(n) = sdp::parse(&body).and_then(|o| sdp::negotiate_answer(&o)) {
                    a.media.set_media(n.codec, n.telephone_event);
                    a.media.update_remote(Some(n.remote), n.codec, true);
                    if let Some(caller) = self.media.as_ref() {
                        // RFC 3960: their ringback or announcement replaces ours.
                        a.media
                            .bridge_to(caller, caller.relay_into(a.media.leg_media()));
                        a.early_media = true;
                    }
                }
                HuntWait::Input(HuntInput::EarlyMedia)
            }
            OutEvent::Answered(body) => {
                a.media.arm_timeout();
                match sdp::parse(&body).and_then(|o| sdp::negotiate_answer(&o)) {
                    Ok(n) => {
                        a.media.set_media(n.codec, n.telephone_event);
                        a.media
                            .update_remote(Some(n.remote), n.codec, sending_allowed(&n));
                    }
                    Err(e) => {
                        warn!(volunteer = %a.volunteer, "volunteer's answer has unusable SDP: {e}")
                    }
                }
                if a.early_media {
                    a.media.untap();
                    a.early_media = false;
                }
                HuntWait::Input(HuntInput::Answered)
            }
            OutEvent::Rejected { status, contact } => match contact {
                Some(c) if (300..400).contains(&status) => {
                    let from_uri = self.ctx.roster_uri_of(&a.volunteer);
                    if from_uri
                        .as_deref()
                        .is_some_and(|orig| self.redirect_allowed(orig, &c))
                    {
                        info!(volunteer = %a.volunteer, contact = %c, "following the volunteer's redirect");
                        HuntWait::Input(HuntInput::Redirect(c))
                    } else {
                        warn!(volunteer = %a.volunteer, contact = %c, "refusing to follow a redirect to a place the roster does not name (toll-fraud guard)");
                        HuntWait::Input(HuntInput::Final(status))
                    }
                }
                _ => HuntWait::Input(HuntInput::Final(status)),
            },
            OutEvent::HungUp => HuntWait::Input(HuntInput::VolunteerGone),
            OutEvent::Dtmf(k) => HuntWait::Input(HuntInput::ScreenKey(k)),
            OutEvent::MediaChanged(n) => {
                a.media
                    .update_remote(Some(n.remote), n.codec, sending_allowed(&n));
                HuntWait::Nothing
            }
            OutEvent::Failed(e) => {
                info!(volunteer = %a.volunteer, "call to the volunteer failed: {e}");
                HuntWait::Input(HuntInput::Final(408))
            }
        }
    }

    /// Connect caller and volunteer, relay until either hangs up.
    async fn bridge(&mut self, mut a: Attempt) -> Result<Forwarded, Gone> {
        let Some(caller) = self.media.as_mut() else {
            return Err(Gone::Failed("no media".into()));
        };
        caller.stop();
        a.media.stop();
        a.media.untap();
        a.media
            .bridge_to(caller, caller.relay_into(a.media.leg_media()));
        caller.bridge_to(&a.media, a.media.relay_into(caller.leg_media()));
        self.ctx.store.record(CallEvent::Connected {
            call_id: self.leg.call_id.clone(),
            volunteer: a.volunteer.clone(),
            at: Utc::now(),
        });
        info!(volunteer = %a.volunteer, "caller connected to the volunteer");
        let shutdown = self.ctx.shutdown.clone();
        let hangup_by = loop {
            let Some(caller) = self.media.as_mut() else {
                break HangupBy::System;
            };
            tokio::select! {
                ev = self.leg.next_event() => match ev {
                    LegEvent::HungUp => {
                        a.leg.hangup().await;
                        break HangupBy::Caller;
                    }
                    LegEvent::Failed(e) => {
                        warn!("caller's leg failed during the conversation: {e}");
                        a.leg.hangup().await;
                        break HangupBy::System;
                    }
                    LegEvent::MediaChanged(n) => {
                        caller.update_remote(Some(n.remote), n.codec, sending_allowed(&n));
                    }
                    LegEvent::Dtmf(_) => {}
                },
                ev = a.leg.next_event() => match ev {
                    OutEvent::HungUp => {
                        self.leg.hangup().await;
                        break HangupBy::Volunteer;
                    }
                    OutEvent::Failed(e) => {
                        warn!("volunteer's leg failed during the conversation: {e}");
                        self.leg.hangup().await;
                        break HangupBy::System;
                    }
                    OutEvent::MediaChanged(n) => {
                        a.media.update_remote(Some(n.remote), n.codec, sending_allowed(&n));
                    }
                    _ => {}
                },
                m = caller.next() => if let MediaInput::Event(Some(MediaEvent::RtpTimeout)) | MediaInput::Event(None) = m {
                    info!("no audio from the caller for too long; ending the conversation");
                    a.leg.hangup().await;
                    self.leg.hangup().await;
                    break HangupBy::System;
                },
                m = a.media.next() => if let MediaInput::Event(Some(MediaEvent::RtpTimeout)) | MediaInput::Event(None) = m {
                    info!("no audio from the volunteer for too long; ending the conversation");
                    a.leg.hangup().await;
                    self.leg.hangup().await;
                    break HangupBy::System;
                },
                _ = shutdown.cancelled() => {
                    a.leg.hangup().await;
                    self.leg.hangup().await;
                    break HangupBy::System;
                }
            }
        };
        a.media.untap();
        if let Some(m) = self.media.as_ref() {
            m.untap();
        }
        info!(volunteer = %a.volunteer, hangup_by = hangup_by.as_str(), "conversation ended");
        Ok(Forwarded::Connected { hangup_by })
    }

    /// Nobody answered: invite a message after the tone and record it.
    pub(crate) async fn voicemail(&mut self) -> Result<Voicemail, Gone> {
        self.play_to_end("all_busy").await?;
        self.play_to_end("beep").await?;
        let max = self.ctx.voicemail_max;
        self.media_mut()?.record(Recorder::new(max));
        info!("recording a voicemail message");
        let deadline = Instant::now() + max;
        let mut hangup_by = HangupBy::System;
        loop {
            let shutdown = self.ctx.shutdown.clone();
            let Some(media) = self.media.as_mut() else {
                break;
            };
            tokio::select! {
                ev = self.leg.next_event() => match ev {
                    LegEvent::HungUp => { hangup_by = HangupBy::Caller; break; }
                    LegEvent::Failed(_) => break,
                    _ => {}
                },
                m = media.next() => match m {
                    // '#' ends the message, as on Asterisk's voicemail.
                    MediaInput::Event(Some(MediaEvent::Dtmf('#', _))) => break,
                    MediaInput::Event(Some(MediaEvent::RtpTimeout)) | MediaInput::Event(None) => break,
                    _ => {}
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if media.recording_full() { break; }
                }
                _ = shutdown.cancelled() => break,
            }
        }
        let recorder = match self.media_mut()?.untap() {
            Tap::Record(r) => r,
            _ => Recorder::new(max),
        };
        let mut path = None;
        if recorder.duration() >= Duration::from_millis(500) {
            let file = voicemail_path(&self.ctx.voicemail_dir, &self.leg.call_id, Utc::now());
            let written = {
                let file = file.clone();
                tokio::task::spawn_blocking(move || recorder.write_wav(&file)).await
            };
            match written {
                Ok(Ok(())) => {
                    let p = file.display().to_string();
                    info!(path = %p, "voicemail saved; the duty desk will call back");
                    self.ctx.store.record(CallEvent::Voicemail {
                        call_id: self.leg.call_id.clone(),
                        path: p.clone(),
                    });
                    path = Some(p);
                }
                Ok(Err(e)) => warn!("could not save the voicemail: {e}"),
                Err(e) => warn!("could not save the voicemail: {e}"),
            }
        }
        if hangup_by == HangupBy::System && !self.leg.is_ended() {
            if self.prompt("goodbye").is_ok() {
                self.play_to_end("goodbye").await.ok();
            }
            self.leg.hangup().await;
        }
        Ok(Voicemail { path, hangup_by })
    }
}

/// What the hunt loop waited for.
enum HuntWait {
    Input(HuntInput),
    Timeout,
    Caller(Gone),
    Nothing,
}

enum Got {
    Caller(LegEvent),
    CallerMedia(MediaInput),
    Out(Option<Result<OutEvent, MediaInput>>),
    Timeout,
    Shutdown,
}
