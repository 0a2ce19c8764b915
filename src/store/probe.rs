//! `hotline check`'s look at the call records database: the SQLite file
//! opened read-only, or the PostgreSQL server connected to, and nothing
//! created or changed, so a bad URL or a server that is down shows before
//! `hotline run` fails on it.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::{redact_url, StoreError};

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The database opened and answered a query.
    Opened,
    /// No SQLite file yet: `hotline run` creates it (and its folder) on start.
    NotCreatedYet(PathBuf),
}

/// Opens the database `url` names without writing to it: SQLite read-only
/// (a missing file is [`Probe::NotCreatedYet`], not created), PostgreSQL in
/// a read-only session; waits at most `timeout` for the connection.
pub async fn probe(url: &str, timeout: Duration) -> Result<Probe, StoreError> {
    let shown = redact_url(url);
    let bad_url = |source| StoreError::BadUrl {
        url: shown.clone(),
        source,
    };
    let connect_err = |source| StoreError::Connect {
        url: shown.clone(),
        source,
    };
    let timed_out = || {
        connect_err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {}s", timeout.as_secs_f32()),
        )))
    };
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url).map_err(bad_url)?;
        let file = options.get_filename();
        if file.as_os_str() != ":memory:" && !file.exists() {
            let path = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
            return Ok(Probe::NotCreatedYet(path));
        }
        let options = options.read_only(true).create_if_missing(false);
        let mut conn = tokio::time::timeout(timeout, options.connect())
            .await
            .map_err(|_| timed_out())?
            .map_err(connect_err)?;
        // Reading the schema fails on a file that is not a database.
        let asked = sqlx::query("SELECT count(*) FROM sqlite_master")
            .fetch_one(&mut conn)
            .await;
        let _ = conn.close().await;
        asked.map_err(connect_err)?;
        Ok(Probe::Opened)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url)
            .map_err(bad_url)?
            .options([("default_transaction_read_only", "on")]);
        let mut conn = tokio::time::timeout(timeout, options.connect())
            .await
            .map_err(|_| timed_out())?
            .map_err(connect_err)?;
        let asked = sqlx::query("SELECT 1").fetch_one(&mut conn).await;
        let _ = conn.close().await;
        asked.map_err(connect_err)?;
        Ok(Probe::Opened)
    } else {
        Err(StoreError::UnsupportedUrl { url: shown })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TestResult;
    use crate::store::Store;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_missing_sqlite_file_is_reported_and_not_created() -> TestResult {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("data/hotline.db");
        let url = format!("sqlite://{}", file.display());
        assert_eq!(probe(&url, WAIT).await?, Probe::NotCreatedYet(file));
        assert!(!dir.path().join("data").exists());
        Ok(())
    }

    #[tokio::test]
    async fn an_existing_sqlite_file_opens_read_only() -> TestResult {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("hotline.db").display());
        drop(Store::open(&url).await?);
        assert_eq!(probe(&url, WAIT).await?, Probe::Opened);
        Ok(())
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_an_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("notes.db");
        std::fs::write(
            &file,
            "these are not call records, just some text\n".repeat(50),
        )?;
        let url = format!("sqlite://{}", file.display());
        let err = probe(&url, WAIT).await.err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("cannot connect")),
            "{err:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn other_schemes_and_unreachable_servers_are_errors() -> TestResult {
        let err = probe("mysql://x", WAIT).await.err();
        assert!(
            matches!(err, Some(StoreError::UnsupportedUrl { .. })),
            "{err:?}"
        );
        // Nothing listens on a port we just let go of.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("postgres://hotline:secret@127.0.0.1:{port}/hotline");
        match probe(&url, WAIT).await {
            Err(e @ StoreError::Connect { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
                assert!(!text.contains("secret"), "{text}");
            }
            other => panic!("expected a connection error, got {other:?}"),
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_reachable_postgres_server_opens() -> TestResult {
        let Ok(url) = std::env::var("HOTLINE_TEST_PG") else {
            eprintln!("skipped: HOTLINE_TEST_PG not set");
            return Ok(());
        };
        assert_eq!(probe(&url, WAIT).await?, Probe::Opened);
        Ok(())
    }
}
