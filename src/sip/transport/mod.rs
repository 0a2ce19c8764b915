//! SIP over TCP and TLS with our own accept loop, framing and limits.
//!
//! rsipstack 0.7.14's TCP and TLS listeners keep every connection (no per-address or
//! total cap), close only after 300 s without a byte (a byte every 2 s keeps one open
//! for ever), drop the connection on a parse error instead of answering 400, and accept
//! 64 KiB messages. So we own the socket: [`tcp`] accepts under the caps, [`tls`] adds
//! the handshake, [`stream`] runs each connection through [`framing`] and the
//! [`crate::sip::policy::Policy`], and hands rsipstack only well-formed messages over a
//! `ChannelConnection` (its application-owned transport). What the stack sends on that
//! channel we write to the socket.
//!
//! What we rely on from rsipstack for a `ChannelConnection` (pinned by the tests in
//! `tests/e2e_limits.rs` and `tests/e2e_tls.rs`): it is reliable (no retransmissions,
//! `is_reliable()`), responses go back on the connection the request came in on
//! (`Transaction::connection`), in-dialog requests reuse it while its cancel token is
//! live (flow affinity), and its `get_addr()` transport type (TCP or TLS, which we set)
//! picks the Via of requests sent on it. Via `received`/`rport` we add ourselves
//! (`SipConnection::update_msg_received`), as rsipstack's own stream reader does.

pub(crate) mod framing;
pub(crate) mod stream;
pub(crate) mod tcp;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rsipstack::sip::Transport;

/// The two stream transports we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Tcp,
    Tls,
}

impl StreamKind {
    pub fn transport(self) -> Transport {
        match self {
            StreamKind::Tcp => Transport::Tcp,
            StreamKind::Tls => Transport::Tls,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Tcp => "tcp",
            StreamKind::Tls => "tls",
        }
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PerSource,
    Total,
}

/// Open connections: counts per address and in total (the caps), and the live ones by
/// (transport, remote address), so a call can hold its connection open.
#[derive(Debug)]
pub struct ConnTable {
    per_source: usize,
    total: usize,
    inner: Mutex<TableInner>,
}

#[derive(Debug, Default)]
struct TableInner {
    per_ip: HashMap<IpAddr, usize>,
    open: usize,
    live: HashMap<(StreamKind, SocketAddr), Arc<ConnEntry>>,
}

/// One live connection's shared state.
#[derive(Debug, Default)]
pub struct ConnEntry {
    pins: AtomicUsize,
}

impl ConnEntry {
    /// A call in progress uses this connection: it must not be closed for idling.
    pub fn pinned(&self) -> bool {
        self.pins.load(Ordering::Acquire) > 0
    }
}

/// Holds a connection open for a call; dropping it lets the idle timer run again.
#[derive(Debug)]
pub struct ConnPin(Arc<ConnEntry>);

impl Drop for ConnPin {
    fn drop(&mut self) {
        self.0.pins.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub struct ConnPermit {
    table: Arc<ConnTable>,
    ip: IpAddr,
    key: (StreamKind, SocketAddr),
    pub entry: Arc<ConnEntry>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let Ok(mut t) = self.table.inner.lock() else {
            return;
        };
        t.open = t.open.saturating_sub(1);
        if let Some(n) = t.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
        if t.live
            .get(&self.key)
            .is_some_and(|e| Arc::ptr_eq(e, &self.entry))
        {
            t.live.remove(&self.key);
        }
    }
}

impl ConnTable {
    pub fn new(per_source: usize, total: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            per_source,
            total,
            inner: Mutex::default(),
        })
    }

    /// Take a place for a new connection from `remote`, or say which cap refuses it.
    /// `exempt` (a trusted address) skips the per-address cap, never the total.
    pub fn try_open(
        self: &Arc<Self>,
        kind: StreamKind,
        remote: SocketAddr,
        exempt: bool,
    ) -> Result<ConnPermit, Refusal> {
        let ip = crate::sip::limits::canonical(remote.ip());
        let mut t = self.inner.lock().map_err(|_| Refusal::Total)?;
        if t.open >= self.total {
            return Err(Refusal::Total);
        }
        let from_ip = t.per_ip.get(&ip).copied().unwrap_or(0);
        if !exempt && from_ip >= self.per_source {
            return Err(Refusal::PerSource);
        }
        t.open += 1;
        *t.per_ip.entry(ip).or_default() += 1;
        let entry = Arc::new(ConnEntry::default());
        t.live.insert((kind, remote), entry.clone());
        Ok(ConnPermit {
            table: self.clone(),
            ip,
            key: (kind, remote),
            entry,
        })
    }

    /// Pin the live connection from `remote`, if there is one.
    pub fn pin(&self, kind: StreamKind, remote: SocketAddr) -> Option<ConnPin> {
        let t = self.inner.lock().ok()?;
        let entry = t.live.get(&(kind, remote))?.clone();
        entry.pins.fetch_add(1, Ordering::AcqRel);
        Some(ConnPin(entry))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.lock().map(|t| t.open).unwrap_or(0)
    }

    /// Connections open now from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.inner
            .lock()
            .ok()
            .and_then(|t| t.per_ip.get(&crate::sip::limits::canonical(ip)).copied())
            .unwrap_or(0)
    }

    pub fn cap(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_at_its_cap_leaves_room_for_another() {
        let t = ConnTable::new(2, 10);
        let a1 = t
            .try_open(StreamKind::Tcp, addr("192.0.2.1:1000"), false)
            .unwrap();
        let _a2 = t
            .try_open(StreamKind::Tcp, addr("192.0.2.1:1001"), false)
            .unwrap();
        assert_eq!(
            t.try_open(StreamKind::Tcp, addr("192.0.2.1:1002"), false)
                .unwrap_err(),
            Refusal::PerSource
        );
        assert!(t
            .try_open(StreamKind::Tcp, addr("192.0.2.2:1000"), false)
            .is_ok());
        drop(a1);
        assert!(t
            .try_open(StreamKind::Tls, addr("192.0.2.1:1003"), false)
            .is_ok());
    }

    #[test]
    fn the_total_cap_binds_everyone_and_trusted_skip_only_the_per_source_cap() {
        let t = ConnTable::new(1, 3);
        let mut held = Vec::new();
        for port in 0..3 {
            held.push(
                t.try_open(
                    StreamKind::Tcp,
                    addr(&format!("192.0.2.9:{}", 2000 + port)),
                    true,
                )
                .unwrap(),
            );
        }
        assert_eq!(
            t.try_open(StreamKind::Tcp, addr("192.0.2.3:1"), false)
                .unwrap_err(),
            Refusal::Total
        );
        held.clear();
        assert_eq!(t.open(), 0);
        assert_eq!(t.open_from("192.0.2.9".parse().unwrap()), 0);
    }

    #[test]
    fn a_pin_marks_the_live_connection_until_dropped() {
        let t = ConnTable::new(4, 4);
        let p = t
            .try_open(StreamKind::Tcp, addr("192.0.2.1:1000"), false)
            .unwrap();
        assert!(t.pin(StreamKind::Tls, addr("192.0.2.1:1000")).is_none());
        let pin = t.pin(StreamKind::Tcp, addr("192.0.2.1:1000")).unwrap();
        assert!(p.entry.pinned());
        drop(pin);
        assert!(!p.entry.pinned());
        drop(p);
        assert!(t.pin(StreamKind::Tcp, addr("192.0.2.1:1000")).is_none());
    }
}
