//! Proxy mode (`--proxy HOST[:PORT]`): `handle_proxy_request` joins each
//! client connection to a fresh upstream connection and relays bytes both
//! ways until the connection ends.
//!
//! Two threads relay one connection, one per direction, each a blocking
//! `read()`/`write()` loop. The thread that runs `handle_proxy_request`
//! copies client → upstream; a second thread copies upstream → client.
//!
//! How a connection ends:
//! - End of stream in one direction is a half-close: it is passed on with
//!   `shutdown(SHUT_WR)` and the other direction keeps flowing.
//! - An error in either direction (a reset, EPIPE, a timeout) ends both:
//!   `shutdown(SHUT_RDWR)` on both sockets wakes the other thread.
//! - Both sockets are owned by the shared [`Relay`] and are closed once,
//!   when the last thread lets go of it, after both loops have returned.
//!
//! Timeouts use `SO_RCVTIMEO`/`SO_SNDTIMEO` and a shared last-activity time:
//! a read that times out checks whether the *connection* has been idle, so
//! traffic in either direction keeps both alive. Once one direction has
//! ended, its thread watches the other for the half-close grace period.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::modes::Connection;
use crate::response::{self, Status};
use crate::sys::{self, Socket};
use crate::{config, log, request, threads};

/// Each direction blocks in read() on a buffer this size on its own stack,
/// left uninitialised: an idle connection holds no heap buffer, and only
/// the stack pages its reads have written.
const SMALL_BUF: usize = 4 * 1024;
/// A read that fills the small buffer means data is flowing in bulk: the
/// direction then reads into a heap buffer this size, until reads come back
/// smaller than `SMALL_BUF` again.
const LARGE_BUF: usize = 64 * 1024;
/// How long a client whose upstream is unreachable may take to send its
/// request head before it gets its 502.
const HEAD_BEFORE_502: Duration = Duration::from_secs(2);

/// How a relayed connection ended: the first thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    ClientClosed,
    UpstreamClosed,
    ClientError(String),
    UpstreamError(String),
    IdleTimeout,
    HalfCloseTimeout,
    BadGateway(String),
    NoThread,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            End::ClientClosed => f.write_str("client closed"),
            End::UpstreamClosed => f.write_str("upstream closed"),
            End::ClientError(e) => write!(f, "client error ({e})"),
            End::UpstreamError(e) => write!(f, "upstream error ({e})"),
            End::IdleTimeout => f.write_str("idle timeout"),
            End::HalfCloseTimeout => f.write_str("half-close timeout"),
            End::BadGateway(why) => write!(f, "502 ({why})"),
            End::NoThread => f.write_str("no thread for the second direction"),
        }
    }
}

/// Relays `conn` to the configured upstream until both directions end, or
/// answers 502 if no address of the upstream accepts a connection.
pub fn handle_proxy_request(conn: Connection) {
    let Some((host, port)) = config::proxy_upstream() else { return };
    let opts = config::opts();
    let started = Instant::now();
    let _ = conn.sock.set_nodelay(true);
    let (upstream, upstream_addr) = match connect_upstream(host, port, opts.connect_timeout) {
        Ok(connected) => connected,
        Err(e) => {
            bad_gateway(&conn.sock, host, port, &e);
            log_end(conn.peer, (host, port, None), 0, 0, started, &End::BadGateway(e.to_string()));
            return;
        }
    };
    let relay = Arc::new(Relay::new(conn.sock, upstream, opts.idle_timeout, opts.half_close_timeout));
    let (up, down, end) = relay_both_ways(relay);
    log_end(conn.peer, (host, port, Some(upstream_addr)), up, down, started, &end);
}

/// Resolves `host` and tries each of its addresses in order until one
/// connects. The error names the host and every address tried.
pub fn connect_upstream(host: &str, port: u16, timeout: Duration) -> io::Result<(Socket, SocketAddr)> {
    let addrs = sys::getaddrinfo(host, port)
        .map_err(|e| io::Error::new(e.kind(), format!("resolve {host}: {}", log::describe(&e))))?;
    let mut failures = Vec::new();
    let mut last_kind = io::ErrorKind::NotFound;
    for addr in addrs {
        match Socket::connect(&addr, timeout) {
            Ok(sock) => {
                let _ = sock.set_nodelay(true);
                return Ok((sock, addr));
            }
            Err(e) => {
                last_kind = e.kind();
                failures.push(format!("connect to {host}:{port} ({addr}): {}", log::describe(&e)));
            }
        }
    }
    if failures.is_empty() {
        failures.push(format!("resolve {host}: no addresses"));
    }
    Err(io::Error::new(last_kind, failures.join("; ")))
}

