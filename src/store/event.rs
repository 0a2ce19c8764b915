//! The updates the call flow sends to the store, one per thing that happens
//! to a call. The call flow only builds these values; the writer task turns
//! them into SQL, so nothing on the call path waits for the database.

use chrono::{DateTime, SecondsFormat, Utc};

/// How a call ended, kept in `calls.outcome` so the coordinators can see
/// which callers never reached a volunteer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A volunteer answered and talked with the caller.
    Connected,
    /// Nobody answered and the caller left a message.
    Voicemail,
    /// Nobody answered and no message was left.
    NoAnswer,
    /// The caller hung up before reaching anyone.
    Abandoned,
    /// Something on our side broke the call (`calls.reason` says what).
    Failed,
    /// The daemon stopped (crash, kill, power loss) while the call was on;
    /// closed at the next start, ended at the last time it was known alive.
    Interrupted,
    /// A `hotline selftest` call: the menu ran, nobody was rung. Kept so the
    /// records are complete; reports and call metrics leave it out.
    Selftest,
}

impl Outcome {
    /// The word stored in the database (and checked by its CHECK constraint).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Connected => "connected",
            Outcome::Voicemail => "voicemail",
            Outcome::NoAnswer => "no_answer",
            Outcome::Abandoned => "abandoned",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Selftest => "selftest",
        }
    }
}

/// Who hung up, so dropped calls can be told apart from finished ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupBy {
    /// The caller sent BYE (or CANCEL).
    Caller,
    /// The volunteer's leg ended the call.
    Volunteer,
    /// The daemon ended it: timeout, error or shutdown.
    System,
}

impl HangupBy {
    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            HangupBy::Caller => "caller",
            HangupBy::Volunteer => "volunteer",
            HangupBy::System => "system",
        }
    }
}

/// How one attempt to ring a volunteer ended, kept per attempt so the
/// roster can be checked for people who never pick up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The volunteer picked up (2xx).
    Answered,
    /// The ring timeout passed.
    NoAnswer,
    /// 486 Busy Here / 600 Busy Everywhere.
    Busy,
    /// 603 Decline or a similar refusal.
    Declined,
    /// Any other error: a 4xx/5xx from the volunteer's side, or a failure
    /// here (unresolvable address, transport error), which has no SIP
    /// status and says why in `reason`.
    Failed,
    /// We sent CANCEL, e.g. because the caller hung up.
    Cancelled,
    /// The daemon stopped while this attempt was on; closed at the next start.
    Interrupted,
}

impl AttemptResult {
    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Answered => "answered",
            AttemptResult::NoAnswer => "no_answer",
            AttemptResult::Busy => "busy",
            AttemptResult::Declined => "declined",
            AttemptResult::Failed => "failed",
            AttemptResult::Cancelled => "cancelled",
            AttemptResult::Interrupted => "interrupted",
        }
    }
}

/// What is known when an INVITE arrives; creates the call's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// SIP Call-ID of the caller's leg; the key of the row.
    pub call_id: String,
    /// The caller's number or URI as presented.
    pub caller: String,
    /// The number dialed (Request-URI user part).
    pub dialed: String,
    /// When the INVITE arrived.
    pub started_at: DateTime<Utc>,
}

/// One leg's media figures at its end, RFC 3550's counts plus what RTCP told
/// us: a row of `call_quality`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegQuality {
    /// Caller leg's Call-ID.
    pub call_id: String,
    /// 0 for the caller's leg, else the volunteer attempt it belongs to.
    pub attempt_no: u32,
    /// RTP packets we sent on this leg.
    pub packets_sent: u32,
    /// RTP packets we received on it.
    pub packets_received: u32,
    /// Expected minus received (negative with duplicates).
    pub packets_lost: i64,
    /// Interarrival jitter of what we received, in microseconds.
    pub jitter_us: u32,
    /// The latest round trip from RTCP, in microseconds, when reports allowed one.
    pub rtt_us: Option<u32>,
    /// Our packets the peer reported lost, when it sent reports.
    pub peer_lost: Option<u32>,
    /// The jitter the peer reported for our stream, in microseconds.
    pub peer_jitter_us: Option<u32>,
    /// RTCP reports (SR or RR) received from the peer.
    pub rtcp_reports: u32,
}

