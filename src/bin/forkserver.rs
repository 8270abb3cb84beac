//! `forkserver`: a child process per connection (homework part 5).

use std::process::ExitCode;

fn main() -> ExitCode {
    httpserver::main(httpserver::Mode::Fork)
}
