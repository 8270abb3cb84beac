//! The four ways of the homework to hand an accepted connection to its
//! handler, and what each does when it has no room: over `--max-connections`,
//! or out of threads or processes, a connection is refused (503 in files
//! mode, closed in proxy mode) and the server goes on.

use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::config::{self, Mode};
use crate::conns::{Connection, OPEN_CONNECTIONS};
use crate::progress::Sender;
use crate::response::{self, Status};
use crate::sys::{self, Armed, Forked, Socket};
use crate::wq::{self, WorkQueue};
use crate::{files, log, threads};

/// What runs on each connection: `handle_files_request` or
/// `handle_proxy_request`, chosen once at startup, as the skeleton's
/// `request_handler` pointer is.
pub type RequestHandler = fn(Connection);

/// How the accept loop hands off a connection: the mode, with what it needs,
/// the handler, and the refuser.
pub struct Dispatch {
    how: HandOff,
    handler: RequestHandler,
    refuser: Refuser,
}

/// The mode's way of handing off, and what it needs for it.
enum HandOff {
    Basic,
    Fork,
    Thread,
    /// poolserver's work queue; its workers run the handler.
    Pool(Arc<WorkQueue<Connection>>),
}

impl Dispatch {
    /// Prepares `mode`: poolserver's workers, forkserver's reaper, and the
    /// thread that answers refused connections with 503 (files mode). All
    /// exist before the first accept.
    pub fn new(mode: Mode, handler: RequestHandler, files_mode: bool) -> io::Result<Dispatch> {
        let how = match mode {
            Mode::Basic => HandOff::Basic,
            Mode::Fork => {
                start_reaper()?;
                HandOff::Fork
            }
            Mode::Thread => HandOff::Thread,
            Mode::Pool => {
                HandOff::Pool(init_thread_pool(config::num_threads.get().copied().unwrap_or(1), handler)?)
            }
        };
        // The basic server refuses no one (it has one connection at a
        // time), so it needs no one to answer refusals.
        let refuser = Refuser::new(files_mode && mode != Mode::Basic)?;
        Ok(Dispatch { how, handler, refuser })
    }

    /// The most connections this mode serves at once, if it has a limit.
    /// The basic server has one at a time; poolserver counts the queued.
    fn max_connections(&self) -> Option<usize> {
        (!matches!(self.how, HandOff::Basic)).then(|| config::settings().max_connections)
    }

    /// Hands `sock` to its handler, the way this mode does.
    pub fn dispatch(&self, listener: &Socket, sock: Socket, peer: SocketAddr) {
        let Some(slot) = OPEN_CONNECTIONS.try_acquire(self.max_connections()) else {
            self.refuser
                .refuse(Connection { sock, peer, slot: None, may_leave: false }, "too many connections");
            return;
        };
        let may_leave = matches!(self.how, HandOff::Thread);
        let conn = Connection { sock, peer, slot: Some(slot), may_leave };
        match &self.how {
            HandOff::Basic => serve_connection((conn, self.handler)),
            HandOff::Fork => fork_handler(listener, conn, &self.refuser, self.handler),
            HandOff::Thread => {
                if let Err(((conn, _), e)) = threads::run((conn, self.handler), serve_connection) {
                    self.refuser.refuse(conn, &format!("no thread: {}", log::describe(&e)));
                }
            }
            HandOff::Pool(queue) => wq::wq_push(queue, conn),
        }
    }
}

/// Runs `handler` on `conn`. A panic is contained to this connection:
/// unwinding drops the connection, which closes its fds and releases its
/// slot, and the process goes on.
fn serve_connection((conn, handler): (Connection, RequestHandler)) {
    let peer = conn.peer;
    if panic::catch_unwind(AssertUnwindSafe(move || handler(conn))).is_err() {
        log::error(format_args!("handler for {peer} panicked; connection closed"));
    }
}

