//! Files mode, over real sockets, against all four executables.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;

use common::{exchange, get, send_and_half_close, Response, Server, TempDir, SERVERS};

const HELLO: &str = "Hello, CS162!\n";
const INDEX: &str = "<!DOCTYPE html><title>site</title><p>the site index</p>\n";

/// A served tree with one of each kind of thing a request can hit.
fn make_site() -> TempDir {
    let dir = TempDir::new("site");
    let root = dir.path();
    fs::write(root.join("hello.txt"), HELLO).unwrap();
    fs::write(root.join("page.html"), "<p>page</p>").unwrap();
    fs::write(root.join("style.css"), "body{}").unwrap();
    fs::write(root.join("pic.png"), b"\x89PNG\r\n\x1a\nfake").unwrap();
    fs::write(root.join("Photo.JPG"), b"\xff\xd8\xff").unwrap();
    fs::write(root.join("data.json"), "{}").unwrap();
    fs::write(root.join("big.bin"), common::random_bytes(5 << 20, 7)).unwrap();
    fs::create_dir(root.join("site")).unwrap();
    fs::write(root.join("site/index.html"), INDEX).unwrap();
    fs::create_dir_all(root.join("list/child")).unwrap();
    fs::write(root.join("list/a b&c.txt"), "ampersand and space\n").unwrap();
    fs::write(root.join("list/<b>.txt"), "angle\n").unwrap();
    fs::write(root.join("list/plain.txt"), "plain\n").unwrap();
    symlink("/etc", root.join("escape")).unwrap();
    symlink("/etc/passwd", root.join("passwd")).unwrap();
    symlink("hello.txt", root.join("inside.txt")).unwrap();
    dir
}

fn for_each_server(check: impl Fn(&Server)) {
    let site = make_site();
    for name in SERVERS {
        let server = Server::start(name, &["--files", site.str(), "--quiet"]);
        check(&server);
    }
}

#[test]
fn a_file_gets_exact_status_line_headers_and_bytes() {
    for_each_server(|s| {
        let raw = exchange(s.addr(), b"GET /hello.txt HTTP/1.0\r\n\r\n");
        let expected = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{HELLO}",
            HELLO.len()
        );
        assert_eq!(String::from_utf8_lossy(&raw), expected, "{}", s.name);
    });
}

#[test]
fn content_types_follow_the_extension() {
    for_each_server(|s| {
        for (path, ty) in [
            ("/page.html", "text/html"),
            ("/style.css", "text/css"),
            ("/pic.png", "image/png"),
            ("/Photo.JPG", "image/jpeg"),
            ("/data.json", "application/json"),
            ("/hello.txt", "text/plain"),
        ] {
            let r = get(s.addr(), path);
            r.assert_well_formed(200, "OK");
            assert_eq!(r.header("Content-Type"), Some(ty), "{} {path}", s.name);
        }
    });
}

#[test]
fn a_5_mib_binary_file_arrives_byte_exact() {
    let expected = common::random_bytes(5 << 20, 7);
    for_each_server(|s| {
        let r = get(s.addr(), "/big.bin");
        r.assert_well_formed(200, "OK");
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
        assert!(r.body == expected, "{}: 5 MiB body differs", s.name);
    });
}

#[test]
fn a_directory_with_index_html_serves_it_with_or_without_slash() {
    for_each_server(|s| {
        for path in ["/site", "/site/", "/site/index.html", "//site/./"] {
            let r = get(s.addr(), path);
            r.assert_well_formed(200, "OK");
            assert_eq!(r.header("Content-Type"), Some("text/html"), "{} {path}", s.name);
            assert_eq!(r.text(), INDEX, "{} {path}", s.name);
        }
    });
}

#[test]
fn a_directory_without_index_html_is_listed_with_escaped_links() {
    for_each_server(|s| {
        for path in ["/list", "/list/"] {
            let r = get(s.addr(), path);
            r.assert_well_formed(200, "OK");
            assert_eq!(r.header("Content-Type"), Some("text/html"));
            let page = r.text();
            assert!(page.contains("<a href=\"/\">Parent directory</a>"), "{} {path}: {page}", s.name);
            assert!(page.contains("<a href=\"/list/a%20b%26c.txt\">a b&amp;c.txt</a>"), "{page}");
            assert!(page.contains("<a href=\"/list/%3Cb%3E.txt\">&lt;b&gt;.txt</a>"), "{page}");
            assert!(page.contains("<a href=\"/list/plain.txt\">plain.txt</a>"), "{page}");
            assert!(page.contains("<a href=\"/list/child/\">child/</a>"), "{page}");
        }
        // The links work when followed.
        let r = get(s.addr(), "/list/a%20b%26c.txt");
        r.assert_well_formed(200, "OK");
        assert_eq!(r.text(), "ampersand and space\n");
        let child = get(s.addr(), "/list/child/").text();
        assert!(child.contains("<a href=\"/list/\">Parent directory</a>"), "{child}");
        // The root is listed too; its parent link stays at the root.
        let root = get(s.addr(), "/").text();
        assert!(root.contains("<a href=\"/site/\">site/</a>") && root.contains("<a href=\"/\">"), "{root}");
    });
}

