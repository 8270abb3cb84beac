//! Byte ranges in files mode (RFC 9110 §14), over real sockets, on all four
//! servers, by sendfile(2) and by the read/write loop (`--no-sendfile`):
//! each range at its edges, what is ignored, `416`, `If-Range`, HEAD, and a
//! file that shrinks while its range is sent. A request without `Range`
//! gets the skeleton's `200`.

mod common;

use std::fs::{self, OpenOptions};

use common::{eventually, Response, Server, TempDir};

/// Both ways a body can go: sendfile(2), and the read/write loop.
const BODY_PATHS: [&[&str]; 2] = [&[], &["--no-sendfile"]];
const LEN: usize = 1000;
const BIG: usize = 5 << 20;

fn site() -> TempDir {
    let dir = TempDir::new("ranges");
    fs::write(dir.path().join("file.bin"), common::random_bytes(LEN, 1)).unwrap();
    fs::write(dir.path().join("big.bin"), common::random_bytes(BIG, 2)).unwrap();
    fs::write(dir.path().join("empty.bin"), b"").unwrap();
    dir
}

fn start(server: &str, dir: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--files", dir.str(), "--quiet"];
    args.extend_from_slice(extra);
    Server::start(server, &args)
}

fn ask(s: &Server, method: &str, path: &str, headers: &[&str]) -> Response {
    common::ask(s.addr(), method, path, headers)
}

/// A `206` of exactly `data[first..=last]`.
fn assert_part(r: &Response, data: &[u8], first: usize, last: usize, what: &str) {
    r.assert_well_formed(206, "Partial Content");
    let range = format!("bytes {first}-{last}/{}", data.len());
    assert_eq!(r.header("Content-Range"), Some(range.as_str()), "{what}: {}", r.head);
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"), "{what}");
    assert!(r.body == data[first..=last], "{what}: the bytes differ");
}

/// A `416` that gives the file's length.
fn assert_unsatisfiable(r: &Response, len: usize, what: &str) {
    r.assert_well_formed(416, "Range Not Satisfiable");
    assert_eq!(r.header("Content-Range"), Some(format!("bytes */{len}").as_str()), "{what}: {}", r.head);
}

/// The whole file, `200`.
fn assert_whole(r: &Response, data: &[u8], what: &str) {
    r.assert_well_formed(200, "OK");
    assert_eq!(r.header("Content-Range"), None, "{what}");
    assert!(r.body == data, "{what}: not the whole file");
}

per_server!(one_range_at_its_edges);
fn one_range_at_its_edges(server: &'static str) {
    let dir = site();
    let data = common::random_bytes(LEN, 1);
    let big = common::random_bytes(BIG, 2);
    for extra in BODY_PATHS {
        let s = start(server, &dir, extra);
        let what = |case: &str| format!("{server} {extra:?} {case}");
        let range = |spec: &str| ask(&s, "GET", "/file.bin", &[&format!("Range: bytes={spec}")]);
        assert_part(&range("0-0"), &data, 0, 0, &what("0-0"));
        assert_part(&range("0-999"), &data, 0, 999, &what("to the last byte"));
        assert_part(&range("999-999"), &data, 999, 999, &what("the last byte"));
        assert_part(&range("990-1000"), &data, 990, 999, &what("one past the last byte"));
        assert_part(&range("990-99999999999999999999999"), &data, 990, 999, &what("far past it"));
        assert_part(&range("10-"), &data, 10, 999, &what("10-"));
        assert_part(&range("-1"), &data, 999, 999, &what("-1"));
        assert_part(&range("-1000"), &data, 0, 999, &what("-1000"));
        assert_part(&range("-1001"), &data, 0, 999, &what("a suffix longer than the file"));
        assert_part(&range("5-9, 2000-3000"), &data, 5, 9, &what("one of two in the file"));
        let r = ask(&s, "GET", "/file.bin", &["range:  Bytes = 100-199 "]);
        assert_part(&r, &data, 100, 199, &what("case and spaces"));
        assert_unsatisfiable(&range("1000-"), LEN, &what("1000-"));
        assert_unsatisfiable(&range("1000-1000"), LEN, &what("1000-1000"));
        assert_unsatisfiable(&range("-0"), LEN, &what("-0"));
        assert_unsatisfiable(&range("2000-3000, 4000-"), LEN, &what("two past the end"));
        // Far into a large file, across pages and chunks: the offset is
        // where sendfile and the read loop begin.
        let r = ask(&s, "GET", "/big.bin", &["Range: bytes=1048583-4194310"]);
        assert_part(&r, &big, 1_048_583, 4_194_310, &what("the middle of 5 MiB"));
        let r = ask(&s, "GET", "/big.bin", &["Range: bytes=-70000"]);
        assert_part(&r, &big, BIG - 70_000, BIG - 1, &what("the last 70000 of 5 MiB"));
        // An empty file has no byte to send.
        let empty = |spec: &str| ask(&s, "GET", "/empty.bin", &[&format!("Range: bytes={spec}")]);
        assert_unsatisfiable(&empty("0-0"), 0, &what("0-0 of an empty file"));
        assert_unsatisfiable(&empty("0-"), 0, &what("0- of an empty file"));
        assert_unsatisfiable(&empty("-0"), 0, &what("-0 of an empty file"));
        assert_whole(&empty("-5"), b"", &what("a suffix of an empty file"));
    }
}

