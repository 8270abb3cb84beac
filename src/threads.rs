//! A cache of idle threads. Starting and ending a thread is most of what a
//! short connection costs, so a thread that finishes its job waits a moment
//! (`IDLE_LIFETIME`) for another before it exits, unless `MOST_IDLE`
//! already wait, or its job was a relay direction that moved to a fresh
//! thread (`leave_after_this_job`: it leaves to free what it holds). A job
//! still gets a thread of its own at once: an idle one if there is one, a
//! new one if not.
//!
//! threadserver runs each connection's handler this way, and the relay runs
//! its second direction this way in every mode. Threads start through
//! `sys::spawn_on`, a pthread on a stack kept from a finished thread or
//! mapped for it (`stacks`), whose start maps nothing once it runs, so a
//! thread that cannot be had is an error to its caller, never an abort;
//! poolserver's workers start the same way, through `sys::spawn`.
//!
//! A forked child does not use the cache, nor the kept stacks: the idle
//! threads on its list are the parent's, which do not exist in the child,
//! and the locks may have been held by one of them at the fork. After
//! [`forget_idle_in_child`] every job gets a new thread on a stack glibc
//! maps (`sys::spawn`), which exits when the job is done.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::sync::{self, lock};
use crate::{stacks, sys};

/// How long a finished thread waits for another job before it exits.
const IDLE_LIFETIME: Duration = Duration::from_secs(1);

/// The most threads that wait for a job at once. A burst of connections
/// that end together would otherwise leave a thread each, every one woken
/// a second later only to exit: the cache is for a steady stream of short
/// connections, whose threads are this many at most most of the time.
pub const MOST_IDLE: usize = 256;

/// Stack of every cached thread. It is sized for the deepest job, the
/// connection handler, whose resolver call (getaddrinfo) goes deepest.
/// Untouched stack pages cost address space, not memory.
pub const STACK: usize = 256 * 1024;

/// Stack of the server's own helper threads (the signal thread, the
/// reaper, the refuser): each runs one small loop.
pub const HELPER_STACK: usize = 64 * 1024;

type Job = Box<dyn FnOnce() + Send>;

/// One idle thread's mailbox: where its next job is put.
struct Mailbox {
    job: Mutex<Option<Job>>,
    arrived: Condvar,
}

/// The idle threads, most recently idle last (reused first, so the others
/// can reach the end of their lifetime and exit). A thread whose lifetime
/// is over is then usually the first, and leaves the list at no cost.
static IDLE: Mutex<VecDeque<Arc<Mailbox>>> = Mutex::new(VecDeque::new());

/// Set in a forked child: no cache, a new thread per job.
static IN_FORKED_CHILD: AtomicBool = AtomicBool::new(false);

/// Called first thing in a forked child: from here on, [`run`] never looks
/// at the parent's idle list (see the module's doc).
pub fn forget_idle_in_child() {
    IN_FORKED_CHILD.store(true, Ordering::SeqCst);
}

/// Runs `f(item)` on a thread of its own: an idle one, or a new one. If no
/// thread can be made, `item` comes back with the error, so the caller can
/// still answer the client.
pub fn run<T: Send + 'static>(item: T, f: fn(T)) -> Result<(), (T, io::Error)> {
    let in_child = IN_FORKED_CHILD.load(Ordering::SeqCst);
    let idle = if in_child { None } else { lock(&IDLE).pop_back() };
    if let Some(mailbox) = idle {
        *lock(&mailbox.job) = Some(Box::new(move || f(item)));
        mailbox.arrived.notify_one();
        return Ok(());
    }
    spawn(item, f, !in_child)
}

/// Runs `f(item)` on a thread made for it: one that holds nothing from
/// earlier jobs (see `relay`, where an idle relay direction moves to one),
/// for a job that then leaves the caller's thread ([`leave_after_this_job`]).
/// Once `f` returns, the thread is cached as any other.
///
/// For a moment the old thread and the new both exist. So that a burst of
/// moves (thousands of connections gone idle together) never adds more than
/// `MOVES_AT_ONCE` threads to the two each connection has, a move waits for
/// a free place first, and the old thread gives it back as it exits.
pub fn run_on_new_thread<T: Send + 'static>(item: T, f: fn(T)) -> Result<(), (T, io::Error)> {
    let in_child = IN_FORKED_CHILD.load(Ordering::SeqCst);
    if !in_child {
        let mut moving = lock(&MOVING);
        while *moving >= MOVES_AT_ONCE {
            moving = sync::wait(&MOVE_DONE, moving);
        }
        *moving += 1;
    }
    spawn(item, f, !in_child).inspect_err(|_| move_done(in_child))
}

/// Called by a job whose thread must exit when the job returns, instead of
/// waiting for another: one that handed its work to a fresh thread
/// (`relay`'s move, through [`run_on_new_thread`]).
pub fn leave_after_this_job() {
    LEAVING.set(true);
}

