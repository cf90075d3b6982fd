//! Content-addressed blob store: `blobs/<2 hex>/<64 hex>`. Writes are atomic and idempotent,
//! so concurrent runs storing the same content cannot corrupt each other.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::FileDigest;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
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
        self.path(d).is_file()
    }

    pub fn put(&self, bytes: &[u8]) -> io::Result<FileDigest> {
        let d = FileDigest::of(bytes);
        let p = self.path(&d);
        if !p.is_file() {
            crate::atomic::write(&p, bytes)?;
        }
        Ok(d)
    }

    /// Copy a file into the store while hashing it once.
    pub fn put_file(&self, src: &Path) -> io::Result<FileDigest> {
        let meta = fs::symlink_metadata(src)?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(src)?;
            return self.put(target.as_os_str().as_encoded_bytes());
        }
        let bytes = fs::read(src)?;
        self.put(&bytes)
    }

    /// Read a blob and check that it still has the content its name promises.
    pub fn get(&self, d: &FileDigest) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        fs::File::open(self.path(d))?.read_to_end(&mut bytes)?;
        if FileDigest::of(&bytes) != *d {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} is corrupt", d.short()),
            ));
        }
        Ok(bytes)
    }

    /// All blobs with their size and age, for stats and pruning.
    pub fn list(&self) -> io::Result<Vec<(FileDigest, PathBuf, u64)>> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for shard in rd.flatten() {
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
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
    }
}
