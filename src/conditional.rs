//! What a real file server adds to Part 2's `200 OK`: validators that let a
//! client keep a file and ask whether it changed, and answers to a client
//! that asks for only part of it. HTTP/1.0 has the first (`Last-Modified`,
//! `If-Modified-Since`, RFC 1945 §10.9, §10.10); RFC 9110 the rest.
//!
//! - **Validators**, from the `fstat` of the fd that is served: the
//!   modification time as `Last-Modified`, and a strong `ETag` made as
//!   nginx makes it, from that time and the size (`"5f3c2a1b-1c"`, both in
//!   hex). A file changed twice in one second without changing size keeps
//!   its tag, as with nginx.
//! - **`304 Not Modified`**, with no body, to a GET or HEAD whose
//!   `If-None-Match` lists the file's tag (or `*`), or, when there is no
//!   `If-None-Match`, whose `If-Modified-Since` is a valid date at or after
//!   the modification time. A date that does not parse, or lies in the
//!   future, is ignored (RFC 9110 §13.1.3).
//! - **Ranges** (`ranges` parses them), for a GET only, as RFC 9110 has it:
//!   unless an `If-Range` is sent that does not match, which asks for the
//!   whole file instead. An `If-Range` date matches only the exact
//!   `Last-Modified` of a file that has not changed in the last second
//!   (RFC 9110 §13.1.5: otherwise the date is no strong validator); an
//!   `If-Range` tag, only the file's own, strong.
//!
//! The order is RFC 9110 §13.2.2's. `If-Match` and `If-Unmodified-Since`
//! (for writes, which files mode has none of) are not looked at.

use std::fs::Metadata;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;

use crate::dates;
use crate::ranges::{self, Asked};
use crate::request::Conditions;

/// What a file response is, given what the request asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// `200 OK`, the whole file.
    Whole,
    /// `304 Not Modified`: the client's copy is current.
    NotModified,
    /// `206 Partial Content`: these bytes.
    Part(Range<u64>),
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
}

/// A file's validators, as its responses carry them.
pub struct Validators {
    /// The modification time, in seconds since the epoch, no later than now.
    modified: i64,
    pub last_modified: String,
    pub etag: String,
}

impl Validators {
    /// The validators of the file `meta` describes, as of `now`.
    pub fn of(meta: &Metadata, now: i64) -> Validators {
        let modified = meta.mtime().min(now);
        Validators {
            modified,
            last_modified: {
                let mut text = String::with_capacity(29);
                dates::HttpDate(modified).push_to(&mut text);
                text
            },
            etag: format!("\"{:x}-{:x}\"", meta.mtime(), meta.size()),
        }
    }

    /// The headers of a `200`, `206` or `304` for the file.
    pub fn headers(&self) -> [(&str, &str); 3] {
        [("Last-Modified", &self.last_modified), ("ETag", &self.etag), ACCEPT_RANGES]
    }
}

/// What every file response says of ranges.
pub const ACCEPT_RANGES: (&str, &str) = ("Accept-Ranges", "bytes");

/// The answer to a `GET` (or, with `head`, a `HEAD`) of a file of `len`
/// bytes with validators `v`, at `now`.
pub fn answer(asks: &Conditions, v: &Validators, len: u64, head: bool, now: i64) -> Answer {
    if let Some(tags) = &asks.if_none_match {
        if lists_tag(tags, &v.etag) {
            return Answer::NotModified;
        }
    } else if let Some(since) = asks.if_modified_since.as_deref().and_then(dates::parse_http_date) {
        if since <= now && v.modified <= since {
            return Answer::NotModified;
        }
    }
    let Some(range) = asks.range.as_deref().filter(|_| !head) else { return Answer::Whole };
    if asks.if_range.as_deref().is_some_and(|if_range| !if_range_matches(if_range, v, now)) {
        return Answer::Whole;
    }
    match ranges::asked(range, len) {
        Asked::Whole => Answer::Whole,
        Asked::Part(bytes) => Answer::Part(bytes),
        Asked::Unsatisfiable => Answer::Unsatisfiable,
    }
}

