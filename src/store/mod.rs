//! Call records: one row per call in SQLite (default) or PostgreSQL.
//!
//! Every call must leave a record, but no call may wait for a database.
//! So the call flow sends [`CallEvent`]s to [`Store::record`], which only
//! enqueues them; a single writer task applies them in order and keeps them
//! queued, retrying, while the database is locked or down.
//!
//! - [`event`]: the events and the enums stored as words.
//! - [`rows`]: what reads return, and the `hotline calls` table.
//! - `queue`: the write-behind queue and the writer task.
//! - `backend`: what the store asks of a database; `sql`: the statements,
//!   written once for both databases.
//! - `sqlite`, `postgres`: what differs per database (connecting and its
//!   migrations folder under `migrations/`, and how a batch is written).
//! - `probe`: `hotline check`'s read-only look at the database.
//! - `batch`: a batch of events split into steps of one kind each, which
//!   `pg_batch` writes to PostgreSQL as one multi-row statement per step.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate};
use tokio::task::JoinHandle;

/// The selected columns of `calls`, in the order [`rows::call_from_row`] reads.
macro_rules! call_columns {
    () => {
        "id, call_id, caller, dialed, started_at, answered_at, station, keys, \
         volunteer, connected_at, ended_at, outcome, hangup_by, voicemail, reason"
    };
}

/// The selected columns of `call_attempts`, optionally qualified by a
/// table alias such as `"a."` for joins.
macro_rules! attempt_columns {
    () => {
        attempt_columns!("")
    };
    ($t:literal) => {
        concat!(
            $t,
            "id, ",
            $t,
            "call_id, ",
            $t,
            "attempt_no, ",
            $t,
            "volunteer, ",
            $t,
            "target, ",
            $t,
            "started_at, ",
            $t,
            "ended_at, ",
            $t,
            "result, ",
            $t,
            "sip_status, ",
            $t,
            "reason"
        )
    };
}

/// `alive_at` moved forward to the time in `$p` (a parameter or a column),
/// never back (a heartbeat may already have set a later one).
macro_rules! alive_since {
    ($p:literal) => {
        concat!(
            "alive_at = CASE WHEN alive_at > ",
            $p,
            " THEN alive_at ELSE ",
            $p,
            " END"
        )
    };
}

mod backend;
mod batch;
pub(crate) mod event;
mod pg_batch;
mod postgres;
mod probe;
mod queue;
pub(crate) mod report;
pub(crate) mod rows;
mod sql;
mod sqlite;

pub use event::{AttemptResult, CallEvent, HangupBy, LegQuality, NewCall, Outcome};
pub use probe::{probe, Probe};
pub use report::{format_report, Report, StationLine, VolunteerLine, NO_STATION};
pub use rows::{
    format_calls_table, format_calls_with_attempts, AttemptRow, CallRow, CallWithAttempts,
    QualityRow,
};

use backend::Backend;
use queue::{Backoff, Queue};

/// Connections per database pool: the writer task's, and a few for reads
/// (`hotline calls`, reports) alongside it.
const POOL_CONNECTIONS: u32 = 4;

/// Why the store could not open, read or flush. Messages are for the
/// operator; URLs in them have their password hidden.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres://`.
    #[error(
        "unsupported call records database URL {url:?}: expected sqlite://PATH or postgres://..."
    )]
    UnsupportedUrl {
        /// The URL, password hidden.
        url: String,
    },
    /// The URL has the right scheme but could not be parsed.
    #[error("bad call records database URL {url:?}: {source}")]
    BadUrl {
        /// The URL, password hidden.
        url: String,
        /// What sqlx disliked.
        source: sqlx::Error,
    },
    /// A read-only command found no SQLite file: nothing was ever recorded
    /// there (and the command does not create one).
    #[error("no call records database at {}: `hotline run` creates it when it starts", path.display())]
    Missing {
        /// The file, made absolute so a command run from another folder says where it looked.
        path: PathBuf,
    },
    /// The folder for the SQLite file could not be made.
    #[error("cannot create folder {path} for the call records database: {source}")]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Connecting (or preparing the PostgreSQL schema) failed.
    #[error("cannot connect to the call records database {url}: {source}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// Bringing the schema up to date failed.
    #[error("cannot update the call records database {url} to the current schema: {source}")]
    Migrate {
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: sqlx::migrate::MigrateError,
    },
    /// A PostgreSQL schema name that is not a plain lowercase identifier.
    #[error("bad PostgreSQL schema name {name:?}: use lowercase letters, digits and _")]
    BadSchemaName {
        /// The rejected name.
        name: String,
    },
    /// A read query failed.
    #[error("cannot read call records: {0}")]
    Query(#[from] sqlx::Error),
    /// `flush` gave up before everything was written.
    #[error("call records not written after {waited:?}: {pending} updates still queued")]
    FlushTimeout {
        /// Updates recorded before the flush that are still unwritten.
        pending: u64,
        /// How long we waited.
        waited: Duration,
    },
    /// The writer task is gone (it panicked), so nothing more will be written.
    #[error("call records writer stopped; {pending} updates will not be written")]
    WriterStopped {
        /// Updates still queued.
        pending: u64,
    },
}

