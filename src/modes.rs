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

use crate::conns::{Slot, OPEN_CONNECTIONS};
use crate::response::{self, Status};
use crate::sys::{self, Forked, Socket};
use crate::wq::{self, WorkQueue};
use crate::{config, files, log, proxy, threads};

/// The concurrency model, one per executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `httpserver`: each connection is handled in the accept loop, one at a time.
    Basic,
    /// `forkserver`: a child process per connection.
    Fork,
    /// `threadserver`: a new thread per connection.
    Thread,
    /// `poolserver`: `--num-threads` workers fed by a work queue.
    Pool,
}

impl Mode {
    pub fn program_name(self) -> &'static str {
        match self {
            Mode::Basic => "httpserver",
            Mode::Fork => "forkserver",
            Mode::Thread => "threadserver",
            Mode::Pool => "poolserver",
        }
    }
}

/// An accepted client connection, and its place in the count of open
/// connections (none if it is being refused for want of room).
#[derive(Debug)]
pub struct Connection {
    pub sock: Socket,
    pub peer: SocketAddr,
    pub slot: Option<Slot>,
}

/// How the accept loop hands off a connection: the mode, with what it needs.
pub enum Dispatch {
    Basic,
    Fork { refuser: Refuser },
    Thread { refuser: Refuser },
    Pool(Arc<WorkQueue<Connection>>),
}

impl Dispatch {
    /// Prepares `mode`: poolserver's workers, forkserver's reaper, and the
    /// thread that refuses connections. All exist before the first accept.
    pub fn new(mode: Mode) -> io::Result<Dispatch> {
        Ok(match mode {
            Mode::Basic => Dispatch::Basic,
            Mode::Fork => {
                start_reaper()?;
                Dispatch::Fork { refuser: Refuser::new()? }
            }
            Mode::Thread => Dispatch::Thread { refuser: Refuser::new()? },
            Mode::Pool => Dispatch::Pool(start_pool(config::num_threads.get().copied().unwrap_or(1))?),
        })
    }

    /// The most connections this mode serves at once, if it has a limit.
    fn max_connections(&self) -> Option<usize> {
        match self {
            Dispatch::Fork { .. } | Dispatch::Thread { .. } => Some(config::opts().max_connections),
            Dispatch::Basic | Dispatch::Pool(_) => None,
        }
    }

    /// Hands `sock` to its handler, the way this mode does.
    pub fn dispatch(&self, listener: &Socket, sock: Socket, peer: SocketAddr) {
        let Some(slot) = OPEN_CONNECTIONS.try_acquire(self.max_connections()) else {
            let conn = Connection { sock, peer, slot: None };
            if let Dispatch::Fork { refuser } | Dispatch::Thread { refuser } = self {
                refuser.refuse(conn, "too many connections");
            }
            return;
        };
        let conn = Connection { sock, peer, slot: Some(slot) };
        match self {
            Dispatch::Basic => handle_connection(conn),
            Dispatch::Thread { refuser } => {
                if let Err((conn, e)) = threads::run(conn, handle_connection) {
                    refuser.refuse(conn, &format!("no thread: {}", log::describe(&e)));
                }
            }
            Dispatch::Pool(queue) => wq::wq_push(queue, conn),
            Dispatch::Fork { refuser } => fork_handler(listener, conn, refuser),
        }
    }
}

/// Runs the handler of the configured mode (files or proxy) on `conn`. A
/// panic is contained to this connection: its fds close and its slot is
/// released as it unwinds, and the process goes on.
pub fn handle_connection(conn: Connection) {
    let handler = if config::files_root().is_some() {
        files::handle_files_request
    } else {
        proxy::handle_proxy_request
    };
    run_guarded(conn, handler);
}

/// Runs `handler` on `conn`, catching a panic. Unwinding drops the
/// connection, which closes its fds and releases its slot.
fn run_guarded(conn: Connection, handler: fn(Connection)) {
    let peer = conn.peer;
    if panic::catch_unwind(AssertUnwindSafe(move || handler(conn))).is_err() {
        log::error(format_args!("handler for {peer} panicked; connection closed"));
    }
}

/// forkserver: a child process handles the connection and exits; the parent
/// closes its copy. The child's slot is released by the reaper.
fn fork_handler(listener: &Socket, conn: Connection, refuser: &Refuser) {
    match sys::fork() {
        Ok(Forked::Child) => {
            sys::close_inherited(listener);
            let _ = sys::terminate_with_parent();
            let _ = sys::mask_shutdown_signals(false);
            handle_connection(conn);
            sys::exit_child(0);
        }
        Ok(Forked::Parent) => {
            let Connection { sock, slot, .. } = conn;
            drop(sock);
            if let Some(slot) = slot {
                slot.hand_to_child();
            }
        }
        Err(e) => refuser.refuse(conn, &format!("no process: {}", log::describe(&e))),
    }
}

/// forkserver's reaper: waits for children to exit, reaps them so that none
/// lingers as a zombie, and releases the slot of each.
fn start_reaper() -> io::Result<()> {
    thread::Builder::new().name("reaper".into()).stack_size(64 * 1024).spawn(|| loop {
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

/// poolserver: starts `n` workers, each popping connections off the queue
/// forever.
fn start_pool(n: usize) -> io::Result<Arc<WorkQueue<Connection>>> {
    let queue = Arc::new(wq::wq_init());
    for i in 0..n {
        let queue = Arc::clone(&queue);
        thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(threads::STACK)
            .spawn(move || loop {
                handle_connection(wq::wq_pop(&queue));
            })
            .map_err(|e| {
                io::Error::new(e.kind(), format!("start worker {i} of {n}: {}", log::describe(&e)))
            })?;
    }
    Ok(queue)
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
    fn new() -> io::Result<Refuser> {
        if config::files_root().is_none() {
            return Ok(Refuser { queue: None });
        }
        let (queue, refused) = mpsc::sync_channel::<Connection>(REFUSALS_QUEUED);
        thread::Builder::new().name("refuser".into()).stack_size(64 * 1024).spawn(move || {
            for conn in refused {
                let detail = "The server is at its limit of connections. Try again shortly.";
                let _ = response::send_error(&conn.sock, Status::ServiceUnavailable, detail, &[], false);
                response::lingering_close(&conn.sock);
            }
        })?;
        Ok(Refuser { queue: Some(queue) })
    }

    fn refuse(&self, conn: Connection, why: &str) {
        log::info(format_args!("refused {}: {why}", conn.peer));
        if let Some(queue) = &self.queue {
            // A full queue means a flood: those beyond it are just closed.
            let _ = queue.try_send(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_is_contained_and_its_fds_closed() {
        let sock = Socket::listen_any(0, 8).unwrap();
        let port = sock.local_addr().unwrap().port();
        let conn = Connection { sock, peer: "127.0.0.1:1".parse().unwrap(), slot: None };
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        run_guarded(conn, |_conn| panic!("a handler bug"));
        // The socket was closed as the panic unwound: nothing listens there now.
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
