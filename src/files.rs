//! Files mode (`--files DIR`): `handle_files_request` answers one HTTP/1.0
//! GET per connection with a file, a directory's `index.html`, a directory
//! listing, or an error page, and then closes the connection.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::conditional::{self, Answer, Validators};
use crate::conns::Connection;
use crate::progress::{self, Sender};
use crate::request::{self, Conditions, Request};
use crate::response::{self, html_escape, percent_encode, Status};
use crate::root::{Found, Root};
use crate::sys::{self, Armed, Socket};
use crate::{body, config, dates, log, mime};

/// What a request resolves to: a file opened beneath the root, with the
/// type its name asked for; or a directory opened there, to list.
enum Resource {
    File {
        found: Found,
        content_type: &'static str,
    },
    Listing {
        root: Root,
        dir: Found,
        segments: Vec<OsString>,
    },
    /// A directory with an `index.html`, asked for without its slash: the
    /// same path with it (see [`resolve`]).
    MovedTo {
        location: String,
    },
}

/// A request as it was read: the bytes of its head, what they parse to,
/// and whether nothing of the request is left unread.
struct Incoming {
    received: Vec<u8>,
    request: Result<Request, Status>,
    all_read: bool,
}

/// What went out in answer, for the log line.
struct Sent {
    status: Status,
    body_bytes: u64,
}

/// Sets on files mode's listening socket what every connection needs, once:
/// Linux copies these options to each socket `accept()` returns, so they
/// cost no call per connection.
///
/// - `SO_RCVTIMEO`, `--request-timeout`: bounds the first read of a request
///   head (a head that comes in pieces sets what is left for the next).
/// - `SO_SNDTIMEO`, [`progress::write_check`] of `--send-timeout`: brings a
///   blocked write back to be judged against the send timeout.
/// - `TCP_CORK`: only full segments leave until the connection is closed or
///   shut down, and the rest then goes with the FIN. Each connection
///   carries one response and is closed right after it, so this is the cork
///   around the response that nginx's `tcp_nopush` sets and clears with two
///   calls: a head shares its segment with the body, and a small response
///   and the FIN are one segment. Nothing waits for the cork's 200 ms: the
///   close comes at once (the log line is written after it).
/// - `TCP_DEFER_ACCEPT`, 1 s (nginx's `deferred`): `accept()` returns a
///   connection once its request has begun to arrive, so the handler's
///   first read does not block, and a thread is not woken twice for one
///   connection. A client that sends nothing is accepted after a second,
///   and then has `--request-timeout` as before. Files mode only: in
///   proxy mode the upstream may be the one to speak first.
///
/// `accept()` honours `SO_RCVTIMEO` too; the accept loop takes its
/// `EAGAIN` as "no one came".
pub fn prepare_listener(listener: &Socket) -> io::Result<()> {
    let settings = config::settings();
    listener.set_read_timeout(Some(settings.request_timeout))?;
    listener.set_write_timeout(settings.send_timeout.map(progress::write_check))?;
    listener.set_cork(true)?;
    listener.set_defer_accept(DEFER_ACCEPT)
}

/// How long a connection that has sent nothing waits before `accept()`
/// returns it anyway (see [`prepare_listener`]).
const DEFER_ACCEPT: Duration = Duration::from_secs(1);

