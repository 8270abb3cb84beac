//! What the integration tests share: starting a built server on `--port 0`,
//! temporary directories, and raw HTTP over `TcpStream`.
#![allow(dead_code)]

pub mod origins;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The four executables of the homework.
pub const SERVERS: [&str; 4] = ["httpserver", "forkserver", "threadserver", "poolserver"];

/// Defines one test per server for the function `name(server: &str)`
/// written after it: `per_server!(name);` makes `name::httpserver`,
/// `name::forkserver`, `name::threadserver` and `name::poolserver`, each
/// calling `name` with that executable's name. So `cargo test poolserver`
/// runs poolserver's cases, and a failure names the server that failed.
/// `per_server!([threadserver, poolserver] name);` limits it to those. The
/// function is an ordinary one, which rustfmt formats.
#[macro_export]
macro_rules! per_server {
    ($name:ident) => {
        $crate::per_server!([httpserver, forkserver, threadserver, poolserver] $name);
    };
    ([$($exe:ident),+] $name:ident) => {
        mod $name {
            $(
                #[test]
                fn $exe() {
                    super::$name(stringify!($exe))
                }
            )+
        }
    };
}

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The path of a built executable.
pub fn bin(name: &str) -> &'static str {
    match name {
        "httpserver" => env!("CARGO_BIN_EXE_httpserver"),
        "forkserver" => env!("CARGO_BIN_EXE_forkserver"),
        "threadserver" => env!("CARGO_BIN_EXE_threadserver"),
        "poolserver" => env!("CARGO_BIN_EXE_poolserver"),
        other => panic!("no executable named {other}"),
    }
}

/// A running server, killed when dropped.
pub struct Server {
    pub name: String,
    pub port: u16,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    drains: Vec<thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `name` with `args` and `--port 0`; poolserver gets
    /// `--num-threads 4` unless `args` sets it. Returns once the server has
    /// printed its "Listening on port N..." line.
    pub fn start(name: &str, args: &[&str]) -> Server {
        Server::start_with_pool(name, args, 4)
    }

    /// Like [`Server::start`], with a pool of `pool` workers when `name` is
    /// poolserver (the other servers take no `--num-threads`).
    pub fn start_with_pool(name: &str, args: &[&str], pool: usize) -> Server {
        let pool = pool.to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--port", "0"]);
        if name == "poolserver" && !args.contains(&"--num-threads") {
            all.extend(["--num-threads", &pool]);
        }
        Server::spawn(name, &all)
            .unwrap_or_else(|(status, err)| panic!("{name} {all:?} exited ({status:?}): {err}"))
    }

    /// Starts `name` with exactly `args`. `Err` holds the exit status and the
    /// stderr of a server that exited before listening.
    pub fn spawn(name: &str, args: &[&str]) -> Result<Server, (Option<ExitStatus>, String)> {
        let mut cmd = Command::new(bin(name));
        cmd.args(args);
        Server::spawn_command(name, cmd)
    }

    /// Runs `cmd` (a server, perhaps behind a wrapper such as prlimit) and
    /// waits for its Listening line.
    pub fn spawn_command(name: &str, mut cmd: Command) -> Result<Server, (Option<ExitStatus>, String)> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let stdout_done = drain(child.stdout.take().unwrap(), Arc::clone(&stdout), Some(port_tx));
        let stderr_done = drain(child.stderr.take().unwrap(), Arc::clone(&stderr), None);
        match port_rx.recv_timeout(PATIENCE) {
            Ok(port) => {
                let drains = vec![stdout_done, stderr_done];
                Ok(Server { name: name.to_string(), port, child, stdout, stderr, drains })
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let _ = stderr_done.join();
                let err = stderr.lock().unwrap().join("\n");
                Err((status, err))
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines the server has printed on stdout so far, each without the
    /// time a request's or a connection's line begins with (see
    /// [`log_time`]).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.raw_stdout_lines()
            .into_iter()
            .map(|l| log_time(&l).map_or(l.clone(), |(_, rest)| rest.to_string()))
            .collect()
    }

    /// The lines the server has printed on stdout so far, as printed.
    pub fn raw_stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The lines the server has printed on stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `signal` (e.g. "TERM") to the server.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().unwrap();
        assert!(ok.success(), "kill -{signal} failed");
    }

