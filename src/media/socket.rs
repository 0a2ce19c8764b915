//! An RTP socket the reactor watches for reading only.
//!
//! A tokio `UdpSocket` is registered for reads and writes, so every packet sent
//! makes the kernel report the socket writable again, and the reactor wakes to
//! process it: the benchmark measured a quarter of the daemon's CPU in that
//! bookkeeping, for 50 packets a second per call that never wait. Here the socket
//! is registered for READABLE only, and sends go straight to the non-blocking
//! socket: a full send buffer drops the packet, as a late RTP packet would be.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::media::srtp::{SrtpKeys, SrtpSession};

/// One leg's RTP socket, or its RTCP socket on the odd port above.
pub(crate) struct RtpSocket {
    fd: AsyncFd<UdpSocket>,
    /// RTCP is protected as SRTCP (RFC 3711 3.4), with the same keys.
    rtcp: bool,
    /// SRTP hook: when set, every packet of this leg is protected on its way out
    /// and unprotected on its way in, here and nowhere else (RFC 3711).
    srtp: Mutex<Option<SrtpSession>>,
}

impl RtpSocket {
    /// Bind a non-blocking socket and register it with the reactor for reads.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<RtpSocket> {
        Self::bind_for(addr, false)
    }

    /// The same for a leg's RTCP.
    pub(crate) fn bind_rtcp(addr: SocketAddr) -> io::Result<RtpSocket> {
        Self::bind_for(addr, true)
    }

    fn bind_for(addr: SocketAddr, rtcp: bool) -> io::Result<RtpSocket> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns this std socket for its whole life; a std
        // UdpSocket's descriptor stays open and unchanged until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
        Ok(RtpSocket {
            fd,
            rtcp,
            srtp: Mutex::new(None),
        })
    }

    /// Turn SRTP on with these keys (or off with None). Keys that are already in
    /// use are kept, so a re-INVITE with the same keys keeps the replay state.
    pub(crate) fn set_srtp(
        &self,
        keys: Option<SrtpKeys>,
    ) -> Result<(), crate::media::srtp::SrtpError> {
        let Ok(mut srtp) = self.srtp.lock() else {
            return Ok(());
        };
        match keys {
            Some(k) if srtp.as_ref().map(|s| s.keys()) == Some(k) => {}
            Some(k) => *srtp = Some(SrtpSession::new(k)?),
            None => *srtp = None,
        }
        Ok(())
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Wait for and receive one datagram (decrypted, on an SRTP leg; one that does
    /// not authenticate is dropped here and never reaches the caller).
    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut guard = self.fd.readable().await?;
            let (len, from) = match guard.try_io(|inner| inner.get_ref().recv_from(buf)) {
                Ok(result) => result?,
                Err(_would_block) => continue,
            };
            match self.unprotect(buf, len) {
                Some(len) => return Ok((len, from)),
                None => continue,
            }
        }
    }

    /// SRTP hook, incoming: the plain packet's length in `buf`, None to drop it.
    fn unprotect(&self, buf: &mut [u8], len: usize) -> Option<usize> {
        let Ok(mut srtp) = self.srtp.lock() else {
            return None;
        };
        let Some(session) = srtp.as_mut() else {
            return Some(len);
        };
        let plain = if self.rtcp {
            session.unprotect_rtcp(&buf[..len]).ok()?
        } else {
            session.unprotect_rtp(&buf[..len]).ok()?
        };
        let n = plain.len().min(buf.len());
        buf[..n].copy_from_slice(&plain[..n]);
        Some(n)
    }

    /// Send now or not at all; callable from any thread (the media clock's own).
    /// On an SRTP leg the packet is protected first (the SRTP hook, outgoing).
    pub(crate) fn try_send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        let protected = match self.srtp.lock().as_deref_mut() {
            Ok(Some(session)) => Some(
                if self.rtcp {
                    session.protect_rtcp(buf)
                } else {
                    session.protect_rtp(buf)
                }
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            ),
            _ => None,
        };
        let packet = protected.as_deref().unwrap_or(buf);
        self.fd.get_ref().send_to(packet, addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sends_and_receives_over_loopback() {
        let a = RtpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = RtpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = b.local_addr().unwrap();
        a.try_send_to(b"rtp", to).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) =
            tokio::time::timeout(std::time::Duration::from_secs(2), b.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(&buf[..n], b"rtp");
        assert_eq!(from, a.local_addr().unwrap());
    }

    #[tokio::test]
    async fn srtp_legs_send_protected_and_receive_plain_and_drop_forgeries() {
        use crate::media::srtp::{SdesKey, SrtpKeys};
        let (ka, kb) = (SdesKey::generate(), SdesKey::generate());
        let a = RtpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = RtpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let keys = |local, remote| {
            Some(SrtpKeys {
                tag: 1,
                local,
                remote,
            })
        };
        a.set_srtp(keys(ka, kb)).unwrap();
        b.set_srtp(keys(kb, ka)).unwrap();
        let plain = [
            0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff,
        ];
        let spy = UdpSocket::bind("127.0.0.1:0").unwrap();
        // What goes on the wire is not the plain packet, and is 10 bytes longer.
        assert_eq!(
            a.try_send_to(&plain, spy.local_addr().unwrap()).unwrap(),
            26
        );
        let mut wire = [0u8; 64];
        let n = spy.recv(&mut wire).unwrap();
        assert_ne!(&wire[12..16], &plain[12..16]);
        let to = b.local_addr().unwrap();
        spy.send_to(b"not srtp at all", to).unwrap();
        a.try_send_to(&plain, to).unwrap();
        spy.send_to(&wire[..n], to).unwrap(); // a replay of the first packet's twin
        let mut buf = [0u8; 64];
        let wait = std::time::Duration::from_secs(2);
        let (n, from) = tokio::time::timeout(wait, b.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..n], from), (&plain[..], a.local_addr().unwrap()));
        // The replayed copy (same seq) is dropped too: nothing else arrives.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), b.recv_from(&mut buf))
                .await
                .is_err()
        );
    }
}
