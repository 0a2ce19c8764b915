//! The statements both backends run, each written once. They use `$N`
//! parameters, which PostgreSQL requires and SQLite reads as `?N`, and only
//! SQL both accept (`CAST(x AS TEXT)` rather than PostgreSQL's `x::text`).
//! What truly differs per database (connecting, migrations, PRAGMAs,
//! schemas, and how a batch of events is written: [`WriteBatch`]) lives in
//! `sqlite.rs` and `postgres.rs`.

use async_trait::async_trait;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::pool::PoolOptions;
use sqlx::{
    ColumnIndex, Connection, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type,
};

use super::backend::Backend;
use super::event::{db_time, CallEvent};
use super::report::{ReportAttempt, ReportCall};
use super::rows::{
    attempt_from_row, call_from_row, quality_from_row, AttemptRow, CallRow, QualityRow,
};
use super::{StoreError, StoreOptions, POOL_CONNECTIONS};

/// A pool of either database, and the shared SQL run on it.
pub(crate) struct SqlBackend<DB: Database> {
    pub(crate) pool: Pool<DB>,
}

/// A pool on `connect`, sized and timed alike for both databases; `shown`
/// (the URL, password hidden) names it in the error.
pub(crate) async fn connect_pool<DB: Database>(
    connect: <DB::Connection as Connection>::Options,
    shown: &str,
    opts: &StoreOptions,
) -> Result<Pool<DB>, StoreError> {
    PoolOptions::<DB>::new()
        .max_connections(POOL_CONNECTIONS)
        .acquire_timeout(opts.connect_timeout)
        .connect_with(connect)
        .await
        .map_err(|source| StoreError::Connect {
            url: shown.to_string(),
            source,
        })
}

impl<DB: Database> SqlBackend<DB>
where
    DB::Connection: Migrate,
{
    /// The backend on `pool` once its schema is brought up to date by
    /// `migrations` (each database has its own folder under `migrations/`).
    pub(crate) async fn migrated(
        pool: Pool<DB>,
        migrations: &Migrator,
        shown: String,
    ) -> Result<Self, StoreError> {
        migrations
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { url: shown, source })?;
        Ok(SqlBackend { pool })
    }
}

/// Each driver's result type counts the rows a statement touched, but no
/// sqlx trait says so.
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// Why a call or attempt closed at start as `interrupted` was left open.
const INTERRUPTED_REASON: &str =
    "the daemon stopped while this was in progress (crash, kill or power loss)";

