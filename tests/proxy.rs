//! Proxy mode: the two-thread relay, against origins written here.

mod common;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::origins::{self, Origin};
use common::{eventually, read_response, Response, Server};

fn proxy(name: &str, origin: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--proxy", origin, "--quiet"];
    args.extend_from_slice(extra);
    Server::start(name, &args)
}

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: origin\r\n\r\n")
}

per_server!(a_get_through_the_proxy_returns_exactly_what_a_direct_get_returns);
fn a_get_through_the_proxy_returns_exactly_what_a_direct_get_returns(name: &'static str) {
    let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
    let origin = Server::start("threadserver", &["--files", www.to_str().unwrap(), "--quiet"]);
    let upstream = format!("localhost:{}", origin.port);
    let relay = proxy(name, &upstream, &[]);
    for path in [
        "/",
        "/index.html",
        "/my_documents/bay.jpg",
        "/my_documents/relay.png",
        "/my_documents/",
        "/nope",
        "/%2e%2e/x",
    ] {
        let raw = format!("GET {path} HTTP/1.0\r\n\r\n");
        let direct = common::exchange(origin.addr(), raw.as_bytes());
        let proxied = common::exchange(relay.addr(), raw.as_bytes());
        assert!(direct.len() > 50, "{path}: direct answer too short");
        assert!(direct == proxied, "{name} {path}: proxied answer differs from the direct one");
    }
}

per_server!(twenty_requests_share_one_client_and_one_upstream_connection);
fn twenty_requests_share_one_client_and_one_upstream_connection(name: &'static str) {
    let origin = Origin::start(origins::http_keepalive);
    let relay = proxy(name, &origin.proxy_arg(), &[]);
    let stream = common::connect(relay.addr());
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for i in 1..=20 {
        writer.write_all(request(&format!("/r{i}")).as_bytes()).unwrap();
        let r = read_response(&mut reader);
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert_eq!(r.text(), format!("response {i} to /r{i}\n"), "{name}");
    }
    assert_eq!(origin.connections(), 1, "{name}: the origin saw more than one connection");
}

per_server!(ten_pipelined_requests_in_one_write_are_answered_in_order);
fn ten_pipelined_requests_in_one_write_are_answered_in_order(name: &'static str) {
    let origin = Origin::start(origins::http_keepalive);
    let relay = proxy(name, &origin.proxy_arg(), &[]);
    let stream = common::connect(relay.addr());
    let all: String = (1..=10).map(|i| request(&format!("/p{i}"))).collect();
    (&stream).write_all(all.as_bytes()).unwrap();
    let mut reader = BufReader::new(&stream);
    for i in 1..=10 {
        assert_eq!(read_response(&mut reader).text(), format!("response {i} to /p{i}\n"), "{name}");
    }
}

per_server!(an_upstream_that_speaks_first_is_heard_without_a_request);
fn an_upstream_that_speaks_first_is_heard_without_a_request(name: &'static str) {
    const GREETING: &[u8] = b"220 origin ready\r\n";
    let origin = Origin::start(origins::greeter(GREETING));
    let relay = proxy(name, &origin.proxy_arg(), &[]);
    let mut stream = common::connect(relay.addr());
    let mut got = vec![0u8; GREETING.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, GREETING, "{name}");
    // And the conversation goes on both ways after it.
    stream.write_all(b"HELO\r\n").unwrap();
    let mut echo = [0u8; 6];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"HELO\r\n");
}

