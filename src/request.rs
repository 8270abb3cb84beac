//! Reading and parsing a request: the head up to its blank line, the request
//! line, and the path, percent-decoded and normalised into segments that can
//! never climb out of the served directory.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use crate::response::Status;
use crate::sys::{Armed, Socket};

/// The most bytes a request head may take, blank line included.
pub const MAX_HEAD: usize = 8192;

/// The parts of a request that the server uses.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent, e.g. `/docs/a%20b.txt?x=1`.
    pub target: String,
    /// Whether the head announces a body (`Content-Length` above 0, or
    /// `Transfer-Encoding`).
    pub has_body: bool,
    /// What the request asks of a file beyond its bytes: validators to
    /// check, a part of it.
    pub conditions: Conditions,
}

/// The request headers that files mode answers with `304` or `206`
/// (`conditional` judges them), as sent. Several lines of one name are
/// joined with `", "`, as RFC 9110 §5.3 has a recipient combine them: a
/// list stays a list, and a header that allows one value no longer parses,
/// and is ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

impl Conditions {
    /// Keeps `value` if `name` is one of these headers.
    fn take(&mut self, name: &str, value: &str) {
        let slot = [
            ("if-none-match", &mut self.if_none_match),
            ("if-modified-since", &mut self.if_modified_since),
            ("range", &mut self.range),
            ("if-range", &mut self.if_range),
        ]
        .into_iter()
        .find_map(|(known, slot)| name.eq_ignore_ascii_case(known).then_some(slot));
        let Some(slot) = slot else { return };
        match slot {
            Some(kept) => {
                kept.push_str(", ");
                kept.push_str(value);
            }
            None => *slot = Some(value.to_string()),
        }
    }
}

/// A request head as read off a socket.
#[derive(Debug)]
pub struct Head {
    /// The head: up to and including its blank line, or, from a client that
    /// ended its stream after a complete request line, all it sent.
    pub bytes: Vec<u8>,
    /// Whether the client may have sent more than the head (a body, a
    /// pipelined request): bytes past the head came in the same reads, or the
    /// last read filled the buffer, which leaves unknown what the kernel still
    /// holds. Such bytes are discarded; closing must not reset them away.
    pub more_may_follow: bool,
}

/// A head that could not be read: the answer it gets, and the bytes that
/// did arrive (for the log line, and to tell a HEAD request).
#[derive(Debug)]
pub struct BadHead {
    pub status: Status,
    pub received: Vec<u8>,
}

/// Reads from `sock` until the blank line that ends the head, giving up after
/// `timeout` in all. `armed` says whether the socket's `SO_RCVTIMEO` is
/// already `timeout` (files mode's listener passes it on to every accepted
/// socket), so that the first read costs no call to set it; a later one
/// sets what is left.
///
/// As in the skeleton, what matters is the request line: a client that sends
/// a complete request line and then ends its stream is answered as if its
/// head had ended there. A head that can never become valid (an empty first
/// line, control bytes, a bare CR) is refused at once, without waiting for
/// the timeout.
pub fn read_head(sock: &Socket, timeout: Duration, armed: Armed) -> Result<Head, BadHead> {
    let deadline = Instant::now() + timeout;
    let mut first = armed == Armed::ByListener;
    read_head_from(|buf| {
        let left = deadline.saturating_duration_since(Instant::now());
        let already_set = std::mem::replace(&mut first, false);
        if left.is_zero() || !already_set && sock.set_read_timeout(Some(left)).is_err() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        sock.read(buf)
    })
}

