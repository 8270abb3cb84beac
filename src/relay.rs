//! What makes Part 4's relay loop (`proxy::copy_direction`) production-grade.
//! The loop reads, writes all of it, and passes the end of stream on; each
//! piece here adds one thing to it, and says why.
//!
//! - **Shared state** ([`Relay`]): both sockets, owned here, so that each fd
//!   is closed exactly once, after both threads are done with it (closing an
//!   fd another thread is blocked on would not wake it, and its number could
//!   be reused by the next `accept`). How the connection ends (the outcome,
//!   whether it was aborted, which side got a clean end, how many directions
//!   are done) sits behind one lock with its condition variable; it changes
//!   only when a direction ends. The hot path touches only the last-activity
//!   time, an atomic.
//! - **Aborts are passed on as aborts** ([`Relay::abort`]). When one side
//!   resets, or a read or write on it fails, the other side is reset too
//!   ([`Socket::abort`]: RST at once, and the thread blocked on it wakes),
//!   never sent a clean end of stream, so a client that reads to end of
//!   stream cannot take a cut-short response for a whole one. The one side
//!   spared is one that has already received all the aborting side sent,
//!   and its clean end: it has lost nothing.
//! - **Timeouts** (`--idle-timeout`, `--half-close-timeout`), kept with
//!   `SO_RCVTIMEO`/`SO_SNDTIMEO` and the shared last-activity time: a read
//!   that times out asks whether the *connection* has been idle, so that a
//!   long one-way stream is never cut. A write counts as activity when it
//!   reaches the peer ([`Relay::write_all`], `progress::Delivery`): a
//!   blocked write comes back every sixteenth of the shortest timeout (at
//!   most a second), and counts only if the peer has acknowledged more
//!   since, so a slow reader is live, and one that stopped is idle however
//!   many bytes the kernel still takes. A timeout resets both sides.
//! - **The bulk buffer** ([`DirectionState`], its [`Tier`]). A direction
//!   reads into 4 KiB on its own stack, left uninitialised, so an idle
//!   connection holds no heap buffer and only the stack pages its reads
//!   have written. While reads keep filling it, it reads into 64 KiB on the
//!   heap instead, freed once reads come back small.
//! - **The move to a fresh thread**
//!   ([`DirectionState::move_to_fresh_thread`]). The kernel
//!   keeps a 32 KiB page (`task_frag`) for every thread that has written to
//!   a TCP socket, until the thread exits. So a direction that waits five
//!   seconds for input hands its loop to a new thread, and the old thread
//!   exits at once with its page. A move costs a thread's start and exit
//!   (about 50 µs of CPU here), so it waits until the connection looks
//!   idle for a while, not between the requests of a busy keep-alive
//!   client: at one second, a connection that made one request and idled
//!   three cost 1.4 times the C relay's CPU; at five, 1.1 times. The new
//!   thread's first read uses 256 bytes in a frame of its own, so that its
//!   stack stays within the pages its start touched. Only a direction whose thread may leave moves: the second
//!   direction always, the first only where the dispatcher says nothing
//!   waits for its thread (`Connection::may_leave`).

use std::io;
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::conns::{Connection, Slot};
use crate::progress::{self, Delivery, Unsent};
use crate::sys::Socket;
use crate::{log, sync, threads};

/// A direction reads into a buffer this size on its own stack.
const SMALL_BUF: usize = 4 * 1024;
/// A direction that has just moved to a fresh thread reads first into a
/// buffer this small, so that the idle thread's stack stays within the
/// pages its start touched.
const FIRST_READ: usize = 256;
/// A read that fills the small buffer means data is flowing in bulk: the
/// direction then reads into a heap buffer this size, until reads come back
/// smaller than `SMALL_BUF` again.
const LARGE_BUF: usize = 64 * 1024;
/// How long a direction that may move waits in `read()` before it moves to
/// a fresh thread (see the module's doc for why five seconds).
const MOVE_WHEN_IDLE: Duration = Duration::from_secs(5);
/// The longest a read waits before it looks at the connection's timeouts,
/// when neither timeout is set.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

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

