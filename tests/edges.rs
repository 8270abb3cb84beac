//! The README's promises at their edges: a symlinked `index.html`, a file
//! asked for as a directory, a request head of exactly the limit with more
//! bytes behind it, clients that read slowly or not at all, in files mode
//! and through the proxy.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::symlink;
use std::time::Duration;

use common::origins::{self, Origin};
use common::{eventually, get, Response, Server, TempDir};

/// Starts `server` with `args`; poolserver with one worker, as httpserver is
/// one connection at a time.
fn start(server: &str, args: &[&str]) -> Server {
    Server::start_with_pool(server, args, 1)
}

per_server!(a_symlinked_index_html_is_checked_where_it_really_is);
/// Whatever is served passes the same check of its real location: a
/// directory's `index.html` that is a symlink out of the root is refused,
/// one that leads to a file inside the root is served.
fn a_symlinked_index_html_is_checked_where_it_really_is(server: &'static str) {
    let base = TempDir::new("index-link");
    let www = base.path().join("www");
    fs::create_dir_all(www.join("out")).unwrap();
    fs::create_dir_all(www.join("in")).unwrap();
    fs::create_dir_all(base.path().join("secret")).unwrap();
    fs::write(base.path().join("secret/s.txt"), "TOPSECRET\n").unwrap();
    fs::write(www.join("page.html"), "<p>inside</p>\n").unwrap();
    symlink(base.path().join("secret/s.txt"), www.join("out/index.html")).unwrap();
    symlink("../page.html", www.join("in/index.html")).unwrap();
    let s = Server::start(server, &["--files", www.to_str().unwrap(), "--quiet"]);
    for path in ["/out", "/out/", "/out/index.html"] {
        let r = get(s.addr(), path);
        r.assert_well_formed(403, "Forbidden");
        assert!(!r.text().contains("TOPSECRET"), "{server} {path}: {}", r.text());
    }
    // Without its slash, the directory moves to it (and is not looked into).
    let r = get(s.addr(), "/in");
    assert_eq!((r.code(), r.header("Location")), (301, Some("/in/")), "{server}: {}", r.head);
    for path in ["/in/", "/in/index.html"] {
        let r = get(s.addr(), path);
        r.assert_well_formed(200, "OK");
        assert_eq!(r.text(), "<p>inside</p>\n", "{server} {path}");
    }
}

per_server!(a_file_asked_for_as_a_directory_is_not_found);
/// `stat("page.html/")` fails with ENOTDIR, so a file followed by a slash
/// is not there: 404. Directories are found with a slash or without.
fn a_file_asked_for_as_a_directory_is_not_found(server: &'static str) {
    let site = TempDir::new("slash");
    fs::write(site.path().join("page.html"), "<p>page</p>").unwrap();
    fs::create_dir(site.path().join("dir")).unwrap();
    fs::write(site.path().join("dir/index.html"), "<p>dir</p>").unwrap();
    symlink("page.html", site.path().join("link.html")).unwrap();
    let s = Server::start(server, &["--files", site.str(), "--quiet"]);
    for path in
        ["/page.html/", "/page.html//", "/page.html/.", "/page.html%2F", "/link.html/", "/dir/index.html/"]
    {
        get(s.addr(), path).assert_well_formed(404, "Not Found");
    }
    for path in ["/page.html", "/link.html", "/page.html?x=/", "/dir/index.html"] {
        get(s.addr(), path).assert_well_formed(200, "OK");
    }
    let r = get(s.addr(), "/dir");
    assert_eq!((r.code(), r.header("Location")), (301, Some("/dir/")), "{server}: {}", r.head);
    for path in ["/dir/", "/dir//", "/dir/.", "/"] {
        let r = get(s.addr(), path);
        r.assert_well_formed(200, "OK");
    }
}

per_server!(a_head_at_the_size_limit_with_more_behind_it_loses_nothing);
/// A head that fills the 8192-byte buffer exactly leaves unknown whether
/// more follows, so the server must drain before it closes: closing with
/// unread input resets the connection and destroys the response. Heads
/// of 8188 to 8192 bytes, each with a second request behind it, all get
/// the whole body and a clean end of stream.
fn a_head_at_the_size_limit_with_more_behind_it_loses_nothing(server: &'static str) {
    let site = TempDir::new("full-head");
    let body = common::random_bytes(1 << 20, 8192);
    fs::write(site.path().join("1m.bin"), &body).unwrap();
    fs::write(site.path().join("ok.txt"), "ok\n").unwrap();
    let s = Server::start(server, &["--files", site.str(), "--quiet"]);
    let start = b"GET /1m.bin HTTP/1.0\r\nX: ";
    for len in 8188..=8192 {
        let mut req = start.to_vec();
        req.resize(len - 4, b'v');
        req.extend_from_slice(b"\r\n\r\n");
        assert_eq!(req.len(), len);
        req.extend_from_slice(b"GET /ok.txt HTTP/1.0\r\n\r\n");
        let mut stream = common::connect_small_window(s.addr(), 16 * 1024);
        stream.write_all(&req).unwrap();
        let mut raw = Vec::new();
        if let Err(e) = stream.read_to_end(&mut raw) {
            panic!("{server}, a {len}-byte head: {e} after {} bytes", raw.len());
        }
        let r = Response::parse(&raw);
        r.assert_well_formed(200, "OK");
        assert!(r.body == body, "{server}, a {len}-byte head: the body differs");
    }
}