/// The bind statement and its values for one event. `Started` and
/// `AttemptStarted` insert and ignore a row already there, so the writer
/// may replay an event after a lost reply.
fn event_query<DB>(ev: &CallEvent) -> sqlx::query::Query<'static, DB, DB::Arguments>
where
    DB: Database,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> String: Encode<'e, DB> + Type<DB>,
    for<'e> i64: Encode<'e, DB> + Type<DB>,
    for<'e> Option<i32>: Encode<'e, DB> + Type<DB>,
    for<'e> Option<i64>: Encode<'e, DB> + Type<DB>,
    for<'e> Option<String>: Encode<'e, DB> + Type<DB>,
{
    match ev {
        CallEvent::Started(c) => sqlx::query(
            "INSERT INTO calls (call_id, caller, dialed, started_at, alive_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (call_id) DO NOTHING",
        )
        .bind(c.call_id.as_str())
        .bind(c.caller.as_str())
        .bind(c.dialed.as_str())
        .bind(db_time(c.started_at)),
        CallEvent::Answered { call_id, at } => sqlx::query(concat!(
            "UPDATE calls SET answered_at = $1, ",
            alive_since!("$1"),
            " WHERE call_id = $2"
        ))
        .bind(db_time(*at))
        .bind(call_id.as_str()),
        CallEvent::Key { call_id, keys } => {
            sqlx::query("UPDATE calls SET keys = $1 WHERE call_id = $2")
                .bind(keys.as_str())
                .bind(call_id.as_str())
        }
        CallEvent::Station { call_id, station } => {
            sqlx::query("UPDATE calls SET station = $1 WHERE call_id = $2")
                .bind(station.as_str())
                .bind(call_id.as_str())
        }
        CallEvent::Connected {
            call_id,
            volunteer,
            at,
        } => sqlx::query(concat!(
            "UPDATE calls SET volunteer = $1, connected_at = $2, ",
            alive_since!("$2"),
            " WHERE call_id = $3"
        ))
        .bind(volunteer.as_str())
        .bind(db_time(*at))
        .bind(call_id.as_str()),
        CallEvent::Voicemail { call_id, path } => {
            sqlx::query("UPDATE calls SET voicemail = $1 WHERE call_id = $2")
                .bind(path.as_str())
                .bind(call_id.as_str())
        }
        CallEvent::Ended {
            call_id,
            at,
            outcome,
            hangup_by,
            reason,
        } => sqlx::query(
            "UPDATE calls SET ended_at = $1, outcome = $2, hangup_by = $3, reason = $4 \
             WHERE call_id = $5",
        )
        .bind(db_time(*at))
        .bind(outcome.as_str())
        .bind(hangup_by.as_str())
        .bind(reason.clone())
        .bind(call_id.as_str()),
        CallEvent::AttemptStarted {
            call_id,
            attempt_no,
            volunteer,
            target,
            at,
        } => sqlx::query(
            "INSERT INTO call_attempts (call_id, attempt_no, volunteer, target, started_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id, attempt_no) DO NOTHING",
        )
        .bind(call_id.as_str())
        .bind(i64::from(*attempt_no))
        .bind(volunteer.as_str())
        .bind(target.as_str())
        .bind(db_time(*at)),
        CallEvent::AttemptEnded {
            call_id,
            attempt_no,
            at,
            result,
            sip_status,
            reason,
        } => sqlx::query(
            "UPDATE call_attempts SET ended_at = $1, result = $2, sip_status = $3, reason = $4 \
             WHERE call_id = $5 AND attempt_no = $6",
        )
        .bind(db_time(*at))
        .bind(result.as_str())
        .bind(sip_status.map(i32::from))
        .bind(reason.clone())
        .bind(call_id.as_str())
        .bind(i64::from(*attempt_no)),
        CallEvent::Quality(q) => sqlx::query(
            "INSERT INTO call_quality (call_id, attempt_no, leg, packets_sent, packets_received, \
             packets_lost, jitter_us, rtt_us, peer_lost, peer_jitter_us, rtcp_reports) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (call_id, attempt_no) DO NOTHING",
        )
        .bind(q.call_id.as_str())
        .bind(i64::from(q.attempt_no))
        .bind(q.leg())
        .bind(i64::from(q.packets_sent))
        .bind(i64::from(q.packets_received))
        .bind(q.packets_lost)
        .bind(i64::from(q.jitter_us))
        .bind(q.rtt_us.map(i64::from))
        .bind(q.peer_lost.map(i64::from))
        .bind(q.peer_jitter_us.map(i64::from))
        .bind(i64::from(q.rtcp_reports)),
    }
}

/// How a database applies a batch of events in one transaction: the one
/// place the backends write differently. SQLite runs the statements above
/// one per event ([`apply_one_by_one`]): it is in-process, so a statement
/// costs no round trip. PostgreSQL runs one multi-row statement per kind of
/// event (`pg_batch.rs`), since a round trip per event is what made it fall
/// behind at 300 calls/s.
#[async_trait]
pub(crate) trait WriteBatch {
    /// As [`Backend::apply_batch`].
    async fn write_batch(&self, evs: &[CallEvent]) -> Result<Vec<u64>, sqlx::Error>;
}

/// Applies `evs` in order in one transaction, a statement per event (one
/// commit, and for SQLite one fsync, for the lot); returns the rows each
/// touched.
pub(crate) async fn apply_one_by_one<DB>(
    pool: &Pool<DB>,
    evs: &[CallEvent],
) -> Result<Vec<u64>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> String: Encode<'e, DB> + Type<DB>,
    for<'e> i64: Encode<'e, DB> + Type<DB>,
    for<'e> Option<i32>: Encode<'e, DB> + Type<DB>,
    for<'e> Option<i64>: Encode<'e, DB> + Type<DB>,
    for<'e> Option<String>: Encode<'e, DB> + Type<DB>,
    DB::QueryResult: RowsAffected,
{
    let mut tx = pool.begin().await?;
    let mut touched = Vec::with_capacity(evs.len());
    for ev in evs {
        let done = event_query::<DB>(ev).execute(&mut *tx).await?;
        touched.push(done.rows_affected());
    }
    tx.commit().await?;
    Ok(touched)
}

