//! Action records: what a successful task produced, stored under its key.
//!
//! `ac/<2 hex>/<key>.json` holds one record per key (written the moment a task succeeds, so an
//! interrupted run keeps what it finished). `index.json` maps each task to its latest record,
//! so a no-op run loads one file, not one per task. Only successes are ever recorded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::{ActionKey, FileDigest};

pub const RECORD_VERSION: u32 = 1;
/// The index's file name in the cache directory.
pub const INDEX_FILE: &str = "index.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputFile {
    pub path: String,
    pub digest: FileDigest,
    pub mode: u32,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub symlink: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionRecord {
    pub version: u32,
    pub task: String,
    pub kind: String,
    pub key: ActionKey,
    /// Unix seconds when the task finished.
    pub finished_at: u64,
    pub duration_ms: u64,
    /// Blob holding the fingerprint JSON, for `lifeos explain`.
    pub fingerprint: FileDigest,
    /// Blob holding the (redacted) log.
    pub log: Option<FileDigest>,
    #[serde(default)]
    pub outputs: Vec<OutputFile>,
    /// Kind-specific facts about the result (an image ID, a container ID, ...).
    #[serde(default)]
    pub data: serde_json::Value,
}

#[derive(Serialize, Deserialize, Default)]
struct IndexFile {
    version: u32,
    tasks: BTreeMap<String, ActionRecord>,
}

/// Is `bytes` an index that lifeos wrote (any version)? The evidence an untagged directory of
/// an older lifeos must show before it is adopted (see `dir`): a user's own `index.json` is
/// not this shape.
pub fn is_lifeos_index(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        #[allow(dead_code)]
        version: u32,
        #[allow(dead_code)]
        tasks: BTreeMap<String, serde_json::Value>,
    }
    serde_json::from_slice::<Shape>(bytes).is_ok()
}

pub struct RecordStore {
    root: PathBuf,
    index: BTreeMap<String, ActionRecord>,
    pending: Mutex<Vec<ActionRecord>>,
    warnings: Mutex<Vec<String>>,
}

impl RecordStore {
    /// Load the index. A corrupt index is a warning and an empty index, never an error.
    pub fn open(root: PathBuf) -> Self {
        let mut warnings = Vec::new();
        let path = root.join(INDEX_FILE);
        let index = match crate::safe_fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<IndexFile>(&bytes) {
                Ok(f) if f.version == RECORD_VERSION => f.tasks,
                Ok(_) => BTreeMap::new(),
                Err(e) => {
                    warnings.push(format!(
                        "ignoring corrupt cache index {}: {e}",
                        path.display()
                    ));
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        Self {
            root,
            index,
            pending: Mutex::new(Vec::new()),
            warnings: Mutex::new(warnings),
        }
    }

    /// The cache directory this store reads and writes.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    fn ac_path(&self, key: &ActionKey) -> PathBuf {
        let hex = key.to_hex();
        self.root
            .join("ac")
            .join(&hex[..2])
            .join(format!("{hex}.json"))
    }

    /// Warnings collected so far (corrupt records), drained.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.warnings.lock().unwrap())
    }

    /// The task's latest successful record, whatever its key.
    pub fn latest(&self, task: &str) -> Option<&ActionRecord> {
        self.index.get(task)
    }

