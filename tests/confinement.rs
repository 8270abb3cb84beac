//! Files mode serves nothing from outside its root, even while names inside
//! it are renamed under a request: a racer thread swaps a path for a symlink
//! that leads out (or for a FIFO) with `renameat2(RENAME_EXCHANGE)`, which
//! makes the swap atomic, while clients ask for that path. Every race runs
//! through `openat2(2)` and through the fallback without it
//! (`HTTPSERVER_NO_OPENAT2`). Then the meaning of symlinks, the root that
//! follows its symlink, and the type taken from the name asked for.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::fcntl::{renameat2, RenameFlags};
use nix::sys::stat::Mode;

/// What no response may carry: it stands only in files outside the root.
const SECRET: &str = "TOPSECRET";

/// Each race ends after this many requests, or this long, whichever comes first.
const RACED_REQUESTS: usize = 4000;
const RACE_TIME: Duration = Duration::from_secs(8);
/// Clients asking at once, and racers swapping the two names: two racers
/// swap more often than one, so that more requests straddle a swap.
const CLIENTS: usize = 6;
const RACERS: usize = 3;

/// Starts `server` on `root`, with or without openat2.
fn start(server: &str, root: &Path, fallback: bool, extra: &[&str]) -> Server {
    let mut cmd = Command::new(bin(server));
    cmd.args(["--files", root.to_str().unwrap(), "--port", "0", "--quiet"]).args(extra);
    if server == "poolserver" && !extra.contains(&"--num-threads") {
        cmd.args(["--num-threads", "4"]);
    }
    if fallback {
        cmd.env("HTTPSERVER_NO_OPENAT2", "1");
    }
    Server::spawn_command(server, cmd)
        .unwrap_or_else(|(status, err)| panic!("{server} exited ({status:?}): {err}"))
}

