//! PostgreSQL backend, for hotlines that already run a database server or
//! want the records off the phone box. Same schema and same text times as
//! SQLite, so reports read the same from either.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::Postgres;

use super::event::CallEvent;
use super::sql::{connect_pool, SqlBackend, WriteBatch};
use super::{redact_url, StoreError, StoreOptions};

/// Connects (into `opts.pg_schema` if given, creating it) and migrates.
pub(crate) async fn open(
    url: &str,
    opts: &StoreOptions,
) -> Result<SqlBackend<Postgres>, StoreError> {
    let shown = redact_url(url);
    let mut connect = PgConnectOptions::from_str(url).map_err(|source| StoreError::BadUrl {
        url: shown.clone(),
        source,
    })?;
    if let Some(schema) = &opts.pg_schema {
        check_schema_name(schema)?;
        connect = connect.options([("search_path", schema)]);
    }
    let pool = connect_pool(connect, &shown, opts).await?;
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
    SqlBackend::migrated(pool, &sqlx::migrate!("migrations/postgres"), shown).await
}

#[async_trait::async_trait]
impl WriteBatch for SqlBackend<Postgres> {
    async fn write_batch(&self, evs: &[CallEvent]) -> Result<Vec<u64>, sqlx::Error> {
        super::pg_batch::apply(&self.pool, evs).await
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
    use crate::store::batch::tests::check_tricky_batch;
    use crate::store::report::tests::{check_calls_with_attempts, check_report};
    use crate::store::tests::{
        check_heartbeat, check_interrupted, check_lifecycle, check_quality, check_recent_calls,
        check_selftest, check_voicemail_and_abandoned, TestResult,
    };
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

    #[tokio::test]
    async fn closes_calls_left_open_as_interrupted() -> TestResult {
        in_fresh_schema(|url, opts| async move {
            check_interrupted(&Store::open_with(&url, opts).await?).await
        })
        .await
    }

    #[tokio::test]
    async fn heartbeat_keeps_open_calls_alive() -> TestResult {
        in_fresh_schema(|url, opts| async move {
            let opts = StoreOptions {
                heartbeat: Duration::from_millis(100),
                ..opts
            };
            check_heartbeat(&Store::open_with(&url, opts).await?).await
        })
        .await
    }

    #[tokio::test]
    async fn keeps_each_legs_media_quality() -> TestResult {
        in_fresh_schema(|url, opts| async move {
            check_quality(&Store::open_with(&url, opts).await?).await
        })
        .await
    }

    #[tokio::test]
    async fn voicemail_and_abandoned_calls_are_recorded() -> TestResult {
        in_fresh_schema(|url, opts| async move {
            check_voicemail_and_abandoned(&Store::open_with(&url, opts).await?).await
        })
        .await
    }

    #[tokio::test]
    async fn keeps_selftest_calls_out_of_the_report() -> TestResult {
        in_fresh_schema(|url, opts| async move {
            check_selftest(&Store::open_with(&url, opts).await?).await
        })
        .await
    }

    #[tokio::test]
    async fn recent_calls_are_newest_first_and_limited() -> TestResult {
        in_fresh_schema(|url, opts| async move {
            check_recent_calls(&Store::open_with(&url, opts).await?).await
        })
        .await
    }

    /// The batched statements write what SQLite's one statement per event
    /// writes, and report the same rows touched.
    #[tokio::test]
    async fn batched_statements_write_what_one_by_one_writes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let sqlite_url = format!("sqlite://{}", dir.path().join("b.db").display());
        let sqlite = crate::store::backend::open(&sqlite_url, &StoreOptions::default()).await?;
        let reference = check_tricky_batch(&*sqlite).await?;
        in_fresh_schema(|url, opts| async move {
            let pg = crate::store::backend::open(&url, &opts).await?;
            let got = check_tricky_batch(&*pg).await?;
            assert_eq!(got, reference);
            Ok(())
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
