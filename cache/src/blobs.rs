//! Content-addressed blob store: `blobs/<2 hex>/<64 hex>`. Writes are atomic (temp file plus
//! rename), so concurrent runs storing the same content cannot corrupt each other, and a
//! write always replaces what is there: a corrupt blob is repaired by the next run that
//! stores its content. Files are streamed through a small buffer, never read whole.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::FileDigest;
use crate::safe_fs;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

fn corrupt(d: &FileDigest) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("cached blob {} is corrupt", d.short()),
    )
}

impl BlobStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn path(&self, d: &FileDigest) -> PathBuf {
        let hex = d.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    pub fn contains(&self, d: &FileDigest) -> bool {
        fs::symlink_metadata(self.path(d)).is_ok_and(|m| m.is_file())
    }

    /// `blobs/` (and the cache directory, when the store is used on its own).
    fn ensure_store(&self) -> io::Result<()> {
        if let Some(root) = self.dir.parent() {
            crate::marker::ensure_root(root)?;
        }
        safe_fs::ensure_dir(&self.dir)
    }

    /// The shard directory for `d`, a real directory of the store (a planted link is replaced).
    fn shard(&self, d: &FileDigest) -> io::Result<PathBuf> {
        self.ensure_store()?;
        let shard = self.dir.join(&d.to_hex()[..2]);
        safe_fs::ensure_dir(&shard)?;
        Ok(shard)
    }

    /// Store `bytes`. An existing blob is kept when it still holds them, else replaced.
    pub fn put(&self, bytes: &[u8]) -> io::Result<FileDigest> {
        let d = FileDigest::of(bytes);
        let p = self.path(&d);
        let intact = safe_fs::read(&p).is_ok_and(|b| FileDigest::of(&b) == d);
        if !intact {
            self.shard(&d)?;
            crate::atomic::write(&p, bytes)?;
        }
        Ok(d)
    }

    /// Copy a file into the store while hashing it once, streaming (holes stay holes). A
    /// symlink is stored as its link text.
    pub fn put_file(&self, src: &Path) -> io::Result<FileDigest> {
        let meta = fs::symlink_metadata(src)?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(src)?;
            return self.put(target.as_os_str().as_encoded_bytes());
        }
        let f = safe_fs::open_read(src)?;
        self.ensure_store()?;
        let tmp = safe_fs::temp_in(&self.dir)?;
        let (d, _) = crate::stream::copy_hash(&f, Some(tmp.as_file()))?;
        tmp.as_file().sync_data()?;
        let shard = self.shard(&d)?;
        // Always renamed over: whatever was there (possibly corrupt) is replaced.
        tmp.persist(shard.join(d.to_hex())).map_err(|e| e.error)?;
        Ok(d)
    }

    /// Read a blob and check that it still has the content its name promises.
    pub fn get(&self, d: &FileDigest) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        safe_fs::open_read(&self.path(d))?.read_to_end(&mut bytes)?;
        if FileDigest::of(&bytes) != *d {
            return Err(corrupt(d));
        }
        Ok(bytes)
    }

    /// Write blob `d` to `dst` with `mode`: streamed through a temp file beside `dst` and
    /// checked against its name while copied, then renamed into place. A corrupt blob is an
    /// `InvalidData` error and `dst` is left as it was.
    pub fn restore_to(&self, d: &FileDigest, dst: &Path, mode: u32) -> io::Result<()> {
        let src = safe_fs::open_read(&self.path(d))?;
        let dir = dst.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".lifeos-restore")
            .tempfile_in(dir)?;
        let (got, _) = crate::stream::copy_hash(&src, Some(tmp.as_file()))?;
        if got != *d {
            return Err(corrupt(d));
        }
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))?;
        tmp.as_file().sync_data()?;
        tmp.persist(dst).map_err(|e| e.error)?;
        Ok(())
    }

    /// Check a blob's content against its name without keeping it (streamed).
    pub fn verify(&self, d: &FileDigest) -> io::Result<()> {
        let f = safe_fs::open_read(&self.path(d))?;
        match crate::stream::copy_hash(&f, None)? {
            (got, _) if got == *d => Ok(()),
            _ => Err(corrupt(d)),
        }
    }

    /// All blobs with their size, for stats and pruning. Symlinks are never followed: a
    /// linked shard or blob is not part of the store.
    pub fn list(&self) -> io::Result<Vec<(FileDigest, PathBuf, u64)>> {
        let mut out = Vec::new();
        if !safe_fs::is_real_dir(&self.dir) {
            return Ok(out);
        }
        for shard in fs::read_dir(&self.dir)?.flatten() {
            if !shard.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
                if !f.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                let name = f.file_name();
                if let Ok(d) = name.to_string_lossy().parse::<FileDigest>() {
                    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((d, f.path(), size));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_detect_corruption() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::new(t.path().join("blobs"));
        let d = s.put(b"abc").unwrap();
        assert_eq!(s.get(&d).unwrap(), b"abc");
        fs::write(s.path(&d), b"abd").unwrap();
        assert!(s.get(&d).is_err());
        assert_eq!(s.list().unwrap().len(), 1);
        // Storing the content again repairs the blob.
        s.put(b"abc").unwrap();
        assert_eq!(s.get(&d).unwrap(), b"abc");
    }

    #[test]
    fn put_file_replaces_a_corrupt_blob_and_restore_checks_it() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::new(t.path().join("blobs"));
        let src = t.path().join("out.bin");
        fs::write(&src, b"output").unwrap();
        let d = s.put_file(&src).unwrap();
        fs::write(s.path(&d), b"garbag").unwrap();
        let dst = t.path().join("restored");
        let e = s.restore_to(&d, &dst, 0o644).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains(&d.short()), "{e}");
        assert!(!dst.exists(), "nothing half-restored");
        assert!(s.verify(&d).is_err());
        assert_eq!(s.put_file(&src).unwrap(), d);
        s.verify(&d).unwrap();
        s.restore_to(&d, &dst, 0o644).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"output");
    }

    #[test]
    fn a_symlinked_shard_is_replaced_not_written_through() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::new(t.path().join("blobs"));
        let elsewhere = t.path().join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::create_dir_all(t.path().join("blobs")).unwrap();
        let d = FileDigest::of(b"abc");
        std::os::unix::fs::symlink(&elsewhere, t.path().join("blobs").join(&d.to_hex()[..2]))
            .unwrap();
        assert!(s.list().unwrap().is_empty());
        s.put(b"abc").unwrap();
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert_eq!(s.get(&d).unwrap(), b"abc");
    }
}