#[test]
fn missing_paths_get_404_with_an_html_page() {
    for_each_server(|s| {
        for path in ["/nope", "/list/nope.txt", "/hello.txt/x"] {
            let r = get(s.addr(), path);
            r.assert_well_formed(404, "Not Found");
            assert_eq!(r.header("Content-Type"), Some("text/html"));
            assert!(r.text().contains("404 Not Found"), "{}", r.text());
        }
    });
}

#[test]
fn climbing_out_of_the_root_gets_403() {
    for_each_server(|s| {
        for path in [
            "/../etc/passwd",
            "/list/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2fetc%2fpasswd",
            "/..%2fetc",
        ] {
            let r = get(s.addr(), path);
            r.assert_well_formed(403, "Forbidden");
            assert!(!r.text().contains("root:"), "{} {path}", s.name);
        }
        // Symlinks that lead outside are refused; one that stays inside is served.
        get(s.addr(), "/escape/passwd").assert_well_formed(403, "Forbidden");
        get(s.addr(), "/passwd").assert_well_formed(403, "Forbidden");
        let inside = get(s.addr(), "/inside.txt");
        inside.assert_well_formed(200, "OK");
        assert_eq!(inside.text(), HELLO);
    });
}

#[test]
fn bad_requests_get_400() {
    let long_path = |total: usize| {
        let fixed = "GET / HTTP/1.0\r\n\r\n".len();
        format!("GET /{} HTTP/1.0\r\n\r\n", "a".repeat(total - fixed))
    };
    for_each_server(|s| {
        for raw in [
            &b"\x00\x01\x02garbage\xff\r\n\r\n"[..],
            b"GET hello.txt HTTP/1.0\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/1.0 extra\r\n\r\n",
            b"GET / HTTP/1.0\r\nno-colon-here\r\n\r\n",
            long_path(8193).as_bytes(),
        ] {
            let r = Response::parse(&exchange(s.addr(), raw));
            r.assert_well_formed(400, "Bad Request");
            assert_eq!(r.header("Content-Type"), Some("text/html"));
        }
        // A head of exactly 8192 bytes is read and answered (nothing lives there).
        Response::parse(&exchange(s.addr(), long_path(8192).as_bytes())).assert_well_formed(404, "Not Found");
        // A client that says nothing, or stops half-way, and closes its side.
        for raw in [&b""[..], b"GET /hello.txt HTTP/1.0\r\nHost: x\r\n"] {
            Response::parse(&send_and_half_close(s.addr(), raw)).assert_well_formed(400, "Bad Request");
        }
    });
}

#[test]
fn methods_other_than_get_get_405_with_allow() {
    for_each_server(|s| {
        for method in ["POST", "PUT", "DELETE", "HEAD"] {
            let raw = exchange(s.addr(), format!("{method} /hello.txt HTTP/1.0\r\n\r\n").as_bytes());
            let r = Response::parse(&raw);
            r.assert_well_formed(405, "Method Not Allowed");
            assert_eq!(r.header("Allow"), Some("GET"), "{} {method}", s.name);
        }
    });
}

#[test]
fn an_error_response_survives_a_request_body_the_server_never_reads() {
    // The server answers 405 without reading the 256 KiB body. Closing with
    // unread input would reset the connection and could destroy the answer.
    let body = common::random_bytes(256 << 10, 3);
    for_each_server(|s| {
        let mut stream = common::connect(s.addr());
        let head = format!("POST /hello.txt HTTP/1.0\r\nContent-Length: {}\r\n\r\n", body.len());
        let writer = {
            let mut w = stream.try_clone().unwrap();
            let body = body.clone();
            std::thread::spawn(move || {
                let _ = w.write_all(head.as_bytes()).and_then(|_| w.write_all(&body));
            })
        };
        let r = Response::parse(&common::read_to_close(&mut stream));
        r.assert_well_formed(405, "Method Not Allowed");
        writer.join().unwrap();
    });
}
