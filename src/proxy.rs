//! Proxy mode (`--proxy HOST[:PORT]`), the homework's Part 4:
//! `handle_proxy_request` joins each client connection to a fresh upstream
//! connection and relays bytes both ways until the connection ends.
//!
//! As the homework has it:
//! - connect to the upstream, or answer `502 Bad Gateway`. The skeleton
//!   takes the first address of `gethostbyname2`; here `getaddrinfo`,
//!   bounded by `--connect-timeout`, gives every address, tried in turn;
//! - start a second thread for upstream → client, and copy client →
//!   upstream on this one;
//! - each direction is one loop ([`copy_direction`]): `read()` from one
//!   side, `write()` all of it to the other, and at end of stream pass the
//!   end on with `shutdown(SHUT_WR)`, so that the other direction can still
//!   finish. A read or write that fails ends the connection.
//!
//! What makes that loop production-grade lives beside it, in `relay`: the
//! state both threads share, aborts passed on as aborts, the timeouts, the
//! bulk buffer, and the move of an idle direction to a fresh thread. Its
//! doc says what each adds to this loop, and why.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::conns::Connection;
use crate::progress::Sender;
use crate::relay::{self, Direction, DirectionState, Relay, Step, UpstreamName};
use crate::response::{self, Status};
use crate::sys::{self, Armed, Socket};
use crate::{config, log, request, threads};

/// How long a client whose upstream is unreachable may take to send its
/// request head before it gets its 502.
const HEAD_BEFORE_502: Duration = Duration::from_secs(2);
/// How long a client that does not read its 502 may hold the thread, from
/// the last byte it acknowledged.
const SEND_502: Duration = Duration::from_secs(10);

/// Relays `conn` to the configured upstream until both directions end, or
/// answers 502 if no address of the upstream accepts a connection.
///
/// Unless the dispatcher says this thread may leave (`conn.may_leave`: in
/// threadserver nothing waits for it), it stays until the connection is
/// over, as the basic server's accept loop, a pool worker and a forked
/// child must.
pub fn handle_proxy_request(conn: Connection) {
    let Some((host, port)) = config::proxy_upstream() else { return };
    let settings = config::settings();
    let started = Instant::now();
    let (upstream, addr) = match connect_upstream(host, port, settings.connect_timeout) {
        Ok(connected) => connected,
        Err(e) => return bad_gateway(&conn, UpstreamName { host, port, addr: None }, started, &e),
    };
    let may_leave = conn.may_leave;
    let name = UpstreamName { host, port, addr: Some(addr) };
    // The two fds are closed when the last `Arc<Relay>` drops: after both
    // directions are done with them, on whichever thread ends last.
    let relay = Arc::new(Relay::new(conn, upstream, name, started, settings));
    start_second_direction(&relay);
    // client -> upstream on this thread. A thread that may not leave never
    // moves its direction, so its loop has ended here: it waits for the
    // other one.
    copy_direction(Arc::clone(&relay), relay.direction(Direction::ClientToUpstream));
    if !may_leave {
        relay.wait_until_both_done();
    }
}

/// Starts upstream -> client on a thread of its own, from the thread cache.
/// With no thread to be had, the connection cannot be relayed: it is
/// aborted, and this direction is done.
fn start_second_direction(relay: &Arc<Relay>) {
    let second = relay.direction(Direction::UpstreamToClient);
    if threads::run((Arc::clone(relay), second), copy_on_its_own_thread).is_err() {
        relay.abort_for_want_of_a_thread(Direction::UpstreamToClient);
    }
}

