//! One call, start to end, as straight-line async code: answer, play the menu,
//! collect the choice, forward (the confirmation plays while the first volunteer
//! rings), bridge or take a message, hang up, and record every step.

use std::sync::Arc;

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::call::caller::{CallerEvent, CallerLeg};
use crate::call::forward::Forwarded;
use crate::call::menu::{ChoiceReason, Menu, MenuAction, PromptKind};
use crate::call::volunteer::{VolunteerEvent, VolunteerLeg};
use crate::call::CallContext;
use crate::media::prompts::Prompt;
use crate::media::rtcp::Quality;
use crate::media::session::DtmfMethod;
use crate::roster::DESK;
use crate::sip::leg::InboundLeg;
use crate::sip::sdp::Negotiated;
use crate::store::{CallEvent, HangupBy, LegQuality, NewCall, Outcome};

/// Why a call stopped before its natural end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Gone {
    /// The caller hung up (BYE or CANCEL).
    CallerHungUp,
    /// Their media stopped with no BYE: the RTP timeout.
    MediaTimeout,
    /// Something broke: no ACK, no ports, a transport error, the drain time over.
    Failed(String),
}

impl Gone {
    /// The daemon is shutting down and the drain time is over.
    pub(crate) fn shutdown() -> Gone {
        Gone::Failed("the daemon is shutting down and the drain time is over".into())
    }

    /// From a caller event that ends the call (anything but a key or a prompt's end).
    pub(crate) fn from_caller(ev: CallerEvent) -> Gone {
        match ev {
            CallerEvent::HungUp => Gone::CallerHungUp,
            CallerEvent::MediaTimeout => Gone::MediaTimeout,
            CallerEvent::Failed(why) => Gone::Failed(why),
            other => Gone::Failed(format!("unexpected {other:?}")),
        }
    }
}

/// What woke the call up: the one place the flow waits on both legs, a deadline
/// and the shutdown.
pub(crate) enum Wake {
    Caller(CallerEvent),
    Volunteer(VolunteerEvent),
    Deadline,
    Shutdown,
}

/// Wait for the next thing that matters: an event on the caller's leg or on the
/// volunteer's (if any), `deadline` passing (if any), or the end of the drain time.
pub(crate) async fn wait(
    caller: &mut CallerLeg,
    volunteer: Option<&mut VolunteerLeg>,
    deadline: Option<Instant>,
    shutdown: &CancellationToken,
) -> Wake {
    let volunteer = async {
        match volunteer {
            Some(v) => v.next().await,
            None => std::future::pending().await,
        }
    };
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        ev = caller.next() => Wake::Caller(ev),
        ev = volunteer => Wake::Volunteer(ev),
        _ = sleep => Wake::Deadline,
        _ = shutdown.cancelled() => Wake::Shutdown,
    }
}

/// How a call ended: outcome, who hung up, what went wrong on our side.
type Ended = (Outcome, HangupBy, Option<String>);

/// One call in progress.
pub(crate) struct Call {
    pub(crate) ctx: Arc<CallContext>,
    pub(crate) caller: CallerLeg,
    /// Every key the caller pressed before reaching a person, for the record.
    pub(crate) keys: String,
    /// A `hotline selftest` call: run the menu, report the hunt list, ring nobody.
    pub(crate) selftest: bool,
}

/// A leg's media figures as the call record keeps them (attempt 0: the caller).
pub(crate) fn leg_quality(call_id: &str, attempt_no: u32, q: Quality) -> LegQuality {
    LegQuality {
        call_id: call_id.to_string(),
        attempt_no,
        packets_sent: q.packets_sent,
        packets_received: q.packets_received,
        packets_lost: q.packets_lost,
        jitter_us: q.jitter_us,
        rtt_us: q.rtt_us,
        peer_lost: q.peer_lost,
        peer_jitter_us: q.peer_jitter_us,
        rtcp_reports: q.reports_received,
    }
}

