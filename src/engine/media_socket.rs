//! A call's media socket: a std UDP socket in non-blocking mode that the async runtime never
//! hears of (a registered socket would wake the engine thread on every datagram). The media clock
//! drains it at each tick; each datagram comes with its arrival time from the kernel's receive
//! time stamp (`SO_TIMESTAMPNS`), so the jitter figures do not depend on when the socket is read.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

/// A receive time stamp further back than this is not believed (the wall clock was stepped
/// between the arrival and the read): the datagram counts as arriving when it is read.
pub const MAX_STAMP_AGE: Duration = Duration::from_secs(2);

/// One call's RTP or RTCP socket.
pub struct MediaSocket {
    socket: UdpSocket,
}

impl MediaSocket {
    /// Binds `addr`, non-blocking, with kernel receive time stamps on.
    pub fn bind(addr: SocketAddr) -> io::Result<MediaSocket> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        #[cfg(target_os = "linux")]
        if let Err(e) = stamps::enable(&socket) {
            // Arrival times fall back to the read time (a tick's worth of extra jitter).
            tracing::warn!("no receive time stamps on {addr}: {e}");
        }
        Ok(MediaSocket { socket })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends one datagram without waiting: a full socket buffer is a `WouldBlock` error.
    pub fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
        self.socket.send_to(bytes, to).map(|_| ())
    }

    /// Reads the datagrams waiting on the socket, at most `max`, in arrival order, into `buf`
    /// (longer datagrams are dropped), handing each to `on_datagram` with its arrival time.
    /// Returns how many were handed on.
    pub fn drain(
        &self,
        buf: &mut [u8],
        max: usize,
        mut on_datagram: impl FnMut(&[u8], Instant),
    ) -> usize {
        // Both clocks read once, together: every stamp is converted against the same pair.
        let now = Instant::now();
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut handed = 0;
        for _ in 0..max {
            match self.recv(buf) {
                Ok(Datagram::Whole { len, stamp }) => {
                    on_datagram(&buf[..len], arrival(now, wall, stamp));
                    handed += 1;
                }
                Ok(Datagram::Truncated) => {
                    tracing::debug!("media datagram longer than {} bytes dropped", buf.len());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A pending socket error (an ICMP report) is cleared by reading it.
                Err(e) => tracing::debug!("media receive: {e}"),
            }
        }
        handed
    }

    #[cfg(target_os = "linux")]
    fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        stamps::recv(&self.socket, buf)
    }

    #[cfg(not(target_os = "linux"))]
    fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        let (len, _from) = self.socket.recv_from(buf)?;
        Ok(Datagram::Whole { len, stamp: None })
    }
}

/// What one read returned.
enum Datagram {
    /// `len` bytes, received at `stamp` (since the Unix epoch, `CLOCK_REALTIME`) if known.
    Whole { len: usize, stamp: Option<Duration> },
    /// Longer than the buffer: what was read is not the datagram.
    Truncated,
}

/// The `Instant` of a datagram received at `stamp` (wall clock, since the Unix epoch), given that
/// the wall clock read `wall` at `now`: `now - (wall - stamp)`. A missing stamp, one in the
/// future or one older than [`MAX_STAMP_AGE`] (the wall clock was stepped) gives `now`.
pub fn arrival(now: Instant, wall: Duration, stamp: Option<Duration>) -> Instant {
    stamp
        .and_then(|s| wall.checked_sub(s))
        .filter(|age| *age <= MAX_STAMP_AGE)
        .and_then(|age| now.checked_sub(age))
        .unwrap_or(now)
}

#[cfg(target_os = "linux")]
mod stamps {
    //! `SO_TIMESTAMPNS` and `recvmsg`: the kernel's receive time of each datagram.

    use super::Datagram;
    use std::io;
    use std::mem;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    pub fn enable(socket: &UdpSocket) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: the fd belongs to `socket`, alive for this call; the option value points at a
        // c_int that outlives the call, and its size is passed with it.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Room for one `SCM_TIMESTAMPNS` control message (a `timespec`), with the alignment that
    /// `cmsghdr` needs.
    #[repr(C, align(8))]
    struct Control([u8; 64]);

