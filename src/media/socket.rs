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
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Whether `srtp` holds a session: a plain leg's packets skip its lock.
    srtp_on: AtomicBool,
}

/// The largest datagram a leg takes: an Ethernet MTU. RTP never comes bigger
/// (20 ms of G.711 is 172 bytes); a bigger datagram is dropped, not cut.
pub(crate) const MAX_DATAGRAM: usize = 1500;

/// Where a leg's receive loop reads: room for two datagrams per wake-up. One
/// `recvmmsg` reads up to two, and one that returns fewer knows the queue is
/// empty, so the wake-up costs one system call instead of a read and a second,
/// empty, read (the benchmark counted 0.96 empty reads per relayed packet).
pub(crate) struct Inbox {
    bufs: [[u8; MAX_DATAGRAM]; 2],
    got: [(usize, Option<SocketAddr>); 2],
    /// Datagrams in `got`, and the next one to hand out.
    len: usize,
    next: usize,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox {
            bufs: [[0; MAX_DATAGRAM]; 2],
            got: [(0, None); 2],
            len: 0,
            next: 0,
        }
    }
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
            srtp_on: AtomicBool::new(false),
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
        self.srtp_on.store(srtp.is_some(), Ordering::Release);
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

    /// The next datagram for `inbox` (decrypted, on an SRTP leg), reading the
    /// socket only when the datagrams of the last read are all handed out.
    pub(crate) async fn recv_into<'a>(
        &self,
        inbox: &'a mut Inbox,
    ) -> io::Result<(&'a [u8], SocketAddr)> {
        loop {
            while inbox.next < inbox.len {
                let i = inbox.next;
                inbox.next += 1;
                if let (len, Some(from)) = inbox.got[i] {
                    if let Some(len) = self.unprotect(&mut inbox.bufs[i], len) {
                        return Ok((&inbox.bufs[i][..len], from));
                    }
                }
            }
            let mut guard = self.fd.readable().await?;
            let read =
                guard.try_io(|inner| recv_two(inner.get_ref(), &mut inbox.bufs, &mut inbox.got));
            let Ok(read) = read else {
                continue; // nothing after all: readiness cleared, wait again
            };
            let n = read?;
            if n < 2 {
                // The queue is empty now. tokio clears only the readiness this
                // guard saw, so a datagram that arrived meanwhile still wakes us.
                guard.clear_ready();
            }
            inbox.len = n;
            inbox.next = 0;
        }
    }

    /// SRTP hook, incoming: the plain packet's length in `buf`, None to drop it.
    fn unprotect(&self, buf: &mut [u8], len: usize) -> Option<usize> {
        if !self.srtp_on.load(Ordering::Acquire) {
            return Some(len);
        }
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
        if !self.srtp_on.load(Ordering::Acquire) {
            return self.fd.get_ref().send_to(buf, addr);
        }
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

/// Up to two datagrams from a non-blocking socket in one `recvmmsg(2)`, into
/// `bufs`: how many, with each one's length and sender (None: not an IP sender,
/// which a UDP socket never reports, or a datagram too big for its buffer);
/// `WouldBlock` when there is none.
fn recv_two(
    socket: &UdpSocket,
    bufs: &mut [[u8; MAX_DATAGRAM]; 2],
    got: &mut [(usize, Option<SocketAddr>); 2],
) -> io::Result<usize> {
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; 2] = unsafe { std::mem::zeroed() };
    let [a, b] = bufs;
    let mut iov = [
        libc::iovec {
            iov_base: a.as_mut_ptr().cast(),
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        },
    ];
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    for ((m, name), iov) in msgs.iter_mut().zip(names.iter_mut()).zip(iov.iter_mut()) {
        m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs` holds two headers whose name and iovec pointers reach
    // `names`, `iov` and `bufs`, all alive and exclusively borrowed for the call;
    // the kernel writes at most the lengths given.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            2,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (n as usize).min(2);
    for i in 0..n {
        let whole = msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC == 0;
        let from = ip_sender(&names[i]).filter(|_| whole);
        got[i] = (msgs[i].msg_len as usize, from);
    }
    Ok(n)
}

/// The sender the kernel wrote into `name`, when it is IPv4 or IPv6.
fn ip_sender(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let name: *const libc::sockaddr_storage = name;
    // SAFETY: `name` comes from a reference: valid and aligned for reading.
    match i32::from(unsafe { (*name).ss_family }) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it
            // is large and aligned enough for.
            let v4 = unsafe { &*name.cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*name.cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
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
    async fn recv_into_hands_out_queued_datagrams_in_order_and_wakes_for_later_ones() {
        let wait = std::time::Duration::from_secs(2);
        let me = RtpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = me.local_addr().unwrap();
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        // Five queued before the first read (reads of two, two and one), from two
        // senders, with a datagram too big for a leg among them.
        a.send_to(b"one", to).unwrap();
        b.send_to(b"two", to).unwrap();
        a.send_to(&[7u8; MAX_DATAGRAM + 1], to).unwrap();
        a.send_to(b"three", to).unwrap();
        b.send_to(b"four", to).unwrap();
        let mut inbox = Inbox::default();
        let mut heard = Vec::new();
        for _ in 0..4 {
            let (bytes, from) = tokio::time::timeout(wait, me.recv_into(&mut inbox))
                .await
                .unwrap()
                .unwrap();
            heard.push((bytes.to_vec(), from));
        }
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(
            heard,
            vec![
                (b"one".to_vec(), pa),
                (b"two".to_vec(), pb),
                (b"three".to_vec(), pa),
                (b"four".to_vec(), pb),
            ]
        );
        // The queue is empty: a read waits, and one sent later still wakes it.
        let idle = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            me.recv_into(&mut inbox),
        );
        assert!(idle.await.is_err());
        for word in [&b"five"[..], b"six"] {
            a.send_to(word, to).unwrap();
            let (bytes, _) = tokio::time::timeout(wait, me.recv_into(&mut inbox))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(bytes, word);
        }
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