/// [`read_head`] over any source of bytes: `read` fills the front of the
/// buffer it is given as `read(2)` would, `Ok(0)` at the end of the stream
/// and `WouldBlock` once the time for the head is up. However the source
/// cuts the bytes, the head is the same.
pub fn read_head_from(mut read: impl FnMut(&mut [u8]) -> io::Result<usize>) -> Result<Head, BadHead> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    let fail = |status, buf: &[u8]| BadHead { status, received: buf.to_vec() };
    loop {
        let n = match read(&mut buf[filled..]) {
            Ok(0) if buf[..filled].contains(&b'\n') => {
                buf.truncate(filled);
                return Ok(Head { bytes: buf, more_may_follow: false });
            }
            Ok(0) => return Err(fail(Status::BadRequest, &buf[..filled])),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(fail(Status::RequestTimeout, &buf[..filled]))
            }
            Err(_) => return Err(fail(Status::BadRequest, &buf[..filled])),
        };
        // A head's end is at most 3 bytes long: it may have begun in the
        // bytes already there.
        let search_from = filled.saturating_sub(2);
        filled += n;
        if buf[..filled].starts_with(b"\n") || buf[..filled].starts_with(b"\r\n") {
            return Err(fail(Status::BadRequest, &buf[..filled]));
        }
        if let Some(end) = head_end(&buf[search_from..filled]) {
            // A read that filled all the room it was given says nothing of
            // what came after: only a read that came back short drained the
            // socket.
            let more_may_follow = search_from + end < filled || filled == MAX_HEAD;
            buf.truncate(search_from + end);
            return Ok(Head { bytes: buf, more_may_follow });
        }
        if filled == MAX_HEAD || !could_be_head(&buf[search_from..filled]) {
            return Err(fail(Status::BadRequest, &buf[..filled]));
        }
    }
}

/// [`read_head_from`] fed `pieces`, each as one read (or more, where the
/// buffer has less room), then the end of the stream, or, if the client
/// `keeps_open` the connection, the time running out: how the fuzz target
/// and the property tests cut a head wherever they like.
pub fn read_head_from_pieces(pieces: &[&[u8]], keeps_open: bool) -> Result<Head, BadHead> {
    let mut pieces = pieces.iter().copied().filter(|p| !p.is_empty());
    let mut rest: &[u8] = &[];
    read_head_from(|buf| {
        if rest.is_empty() {
            match pieces.next() {
                Some(piece) => rest = piece,
                None if keeps_open => return Err(io::ErrorKind::WouldBlock.into()),
                None => return Ok(0),
            }
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        Ok(n)
    })
}

/// Whether the request in `bytes` asks for `HEAD`: its answer carries no
/// body, whatever the status. Read off the raw bytes, so that it holds for
/// a head that fails to parse or arrives only in part.
pub fn is_head_request(bytes: &[u8]) -> bool {
    bytes.starts_with(b"HEAD ")
}

/// The request line at the start of `bytes`, for a log line: at most
/// `MAX_LOGGED` bytes of it, with `"`, `\\` and every byte that is not
/// printable ASCII escaped (`\xNN`), so that nothing a client sends reaches
/// a terminal raw. `-` when nothing arrived.
pub fn loggable_request_line(bytes: &[u8]) -> String {
    const MAX_LOGGED: usize = 1024;
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return "-".to_string();
    }
    let mut out = String::with_capacity(line.len().min(MAX_LOGGED));
    for &b in line.iter().take(MAX_LOGGED) {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => _ = write!(out, "\\x{b:02x}"),
        }
    }
    if line.len() > MAX_LOGGED {
        out.push_str("...");
    }
    out
}

/// Where the head ends in `bytes`: the index just past its first empty
/// line. A line ends with LF, with or without a CR before it, so the end is
/// a LF followed by LF or by CRLF (`\r\n\r\n`, `\n\n`, and what clients
/// that mix the two send, `\n\r\n` and `\r\n\n`). The one definition:
/// [`read_head_from`] stops reading there, and [`parse_head`] reads no
/// further.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| match &bytes[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// Whether `bytes` (part of an unfinished head) could still be part of a
/// valid one: no control bytes but tab, CR and LF, and every CR followed by
/// LF (a CR at the very end may still get its LF).
fn could_be_head(bytes: &[u8]) -> bool {
    let controls_ok = bytes.iter().all(|&b| !b.is_ascii_control() || matches!(b, b'\t' | b'\r' | b'\n'));
    let crs_ok = bytes.windows(2).all(|w| w[0] != b'\r' || w[1] == b'\n');
    controls_ok && crs_ok
}

