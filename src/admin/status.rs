//! `/status` as JSON, and `hotline status`: fetch it from the running daemon
//! and print it as a table.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};

use super::live::ActiveCall;

/// What `/status` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub uptime_s: u64,
    pub draining: bool,
    pub calls: Vec<ActiveCall>,
    /// None when no trunk registration is configured.
    pub trunk_registered: Option<bool>,
    pub roster: RosterStatus,
    pub store: StoreStatus,
    /// Source addresses the flood defence bans now.
    pub bans: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RosterStatus {
    pub file: String,
    pub generation: u64,
    pub volunteers: usize,
    pub shifts: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreStatus {
    pub queue_depth: u64,
    /// RFC 3339 time of the last successful write (or of opening the database).
    pub last_write: Option<String>,
    pub write_errors: u64,
}

/// Why `hotline status` could not show the status.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Nothing listens there: the daemon is not running (exit 2).
    #[error("hotline is not running (nothing answers on {0})")]
    NotRunning(SocketAddr),
    #[error("the admin listener at {addr} refused the request: {status} (check [admin] token)")]
    Refused { addr: SocketAddr, status: u16 },
    #[error("the admin listener at {addr}: {detail}")]
    Other { addr: SocketAddr, detail: String },
}

/// GET `path` from the admin listener at `addr` with the optional bearer token:
/// (status code, body). Connection refused is [`FetchError::NotRunning`].
pub async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), FetchError> {
    let other = |detail: String| FetchError::Other { addr, detail };
    let limit = Duration::from_secs(10);
    let stream = match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(FetchError::NotRunning(addr))
        }
        Ok(Err(e)) => return Err(other(e.to_string())),
        Err(_) => return Err(other("no answer within 10 s".into())),
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| other(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, addr.to_string());
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| other(e.to_string()))?;
    let exchange = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(other(e.to_string())),
        Err(_) => Err(other("no answer within 10 s".into())),
    }
}

/// `/status` from the daemon, parsed.
pub async fn fetch(addr: SocketAddr, token: Option<&str>) -> Result<(Status, String), FetchError> {
    let (status, body) = get(addr, "/status", token).await?;
    if status != 200 {
        return Err(FetchError::Refused { addr, status });
    }
    let parsed = serde_json::from_str(&body).map_err(|e| FetchError::Other {
        addr,
        detail: format!("unreadable /status: {e}"),
    })?;
    Ok((parsed, body))
}

/// The status as a readable table.
pub fn format_status(s: &Status) -> String {
    let mut out = String::new();
    let trunk = match s.trunk_registered {
        Some(true) => "registered",
        Some(false) => "NOT registered",
        None => "no registration configured",
    };
    out.push_str(&format!(
        "hotline {}  up {}{}\ntrunk: {trunk}\nroster: {} (reading {}, {} volunteers, {} shifts)\n",
        s.version,
        hms(s.uptime_s),
        if s.draining { "  (shutting down)" } else { "" },
        s.roster.file,
        s.roster.generation,
        s.roster.volunteers,
        s.roster.shifts,
    ));
    out.push_str(&format!(
        "call records: {} waiting, last write {}, {} write errors\n",
        s.store.queue_depth,
        s.store.last_write.as_deref().unwrap_or("never"),
        s.store.write_errors
    ));
    if !s.bans.is_empty() {
        out.push_str(&format!("banned: {}\n", s.bans.join(", ")));
    }
    out.push_str(&format!("\n{} active calls\n", s.calls.len()));
    if !s.calls.is_empty() {
        out.push_str(&format!(
            "{:<14} {:<12} {:<10} {:<14} {:>9}  {}\n",
            "caller", "station", "state", "volunteer", "duration", "call-id"
        ));
        for c in &s.calls {
            let state = serde_json::to_value(c.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            out.push_str(&format!(
                "{:<14} {:<12} {:<10} {:<14} {:>9}  {}\n",
                c.caller,
                c.station.as_deref().unwrap_or("-"),
                state,
                c.volunteer.as_deref().unwrap_or("-"),
                hms(c.duration_s),
                c.call_id
            ));
        }
    }
    out
}

fn hms(s: u64) -> String {
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
