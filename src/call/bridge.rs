//! The conversation: caller and volunteer connected until either hangs up.

use chrono::Utc;
use tracing::{info, warn};

use crate::call::caller::CallerEvent;
use crate::call::flow::{leg_quality, wait, Call, Gone, Wake};
use crate::call::forward::{Attempt, Forwarded};
use crate::call::volunteer::{connect, disconnect, VolunteerEvent};
use crate::store::{CallEvent, HangupBy};

impl Call {
    /// Connect the caller to the volunteer who took the call (stopping the
    /// confirmation if it still plays), and relay until either side hangs up or
    /// goes silent. The claim on the volunteer is held to the end.
    pub(crate) async fn bridge(&mut self, mut a: Attempt) -> Result<Forwarded, Gone> {
        connect(&mut self.caller, &mut a.leg);
        self.ctx.record(CallEvent::Connected {
            call_id: self.caller.call_id().to_string(),
            volunteer: a.volunteer.clone(),
            at: Utc::now(),
        });
        info!(volunteer = %a.volunteer, "caller connected to the volunteer");
        let shutdown = self.ctx.services.shutdown.clone();
        let hangup_by = loop {
            let by = match wait(&mut self.caller, Some(&mut a.leg), None, &shutdown).await {
                Wake::Caller(CallerEvent::HungUp) => HangupBy::Caller,
                Wake::Caller(CallerEvent::Failed(e)) => {
                    warn!("caller's leg failed during the conversation: {e}");
                    HangupBy::System
                }
                Wake::Caller(CallerEvent::MediaTimeout) => {
                    info!("no audio from the caller for too long; ending the conversation");
                    HangupBy::System
                }
                Wake::Caller(CallerEvent::Key(..) | CallerEvent::PromptFinished) => continue,
                Wake::Volunteer(VolunteerEvent::HungUp) => HangupBy::Volunteer,
                Wake::Volunteer(VolunteerEvent::Failed(e)) => {
                    warn!("volunteer's leg failed during the conversation: {e}");
                    HangupBy::System
                }
                Wake::Volunteer(VolunteerEvent::MediaTimeout) => {
                    info!("no audio from the volunteer for too long; ending the conversation");
                    HangupBy::System
                }
                Wake::Volunteer(_) | Wake::Deadline => continue,
                Wake::Shutdown => HangupBy::System,
            };
            // Whichever side is still there hears a BYE (a leg already gone ignores it).
            a.leg.hangup().await;
            self.caller.hangup().await;
            break by;
        };
        disconnect(&mut self.caller, &mut a.leg);
        let quality = leg_quality(self.caller.call_id(), a.no, a.leg.media_quality());
        self.ctx.record(CallEvent::Quality(quality));
        info!(volunteer = %a.volunteer, hangup_by = hangup_by.as_str(), "conversation ended");
        Ok(Forwarded::Connected { hangup_by })
    }
}
