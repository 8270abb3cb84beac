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
//! - An abort is passed on as an abort, never as an end of stream. When one
//!   side resets the connection, or a read or write on it fails, the other
//!   side is reset too ([`Socket::abort`]: the kernel sends RST at once and
//!   wakes the thread blocked on it). So a client that reads to end of
//!   stream can never take a cut-short response for a whole one. The one
//!   exception: if everything the aborting side sent was already passed on
//!   and ended cleanly, the other side has lost nothing and is closed
//!   normally.
//! - A timeout (idle, or half-closed and idle) resets both sides: the relay
//!   gives up on streams it cannot finish.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::conns::Connection;
use crate::response::{self, Status};
use crate::sys::{self, Socket};
use crate::{config, log, request, sync, threads};

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
pub enum Outcome {
    ClientClosed,
    UpstreamClosed,
    /// The client reset the connection, or a read or write on it failed.
    ClientAborted(String),
    /// The upstream reset the connection, or a read or write on it failed.
    UpstreamAborted(String),
    IdleTimeout,
    HalfCloseTimeout,
    BadGateway(String),
    NoThread,
}

impl Outcome {
    fn is_abort(&self) -> bool {
        !matches!(self, Outcome::ClientClosed | Outcome::UpstreamClosed)
    }

    /// The side whose failure ended the connection, if it was one side's.
    fn aborting_side(&self) -> Option<Side> {
        match self {
            Outcome::ClientAborted(_) => Some(Side::Client),
            Outcome::UpstreamAborted(_) => Some(Side::Upstream),
            _ => None,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Outcome::ClientClosed => f.write_str("client closed"),
            Outcome::UpstreamClosed => f.write_str("upstream closed"),
            Outcome::ClientAborted(e) => write!(f, "client aborted ({e})"),
            Outcome::UpstreamAborted(e) => write!(f, "upstream aborted ({e})"),
            Outcome::IdleTimeout => f.write_str("idle timeout"),
            Outcome::HalfCloseTimeout => f.write_str("half-close timeout"),
            Outcome::BadGateway(why) => write!(f, "502 ({why})"),
            Outcome::NoThread => f.write_str("no thread for the second direction"),
        }
    }
}

