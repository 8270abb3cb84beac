//! The work queue of poolserver, mirroring the skeleton's `wq.h`: the accept
//! loop pushes accepted connections, and the pool's workers pop them.
//! `wq_pop` blocks while the queue is empty.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use crate::sync;

/// A FIFO shared by one producer (the accept loop) and the pool's workers.
pub struct WorkQueue<T> {
    items: Mutex<Items<T>>,
    not_empty: Condvar,
}

struct Items<T> {
    queue: VecDeque<T>,
    /// Workers waiting in `wq_pop`. A push wakes one only if there is one:
    /// while every worker is busy, a wake-up would be a futex call for no
    /// one, on every connection.
    waiting: usize,
}

/// Makes an empty queue.
pub fn wq_init<T>() -> WorkQueue<T> {
    WorkQueue { items: Mutex::new(Items { queue: VecDeque::new(), waiting: 0 }), not_empty: Condvar::new() }
}

/// Appends `item` and wakes one waiting worker, if one waits.
pub fn wq_push<T>(wq: &WorkQueue<T>, item: T) {
    let mut items = sync::lock(&wq.items);
    items.queue.push_back(item);
    let someone_waits = items.waiting > 0;
    // Woken after the lock is let go, the worker does not wait for it.
    drop(items);
    if someone_waits {
        wq.not_empty.notify_one();
    }
}

/// Removes the oldest item, waiting while the queue is empty.
pub fn wq_pop<T>(wq: &WorkQueue<T>) -> T {
    let mut items = sync::lock(&wq.items);
    loop {
        if let Some(item) = items.queue.pop_front() {
            return item;
        }
        items.waiting += 1;
        items = sync::wait(&wq.not_empty, items);
        items.waiting -= 1;
    }
}

/// How many items wait in the queue.
#[cfg(test)]
fn wq_len<T>(wq: &WorkQueue<T>) -> usize {
    sync::lock(&wq.items).queue.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn fifo_order() {
        let wq = wq_init();
        for i in 0..5 {
            wq_push(&wq, i);
        }
        assert_eq!(wq_len(&wq), 5);
        assert_eq!((0..5).map(|_| wq_pop(&wq)).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn pop_waits_for_push() {
        let wq = Arc::new(wq_init());
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let wq = Arc::clone(&wq);
                thread::spawn(move || (0..250).map(|_| wq_pop(&wq)).sum::<u64>())
            })
            .collect();
        for i in 0..1000u64 {
            wq_push(&wq, i);
        }
        let total: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(total, (0..1000).sum());
        assert_eq!(wq_len(&wq), 0);
    }
}
