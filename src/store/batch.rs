//! Splitting a batch of events into steps a database can apply as one
//! multi-row statement each, without changing what the batch does.
//!
//! Applied one statement per event, a batch costs a round trip per event,
//! which PostgreSQL on a busy machine cannot afford at 300 calls/s (issue
//! 8). Every event writes exactly one row (a call by its Call-ID, an attempt
//! by Call-ID and number) and reads no other, so only the order of events
//! on the same row matters. An event's layer is how many earlier events of
//! the batch write its row; a step is every event of one kind in one layer.
//! Applying the steps by layer keeps each row's events in their recorded
//! order (an update after its insert, a call's keys in the order pressed),
//! and no step writes a row twice, so a multi-row statement sees each of
//! its rows once.

use std::collections::{BTreeMap, HashMap};

use super::event::CallEvent;

/// What an event does, one statement per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Started,
    Answered,
    Key,
    Station,
    Connected,
    Voicemail,
    Ended,
    AttemptStarted,
    AttemptEnded,
    Quality,
}

impl Kind {
    pub(crate) fn of(ev: &CallEvent) -> Kind {
        match ev {
            CallEvent::Started(_) => Kind::Started,
            CallEvent::Answered { .. } => Kind::Answered,
            CallEvent::Key { .. } => Kind::Key,
            CallEvent::Station { .. } => Kind::Station,
            CallEvent::Connected { .. } => Kind::Connected,
            CallEvent::Voicemail { .. } => Kind::Voicemail,
            CallEvent::Ended { .. } => Kind::Ended,
            CallEvent::AttemptStarted { .. } => Kind::AttemptStarted,
            CallEvent::AttemptEnded { .. } => Kind::AttemptEnded,
            CallEvent::Quality(_) => Kind::Quality,
        }
    }
}

