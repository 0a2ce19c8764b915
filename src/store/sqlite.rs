//! SQLite backend: the embedded default, one file next to the daemon.
//! WAL mode lets `hotline calls` read while the daemon writes; the busy
//! timeout bounds how long the writer task waits on a lock before it backs
//! off and retries (the call itself never waits).

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::event::{db_time, CallEvent};
use super::report::{ReportAttempt, ReportCall};
use super::rows::{attempt_from_row, call_from_row, AttemptRow, CallRow};
use super::{redact_url, StoreError, StoreOptions};

/// Connection pool plus the SQL for SQLite.
#[derive(Clone)]
pub(crate) struct SqliteBackend {
    pool: SqlitePool,
}

impl SqliteBackend {
    /// Creates the folder and file if needed, connects and migrates.
    pub(crate) async fn open(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let connect = SqliteConnectOptions::from_str(url).map_err(|source| StoreError::BadUrl {
            url: shown.clone(),
            source,
        })?;
        create_parent_folder(connect.get_filename())?;
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(opts.sqlite_busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(opts.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|source| StoreError::Connect {
                url: shown.clone(),
                source,
            })?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { url: shown, source })?;
        Ok(SqliteBackend { pool })
    }

    /// Applies one event; returns the number of rows it touched.
    pub(crate) async fn apply(&self, ev: &CallEvent) -> Result<u64, sqlx::Error> {
        let q = match ev {
            CallEvent::Started(c) => sqlx::query(
                "INSERT INTO calls (call_id, caller, dialed, started_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (call_id) DO NOTHING",
            )
            .bind(&c.call_id)
            .bind(&c.caller)
            .bind(&c.dialed)
            .bind(db_time(c.started_at)),
            CallEvent::Answered { call_id, at } => {
                sqlx::query("UPDATE calls SET answered_at = ? WHERE call_id = ?")
                    .bind(db_time(*at))
                    .bind(call_id)
            }
            CallEvent::Key { call_id, keys } => {
                sqlx::query("UPDATE calls SET keys = ? WHERE call_id = ?")
                    .bind(keys)
                    .bind(call_id)
            }
            CallEvent::Station { call_id, station } => {
                sqlx::query("UPDATE calls SET station = ? WHERE call_id = ?")
                    .bind(station)
                    .bind(call_id)
            }
            CallEvent::Connected {
                call_id,
                volunteer,
                at,
            } => sqlx::query("UPDATE calls SET volunteer = ?, connected_at = ? WHERE call_id = ?")
                .bind(volunteer)
                .bind(db_time(*at))
                .bind(call_id),
            CallEvent::Voicemail { call_id, path } => {
                sqlx::query("UPDATE calls SET voicemail = ? WHERE call_id = ?")
                    .bind(path)
                    .bind(call_id)
            }
            CallEvent::Ended {
                call_id,
                at,
                outcome,
                hangup_by,
            } => sqlx::query(
                "UPDATE calls SET ended_at = ?, outcome = ?, hangup_by = ? WHERE call_id = ?",
            )
            .bind(db_time(*at))
            .bind(outcome.as_str())
            .bind(hangup_by.as_str())
            .bind(call_id),
            CallEvent::AttemptStarted {
                call_id,
                attempt_no,
                volunteer,
                target,
                at,
            } => sqlx::query(
                "INSERT INTO call_attempts (call_id, attempt_no, volunteer, target, started_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (call_id, attempt_no) DO NOTHING",
            )
            .bind(call_id)
            .bind(i64::from(*attempt_no))
            .bind(volunteer)
            .bind(target)
            .bind(db_time(*at)),
            CallEvent::AttemptEnded {
                call_id,
                attempt_no,
                at,
                result,
                sip_status,
            } => sqlx::query(
                "UPDATE call_attempts SET ended_at = ?, result = ?, sip_status = ? \
                 WHERE call_id = ? AND attempt_no = ?",
            )
            .bind(db_time(*at))
            .bind(result.as_str())
            .bind(sip_status.map(i32::from))
            .bind(call_id)
            .bind(i64::from(*attempt_no)),
        };
        Ok(q.execute(&self.pool).await?.rows_affected())
    }

