//! `threadserver`: a thread per connection (homework part 6).

use std::process::ExitCode;

fn main() -> ExitCode {
    httpserver::main(httpserver::Mode::Thread)
}