/// The line of a connection whose upstream could not be reached.
pub fn log_unreachable(peer: SocketAddr, upstream: &UpstreamName, started: Instant, e: &io::Error) {
    if log::info_enabled() {
        log_end(peer, upstream, [0, 0], started, &Outcome::BadGateway(e.to_string()));
    }
}

/// The line logged when a connection ends. `bytes` are client -> upstream
/// and upstream -> client.
fn log_end(peer: SocketAddr, upstream: &UpstreamName, bytes: [u64; 2], started: Instant, end: &Outcome) {
    let UpstreamName { host, port, addr } = upstream;
    let addr = addr.map(|a| format!(" ({a})")).unwrap_or_default();
    let [up, down] = bytes;
    log::timed(format_args!(
        "proxy {peer} <-> {host}:{port}{addr}: {up} bytes client->upstream, {down} bytes upstream->client, \
         {:.3} s, {end}",
        started.elapsed().as_secs_f64()
    ));
}

/// One end of a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client = 0,
    Upstream = 1,
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
pub enum Direction {
    ClientToUpstream = 0,
    UpstreamToClient = 1,
}

impl Direction {
    /// The side this direction reads from.
    fn from(self) -> Side {
        match self {
            Direction::ClientToUpstream => Side::Client,
            Direction::UpstreamToClient => Side::Upstream,
        }
    }

    /// The side this direction writes to.
    fn to(self) -> Side {
        self.from().other()
    }

    /// The outcome of a connection whose first event was this direction's end of stream.
    fn closed(self) -> Outcome {
        match self {
            Direction::ClientToUpstream => Outcome::ClientClosed,
            Direction::UpstreamToClient => Outcome::UpstreamClosed,
        }
    }
}

/// Why a direction stopped, other than a clean end of stream.
pub enum Stop {
    ReadFailed(io::Error),
    WriteFailed(io::Error),
    TimedOut(Outcome),
}

impl Stop {
    /// The outcome of `dir` stopping for this reason.
    pub fn outcome(self, dir: Direction) -> Outcome {
        match self {
            Stop::ReadFailed(e) => dir.from().aborted(&e),
            Stop::WriteFailed(e) => dir.to().aborted(&e),
            Stop::TimedOut(how) => how,
        }
    }
}

/// What one call of [`DirectionState::read_then`] did.
pub enum Step {
    /// Read some bytes, and wrote them all.
    Copied,
    EndOfStream,
    /// Waited `MOVE_WHEN_IDLE` for input: time to move to a fresh thread.
    Idle,
}

/// The upstream as the log names it: the configured host and port, and the
/// address that answered, if one did.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamName {
    pub host: &'static str,
    pub port: u16,
    pub addr: Option<SocketAddr>,
}

/// How the connection stands at its end: everything that changes only when
/// a direction ends, behind one lock.
#[derive(Default)]
struct End {
    /// The first clean close, unless an abort came after it.
    outcome: Option<Outcome>,
    /// Set by the first abort; no end of stream counts as clean after it.
    aborted: bool,
    /// Per side: it has received everything the other side sent, and a
    /// clean end of stream (set as the FIN is sent, see
    /// [`Relay::pass_on_end_of_stream`]).
    got_clean_end: [bool; 2],
    /// How many directions are done.
    done: u8,
    /// Whether a thread waits for both directions to be done
    /// ([`Relay::wait_until_both_done`]): only then is the end signalled,
    /// since a signal with no one to hear it still costs a futex call.
    waiting: bool,
    /// The bytes each direction relayed, indexed by `Direction`.
    bytes: [u64; 2],
}

/// The state the relay's threads share. The connection's slot is released
/// when the last thread lets go of it, with the sockets.
pub struct Relay {
    client: Socket,
    upstream: Socket,
    peer: SocketAddr,
    upstream_name: UpstreamName,
    /// Whether each direction may move to a fresh thread, indexed by
    /// `Direction`: upstream -> client always, client -> upstream only where
    /// nothing waits for its thread (`Connection::may_leave`).
    may_move: [bool; 2],
    _slot: Option<Slot>,
    started: Instant,
    /// Milliseconds after `started` of the last byte relayed either way.
    last_activity_ms: AtomicU64,
    /// Whether each direction's writes reach their peer, indexed by `Direction`.
    delivery: [Delivery; 2],
    idle_timeout: Option<Duration>,
    half_close_timeout: Option<Duration>,
    end: Mutex<End>,
    end_changed: Condvar,
}