/// forkserver: a child process serves the connection and exits; the parent
/// closes its copy and goes back to accept. The reaper releases the
/// connection's slot once the child has been reaped.
///
/// The child must take no lock that another thread of the parent may hold
/// at the fork (the reaper, the signal thread, the refuser); see `sys::fork`.
/// So everything the child's path reaches is lock-free there: the slot is
/// handed over before the fork, so the child holds none to release; the
/// log writes each line with one `write(2)`; dates (`Date`,
/// `Last-Modified`, the log's time) are `dates`' integer arithmetic over
/// `clock_gettime`, not glibc's `gmtime_r`, which takes the time-zone lock;
/// the thread cache is switched off; a panic is printed by the log's hook, not std's; the configuration
/// globals are read without locking once set; and the child leaves through
/// `_exit`. What is left is glibc's own: malloc and starting threads, whose
/// locks glibc's fork resets in the child, and in proxy mode `getaddrinfo`.
/// Of the locks that takes, fork resets those of NSS, stdio and the dynamic
/// loader; the resolver's own (`resolv.conf`, `gai.conf`) it does not, and
/// they are safe because no thread of this parent ever resolves a name:
/// every connection, and so every `getaddrinfo`, is served in a child.
#[allow(unsafe_code)]
fn fork_handler(listener: &Socket, conn: Connection, refuser: &Refuser, handler: RequestHandler) {
    let Connection { sock, peer, slot, may_leave } = conn;
    let counted = slot.is_some();
    if let Some(slot) = slot {
        slot.hand_to_child();
    }
    let conn = Connection { sock, peer, slot: None, may_leave };
    // SAFETY: the child's path takes no lock another thread may hold, as
    // this function's doc lists, and it leaves through `sys::exit_child`.
    match unsafe { sys::fork() } {
        Ok(Forked::Child) => {
            threads::forget_idle_in_child();
            // SAFETY: this child never touches the listener again, and leaves
            // through `sys::exit_child`, which drops nothing.
            unsafe { sys::close_inherited(listener) };
            let _ = sys::terminate_with_parent();
            let _ = sys::mask_shutdown_signals(false);
            serve_connection((conn, handler));
            sys::exit_child(0);
        }
        Ok(Forked::Parent) => drop(conn),
        Err(e) => {
            if counted {
                OPEN_CONNECTIONS.release_child();
            }
            refuser.refuse(conn, &format!("no process: {}", log::describe(&e)));
        }
    }
}

/// forkserver's reaper: waits for children to exit, reaps them so that none
/// lingers as a zombie, and releases the slot of each.
fn start_reaper() -> io::Result<()> {
    thread::Builder::new().name("reaper".into()).stack_size(threads::HELPER_STACK).spawn(|| loop {
        OPEN_CONNECTIONS.wait_for_any();
        match sys::wait_any_child() {
            Ok(true) => OPEN_CONNECTIONS.release_child(),
            // Counted but not forked yet: the fork is a moment away.
            Ok(false) => thread::sleep(Duration::from_millis(1)),
            Err(e) => {
                log::error(format_args!("waitpid: {}", log::describe(&e)));
                thread::sleep(Duration::from_millis(100));
            }
        }
    })?;
    Ok(())
}

/// Skeleton: `init_thread_pool`. poolserver starts `n` workers, each popping
/// connections off the work queue (`wq_pop`) and serving them, forever.
fn init_thread_pool(n: usize, handler: RequestHandler) -> io::Result<Arc<WorkQueue<Connection>>> {
    let queue = Arc::new(wq::wq_init());
    for i in 0..n {
        let worker =
            |(queue, handler): (Arc<WorkQueue<Connection>>, RequestHandler)| handle_clients(&queue, handler);
        sys::spawn(threads::STACK, (Arc::clone(&queue), handler), worker).map_err(|(_, e)| {
            io::Error::new(e.kind(), format!("start worker {i} of {n}: {}", log::describe(&e)))
        })?;
    }
    Ok(queue)
}

/// Skeleton: `handle_clients`. What each pool worker runs, forever: pop a
/// connection off the work queue and serve it.
fn handle_clients(queue: &WorkQueue<Connection>, handler: RequestHandler) -> ! {
    loop {
        serve_connection((wq::wq_pop(queue), handler));
    }
}

/// Refuses connections the server has no room for. In files mode a helper
/// thread, started with the server, answers each with 503 and closes it
/// without losing the answer, so the accept loop never waits on a client.
/// In proxy mode the connection is simply closed, and there is no helper.
pub struct Refuser {
    queue: Option<SyncSender<Connection>>,
}

/// How many refused connections may wait for their 503; more are closed.
const REFUSALS_QUEUED: usize = 64;