per_server!(sixteen_mib_each_way_at_once_arrive_intact);
fn sixteen_mib_each_way_at_once_arrive_intact(name: &'static str) {
    const SIZE: usize = 16 << 20;
    let data = common::random_bytes(SIZE, 16);
    let origin = Origin::start(origins::echo);
    let relay = proxy(name, &origin.proxy_arg(), &[]);
    let stream = common::connect(relay.addr());
    let writer = {
        let mut w = stream.try_clone().unwrap();
        let data = data.clone();
        thread::spawn(move || {
            for chunk in data.chunks(100_000) {
                w.write_all(chunk).unwrap();
            }
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut received = Vec::with_capacity(SIZE);
    (&stream).read_to_end(&mut received).unwrap();
    writer.join().unwrap();
    assert_eq!(received.len(), SIZE, "{name}");
    assert!(received == data, "{name}: the echoed bytes differ from those sent");
}

per_server!([threadserver, poolserver] a_256_mib_download_arrives_byte_exact);
fn a_256_mib_download_arrives_byte_exact(name: &'static str) {
    const TOTAL: u64 = 256 << 20;
    let origin = Origin::start(origins::stream_pattern(TOTAL));
    let relay = proxy(name, &origin.proxy_arg(), &[]);
    let mut reader = BufReader::with_capacity(1 << 16, common::connect(relay.addr()));
    reader.get_mut().write_all(request("/big").as_bytes()).unwrap();
    origins::read_pattern_response(&mut reader, TOTAL, name);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{name}: {} bytes past the end", rest.len());
}

per_server!(the_origin_closing_reaches_the_client_at_once);
/// At once, not at a timeout: the half-close timeout is 30 s.
fn the_origin_closing_reaches_the_client_at_once(name: &'static str) {
    let origin = Origin::start(origins::send_and_close(1000, 9));
    let relay = proxy(name, &origin.proxy_arg(), &[]);
    let mut stream = common::connect(relay.addr());
    let mut got = vec![0u8; 1000];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, common::random_bytes(1000, 9));
    let t = Instant::now();
    assert_eq!(stream.read(&mut [0u8; 16]).unwrap(), 0, "{name}: expected end of stream");
    assert!(t.elapsed() < Duration::from_secs(10), "{name}: EOF took {:?}", t.elapsed());
}

per_server!(the_client_closing_reaches_the_origin_at_once);
/// At once, not at a timeout: the half-close timeout is 30 s.
fn the_client_closing_reaches_the_origin_at_once(name: &'static str) {
    let (eof_tx, eof_rx) = mpsc::channel();
    let origin = Origin::start(origins::echo_reporting_eof(eof_tx));
    let relay = proxy(name, &origin.proxy_arg(), &[]);
    let mut stream = common::connect(relay.addr());
    stream.write_all(b"ping").unwrap();
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).unwrap();
    let closed = Instant::now();
    drop(stream);
    let seen = eof_rx.recv_timeout(common::PATIENCE).expect("origin saw no EOF");
    let took = seen.saturating_duration_since(closed);
    assert!(took < Duration::from_secs(10), "{name}: origin saw EOF after {took:?}");
}

per_server!(a_client_that_half_closes_after_its_request_gets_the_whole_response);
fn a_client_that_half_closes_after_its_request_gets_the_whole_response(name: &'static str) {
    let origin = Origin::start(origins::http_keepalive);
    let relay = proxy(name, &origin.proxy_arg(), &[]);
    let raw = common::send_and_half_close(relay.addr(), request("/half").as_bytes());
    let r = Response::parse(&raw);
    assert_eq!(r.status_line, "HTTP/1.1 200 OK", "{name}");
    assert_eq!(r.text(), "response 1 to /half\n", "{name}");
}

/// A port on loopback where nothing listens.
fn refused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

per_server!(an_unreachable_upstream_gets_502_and_the_server_lives_on);
fn an_unreachable_upstream_gets_502_and_the_server_lives_on(name: &'static str) {
    let refused = format!("127.0.0.1:{}", refused_port());
    let unreachable = [(refused.as_str(), "Connection refused"), ("nonexistent.invalid:80", "resolve")];
    for (upstream, why) in unreachable {
        let relay = proxy(name, upstream, &[]);
        for attempt in 0..3 {
            let r = Response::parse(&common::exchange(relay.addr(), request("/").as_bytes()));
            r.assert_well_formed(502, "Bad Gateway");
            assert_eq!(r.header("Content-Type"), Some("text/html"));
            let page = r.text();
            assert!(page.contains(upstream) && page.contains(why), "{name} #{attempt}: {page}");
        }
        // A client that sends nothing at all gets its 502 too; a HEAD gets no body.
        let r = Response::parse(&common::send_and_half_close(relay.addr(), b""));
        r.assert_well_formed(502, "Bad Gateway");
        let head = Response::parse(&common::exchange(relay.addr(), b"HEAD / HTTP/1.0\r\n\r\n"));
        assert_eq!(head.code(), 502);
        assert!(head.body.is_empty(), "{name}: a HEAD's 502 carried a body");
    }
}

per_server!(an_origin_reset_mid_response_ends_the_client_promptly);
fn an_origin_reset_mid_response_ends_the_client_promptly(name: &'static str) {
    let origin = Origin::start(origins::reset_mid_response);
    let relay = proxy(name, &origin.proxy_arg(), &[]);
    let mut stream = common::connect(relay.addr());
    stream.write_all(request("/reset").as_bytes()).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let end = stream.read_to_end(&mut got);
    // What this catches is an end that waits for the idle timeout (300
    // s) or never comes; it takes milliseconds, and 10 s is room for a
    // loaded machine.
    assert!(t.elapsed() < Duration::from_secs(10), "{name}: the end took {:?}", t.elapsed());
    assert_eq!(end.map_err(|e| e.kind()).err(), Some(ErrorKind::ConnectionReset), "{name}: not a reset");
    assert!(got.len() < 1_000_000, "{name}: the body cannot have arrived whole");
}

#[test]
fn a_hundred_keep_alive_clients_of_ten_requests_each() {
    let origin = Origin::start(origins::http_keepalive);
    let relay = proxy("threadserver", &origin.proxy_arg(), &[]);
    let addr = relay.addr();
    let clients: Vec<_> = (0..100)
        .map(|c| thread::spawn(move || origins::keepalive_session(addr, &format!("/c{c}/r"), 10)))
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(origin.connections(), 100);
}

per_server!([threadserver, poolserver] fds_and_threads_return_to_their_baseline_after_500_connections);
fn fds_and_threads_return_to_their_baseline_after_500_connections(name: &'static str) {
    let origin = Origin::start(origins::http_keepalive);
    let relay = Server::start_with_pool(name, &["--proxy", &origin.proxy_arg(), "--quiet"], 8);
    let fds = || relay.fd_count();
    let threads = || relay.thread_count();
    let (base_fds, base_threads) = (fds(), threads());
    let addr = relay.addr();
    let workers: Vec<_> = (0..10)
        .map(|w| {
            thread::spawn(move || {
                for i in 0..50 {
                    origins::keepalive_session(addr, &format!("/w{w}/{i}/r"), 1);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(origin.connections(), 500);
    eventually(&format!("{name}: fds back to {base_fds}"), || fds() == base_fds);
    eventually(&format!("{name}: threads back to {base_threads}"), || threads() == base_threads);
}

/// Reads until the proxy gives up on the connection, which it must do with
/// a reset (a timeout is an abort, never an end of stream), and returns how
/// long that took.
fn time_until_reset(stream: &mut TcpStream) -> Duration {
    let t = Instant::now();
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("the proxy ended the stream cleanly after {n} bytes; a timeout must reset it"),
        Err(e) => panic!("expected the proxy to reset the connection, got {e}"),
    }
    t.elapsed()
}

per_server!(an_idle_connection_is_closed_after_the_idle_timeout);
fn an_idle_connection_is_closed_after_the_idle_timeout(name: &'static str) {
    let origin = Origin::start(origins::silent);
    let relay = Server::start(name, &["--proxy", &origin.proxy_arg(), "--idle-timeout", "1"]);
    let mut stream = common::connect(relay.addr());
    let took = time_until_reset(&mut stream);
    assert!(took >= Duration::from_millis(900), "{name}: closed after only {took:?}");
    eventually("the idle-timeout log line", || {
        relay.stdout_lines().iter().any(|l| l.ends_with("idle timeout"))
    });
}

#[test]
fn a_long_one_way_stream_is_never_cut_by_the_idle_timeout() {
    // 15 bytes, one every 200 ms: 3 s of traffic upstream -> client only,
    // with an idle timeout of 1 s. The client never sends a byte.
    let origin = Origin::start(origins::trickle(Duration::from_millis(200), 15));
    let relay = Server::start("threadserver", &["--proxy", &origin.proxy_arg(), "--idle-timeout", "1"]);
    let mut stream = common::connect(relay.addr());
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"abcdefghijklmno");
    drop(stream);
    eventually("the end log line", || relay.stdout_lines().iter().any(|l| l.contains("upstream closed")));
}

per_server!(a_half_closed_connection_with_no_traffic_is_closed_after_the_grace_period);
fn a_half_closed_connection_with_no_traffic_is_closed_after_the_grace_period(name: &'static str) {
    let origin = Origin::start(origins::silent);
    let args = ["--proxy", &origin.proxy_arg(), "--idle-timeout", "60", "--half-close-timeout", "1"];
    let relay = Server::start(name, &args);
    let mut stream = common::connect(relay.addr());
    stream.write_all(request("/never-answered").as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let took = time_until_reset(&mut stream);
    assert!(took >= Duration::from_millis(900), "{name}: closed after only {took:?}");
    assert!(took < Duration::from_secs(30), "{name}: the grace period did not fire");
    eventually("the half-close log line", || {
        relay.stdout_lines().iter().any(|l| l.ends_with("half-close timeout"))
    });
}

#[test]
fn the_end_of_each_connection_is_logged_with_addresses_bytes_and_cause() {
    let origin = Origin::start(origins::http_keepalive);
    let relay = Server::start("threadserver", &["--proxy", &origin.proxy_arg()]);
    let raw = common::send_and_half_close(relay.addr(), request("/log").as_bytes());
    let response_len = raw.len();
    let request_len = request("/log").len();
    let prefix = "proxy 127.0.0.1:";
    let expected = format!(
        "<-> {0} ({0}): {request_len} bytes client->upstream, {response_len} bytes upstream->client,",
        origin.proxy_arg()
    );
    eventually("the end line", || {
        relay
            .stdout_lines()
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(&expected) && l.ends_with(" s, client closed"))
    });

    let dead = Server::start("threadserver", &["--proxy", &format!("127.0.0.1:{}", refused_port())]);
    let _ = common::exchange(dead.addr(), request("/").as_bytes());
    eventually("the 502 line", || {
        dead.stdout_lines().iter().any(|l| l.contains("502 (connect to 127.0.0.1:"))
    });
}

#[test]
fn websocket_upgrade_and_http2_prior_knowledge_pass_through_untouched() {
    let origin = Origin::start(origins::http_keepalive);
    let relay = proxy("threadserver", &origin.proxy_arg(), &[]);
    let stream = common::connect(relay.addr());
    let upgrade = "GET /chat HTTP/1.1\r\nHost: origin\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    (&stream).write_all(upgrade.as_bytes()).unwrap();
    let mut reader = BufReader::new(&stream);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).unwrap();
        head.push(byte[0] as char);
    }
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    // A masked binary frame, with every byte value in its payload.
    let mut frame = vec![0x82, 0xFE, 0x01, 0x00, 0x11, 0x22, 0x33, 0x44];
    frame.extend((0..=255u8).map(|b| b ^ 0x11));
    (&stream).write_all(&frame).unwrap();
    let mut back = vec![0u8; frame.len()];
    reader.read_exact(&mut back).unwrap();
    assert_eq!(back, frame);

    let echo = Origin::start(origins::echo);
    let relay = proxy("threadserver", &echo.proxy_arg(), &[]);
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x3, 0, 0, 0, 100]); // SETTINGS
    let mut stream = common::connect(relay.addr());
    stream.write_all(&h2).unwrap();
    let mut back = vec![0u8; h2.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, h2);
}

