//! System calls that fail at the machine's limits, or are interrupted: the
//! server gives the true answer, or refuses, and goes on. Faults come from a
//! preloaded library the tests build (`tests/faults/faults.c`), from
//! `prlimit --pid` on the running server, and from stopping and continuing
//! it with SIGSTOP and SIGCONT.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::origins::{self, Origin};
use common::{eventually, Response, Server, TempDir};

/// The fault library, built once per test run with the system's C compiler.
fn fault_library() -> &'static str {
    static BUILT: OnceLock<String> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libfaults.so");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/faults/faults.c");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let status = Command::new(&cc)
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .args([src, "-ldl"])
            .status()
            .unwrap_or_else(|e| panic!("run {cc} to build the fault library: {e}"));
        assert!(status.success(), "{cc} could not build {src}");
        out.to_string_lossy().into_owned()
    })
}

/// `name` with `args` and `--port 0` (poolserver: 4 workers), the fault
/// library preloaded with the faults `env` chooses.
fn start_with_faults(name: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(common::bin(name));
    cmd.args(args).args(["--port", "0"]);
    if name == "poolserver" {
        cmd.args(["--num-threads", "4"]);
    }
    cmd.env("LD_PRELOAD", fault_library()).envs(env.iter().copied());
    Server::spawn_command(name, cmd)
        .unwrap_or_else(|(status, err)| panic!("{name} exited ({status:?}): {err}"))
}

/// One request through a proxy to an `http_keepalive` origin: the response
/// body, or `None` if the connection was closed or reset without one.
fn relayed(server: &Server, path: &str) -> Option<String> {
    let mut stream = common::connect(server.addr());
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    (!raw.is_empty()).then(|| Response::parse(&raw).text())
}

/// A connection through the proxy, its first request answered (`None` if
/// it was closed or reset instead), held open.
fn held_open(server: &Server, path: &str) -> Option<TcpStream> {
    let stream = common::connect(server.addr());
    let mut reader = std::io::BufReader::new(stream.try_clone().ok()?);
    (&stream).write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).ok()?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).ok()?;
    line.starts_with("HTTP/1.1 200").then_some(stream)
}

per_server!([httpserver, threadserver, poolserver] a_thread_start_that_cannot_map_or_clone_is_refused_and_the_server_goes_on);
/// While no thread start can map memory (mmap and mprotect fail with
/// ENOMEM, as at `vm.max_map_count`) and then while no thread can be
/// made at all, each proxied connection is relayed or closed, never
/// hung, and the server lives on to relay again. A thread whose start
/// maps its own signal stack from inside the new thread aborts the
/// whole process at the first such connection.
fn a_thread_start_that_cannot_map_or_clone_is_refused_and_the_server_goes_on(name: &'static str) {
    let origin = Origin::start(origins::http_keepalive);
    let dir = TempDir::new("maps");
    let trigger = dir.path().join("on");
    let env = [("FAULTS_TRIGGER", trigger.to_str().unwrap()), ("FAULTS_MAPS", "1"), ("FAULTS_THREADS", "0")];
    let mut server = start_with_faults(name, &["--proxy", &origin.proxy_arg()], &env);
    assert_eq!(relayed(&server, "/before").as_deref(), Some("response 1 to /before\n"));
    fs::write(&trigger, "").unwrap();
    // Held open at once, so that each needs threads no cache holds (as
    // many as leave room: the basic server serves one at a time, the
    // pool has 4 workers).
    let hold = match name {
        "httpserver" => 0,
        "poolserver" => 3,
        _ => 8,
    };
    let held: Vec<Option<TcpStream>> =
        (0..hold).map(|i| held_open(&server, &format!("/mapless{i}"))).collect();
    for i in 0..8 {
        let answer = relayed(&server, &format!("/mapless-after{i}"));
        assert!(
            answer.is_none() || answer == Some(format!("response 1 to /mapless-after{i}\n")),
            "{answer:?}"
        );
    }
    drop(held);
    assert!(!server.exited(), "{name} died: {}", server.stderr_lines().join("\n"));
    fs::remove_file(&trigger).unwrap();
    assert_eq!(relayed(&server, "/after").as_deref(), Some("response 1 to /after\n"));
    drop(server);

    let env = [("FAULTS_TRIGGER", trigger.to_str().unwrap()), ("FAULTS_MAPS", "0"), ("FAULTS_THREADS", "1")];
    let mut server = start_with_faults(name, &["--proxy", &origin.proxy_arg()], &env);
    fs::write(&trigger, "").unwrap();
    for i in 0..20 {
        let answer = relayed(&server, &format!("/threadless{i}"));
        assert!(answer.is_none() || answer == Some(format!("response 1 to /threadless{i}\n")), "{answer:?}");
    }
    assert!(!server.exited(), "{name} died: {}", server.stderr_lines().join("\n"));
    fs::remove_file(&trigger).unwrap();
    assert_eq!(relayed(&server, "/again").as_deref(), Some("response 1 to /again\n"));
}

