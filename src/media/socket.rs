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

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// One leg's RTP socket.
pub struct RtpSocket {
    fd: AsyncFd<UdpSocket>,
}

impl RtpSocket {
    /// Bind a non-blocking socket and register it with the reactor for reads.
    pub fn bind(addr: SocketAddr) -> io::Result<RtpSocket> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns this std socket for its whole life; a std
        // UdpSocket's descriptor stays open and unchanged until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
        Ok(RtpSocket { fd })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Wait for and receive one datagram.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| inner.get_ref().recv_from(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Send now or not at all; callable from any thread (the media clock's own).
    pub fn try_send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(buf, addr)
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
}
