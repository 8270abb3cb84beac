//! Accepted connections, and the count of those in progress. The count
//! enforces `--max-connections` and lets a shutdown wait for open
//! connections to finish.
//!
//! Each accepted connection holds a [`Slot`]; dropping the slot gives it
//! back, so a connection is released exactly once however its handler ends
//! (normally, by an error, or by a panic that unwinds). In forkserver the
//! parent hands the slot over before it forks, and the reaper gives it back
//! when the child is reaped.

use std::net::SocketAddr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::sync;
use crate::sys::Socket;

/// An accepted client connection, and its place in the count of open
/// connections (none if it is being refused for want of room, or if a
/// forked child serves it).
#[derive(Debug)]
pub struct Connection {
    pub sock: Socket,
    pub peer: SocketAddr,
    pub slot: Option<Slot>,
    /// Whether the thread that runs the handler may return before the
    /// connection is over. Only in threadserver, where nothing waits for
    /// that thread; the basic server's accept loop, a pool worker and a
    /// forked child's one thread must stay with their connection.
    pub may_leave: bool,
}

/// A number of open connections, and a signal when it changes.
#[derive(Debug)]
pub struct ConnCount {
    counts: Mutex<Counts>,
    changed: Condvar,
}

#[derive(Debug)]
pub struct Counts {
    open: usize,
    /// Threads waiting for `changed`. A change signals only when one is:
    /// every connection changes the count twice, and a signal with no one
    /// to hear it still costs a futex call.
    waiting: usize,
}

/// The server's one count.
pub static OPEN_CONNECTIONS: ConnCount = ConnCount::new();

/// One counted connection. Dropping it releases it.
#[derive(Debug)]
#[must_use]
pub struct Slot {
    count: &'static ConnCount,
}

impl ConnCount {
    const fn new() -> ConnCount {
        ConnCount { counts: Mutex::new(Counts { open: 0, waiting: 0 }), changed: Condvar::new() }
    }

    /// Takes a slot, unless `max` connections are open already.
    pub fn try_acquire(&'static self, max: Option<usize>) -> Option<Slot> {
        let mut counts = self.lock();
        if max.is_some_and(|max| counts.open >= max) {
            return None;
        }
        counts.open += 1;
        self.signal(&counts);
        Some(Slot { count: self })
    }

    /// Gives back one slot whose [`Slot`] was handed to a child process.
    pub fn release_child(&self) {
        self.release();
    }

    fn release(&self) {
        let mut counts = self.lock();
        counts.open = counts.open.saturating_sub(1);
        self.signal(&counts);
    }

    fn signal(&self, counts: &Counts) {
        if counts.waiting > 0 {
            self.changed.notify_all();
        }
    }

    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Blocks while no connection is open.
    pub fn wait_for_any(&self) {
        let mut counts = self.lock();
        while counts.open == 0 {
            counts.waiting += 1;
            counts = sync::wait(&self.changed, counts);
            counts.waiting -= 1;
        }
    }

    /// Waits until no connection is open, or `deadline` passes. Returns
    /// whether all connections finished.
    pub fn wait_for_none(&self, deadline: Instant) -> bool {
        let mut counts = self.lock();
        while counts.open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            counts.waiting += 1;
            counts = sync::wait_timeout(&self.changed, counts, left).0;
            counts.waiting -= 1;
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        sync::lock(&self.counts)
    }

    /// Holds the count's lock, as another thread of the server may at any
    /// moment: for the fork-safety test.
    #[cfg(test)]
    pub fn hold_lock(&self) -> MutexGuard<'_, Counts> {
        self.lock()
    }
}

impl Slot {
    /// forkserver, just before the fork: a child will own this connection,
    /// so the slot is no longer released when dropped; the reaper releases
    /// it with [`ConnCount::release_child`] once the child has been reaped
    /// (or the parent does, if the fork fails). Done before the fork, so the
    /// child has no `Slot` whose drop would take the count's lock, which
    /// another thread of the parent may hold at the fork (see `sys::fork`).
    pub fn hand_to_child(self) {
        std::mem::forget(self);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.count.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    fn fresh() -> &'static ConnCount {
        Box::leak(Box::new(ConnCount::new()))
    }

    #[test]
    fn slots_are_counted_up_to_the_limit_and_released_on_drop() {
        let count = fresh();
        let a = count.try_acquire(Some(2)).unwrap();
        let b = count.try_acquire(Some(2)).unwrap();
        assert!(count.try_acquire(Some(2)).is_none());
        assert_eq!(count.open(), 2);
        drop(a);
        let c = count.try_acquire(Some(2)).unwrap();
        drop((b, c));
        assert_eq!(count.open(), 0);
        assert!(count.try_acquire(None).is_some());
    }

    #[test]
    fn a_panic_releases_its_slot() {
        let count = fresh();
        let slot = count.try_acquire(None).unwrap();
        let result = std::panic::catch_unwind(move || {
            let _held = slot;
            panic!("handler failed");
        });
        assert!(result.is_err());
        assert_eq!(count.open(), 0);
    }

    #[test]
    fn a_slot_handed_to_a_child_waits_for_the_reaper() {
        let count = fresh();
        count.try_acquire(None).unwrap().hand_to_child();
        assert_eq!(count.open(), 1);
        count.release_child();
        assert_eq!(count.open(), 0);
    }

    #[test]
    fn wait_for_any_wakes_on_the_first_acquire() {
        let count = fresh();
        let (woke, woken) = std::sync::mpsc::channel();
        thread::spawn(move || {
            count.wait_for_any();
            let _ = woke.send(());
        });
        // Most likely waiting by now; if not, it finds the slot taken.
        thread::sleep(Duration::from_millis(20));
        let _slot = count.try_acquire(None).unwrap();
        // A waiter that never wakes fails the test instead of hanging it.
        assert!(woken.recv_timeout(Duration::from_secs(10)).is_ok(), "wait_for_any did not wake");
    }

    #[test]
    fn wait_for_none_sees_the_last_release_or_gives_up() {
        let count = fresh();
        let slot = count.try_acquire(None).unwrap();
        assert!(!count.wait_for_none(Instant::now() + Duration::from_millis(20)));
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            drop(slot);
        });
        assert!(count.wait_for_none(Instant::now() + Duration::from_secs(10)));
        releaser.join().unwrap();
    }
}
