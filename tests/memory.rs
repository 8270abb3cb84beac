//! Memory comes back: a burst of clients that each make the server build a
//! large page leaves its resident memory where it was once they are gone.

mod common;

use std::fs;
use std::io::{Read, Write};

use common::{eventually, Server, TempDir};

/// Entries in the listed directory: a page of about 2 MB.
const ENTRIES: usize = 20_000;
const CLIENTS: usize = 200;

per_server!([threadserver] memory_comes_back_after_a_burst_of_large_listings);
/// 200 clients ask for a 20,000-entry listing (2 MB) at once and read
/// one byte of it, then go. Glibc would keep those pages in per-thread
/// arenas for good (its mmap threshold moves up once large blocks are
/// freed); a few seconds after the burst, the server's RSS is within
/// 20 MB of what it was before.
fn memory_comes_back_after_a_burst_of_large_listings(server: &'static str) {
    let site = TempDir::new("burst");
    let dir = site.path().join("many");
    fs::create_dir(&dir).unwrap();
    for i in 0..ENTRIES {
        fs::File::create(dir.join(format!("an-entry-with-a-long-name-{i:05}.txt"))).unwrap();
    }
    let s = Server::start(server, &["--files", site.str(), "--quiet"]);
    let page = common::get(s.addr(), "/many/");
    assert!(page.code() == 200 && page.body.len() > 1 << 20, "{server}: {} bytes", page.body.len());
    let before = s.rss_kib();
    let mut clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut c = common::connect_small_window(s.addr(), 4096);
            c.write_all(b"GET /many/ HTTP/1.0\r\n\r\n").unwrap();
            c
        })
        .collect();
    // Each page is built once its first byte arrives.
    for c in &mut clients {
        c.read_exact(&mut [0u8; 1]).unwrap();
    }
    let peak = s.rss_kib();
    drop(clients);
    eventually(&format!("{server}: RSS back within 20 MB of {before} KiB (peak {peak} KiB)"), || {
        s.rss_kib() < before + 20 * 1024
    });
}