/// A file big enough that a client that reads none of it leaves the server
/// blocked in a write: more than the socket buffers on both ends hold.
const BIG: usize = 16 << 20;

per_server!(a_client_that_never_reads_is_dropped_at_the_send_timeout);
/// A client that asks for a big file and never reads is dropped once a
/// write has moved nothing for `--send-timeout`: it no longer holds the
/// one connection httpserver serves, or poolserver's one worker. The
/// next client is served, the log line says why the first was cut, and
/// the server's fds (forkserver: its children) come back.
fn a_client_that_never_reads_is_dropped_at_the_send_timeout(server: &'static str) {
    let site = TempDir::new("never-reads");
    fs::write(site.path().join("big.bin"), common::random_bytes(BIG, 5)).unwrap();
    fs::write(site.path().join("ok.txt"), "ok\n").unwrap();
    let s = start(server, &["--files", site.str(), "--send-timeout", "2"]);
    get(s.addr(), "/ok.txt").assert_well_formed(200, "OK");
    let base_fds = s.fd_count();
    let mut stalled = common::connect_small_window(s.addr(), 4096);
    let port = stalled.local_addr().unwrap().port();
    stalled.write_all(b"GET /big.bin HTTP/1.0\r\n\r\n").unwrap();
    // Served after the stalled client, by the same connection slot or worker.
    let r = get(s.addr(), "/ok.txt");
    r.assert_well_formed(200, "OK");
    assert_eq!(r.text(), "ok\n");
    let prefix = format!("127.0.0.1:{port} \"GET /big.bin HTTP/1.0\" 200 ");
    eventually("the stalled download's log line", || {
        s.stdout_lines()
            .iter()
            .any(|l| l.starts_with(&prefix) && l.ends_with("(not sent in full: send timeout)"))
    });
    // The server closed its end: the client reads what was buffered, then the end.
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(rest.len() < BIG, "{server}: the stalled client got the whole file");
    drop(stalled);
    if server == "forkserver" {
        eventually("no child left", || common::children_of(s.pid()).is_empty());
    } else {
        eventually(&format!("{server}: fds back to {base_fds}"), || s.fd_count() == base_fds);
    }
}

per_server!(a_slow_steady_reader_is_never_cut_by_the_send_timeout);
/// A client that reads slowly but steadily keeps the response going, for
/// three times the send timeout and then to its end.
fn a_slow_steady_reader_is_never_cut_by_the_send_timeout(server: &'static str) {
    let site = TempDir::new("slow-files");
    let body = common::random_bytes(BIG, 6);
    fs::write(site.path().join("big.bin"), &body).unwrap();
    let s = start(server, &["--files", site.str(), "--send-timeout", "1"]);
    let mut stream = common::connect_small_window(s.addr(), 4096);
    let port = stream.local_addr().unwrap().port();
    stream.write_all(b"GET /big.bin HTTP/1.0\r\n\r\n").unwrap();
    let mut raw =
        common::read_steadily(&mut stream, 4096, Duration::from_millis(100), Duration::from_secs(3));
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("{server}: {e} after {} bytes", raw.len()));
    let got = Response::parse(&raw).body;
    assert!(got == body, "{server}: {} of {} bytes, or not the file's", got.len(), body.len());
    let prefix = format!("127.0.0.1:{port} \"GET /big.bin HTTP/1.0\" 200 {BIG} ");
    eventually("the download's log line", || s.stdout_lines().iter().any(|l| l.starts_with(&prefix)));
    let line = s.stdout_lines().into_iter().find(|l| l.starts_with(&prefix)).unwrap();
    assert!(!line.contains("not sent in full"), "{line}");
}

per_server!(a_slow_reader_through_the_proxy_is_live_and_a_stopped_one_is_idle);
/// A client reading 8 KiB/s through the proxy keeps the connection alive
/// for three times `--idle-timeout`: every byte the kernel takes from a
/// blocked write is activity. It gets every byte, in order. Then it stops
/// reading altogether, and the connection is reset as idle.
fn a_slow_reader_through_the_proxy_is_live_and_a_stopped_one_is_idle(server: &'static str) {
    const TOTAL: u64 = 16 << 20;
    let origin = Origin::start(origins::stream_pattern(TOTAL));
    let relay = Server::start(server, &["--proxy", &origin.proxy_arg(), "--idle-timeout", "3"]);
    let mut stream = common::connect_small_window(relay.addr(), 4096);
    stream.write_all(b"GET /stream HTTP/1.1\r\nHost: origin\r\n\r\n").unwrap();
    let raw = common::read_steadily(&mut stream, 4096, Duration::from_millis(500), Duration::from_secs(9));
    let Response { status_line, body: got, .. } = Response::parse(&raw);
    assert_eq!(status_line, "HTTP/1.1 200 OK", "{server}");
    assert!(got == origins::pattern_at(0, got.len()), "{server}: the first {} bytes differ", got.len());
    assert!(
        !relay.stdout_lines().iter().any(|l| l.contains("idle timeout")),
        "{server}: a reader that was reading was cut as idle"
    );
    // Now it stops reading: the relay's writes take nothing, and the
    // connection goes idle.
    eventually("the idle-timeout log line", || {
        relay.stdout_lines().iter().any(|l| l.ends_with("idle timeout"))
    });
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{server}: the proxy ended the stream cleanly after {n} more bytes; idle must reset"),
        Err(e) => panic!("{server}: expected a reset, got {e}"),
    }
    assert!(
        rest == origins::pattern_at(got.len(), rest.len()),
        "{server}: the bytes before the reset differ"
    );
}
