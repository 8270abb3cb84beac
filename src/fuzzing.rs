//! What the fuzz targets under `fuzz/`, and the test that replays their
//! corpus, reach of the crate: re-exported here for them alone, so that no
//! module has to be public. Not an API.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub use crate::config::{parse_args, Command};
pub use crate::files::listing_page;
pub use crate::log::printable;
pub use crate::request::{
    decode_path, head_end, loggable_request_line, parse_head, percent_decode, read_head_from,
    read_head_from_pieces, BadHead, Head, Request, MAX_HEAD,
};
pub use crate::response::{html_escape, percent_encode, Status};

/// What files mode serves for `target` under `root`: where the file or
/// directory it opened really is (its `/proc/self/fd` link), or the status
/// it answers with instead.
pub fn resolve(root: &Path, target: &str) -> Result<PathBuf, Status> {
    let req = Request {
        method: "GET".into(),
        target: target.into(),
        has_body: false,
        conditions: crate::request::Conditions::default(),
    };
    crate::files::resolve_to_found(root, &req)?.real_path().map_err(|_| Status::NotFound)
}

/// The tree the confinement checks run against, made under `base` (which
/// the caller removes when it is done): a root, `base/www`, with symlinks
/// that lead inside it, relative and absolute, and out of it, beside a
/// secret. Idempotent, so that processes that share a `base` may each make
/// it. Returns the root. For the resolver's property test and the fuzz
/// target alike.
pub fn confinement_tree(base: &Path) -> PathBuf {
    let (root, secret) = (base.join("www"), base.join("secret"));
    for dir in [root.join("a/b c"), root.join("idx"), secret.clone()] {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(secret.join("passwd"), "secret").unwrap();
    fs::write(root.join("index.html"), "hi").unwrap();
    fs::write(root.join("a/b c/x.txt"), "x").unwrap();
    let links: [(&Path, PathBuf); 7] = [
        (&secret, root.join("out")),
        (Path::new("../secret"), root.join("rel-out")),
        (Path::new("../../secret/passwd"), root.join("a/passwd")),
        (Path::new("a"), root.join("in")),
        (&root, root.join("a/abs-root")),
        (Path::new("../../index.html"), root.join("a/b c/up.html")),
        (&secret.join("passwd"), root.join("idx/index.html")),
    ];
    for (to, at) in links {
        match symlink(to, &at) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => panic!("{at:?}: {e}"),
            _ => {}
        }
    }
    root
}
