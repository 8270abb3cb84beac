//! What coverage-guided fuzzing (`make fuzz`, the crate under `fuzz/`) found,
//! kept: every input of the committed corpus replayed through the same
//! checks the fuzz targets make, and a named test for each defect it found.

mod common;

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{hello_site, read_response, Server};

/// Runs `check` on every file in `fuzz/corpus/<target>/`; there must be some.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let input = fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| check(&input)).is_err() {
            panic!("{target}: {} fails its check", path.display());
        }
        n += 1;
    }
    assert!(n >= 5, "{target}: only {n} inputs in {}", dir.display());
}

#[test]
fn the_head_corpus_holds() {
    replay("head", checks::head);
}

#[test]
fn the_resolve_corpus_holds() {
    replay("resolve", checks::resolve);
    checks::remove_tree();
}

#[test]
fn the_listing_corpus_holds() {
    replay("listing", checks::listing);
}

#[test]
fn the_cli_corpus_holds() {
    replay("cli", checks::cli);
}

/// Found first: `\n\r\n` ended a head for the parser but not for the reader,
/// so the answer depended on how the bytes arrived.
#[test]
fn lf_crlf_ends_a_head_for_the_reader_as_for_the_parser() {
    // No cut, one cut after the \x01, and several.
    checks::head(b"\0GET / HTTP/1.0\n\r\n\x01\r\n\r\n");
    checks::head(b"\x01\xe8GET / HTTP/1.0\n\r\n\x01\r\n\r\n");
    checks::head(b"\x03\x10\x80\xf0PUT / HTTP/1.0\n\r\n\x01\r\n\r\n");
    checks::head(b"\0GET / HTTP/1.0\r\n\nHost: x\r\n\r\n");
}

per_server!(a_head_ended_by_lf_crlf_is_answered_while_the_client_waits);
/// `GET ... \n\r\n` from a client that keeps the connection open is
/// answered at once, not with 408 when the head's time is up.
fn a_head_ended_by_lf_crlf_is_answered_while_the_client_waits(server: &'static str) {
    let site = hello_site("lfcrlf");
    let srv = Server::start(server, &["--files", site.str(), "--request-timeout", "3"]);
    let mut stream = common::connect(srv.addr());
    stream.write_all(b"GET /hello.txt HTTP/1.0\n\r\n").unwrap();
    let r = read_response(&mut std::io::BufReader::new(stream));
    assert_eq!((r.code(), r.text().as_str()), (200, "hello\n"), "{server}");
}

per_server!(a_head_gets_the_same_answer_however_it_arrives);
/// The same bytes get the same answer whether they arrive in one piece
/// or cut after the control byte that follows the head's end.
fn a_head_gets_the_same_answer_however_it_arrives(server: &'static str) {
    let site = hello_site("cuts");
    let srv = Server::start(server, &["--files", site.str()]);
    for method in ["GET", "PUT"] {
        let head = format!("{method} /hello.txt HTTP/1.0\n\r\n\x01\r\n\r\n");
        let whole = common::exchange(srv.addr(), head.as_bytes());
        let (first, second) = head.as_bytes().split_at(head.find('\x01').unwrap() + 1);
        let mut stream = common::connect(srv.addr());
        stream.write_all(first).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stream.write_all(second).unwrap();
        let cut = common::read_to_close(&mut stream);
        let status = |raw: &[u8]| common::Response::parse(raw).code();
        assert_eq!(status(&cut), status(&whole), "{server}: {method}, cut after the \\x01");
    }
}
