//! What each fuzz target checks of one input. Shared by the afl targets
//! (`src/bin/`) and by the server crate's `tests/fuzz_corpus.rs`, which
//! replays the committed corpus through the same checks without afl. A
//! check that fails panics, which afl records as a crash.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::OnceLock;

use httpserver::fuzzing::{self, BadHead, Head, Request};
use httpserver::Mode;

/// head: `read_head` fed the bytes in pieces, then `parse_head`. The first
/// byte of the input says how many cuts to make (0 to 7), the next that
/// many bytes where (each a share of the rest, in 256ths); the rest is what
/// the client sends. However the bytes are cut, the answer is the same,
/// whether the client then ends its stream or keeps the connection open.
pub fn head(data: &[u8]) {
    let (cuts, sent) = match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n % 8).min(rest.len())),
        None => return,
    };
    let mut at: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * sent.len() / 256).collect();
    at.sort_unstable();
    let pieces: Vec<&[u8]> =
        [0].iter().chain(&at).zip(at.iter().chain([&sent.len()])).map(|(&a, &b)| &sent[a..b]).collect();
    for keeps_open in [false, true] {
        let whole = answer(fuzzing::read_head_from_pieces(&[sent], keeps_open));
        let cut = answer(fuzzing::read_head_from_pieces(&pieces, keeps_open));
        assert_eq!(whole, cut, "{sent:?} cut at {at:?} (the client keeps the connection open: {keeps_open})");
    }
}

/// What the server does with what was read: the request it acts on, or
/// the status it refuses with. Checks the parser's own promises on the way.
fn answer(read: Result<Head, BadHead>) -> Result<Request, u16> {
    let received = match &read {
        Ok(head) => &head.bytes,
        Err(bad) => &bad.received,
    };
    let logged = fuzzing::loggable_request_line(received);
    assert!(logged.bytes().all(|b| (0x20..=0x7e).contains(&b)), "logged raw: {logged:?}");
    let head = read.map_err(|bad| bad.status.code())?;
    let req = fuzzing::parse_head(&head.bytes).map_err(|status| status.code())?;
    let line = head.bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line =
        std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(line)).expect("an accepted line is UTF-8");
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.len(), 3, "accepted {line:?}");
    assert_eq!((parts[0], parts[1]), (req.method.as_str(), req.target.as_str()), "accepted {line:?}");
    assert!(parts[2].starts_with("HTTP/") && req.target.starts_with('/'), "accepted {line:?}");
    Ok(req)
}

/// The tree `resolve` runs against (`fuzzing::confinement_tree`), at a
/// fixed place, made by each process that needs it. The fuzzer leaves it
/// for its next run; the corpus test removes it ([`remove_tree`]).
struct Tree {
    root: PathBuf,
    real_root: PathBuf,
}

fn tree_base() -> PathBuf {
    std::env::temp_dir().join("httpserver-fuzz-tree")
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let root = fuzzing::confinement_tree(&tree_base());
        let real_root = root.canonicalize().unwrap();
        Tree { root, real_root }
    })
}

/// Removes the tree, once nothing resolves against it any more.
pub fn remove_tree() {
    let _ = fs::remove_dir_all(tree_base());
}

/// resolve: `decode_path` and the one confined open, on any target. What
/// is opened lies inside the root, judged by where the opened fd really is.
pub fn resolve(data: &[u8]) {
    let target = String::from_utf8_lossy(data);
    let tree = tree();
    if let Ok(real) = fuzzing::resolve(&tree.root, &target) {
        assert!(real.starts_with(&tree.real_root), "{target:?} opened {real:?}");
    }
    if let Ok(path) = fuzzing::decode_path(&target) {
        for s in &path.segments {
            let b = s.as_bytes();
            assert!(
                !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0),
                "{target:?}"
            );
        }
    }
}

/// listing: `listing_page`, with `html_escape` and `percent_encode` in it.
/// The input's first line is the directory (names split by `/`); each
/// further line names an entry, a directory if it ends in `/`. No name adds
/// markup of its own, and every link decodes back to its name.
pub fn listing(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let name_ok =
        |n: &&[u8]| !n.is_empty() && !n.contains(&0) && !n.contains(&b'/') && *n != b"." && *n != b"..";
    let segments: Vec<OsString> = lines
        .next()
        .unwrap_or_default()
        .split(|&b| b == b'/')
        .filter(name_ok)
        .map(|n| OsString::from_vec(n.to_vec()))
        .collect();
    let entries: Vec<(OsString, bool)> = lines
        .map(|l| l.strip_suffix(b"/").map_or((l, false), |n| (n, true)))
        .filter(|(n, _)| name_ok(n))
        .map(|(n, dir)| (OsString::from_vec(n.to_vec()), dir))
        .collect();
    let page = fuzzing::listing_page(&segments, &entries);
    let bare = fuzzing::listing_page(&segments, &[]);
    for (mark, per_entry) in [('<', 4), ('>', 4), ('"', 2)] {
        let (got, want) =
            (page.matches(mark).count(), bare.matches(mark).count() + per_entry * entries.len());
        assert_eq!(got, want, "{mark:?} from a name in {entries:?}");
    }
    for (i, _) in page.match_indices('&') {
        let entity = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| page[i..].starts_with(e));
        assert!(entity, "a raw & in {page:?}");
    }
    let mut here = b"/".to_vec();
    for s in &segments {
        here.extend_from_slice(s.as_bytes());
        here.push(b'/');
    }
    let hrefs: Vec<&str> = page.split("href=\"").skip(1).map(|r| &r[..r.find('"').unwrap()]).collect();
    assert_eq!(hrefs.len(), entries.len() + 2, "{page:?}");
    assert_eq!(fuzzing::percent_decode(hrefs[0]).as_deref(), Some(&here[..]), "the <base> of {segments:?}");
    assert_eq!(hrefs[1], "../");
    for (href, (name, is_dir)) in hrefs[2..].iter().zip(&entries) {
        let mut want = here.clone();
        want.extend_from_slice(name.as_bytes());
        if *is_dir {
            want.push(b'/');
        }
        assert_eq!(fuzzing::percent_decode(href), Some(want), "the link of {name:?}");
    }
}

/// cli: `parse_args` on any argv (arguments split at NUL bytes), in every
/// mode. It never panics, and every error is one printable line.
pub fn cli(data: &[u8]) {
    let args: Vec<OsString> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())).collect()
    };
    for mode in [Mode::Basic, Mode::Fork, Mode::Thread, Mode::Pool] {
        if let Err(msg) = fuzzing::parse_args(mode, &args) {
            assert!(!msg.is_empty() && !msg.chars().any(char::is_control), "{args:?}: {msg:?}");
        }
    }
}
