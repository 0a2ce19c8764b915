//! One call, start to end, as straight-line async code:
//! answer, play the menu, collect the choice, forward, hang up, and record every step.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::call::forward::Forwarded;
use crate::call::menu::{ChoiceReason, Menu, MenuAction, MenuSpec, PromptKind};
use crate::call::CallContext;
use crate::media::prompts::Prompt;
use crate::media::session::{DtmfMethod, MediaEvent, MediaInput, MediaSession, RxConfig};
use crate::sip::leg::{sending_allowed, InboundLeg, LegEvent, LocalMedia};
use crate::sip::sdp::{self, Negotiated};
use crate::store::{CallEvent, HangupBy, NewCall, Outcome};

/// Why a call stopped before its natural end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Gone {
    /// The caller hung up (BYE or CANCEL).
    CallerHungUp,
    /// Their media stopped with no BYE: the RTP timeout.
    MediaTimeout,
    /// Something broke: no ACK, no ports, a transport error.
    Failed(String),
}

/// What the call flow hears while waiting.
enum Input {
    Key(char, DtmfMethod),
    PromptDone,
    Timeout,
}

/// One call in progress.
pub(crate) struct Call {
    pub(crate) ctx: Arc<CallContext>,
    pub(crate) leg: InboundLeg,
    pub(crate) media: Option<MediaSession>,
    pub(crate) keys: String,
}

/// Run a call to its end. `negotiated` is the SDP negotiation of the INVITE's offer
/// (None for an INVITE without SDP: our offer goes in the 200, the answer in the ACK).
pub async fn run(ctx: Arc<CallContext>, leg: InboundLeg, negotiated: Option<Negotiated>) {
    ctx.store.record(CallEvent::Started(NewCall {
        call_id: leg.call_id.clone(),
        caller: leg.caller.clone(),
        dialed: leg.dialed.clone(),
        started_at: Utc::now(),
    }));
    info!(caller = %leg.caller, dialed = %leg.dialed, "incoming call");
    let mut call = Call {
        ctx,
        leg,
        media: None,
        keys: String::new(),
    };
    let (outcome, hangup_by) = match call.steps(negotiated).await {
        Ok(done) => done,
        Err(Gone::CallerHungUp) => {
            info!("caller hung up before reaching a person");
            (Outcome::Abandoned, HangupBy::Caller)
        }
        Err(Gone::MediaTimeout) => {
            info!("no audio from the caller for too long; ending the call");
            call.leg.hangup().await;
            (Outcome::Abandoned, HangupBy::System)
        }
        Err(Gone::Failed(why)) => {
            warn!("call failed: {why}");
            call.leg.hangup().await;
            (Outcome::Failed, HangupBy::System)
        }
    };
    call.media = None;
    call.ctx.store.record(CallEvent::Ended {
        call_id: call.leg.call_id.clone(),
        at: Utc::now(),
        outcome,
        hangup_by,
    });
    info!(outcome = outcome.as_str(), keys = %call.keys, "call ended");
}

impl Call {
    /// The call's story. Each step returns `Err(Gone)` if the caller left meanwhile.
    async fn steps(&mut self, negotiated: Option<Negotiated>) -> Result<(Outcome, HangupBy), Gone> {
        self.answer(negotiated).await?;
        let station = self.choose_station().await?;
        self.play_to_end(&format!("station_{station}")).await?;
        match self.forward(&station).await? {
            Forwarded::Connected { hangup_by } => Ok((Outcome::Connected, hangup_by)),
            Forwarded::NobodyAnswered if !self.ctx.voicemail => {
                info!(%station, "no volunteer took the call; telling the caller to call again later");
                self.play_to_end("no_volunteer").await?;
                self.leg.hangup().await;
                Ok((Outcome::NoAnswer, HangupBy::System))
            }
            Forwarded::NobodyAnswered => {
                let vm = self.voicemail().await?;
                let outcome = match vm.path {
                    Some(_) => Outcome::Voicemail,
                    None => Outcome::NoAnswer,
                };
                Ok((outcome, vm.hangup_by))
            }
        }
    }