/// Reads and discards the client's request head (briefly), answers 502 Bad
/// Gateway with a page that says which upstream failed and why, and closes.
fn bad_gateway(client: &Socket, host: &str, port: u16, err: &io::Error) {
    let received = match request::read_head(client, HEAD_BEFORE_502) {
        Ok(head) => head.bytes,
        Err(bad) => bad.received,
    };
    let head_only = request::is_head_request(&received);
    let detail = format!("The upstream server {host}:{port} could not be reached: {err}.");
    let _ = response::send_error(client, Status::BadGateway, &detail, &[], head_only);
    response::lingering_close(client);
}

/// The line logged when a connection ends. `upstream` is the configured
/// host and port, and the address that answered, if one did.
fn log_end(
    peer: SocketAddr,
    upstream: (&str, u16, Option<SocketAddr>),
    up: u64,
    down: u64,
    started: Instant,
    end: &End,
) {
    let (host, port, addr) = upstream;
    let addr = addr.map(|a| format!(" ({a})")).unwrap_or_default();
    log::info(format_args!(
        "proxy {peer} <-> {host}:{port}{addr}: {up} bytes client->upstream, {down} bytes upstream->client, \
         {:.3} s, {end}",
        started.elapsed().as_secs_f64()
    ));
}

/// Runs both directions: the second on a thread of its own (from the thread
/// cache), the first on this one. Returns the bytes each way and how the
/// connection ended, once both directions are done.
fn relay_both_ways(relay: Arc<Relay>) -> (u64, u64, End) {
    let second = threads::run(Arc::clone(&relay), |relay| pump(&relay, Direction::UpstreamToClient));
    if second.is_err() {
        relay.abort(End::NoThread);
        return (0, 0, End::NoThread);
    }
    pump(&relay, Direction::ClientToUpstream);
    relay.wait_until_both_done();
    let bytes = |dir: Direction| relay.bytes[dir as usize].load(Ordering::Relaxed);
    (bytes(Direction::ClientToUpstream), bytes(Direction::UpstreamToClient), relay.how_ended())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToUpstream = 0,
    UpstreamToClient = 1,
}

impl Direction {
    /// The end of a connection whose first event was this direction's end of stream.
    fn closed(self) -> End {
        match self {
            Direction::ClientToUpstream => End::ClientClosed,
            Direction::UpstreamToClient => End::UpstreamClosed,
        }
    }

    /// The end of a connection whose first event was a failed read in this direction.
    fn reader_failed(self, e: &io::Error) -> End {
        match self {
            Direction::ClientToUpstream => End::ClientError(log::describe(e)),
            Direction::UpstreamToClient => End::UpstreamError(log::describe(e)),
        }
    }

    /// The end of a connection whose first event was a failed write in this direction.
    fn writer_failed(self, e: &io::Error) -> End {
        match self {
            Direction::ClientToUpstream => End::UpstreamError(log::describe(e)),
            Direction::UpstreamToClient => End::ClientError(log::describe(e)),
        }
    }
}

/// The state both relay threads share. Owning the sockets here is what makes
/// each fd close exactly once, after both threads are done with it.
struct Relay {
    client: Socket,
    upstream: Socket,
    started: Instant,
    /// Milliseconds after `started` of the last byte relayed either way.
    last_activity_ms: AtomicU64,
    idle_timeout: Option<Duration>,
    half_close_timeout: Option<Duration>,
    /// How the connection ended: the first clean close, unless an abort
    /// (an error or a timeout) came after it. Later events are consequences.
    ended: Mutex<Option<End>>,
    /// How many directions are done, and a signal when one is.
    finished: Mutex<u8>,
    finished_cv: Condvar,
    /// The bytes each direction relayed, indexed by `Direction`; each is
    /// stored before its direction counts as done.
    bytes: [AtomicU64; 2],
}

