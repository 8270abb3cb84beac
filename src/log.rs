//! The server's log lines. Informational lines go to stdout and are silenced
//! by `--quiet`; errors go to stderr. A log line that cannot be written (a
//! closed or full pipe) is dropped: logging never takes the server down.

use std::fmt;
use std::io::{self, Write};

use crate::config;

/// Logs a per-connection line on stdout, unless `--quiet`.
pub fn info(args: fmt::Arguments) {
    if !config::opts().quiet {
        let _ = writeln!(io::stdout(), "{args}");
    }
}

/// Logs a line on stdout whatever `--quiet` says (startup, shutdown).
pub fn always(args: fmt::Arguments) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{args}");
    let _ = out.flush();
}

/// Logs an error on stderr.
pub fn error(args: fmt::Arguments) {
    let _ = writeln!(io::stderr(), "{args}");
}

/// An error's text for a message: the OS's words without std's
/// " (os error N)" suffix, e.g. "Connection refused".
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_drops_the_os_error_number() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(describe(&refused), "Connection refused");
        assert_eq!(describe(&io::Error::other("plain")), "plain");
    }
}