/// The most moves under way at once: old threads that have started their
/// successor and not yet exited.
const MOVES_AT_ONCE: usize = 4;
static MOVING: Mutex<usize> = Mutex::new(0);
static MOVE_DONE: Condvar = Condvar::new();

/// A move's old thread is on its way out (or its new thread never started).
fn move_done(in_child: bool) {
    if !in_child {
        *lock(&MOVING) -= 1;
        MOVE_DONE.notify_one();
    }
}

/// After a job: whether this thread must exit now, because the job moved
/// on ([`leave_after_this_job`]); its place among the moves is given back.
fn leaving() -> bool {
    let leaving = LEAVING.take();
    if leaving {
        move_done(IN_FORKED_CHILD.load(Ordering::SeqCst));
    }
    leaving
}

/// Starts a thread for `f(item)`; with `then_cache`, it offers itself for
/// more jobs afterwards. Outside a forked child, the thread runs on a kept
/// stack (`stacks`, `sys::spawn_on`); in a forked child, whose parent's
/// threads and locks it must not touch, on one glibc maps (`sys::spawn`).
/// Either way a thread that cannot be had is an error, never an abort.
fn spawn<T: Send + 'static>(item: T, f: fn(T), then_cache: bool) -> Result<(), (T, io::Error)> {
    if !then_cache {
        return sys::spawn(STACK, (item, f, false), run_job).map_err(|((item, ..), e)| (item, e));
    }
    let stack = match stacks::take() {
        Ok(stack) => stack,
        Err(e) => return Err((item, e)),
    };
    sys::spawn_on(stack, (item, f, true), run_job, stacks::done).map_err(|((item, ..), _unused, e)| (item, e))
}

/// What a thread of [`spawn`] runs.
fn run_job<T>((item, f, then_cache): (T, fn(T), bool)) {
    f(item);
    if !leaving() && then_cache {
        serve_jobs();
    }
}

thread_local! {
    /// Set by [`leave_after_this_job`]; taken when the job returns.
    static LEAVING: Cell<bool> = const { Cell::new(false) };
}

/// After its first job: offer this thread for more, until it has been idle
/// for `IDLE_LIFETIME`, unless `MOST_IDLE` threads wait already.
fn serve_jobs() {
    let mailbox = Arc::new(Mailbox { job: Mutex::new(None), arrived: Condvar::new() });
    loop {
        {
            let mut idle = lock(&IDLE);
            if idle.len() >= MOST_IDLE {
                return;
            }
            idle.push_back(Arc::clone(&mailbox));
        }
        match wait_for_job(&mailbox) {
            Some(job) => job(),
            None => return,
        }
        if leaving() {
            return;
        }
    }
}

/// Waits for a job in `mailbox`. `None` once the idle lifetime is over and
/// this thread has taken itself off the idle list.
fn wait_for_job(mailbox: &Arc<Mailbox>) -> Option<Job> {
    let mut job = lock(&mailbox.job);
    loop {
        if let Some(j) = job.take() {
            return Some(j);
        }
        let (guard, timed_out) = sync::wait_timeout(&mailbox.arrived, job, IDLE_LIFETIME);
        job = guard;
        if timed_out && job.is_none() {
            // Leave, unless a caller has just taken this thread off the list:
            // then its job is on the way, and must be waited for.
            let mut idle = lock(&IDLE);
            if let Some(at) = idle.iter().position(|m| Arc::ptr_eq(m, mailbox)) {
                idle.remove(at);
                return None;
            }
        }
    }
}

/// Holds the idle list's lock and the kept stacks', as other threads of
/// the server may at any moment: for the fork-safety test.
#[cfg(test)]
pub fn hold_locks() -> impl Sized {
    (lock(&IDLE), stacks::hold_lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;

    #[test]
    fn jobs_run_on_other_threads_and_finished_threads_are_reused() {
        let (tx, rx) = mpsc::channel();
        run(tx.clone(), |tx| tx.send(thread::current().id()).unwrap()).map_err(|(_, e)| e).unwrap();
        let first = rx.recv().unwrap();
        assert_ne!(first, thread::current().id());
        // The finished thread offers itself; the next job goes to an idle thread.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while lock(&IDLE).is_empty() {
            assert!(std::time::Instant::now() < deadline);
            thread::sleep(Duration::from_millis(1));
        }
        run(tx, |tx| tx.send(thread::current().id()).unwrap()).map_err(|(_, e)| e).unwrap();
        let second = rx.recv().unwrap();
        assert_ne!(second, thread::current().id());
    }

    #[test]
    fn idle_threads_exit_after_their_lifetime() {
        let (tx, rx) = mpsc::channel::<()>();
        run(tx, drop).map_err(|(_, e)| e).unwrap();
        assert!(rx.recv().is_err());
        let deadline = std::time::Instant::now() + IDLE_LIFETIME * 5;
        loop {
            // Other tests may add idle threads of their own; wait for all to leave.
            if lock(&IDLE).is_empty() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "idle threads did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}