#[async_trait]
impl<DB> Backend for SqlBackend<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
    for<'e> String: Encode<'e, DB> + Type<DB>,
    for<'e> i64: Encode<'e, DB> + Type<DB>,
    for<'e> Option<i32>: Encode<'e, DB> + Type<DB>,
    for<'e> Option<i64>: Encode<'e, DB> + Type<DB>,
    for<'e> Option<String>: Encode<'e, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
    for<'r> String: Decode<'r, DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> i32: Decode<'r, DB> + Type<DB>,
    for<'r> ReportCall: FromRow<'r, DB::Row>,
    for<'r> ReportAttempt: FromRow<'r, DB::Row>,
    DB::QueryResult: RowsAffected,
    SqlBackend<DB>: WriteBatch,
{
    async fn apply_batch(&self, evs: &[CallEvent]) -> Result<Vec<u64>, sqlx::Error> {
        self.write_batch(evs).await
    }

    async fn heartbeat(&self, now: &str, since: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE calls SET alive_at = $1 \
             WHERE ended_at IS NULL AND started_at >= $2 AND (alive_at IS NULL OR alive_at < $1)",
        )
        .bind(now)
        .bind(since)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn close_interrupted(&self, now: &str) -> Result<(u64, u64), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // An attempt ends when its call was last known alive, or at its own
        // start if it began after that.
        let attempts = sqlx::query(
            "UPDATE call_attempts SET result = 'interrupted', reason = $1, ended_at = COALESCE(\
               (SELECT CASE WHEN c.alive_at > call_attempts.started_at THEN c.alive_at \
                            ELSE call_attempts.started_at END \
                FROM calls c WHERE c.call_id = call_attempts.call_id), \
               started_at, $2) \
             WHERE ended_at IS NULL",
        )
        .bind(INTERRUPTED_REASON)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let calls = sqlx::query(
            "UPDATE calls SET outcome = 'interrupted', reason = $1, \
             ended_at = COALESCE(alive_at, started_at) WHERE ended_at IS NULL",
        )
        .bind(INTERRUPTED_REASON)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((calls, attempts))
    }

    async fn recent_calls(&self, limit: u32) -> Result<Vec<CallRow>, sqlx::Error> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls ORDER BY started_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_from_row).collect()
    }

    async fn call(&self, call_id: &str) -> Result<Option<CallRow>, sqlx::Error> {
        let row = sqlx::query(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE call_id = $1"
        ))
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    async fn attempts(&self, call_id: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM call_attempts WHERE call_id = $1 ORDER BY attempt_no"
        ))
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    async fn report_calls(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ReportCall>, sqlx::Error> {
        // The CAST gives PostgreSQL a type for a NULL parameter.
        sqlx::query_as(
            "SELECT station, outcome, started_at, connected_at FROM calls \
             WHERE (outcome IS NULL OR outcome <> 'selftest') \
             AND (CAST($1 AS TEXT) IS NULL OR started_at >= $1) \
             AND (CAST($2 AS TEXT) IS NULL OR started_at < $2)",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
    }

    async fn report_attempts(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ReportAttempt>, sqlx::Error> {
        sqlx::query_as(
            "SELECT a.volunteer, a.result FROM call_attempts a \
             LEFT JOIN calls c ON c.call_id = a.call_id \
             WHERE (CAST($1 AS TEXT) IS NULL OR COALESCE(c.started_at, a.started_at) >= $1) \
             AND (CAST($2 AS TEXT) IS NULL OR COALESCE(c.started_at, a.started_at) < $2)",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
    }

    async fn attempts_since(&self, since: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!("a."),
            " FROM call_attempts a JOIN calls c ON c.call_id = a.call_id \
             WHERE c.started_at >= $1 ORDER BY a.call_id, a.attempt_no"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    async fn quality_since(&self, since: &str) -> Result<Vec<QualityRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT q.call_id, q.attempt_no, q.leg, q.packets_sent, q.packets_received, \
             q.packets_lost, q.jitter_us, q.rtt_us, q.peer_lost, q.peer_jitter_us, q.rtcp_reports \
             FROM call_quality q JOIN calls c ON c.call_id = q.call_id \
             WHERE c.started_at >= $1 ORDER BY q.call_id, q.attempt_no",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(quality_from_row).collect()
    }
}
