//! File-system primitives for the cache: private modes whatever the umask, and no symlink
//! followed at a path lifeos owns (a cloned repository may ship links in `.lifeos/`).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory lifeos creates in its cache.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file lifeos creates in its cache.
pub const FILE_MODE: u32 = 0o600;
/// Prefix of temp files; a name starting with it is lifeos's own until it is renamed.
pub const TMP_PREFIX: &str = ".tmp";

/// Make `dir` a real directory (mode 0700 when created). A symlink or a file in its place is
/// never ours: the link itself is removed, never its target, and a directory made instead.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(dir)?;
            mkdir(dir)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => mkdir(dir),
        Err(e) => Err(e),
    }
}

/// Create `dir` and any missing parents, each 0700 whatever the umask.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    mkdir(dir)
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        // The umask may have taken bits away: set them explicitly.
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)),
        // Another process made it first.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && is_real_dir(dir) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A directory, not a symlink to one.
pub fn is_real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Open a file for reading without following a symlink at `path` and without blocking on a
/// FIFO; anything but a regular file is an error.
pub fn open_read(path: &Path) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(f)
}

/// Open what a symlink points at for reading, without blocking on a FIFO; anything but a
/// regular file is an error.
pub fn open_target(path: &Path) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not point at a regular file", path.display()),
        ));
    }
    Ok(f)
}

/// [`open_read`] and read it all (small cache files: index, records, keys).
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_read(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// A new temp file in `dir`, created with O_EXCL (so never through a planted link), mode 0600.
pub fn temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    let t = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempfile_in(dir)?;
    t.as_file()
        .set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_dir_replaces_a_symlink_not_its_target() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), "x").unwrap();
        let link = t.path().join("shard");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        ensure_dir(&link).unwrap();
        assert!(is_real_dir(&link));
        assert!(target.join("keep").exists());
        assert_eq!(
            fs::metadata(&link).unwrap().permissions().mode() & 0o777,
            DIR_MODE
        );
    }

    #[test]
    fn open_read_refuses_links_and_fifos() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink(t.path().join("f"), t.path().join("l")).unwrap();
        assert!(open_read(&t.path().join("f")).is_ok());
        assert!(open_read(&t.path().join("l")).is_err());
        let fifo = t.path().join("p");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(
            open_read(&fifo).is_err(),
            "a FIFO is refused, not waited on"
        );
    }
}
