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
    /// Why no message could be kept (folder unwritable, disk full), for the
    /// call record; the caller heard the busy message instead.
    pub(crate) failed: Option<String>,
}

/// Bytes a message of `max` takes as 8 kHz 16-bit mono WAV, plus its header.
fn wav_bytes(max: Duration) -> u64 {
    max.as_secs().saturating_add(1).saturating_mul(16_000) + 44
}

/// Whether a message of up to `need` bytes can be saved in `dir`: the
/// folder can be made and written, and its file system has the room.
/// Blocking: run off the async runtime.
fn check_folder(dir: &std::path::Path, need: u64) -> Result<(), String> {
    let shown = dir.display();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {shown}: {e}"))?;
    let probe = dir.join(format!(".hotline-probe-{}", std::process::id()));
    let written = std::fs::write(&probe, b"probe");
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| format!("cannot write in {shown}: {e}"))?;
    let free =
        free_bytes(dir).map_err(|e| format!("cannot tell the free space in {shown}: {e}"))?;
    if free < need {
        return Err(format!(
            "{shown} is full: {free} bytes free, a message needs up to {need}"
        ));
    }
    Ok(())
}

/// Bytes an unprivileged process may still write on `dir`'s file system.
fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a NUL-terminated path and `st` a zeroed statvfs that
    // the call fills in; nothing is kept past the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)] // the field types differ per platform
    Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

impl Call {
    /// Play "please leave a message" and the beep, record until the caller hangs up,
    /// presses `#` (as on Asterisk's voicemail), goes silent, or the maximum length.
    pub(crate) async fn voicemail(&mut self) -> Result<Voicemail, Gone> {
        let dir = self.ctx.settings.voicemail_dir.clone();
        let need = wav_bytes(self.ctx.settings.voicemail_max);
        let checked = tokio::task::spawn_blocking(move || check_folder(&dir, need)).await;
        if let Err(why) = checked.unwrap_or_else(|e| Err(format!("folder check failed: {e}"))) {
            warn!("voicemail cannot be saved ({why}); telling the caller to call again later");
            return self
                .busy_instead(format!("voicemail unavailable: {why}"))
                .await;
        }
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
        let (path, failed) = match self.caller.stop_recording() {
            Some(r) if r.duration() >= Duration::from_millis(500) => match self.save(r).await {
                Ok(p) => (Some(p), None),
                Err(why) => (None, Some(format!("voicemail not saved: {why}"))),
            },
            _ => (None, None),
        };
        if hangup_by == HangupBy::System && !self.caller.is_ended() {
            // The message is lost: say so rather than a cheerful goodbye.
            let last = if failed.is_some() {
                "no_volunteer"
            } else {
                "goodbye"
            };
            if self.prompt(last).is_ok() {
                self.play_to_end(last).await.ok();
            }
            self.caller.hangup().await;
        }
        Ok(Voicemail {
            path,
            hangup_by,
            failed,
        })
    }

    /// No message can be kept: the caller hears the busy message ("nobody can
    /// take your call, please call again later") and we hang up.
    async fn busy_instead(&mut self, why: String) -> Result<Voicemail, Gone> {
        self.play_to_end("no_volunteer").await?;
        self.caller.hangup().await;
        Ok(Voicemail {
            path: None,
            hangup_by: HangupBy::System,
            failed: Some(why),
        })
    }

    /// Write the message as a WAV file (off the async runtime) and note it on the
    /// call's record; its path, or why it could not be written.
    async fn save(&self, recorder: crate::media::recorder::Recorder) -> Result<String, String> {
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
                Ok(p)
            }
            Ok(Err(e)) => {
                warn!("could not save the voicemail: {e}");
                Err(e.to_string())
            }
            Err(e) => {
                warn!("could not save the voicemail: {e}");
                Err(e.to_string())
            }
        }
    }
}