/// Answers one request on `conn` from the served directory, logs it, and
/// closes the connection. `GET` gets the resource, `HEAD` the same head with
/// no body.
pub fn handle_files_request(conn: Connection) {
    let Some(root) = config::files_root() else { return };
    let started = Instant::now();
    let sock = &conn.sock;
    let incoming = read_request(sock);
    let head_only = request::is_head_request(&incoming.received);
    let mut sent = Sent { status: Status::Ok, body_bytes: 0 };
    // The response is dropped once the client has made no progress for
    // `--send-timeout` (the socket's SO_SNDTIMEO, from the listener, makes
    // a blocked write come back to be judged).
    let out = &mut Sender::new(sock, config::settings().send_timeout, Armed::ByListener);
    let result = match incoming.request.and_then(|req| Ok((resolve(root, &req)?, req))) {
        Ok((Resource::File { found, content_type }, req)) => {
            serve_file(out, found, content_type, &req.conditions, head_only, &mut sent)
        }
        Ok((Resource::Listing { root, dir, segments }, _)) => {
            serve_directory(out, &root, dir, &segments, head_only, &mut sent)
        }
        Ok((Resource::MovedTo { location }, _)) => send_moved(out, &location, head_only, &mut sent),
        Err(status) => send_status(out, status, head_only, &mut sent),
    };
    let took = started.elapsed();
    // With nothing left unread, closing cannot reset the connection: the
    // response goes out, then FIN. Otherwise, drain before closing. A
    // response that could not be sent has nothing left to protect, and a
    // client that stopped reading is dropped with a reset: it is told the
    // response was cut, and the kernel keeps nothing queued for it.
    match &result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => _ = sock.abort(),
        Ok(()) if !incoming.all_read => response::lingering_close(sock),
        _ => {}
    }
    // The client has its answer and its end of stream before the log line
    // is written: a slow terminal or pipe on stdout never holds a client.
    let Connection { sock, peer, slot, .. } = conn;
    drop(sock);
    if log::info_enabled() {
        log_request(peer, &incoming.received, &sent, took, &result);
    }
    drop(slot);
}

/// The access-log line of one request: client, request line (escaped),
/// status, body bytes sent, time taken, and why a response was cut short.
fn log_request(peer: SocketAddr, received: &[u8], sent: &Sent, took: Duration, result: &io::Result<()>) {
    let cut_short = match result {
        Ok(()) => String::new(),
        // The only way a write to a blocking socket would block: SO_SNDTIMEO.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => " (not sent in full: send timeout)".to_string(),
        Err(e) => format!(" (not sent in full: {})", log::describe(e)),
    };
    log::timed(format_args!(
        "{} \"{}\" {} {} {:.1} ms{cut_short}",
        peer,
        request::loggable_request_line(received),
        sent.status.code(),
        sent.body_bytes,
        took.as_secs_f64() * 1000.0,
    ));
}

/// Reads and parses the request head. Only GET and HEAD are served; any
/// other method is a 405.
fn read_request(sock: &Socket) -> Incoming {
    let head = match request::read_head(sock, config::settings().request_timeout, Armed::ByListener) {
        Ok(head) => head,
        Err(bad) => return Incoming { received: bad.received, request: Err(bad.status), all_read: false },
    };
    let parsed = request::parse_head(&head.bytes);
    let all_read = !head.more_may_follow && parsed.as_ref().is_ok_and(|req| !req.has_body);
    let request = parsed.and_then(|req| match req.method.as_str() {
        "GET" | "HEAD" => Ok(req),
        _ => Err(Status::MethodNotAllowed),
    });
    Incoming { received: head.bytes, request, all_read }
}