impl Relay {
    /// The relay of `conn` to `upstream`. Both sockets get the options of
    /// [`prepare_socket`]: the client's from the listener
    /// (`proxy::prepare_listener`), the upstream's here. Each socket's read
    /// timeout is armed by the direction that reads it
    /// (`DirectionState::arm_read_timeout`).
    pub fn new(
        conn: Connection,
        upstream: Socket,
        upstream_name: UpstreamName,
        started: Instant,
        settings: &Settings,
    ) -> Relay {
        let Connection { sock: client, peer, slot, may_leave } = conn;
        let _ = prepare_socket(&upstream, settings);
        Relay {
            client,
            upstream,
            peer,
            upstream_name,
            may_move: [may_leave, true],
            _slot: slot,
            started,
            last_activity_ms: AtomicU64::new(0),
            delivery: Default::default(),
            idle_timeout: settings.idle_timeout,
            half_close_timeout: settings.half_close_timeout,
            end: Mutex::new(End::default()),
            end_changed: Condvar::new(),
        }
    }

    /// The state `dir` starts with, wherever it runs first.
    pub fn direction(&self, dir: Direction) -> DirectionState {
        let may_move = self.may_move[dir as usize];
        DirectionState { dir, tier: Tier::Stack, bulk: Vec::new(), copied: 0, may_move, armed: false }
    }

    fn socket(&self, side: Side) -> &Socket {
        match side {
            Side::Client => &self.client,
            Side::Upstream => &self.upstream,
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

    /// How long `dir` may wait, in a read or a blocked write, before it
    /// looks at the connection again: until the idle timeout, and until the
    /// half-close timeout (counted once the other direction has ended, and
    /// looked at at least that often before). `Err` once the connection has
    /// timed out, with how.
    fn until_next_look(&self, dir: Direction) -> Result<Duration, Outcome> {
        let half_closed = || sync::lock(&self.end).got_clean_end[dir.from() as usize];
        let half_close = self.half_close_timeout.map(|grace| (grace, half_closed()));
        next_look(self.idle_for(), self.idle_timeout, half_close)
    }

    /// Writes all of `data`, which `dir` read, to the side `dir` writes to,
    /// by `progress::write_all` against the connection's timeouts
    /// ([`IdleClock`]). A write that the peer's acknowledgements show
    /// reaching it is activity, however long the whole write takes; the
    /// bytes the kernel takes from a blocked write are not. A blocked write
    /// comes back every write-check period (`SO_SNDTIMEO`) to see whether
    /// the connection has timed out: a reader that stopped is idle.
    pub fn write_all(&self, dir: Direction, data: &[u8]) -> Result<(), Stop> {
        let to = self.socket(dir.to());
        let delivery = &self.delivery[dir as usize];
        // The bytes just read are activity, unless this direction's writes
        // are blocked on a peer that has acknowledged nothing since: then
        // they were read only because the kernel took a few more bytes.
        if delivery.progressed(to, data.len(), data.len()) {
            self.touch();
        }
        progress::write_all(to, delivery, &mut IdleClock { relay: self, dir }, data).map_err(|unsent| {
            match unsent {
                Unsent::Failed(e) => Stop::WriteFailed(e),
                Unsent::Expired(how) => Stop::TimedOut(how),
            }
        })
    }

    /// Passes the end of stream `dir` read on to the other side, with
    /// `shutdown(SHUT_WR)`: a half-close. After an abort there is nothing
    /// to pass on.
    ///
    /// The side counts as having its clean end from just before the
    /// shutdown, so that the lock is not held across the call: the other
    /// direction usually ends a moment later, because of this very FIN,
    /// and would wait for it. An abort in between spares that side, which
    /// has all it was sent and gets its FIN. A shutdown that fails finds
    /// the connection already gone (it fails only on a socket no longer
    /// connected), and the side counts as not ended again.
    pub fn pass_on_end_of_stream(&self, dir: Direction) {
        let to = dir.to();
        {
            let mut end = sync::lock(&self.end);
            if end.aborted {
                return;
            }
            end.outcome.get_or_insert(dir.closed());
            end.got_clean_end[to as usize] = true;
        }
        if self.socket(to).shutdown(Shutdown::Write).is_err() {
            sync::lock(&self.end).got_clean_end[to as usize] = false;
        }
    }

    /// Ends the connection at once, because of `cause`. The first abort
    /// resets both sides, which also wakes any thread blocked on either
    /// socket, but spares the side that has received all the aborting side
    /// sent and a clean end of stream. Later aborts are its consequences.
    pub fn abort(&self, cause: Outcome) {
        let mut end = sync::lock(&self.end);
        if !end.outcome.as_ref().is_some_and(Outcome::is_abort) {
            end.outcome = Some(cause.clone());
        }
        if std::mem::replace(&mut end.aborted, true) {
            return;
        }
        let spared = cause.aborting_side().map(Side::other).filter(|&side| end.got_clean_end[side as usize]);
        for side in [Side::Client, Side::Upstream] {
            if Some(side) != spared {
                let _ = self.socket(side).abort();
            }
        }
    }

    /// Gives the connection up because `dir` could not have a thread:
    /// aborts it, and `dir` is done.
    pub fn abort_for_want_of_a_thread(&self, dir: Direction) {
        self.abort(Outcome::NoThread);
        self.direction_done(dir, 0);
    }

    /// Marks `dir` done, having relayed `copied` bytes. The second direction
    /// to be done logs how the connection ended, before anyone waiting is
    /// woken: a forked child exits as soon as its connection is done.
    pub fn direction_done(&self, dir: Direction, copied: u64) {
        let mut end = sync::lock(&self.end);
        end.bytes[dir as usize] += copied;
        end.done += 1;
        // Every way a direction ends records an outcome before it is done.
        if let (2, true, Some(outcome)) = (end.done, log::info_enabled(), &end.outcome) {
            log_end(self.peer, &self.upstream_name, end.bytes, self.started, outcome);
        }
        if end.done == 2 && end.waiting {
            self.end_changed.notify_all();
        }
    }

    /// Blocks until both directions are done.
    pub fn wait_until_both_done(&self) {
        let mut end = sync::lock(&self.end);
        end.waiting = true;
        while end.done < 2 {
            end = sync::wait(&self.end_changed, end);
        }
    }
}

/// The relay's clock for a write that may block (`progress::Clock`):
/// progress is activity on the connection, and a write that makes none
/// gives up once the connection has timed out, with how.
struct IdleClock<'a> {
    relay: &'a Relay,
    dir: Direction,
}

impl progress::Clock for IdleClock<'_> {
    type Expired = Outcome;