/// Run a call to its end. `offer` is the SDP negotiation of the INVITE's offer
/// (None for an INVITE without SDP: our offer goes in the 200, the answer in the ACK).
/// `selftest`: a `hotline selftest` call (see [`crate::call::selftest`]).
pub(crate) async fn run(
    ctx: Arc<CallContext>,
    leg: InboundLeg,
    offer: Option<Negotiated>,
    selftest: bool,
) {
    let caller = CallerLeg::new(leg);
    ctx.record(CallEvent::Started(NewCall {
        call_id: caller.call_id().to_string(),
        caller: caller.number().to_string(),
        dialed: caller.dialed().to_string(),
        started_at: Utc::now(),
    }));
    if selftest {
        info!(caller = %caller.number(), dialed = %caller.dialed(), "incoming self-test call (rings nobody)");
    } else {
        info!(caller = %caller.number(), dialed = %caller.dialed(), "incoming call");
    }
    let mut call = Call {
        ctx,
        caller,
        keys: String::new(),
        selftest,
    };
    let (outcome, hangup_by, reason) = match call.steps(offer).await {
        Ok(done) => done,
        Err(Gone::CallerHungUp) => {
            info!("caller hung up before reaching a person");
            (Outcome::Abandoned, HangupBy::Caller, None)
        }
        Err(Gone::MediaTimeout) => {
            info!("no audio from the caller for too long; ending the call");
            call.caller.hangup().await;
            (Outcome::Abandoned, HangupBy::System, None)
        }
        Err(Gone::Failed(why)) => {
            warn!("call failed: {why}");
            call.caller.hangup().await;
            (Outcome::Failed, HangupBy::System, Some(why))
        }
    };
    if let Some(q) = call.caller.media_quality() {
        let quality = leg_quality(call.caller.call_id(), 0, q);
        call.ctx.record(CallEvent::Quality(quality));
    }
    call.caller.close_media();
    call.ctx.record(CallEvent::Ended {
        call_id: call.caller.call_id().to_string(),
        at: Utc::now(),
        outcome,
        hangup_by,
        reason,
    });
    info!(outcome = outcome.as_str(), keys = %keys_pressed(&call.keys), "call ended");
}

/// The keys for the "call ended" line: `none` rather than an empty `keys=`.
fn keys_pressed(keys: &str) -> &str {
    if keys.is_empty() {
        "none"
    } else {
        keys
    }
}

impl Call {
    /// The call's story. Each step returns `Err(Gone)` if the caller left meanwhile.
    /// Ends with the outcome, who hung up, and what went wrong on our side if
    /// anything did.
    async fn steps(&mut self, offer: Option<Negotiated>) -> Result<Ended, Gone> {
        self.answer(offer).await?;
        let station = self.choose_station().await?;
        if self.selftest {
            return Ok(self.report_selftest(&station).await);
        }
        // The station's confirmation plays while the first volunteer already rings.
        let forwarded = self.forward(&station).await?;
        if let Forwarded::Connected { hangup_by } = forwarded {
            return Ok((Outcome::Connected, hangup_by, None));
        }
        self.finish_prompt().await?; // the confirmation, when nobody could be rung
        if !self.ctx.settings.voicemail {
            info!(%station, "no volunteer took the call; telling the caller to call again later");
            self.play_to_end("no_volunteer").await?;
            self.caller.hangup().await;
            return Ok((Outcome::NoAnswer, HangupBy::System, None));
        }
        let vm = self.voicemail().await?;
        let outcome = match (&vm.path, &vm.failed) {
            (Some(_), _) => Outcome::Voicemail,
            (None, Some(_)) => Outcome::Failed,
            (None, None) => Outcome::NoAnswer,
        };
        Ok((outcome, vm.hangup_by, vm.failed))
    }

    /// Open media, send 200 OK with our SDP, wait for the ACK.
    async fn answer(&mut self, offer: Option<Negotiated>) -> Result<(), Gone> {
        self.caller.answer(&self.ctx, offer).await?;
        info!("answered");
        self.ctx.record(CallEvent::Answered {
            call_id: self.caller.call_id().to_string(),
            at: Utc::now(),
        });
        Ok(())
    }

