//! The server's log lines. Informational lines go to stdout and are silenced
//! by `--quiet`; errors go to stderr.
//!
//! Each line is formatted first and then written with one `write(2)`
//! ([`sys::write_std`]), taking no lock. So a forked child can log whatever
//! the parent's threads were doing at the fork, and lines from many threads
//! and processes never interleave. A line that cannot be written (a closed
//! or full pipe) is dropped: logging never takes the server down.

use std::fmt::{self, Write as _};
use std::io;
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::dates::LogTime;
use crate::sys::{self, StdStream};

/// `--quiet`, as `main` set it.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences [`info`] lines. `main` calls it once, before serving.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether [`info`] lines are written: callers check it before they build
/// what a line needs, so that `--quiet` costs nothing per request.
pub fn info_enabled() -> bool {
    !QUIET.load(Ordering::Relaxed)
}

/// Logs a per-connection or per-request line on stdout, unless `--quiet`.
pub fn info(args: fmt::Arguments) {
    if info_enabled() {
        line(StdStream::Stdout, args);
    }
}

/// Logs a line on stdout that records a request or a connection, unless
/// `--quiet`: after the time it is written (UTC, to the millisecond, see
/// [`LogTime`]), as access logs have it.
pub fn timed(args: fmt::Arguments) {
    if info_enabled() {
        line(StdStream::Stdout, format_args!("{} {args}", LogTime(SystemTime::now())));
    }
}

/// Logs a line on stdout whatever `--quiet` says (startup, shutdown).
pub fn always(args: fmt::Arguments) {
    line(StdStream::Stdout, args);
}

/// Logs an error on stderr.
pub fn error(args: fmt::Arguments) {
    line(StdStream::Stderr, args);
}

fn line(stream: StdStream, args: fmt::Arguments) {
    let mut text = fmt::format(args);
    text.push('\n');
    let _ = sys::write_std(stream, text.as_bytes());
}

/// Replaces std's printer of panic messages, which locks stderr (and, with
/// `RUST_BACKTRACE`, a lock of its own): a forked child that panics must not
/// wait for a lock held by a thread that does not exist in it. The message
/// becomes one error line, written like every other. `main` installs it
/// before any thread starts.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        match info.location() {
            Some(at) => error(format_args!("panicked at {at}: {message}")),
            None => error(format_args!("panicked: {message}")),
        }
    }));
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

/// `bytes` as one printable line: valid UTF-8 is kept but for control
/// characters, and they and every byte that is not UTF-8 are written
/// `\xNN` (`\u{NNNN}` for wider ones). For error messages that quote what
/// a user typed: a CR or an escape sequence in an argument never reaches
/// the terminal raw.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(all) => (all, 0),
            Err(e) => {
                let bad = e.error_len().unwrap_or(rest.len() - e.valid_up_to());
                (std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(), bad)
            }
        };
        for c in valid.chars() {
            match c {
                c if !c.is_control() => out.push(c),
                c if (c as u32) < 0x100 => _ = write!(out, "\\x{:02x}", c as u32),
                c => _ = write!(out, "\\u{{{:04x}}}", c as u32),
            }
        }
        for b in &rest[valid.len()..valid.len() + bad] {
            _ = write!(out, "\\x{b:02x}");
        }
        rest = &rest[valid.len() + bad..];
    }
    out
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
