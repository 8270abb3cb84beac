//! Running out: of fds, of threads and processes, of connection slots. The
//! server stays up, refuses what it must, and serves again once it can.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::origins::{self, Origin};
use common::{eventually, open_partial, Response, Server, TempDir};

/// Keeps asking for /hello.txt until a 200 comes back.
fn served_again(server: &Server) {
    eventually("a request to succeed again", || {
        let mut stream = match TcpStream::connect(server.addr()) {
            Ok(s) => s,
            Err(_) => return false,
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut raw = Vec::new();
        let ok = stream.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n").is_ok()
            && stream.read_to_end(&mut raw).is_ok();
        ok && raw.starts_with(b"HTTP/1.0 200 OK")
    });
}

/// threadserver under `ulimit -n 64` meets 100 connections: accept fails
/// with EMFILE, the server backs off instead of spinning, and once the
/// clients are gone a new request succeeds.
#[test]
fn out_of_fds_the_server_backs_off_and_recovers() {
    let dir = common::hello_site("emfile");
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=64", common::bin("threadserver")]);
    cmd.args(["--files", dir.str(), "--port", "0", "--quiet", "--request-timeout", "60"]);
    let server = Server::spawn_command("threadserver", cmd).expect("start under prlimit");
    let clients: Vec<TcpStream> = (0..100).map(|_| common::connect(server.addr())).collect();
    eventually("accept to fail with EMFILE", || {
        server.stderr_lines().iter().any(|l| l.contains("Too many open files"))
    });
    let before = server.cpu_ticks();
    thread::sleep(Duration::from_secs(2));
    let used = server.cpu_ticks() - before;
    // 2 s is 200 ticks of one core; a spinning accept loop would use most of them.
    assert!(used < 20, "the starved server used {used} ticks of CPU in 2 s");
    drop(clients);
    served_again(&server);
    eventually("the recovery to be logged", || {
        server.stderr_lines().iter().any(|l| l.contains("accept: working again"))
    });
}

/// A copy of the executable that an unprivileged user can run.
fn runnable_copy(name: &str, dir: &TempDir) -> String {
    let copy = dir.path().join(name);
    fs::copy(common::bin(name), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy.to_str().unwrap().to_string()
}

/// Whether this test run can start a server as another user (it takes root);
/// if not, says loudly that `test` is skipped.
fn can_run_as_another_user(test: &str) -> bool {
    let root = common::running_as_root();
    if !root {
        eprintln!("SKIPPED {test}: needs root to run a server as an unprivileged user");
    }
    root
}

/// An unprivileged uid that nothing else on the machine is expected to use.
const TEST_UID: u32 = 61_234;

/// How many tasks (threads) `uid` runs on the machine right now.
fn tasks_of(uid: u32) -> usize {
    let mut n = 0;
    for proc_entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = fs::read_to_string(proc_entry.path().join("status")) else { continue };
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        let owner = field("Uid:").and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok());
        if owner == Some(uid) {
            n += field("Threads:").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1);
        }
    }
    n
}

/// Starts `name` as an unprivileged user with room for `nproc` tasks of
/// its own (threads and processes), so that making one more fails with
/// EAGAIN. The kernel counts every task of the user, so any it already has
/// are added to the limit.
fn start_with_task_limit(name: &str, dir: &TempDir, nproc: usize, args: &[&str]) -> Server {
    let limit = nproc + tasks_of(TEST_UID);
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={TEST_UID}")).arg(format!("--regid={TEST_UID}")).arg("--clear-groups");
    cmd.args(["prlimit", &format!("--nproc={limit}")]);
    cmd.arg(runnable_copy(name, dir)).args(args).args(["--port", "0"]);
    Server::spawn_command(name, cmd).unwrap_or_else(|(s, e)| panic!("{name} as uid {TEST_UID}: {s:?} {e}"))
}

/// The task limit counts every task of the user on the machine, so the
/// servers run as that user must run one at a time: one test runs them all.
#[test]
fn out_of_threads_or_processes() {
    if !can_run_as_another_user("out_of_threads_or_processes") {
        return;
    }
    out_of_threads_or_processes_a_connection_gets_503();
    out_of_threads_a_proxied_connection_is_closed();
}

