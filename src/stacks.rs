//! The stacks of finished threads, kept a while for new ones. Mapping a
//! thread's stack and its guard page, and unmapping them when it exits, is
//! a third of what the start and exit of a thread cost: a connection's
//! life through threadserver (3,000 at once) went from 297 to 213 µs of CPU
//! when they were kept. So each thread of `threads` runs on a stack mapped
//! here (`sys::spawn_on`); when its job is done it gives the kernel back
//! the stack's pages but the few at its top, and leaves the stack here with
//! itself (a `sys::Finished`). A new thread joins the oldest finished
//! thread, which has exited by then as a rule, and takes its stack.
//!
//! A kept stack costs its address space, two memory maps, and the pages at
//! its top (about 13 KiB). Never more are kept than threads ran at once,
//! which the limits checked at start allow for (`limits`), and those that
//! no new thread has taken for `KEEP` are unmapped: by the next thread to
//! finish, or by the signal thread, which looks every `KEEP`.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;
use crate::sys;

/// How long a finished thread's stack is kept for a new one.
pub const KEEP: Duration = Duration::from_secs(60);

/// A stack waiting for a new thread, still with the thread that ran on
/// it (which may be exiting), and the time it was left here.
type Kept = (Instant, sys::Finished);

/// The kept stacks, oldest first.
static STACKS: Mutex<VecDeque<Kept>> = Mutex::new(VecDeque::new());

/// A stack for a new thread: the oldest kept one, or a new mapping.
pub fn take() -> io::Result<sys::Stack> {
    let oldest = lock(&STACKS).pop_front();
    match oldest.and_then(|(_, finished)| finished.join()) {
        Some(stack) => Ok(stack),
        None => sys::Stack::map(crate::threads::STACK),
    }
}

/// Called by a thread of `threads` as it finishes (`sys::spawn_on`'s
/// `done`): its stack is kept, and those kept longer than `KEEP` unmapped.
pub fn done(finished: sys::Finished) {
    let expired = {
        let mut stacks = lock(&STACKS);
        stacks.push_back((Instant::now(), finished));
        take_expired(&mut stacks)
    };
    // Joined and unmapped here, outside the lock.
    drop(expired);
}

/// Unmaps the stacks kept longer than `KEEP`, for a server that has
/// started and finished no thread for that long.
pub fn trim() {
    let expired = take_expired(&mut lock(&STACKS));
    drop(expired);
}

fn take_expired(stacks: &mut VecDeque<Kept>) -> Vec<sys::Finished> {
    let now = Instant::now();
    let expired = stacks.iter().take_while(|(at, _)| now.duration_since(*at) >= KEEP).count();
    stacks.drain(..expired).map(|(_, finished)| finished).collect()
}

/// Holds the lock of the kept stacks, as another thread of the server may
/// at any moment: for the fork-safety test.
#[cfg(test)]
pub fn hold_lock() -> impl Sized {
    lock(&STACKS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;
    use std::sync::mpsc;

    /// The threads of this test that have finished, as `spawn_on` hands them over.
    static FINISHED: Mutex<Vec<sys::Finished>> = Mutex::new(Vec::new());

    fn left_here(finished: sys::Finished) {
        lock(&FINISHED).push(finished);
    }

    /// Runs a job that writes 128 KiB of its stack and reports an address
    /// in its frame, and how many pages of the stack are in memory then.
    fn run_deep_job(stack: sys::Stack) -> (usize, sys::Stack) {
        let (tx, rx) = mpsc::channel();
        sys::spawn_on(stack, tx, deep_job, left_here).map_err(|(_, _, e)| e).unwrap();
        let addr = rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let finished = loop {
            if let Some(finished) = lock(&FINISHED).pop() {
                break finished;
            }
            assert!(Instant::now() < deadline, "the thread did not finish");
            std::thread::sleep(Duration::from_millis(1));
        };
        (addr, finished.join().expect("a thread of spawn_on is joinable"))
    }

    fn deep_job(tx: mpsc::Sender<usize>) {
        let mut deep = [0u8; 128 * 1024];
        black_box(&mut deep).fill(0xa5);
        let _ = tx.send(black_box(&deep).as_ptr() as usize);
    }

    #[test]
    fn a_finished_threads_stack_holds_only_its_top_pages_and_is_reused() {
        let stack = sys::Stack::map(crate::threads::STACK).unwrap();
        let (first, stack) = run_deep_job(stack);
        assert!(stack.holds(first), "the job ran on the stack it was given");
        let resident = stack.resident_pages();
        // 128 KiB were written; what stays is the thread's top frames and
        // glibc's thread descriptor, a page of margin below them.
        assert!(resident <= 6, "{resident} pages of a finished thread's stack stayed in memory");
        let (second, stack) = run_deep_job(stack);
        assert!(stack.holds(second), "the next thread ran on the same stack");
    }
}