/// Skeleton: `http_request_parse` (with [`read_head`]). Parses a head:
/// `METHOD SP TARGET SP HTTP/x.y`, then `Name: value` lines.
/// A malformed head, or a target that does not start with `/`, is a 400.
pub fn parse_head(head: &[u8]) -> Result<Request, Status> {
    let head = &head[..head_end(head).unwrap_or(head.len())];
    let text = std::str::from_utf8(head).map_err(|_| Status::BadRequest)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) || !is_http_version(version) {
        return Err(Status::BadRequest);
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(Status::BadRequest);
    }
    let mut has_body = false;
    let mut conditions = Conditions::default();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Status::BadRequest)?;
        if name.is_empty()
            || !name.bytes().all(is_token_byte)
            || line.bytes().any(|b| b.is_ascii_control() && b != b'\t')
        {
            return Err(Status::BadRequest);
        }
        let value = value.trim();
        has_body |= name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value != "0");
        conditions.take(name, value);
    }
    Ok(Request { method: method.to_string(), target: target.to_string(), has_body, conditions })
}

/// `tchar` of RFC 9110: the characters of a method or a header name.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `HTTP/` followed by one digit, a dot, and one digit.
fn is_http_version(v: &str) -> bool {
    matches!(v.strip_prefix("HTTP/").map(str::as_bytes), Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// A request target as a path below the served root.
#[derive(Debug, PartialEq, Eq)]
pub struct LocalPath {
    /// The names, in order: never empty, `.`, `..`, or holding a `/` or NUL.
    pub segments: Vec<OsString>,
    /// Whether a `/` follows the last name (`/a/`, `/a/.`, `/a//`), which
    /// only a directory can satisfy: the skeleton's `stat("a/")` fails with
    /// ENOTDIR when `a` is a file. The root counts as a directory.
    pub dir_only: bool,
}

/// Turns a request target into the path segments below the served root.
/// The query and fragment are dropped, `%XX` escapes are decoded, and empty
/// and `.` segments are skipped. A `..` segment (written plainly or encoded)
/// is a 403; a bad escape or a NUL byte is a 400.
pub fn decode_path(target: &str) -> Result<LocalPath, Status> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let bytes = percent_decode(path).ok_or(Status::BadRequest)?;
    if bytes.contains(&0) {
        return Err(Status::BadRequest);
    }
    let mut segments = Vec::new();
    let mut dir_only = true;
    for segment in bytes.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => dir_only = true,
            b".." => return Err(Status::Forbidden),
            name => {
                segments.push(OsString::from_vec(name.to_vec()));
                dir_only = false;
            }
        }
    }
    Ok(LocalPath { segments, dir_only })
}