    /// Play the menu and collect a station; returns its id.
    async fn choose_station(&mut self) -> Result<String, Gone> {
        let ctx = self.ctx.clone();
        let mut menu = Menu::new(ctx.settings.menu_spec());
        menu.start(Instant::now().into_std());
        loop {
            while let Some(action) = menu.poll_action() {
                match action {
                    MenuAction::Play(kind) => {
                        let name = match kind {
                            PromptKind::Welcome => "welcome",
                            PromptKind::Menu => "menu",
                            PromptKind::MenuShort => "menu_short",
                            PromptKind::Invalid => "invalid",
                        };
                        let prompt = self.prompt(name)?;
                        self.caller.play(prompt);
                    }
                    MenuAction::StopPrompt => self.caller.stop(),
                    MenuAction::Chosen { key, reason } => {
                        let station = ctx
                            .settings
                            .stations
                            .iter()
                            .find(|s| s.key == key)
                            .map_or_else(|| DESK.to_string(), |s| s.id.clone());
                        match reason {
                            ChoiceReason::Pressed => {
                                info!(%key, %station, "caller chose a station")
                            }
                            ChoiceReason::NoValidChoice => {
                                info!(%station, "no valid choice after every try; sending the caller to the duty desk")
                            }
                            ChoiceReason::NoKey => {
                                info!(%station, hearings = ctx.settings.silent_tries, "no key pressed at all; connecting the caller to the duty desk")
                            }
                        }
                        ctx.record(CallEvent::Station {
                            call_id: self.caller.call_id().to_string(),
                            station: station.clone(),
                        });
                        return Ok(station);
                    }
                }
            }
            let deadline = menu.poll_timeout().map(Instant::from_std);
            let wake = wait(&mut self.caller, None, deadline, &ctx.services.shutdown).await;
            let now = Instant::now().into_std();
            match wake {
                Wake::Caller(CallerEvent::Key(key, method)) => {
                    self.note_key(key, method);
                    menu.key(key, now);
                }
                Wake::Caller(CallerEvent::PromptFinished) => menu.prompt_finished(now),
                Wake::Caller(ev) => return Err(Gone::from_caller(ev)),
                Wake::Deadline => {
                    info!("no key pressed in time");
                    menu.timeout(now);
                }
                Wake::Shutdown => return Err(Gone::shutdown()),
                Wake::Volunteer(_) => {}
            }
        }
    }

    /// Play a prompt to its end; keys pressed meanwhile are recorded, not acted on.
    pub(crate) async fn play_to_end(&mut self, name: &str) -> Result<(), Gone> {
        let prompt = self.prompt(name)?;
        self.caller.play(prompt);
        self.finish_prompt().await
    }

    /// Let the prompt playing (if any) play to its end; keys pressed meanwhile are
    /// recorded, not acted on.
    pub(crate) async fn finish_prompt(&mut self) -> Result<(), Gone> {
        let shutdown = self.ctx.services.shutdown.clone();
        while self.caller.is_playing_prompt() {
            match wait(&mut self.caller, None, None, &shutdown).await {
                Wake::Caller(CallerEvent::PromptFinished) => {}
                Wake::Caller(CallerEvent::Key(key, method)) => self.note_key(key, method),
                Wake::Caller(ev) => return Err(Gone::from_caller(ev)),
                Wake::Shutdown => return Err(Gone::shutdown()),
                Wake::Deadline | Wake::Volunteer(_) => {}
            }
        }
        Ok(())
    }

    pub(crate) fn note_key(&mut self, key: char, method: DtmfMethod) {
        self.keys.push(key);
        info!(%key, method = method.as_str(), "caller pressed a key");
        self.ctx.record(CallEvent::Key {
            call_id: self.caller.call_id().to_string(),
            keys: self.keys.clone(),
        });
    }

    pub(crate) fn prompt(&self, name: &str) -> Result<Arc<Prompt>, Gone> {
        self.ctx
            .services
            .prompts
            .get(name)
            .ok_or_else(|| Gone::Failed(format!("prompt {name}.wav is not loaded")))
    }
}

#[cfg(test)]
mod tests {
    use super::keys_pressed;

    #[test]
    fn call_ended_says_none_when_no_key_was_pressed() {
        assert_eq!(keys_pressed(""), "none");
        assert_eq!(keys_pressed("20"), "20");
    }
}
