//! What the fuzz targets under `fuzz/`, and the test that replays their
//! corpus, reach of the crate: re-exported here for them alone, so that no
//! module has to be public. Not an API.

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
        conditions: Default::default(),
    };
    crate::files::resolve_to_found(root, &req)?.real_path().map_err(|_| Status::NotFound)
}
