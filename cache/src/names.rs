//! File names as lifeos keeps them: '/'-separated strings relative to the project root.
//!
//! A name that is not UTF-8 keeps its exact bytes: each byte that is not part of valid UTF-8
//! is stored as NUL plus two hex digits. No real name contains NUL, so the form is unambiguous
//! and maps back to the same bytes (`to_path`). `display` escapes control characters, so a
//! name with a newline or an escape sequence cannot forge log lines.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The stored form of a relative path.
pub fn encode(p: &Path) -> String {
    let bytes = p.as_os_str().as_bytes();
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\0{b:02x}");
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The exact bytes a stored name stands for.
pub fn decode(rel: &str) -> Cow<'_, OsStr> {
    if !rel.contains('\0') {
        return Cow::Borrowed(OsStr::new(rel));
    }
    let b = rel.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == 0 && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(OsStr::from_bytes(&out).to_owned())
}

/// `root` joined with a stored name.
pub fn to_path(root: &Path, rel: &str) -> PathBuf {
    root.join(decode(rel))
}

/// A stored name for people: control characters and non-UTF-8 bytes escaped (`\n`, `\x1b`,
/// `\xff`), everything else as is.
pub fn display(rel: &str) -> Cow<'_, str> {
    if !rel.chars().any(char::is_control) {
        return Cow::Borrowed(rel);
    }
    let mut out = String::with_capacity(rel.len() + 8);
    let mut chars = rel.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\0' => {
                let (h, l) = (chars.next(), chars.next());
                let _ = write!(out, "\\x{}{}", h.unwrap_or('0'), l.unwrap_or('0'));
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Is the stored name `path` the directory `dir` itself or below it? `dir` "" is the root,
/// above everything. Whole segments only: `webx` is not under `web`.
pub fn is_at_or_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

/// Is `path` strictly below `dir`?
pub fn is_under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && is_at_or_under(path, dir)
}

/// A '/'-separated relative path as users and Docker write it (`./a/`, `/a`), as a stored
/// name (`a`); "" for the root.
pub fn normalize_rel(rel: &str) -> &str {
    let mut rel = rel;
    while let Some(r) = rel.strip_prefix("./") {
        rel = r;
    }
    rel.trim_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_names_round_trip_and_display_escaped() {
        let raw = OsStr::from_bytes(b"dir/caf\xe9-\xff.txt");
        let rel = encode(Path::new(raw));
        assert_eq!(rel, "dir/caf\0e9-\0ff.txt");
        assert_eq!(decode(&rel), raw);
        assert_eq!(display(&rel), "dir/caf\\xe9-\\xff.txt");
        assert_eq!(encode(Path::new("plain/ü.txt")), "plain/ü.txt");
        assert_eq!(decode("plain/ü.txt"), OsStr::new("plain/ü.txt"));
    }

    #[test]
    fn control_characters_are_escaped_for_display() {
        assert_eq!(display("a\nb\x1b[31m\tc"), "a\\nb\\u{1b}[31m\\tc");
        assert_eq!(display("ok.txt"), "ok.txt");
    }

    #[test]
    fn under_is_by_whole_segments() {
        assert!(is_at_or_under("web", "web"));
        assert!(is_at_or_under("web/a", "web"));
        assert!(is_at_or_under("anything", ""));
        assert!(!is_at_or_under("webx/a", "web"));
        assert!(!is_at_or_under("we", "web"));
        assert!(is_under("web/a", "web"));
        assert!(!is_under("web", "web"));
        assert!(is_under("a", ""));
        assert!(!is_under("", ""));
        assert_eq!(normalize_rel("././a/b/"), "a/b");
        assert_eq!(normalize_rel("/a"), "a");
        assert_eq!(normalize_rel("./"), "");
    }
}