    fn progressed(&mut self) {
        self.relay.touch();
    }

    fn no_progress(&mut self) -> Result<(), Outcome> {
        self.relay.until_next_look(self.dir).map(drop)
    }
}

/// Sets what every relayed socket needs: `TCP_NODELAY`, since the relay
/// writes what it has read at once, and Nagle's algorithm would hold a
/// small write back for an ACK; and the write timeout, the period a blocked
/// write comes back after to report progress (`progress::write_check` of
/// the shortest timeout). On a listening socket, Linux passes both on to
/// every socket `accept()` returns.
pub fn prepare_socket(sock: &Socket, settings: &Settings) -> io::Result<()> {
    let first_look = [settings.idle_timeout, settings.half_close_timeout].into_iter().flatten().min();
    sock.set_nodelay(true)?;
    sock.set_write_timeout(first_look.map(progress::write_check))
}

/// The arithmetic of [`Relay::until_next_look`], for a connection idle
/// for `idle`: how long until it must be looked at again, or `Err` with the
/// timeout that has run out. `half_close` is the half-close timeout, and
/// whether the side the direction reads from has sent its end of stream
/// (the timeout then counts; before, it is only how often to look).
fn next_look(
    idle: Duration,
    idle_timeout: Option<Duration>,
    half_close: Option<(Duration, bool)>,
) -> Result<Duration, Outcome> {
    let left = |limit: Duration, how: Outcome| limit.checked_sub(idle).filter(|d| !d.is_zero()).ok_or(how);
    let mut wait = LONGEST_WAIT;
    if let Some(limit) = idle_timeout {
        wait = left(limit, Outcome::IdleTimeout)?;
    }
    if let Some((grace, half_closed)) = half_close {
        wait = wait.min(if half_closed { left(grace, Outcome::HalfCloseTimeout)? } else { grace });
    }
    Ok(wait)
}

