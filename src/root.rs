//! The served directory, and the one way into it. Files mode opens every
//! file and directory it serves here, each once, in a lookup that cannot
//! leave the root; what it then serves is what that open returned. Parts 2
//! and 3 of the homework check a path and open it again by name; between the
//! two, anyone who can rename entries inside the root (an upload folder, a
//! deploy script) can put a symlink that leads out, or a FIFO, in its place.
//! This module closes that window:
//!
//! - **One confined open.** `openat2(2)` with `RESOLVE_BENEATH` resolves the
//!   path relative to the root's fd and fails if any step would leave it, so
//!   the check and the open are one system call. The type, the size and a
//!   listing then come from the fd alone.
//! - **Symlinks keep their meaning.** A link that leads inside the root is
//!   followed, whether relative or absolute. `RESOLVE_BENEATH` refuses every
//!   absolute link (and a relative one that climbs out and back in) with
//!   `EXDEV`, and a `..` in a link with `EAGAIN` while anything on the
//!   system is being renamed; such a path is opened normally instead, and
//!   then the fd itself says where it is (`/proc/self/fd/N`), which must lie
//!   under the root's own real path. A rename after the open cannot change
//!   what the fd is.
//! - **A fallback that is still confined.** Where `openat2` is missing
//!   (`ENOSYS`, before Linux 5.6) or forbidden (`EPERM`, a seccomp filter),
//!   every open takes that second way. So does every open when the
//!   environment variable `HTTPSERVER_NO_OPENAT2` is set, which the tests use
//!   to race the fallback too. Without `/proc`, the fallback refuses (403).
//! - **An open never blocks** (`O_NONBLOCK`): a FIFO swapped in is opened,
//!   seen by `fstat` to be no regular file, and refused.
//! - **The root is opened afresh for each request**, following its path, as
//!   nginx does: a `current` symlink repointed by a deploy is served at once.

use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys::{self, Dir, OpenFor};

/// Whether `openat2(2)` is used. Cleared by [`init`] when
/// `HTTPSERVER_NO_OPENAT2` is set, and at the first open that finds the call
/// missing or forbidden.
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// Reads `HTTPSERVER_NO_OPENAT2`. Called once at startup, before any thread
/// or fork: reading the environment takes a lock.
pub fn init() {
    if std::env::var_os("HTTPSERVER_NO_OPENAT2").is_some() {
        OPENAT2.store(false, Ordering::Relaxed);
    }
}

/// The served directory, opened for one request.
pub struct Root {
    fd: OwnedFd,
}

/// A file or directory opened beneath the root, and what `fstat` of it says.
pub struct Found {
    pub file: File,
    pub meta: Metadata,
}

impl Found {
    /// Where what was opened really is now, whatever a path leads to since.
    pub fn real_path(&self) -> io::Result<PathBuf> {
        real_path(&self.file)
    }
}

impl Root {
    /// Opens the directory at `path`, following it afresh.
    pub fn open(path: &Path) -> io::Result<Root> {
        Ok(Root { fd: sys::open_dir(path)? })
    }

    /// Opens `rel`, a relative path of plain names (`.` for the root
    /// itself), beneath the root, to read.
    pub fn find(&self, rel: &Path) -> io::Result<Found> {
        found(self.open_beneath(self.fd.as_fd(), rel, OpenFor::Reading)?)
    }

    /// Opens `name` inside `dir`, a directory found beneath the root, to read.
    pub fn find_in(&self, dir: &Found, name: &Path) -> io::Result<Found> {
        found(self.open_beneath(dir.file.as_fd(), name, OpenFor::Reading)?)
    }

    /// The entries of `dir`, a directory found beneath the root, each with
    /// whether it is (or, for a symlink, leads inside the root to) a
    /// directory. Read from `dir`'s fd, never from a path.
    pub fn list(&self, dir: Found) -> io::Result<Vec<(OsString, bool)>> {
        let mut stream = Dir::from_fd(OwnedFd::from(dir.file))?;
        let entries = stream.entries()?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let is_dir = e.is_dir.unwrap_or_else(|| self.leads_to_dir(stream.fd(), &e.name));
                (e.name, is_dir)
            })
            .collect())
    }

    /// Whether `name` in `dir` leads, without leaving the root, to a directory.
    fn leads_to_dir(&self, dir: BorrowedFd<'_>, name: &OsString) -> bool {
        let looked = self.open_beneath(dir, Path::new(name), OpenFor::Looking);
        looked.and_then(|fd| File::from(fd).metadata()).is_ok_and(|m| m.is_dir())
    }

    /// The one confined open: `rel` relative to `dir`, which lies beneath
    /// the root. Fails with `PermissionDenied` if it would lead outside.
    fn open_beneath(&self, dir: BorrowedFd<'_>, rel: &Path, how: OpenFor) -> io::Result<OwnedFd> {
        if OPENAT2.load(Ordering::Relaxed) {
            match sys::openat2_beneath(dir, rel, how) {
                // An absolute symlink, or a relative one that climbs out of
                // `dir` (EXDEV): it may still lead inside the root. Or a `..`
                // in a symlink while something on the system was renamed
                // (EAGAIN), which the kernel will not vouch for. Both are
                // checked below, by where the opened fd is.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EAGAIN)) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                    OPENAT2.store(false, Ordering::Relaxed);
                }
                done => return done.map_err(socket_refused),
            }
        }
        let fd = sys::openat(dir, rel, how).map_err(socket_refused)?;
        let (real, root) = (real_path(&fd)?, real_path(&self.fd)?);
        if !real.starts_with(&root) {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "outside the served directory"));
        }
        Ok(fd)
    }
}

/// What open(2) says of a socket (`ENXIO`) as what it means here: the name
/// is there, and never served.
fn socket_refused(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENXIO) => io::Error::new(io::ErrorKind::PermissionDenied, "a socket is never served"),
        _ => e,
    }
}

fn found(fd: OwnedFd) -> io::Result<Found> {
    let file = File::from(fd);
    let meta = file.metadata()?;
    Ok(Found { file, meta })
}

/// Where an open fd really is now: its `/proc/self/fd` link. Without `/proc`,
/// an error, so that nothing is served unchecked.
fn real_path(fd: &impl AsRawFd) -> io::Result<PathBuf> {
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::new(io::ErrorKind::PermissionDenied, "cannot tell where an opened file is"))
}
