//! What makes a directory lifeos's cache: a `CACHEDIR.TAG` (the standard cache-directory tag,
//! <https://bford.info/cachedir/>, so backup tools skip it too) whose comment names lifeos,
//! and the names lifeos creates in it. `clean` and `prune` delete only those names, and only
//! in a tagged directory.

use std::ffi::OsStr;
use std::path::Path;

pub const TAG_FILE: &str = "CACHEDIR.TAG";
const SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";
const LIFEOS_LINE: &str = "# This file is a cache directory tag created by lifeos.";
pub const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by lifeos.\n\
# For information about cache directory tags, see https://bford.info/cachedir/\n";

/// Lock files: kept by `clean`, since another process may hold them.
pub const LOCK_FILES: [&str; 2] = ["lock", "run.lock"];

/// Files lifeos writes at the top of its cache directory (besides the tag and the locks).
pub const OWN_FILES: [&str; 9] = [
    "index.json",
    "index.bin",
    "stat-cache.bin",
    // The JSON form of earlier versions; never written now.
    "stat-cache.json",
    "config.compiled.json",
    "engine.json",
    "remote-stats.json",
    "secret.key",
    // The fixed-name temp file of earlier versions; never written now.
    "secret.key.tmp",
];

/// Directories lifeos keeps at the top of its cache directory: `<2 hex>/<64 hex>[.json]`.
pub const OWN_DIRS: [&str; 2] = ["ac", "blobs"];

/// Does `root` carry lifeos's tag? (Read without following a link.)
pub fn has_tag(root: &Path) -> bool {
    crate::safe_fs::read(&root.join(TAG_FILE)).is_ok_and(|b| {
        let s = String::from_utf8_lossy(&b);
        s.starts_with(SIGNATURE) && s.lines().any(|l| l.trim() == LIFEOS_LINE)
    })
}

pub fn write_tag(root: &Path) -> std::io::Result<()> {
    crate::atomic::write(&root.join(TAG_FILE), TAG.as_bytes())
}

/// Create the cache directory (0700, tagged) if there is none. A run prepares it first
/// (`CacheDir::prepare`); this keeps a store used on its own from making an untagged one.
pub fn ensure_root(root: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(root).is_ok() {
        return Ok(());
    }
    crate::safe_fs::create_dir_all(root)?;
    write_tag(root)
}

pub fn is_tmp(name: &OsStr) -> bool {
    name.as_encoded_bytes()
        .starts_with(crate::safe_fs::TMP_PREFIX.as_bytes())
}

/// A name at the top of the cache directory that lifeos makes.
pub fn is_own_top(name: &OsStr) -> bool {
    let Some(s) = name.to_str() else {
        return false;
    };
    s == TAG_FILE
        || LOCK_FILES.contains(&s)
        || OWN_FILES.contains(&s)
        || OWN_DIRS.contains(&s)
        || s == DOWNLOADS_DIR
        || is_tmp(name)
}

/// Where URL inputs are kept (cached-path's flat layout).
pub const DOWNLOADS_DIR: &str = "downloads";

/// A file cached-path makes in `downloads/`: `<sha256 of the URL>[.<sha256 of the ETag>]`,
/// possibly with `.meta` or `.lock`.
pub fn is_own_download(name: &OsStr) -> bool {
    let Some(s) = name.to_str() else {
        return false;
    };
    let s = s
        .strip_suffix(".meta")
        .or_else(|| s.strip_suffix(".lock"))
        .unwrap_or(s);
    let hex64 = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    match s.split_once('.') {
        Some((a, b)) => hex64(a) && hex64(b),
        None => hex64(s),
    }
}

/// A shard directory name: two lowercase hex digits.
pub fn is_shard(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.len() == 2
        && b.iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// A file lifeos makes in a shard of `ac/` (`<64 hex>.json`) or `blobs/` (`<64 hex>`).
pub fn is_own_in_shard(top: &str, name: &OsStr) -> bool {
    if is_tmp(name) {
        return true;
    }
    let Some(s) = name.to_str() else {
        return false;
    };
    let hex = if top == "ac" {
        s.strip_suffix(".json")
    } else {
        Some(s)
    };
    hex.is_some_and(|h| h.len() == 64 && h.parse::<crate::FileDigest>().is_ok())
}
