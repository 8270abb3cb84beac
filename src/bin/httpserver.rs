//! `httpserver`: the basic server, which serves one connection at a time,
//! in its accept loop (`serve_forever`).

use std::process::ExitCode;

fn main() -> ExitCode {
    httpserver::main(httpserver::Mode::Basic)
}
