//! The daemon's side of `hotline selftest` ([`crate::selftest`]): once the menu has
//! chosen a station, work out whom the hunt would ring, exactly as a resident's
//! call would (the same roster snapshot, the same reachability rules, volunteers on
//! another call skipped), ring nobody, and end the call with a BYE that says so.

use std::sync::atomic::Ordering;

use tracing::info;

use crate::call::flow::Call;
use crate::selftest::{Answer, TrunkState};
use crate::store::{HangupBy, Outcome};

impl Call {
    /// Report the hunt list for `station` in the BYE and end the call; recorded
    /// with outcome `selftest`, which reports and call metrics leave out.
    pub(crate) async fn report_selftest(
        &mut self,
        station: &str,
    ) -> (Outcome, HangupBy, Option<String>) {
        let roster = self.ctx.services.roster.current();
        let busy = &self.ctx.services.busy;
        let hunt: Vec<String> = self
            .targets(&roster, station)
            .into_iter()
            .map(|t| t.volunteer_id)
            .filter(|v| {
                let on_call = busy.is_claimed(v);
                if on_call {
                    info!(volunteer = %v, "self-test: skipping a volunteer who is on another call");
                }
                !on_call
            })
            .collect();
        let trunk = match &self.ctx.services.trunk_registered {
            None => TrunkState::None,
            Some(s) if s.load(Ordering::Relaxed) => TrunkState::Registered,
            Some(_) => TrunkState::Failed,
        };
        info!(
            %station,
            hunt_list = ?hunt,
            trunk = trunk.as_str(),
            "self-test call: reporting whom the hunt would ring, ringing nobody"
        );
        let answer = Answer {
            station: station.to_string(),
            hunt,
            trunk,
        };
        self.caller.hangup_with(answer.to_headers()).await;
        (Outcome::Selftest, HangupBy::System, None)
    }
}
