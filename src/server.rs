//! The listening socket, the accept loop (`serve_forever`), and shutting down.

use std::io;
use std::net::Shutdown;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{self, Command, Mode};
use crate::conns::OPEN_CONNECTIONS;
use crate::modes::{Dispatch, RequestHandler};
use crate::sys::{self, Socket};
use crate::{files, limits, log, progress, proxy, relay, root, stacks, threads};

const BACKLOG: i32 = 1024;

/// How long a shutdown waits for cut-off responses to be logged: a handler
/// blocked on a stalled client sees the cut within about 2 s (see
/// `progress::cut_off_all`).
const CUT_OFF_WAIT: Duration = Duration::from_secs(3);

/// Set once SIGINT or SIGTERM arrives; the accept loop then stops.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The whole program behind each executable: parse the command line, fill the
/// globals, listen, and serve until SIGINT or SIGTERM.
pub fn main(mode: Mode) -> ExitCode {
    let prog = mode.program_name();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match config::parse_args(mode, &args) {
        Ok(Command::Help) => {
            print!("{}", config::usage(mode));
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("{prog} {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Run(mut cfg)) => {
            log::set_quiet(cfg.settings.quiet);
            log::install_panic_hook();
            for line in limits::fit(mode, &mut cfg, &limits::read_machine()) {
                log::error(format_args!("{prog}: {line}"));
            }
            config::install(cfg);
            match run(mode) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error(format_args!("{prog}: {}", log::describe(&e)));
                    ExitCode::FAILURE
                }
            }
        }
        Err(msg) => {
            eprintln!("{prog}: {msg}\nTry '{prog} --help'.");
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
    // The skeleton's `request_handler`: chosen once, from the mode of serving.
    let files_mode = config::files_root().is_some();
    if files_mode {
        root::init();
    }
    let request_handler: RequestHandler =
        if files_mode { files::handle_files_request } else { proxy::handle_proxy_request };
    let dispatch = Dispatch::new(mode, request_handler, files_mode)?;
    let port = config::server_port.get().copied().unwrap_or(config::DEFAULT_PORT);
    let bind = config::settings().bind;
    let listener = Socket::listen(bind, port, BACKLOG).map_err(|e| {
        let on = bind.map(|ip| format!("{ip} ")).unwrap_or_default();
        io::Error::new(e.kind(), format!("listen on {on}port {port}: {}", log::describe(&e)))
    })?;
    if files_mode {
        files::prepare_listener(&listener)?;
    } else {
        relay::prepare_socket(&listener, config::settings())?;
    }
    let listener = Arc::new(listener);
    // A forked child's response is its own process's, out of reach.
    let cut_off_responses = files_mode && mode != Mode::Fork;
    let signals = start_signal_thread(Arc::clone(&listener), cut_off_responses)?;
    let port = listener.local_addr()?.port();
    log::always(format_args!("Listening on port {port}..."));
    serve_forever(&listener, &dispatch);
    // The signal thread ends the process once open connections are done.
    let _ = signals.join();
    Ok(())
}

/// Waits for SIGINT or SIGTERM. Then it stops the server: it shuts the
/// listening socket down (no new connections; the accept loop wakes and
/// ends), lets open connections finish for up to `--shutdown-timeout`, and
/// exits with status 0. A second signal meanwhile exits at once. At the end
/// of the grace period, files mode's responses still being sent are cut
/// off first (with `cut_off_responses`), so that each gets its log line:
/// that takes up to [`CUT_OFF_WAIT`] more.
fn start_signal_thread(listener: Arc<Socket>, cut_off_responses: bool) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name("signals".into()).stack_size(threads::HELPER_STACK).spawn(move || {
        // Between signals, every `stacks::KEEP`: unmap the stacks that no
        // thread has wanted for that long.
        loop {
            match sys::sigtimedwait_shutdown(stacks::KEEP) {
                Ok(true) => break,
                Ok(false) => stacks::trim(),
                Err(_) => return,
            }
        }
        STOPPING.store(true, Ordering::SeqCst);
        let _ = listener.shutdown(Shutdown::Both);
        let grace = config::settings().shutdown_timeout;
        let open = OPEN_CONNECTIONS.open();
        if open > 0 {
            log::always(format_args!(
                "Shutting down: waiting up to {} s for {open} open connection(s)...",
                grace.as_secs()
            ));
        }
        let deadline = Instant::now() + grace;
        loop {
            let step = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            if OPEN_CONNECTIONS.wait_for_none(Instant::now() + step) {
                break;
            }
            let second_signal = sys::sigtimedwait_shutdown(Duration::ZERO).unwrap_or(false);
            if Instant::now() >= deadline || second_signal {
                log::always(format_args!(
                    "{} connection(s) still open; closing them.",
                    OPEN_CONNECTIONS.open()
                ));
                if cut_off_responses && !second_signal {
                    // Each handler sees the cut off within a second, and
                    // logs its response as cut short before it closes.
                    progress::cut_off_all();
                    OPEN_CONNECTIONS.wait_for_none(Instant::now() + CUT_OFF_WAIT);
                }
                break;
            }
        }
        log::always(format_args!("Shutting down."));
        std::process::exit(0);
    })
}

/// The accept loop. Each connection goes to its handler the way `dispatch`
/// says. Returns once a shutdown signal has arrived.
fn serve_forever(listener: &Socket, dispatch: &Dispatch) {
    let mut backoff = Backoff::default();
    loop {
        let (sock, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(_) if STOPPING.load(Ordering::SeqCst) => return,
            // In files mode the listener's SO_RCVTIMEO (there for the sockets
            // it passes it on to) also bounds accept(): no one came meanwhile.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                backoff.after_accept_error(&e);
                continue;
            }
        };
        backoff.reset();
        log::info(format_args!("Accepted connection from {} on port {}", peer.ip(), peer.port()));
        dispatch.dispatch(listener, sock, peer);
    }
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
            log::error(format_args!("accept: {}", log::describe(e)));
            return;
        }
        let delay = self.delay.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        // One line per doubling, not per failure: a starved server stays readable.
        if self.delay != Some(delay) {
            log::error(format_args!("accept: {}; retrying in {} ms", log::describe(e), delay.as_millis()));
        }
        self.delay = Some(delay);
        thread::sleep(delay);
    }

    fn reset(&mut self) {
        if self.delay.take().is_some() {
            log::error(format_args!("accept: working again"));
        }
    }
}