#[test]
fn an_ipv6_upstream_works() {
    // getaddrinfo resolves the literal to ::1 alone, so only IPv6 can connect.
    let origin = Origin::start_on("[::1]:0", origins::http_keepalive);
    assert_eq!(origin.proxy_arg(), format!("[::1]:{}", origin.addr.port()));
    let relay = proxy("threadserver", &origin.proxy_arg(), &[]);
    let r = Response::parse(&common::send_and_half_close(relay.addr(), request("/v6").as_bytes()));
    assert_eq!(r.text(), "response 1 to /v6\n");
}

#[test]
fn a_connect_that_times_out_gets_502() {
    // A listener that never accepts, its backlog filled: the next SYN goes
    // unanswered, so a connect to it can only time out.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = blackhole.local_addr().unwrap();
    let mut held = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        held.push(s);
        assert!(held.len() < 10_000, "the backlog never filled");
    }
    let relay = proxy("threadserver", &addr.to_string(), &["--connect-timeout", "1"]);
    let t = Instant::now();
    let r = Response::parse(&common::exchange(relay.addr(), request("/").as_bytes()));
    r.assert_well_formed(502, "Bad Gateway");
    assert!(r.text().contains("timed out"), "{}", r.text());
    assert!(t.elapsed() >= Duration::from_millis(900), "gave up after only {:?}", t.elapsed());
}