/// Maps the request target to something under `root`: a file, a directory's
/// `index.html` (the skeleton's `http_format_index`), or a directory to list.
/// A directory with an `index.html` asked for without a slash after its
/// name moves to the path with the slash (`301`), as nginx and python do, so
/// that the page's relative links resolve inside the directory; a listing
/// needs no move, as its `<base>` says where it is.
/// The path is decoded and stripped of `.` and `..` first; then it is opened
/// once, beneath the root (see [`Root`]): a path that leads outside is a 403,
/// and what is served is what that open found. A directory's `index.html` is
/// opened the same way, beneath the directory. FIFOs, sockets and devices are
/// a 403. A file asked for with a slash after its name is a 404, as the
/// skeleton's `stat()` of it fails. The `Content-Type` comes from the name
/// asked for, as the skeleton's `http_get_mime_type` takes it, not from where
/// a symlink leads.
fn resolve(root: &Path, req: &Request) -> Result<Resource, Status> {
    let path = request::decode_path(&req.target)?;
    let root = Root::open(root).map_err(|e| status_for(&e))?;
    let rel: PathBuf =
        if path.segments.is_empty() { PathBuf::from(".") } else { path.segments.iter().collect() };
    let found = root.find(&rel).map_err(|e| status_for(&e))?;
    if found.meta.is_dir() {
        let index = root.find_in(&found, Path::new(INDEX)).map_err(|e| status_for(&e));
        return match index {
            Ok(index) if index.meta.is_file() && !path.dir_only => {
                Ok(Resource::MovedTo { location: with_slash(&path.segments, &req.target) })
            }
            Ok(index) if index.meta.is_file() => {
                Ok(Resource::File { found: index, content_type: mime::content_type(Path::new(INDEX)) })
            }
            Err(status) if status != Status::NotFound => Err(status),
            _ => Ok(Resource::Listing { root, dir: found, segments: path.segments }),
        };
    }
    if !found.meta.is_file() {
        // FIFOs, sockets and devices are never read: a read could block forever.
        return Err(Status::Forbidden);
    }
    if path.dir_only {
        return Err(Status::NotFound);
    }
    Ok(Resource::File { found, content_type: mime::content_type(&rel) })
}

/// [`resolve`], for `fuzzing` and the tests: the file or directory opened.
pub(crate) fn resolve_to_found(root: &Path, req: &Request) -> Result<Found, Status> {
    match resolve(root, req)? {
        Resource::File { found, .. } | Resource::Listing { dir: found, .. } => Ok(found),
        Resource::MovedTo { .. } => Err(Status::MovedPermanently),
    }
}

/// Where a directory asked for without its slash moves: its path rebuilt
/// from `segments` ([`directory_path`]), and the query of `target`, if any.
fn with_slash(segments: &[OsString], target: &str) -> String {
    let mut location = directory_path(segments);
    let after_path = &target[target.find(['?', '#']).unwrap_or(target.len())..];
    location.push_str(after_path.split('#').next().unwrap_or(""));
    location
}

/// The directory at `segments` as an absolute path with a slash at its
/// end, each name percent-encoded: `/docs/a%20b/`, and `/` for the root.
/// It begins with exactly one `/`, so no client reads it as another host.
fn directory_path(segments: &[OsString]) -> String {
    let mut path = String::from("/");
    for s in segments {
        path.push_str(&percent_encode(s.as_bytes()));
        path.push('/');
    }
    path
}

/// The file a directory is served as, when it holds one.
const INDEX: &str = "index.html";

/// The status of an open that failed with `e`. Out of fds or memory, the
/// file may well be there: `503` (a client may try again, and no cache
/// keeps it as a `404`), and the reason goes to the error log.
fn status_for(e: &io::Error) -> Status {
    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)) {
        log::error(format_args!("open beneath the served directory: {}; answered 503", log::describe(e)));
        return Status::ServiceUnavailable;
    }
    match e.kind() {
        io::ErrorKind::PermissionDenied => Status::Forbidden,
        _ => Status::NotFound,
    }
}

/// What a `503` says, and when to ask again.
pub const BUSY: &str = "The server is out of resources for the moment. Try again shortly.";
pub const RETRY_AFTER: (&str, &str) = ("Retry-After", "1");

/// An error page for `status`.
fn send_status(out: &mut Sender, status: Status, head_only: bool, sent: &mut Sent) -> io::Result<()> {
    let (detail, extra): (&str, &[(&str, &str)]) = match status {
        Status::BadRequest => ("The request could not be understood.", &[]),
        Status::Forbidden => ("You may not read that path.", &[]),
        Status::NotFound => ("Nothing is served at that path.", &[]),
        Status::MethodNotAllowed => ("Only GET and HEAD are served here.", &[("Allow", "GET, HEAD")]),
        Status::RequestTimeout => ("The request head did not arrive in time.", &[]),
        Status::ServiceUnavailable => (BUSY, &[RETRY_AFTER]),
        _ => ("", &[]),
    };
    sent.status = status;
    sent.body_bytes = response::send_error(out, status, detail, extra, head_only)?;
    Ok(())
}

