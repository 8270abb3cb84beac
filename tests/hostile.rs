//! Slow, stalled and hostile clients: each is dealt with, and everyone else
//! goes on being served.

mod common;

use std::io::{BufReader, Write};
use std::os::unix::fs::symlink;
use std::thread;
use std::time::{Duration, Instant};

use common::origins::{self, Origin};
use common::{Response, Server, TempDir};

per_server!([threadserver, poolserver] slow_clients_are_dropped_at_the_request_timeout_while_others_are_served);
/// A client that sends nothing, and one that sends its head a byte at a time,
/// are both answered 408 and dropped when --request-timeout runs out; while
/// they dawdle, other clients are served.
fn slow_clients_are_dropped_at_the_request_timeout_while_others_are_served(name: &'static str) {
    let dir = common::hello_site("hostile");
    let args = ["--files", dir.str(), "--quiet", "--request-timeout", "1"];
    let server = Server::start_with_pool(name, &args, 4);
    let started = Instant::now();
    let mut silent = common::connect(server.addr());
    let mut trickler = common::connect(server.addr());
    let feeder = {
        let mut w = trickler.try_clone().unwrap();
        thread::spawn(move || {
            for byte in b"GET /hello.txt HTTP/1.0\r\nX-Slow: ".iter().chain([b'a'; 200].iter()) {
                if w.write_all(&[*byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    for _ in 0..5 {
        common::get(server.addr(), "/hello.txt").assert_well_formed(200, "OK");
    }
    for (who, stream) in [("silent", &mut silent), ("trickling", &mut trickler)] {
        let r = Response::parse(&common::read_to_close(stream));
        r.assert_well_formed(408, "Request Timeout");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900), "{name} {who}: dropped after only {took:?}");
        assert!(took < Duration::from_secs(8), "{name} {who}: dropped after {took:?}");
    }
    feeder.join().unwrap();
}

/// A client that connects and says nothing is not accepted until a second
/// has passed (TCP_DEFER_ACCEPT), so even the basic server, one connection
/// at a time, answers a client that came after it first. Then it is
/// accepted, and answered 408 when its request timeout runs out.
#[test]
fn a_silent_client_does_not_hold_up_the_basic_server() {
    let dir = common::hello_site("deferred");
    let server = Server::start("httpserver", &["--files", dir.str(), "--request-timeout", "2"]);
    let mut silent = common::connect(server.addr());
    common::get(server.addr(), "/hello.txt").assert_well_formed(200, "OK");
    // Had the silent client been served first, its 408 would be in its
    // socket already: loopback delivers a write before the write returns.
    silent.set_nonblocking(true).unwrap();
    let early = silent.peek(&mut [0u8; 1]);
    assert!(
        early.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the silent client was answered before the one after it: {early:?}"
    );
    silent.set_nonblocking(false).unwrap();
    Response::parse(&common::read_to_close(&mut silent)).assert_well_formed(408, "Request Timeout");
}

per_server!(an_idle_server_outlasts_its_request_timeout_quietly);
/// Files mode's listener holds `--request-timeout` as its SO_RCVTIMEO, for
/// the sockets it passes it on to; it bounds accept() too. A server that
/// nobody calls for several of those timeouts logs no error for it, and
/// answers the next client at once.
fn an_idle_server_outlasts_its_request_timeout_quietly(name: &'static str) {
    let dir = common::hello_site("idle");
    let server = Server::start(name, &["--files", dir.str(), "--request-timeout", "1"]);
    // The quiet itself is under test: three request timeouts of it.
    thread::sleep(Duration::from_millis(3500));
    common::get(server.addr(), "/hello.txt").assert_well_formed(200, "OK");
    let errors = server.stderr_lines();
    assert!(errors.is_empty(), "{name}: an idle listener logged {errors:?}");
}

/// A client that asks for 256 MiB and reads nothing for 3 s: the server
/// does not buffer the rest (RSS grows by less than 16 MiB), and the
/// transfer then completes byte-exact. Through the proxy, and from files mode.
#[test]
fn a_stalled_reader_never_makes_the_server_buffer_without_bound() {
    const TOTAL: u64 = 256 << 20;
    let dir = TempDir::new("stalled");
    origins::write_pattern_file(&dir.path().join("big.bin"), TOTAL);
    let origin = Origin::start(origins::stream_pattern(TOTAL));
    let files = Server::start("threadserver", &["--files", dir.str(), "--quiet"]);
    let relay = Server::start("threadserver", &["--proxy", &origin.proxy_arg(), "--quiet"]);
    for (what, server) in [("files mode", &files), ("proxy", &relay)] {
        let before = server.rss_kib();
        let mut stream = common::connect(server.addr());
        stream.write_all(b"GET /big.bin HTTP/1.0\r\n\r\n").unwrap();
        thread::sleep(Duration::from_secs(3));
        let stalled = server.rss_kib();
        let growth = stalled.saturating_sub(before);
        assert!(growth < 16 * 1024, "{what}: RSS grew by {growth} KiB while the client stalled");
        origins::read_pattern_response(&mut BufReader::with_capacity(1 << 16, stream), TOTAL, what);
    }
}

per_server!(bad_requests_get_a_4xx_and_never_reach_outside_the_root);
/// Every kind of malformed or malicious request gets a 4xx, never a file
/// from outside the root, and the server serves on afterwards.
fn bad_requests_get_a_4xx_and_never_reach_outside_the_root(name: &'static str) {
    let dir = common::hello_site("hostile");
    symlink("/etc", dir.path().join("etc-link")).unwrap();
    let many_headers: String = (0..10_000).map(|i| format!("X-Header-{i}: value\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("binary garbage", (0..512u32).map(|i| (i * 37 % 256) as u8).collect()),
        ("NUL bytes", b"GET /hello.txt\0 HTTP/1.0\r\n\r\n".to_vec()),
        ("CR without LF", b"GET /hello.txt HTTP/1.0\r\r\r\r".to_vec()),
        ("no path", b"GET HTTP/1.0\r\n\r\n".to_vec()),
        ("10 000 headers", format!("GET /hello.txt HTTP/1.0\r\n{many_headers}\r\n").into_bytes()),
        ("a 1 MB request line", format!("GET /{} HTTP/1.0\r\n\r\n", "a".repeat(1 << 20)).into_bytes()),
        ("%00", b"GET /hello.txt%00.html HTTP/1.0\r\n\r\n".to_vec()),
        ("%2e%2e", b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.0\r\n\r\n".to_vec()),
        ("..%2f", b"GET /..%2f..%2fetc%2fpasswd HTTP/1.0\r\n\r\n".to_vec()),
        ("backslashes", b"GET /..\\..\\etc\\passwd HTTP/1.0\r\n\r\n".to_vec()),
        ("//etc/passwd", b"GET //etc/passwd HTTP/1.0\r\n\r\n".to_vec()),
        ("an escaping symlink", b"GET /etc-link/passwd HTTP/1.0\r\n\r\n".to_vec()),
    ];
    let server = Server::start(name, &["--files", dir.str(), "--quiet"]);
    for (what, raw) in &cases {
        let mut stream = common::connect(server.addr());
        let writer = {
            let mut w = stream.try_clone().unwrap();
            let raw = raw.clone();
            // The server may answer before reading it all; a failed write is fine.
            thread::spawn(move || drop(w.write_all(&raw)))
        };
        let answer = common::read_to_close(&mut stream);
        writer.join().unwrap();
        let r = Response::parse(&answer);
        assert!((400..500).contains(&r.code()), "{name} {what}: {}", r.status_line);
        assert!(!r.text().contains("root:"), "{name} {what}: served /etc/passwd");
    }
    common::get(server.addr(), "/hello.txt").assert_well_formed(200, "OK");
}