/// The row an event writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RowKey<'a> {
    Call(&'a str),
    Attempt(&'a str, u32),
}

impl<'a> RowKey<'a> {
    pub(crate) fn of(ev: &'a CallEvent) -> RowKey<'a> {
        match ev {
            CallEvent::AttemptStarted {
                call_id,
                attempt_no,
                ..
            }
            | CallEvent::AttemptEnded {
                call_id,
                attempt_no,
                ..
            } => RowKey::Attempt(call_id, *attempt_no),
            // A leg's quality row, keyed like its attempt (0: the caller's leg).
            CallEvent::Quality(q) => RowKey::Attempt(&q.call_id, q.attempt_no),
            other => RowKey::Call(other.call_id()),
        }
    }
}

/// Events of one kind, by their index in the batch (ascending), no two on
/// the same row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) kind: Kind,
    pub(crate) events: Vec<usize>,
}

/// The steps for `evs`, in the order to apply them.
pub(crate) fn plan(evs: &[CallEvent]) -> Vec<Step> {
    let mut seen: HashMap<RowKey<'_>, usize> = HashMap::new();
    let mut steps: BTreeMap<(usize, Kind), Vec<usize>> = BTreeMap::new();
    for (i, ev) in evs.iter().enumerate() {
        let layer = seen.entry(RowKey::of(ev)).or_insert(0);
        steps.entry((*layer, Kind::of(ev))).or_default().push(i);
        *layer += 1;
    }
    steps
        .into_iter()
        .map(|((_, kind), events)| Step { kind, events })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::backend::Backend;
    use crate::store::event::{AttemptResult, HangupBy, Outcome};
    use crate::store::rows::{AttemptRow, CallRow};
    use crate::store::tests::{at, started};
    use std::collections::HashSet;

    fn key(id: &str, keys: &str) -> CallEvent {
        CallEvent::Key {
            call_id: id.into(),
            keys: keys.into(),
        }
    }

    fn attempt(id: &str, n: u32) -> CallEvent {
        CallEvent::AttemptStarted {
            call_id: id.into(),
            attempt_no: n,
            volunteer: "ana".into(),
            target: "sip:ana@10.0.0.5".into(),
            at: at(0),
        }
    }

    fn step(kind: Kind, events: &[usize]) -> Step {
        Step {
            kind,
            events: events.to_vec(),
        }
    }

    #[test]
    fn calls_side_by_side_share_a_step_per_kind() {
        let evs = [
            CallEvent::Started(started("a", 0)),
            CallEvent::Started(started("b", 0)),
            key("b", "1"),
            key("a", "2"),
        ];
        assert_eq!(
            plan(&evs),
            [step(Kind::Started, &[0, 1]), step(Kind::Key, &[2, 3])]
        );
    }

    #[test]
    fn one_rows_events_keep_their_order() {
        let evs = [
            key("a", "1"),
            CallEvent::Started(started("a", 0)),
            key("a", "12"),
            key("b", "9"),
            CallEvent::Started(started("a", 0)),
        ];
        // The update before the insert stays before it (and finds no row,
        // as one statement per event would), the replayed insert last.
        assert_eq!(
            plan(&evs),
            [
                step(Kind::Key, &[0, 3]),
                step(Kind::Started, &[1]),
                step(Kind::Key, &[2]),
                step(Kind::Started, &[4]),
            ]
        );
    }

    #[test]
    fn attempts_are_rows_of_their_own() {
        let evs = [
            CallEvent::Started(started("a", 0)),
            attempt("a", 1),
            attempt("a", 2),
            attempt("a", 1),
        ];
        assert_eq!(
            plan(&evs),
            [
                step(Kind::Started, &[0]),
                step(Kind::AttemptStarted, &[1, 2]),
                step(Kind::AttemptStarted, &[3]),
            ]
        );
    }

    #[test]
    fn every_event_is_in_exactly_one_step_and_no_step_repeats_a_row() {
        let mut evs = Vec::new();
        for n in 0..50u32 {
            let id = format!("c{}", n % 7);
            evs.push(match n % 3 {
                0 => CallEvent::Started(started(&id, 0)),
                1 => key(&id, &n.to_string()),
                _ => attempt(&id, n % 2),
            });
        }
        let steps = plan(&evs);
        let mut all: Vec<usize> = steps.iter().flat_map(|s| s.events.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..evs.len()).collect::<Vec<_>>());
        for s in &steps {
            let rows: HashSet<_> = s.events.iter().map(|&i| RowKey::of(&evs[i])).collect();
            assert_eq!(rows.len(), s.events.len(), "a row twice in {s:?}");
            assert!(s.events.iter().all(|&i| Kind::of(&evs[i]) == s.kind));
        }
        // Each row's events come in their recorded order.
        let pos: HashMap<usize, usize> = steps
            .iter()
            .enumerate()
            .flat_map(|(k, s)| s.events.iter().map(move |&i| (i, k)))
            .collect();
        for i in 0..evs.len() {
            for j in i + 1..evs.len() {
                if RowKey::of(&evs[i]) == RowKey::of(&evs[j]) {
                    assert!(pos[&i] < pos[&j], "event {i} must be applied before {j}");
                }
            }
        }
    }

    /// A batch with every kind of event, calls interleaved, an update
    /// before its call's insert, replays and updates of rows that do not
    /// exist, and the rows each event writes (as one statement per event
    /// would report them).
    fn tricky_batch() -> (Vec<CallEvent>, Vec<u64>) {
        let ended = |id: &str, outcome, reason: Option<&str>| CallEvent::Ended {
            call_id: id.into(),
            at: at(90),
            outcome,
            hangup_by: HangupBy::System,
            reason: reason.map(str::to_string),
        };
        let attempt_ended =
            |id: &str, n, result, sip_status, reason: Option<&str>| CallEvent::AttemptEnded {
                call_id: id.into(),
                attempt_no: n,
                at: at(40),
                result,
                sip_status,
                reason: reason.map(str::to_string),
            };
        let evs = vec![
            (key("late", "1"), 0),
            (CallEvent::Started(started("a", 0)), 1),
            (CallEvent::Started(started("late", 1)), 1),
            (CallEvent::Started(started("b", 2)), 1),
            (
                CallEvent::Answered {
                    call_id: "a".into(),
                    at: at(3),
                },
                1,
            ),
            (key("a", "2"), 1),
            (key("b", "1"), 1),
            (key("a", "21"), 1),
            (
                CallEvent::Station {
                    call_id: "a".into(),
                    station: "health".into(),
                },
                1,
            ),
            (attempt("a", 1), 1),
            (attempt("a", 2), 1),
            (
                attempt_ended(
                    "a",
                    1,
                    AttemptResult::Failed,
                    None,
                    Some("connection refused"),
                ),
                1,
            ),
            (attempt("a", 1), 0),
            (
                attempt_ended("a", 2, AttemptResult::Answered, Some(200), None),
                1,
            ),
            (
                CallEvent::Connected {
                    call_id: "a".into(),
                    volunteer: "ana".into(),
                    at: at(40),
                },
                1,
            ),
            (
                CallEvent::Voicemail {
                    call_id: "b".into(),
                    path: "vm/b.wav".into(),
                },
                1,
            ),
            (ended("b", Outcome::Voicemail, None), 1),
            (ended("a", Outcome::Connected, None), 1),
            (CallEvent::Started(started("a", 0)), 0),
            (
                ended(
                    "late",
                    Outcome::Failed,
                    Some("voicemail folder not writable"),
                ),
                1,
            ),
            (
                CallEvent::Answered {
                    call_id: "ghost".into(),
                    at: at(5),
                },
                0,
            ),
            (
                attempt_ended("ghost", 1, AttemptResult::NoAnswer, None, None),
                0,
            ),
        ];
        evs.into_iter().unzip()
    }

    /// Applies [`tricky_batch`] as one batch, checks the rows each event
    /// wrote, and returns what ended up in the tables (ids zeroed) so that
    /// backends can be compared.
    pub(crate) async fn check_tricky_batch(
        b: &dyn Backend,
    ) -> Result<Vec<(CallRow, Vec<AttemptRow>)>, sqlx::Error> {
        let (evs, expected) = tricky_batch();
        assert_eq!(b.apply_batch(&evs).await?, expected);
        let mut out = Vec::new();
        for mut call in b.recent_calls(10).await? {
            call.id = 0;
            let mut attempts = b.attempts(&call.call_id).await?;
            for a in &mut attempts {
                a.id = 0;
            }
            out.push((call, attempts));
        }
        assert_eq!(out.len(), 3);
        let (a, attempts) = &out[2];
        assert_eq!((a.call_id.as_str(), a.keys.as_str()), ("a", "21"));
        assert_eq!(a.volunteer.as_deref(), Some("ana"));
        assert_eq!(a.outcome.as_deref(), Some("connected"));
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].result.as_deref(), Some("failed"));
        assert_eq!(attempts[0].sip_status, None);
        assert_eq!(attempts[0].reason.as_deref(), Some("connection refused"));
        assert_eq!(attempts[1].sip_status, Some(200));
        assert_eq!(
            out[1].0.keys, "",
            "the key pressed before the call's row went nowhere"
        );
        assert_eq!(out[0].0.voicemail.as_deref(), Some("vm/b.wav"));
        Ok(out)
    }

    #[tokio::test]
    async fn sqlite_applies_a_tricky_batch() -> crate::store::tests::TestResult {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        let b = crate::store::backend::open(&url, &Default::default()).await?;
        check_tricky_batch(&*b).await?;
        Ok(())
    }
}
