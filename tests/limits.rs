//! The relay at the machine's own limits: as many proxied connections as
//! the fds allow, held at once, and never more than two threads each.
//! These tests hold thousands of sockets in this process and in the server,
//! so they run one at a time (`HELD`), and `make limits` runs them alone.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::Server;

/// One test at a time: each needs most of the fds the machine gives.
static HELD: Mutex<()> = Mutex::new(());

/// An origin that answers one HTTP request on each connection and then
/// keeps it open, on one thread, for the tests that hold thousands.
struct HoldingOrigin {
    addr: std::net::SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl HoldingOrigin {
    fn start() -> HoldingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&held);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                // The request line, then the head up to its empty line.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
                keep.lock().unwrap().push(stream);
            }
        });
        HoldingOrigin { addr, held }
    }

    fn holding(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

impl Drop for HoldingOrigin {
    fn drop(&mut self) {
        self.held.lock().unwrap().clear();
    }
}

/// A proxied connection whose one request has been answered, held open.
fn open_one(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).expect("connect to the proxy");
    stream.set_read_timeout(Some(common::PATIENCE)).unwrap();
    (&stream).write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut answer = [0u8; 41];
    let mut got = 0;
    while got < answer.len() {
        match std::io::Read::read(&mut &stream, &mut answer[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(answer[..got].ends_with(b"\r\n\r\nok\n"), "{:?}", String::from_utf8_lossy(&answer[..got]));
    stream
}

/// The fd limit this test process may have: all the hard limit allows.
fn raise_own_fd_limit() -> u64 {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE.set(hard, hard).unwrap();
    hard
}

/// threadserver with `--max-connections 10000` and poolserver with 10,000
/// workers, under the machine's fd limit (20,000 here): each holds 9,800
/// proxied connections at once, two threads each, and still answers one
/// more. A thread that maps four regions (stack, guard, signal stack and
/// its guard) reaches `vm.max_map_count` before that and aborts.
fn holds_9800_and_serves_one_more(name: &str, args: &[&str]) {
    let _one = HELD.lock().unwrap_or_else(|e| e.into_inner());
    const HOLD: usize = 9_800;
    // The test holds each connection's two ends: the client's and the origin's.
    let limit = raise_own_fd_limit();
    assert!(limit >= 2 * HOLD as u64 + 200, "this test needs a hard fd limit of 20000, not {limit}");
    let origin = HoldingOrigin::start();
    let upstream = origin.addr.to_string();
    let mut all = vec!["--proxy", &upstream, "--quiet", "--idle-timeout", "0"];
    all.extend_from_slice(args);
    let server = Server::start(name, &all);
    let started = Instant::now();
    let mut held = Vec::with_capacity(HOLD + 1);
    for _ in 0..HOLD {
        held.push(open_one(&server));
    }
    assert_eq!(origin.holding(), HOLD);
    held.push(open_one(&server));
    let threads = server.thread_count();
    // poolserver's workers are its connections' first threads, and idle ones the pool's.
    let first = if name == "poolserver" { 10_000 } else { HOLD + 1 };
    assert!(threads <= first + HOLD + 1 + 8, "{threads} threads for {} connections", HOLD + 1);
    eprintln!(
        "{name}: {} connections held in {:.1} s, {threads} threads",
        HOLD + 1,
        started.elapsed().as_secs_f64()
    );
    // The machine is still at the server's command: its lowered limit said
    // so at start, and nothing was refused below it.
    assert!(server.stderr_lines().iter().all(|l| !l.contains("panicked") && !l.contains("fatal")));
}

#[test]
fn threadserver_holds_9800_proxied_connections_and_serves_one_more() {
    holds_9800_and_serves_one_more("threadserver", &["--max-connections", "10000"]);
}

#[test]
fn poolserver_holds_9800_proxied_connections_and_serves_one_more() {
    holds_9800_and_serves_one_more("poolserver", &["--num-threads", "10000", "--max-connections", "10000"]);
}

/// 4,000 connections at once, each making one request and then idle long
/// enough for its directions to move to fresh threads: sampled throughout,
/// the server runs two threads a connection (and its helpers, and the old
/// threads of moves on their way out). A thread that moved used to wait in
/// the thread cache for more work, so a connection had four.
fn never_more_than_two_threads_a_connection(name: &str, args: &[&str]) {
    let _one = HELD.lock().unwrap_or_else(|e| e.into_inner());
    const BURST: usize = 4_000;
    raise_own_fd_limit();
    let origin = HoldingOrigin::start();
    let upstream = origin.addr.to_string();
    let mut all = vec!["--proxy", &upstream, "--quiet"];
    all.extend_from_slice(args);
    let server = Arc::new(Server::start(name, &all));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watched = Arc::clone(&server);
    let sampler = thread::spawn(move || {
        let mut most = 0;
        while done_rx.recv_timeout(Duration::from_millis(5)).is_err() {
            most = most.max(watched.thread_count());
        }
        most
    });
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let server = Arc::clone(&server);
            thread::spawn(move || (0..BURST / 4).map(|_| open_one(&server)).collect::<Vec<_>>())
        })
        .collect();
    let held: Vec<TcpStream> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(held.len(), BURST);
    // Until every direction that may move has moved to a fresh thread:
    // threadserver's two a connection, poolserver's second (a worker stays).
    let before = thread_ids(server.pid());
    let moving = if name == "threadserver" { 2 * BURST } else { BURST };
    common::eventually("every idle direction to move", || {
        thread_ids(server.pid()).difference(&before).count() >= moving
    });
    let _ = done_tx.send(());
    let most = sampler.join().unwrap();
    // Two a connection and the helpers, and the old threads of moves on
    // their way out: a move waits while `MOVES_AT_ONCE` are, but the kernel
    // lists a thread until its exit is done, which a burst of exits on 2
    // cores delays (measured: 145 to 2,364 at once, joined or not). Room
    // for three quarters of a burst of them; main had 16,002 threads here
    // in threadserver and 12,002 in poolserver, when a moved thread waited
    // in the cache.
    let bound = 2 * BURST + 3 * BURST / 4;
    eprintln!("{name}: up to {most} threads for {BURST} connections");
    assert!(most <= bound, "{name}: up to {most} threads for {BURST} connections (at most {bound})");
    drop(held);
}

/// The ids of `pid`'s threads.
fn thread_ids(pid: u32) -> HashSet<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return HashSet::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

#[test]
fn threadserver_never_has_more_than_two_threads_a_connection() {
    never_more_than_two_threads_a_connection("threadserver", &["--max-connections", "5000"]);
}

#[test]
fn poolserver_never_has_more_than_two_threads_a_connection() {
    never_more_than_two_threads_a_connection(
        "poolserver",
        &["--num-threads", "4000", "--max-connections", "5000"],
    );
}
