//! forkserver under volume: 20,000 connections at concurrency 20, in files
//! mode and in proxy mode. Afterwards no child is left, and SIGTERM finds no
//! open connection to wait for. (A child that inherited a lock held at the
//! fork would never exit, and would hold its slot forever.)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;

use common::{eventually, Server};

const CONNECTIONS: usize = 20_000;
const CONCURRENCY: usize = 20;
/// What `common::hello_site` serves as /hello.txt.
const HELLO: &str = "hello\n";

/// `CONNECTIONS` GETs of /hello.txt from `CONCURRENCY` clients at once;
/// returns how many did not get the whole file.
fn load(addr: SocketAddr) -> usize {
    let clients: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            thread::spawn(move || {
                let mut failed = 0;
                for _ in 0..CONNECTIONS / CONCURRENCY {
                    let mut raw = Vec::new();
                    let ok = TcpStream::connect(addr).and_then(|mut s| {
                        s.set_read_timeout(Some(common::PATIENCE))?;
                        s.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n")?;
                        s.read_to_end(&mut raw)
                    });
                    if ok.is_err() || !raw.starts_with(b"HTTP/1.0 200 OK") || !raw.ends_with(HELLO.as_bytes())
                    {
                        failed += 1;
                    }
                }
                failed
            })
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).sum()
}

/// Loads `server`, then checks that every child is gone and that SIGTERM
/// finds nothing open: the server exits 0 without a grace period.
fn leaves_nothing_behind(mut server: Server) {
    let failed = load(server.addr());
    assert_eq!(failed, 0, "{failed} of {CONNECTIONS} requests failed");
    eventually("every child to exit and be reaped", || common::children_of(server.pid()).is_empty());
    let status = server.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let out = server.stdout_lines();
    assert!(
        !out.iter().any(|l| l.contains("Shutting down: waiting")),
        "connections were still counted: {out:?}"
    );
    assert_eq!(out.last().map(String::as_str), Some("Shutting down."), "{out:?}");
}

#[test]
fn forkserver_in_files_mode_leaves_no_child_after_20000_connections() {
    let dir = common::hello_site("volume");
    // A long grace: were a connection still counted, SIGTERM would wait it out.
    leaves_nothing_behind(Server::start(
        "forkserver",
        &["--files", dir.str(), "--quiet", "--shutdown-timeout", "600"],
    ));
}

#[test]
fn forkserver_in_proxy_mode_leaves_no_child_after_20000_connections() {
    let dir = common::hello_site("volume");
    let origin = Server::start("threadserver", &["--files", dir.str(), "--quiet"]);
    let upstream = format!("127.0.0.1:{}", origin.port);
    leaves_nothing_behind(Server::start(
        "forkserver",
        &["--proxy", &upstream, "--quiet", "--shutdown-timeout", "600"],
    ));
}