    /// Whether the server process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        self.wait()
    }

    /// Its resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_field(self.pid(), "VmRSS:")
    }

    /// CPU time used so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        // After the command: state is field 3 of stat(5); utime and stime are 14 and 15.
        let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        tick(11) + tick(12)
    }

    /// How many fds the server has open: its sockets, pipes and files. Files
    /// under /sys and /proc are left out: libc opens them for a moment on its
    /// own (malloc reads /sys/devices/system/cpu/online when a thread first
    /// allocates), and counting one would make a baseline wrong by chance.
    pub fn fd_count(&self) -> usize {
        let Ok(dir) = fs::read_dir(format!("/proc/{}/fd", self.pid())) else { return 0 };
        dir.flatten()
            .filter(|fd| {
                let target = fs::read_link(fd.path()).unwrap_or_default();
                !(target.starts_with("/sys") || target.starts_with("/proc"))
            })
            .count()
    }

    /// How many threads the server runs.
    pub fn thread_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/task", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// Waits for the server to exit, and for everything it printed to be read.
    pub fn wait(&mut self) -> ExitStatus {
        let status = wait_with_patience(&mut self.child);
        let deadline = Instant::now() + PATIENCE;
        while !self.drains.iter().all(|d| d.is_finished()) {
            assert!(Instant::now() < deadline, "the server's output pipes stayed open after it exited");
            thread::sleep(Duration::from_millis(5));
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The pids of the live or zombie children of `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut kids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // The fields after the parenthesised command: state, ppid, ...
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else { continue };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.get(1) == Some(&pid.to_string().as_str()) {
            kids.push(entry.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    kids
}

/// Whether the tests run as root (needed to run a server as another user).
pub fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn wait_with_patience(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Reads `pipe` line by line into `lines` until it closes; the first
/// "Listening on port N..." line sends N through `port`.
fn drain(
    pipe: impl Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    port: Option<mpsc::Sender<u16>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &port {
                if let Some(n) = line.strip_prefix("Listening on port ").and_then(|r| r.strip_suffix("...")) {
                    let _ = tx.send(n.parse().expect("port number"));
                }
            }
            lines.lock().unwrap().push(line);
        }
    })
}

/// Calls `check` until it returns true, or fails the test after PATIENCE.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("httpserver-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn str(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A served directory holding one file, `hello.txt`, that says `hello`.
pub fn hello_site(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    dir
}

/// `len` pseudo-random bytes, the same for the same `seed`: test data that
/// compresses to nothing and repeats nowhere.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut out = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// Connects with read and write timeouts, so a broken server fails a test
/// instead of hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// The first line of a request head, without the blank line that ends it.
pub const PARTIAL_HEAD: &[u8] = b"GET /hello.txt HTTP/1.0\r\n";

/// Opens `n` connections that each send only part of their request head
/// ([`PARTIAL_HEAD`]). A server that handles one connection at a time is
/// stuck on the first.
pub fn open_partial(server: &Server, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut c = connect(server.addr());
            c.write_all(PARTIAL_HEAD).unwrap();
            c
        })
        .collect()
}

/// Connects with a receive buffer of about `rcvbuf` bytes (set before the
/// connection exists, so the window the server sees is that small): a
/// client whose reads the server feels at once.
pub fn connect_small_window(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(rcvbuf).unwrap();
    sock.connect(&addr.into()).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads `stream` at a steady `per_read` bytes every `every` for `lasting`,
/// as a slow but live client does. Returns what it read.
pub fn read_steadily(stream: &mut TcpStream, per_read: usize, every: Duration, lasting: Duration) -> Vec<u8> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; per_read];
    while start.elapsed() < lasting {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("a steady reader, after {} bytes: {e}", got.len()));
        assert!(n > 0, "the stream ended after {} bytes while read steadily", got.len());
        got.extend_from_slice(&buf[..n]);
        thread::sleep(every);
    }
    got
}

/// Closes `stream` with a reset instead of a FIN, as a client that aborts
/// does: `SO_LINGER` with a zero timeout, then close.
pub fn close_with_reset(stream: TcpStream) {
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).expect("setsockopt(SO_LINGER)");
    drop(stream);
}

/// The time at the start of a log line, UTC, ISO 8601, to the millisecond
/// (`2026-12-04T20:30:37.123Z `), and the rest of the line; `None` for a
/// line that does not begin so.
pub fn log_time(line: &str) -> Option<(&str, &str)> {
    let (time, rest) = line.split_once(' ')?;
    let shape = time.len() == 24
        && time.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            23 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    shape.then_some((time, rest))
}

/// Sends `request` from a client with a 4 KiB window that reads the first
/// KiB of the answer and then stops for now: the server is left blocked in
/// the middle of the body. Returns the stream and what it read.
pub fn stalled_download(addr: SocketAddr, request: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = connect_small_window(addr, 4096);
    stream.write_all(request.as_bytes()).unwrap();
    let mut first = vec![0u8; 1024];
    stream.read_exact(&mut first).unwrap();
    (stream, first)
}

/// Reads the rest of a stalled download, after `raw`, to its end.
pub fn finish_download(mut stream: TcpStream, mut raw: Vec<u8>, what: &str) -> Response {
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("{what}: {e} after {} bytes", raw.len()));
    Response::parse(&raw)
}

/// Sends `raw` as is and returns everything the server sends until it closes.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(raw).unwrap();
    read_to_close(&mut stream)
}

pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap_or_else(|e| panic!("reading the response: {e}"));
    out
}

/// `METHOD path HTTP/1.0` with the header lines `headers`, and its answer.
pub fn ask(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> Response {
    let mut raw = format!("{method} {path} HTTP/1.0\r\n");
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    Response::parse(&exchange(addr, raw.as_bytes()))
}

/// Sets the modification time of the file at `path` to `secs` after the epoch.
pub fn set_mtime(path: &Path, secs: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// A GET for `path`, as a browser's HTTP/1.0 request would look.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    Response::parse(&exchange(addr, format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()))
}

/// Sends the head, then half-closes, as a client that has nothing more to say.
pub fn send_and_half_close(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(raw).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    read_to_close(&mut stream)
}

/// Reads exactly one response with a Content-Length off a keep-alive stream.
pub fn read_response(reader: &mut impl BufRead) -> Response {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let n = reader.read_until(b'\n', &mut raw).unwrap_or_else(|e| panic!("reading a response head: {e}"));
        assert!(n > 0, "connection closed inside a response head: {:?}", String::from_utf8_lossy(&raw));
        if &raw[before..] == b"\r\n" {
            break;
        }
    }
    let head = Response::parse(&raw);
    let len: usize = head.header("Content-Length").expect("Content-Length").parse().unwrap();
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap_or_else(|e| panic!("reading a {len}-byte body: {e}"));
    Response { body, ..head }
}

/// A response split into its parts.
#[derive(Debug)]
pub struct Response {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn parse(raw: &[u8]) -> Response {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8(raw[..split + 4].to_vec()).expect("head is UTF-8");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_string();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("header has ': '");
                (n.to_string(), v.to_string())
            })
            .collect();
        Response { status_line, headers, head, body: raw[split + 4..].to_vec() }
    }

    pub fn code(&self) -> u16 {
        self.status_line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The head without its `Date` line, which two answers made a second
    /// apart do not share.
    pub fn head_without_date(&self) -> String {
        self.head.split_inclusive("\r\n").filter(|l| !l.starts_with("Date: ")).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Checks the things every response must have: an exact HTTP/1.0 status
    /// line, a Content-Type, and a Content-Length that matches the body.
    pub fn assert_well_formed(&self, code: u16, reason: &str) {
        assert_eq!(self.status_line, format!("HTTP/1.0 {code} {reason}"), "{}", self.head);
        assert!(self.header("Content-Type").is_some(), "no Content-Type: {}", self.head);
        let len: usize = self.header("Content-Length").expect("Content-Length").parse().unwrap();
        assert_eq!(len, self.body.len(), "Content-Length vs body: {}", self.head);
    }
}
