//! SIGTERM: stop accepting at once, let open connections finish within the
//! grace period, then exit 0.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, TempDir};

const SIZE: usize = 24 << 20;

fn site() -> TempDir {
    let dir = TempDir::new("shutdown");
    fs::write(dir.path().join("big.bin"), common::random_bytes(SIZE, 42)).unwrap();
    dir
}

/// Starts a download of big.bin and reads its first MiB.
fn start_download(server: &Server) -> (TcpStream, Vec<u8>) {
    let mut stream = common::connect(server.addr());
    stream.write_all(b"GET /big.bin HTTP/1.0\r\n\r\n").unwrap();
    let mut got = vec![0u8; 1 << 20];
    stream.read_exact(&mut got).unwrap();
    (stream, got)
}

per_server!(a_slow_download_completes_after_sigterm_and_then_the_server_exits_0);
fn a_slow_download_completes_after_sigterm_and_then_the_server_exits_0(name: &'static str) {
    let dir = site();
    let expected = common::random_bytes(SIZE, 42);
    let mut server = Server::start(name, &["--files", dir.str(), "--quiet", "--shutdown-timeout", "10"]);
    let (mut stream, mut got) = start_download(&server);
    server.signal("TERM");
    let signalled = Instant::now();
    // The listening socket goes away at once: new clients are turned away.
    common::eventually("new connections to be refused", || TcpStream::connect(server.addr()).is_err());
    // Read the rest slowly: about 2 s for the remaining 23 MiB.
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        match stream.read(&mut chunk).unwrap() {
            0 => break,
            n => got.extend_from_slice(&chunk[..n]),
        }
        thread::sleep(Duration::from_millis(5));
    }
    let body_start = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got[body_start..] == expected[..], "{name}: the download was cut or corrupted");
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "{name}: {status:?}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(10), "{name}: exited {took:?} after SIGTERM");
    assert!(server.stdout_lines().iter().any(|l| l.starts_with("Shutting down: waiting up to 10 s")));
}

per_server!(a_second_signal_stops_the_server_at_once);
fn a_second_signal_stops_the_server_at_once(name: &'static str) {
    let dir = site();
    let mut server = Server::start(name, &["--files", dir.str(), "--quiet", "--shutdown-timeout", "60"]);
    let (_stalled, _) = start_download(&server);
    server.signal("INT");
    common::eventually("the shutdown to begin", || {
        server.stdout_lines().iter().any(|l| l.starts_with("Shutting down: waiting up to 60 s"))
    });
    assert!(!server.exited(), "{name} exited on the first signal with a connection open");
    server.signal("INT");
    let second = Instant::now();
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "{name}: {status:?}");
    // Without the second signal it would wait the 60 s grace period;
    // it takes milliseconds, and 10 s is room for a loaded machine.
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "{name}: exited {:?} after the second signal",
        second.elapsed()
    );
    assert!(server.stdout_lines().iter().any(|l| l.ends_with("still open; closing them.")), "{name}");
}

per_server!(a_stalled_connection_cannot_hold_the_server_past_the_grace_period);
fn a_stalled_connection_cannot_hold_the_server_past_the_grace_period(name: &'static str) {
    let dir = site();
    let mut server = Server::start(name, &["--files", dir.str(), "--quiet", "--shutdown-timeout", "1"]);
    let (_stalled, _) = start_download(&server);
    server.signal("TERM");
    let signalled = Instant::now();
    let status = server.wait();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{name}: {status:?}");
    assert!(took >= Duration::from_millis(900), "{name}: exited after only {took:?}");
    // The grace period, then up to 3 s for the cut responses to be
    // logged (a sendfile blocked on a stalled client returns within
    // about 2 s), and room for a loaded machine.
    assert!(took < Duration::from_secs(8), "{name}: exited {took:?} after SIGTERM");
    assert!(server.stdout_lines().iter().any(|l| l.ends_with("still open; closing them.")), "{name}");
}

per_server!([httpserver, threadserver, poolserver] a_download_cut_by_shutdown_is_logged);
/// A download still going when the grace period ends is cut, and still
/// gets its log line, with what was sent and why it stopped. On main
/// the server exited without one. (forkserver's child serves its
/// download on its own, past the parent.)
fn a_download_cut_by_shutdown_is_logged(name: &'static str) {
    let dir = site();
    let mut server = Server::start(name, &["--files", dir.str(), "--shutdown-timeout", "1"]);
    let (stalled, _) = start_download(&server);
    let port = stalled.local_addr().unwrap().port();
    server.signal("TERM");
    assert_eq!(server.wait().code(), Some(0), "{name}");
    let prefix = format!("127.0.0.1:{port} \"GET /big.bin HTTP/1.0\" 200 ");
    let line = server.stdout_lines().into_iter().find(|l| l.starts_with(&prefix));
    let line =
        line.unwrap_or_else(|| panic!("{name}: no line for the cut download: {:?}", server.stdout_lines()));
    assert!(line.ends_with("(not sent in full: the server shut down)"), "{name}: {line:?}");
    // The bytes that left are counted: at least the MiB the client read.
    let sent: usize = line[prefix.len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(sent >= 1 << 20, "{name}: {sent} bytes logged, {line:?}");
}
