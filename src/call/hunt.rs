//! The hunt through the roster as a sans-I/O state machine.
//!
//! After the caller picks a station, [`Hunt`] decides whom to ring and when to
//! give up on them: ring each volunteer on duty in roster order for
//! `ring_timeout`, move on at once on busy or decline, follow one redirect per
//! volunteer, optionally ask the volunteer to press 1 (so a mobile's voicemail,
//! which "answers" too, never gets the caller), and report `Exhausted` when
//! nobody took the call so the flow can record a voicemail.
//!
//! Like [`crate::call::menu::Menu`] it never touches a socket or a clock: the
//! call flow feeds it SIP outcomes and keys with "now", drains
//! [`HuntAction`]s with [`Hunt::poll_action`], and calls [`Hunt::timeout`] when
//! [`Hunt::poll_timeout`] passes.
//!
//! Inputs are about the current attempt only ([`Hunt::current_attempt`]): the
//! flow drops responses to older INVITEs. In particular a 200 OK that crosses
//! our CANCEL (RFC 3261 section 9.1) belongs to an attempt the hunt has left:
//! rsipstack ACKs it and ends it with a BYE by itself (pinned by
//! `sip::outbound`'s `answer_crossing_our_cancel_is_acked_and_hung_up`), so
//! neither the hunt nor the flow does anything about it.
//!
//! The hunt asks for ringback; what the caller actually hears (the confirmation
//! first, the volunteer's early media in place of our ringback) is
//! [`crate::call::ringback::Ringback`]'s to decide.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::store::AttemptResult;

/// One volunteer to ring, in roster order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The roster's id for the volunteer, for call records.
    pub volunteer_id: String,
    /// Where to send the INVITE.
    pub uri: String,
    /// Ask them to press 1 before bridging: set for phones whose voicemail
    /// answers (mobiles, forwarding), so the caller never lands on it.
    pub screen: bool,
}

/// How long to wait at each step; the admin's roster settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HuntSpec {
    /// How long one INVITE may ring before we CANCEL it and try the next volunteer.
    pub ring_timeout: Duration,
    /// How long a screened volunteer has to press 1 after answering.
    pub screen_timeout: Duration,
}

#[cfg(test)]
impl Default for HuntSpec {
    /// The config's defaults for ringing and screening.
    fn default() -> Self {
        HuntSpec {
            ring_timeout: Duration::from_secs(crate::config::DEFAULT_RING_TIMEOUT_S),
            screen_timeout: Duration::from_secs(crate::config::DEFAULT_SCREEN_TIMEOUT_S),
        }
    }
}

/// What happened on the current attempt's leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HuntInput {
    /// A 1xx arrived (the phone rings); nothing changes, the ring timeout runs on.
    Provisional(u16),
    /// The volunteer's side sent early media; nothing changes here (the ring
    /// timeout runs on). The caller hears it in place of our ringback: see
    /// [`crate::call::ringback`].
    EarlyMedia,
    /// A 2xx arrived: the volunteer (or their voicemail) picked up.
    Answered,
    /// A final failure response (>= 300, or a 3xx without a usable Contact).
    Final(u16),
    /// The attempt failed here, with no SIP answer: the INVITE could not be
    /// sent, the transport broke, or nothing came back. Recorded `failed` with
    /// this reason and no SIP status (none was received).
    LocalFailure(String),
    /// A 3xx with this first Contact URI.
    Redirect(String),
    /// The volunteer pressed a key on an answered leg (screening).
    ScreenKey(char),
    /// The volunteer hung up an answered leg during screening (BYE from them).
    VolunteerGone,
    /// The caller hung up.
    CallerGone,
    /// The volunteer just dialled is being rung or talking on another call (the
    /// flow could not claim them): skip them, with no attempt recorded. Only as the
    /// first input after a `Dial`.
    OnAnotherCall,
}

