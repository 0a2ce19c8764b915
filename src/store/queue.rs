//! The write-behind queue. `Store::record` only pushes here; one writer task
//! pops events in order and applies them, retrying with backoff while the
//! database is away. The call flow therefore never waits for the disk or
//! the network, and a database outage costs memory, not calls.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::backend::{is_permanent, Backend};
use super::event::CallEvent;

/// Log the "queue full" error on the first drop and then every this many.
const DROP_LOG_EVERY: u64 = 1000;

/// Events waiting for the writer, plus counters that make `flush` exact.
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Wakes the writer when an event arrives or the store closes.
    wake: Notify,
    /// Number of events finished (written, skipped or dropped); `flush` waits on it.
    done: watch::Sender<u64>,
    capacity: usize,
    /// Failed writes (each retry counts) and the Unix time of the last write
    /// that succeeded (opening the database counts as one), for `/metrics`.
    pub(crate) health: Health,
}

/// How the writer is faring, for `/metrics` and `/status`.
#[derive(Debug, Default)]
pub(crate) struct Health {
    pub(crate) write_errors: std::sync::atomic::AtomicU64,
    pub(crate) last_success_unix: std::sync::atomic::AtomicU64,
}

impl Health {
    pub(crate) fn note(&self, ok: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            self.last_success_unix.store(now, Relaxed);
        } else {
            self.write_errors.fetch_add(1, Relaxed);
        }
    }
}

struct State {
    events: VecDeque<CallEvent>,
    /// Events ever enqueued; event n (from 1) is finished once `done >= n`,
    /// because events finish strictly in order.
    enqueued: u64,
    done: u64,
    dropped: u64,
    closed: bool,
}

/// What the writer should do next.
pub(crate) enum Next {
    #[cfg(test)]
    Event(CallEvent),
    Events(Vec<CallEvent>),
    Idle,
    Closed,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                events: VecDeque::new(),
                enqueued: 0,
                done: 0,
                dropped: 0,
                closed: false,
            }),
            wake: Notify::new(),
            done: watch::Sender::new(0),
            capacity: capacity.max(1),
            health: Health::default(),
        }
    }

    /// A panic elsewhere while holding the lock leaves the counters intact,
    /// so carry on rather than lose every later record.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Enqueues without waiting; past capacity the oldest event is dropped.
    pub(crate) fn push(&self, ev: CallEvent) {
        let mut st = self.lock();
        if st.closed {
            tracing::error!(
                call_id = ev.call_id(),
                "call record update after the store closed; lost"
            );
            return;
        }
        if st.events.len() >= self.capacity {
            if let Some(old) = st.events.pop_front() {
                st.dropped += 1;
                st.done += 1;
                if st.dropped % DROP_LOG_EVERY == 1 {
                    tracing::error!(
                        call_id = old.call_id(),
                        dropped_total = st.dropped,
                        "call records queue is full ({} updates waiting for the database); \
                         dropping the oldest updates, call records are being lost",
                        self.capacity
                    );
                }
                self.done.send_replace(st.done);
            }
        }
        st.events.push_back(ev);
        st.enqueued += 1;
        drop(st);
        self.wake.notify_one();
    }

    /// Takes the oldest event for the writer. It stays counted as pending
    /// until [`Queue::finish_one`].
    #[cfg(test)]
    pub(crate) fn next(&self) -> Next {
        match self.next_batch(1) {
            Next::Events(mut evs) => evs.pop().map_or(Next::Idle, Next::Event),
            other => other,
        }
    }

    /// Takes up to `max` of the oldest events, in order, for one
    /// transaction. They stay counted as pending until [`Queue::finish`].
    pub(crate) fn next_batch(&self, max: usize) -> Next {
        let mut st = self.lock();
        if st.events.is_empty() {
            return if st.closed { Next::Closed } else { Next::Idle };
        }
        let n = st.events.len().min(max.max(1));
        Next::Events(st.events.drain(..n).collect())
    }

    /// Marks the event last taken by `next` as finished.
    #[cfg(test)]
    pub(crate) fn finish_one(&self) {
        self.finish(1);
    }

    /// Marks `n` events taken by `next_batch` as finished.
    pub(crate) fn finish(&self, n: u64) {
        let mut st = self.lock();
        st.done += n;
        self.done.send_replace(st.done);
    }

    /// Events recorded but not yet finished, including one being written.
    pub(crate) fn pending(&self) -> u64 {
        let st = self.lock();
        st.enqueued - st.done
    }

    /// Sequence number of the newest event; `flush` waits for it.
    pub(crate) fn enqueued(&self) -> u64 {
        self.lock().enqueued
    }

    /// Events finished so far.
    pub(crate) fn done(&self) -> u64 {
        self.lock().done
    }

    /// Watches the finished count.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.done.subscribe()
    }

    /// The last `Store` handle is gone: drain what is left, then stop.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    async fn woken(&self) {
        self.wake.notified().await
    }
}

