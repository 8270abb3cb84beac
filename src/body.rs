//! Sending a file's body, for `serve_file`. The homework's loop reads the
//! file into a buffer and writes the buffer to the socket, which copies
//! every byte twice; this module adds what a real server does instead:
//!
//! - **sendfile(2).** The kernel sends the file's pages from the page cache
//!   to the socket itself: no copy through user space, one call for the
//!   whole body (cut short only when the client is slow, and then resumed).
//!   Where the kernel refuses sendfile for a file (`EINVAL`, `ENOSYS`:
//!   file systems whose files cannot be spliced), or where `--no-sendfile`
//!   says so, the body goes through the read/write loop.
//! - **Full segments.** Every connection is corked from the start (files
//!   mode's listener passes `TCP_CORK` on; see `files::prepare_listener`),
//!   so the head and the body fill segments together, and the last one
//!   leaves with the FIN when the connection closes, right after.
//! - **A file that changes while it is sent.** The head has announced a
//!   length (of the file, or of a range of it). A file that grows is sent
//!   up to that length; one that shrinks
//!   ends the response short with an error that says so, so the connection
//!   closes and the log line tells why. A body is never padded, and never
//!   waited for.
//!
//! Both paths count the body bytes that left, for the log line, whatever
//! ends them: the send timeout (kept by `progress::Sender`), a client that
//! goes away, or the file.

use std::fs::File;
use std::io;
use std::ops::Range;

use crate::progress::{Sender, NOTSENT_LOWAT};
use crate::sys;

/// The read/write loop moves a file in chunks of this size.
const CHUNK: usize = 64 * 1024;
/// The most one sendfile(2) call moves (the kernel's own limit).
const MAX_SENDFILE: u64 = 0x7fff_f000;

/// Sends `head`, then the bytes `body` of `file` (the whole file, or the
/// range a `206` announced), counting in `sent` the body bytes that went
/// out. With `use_sendfile`, the body goes by sendfile(2) where the kernel
/// allows it.
pub fn send_file(
    out: &mut Sender,
    file: &File,
    head: &[u8],
    body: Range<u64>,
    use_sendfile: bool,
    sent: &mut u64,
) -> io::Result<()> {
    let len = body.end - body.start;
    if use_sendfile && len > 0 {
        if len > u64::from(NOTSENT_LOWAT) {
            let _ = out.sock.set_notsent_lowat(NOTSENT_LOWAT);
        }
        out.write_all(head)?;
        match sendfile_all(out, file, &body, sent) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {}
            done => return done,
        }
        return copy_all(out, file, &[], &body, sent);
    }
    copy_all(out, file, head, &body, sent)
}

/// The body by sendfile(2), from where `sent` stands to the end of `body`.
fn sendfile_all(out: &mut Sender, file: &File, body: &Range<u64>, sent: &mut u64) -> io::Result<()> {
    let mut offset = body.start + *sent;
    while offset < body.end {
        let count = (body.end - offset).min(MAX_SENDFILE) as usize;
        let n = out.sendfile(file, &mut offset, count)?;
        if n == 0 {
            return Err(shrank(offset - body.start, body.end - body.start));
        }
        *sent = offset - body.start;
    }
    Ok(())
}

/// The body by the homework's loop: read a chunk at the next offset, write
/// it all. `head` (if not empty) goes out in the first write, so that a
/// small file is one write and, on the wire, one segment.
fn copy_all(out: &mut Sender, file: &File, head: &[u8], body: &Range<u64>, sent: &mut u64) -> io::Result<()> {
    let len = body.end - body.start;
    let first = (len - *sent).min(CHUNK as u64) as usize;
    let mut buf = vec![0u8; head.len() + first];
    buf[..head.len()].copy_from_slice(head);
    let mut filled = head.len();
    loop {
        let want = (len - *sent).min((buf.len() - filled) as u64) as usize;
        let at = body.start + *sent;
        let n = if want == 0 { 0 } else { sys::pread(file, &mut buf[filled..filled + want], at)? };
        if filled + n > 0 {
            out.write_all(&buf[..filled + n])?;
            *sent += n as u64;
        }
        if *sent == len {
            return Ok(());
        }
        if n == 0 {
            return Err(shrank(*sent, len));
        }
        filled = 0;
    }
}

/// The error of a file that ended after `sent` of the `len` body bytes its
/// head announced.
fn shrank(sent: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the file ended after {sent} of the {len} bytes announced"),
    )
}
