//! Thin, checked wrappers over the libc calls the server makes, and all but
//! two of the crate's `unsafe` blocks: the other two are
//! `modes::fork_handler`'s calls into [`fork`] and into closing the listener
//! the child inherits, each under this module's `# Safety` rules. Each
//! function is named after its syscall and says which one it corresponds
//! to. File descriptors live in [`OwnedFd`], so each is closed exactly once,
//! when its owner drops it.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::ptr;
use std::time::Duration;

/// Turns a libc return value of -1 into `io::Error::last_os_error()`.
fn cvt<T: PartialEq + From<i8>>(res: T) -> io::Result<T> {
    if res == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}

/// Runs `f` until it fails with something other than EINTR.
fn cvt_r<T, F>(mut f: F) -> io::Result<T>
where
    T: PartialEq + From<i8>,
    F: FnMut() -> T,
{
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Whether a socket's timeout for a call (`SO_RCVTIMEO` for reading a
/// request head, `SO_SNDTIMEO` for a response's writes) is already what
/// the call needs. The callers that rely on a timeout take it as an
/// argument, so that none can forget to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// Set by the listening socket, which Linux copies to each socket
    /// `accept()` returns (`files::prepare_listener`): no call to make.
    ByListener,
    /// Not set: the call sets it first.
    No,
}

/// A stream socket: a listening socket, an accepted client, or an upstream.
#[derive(Debug)]
pub struct Socket(OwnedFd);

impl Socket {
    /// Corresponds to `socket(2)` with `SOCK_STREAM | SOCK_CLOEXEC`.
    fn new(family: libc::c_int) -> io::Result<Socket> {
        // SAFETY: socket() takes no pointers; on success it returns a new fd that we own.
        let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `fd` was just returned by socket() and nothing else owns it.
        Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Listens on `port` of `addr`, or of every interface when `addr` is
    /// `None` (see [`Socket::listen_any`]). Sets `SO_REUSEADDR`.
    pub fn listen(addr: Option<IpAddr>, port: u16, backlog: i32) -> io::Result<Socket> {
        match addr {
            Some(ip) => Socket::listen_on(&SocketAddr::new(ip, port), backlog),
            None => Socket::listen_any(port, backlog),
        }
    }

    /// Listens on every interface: IPv6 and IPv4 together where the machine has
    /// IPv6, IPv4 `INADDR_ANY` alone where it does not. Sets `SO_REUSEADDR`.
    fn listen_any(port: u16, backlog: i32) -> io::Result<Socket> {
        let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        match Socket::listen_on(&any6, backlog) {
            Ok(sock) => Ok(sock),
            Err(e) if is_addr_taken(&e) => Err(e),
            Err(_) => Socket::listen_on(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), backlog),
        }
    }