/// When no thread (threadserver) or process (forkserver) can be made, that
/// one connection gets a 503 and the server goes on.
fn out_of_threads_or_processes_a_connection_gets_503() {
    // threadserver runs main, signal and refuser threads; forkserver also a reaper.
    for (name, own_tasks) in [("threadserver", 3), ("forkserver", 4)] {
        let dir = common::hello_site("eagain");
        let server = start_with_task_limit(name, &dir, own_tasks + 2, &["--files", dir.str(), "--quiet"]);
        let mut busy = open_partial(&server, 2);
        let r = Response::parse(&common::exchange(server.addr(), b"GET /hello.txt HTTP/1.0\r\n\r\n"));
        r.assert_well_formed(503, "Service Unavailable");
        for stream in &mut busy {
            stream.write_all(b"\r\n").unwrap();
            Response::parse(&common::read_to_close(stream)).assert_well_formed(200, "OK");
        }
        drop(busy);
        served_again(&server);
    }
}

/// In proxy mode, a connection whose second relay thread cannot be made is
/// closed at once, and says why in the log.
fn out_of_threads_a_proxied_connection_is_closed() {
    let dir = TempDir::new("eagain-proxy");
    let origin = Origin::start(origins::echo);
    // main, signals, and the connection's own thread: no room for the relay thread.
    let server = start_with_task_limit("threadserver", &dir, 3, &["--proxy", &origin.proxy_arg()]);
    let mut stream = common::connect(server.addr());
    stream.write_all(b"hello").unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(got.is_empty(), "nothing should have been relayed: {got:?}");
    eventually("the log line", || {
        server.stdout_lines().iter().any(|l| l.ends_with("no thread for the second direction"))
    });
}

per_server!([threadserver, forkserver, poolserver] max_connections_is_counted_and_released_exactly);
/// `--max-connections 5`: five connections are served at once (poolserver:
/// its 4 workers and 1 queued), the sixth gets a 503, and each slot comes
/// back when its connection ends: the limit is counted exactly.
fn max_connections_is_counted_and_released_exactly(name: &'static str) {
    let dir = common::hello_site("maxconn");
    // Not quiet: the accept loop's own lines say which connection it refused.
    let server = Server::start(name, &["--files", dir.str(), "--max-connections", "5"]);
    let base_threads = server.thread_count();
    // No connection in progress: no handler thread, no child process.
    let idle = || server.thread_count() == base_threads && common::children_of(server.pid()).is_empty();
    let served =
        || server.stdout_lines().iter().filter(|l| l.contains("\"GET /hello.txt HTTP/1.0\" 200 ")).count();
    for round in 0..3 {
        eventually("the previous round's connections to be released", idle);
        // Each of them logs its line just before it gives its slot back
        // (in poolserver, the thread count says nothing of that): six a
        // round, the five held and the one that took the freed slot.
        eventually("the previous round's six to be logged", || served() == 6 * round);
        let accepted =
            || server.stdout_lines().iter().filter(|l| l.starts_with("Accepted connection")).count();
        let before = accepted();
        let mut held = open_partial(&server, 5);
        // All five hold their slots before the sixth comes: the accept
        // queue need not keep the order in which they connected.
        eventually("the five to be accepted", || accepted() == before + 5);
        let r = Response::parse(&common::exchange(server.addr(), b"GET /hello.txt HTTP/1.0\r\n\r\n"));
        r.assert_well_formed(503, "Service Unavailable");
        // Free exactly one slot: then exactly one more fits.
        let mut first = held.remove(0);
        first.write_all(b"\r\n").unwrap();
        Response::parse(&common::read_to_close(&mut first)).assert_well_formed(200, "OK");
        drop(first);
        eventually("the freed slot to be reused", || {
            let mut probe = common::connect(server.addr());
            probe.write_all(b"GET /hello.txt HTTP/1.0\r\n").unwrap();
            // The accept loop logs its decision right after the accept line.
            let port = probe.local_addr().unwrap().port();
            let accepted = format!("Accepted connection from 127.0.0.1 on port {port}");
            eventually("the probe to be accepted", || server.stdout_lines().contains(&accepted));
            probe.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            let mut byte = [0u8; 1];
            let answered = matches!(probe.read(&mut byte), Ok(n) if n > 0);
            let refused = format!("refused 127.0.0.1:{port}: too many connections");
            let refused = answered || server.stdout_lines().contains(&refused);
            if !refused {
                held.push(probe);
            }
            !refused
        });
        let r = Response::parse(&common::exchange(server.addr(), b"GET /hello.txt HTTP/1.0\r\n\r\n"));
        r.assert_well_formed(503, "Service Unavailable");
        for stream in &mut held {
            stream.set_read_timeout(Some(common::PATIENCE)).unwrap();
            stream.write_all(b"\r\n").unwrap();
            let r = Response::parse(&common::read_to_close(stream));
            r.assert_well_formed(200, "OK");
            assert_eq!(r.text(), "hello\n", "{name} round {round}");
        }
    }
}