impl LegQuality {
    /// `caller` or `volunteer`, as stored.
    pub fn leg(&self) -> &'static str {
        if self.attempt_no == 0 {
            "caller"
        } else {
            "volunteer"
        }
    }
}

/// One update to a call's records. The writer applies them strictly in the
/// order they were recorded, and applying one twice is harmless, so a retry
/// after a half-finished write does no damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A new call arrived: insert its row (ignored if it already exists).
    Started(NewCall),
    /// We answered the caller (200 OK sent).
    Answered {
        /// Caller leg's Call-ID.
        call_id: String,
        /// When we answered.
        at: DateTime<Utc>,
    },
    /// The caller pressed a key.
    Key {
        /// Caller leg's Call-ID.
        call_id: String,
        /// Every key pressed so far, in order (not only the new one), so a
        /// lost or repeated update cannot garble the sequence.
        keys: String,
    },
    /// The caller chose a service station.
    Station {
        /// Caller leg's Call-ID.
        call_id: String,
        /// The station's name from the menu.
        station: String,
    },
    /// A volunteer answered and the legs were bridged.
    Connected {
        /// Caller leg's Call-ID.
        call_id: String,
        /// The volunteer's name from the roster.
        volunteer: String,
        /// When the volunteer answered.
        at: DateTime<Utc>,
    },
    /// The caller left a voicemail.
    Voicemail {
        /// Caller leg's Call-ID.
        call_id: String,
        /// Where the recording was saved.
        path: String,
    },
    /// The call is over.
    Ended {
        /// Caller leg's Call-ID.
        call_id: String,
        /// When the last leg ended.
        at: DateTime<Utc>,
        /// How it ended.
        outcome: Outcome,
        /// Who hung up.
        hangup_by: HangupBy,
        /// What went wrong on our side, in words, if anything did (e.g. the
        /// voicemail could not be saved).
        reason: Option<String>,
    },
    /// We started ringing a volunteer.
    AttemptStarted {
        /// Caller leg's Call-ID.
        call_id: String,
        /// 1 for the first volunteer rung on this call, then 2, 3...
        attempt_no: u32,
        /// The volunteer's name from the roster.
        volunteer: String,
        /// The SIP URI or number we rang.
        target: String,
        /// When the INVITE went out.
        at: DateTime<Utc>,
    },
    /// A ringing attempt finished.
    AttemptEnded {
        /// Caller leg's Call-ID.
        call_id: String,
        /// Same number as the matching `AttemptStarted`.
        attempt_no: u32,
        /// When it finished.
        at: DateTime<Utc>,
        /// How it finished.
        result: AttemptResult,
        /// Final SIP status, if one arrived; never made up for a local failure.
        sip_status: Option<u16>,
        /// Why it failed, when the failure was ours rather than a SIP answer.
        reason: Option<String>,
    },
    /// A leg's media ended: its quality figures (ignored if already stored).
    Quality(LegQuality),
}

impl CallEvent {
    /// The call this update belongs to, for log lines.
    pub fn call_id(&self) -> &str {
        match self {
            CallEvent::Started(c) => &c.call_id,
            CallEvent::Quality(q) => &q.call_id,
            CallEvent::Answered { call_id, .. }
            | CallEvent::Key { call_id, .. }
            | CallEvent::Station { call_id, .. }
            | CallEvent::Connected { call_id, .. }
            | CallEvent::Voicemail { call_id, .. }
            | CallEvent::Ended { call_id, .. }
            | CallEvent::AttemptStarted { call_id, .. }
            | CallEvent::AttemptEnded { call_id, .. } => call_id,
        }
    }
}

/// Formats a time the way both backends store it: RFC 3339, UTC, always
/// milliseconds and `Z`, so that text order is time order.
pub(crate) fn db_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn db_time_is_fixed_width_utc_with_millis() {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0).single();
        let t = t.map(db_time);
        assert_eq!(t.as_deref(), Some("2026-11-28T05:00:00.000Z"));
    }
}