/// Which buffer a direction reads into next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// `SMALL_BUF` on the stack: the usual.
    Stack,
    /// `LARGE_BUF` on the heap, while reads keep filling the small buffer.
    Bulk,
    /// `FIRST_READ` on the stack: on a fresh thread, nothing copied there yet.
    JustMoved,
}

impl Tier {
    /// The tier after a read of `n` bytes (not 0) in this one: to the bulk
    /// buffer when a read fills the small one, back to the stack once reads
    /// come back small; a fresh thread's first copy makes it an ordinary one.
    fn after_read(self, n: usize) -> Tier {
        match self {
            Tier::Stack if n == SMALL_BUF => Tier::Bulk,
            Tier::Bulk if n < SMALL_BUF => Tier::Stack,
            Tier::JustMoved => Tier::Stack,
            same => same,
        }
    }
}

/// How long a direction's next read may block: until it must look at the
/// connection (`until_next_look`), and, for a direction that may move and
/// is not on a fresh thread, at most until it moves (`MOVE_WHEN_IDLE`).
fn read_wait(until_next_look: Duration, moves_when_idle: bool) -> Duration {
    if moves_when_idle {
        until_next_look.min(MOVE_WHEN_IDLE)
    } else {
        until_next_look
    }
}

/// One direction's state: which buffer it reads into, and what it has
/// copied. It goes with the direction when the direction moves.
pub struct DirectionState {
    pub dir: Direction,
    tier: Tier,
    /// `LARGE_BUF` bytes while the tier is `Bulk`; else empty.
    bulk: Vec<u8>,
    copied: u64,
    may_move: bool,
    /// Whether this direction has set its socket's read timeout since it
    /// started on the thread it runs on (a move starts it anew).
    armed: bool,
}

impl DirectionState {
    /// The bytes this direction has copied.
    pub fn copied(&self) -> u64 {
        self.copied
    }

    /// Goes to `tier`, with the heap buffer it needs: made on entering
    /// `Bulk`, freed on leaving it. Out of memory, the direction stays on
    /// its stack buffer: slower, never an abort.
    fn enter(&mut self, tier: Tier) {
        match tier {
            Tier::Bulk if self.bulk.is_empty() => {
                if self.bulk.try_reserve_exact(LARGE_BUF).is_err() {
                    self.tier = Tier::Stack;
                    return;
                }
                self.bulk.resize(LARGE_BUF, 0);
            }
            Tier::Bulk => {}
            _ => self.bulk = Vec::new(),
        }
        self.tier = tier;
    }

    /// Whether this direction's idle wait ends in a move to a fresh thread.
    fn moves_when_idle(&self) -> bool {
        self.may_move && self.tier != Tier::JustMoved
    }

    /// Sets the read timeout of the socket this direction reads: the one
    /// place it is set. Called when the direction starts on a thread, when
    /// a read's wait ended with nothing read, and after a fresh thread's
    /// first copy. `Err` once the connection has timed out.
    fn arm_read_timeout(&mut self, relay: &Relay) -> Result<(), Stop> {
        let until_next_look = relay.until_next_look(self.dir).map_err(Stop::TimedOut)?;
        let from = relay.socket(self.dir.from());
        let _ = from.set_read_timeout(Some(read_wait(until_next_look, self.moves_when_idle())));
        self.armed = true;
        Ok(())
    }