/// Decodes `%XX` escapes; `None` if an escape is cut short or not hex.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex_value(bytes.next()?)?;
            let lo = hex_value(bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Generators of hostile input for the property tests of the parser, the
/// path normaliser and the files resolver. proptest shrinks a failure to
/// the smallest input that still fails.
#[cfg(test)]
pub mod strategies {
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    /// Pieces that path attacks are made of, and some harmless ones.
    const PATH_PIECES: &[&str] = &[
        "/",
        "//",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "\\",
        "%00",
        "%",
        "%zz",
        "%2",
        "etc",
        "passwd",
        "a",
        "b c",
        "%20",
        "index.html",
        "?",
        "#",
        "~",
        "%252e",
        "..%2f",
        "%c0%ae",
        "\u{2713}",
        "out",
        "in",
    ];

    /// A request target made of attack pieces, usually starting with `/`,
    /// a slash after a third of the pieces.
    pub fn hostile_target() -> impl Strategy<Value = String> {
        let piece = (select(PATH_PIECES), prop::bool::weighted(1.0 / 3.0));
        (prop::bool::weighted(0.9), prop::collection::vec(piece, 0..12)).prop_map(|(rooted, pieces)| {
            let mut t = String::from(if rooted { "/" } else { "" });
            for (piece, slash) in pieces {
                t.push_str(piece);
                if slash {
                    t.push('/');
                }
            }
            t
        })
    }

    /// A request head: raw bytes, or well-formed around a hostile target
    /// with hostile parts, or a good head with a few bytes overwritten.
    pub fn hostile_head() -> impl Strategy<Value = Vec<u8>> {
        let raw = prop::collection::vec(any::<u8>(), 0..200);
        let mangled = (
            select(&["GET", "POST", "G\0T", "", "get", "GET GET"][..]),
            hostile_target(),
            select(&["HTTP/1.0", "HTTP/1.1", "HTTP/9", "", "HTTP/1.0 x"][..]),
            select(&["Host: x", "Host x", ": y", "A:\r", "B: \0", ""][..]),
        )
            .prop_map(|(method, target, version, header)| {
                format!("{method} {target} {version}\r\n{header}\r\n\r\n").into_bytes()
            });
        let overwritten = (hostile_target(), prop::collection::vec((any::<Index>(), any::<u8>()), 0..4))
            .prop_map(|(target, edits)| {
                let mut head = format!("GET {target} HTTP/1.0\r\n\r\n").into_bytes();
                for (at, byte) in edits {
                    let i = at.index(head.len());
                    head[i] = byte;
                }
                head
            });
        prop_oneof![raw, mangled, overwritten]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segs(target: &str) -> Result<Vec<String>, Status> {
        decode_path(target).map(|p| p.segments.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn parses_a_request_line_and_headers() {
        let req = parse_head(b"GET /a/b.html?x=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n").unwrap();
        assert_eq!(
            req,
            Request {
                method: "GET".into(),
                target: "/a/b.html?x=1".into(),
                has_body: false,
                conditions: Conditions::default()
            }
        );
        assert_eq!(parse_head(b"POST / HTTP/1.0\n\n").unwrap().method, "POST");
        assert!(parse_head(b"POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\n").unwrap().has_body);
        assert!(parse_head(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n").unwrap().has_body);
        assert!(!parse_head(b"GET / HTTP/1.0\r\nContent-Length: 0\r\n\r\n").unwrap().has_body);
        let req = parse_head(
            b"GET / HTTP/1.1\r\nrange: bytes=0-1\r\nIf-None-Match: \"a\"\r\nIF-NONE-MATCH:  \"b\" \r\n\
              If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nIf-Range: \"a\"\r\nRange: bytes=5-\r\n\r\n",
        )
        .unwrap();
        let expected = Conditions {
            if_none_match: Some("\"a\", \"b\"".into()),
            if_modified_since: Some("Sun, 06 Nov 1994 08:49:37 GMT".into()),
            range: Some("bytes=0-1, bytes=5-".into()),
            if_range: Some("\"a\"".into()),
        };
        assert_eq!(req.conditions, expected);
    }

    #[test]
    fn rejects_malformed_heads() {
        for head in [
            &b"\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / FTP/1.0\r\n\r\n",
            b"GET / HTTP/11\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET http://host/ HTTP/1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_head(head), Err(Status::BadRequest), "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.0\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.0\n\r\nX"), Some(17));
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n\nX"), Some(17));
    }

    /// Any head, cut at any point, gets the answer it gets in one piece,
    /// whether the client then ends its stream or keeps waiting.
    #[test]
    fn a_head_gets_the_same_answer_however_it_is_cut() {
        let answer =
            |read: Result<Head, BadHead>| read.map_err(|bad| bad.status).and_then(|h| parse_head(&h.bytes));
        proptest!(ProptestConfig::with_cases(20_000), |(head in strategies::hostile_head(), at in any::<prop::sample::Index>(), keeps_open in any::<bool>())| {
            let cut = at.index(head.len() + 1);
            let whole = answer(read_head_from_pieces(&[&head], keeps_open));
            let pieces = answer(read_head_from_pieces(&[&head[..cut], &head[cut..]], keeps_open));
            prop_assert_eq!(whole, pieces, "{:?} cut at {}", head, cut);
        });
        let mixed = b"GET / HTTP/1.0\n\r\n\x01\r\n\r\n";
        for keeps_open in [false, true] {
            let whole = answer(read_head_from_pieces(&[mixed], keeps_open));
            assert_eq!(whole, answer(read_head_from_pieces(&[&mixed[..18], &mixed[18..]], keeps_open)));
            assert!(whole.is_ok(), "{whole:?}");
        }
    }

    #[test]
    fn any_head_parses_or_is_refused_without_panic() {
        proptest!(ProptestConfig::with_cases(20_000), |(head in strategies::hostile_head())| {
            if let Ok(req) = parse_head(&head) {
                prop_assert!(req.target.starts_with('/'), "{head:?}");
                prop_assert!(!req.method.is_empty() && !req.method.contains(' '), "{head:?}");
            }
        });
    }

    #[test]
    fn decoded_paths_never_leave_the_root() {
        use std::path::{Component, Path};
        let root = Path::new("/srv/www");
        proptest!(ProptestConfig::with_cases(50_000), |(target in strategies::hostile_target())| {
            match decode_path(&target) {
                Ok(LocalPath { segments, .. }) => {
                    for s in &segments {
                        let b = s.as_encoded_bytes();
                        prop_assert!(!b.is_empty() && b != b"." && b != b"..", "{target:?} -> {segments:?}");
                        prop_assert!(!b.contains(&b'/') && !b.contains(&0), "{target:?} -> {segments:?}");
                    }
                    let joined = segments.iter().fold(root.to_path_buf(), |p, s| p.join(s));
                    prop_assert!(joined.starts_with(root), "{target:?} -> {joined:?}");
                    prop_assert!(joined
                        .components()
                        .all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
                }
                Err(status) => {
                    prop_assert!(matches!(status, Status::BadRequest | Status::Forbidden), "{target:?}")
                }
            }
        });
    }

    #[test]
    fn spots_heads_that_cannot_become_valid() {
        assert!(could_be_head(b"GET / HTTP/1.0\r\nHost: x\r"));
        assert!(could_be_head(b"GET /\tx"));
        assert!(!could_be_head(b"GET /\r\r\r"));
        assert!(!could_be_head(b"GET /\x00"));
        assert!(!could_be_head(b"\x16\x03\x01\x02\x00")); // a TLS hello
    }

    #[test]
    fn decodes_and_normalises_paths() {
        assert_eq!(segs("/"), Ok(vec![]));
        assert_eq!(segs("/a//b/./c/"), Ok(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(segs("/a%20b%26c.txt?q=1#frag"), Ok(vec!["a b&c.txt".into()]));
        assert_eq!(segs("/%E2%9C%93"), Ok(vec!["\u{2713}".into()]));
        assert_eq!(segs("/a\\..\\b"), Ok(vec!["a\\..\\b".into()]));
    }

    #[test]
    fn a_slash_after_the_last_name_asks_for_a_directory() {
        let dir_only = |target: &str| decode_path(target).unwrap().dir_only;
        for target in ["/", "/a/", "/a//", "/a/.", "/a/./", "/a%2F", "/a/?q=1", "/."] {
            assert!(dir_only(target), "{target}");
        }
        for target in ["/a", "/a/b", "/a/./b", "/a?q=/", "/a#/"] {
            assert!(!dir_only(target), "{target}");
        }
    }

    #[test]
    fn refuses_to_climb_out() {
        for target in
            ["/..", "/a/../../etc/passwd", "/%2e%2e/x", "/%2E%2E", "/..%2fetc", "/a/%2e%2e%2f%2e%2e"]
        {
            assert_eq!(segs(target), Err(Status::Forbidden), "{target}");
        }
        for target in ["/%00", "/a%00.html", "/%zz", "/%4", "/%"] {
            assert_eq!(segs(target), Err(Status::BadRequest), "{target}");
        }
    }
}
