//! Picks the backend from the URL and forwards to it. An enum rather than
//! a trait object: two backends, no boxing of async functions, and the
//! match shows at a glance that both implement everything.

use super::event::CallEvent;
use super::postgres::PgBackend;
use super::report::{ReportAttempt, ReportCall};
use super::rows::{AttemptRow, CallRow};
use super::sqlite::SqliteBackend;
use super::{redact_url, StoreError, StoreOptions};

/// One of the two databases, with its pool.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqliteBackend),
    Postgres(PgBackend),
}

impl Backend {
    /// Opens the backend named by the URL scheme.
    pub(crate) async fn open(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite(SqliteBackend::open(url, opts).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres(PgBackend::open(url, opts).await?))
        } else {
            Err(StoreError::UnsupportedUrl {
                url: redact_url(url),
            })
        }
    }

    /// Applies one event; returns the number of rows touched.
    pub(crate) async fn apply(&self, ev: &CallEvent) -> Result<u64, sqlx::Error> {
        match self {
            Backend::Sqlite(b) => b.apply(ev).await,
            Backend::Postgres(b) => b.apply(ev).await,
        }
    }

    pub(crate) async fn recent_calls(&self, limit: u32) -> Result<Vec<CallRow>, sqlx::Error> {
        match self {
            Backend::Sqlite(b) => b.recent_calls(limit).await,
            Backend::Postgres(b) => b.recent_calls(limit).await,
        }
    }

    pub(crate) async fn call(&self, call_id: &str) -> Result<Option<CallRow>, sqlx::Error> {
        match self {
            Backend::Sqlite(b) => b.call(call_id).await,
            Backend::Postgres(b) => b.call(call_id).await,
        }
    }

    pub(crate) async fn attempts(&self, call_id: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
        match self {
            Backend::Sqlite(b) => b.attempts(call_id).await,
            Backend::Postgres(b) => b.attempts(call_id).await,
        }
    }
    pub(crate) async fn report_calls(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ReportCall>, sqlx::Error> {
        match self {
            Backend::Sqlite(b) => b.report_calls(from, to).await,
            Backend::Postgres(b) => b.report_calls(from, to).await,
        }
    }

    pub(crate) async fn report_attempts(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ReportAttempt>, sqlx::Error> {
        match self {
            Backend::Sqlite(b) => b.report_attempts(from, to).await,
            Backend::Postgres(b) => b.report_attempts(from, to).await,
        }
    }

    pub(crate) async fn attempts_since(&self, since: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
        match self {
            Backend::Sqlite(b) => b.attempts_since(since).await,
            Backend::Postgres(b) => b.attempts_since(since).await,
        }
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