    /// Newest calls first.
    pub(crate) async fn recent_calls(&self, limit: u32) -> Result<Vec<CallRow>, sqlx::Error> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls ORDER BY started_at DESC, id DESC LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_from_row).collect()
    }

    /// One call by its Call-ID.
    pub(crate) async fn call(&self, call_id: &str) -> Result<Option<CallRow>, sqlx::Error> {
        let row = sqlx::query(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE call_id = ?"
        ))
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// A call's ringing attempts in order.
    pub(crate) async fn attempts(&self, call_id: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM call_attempts WHERE call_id = ? ORDER BY attempt_no"
        ))
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    /// The calls started in `[from, to)` (stored UTC text; `None` = open),
    /// just the columns a report counts.
    pub(crate) async fn report_calls(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ReportCall>, sqlx::Error> {
        sqlx::query_as(
            "SELECT station, outcome, started_at, connected_at FROM calls \
             WHERE (?1 IS NULL OR started_at >= ?1) \
             AND (?2 IS NULL OR started_at < ?2)",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
    }

    /// Volunteer and result of every attempt whose call started in
    /// `[from, to)`; an attempt without a call row goes by its own start.
    pub(crate) async fn report_attempts(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ReportAttempt>, sqlx::Error> {
        sqlx::query_as(
            "SELECT a.volunteer, a.result FROM call_attempts a \
             LEFT JOIN calls c ON c.call_id = a.call_id \
             WHERE (?1 IS NULL OR COALESCE(c.started_at, a.started_at) >= ?1) \
             AND (?2 IS NULL OR COALESCE(c.started_at, a.started_at) < ?2)",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
    }

    /// Attempts of every call started at or after `since`, by call and
    /// attempt number: a superset of the attempts of the calls listed from
    /// `since` on, in one query.
    pub(crate) async fn attempts_since(&self, since: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!("a."),
            " FROM call_attempts a JOIN calls c ON c.call_id = a.call_id \
             WHERE c.started_at >= ?1 ORDER BY a.call_id, a.attempt_no"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    /// The pool, for tests that look at SQLite settings.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// `sqlite://data/hotline.db` should just work on a fresh install, so make
/// `data/` if it is missing. In-memory databases have no folder.
fn create_parent_folder(file: &Path) -> Result<(), StoreError> {
    if file.as_os_str() == ":memory:" {
        return Ok(());
    }
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateFolder {
                path: parent.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{started, TestResult};
    use crate::store::Store;
    use sqlx::{Connection, Executor, SqliteConnection};
    use std::time::Duration;

    fn url_in(dir: &Path, rel: &str) -> String {
        format!("sqlite://{}", dir.join(rel).display())
    }

    #[tokio::test]
    async fn open_creates_folder_and_file_in_wal_mode() -> TestResult {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("data/nested/hotline.db");
        let backend = SqliteBackend::open(
            &url_in(dir.path(), "data/nested/hotline.db"),
            &StoreOptions::default(),
        )
        .await?;
        assert!(file.is_file());
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(backend.pool())
            .await?;
        assert_eq!(mode, "wal");
        Ok(())
    }

    #[tokio::test]
    async fn migrations_are_idempotent_across_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let url = url_in(dir.path(), "hotline.db");
        let store = Store::open(&url).await?;
        store.record(CallEvent::Started(started("reopen", 0)));
        store.flush(Duration::from_secs(5)).await?;
        drop(store);
        let store = Store::open(&url).await?;
        assert!(store.call("reopen").await?.is_some());
        Ok(())
    }

    #[tokio::test]
    async fn queue_survives_a_locked_database() -> TestResult {
        let dir = tempfile::tempdir()?;
        let url = url_in(dir.path(), "hotline.db");
        let opts = StoreOptions {
            sqlite_busy_timeout: Duration::from_millis(20),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
            ..StoreOptions::default()
        };
        let store = Store::open_with(&url, opts).await?;

        let mut locker = SqliteConnection::connect_with(
            &SqliteConnectOptions::from_str(&url)?.busy_timeout(Duration::from_millis(20)),
        )
        .await?;
        locker.execute("BEGIN EXCLUSIVE").await?;

        store.record(CallEvent::Started(started("locked", 0)));
        store.record(CallEvent::Key {
            call_id: "locked".into(),
            keys: "1".into(),
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.pending(), 2);
        // WAL readers are not blocked by the writer lock.
        assert_eq!(store.call("locked").await?, None);
        match store.flush(Duration::from_millis(50)).await {
            Err(StoreError::FlushTimeout { pending, .. }) => assert_eq!(pending, 2),
            other => panic!("expected a flush timeout, got {other:?}"),
        }

        locker.execute("COMMIT").await?;
        store.flush(Duration::from_secs(5)).await?;
        assert_eq!(store.pending(), 0);
        let row = store.call("locked").await?;
        assert_eq!(row.map(|r| r.keys), Some("1".to_string()));
        Ok(())
    }
}
