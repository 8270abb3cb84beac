//! The `Content-Type` of a file, from its extension.

use std::path::Path;

/// Skeleton: `http_get_mime_type`. The media type for `path`'s extension
/// (case-insensitive); `text/plain` when the extension is unknown or
/// missing, as in the skeleton. The skeleton's own types (`text/html`,
/// `text/plain`, `image/jpeg`, `image/png`, `text/css`,
/// `application/javascript`, `application/pdf`) keep their values; the rest
/// are the web and media types of nginx's `mime.types`, and those browsers
/// insist on (a module script, `WebAssembly.instantiateStreaming`, a
/// `<video>` that seeks), by their registered names.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        // Text and the web's own.
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "application/javascript",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "xml" => "text/xml",
        "csv" => "text/csv",
        "md" | "markdown" => "text/markdown",
        "wasm" => "application/wasm",
        // Images.
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "svg" | "svgz" => "image/svg+xml",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        // Fonts.
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        // Video and audio.
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "ogv" => "video/ogg",
        "mov" => "video/quicktime",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        // Documents and archives.
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
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
            ("module.mjs", "application/javascript"),
            ("app.wasm", "application/wasm"),
            ("clip.mp4", "video/mp4"),
            ("clip.WEBM", "video/webm"),
            ("song.mp3", "audio/mpeg"),
            ("song.ogg", "audio/ogg"),
            ("voice.m4a", "audio/mp4"),
            ("sound.wav", "audio/wav"),
            ("track.flac", "audio/flac"),
            ("film.mov", "video/quicktime"),
            ("film.ogv", "video/ogg"),
            ("table.csv", "text/csv"),
            ("README.md", "text/markdown"),
            ("feed.xml", "text/xml"),
            ("font.woff2", "font/woff2"),
            ("font.woff", "font/woff"),
            ("font.ttf", "font/ttf"),
            ("font.otf", "font/otf"),
            ("pic.webp", "image/webp"),
            ("pic.avif", "image/avif"),
            ("pic.bmp", "image/bmp"),
            ("bundle.zip", "application/zip"),
            ("archive.tar", "application/x-tar"),
            ("archive.tar.gz", "application/gzip"),
        ] {
            assert_eq!(content_type(Path::new(name)), ty, "{name}");
        }
    }

    #[test]
    fn everything_else_is_plain_text() {
        for name in ["README", "notes.txt", "data.bin", ".hidden", "dir/no_ext", "x.html.bak", "x.mp4.part"] {
            assert_eq!(content_type(Path::new(name)), "text/plain", "{name}");
        }
    }
}
