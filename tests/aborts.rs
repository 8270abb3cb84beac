//! Aborts through the proxy. A reset on one side reaches the other side as a
//! reset, never as a clean end of stream, so that a client that reads to end
//! of stream cannot take a cut-short response for a whole one. Every server
//! relays the same way; forkserver relays in its child.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::origins::Origin;
use common::{eventually, Server, PATIENCE};

/// What the resetting origin sends before it resets.
const BODY: usize = 100 * 1024;
/// What the client uploads before it resets.
const UPLOAD: usize = 256 * 1024;

/// An origin that reads the request, answers with `BODY` bytes, and then
/// resets the connection: once `go` says so, or at once without a `go`.
fn resetting_origin(go: Option<mpsc::Receiver<()>>) -> Origin {
    let go = Arc::new(Mutex::new(go));
    Origin::start(move |mut stream: TcpStream| {
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head);
        let _ = stream.write_all(&common::random_bytes(BODY, 5));
        if let Some(go) = &*go.lock().unwrap() {
            let _ = go.recv_timeout(PATIENCE);
        }
        common::close_with_reset(stream);
    })
}

fn logged(relay: &Server, ending: &str) {
    eventually(&format!("a log line ending {ending:?}"), || {
        relay.stdout_lines().iter().any(|l| l.starts_with("proxy ") && l.ends_with(ending))
    });
}

per_server!(an_upstream_reset_reaches_the_client_as_a_reset);
/// The upstream sends 100 KiB, which the client reads whole, and then
/// resets: the client's next read fails with ECONNRESET, not end of stream.
fn an_upstream_reset_reaches_the_client_as_a_reset(server: &'static str) {
    let (go, go_rx) = mpsc::channel();
    let origin = resetting_origin(Some(go_rx));
    let relay = Server::start(server, &["--proxy", &origin.proxy_arg()]);
    let mut client = common::connect(relay.addr());
    client.write_all(b"GET /big HTTP/1.0\r\n\r\n").unwrap();
    let mut body = vec![0u8; BODY];
    client.read_exact(&mut body).unwrap();
    assert!(body == common::random_bytes(BODY, 5), "the 100 KiB differ");
    go.send(()).unwrap();
    let mut more = [0u8; 1];
    match client.read(&mut more) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("after the upstream's reset the client got {other:?}, not a reset"),
    }
    logged(&relay, "upstream aborted (Connection reset by peer)");
}

per_server!(an_upstream_reset_mid_stream_never_looks_like_a_clean_end);
/// The upstream resets straight after its 100 KiB, while they are still
/// on their way: however much the client gets, the stream ends in a
/// reset, never in a clean end.
fn an_upstream_reset_mid_stream_never_looks_like_a_clean_end(server: &'static str) {
    let origin = resetting_origin(None);
    let relay = Server::start(server, &["--proxy", &origin.proxy_arg(), "--quiet"]);
    for _ in 0..5 {
        let mut client = common::connect(relay.addr());
        client.write_all(b"GET /big HTTP/1.0\r\n\r\n").unwrap();
        let mut got = Vec::new();
        match client.read_to_end(&mut got) {
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("the client's stream ended with {other:?} after {} bytes", got.len()),
        }
        assert!(got.len() <= BODY, "{} bytes from a 100 KiB answer", got.len());
    }
}

per_server!(a_client_reset_mid_upload_reaches_the_upstream_as_a_reset);
/// The client uploads 256 KiB and then resets: the upstream, which has
/// read them all, sees its next read fail with ECONNRESET.
fn a_client_reset_mid_upload_reaches_the_upstream_as_a_reset(server: &'static str) {
    let (received, all_received) = mpsc::channel();
    let (ended, how_it_ended) = mpsc::channel();
    let origin = Origin::start(move |mut stream: TcpStream| {
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let end = loop {
            match stream.read(&mut buf) {
                Ok(0) => break Ok(total),
                Ok(n) => total += n,
                Err(e) => break Err(e.kind()),
            }
            if total >= UPLOAD {
                let _ = received.send(());
            }
        };
        let _ = ended.send(end);
    });
    let relay = Server::start(server, &["--proxy", &origin.proxy_arg()]);
    let mut client = common::connect(relay.addr());
    let head = format!("POST /up HTTP/1.0\r\nContent-Length: {}\r\n\r\n", 2 * UPLOAD);
    client.write_all(head.as_bytes()).unwrap();
    client.write_all(&common::random_bytes(UPLOAD, 9)).unwrap();
    all_received.recv_timeout(PATIENCE).expect("the upload to reach the origin");
    common::close_with_reset(client);
    let end = how_it_ended.recv_timeout(PATIENCE).expect("the origin's read to end");
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "the origin saw {end:?}, not a reset");
    logged(&relay, "client aborted (Connection reset by peer)");
}

per_server!(a_clean_end_stays_a_half_close);
/// A clean end stays a half-close: the client's end of stream reaches the
/// upstream as one, and the upstream's answer still comes back whole.
fn a_clean_end_stays_a_half_close(server: &'static str) {
    let origin = Origin::start(|mut stream: TcpStream| {
        let mut request = Vec::new();
        if stream.read_to_end(&mut request).is_ok() {
            let answer = format!("got {} bytes, then end of stream", request.len());
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    let relay = Server::start(server, &["--proxy", &origin.proxy_arg(), "--quiet"]);
    let answer = common::send_and_half_close(relay.addr(), b"twelve bytes");
    assert_eq!(String::from_utf8_lossy(&answer), "got 12 bytes, then end of stream");
}
