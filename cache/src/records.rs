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
use crate::index_bin::{JsonStamp, TaskMap};

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

/// The index as a run reads it: a hash map (looked up twice per task), not the sorted form
/// the file is written in.
#[derive(Deserialize)]
struct IndexRead {
    version: u32,
    tasks: TaskMap,
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
    index: TaskMap,
    /// The stamp of the `index.json` this store parsed because its binary copy was missing
    /// or stale: the end of the run writes the copy (`flush`).
    unbinned: Option<JsonStamp>,
    pending: Mutex<Vec<ActionRecord>>,
    warnings: Mutex<Vec<String>>,
}

impl RecordStore {
    /// Load the index: its binary copy when that was made from this very `index.json`, else
    /// the JSON. A corrupt index is a warning and an empty index, never an error.
    pub fn open(root: PathBuf) -> Self {
        let mut warnings = Vec::new();
        let path = root.join(INDEX_FILE);
        let (index, unbinned) = Self::load(&root, &path, &mut warnings).unwrap_or_default();
        Self {
            root,
            index,
            unbinned,
            pending: Mutex::new(Vec::new()),
            warnings: Mutex::new(warnings),
        }
    }

    /// None: no index (or an unreadable one).
    fn load(
        root: &std::path::Path,
        path: &std::path::Path,
        warnings: &mut Vec<String>,
    ) -> Option<(TaskMap, Option<JsonStamp>)> {
        use std::io::Read;
        // One open file: the stamp and the contents are of the same inode.
        let mut f = crate::safe_fs::open_read(path).ok()?;
        let stamp = JsonStamp::of_file(&f).ok()?;
        if let Ok(bin) = crate::safe_fs::read(&root.join(crate::index_bin::INDEX_BIN_FILE)) {
            if let Some(index) = crate::index_bin::decode(&bin, stamp) {
                return Some((index, None));
            }
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).ok()?;
        match serde_json::from_slice::<IndexRead>(&bytes) {
            Ok(f) if f.version == RECORD_VERSION => Some((f.tasks, Some(stamp))),
            Ok(_) => None,
            Err(e) => {
                warnings.push(format!(
                    "ignoring corrupt cache index {}: {e}",
                    path.display()
                ));
                None
            }
        }
    }

    /// Write the binary copy of the index just written (its stamp read back under the
    /// lock). Only an accelerator: a failure leaves the next run parsing the JSON.
    fn write_bin<'a>(&self, records: impl ExactSizeIterator<Item = &'a ActionRecord>) {
        let json = self.root.join(INDEX_FILE);
        let Ok(stamp) = crate::safe_fs::open_read(&json).and_then(|f| JsonStamp::of_file(&f))
        else {
            return;
        };
        let bin = self.root.join(crate::index_bin::INDEX_BIN_FILE);
        let _ = crate::atomic::write(&bin, &crate::index_bin::encode(stamp, records));
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
    /// A run that recorded nothing writes only the index's binary copy, when the one it
    /// found was missing or stale and `index.json` is still what it parsed.
    pub fn flush<G>(&self, lock: impl FnOnce() -> io::Result<G>) -> io::Result<()> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        if pending.is_empty() {
            if let Some(stamp) = self.unbinned {
                let _guard = lock()?;
                let now = crate::safe_fs::open_read(&self.root.join(INDEX_FILE))
                    .and_then(|f| JsonStamp::of_file(&f));
                if now.ok() == Some(stamp) {
                    self.write_bin(self.index.values());
                }
            }
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
        let file = IndexFile {
            version: RECORD_VERSION,
            tasks: index,
        };
        crate::atomic::write_json(&path, &file)?;
        self.write_bin(file.tasks.values());
        Ok(())
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

    /// The binary copy is used only for the `index.json` it was made from; a run that
    /// recorded nothing writes a missing one; either way the records are the JSON's.
    #[test]
    fn binary_copy_follows_the_json_index() {
        let t = tempfile::tempdir().unwrap();
        let dir = crate::dir::CacheDir::new(t.path().to_path_buf());
        let bin = t.path().join(crate::index_bin::INDEX_BIN_FILE);
        let s = RecordStore::open(t.path().into());
        s.put(rec("a", 1, 10)).unwrap();
        s.put(rec("b", 2, 10)).unwrap();
        s.flush(|| dir.lock()).unwrap();
        assert!(bin.exists());

        let from_bin = RecordStore::open(t.path().into());
        assert!(from_bin.unbinned.is_none(), "read from the binary copy");
        fs::remove_file(&bin).unwrap();
        let from_json = RecordStore::open(t.path().into());
        assert!(from_json.unbinned.is_some(), "parsed the JSON");
        assert_eq!(from_bin.index, from_json.index);

        // A run with nothing to record writes the missing copy.
        from_json.flush(|| dir.lock()).unwrap();
        assert!(RecordStore::open(t.path().into()).unbinned.is_none());

        // Another writer's index (a new stamp) wins over the old copy.
        let old_bin = fs::read(&bin).unwrap();
        let s2 = RecordStore::open(t.path().into());
        s2.put(rec("a", 3, 20)).unwrap();
        s2.flush(|| dir.lock()).unwrap();
        fs::write(&bin, old_bin).unwrap();
        let s3 = RecordStore::open(t.path().into());
        assert!(s3.unbinned.is_some());
        assert_eq!(s3.latest("a").unwrap().key, ActionKey([3; 32]));
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
