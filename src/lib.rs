//! httpserver: the CS162 hw-http server. One library behind four executables,
//! one per concurrency mode of the homework.
//!
//! # The homework in this crate
//!
//! The Parts are numbered as in the course's C skeleton,
//! `hw-http/httpserver.c`. (The course's Rust port, `hw-http-rs`, numbers
//! them differently and has no proxy.)
//!
//! | homework part | file | function |
//! |---|---|---|
//! | 1. The server socket: bind and listen (all four servers) | `src/server.rs`, `src/sys.rs` | `run` → `Socket::listen`; then `serve_forever` accepts |
//! | 2. GET requests for files | `src/files.rs` | `handle_files_request`, `serve_file` |
//! | 3. GET requests for directories | `src/files.rs` | `serve_directory` |
//! | 4. The proxy | `src/proxy.rs` | `handle_proxy_request` |
//! | 5. forkserver | `src/modes.rs` | `fork_handler` |
//! | 6. threadserver | `src/modes.rs`, `src/threads.rs` | `Dispatch::dispatch`, `threads::run` |
//! | 7. poolserver | `src/modes.rs`, `src/wq.rs` | `init_thread_pool`, `handle_clients`, `wq_push`, `wq_pop` |
//!
//! | skeleton (C) | here (Rust) |
//! |---|---|
//! | `serve_forever` | `server::serve_forever` |
//! | `request_handler` (a function pointer) | `modes::RequestHandler`, chosen once in `server::run` |
//! | `handle_files_request` | `files::handle_files_request` |
//! | `serve_file` | `files::serve_file` |
//! | `serve_directory` | `files::serve_directory` |
//! | `http_format_href`, `http_format_index` | `files::listing_page`, `files::resolve` |
//! | `http_request_parse` | `request::read_head`, `request::parse_head` |
//! | `http_start_response`, `http_send_header`, `http_end_headers` | `response::response_head` |
//! | `http_get_response_message` | `response::Status::reason` |
//! | `http_get_mime_type` | `mime::content_type` |
//! | `handle_proxy_request` | `proxy::handle_proxy_request` |
//! | `init_thread_pool`, `handle_clients` | `modes::init_thread_pool`, `modes::handle_clients` |
//! | `wq_init`, `wq_push`, `wq_pop` | `wq::wq_init`, `wq::wq_push`, `wq::wq_pop` |
//! | `server_files_directory`, `server_proxy_hostname`, `server_proxy_port`, `server_port`, `num_threads` | the `OnceLock`s of the same names in `config` |
//!
//! threadserver gives each connection a thread of its own, but takes it from
//! a cache of idle threads (`threads`) when there is one: creating a thread
//! is most of the cost of a short connection.
//!
//! # Modules
//!
//! - `config`: the command line, the mode, and the skeleton's write-once globals.
//! - `server`: the listening socket, `serve_forever`, and shutting down.
//! - `modes`: the four modes, and refusing what there is no room for.
//! - `conns`: accepted connections, and the count of those open.
//! - `limits`: what the machine lets the process hold (fds, threads, memory
//!   maps), checked once at start.
//! - `wq`: poolserver's work queue (`wq_push`, `wq_pop`).
//! - `threads`: the cache of idle threads that connections run on.
//! - `stacks`: the stacks of finished threads, kept a while for new ones.
//! - `files`: files mode, `handle_files_request`.
//! - `root`: the served directory, and the one confined open of every path
//!   beneath it: `openat2(RESOLVE_BENEATH)`, so that no rename can swap a
//!   symlink or a FIFO in between a check and an open.
//! - `conditional`: what files mode adds to Part 2's `200`: `Last-Modified`
//!   and `ETag`, `304 Not Modified`, and `206` for a byte range (`ranges`
//!   parses the `Range` header).
//! - `dates`: HTTP dates and log times, computed without the C library's
//!   locks.
//! - `body`: sending a file's body: sendfile(2), its fallback, and files
//!   that change size while they are sent.
//! - `progress`: what counts as progress on a write to a peer, and files
//!   mode's send timeout.
//! - `proxy`: proxy mode, `handle_proxy_request`: Part 4's two-thread relay loop.
//! - `relay`: what makes that loop production-grade: shared state, aborts,
//!   timeouts, the bulk buffer, the move to a fresh thread.
//! - `request` and `response`: reading requests, writing responses.
//! - `mime`: content types.
//! - `log`: log lines, written without locks.
//! - `sync`: locking that outlives a panic.
//! - `sys`: the libc calls, and the only `unsafe` in the crate but `modes::fork_handler`'s two
//!   calls into `sys` (`fork`, and closing the listener the child inherits).
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod body;
mod conditional;
mod config;
mod conns;
mod dates;
mod files;
#[doc(hidden)]
pub mod fuzzing;
mod limits;
mod log;
mod mime;
mod modes;
mod progress;
mod proxy;
mod ranges;
mod relay;
mod request;
mod response;
mod root;
mod server;
mod stacks;
mod sync;
#[allow(unsafe_code)]
mod sys;
mod threads;
mod wq;

pub use config::Mode;
pub use server::main;