/// A proxied connection over `--max-connections` is closed without a byte relayed.
#[test]
fn max_connections_closes_a_proxied_connection() {
    let origin = Origin::start(origins::echo);
    let relay = Server::start("threadserver", &["--proxy", &origin.proxy_arg(), "--max-connections", "5"]);
    let mut held: Vec<TcpStream> = (0..5).map(|_| common::connect(relay.addr())).collect();
    for stream in &mut held {
        stream.write_all(b"ping").unwrap();
        let mut pong = [0u8; 4];
        stream.read_exact(&mut pong).unwrap();
    }
    let mut sixth = common::connect(relay.addr());
    let _ = sixth.write_all(b"ping");
    let mut got = Vec::new();
    let _ = sixth.read_to_end(&mut got);
    assert!(got.is_empty(), "the sixth proxied connection was relayed");
    eventually("the refusal line", || {
        relay.stdout_lines().iter().any(|l| l.ends_with(": too many connections"))
    });
}

/// Raises this process's soft limit on fds to its hard limit, and returns it.
fn raise_fd_limit() -> u64 {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit(RLIMIT_NOFILE)");
    rlimit::Resource::NOFILE.set(hard, hard).expect("setrlimit(RLIMIT_NOFILE)");
    hard
}

/// poolserver's queue is bounded: `--max-connections` counts the queued and
/// the served. 10,000 idle connections against 2 workers and a limit of 100:
/// the rest are refused (503, or just closed once the refuser is busy), the
/// server's fds stay within the limit plus a small constant, and once the
/// idle connections leave it serves again.
#[test]
fn poolserver_queues_no_more_than_max_connections() {
    const CLIENTS: usize = 10_000;
    const MAX: usize = 100;
    // Refused connections waiting for their 503 (the refuser's queue, and the
    // one it is answering), and the server's own fds: listener, std streams.
    const SLACK: usize = 64 + 1 + 16;
    let limit = raise_fd_limit();
    assert!(limit > CLIENTS as u64 + 500, "this test needs {} fds; the hard limit is {limit}", CLIENTS + 500);
    let dir = common::hello_site("poolbound");
    let args = ["--files", dir.str(), "--quiet", "--num-threads", "2", "--max-connections", "100"];
    let server = Server::start("poolserver", &[&args[..], &["--request-timeout", "120"]].concat());
    let base = server.fd_count();
    let mut clients = Vec::with_capacity(CLIENTS);
    let mut peak = base;
    for i in 0..CLIENTS {
        clients.push(TcpStream::connect(server.addr()).unwrap());
        if i % 250 == 0 {
            peak = peak.max(server.fd_count());
        }
    }
    for _ in 0..20 {
        peak = peak.max(server.fd_count());
        thread::sleep(Duration::from_millis(10));
    }
    assert!(peak <= base + MAX + SLACK, "the server held {peak} fds (base {base}, limit {MAX})");
    // The last client was refused: it got a 503, or a plain close, and no wait.
    let last = clients.last_mut().unwrap();
    last.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let mut answer = Vec::new();
    last.read_to_end(&mut answer).expect("the refused client's connection to end");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.0 503 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(clients);
    served_again(&server);

    // Proxy mode refuses by closing.
    let origin = Origin::start(origins::silent);
    let relay = Server::start(
        "poolserver",
        &["--proxy", &origin.proxy_arg(), "--quiet", "--num-threads", "2", "--max-connections", "10"],
    );
    let held: Vec<TcpStream> = (0..10).map(|_| common::connect(relay.addr())).collect();
    let mut refused = common::connect(relay.addr());
    let mut got = Vec::new();
    refused.read_to_end(&mut got).expect("the eleventh connection to be closed");
    assert!(got.is_empty(), "the eleventh proxied connection got {got:?}");
    drop(held);
}
