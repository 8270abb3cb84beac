//! Origin servers for the proxy tests, written with std alone. Each listens
//! on loopback, counts its connections, and runs a handler per connection on
//! a thread of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub struct Origin {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Origin {
    /// Listens on 127.0.0.1 and runs `handler` for each connection.
    pub fn start(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Origin {
        Origin::start_on("127.0.0.1:0", handler)
    }

    pub fn start_on(bind: &str, handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("origin bind {bind}: {e}"));
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let handler = Arc::new(handler);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let handler = Arc::clone(&handler);
                thread::spawn(move || handler(stream));
            }
        });
        Origin { addr, connections }
    }

    /// The `--proxy` argument that reaches this origin.
    pub fn proxy_arg(&self) -> String {
        self.addr.to_string()
    }

    /// How many connections the origin has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// An HTTP/1.1 keep-alive origin. Each response body is
/// `response N to PATH\n`, N counting the requests on that connection. It
/// honours `Connection: close`, reads `Content-Length` bodies, answers an
/// `Upgrade: websocket` request with 101 and then echoes, and closes after
/// the client's end of stream.
pub fn http_keepalive(stream: TcpStream) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut n = 0;
    while let Some(head) = read_head(&mut reader) {
        n += 1;
        let path = head.lines().next().and_then(|l| l.split(' ').nth(1)).unwrap_or("?").to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let body_len: usize = header("Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; body_len];
        if reader.read_exact(&mut body).is_err() {
            break;
        }
        if header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
            let ok = writer.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            );
            if ok.is_ok() {
                echo_from(reader, writer);
            }
            return;
        }
        let reply = format!("response {n} to {path}\n");
        let msg = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if writer.write_all(msg.as_bytes()).is_err() {
            return;
        }
        if header("Connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Write);
}

/// A client of [`http_keepalive`]: one connection to `addr` carrying `n`
/// requests for `{prefix}1` .. `{prefix}n`, each answer checked.
pub fn keepalive_session(addr: SocketAddr, prefix: &str, n: usize) {
    let stream = super::connect(addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for i in 1..=n {
        let req = format!("GET {prefix}{i} HTTP/1.1\r\nHost: origin\r\n\r\n");
        (&stream).write_all(req.as_bytes()).unwrap();
        assert_eq!(super::read_response(&mut reader).text(), format!("response {i} to {prefix}{i}\n"));
    }
}

/// Reads one request head; `None` at end of stream.
fn read_head(reader: &mut impl BufRead) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            return Some(head);
        }
        head.push_str(&line);
    }
}

/// Echoes every byte back; passes the client's end of stream on.
pub fn echo(stream: TcpStream) {
    let writer = stream.try_clone().unwrap();
    echo_from(stream, writer);
}

fn echo_from(mut reader: impl Read, mut writer: TcpStream) {
    let _ = std::io::copy(&mut reader, &mut writer);
    let _ = writer.shutdown(Shutdown::Write);
}

/// Like [`echo`], and reports the moment it saw end of stream.
pub fn echo_reporting_eof(eof: mpsc::Sender<Instant>) -> impl Fn(TcpStream) + Send + Sync + 'static {
    let eof = Mutex::new(eof);
    move |stream: TcpStream| {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = stream;
        let _ = std::io::copy(&mut reader, &mut writer);
        let _ = eof.lock().unwrap().send(Instant::now());
    }
}

/// Sends `greeting` at once, before the client says anything, then echoes.
pub fn greeter(greeting: &'static [u8]) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |mut stream: TcpStream| {
        if stream.write_all(greeting).is_ok() {
            echo(stream);
        }
    }
}

/// Sends `n` bytes of `random_bytes(n, seed)` and closes.
pub fn send_and_close(n: usize, seed: u64) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |mut stream: TcpStream| {
        let data = super::random_bytes(n, seed);
        let _ = stream.write_all(&data);
    }
}

/// Streams `total` bytes of a deterministic pattern (see [`pattern_chunk`])
/// after reading the request head, then closes.
pub fn stream_pattern(total: u64) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |stream: TcpStream| {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        if read_head(&mut reader).is_none() {
            return;
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n");
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut sent = 0u64;
        let mut index = 0u64;
        while sent < total {
            let chunk = pattern_chunk(index);
            let take = chunk.len().min((total - sent) as usize);
            if writer.write_all(&chunk[..take]).is_err() {
                return;
            }
            sent += take as u64;
            index += 1;
        }
    }
}

/// Chunk `index` (64 KiB) of the pattern that [`stream_pattern`] sends.
pub fn pattern_chunk(index: u64) -> Vec<u8> {
    super::random_bytes(PATTERN_CHUNK, index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5eed)
}

const PATTERN_CHUNK: usize = 64 * 1024;

/// The `len` bytes of the pattern from `offset` on.
pub fn pattern_at(offset: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut at = offset;
    while out.len() < len {
        let chunk = pattern_chunk((at / PATTERN_CHUNK) as u64);
        let from = at % PATTERN_CHUNK;
        let take = (PATTERN_CHUNK - from).min(len - out.len());
        out.extend_from_slice(&chunk[from..from + take]);
        at += take;
    }
    out
}

/// Writes the first `total` bytes of the pattern (a whole number of
/// chunks) into `path`, for files mode to serve.
pub fn write_pattern_file(path: &std::path::Path, total: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for index in 0..total / PATTERN_CHUNK as u64 {
        f.write_all(&pattern_chunk(index)).unwrap();
    }
    f.flush().unwrap();
}

/// Reads a response head off `reader`, then checks a body of `total` bytes
/// (a whole number of chunks) of the pattern, chunk by chunk.
pub fn read_pattern_response(reader: &mut impl Read, total: u64, what: &str) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).unwrap_or_else(|e| panic!("{what}: the head: {e}"));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.contains(&format!("Content-Length: {total}")), "{what}: {head}");
    let mut got = vec![0u8; PATTERN_CHUNK];
    for index in 0..total / PATTERN_CHUNK as u64 {
        reader.read_exact(&mut got).unwrap_or_else(|e| panic!("{what}: chunk {index}: {e}"));
        assert!(got == pattern_chunk(index), "{what}: chunk {index} differs");
    }
}

/// Reads a little of the request, sends the start of a response, then closes
/// with the rest of the request unread: the kernel answers with a reset.
pub fn reset_mid_response(mut stream: TcpStream) {
    let mut first = [0u8; 1];
    if stream.read_exact(&mut first).is_err() {
        return;
    }
    thread::sleep(Duration::from_millis(50)); // let the whole request arrive, unread
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\npartial body");
}

/// Sends one byte every `every`, `count` times, reading nothing, then closes.
pub fn trickle(every: Duration, count: usize) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |mut stream: TcpStream| {
        for i in 0..count {
            thread::sleep(every);
            if stream.write_all(&[b'a' + (i % 26) as u8]).is_err() {
                return;
            }
        }
    }
}

/// Reads until end of stream and never answers; holds the connection open
/// a long while afterwards.
pub fn silent(mut stream: TcpStream) {
    let _ = std::io::copy(&mut stream, &mut std::io::sink());
    thread::sleep(Duration::from_secs(120));
}