    /// Open media, send 200 OK with our SDP, wait for the ACK.
    async fn answer(&mut self, negotiated: Option<Negotiated>) -> Result<(), Gone> {
        let ctx = self.ctx.clone();
        let rx = |n: Option<&Negotiated>| RxConfig {
            codec: n
                .map(|n| n.codec)
                .unwrap_or(crate::media::codec::Codec::Pcmu),
            telephone_event: n.and_then(|n| n.telephone_event),
            inband: n.map(|n| n.telephone_event.is_none()).unwrap_or(true),
            rtp_timeout: ctx.rtp_timeout,
            timeout_armed: true,
        };
        let media = MediaSession::open(
            &ctx.ports,
            &ctx.clock,
            negotiated.as_ref().map(|n| n.remote),
            rx(negotiated.as_ref()),
        )
        .await;
        let media = match media {
            Ok(m) => m,
            Err(e) => {
                self.leg
                    .reject(rsipstack::sip::StatusCode::ServiceUnavailable);
                return Err(Gone::Failed(e.to_string()));
            }
        };
        let local = LocalMedia {
            ip: ctx.public_ip,
            port: media.local_port,
            session_id: rand::random::<u32>() as u64,
            version: 1,
        };
        let body = match &negotiated {
            Some(n) => sdp::answer(local.ip, local.port, n, local.session_id, local.version),
            None => sdp::offer(local.ip, local.port, local.session_id, local.version),
        };
        if let Some(n) = &negotiated {
            media.update_remote(Some(n.remote), n.codec, sending_allowed(n));
        }
        self.media = Some(media);
        let ack_body = self
            .leg
            .answer(local, negotiated, body)
            .await
            .map_err(gone)?;
        if negotiated.is_none() {
            // Our offer went in the 200; the answer must be in the ACK (RFC 3261 §13.2.1).
            let answer = ack_body
                .ok_or_else(|| Gone::Failed("the ACK carried no SDP answer to our offer".into()))?;
            let n = sdp::parse(&answer)
                .and_then(|a| sdp::negotiate_answer(&a))
                .map_err(|e| Gone::Failed(format!("unusable SDP answer in the ACK: {e}")))?;
            self.media_mut()?
                .update_remote(Some(n.remote), n.codec, sending_allowed(&n));
            self.leg.set_negotiated(n);
        }
        info!("answered");
        self.ctx.store.record(CallEvent::Answered {
            call_id: self.leg.call_id.clone(),
            at: Utc::now(),
        });
        Ok(())
    }

    /// Play the menu and collect a station; returns its id.
    async fn choose_station(&mut self) -> Result<String, Gone> {
        let ctx = self.ctx.clone();
        let mut menu = Menu::new(MenuSpec {
            valid_keys: ctx.stations.iter().map(|s| s.key).collect(),
            desk_key: '0',
            timeout: ctx.menu_timeout,
            max_tries: ctx.max_tries,
        });
        menu.start(Instant::now().into_std());
        loop {
            while let Some(action) = menu.poll_action() {
                match action {
                    MenuAction::Play(kind) => {
                        let name = match kind {
                            PromptKind::Welcome => "welcome",
                            PromptKind::Menu => "menu",
                            PromptKind::Invalid => "invalid",
                        };
                        let prompt = self.prompt(name)?;
                        self.media_mut()?.play(prompt);
                    }
                    MenuAction::StopPrompt => self.media_mut()?.stop(),
                    MenuAction::Chosen { key, reason } => {
                        let station = ctx
                            .stations
                            .iter()
                            .find(|s| s.key == key)
                            .map(|s| s.id.clone())
                            .unwrap_or_else(|| "desk".into());
                        match reason {
                            ChoiceReason::Pressed => {
                                info!(%key, %station, "caller chose a station")
                            }
                            ChoiceReason::NoValidChoice => {
                                info!(%station, "no valid choice after every try; sending the caller to the duty desk")
                            }
                        }
                        self.ctx.store.record(CallEvent::Station {
                            call_id: self.leg.call_id.clone(),
                            station: station.clone(),
                        });
                        return Ok(station);
                    }
                }
            }
            let deadline = menu.poll_timeout().map(Instant::from_std);
            match self.next_input(deadline).await? {
                Input::Key(key, method) => {
                    self.note_key(key, method);
                    menu.key(key, Instant::now().into_std());
                }
                Input::PromptDone => menu.prompt_finished(Instant::now().into_std()),
                Input::Timeout => {
                    info!("no key pressed in time");
                    menu.timeout(Instant::now().into_std());
                }
            }
        }
    }

