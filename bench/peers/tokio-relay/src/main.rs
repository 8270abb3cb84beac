//! A bench peer: a TCP relay on tokio's multi-threaded runtime (one worker
//! per core), each connection one task running `copy_bidirectional`, with
//! `TCP_NODELAY` on both sockets as httpserver has it. No timeouts, no limits.
//!
//! Usage: tokio-relay LISTEN_ADDR UPSTREAM_ADDR

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream] = args.as_slice() else {
        eprintln!("usage: tokio-relay LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(listen).await?;
    loop {
        let Ok((mut client, _)) = listener.accept().await else { continue };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
