//! What counts as progress on a write to a peer, and files mode's send
//! timeout kept by that measure and the wall clock.
//!
//! A blocking write to a client that has stopped reading does not simply
//! stop. The kernel keeps taking small amounts for a long time (each window
//! probe's answer lets the send buffer grow a little), and a `sendfile(2)`
//! waits anew for every piece it moves. Measured here: a client with a
//! 4 KiB window that never reads kept one `sendfile` busy for 9.4 s under a
//! 3 s `SO_SNDTIMEO`, and taking 64 KiB at a time, 6 s. So the bytes the
//! kernel takes are not the measure, and `SO_SNDTIMEO` alone is not the clock.
//!
//! - **The measure** ([`Delivery`]): what the peer has acknowledged
//!   (`TCP_INFO`'s `tcpi_bytes_acked`), which moves only when the peer reads
//!   and opens its window. A write that took everything it was given
//!   without having been blocked is progress too: there was room. Once a
//!   write has been blocked, only acknowledgements count, until one moves.
//!   The acknowledgement count is read only then: a client that keeps up
//!   costs no extra system call.
//! - **The one loop** ([`moving`], and [`write_all`] over it): a write
//!   that may block, judged by that measure against a [`Clock`] the caller
//!   supplies. Files mode's send timeout and the relay's idle timeouts are
//!   two clocks over this one loop.
//! - **Files mode's clock** ([`Sender`]): `SO_SNDTIMEO` is a sixteenth of the send
//!   timeout (at most a second), so a blocked write comes back that often to be
//!   judged; the time of the last progress is kept here, outside the
//!   kernel. For a large file, `TCP_NOTSENT_LOWAT` also stops a blocked
//!   `sendfile` from taking more once the client's window is full. A client
//!   that stops reading is dropped within the timeout and a quarter of it
//!   (measured at 3 s: 3.3 to 3.5 s after its request), whatever the kernel
//!   does meanwhile. A slow but steady reader's acknowledgements keep it
//!   going.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{Armed, Socket};

/// How often a blocked write comes back to be judged: the `SO_SNDTIMEO`
/// that goes with a timeout, a sixteenth of it and at most a second. Short
/// enough that the kernel's small takes after a client stops (each one ends
/// a wait and starts another) rarely come within it of each other: with a
/// sixteenth alone, a 60 s send timeout dropped a stalled client after 69 s.
pub fn write_check(timeout: Duration) -> Duration {
    (timeout / 16).min(Duration::from_secs(1))
}

/// The `TCP_NOTSENT_LOWAT` of a file body sent with `sendfile`: at most
/// this much of it waits unsent in the kernel. A blocked `sendfile` then
/// stops taking bytes once the client's window is full, instead of for as
/// long as the send buffer grows (0.6 s here after a client stopped, under
/// a 0.19 s `SO_SNDTIMEO`; 0.4 s with this). Measured, with a client that
/// stops reading under a 3 s send timeout, and a 256 MiB download by curl
/// beside nginx: 1 MiB dropped the client after 3.47 s but cost the
/// download 6-14% (the sender woke for every half megabyte); 2 MiB drops
/// it after 3.47 s too, at nginx's speed; 4 MiB, or none, after 3.65 s.
/// Set only for a body larger than it (one call more per such response): a
/// smaller one cannot take longer, and a page built in memory is better
/// handed to the kernel whole, so that it is freed at once.
pub const NOTSENT_LOWAT: u32 = 2 << 20;

/// Set once the server stops waiting for responses still being sent.
static CUT_OFF: AtomicBool = AtomicBool::new(false);

/// Ends every response still being sent: each [`Sender`] fails before its
/// next call. A call blocked on a client that stopped reading comes back
/// within about twice [`write_check`] of the send timeout (a `sendfile`
/// waits that long for each piece it moves; measured: 2.0 s for a 1 s
/// check). For a shutdown past its grace period, so that every cut
/// download still gets its log line, with the bytes that left.
pub fn cut_off_all() {
    CUT_OFF.store(true, Ordering::Relaxed);
}

/// Whether what is written to one socket reaches its peer. Atomics, so that
/// the relay's direction keeps it in shared state; only the one thread that
/// writes to the socket at a time uses it.
#[derive(Default)]
pub struct Delivery {
    /// The peer's acknowledged bytes when last read.
    acked: AtomicU64,
    /// Whether a write has been blocked since the acknowledgements last moved.
    blocked: AtomicBool,
}

