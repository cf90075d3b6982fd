//! Atomic file writes: temp file in the same directory, fsync, rename.
//! A reader sees the old file or the new one, never half of one. The temp file is created
//! with O_EXCL and the rename replaces a symlink at `path` rather than following it, so a link
//! planted in the cache never redirects a write. Files are 0600, new directories 0700.

use std::io::{self, Write};
use std::path::Path;

pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A bare file name's parent is "", which is the current directory.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    crate::safe_fs::create_dir_all(dir)?;
    let mut tmp = crate::safe_fs::temp_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    write(path, &bytes)
}