impl Refuser {
    /// With `answers_503` (files mode, in a mode that refuses at all), a
    /// helper thread answers refused connections 503; without, they are
    /// closed.
    fn new(answers_503: bool) -> io::Result<Refuser> {
        if !answers_503 {
            return Ok(Refuser { queue: None });
        }
        let (queue, refused) = mpsc::sync_channel::<Connection>(REFUSALS_QUEUED);
        thread::Builder::new().name("refuser".into()).stack_size(threads::HELPER_STACK).spawn(move || {
            for conn in refused {
                let detail = "The server is at its limit of connections. Try again shortly.";
                // Files mode's listener armed the socket, as for any request.
                let out = &mut Sender::new(&conn.sock, config::settings().send_timeout, Armed::ByListener);
                let _ = response::send_error(
                    out,
                    Status::ServiceUnavailable,
                    detail,
                    &[files::RETRY_AFTER],
                    false,
                );
                response::lingering_close(&conn.sock);
            }
        })?;
        Ok(Refuser { queue: Some(queue) })
    }

    fn refuse(&self, conn: Connection, why: &str) {
        log::timed(format_args!("refused {}: {why}", conn.peer));
        if let Some(queue) = &self.queue {
            // A full queue means a flood: those beyond it are just closed.
            let _ = queue.try_send(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Read};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn a_panicking_handler_is_contained_and_its_fds_closed() {
        let sock = Socket::listen(None, 0, 8).unwrap();
        let port = sock.local_addr().unwrap().port();
        let conn = Connection { sock, peer: "127.0.0.1:1".parse().unwrap(), slot: None, may_leave: false };
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        serve_connection((conn, |_conn| panic!("a handler bug")));
        // The socket was closed as the panic unwound: nothing listens there now.
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    /// What a handler does that could take a lock: it logs, runs a job on a
    /// thread of its own and waits for it, answers, and then panics, so that
    /// the panic is printed and its connection and slot are dropped.
    fn busy_child_handler(conn: Connection) {
        log::timed(format_args!("a forked child serves {}", conn.peer));
        let (done, job_ran) = mpsc::channel();
        let job = |done: mpsc::Sender<()>| {
            let _ = done.send(());
        };
        let ran = threads::run(done, job).is_ok() && job_ran.recv().is_ok();
        let answer =
            format!("{} served; {}\n", std::process::id(), if ran { "the job ran" } else { "no job" });
        let _ = Sender::new(&conn.sock, None, Armed::No).write_all(answer.as_bytes());
        panic!("the child's handler panics after answering");
    }

    /// forkserver's child takes no lock that another thread held at the fork.
    /// A thread holds every lock the child's path could reach (the
    /// connection count, std's stdout and stderr, the thread cache and its
    /// kept stacks) from before the fork until the child is gone. The child
    /// must still answer, log, run a job on a second thread, panic, and exit.
    #[test]
    fn a_forked_child_takes_no_lock_another_thread_holds() {
        log::install_panic_hook();
        let listener = Socket::listen(None, 0, 8).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (sock, peer) = listener.accept().unwrap();
        let conn = Connection {
            sock,
            peer,
            slot: Some(OPEN_CONNECTIONS.try_acquire(None).unwrap()),
            may_leave: false,
        };

        let (held, all_held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let holder = thread::spawn(move || {
            let _count = OPEN_CONNECTIONS.hold_lock();
            let _stdout = io::stdout().lock();
            let _stderr = io::stderr().lock();
            let _cache = threads::hold_locks();
            held.send(()).unwrap();
            let _ = released.recv();
        });
        all_held.recv().unwrap();
        fork_handler(&listener, conn, &Refuser { queue: None }, busy_child_handler);

        // The child names itself in its answer. One that never answers
        // dies with this process (`sys::terminate_with_parent`).
        let mut answer = String::new();
        let read = client.read_to_string(&mut answer);
        let child = answer.split_once(' ').and_then(|(pid, _)| pid.parse::<sys::Pid>().ok());
        let mut exited = false;
        if let Some(child) = child {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !exited && Instant::now() < deadline {
                exited = sys::try_reap(child).unwrap_or(true);
                thread::sleep(Duration::from_millis(5));
            }
            if !exited {
                sys::kill(child);
                while !sys::try_reap(child).unwrap_or(true) {}
            }
        }
        release.send(()).unwrap();
        holder.join().unwrap();
        OPEN_CONNECTIONS.release_child();
        assert!(read.is_ok(), "the child's answer did not end: {read:?}");
        assert!(exited, "the child did not exit within 10 s: it waits for a lock it will never get");
        assert_eq!(answer.split_once(' ').map(|(_, rest)| rest), Some("served; the job ran\n"));
    }
}
