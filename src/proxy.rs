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
//! A direction whose thread has written, and then waits in `read()` for a
//! second, moves to a fresh thread, and the old thread leaves. A thread that
//! has written to a TCP socket keeps a 32 KiB page of the kernel's (its
//! `task_frag`) for as long as it lives, so an idle connection would
//! otherwise hold two such pages. The thread that runs
//! `handle_proxy_request` leaves this way only in threadserver: the basic
//! server's accept loop, a pool worker and a forked child's one thread must
//! stay with their connection until it ends.
//!
//! Timeouts use `SO_RCVTIMEO`/`SO_SNDTIMEO` and a shared last-activity time:
//! a read that times out checks whether the *connection* has been idle, so
//! traffic in either direction keeps both alive. Once one direction has
//! ended, its thread leaves, and the other direction's reads time out at
//! least every half-close period to see whether the grace is over.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Mode, Settings};
use crate::conns::{Connection, Slot};
use crate::response::{self, Status};
use crate::sys::{self, Socket};
use crate::{config, log, request, sync, threads};

/// Each direction blocks in read() on a buffer this size on its own stack,
/// left uninitialised: an idle connection holds no heap buffer, and only
/// the stack pages its reads have written.
const SMALL_BUF: usize = 4 * 1024;
/// A direction that has just moved to a fresh thread blocks in its first
/// read() on a buffer this small, so that the idle thread's stack stays
/// within the pages its start touched.
const FIRST_READ: usize = 256;
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