/// What the call flow must do next, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HuntAction {
    /// Send an INVITE to `uri` for `attempt` ([`Hunt::target_of`] says whom).
    /// Following a redirect, the attempt number is repeated: still the same try at
    /// the same volunteer, and the previous INVITE already has its final response.
    Dial { attempt: u32, uri: String },
    /// CANCEL the pending INVITE of this attempt (ring timeout, caller gone).
    Cancel { attempt: u32 },
    /// BYE this attempt's answered leg (screening refused or timed out, caller gone).
    Hangup { attempt: u32 },
    /// Start looping ringback to the caller.
    StartRingback,
    /// Stop the ringback (the hunt bridged, gave up, or the caller left).
    StopRingback,
    /// Play "press 1 to take this call" on this attempt's leg.
    PlayScreenPrompt { attempt: u32 },
    /// Connect the caller and this attempt's leg; the hunt is over.
    Bridge { attempt: u32 },
    /// This attempt is finished (for the call record).
    AttemptEnded {
        attempt: u32,
        result: AttemptResult,
        sip_status: Option<u16>,
        /// Why, when the failure was ours (no SIP status then).
        reason: Option<String>,
    },
    /// Nobody answered: go to voicemail.
    Exhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `start` not called yet.
    Idle,
    /// An INVITE is pending (RFC 3261 "Calling"/"Proceeding" on the client side).
    Ringing {
        attempt: u32,
        index: usize,
        deadline: Instant,
        /// A redirect was already followed for this volunteer.
        redirected: bool,
    },
    /// Answered by a screened volunteer; waiting for their key.
    Screening {
        attempt: u32,
        index: usize,
        deadline: Instant,
    },
    /// Bridged to a volunteer: done.
    Bridged { attempt: u32 },
    /// Everyone tried: done, voicemail.
    Exhausted,
    /// The caller left: done.
    Abandoned,
}

/// One caller's hunt through the roster. See the module docs for the driving loop.
#[derive(Debug, Clone)]
pub(crate) struct Hunt {
    targets: Vec<Target>,
    spec: HuntSpec,
    state: State,
    /// `attempt_targets[n - 1]` is the target index of attempt `n`.
    attempt_targets: Vec<usize>,
    actions: VecDeque<HuntAction>,
}

/// Maps a final failure status to its record (RFC 3261 section 21).
fn classify(status: u16) -> AttemptResult {
    match status {
        486 | 600 => AttemptResult::Busy,
        603 => AttemptResult::Declined,
        408 | 480 => AttemptResult::NoAnswer,
        _ => AttemptResult::Failed,
    }
}

impl Hunt {
    /// A hunt over `targets` in order, waiting for [`Hunt::start`].
    pub(crate) fn new(targets: Vec<Target>, spec: HuntSpec) -> Hunt {
        Hunt {
            targets,
            spec,
            state: State::Idle,
            attempt_targets: Vec::new(),
            actions: VecDeque::new(),
        }
    }

    /// Starts ringback and dials the first volunteer; with an empty roster the
    /// hunt is exhausted at once (no ringback: straight to voicemail).
    pub(crate) fn start(&mut self, now: Instant) {
        if self.state != State::Idle {
            return;
        }
        if self.targets.is_empty() {
            self.state = State::Exhausted;
            self.actions.push_back(HuntAction::Exhausted);
            return;
        }
        self.actions.push_back(HuntAction::StartRingback);
        self.dial(0, now);
    }

