//! A cache of idle threads. Creating a thread per connection is the main
//! cost of accepting one, so a thread that finishes its job waits a moment
//! (`IDLE_LIFETIME`) for another before it exits. A job still gets a thread
//! of its own at once: an idle one if there is one, a new one if not.
//!
//! threadserver runs each connection's handler this way, and the relay runs
//! its second direction this way in every mode.
//!
//! A forked child does not use the cache: the idle threads on its list are
//! the parent's, which do not exist in the child, and the list's lock may
//! have been held by one of them at the fork. After [`forget_idle_in_child`]
//! every job gets a new thread, which exits when the job is done.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::sync::{self, lock};

/// How long a finished thread waits for another job before it exits.
const IDLE_LIFETIME: Duration = Duration::from_secs(1);

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
/// can reach the end of their lifetime and exit).
static IDLE: Mutex<Vec<Arc<Mailbox>>> = Mutex::new(Vec::new());

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
    let idle = if in_child { None } else { lock(&IDLE).pop() };
    if let Some(mailbox) = idle {
        *lock(&mailbox.job) = Some(Box::new(move || f(item)));
        mailbox.arrived.notify_one();
        return Ok(());
    }
    spawn(item, f, !in_child)
}

/// Runs `f(item)` on a thread made for it, which exits when `f` returns: a
/// thread that holds nothing from earlier jobs (see `relay`, where an idle
/// relay direction moves to one).
pub fn run_on_new_thread<T: Send + 'static>(item: T, f: fn(T)) -> Result<(), (T, io::Error)> {
    spawn(item, f, false)
}

/// Starts a thread for `f(item)`; with `then_cache`, it offers itself for
/// more jobs afterwards.
fn spawn<T: Send + 'static>(item: T, f: fn(T), then_cache: bool) -> Result<(), (T, io::Error)> {
    // A new thread gets its first job through a cell, so that the job can be
    // taken back if the thread cannot be made.
    let cell = Arc::new(Mutex::new(Some(item)));
    let theirs = Arc::clone(&cell);
    let spawned = thread::Builder::new().stack_size(STACK).spawn(move || {
        let first = lock(&theirs).take();
        drop(theirs);
        if let Some(item) = first {
            f(item);
        }
        if then_cache {
            serve_jobs();
        }
    });
    match spawned {
        Ok(_) => Ok(()),
        Err(e) => match lock(&cell).take() {
            Some(item) => Err((item, e)),
            None => Ok(()),
        },
    }
}

/// After its first job: offer this thread for more, until it has been idle
/// for `IDLE_LIFETIME`.
fn serve_jobs() {
    let mailbox = Arc::new(Mailbox { job: Mutex::new(None), arrived: Condvar::new() });
    loop {
        lock(&IDLE).push(Arc::clone(&mailbox));
        match wait_for_job(&mailbox) {
            Some(job) => job(),
            None => return,
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
                idle.swap_remove(at);
                return None;
            }
        }
    }
}

/// Holds the idle list's lock, as another thread of the server may at any
/// moment: for the fork-safety test.
#[cfg(test)]
pub fn hold_idle_lock() -> impl Sized {
    lock(&IDLE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

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
