//! The admin HTTP listener (`[admin] listen`): `/metrics` for Prometheus,
//! `/livez` and `/readyz` for the service manager and load balancers, and
//! `/status` for `hotline status`. axum on the daemon's tokio runtime (the
//! media clock keeps its own thread); every answer is computed from counters
//! and snapshots, so a scrape never waits for a call or the database.
//!
//! - [`live`]: the calls in progress and the call metrics, from the call
//!   flow's record updates;
//! - [`metrics`]: the Prometheus recorder;
//! - [`scrape`]: reads the rest of the daemon at each request;
//! - [`status`]: `/status`'s shape and `hotline status`'s client and table.

pub(crate) mod live;
pub(crate) mod metrics;
mod scrape;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::server::Server;

pub(crate) use live::Observer;

/// What the handlers share.
#[derive(Clone)]
struct AdminState {
    server: Arc<Server>,
    token: Option<Arc<str>>,
    ready_queue_limit: u64,
    started: Instant,
}

/// Settings the listener takes from `[admin]`.
pub(crate) struct AdminOptions {
    pub(crate) token: Option<String>,
    pub(crate) ready_queue_limit: u64,
}

/// Bind the listener (at start, so a taken port stops the daemon with a clear message).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serve until `stop` fires.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    server: Arc<Server>,
    options: AdminOptions,
    stop: CancellationToken,
) {
    let state = AdminState {
        server,
        token: options.token.map(Arc::from),
        ready_queue_limit: options.ready_queue_limit,
        started: Instant::now(),
    };
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin listener: /metrics, /livez, /readyz, /status");
    }
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!("admin listener stopped: {e}");
        }
    });
}

/// None when the request may proceed; otherwise the 401 to send.
fn refuse(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let token = state.token.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return None;
    }
    let body = Json(serde_json::json!({"error": "a valid bearer token is required"}));
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            body,
        )
            .into_response(),
    )
}

/// Compare without stopping at the first difference, so timing does not
/// reveal how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&state, &headers) {
        return r;
    }
    match scrape::not_ready(&state.server, state.ready_queue_limit) {
        None => Json(serde_json::json!({"ready": true})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&state, &headers) {
        return r;
    }
    let text = scrape::metrics(&state.server);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn status(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&state, &headers) {
        return r;
    }
    Json(scrape::status(&state.server, state.started)).into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