/// Knobs for [`Store::open_with`]; [`Store::open`] uses the defaults.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// PostgreSQL schema to use (created if missing), e.g. one per test run.
    /// Ignored for SQLite.
    pub pg_schema: Option<String>,
    /// How long one SQLite statement waits on a lock before the writer
    /// backs off and retries.
    pub sqlite_busy_timeout: Duration,
    /// How long to wait for a database connection.
    pub connect_timeout: Duration,
    /// For commands that only read (`hotline calls`, `hotline report`): a
    /// missing SQLite file is [`StoreError::Missing`], never created.
    pub must_exist: bool,
    /// Updates kept while the database is away; past this the oldest go.
    pub queue_capacity: usize,
    /// First retry delay after a failed write; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How often the open calls' `alive_at` is moved to now, in one
    /// statement for all of them: after a crash a call is closed at most
    /// this long before it really stopped.
    pub heartbeat: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pg_schema: None,
            sqlite_busy_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            must_exist: false,
            queue_capacity: 100_000,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            heartbeat: Duration::from_secs(5),
        }
    }
}

/// The call-record store: cheap to clone, one per task that needs it.
/// Writes go through a queue and never block; reads go to the database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Arc<Queue>,
    backend: Arc<dyn Backend>,
    writer: JoinHandle<()>,
}