    /// One `read()` from the side this direction reads, into the buffer of
    /// its tier, blocking; then `write` of all it read (`Relay::write_all`,
    /// in Part 4's loop). While it waits, it keeps the connection's
    /// timeouts; a direction that may move and has waited `MOVE_WHEN_IDLE`
    /// returns `Step::Idle`.
    pub fn read_then(
        &mut self,
        relay: &Relay,
        mut write: impl FnMut(&[u8]) -> Result<(), Stop>,
    ) -> Result<Step, Stop> {
        if !self.armed {
            self.arm_read_timeout(relay)?;
        }
        let from = relay.socket(self.dir.from());
        loop {
            let result = match self.tier {
                Tier::Stack => read_on_stack_then::<SMALL_BUF>(from, &mut write),
                Tier::Bulk => read_then(from, &mut self.bulk, &mut write),
                Tier::JustMoved => read_on_stack_then::<FIRST_READ>(from, &mut write),
            };
            match result {
                Ok(0) => return Ok(Step::EndOfStream),
                Ok(n) => {
                    self.copied += n as u64;
                    let was = self.tier;
                    self.enter(was.after_read(n));
                    if was == Tier::JustMoved {
                        // Written to: from here on, wait to move again.
                        self.arm_read_timeout(relay)?;
                    }
                    return Ok(Step::Copied);
                }
                Err(Stop::ReadFailed(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.moves_when_idle() {
                        return Ok(Step::Idle);
                    }
                    self.arm_read_timeout(relay)?;
                }
                Err(stop) => return Err(stop),
            }
        }
    }

    /// Moves this direction's loop to a new thread that runs `copy` on it;
    /// the caller's thread then leaves the relay. The new thread has written
    /// nothing yet, so it waits for the connection's timeouts, not to move
    /// again, until it has. If no thread can be made, `Err` gives the state
    /// back to carry on where it is.
    pub fn move_to_fresh_thread(
        mut self,
        relay: &Arc<Relay>,
        copy: fn((Arc<Relay>, DirectionState)),
    ) -> Result<(), DirectionState> {
        self.enter(Tier::JustMoved);
        self.armed = false;
        threads::run_on_new_thread((Arc::clone(relay), self), copy).map_err(|((_, state), _)| state)?;
        // This thread moved on to leave: it exits, not waits for more jobs.
        threads::leave_after_this_job();
        Ok(())
    }
}

/// One read, through a buffer of `N` bytes on this call's own stack frame,
/// and the write of what it read: the caller's frame stays small, and the
/// thread touches the buffer's pages only while it is in use. `Ok(0)` is
/// end of stream.
#[inline(never)]
fn read_on_stack_then<const N: usize>(
    from: &Socket,
    write: &mut impl FnMut(&[u8]) -> Result<(), Stop>,
) -> Result<usize, Stop> {
    let mut buf = [MaybeUninit::<u8>::uninit(); N];
    let data = from.read_uninit(&mut buf).map_err(Stop::ReadFailed)?;
    if !data.is_empty() {
        write(data)?;
    }
    Ok(data.len())
}

/// The same, through a buffer on the heap.
fn read_then(
    from: &Socket,
    buf: &mut [u8],
    write: &mut impl FnMut(&[u8]) -> Result<(), Stop>,
) -> Result<usize, Stop> {
    let n = from.read(buf).map_err(Stop::ReadFailed)?;
    if n > 0 {
        write(&buf[..n])?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// Two ends of one TCP connection over loopback: the server's, and the
    /// far one, a peer's.
    fn connection() -> (Socket, Socket) {
        let listener = Socket::listen(Some(IpAddr::from([127, 0, 0, 1])), 0, 1).unwrap();
        let far = Socket::connect(&listener.local_addr().unwrap(), secs(5)).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (ours, far)
    }

    /// A relay between two real connections, and their far ends: the
    /// client and the upstream as they see it.
    fn relayed() -> (Relay, Socket, Socket) {
        let ((client, client_far), (upstream, upstream_far)) = (connection(), connection());
        let conn =
            Connection { sock: client, peer: "127.0.0.1:1".parse().unwrap(), slot: None, may_leave: true };
        let name = UpstreamName { host: "upstream", port: 1, addr: None };
        (Relay::new(conn, upstream, name, Instant::now(), &Settings::default()), client_far, upstream_far)
    }

    /// What a peer's next read gets: `Ok(0)` is a clean end of stream.
    fn next_read(far: &Socket) -> io::Result<usize> {
        far.set_read_timeout(Some(secs(5))).unwrap();
        far.read(&mut [0u8; 16])
    }

    #[test]
    fn an_abort_spares_the_side_that_had_everything_and_its_clean_end() {
        let (relay, client, upstream) = relayed();
        // The upstream ends its stream, passed on to the client; then it resets.
        relay.pass_on_end_of_stream(Direction::UpstreamToClient);
        relay.abort(Outcome::UpstreamAborted("reset".into()));
        assert_eq!(next_read(&client).unwrap(), 0, "the client had all and a clean end: spared");
        assert_eq!(client.write(b"more").unwrap(), 4, "the spared client's side is still open");
        assert_eq!(next_read(&upstream).unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn an_abort_resets_every_side_that_had_no_clean_end() {
        // The client's end went to the upstream; then the upstream fails:
        // the client, which had no end of stream, is reset, never closed.
        let (relay, client, _upstream) = relayed();
        relay.pass_on_end_of_stream(Direction::ClientToUpstream);
        relay.abort(Outcome::UpstreamAborted("reset".into()));
        assert_eq!(next_read(&client).unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        // A timeout is no side's failure: nobody is spared. The client that
        // had the upstream's end reads it; what it still sends meets the
        // reset (a half-closed connection that was spared would take it).
        let (relay, client, upstream) = relayed();
        relay.pass_on_end_of_stream(Direction::UpstreamToClient);
        relay.abort(Outcome::IdleTimeout);
        assert_eq!(next_read(&client).unwrap(), 0);
        assert!(client.write(b"more").is_err(), "the client was spared a timeout's reset");
        assert_eq!(next_read(&upstream).unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    }

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_read_that_fills_the_stack_buffer_moves_to_the_bulk_buffer_and_back() {
        assert_eq!(Tier::Stack.after_read(SMALL_BUF), Tier::Bulk);
        assert_eq!(Tier::Stack.after_read(SMALL_BUF - 1), Tier::Stack);
        assert_eq!(Tier::Stack.after_read(1), Tier::Stack);
        assert_eq!(Tier::Bulk.after_read(LARGE_BUF), Tier::Bulk);
        assert_eq!(Tier::Bulk.after_read(SMALL_BUF), Tier::Bulk);
        assert_eq!(Tier::Bulk.after_read(SMALL_BUF - 1), Tier::Stack);
    }

    #[test]
    fn a_fresh_threads_first_copy_makes_it_an_ordinary_one() {
        assert_eq!(Tier::JustMoved.after_read(FIRST_READ), Tier::Stack);
        assert_eq!(Tier::JustMoved.after_read(1), Tier::Stack);
    }

    #[test]
    fn a_direction_that_may_move_waits_at_most_until_it_moves() {
        assert_eq!(read_wait(secs(300), true), MOVE_WHEN_IDLE);
        assert_eq!(read_wait(Duration::from_millis(200), true), Duration::from_millis(200));
        assert_eq!(read_wait(secs(300), false), secs(300));
    }

    #[test]
    fn with_no_timeouts_a_direction_looks_only_after_the_longest_wait() {
        assert_eq!(next_look(secs(10_000), None, None), Ok(LONGEST_WAIT));
    }

    #[test]
    fn the_idle_timeout_counts_from_the_last_byte_either_way() {
        assert_eq!(next_look(secs(0), Some(secs(300)), None), Ok(secs(300)));
        assert_eq!(next_look(secs(299), Some(secs(300)), None), Ok(secs(1)));
        assert_eq!(next_look(secs(300), Some(secs(300)), None), Err(Outcome::IdleTimeout));
        assert_eq!(next_look(secs(301), Some(secs(300)), None), Err(Outcome::IdleTimeout));
    }

    #[test]
    fn the_half_close_timeout_counts_only_once_the_reader_has_ended() {
        // Before: it is how often to look, whatever the idle time.
        assert_eq!(next_look(secs(40), Some(secs(300)), Some((secs(30), false))), Ok(secs(30)));
        // After: what is left of it.
        assert_eq!(next_look(secs(20), Some(secs(300)), Some((secs(30), true))), Ok(secs(10)));
        assert_eq!(
            next_look(secs(30), Some(secs(300)), Some((secs(30), true))),
            Err(Outcome::HalfCloseTimeout)
        );
        // The idle timeout, when it runs out first, is the one named.
        assert_eq!(next_look(secs(300), Some(secs(300)), Some((secs(30), true))), Err(Outcome::IdleTimeout));
        // Idle timeout off (0), half-close on.
        assert_eq!(next_look(secs(5), None, Some((secs(30), true))), Ok(secs(25)));
    }
}
