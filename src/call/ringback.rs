//! What the caller hears while their call is put through, as a small sans-I/O
//! state machine beside [`crate::call::hunt::Hunt`].
//!
//! The first volunteer is dialled at the key, while the caller still hears the
//! confirmation ("connecting you to the health station"). The confirmation always
//! plays to its end, unless a volunteer answers first (the bridge then stops it):
//! it tells the caller their choice was understood. After it, the caller hears our
//! ringback, or, when the volunteer's network sends early media (RFC 3960: their
//! own ringback or an announcement), that in its place. When the attempt whose
//! early media the caller hears ends or answers, our ringback comes back (a screened
//! volunteer is still deciding; the next volunteer is being rung).
//!
//! The driver feeds it what the hunt and the legs report and applies [`Sound`]s
//! from [`Ringback::poll`] to the caller's leg.

/// A change to apply to what the caller hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sound {
    /// Loop our ringback tone.
    Ringback,
    /// Relay this attempt's early media to the caller (it replaces the ringback).
    EarlyMedia { attempt: u32 },
    /// Stop what plays (the hunt no longer wants ringback).
    Silence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hearing {
    Confirmation,
    Ringback,
    EarlyMedia(u32),
    Nothing,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Ringback {
    confirming: bool,
    /// Between the hunt's `StartRingback` and `StopRingback`.
    wanted: bool,
    /// The attempt whose usable early media is arriving.
    early: Option<u32>,
    hearing: Hearing,
}

impl Ringback {
    /// The caller is hearing the confirmation prompt.
    pub(crate) fn confirming() -> Ringback {
        Ringback {
            confirming: true,
            wanted: false,
            early: None,
            hearing: Hearing::Confirmation,
        }
    }

    /// No confirmation: ringback (or early media) from the hunt's first word.
    #[cfg(test)]
    pub(crate) fn new() -> Ringback {
        Ringback {
            confirming: false,
            wanted: false,
            early: None,
            hearing: Hearing::Nothing,
        }
    }

    /// Whether the confirmation prompt is still playing.
    pub(crate) fn is_confirming(&self) -> bool {
        self.confirming
    }

    /// The confirmation prompt played to its end.
    pub(crate) fn confirmation_done(&mut self) {
        if self.confirming {
            self.confirming = false;
            self.hearing = Hearing::Nothing;
        }
    }

    /// The hunt's `StartRingback` (true) or `StopRingback` (false).
    pub(crate) fn ringback(&mut self, on: bool) {
        self.wanted = on;
    }

    /// `attempt`'s leg sent usable early media.
    pub(crate) fn early_media(&mut self, attempt: u32) {
        self.early = Some(attempt);
    }

    /// `attempt` answered or ended: its early media stops.
    pub(crate) fn early_media_over(&mut self, attempt: u32) {
        if self.early == Some(attempt) {
            self.early = None;
            if self.hearing == Hearing::EarlyMedia(attempt) {
                // Its relay went with it: the caller hears nothing now.
                self.hearing = Hearing::Nothing;
            }
        }
    }

    /// The change to apply now, if the caller should hear something else.
    pub(crate) fn poll(&mut self) -> Option<Sound> {
        let want = match (self.confirming, self.wanted, self.early) {
            (true, _, _) => Hearing::Confirmation,
            (false, false, _) => Hearing::Nothing,
            (false, true, Some(attempt)) => Hearing::EarlyMedia(attempt),
            (false, true, None) => Hearing::Ringback,
        };
        if want == self.hearing {
            return None;
        }
        let was = std::mem::replace(&mut self.hearing, want);
        match want {
            Hearing::Ringback => Some(Sound::Ringback),
            Hearing::EarlyMedia(attempt) => Some(Sound::EarlyMedia { attempt }),
            Hearing::Nothing if was == Hearing::Ringback => Some(Sound::Silence),
            // An early-media relay ends with its leg; nothing plays to stop.
            Hearing::Nothing | Hearing::Confirmation => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut Ringback) -> Vec<Sound> {
        std::iter::from_fn(|| r.poll()).collect()
    }

    #[test]
    fn ringback_waits_for_the_confirmation_to_end() {
        let mut r = Ringback::confirming();
        r.ringback(true);
        assert_eq!(drain(&mut r), [], "the confirmation plays on");
        assert!(r.is_confirming());
        r.confirmation_done();
        assert!(!r.is_confirming());
        assert_eq!(drain(&mut r), [Sound::Ringback]);
        assert_eq!(drain(&mut r), [], "once");
        r.ringback(false);
        assert_eq!(drain(&mut r), [Sound::Silence]);
    }

    #[test]
    fn early_media_during_the_confirmation_is_heard_after_it() {
        let mut r = Ringback::confirming();
        r.ringback(true);
        r.early_media(1);
        assert_eq!(drain(&mut r), []);
        r.confirmation_done();
        assert_eq!(drain(&mut r), [Sound::EarlyMedia { attempt: 1 }]);
        // The volunteer's attempt ends: our ringback comes back.
        r.early_media_over(1);
        assert_eq!(drain(&mut r), [Sound::Ringback]);
    }

    #[test]
    fn early_media_ending_during_the_confirmation_leaves_ringback() {
        let mut r = Ringback::confirming();
        r.ringback(true);
        r.early_media(1);
        r.early_media_over(1);
        r.confirmation_done();
        assert_eq!(drain(&mut r), [Sound::Ringback]);
    }

    #[test]
    fn nobody_to_ring_lets_the_confirmation_finish_in_silence() {
        let mut r = Ringback::confirming();
        r.ringback(true);
        r.ringback(false);
        assert_eq!(drain(&mut r), [], "the confirmation is not cut");
        r.confirmation_done();
        assert_eq!(drain(&mut r), []);
    }

    #[test]
    fn without_confirmation_ringback_starts_at_once_and_yields_to_early_media() {
        let mut r = Ringback::new();
        assert_eq!(drain(&mut r), []);
        r.ringback(true);
        assert_eq!(drain(&mut r), [Sound::Ringback]);
        r.early_media(1);
        assert_eq!(drain(&mut r), [Sound::EarlyMedia { attempt: 1 }]);
        // A stale attempt's end changes nothing.
        r.early_media_over(2);
        assert_eq!(drain(&mut r), []);
        // A screened volunteer answered: ringback while they decide.
        r.early_media_over(1);
        assert_eq!(drain(&mut r), [Sound::Ringback]);
        // The next attempt's early media replaces it again.
        r.early_media(2);
        assert_eq!(drain(&mut r), [Sound::EarlyMedia { attempt: 2 }]);
        r.ringback(false);
        assert_eq!(
            drain(&mut r),
            [],
            "the relay ends with the attempt; no tone to stop"
        );
    }

    #[test]
    fn confirmation_done_twice_is_harmless() {
        let mut r = Ringback::confirming();
        r.ringback(true);
        r.confirmation_done();
        assert_eq!(drain(&mut r), [Sound::Ringback]);
        r.confirmation_done();
        assert_eq!(drain(&mut r), []);
    }
}
