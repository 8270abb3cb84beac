//! `httpserver`: the basic server, one connection at a time (homework part 1).

use std::process::ExitCode;

fn main() -> ExitCode {
    httpserver::main(httpserver::Mode::Basic)
}