    /// Feeds what happened on the current attempt (see the module docs).
    pub(crate) fn handle(&mut self, input: HuntInput, now: Instant) {
        match self.state {
            State::Idle => {
                if input == HuntInput::CallerGone {
                    self.state = State::Abandoned;
                }
            }
            State::Ringing {
                attempt,
                index,
                redirected,
                ..
            } => match input {
                HuntInput::Provisional(_) | HuntInput::EarlyMedia | HuntInput::ScreenKey(_) => {}
                // Not possible before a 2xx; a confused driver must not end the attempt.
                HuntInput::VolunteerGone => {}
                HuntInput::Answered => {
                    if self.targets[index].screen {
                        self.state = State::Screening {
                            attempt,
                            index,
                            deadline: now + self.spec.screen_timeout,
                        };
                        self.actions
                            .push_back(HuntAction::PlayScreenPrompt { attempt });
                    } else {
                        self.bridge(attempt);
                    }
                }
                HuntInput::Final(status) => {
                    self.end(attempt, classify(status), Some(status));
                    self.next(index, now);
                }
                HuntInput::LocalFailure(reason) => {
                    self.actions.push_back(HuntAction::AttemptEnded {
                        attempt,
                        result: AttemptResult::Failed,
                        sip_status: None,
                        reason: Some(reason),
                    });
                    self.next(index, now);
                }
                HuntInput::Redirect(uri) => {
                    let uri = uri.trim();
                    if redirected || uri.is_empty() {
                        self.end(attempt, AttemptResult::Failed, None);
                        self.next(index, now);
                    } else {
                        self.state = State::Ringing {
                            attempt,
                            index,
                            deadline: now + self.spec.ring_timeout,
                            redirected: true,
                        };
                        self.actions.push_back(HuntAction::Dial {
                            attempt,
                            uri: uri.to_string(),
                        });
                    }
                }
                HuntInput::CallerGone => {
                    self.actions.push_back(HuntAction::Cancel { attempt });
                    self.end(attempt, AttemptResult::Cancelled, None);
                    self.abandon();
                }
                HuntInput::OnAnotherCall if redirected => {
                    // We hold them since the first INVITE; a driver bug, not a skip.
                    self.end(attempt, AttemptResult::Failed, None);
                    self.next(index, now);
                }
                HuntInput::OnAnotherCall => {
                    // Never rung: the next volunteer takes this attempt number.
                    self.attempt_targets.pop();
                    self.next(index, now);
                }
            },
            State::Screening { attempt, index, .. } => match input {
                HuntInput::ScreenKey('1') => self.bridge(attempt),
                HuntInput::ScreenKey(_) => {
                    self.actions.push_back(HuntAction::Hangup { attempt });
                    self.end(attempt, AttemptResult::NoAnswer, Some(200));
                    self.next(index, now);
                }
                HuntInput::VolunteerGone => {
                    self.end(attempt, AttemptResult::NoAnswer, Some(200));
                    self.next(index, now);
                }
                HuntInput::CallerGone => {
                    self.actions.push_back(HuntAction::Hangup { attempt });
                    self.end(attempt, AttemptResult::Cancelled, Some(200));
                    self.abandon();
                }
                // Retransmitted or stray responses to the answered INVITE.
                HuntInput::Provisional(_)
                | HuntInput::EarlyMedia
                | HuntInput::Answered
                | HuntInput::Final(_)
                | HuntInput::LocalFailure(_)
                | HuntInput::Redirect(_)
                | HuntInput::OnAnotherCall => {}
            },
            State::Bridged { .. } | State::Exhausted | State::Abandoned => {}
        }
    }

    /// Call when [`Hunt::poll_timeout`] has passed: a ring or screening deadline.
    pub(crate) fn timeout(&mut self, now: Instant) {
        match self.state {
            State::Ringing {
                attempt,
                index,
                deadline,
                ..
            } if now >= deadline => {
                self.actions.push_back(HuntAction::Cancel { attempt });
                self.end(attempt, AttemptResult::NoAnswer, None);
                self.next(index, now);
            }
            State::Screening {
                attempt,
                index,
                deadline,
            } if now >= deadline => {
                self.actions.push_back(HuntAction::Hangup { attempt });
                self.end(attempt, AttemptResult::NoAnswer, Some(200));
                self.next(index, now);
            }
            _ => {}
        }
    }

    /// The next thing to do, in order; `None` when there is nothing left for now.
    pub(crate) fn poll_action(&mut self) -> Option<HuntAction> {
        self.actions.pop_front()
    }

    /// When to call [`Hunt::timeout`] next, if anything is waiting on time.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Ringing { deadline, .. } | State::Screening { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// True once the hunt bridged, gave up, or the caller left.
    pub(crate) fn is_done(&self) -> bool {
        matches!(
            self.state,
            State::Bridged { .. } | State::Exhausted | State::Abandoned
        )
    }

