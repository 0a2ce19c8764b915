//! Which volunteers are on a call right now, across all calls.
//!
//! A volunteer on duty at several stations is one person with one phone: while one
//! caller rings or talks to them, no other caller may ring them. Checking that they
//! are free and marking them taken is one step ([`BusyRegistry::try_claim`]), so two
//! calls hunting at the same moment can never both ring the same volunteer. The
//! [`Claim`] releases them when dropped, so a call that ends half-way (a failure, the
//! caller hanging up) can never leave a volunteer marked busy.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// The volunteers claimed by some call; cheap to clone, shared by all calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct BusyRegistry {
    claimed: Arc<Mutex<HashSet<String>>>,
}

/// One call's hold on one volunteer; dropping it frees them.
#[derive(Debug)]
pub(crate) struct Claim {
    registry: BusyRegistry,
    volunteer: String,
}

impl BusyRegistry {
    /// Claim `volunteer` for a call if no call has them: `None` when they are
    /// already being rung or talking.
    pub(crate) fn try_claim(&self, volunteer: &str) -> Option<Claim> {
        let fresh = self.lock().insert(volunteer.to_string());
        fresh.then(|| Claim {
            registry: self.clone(),
            volunteer: volunteer.to_string(),
        })
    }

    /// Volunteers held now (being rung or talking), for `/metrics`.
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }

    /// Whether some call holds `volunteer` now: for reports only (a self-test's
    /// hunt list). Deciding whom to ring on it would race: claim instead.
    pub(crate) fn is_claimed(&self, volunteer: &str) -> bool {
        self.lock().contains(volunteer)
    }

    /// A panic elsewhere while holding the lock leaves the set consistent (every
    /// change is one insert or remove): take it.
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Claim {
    /// The volunteer held.
    pub(crate) fn volunteer(&self) -> &str {
        &self.volunteer
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.volunteer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn a_claimed_volunteer_cannot_be_claimed_again_until_released() {
        let busy = BusyRegistry::default();
        let claim = busy.try_claim("ann").expect("ann is free");
        assert_eq!(claim.volunteer(), "ann");
        assert!(busy.is_claimed("ann"));
        assert!(busy.try_claim("ann").is_none(), "claimed twice");
        let bob = busy.try_claim("bob");
        assert!(bob.is_some(), "another volunteer is not affected");
        drop(claim);
        assert!(!busy.is_claimed("ann"));
        assert!(busy.try_claim("ann").is_some(), "free again after release");
    }

    /// Two (or eight) calls reaching the same volunteer at the same instant: exactly
    /// one of them gets to ring, every round.
    #[test]
    fn concurrent_claims_of_one_volunteer_have_exactly_one_winner() {
        const CALLS: usize = 8;
        const ROUNDS: usize = 200;
        let busy = BusyRegistry::default();
        for _ in 0..ROUNDS {
            let start = Arc::new(Barrier::new(CALLS));
            let done = Arc::new(Barrier::new(CALLS));
            let handles: Vec<_> = (0..CALLS)
                .map(|_| {
                    let (busy, start, done) = (busy.clone(), start.clone(), done.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        let claim = busy.try_claim("ann");
                        let won = claim.is_some();
                        // Hold the claim until every thread has tried.
                        done.wait();
                        won
                    })
                })
                .collect();
            let winners = handles
                .into_iter()
                .map(|h| h.join().unwrap_or(false))
                .filter(|&won| won)
                .count();
            assert_eq!(winners, 1);
            assert!(!busy.is_claimed("ann"), "the winner's claim was released");
        }
    }
}