/// Resolves `host` and tries each of its addresses in order until one
/// connects. The error names the host and every address tried.
pub fn connect_upstream(
    host: &'static str,
    port: u16,
    timeout: Duration,
) -> io::Result<(Socket, SocketAddr)> {
    let addrs = resolve(host, port, timeout)
        .map_err(|e| io::Error::new(e.kind(), format!("resolve {host}: {}", log::describe(&e))))?;
    let mut failures = Vec::new();
    let mut last_kind = io::ErrorKind::NotFound;
    for addr in addrs {
        match Socket::connect(&addr, timeout) {
            Ok(sock) => return Ok((sock, addr)),
            Err(e) => {
                last_kind = e.kind();
                failures.push(format!("connect to {host}:{port} ({addr}): {}", log::describe(&e)));
            }
        }
    }
    if failures.is_empty() {
        failures.push(format!("resolve {host}: no addresses"));
    }
    Err(io::Error::new(last_kind, failures.join("; ")))
}

/// `getaddrinfo` for `host`, waited for at most `timeout` (`--connect-timeout`):
/// a nameserver that never answers would hold the client for glibc's 5 s
/// per try, twice, whatever the connect timeout says. The lookup runs on a
/// thread of its own, which finishes on its own time if no one waits for
/// it any more. An address literal needs no lookup, and no thread.
fn resolve(host: &'static str, port: u16, timeout: Duration) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (answer, answered) = mpsc::sync_channel(1);
    threads::run((host, port, answer), |(host, port, answer)| {
        let _ = answer.send(sys::getaddrinfo(host, port));
    })
    .map_err(|(_, e)| e)?;
    answered.recv_timeout(timeout).unwrap_or_else(|_| {
        let msg = format!("no answer within {} s", timeout.as_secs_f64());
        Err(io::Error::new(io::ErrorKind::TimedOut, msg))
    })
}

/// Reads and discards the client's request head (briefly), answers 502 Bad
/// Gateway with a page that says which upstream failed and why, closes,
/// and logs the connection's line.
fn bad_gateway(conn: &Connection, upstream: UpstreamName, started: Instant, err: &io::Error) {
    let UpstreamName { host, port, .. } = upstream;
    let client = &conn.sock;
    let received = match request::read_head(client, HEAD_BEFORE_502, Armed::No) {
        Ok(head) => head.bytes,
        Err(bad) => bad.received,
    };
    let head_only = request::is_head_request(&received);
    let detail = format!("The upstream server {host}:{port} could not be reached: {err}.");
    let out = &mut Sender::new(client, Some(SEND_502), Armed::No);
    let _ = response::send_error(out, Status::BadGateway, &detail, &[], head_only);
    response::lingering_close(client);
    relay::log_unreachable(conn.peer, &upstream, started, err);
}

/// A direction on a thread of its own: the second, or one that moved.
fn copy_on_its_own_thread((relay, state): (Arc<Relay>, DirectionState)) {
    copy_direction(relay, state);
}

/// The loop of one direction: `read()` from one side, `write()` all of it
/// to the other, until end of stream. The end is passed on with
/// `shutdown(SHUT_WR)` (a half-close: the other direction keeps flowing);
/// a read or write that fails, or a timeout, aborts the whole connection.
///
/// `state.read_then` blocks in `read()`, then hands what it read to the
/// write, `relay.write_all`. Both keep the relay's timeouts while they
/// wait; and when the direction has waited long enough to move to a fresh
/// thread, the read says so, and the loop carries on there (see `relay`).
fn copy_direction(relay: Arc<Relay>, mut state: DirectionState) {
    let dir = state.dir;
    loop {
        match state.read_then(&relay, |data| relay.write_all(dir, data)) {
            Ok(Step::Copied) => {}
            Ok(Step::EndOfStream) => {
                relay.pass_on_end_of_stream(dir);
                break;
            }
            Ok(Step::Idle) => match state.move_to_fresh_thread(&relay, copy_on_its_own_thread) {
                Ok(()) => return,
                Err(unmoved) => state = unmoved,
            },
            Err(stop) => {
                relay.abort(stop.outcome(dir));
                break;
            }
        }
    }
    relay.direction_done(dir, state.copied());
}