/// The thread ids of `pid`.
fn thread_ids(pid: u32) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect()
}

per_server!(an_idle_relay_moves_to_fresh_threads_and_carries_on);
/// A relay direction that has written and then waits a second for input
/// moves to a fresh thread, and its old thread leaves (so the page the
/// kernel keeps for each thread that wrote to a socket goes with it). The
/// connection goes on as if nothing happened, both ways, and its log
/// line counts every byte. threadserver's connection thread moves as
/// well; the basic server, a pool worker and a forked child's thread stay.
fn an_idle_relay_moves_to_fresh_threads_and_carries_on(name: &'static str) {
    let origin = Origin::start(origins::http_keepalive);
    let relay = Server::start(name, &["--proxy", &origin.proxy_arg()]);
    let stream = common::connect(relay.addr());
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer.write_all(request("/before").as_bytes()).unwrap();
    assert_eq!(read_response(&mut reader).text(), "response 1 to /before\n");
    let pid = if name == "forkserver" {
        let mut kids = Vec::new();
        eventually("the child", || {
            kids = common::children_of(relay.pid());
            kids.len() == 1
        });
        kids[0]
    } else {
        relay.pid()
    };
    let before = thread_ids(pid);
    let moved_threads = if name == "threadserver" { 2 } else { 1 };
    eventually("the idle relay's threads to be replaced", || {
        let now = thread_ids(pid);
        now.difference(&before).count() == moved_threads && before.difference(&now).count() >= moved_threads
    });
    for i in 2..=4 {
        writer.write_all(request(&format!("/after{i}")).as_bytes()).unwrap();
        assert_eq!(read_response(&mut reader).text(), format!("response {i} to /after{i}\n"));
    }
    drop((reader, writer));
    eventually("the end line", || relay.stdout_lines().iter().any(|l| l.starts_with("proxy ")));
    let line = relay.stdout_lines().into_iter().find(|l| l.starts_with("proxy ")).unwrap();
    let sent: usize = ["/before", "/after2", "/after3", "/after4"].iter().map(|p| request(p).len()).sum();
    assert!(line.contains(&format!(": {sent} bytes client->upstream, ")), "{line}");
    assert!(line.ends_with("client closed"), "{line}");
}
