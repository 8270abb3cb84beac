//! The listening socket, the accept loop (`serve_forever`), and the four ways
//! of the homework to hand each accepted connection to its handler.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::config::{self, Command};
use crate::sys::{self, Forked, Socket};
use crate::wq::{self, WorkQueue};
use crate::{files, log, proxy};

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

/// An accepted client connection.
#[derive(Debug)]
pub struct Connection {
    pub sock: Socket,
    pub peer: SocketAddr,
}

const BACKLOG: i32 = 1024;
/// Stack of a thread that handles a connection. Handlers keep their buffers
/// on the heap; the resolver (getaddrinfo) is the deepest thing they call.
pub const HANDLER_STACK: usize = 256 * 1024;

/// Set once SIGINT or SIGTERM arrives; the accept loop then stops.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The whole program behind each executable: parse the command line, fill the
/// globals, listen, and serve until SIGINT or SIGTERM.
pub fn main(mode: Mode) -> ExitCode {
    let prog = mode.program_name();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match config::parse_args(mode, &args) {
        Ok(Command::Help) => {
            print!("{}", config::usage(mode));
            ExitCode::SUCCESS
        }
        Ok(Command::Run(cfg)) => {
            config::install(cfg);
            match run(mode) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error(format_args!("{prog}: {e}"));
                    ExitCode::FAILURE
                }
            }
        }
        Err(msg) => {
            eprint!("{prog}: {msg}\n\n{}", config::usage(mode));
            ExitCode::from(2)
        }
    }
}

/// Listens on `server_port`, announces the port, and serves until a shutdown
/// signal closes the listening socket.
fn run(mode: Mode) -> io::Result<()> {
    // Blocked in every thread from here on; only the signal thread takes them.
    sys::mask_shutdown_signals(true)?;
    sys::ignore_sigpipe()?;
    let dispatch = Dispatch::new(mode)?;
    let port = config::server_port.get().copied().unwrap_or(config::DEFAULT_PORT);
    let listener =
        Socket::listen_any(port, BACKLOG).map_err(|e| with_context(e, &format!("listen on port {port}")))?;
    let listener = Arc::new(listener);
    start_signal_thread(Arc::clone(&listener))?;
    let port = listener.local_addr()?.port();
    log::always(format_args!("Listening on port {port}..."));
    serve_forever(&listener, &dispatch);
    log::always(format_args!("Shutting down."));
    Ok(())
}

/// Waits for SIGINT or SIGTERM, then shuts the listening socket down, which
/// wakes the accept loop.
fn start_signal_thread(listener: Arc<Socket>) -> io::Result<()> {
    thread::Builder::new().name("signals".into()).stack_size(64 * 1024).spawn(move || {
        if sys::sigwait_shutdown().is_ok() {
            STOPPING.store(true, Ordering::SeqCst);
            let _ = listener.shutdown(Shutdown::Both);
        }
    })?;
    Ok(())
}

/// How the accept loop hands off a connection: the mode, with what it needs.
enum Dispatch {
    Basic,
    Fork,
    Thread,
    Pool(Arc<WorkQueue<Connection>>),
}

impl Dispatch {
    /// Prepares `mode`; for poolserver, this starts the workers.
    fn new(mode: Mode) -> io::Result<Dispatch> {
        Ok(match mode {
            Mode::Basic => Dispatch::Basic,
            Mode::Fork => {
                sys::reap_children_automatically()?;
                Dispatch::Fork
            }
            Mode::Thread => Dispatch::Thread,
            Mode::Pool => Dispatch::Pool(start_pool(config::num_threads.get().copied().unwrap_or(1))?),
        })
    }
}

/// The accept loop. Each connection goes to its handler the way `dispatch`
/// says. Returns once a shutdown signal has arrived.
fn serve_forever(listener: &Socket, dispatch: &Dispatch) {
    let mut backoff = Backoff::default();
    loop {
        let (sock, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(_) if STOPPING.load(Ordering::SeqCst) => return,
            Err(e) => {
                backoff.after_accept_error(&e);
                continue;
            }
        };
        backoff.reset();
        log::info(format_args!("Accepted connection from {} on port {}", peer.ip(), peer.port()));
        let conn = Connection { sock, peer };
        match dispatch {
            Dispatch::Basic => handle_connection(conn),
            Dispatch::Thread => spawn_handler(conn),
            Dispatch::Pool(queue) => wq::wq_push(queue, conn),
            Dispatch::Fork => match sys::fork() {
                Ok(Forked::Child) => {
                    sys::close_inherited(listener);
                    let _ = sys::mask_shutdown_signals(false);
                    handle_connection(conn);
                    sys::exit_child(0);
                }
                // The child has its own copy of the connection; drop ours.
                Ok(Forked::Parent) => drop(conn),
                Err(e) => log::error(format_args!("fork for {peer}: {e}")),
            },
        }
    }
}

/// Runs the handler of the configured mode (files or proxy) on `conn`. A
/// panic is contained to this connection, whose fds close as it unwinds.
pub fn handle_connection(conn: Connection) {
    let peer = conn.peer;
    let outcome = panic::catch_unwind(AssertUnwindSafe(move || {
        if config::files_root().is_some() {
            files::handle_files_request(conn);
        } else {
            proxy::handle_proxy_request(conn);
        }
    }));
    if outcome.is_err() {
        log::error(format_args!("handler for {peer} panicked; connection closed"));
    }
}

/// threadserver: a new thread for this connection. If no thread can be made,
/// the connection is closed and the server goes on.
fn spawn_handler(conn: Connection) {
    let peer = conn.peer;
    let spawned = thread::Builder::new().stack_size(HANDLER_STACK).spawn(move || handle_connection(conn));
    if let Err(e) = spawned {
        log::error(format_args!("no thread for {peer}: {e}"));
    }
}

/// poolserver: starts `n` workers, each popping connections off the queue
/// forever. They all exist before the first accept.
fn start_pool(n: usize) -> io::Result<Arc<WorkQueue<Connection>>> {
    let queue = Arc::new(wq::wq_init());
    for i in 0..n {
        let queue = Arc::clone(&queue);
        thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(HANDLER_STACK)
            .spawn(move || loop {
                handle_connection(wq::wq_pop(&queue));
            })
            .map_err(|e| with_context(e, &format!("start worker {i} of {n}")))?;
    }
    Ok(queue)
}

/// Keeps a failing accept loop from spinning: errors that mean "out of
/// resources" (EMFILE, ENFILE, ENOBUFS, ENOMEM) wait, doubling from 10 ms
/// up to 1 s, until an accept succeeds again. Errors that concern only the
/// one connection being accepted (ECONNABORTED and the like) are retried at once.
#[derive(Default)]
struct Backoff {
    delay: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn after_accept_error(&mut self, e: &io::Error) {
        let transient = matches!(
            e.raw_os_error(),
            Some(
                libc::ECONNABORTED
                    | libc::EPROTO
                    | libc::EPERM
                    | libc::ENETDOWN
                    | libc::EHOSTUNREACH
                    | libc::ENETUNREACH
            )
        );
        if transient {
            log::error(format_args!("accept: {e}"));
            return;
        }
        let delay = self.delay.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        log::error(format_args!("accept: {e}; retrying in {} ms", delay.as_millis()));
        self.delay = Some(delay);
        thread::sleep(delay);
    }

    fn reset(&mut self) {
        self.delay = None;
    }
}

/// Prefixes an error with what was being done, keeping its kind.
pub fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