    /// Corresponds to `socket(2)`, `bind(2)` and `listen(2)`.
    fn listen_on(addr: &SocketAddr, backlog: i32) -> io::Result<Socket> {
        let sock = Socket::new(family_of(addr))?;
        sock.setsockopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1 as libc::c_int)?;
        if addr.is_ipv6() {
            sock.setsockopt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0 as libc::c_int)?;
        }
        let (storage, len) = sockaddr_from(addr);
        // SAFETY: `storage` is a valid sockaddr of `len` bytes for the call's duration.
        cvt(unsafe { libc::bind(sock.raw(), ptr::addr_of!(storage).cast(), len) })?;
        // SAFETY: listen() takes no pointers.
        cvt(unsafe { libc::listen(sock.raw(), backlog) })?;
        Ok(sock)
    }

    /// Corresponds to `accept4(2)` with `SOCK_CLOEXEC`, retried on EINTR.
    pub fn accept(&self) -> io::Result<(Socket, SocketAddr)> {
        let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let fd = cvt_r(|| {
            // SAFETY: `storage` and `len` describe a writable buffer large enough for any address.
            unsafe { libc::accept4(self.raw(), storage.as_mut_ptr().cast(), &mut len, libc::SOCK_CLOEXEC) }
        })?;
        // SAFETY: `fd` was just returned by accept4() and nothing else owns it.
        let sock = Socket(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: accept4() succeeded, so it wrote an address of `len` bytes into `storage`.
        let addr = sockaddr_to_std(unsafe { storage.assume_init_ref() }, len)?;
        Ok((sock, addr))
    }

    /// Corresponds to `connect(2)`. `SO_SNDTIMEO` bounds how long a blocking
    /// connect waits on Linux; running out of time is reported as `TimedOut`.
    /// A connect with a timeout is not restarted after a signal, nor after
    /// the process is stopped and continued (SIGSTOP, a debugger): it fails
    /// with EINTR, and the attempt goes on in the kernel, where a second
    /// connect on the same socket could only say so (EALREADY). So an
    /// interrupted connect starts again on a fresh socket, within what is
    /// left of `timeout`.
    pub fn connect(addr: &SocketAddr, timeout: Duration) -> io::Result<Socket> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connection timed out"));
            }
            match Socket::connect_once(addr, left) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                done => return done,
            }
        }
    }

    fn connect_once(addr: &SocketAddr, timeout: Duration) -> io::Result<Socket> {
        let sock = Socket::new(family_of(addr))?;
        sock.set_write_timeout(Some(timeout))?;
        let (storage, len) = sockaddr_from(addr);
        // SAFETY: `storage` is a valid sockaddr of `len` bytes for the call's duration.
        match cvt(unsafe { libc::connect(sock.raw(), ptr::addr_of!(storage).cast(), len) }) {
            Ok(_) => Ok(sock),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "connection timed out"))
            }
            Err(e) => Err(e),
        }
    }

    /// Corresponds to `read(2)`, retried on EINTR. `Ok(0)` is end of stream.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = cvt_r(|| unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), buf.len()) })?;
        Ok(n as usize)
    }

    /// Like [`Socket::read`], into a buffer that need not be initialised:
    /// returns the part the kernel filled. A relay direction blocks on such a
    /// buffer, so an idle connection has not touched (and so not been given
    /// memory for) more of it than its last read needed.
    pub fn read_uninit<'a>(&self, buf: &'a mut [MaybeUninit<u8>]) -> io::Result<&'a [u8]> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; read() only writes.
        let n = cvt_r(|| unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), buf.len()) })? as usize;
        // SAFETY: read() initialised the first `n` bytes, and n <= buf.len().
        Ok(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) })
    }

    /// Corresponds to `write(2)`, retried on EINTR: returns how many bytes of
    /// `buf` the kernel took, which may be fewer than all of them.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = cvt_r(|| unsafe { libc::write(self.raw(), buf.as_ptr().cast(), buf.len()) })?;
        Ok(n as usize)
    }

    /// Corresponds to `sendfile(2)`: the kernel sends up to `count` bytes of
    /// `file`, from `*offset` on, to this socket, without copying them
    /// through user space, and advances `*offset` past what it sent. Returns
    /// how many bytes that was: fewer than `count` when the send timeout
    /// cut a slow send short, and 0 at the end of the file.
    pub fn sendfile(&self, file: &impl AsRawFd, offset: &mut u64, count: usize) -> io::Result<usize> {
        let mut off = libc::off_t::try_from(*offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset out of range"))?;
        let fd = file.as_raw_fd();
        // SAFETY: `off` is a valid, writable off_t; sendfile() takes no other pointers.
        let n = cvt_r(|| unsafe { libc::sendfile(self.raw(), fd, &mut off, count) })? as usize;
        *offset += n as u64;
        Ok(n)
    }

    /// Corresponds to `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown() takes no pointers.
        cvt(unsafe { libc::shutdown(self.raw(), how) }).map(drop)
    }

    /// Corresponds to `connect(2)` with `AF_UNSPEC`, which dissolves a TCP
    /// connection at once: the kernel sends the peer a reset (RST), drops
    /// what is queued either way, and wakes every thread blocked on the
    /// socket with an error. Unlike `SO_LINGER` 0 and `close()`, it leaves
    /// the fd open, so it is safe while another thread is blocked on it; the
    /// owner closes it later. Unlike `shutdown()`, it sends no FIN first, so
    /// the peer cannot mistake the abort for an end of stream.
    pub fn abort(&self) -> io::Result<()> {
        // SAFETY: sockaddr is plain old data; all zeroes is AF_UNSPEC with no address.
        let unspec: libc::sockaddr = unsafe { mem::zeroed() };
        let len = mem::size_of::<libc::sockaddr>() as libc::socklen_t;
        // SAFETY: `unspec` is a valid sockaddr of `len` bytes for the call's duration.
        cvt(unsafe { libc::connect(self.raw(), &unspec, len) }).map(drop)
    }

    /// Sets `SO_RCVTIMEO`: a blocking read fails with `WouldBlock` after `timeout`.
    /// `None` waits forever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, timeval_from(timeout))
    }

    /// Sets `SO_SNDTIMEO`: a blocking write or connect gives up after `timeout`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.setsockopt(libc::SOL_SOCKET, libc::SO_SNDTIMEO, timeval_from(timeout))
    }

    /// Sets `TCP_CORK`: only full segments leave, until the cork is taken
    /// out, the socket is shut down or closed (the rest then leaves with the
    /// FIN), or 200 ms pass.
    pub fn set_cork(&self, on: bool) -> io::Result<()> {
        self.setsockopt(libc::IPPROTO_TCP, libc::TCP_CORK, libc::c_int::from(on))
    }

    /// Sets `TCP_DEFER_ACCEPT` on a listening socket: `accept()` returns a
    /// connection once data has arrived on it, or after about `wait` if none
    /// does.
    pub fn set_defer_accept(&self, wait: Duration) -> io::Result<()> {
        let secs = libc::c_int::try_from(wait.as_secs()).unwrap_or(libc::c_int::MAX);
        self.setsockopt(libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, secs)
    }

    /// Sets `TCP_NODELAY`, so small writes leave at once.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.setsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY, libc::c_int::from(on))
    }

    /// Corresponds to `getsockopt(TCP_INFO)`: how many bytes the peer has
    /// acknowledged (`tcpi_bytes_acked`, Linux 4.2), that is, taken into its
    /// receive window. Unlike the bytes the kernel takes from a write, this
    /// moves only when the peer makes room by reading.
    pub fn bytes_acked(&self) -> io::Result<u64> {
        // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
        let mut info: libc::tcp_info = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let ptr = ptr::addr_of_mut!(info).cast();
        // SAFETY: `info` is writable for `len` bytes; the kernel writes at most that many.
        cvt(unsafe { libc::getsockopt(self.raw(), libc::IPPROTO_TCP, libc::TCP_INFO, ptr, &mut len) })?;
        Ok(info.tcpi_bytes_acked)
    }

    /// Sets `TCP_NOTSENT_LOWAT`: a write blocks while `bytes` or more that
    /// have not yet been sent wait in the socket, so what a blocked write
    /// takes follows what leaves, not the send buffer's growth.
    pub fn set_notsent_lowat(&self, bytes: u32) -> io::Result<()> {
        self.setsockopt(libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, bytes as libc::c_int)
    }

    /// Corresponds to `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `storage` and `len` describe a writable buffer large enough for any address.
        cvt(unsafe { libc::getsockname(self.raw(), storage.as_mut_ptr().cast(), &mut len) })?;
        // SAFETY: getsockname() succeeded, so it wrote an address of `len` bytes.
        sockaddr_to_std(unsafe { storage.assume_init_ref() }, len)
    }

    /// Corresponds to `setsockopt(2)` with a plain value.
    fn setsockopt<T>(&self, level: libc::c_int, name: libc::c_int, value: T) -> io::Result<()> {
        let len = mem::size_of::<T>() as libc::socklen_t;
        // SAFETY: `value` lives on this stack frame and is `len` bytes long.
        cvt(unsafe { libc::setsockopt(self.raw(), level, name, ptr::addr_of!(value).cast(), len) }).map(drop)
    }

    fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

