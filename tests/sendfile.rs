//! File bodies by sendfile(2), and by the read/write loop that stands in for
//! it (`--no-sendfile`): byte-exact at the sizes where buffers and pages
//! end, for a 256 MiB file, for HEAD, and for files that shrink or grow
//! while they are sent; and a small response sent at once, in one segment.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

use common::{eventually, Response, Server, TempDir};

/// Sizes around the places where a page, the stack buffer and the 64 KiB
/// chunk end.
const SIZES: [usize; 10] = [0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 200_003, (1 << 20) + 3];

/// Both ways a body can go: sendfile(2), and the read/write loop.
const BODY_PATHS: [&[&str]; 2] = [&[], &["--no-sendfile"]];

fn start(server: &str, dir: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--files", dir.str()];
    args.extend_from_slice(extra);
    Server::start(server, &args)
}

per_server!(every_size_arrives_byte_exact_by_sendfile_and_by_the_fallback);
fn every_size_arrives_byte_exact_by_sendfile_and_by_the_fallback(server: &'static str) {
    let dir = TempDir::new("sizes");
    for size in SIZES {
        fs::write(dir.path().join(format!("{size}.bin")), common::random_bytes(size, size as u64)).unwrap();
    }
    for extra in BODY_PATHS {
        let s = start(server, &dir, extra);
        for size in SIZES {
            let path = format!("/{size}.bin");
            let raw = common::exchange(s.addr(), format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
            let r = Response::parse(&raw);
            r.assert_well_formed(200, "OK");
            assert!(
                r.body == common::random_bytes(size, size as u64),
                "{server} {extra:?} {path}: body differs"
            );
            // HEAD: the same head, and not one byte of the body.
            let head = Response::parse(&common::exchange(
                s.addr(),
                format!("HEAD {path} HTTP/1.0\r\n\r\n").as_bytes(),
            ));
            assert_eq!(head.head_without_date(), r.head_without_date(), "{server} {extra:?} HEAD {path}");
            assert!(head.body.is_empty(), "{server} {extra:?} HEAD {path}: {} body bytes", head.body.len());
            let logged = format!("\"GET {path} HTTP/1.0\" 200 {size} ");
            eventually("the log line", || s.stdout_lines().iter().any(|l| l.contains(&logged)));
        }
    }
}

/// A 256 MiB file, from every server, checked chunk by chunk as it arrives.
#[test]
fn a_256_mib_file_arrives_byte_exact_from_every_server() {
    const TOTAL: u64 = 256 << 20;
    let dir = TempDir::new("sendfile-256m");
    common::origins::write_pattern_file(&dir.path().join("big.bin"), TOTAL);
    for server in common::SERVERS {
        let s = start(server, &dir, &["--quiet"]);
        let mut stream = common::connect(s.addr());
        stream.write_all(b"GET /big.bin HTTP/1.0\r\n\r\n").unwrap();
        let mut reader = BufReader::with_capacity(1 << 16, stream);
        common::origins::read_pattern_response(&mut reader, TOTAL, server);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{server}: {} bytes past the body", rest.len());
    }
}

/// Opens a download of `path` that stalls part-way (see
/// [`common::stalled_download`]).
fn stalled_download(s: &Server, path: &str) -> (TcpStream, Vec<u8>) {
    common::stalled_download(s.addr(), &format!("GET {path} HTTP/1.0\r\n\r\n"))
}

/// The head and body of a stalled download, read to its end.
fn finish(stream: TcpStream, raw: Vec<u8>, what: &str) -> (String, Vec<u8>) {
    let r = common::finish_download(stream, raw, what);
    (r.head, r.body)
}

per_server!(a_file_that_shrinks_while_it_is_sent_ends_the_response_short);
/// A file truncated while it is sent ends the response short: no
/// padding, no hang, and the log line says how far it got, which is
/// exactly what the client received.
fn a_file_that_shrinks_while_it_is_sent_ends_the_response_short(server: &'static str) {
    const SIZE: usize = 32 << 20;
    let dir = TempDir::new("shrinks");
    let data = common::random_bytes(SIZE, 32);
    for extra in BODY_PATHS {
        let what = format!("{server} {extra:?}");
        fs::write(dir.path().join("big.bin"), &data).unwrap();
        let s = start(server, &dir, extra);
        let (stream, first) = stalled_download(&s, "/big.bin");
        let port = stream.local_addr().unwrap().port();
        OpenOptions::new().write(true).open(dir.path().join("big.bin")).unwrap().set_len(0).unwrap();
        let (head, body) = finish(stream, first, &what);
        assert!(head.contains(&format!("Content-Length: {SIZE}\r\n")), "{what}: {head}");
        assert!(body.len() < SIZE, "{what}: the whole file arrived after the truncation");
        assert!(body == data[..body.len()], "{what}: the bytes before the end differ");
        let prefix = format!("127.0.0.1:{port} \"GET /big.bin HTTP/1.0\" 200 {} ", body.len());
        let ending =
            format!("(not sent in full: the file ended after {} of the {SIZE} bytes announced)", body.len());
        eventually("the cut-short log line", || {
            s.stdout_lines().iter().any(|l| l.starts_with(&prefix) && l.ends_with(&ending))
        });
    }
}

per_server!(a_file_that_grows_while_it_is_sent_is_sent_as_announced);
/// A file that grows while it is sent is sent up to the length its head
/// announced, and the connection ends cleanly.
fn a_file_that_grows_while_it_is_sent_is_sent_as_announced(server: &'static str) {
    const SIZE: usize = 16 << 20;
    let dir = TempDir::new("grows");
    let data = common::random_bytes(SIZE, 16);
    for extra in BODY_PATHS {
        let what = format!("{server} {extra:?}");
        fs::write(dir.path().join("big.bin"), &data).unwrap();
        let s = start(server, &dir, &[&["--quiet"], extra].concat());
        let (stream, first) = stalled_download(&s, "/big.bin");
        let mut file = OpenOptions::new().append(true).open(dir.path().join("big.bin")).unwrap();
        file.write_all(&common::random_bytes(1 << 20, 99)).unwrap();
        let (head, body) = finish(stream, first, &what);
        assert!(head.contains(&format!("Content-Length: {SIZE}\r\n")), "{what}: {head}");
        assert!(body == data, "{what}: {} bytes, or not the file as it was announced", body.len());
    }
}

per_server!(small_responses_arrive_at_once_in_one_segment);
/// A small response is not held back waiting for more (a cork left on,
/// `MSG_MORE` on the last send, Nagle waiting for an ACK). A 1-byte file
/// comes in one segment, so the client's first read holds the whole
/// response; a HEAD's head likewise, whether the file is small or large.
/// The quickest of ten answers comes well within the 40 ms of a delayed
/// ACK, let alone a cork's 200 ms: a held-back response is late every
/// time, a loaded machine only now and then.
fn small_responses_arrive_at_once_in_one_segment(server: &'static str) {
    let dir = TempDir::new("at-once");
    fs::write(dir.path().join("one.txt"), "1").unwrap();
    common::origins::write_pattern_file(&dir.path().join("big.bin"), 4 << 20);
    for extra in BODY_PATHS {
        let s = start(server, &dir, &[&["--quiet"], extra].concat());
        for (request, body_len) in [
            ("GET /one.txt HTTP/1.0\r\n\r\n", 1),
            ("HEAD /one.txt HTTP/1.0\r\n\r\n", 0),
            ("HEAD /big.bin HTTP/1.0\r\n\r\n", 0),
        ] {
            let what = format!("{server} {extra:?} {}", request.trim_end());
            let mut quickest = std::time::Duration::MAX;
            for _ in 0..10 {
                let mut stream = common::connect(s.addr());
                let asked = std::time::Instant::now();
                stream.write_all(request.as_bytes()).unwrap();
                let mut first = vec![0u8; 1 << 16];
                let n = stream.read(&mut first).unwrap();
                quickest = quickest.min(asked.elapsed());
                let first = &first[..n];
                let head_len = first.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4);
                assert_eq!(
                    head_len.map(|h| n - h),
                    Some(body_len),
                    "{what}: first read {:?}",
                    String::from_utf8_lossy(first)
                );
                let rest = common::read_to_close(&mut stream);
                assert!(rest.is_empty(), "{what}: {} bytes after the response", rest.len());
            }
            // What this catches is a response held by the cork or by
            // Nagle's algorithm: 200 ms or more. The quickest of ten
            // takes well under a millisecond here; 40 ms is room for a
            // loaded machine, and one quick answer in ten is enough.
            assert!(
                quickest < std::time::Duration::from_millis(40),
                "{what}: the quickest of ten answers took {quickest:?}"
            );
        }
    }
}