    /// The attempt whose INVITE or answered leg is in play; the flow drops
    /// inputs about any other attempt.
    #[cfg(test)]
    pub(crate) fn current_attempt(&self) -> Option<u32> {
        match self.state {
            State::Ringing { attempt, .. } | State::Screening { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    /// The volunteer rung by `attempt` (for `AttemptStarted`/`Connected` records).
    pub(crate) fn target_of(&self, attempt: u32) -> Option<&Target> {
        let index = *self.attempt_targets.get(attempt.checked_sub(1)? as usize)?;
        self.targets.get(index)
    }

    /// The attempt the caller was bridged to, once the hunt succeeded.
    #[cfg(test)]
    pub(crate) fn bridged_attempt(&self) -> Option<u32> {
        match self.state {
            State::Bridged { attempt } => Some(attempt),
            _ => None,
        }
    }

    fn dial(&mut self, index: usize, now: Instant) {
        self.attempt_targets.push(index);
        let attempt = self.attempt_targets.len() as u32;
        self.state = State::Ringing {
            attempt,
            index,
            deadline: now + self.spec.ring_timeout,
            redirected: false,
        };
        self.actions.push_back(HuntAction::Dial {
            attempt,
            uri: self.targets[index].uri.clone(),
        });
    }

    /// Dials the volunteer after `index`, or gives up.
    fn next(&mut self, index: usize, now: Instant) {
        if index + 1 < self.targets.len() {
            self.dial(index + 1, now);
        } else {
            self.state = State::Exhausted;
            self.actions.push_back(HuntAction::StopRingback);
            self.actions.push_back(HuntAction::Exhausted);
        }
    }

    fn bridge(&mut self, attempt: u32) {
        self.state = State::Bridged { attempt };
        self.actions.push_back(HuntAction::StopRingback);
        self.end(attempt, AttemptResult::Answered, Some(200));
        self.actions.push_back(HuntAction::Bridge { attempt });
    }

    fn end(&mut self, attempt: u32, result: AttemptResult, sip_status: Option<u16>) {
        self.actions.push_back(HuntAction::AttemptEnded {
            attempt,
            result,
            sip_status,
            reason: None,
        });
    }

    fn abandon(&mut self) {
        self.state = State::Abandoned;
        self.actions.push_back(HuntAction::StopRingback);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttemptResult::*;
    use HuntAction::*;

    fn target(id: &str, screen: bool) -> Target {
        Target {
            volunteer_id: id.to_string(),
            uri: format!("sip:{id}@example.org"),
            screen,
        }
    }

    fn spec() -> HuntSpec {
        HuntSpec::default()
    }

    fn hunt(targets: &[(&str, bool)]) -> Hunt {
        Hunt::new(
            targets.iter().map(|&(id, s)| target(id, s)).collect(),
            spec(),
        )
    }

    fn drain(h: &mut Hunt) -> Vec<HuntAction> {
        std::iter::from_fn(|| h.poll_action()).collect()
    }

    /// The Dial for `attempt` ringing volunteer `id`.
    fn dial(attempt: u32, id: &str) -> HuntAction {
        Dial {
            attempt,
            uri: format!("sip:{id}@example.org"),
        }
    }

    fn ended(attempt: u32, result: AttemptResult, sip_status: Option<u16>) -> HuntAction {
        AttemptEnded {
            attempt,
            result,
            sip_status,
            reason: None,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn empty_roster_is_exhausted_at_start_without_ringback() {
        let t0 = Instant::now();
        let mut h = hunt(&[]);
        assert!(!h.is_done());
        h.start(t0);
        assert_eq!(drain(&mut h), vec![Exhausted]);
        assert!(h.is_done());
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn start_rings_the_first_volunteer_with_ringback_once() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false), ("bob", false)]);
        h.start(t0);
        assert_eq!(drain(&mut h), vec![StartRingback, dial(1, "ann")]);
        assert_eq!(h.poll_timeout(), Some(t0 + secs(20)));
        assert_eq!(h.current_attempt(), Some(1));
        h.start(t0 + secs(1));
        assert_eq!(drain(&mut h), vec![], "start twice does nothing");
        // Moving on to bob does not restart the ringback.
        h.handle(HuntInput::Final(486), t0 + secs(2));
        assert_eq!(
            drain(&mut h),
            vec![ended(1, Busy, Some(486)), dial(2, "bob")]
        );
    }

    #[test]
    fn ring_timeout_cancels_and_moves_on_then_exhausts() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false), ("bob", false)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::Provisional(180), t0 + secs(1));
        h.handle(HuntInput::EarlyMedia, t0 + secs(1));
        assert_eq!(drain(&mut h), vec![]);
        h.timeout(t0 + secs(19));
        assert_eq!(drain(&mut h), vec![], "not yet");
        h.timeout(t0 + secs(20));
        assert_eq!(
            drain(&mut h),
            vec![
                Cancel { attempt: 1 },
                ended(1, NoAnswer, None),
                dial(2, "bob")
            ]
        );
        // bob's ring timeout counts from his INVITE.
        assert_eq!(h.poll_timeout(), Some(t0 + secs(40)));
        h.timeout(t0 + secs(40));
        assert_eq!(
            drain(&mut h),
            vec![
                Cancel { attempt: 2 },
                ended(2, NoAnswer, None),
                StopRingback,
                Exhausted
            ]
        );
        assert!(h.is_done());
        assert_eq!(h.poll_timeout(), None);
        assert_eq!(h.target_of(2).map(|t| t.volunteer_id.as_str()), Some("bob"));
    }

