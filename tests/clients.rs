//! Real download clients against files mode, on all four servers: `curl -C -`
//! and `wget -c` resume a download cut for real, byte-exact, by asking for
//! the rest (`206`); `wget -N` leaves a file that did not change alone.
//! On main, curl refused to resume ("(33) HTTP server doesn't seem to
//! support byte ranges"), wget fetched the whole file again, and `wget -N`
//! said "Last-modified header missing -- time-stamps turned off".
//!
//! curl and wget are required: `.ci/run` installs them.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, Server, TempDir, PATIENCE};

const SIZE: usize = 16 << 20;

fn site() -> TempDir {
    let dir = TempDir::new("clients");
    fs::write(dir.path().join("big.bin"), common::random_bytes(SIZE, 9)).unwrap();
    common::set_mtime(&dir.path().join("big.bin"), 1_600_000_000);
    dir
}

/// Runs `cmd` to its end; its exit code and what it printed on stderr.
fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (is it installed?)"));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Starts `cmd`, a download into `file` slowed to 1 MiB/s, and kills it
/// once at least 1 MiB has arrived: a download cut for real, part-way
/// through.
fn cut_download(mut cmd: Command, file: &Path) {
    let mut child: Child =
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let len = fs::metadata(file).map(|m| m.len() as usize).unwrap_or(0);
        if len >= 1 << 20 {
            child.kill().unwrap();
            child.wait().unwrap();
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "{cmd:?} ended before it was cut");
        assert!(Instant::now() < deadline, "{cmd:?}: only {len} bytes after {PATIENCE:?}");
        thread::sleep(Duration::from_millis(20));
    }
    let len = fs::metadata(file).unwrap().len() as usize;
    assert!((1 << 20..SIZE).contains(&len), "cut at {len} bytes");
}

/// The log line of the resumed request: `206`, and exactly the bytes that
/// were missing.
fn assert_resumed(s: &Server, had: usize, what: &str) {
    let logged = format!(" 206 {} ", SIZE - had);
    eventually(&format!("{what}: the resumed request's 206 line"), || {
        s.stdout_lines().iter().any(|l| l.contains("\"GET /big.bin HTTP/1.1\"") && l.contains(&logged))
    });
}

per_server!(curl_resumes_a_cut_download_byte_exact);
fn curl_resumes_a_cut_download_byte_exact(server: &'static str) {
    let dir = site();
    let s = Server::start(server, &["--files", dir.str()]);
    let out = TempDir::new("curl-out");
    let file = out.path().join("big.bin");
    let url = format!("http://127.0.0.1:{}/big.bin", s.port);
    // curl's limit lets a burst through first; its --max-time cuts it.
    let (code, err) = run(Command::new("curl")
        .args(["-sS", "--limit-rate", "1M", "--max-time", "2", "-o"])
        .arg(&file)
        .arg(&url));
    assert_eq!(code, Some(28), "{server}: curl was not cut by its time limit: {err}");
    let had = fs::metadata(&file).unwrap().len() as usize;
    assert!((1..SIZE).contains(&had), "{server}: cut at {had} bytes");
    let (code, err) = run(Command::new("curl").args(["-sS", "-C", "-", "-o"]).arg(&file).arg(&url));
    assert_eq!(code, Some(0), "{server}: curl -C - failed: {err}");
    assert!(fs::read(&file).unwrap() == common::random_bytes(SIZE, 9), "{server}: the resumed file differs");
    assert_resumed(&s, had, server);
}

per_server!(wget_continues_a_cut_download_byte_exact);
fn wget_continues_a_cut_download_byte_exact(server: &'static str) {
    let dir = site();
    let s = Server::start(server, &["--files", dir.str()]);
    let out = TempDir::new("wget-out");
    let file = out.path().join("big.bin");
    let url = format!("http://127.0.0.1:{}/big.bin", s.port);
    let mut slow = Command::new("wget");
    slow.args(["-q", "--limit-rate=1m", "-O"]).arg(&file).arg(&url);
    cut_download(slow, &file);
    let had = fs::metadata(&file).unwrap().len() as usize;
    let (code, err) = run(Command::new("wget").arg("-c").arg(&url).current_dir(out.path()));
    assert_eq!(code, Some(0), "{server}: wget -c failed: {err}");
    assert!(
        fs::read(&file).unwrap() == common::random_bytes(SIZE, 9),
        "{server}: the continued file differs"
    );
    assert_resumed(&s, had, server);
}

per_server!(wget_timestamping_skips_a_file_that_did_not_change);
/// `wget -N` fetches a file once, then leaves it alone while it has not
/// changed, and fetches it again once it has.
fn wget_timestamping_skips_a_file_that_did_not_change(server: &'static str) {
    let dir = site();
    let s = Server::start(server, &["--files", dir.str()]);
    let out = TempDir::new("wget-n");
    let url = format!("http://127.0.0.1:{}/big.bin", s.port);
    let wget_n = || run(Command::new("wget").args(["-N", &url]).current_dir(out.path()));
    let full = format!(" 200 {SIZE} ");
    let fetched =
        || s.stdout_lines().iter().filter(|l| l.contains("\"GET /big.bin") && l.contains(&full)).count();
    let (code, err) = wget_n();
    assert_eq!(code, Some(0), "{server}: {err}");
    eventually("the first fetch's line", || fetched() == 1);
    let (code, err) = wget_n();
    assert_eq!(code, Some(0), "{server}: {err}");
    assert!(!err.contains("time-stamps turned off"), "{server}: {err}");
    assert!(err.contains("not retrieving") || err.contains("not modified on server"), "{server}: {err}");
    // Changed on the server (a newer time, the same size): fetched again.
    let changed = common::random_bytes(SIZE, 10);
    fs::write(dir.path().join("big.bin"), &changed).unwrap();
    common::set_mtime(&dir.path().join("big.bin"), 1_700_000_000);
    let (code, err) = wget_n();
    assert_eq!(code, Some(0), "{server}: {err}");
    assert!(
        fs::read(out.path().join("big.bin")).unwrap() == changed,
        "{server}: the changed file was not fetched"
    );
    assert_eq!(fetched(), 2, "{server}: {:?}", s.stdout_lines());
}
