//! Nobody answered: invite a message after the tone, record it, save it for the
//! duty desk to call back.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::call::caller::CallerEvent;
use crate::call::flow::{wait, Call, Gone, Wake};
use crate::media::recorder::voicemail_path;
use crate::store::{CallEvent, HangupBy};

/// How often a recording is checked for having reached its maximum length.
const FULL_CHECK: Duration = Duration::from_millis(500);

/// How a voicemail attempt ended.
pub(crate) struct Voicemail {
    /// The recording's path, if the caller said anything.
    pub(crate) path: Option<String>,
    pub(crate) hangup_by: HangupBy,
}

impl Call {
    /// Play "please leave a message" and the beep, record until the caller hangs up,
    /// presses `#` (as on Asterisk's voicemail), goes silent, or the maximum length.
    pub(crate) async fn voicemail(&mut self) -> Result<Voicemail, Gone> {
        self.play_to_end("all_busy").await?;
        self.play_to_end("beep").await?;
        let max = self.ctx.settings.voicemail_max;
        self.caller.start_recording(max);
        info!("recording a voicemail message");
        let end = Instant::now() + max;
        let shutdown = self.ctx.services.shutdown.clone();
        let mut hangup_by = HangupBy::System;
        loop {
            let check = (Instant::now() + FULL_CHECK).min(end);
            match wait(&mut self.caller, None, Some(check), &shutdown).await {
                Wake::Caller(CallerEvent::HungUp) => {
                    hangup_by = HangupBy::Caller;
                    break;
                }
                Wake::Caller(CallerEvent::Key('#', _)) => break,
                Wake::Caller(CallerEvent::Failed(_) | CallerEvent::MediaTimeout) => break,
                Wake::Caller(CallerEvent::Key(..) | CallerEvent::PromptFinished) => {}
                Wake::Deadline => {
                    if Instant::now() >= end || self.caller.recording_full() {
                        break;
                    }
                }
                Wake::Shutdown => break,
                Wake::Volunteer(_) => {}
            }
        }
        let path = match self.caller.stop_recording() {
            Some(r) if r.duration() >= Duration::from_millis(500) => self.save(r).await,
            _ => None,
        };
        if hangup_by == HangupBy::System && !self.caller.is_ended() {
            if self.prompt("goodbye").is_ok() {
                self.play_to_end("goodbye").await.ok();
            }
            self.caller.hangup().await;
        }
        Ok(Voicemail { path, hangup_by })
    }

    /// Write the message as a WAV file (off the async runtime) and note it on the
    /// call's record; its path, or None when it could not be written.
    async fn save(&self, recorder: crate::media::recorder::Recorder) -> Option<String> {
        let dir = &self.ctx.settings.voicemail_dir;
        let file = voicemail_path(dir, self.caller.call_id(), Utc::now());
        let written = {
            let file = file.clone();
            tokio::task::spawn_blocking(move || recorder.write_wav(&file)).await
        };
        match written {
            Ok(Ok(())) => {
                let p = file.display().to_string();
                info!(path = %p, "voicemail saved; the duty desk will call back");
                self.ctx.record(CallEvent::Voicemail {
                    call_id: self.caller.call_id().to_string(),
                    path: p.clone(),
                });
                Some(p)
            }
            Ok(Err(e)) => {
                warn!("could not save the voicemail: {e}");
                None
            }
            Err(e) => {
                warn!("could not save the voicemail: {e}");
                None
            }
        }
    }
}