    #[test]
    fn final_responses_are_classified_and_move_on_at_once() {
        let t0 = Instant::now();
        let cases = [
            (486, Busy),
            (600, Busy),
            (603, Declined),
            (408, NoAnswer),
            (480, NoAnswer),
            (404, Failed),
            (500, Failed),
            (503, Failed),
            (606, Failed),
            (380, Failed),
        ];
        for (status, result) in cases {
            let mut h = hunt(&[("ann", false), ("bob", false)]);
            h.start(t0);
            drain(&mut h);
            h.handle(HuntInput::Final(status), t0 + secs(3));
            assert_eq!(
                drain(&mut h),
                vec![ended(1, result, Some(status)), dial(2, "bob")],
                "{status}"
            );
            assert_eq!(h.poll_timeout(), Some(t0 + secs(23)));
        }
    }

    #[test]
    fn a_local_failure_has_a_reason_and_no_status() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false), ("bob", false)]);
        h.start(t0);
        drain(&mut h);
        h.handle(
            HuntInput::LocalFailure("connection refused".into()),
            t0 + secs(1),
        );
        assert_eq!(
            drain(&mut h),
            vec![
                AttemptEnded {
                    attempt: 1,
                    result: Failed,
                    sip_status: None,
                    reason: Some("connection refused".into()),
                },
                dial(2, "bob")
            ]
        );
    }

    #[test]
    fn answer_without_screening_bridges() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false), ("bob", false)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::Answered, t0 + secs(5));
        assert_eq!(
            drain(&mut h),
            vec![
                StopRingback,
                ended(1, Answered, Some(200)),
                Bridge { attempt: 1 }
            ]
        );
        assert!(h.is_done());
        assert_eq!(h.bridged_attempt(), Some(1));
        assert_eq!(h.current_attempt(), None);
        // Nothing moves a bridged hunt.
        h.timeout(t0 + secs(100));
        h.handle(HuntInput::CallerGone, t0 + secs(100));
        assert_eq!(drain(&mut h), vec![]);
    }

    #[test]
    fn screened_volunteer_pressing_1_is_bridged() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", true)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::Answered, t0 + secs(4));
        assert_eq!(drain(&mut h), vec![PlayScreenPrompt { attempt: 1 }]);
        assert_eq!(
            h.poll_timeout(),
            Some(t0 + secs(14)),
            "screen timeout replaces ring timeout"
        );
        // The old ring deadline passing means nothing now.
        h.timeout(t0 + secs(13));
        assert_eq!(drain(&mut h), vec![]);
        h.handle(HuntInput::ScreenKey('1'), t0 + secs(8));
        assert_eq!(
            drain(&mut h),
            vec![
                StopRingback,
                ended(1, Answered, Some(200)),
                Bridge { attempt: 1 }
            ]
        );
        assert!(h.is_done());
    }

    #[test]
    fn screening_other_key_hangs_up_and_moves_on() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", true), ("bob", false)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::Answered, t0 + secs(4));
        drain(&mut h);
        h.handle(HuntInput::ScreenKey('2'), t0 + secs(6));
        assert_eq!(
            drain(&mut h),
            vec![
                Hangup { attempt: 1 },
                ended(1, NoAnswer, Some(200)),
                dial(2, "bob")
            ]
        );
        assert_eq!(h.poll_timeout(), Some(t0 + secs(26)));
    }

    #[test]
    fn screening_timeout_hangs_up_and_exhausts() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", true)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::Answered, t0 + secs(4));
        drain(&mut h);
        h.timeout(t0 + secs(13));
        assert_eq!(drain(&mut h), vec![]);
        h.timeout(t0 + secs(14));
        assert_eq!(
            drain(&mut h),
            vec![
                Hangup { attempt: 1 },
                ended(1, NoAnswer, Some(200)),
                StopRingback,
                Exhausted
            ]
        );
    }

    #[test]
    fn volunteer_hanging_up_during_screening_moves_on_without_bye() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", true), ("bob", true)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::Answered, t0 + secs(4));
        drain(&mut h);
        h.handle(HuntInput::VolunteerGone, t0 + secs(5));
        assert_eq!(
            drain(&mut h),
            vec![ended(1, NoAnswer, Some(200)), dial(2, "bob")]
        );
    }

    #[test]
    fn redirect_is_followed_once_per_volunteer() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false), ("bob", false)]);
        h.start(t0);
        drain(&mut h);
        h.handle(
            HuntInput::Redirect("sip:ann-mobile@example.org".into()),
            t0 + secs(1),
        );
        assert_eq!(
            drain(&mut h),
            vec![Dial {
                attempt: 1,
                uri: "sip:ann-mobile@example.org".into()
            }]
        );
        assert_eq!(h.target_of(1), Some(&target("ann", false)));
        assert_eq!(
            h.poll_timeout(),
            Some(t0 + secs(21)),
            "the new INVITE rings its full time"
        );
        h.handle(
            HuntInput::Redirect("sip:ann-other@example.org".into()),
            t0 + secs(2),
        );
        assert_eq!(drain(&mut h), vec![ended(1, Failed, None), dial(2, "bob")]);
        // bob may be redirected once too.
        h.handle(
            HuntInput::Redirect("sip:bob-desk@example.org".into()),
            t0 + secs(3),
        );
        assert!(matches!(
            drain(&mut h).as_slice(),
            [Dial { attempt: 2, .. }]
        ));
        assert_eq!(h.target_of(2), Some(&target("bob", false)));
        // And the redirected INVITE is answered like any other.
        h.handle(HuntInput::Answered, t0 + secs(4));
        assert_eq!(
            drain(&mut h),
            vec![
                StopRingback,
                ended(2, Answered, Some(200)),
                Bridge { attempt: 2 }
            ]
        );
    }

    #[test]
    fn redirect_without_a_contact_fails_the_attempt() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::Redirect("  ".into()), t0 + secs(1));
        assert_eq!(
            drain(&mut h),
            vec![ended(1, Failed, None), StopRingback, Exhausted]
        );
    }

    #[test]
    fn caller_gone_while_ringing_cancels() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false), ("bob", false)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::CallerGone, t0 + secs(3));
        assert_eq!(
            drain(&mut h),
            vec![
                Cancel { attempt: 1 },
                ended(1, Cancelled, None),
                StopRingback
            ]
        );
        assert!(h.is_done());
        assert_eq!(h.poll_timeout(), None);
        h.timeout(t0 + secs(60));
        h.handle(HuntInput::Answered, t0 + secs(60));
        assert_eq!(
            drain(&mut h),
            vec![],
            "no Exhausted, no Bridge after the caller left"
        );
    }

    #[test]
    fn caller_gone_while_screening_hangs_up_the_volunteer() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", true)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::Answered, t0 + secs(4));
        drain(&mut h);
        h.handle(HuntInput::CallerGone, t0 + secs(5));
        assert_eq!(
            drain(&mut h),
            vec![
                Hangup { attempt: 1 },
                ended(1, Cancelled, Some(200)),
                StopRingback
            ]
        );
        assert!(h.is_done());
    }

    #[test]
    fn caller_gone_before_start_ends_quietly() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false)]);
        h.handle(HuntInput::CallerGone, t0);
        h.start(t0);
        assert_eq!(drain(&mut h), vec![]);
        assert!(h.is_done());
    }

    #[test]
    fn stray_inputs_do_not_end_attempts() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", true)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::ScreenKey('1'), t0 + secs(1));
        h.handle(HuntInput::VolunteerGone, t0 + secs(1));
        assert_eq!(
            drain(&mut h),
            vec![],
            "keys and BYE mean nothing before an answer"
        );
        h.handle(HuntInput::Answered, t0 + secs(2));
        drain(&mut h);
        h.handle(HuntInput::Answered, t0 + secs(2));
        h.handle(HuntInput::Final(487), t0 + secs(2));
        h.handle(HuntInput::Provisional(180), t0 + secs(2));
        assert_eq!(drain(&mut h), vec![], "retransmissions during screening");
        assert_eq!(h.current_attempt(), Some(1));
    }

    #[test]
    fn long_roster_tries_everyone_in_order() {
        let t0 = Instant::now();
        let mut h = hunt(&[("a", false), ("b", true), ("c", false), ("d", false)]);
        h.start(t0);
        let mut t = t0;
        let mut dialed = Vec::new();
        let mut ended_results = Vec::new();
        loop {
            for a in drain(&mut h) {
                match a {
                    Dial { attempt, .. } => dialed.push(h.target_of(attempt).cloned()),
                    AttemptEnded { result, .. } => ended_results.push(result),
                    _ => {}
                }
            }
            match h.poll_timeout() {
                Some(deadline) => {
                    t = deadline;
                    h.timeout(t);
                }
                None => break,
            }
        }
        assert!(h.is_done());
        let targets: Vec<Option<Target>> = h.targets.iter().cloned().map(Some).collect();
        assert_eq!(dialed, targets);
        assert_eq!(ended_results, vec![NoAnswer; 4]);
        assert_eq!(t, t0 + secs(80));
        assert_eq!(h.target_of(0), None);
        assert_eq!(h.target_of(5), None);
        assert_eq!(h.target_of(3).map(|x| x.volunteer_id.as_str()), Some("c"));
    }

    #[test]
    fn volunteer_on_another_call_is_skipped_without_an_attempt() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false), ("bob", false)]);
        h.start(t0);
        assert_eq!(drain(&mut h), vec![StartRingback, dial(1, "ann")]);
        h.handle(HuntInput::OnAnotherCall, t0);
        // Bob takes attempt 1: Ann was never rung, so nothing is recorded for her.
        assert_eq!(drain(&mut h), vec![dial(1, "bob")]);
        assert_eq!(h.target_of(1), Some(&target("bob", false)));
        assert_eq!(h.poll_timeout(), Some(t0 + secs(20)));
        h.handle(HuntInput::OnAnotherCall, t0);
        assert_eq!(drain(&mut h), vec![StopRingback, Exhausted]);
        assert!(h.is_done());
    }

    #[test]
    fn on_another_call_after_a_redirect_fails_the_attempt() {
        let t0 = Instant::now();
        let mut h = hunt(&[("ann", false), ("bob", false)]);
        h.start(t0);
        drain(&mut h);
        h.handle(HuntInput::Redirect("sip:ann2@example.org".into()), t0);
        drain(&mut h);
        h.handle(HuntInput::OnAnotherCall, t0);
        assert_eq!(drain(&mut h), vec![ended(1, Failed, None), dial(2, "bob")]);
    }
}
