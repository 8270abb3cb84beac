//! Writing responses: the status line and headers, the small HTML pages of
//! errors, the escaping those pages need, and ending a connection so that the
//! client receives everything that was written.

use std::fmt::Write as _;
use std::io;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::dates;
use crate::progress::Sender;
use crate::sys::Socket;

/// The statuses the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    PartialContent,
    MovedPermanently,
    NotModified,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    RangeNotSatisfiable,
    BadGateway,
    ServiceUnavailable,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::PartialContent => 206,
            Status::MovedPermanently => 301,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::RangeNotSatisfiable => 416,
            Status::BadGateway => 502,
            Status::ServiceUnavailable => 503,
        }
    }

    /// Skeleton: `http_get_response_message`.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::PartialContent => "Partial Content",
            Status::MovedPermanently => "Moved Permanently",
            Status::NotModified => "Not Modified",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::RangeNotSatisfiable => "Range Not Satisfiable",
            Status::BadGateway => "Bad Gateway",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }
}

/// Skeleton: `http_start_response`, `http_send_header` and
/// `http_end_headers`, as one string. The head of a response:
/// `HTTP/1.0 <code> <reason>`, `Content-Type`, `Content-Length`, then
/// `Date` (RFC 1945 §10.6: the time the response was made), any `extra`
/// headers, and the blank line.
pub fn response_head(
    status: Status,
    content_type: &str,
    content_length: u64,
    extra: &[(&str, &str)],
) -> String {
    let mut out = String::with_capacity(HEAD_ROOM);
    let _ = write!(
        out,
        "HTTP/1.0 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n",
        status.code(),
        status.reason()
    );
    end_head(&mut out, extra);
    out
}

/// Room for a file's head with its validators, so that it is one allocation.
const HEAD_ROOM: usize = 256;

/// The head of a `304 Not Modified`: no body, so no `Content-Type` or
/// `Content-Length` (RFC 9110 §15.4.5), and the validators in `extra`.
pub fn not_modified_head(extra: &[(&str, &str)]) -> String {
    let mut out = format!("HTTP/1.0 {} {}\r\n", Status::NotModified.code(), Status::NotModified.reason());
    end_head(&mut out, extra);
    out
}

/// `Date`, `extra` and the blank line.
fn end_head(out: &mut String, extra: &[(&str, &str)]) {
    out.push_str("Date: ");
    dates::HttpDate(dates::now_secs()).push_to(out);
    out.push_str("\r\n");
    for (name, value) in extra {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
}

/// Sends a complete `text/html` response, head and body in one write; in
/// answer to HEAD (`head_only`), the same head and no body. Returns how many
/// body bytes were sent.
pub fn send_html(
    out: &mut Sender,
    status: Status,
    body: &str,
    extra: &[(&str, &str)],
    head_only: bool,
) -> io::Result<u64> {
    let mut msg = response_head(status, "text/html", body.len() as u64, extra);
    if !head_only {
        msg.push_str(body);
    }
    out.write_all(msg.as_bytes())?;
    Ok(if head_only { 0 } else { body.len() as u64 })
}

/// Sends an error as a small HTML page; `detail` is plain text.
pub fn send_error(
    out: &mut Sender,
    status: Status,
    detail: &str,
    extra: &[(&str, &str)],
    head_only: bool,
) -> io::Result<u64> {
    send_html(out, status, &error_page(status, detail), extra, head_only)
}

/// A small HTML page for an error status.
pub fn error_page(status: Status, detail: &str) -> String {
    let title = format!("{} {}", status.code(), status.reason());
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1><p>{}</p></body></html>\n",
        html_escape(detail)
    )
}

/// How long, and how much, a closing connection drains from a client that
/// has not finished sending.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Ends a response without losing it. Closing a socket that still has unread
/// input makes the kernel send a reset, which can destroy the response before
/// the client reads it. So: half-close our side (the client sees EOF), then
/// read and discard until the client closes too, for a bounded time and size.
pub fn lingering_close(sock: &Socket) {
    if sock.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match sock.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment: every byte but the unreserved characters
/// of RFC 3986 (`A-Z a-z 0-9 - . _ ~`).
pub fn percent_encode(segment: &[u8]) -> String {
    let mut out = String::with_capacity(segment.len());
    for &b in segment {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head with its `Date` line taken out, and that line's date.
    fn without_date(head: &str) -> (String, i64) {
        let start = head.find("Date: ").expect("a Date line");
        let end = start + head[start..].find("\r\n").unwrap();
        let date = dates::parse_http_date(&head[start + "Date: ".len()..end]).expect("an HTTP date");
        (format!("{}{}", &head[..start], &head[end + 2..]), date)
    }

    #[test]
    fn heads_are_exact() {
        let before = dates::now_secs();
        let (head, date) = without_date(&response_head(Status::Ok, "text/html", 12, &[]));
        assert_eq!(head, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\n\r\n");
        assert!((before..=dates::now_secs()).contains(&date), "{date}");
        let (head, _) =
            without_date(&response_head(Status::MethodNotAllowed, "text/html", 0, &[("Allow", "GET, HEAD")]));
        assert_eq!(
            head,
            "HTTP/1.0 405 Method Not Allowed\r\nContent-Type: text/html\r\nContent-Length: 0\r\nAllow: GET, HEAD\r\n\r\n"
        );
        let (head, _) = without_date(&not_modified_head(&[("ETag", "\"1-2\"")]));
        assert_eq!(head, "HTTP/1.0 304 Not Modified\r\nETag: \"1-2\"\r\n\r\n");
    }

    #[test]
    fn error_pages_escape_their_detail() {
        let page = error_page(Status::NotFound, "<b>&");
        assert!(page.contains("<title>404 Not Found</title>"));
        assert!(page.contains("&lt;b&gt;&amp;"));
    }

    #[test]
    fn escaping() {
        assert_eq!(html_escape(r#"a b&c<d>"e'"#), "a b&amp;c&lt;d&gt;&quot;e&#39;");
        assert_eq!(percent_encode(b"a b&c.txt"), "a%20b%26c.txt");
        assert_eq!(percent_encode("\u{2713}/?#%".as_bytes()), "%E2%9C%93%2F%3F%23%25");
        assert_eq!(percent_encode(b"Az09-._~"), "Az09-._~");
    }
}
