//! Time limits judged by the wall clock a user sees: a client that asks for
//! a big response and stops reading is dropped within its timeout plus a
//! quarter, in files mode (`--send-timeout`, through sendfile and through
//! the read/write loop) and through the proxy (`--idle-timeout`), however
//! the kernel keeps taking small amounts from the blocked write. A
//! nameserver that never answers costs no more than `--connect-timeout`.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use common::origins::{self, Origin};
use common::{eventually, get, Server, TempDir};

/// More than the socket buffers on both ends hold, many times over.
const HUGE: u64 = 64 << 20;

/// The stall tests' timeout, and the most a stalled client may be held
/// after its request, as README promises: the timeout and a quarter of it,
/// and half a second for a loaded machine to notice.
const TIMEOUT_SECS: u64 = 3;
const DROPPED_WITHIN: Duration = Duration::from_millis(TIMEOUT_SECS * 1250 + 500);

/// Waits for the first stdout line of `srv` that `matches`; returns how long
/// after `since` it was seen.
fn line_seen_after(srv: &Server, since: Instant, what: &str, matches: impl Fn(&str) -> bool) -> Duration {
    eventually(what, || srv.stdout_lines().iter().any(|l| matches(l)));
    since.elapsed()
}

/// A client with a 4 KiB window asks for a 64 MiB file and never reads.
fn files_client_that_never_reads(server: &str, extra: &[&str]) {
    let site = TempDir::new("stalled");
    origins::write_pattern_file(&site.path().join("huge.bin"), HUGE);
    fs::write(site.path().join("ok.txt"), "ok\n").unwrap();
    let timeout = TIMEOUT_SECS.to_string();
    let mut args = vec!["--files", site.str(), "--send-timeout", &timeout];
    args.extend(extra);
    let s = Server::start_with_pool(server, &args, 1);
    let mut stalled = common::connect_small_window(s.addr(), 4096);
    let port = stalled.local_addr().unwrap().port();
    let asked = Instant::now();
    stalled.write_all(b"GET /huge.bin HTTP/1.0\r\n\r\n").unwrap();
    let prefix = format!("127.0.0.1:{port} \"GET /huge.bin HTTP/1.0\" 200 ");
    let took = line_seen_after(&s, asked, "the stalled download's log line", |l| {
        l.starts_with(&prefix) && l.ends_with("(not sent in full: send timeout)")
    });
    eprintln!("{server} {extra:?}: a client that never reads dropped after {took:?}");
    assert!(
        took <= DROPPED_WITHIN,
        "{server} {extra:?}: a client that never reads was held {took:?} under --send-timeout {TIMEOUT_SECS}"
    );
    // The one connection httpserver serves, or the pool's one worker, is free again.
    get(s.addr(), "/ok.txt").assert_well_formed(200, "OK");
    // Dropped, not ended: the client is told by a reset that the response was cut.
    let mut rest = Vec::new();
    match stalled.read_to_end(&mut rest) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => {
            panic!("{server}: the dropped client expected a reset, got {other:?} after {} bytes", rest.len())
        }
    }
}

per_server!(a_client_that_never_reads_is_dropped_on_time_through_sendfile);
fn a_client_that_never_reads_is_dropped_on_time_through_sendfile(server: &'static str) {
    files_client_that_never_reads(server, &[])
}

per_server!(a_client_that_never_reads_is_dropped_on_time_through_the_copy_loop);
fn a_client_that_never_reads_is_dropped_on_time_through_the_copy_loop(server: &'static str) {
    files_client_that_never_reads(server, &["--no-sendfile"])
}

per_server!(a_client_that_never_reads_through_the_proxy_is_reset_on_time);
/// The same through the proxy: an origin streams 64 MiB to a client
/// with a 4 KiB window that never reads; `--idle-timeout 3` resets it.
fn a_client_that_never_reads_through_the_proxy_is_reset_on_time(server: &'static str) {
    let origin = Origin::start(origins::stream_pattern(HUGE));
    let timeout = TIMEOUT_SECS.to_string();
    let relay = Server::start(server, &["--proxy", &origin.proxy_arg(), "--idle-timeout", &timeout]);
    let mut stalled = common::connect_small_window(relay.addr(), 4096);
    let asked = Instant::now();
    stalled.write_all(b"GET /stream HTTP/1.1\r\nHost: origin\r\n\r\n").unwrap();
    let took = line_seen_after(&relay, asked, "the idle-timeout log line", |l| l.ends_with("idle timeout"));
    eprintln!("{server}: a client that never reads through the proxy reset after {took:?}");
    assert!(
        took <= DROPPED_WITHIN,
        "{server}: a client that never reads was held {took:?} under --idle-timeout {TIMEOUT_SECS}"
    );
    let mut rest = Vec::new();
    match stalled.read_to_end(&mut rest) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("{server}: expected a reset, got {other:?}"),
    }
}

/// A nameserver that reads every query and never answers, on port 53 of a
/// loopback address of its own. `None` where the port cannot be had (not
/// root).
fn silent_nameserver() -> Option<(UdpSocket, String)> {
    for last in 2..=250u8 {
        let ip = format!("127.0.53.{last}");
        if let Ok(sock) = UdpSocket::bind((ip.as_str(), 53)) {
            return Some((sock, ip));
        }
    }
    None
}

per_server!(a_silent_nameserver_costs_no_more_than_the_connect_timeout);
/// The proxy's upstream is a name, and the nameserver never answers
/// (glibc alone would wait 5 s twice). The client gets its 502 within
/// `--connect-timeout` and a second. The server runs in a mount
/// namespace of its own whose /etc/resolv.conf names the silent server.
fn a_silent_nameserver_costs_no_more_than_the_connect_timeout(server: &'static str) {
    if !common::running_as_root() {
        eprintln!("skipped: a nameserver on port 53 and a mount namespace need root");
        return;
    }
    let (_ns, ip) = silent_nameserver().expect("a loopback address with port 53 free");
    let dir = TempDir::new("resolv");
    let conf = dir.path().join("resolv.conf");
    fs::write(&conf, format!("nameserver {ip}\noptions timeout:5 attempts:2\n")).unwrap();
    let mut cmd = Command::new("unshare");
    let script = format!("mount --bind {} /etc/resolv.conf && exec \"$0\" \"$@\"", conf.display());
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script, common::bin(server)]);
    cmd.args(["--proxy", "upstream.example:80", "--connect-timeout", "2", "--port", "0"]);
    if server == "poolserver" {
        cmd.args(["--num-threads", "2"]);
    }
    let relay = Server::spawn_command(server, cmd).unwrap_or_else(|(s, e)| panic!("{server} ({s:?}): {e}"));
    let asked = Instant::now();
    let mut stream = common::connect(relay.addr());
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let took = asked.elapsed();
    eprintln!("{server}: 502 after {took:?} under a silent nameserver");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.0 502 Bad Gateway"), "{server}: {answer}");
    assert!(answer.contains("upstream.example"), "{server}: the 502 names the upstream: {answer}");
    // Unbounded, glibc waits 5 s a try for the silent nameserver: the
    // 2 s timeout and up to 2.5 s of room for a loaded machine.
    assert!(
        took < Duration::from_millis(4500),
        "{server}: the 502 came after {took:?} under --connect-timeout 2"
    );
}