per_server!(an_interrupted_pread_still_sends_the_whole_file);
/// Every other `pread` of the read/write loop is interrupted (EINTR):
/// each is retried, and the client gets the whole file, byte-exact.
fn an_interrupted_pread_still_sends_the_whole_file(name: &'static str) {
    let dir = TempDir::new("pread");
    let body = common::random_bytes(300 * 1024 + 17, 30);
    fs::write(dir.path().join("big.bin"), &body).unwrap();
    fs::write(dir.path().join("small.txt"), "small\n").unwrap();
    let server = start_with_faults(name, &["--files", dir.str(), "--no-sendfile"], &[("FAULTS_PREAD", "1")]);
    for _ in 0..2 {
        let small = common::get(server.addr(), "/small.txt");
        small.assert_well_formed(200, "OK");
        assert_eq!(small.body, b"small\n");
        let big = common::get(server.addr(), "/big.bin");
        big.assert_well_formed(200, "OK");
        assert!(big.body == body, "{} of {} bytes, or other bytes", big.body.len(), body.len());
    }
}

/// The numbers of the fds `pid` has open.
fn open_fds(pid: u32) -> Vec<usize> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let mut fds: Vec<usize> = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    fds.sort_unstable();
    fds
}

/// The second-lowest fd number `pid` has free: as its fd limit, the next
/// fd it opens (the lowest free) is the last one it may.
fn second_free_fd(pid: u32) -> usize {
    let open = open_fds(pid);
    (0..).filter(|n| !open.contains(n)).nth(1).unwrap()
}

/// Sets the soft fd limit of the running process `pid`.
fn set_fd_limit(pid: u32, n: usize) {
    let status = Command::new("prlimit").arg(format!("--pid={pid}")).arg(format!("--nofile={n}:")).status();
    assert!(status.is_ok_and(|s| s.success()), "prlimit --pid {pid} --nofile={n}:");
}

per_server!(an_open_out_of_fds_is_503_and_the_server_goes_on);
/// With the fd limit set so that `accept` takes the last fd, opening
/// the file fails with EMFILE: the client is told `503` with
/// `Retry-After`, not a `404` a cache would keep for a file that is
/// there, and the reason is logged. With fds again, the file is served.
fn an_open_out_of_fds_is_503_and_the_server_goes_on(name: &'static str) {
    let dir = common::hello_site("emfile-open");
    let server = Server::start(name, &["--files", dir.str()]);
    // Threads and children that start on the first request are started first.
    assert_eq!(common::get(server.addr(), "/hello.txt").code(), 200);
    let pid = server.pid();
    eventually("the first request's fds to close", || {
        let before = open_fds(pid);
        std::thread::sleep(Duration::from_millis(50));
        open_fds(pid) == before
    });
    // The accepted socket takes the last fd the limit allows.
    set_fd_limit(pid, second_free_fd(pid));
    let r = common::get(server.addr(), "/hello.txt");
    set_fd_limit(pid, 4096);
    r.assert_well_formed(503, "Service Unavailable");
    assert_eq!(r.header("Retry-After"), Some("1"));
    eventually("the reason in the error log", || {
        server.stderr_lines().iter().any(|l| l.contains("Too many open files") && l.contains("503"))
    });
    assert_eq!(common::get(server.addr(), "/hello.txt").code(), 200);
}

/// Whether a socket on this machine is in SYN-SENT to `port` (a connect
/// waiting for an answer).
fn connecting_to(port: u16) -> bool {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!(":{port:04X} 02 ");
    table.lines().any(|l| l.contains(&remote))
}

/// The state letter of `pid` (`T` when stopped).
fn state(pid: u32) -> char {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).unwrap_or('?')
}

per_server!(an_interrupted_connect_is_still_relayed);
/// The server is stopped and continued (SIGSTOP, SIGCONT: a debugger, a
/// checkpoint) while it connects to an upstream whose accept queue is
/// full. Linux ends such a connect with EINTR; the server connects again
/// within `--connect-timeout`, and the client's request is relayed once
/// the upstream accepts, never answered `502 Interrupted system call`.
fn an_interrupted_connect_is_still_relayed(name: &'static str) {
    // An upstream whose accept queue (backlog 0: one connection) is full,
    // so that a new connect waits for the SYN to be answered.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.listen(0).unwrap();
    let listener: TcpListener = socket.into();
    let upstream = listener.local_addr().unwrap();
    let filler = TcpStream::connect(upstream).unwrap();

    let server = Server::start(name, &["--proxy", &upstream.to_string(), "--connect-timeout", "30"]);
    let mut client = common::connect(server.addr());
    client.write_all(b"GET /through HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    eventually("the server to connect upstream", || connecting_to(upstream.port()));
    // forkserver's child is the one that connects.
    let pid = match common::children_of(server.pid())[..] {
        [child] if name == "forkserver" => child,
        _ => server.pid(),
    };
    let signal =
        |sig: &str| assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
    signal("-STOP");
    eventually("the server to stop", || state(pid) == 'T');
    signal("-CONT");
    eventually("the server to run again", || state(pid) != 'T');
    // The upstream accepts now: the filler first, then the server.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || origins::http_keepalive(stream));
        }
    });
    drop(filler);
    client.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let mut raw = Vec::new();
    let _ = client.read_to_end(&mut raw);
    let response = Response::parse(&raw);
    assert_eq!(response.code(), 200, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(response.text(), "response 1 to /through\n");
}
