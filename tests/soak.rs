//! A soak: many proxied requests over keep-alive and short-lived
//! connections, with no error, and nothing left behind afterwards.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::Instant;

use common::origins::{self, Origin};
use common::{eventually, Server};

/// `keepalive` connections each sending `per_connection` requests, while
/// `short` connections of one request each run alongside, 10 at a time.
/// Every answer is checked; any error fails the test.
fn load(addr: SocketAddr, keepalive: usize, per_connection: usize, short: usize) {
    let long: Vec<_> = (0..keepalive)
        .map(|c| thread::spawn(move || origins::keepalive_session(addr, &format!("/k{c}/"), per_connection)))
        .collect();
    let brief: Vec<_> = (0..10)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..short / 10 {
                    let raw = format!("GET /s{t}/{i} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n");
                    let r = common::Response::parse(&common::exchange(addr, raw.as_bytes()));
                    assert_eq!(r.text(), format!("response 1 to /s{t}/{i}\n"));
                }
            })
        })
        .collect();
    for t in long.into_iter().chain(brief) {
        t.join().expect("a client saw an error");
    }
}

per_server!([threadserver, poolserver] soak_through_the_relay);
fn soak_through_the_relay(name: &'static str) {
    let origin = Origin::start(origins::http_keepalive);
    let server = Server::start_with_pool(name, &["--proxy", &origin.proxy_arg(), "--quiet"], 64);
    let (base_fds, base_threads) = (server.fd_count(), server.thread_count());

    // Warm up to steady state: the same load shape, three times. RSS rises
    // over the first rounds (glibc's cache of thread stacks and its malloc
    // arenas reach their high-water mark) and then holds; a leak would not.
    for _ in 0..3 {
        load(server.addr(), 50, 40, 1000);
    }
    eventually("warm-up connections to end", || server.fd_count() == base_fds);
    let warm_rss = server.rss_kib();

    let started = Instant::now();
    load(server.addr(), 50, 400, 5000);
    let took = started.elapsed();
    eventually(&format!("{name}: fds back to {base_fds}"), || server.fd_count() == base_fds);
    eventually(&format!("{name}: threads back to {base_threads}"), || server.thread_count() == base_threads);
    let rss = server.rss_kib();
    assert!(rss * 10 <= warm_rss * 11, "{name}: RSS {rss} KiB after the soak, {warm_rss} KiB after warm-up");
    assert_eq!(origin.connections(), 3 * (50 + 1000) + 50 + 5000, "{name}: upstream connections");
    eprintln!("{name}: 20000 keep-alive + 5000 short requests in {took:?}; RSS {warm_rss} -> {rss} KiB");
}
