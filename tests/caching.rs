//! HTTP/1.0's own caching in files mode, over real sockets, on all four
//! servers: `Date` on every response, `Last-Modified` and `ETag` on files,
//! and `304 Not Modified` to `If-Modified-Since` and `If-None-Match` at
//! their edges, for GET and HEAD alike. A request without them gets the
//! skeleton's `200`.

mod common;

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Response, Server, TempDir};

/// The modification time of the served files: well in the past, so that a
/// second after it is not in the future.
const MODIFIED: u64 = 1_600_000_000;
const BODY: &str = "cached body\n";

fn at(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

fn site() -> TempDir {
    let dir = TempDir::new("caching");
    fs::write(dir.path().join("file.txt"), BODY).unwrap();
    common::set_mtime(&dir.path().join("file.txt"), MODIFIED);
    fs::create_dir(dir.path().join("dir")).unwrap();
    dir
}

/// `METHOD /file.txt` with `headers`, each a whole line.
fn ask(s: &Server, method: &str, headers: &[String]) -> Response {
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    common::ask(s.addr(), method, "/file.txt", &headers)
}

/// A 304: no body and no `Content-Length` or `Content-Type`, the validators.
fn assert_not_modified(r: &Response, etag: &str, what: &str) {
    assert_eq!(r.status_line, "HTTP/1.0 304 Not Modified", "{what}: {}", r.head);
    assert!(r.body.is_empty(), "{what}: a 304 with a body");
    assert_eq!(r.header("Content-Length"), None, "{what}: {}", r.head);
    assert_eq!(r.header("ETag"), Some(etag), "{what}");
    assert_eq!(r.header("Last-Modified"), Some(at(MODIFIED).as_str()), "{what}");
    assert!(r.header("Date").is_some(), "{what}: no Date");
}

/// The whole file, `200`, with a body only for GET.
fn assert_whole(r: &Response, method: &str, what: &str) {
    assert_eq!(r.status_line, "HTTP/1.0 200 OK", "{what}: {}", r.head);
    assert_eq!(r.header("Content-Length"), Some(BODY.len().to_string().as_str()), "{what}");
    let body: &[u8] = if method == "GET" { BODY.as_bytes() } else { b"" };
    assert_eq!(r.body, body, "{what}");
}

per_server!(responses_carry_date_and_files_their_validators);
/// Every response has a `Date` of now; a file's also `Last-Modified`
/// (its modification time), a strong `ETag` as nginx makes it, and
/// `Accept-Ranges`. Listings and error pages carry no validators.
fn responses_carry_date_and_files_their_validators(server: &'static str) {
    let dir = site();
    let s = Server::start(server, &["--files", dir.str(), "--quiet"]);
    let before = SystemTime::now() - Duration::from_secs(1);
    let file = ask(&s, "GET", &[]);
    file.assert_well_formed(200, "OK");
    assert_eq!(file.header("Last-Modified"), Some(at(MODIFIED).as_str()), "{server}");
    let etag = format!("\"{MODIFIED:x}-{:x}\"", BODY.len());
    assert_eq!(file.header("ETag"), Some(etag.as_str()), "{server}");
    assert_eq!(file.header("Accept-Ranges"), Some("bytes"), "{server}");
    for r in [&file, &common::get(s.addr(), "/dir/"), &common::get(s.addr(), "/nope")] {
        let date = httpdate::parse_http_date(r.header("Date").expect("a Date")).unwrap();
        assert!(date >= before && date <= SystemTime::now(), "{server}: Date {date:?}");
    }
    for r in [common::get(s.addr(), "/dir/"), common::get(s.addr(), "/nope")] {
        assert_eq!(r.header("Last-Modified"), None, "{server}: {}", r.head);
        assert_eq!(r.header("ETag"), None, "{server}: {}", r.head);
    }
}

per_server!(if_modified_since_at_its_edges);
/// `If-Modified-Since` equal to the modification time and a second after
/// it: 304. A second before, a date that does not parse, a date in the
/// future: the file. GET and HEAD alike.
fn if_modified_since_at_its_edges(server: &'static str) {
    let dir = site();
    let s = Server::start(server, &["--files", dir.str(), "--quiet"]);
    let etag = format!("\"{MODIFIED:x}-{:x}\"", BODY.len());
    let future = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    for method in ["GET", "HEAD"] {
        let since = |date: String| ask(&s, method, &[format!("If-Modified-Since: {date}")]);
        assert_not_modified(&since(at(MODIFIED)), &etag, &format!("{server} {method} equal"));
        assert_not_modified(&since(at(MODIFIED + 1)), &etag, &format!("{server} {method} a second after"));
        // The obsolete forms a recipient must accept.
        assert_not_modified(
            &since("Sunday, 13-Sep-20 12:26:40 GMT".into()),
            &etag,
            &format!("{server} {method} RFC 850"),
        );
        assert_not_modified(
            &since("Sun Sep 13 12:26:40 2020".into()),
            &etag,
            &format!("{server} {method} asctime"),
        );
        assert_whole(&since(at(MODIFIED - 1)), method, &format!("{server} {method} a second before"));
        assert_whole(&since("yesterday".into()), method, &format!("{server} {method} malformed"));
        assert_whole(
            &since("Sun, 13 Sep 2020 12:26:40".into()),
            method,
            &format!("{server} {method} no GMT"),
        );
        assert_whole(&since(at(future)), method, &format!("{server} {method} in the future"));
        assert_whole(&ask(&s, method, &[]), method, &format!("{server} {method} unconditional"));
    }
}

per_server!(if_none_match_and_its_precedence);
/// `If-None-Match` with the file's tag (alone, in a list, weak, or `*`):
/// 304. With another tag: the file, even when `If-Modified-Since` alone
/// would have been a 304; and a matching tag wins over a stale date.
fn if_none_match_and_its_precedence(server: &'static str) {
    let dir = site();
    let s = Server::start(server, &["--files", dir.str(), "--quiet"]);
    let etag = format!("\"{MODIFIED:x}-{:x}\"", BODY.len());
    for method in ["GET", "HEAD"] {
        let what = |case: &str| format!("{server} {method} {case}");
        for tags in [etag.clone(), format!("\"other\", {etag}"), format!("W/{etag}"), "*".into()] {
            let r = ask(&s, method, &[format!("If-None-Match: {tags}")]);
            assert_not_modified(&r, &etag, &what(&tags));
        }
        let other = format!("If-None-Match: \"{MODIFIED:x}-0\"");
        assert_whole(&ask(&s, method, std::slice::from_ref(&other)), method, &what("another tag"));
        let fresh_date = format!("If-Modified-Since: {}", at(MODIFIED));
        assert_whole(&ask(&s, method, &[other, fresh_date]), method, &what("another tag, a fresh date"));
        let stale_date = format!("If-Modified-Since: {}", at(MODIFIED - 100));
        let r = ask(&s, method, &[format!("If-None-Match: {etag}"), stale_date]);
        assert_not_modified(&r, &etag, &what("the tag, a stale date"));
    }
}

per_server!(a_changed_file_is_sent_again);
/// A file changed since the client's copy: the validators move with it,
/// and the old ones get the new file.
fn a_changed_file_is_sent_again(server: &'static str) {
    let dir = site();
    let s = Server::start(server, &["--files", dir.str(), "--quiet"]);
    let old = ask(&s, "GET", &[]);
    let (old_tag, old_date) = (old.header("ETag").unwrap(), old.header("Last-Modified").unwrap());
    fs::write(dir.path().join("file.txt"), "changed\n").unwrap();
    common::set_mtime(&dir.path().join("file.txt"), MODIFIED + 10);
    for header in [format!("If-None-Match: {old_tag}"), format!("If-Modified-Since: {old_date}")] {
        let r = ask(&s, "GET", std::slice::from_ref(&header));
        r.assert_well_formed(200, "OK");
        assert_eq!(r.body, b"changed\n", "{server} {header}");
        assert_ne!(r.header("ETag"), Some(old_tag), "{server}");
        assert_eq!(r.header("Last-Modified"), Some(at(MODIFIED + 10).as_str()), "{server}");
    }
}
