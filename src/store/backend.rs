//! What the store asks of a database, and the choice of database by URL.
//! Both backends implement it with the same statements
//! ([`super::sql::SqlBackend`]); a trait object keeps `Store` free of a
//! type parameter, and the boxed future per query costs nothing next to
//! the database round trip.

use std::sync::Arc;

use async_trait::async_trait;

use super::event::CallEvent;
use super::report::{ReportAttempt, ReportCall};
use super::rows::{AttemptRow, CallRow, QualityRow};
use super::{postgres, redact_url, sqlite, StoreError, StoreOptions};

/// The reads and writes of the call records.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Applies events in order in one transaction: all or none; returns the
    /// rows each touched.
    async fn apply_batch(&self, evs: &[CallEvent]) -> Result<Vec<u64>, sqlx::Error>;
    /// Marks every open call started at or after `since` alive at `now`
    /// (stored UTC text), in one statement; returns how many.
    async fn heartbeat(&self, now: &str, since: &str) -> Result<u64, sqlx::Error>;
    /// At start: closes every call and attempt left open by a previous run
    /// as `interrupted`, ended when last known alive; returns (calls,
    /// attempts) closed.
    async fn close_interrupted(&self, now: &str) -> Result<(u64, u64), sqlx::Error>;
    /// Newest calls first.
    async fn recent_calls(&self, limit: u32) -> Result<Vec<CallRow>, sqlx::Error>;
    /// One call by its Call-ID.
    async fn call(&self, call_id: &str) -> Result<Option<CallRow>, sqlx::Error>;
    /// A call's ringing attempts in order.
    async fn attempts(&self, call_id: &str) -> Result<Vec<AttemptRow>, sqlx::Error>;
    /// The calls started in `[from, to)` (stored UTC text; `None` = open),
    /// just the columns a report counts.
    async fn report_calls(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ReportCall>, sqlx::Error>;
    /// Volunteer and result of every attempt whose call started in
    /// `[from, to)`; an attempt without a call row goes by its own start.
    async fn report_attempts(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ReportAttempt>, sqlx::Error>;
    /// Attempts of every call started at or after `since`, by call and
    /// attempt number: a superset of the attempts of the calls listed from
    /// `since` on, in one query.
    async fn attempts_since(&self, since: &str) -> Result<Vec<AttemptRow>, sqlx::Error>;
    /// Media quality rows of every call started at or after `since`.
    async fn quality_since(&self, since: &str) -> Result<Vec<QualityRow>, sqlx::Error>;
}

/// Opens the backend named by the URL scheme.
pub(crate) async fn open(url: &str, opts: &StoreOptions) -> Result<Arc<dyn Backend>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::open(url, opts).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::open(url, opts).await?))
    } else {
        Err(StoreError::UnsupportedUrl {
            url: redact_url(url),
        })
    }
}

/// Whether retrying a failed write can never succeed, so the writer should
/// log it and move on instead of holding up every later record. Only the
/// data's own fault counts: constraint violations and, for PostgreSQL,
/// data exceptions (SQLSTATE class 22). A lost connection, a locked file,
/// a full disk or a server restart are all worth waiting out.
pub(crate) fn is_permanent(err: &sqlx::Error) -> bool {
    use sqlx::error::ErrorKind;
    match err {
        sqlx::Error::Database(db) => {
            matches!(
                db.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation
                    | ErrorKind::ExclusionViolation
            ) || (db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
                && db.code().is_some_and(|c| c.starts_with("22")))
        }
        sqlx::Error::Encode(_) | sqlx::Error::InvalidArgument(_) => true,
        _ => false,
    }
}