impl Relay {
    fn new(client: Socket, upstream: Socket, idle: Option<Duration>, half_close: Option<Duration>) -> Relay {
        for sock in [&client, &upstream] {
            let _ = sock.set_read_timeout(idle);
            let _ = sock.set_write_timeout(idle);
        }
        Relay {
            client,
            upstream,
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            idle_timeout: idle,
            half_close_timeout: half_close,
            ended: Mutex::new(None),
            finished: Mutex::new(0),
            finished_cv: Condvar::new(),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// The socket read from and the socket written to, in `dir`.
    fn ends(&self, dir: Direction) -> (&Socket, &Socket) {
        match dir {
            Direction::ClientToUpstream => (&self.client, &self.upstream),
            Direction::UpstreamToClient => (&self.upstream, &self.client),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_activity_ms.store(now, Ordering::Relaxed);
    }

    /// How long since the last byte went either way.
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// How much longer the connection may stay idle; `None` once it has been
    /// idle for the whole idle timeout.
    fn idle_left(&self) -> Option<Duration> {
        match self.idle_timeout {
            None => Some(Duration::from_secs(3600)),
            Some(limit) => limit.checked_sub(self.idle_for()).filter(|left| !left.is_zero()),
        }
    }

    /// Records a clean end of stream, unless the end is already known.
    fn end(&self, how: End) {
        self.ended.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(how);
    }

    /// How the connection ended, once both directions are done.
    fn how_ended(&self) -> End {
        self.ended.lock().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or(End::ClientClosed)
    }

    /// Ends the connection at once: `shutdown(SHUT_RDWR)` on both sockets
    /// wakes whichever thread is blocked on either of them. The cause
    /// replaces a clean close recorded before it, but not an earlier abort.
    fn abort(&self, how: End) {
        {
            let mut ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
            if matches!(*ended, None | Some(End::ClientClosed | End::UpstreamClosed)) {
                *ended = Some(how);
            }
        }
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }

    /// Marks one direction done. After a clean end of stream, the thread
    /// stays to watch the other direction: if the half-closed connection
    /// carries no byte for the grace period, it is aborted.
    fn direction_done(&self, watch_other: bool) {
        let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        *finished += 1;
        self.finished_cv.notify_all();
        let Some(grace) = self.half_close_timeout.filter(|_| watch_other) else { return };
        while *finished < 2 {
            let idle = self.idle_for();
            if idle >= grace {
                drop(finished);
                self.abort(End::HalfCloseTimeout);
                return;
            }
            finished = self
                .finished_cv
                .wait_timeout(finished, grace - idle)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Blocks until both directions are done.
    fn wait_until_both_done(&self) {
        let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        while *finished < 2 {
            finished = self.finished_cv.wait(finished).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Why one direction's loop stopped.
enum Stop {
    Eof,
    ReadFailed(io::Error),
    WriteFailed(io::Error),
    Idle,
}

/// Copies one direction until end of stream or an error, then passes the
/// end on, records the bytes copied, and marks the direction done.
fn pump(relay: &Relay, dir: Direction) {
    let (from, to) = relay.ends(dir);
    let mut small = [MaybeUninit::<u8>::uninit(); SMALL_BUF];
    let mut large: Vec<u8> = Vec::new();
    let mut copied = 0u64;
    let stop = loop {
        let capacity = if large.is_empty() { SMALL_BUF } else { LARGE_BUF };
        let read = if large.is_empty() {
            from.read_uninit(&mut small)
        } else {
            from.read(&mut large).map(|n| &large[..n])
        };
        match read {
            Ok([]) => break Stop::Eof,
            Ok(data) => {
                let n = data.len();
                if let Err(e) = to.write_all(data) {
                    break Stop::WriteFailed(e);
                }
                copied += n as u64;
                relay.touch();
                if n == capacity && large.is_empty() {
                    large = vec![0u8; LARGE_BUF];
                } else if n < SMALL_BUF && !large.is_empty() {
                    large = Vec::new();
                }
            }
            // SO_RCVTIMEO expired: the connection may still be busy the other way.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match relay.idle_left() {
                Some(left) => {
                    let _ = from.set_read_timeout(Some(left));
                }
                None => break Stop::Idle,
            },
            Err(e) => break Stop::ReadFailed(e),
        }
    };
    relay.bytes[dir as usize].store(copied, Ordering::Relaxed);
    match stop {
        Stop::Eof => {
            relay.end(dir.closed());
            let _ = to.shutdown(Shutdown::Write);
            relay.direction_done(true);
        }
        failed => {
            relay.abort(match failed {
                Stop::ReadFailed(e) => dir.reader_failed(&e),
                Stop::WriteFailed(e) if e.kind() == io::ErrorKind::WouldBlock => End::IdleTimeout,
                Stop::WriteFailed(e) => dir.writer_failed(&e),
                Stop::Idle | Stop::Eof => End::IdleTimeout,
            });
            relay.direction_done(false);
        }
    }
}
