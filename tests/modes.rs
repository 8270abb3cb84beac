//! The four concurrency modes: who serves how many clients at once.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::{eventually, open_partial, Response, Server};

const REST_OF_HEAD: &[u8] = b"Host: x\r\n\r\n";

fn finish_and_read(stream: &mut TcpStream) -> Response {
    stream.write_all(REST_OF_HEAD).unwrap();
    Response::parse(&common::read_to_close(stream))
}

per_server!([forkserver, threadserver, poolserver] fork_thread_and_pool_serve_20_clients_at_once);
/// fork, thread and pool serve 20 clients at the same time: all 20 are mid-
/// request together, and the last one to connect is answered first.
fn fork_thread_and_pool_serve_20_clients_at_once(name: &'static str) {
    let dir = common::hello_site("modes");
    let server = Server::start_with_pool(name, &["--files", dir.str(), "--quiet"], 20);
    let mut clients = open_partial(&server, 20);
    for (i, c) in clients.iter_mut().enumerate().rev() {
        let r = finish_and_read(c);
        r.assert_well_formed(200, "OK");
        assert_eq!(r.text(), "hello\n", "{name} client {i}");
    }
}

/// The basic server takes 20 simultaneous clients one after another and
/// loses none of them.
#[test]
fn basic_server_serves_20_clients_in_turn() {
    let dir = common::hello_site("modes");
    let server = Server::start("httpserver", &["--files", dir.str(), "--quiet"]);
    let addr = server.addr();
    let clients: Vec<_> = (0..20).map(|_| thread::spawn(move || common::get(addr, "/hello.txt"))).collect();
    for c in clients {
        let r = c.join().unwrap();
        r.assert_well_formed(200, "OK");
        assert_eq!(r.text(), "hello\n");
    }
}

/// The basic server really is one at a time: while one client dawdles, the
/// next is not answered; once the first finishes, the next is.
#[test]
fn basic_server_handles_one_connection_at_a_time() {
    let dir = common::hello_site("modes");
    let server = Server::start("httpserver", &["--files", dir.str(), "--quiet"]);
    let mut first = open_partial(&server, 1).remove(0);
    let mut second = common::connect(server.addr());
    second.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n").unwrap();
    assert_nothing_arrives(&mut second);
    finish_and_read(&mut first).assert_well_formed(200, "OK");
    Response::parse(&common::read_to_close(&mut second)).assert_well_formed(200, "OK");
}

/// `poolserver --num-threads 2` never serves more than 2 at once: a third
/// client waits in the queue until a worker is free.
#[test]
fn pool_of_2_serves_at_most_2_at_once() {
    let dir = common::hello_site("modes");
    let server = Server::start("poolserver", &["--files", dir.str(), "--quiet", "--num-threads", "2"]);
    let mut busy = open_partial(&server, 2);
    let mut third = common::connect(server.addr());
    third.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n").unwrap();
    assert_nothing_arrives(&mut third);
    finish_and_read(&mut busy[1]).assert_well_formed(200, "OK");
    Response::parse(&common::read_to_close(&mut third)).assert_well_formed(200, "OK");
    finish_and_read(&mut busy[0]).assert_well_formed(200, "OK");
}

/// Asserts that no byte arrives on `stream` within a short while.
fn assert_nothing_arrives(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected the client to be kept waiting, got {other:?}"),
    }
    stream.set_read_timeout(Some(common::PATIENCE)).unwrap();
}

/// forkserver's children exit after their connection and are reaped: none
/// is left behind, zombie or otherwise.
#[test]
fn forkserver_leaves_no_zombies() {
    let dir = common::hello_site("modes");
    let server = Server::start("forkserver", &["--files", dir.str(), "--quiet"]);
    for _ in 0..20 {
        common::get(server.addr(), "/hello.txt").assert_well_formed(200, "OK");
    }
    eventually("forkserver's children to be gone", || common::children_of(server.pid()).is_empty());
}

per_server!(sigterm_and_sigint_exit_zero);
/// SIGTERM and SIGINT close the listening socket and exit 0, in every mode.
fn sigterm_and_sigint_exit_zero(name: &'static str) {
    let dir = common::hello_site("modes");
    for signal in ["TERM", "INT"] {
        let mut server = Server::start(name, &["--files", dir.str(), "--quiet"]);
        common::get(server.addr(), "/hello.txt").assert_well_formed(200, "OK");
        let status = server.signal_and_wait(signal);
        assert_eq!(status.code(), Some(0), "{name} after SIG{signal}: {status:?}");
        assert_eq!(server.stdout_lines().last().map(String::as_str), Some("Shutting down."));
    }
}

/// Each accepted connection is logged as the skeleton does, unless --quiet.
#[test]
fn accepted_connections_are_logged() {
    let dir = common::hello_site("modes");
    let server = Server::start("threadserver", &["--files", dir.str()]);
    let client = common::connect(server.addr());
    let port = client.local_addr().unwrap().port();
    let line = format!("Accepted connection from 127.0.0.1 on port {port}");
    eventually("the accept line", || server.stdout_lines().contains(&line));
    drop(client);

    let quiet = Server::start("threadserver", &["--files", dir.str(), "--quiet"]);
    common::get(quiet.addr(), "/hello.txt").assert_well_formed(200, "OK");
    assert_eq!(quiet.stdout_lines(), vec![format!("Listening on port {}...", quiet.port)]);
}