/// Whether a bind error means the port is taken or forbidden (as opposed to
/// the address family being unavailable).
fn is_addr_taken(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EADDRINUSE | libc::EACCES | libc::EPERM))
}

fn family_of(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

fn timeval_from(timeout: Option<Duration>) -> libc::timeval {
    let d = timeout.unwrap_or(Duration::ZERO);
    // A zero timeval means "no timeout" to the kernel, so round 0 < d < 1µs up.
    let usec = if d > Duration::ZERO && d.as_micros() == 0 { 1 } else { d.subsec_micros() };
    libc::timeval { tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t, tv_usec: usec as _ }
}

/// A `SocketAddr` as a `sockaddr_storage` and its length.
fn sockaddr_from(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { ptr::write(ptr::addr_of_mut!(storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { ptr::write(ptr::addr_of_mut!(storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// A kernel socket address as a `SocketAddr`. An IPv4-mapped IPv6 address
/// (a v4 client of a dual-stack listener) comes back as plain IPv4.
fn sockaddr_to_std(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> io::Result<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family and length say `storage` holds a sockaddr_in.
            let sin: libc::sockaddr_in = unsafe { ptr::read(ptr::from_ref(storage).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family and length say `storage` holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe { ptr::read(ptr::from_ref(storage).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Ok(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)),
            })
        }
        family => {
            Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected address family {family}")))
        }
    }
}

/// Corresponds to `getaddrinfo(3)` with `AF_UNSPEC` and `SOCK_STREAM`: every
/// address of `host`, in the order the resolver gives them.
pub fn getaddrinfo(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte"));
    let c_host = CString::new(host).map_err(|_| invalid("host name"))?;
    let c_port = CString::new(port.to_string()).map_err(|_| invalid("port"))?;
    // SAFETY: addrinfo is plain old data; all zeroes is a valid set of hints.
    let mut hints: libc::addrinfo = unsafe { mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_flags = libc::AI_NUMERICSERV;
    let mut list: *mut libc::addrinfo = ptr::null_mut();
    // SAFETY: the strings are NUL-terminated, `hints` is initialised, `list` is writable.
    let rc = unsafe { libc::getaddrinfo(c_host.as_ptr(), c_port.as_ptr(), &hints, &mut list) };
    if rc != 0 {
        return Err(gai_error(rc));
    }
    let mut addrs = Vec::new();
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getaddrinfo() returned, not yet freed.
        let ai = unsafe { &*cur };
        if !ai.ai_addr.is_null() && ai.ai_addrlen as usize <= mem::size_of::<libc::sockaddr_storage>() {
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
            let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
            // SAFETY: `ai_addr` points at `ai_addrlen` readable bytes, which fit in `storage`.
            unsafe {
                ptr::copy_nonoverlapping(
                    ai.ai_addr.cast::<u8>(),
                    ptr::addr_of_mut!(storage).cast(),
                    ai.ai_addrlen as usize,
                )
            };
            if let Ok(addr) = sockaddr_to_std(&storage, ai.ai_addrlen) {
                addrs.push(addr);
            }
        }
        cur = ai.ai_next;
    }
    // SAFETY: `list` came from a successful getaddrinfo() and is freed exactly once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(addrs)
}

/// A getaddrinfo() error code as an `io::Error` with the resolver's message.
fn gai_error(rc: libc::c_int) -> io::Error {
    if rc == libc::EAI_SYSTEM {
        return io::Error::last_os_error();
    }
    // SAFETY: gai_strerror() returns a pointer to a static, NUL-terminated string.
    let msg = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }.to_string_lossy().into_owned();
    io::Error::new(io::ErrorKind::NotFound, msg)
}

/// How a file under the served root is opened.
#[derive(Debug, Clone, Copy)]
pub enum OpenFor {
    /// To read a file or list a directory. `O_NONBLOCK`: opening a FIFO
    /// never waits for a writer, and whatever was opened is judged by
    /// `fstat` of the fd afterwards. `O_NOCTTY`: a terminal never becomes
    /// ours.
    Reading,
    /// Only to learn what a name leads to (`O_PATH`): nothing is read, and
    /// nothing a device does on open happens.
    Looking,
}

impl OpenFor {
    fn flags(self) -> libc::c_int {
        match self {
            OpenFor::Reading => libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
            OpenFor::Looking => libc::O_PATH | libc::O_CLOEXEC,
        }
    }
}

/// `path` as a C string; a path holding a NUL byte cannot name a file.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Corresponds to `open(2)` with `O_PATH | O_DIRECTORY`: the directory at
/// `path`, every symlink on the way followed, held only as a place to open
/// other files beneath.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: `c` is NUL-terminated; on success open() returns a new fd that we own.
    let fd = cvt_r(|| unsafe { libc::open(c.as_ptr(), flags) })?;
    // SAFETY: `fd` was just returned by open() and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Corresponds to `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`
/// (Linux 5.6): opens `path`, relative to `dir`, in one lookup that the
/// kernel refuses with `EXDEV` if any step of it (a `..`, an absolute
/// symlink, a relative one that climbs out) would leave `dir`. No check
/// and later open by name, so no rename can slip in between. `ENOSYS` or
/// `EPERM` (a seccomp filter) say the call itself is not to be had.
pub fn openat2_beneath(dir: BorrowedFd<'_>, path: &Path, how: OpenFor) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: open_how is plain old data; all zeroes is a valid value.
    let mut open_how: libc::open_how = unsafe { mem::zeroed() };
    open_how.flags = how.flags() as u64;
    open_how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    let size = mem::size_of::<libc::open_how>();
    let (dirfd, path) = (dir.as_raw_fd(), c.as_ptr());
    // SAFETY: `path` is NUL-terminated and `open_how` is `size` readable bytes, both alive for the call.
    let fd =
        cvt_r(|| unsafe { libc::syscall(libc::SYS_openat2, dirfd, path, ptr::addr_of!(open_how), size) })?;
    // SAFETY: `fd` was just returned by openat2() and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Corresponds to `openat(2)`: opens `path` relative to `dir`, following
/// every symlink wherever it leads. The caller checks where it landed.
pub fn openat(dir: BorrowedFd<'_>, path: &Path, how: OpenFor) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: `c` is NUL-terminated; on success openat() returns a new fd that we own.
    let fd = cvt_r(|| unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), how.flags()) })?;
    // SAFETY: `fd` was just returned by openat() and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An open directory stream: `fdopendir(3)`, `readdir(3)` and `closedir(3)`
/// over a directory fd, so that a listing is read from the directory that
/// was opened, not from whatever a path names by then.
pub struct Dir(ptr::NonNull<libc::DIR>);

/// One entry of a [`Dir`].
pub struct DirEntry {
    pub name: OsString,
    /// What `d_type` says: a directory or not; `None` for a symlink or a
    /// file system that does not say, which only an open can tell.
    pub is_dir: Option<bool>,
}

impl Dir {
    /// Corresponds to `fdopendir(3)`: the stream takes `fd` over, and
    /// `closedir(3)` closes it when the `Dir` drops.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Dir> {
        let raw = fd.as_raw_fd();
        // SAFETY: `raw` is an open fd; on success the stream owns it.
        let dir = unsafe { libc::fdopendir(raw) };
        let dir = ptr::NonNull::new(dir).ok_or_else(io::Error::last_os_error)?;
        // The stream owns the fd now, and closes it in closedir().
        mem::forget(fd);
        Ok(Dir(dir))
    }

    /// The stream's fd, to open entries relative to.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: dirfd() returns the stream's fd, open as long as the stream is.
        unsafe { BorrowedFd::borrow_raw(libc::dirfd(self.0.as_ptr())) }
    }

    /// Corresponds to `readdir(3)` until the end: every entry but `.` and `..`.
    pub fn entries(&mut self) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        loop {
            // SAFETY: errno is thread-local; readdir() sets it only on failure.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: the stream is open; the entry is read before the next call.
            let entry = unsafe { libc::readdir64(self.0.as_ptr()) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                return if e.raw_os_error() == Some(0) { Ok(out) } else { Err(e) };
            }
            // SAFETY: readdir() returned an entry whose d_name is NUL-terminated.
            let (name, d_type) = unsafe { (CStr::from_ptr((*entry).d_name.as_ptr()), (*entry).d_type) };
            let name = name.to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let is_dir = match d_type {
                libc::DT_DIR => Some(true),
                libc::DT_LNK | libc::DT_UNKNOWN => None,
                _ => Some(false),
            };
            out.push(DirEntry { name: OsString::from_vec(name.to_vec()), is_dir });
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: the stream is open and is closed exactly once, here.
        unsafe { libc::closedir(self.0.as_ptr()) };
    }
}

/// Corresponds to `pthread_create(3)` of a detached thread with a stack of
/// `stack` bytes, which runs `f(item)` and exits. glibc maps the stack and
/// its guard page (two memory maps, and none at all when it reuses a stack
/// from its cache of exited threads' stacks) before the thread exists, so
/// every way a start can fail for want of a resource is this call's error,
/// and `item` comes back with it. The thread maps nothing of its own.
/// (std's threads also map an alternate signal stack and its guard from
/// inside the new thread, and abort the process when that fails.)
///
/// A panic in `f` is caught at the thread's end: what `f` owned is dropped
/// as it unwinds, and the panic hook has already printed it. A stack
/// overflow, with no alternate signal stack to report it on, ends the
/// process with SIGSEGV, as it would with std's report.
pub fn spawn<T: Send + 'static>(stack: usize, item: T, f: fn(T)) -> Result<(), (T, io::Error)> {
    let start = Box::into_raw(Box::new((item, f)));
    let created = create(StackOf::Glibc(stack), thread_main::<T>, start.cast());
    created.map_err(|e| {
        // SAFETY: the thread was not created, so `start` is still ours alone.
        let (item, _) = *unsafe { Box::from_raw(start) };
        (item, e)
    })
}

/// What a thread made by [`spawn`] runs: takes its job back from the box
/// it was handed, runs it, and catches a panic rather than unwind into C.
extern "C" fn thread_main<T: Send + 'static>(start: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `spawn` passed a `Box<(T, fn(T))>` it gave up, to this thread only.
    let (item, f) = *unsafe { Box::from_raw(start.cast::<(T, fn(T))>()) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(item)));
    ptr::null_mut()
}

