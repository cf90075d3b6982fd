//! A local store in front of a second one (a remote cache later): both ports, so the
//! scheduler cannot tell a layered store from a single one.
//!
//! Reads ask the first layer, then the second; what the second answers is written back to
//! the first, so the next run finds it locally. Writes go to both. The second layer failing
//! (an outage) is a warning, never a failed task: the first layer has everything.

use std::borrow::Cow;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::action_cache::ActionCache;
use crate::cas::Cas;
use crate::digest::{ActionKey, FileDigest};
use crate::records::ActionRecord;

#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);

impl Warnings {
    fn push(&self, what: &str, e: impl std::fmt::Display) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{what} in the second cache layer failed: {e}"));
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

pub struct LayeredActionCache {
    first: Arc<dyn ActionCache>,
    second: Arc<dyn ActionCache>,
    warnings: Warnings,
}

impl LayeredActionCache {
    pub fn new(first: Arc<dyn ActionCache>, second: Arc<dyn ActionCache>) -> Self {
        Self {
            first,
            second,
            warnings: Warnings::default(),
        }
    }
}

#[async_trait]
impl ActionCache for LayeredActionCache {
    async fn lookup(&self, task: &str, key: &ActionKey) -> Option<Cow<'_, ActionRecord>> {
        if let Some(r) = self.first.lookup(task, key).await {
            return Some(r);
        }
        let found = self.second.lookup(task, key).await?.into_owned();
        if let Err(e) = self.first.put(found.clone()).await {
            self.warnings.push("keeping a record found", e);
        }
        Some(Cow::Owned(found))
    }

    async fn put(&self, record: ActionRecord) -> io::Result<()> {
        self.first.put(record.clone()).await?;
        if let Err(e) = self.second.put(record).await {
            self.warnings.push("storing a record", e);
        }
        Ok(())
    }

    fn latest(&self, task: &str) -> Option<&ActionRecord> {
        self.first.latest(task).or_else(|| self.second.latest(task))
    }

    fn flush(&self) -> io::Result<()> {
        self.first.flush()?;
        if let Err(e) = self.second.flush() {
            self.warnings.push("flushing", e);
        }
        Ok(())
    }

    fn take_warnings(&self) -> Vec<String> {
        let mut w = self.first.take_warnings();
        w.extend(self.second.take_warnings());
        w.extend(self.warnings.take());
        w
    }
}

pub struct LayeredCas {
    first: Arc<dyn Cas>,
    second: Arc<dyn Cas>,
    warnings: Warnings,
}

impl LayeredCas {
    pub fn new(first: Arc<dyn Cas>, second: Arc<dyn Cas>) -> Self {
        Self {
            first,
            second,
            warnings: Warnings::default(),
        }
    }

    /// Copy blob `d` from the second layer into the first (which checks it on the way).
    fn fetch(&self, d: &FileDigest) -> io::Result<()> {
        let bytes = self.second.get(d)?;
        self.first.put(&bytes).map(drop)
    }
}

impl Cas for LayeredCas {
    fn contains(&self, d: &FileDigest) -> bool {
        self.first.contains(d) || self.second.contains(d)
    }

    fn get(&self, d: &FileDigest) -> io::Result<Vec<u8>> {
        match self.first.get(d) {
            Ok(b) => Ok(b),
            Err(first) => match self.second.get(d) {
                Ok(b) => {
                    if let Err(e) = self.first.put(&b) {
                        self.warnings.push("keeping a blob found", e);
                    }
                    Ok(b)
                }
                Err(_) => Err(first),
            },
        }
    }

    fn put(&self, bytes: &[u8]) -> io::Result<FileDigest> {
        let d = self.first.put(bytes)?;
        if let Err(e) = self.second.put(bytes) {
            self.warnings.push("storing a blob", e);
        }
        Ok(d)
    }

    fn put_file(&self, src: &Path) -> io::Result<FileDigest> {
        let d = self.first.put_file(src)?;
        if let Err(e) = self.second.put_file(src) {
            self.warnings.push("storing a file", e);
        }
        Ok(d)
    }

