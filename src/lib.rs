//! httpserver: the CS162 hw-http server. One library behind four executables,
//! one per concurrency mode of the homework (see [`server::Mode`]).
//!
//! - [`config`]: the command line and the skeleton's write-once globals.
//! - [`server`]: the listening socket, `serve_forever`, and shutting down.
//! - [`modes`]: the four modes, and refusing what there is no room for.
//! - [`conns`]: the count of open connections (`--max-connections`, shutdown).
//! - [`wq`]: poolserver's work queue (`wq_push`, `wq_pop`).
//! - [`threads`]: the cache of idle threads that connections run on.
//! - [`files`]: files mode, `handle_files_request`.
//! - [`proxy`]: proxy mode, `handle_proxy_request`: the two-thread relay.
//! - [`request`] and [`response`]: reading requests, writing responses.
//! - [`mime`]: content types.
//! - [`sys`]: the libc calls, and the only `unsafe` in the crate.

pub mod config;
pub mod conns;
pub mod files;
#[cfg(test)]
mod fuzz;
pub mod log;
pub mod mime;
pub mod modes;
pub mod proxy;
pub mod request;
pub mod response;
pub mod server;
pub mod sync;
pub mod sys;
pub mod threads;
pub mod wq;

pub use config::Mode;
pub use server::main;