/// How long to wait between retries while the database is away.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    /// How often the open calls' `alive_at` is moved to now.
    pub(crate) heartbeat: Duration,
}

/// Tracks one outage so it is logged once when it starts and once when
/// the backlog from it has been written.
struct Outage {
    /// Set at the first success: the backlog ends at this event number.
    backlog_end: Option<u64>,
    written: u64,
}

/// Most events written in one transaction. Large enough that one commit
/// (one fsync) carries a busy second's updates; small enough that a
/// transaction never holds the SQLite write lock for long.
const MAX_BATCH: usize = 500;

/// The calls this daemon has open, by Call-ID with their stored start
/// time, so the heartbeat touches only them (in one statement).
struct Alive {
    open: std::collections::HashMap<String, String>,
    next_beat: Option<tokio::time::Instant>,
    every: Duration,
}

impl Alive {
    fn track(&mut self, evs: &[CallEvent]) {
        for ev in evs {
            match ev {
                CallEvent::Started(c) => {
                    self.open
                        .insert(c.call_id.clone(), super::event::db_time(c.started_at));
                }
                CallEvent::Ended { call_id, .. } => {
                    self.open.remove(call_id);
                }
                _ => {}
            }
        }
        if self.open.is_empty() {
            self.next_beat = None;
        } else if self.next_beat.is_none() {
            self.next_beat = Some(tokio::time::Instant::now() + self.every);
        }
    }

    /// Writes the heartbeat if it is due. A failure is not retried: the
    /// next beat will do, and the events come first.
    async fn beat_if_due(&mut self, backend: &dyn Backend) {
        let Some(due) = self.next_beat else { return };
        if tokio::time::Instant::now() < due {
            return;
        }
        self.next_beat = Some(due.max(tokio::time::Instant::now()) + self.every);
        let Some(since) = self.open.values().min() else {
            return;
        };
        let now = super::event::db_time(chrono::Utc::now());
        if let Err(e) = backend.heartbeat(&now, since).await {
            tracing::debug!(
                "call records heartbeat not written ({e}); next one in {:?}",
                self.every
            );
        }
    }