/// Whether an `If-None-Match` list names `etag`, by the weak comparison
/// (RFC 9110 §8.8.3.2: `W/"x"` matches `"x"`), or is `*`.
fn lists_tag(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim_matches([' ', '\t']))
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// Whether an `If-Range` value still describes the file, so that a range
/// may be sent: a strong tag equal to the file's, or the file's exact
/// `Last-Modified`, if that was a second or more ago.
fn if_range_matches(value: &str, v: &Validators, now: i64) -> bool {
    let value = value.trim_matches([' ', '\t']);
    if value.starts_with('"') || value.starts_with("W/") {
        return value == v.etag;
    }
    dates::parse_http_date(value) == Some(v.modified) && v.modified < now
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODIFIED: i64 = 1_600_000_000;
    const NOW: i64 = MODIFIED + 1000;

    fn validators() -> Validators {
        Validators {
            modified: MODIFIED,
            last_modified: dates::HttpDate(MODIFIED).to_string(),
            etag: format!("\"{MODIFIED:x}-64\""),
        }
    }

    fn ask(f: impl FnOnce(&mut Conditions)) -> Answer {
        let mut asks = Conditions::default();
        f(&mut asks);
        answer(&asks, &validators(), 100, false, NOW)
    }

    #[test]
    fn if_modified_since_at_its_edges() {
        let at = |secs: i64| dates::HttpDate(secs).to_string();
        assert_eq!(ask(|a| a.if_modified_since = Some(at(MODIFIED))), Answer::NotModified);
        assert_eq!(ask(|a| a.if_modified_since = Some(at(MODIFIED + 1))), Answer::NotModified);
        assert_eq!(ask(|a| a.if_modified_since = Some(at(MODIFIED - 1))), Answer::Whole);
        assert_eq!(ask(|a| a.if_modified_since = Some(at(NOW + 1))), Answer::Whole, "a future date");
        assert_eq!(ask(|a| a.if_modified_since = Some("yesterday".into())), Answer::Whole);
    }

    #[test]
    fn if_none_match_comes_first() {
        let tag = validators().etag;
        assert_eq!(ask(|a| a.if_none_match = Some(tag.clone())), Answer::NotModified);
        assert_eq!(ask(|a| a.if_none_match = Some(format!("\"x\", W/{tag}"))), Answer::NotModified);
        assert_eq!(ask(|a| a.if_none_match = Some("*".into())), Answer::NotModified);
        let stale = |a: &mut Conditions| {
            a.if_none_match = Some("\"other\"".into());
            a.if_modified_since = Some(dates::HttpDate(MODIFIED).to_string());
        };
        assert_eq!(ask(stale), Answer::Whole, "a tag that does not match outweighs a date that does");
    }

    #[test]
    fn if_range_sends_the_whole_file_unless_it_matches() {
        let v = validators();
        let with = |if_range: &str| {
            ask(|a| {
                a.range = Some("bytes=10-19".into());
                a.if_range = Some(if_range.into());
            })
        };
        assert_eq!(with(&v.etag), Answer::Part(10..20));
        assert_eq!(with(&v.last_modified), Answer::Part(10..20));
        assert_eq!(with(&format!("W/{}", v.etag)), Answer::Whole, "a weak tag never matches");
        assert_eq!(with("\"other\""), Answer::Whole);
        assert_eq!(with(&dates::HttpDate(MODIFIED + 1).to_string()), Answer::Whole);
        let just_changed = answer(
            &Conditions {
                range: Some("bytes=1-2".into()),
                if_range: Some(v.last_modified.clone()),
                ..Default::default()
            },
            &v,
            100,
            false,
            MODIFIED,
        );
        assert_eq!(
            just_changed,
            Answer::Whole,
            "a date within the second of a change is no strong validator"
        );
    }

    #[test]
    fn head_has_no_ranges() {
        let asks = Conditions { range: Some("bytes=0-0".into()), ..Default::default() };
        assert_eq!(answer(&asks, &validators(), 100, true, NOW), Answer::Whole);
        assert_eq!(answer(&asks, &validators(), 100, false, NOW), Answer::Part(0..1));
    }
}