impl Drop for Inner {
    /// The last handle is gone: let the writer drain and stop.
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl Store {
    /// Opens the database named by `url` (`sqlite://data/hotline.db` or
    /// `postgres://...`) with default options; see [`Store::open_with`].
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, StoreOptions::default()).await
    }

    /// Opens an existing database for a command that reads the records: a
    /// missing SQLite file is [`StoreError::Missing`] rather than a new,
    /// empty database that says "no calls recorded yet".
    pub async fn open_existing(url: &str) -> Result<Store, StoreError> {
        let opts = StoreOptions {
            must_exist: true,
            ..StoreOptions::default()
        };
        Store::open_with(url, opts).await
    }

    /// Connects, creates the SQLite folder and file if missing, brings the
    /// schema up to date and starts the writer task. Fails rather than
    /// starting without records, so a bad URL is seen at start.
    pub async fn open_with(url: &str, opts: StoreOptions) -> Result<Store, StoreError> {
        let backend = backend::open(url, &opts).await?;
        let queue = Arc::new(Queue::new(opts.queue_capacity));
        queue.health.note(true);
        let backoff = Backoff {
            initial: opts.retry_initial,
            max: opts.retry_max,
            heartbeat: opts.heartbeat,
        };
        let writer = tokio::spawn(queue::run_writer(queue.clone(), backend.clone(), backoff));
        Ok(Store {
            inner: Arc::new(Inner {
                queue,
                backend,
                writer,
            }),
        })
    }

    /// For the daemon at start, before it takes calls: closes every call
    /// and volunteer attempt a previous run left open (it was killed or
    /// crashed) as `interrupted`, ended at the last time it was known alive
    /// (its heartbeat), and logs how many. Returns (calls, attempts).
    /// Never for `hotline calls` or reports: they run beside a live daemon.
    pub async fn close_interrupted(&self) -> Result<(u64, u64), StoreError> {
        let now = event::db_time(chrono::Utc::now());
        let (calls, attempts) = self.inner.backend.close_interrupted(&now).await?;
        if calls + attempts > 0 {
            tracing::warn!(
                calls,
                attempts,
                "closed {calls} calls and {attempts} volunteer attempts left open by the \
                 previous run (it stopped without finishing them) as interrupted, \
                 ended when last known alive"
            );
        } else {
            tracing::info!("no calls left open by the previous run");
        }
        Ok((calls, attempts))
    }

    /// Queues one update for the writer and returns at once; safe to call
    /// from the call flow at any time, even while the database is down.
    pub fn record(&self, ev: CallEvent) {
        self.inner.queue.push(ev);
    }

    /// Waits until every update recorded before this call is written (or
    /// given up as unwritable), for shutdown and tests. Updates recorded
    /// meanwhile are not waited for.
    pub async fn flush(&self, timeout: Duration) -> Result<(), StoreError> {
        let queue = &self.inner.queue;
        let target = queue.enqueued();
        let unwritten = || target.saturating_sub(queue.done());
        if unwritten() > 0 && self.inner.writer.is_finished() {
            return Err(StoreError::WriterStopped {
                pending: queue.pending(),
            });
        }
        let mut done = queue.subscribe();
        let waited = tokio::time::timeout(timeout, done.wait_for(|d| *d >= target)).await;
        match waited.map(|r| r.is_ok()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::WriterStopped {
                pending: queue.pending(),
            }),
            Err(_) => Err(StoreError::FlushTimeout {
                pending: unwritten(),
                waited: timeout,
            }),
        }
    }

    /// Updates recorded but not yet written; non-zero for long means the
    /// database is away.
    pub fn pending(&self) -> usize {
        usize::try_from(self.inner.queue.pending()).unwrap_or(usize::MAX)
    }

    /// Failed writes so far (each retry counts), for `/metrics`.
    pub fn write_errors(&self) -> u64 {
        let health = &self.inner.queue.health;
        health
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Unix time of the last write that succeeded (or of opening the database).
    pub fn last_success_unix(&self) -> u64 {
        let health = &self.inner.queue.health;
        health
            .last_success_unix
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The newest `limit` calls, newest first, for `hotline calls`.
    pub async fn recent_calls(&self, limit: u32) -> Result<Vec<CallRow>, StoreError> {
        Ok(self.inner.backend.recent_calls(limit).await?)
    }

    /// One call by the caller leg's SIP Call-ID.
    pub async fn call(&self, call_id: &str) -> Result<Option<CallRow>, StoreError> {
        Ok(self.inner.backend.call(call_id).await?)
    }

    /// The volunteers rung for one call, in order.
    pub async fn attempts(&self, call_id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        Ok(self.inner.backend.attempts(call_id).await?)
    }
    /// The newest `limit` calls, newest first, each with its attempts in
    /// `attempt_no` order, for `hotline calls`. Two queries whatever the
    /// limit: the calls, then the attempts of every call started since the
    /// oldest one listed (a superset, so a call arriving in between cannot
    /// lose a listed call its attempts).
    pub async fn recent_calls_with_attempts(
        &self,
        limit: u32,
    ) -> Result<Vec<CallWithAttempts>, StoreError> {
        let calls = self.inner.backend.recent_calls(limit).await?;
        let Some(oldest) = calls.iter().map(|c| c.started_at.as_str()).min() else {
            return Ok(Vec::new());
        };
        let attempts = self.inner.backend.attempts_since(oldest).await?;
        let quality = self.inner.backend.quality_since(oldest).await?;
        Ok(group_attempts(calls, attempts, quality))
    }

    /// The figures for `hotline report`: calls started on local days
    /// `from..=to` (either end open when `None`), where days run midnight
    /// to midnight at `utc_offset` (the roster's time zone, e.g. +08:00 for
    /// Asia/Shanghai). Attempts count with the day their call started.
    pub async fn report(
        &self,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        utc_offset: FixedOffset,
    ) -> Result<Report, StoreError> {
        let (lo, hi) = report::utc_bounds(from, to, utc_offset);
        let backend = &self.inner.backend;
        let calls = backend.report_calls(lo.as_deref(), hi.as_deref()).await?;
        let attempts = backend
            .report_attempts(lo.as_deref(), hi.as_deref())
            .await?;
        Ok(report::build_report(
            &calls, &attempts, from, to, utc_offset,
        ))
    }
}

/// Hands each call the attempts and quality rows with its Call-ID, in
/// `attempt_no` order; rows of calls not listed are dropped.
fn group_attempts(
    calls: Vec<CallRow>,
    attempts: Vec<AttemptRow>,
    quality: Vec<QualityRow>,
) -> Vec<CallWithAttempts> {
    let mut by_call: HashMap<String, Vec<AttemptRow>> = HashMap::new();
    for a in attempts {
        by_call.entry(a.call_id.clone()).or_default().push(a);
    }
    let mut legs: HashMap<String, Vec<QualityRow>> = HashMap::new();
    for q in quality {
        legs.entry(q.call_id.clone()).or_default().push(q);
    }
    calls
        .into_iter()
        .map(|call| {
            let mut attempts = by_call.remove(&call.call_id).unwrap_or_default();
            attempts.sort_by_key(|a| a.attempt_no);
            let mut quality = legs.remove(&call.call_id).unwrap_or_default();
            quality.sort_by_key(|q| q.attempt_no);
            CallWithAttempts {
                call,
                attempts,
                quality,
            }
        })
        .collect()
}

/// Hides the password in `scheme://user:password@host/...` so URLs can go
/// into logs and error messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    /// Tests return errors instead of unwrapping database and file results.
    pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// 2026-11-28T05:00:00Z plus `secs`.
    pub(crate) fn at(secs: i64) -> DateTime<Utc> {
        let base = Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0).single();
        base.unwrap_or_default() + chrono::Duration::seconds(secs)
    }

    pub(crate) fn started(call_id: &str, secs: i64) -> NewCall {
        NewCall {
            call_id: call_id.to_string(),
            caller: "+4930123456".to_string(),
            dialed: "6289110".to_string(),
            started_at: at(secs),
        }
    }

    fn lifecycle_events(id: &str) -> Vec<CallEvent> {
        let call_id = || id.to_string();
        vec![
            CallEvent::Started(started(id, 0)),
            CallEvent::Answered {
                call_id: call_id(),
                at: at(1),
            },
            CallEvent::Key {
                call_id: call_id(),
                keys: "9".into(),
            },
            CallEvent::Key {
                call_id: call_id(),
                keys: "92".into(),
            },
            CallEvent::Station {
                call_id: call_id(),
                station: "housing".into(),
            },
            CallEvent::AttemptStarted {
                call_id: call_id(),
                attempt_no: 1,
                volunteer: "ana".into(),
                target: "sip:ana@10.0.0.5".into(),
                at: at(10),
            },
            CallEvent::AttemptEnded {
                call_id: call_id(),
                attempt_no: 1,
                at: at(30),
                result: AttemptResult::NoAnswer,
                sip_status: None,
                reason: None,
            },
            CallEvent::AttemptStarted {
                call_id: call_id(),
                attempt_no: 2,
                volunteer: "ben".into(),
                target: "sip:ben@10.0.0.6".into(),
                at: at(30),
            },
            CallEvent::AttemptEnded {
                call_id: call_id(),
                attempt_no: 2,
                at: at(35),
                result: AttemptResult::Answered,
                sip_status: Some(200),
                reason: None,
            },
            CallEvent::Connected {
                call_id: call_id(),
                volunteer: "ben".into(),
                at: at(35),
            },
            CallEvent::Ended {
                call_id: call_id(),
                at: at(300),
                outcome: Outcome::Connected,
                hangup_by: HangupBy::Caller,
                reason: None,
            },
        ]
    }

    /// Records a whole call twice (the second time as a retry would) and
    /// checks the row and attempts. Shared by both backends' tests.
    pub(crate) async fn check_lifecycle(store: &Store) -> Result<(), StoreError> {
        let id = "a84b4c76e66710@pc33.example.org";
        let events = lifecycle_events(id);
        store.record(events[0].clone());
        store.flush(Duration::from_secs(10)).await?;
        let row = store.call(id).await?;
        let row = row.ok_or(StoreError::Query(sqlx::Error::RowNotFound))?;
        assert_eq!(row.keys, "");
        assert_eq!(row.outcome, None, "in progress until Ended");

        for _ in 0..2 {
            for ev in &events {
                store.record(ev.clone());
            }
            store.flush(Duration::from_secs(10)).await?;
        }
        let row = store.call(id).await?;
        let row = row.ok_or(StoreError::Query(sqlx::Error::RowNotFound))?;
        let expected = CallRow {
            id: row.id,
            call_id: id.to_string(),
            caller: Some("+4930123456".into()),
            dialed: Some("6289110".into()),
            started_at: "2026-11-28T05:00:00.000Z".into(),
            answered_at: Some("2026-11-28T05:00:01.000Z".into()),
            station: Some("housing".into()),
            keys: "92".into(),
            volunteer: Some("ben".into()),
            connected_at: Some("2026-11-28T05:00:35.000Z".into()),
            ended_at: Some("2026-11-28T05:05:00.000Z".into()),
            outcome: Some("connected".into()),
            hangup_by: Some("caller".into()),
            voicemail: None,
            reason: None,
        };
        assert_eq!(row, expected);

        let attempts = store.attempts(id).await?;
        assert_eq!(attempts.len(), 2, "replayed events must not duplicate rows");
        assert_eq!(attempts[0].attempt_no, 1);
        assert_eq!(attempts[0].volunteer.as_deref(), Some("ana"));
        assert_eq!(attempts[0].result.as_deref(), Some("no_answer"));
        assert_eq!(attempts[0].sip_status, None);
        assert_eq!(attempts[1].target.as_deref(), Some("sip:ben@10.0.0.6"));
        assert_eq!(
            attempts[1].started_at.as_deref(),
            Some("2026-11-28T05:00:30.000Z")
        );
        assert_eq!(
            attempts[1].ended_at.as_deref(),
            Some("2026-11-28T05:00:35.000Z")
        );
        assert_eq!(attempts[1].result.as_deref(), Some("answered"));
        assert_eq!(attempts[1].sip_status, Some(200));
        assert_eq!(store.pending(), 0);
        Ok(())
    }

    /// A call answered at 2 s and still ringing a volunteer from 3 s, a
    /// finished call, and a failed attempt with a reason; then a "restart"
    /// closes what was open. Shared by both backends' tests.
    pub(crate) async fn check_interrupted(store: &Store) -> Result<(), StoreError> {
        let id = || "open".to_string();
        for ev in [
            CallEvent::Started(started("open", 0)),
            CallEvent::Answered {
                call_id: id(),
                at: at(2),
            },
            CallEvent::AttemptStarted {
                call_id: id(),
                attempt_no: 1,
                volunteer: "ana".into(),
                target: "sip:ana@10.0.0.5".into(),
                at: at(1),
            },
            CallEvent::AttemptEnded {
                call_id: id(),
                attempt_no: 1,
                at: at(1),
                result: AttemptResult::Failed,
                sip_status: None,
                reason: Some("could not ring the volunteer: no route".into()),
            },
            CallEvent::AttemptStarted {
                call_id: id(),
                attempt_no: 2,
                volunteer: "ben".into(),
                target: "sip:ben@10.0.0.6".into(),
                at: at(3),
            },
            CallEvent::Started(started("done", 0)),
            CallEvent::Ended {
                call_id: "done".into(),
                at: at(9),
                outcome: Outcome::Abandoned,
                hangup_by: HangupBy::Caller,
                reason: None,
            },
        ] {
            store.record(ev);
        }
        store.flush(Duration::from_secs(10)).await?;
        assert_eq!(store.close_interrupted().await?, (1, 1));
        assert_eq!(store.close_interrupted().await?, (0, 0), "only once");

        let row = store.call("open").await?;
        let row = row.ok_or(StoreError::Query(sqlx::Error::RowNotFound))?;
        assert_eq!(row.outcome.as_deref(), Some("interrupted"));
        // Last known alive: the answer.
        assert_eq!(row.ended_at.as_deref(), Some("2026-11-28T05:00:02.000Z"));
        assert!(row.reason.is_some_and(|r| r.contains("daemon stopped")));
        let attempts = store.attempts("open").await?;
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].result.as_deref(), Some("failed"));
        assert_eq!(attempts[0].sip_status, None);
        assert_eq!(
            attempts[0].reason.as_deref(),
            Some("could not ring the volunteer: no route")
        );
        assert_eq!(attempts[1].result.as_deref(), Some("interrupted"));
        // It began after the last sign of life: it ends at its own start.
        assert_eq!(
            attempts[1].ended_at.as_deref(),
            Some("2026-11-28T05:00:03.000Z")
        );
        let done = store.call("done").await?;
        assert_eq!(done.and_then(|r| r.outcome).as_deref(), Some("abandoned"));
        Ok(())
    }

    /// With a fast heartbeat, an open call's `alive_at` follows the clock, so
    /// after a "crash" it ends near when it was last seen, not at its start.
    pub(crate) async fn check_heartbeat(store: &Store) -> Result<(), StoreError> {
        let before = event::db_time(Utc::now());
        store.record(CallEvent::Started(started("beating", 0)));
        store.flush(Duration::from_secs(10)).await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        store.close_interrupted().await?;
        let row = store.call("beating").await?;
        let ended = row.and_then(|r| r.ended_at).unwrap_or_default();
        assert!(ended >= before, "ended {ended}, heartbeat never written");
        Ok(())
    }

    #[tokio::test]
    async fn sqlite_closes_calls_left_open_as_interrupted() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        check_interrupted(&store).await?;
        Ok(())
    }

    #[tokio::test]
    async fn sqlite_heartbeat_keeps_open_calls_alive() -> TestResult {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("hotline.db").display());
        let opts = StoreOptions {
            heartbeat: Duration::from_millis(100),
            ..StoreOptions::default()
        };
        check_heartbeat(&Store::open_with(&url, opts).await?).await?;
        Ok(())
    }

    async fn sqlite_store() -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("hotline.db").display());
        let store = Store::open(&url).await?;
        Ok((dir, store))
    }

    #[tokio::test]
    async fn sqlite_full_lifecycle() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        check_lifecycle(&store).await?;
        Ok(())
    }

    #[tokio::test]
    async fn voicemail_and_abandoned_calls_are_recorded() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        check_voicemail_and_abandoned(&store).await?;
        Ok(())
    }

    /// Shared by both backends' tests.
    pub(crate) async fn check_voicemail_and_abandoned(store: &Store) -> Result<(), StoreError> {
        store.record(CallEvent::Started(started("vm", 0)));
        store.record(CallEvent::Voicemail {
            call_id: "vm".into(),
            path: "voicemail/vm.wav".into(),
        });
        store.record(CallEvent::Ended {
            call_id: "vm".into(),
            at: at(90),
            outcome: Outcome::Voicemail,
            hangup_by: HangupBy::Caller,
            reason: None,
        });
        store.record(CallEvent::Started(started("gone", 5)));
        store.record(CallEvent::Ended {
            call_id: "gone".into(),
            at: at(7),
            outcome: Outcome::Abandoned,
            hangup_by: HangupBy::Caller,
            reason: None,
        });
        store.flush(Duration::from_secs(5)).await?;
        let vm = store.call("vm").await?;
        assert_eq!(
            vm.as_ref().and_then(|r| r.voicemail.as_deref()),
            Some("voicemail/vm.wav")
        );
        assert_eq!(vm.and_then(|r| r.outcome).as_deref(), Some("voicemail"));
        let gone = store.call("gone").await?;
        assert_eq!(gone.as_ref().and_then(|r| r.station.as_deref()), None);
        assert_eq!(gone.and_then(|r| r.outcome).as_deref(), Some("abandoned"));
        Ok(())
    }

    /// Shared by both backends' tests: a self-test call is kept, with its own
    /// outcome (the schema's CHECK takes it), and the report leaves it out.
    pub(crate) async fn check_selftest(store: &Store) -> Result<(), StoreError> {
        store.record(CallEvent::Started(started("resident", 0)));
        store.record(CallEvent::Ended {
            call_id: "resident".into(),
            at: at(7),
            outcome: Outcome::Abandoned,
            hangup_by: HangupBy::Caller,
            reason: None,
        });
        store.record(CallEvent::Started(started("test", 10)));
        store.record(CallEvent::Station {
            call_id: "test".into(),
            station: "health".into(),
        });
        store.record(CallEvent::Ended {
            call_id: "test".into(),
            at: at(11),
            outcome: Outcome::Selftest,
            hangup_by: HangupBy::System,
            reason: None,
        });
        store.flush(Duration::from_secs(5)).await?;
        let row = store.call("test").await?;
        assert_eq!(row.and_then(|r| r.outcome).as_deref(), Some("selftest"));
        let offset = chrono::FixedOffset::east_opt(0).expect("UTC is an offset");
        let report = store.report(None, None, offset).await?;
        assert_eq!((report.totals.calls, report.totals.abandoned), (1, 1));
        assert!(report.per_station.iter().all(|l| l.station != "health"));
        Ok(())
    }

    #[tokio::test]
    async fn sqlite_keeps_selftest_calls_out_of_the_report() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        check_selftest(&store).await?;
        Ok(())
    }

    #[tokio::test]
    async fn sqlite_keeps_each_legs_media_quality() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        check_quality(&store).await?;
        Ok(())
    }

    /// A caller leg and a volunteer leg's figures land in `call_quality` (a
    /// replay is ignored) and come back with the call, caller first.
    pub(crate) async fn check_quality(store: &Store) -> Result<(), StoreError> {
        let leg = |attempt_no, rtt_us| LegQuality {
            call_id: "q".into(),
            attempt_no,
            packets_sent: 1500,
            packets_received: 1490,
            packets_lost: 10,
            jitter_us: 1250,
            rtt_us,
            peer_lost: rtt_us.map(|_| 3),
            peer_jitter_us: rtt_us.map(|_| 500),
            rtcp_reports: u32::from(rtt_us.is_some()) * 6,
        };
        store.record(CallEvent::Started(started("q", 0)));
        store.record(CallEvent::AttemptStarted {
            call_id: "q".into(),
            attempt_no: 1,
            volunteer: "ana".into(),
            target: "sip:ana@10.0.0.5".into(),
            at: at(1),
        });
        store.record(CallEvent::Quality(leg(1, Some(400))));
        store.record(CallEvent::Quality(leg(0, None)));
        store.record(CallEvent::Quality(leg(0, None)));
        store.flush(Duration::from_secs(5)).await?;
        let calls = store.recent_calls_with_attempts(5).await?;
        let q = &calls[0].quality;
        assert_eq!(q.len(), 2, "{q:?}");
        assert_eq!(
            (q[0].leg.as_str(), q[0].rtt_us, q[0].rtcp_reports),
            ("caller", None, 0)
        );
        assert_eq!(
            (q[1].leg.as_str(), q[1].rtt_us, q[1].peer_lost),
            ("volunteer", Some(400), Some(3))
        );
        assert_eq!(
            (q[1].packets_sent, q[1].packets_lost, q[1].jitter_us),
            (1500, 10, 1250)
        );
        let text = crate::store::format_calls_with_attempts(&calls);
        assert!(text.contains("media caller: sent 1500, received 1490, lost 10 (0.7%), jitter 1.2 ms; no RTCP from their end"), "{text}");
        assert!(
            text.contains("round trip 0.4 ms; their end lost 3, jitter 0.5 ms"),
            "{text}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn recent_calls_are_newest_first_and_limited() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        check_recent_calls(&store).await?;
        Ok(())
    }

    /// Shared by both backends' tests.
    pub(crate) async fn check_recent_calls(store: &Store) -> Result<(), StoreError> {
        // Recorded out of time order on purpose.
        for (id, secs) in [("c2", 20), ("c0", 0), ("c4", 40), ("c1", 10), ("c3", 30)] {
            store.record(CallEvent::Started(started(id, secs)));
        }
        store.flush(Duration::from_secs(5)).await?;
        let ids: Vec<String> = store
            .recent_calls(3)
            .await?
            .into_iter()
            .map(|r| r.call_id)
            .collect();
        assert_eq!(ids, ["c4", "c3", "c2"]);
        assert_eq!(store.recent_calls(100).await?.len(), 5);
        Ok(())
    }

    #[tokio::test]
    async fn flush_with_nothing_queued_returns_at_once() -> TestResult {
        let (_dir, store) = sqlite_store().await?;
        store.flush(Duration::from_millis(1)).await?;
        assert_eq!(store.pending(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn unknown_url_scheme_is_refused() {
        let err = Store::open("mysql://root:hunter2@db/hotline").await.err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("unsupported"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn passwords_are_hidden_in_urls() {
        assert_eq!(
            redact_url("postgres://hot:secret@db:5432/hotline"),
            "postgres://hot:***@db:5432/hotline"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redact_url("sqlite://data/hotline.db"),
            "sqlite://data/hotline.db"
        );
    }
}

/// What writing records costs at 300 calls/s; a measurement run by hand.
#[cfg(test)]
mod cost;