    /// Play a prompt to its end; keys pressed meanwhile are recorded, not acted on.
    pub(crate) async fn play_to_end(&mut self, name: &str) -> Result<(), Gone> {
        let prompt = self.prompt(name)?;
        self.media_mut()?.play(prompt);
        loop {
            match self.next_input(None).await? {
                Input::PromptDone => return Ok(()),
                Input::Key(key, method) => self.note_key(key, method),
                Input::Timeout => {}
            }
        }
    }

    /// Wait for the next thing that matters: a key (by any method), the prompt's
    /// end, the menu's deadline, or the caller going away.
    async fn next_input(&mut self, deadline: Option<Instant>) -> Result<Input, Gone> {
        let shutdown = self.ctx.shutdown.clone();
        let Some(media) = self.media.as_mut() else {
            return Err(Gone::Failed("no media".into()));
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            // Which source spoke first; acted on after the select so each branch
            // borrows `media` only for its own future.
            enum Got {
                Leg(LegEvent),
                Media(Option<MediaEvent>),
                Finished,
                Timeout,
                Shutdown,
            }
            let got = tokio::select! {
                ev = self.leg.next_event() => Got::Leg(ev),
                m = media.next() => match m {
                    MediaInput::Event(ev) => Got::Media(ev),
                    MediaInput::PromptFinished => Got::Finished,
                },
                _ = &mut sleep => Got::Timeout,
                _ = shutdown.cancelled() => Got::Shutdown,
            };
            match got {
                Got::Leg(LegEvent::Dtmf(key)) => return Ok(Input::Key(key, DtmfMethod::SipInfo)),
                Got::Leg(LegEvent::MediaChanged(n)) => {
                    media.update_remote(Some(n.remote), n.codec, sending_allowed(&n));
                    info!(
                        on_hold = !sending_allowed(&n),
                        "caller changed the media (re-INVITE)"
                    );
                }
                Got::Leg(other) => return Err(gone(other)),
                Got::Media(Some(MediaEvent::Dtmf(key, method))) => {
                    return Ok(Input::Key(key, method))
                }
                Got::Media(Some(MediaEvent::RtpTimeout)) => return Err(Gone::MediaTimeout),
                Got::Media(None) => return Err(Gone::Failed("media receive stopped".into())),
                Got::Finished => return Ok(Input::PromptDone),
                Got::Timeout => return Ok(Input::Timeout),
                Got::Shutdown => {
                    return Err(Gone::Failed(
                        "the daemon is shutting down and the drain time is over".into(),
                    ))
                }
            }
        }
    }

    fn note_key(&mut self, key: char, method: DtmfMethod) {
        self.keys.push(key);
        info!(%key, method = method.as_str(), "caller pressed a key");
        self.ctx.store.record(CallEvent::Key {
            call_id: self.leg.call_id.clone(),
            keys: self.keys.clone(),
        });
    }

    pub(crate) fn prompt(&self, name: &str) -> Result<Arc<Prompt>, Gone> {
        self.ctx
            .prompts
            .get(name)
            .ok_or_else(|| Gone::Failed(format!("prompt {name}.wav is not loaded")))
    }

    pub(crate) fn media_mut(&mut self) -> Result<&mut MediaSession, Gone> {
        self.media
            .as_mut()
            .ok_or_else(|| Gone::Failed("no media".into()))
    }
}

fn gone(ev: LegEvent) -> Gone {
    match ev {
        LegEvent::HungUp => Gone::CallerHungUp,
        LegEvent::Failed(why) => Gone::Failed(why),
        other => Gone::Failed(format!("unexpected {other:?}")),
    }
}

/// The default for how long the menu waits for a key after it finishes.
pub const DEFAULT_MENU_TIMEOUT: Duration = Duration::from_secs(6);
