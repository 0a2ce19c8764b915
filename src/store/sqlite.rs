//! SQLite backend: the embedded default, one file next to the daemon.
//! WAL mode lets `hotline calls` read while the daemon writes; the busy
//! timeout bounds how long the writer task waits on a lock before it backs
//! off and retries (the call itself never waits).

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::Sqlite;

use super::event::CallEvent;
use super::sql::{apply_one_by_one, connect_pool, SqlBackend, WriteBatch};
use super::{redact_url, StoreError, StoreOptions};

/// Creates the folder and file if needed (unless `opts.must_exist`),
/// connects and migrates.
pub(crate) async fn open(url: &str, opts: &StoreOptions) -> Result<SqlBackend<Sqlite>, StoreError> {
    let shown = redact_url(url);
    let connect = SqliteConnectOptions::from_str(url).map_err(|source| StoreError::BadUrl {
        url: shown.clone(),
        source,
    })?;
    let file = connect.get_filename();
    if opts.must_exist {
        if !is_memory(file) && !file.exists() {
            return Err(StoreError::Missing {
                path: std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
            });
        }
    } else {
        create_parent_folder(file)?;
    }
    let connect = connect
        .create_if_missing(!opts.must_exist)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(opts.sqlite_busy_timeout);
    let pool = connect_pool(connect, &shown, opts).await?;
    SqlBackend::migrated(pool, &sqlx::migrate!("migrations/sqlite"), shown).await
}

#[async_trait::async_trait]
impl WriteBatch for SqlBackend<Sqlite> {
    async fn write_batch(&self, evs: &[CallEvent]) -> Result<Vec<u64>, sqlx::Error> {
        apply_one_by_one(&self.pool, evs).await
    }
}

/// `sqlite://data/hotline.db` should just work on a fresh install, so make
/// `data/` if it is missing. In-memory databases have no folder.
fn create_parent_folder(file: &Path) -> Result<(), StoreError> {
    if is_memory(file) {
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

/// `sqlite::memory:`: no file at all.
fn is_memory(file: &Path) -> bool {
    file.as_os_str() == ":memory:"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::event::CallEvent;
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
        let backend = open(
            &url_in(dir.path(), "data/nested/hotline.db"),
            &StoreOptions::default(),
        )
        .await?;
        assert!(file.is_file());
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&backend.pool)
            .await?;
        assert_eq!(mode, "wal");
        Ok(())
    }

    #[tokio::test]
    async fn open_existing_never_creates_a_folder_or_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let url = url_in(dir.path(), "data/hotline.db");
        match Store::open_existing(&url).await {
            Err(StoreError::Missing { path }) => {
                assert_eq!(path, dir.path().join("data/hotline.db"));
            }
            Err(e) => return Err(e.into()),
            Ok(_) => panic!("a missing database must not open"),
        }
        assert!(!dir.path().join("data").exists(), "nothing may be created");
        // Once the daemon has made it, the reader opens it.
        drop(Store::open(&url).await?);
        let store = Store::open_existing(&url).await?;
        assert_eq!(store.recent_calls(5).await?, Vec::new());
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
