//! `poolserver`: a fixed pool of `--num-threads` workers fed by a work queue (homework part 7).

use std::process::ExitCode;

fn main() -> ExitCode {
    httpserver::main(httpserver::Mode::Pool)
}