/// Skeleton: `serve_file`. `200 OK` with the file's type and length, then
/// its bytes (none for HEAD). What a real server adds, the validators a
/// cache keeps, `304 Not Modified` and byte ranges, is `conditional`'s: a
/// request that asks none of it gets the skeleton's `200`. How the bytes go
/// out, and what happens if the file changes size meanwhile, is
/// `body::send_file`'s.
fn serve_file(
    out: &mut Sender,
    found: Found,
    content_type: &str,
    asks: &Conditions,
    head_only: bool,
    sent: &mut Sent,
) -> io::Result<()> {
    let len = found.meta.len();
    let now = dates::now_secs();
    let validators = Validators::of(&found.meta, now);
    let [last_modified, etag, ranges] = validators.headers();
    let mut content_range = String::new();
    let (status, body) = match conditional::answer(asks, &validators, len, head_only, now) {
        Answer::Whole => (Status::Ok, 0..len),
        Answer::Part(range) => {
            content_range = format!("bytes {}-{}/{len}", range.start, range.end - 1);
            (Status::PartialContent, range)
        }
        Answer::NotModified => {
            sent.status = Status::NotModified;
            let head = response::not_modified_head(&[last_modified, etag, ranges]);
            return out.write_all(head.as_bytes());
        }
        Answer::Unsatisfiable => return send_unsatisfiable(out, len, head_only, sent),
    };
    let headers = [last_modified, etag, ranges, ("Content-Range", &content_range)];
    let headers = if content_range.is_empty() { &headers[..3] } else { &headers[..] };
    let head = response::response_head(status, content_type, body.end - body.start, headers);
    sent.status = status;
    if head_only {
        return out.write_all(head.as_bytes());
    }
    let use_sendfile = config::settings().sendfile;
    body::send_file(out, &found.file, head.as_bytes(), body, use_sendfile, &mut sent.body_bytes)
}

/// `416 Range Not Satisfiable`, and the file's length.
fn send_unsatisfiable(out: &mut Sender, len: u64, head_only: bool, sent: &mut Sent) -> io::Result<()> {
    let status = Status::RangeNotSatisfiable;
    let length = format!("bytes */{len}");
    let detail = format!("The file has {len} bytes; none of the range asked for is in it.");
    let extra = [("Content-Range", length.as_str()), conditional::ACCEPT_RANGES];
    sent.status = status;
    sent.body_bytes = response::send_error(out, status, &detail, &extra, head_only)?;
    Ok(())
}

/// `301 Moved Permanently` to `location`, with a page that links to it.
fn send_moved(out: &mut Sender, location: &str, head_only: bool, sent: &mut Sent) -> io::Result<()> {
    let status = Status::MovedPermanently;
    let detail = format!("This directory is at {location}");
    sent.status = status;
    sent.body_bytes = response::send_error(out, status, &detail, &[("Location", location)], head_only)?;
    Ok(())
}

/// Skeleton: `serve_directory`. `200 OK` with an HTML page that links to the
/// parent and to each entry, read from the directory that was opened.
fn serve_directory(
    out: &mut Sender,
    root: &Root,
    dir: Found,
    segments: &[OsString],
    head_only: bool,
    sent: &mut Sent,
) -> io::Result<()> {
    let mut entries = match root.list(dir) {
        Ok(entries) => entries,
        Err(e) => return send_status(out, status_for(&e), head_only, sent),
    };
    entries.sort();
    let body = listing_page(segments, &entries);
    drop(entries);
    sent.status = Status::Ok;
    let result = response::send_html(out, Status::Ok, &body, &[], head_only);
    if body.len() >= LARGE_PAGE {
        // A large listing takes tens of thousands of small blocks from this
        // thread's malloc arena, and glibc keeps an arena's free memory for
        // good: 200 clients asking for a 2 MB listing at once left 200 MB
        // behind. Given back here, after the page is freed.
        drop(body);
        sys::malloc_trim();
    }
    sent.body_bytes = result?;
    Ok(())
}

