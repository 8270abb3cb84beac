//! httpserver: the CS162 hw-http server. One library behind four executables,
//! one per concurrency mode of the homework (see [`server::Mode`]).
//!
//! - [`config`]: the command line and the skeleton's write-once globals.
//! - [`server`]: the listening socket, `serve_forever`, and the four modes.
//! - [`wq`]: poolserver's work queue (`wq_push`, `wq_pop`).
//! - [`files`]: files mode, `handle_files_request`.
//! - [`proxy`]: proxy mode, `handle_proxy_request`: the two-thread relay.
//! - [`request`] and [`response`]: reading requests, writing responses.
//! - [`mime`]: content types.
//! - [`sys`]: the libc calls, and the only `unsafe` in the crate.

pub mod config;
pub mod files;
pub mod log;
pub mod mime;
pub mod proxy;
pub mod request;
pub mod response;
pub mod server;
pub mod sys;
pub mod wq;

pub use server::{main, Mode};
