//! A real browser through the proxy. Headless Chromium loads a test page
//! from `threadserver --files` through each kind of proxy: several
//! connections at once, kept alive, images and a stylesheet in parallel,
//! and a fetch(). The page records what it saw; the test checks every fact.
//!
//! Chromium is required: `make test` installs Debian's package when it runs
//! as root. Set HTTPSERVER_SKIP_BROWSER_TEST=1 to skip this test on purpose.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::sha256::sha256;
use common::{Server, TempDir};

const SKIP: &str = "HTTPSERVER_SKIP_BROWSER_TEST";
const IMAGES: [&str; 2] = ["/my_documents/relay.png", "/my_documents/bay.jpg"];
const DOCUMENTS: [&str; 7] =
    ["basic.txt", "bay.jpg", "fork.txt", "pool.txt", "proxy.txt", "relay.png", "thread.txt"];

/// The Chromium to drive, or `None` (said loudly) when skipped on purpose.
/// Missing Chromium fails the test, with the command that installs it.
fn chromium() -> Option<PathBuf> {
    if std::env::var_os(SKIP).is_some() {
        eprintln!("SKIPPED browser test: {SKIP} is set");
        return None;
    }
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file());
    match found {
        Some(path) => Some(path),
        None => panic!(
            "the browser test needs Chromium, which is not installed: run `apt-get install -y chromium` \
             (make test does this itself when run as root), or set {SKIP}=1 to skip this test"
        ),
    }
}

/// Runs headless Chromium with a fresh profile and the flags that keep it
/// off the network, plus `args`. Fails the test if it does not finish.
fn run_chromium(chromium: &Path, args: &[&str]) -> Output {
    let profile = TempDir::new("chromium-profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.str()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium {args:?} did not finish in 90 s");
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// www/ and the check page, in a directory of their own.
fn test_site() -> TempDir {
    let site = TempDir::new("browser-site");
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("www"), site.path());
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/check.html");
    fs::copy(page, site.path().join("check.html")).unwrap();
    site
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The facts the check page wrote into `<pre id="results">`.
fn recorded_facts(dom: &str) -> HashMap<String, String> {
    let start = dom.find("<pre id=\"results\">").unwrap_or_else(|| panic!("no results in the DOM:\n{dom}"));
    let text = &dom[start + "<pre id=\"results\">".len()..];
    let text = &text[..text.find("</pre>").expect("end of results")];
    let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
    text.lines().filter_map(|l| l.split_once('\t')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

per_server! {
    [threadserver, poolserver, forkserver]
    fn a_page_loads_through_each_kind_of_proxy_in_a_real_browser(name) {
        let Some(chromium) = chromium() else { return };
        let site = test_site();
        let origin = Server::start("threadserver", &["--files", site.str(), "--quiet"]);
        let upstream = format!("127.0.0.1:{}", origin.port);
        let extra: &[&str] = if name == "poolserver" { &["--num-threads", "8"] } else { &[] };
        let mut args = vec!["--proxy", &upstream, "--quiet"];
        args.extend_from_slice(extra);
        let proxy = Server::start(name, &args);
        let url = format!("http://127.0.0.1:{}/check.html", proxy.port);
        let out = run_chromium(&chromium, &["--virtual-time-budget=15000", "--dump-dom", &url]);
        let dom = String::from_utf8_lossy(&out.stdout);
        let facts = recorded_facts(&dom);
        assert!(!facts.contains_key("error"), "{name}: the page failed: {:?}", facts.get("error"));
        for image in IMAGES {
            assert_eq!(
                facts.get(&format!("loaded {image}")).map(String::as_str),
                Some("yes"),
                "{name}: {image}"
            );
            let file = fs::read(site.path().join(image.trim_start_matches('/'))).unwrap();
            assert_eq!(facts.get(&format!("sha256 {image}")), Some(&sha256(&file)), "{name}: {image} bytes");
        }
        // www/style.css paints the body #f6f8fa.
        assert_eq!(facts.get("body background").map(String::as_str), Some("rgb(246, 248, 250)"), "{name}");
        assert_eq!(facts.get("listing status").map(String::as_str), Some("200"), "{name}");
        let links = facts.get("listing links").cloned().unwrap_or_default();
        assert!(links.contains("Parent directory"), "{name}: {links}");
        for note in DOCUMENTS {
            assert!(links.split(',').any(|l| l == note), "{name}: {note} not in the listing: {links}");
        }
        // "Parent directory" leads to the parent, with or without the slash.
        for path in ["/my_documents", "/my_documents/"] {
            let parent = facts.get(&format!("parent of {path}")).map(String::as_str);
            assert_eq!(parent, Some("/"), "{name}: the parent link of {path}");
            let entry = facts.get(&format!("entry link from {path}")).map(String::as_str);
            assert_eq!(entry, Some("/my_documents/basic.txt"), "{name}: the first entry of {path}");
        }
    }
}

#[test]
fn a_screenshot_of_www_through_the_proxy_is_a_real_picture() {
    let Some(chromium) = chromium() else { return };
    let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
    let origin = Server::start("threadserver", &["--files", www.to_str().unwrap(), "--quiet"]);
    let proxy = Server::start("threadserver", &["--proxy", &format!("127.0.0.1:{}", origin.port), "--quiet"]);
    let shots = TempDir::new("screenshot");
    let png = shots.path().join("www.png");
    let out = run_chromium(
        &chromium,
        &[
            "--window-size=1200,900",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
            &format!("--screenshot={}", png.display()),
            &format!("http://127.0.0.1:{}/", proxy.port),
        ],
    );
    let bytes = fs::read(&png).unwrap_or_else(|e| {
        panic!("no screenshot ({e}); chromium said: {}", String::from_utf8_lossy(&out.stderr))
    });
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (width, height) = (be32(&bytes[16..20]), be32(&bytes[20..24]));
    assert_eq!((width, height), (1200, 900), "screenshot size");
    assert!(bytes.len() > 20_000, "a {}-byte screenshot is too small to show the site", bytes.len());
    let colours = distinct_colours(&png);
    assert!(colours >= 64, "the screenshot has only {colours} colours: it is blank, not the site");
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().unwrap())
}

/// Decodes the PNG (zlib from python3's standard library, and PNG's row
/// filters below) and counts its distinct pixel values.
fn distinct_colours(png: &Path) -> usize {
    const DECODE: &str = r#"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
pos, idat, w, h, depth, ctype = 8, b"", 0, 0, 0, 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
assert depth == 8 and ctype in (2, 6), (depth, ctype)
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, colours = bytearray(stride), set()
for y in range(h):
    f, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = row[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: row[i] = (row[i] + a) & 255
        elif f == 2: row[i] = (row[i] + b) & 255
        elif f == 3: row[i] = (row[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    colours.update(bytes(row[i:i + bpp]) for i in range(0, stride, bpp))
    prev = row
print(len(colours))
"#;
    let out = Command::new("python3").arg("-c").arg(DECODE).arg(png).output().expect("run python3");
    assert!(out.status.success(), "decoding the PNG failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a colour count")
}