    async fn until_due(&self) {
        match self.next_beat {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    }
}

/// The writer task: applies events in order, a batch per transaction,
/// forever, and keeps the open calls' heartbeat.
pub(crate) async fn run_writer(queue: Arc<Queue>, backend: Arc<dyn Backend>, backoff: Backoff) {
    let mut outage: Option<Outage> = None;
    let mut alive = Alive {
        open: std::collections::HashMap::new(),
        next_beat: None,
        every: backoff.heartbeat,
    };
    loop {
        alive.beat_if_due(&*backend).await;
        let evs = match queue.next_batch(MAX_BATCH) {
            Next::Events(evs) => evs,
            Next::Idle => {
                tokio::select! {
                    _ = queue.woken() => {}
                    _ = alive.until_due() => {}
                }
                continue;
            }
            Next::Closed => return,
            #[cfg(test)]
            Next::Event(ev) => vec![ev],
        };
        alive.track(&evs);
        if !write_batch(&queue, &*backend, backoff, &evs, &mut outage).await {
            return;
        }
        queue.finish(evs.len() as u64);
        if let Some(Outage {
            backlog_end: Some(end),
            written,
        }) = outage
        {
            if queue.done() >= end {
                tracing::warn!("call records database is back; wrote {written} queued updates");
                outage = None;
            }
        }
    }
}

/// Writes `evs` in one transaction, waiting out an outage with backoff. If
/// the database refuses one of them for good, writes them one at a time so
/// only that one is skipped. False: give up (shutdown while unavailable).
async fn write_batch(
    queue: &Queue,
    backend: &dyn Backend,
    backoff: Backoff,
    evs: &[CallEvent],
    outage: &mut Option<Outage>,
) -> bool {
    let mut delay = backoff.initial;
    loop {
        let applied = backend.apply_batch(evs).await;
        queue.health.note(applied.is_ok());
        let err = match applied {
            Ok(touched) => {
                for (ev, rows) in evs.iter().zip(touched) {
                    warn_if_missing(ev, rows);
                }
                note_written(queue, outage, evs.len() as u64);
                return true;
            }
            Err(e) if is_permanent(&e) && evs.len() > 1 => {
                for ev in evs {
                    if !Box::pin(write_batch(
                        queue,
                        backend,
                        backoff,
                        std::slice::from_ref(ev),
                        outage,
                    ))
                    .await
                    {
                        return false;
                    }
                }
                return true;
            }
            Err(e) if is_permanent(&e) => {
                tracing::error!(
                    call_id = evs.first().map(CallEvent::call_id),
                    event = ?evs.first(),
                    "call records database refused an update ({e}); skipped"
                );
                return true;
            }
            Err(e) => e,
        };
        if outage.is_none() {
            tracing::warn!(
                "call records database unavailable ({err}); {} updates queued, retrying",
                queue.pending()
            );
            *outage = Some(Outage {
                backlog_end: None,
                written: 0,
            });
        }
        if queue.is_closed() {
            tracing::error!(
                "call records database unavailable at shutdown ({err}); \
                 {} call record updates lost",
                queue.pending()
            );
            return false;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(backoff.max);
    }
}

fn warn_if_missing(ev: &CallEvent, rows: u64) {
    if rows == 0 && is_update(ev) {
        tracing::warn!(
            call_id = ev.call_id(),
            "call record update for a call that has no record; skipped"
        );
    }
}

fn note_written(queue: &Queue, outage: &mut Option<Outage>, n: u64) {
    if let Some(o) = outage.as_mut() {
        o.written += n;
        o.backlog_end.get_or_insert_with(|| queue.enqueued());
    }
}

/// Updates touch an existing row; inserts may legitimately find theirs present.
fn is_update(ev: &CallEvent) -> bool {
    !matches!(
        ev,
        CallEvent::Started(_) | CallEvent::AttemptStarted { .. } | CallEvent::Quality(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> CallEvent {
        CallEvent::Key {
            call_id: format!("c{n}"),
            keys: n.to_string(),
        }
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_it_finished() {
        let q = Queue::new(2);
        for n in 1..=3 {
            q.push(key(n));
        }
        assert_eq!(q.pending(), 2);
        assert_eq!(q.done(), 1);
        assert_eq!(q.enqueued(), 3);
        match q.next() {
            Next::Event(ev) => assert_eq!(ev, key(2)),
            _ => panic!("expected event 2"),
        }
        // Taken but not finished still counts as pending.
        assert_eq!(q.pending(), 2);
        q.finish_one();
        assert_eq!(q.pending(), 1);
    }

    #[test]
    fn closed_queue_hands_out_the_rest_then_stops() {
        let q = Queue::new(10);
        q.push(key(1));
        q.close();
        assert!(matches!(q.next(), Next::Event(_)));
        assert!(matches!(q.next(), Next::Closed));
        q.push(key(2));
        assert_eq!(q.enqueued(), 1);
    }
}
