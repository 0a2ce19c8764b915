//! The IVR menu as a sans-I/O state machine.
//!
//! Like str0m's `Rtc`, [`Menu`] never touches a clock or a socket: the call flow
//! feeds it events (`start`, `prompt_finished`, `key`, `timeout`) together with
//! "now", drains [`MenuAction`]s with [`Menu::poll_action`] and sleeps until
//! [`Menu::poll_timeout`]. That keeps "no key for 6 s, third time, go to the desk"
//! a unit test that runs in microseconds.
//!
//! The semantics follow FreeSWITCH mod_ivr: the first hearing is the greeting and
//! the whole menu (`greet-long`), every repeat the keys only (`greet-short`, the
//! `menu_short` prompt). Every invalid key and every timeout after a menu prompt is
//! one failure; after `max_tries` failures the caller is sent to the duty desk.
//! A caller who has pressed nothing at all goes sooner: after `silent_tries`
//! hearings ended in silence, since those who press nothing (often elderly
//! callers) are the ones who most need a person.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[cfg(test)]
use crate::config::DESK_KEY;

/// The menu as data, so the admin (via the config) decides keys, timeout and tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MenuSpec {
    /// Keys that pick a station, including the desk key.
    pub valid_keys: Vec<char>,
    /// The duty desk: where a caller lands when no valid choice was made.
    pub desk_key: char,
    /// How long to wait for a key after the menu prompt has ended.
    pub timeout: Duration,
    /// Failed tries (invalid key or timeout) before going to the desk.
    pub max_tries: u32,
    /// Hearings ended in silence, with no key pressed at all in the call, before
    /// going to the desk (at most `max_tries` take effect).
    pub silent_tries: u32,
}

#[cfg(test)]
impl Default for MenuSpec {
    /// The hotline's usual menu: stations 1-6, the desk, the config's defaults.
    fn default() -> Self {
        MenuSpec {
            valid_keys: vec!['1', '2', '3', '4', '5', '6', DESK_KEY],
            desk_key: DESK_KEY,
            timeout: Duration::from_secs(crate::config::DEFAULT_MENU_TIMEOUT_S),
            max_tries: crate::config::DEFAULT_MENU_MAX_TRIES,
            silent_tries: crate::config::DEFAULT_MENU_SILENT_TRIES,
        }
    }
}

/// Which recorded prompt to play; the media layer maps it to a file per language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PromptKind {
    /// The greeting, heard once at the start of the call.
    Welcome,
    /// The list of stations and their keys, in full: the first hearing.
    Menu,
    /// The keys only, no explanations: every hearing after the first.
    MenuShort,
    /// "That key is not in the menu", played before the menu is repeated.
    Invalid,
}

/// What the call flow must do next, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MenuAction {
    /// Start playing this prompt; report its end with [`Menu::prompt_finished`].
    Play(PromptKind),
    /// Barge-in: stop the prompt playing now (do not report it as finished).
    StopPrompt,
    /// The menu is over: route the call to the station with this key.
    Chosen {
        /// The station key (the desk key when `reason` is `NoValidChoice`).
        key: char,
        /// Why this station was chosen, for the call record.
        reason: ChoiceReason,
    },
}

/// Why the menu ended, so call records can tell choices from fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ChoiceReason {
    /// The caller pressed a valid key.
    Pressed,
    /// Tries exhausted: go to the duty desk.
    NoValidChoice,
    /// No key at all in `silent_tries` hearings: go to the duty desk.
    NoKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `start` not called yet.
    Idle,
    /// A prompt is playing; we wait for `prompt_finished` or a key.
    Playing(PromptKind),
    /// The menu prompt has ended; a key is due before the deadline.
    WaitingKey { deadline: Instant },
    /// A station was chosen; everything else is ignored.
    Done,
}

/// One caller's walk through the menu. See the module docs for the driving loop.
#[derive(Debug, Clone)]
pub(crate) struct Menu {
    spec: MenuSpec,
    state: State,
    failures: u32,
    /// Any key at all was pressed (then `silent_tries` no longer applies).
    pressed: bool,
    actions: VecDeque<MenuAction>,
}