    /// The record for `key`: from the index when it is the task's latest, else from `ac/`.
    /// A corrupt record is a miss plus a warning.
    pub fn lookup(&self, task: &str, key: &ActionKey) -> Option<Cow<'_, ActionRecord>> {
        if let Some(r) = self.index.get(task).filter(|r| r.key == *key) {
            return Some(Cow::Borrowed(r));
        }
        let path = self.ac_path(key);
        let bytes = crate::safe_fs::read(&path).ok()?;
        match serde_json::from_slice::<ActionRecord>(&bytes) {
            Ok(r) if r.version == RECORD_VERSION && r.key == *key => Some(Cow::Owned(r)),
            Ok(_) => None,
            Err(e) => {
                self.warnings.lock().unwrap().push(format!(
                    "ignoring corrupt cache record {}: {e}",
                    path.display()
                ));
                None
            }
        }
    }

    /// Record a success durably now; the index is updated by [`RecordStore::flush`].
    pub fn put(&self, record: ActionRecord) -> io::Result<()> {
        let path = self.ac_path(&record.key);
        // `ac/` and the shard are real directories: a planted link is replaced, not followed.
        let shard = path.parent().expect("ac/<shard>/<key>.json");
        crate::marker::ensure_root(&self.root)?;
        crate::safe_fs::ensure_dir(shard.parent().expect("ac/"))?;
        crate::safe_fs::ensure_dir(shard)?;
        crate::atomic::write_json(&path, &record)?;
        self.pending.lock().unwrap().push(record);
        Ok(())
    }

    /// Merge this run's records into the index under the cache lock (`lock` takes it, e.g.
    /// `|| cache_dir.lock()`; held until the index is written), so concurrent runs each add
    /// theirs instead of overwriting each other's.
    pub fn flush<G>(&self, lock: impl FnOnce() -> io::Result<G>) -> io::Result<()> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        if pending.is_empty() {
            return Ok(());
        }
        let _guard = lock()?;
        let path = self.root.join(INDEX_FILE);
        let mut index = crate::safe_fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<IndexFile>(&b).ok())
            .filter(|f| f.version == RECORD_VERSION)
            .map(|f| f.tasks)
            .unwrap_or_default();
        for r in pending {
            match index.get(&r.task) {
                Some(old) if old.finished_at > r.finished_at => {}
                _ => {
                    index.insert(r.task.clone(), r);
                }
            }
        }
        crate::atomic::write_json(
            &path,
            &IndexFile {
                version: RECORD_VERSION,
                tasks: index,
            },
        )
    }
}

/// Every record under `ac/`, for stats and pruning. Unreadable ones are returned as paths.
/// Symlinks are not followed (a linked `ac/` or shard is not part of the cache), and only
/// names lifeos makes are returned, so pruning never removes a foreign file.
pub(crate) fn all_records(root: &std::path::Path) -> Vec<(PathBuf, Option<ActionRecord>)> {
    let mut out = Vec::new();
    let ac = root.join("ac");
    if !crate::safe_fs::is_real_dir(&ac) {
        return out;
    }
    let Ok(shards) = fs::read_dir(ac) else {
        return out;
    };
    for shard in shards.flatten() {
        if !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = fs::read_dir(shard.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            if !f.file_type().is_ok_and(|t| t.is_file())
                || crate::marker::is_tmp(&name)
                || !crate::marker::is_own_in_shard("ac", &name)
            {
                continue;
            }
            let rec = crate::safe_fs::read(&f.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<ActionRecord>(&b).ok());
            out.push((f.path(), rec));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(task: &str, n: u8, at: u64) -> ActionRecord {
        ActionRecord {
            version: RECORD_VERSION,
            task: task.into(),
            kind: "exec".into(),
            key: ActionKey([n; 32]),
            finished_at: at,
            duration_ms: 5,
            fingerprint: FileDigest::of(b"fp"),
            log: None,
            outputs: vec![],
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn put_flush_lookup_and_corruption() {
        let t = tempfile::tempdir().unwrap();
        let dir = crate::dir::CacheDir::new(t.path().to_path_buf());
        let s = RecordStore::open(t.path().into());
        s.put(rec("a", 1, 10)).unwrap();
        s.put(rec("b", 2, 10)).unwrap();
        s.flush(|| dir.lock()).unwrap();

        // A second store (another process) adds its own record without losing ours.
        let s2 = RecordStore::open(t.path().into());
        s2.put(rec("a", 3, 20)).unwrap();
        s2.flush(|| dir.lock()).unwrap();

        let s3 = RecordStore::open(t.path().into());
        assert_eq!(s3.latest("a").unwrap().key, ActionKey([3; 32]));
        assert_eq!(s3.latest("b").unwrap().key, ActionKey([2; 32]));
        assert!(
            s3.lookup("a", &ActionKey([1; 32])).is_some(),
            "older key from ac/"
        );

        fs::write(s3.ac_path(&ActionKey([1; 32])), b"{ not json").unwrap();
        assert!(s3.lookup("a", &ActionKey([1; 32])).is_none());
        assert_eq!(s3.take_warnings().len(), 1);

        fs::write(t.path().join("index.json"), b"garbage").unwrap();
        let s4 = RecordStore::open(t.path().into());
        assert!(s4.latest("a").is_none());
        assert_eq!(s4.take_warnings().len(), 1);
    }
}