    pub fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = Control([0; 64]);
        // SAFETY: msghdr is a plain C struct for which all zeroes is a valid (empty) value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of::<Control>() as _;
        // SAFETY: the fd belongs to `socket`, alive for this call; `msg` points at one iovec
        // covering `buf` and at `control`, all valid and exclusively ours for the call.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Ok(Datagram::Truncated);
        }
        Ok(Datagram::Whole {
            len: n as usize,
            stamp: stamp(&msg),
        })
    }

    /// The `SCM_TIMESTAMPNS` stamp among the control messages `recvmsg` filled in.
    fn stamp(msg: &libc::msghdr) -> Option<Duration> {
        // SAFETY: `msg` was filled by a successful recvmsg: msg_control/msg_controllen describe
        // the control messages the kernel wrote, which CMSG_FIRSTHDR/CMSG_NXTHDR walk within.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
        while !cmsg.is_null() {
            // SAFETY: non-null headers from CMSG_FIRSTHDR/CMSG_NXTHDR lie inside the buffer.
            let header = unsafe { &*cmsg };
            if header.cmsg_level == libc::SOL_SOCKET
                && header.cmsg_type == libc::SCM_TIMESTAMPNS
                && header.cmsg_len as usize
                    >= cmsg_len(mem::size_of::<libc::timespec>() as libc::c_uint)
            {
                // SAFETY: the kernel wrote a timespec as this message's data (checked length);
                // the data may be unaligned, hence read_unaligned.
                let ts: libc::timespec =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
                let secs = u64::try_from(ts.tv_sec).ok()?;
                let nanos = u32::try_from(ts.tv_nsec)
                    .ok()
                    .filter(|n| *n < 1_000_000_000)?;
                return Some(Duration::new(secs, nanos));
            }
            // SAFETY: as for CMSG_FIRSTHDR; `cmsg` is a header inside `msg`'s buffer.
            cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
        }
        None
    }

    /// `CMSG_LEN(data)`: a control message's length with `data` bytes of data.
    fn cmsg_len(data: libc::c_uint) -> usize {
        // SAFETY: CMSG_LEN is arithmetic on its argument; it reads no memory.
        unsafe { libc::CMSG_LEN(data) as usize }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const WALL: Duration = Duration::from_secs(1_700_000_000);

    #[test]
    fn a_stamp_in_the_past_is_that_long_before_now() {
        let now = Instant::now();
        let stamp = WALL - Duration::from_millis(7);
        assert_eq!(
            arrival(now, WALL, Some(stamp)),
            now - Duration::from_millis(7)
        );
    }

    #[test]
    fn a_stamp_of_now_is_now() {
        let now = Instant::now();
        assert_eq!(arrival(now, WALL, Some(WALL)), now);
    }

    #[test]
    fn a_stamp_in_the_future_is_clamped_to_now() {
        let now = Instant::now();
        let stamp = WALL + Duration::from_millis(3);
        assert_eq!(arrival(now, WALL, Some(stamp)), now);
    }

    #[test]
    fn a_missing_stamp_is_now() {
        let now = Instant::now();
        assert_eq!(arrival(now, WALL, None), now);
    }

    #[test]
    fn a_stamp_older_than_the_wall_clock_could_mean_is_now() {
        let now = Instant::now();
        let stamp = WALL - MAX_STAMP_AGE - Duration::from_millis(1);
        assert_eq!(arrival(now, WALL, Some(stamp)), now);
        let oldest = WALL - MAX_STAMP_AGE;
        assert_eq!(arrival(now, WALL, Some(oldest)), now - MAX_STAMP_AGE);
    }

    fn loopback() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
    }

    #[test]
    fn two_datagrams_drained_together_keep_their_order_and_arrival_times() {
        let rx = MediaSocket::bind(loopback()).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind(loopback()).unwrap();
        tx.send_to(b"first", to).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        tx.send_to(b"second", to).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        let before_drain = Instant::now();
        let n = rx.drain(&mut buf, 64, |bytes, at| got.push((bytes.to_vec(), at)));
        let after_drain = Instant::now();
        assert_eq!(n, 2);
        assert_eq!(got[0].0, b"first");
        assert_eq!(got[1].0, b"second");
        let apart = got[1].1 - got[0].1;
        assert!(
            apart >= Duration::from_millis(25) && apart < Duration::from_millis(500),
            "arrivals {apart:?} apart"
        );
        // Both arrived before the drain began (not stamped with the read time).
        assert!(got[1].1 <= after_drain);
        assert!(got[0].1 + Duration::from_millis(25) <= before_drain);
    }

    #[test]
    fn an_empty_socket_drains_nothing_at_once() {
        let rx = MediaSocket::bind(loopback()).unwrap();
        let mut buf = [0u8; 2048];
        let n = rx.drain(&mut buf, 64, |_, _| panic!("no datagram was sent"));
        assert_eq!(n, 0);
    }

    #[test]
    fn a_flood_is_read_at_most_max_per_drain() {
        let rx = MediaSocket::bind(loopback()).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind(loopback()).unwrap();
        for i in 0..10u8 {
            tx.send_to(&[i], to).unwrap();
        }
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        assert_eq!(rx.drain(&mut buf, 4, |b, _| got.push(b[0])), 4);
        assert_eq!(rx.drain(&mut buf, 64, |b, _| got.push(b[0])), 6);
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
    }

    #[test]
    fn a_datagram_longer_than_the_buffer_is_dropped() {
        let rx = MediaSocket::bind(loopback()).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind(loopback()).unwrap();
        tx.send_to(&[1u8; 100], to).unwrap();
        tx.send_to(&[2u8; 10], to).unwrap();
        let mut buf = [0u8; 50];
        let mut got = Vec::new();
        rx.drain(&mut buf, 64, |b, _| got.push(b.to_vec()));
        assert_eq!(got, vec![vec![2u8; 10]]);
    }
}
