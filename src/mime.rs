//! The `Content-Type` of a file, from its extension.

use std::path::Path;

/// Skeleton: `http_get_mime_type`. The media type for `path`'s extension (case-insensitive); `text/plain`
/// when the extension is unknown or missing.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "css" => "text/css",
        "js" => "application/javascript",
        "json" => "application/json",
        "pdf" => "application/pdf",
        _ => "text/plain",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_known_extensions() {
        for (name, ty) in [
            ("index.html", "text/html"),
            ("old.HTM", "text/html"),
            ("a.jpg", "image/jpeg"),
            ("a.JPEG", "image/jpeg"),
            ("a.png", "image/png"),
            ("a.gif", "image/gif"),
            ("logo.svg", "image/svg+xml"),
            ("favicon.ico", "image/x-icon"),
            ("style.css", "text/css"),
            ("app.js", "application/javascript"),
            ("data.json", "application/json"),
            ("paper.pdf", "application/pdf"),
        ] {
            assert_eq!(content_type(Path::new(name)), ty, "{name}");
        }
    }

    #[test]
    fn everything_else_is_plain_text() {
        for name in ["README", "notes.txt", "archive.tar.gz", ".hidden", "dir/no_ext", "x.html.bak"] {
            assert_eq!(content_type(Path::new(name)), "text/plain", "{name}");
        }
    }
}