    /// From the first layer; a blob missing or corrupt there is fetched from the second
    /// (repairing the first) and restored from the first again.
    fn restore_to(&self, d: &FileDigest, dst: &Path, mode: u32) -> io::Result<()> {
        match self.first.restore_to(d, dst, mode) {
            Ok(()) => Ok(()),
            Err(first) => match self.fetch(d) {
                Ok(()) => self.first.restore_to(d, dst, mode),
                Err(_) => Err(first),
            },
        }
    }

    fn verify(&self, d: &FileDigest) -> io::Result<()> {
        self.first
            .verify(d)
            .or_else(|e| self.second.verify(d).map_err(|_| e))
    }

    fn take_warnings(&self) -> Vec<String> {
        let mut w = self.first.take_warnings();
        w.extend(self.second.take_warnings());
        w.extend(self.warnings.take());
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::BlobStore;
    use crate::records::{RecordStore, RECORD_VERSION};

    fn record(key: ActionKey, fingerprint: FileDigest) -> ActionRecord {
        ActionRecord {
            version: RECORD_VERSION,
            task: "t".into(),
            kind: "exec".into(),
            key,
            finished_at: 1,
            duration_ms: 7,
            fingerprint,
            log: None,
            outputs: vec![],
            data: serde_json::Value::Null,
        }
    }

    /// Two real local stores, the second standing in for a remote: a miss in the first is
    /// answered by the second and written back, so the first answers alone next time.
    #[test]
    fn the_second_layer_answers_a_miss_and_fills_the_first() {
        let t = tempfile::tempdir().unwrap();
        let first = Arc::new(RecordStore::open(t.path().join("local")));
        let second = Arc::new(RecordStore::open(t.path().join("remote")));
        let first_blobs = Arc::new(BlobStore::new(t.path().join("local/blobs")));
        let second_blobs = Arc::new(BlobStore::new(t.path().join("remote/blobs")));

        let fp = second_blobs.put(b"fingerprint").unwrap();
        let key = ActionKey([9; 32]);
        second.put(record(key, fp)).unwrap();

        let layered = LayeredActionCache::new(first.clone(), second.clone());
        let cas = LayeredCas::new(first_blobs.clone(), second_blobs.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();

        assert!(rt
            .block_on(ActionCache::lookup(first.as_ref(), "t", &key))
            .is_none());
        let found = rt
            .block_on(layered.lookup("t", &key))
            .expect("from the second");
        assert_eq!(found.duration_ms, 7);
        assert!(
            RecordStore::lookup(&first, "t", &key).is_some(),
            "written back to the first layer"
        );

        assert!(!first_blobs.contains(&fp));
        let dst = t.path().join("restored");
        cas.restore_to(&fp, &dst, 0o644).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"fingerprint");
        assert!(first_blobs.contains(&fp), "fetched into the first layer");

        // A blob neither layer has is an error, and nothing is written.
        let none = FileDigest::of(b"nowhere");
        assert!(cas.restore_to(&none, &t.path().join("x"), 0o644).is_err());
        assert!(!t.path().join("x").exists());
        assert!(layered.take_warnings().is_empty());
    }

    /// A second layer that cannot store is a warning; the first layer still has the record.
    #[test]
    fn a_failing_second_layer_is_a_warning_not_an_error() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("file"), b"x").unwrap();
        let first = Arc::new(RecordStore::open(t.path().join("local")));
        // A store whose directory is under a regular file: every write fails.
        let second = Arc::new(RecordStore::open(t.path().join("file/remote")));
        let layered = LayeredActionCache::new(first.clone(), second);
        let key = ActionKey([3; 32]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(layered.put(record(key, FileDigest::of(b"fp"))))
            .unwrap();
        assert!(RecordStore::lookup(&first, "t", &key).is_some());
        let w = layered.take_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("second cache layer"), "{w:?}");
    }
}