/// How a thread of [`create`] gets its stack, and how it ends.
enum StackOf {
    /// glibc maps a stack of this size (or reuses one of its cache); the
    /// thread is detached, and glibc frees the stack when it exits.
    Glibc(usize),
    /// This stack, `len` bytes from its base; the thread is joinable, and
    /// the stack is the caller's to free once it has been joined.
    Given(*mut libc::c_void, usize),
}

/// `pthread_create(3)` with the attributes [`spawn`] and [`spawn_on`] give.
fn create(
    stack: StackOf,
    main: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
) -> io::Result<()> {
    let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) };
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_attr_init() initialises the attributes it is given.
    check(unsafe { libc::pthread_attr_init(attr.as_mut_ptr()) })?;
    let attr = attr.as_mut_ptr();
    let configured = match stack {
        StackOf::Glibc(size) => {
            let size = size.max(libc::PTHREAD_STACK_MIN);
            let detached = libc::PTHREAD_CREATE_DETACHED;
            // SAFETY: `attr` was initialised above and is destroyed below, once.
            check(unsafe { libc::pthread_attr_setstacksize(attr, size) })
                // SAFETY: as above.
                .and_then(|()| check(unsafe { libc::pthread_attr_setdetachstate(attr, detached) }))
        }
        // SAFETY: as above; `base` and `len` are a mapped stack that only
        // the new thread will use, until it has been joined.
        StackOf::Given(base, len) => check(unsafe { libc::pthread_attr_setstack(attr, base, len) }),
    };
    let created = configured.and_then(|()| {
        let mut id: libc::pthread_t = 0;
        // SAFETY: `attr` is initialised; `main` may run `arg` on the new thread.
        check(unsafe { libc::pthread_create(&mut id, attr, main, arg) })
    });
    // SAFETY: initialised above, and not used after.
    unsafe { libc::pthread_attr_destroy(attr) };
    created
}

