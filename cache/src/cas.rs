//! The content-addressed store port: digest → bytes (buck2's CAS, the bazel-remote
//! `/cas/<digest>` half), for outputs, logs and fingerprints. Only [`FileDigest`]s name
//! content here; an action key is never a blob name.
//!
//! Blocking: its callers stream files and already run on the blocking pool (output checks
//! and restores, archiving); a remote implementation may block on the network likewise.

use std::io;
use std::path::Path;

use crate::blobs::BlobStore;
use crate::digest::FileDigest;

pub trait Cas: Send + Sync {
    fn contains(&self, d: &FileDigest) -> bool;

    /// The blob's bytes, checked against its name (`InvalidData` when corrupt).
    fn get(&self, d: &FileDigest) -> io::Result<Vec<u8>>;

    /// Store bytes; returns their digest.
    fn put(&self, bytes: &[u8]) -> io::Result<FileDigest>;

    /// Store a file, streaming (a symlink as its link text); returns its digest.
    fn put_file(&self, src: &Path) -> io::Result<FileDigest>;

    /// Write blob `d` to `dst` with `mode`, checked on the way; `dst` is untouched when the
    /// blob is missing or corrupt (`InvalidData`).
    fn restore_to(&self, d: &FileDigest, dst: &Path, mode: u32) -> io::Result<()>;

    /// Check a blob's content against its name without keeping it.
    fn verify(&self, d: &FileDigest) -> io::Result<()>;

    /// Problems met so far that did not stop anything (a remote outage).
    fn take_warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Cas for BlobStore {
    fn contains(&self, d: &FileDigest) -> bool {
        BlobStore::contains(self, d)
    }
    fn get(&self, d: &FileDigest) -> io::Result<Vec<u8>> {
        BlobStore::get(self, d)
    }
    fn put(&self, bytes: &[u8]) -> io::Result<FileDigest> {
        BlobStore::put(self, bytes)
    }
    fn put_file(&self, src: &Path) -> io::Result<FileDigest> {
        BlobStore::put_file(self, src)
    }
    fn restore_to(&self, d: &FileDigest, dst: &Path, mode: u32) -> io::Result<()> {
        BlobStore::restore_to(self, d, dst, mode)
    }
    fn verify(&self, d: &FileDigest) -> io::Result<()> {
        BlobStore::verify(self, d)
    }
}