per_server!(what_is_ignored_gets_the_whole_file);
/// What does not parse, another unit, several ranges in the file: the
/// whole file, as without the header. HEAD has no ranges.
fn what_is_ignored_gets_the_whole_file(server: &'static str) {
    let dir = site();
    let data = common::random_bytes(LEN, 1);
    let s = start(server, &dir, &[]);
    for header in [
        "Range: bytes=5-4",
        "Range: bytes=abc",
        "Range: bytes=",
        "Range: bytes 0-1",
        "Range: items=0-1",
        "Range: bytes=0-1,5-6",
        "Range: bytes=--1",
    ] {
        assert_whole(&ask(&s, "GET", "/file.bin", &[header]), &data, &format!("{server} {header}"));
    }
    let two_lines = ask(&s, "GET", "/file.bin", &["Range: bytes=0-1", "Range: bytes=5-6"]);
    assert_whole(&two_lines, &data, &format!("{server} two Range lines"));
    for header in ["Range: bytes=0-0", "Range: bytes=5000-"] {
        let r = ask(&s, "HEAD", "/file.bin", &[header]);
        assert_eq!(r.status_line, "HTTP/1.0 200 OK", "{server} HEAD {header}");
        assert_eq!(r.header("Content-Length"), Some("1000"), "{server} HEAD {header}");
        assert!(r.body.is_empty(), "{server} HEAD {header}");
    }
}

per_server!(if_range_matching_and_not);
/// `If-Range` with the file's tag or its exact date: the range. With
/// another tag, a weak one, or another date: the whole file.
fn if_range_matching_and_not(server: &'static str) {
    let dir = site();
    let data = common::random_bytes(LEN, 1);
    let s = start(server, &dir, &[]);
    let plain = ask(&s, "GET", "/file.bin", &[]);
    let (etag, date) = (plain.header("ETag").unwrap(), plain.header("Last-Modified").unwrap());
    // A date is a validator only once the file is a second old.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let with = |if_range: &str| {
        ask(&s, "GET", "/file.bin", &["Range: bytes=10-19", &format!("If-Range: {if_range}")])
    };
    assert_part(&with(etag), &data, 10, 19, &format!("{server} its tag"));
    assert_part(&with(date), &data, 10, 19, &format!("{server} its date"));
    assert_whole(&with(&format!("W/{etag}")), &data, &format!("{server} its tag, weak"));
    assert_whole(&with("\"other\""), &data, &format!("{server} another tag"));
    assert_whole(&with("Thu, 01 Jan 1970 00:00:00 GMT"), &data, &format!("{server} another date"));
}

per_server!(a_range_of_a_file_that_shrinks_is_cut_short_and_logged);
/// A file truncated while its range is sent ends the response short,
/// never padded, and the log line shows `206` and the bytes that left.
fn a_range_of_a_file_that_shrinks_is_cut_short_and_logged(server: &'static str) {
    const SIZE: usize = 32 << 20;
    const FIRST: usize = 1 << 20;
    let dir = TempDir::new("range-shrinks");
    let data = common::random_bytes(SIZE, 3);
    for extra in BODY_PATHS {
        let what = format!("{server} {extra:?}");
        fs::write(dir.path().join("big.bin"), &data).unwrap();
        let mut args = vec!["--files", dir.str()];
        args.extend_from_slice(extra);
        let s = Server::start(server, &args);
        let request = format!("GET /big.bin HTTP/1.0\r\nRange: bytes={FIRST}-\r\n\r\n");
        let (stream, raw) = common::stalled_download(s.addr(), &request);
        let port = stream.local_addr().unwrap().port();
        OpenOptions::new().write(true).open(dir.path().join("big.bin")).unwrap().set_len(0).unwrap();
        let r = common::finish_download(stream, raw, &what);
        assert!(r.head.starts_with("HTTP/1.0 206 Partial Content\r\n"), "{what}: {}", r.head);
        let want = SIZE - FIRST;
        assert_eq!(r.header("Content-Length"), Some(want.to_string().as_str()), "{what}");
        assert!(r.body.len() < want, "{what}: the whole range arrived after the truncation");
        assert!(r.body == data[FIRST..FIRST + r.body.len()], "{what}: the bytes before the end differ");
        let logged = format!("127.0.0.1:{port} \"GET /big.bin HTTP/1.0\" 206 {} ", r.body.len());
        let ending = format!(
            "(not sent in full: the file ended after {} of the {want} bytes announced)",
            r.body.len()
        );
        eventually("the cut-short log line", || {
            s.stdout_lines().iter().any(|l| l.contains(&logged) && l.ends_with(&ending))
        });
    }
}