/// A thread's stack mapped here, for [`spawn_on`]: `len` bytes above a
/// guard page (two memory maps, as glibc's own stacks). Unmapped when
/// dropped; a stack a thread has run on comes back only through
/// [`Finished::join`], once that thread is gone.
pub struct Stack {
    /// The start of the mapping: the guard page.
    map: ptr::NonNull<libc::c_void>,
    guard: usize,
    len: usize,
}

// SAFETY: a `Stack` is memory that nothing refers to while no thread runs
// on it, and it is handed to one thread at a time.
unsafe impl Send for Stack {}

impl Stack {
    /// Corresponds to `mmap(2)` of `len` bytes (rounded up to whole pages)
    /// and a guard page below them, then `mprotect(2)` of the guard page.
    pub fn map(len: usize) -> io::Result<Stack> {
        let guard = page_size();
        let len = len.max(libc::PTHREAD_STACK_MIN).next_multiple_of(guard);
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK;
        // SAFETY: a new anonymous mapping, placed by the kernel: no memory in use is touched.
        let map = unsafe { libc::mmap(ptr::null_mut(), guard + len, prot, flags, -1, 0) };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = ptr::NonNull::new(map).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // From here on, dropping `stack` unmaps it.
        let stack = Stack { map, guard, len };
        // SAFETY: the first page of the mapping just made, which nothing uses yet.
        cvt(unsafe { libc::mprotect(map.as_ptr(), guard, libc::PROT_NONE) })?;
        Ok(stack)
    }