impl Menu {
    /// A menu waiting for [`Menu::start`]. `max_tries` or `silent_tries` of 0 is
    /// treated as 1 so the caller always hears the menu at least once.
    pub(crate) fn new(spec: MenuSpec) -> Menu {
        Menu {
            spec: MenuSpec {
                max_tries: spec.max_tries.max(1),
                silent_tries: spec.silent_tries.max(1),
                ..spec
            },
            state: State::Idle,
            failures: 0,
            pressed: false,
            actions: VecDeque::new(),
        }
    }

    /// The call is answered: queue the welcome prompt; the menu follows when it ends.
    pub(crate) fn start(&mut self, _now: Instant) {
        if self.state == State::Idle {
            self.play(PromptKind::Welcome);
        }
    }

    /// The prompt last asked for has played to its end.
    ///
    /// Must not be called for a prompt stopped by [`MenuAction::StopPrompt`].
    pub(crate) fn prompt_finished(&mut self, now: Instant) {
        match self.state {
            State::Playing(PromptKind::Welcome) => self.play(PromptKind::Menu),
            State::Playing(PromptKind::Invalid) => self.play(PromptKind::MenuShort),
            State::Playing(PromptKind::Menu | PromptKind::MenuShort) => {
                self.state = State::WaitingKey {
                    deadline: now + self.spec.timeout,
                }
            }
            State::Idle | State::WaitingKey { .. } | State::Done => {}
        }
    }

    /// The caller pressed a DTMF key. Barges in on any prompt, then the key is judged.
    pub(crate) fn key(&mut self, key: char, _now: Instant) {
        match self.state {
            State::Idle | State::Done => return,
            State::Playing(_) => self.actions.push_back(MenuAction::StopPrompt),
            State::WaitingKey { .. } => {}
        }
        self.pressed = true;
        if key == self.spec.desk_key || self.spec.valid_keys.contains(&key) {
            self.choose(key, ChoiceReason::Pressed);
        } else if self.fail() {
            self.play(PromptKind::Invalid);
        }
    }

    /// Wake-up at [`Menu::poll_timeout`]; an early call is ignored.
    pub(crate) fn timeout(&mut self, now: Instant) {
        if let State::WaitingKey { deadline } = self.state {
            if now < deadline {
                return;
            }
            // A failure that exhausts max_tries has already sent the caller on.
            if self.fail() {
                if !self.pressed && self.failures >= self.spec.silent_tries {
                    self.choose(self.spec.desk_key, ChoiceReason::NoKey);
                } else {
                    self.play(PromptKind::MenuShort);
                }
            }
        }
    }

    /// The next thing the call flow must do, in order; `None` when drained.
    pub(crate) fn poll_action(&mut self) -> Option<MenuAction> {
        self.actions.pop_front()
    }