impl Delivery {
    /// Judges a write or sendfile call on `sock` that moved `moved` of the
    /// `asked` bytes (0 for one that timed out): whether the peer made
    /// progress.
    pub fn progressed(&self, sock: &Socket, moved: usize, asked: usize) -> bool {
        let blocked = moved < asked;
        if !blocked && !self.blocked.load(Ordering::Relaxed) {
            return true;
        }
        self.blocked.store(true, Ordering::Relaxed);
        // A socket that cannot say (never, on Linux 4.2 or later) is given the benefit of the doubt.
        let Ok(acked) = sock.bytes_acked() else { return true };
        if acked > self.acked.swap(acked, Ordering::Relaxed) {
            self.blocked.store(blocked, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// The clock a write that may block is judged against: what the two
/// timeouts of the server, files mode's send timeout ([`Sender`]) and the
/// relay's idle and half-close timeouts (`relay`), differ in. [`moving`]
/// tells it whether each call made progress.
pub trait Clock {
    /// Why a write gave up.
    type Expired;
    /// The peer made progress: it acknowledged more, or there was room.
    fn progressed(&mut self);
    /// A call came back without progress: `Err` once the time is up.
    fn no_progress(&mut self) -> Result<(), Self::Expired>;
}

/// Why a write that may block did not finish.
#[derive(Debug)]
pub enum Unsent<E> {
    /// The call failed: the peer reset the connection, or went away.
    Failed(io::Error),
    /// The clock ran out.
    Expired(E),
}

/// The one loop of a write that may block. Runs `call` on `sock` (asking
/// it to move `asked` bytes) until it moves some or fails. Each time it
/// comes back, `delivery` judges whether the peer made progress, and tells
/// `clock`; a blocked call (`WouldBlock`, the socket's `SO_SNDTIMEO`) that
/// made none asks the clock whether to go on. `Ok(0)` from `call` is
/// returned as it is (a `sendfile` at the end of its file).
pub fn moving<C: Clock>(
    sock: &Socket,
    delivery: &Delivery,
    clock: &mut C,
    asked: usize,
    mut call: impl FnMut(&Socket) -> io::Result<usize>,
) -> Result<usize, Unsent<C::Expired>> {
    loop {
        let (moved, waited_in_vain) = match call(sock) {
            Ok(n) => (n, false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, true),
            Err(e) => return Err(Unsent::Failed(e)),
        };
        if delivery.progressed(sock, moved, asked) {
            clock.progressed();
        } else {
            clock.no_progress().map_err(Unsent::Expired)?;
        }
        if !waited_in_vain {
            return Ok(moved);
        }
    }
}

/// Writes all of `data` to `sock`, each `write(2)` by [`moving`].
pub fn write_all<C: Clock>(
    sock: &Socket,
    delivery: &Delivery,
    clock: &mut C,
    mut data: &[u8],
) -> Result<(), Unsent<C::Expired>> {
    while !data.is_empty() {
        match moving(sock, delivery, clock, data.len(), |sock| sock.write(data))? {
            0 => return Err(Unsent::Failed(io::ErrorKind::WriteZero.into())),
            n => data = &data[n..],
        }
    }
    Ok(())
}

/// Files mode's clock: `--send-timeout` from the last progress, by the wall
/// clock; and the server's shutdown, once it cuts responses off.
struct SendTimeout {
    timeout: Option<Duration>,
    last_progress: Instant,
}

impl SendTimeout {
    fn cut_off() -> io::Result<()> {
        if CUT_OFF.load(Ordering::Relaxed) {
            return Err(io::Error::other("the server shut down"));
        }
        Ok(())
    }
}

impl Clock for SendTimeout {
    type Expired = io::Error;

    fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }

    /// `WouldBlock` once the timeout has passed since the last progress
    /// (the only way a write to a blocking socket would block).
    fn no_progress(&mut self) -> io::Result<()> {
        SendTimeout::cut_off()?;
        if self.timeout.is_some_and(|limit| self.last_progress.elapsed() >= limit) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "send timeout"));
        }
        Ok(())
    }
}

/// A files-mode response's way out: the client socket and its send timeout
/// (`--send-timeout`), kept by the wall clock from the last progress. A
/// blocked write comes back to be judged after the socket's `SO_SNDTIMEO`,
/// [`write_check`] of that timeout: set by the listener, or by [`Sender::new`].
pub struct Sender<'a> {
    pub sock: &'a Socket,
    clock: SendTimeout,
    delivery: Delivery,
}

impl<'a> Sender<'a> {
    /// The way out to `sock`, with `timeout`. Unless `armed` says the
    /// listener set it, the socket's `SO_SNDTIMEO` is set here: without it
    /// a blocked write would never come back to be judged.
    pub fn new(sock: &'a Socket, timeout: Option<Duration>, armed: Armed) -> Sender<'a> {
        if armed == Armed::No {
            let _ = sock.set_write_timeout(timeout.map(write_check));
        }
        let clock = SendTimeout { timeout, last_progress: Instant::now() };
        Sender { sock, clock, delivery: Delivery::default() }
    }

    /// Writes all of `buf`.
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        SendTimeout::cut_off()?;
        write_all(self.sock, &self.delivery, &mut self.clock, buf).map_err(Unsent::into_io)
    }

    /// One `sendfile(2)` of up to `count` bytes of `file` from `*offset`,
    /// waited on until it moves something: `Ok(0)` is the end of the file.
    pub fn sendfile(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        SendTimeout::cut_off()?;
        let call = |sock: &Socket| sock.sendfile(file, offset, count);
        moving(self.sock, &self.delivery, &mut self.clock, count, call).map_err(Unsent::into_io)
    }
}

impl Unsent<io::Error> {
    fn into_io(self) -> io::Error {
        match self {
            Unsent::Failed(e) | Unsent::Expired(e) => e,
        }
    }
}