    /// The lowest address a thread may use: just above the guard page.
    fn base(&self) -> *mut libc::c_void {
        self.map.as_ptr().cast::<u8>().wrapping_add(self.guard).cast()
    }

    /// Gives the kernel back the pages of this stack below this call's
    /// frame and a page of margin, as glibc does for its own stacks when a
    /// thread ends: `madvise(MADV_DONTNEED)`, so that a stack waiting to be
    /// reused holds only the few pages at its top. Called by the thread that
    /// runs on this stack, once its job is done.
    #[inline(never)]
    fn discard_unused(&self) {
        let marker = 0u8;
        let here = ptr::addr_of!(marker) as usize;
        let low = self.base() as usize;
        let end = here.saturating_sub(self.guard) & !(self.guard - 1);
        if end > low {
            // SAFETY: `[low, end)` lies in this stack, a page and more below
            // this frame, the deepest but for madvise's own, which needs no
            // stack of its own: the stack grows down, so nothing there is in
            // use, and what is read there next reads as zeroes.
            unsafe { libc::madvise(low as *mut libc::c_void, end - low, libc::MADV_DONTNEED) };
        }
    }
}

#[cfg(test)]
impl Stack {
    /// Whether `addr` lies in this stack.
    pub fn holds(&self, addr: usize) -> bool {
        (self.base() as usize..self.base() as usize + self.len).contains(&addr)
    }

    /// How many of this stack's pages are in memory (`mincore(2)`).
    pub fn resident_pages(&self) -> usize {
        let mut pages = vec![0u8; self.len / self.guard];
        // SAFETY: `pages` has a byte for each page of the range, which is mapped.
        let rc = unsafe { libc::mincore(self.base(), self.len, pages.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        pages.iter().filter(|&&p| p & 1 == 1).count()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping is this stack's alone, and no thread runs on it
        // (a `Stack` a thread ran on exists again only after the join).
        unsafe { libc::munmap(self.map.as_ptr(), self.guard + self.len) };
    }
}

/// The size of a memory page.
fn page_size() -> usize {
    // SAFETY: sysconf() takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// A thread of [`spawn_on`] that has finished its job, and is exiting on
/// its stack, or has exited. [`Finished::join`] waits for its exit and
/// gives the stack back; dropping it does the same, and unmaps the stack.
pub struct Finished {
    thread: libc::pthread_t,
    stack: Option<Stack>,
}

impl Finished {
    /// Corresponds to `pthread_join(3)`: once the thread has exited (at
    /// once, as a rule: it was on its way out), its stack, free to reuse.
    /// `None` if the join failed, which only a thread that was never
    /// joinable could do: its stack is then left mapped, never reused.
    pub fn join(mut self) -> Option<Stack> {
        let stack = self.stack.take()?;
        // SAFETY: `thread` was created joinable by `spawn_on`, and is joined
        // only here, once: `stack` is taken, so the drop does not join again.
        let rc = unsafe { libc::pthread_join(self.thread, ptr::null_mut()) };
        if rc != 0 {
            mem::forget(stack);
            return None;
        }
        Some(stack)
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(stack) = self.stack.take() {
            drop(Finished { thread: self.thread, stack: Some(stack) }.join());
        }
    }
}

/// What [`spawn_on`] hands its thread.
struct OnStack<T> {
    item: T,
    f: fn(T),
    stack: Stack,
    done: fn(Finished),
}

/// Corresponds to `pthread_create(3)` of a joinable thread on `stack`,
/// which runs `f(item)`, gives back the stack pages below its frame, and
/// then calls `done` with its [`Finished`], the one way to have the stack
/// again. glibc maps nothing for a thread whose stack it is given, and
/// frees nothing at its exit: a stack reused this way costs no `mmap`,
/// `mprotect` or `munmap`, and the join takes no system call when the
/// thread has already gone. If the thread cannot be created, `item` and
/// the stack come back with the error. Panics and stack overflows end as
/// in [`spawn`].
pub fn spawn_on<T: Send + 'static>(
    stack: Stack,
    item: T,
    f: fn(T),
    done: fn(Finished),
) -> Result<(), (T, Stack, io::Error)> {
    let (base, len) = (stack.base(), stack.len);
    let start = Box::into_raw(Box::new(OnStack { item, f, stack, done }));
    let created = create(StackOf::Given(base, len), thread_on_stack::<T>, start.cast());
    created.map_err(|e| {
        // SAFETY: the thread was not created, so `start` is still ours alone.
        let OnStack { item, stack, .. } = *unsafe { Box::from_raw(start) };
        (item, stack, e)
    })
}

/// What a thread made by [`spawn_on`] runs.
extern "C" fn thread_on_stack<T: Send + 'static>(start: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `spawn_on` passed an `OnStack<T>` box it gave up, to this thread only.
    let OnStack { item, f, stack, done } = *unsafe { Box::from_raw(start.cast::<OnStack<T>>()) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(item)));
    stack.discard_unused();
    // SAFETY: pthread_self() takes no pointers.
    done(Finished { thread: unsafe { libc::pthread_self() }, stack: Some(stack) });
    ptr::null_mut()
}

