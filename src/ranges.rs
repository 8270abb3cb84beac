//! The `Range` header of a GET (RFC 9110 §14.1.2): which bytes of a file
//! of a known length the client asks for.
//!
//! - One range (`bytes=A-B`, `bytes=A-`, `bytes=-N`) that overlaps the file
//!   is sent as `206 Partial Content`; a range that runs past the end is
//!   cut at the end, and a suffix longer than the file is the whole file.
//! - A header that does not parse, names another unit, or has a range that
//!   ends before it starts is ignored (RFC 9110 requires it): the whole file,
//!   `200`, as without the header.
//! - Nothing that overlaps the file (`bytes=LEN-`, `bytes=-0`, any range of
//!   an empty file but a suffix) is `416 Range Not Satisfiable`.
//! - Several ranges that overlap the file get the whole file, `200`: a
//!   server may ignore `Range`, and a `multipart/byteranges` body for one
//!   connection's one response buys little. Several of which only one
//!   overlaps the file get that one, `206`.

use std::ops::Range;

/// What a `Range` header asks of a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// The header is ignored: the whole file, `200`.
    Whole,
    /// These bytes, `206`.
    Part(Range<u64>),
    /// Nothing the file has, `416`.
    Unsatisfiable,
}

/// One range of a `Range` header, before it meets the file's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `A-B` (`last` inclusive) or `A-` (`last` is `None`).
    From { first: u64, last: Option<u64> },
    /// `-N`: the last N bytes.
    Suffix(u64),
}

/// What `header` asks of a file of `len` bytes.
pub fn asked(header: &str, len: u64) -> Asked {
    let Some(specs) = parse(header) else { return Asked::Whole };
    let mut overlapping = specs.iter().filter_map(|&spec| within(spec, len));
    match (overlapping.next(), overlapping.next()) {
        (None, _) if len == 0 && specs.iter().any(|s| matches!(s, Spec::Suffix(n) if *n > 0)) => {
            // A suffix of an empty file is satisfiable and has no bytes:
            // a 206 has no way to say so. The whole, empty, file.
            Asked::Whole
        }
        (None, _) => Asked::Unsatisfiable,
        (Some(one), None) => Asked::Part(one),
        (Some(_), Some(_)) => Asked::Whole,
    }
}

/// The bytes of `spec` within a file of `len` bytes, if any.
fn within(spec: Spec, len: u64) -> Option<Range<u64>> {
    let range = match spec {
        Spec::From { first, last } => first..last.map_or(len, |last| last.saturating_add(1).min(len)),
        Spec::Suffix(n) => len - n.min(len)..len,
    };
    (range.start < range.end).then_some(range)
}

/// `bytes=` and a list of ranges, or `None` for a header to ignore. The
/// unit is matched without case; spaces and tabs may surround each range,
/// and empty list elements are skipped (RFC 9110 §5.6.1).
fn parse(header: &str) -> Option<Vec<Spec>> {
    let (unit, set) = header.split_once('=')?;
    if !unit.trim_matches([' ', '\t']).eq_ignore_ascii_case("bytes") {
        return None;
    }
    let specs: Vec<Spec> = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty())
        .map(parse_spec)
        .collect::<Option<_>>()?;
    (!specs.is_empty()).then_some(specs)
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(number(last)?));
    }
    let first = number(first)?;
    let last = if last.is_empty() { None } else { Some(number(last)?) };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    Some(Spec::From { first, last })
}

/// Decimal digits only; a number past `u64` is taken as `u64::MAX`, which
/// no file reaches.
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Asked::*;

    #[test]
    fn one_range_at_its_edges() {
        let len = 100;
        assert_eq!(asked("bytes=0-0", len), Part(0..1));
        assert_eq!(asked("bytes=0-99", len), Part(0..100));
        assert_eq!(asked("bytes=99-99", len), Part(99..100));
        assert_eq!(asked("bytes=90-100", len), Part(90..100), "one past the end is cut at it");
        assert_eq!(asked("bytes=90-", len), Part(90..100));
        assert_eq!(asked("bytes=100-", len), Unsatisfiable);
        assert_eq!(asked("bytes=100-100", len), Unsatisfiable);
        assert_eq!(asked("bytes=-1", len), Part(99..100));
        assert_eq!(asked("bytes=-100", len), Part(0..100));
        assert_eq!(asked("bytes=-101", len), Part(0..100));
        assert_eq!(asked("bytes=-0", len), Unsatisfiable);
        assert_eq!(asked("bytes=0-99999999999999999999999", len), Part(0..100));
        assert_eq!(asked("bytes=99999999999999999999999-", len), Unsatisfiable);
        assert_eq!(asked(" Bytes = 10-19 ", len), Part(10..20));
    }

    #[test]
    fn an_empty_file() {
        assert_eq!(asked("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(asked("bytes=0-", 0), Unsatisfiable);
        assert_eq!(asked("bytes=-0", 0), Unsatisfiable);
        assert_eq!(asked("bytes=-5", 0), Whole);
    }

    #[test]
    fn what_is_ignored() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-1",
            "bytes=5-4",
            "bytes=a-b",
            "bytes=1",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=0-1, bytes=2-3",
            "bytes=-",
            "bytes=1 -2",
        ] {
            assert_eq!(asked(header, 100), Whole, "{header:?}");
        }
    }

    #[test]
    fn several_ranges() {
        assert_eq!(asked("bytes=0-1,5-6", 100), Whole);
        assert_eq!(asked("bytes=0-1, 200-300", 100), Part(0..2));
        assert_eq!(asked("bytes=0-1,,", 100), Part(0..2));
        assert_eq!(asked("bytes=200-300, 400-", 100), Unsatisfiable);
    }
}
