//! The count of connections in progress. It enforces `--max-connections` and
//! lets a shutdown wait for open connections to finish.
//!
//! Each accepted connection holds a [`Slot`]; dropping the slot gives it
//! back, so a connection is released exactly once however its handler ends
//! (normally, by an error, or by a panic that unwinds). In forkserver the
//! parent hands the slot to the child, and the reaper gives it back when the
//! child is reaped.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

/// A number of open connections, and a signal when it changes.
#[derive(Debug)]
pub struct ConnCount {
    open: Mutex<usize>,
    changed: Condvar,
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
    pub const fn new() -> ConnCount {
        ConnCount { open: Mutex::new(0), changed: Condvar::new() }
    }

    /// Takes a slot, unless `max` connections are open already.
    pub fn try_acquire(&'static self, max: Option<usize>) -> Option<Slot> {
        let mut open = self.lock();
        if max.is_some_and(|max| *open >= max) {
            return None;
        }
        *open += 1;
        self.changed.notify_all();
        Some(Slot { count: self })
    }

    /// Gives back one slot whose [`Slot`] was handed to a child process.
    pub fn release_child(&self) {
        self.release();
    }

    fn release(&self) {
        let mut open = self.lock();
        *open = open.saturating_sub(1);
        self.changed.notify_all();
    }

    pub fn open(&self) -> usize {
        *self.lock()
    }

    /// Blocks while no connection is open.
    pub fn wait_for_any(&self) {
        let mut open = self.lock();
        while *open == 0 {
            open = self.changed.wait(open).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits until no connection is open, or `deadline` passes. Returns
    /// whether all connections finished.
    pub fn wait_for_none(&self, deadline: Instant) -> bool {
        let mut open = self.lock();
        while *open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            open = self.changed.wait_timeout(open, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        // The count is one integer, changed in one step: never left half-updated.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ConnCount {
    fn default() -> Self {
        ConnCount::new()
    }
}

impl Slot {
    /// forkserver: the child now owns this connection, so the parent must
    /// not release it when its copy goes away; the reaper releases it with
    /// [`ConnCount::release_child`] when the child has exited.
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
        let waiter = thread::spawn(move || count.wait_for_any());
        thread::sleep(Duration::from_millis(20));
        let _slot = count.try_acquire(None).unwrap();
        waiter.join().unwrap();
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