/// Corresponds to `pread(2)`, retried on EINTR: up to `buf.len()` bytes of
/// `file` from `offset`. `Ok(0)` is the end of the file.
pub fn pread(file: &impl AsRawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset out of range"))?;
    let fd = file.as_raw_fd();
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = cvt_r(|| unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off) })?;
    Ok(n as usize)
}

/// Corresponds to `getrlimit(2)`: the soft and hard limits of `resource`
/// (`RLIM_INFINITY` as `u64::MAX`).
pub fn getrlimit(resource: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a writable rlimit.
    cvt(unsafe { libc::getrlimit(resource, &mut lim) })?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Corresponds to `setrlimit(RLIMIT_NOFILE)` with the soft limit raised to
/// the hard one, as Go's runtime does at start: the soft limit is kept low
/// (1024) for programs that use `select(2)`, which this server never does.
/// Returns the soft limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let (soft, hard) = getrlimit(libc::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(soft);
    }
    let lim = libc::rlimit { rlim_cur: hard, rlim_max: hard };
    // SAFETY: `lim` is an initialised rlimit.
    match cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }) {
        Ok(_) => Ok(hard),
        Err(_) => Ok(soft),
    }
}

/// Corresponds to `geteuid(2)`.
pub fn is_root() -> bool {
    // SAFETY: geteuid() takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The signals that ask the server to stop.
const SHUTDOWN_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

fn shutdown_sigset() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset() initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    for sig in SHUTDOWN_SIGNALS {
        // SAFETY: the set was initialised by sigemptyset() above.
        unsafe { libc::sigaddset(set.as_mut_ptr(), sig) };
    }
    // SAFETY: initialised by sigemptyset().
    unsafe { set.assume_init() }
}