/// How long a direction whose thread has written may wait in `read()`
/// before it moves to a fresh thread (see the module's doc).
const MOVE_WHEN_IDLE: Duration = Duration::from_secs(1);

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
            if log::info_enabled() {
                let outcome = Outcome::BadGateway(e.to_string());
                log_end(conn.peer, (host, port, None), [0, 0], started, &outcome);
            }
            return;
        }
    };
    let relay = Arc::new(Relay::new(conn, upstream, (host, port, upstream_addr), started, settings));
    // upstream -> client on a thread of its own, from the thread cache.
    if threads::run((Arc::clone(&relay), Direction::UpstreamToClient), pump_elsewhere).is_err() {
        relay.abort(Outcome::NoThread);
        relay.direction_done();
    }
    // client -> upstream on this thread. Only threadserver's connection
    // thread may leave the relay before the connection ends.
    let may_leave = config::mode_is(Mode::Thread);
    if let Pumped::Done = pump(Arc::clone(&relay), Direction::ClientToUpstream, may_leave) {
        if !may_leave {
            relay.wait_until_both_done();
        }
    }
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
/// host and port, and the address that answered, if one did; `bytes` are
/// client -> upstream and upstream -> client.
fn log_end(
    peer: SocketAddr,
    upstream: (&str, u16, Option<SocketAddr>),
    bytes: [u64; 2],
    started: Instant,
    end: &Outcome,
) {
    let (host, port, addr) = upstream;
    let addr = addr.map(|a| format!(" ({a})")).unwrap_or_default();
    let [up, down] = bytes;
    log::info(format_args!(
        "proxy {peer} <-> {host}:{port}{addr}: {up} bytes client->upstream, {down} bytes upstream->client, \
         {:.3} s, {end}",
        started.elapsed().as_secs_f64()
    ));
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

/// The state the relay's threads share. Owning the sockets here is what
/// makes each fd close exactly once, after every thread is done with it; the
/// connection's slot is released then too.
struct Relay {
    client: Socket,
    upstream: Socket,
    peer: SocketAddr,
    /// The configured upstream, and the address that answered.
    upstream_name: (&'static str, u16, SocketAddr),
    _slot: Option<Slot>,
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
    /// The bytes each direction relayed, indexed by `Direction`; each thread
    /// adds its share before it leaves.
    bytes: [AtomicU64; 2],
}

impl Relay {
    fn new(
        conn: Connection,
        upstream: Socket,
        upstream_name: (&'static str, u16, SocketAddr),
        started: Instant,
        settings: &Settings,
    ) -> Relay {
        let Connection { sock: client, peer, slot } = conn;
        let first_look = [settings.idle_timeout, settings.half_close_timeout].into_iter().flatten().min();
        // A blocked write comes back this often, with what the kernel took
        // meanwhile: bytes that trickle out to a slow reader count as
        // activity long before the whole write is done.
        let write_check = first_look.map(|d| d / 4);
        for sock in [&client, &upstream] {
            let _ = sock.set_read_timeout(first_look);
            let _ = sock.set_write_timeout(write_check);
        }
        Relay {
            client,
            upstream,
            peer,
            upstream_name,
            _slot: slot,
            started,
            last_activity_ms: AtomicU64::new(0),
            idle_timeout: settings.idle_timeout,
            half_close_timeout: settings.half_close_timeout,
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

    /// How long the next read in `dir` may wait before the connection is
    /// looked at again: until the idle timeout, until the half-close timeout
    /// (counted once the other direction has ended, and looked at at least
    /// that often before), and, for a thread about to move, `MOVE_WHEN_IDLE`.
    /// `Err` once the connection has timed out, with how.
    fn next_read_timeout(&self, dir: Direction, move_soon: bool) -> Result<Duration, Outcome> {
        let idle = self.idle_for();
        let mut left = Duration::from_secs(3600);
        if let Some(limit) = self.idle_timeout {
            left = limit.checked_sub(idle).filter(|d| !d.is_zero()).ok_or(Outcome::IdleTimeout)?;
        }
        if let Some(grace) = self.half_close_timeout {
            let other = Direction::sent_by(dir.source().other());
            if self.passed_on[other as usize].load(Ordering::SeqCst) {
                left = left
                    .min(grace.checked_sub(idle).filter(|d| !d.is_zero()).ok_or(Outcome::HalfCloseTimeout)?);
            } else {
                left = left.min(grace);
            }
        }
        if move_soon {
            left = left.min(MOVE_WHEN_IDLE);
        }
        Ok(left)
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

    /// Marks one direction done; the second to be done logs how the
    /// connection ended. (A direction that ends cleanly leaves at once: the
    /// other one enforces the half-close timeout on its own reads.)
    fn direction_done(&self) {
        let mut finished = sync::lock(&self.finished);
        *finished += 1;
        if *finished == 2 && log::info_enabled() {
            // Written before anyone waiting is woken: a forked child exits
            // as soon as its connection is done.
            let bytes = [0, 1].map(|dir| self.bytes[dir].load(Ordering::Relaxed));
            let (host, port, addr) = self.upstream_name;
            log_end(self.peer, (host, port, Some(addr)), bytes, self.started, &self.outcome());
        }
        self.finished_cv.notify_all();
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
    TimedOut(Outcome),
}

/// A direction on a thread other than the connection's own: it may move.
fn pump_elsewhere((relay, dir): (Arc<Relay>, Direction)) {
    let _ = pump(relay, dir, true);
}

/// Whether a direction's loop ended, or moved to another thread.
enum Pumped {
    Done,
    Moved,
}

/// One read and the write of what it read, through a buffer of `N` bytes on
/// this call's own stack frame: the caller's frame stays small, and the
/// thread touches the buffer's pages only while it is in use. `Ok(0)` is
/// end of stream.
#[inline(never)]
fn relay_once_on_stack<const N: usize>(relay: &Relay, dir: Direction) -> Result<usize, Stop> {
    let (from, to) = relay.reader_and_writer(dir);
    let mut buf = [MaybeUninit::<u8>::uninit(); N];
    let data = from.read_uninit(&mut buf).map_err(Stop::ReadFailed)?;
    write_all(relay, dir, to, data)?;
    Ok(data.len())
}

/// The same, through a buffer on the heap.
fn relay_once(relay: &Relay, dir: Direction, buf: &mut [u8]) -> Result<usize, Stop> {
    let (from, to) = relay.reader_and_writer(dir);
    let n = from.read(buf).map_err(Stop::ReadFailed)?;
    write_all(relay, dir, to, &buf[..n])?;
    Ok(n)
}

/// Writes all of `data` to `to`. Every byte the kernel takes is activity,
/// however long the whole write takes. A write() that takes nothing for the
/// write-check period (`SO_SNDTIMEO`) comes back to see whether the
/// connection has timed out: a reader that stopped is idle.
fn write_all(relay: &Relay, dir: Direction, to: &Socket, mut data: &[u8]) -> Result<(), Stop> {
    if data.is_empty() {
        return Ok(());
    }
    relay.touch(); // for the bytes just read
    while !data.is_empty() {
        match to.write(data) {
            Ok(0) => return Err(Stop::WriteFailed(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                data = &data[n..];
                relay.touch();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                relay.next_read_timeout(dir, false).map_err(Stop::TimedOut)?;
            }
            Err(e) => return Err(Stop::WriteFailed(e)),
        }
    }
    Ok(())
}

/// Copies one direction until end of stream or an error, then passes the
/// end on (a half-close, or an abort), records the bytes copied, and marks
/// the direction done. With `may_move`, once this thread has written and
/// then waits `MOVE_WHEN_IDLE` for input, the direction moves to a fresh
/// thread and this one returns `Moved` (see the module's doc).
fn pump(relay: Arc<Relay>, dir: Direction, may_move: bool) -> Pumped {
    let (from, to) = relay.reader_and_writer(dir);
    let mut large: Vec<u8> = Vec::new();
    let mut copied = 0u64;
    let mut wrote = false;
    let stop = loop {
        let (step, capacity) = if !large.is_empty() {
            (relay_once(&relay, dir, &mut large), LARGE_BUF)
        } else if may_move && !wrote {
            (relay_once_on_stack::<FIRST_READ>(&relay, dir), FIRST_READ)
        } else {
            (relay_once_on_stack::<SMALL_BUF>(&relay, dir), SMALL_BUF)
        };
        match step {
            Ok(0) => break Stop::Eof,
            Ok(n) => {
                copied += n as u64;
                if n == capacity && capacity == SMALL_BUF {
                    large = vec![0u8; LARGE_BUF];
                } else if n < SMALL_BUF && !large.is_empty() {
                    large = Vec::new();
                }
                if !wrote && may_move {
                    let wait = relay.next_read_timeout(dir, true).unwrap_or(MOVE_WHEN_IDLE);
                    let _ = from.set_read_timeout(Some(wait));
                }
                wrote = true;
            }
            // SO_RCVTIMEO expired: time to move, or to check the connection's
            // timeouts (it may still be busy the other way).
            Err(Stop::ReadFailed(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if wrote && may_move {
                    relay.bytes[dir as usize].fetch_add(copied, Ordering::Relaxed);
                    let moved = threads::run_on_new_thread((Arc::clone(&relay), dir), pump_elsewhere);
                    if moved.is_ok() {
                        return Pumped::Moved;
                    }
                    copied = 0;
                }
                match relay.next_read_timeout(dir, false) {
                    Ok(wait) => {
                        let _ = from.set_read_timeout(Some(wait));
                    }
                    Err(timed_out) => break Stop::TimedOut(timed_out),
                }
            }
            Err(stop) => break stop,
        }
    };
    relay.bytes[dir as usize].fetch_add(copied, Ordering::Relaxed);
    let cause = match stop {
        Stop::Eof if !relay.is_aborted() => {
            relay.record_clean_close(dir);
            if to.shutdown(Shutdown::Write).is_ok() {
                relay.passed_on[dir as usize].store(true, Ordering::SeqCst);
            }
            relay.direction_done();
            return Pumped::Done;
        }
        // The other direction aborted the connection while this one ended.
        Stop::Eof => None,
        Stop::ReadFailed(e) => Some(dir.source().aborted(&e)),
        Stop::WriteFailed(e) => Some(dir.source().other().aborted(&e)),
        Stop::TimedOut(how) => Some(how),
    };
    if let Some(cause) = cause {
        relay.abort(cause);
    }
    relay.direction_done();
    Pumped::Done
}
