//! PostgreSQL backend, for hotlines that already run a database server or
//! want the records off the phone box. Same schema and same text times as
//! SQLite, so reports read the same from either.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::event::{db_time, CallEvent};
use super::report::{ReportAttempt, ReportCall};
use super::rows::{attempt_from_row, call_from_row, AttemptRow, CallRow};
use super::{redact_url, StoreError, StoreOptions};

/// Connection pool plus the SQL for PostgreSQL.
#[derive(Clone)]
pub(crate) struct PgBackend {
    pool: PgPool,
}

impl PgBackend {
    /// Connects (into `opts.pg_schema` if given, creating it) and migrates.
    pub(crate) async fn open(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let mut connect = PgConnectOptions::from_str(url).map_err(|source| StoreError::BadUrl {
            url: shown.clone(),
            source,
        })?;
        if let Some(schema) = &opts.pg_schema {
            check_schema_name(schema)?;
            connect = connect.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(opts.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|source| StoreError::Connect {
                url: shown.clone(),
                source,
            })?;
        if let Some(schema) = &opts.pg_schema {
            // The name was checked to be a plain identifier above.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&pool)
            .await
            .map_err(|source| StoreError::Connect {
                url: shown.clone(),
                source,
            })?;
        }
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { url: shown, source })?;
        Ok(PgBackend { pool })
    }

    /// Applies one event; returns the number of rows it touched.
    pub(crate) async fn apply(&self, ev: &CallEvent) -> Result<u64, sqlx::Error> {
        let q = match ev {
            CallEvent::Started(c) => sqlx::query(
                "INSERT INTO calls (call_id, caller, dialed, started_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (call_id) DO NOTHING",
            )
            .bind(&c.call_id)
            .bind(&c.caller)
            .bind(&c.dialed)
            .bind(db_time(c.started_at)),
            CallEvent::Answered { call_id, at } => {
                sqlx::query("UPDATE calls SET answered_at = $1 WHERE call_id = $2")
                    .bind(db_time(*at))
                    .bind(call_id)
            }
            CallEvent::Key { call_id, keys } => {
                sqlx::query("UPDATE calls SET keys = $1 WHERE call_id = $2")
                    .bind(keys)
                    .bind(call_id)
            }
            CallEvent::Station { call_id, station } => {
                sqlx::query("UPDATE calls SET station = $1 WHERE call_id = $2")
                    .bind(station)
                    .bind(call_id)
            }
            CallEvent::Connected {
                call_id,
                volunteer,
                at,
            } => {
                sqlx::query("UPDATE calls SET volunteer = $1, connected_at = $2 WHERE call_id = $3")
                    .bind(volunteer)
                    .bind(db_time(*at))
                    .bind(call_id)
            }
            CallEvent::Voicemail { call_id, path } => {
                sqlx::query("UPDATE calls SET voicemail = $1 WHERE call_id = $2")
                    .bind(path)
                    .bind(call_id)
            }
            CallEvent::Ended {
                call_id,
                at,
                outcome,
                hangup_by,
            } => sqlx::query(
                "UPDATE calls SET ended_at = $1, outcome = $2, hangup_by = $3 WHERE call_id = $4",
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
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id, attempt_no) DO NOTHING",
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
                "UPDATE call_attempts SET ended_at = $1, result = $2, sip_status = $3 \
                 WHERE call_id = $4 AND attempt_no = $5",
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
            " FROM calls ORDER BY started_at DESC, id DESC LIMIT $1"
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
            " FROM calls WHERE call_id = $1"
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
            " FROM call_attempts WHERE call_id = $1 ORDER BY attempt_no"
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
             WHERE ($1::text IS NULL OR started_at >= $1) \
             AND ($2::text IS NULL OR started_at < $2)",
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
             WHERE ($1::text IS NULL OR COALESCE(c.started_at, a.started_at) >= $1) \
             AND ($2::text IS NULL OR COALESCE(c.started_at, a.started_at) < $2)",
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
             WHERE c.started_at >= $1 ORDER BY a.call_id, a.attempt_no"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }
}

/// Only plain identifiers, because the name is spliced into `CREATE SCHEMA`
/// and into the connection's `search_path`.
fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(StoreError::BadSchemaName {
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::report::tests::{check_calls_with_attempts, check_report};
    use crate::store::tests::{check_lifecycle, TestResult};
    use crate::store::Store;
    use sqlx::{Connection, Executor, PgConnection};
    use std::time::Duration;

    const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    /// Connects to the test server: required if `HOTLINE_TEST_PG` names
    /// one, optional (None = skip) for the default local one.
    async fn test_server() -> Result<Option<(String, PgConnection)>, Box<dyn std::error::Error>> {
        let (url, required) = match std::env::var("HOTLINE_TEST_PG") {
            Ok(url) => (url, true),
            Err(_) => (DEFAULT_TEST_URL.to_string(), false),
        };
        let attempt = tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(&url));
        match attempt.await {
            Ok(Ok(conn)) => Ok(Some((url, conn))),
            Ok(Err(e)) if required => Err(format!("HOTLINE_TEST_PG={url}: {e}").into()),
            Err(_) if required => Err(format!("HOTLINE_TEST_PG={url}: connect timed out").into()),
            _ => {
                eprintln!("skipped: PostgreSQL not reachable at {url}");
                Ok(None)
            }
        }
    }

    /// Runs `body` against a store in a schema of its own on the test
    /// server, then drops the schema, even if `body` fails or panics.
    /// Skips (passes) when the default server is not reachable.
    async fn in_fresh_schema<F, Fut>(body: F) -> TestResult
    where
        F: FnOnce(String, StoreOptions) -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        let Some((url, mut admin)) = test_server().await? else {
            return Ok(());
        };
        let schema = format!("hotline_test_{:016x}", rand::random::<u64>());
        let opts = StoreOptions {
            pg_schema: Some(schema.clone()),
            ..StoreOptions::default()
        };
        // Run in a task so a failed assertion still lets us drop the schema.
        let outcome = tokio::spawn(body(url, opts)).await;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .await?;
        match outcome {
            Ok(result) => Ok(result?),
            Err(join) => match join.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(join) => Err(join.into()),
            },
        }
    }

    #[tokio::test]
    async fn full_lifecycle_in_a_fresh_schema() -> TestResult {
        in_fresh_schema(|url, opts| async move {
            let store = Store::open_with(&url, opts.clone()).await?;
            check_lifecycle(&store).await?;
            drop(store);
            // Reopening must find the migrations already applied.
            let store = Store::open_with(&url, opts).await?;
            assert_eq!(store.recent_calls(10).await?.len(), 1);
            Ok(())
        })
        .await
    }

    #[tokio::test]
    async fn report_counts_a_month_exactly() -> TestResult {
        in_fresh_schema(|url, opts| async move {
            check_report(&Store::open_with(&url, opts).await?).await
        })
        .await
    }

    #[tokio::test]
    async fn calls_come_with_their_attempts_in_order() -> TestResult {
        in_fresh_schema(|url, opts| async move {
            check_calls_with_attempts(&Store::open_with(&url, opts).await?).await
        })
        .await
    }

    #[test]
    fn schema_names_must_be_plain_identifiers() {
        assert!(check_schema_name("hotline_test_00ab").is_ok());
        assert!(check_schema_name("x\"; DROP TABLE calls; --").is_err());
        assert!(check_schema_name("Upper").is_err());
        assert!(check_schema_name("").is_err());
    }
}