/// A listing this large gives its memory back once it is sent.
const LARGE_PAGE: usize = 256 * 1024;

/// The listing of the directory at `segments` (the skeleton's `http_format_href`
/// for each entry), as the skeleton writes it: a
/// link to `../`, the parent directory, then one to each entry. The page's
/// `<base>` is the directory itself with a trailing slash, so `../` leads to
/// the parent whether or not the request ended in a slash (and from the root,
/// to the root). Entry links are absolute, percent-encoded paths.
pub fn listing_page(segments: &[OsString], entries: &[(OsString, bool)]) -> String {
    let here = directory_path(segments);
    let title = html_escape(&format!(
        "Index of /{}",
        segments.iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join("/")
    ));
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><base href=\"{here}\"><title>{title}</title></head>\n\
         <body>\n<h1>{title}</h1>\n<ul>\n<li><a href=\"../\">Parent directory</a></li>\n"
    );
    for (name, is_dir) in entries {
        let slash = if *is_dir { "/" } else { "" };
        let _ = writeln!(
            page,
            "<li><a href=\"{here}{}{slash}\">{}{slash}</a></li>",
            percent_encode(name.as_bytes()),
            html_escape(&name.to_string_lossy())
        );
    }
    page.push_str("</ul>\n</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;

    #[test]
    fn listing_links_are_absolute_encoded_and_escaped() {
        let segs = vec![OsString::from("docs"), OsString::from("a b")];
        let entries = vec![(OsString::from("x&y <1>.txt"), false), (OsString::from("sub"), true)];
        let page = listing_page(&segs, &entries);
        assert!(page.contains("<base href=\"/docs/a%20b/\">"), "{page}");
        assert!(page.contains("<a href=\"../\">Parent directory</a>"), "{page}");
        assert!(
            page.contains("<a href=\"/docs/a%20b/x%26y%20%3C1%3E.txt\">x&amp;y &lt;1&gt;.txt</a>"),
            "{page}"
        );
        assert!(page.contains("<a href=\"/docs/a%20b/sub/\">sub/</a>"), "{page}");
        assert!(page.contains("<title>Index of /docs/a b</title>"), "{page}");
    }

    /// Random hostile targets against a real tree whose symlinks point both
    /// inside and outside it: whatever resolves lies under the root.
    #[test]
    fn resolve_never_leaves_the_root() {
        let base = std::env::temp_dir().join(format!("httpserver-resolve-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let root = crate::fuzzing::confinement_tree(&base);
        let root = root.canonicalize().unwrap();
        let served = std::sync::atomic::AtomicUsize::new(0);
        proptest!(ProptestConfig::with_cases(20_000), |(target in request::strategies::hostile_target())| {
            let conditions = Conditions::default();
            let req = Request { method: "GET".into(), target: target.clone(), has_body: false, conditions };
            if let Ok(found) = resolve_to_found(&root, &req) {
                let path = found.real_path().unwrap();
                prop_assert!(path.starts_with(&root), "{target:?} -> {path:?}");
                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let served = served.into_inner();
        assert!(served > 100, "too few targets resolved ({served}) to say anything");
        for target in ["/out/passwd", "/a/passwd", "/out", "/in/../../secret/passwd", "/idx", "/idx/"] {
            let req = Request {
                method: "GET".into(),
                target: target.into(),
                has_body: false,
                conditions: Default::default(),
            };
            assert!(resolve(&root, &req).is_err(), "{target} escaped");
        }
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn root_listing_parent_is_root() {
        let page = listing_page(&[], &[]);
        assert!(page.contains("<base href=\"/\">") && page.contains("<a href=\"../\">Parent directory</a>"));
    }
}