/// Corresponds to `pthread_sigmask(SIG_BLOCK | SIG_UNBLOCK)` for SIGINT and
/// SIGTERM. Blocked in every thread, they are taken by [`sigtimedwait_shutdown`].
pub fn mask_shutdown_signals(block: bool) -> io::Result<()> {
    let set = shutdown_sigset();
    let how = if block { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
    // SAFETY: `set` is an initialised sigset; the old mask is not asked for.
    let rc = unsafe { libc::pthread_sigmask(how, &set, ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Corresponds to `sigtimedwait(2)` on SIGINT and SIGTERM: waits at most
/// `timeout` for one to be pending. `Ok(false)` if none came in time.
pub fn sigtimedwait_shutdown(timeout: Duration) -> io::Result<bool> {
    let set = shutdown_sigset();
    let ts =
        libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
    // SAFETY: `set` and `ts` are initialised; the siginfo is not asked for.
    match cvt(unsafe { libc::sigtimedwait(&set, ptr::null_mut(), &ts) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets SIGPIPE to be ignored, so a write to a closed peer fails with EPIPE
/// instead of killing the process.
pub fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: sigaction is plain old data; all zeroes is a valid, empty action.
    let mut action: libc::sigaction = unsafe { mem::zeroed() };
    action.sa_sigaction = libc::SIG_IGN;
    // SAFETY: `action` is initialised; the old action is not asked for.
    cvt(unsafe { libc::sigaction(libc::SIGPIPE, &action, ptr::null_mut()) }).map(drop)
}

/// A process id, for the tests that fork.
#[cfg(test)]
pub type Pid = libc::pid_t;

/// What `fork` returned, in the process that sees it.
pub enum Forked {
    Child,
    /// The child is reaped by `wait_any_child`, so its pid is not kept.
    Parent,
}

/// Corresponds to `fork(2)`. The child starts with one thread, the caller,
/// and a copy of the parent's whole memory, every lock included.
///
/// # Safety
///
/// A lock that another thread of the parent held at the moment of the fork
/// stays held in the child forever: its owner does not exist there. So the
/// child must not take any lock that another thread of the parent may hold:
/// not the server's own (the connection count, the thread cache), not std's
/// (stdout, stderr, the environment, the panic machinery's), not any other.
/// What the child may rely on is what glibc makes safe after `fork`:
/// `malloc`, and starting threads. It must leave through [`exit_child`],
/// never by returning or `exit()`, which would run the parent's destructors
/// and exit handlers.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the child's rules in this function's `# Safety`.
    match cvt(unsafe { libc::fork() })? {
        0 => Ok(Forked::Child),
        _ => Ok(Forked::Parent),
    }
}

/// In a forked child, closes a descriptor inherited from the parent that the
/// child will not use, such as the listening socket, behind the back of its
/// owner in the child's copy of memory.
///
/// # Safety
///
/// The caller must be a forked child that never uses `fd`'s owner again and
/// never drops it: it leaves through [`exit_child`], which runs no
/// destructors. Otherwise the owner would use or close a number that may
/// by then name another file.
pub unsafe fn close_inherited(fd: &impl AsRawFd) {
    // SAFETY: the caller keeps the conditions above: nothing in this process
    // uses or closes this fd again.
    unsafe { libc::close(fd.as_raw_fd()) };
}

/// Corresponds to `waitpid(-1, &status, 0)`: waits for any child process to
/// exit and reaps it. `Ok(false)` means there is no child to wait for (ECHILD).
pub fn wait_any_child() -> io::Result<bool> {
    let mut status = 0;
    // SAFETY: `status` is writable; waitpid() takes no other pointers.
    match cvt_r(|| unsafe { libc::waitpid(-1, &mut status, 0) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Corresponds to `waitpid(pid, &status, WNOHANG)`: reaps `pid` if it has
/// exited. `Ok(false)` while it still runs.
#[cfg(test)]
pub fn try_reap(pid: Pid) -> io::Result<bool> {
    let mut status = 0;
    // SAFETY: `status` is writable; waitpid() takes no other pointers.
    cvt_r(|| unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) }).map(|reaped| reaped == pid)
}

/// Corresponds to `kill(pid, SIGKILL)`.
#[cfg(test)]
pub fn kill(pid: Pid) {
    // SAFETY: kill() takes no pointers.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// The standard streams the log writes to.
#[derive(Debug, Clone, Copy)]
pub enum StdStream {
    Stdout = 1,
    Stderr = 2,
}

/// Writes all of `buf` to fd 1 or 2 ([`write_all`]). It takes no lock, so a
/// forked child may call it whatever the parent's threads were doing; and a
/// line of up to `PIPE_BUF` (4096) bytes reaches a pipe in one piece, never
/// interleaved with another writer's.
pub fn write_std(stream: StdStream, buf: &[u8]) -> io::Result<()> {
    write_all(stream as RawFd, buf)
}

/// Corresponds to `write(2)` on `fd` until all of `buf` is written, retried
/// on EINTR and looping over short writes.
fn write_all(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    all_of(buf, |rest| {
        // SAFETY: `rest` is valid for reads of `rest.len()` bytes; the caller keeps `fd` open.
        cvt_r(|| unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) }).map(|n| n as usize)
    })
}

/// Calls `once` on what is left of `buf` until all of it is taken, for
/// [`write_all`]'s writes to stdout and stderr, which no clock judges (a
/// write to a client is `progress::write_all`'s). A call that takes nothing
/// is an error, not a reason to spin.
fn all_of(mut buf: &[u8], mut once: impl FnMut(&[u8]) -> io::Result<usize>) -> io::Result<()> {
    while !buf.is_empty() {
        match once(buf)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// Corresponds to `malloc_trim(0)` (glibc): gives the free memory of every
/// malloc arena back to the kernel, the pages in the middle of an arena as
/// well as its top. Elsewhere, nothing to do.
pub fn malloc_trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim() takes no pointers, and takes malloc's own locks.
    unsafe {
        libc::malloc_trim(0)
    };
}

/// Corresponds to `prctl(PR_SET_PDEATHSIG, SIGTERM)`: a forked child is sent
/// SIGTERM when the parent exits, so no connection outlives the server.
pub fn terminate_with_parent() -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) }).map(drop)
}

/// Corresponds to `_exit(2)`: ends a forked child without running the
/// parent's destructors or flushing the parent's buffers a second time.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit() never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trips_v4_and_v6() {
        for addr in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:80"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let (storage, len) = sockaddr_from(&addr);
            assert_eq!(sockaddr_to_std(&storage, len).unwrap(), addr);
        }
    }

    #[test]
    fn v4_mapped_addresses_come_back_as_v4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:99".parse().unwrap();
        let (storage, len) = sockaddr_from(&mapped);
        assert_eq!(sockaddr_to_std(&storage, len).unwrap(), "10.1.2.3:99".parse().unwrap());
    }

    #[test]
    fn getaddrinfo_resolves_numeric_hosts_and_reports_failures() {
        assert_eq!(getaddrinfo("127.0.0.1", 80).unwrap(), vec!["127.0.0.1:80".parse().unwrap()]);
        assert_eq!(getaddrinfo("::1", 81).unwrap(), vec!["[::1]:81".parse().unwrap()]);
        let err = getaddrinfo("nonexistent.invalid", 80).unwrap_err();
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn timeval_rounds_tiny_timeouts_up() {
        let tv = timeval_from(Some(Duration::from_nanos(10)));
        assert_eq!((tv.tv_sec, tv.tv_usec), (0, 1));
        let tv = timeval_from(Some(Duration::from_millis(1500)));
        assert_eq!((tv.tv_sec, tv.tv_usec), (1, 500_000));
    }
}