/// One GET, with the whole answer as text; `None` if the server did not
/// answer within `wait`.
fn fetch(addr: SocketAddr, path: &str, wait: Duration) -> Option<String> {
    let mut stream = connect(addr);
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The tree of a race: `www/` is the root, `out/` lies beside it. Returns
/// the names the racer swaps (relative to `www/`) and the path asked for.
fn build(base: &Path, case: Case) -> (&'static str, &'static str, &'static str) {
    let (www, out) = (base.join("www"), base.join("out"));
    fs::create_dir_all(&www).unwrap();
    fs::create_dir_all(&out).unwrap();
    fs::write(www.join("safe.txt"), "safe\n").unwrap();
    match case {
        // /d/f.txt, while `d` is swapped with a link to ../out.
        Case::FileUnderDir => {
            fs::create_dir(www.join("d")).unwrap();
            fs::write(www.join("d/f.txt"), "safe\n").unwrap();
            fs::write(out.join("f.txt"), SECRET).unwrap();
            symlink("../out", www.join("d.alt")).unwrap();
            ("d", "d.alt", "/d/f.txt")
        }
        // The listing of /l/, while `l` is swapped with a link to ../out.
        Case::Listing => {
            fs::create_dir(www.join("l")).unwrap();
            fs::write(www.join("l/plain.txt"), "safe\n").unwrap();
            fs::write(out.join(format!("{SECRET}.txt")), "x").unwrap();
            symlink("../out", www.join("l.alt")).unwrap();
            ("l", "l.alt", "/l/")
        }
        // /i/, served as its index.html, while `i` is swapped with a link to ../out.
        Case::Index => {
            fs::create_dir(www.join("i")).unwrap();
            fs::write(www.join("i/index.html"), "safe\n").unwrap();
            fs::write(out.join("index.html"), SECRET).unwrap();
            symlink("../out", www.join("i.alt")).unwrap();
            ("i", "i.alt", "/i/")
        }
        // /f.txt itself, swapped with a link to ../out/f.txt.
        Case::LastComponent => {
            fs::write(www.join("f.txt"), "safe\n").unwrap();
            fs::write(out.join("f.txt"), SECRET).unwrap();
            symlink("../out/f.txt", www.join("f.alt")).unwrap();
            ("f.txt", "f.alt", "/f.txt")
        }
        // /p.txt, swapped with a FIFO that no one ever writes to.
        Case::Fifo => {
            fs::write(www.join("p.txt"), "safe\n").unwrap();
            nix::unistd::mkfifo(&www.join("p.fifo"), Mode::from_bits_truncate(0o644)).unwrap();
            ("p.txt", "p.fifo", "/p.txt")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    FileUnderDir,
    Listing,
    Index,
    LastComponent,
    Fifo,
}

/// Races `case` on `server`: a racer swaps the two names as fast as it can
/// while `CLIENTS` clients ask for the path. No answer may carry the secret;
/// after a FIFO race, the server must still answer within 2 s.
fn race(server: &'static str, case: Case, fallback: bool) {
    let base = TempDir::new(&format!("race-{server}"));
    let (a, b, target) = build(base.path(), case);
    let www = base.path().join("www");
    // Each hung worker would hold one of these: with few, a server that
    // loses workers to a FIFO soon answers nothing but 503.
    let extra: &[&str] = match server {
        _ if case != Case::Fifo => &[],
        "httpserver" => &[],
        "poolserver" => &["--num-threads", "2", "--max-connections", "2"],
        _ => &["--max-connections", "2"],
    };
    let srv = start(server, &www, fallback, extra);
    let addr = srv.addr();
    let stop = AtomicBool::new(false);
    let (asked, escaped, unanswered) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    let started = Instant::now();
    thread::scope(|s| {
        for _ in 0..RACERS {
            s.spawn(|| {
                let (a, b) = (www.join(a), www.join(b));
                while !stop.load(Ordering::Relaxed) {
                    renameat2(None, &a, None, &b, RenameFlags::RENAME_EXCHANGE).expect("renameat2");
                }
            });
        }
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    while asked.fetch_add(1, Ordering::Relaxed) < RACED_REQUESTS
                        && started.elapsed() < RACE_TIME
                    {
                        match fetch(addr, target, Duration::from_secs(3)) {
                            Some(answer) if answer.contains(SECRET) => {
                                _ = escaped.fetch_add(1, Ordering::Relaxed)
                            }
                            Some(_) => {}
                            None => _ = unanswered.fetch_add(1, Ordering::Relaxed),
                        }
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let asked = asked.into_inner().min(RACED_REQUESTS);
    let escaped = escaped.into_inner();
    assert_eq!(
        escaped, 0,
        "{server}, {case:?}: {escaped} of {asked} raced answers carried what lies outside the root"
    );
    if case == Case::Fifo {
        // Served again within 2 s: a 503 from a server whose last raced
        // connections are still being closed is asked again.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut after = fetch(addr, "/safe.txt", Duration::from_secs(2));
        while after.as_deref().is_some_and(|a| a.starts_with("HTTP/1.0 503")) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            after = fetch(addr, "/safe.txt", Duration::from_secs(1));
        }
        assert!(
            after.as_deref().is_some_and(|a| a.starts_with("HTTP/1.0 200 OK")),
            "{server}: not serving after the FIFO race ({} of {asked} raced requests unanswered): {after:?}",
            unanswered.into_inner()
        );
    }
}

per_server!(race_a_file_under_a_swapped_directory);
fn race_a_file_under_a_swapped_directory(server: &'static str) {
    race(server, Case::FileUnderDir, false)
}
per_server!(race_a_listing_of_a_swapped_directory);
fn race_a_listing_of_a_swapped_directory(server: &'static str) {
    race(server, Case::Listing, false)
}
per_server!(race_the_index_of_a_swapped_directory);
fn race_the_index_of_a_swapped_directory(server: &'static str) {
    race(server, Case::Index, false)
}
per_server!(race_the_last_component);
fn race_the_last_component(server: &'static str) {
    race(server, Case::LastComponent, false)
}
per_server!(race_a_fifo_swapped_in);
fn race_a_fifo_swapped_in(server: &'static str) {
    race(server, Case::Fifo, false)
}
per_server!(fallback_race_a_file_under_a_swapped_directory);
fn fallback_race_a_file_under_a_swapped_directory(server: &'static str) {
    race(server, Case::FileUnderDir, true)
}
per_server!(fallback_race_a_listing_of_a_swapped_directory);
fn fallback_race_a_listing_of_a_swapped_directory(server: &'static str) {
    race(server, Case::Listing, true)
}
per_server!(fallback_race_the_index_of_a_swapped_directory);
fn fallback_race_the_index_of_a_swapped_directory(server: &'static str) {
    race(server, Case::Index, true)
}
per_server!(fallback_race_the_last_component);
fn fallback_race_the_last_component(server: &'static str) {
    race(server, Case::LastComponent, true)
}
per_server!(fallback_race_a_fifo_swapped_in);
fn fallback_race_a_fifo_swapped_in(server: &'static str) {
    race(server, Case::Fifo, true)
}

/// A tree with symlinks of every kind: relative and absolute, inside the
/// root and out of it, to files and to directories.
fn linked_site(base: &Path) -> PathBuf {
    let (www, out) = (base.join("www"), base.join("out"));
    fs::create_dir_all(www.join("docs/deep")).unwrap();
    fs::create_dir_all(&out).unwrap();
    fs::write(www.join("index.html"), "<p>home</p>\n").unwrap();
    fs::write(www.join("docs/deep/a.txt"), "deep a\n").unwrap();
    fs::write(out.join("secret.txt"), SECRET).unwrap();
    symlink("docs/deep/a.txt", www.join("rel.txt")).unwrap();
    symlink(www.join("docs/deep/a.txt"), www.join("abs.txt")).unwrap();
    symlink("../../index.html", www.join("docs/deep/up.html")).unwrap();
    symlink("../www/docs", www.join("out-and-in")).unwrap();
    symlink(www.join("docs"), www.join("absdir")).unwrap();
    symlink("../out/secret.txt", www.join("rel-out.txt")).unwrap();
    symlink(out.join("secret.txt"), www.join("abs-out.txt")).unwrap();
    symlink("../out", www.join("outdir")).unwrap();
    symlink("index.html", www.join("alias.txt")).unwrap();
    fs::create_dir(www.join("links")).unwrap();
    symlink("../docs", www.join("links/to-docs")).unwrap();
    symlink(www.join("docs"), www.join("links/to-abs-docs")).unwrap();
    symlink("../../out", www.join("links/to-out")).unwrap();
    www
}

fn symlinks_keep_their_meaning(server: &str, fallback: bool) {
    let base = TempDir::new(&format!("links-{server}"));
    let www = linked_site(base.path());
    let srv = start(server, &www, fallback, &[]);
    for (path, body) in [
        ("/rel.txt", "deep a\n"),
        ("/abs.txt", "deep a\n"),
        ("/docs/deep/up.html", "<p>home</p>\n"),
        ("/out-and-in/deep/a.txt", "deep a\n"),
        ("/absdir/deep/a.txt", "deep a\n"),
    ] {
        let r = get(srv.addr(), path);
        assert_eq!((r.code(), r.text().as_str()), (200, body), "{server}: {path}");
    }
    for path in ["/rel-out.txt", "/abs-out.txt", "/outdir/secret.txt", "/outdir", "/outdir/"] {
        let r = get(srv.addr(), path);
        assert_eq!(r.code(), 403, "{server}: {path}");
        assert!(!r.text().contains(SECRET), "{server}: {path}");
    }
    // A link that leads to a directory inside the root is listed as one; a
    // link out says nothing of what it leads to.
    let listing = get(srv.addr(), "/links/").text();
    assert!(listing.contains("href=\"/links/to-docs/\""), "{server}: {listing}");
    assert!(listing.contains("href=\"/links/to-abs-docs/\""), "{server}: {listing}");
    assert!(listing.contains("href=\"/links/to-out\""), "{server}: {listing}");
    let through_link = get(srv.addr(), "/absdir/").text();
    assert!(through_link.contains("href=\"/absdir/deep/\""), "{server}: {through_link}");
}

per_server!(symlinks_inside_are_served_and_links_out_refused);
fn symlinks_inside_are_served_and_links_out_refused(server: &'static str) {
    symlinks_keep_their_meaning(server, false)
}
per_server!(symlinks_keep_their_meaning_in_the_fallback);
fn symlinks_keep_their_meaning_in_the_fallback(server: &'static str) {
    symlinks_keep_their_meaning(server, true)
}

per_server!(links_with_dotdot_are_served_while_renames_go_on);
/// A symlink whose `..` stays inside the root is served while names are
/// renamed elsewhere on the system: the kernel's confined lookup will not
/// vouch for a `..` during a rename (EAGAIN), and such an open is then
/// checked by where it landed.
fn links_with_dotdot_are_served_while_renames_go_on(server: &'static str) {
    let base = TempDir::new(&format!("dotdot-{server}"));
    let www = linked_site(base.path());
    let (a, b) = (base.path().join("a"), base.path().join("b"));
    fs::write(&a, "a").unwrap();
    fs::write(&b, "b").unwrap();
    let srv = start(server, &www, false, &[]);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                renameat2(None, &a, None, &b, RenameFlags::RENAME_EXCHANGE).expect("renameat2");
            }
        });
        for i in 0..500 {
            let r = get(srv.addr(), "/docs/deep/up.html");
            if (r.code(), r.text().as_str()) != (200, "<p>home</p>\n") {
                stop.store(true, Ordering::Relaxed);
                panic!("{server}: request {i} got {} {:?}", r.code(), r.text());
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

per_server!(content_type_follows_the_name_asked_for);
/// The type comes from the name asked for, as the skeleton's
/// `http_get_mime_type` takes it: `alias.txt -> index.html` is text/plain.
fn content_type_follows_the_name_asked_for(server: &'static str) {
    let base = TempDir::new(&format!("alias-{server}"));
    let www = linked_site(base.path());
    let srv = start(server, &www, false, &[]);
    let alias = get(srv.addr(), "/alias.txt");
    assert_eq!((alias.code(), alias.header("Content-Type")), (200, Some("text/plain")), "{server}");
    assert_eq!(alias.text(), "<p>home</p>\n");
    let up = get(srv.addr(), "/docs/deep/up.html");
    assert_eq!(up.header("Content-Type"), Some("text/html"), "{server}");
}

per_server!(a_symlinked_root_is_followed_when_repointed);
/// A root that is a symlink is followed for each request: a deploy that
/// repoints `current` is served at once, a root that is gone is a 404,
/// and its return is served again.
fn a_symlinked_root_is_followed_when_repointed(server: &'static str) {
    let base = TempDir::new(&format!("deploy-{server}"));
    for rel in ["rel1", "rel2"] {
        fs::create_dir(base.path().join(rel)).unwrap();
        fs::write(base.path().join(rel).join("v.txt"), rel).unwrap();
    }
    let current = base.path().join("current");
    symlink("rel1", &current).unwrap();
    let srv = start(server, &current, false, &[]);
    assert_eq!(get(srv.addr(), "/v.txt").text(), "rel1");
    let staged = base.path().join("current.new");
    symlink("rel2", &staged).unwrap();
    fs::rename(&staged, &current).unwrap();
    assert_eq!(get(srv.addr(), "/v.txt").text(), "rel2", "{server}: the repointed root");
    fs::remove_dir_all(base.path().join("rel1")).unwrap();
    assert_eq!(get(srv.addr(), "/v.txt").text(), "rel2", "{server}");
    fs::remove_dir_all(base.path().join("rel2")).unwrap();
    assert_eq!(get(srv.addr(), "/").code(), 404, "{server}: a root that is gone");
    assert_eq!(get(srv.addr(), "/v.txt").code(), 404, "{server}: a root that is gone");
    fs::create_dir(base.path().join("rel2")).unwrap();
    fs::write(base.path().join("rel2/v.txt"), "back").unwrap();
    assert_eq!(get(srv.addr(), "/v.txt").text(), "back", "{server}: the root's return");
}

per_server!(special_files_are_refused_without_waiting);
/// FIFOs and sockets in the tree are refused at once, and never opened
/// for a read that could wait.
fn special_files_are_refused_without_waiting(server: &'static str) {
    let base = TempDir::new(&format!("special-{server}"));
    let www = base.path().join("www");
    fs::create_dir(&www).unwrap();
    nix::unistd::mkfifo(&www.join("pipe"), Mode::from_bits_truncate(0o644)).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(www.join("sock")).unwrap();
    symlink("pipe", www.join("pipe-link")).unwrap();
    let srv = start(server, &www, false, &[]);
    for path in ["/pipe", "/sock", "/pipe-link"] {
        let answer = fetch(srv.addr(), path, PATIENCE).unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.0 403 Forbidden"), "{server}: {path}: {answer:?}");
    }
}
