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

use common::{Server, TempDir};
use sha2::{Digest, Sha256};

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
    run_chromium_with(chromium, &TempDir::new("chromium-profile"), args)
}

/// [`run_chromium`] with the profile (its cache among it) in `profile`.
fn run_chromium_with(chromium: &Path, profile: &TempDir, args: &[&str]) -> Output {
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

per_server!([threadserver, poolserver, forkserver] a_page_loads_through_each_kind_of_proxy_in_a_real_browser);
fn a_page_loads_through_each_kind_of_proxy_in_a_real_browser(name: &'static str) {
    let Some(chromium) = chromium() else { return };
    let site = test_site();
    let origin = Server::start("threadserver", &["--files", site.str(), "--quiet"]);
    let upstream = format!("127.0.0.1:{}", origin.port);
    let proxy = Server::start_with_pool(name, &["--proxy", &upstream, "--quiet"], 8);
    let url = format!("http://127.0.0.1:{}/check.html", proxy.port);
    let out = run_chromium(&chromium, &["--virtual-time-budget=15000", "--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let facts = recorded_facts(&dom);
    assert!(!facts.contains_key("error"), "{name}: the page failed: {:?}", facts.get("error"));
    for image in IMAGES {
        assert_eq!(facts.get(&format!("loaded {image}")).map(String::as_str), Some("yes"), "{name}: {image}");
        let file = fs::read(site.path().join(image.trim_start_matches('/'))).unwrap();
        assert_eq!(
            facts.get(&format!("sha256 {image}")),
            Some(&format!("{:x}", Sha256::digest(&file))),
            "{name}: {image} bytes"
        );
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

/// The site's background, `#f6f8fa` in www/style.css: most of a screenshot
/// of the site, and none of a browser's error page.
const SITE_BACKGROUND: [u8; 3] = [246, 248, 250];

#[test]
fn a_screenshot_of_www_through_the_proxy_shows_the_site() {
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
    let file = fs::File::open(&png).unwrap_or_else(|e| {
        panic!("no screenshot ({e}); chromium said: {}", String::from_utf8_lossy(&out.stderr))
    });
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a PNG of a sane size")];
    let frame = reader.next_frame(&mut pixels).expect("the PNG's pixels");
    assert_eq!((frame.width, frame.height), (1200, 900), "screenshot size");
    let channels = frame.color_type.samples();
    assert!(channels >= 3, "a {:?} screenshot", frame.color_type);
    let pixels = &pixels[..frame.buffer_size()];
    let total = pixels.len() / channels;
    let background = pixels.chunks_exact(channels).filter(|p| p[..3] == SITE_BACKGROUND).count();
    assert!(
        background * 2 > total,
        "only {background} of {total} pixels are the site's background: not a picture of the site"
    );
}

/// Chromium plays a 30 s clip (a VP8 WebM of 47 KB, made with ffmpeg's test
/// source and shipped in tests/browser/) from files mode, seeks to 20 s, and
/// gets there: the clip is seekable to its end because the server answers
/// the ranges the player asks for. On main the seek ended at 0, and
/// `seekable` reached only 0.
#[test]
fn a_video_seeks_to_a_later_time_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let site = TempDir::new("video-site");
    for file in ["video.html", "clip.webm"] {
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser").join(file),
            site.path().join(file),
        )
        .unwrap();
    }
    let server = Server::start("threadserver", &["--files", site.str()]);
    let url = format!("http://127.0.0.1:{}/video.html", server.port);
    let out = run_chromium(
        &chromium,
        &["--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=15000", "--dump-dom", &url],
    );
    let facts = recorded_facts(&String::from_utf8_lossy(&out.stdout));
    assert!(!facts.contains_key("error"), "the video failed: {facts:?}");
    assert_eq!(facts.get("duration").map(String::as_str), Some("30"), "{facts:?}");
    assert_eq!(facts.get("seeked").map(String::as_str), Some("yes"), "{facts:?}");
    assert_eq!(facts.get("current time").map(String::as_str), Some("20"), "{facts:?}");
    assert_eq!(facts.get("seekable to").map(String::as_str), Some("30"), "{facts:?}");
    let ranged = server.stdout_lines().iter().any(|l| l.contains("\"GET /clip.webm HTTP/1.1\" 206 "));
    assert!(ranged, "the player never asked for a range: {:?}", server.stdout_lines());
}

/// A second visit to a page, with the same profile, fetches nothing that
/// has not changed: every part of the page comes from the browser's cache,
/// or is answered `304 Not Modified` with no body. The files are a year old,
/// as a site's files are. On main, the second visit fetched every one of
/// them again in full (`200`).
#[test]
fn a_second_visit_fetches_nothing_that_has_not_changed() {
    let Some(chromium) = chromium() else { return };
    let site = test_site();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/visit.html"),
        site.path().join("visit.html"),
    )
    .unwrap();
    let year_ago = std::time::SystemTime::now() - Duration::from_secs(365 * 86_400);
    let parts = ["/visit.html", "/style.css", IMAGES[0], IMAGES[1]];
    for part in parts {
        fs::File::options()
            .write(true)
            .open(site.path().join(&part[1..]))
            .unwrap()
            .set_modified(year_ago)
            .unwrap();
    }
    let server = Server::start("threadserver", &["--files", site.str()]);
    let url = format!("http://127.0.0.1:{}/visit.html", server.port);
    let profile = TempDir::new("chromium-cache-profile");
    let requests = |part: &str| {
        let line = format!("\"GET {part} HTTP/1.1\" ");
        server.stdout_lines().into_iter().filter(|l| l.contains(&line)).collect::<Vec<_>>()
    };
    for visit in ["first", "second"] {
        let out = run_chromium_with(&chromium, &profile, &["--virtual-time-budget=5000", "--dump-dom", &url]);
        let facts = recorded_facts(&String::from_utf8_lossy(&out.stdout));
        for image in IMAGES {
            assert_eq!(
                facts.get(&format!("loaded {image}")).map(String::as_str),
                Some("yes"),
                "{visit} visit: {image}"
            );
        }
        assert_eq!(
            facts.get("body background").map(String::as_str),
            Some("rgb(246, 248, 250)"),
            "{visit} visit"
        );
        if visit == "first" {
            for part in parts {
                common::eventually(&format!("the first visit's {part}"), || requests(part).len() == 1);
            }
        }
    }
    for part in parts {
        let lines = requests(part);
        assert!(lines[0].contains(" 200 "), "{part}: {lines:?}");
        for again in &lines[1..] {
            assert!(again.contains(" 304 0 "), "{part} fetched again on the second visit: {again:?}");
        }
    }
}