/// Relays `conn` to the configured upstream until both directions end, or
/// answers 502 if no address of the upstream accepts a connection.
pub fn handle_proxy_request(conn: Connection) {
    let Some((host, port)) = config::proxy_upstream() else { return };
    let settings = config::settings();
    let started = Instant::now();
    let _ = conn.sock.set_nodelay(true);
    let (upstream, upstream_addr) = match connect_upstream(host, port, settings.connect_timeout) {
        Ok(connected) => connected,
        Err(e) => {
            bad_gateway(&conn.sock, host, port, &e);
            log_end(conn.peer, (host, port, None), 0, 0, started, &Outcome::BadGateway(e.to_string()));
            return;
        }
    };
    let relay = Arc::new(Relay::new(conn.sock, upstream, settings.idle_timeout, settings.half_close_timeout));
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
    end: &Outcome,
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
fn relay_both_ways(relay: Arc<Relay>) -> (u64, u64, Outcome) {
    let second = threads::run(Arc::clone(&relay), |relay| pump(&relay, Direction::UpstreamToClient));
    if second.is_err() {
        relay.abort(Outcome::NoThread);
        return (0, 0, Outcome::NoThread);
    }
    pump(&relay, Direction::ClientToUpstream);
    relay.wait_until_both_done();
    let bytes = |dir: Direction| relay.bytes[dir as usize].load(Ordering::Relaxed);
    (bytes(Direction::ClientToUpstream), bytes(Direction::UpstreamToClient), relay.outcome())
}

/// One end of a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }

    /// The outcome of a connection whose first event was a failed read or
    /// write on this side.
    fn aborted(self, e: &io::Error) -> Outcome {
        match self {
            Side::Client => Outcome::ClientAborted(log::describe(e)),
            Side::Upstream => Outcome::UpstreamAborted(log::describe(e)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToUpstream = 0,
    UpstreamToClient = 1,
}

impl Direction {
    /// The direction that carries what `side` sends.
    fn sent_by(side: Side) -> Direction {
        match side {
            Side::Client => Direction::ClientToUpstream,
            Side::Upstream => Direction::UpstreamToClient,
        }
    }

    /// The side this direction reads from.
    fn source(self) -> Side {
        match self {
            Direction::ClientToUpstream => Side::Client,
            Direction::UpstreamToClient => Side::Upstream,
        }
    }

    /// The outcome of a connection whose first event was this direction's end of stream.
    fn closed(self) -> Outcome {
        match self.source() {
            Side::Client => Outcome::ClientClosed,
            Side::Upstream => Outcome::UpstreamClosed,
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
    /// How the connection ended: the first clean close, unless an abort came
    /// after it. Later events are consequences.
    outcome: Mutex<Option<Outcome>>,
    /// Set by the first abort; no end of stream counts as clean after it.
    aborted: AtomicBool,
    /// Per direction: its end of stream was passed on, so the side it writes
    /// to has received everything the other side sent, and a clean end.
    passed_on: [AtomicBool; 2],
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
            outcome: Mutex::new(None),
            aborted: AtomicBool::new(false),
            passed_on: [AtomicBool::new(false), AtomicBool::new(false)],
            finished: Mutex::new(0),
            finished_cv: Condvar::new(),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn socket(&self, side: Side) -> &Socket {
        match side {
            Side::Client => &self.client,
            Side::Upstream => &self.upstream,
        }
    }

    /// The socket `dir` reads from and the socket it writes to.
    fn reader_and_writer(&self, dir: Direction) -> (&Socket, &Socket) {
        (self.socket(dir.source()), self.socket(dir.source().other()))
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

    /// Records the clean end of stream of `dir`, unless the outcome is known already.
    fn record_clean_close(&self, dir: Direction) {
        sync::lock(&self.outcome).get_or_insert(dir.closed());
    }

    /// How the connection ended, once both directions are done.
    fn outcome(&self) -> Outcome {
        sync::lock(&self.outcome).clone().unwrap_or(Outcome::ClientClosed)
    }

    /// Ends the connection at once, because of `cause`. The first abort
    /// resets both sides ([`Socket::abort`]), which also wakes any thread
    /// blocked on either socket. It spares the side that has received all
    /// the aborting side sent and a clean end of stream: that side has lost
    /// nothing, and is closed normally. Later aborts are its consequences.
    fn abort(&self, cause: Outcome) {
        {
            let mut outcome = sync::lock(&self.outcome);
            if !outcome.as_ref().is_some_and(Outcome::is_abort) {
                *outcome = Some(cause.clone());
            }
        }
        if self.aborted.swap(true, Ordering::SeqCst) {
            return;
        }
        let spared = cause
            .aborting_side()
            .filter(|&side| self.passed_on[Direction::sent_by(side) as usize].load(Ordering::SeqCst))
            .map(Side::other);
        for side in [Side::Client, Side::Upstream] {
            if Some(side) != spared {
                let _ = self.socket(side).abort();
            }
        }
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Marks one direction done. After a clean end of stream, the thread
    /// stays to watch the other direction: if the half-closed connection
    /// carries no byte for the grace period, it is aborted.
    fn direction_done(&self, watch_other: bool) {
        let mut finished = sync::lock(&self.finished);
        *finished += 1;
        self.finished_cv.notify_all();
        let Some(grace) = self.half_close_timeout.filter(|_| watch_other) else { return };
        while *finished < 2 {
            let idle = self.idle_for();
            if idle >= grace {
                drop(finished);
                self.abort(Outcome::HalfCloseTimeout);
                return;
            }
            finished = sync::wait_timeout(&self.finished_cv, finished, grace - idle).0;
        }
    }

    /// Blocks until both directions are done.
    fn wait_until_both_done(&self) {
        let mut finished = sync::lock(&self.finished);
        while *finished < 2 {
            finished = sync::wait(&self.finished_cv, finished);
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
/// end on (a half-close, or an abort), records the bytes copied, and marks
/// the direction done.
fn pump(relay: &Relay, dir: Direction) {
    let (from, to) = relay.reader_and_writer(dir);
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
    let cause = match stop {
        Stop::Eof if !relay.is_aborted() => {
            relay.record_clean_close(dir);
            if to.shutdown(Shutdown::Write).is_ok() {
                relay.passed_on[dir as usize].store(true, Ordering::SeqCst);
            }
            relay.direction_done(true);
            return;
        }
        // The other direction aborted the connection while this one ended.
        Stop::Eof => None,
        Stop::ReadFailed(e) => Some(dir.source().aborted(&e)),
        Stop::WriteFailed(e) if e.kind() == io::ErrorKind::WouldBlock => Some(Outcome::IdleTimeout),
        Stop::WriteFailed(e) => Some(dir.source().other().aborted(&e)),
        Stop::Idle => Some(Outcome::IdleTimeout),
    };
    if let Some(cause) = cause {
        relay.abort(cause);
    }
    relay.direction_done(false);
}
