//! The cache directory (`.lifeos/` by default) and its maintenance commands.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::blobs::BlobStore;
use crate::records::{all_records, RecordStore};

#[derive(Debug, Clone)]
pub struct CacheDir {
    root: PathBuf,
}

/// Held while the index is merged or the cache is pruned; released on drop.
pub struct CacheLock(fs::File);

impl Drop for CacheLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CacheStats {
    pub records: usize,
    pub tasks_indexed: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub stat_cache_bytes: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct PruneReport {
    pub records_removed: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

impl CacheDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> BlobStore {
        BlobStore::new(self.root.join("blobs"))
    }

    pub fn records(&self) -> RecordStore {
        RecordStore::open(self.root.clone())
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join(crate::records::INDEX_FILE)
    }

    pub fn stat_cache_path(&self) -> PathBuf {
        self.root.join("stat-cache.json")
    }

    /// What lifeos last learned about the engine's images (lifeos-tasks `docker/view.rs`).
    pub fn engine_view_path(&self) -> PathBuf {
        self.root.join("engine.json")
    }

    pub fn lock(&self) -> io::Result<CacheLock> {
        fs::create_dir_all(&self.root)?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))?;
        f.lock()?;
        Ok(CacheLock(f))
    }

    /// The per-cache random key that secrets are hashed with; created on first use, mode 0600.
    pub fn secret_key(&self) -> io::Result<[u8; 32]> {
        let path = self.root.join("secret.key");
        let read = |p: &Path| -> io::Result<Option<[u8; 32]>> {
            match fs::read(p) {
                Ok(b) if b.len() == 32 => Ok(Some(b.try_into().unwrap())),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        if let Some(k) = read(&path)? {
            return Ok(k);
        }
        let _guard = self.lock()?;
        if let Some(k) = read(&path)? {
            return Ok(k);
        }
        let mut key = [0u8; 32];
        fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        let tmp = self.root.join("secret.key.tmp");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(key)
    }

    pub fn stats(&self) -> CacheStats {
        let blobs = self.blobs().list().unwrap_or_default();
        CacheStats {
            records: all_records(&self.root).len(),
            tasks_indexed: records_indexed(&self.root),
            blobs: blobs.len(),
            blob_bytes: blobs.iter().map(|b| b.2).sum(),
            stat_cache_bytes: fs::metadata(self.stat_cache_path())
                .map(|m| m.len())
                .unwrap_or(0),
        }
    }

    /// Remove records that finished more than `older_than` ago, then every blob no remaining
    /// record refers to. Runs under the cache lock.
    pub fn prune(&self, older_than: Duration) -> io::Result<PruneReport> {
        let _guard = self.lock()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let cutoff = now.saturating_sub(older_than.as_secs());
        let mut keep = HashSet::new();
        let mut records_removed = 0;
        for (path, rec) in all_records(&self.root) {
            match rec {
                Some(r) if r.finished_at >= cutoff => {
                    keep.insert(r.fingerprint);
                    keep.extend(r.log);
                    keep.extend(r.outputs.iter().map(|o| o.digest));
                }
                _ => {
                    fs::remove_file(&path)?;
                    records_removed += 1;
                }
            }
        }
        // The index must not point at removed records.
        let index = self.index_path();
        if let Ok(bytes) = fs::read(&index) {
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                if let Some(tasks) = v.get_mut("tasks").and_then(|t| t.as_object_mut()) {
                    tasks.retain(|_, r| {
                        r.get("finished_at")
                            .and_then(|f| f.as_u64())
                            .is_some_and(|f| f >= cutoff)
                    });
                }
                crate::atomic::write_json(&index, &v)?;
            }
        }
        let (mut blobs_removed, mut bytes_freed) = (0, 0);
        for (d, path, size) in self.blobs().list()? {
            if !keep.contains(&d) {
                fs::remove_file(path)?;
                blobs_removed += 1;
                bytes_freed += size;
            }
        }
        Ok(PruneReport {
            records_removed,
            blobs_removed,
            bytes_freed,
        })
    }

    /// Remove everything lifeos keeps, except the lock file other processes may hold.
    pub fn clean(&self) -> io::Result<()> {
        let _guard = self.lock()?;
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(());
        };
        for e in entries.flatten() {
            if e.file_name() == "lock" {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
        Ok(())
    }
}

fn records_indexed(root: &Path) -> usize {
    fs::read(root.join(crate::records::INDEX_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("tasks").and_then(|t| t.as_object()).map(|o| o.len()))
        .unwrap_or(0)
}