    /// When [`Menu::timeout`] is due. `None` while a prompt plays: its end is an event.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::WaitingKey { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// A station has been chosen; the call flow can move on to routing.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn play(&mut self, prompt: PromptKind) {
        self.state = State::Playing(prompt);
        self.actions.push_back(MenuAction::Play(prompt));
    }

    fn choose(&mut self, key: char, reason: ChoiceReason) {
        self.state = State::Done;
        self.actions.push_back(MenuAction::Chosen { key, reason });
    }

    /// Count one failed try; returns false (and routes to the desk) when tries are exhausted.
    fn fail(&mut self) -> bool {
        self.failures += 1;
        if self.failures >= self.spec.max_tries {
            self.choose(self.spec.desk_key, ChoiceReason::NoValidChoice);
            false
        } else {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChoiceReason::*;
    use MenuAction::*;
    use PromptKind::{Invalid, MenuShort as SHORT, Welcome};
    const MENU: PromptKind = PromptKind::Menu;

    /// `max_tries` for every failure, silent or not (silence is not special).
    fn spec(max_tries: u32) -> MenuSpec {
        MenuSpec {
            max_tries,
            silent_tries: max_tries,
            ..MenuSpec::default()
        }
    }

    fn drain(m: &mut Menu) -> Vec<MenuAction> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    /// Starts the menu and plays Welcome and Menu to their end; returns the virtual clock.
    fn heard_menu(m: &mut Menu) -> Instant {
        let t0 = Instant::now();
        m.start(t0);
        assert_eq!(drain(m), vec![Play(Welcome)]);
        m.prompt_finished(t0 + Duration::from_secs(3));
        assert_eq!(drain(m), vec![Play(MENU)]);
        m.prompt_finished(t0 + Duration::from_secs(10));
        assert_eq!(drain(m), vec![]);
        t0 + Duration::from_secs(10)
    }

    /// Lets the timeout expire at exactly the deadline the menu asked for.
    fn expire(m: &mut Menu) -> Instant {
        let deadline = m.poll_timeout().expect("waiting for a key");
        m.timeout(deadline);
        deadline
    }

    #[test]
    fn welcome_then_menu_then_timeout_deadline() {
        let mut m = Menu::new(spec(3));
        let t = heard_menu(&mut m);
        assert_eq!(m.poll_timeout(), Some(t + Duration::from_secs(6)));
        assert!(!m.is_done());
    }

    #[test]
    fn valid_key_after_menu_is_chosen_at_once() {
        let mut m = Menu::new(spec(3));
        let t = heard_menu(&mut m);
        m.key('3', t + Duration::from_secs(1));
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '3',
                reason: Pressed
            }]
        );
        assert!(m.is_done());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn barge_in_during_welcome_stops_it_and_chooses() {
        let t0 = Instant::now();
        let mut m = Menu::new(spec(3));
        m.start(t0);
        assert_eq!(drain(&mut m), vec![Play(Welcome)]);
        m.key('1', t0 + Duration::from_millis(500));
        assert_eq!(
            drain(&mut m),
            vec![
                StopPrompt,
                Chosen {
                    key: '1',
                    reason: Pressed
                }
            ]
        );
    }

    #[test]
    fn barge_in_during_menu_stops_it_and_chooses_desk() {
        let t0 = Instant::now();
        let mut m = Menu::new(spec(3));
        m.start(t0);
        m.prompt_finished(t0 + Duration::from_secs(3));
        assert_eq!(drain(&mut m), vec![Play(Welcome), Play(MENU)]);
        m.key('0', t0 + Duration::from_secs(4));
        assert_eq!(
            drain(&mut m),
            vec![
                StopPrompt,
                Chosen {
                    key: '0',
                    reason: Pressed
                }
            ]
        );
        assert_eq!(m.poll_timeout(), None, "no timer while a prompt plays");
    }

    #[test]
    fn invalid_key_plays_invalid_then_menu_then_valid_key() {
        let mut m = Menu::new(spec(3));
        let t = heard_menu(&mut m);
        m.key('9', t);
        assert_eq!(drain(&mut m), vec![Play(Invalid)]);
        assert_eq!(m.poll_timeout(), None);
        m.prompt_finished(t + Duration::from_secs(2));
        assert_eq!(drain(&mut m), vec![Play(SHORT)]);
        m.prompt_finished(t + Duration::from_secs(9));
        m.key('5', t + Duration::from_secs(10));
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '5',
                reason: Pressed
            }]
        );
    }

    #[test]
    fn three_timeouts_go_to_the_desk() {
        let mut m = Menu::new(spec(3));
        let t = heard_menu(&mut m);
        // An early wake-up changes nothing.
        m.timeout(t + Duration::from_secs(5));
        assert_eq!(drain(&mut m), vec![]);
        for _ in 0..2 {
            let t = expire(&mut m);
            assert_eq!(drain(&mut m), vec![Play(SHORT)]);
            m.prompt_finished(t + Duration::from_secs(7));
        }
        expire(&mut m);
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '0',
                reason: NoValidChoice
            }]
        );
        assert!(m.is_done());
    }

    #[test]
    fn mixed_invalid_and_timeouts_go_to_desk_after_max_tries() {
        let mut m = Menu::new(spec(3));
        let t = heard_menu(&mut m);
        m.key('#', t);
        assert_eq!(drain(&mut m), vec![Play(Invalid)]);
        m.prompt_finished(t + Duration::from_secs(1));
        m.prompt_finished(t + Duration::from_secs(8));
        assert_eq!(drain(&mut m), vec![Play(SHORT)]);
        let t = expire(&mut m);
        assert_eq!(drain(&mut m), vec![Play(SHORT)]);
        m.key('7', t + Duration::from_secs(2)); // barge-in with a wrong key: third failure
        assert_eq!(
            drain(&mut m),
            vec![
                StopPrompt,
                Chosen {
                    key: '0',
                    reason: NoValidChoice
                }
            ]
        );
    }

    #[test]
    fn max_tries_one_goes_to_desk_on_first_failure() {
        let mut m = Menu::new(spec(1));
        heard_menu(&mut m);
        expire(&mut m);
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '0',
                reason: NoValidChoice
            }]
        );

        let mut m = Menu::new(spec(1));
        let t = heard_menu(&mut m);
        m.key('8', t);
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '0',
                reason: NoValidChoice
            }]
        );
    }

    #[test]
    fn max_tries_zero_still_plays_the_menu_once() {
        let mut m = Menu::new(spec(0));
        heard_menu(&mut m);
        expire(&mut m);
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '0',
                reason: NoValidChoice
            }]
        );
    }

    #[test]
    fn key_while_invalid_plays_barges_in() {
        let mut m = Menu::new(spec(3));
        let t = heard_menu(&mut m);
        m.key('9', t);
        assert_eq!(drain(&mut m), vec![Play(Invalid)]);
        m.key('2', t + Duration::from_millis(300));
        assert_eq!(
            drain(&mut m),
            vec![
                StopPrompt,
                Chosen {
                    key: '2',
                    reason: Pressed
                }
            ]
        );
    }

    #[test]
    fn invalid_key_while_invalid_plays_counts_and_restarts_it() {
        let mut m = Menu::new(spec(3));
        let t = heard_menu(&mut m);
        m.key('9', t);
        m.key('9', t);
        assert_eq!(
            drain(&mut m),
            vec![Play(Invalid), StopPrompt, Play(Invalid)]
        );
        m.key('9', t);
        assert_eq!(
            drain(&mut m),
            vec![
                StopPrompt,
                Chosen {
                    key: '0',
                    reason: NoValidChoice
                }
            ]
        );
    }

    #[test]
    fn keys_and_events_after_chosen_are_ignored() {
        let mut m = Menu::new(spec(3));
        let t = heard_menu(&mut m);
        m.key('4', t);
        drain(&mut m);
        m.key('5', t);
        m.key('9', t);
        m.prompt_finished(t);
        m.timeout(t + Duration::from_secs(100));
        assert_eq!(drain(&mut m), vec![]);
        assert!(m.is_done());
    }

    #[test]
    fn events_before_start_are_ignored() {
        let t0 = Instant::now();
        let mut m = Menu::new(spec(3));
        m.key('1', t0);
        m.prompt_finished(t0);
        m.timeout(t0);
        assert_eq!(drain(&mut m), vec![]);
        assert!(!m.is_done());
        m.start(t0);
        m.start(t0);
        assert_eq!(drain(&mut m), vec![Play(Welcome)]);
    }

    #[test]
    fn silent_caller_goes_to_the_desk_after_one_hearing_by_default() {
        let mut m = Menu::new(MenuSpec::default());
        heard_menu(&mut m);
        expire(&mut m);
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '0',
                reason: NoKey
            }]
        );
        assert!(m.is_done());
    }

    #[test]
    fn silent_tries_two_repeats_the_short_menu_once() {
        let mut m = Menu::new(MenuSpec {
            silent_tries: 2,
            ..MenuSpec::default()
        });
        heard_menu(&mut m);
        let t = expire(&mut m);
        assert_eq!(drain(&mut m), vec![Play(SHORT)], "keys only, no greeting");
        m.prompt_finished(t + Duration::from_secs(5));
        expire(&mut m);
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '0',
                reason: NoKey
            }]
        );
    }

    #[test]
    fn a_wrong_key_keeps_every_try_of_max_tries() {
        let mut m = Menu::new(MenuSpec::default());
        let t = heard_menu(&mut m);
        m.key('9', t);
        assert_eq!(drain(&mut m), vec![Play(Invalid)]);
        m.prompt_finished(t + Duration::from_secs(2));
        assert_eq!(drain(&mut m), vec![Play(SHORT)]);
        m.prompt_finished(t + Duration::from_secs(7));
        // Silence now is the second failure, not "no key at all".
        let t = expire(&mut m);
        assert_eq!(drain(&mut m), vec![Play(SHORT)]);
        m.prompt_finished(t + Duration::from_secs(5));
        expire(&mut m);
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '0',
                reason: NoValidChoice
            }]
        );
    }

    #[test]
    fn a_wrong_key_during_the_greeting_counts_as_pressing() {
        let t0 = Instant::now();
        let mut m = Menu::new(MenuSpec::default());
        m.start(t0);
        m.key('#', t0 + Duration::from_secs(1));
        assert_eq!(
            drain(&mut m),
            vec![Play(Welcome), StopPrompt, Play(Invalid)]
        );
        m.prompt_finished(t0 + Duration::from_secs(2));
        assert_eq!(drain(&mut m), vec![Play(SHORT)]);
        m.prompt_finished(t0 + Duration::from_secs(7));
        expire(&mut m);
        assert_eq!(drain(&mut m), vec![Play(SHORT)]);
    }

    #[test]
    fn max_tries_below_silent_tries_still_ends_the_menu() {
        let mut m = Menu::new(MenuSpec {
            max_tries: 1,
            silent_tries: 3,
            ..MenuSpec::default()
        });
        heard_menu(&mut m);
        expire(&mut m);
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '0',
                reason: NoValidChoice
            }]
        );
    }

    #[test]
    fn silent_tries_zero_is_treated_as_one() {
        let mut m = Menu::new(MenuSpec {
            silent_tries: 0,
            ..MenuSpec::default()
        });
        heard_menu(&mut m);
        expire(&mut m);
        assert_eq!(
            drain(&mut m),
            vec![Chosen {
                key: '0',
                reason: NoKey
            }]
        );
    }

    /// Answer to the desk's ringing for a caller who presses nothing, in virtual
    /// time: each prompt lasts as long as the shipped Mandarin WAV (read, not
    /// assumed), and the desk rings the moment the menu chooses it (the
    /// confirmation plays while the first volunteer rings).
    fn silent_time_to_desk(spec: MenuSpec) -> Duration {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/zh");
        let length =
            |name: &str| match crate::media::prompts::load_wav(&dir.join(format!("{name}.wav"))) {
                Ok(p) => p.duration(),
                Err(e) => panic!("{e}"),
            };
        let t0 = Instant::now();
        let mut now = t0;
        let mut m = Menu::new(spec);
        m.start(now);
        loop {
            match m.poll_action() {
                Some(Play(kind)) => {
                    now += length(match kind {
                        Welcome => "welcome",
                        MENU => "menu",
                        SHORT => "menu_short",
                        Invalid => "invalid",
                    });
                    m.prompt_finished(now);
                }
                Some(Chosen { key, reason }) => {
                    assert_eq!(key, '0');
                    assert_ne!(reason, Pressed);
                    return now - t0;
                }
                Some(StopPrompt) => unreachable!("nobody pressed a key"),
                None => {
                    now = m.poll_timeout().expect("waiting for a key");
                    m.timeout(now);
                }
            }
        }
    }

    #[test]
    fn silent_caller_reaches_the_desk_within_40_s_with_the_shipped_prompts() {
        let cfg = crate::config::Config::embedded_default();
        let settings = crate::call::CallSettings::from_config(&cfg, [127, 0, 0, 1].into());
        let spec = settings.menu_spec();
        let now = silent_time_to_desk(spec.clone());
        assert!(now <= Duration::from_secs(40), "{now:?}");
        // Before silent_tries, the same caller heard the menu max_tries times.
        let before = silent_time_to_desk(MenuSpec {
            silent_tries: spec.max_tries,
            ..spec
        });
        assert!(
            before > now + Duration::from_secs(20),
            "{before:?} vs {now:?}"
        );
    }
}
