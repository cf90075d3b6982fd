//! The action cache port: key → record of a successful task (buck2's `ActionCache`, the
//! bazel-remote `/ac/<key>` half). The scheduler only talks to a `dyn ActionCache`, so a
//! remote layer is one more implementation ([`crate::layered::LayeredActionCache`]), not a
//! scheduler change.
//!
//! Async because the scheduler asks it on its own thread for every task: a remote lookup
//! must wait without blocking the other tasks' checks. The local store answers at once (its
//! future is ready on the first poll, so a no-op still never leaves the scheduler's loop).

use std::borrow::Cow;
use std::io;

use async_trait::async_trait;

use crate::digest::ActionKey;
use crate::records::{ActionRecord, RecordStore};

#[async_trait]
pub trait ActionCache: Send + Sync {
    /// The record for `key`, or None (a miss; a corrupt entry is a miss plus a warning).
    /// `task` is the task's name: a hint for stores that index by task (the local index),
    /// never part of the identity, which is the key alone.
    async fn lookup(&self, task: &str, key: &ActionKey) -> Option<Cow<'_, ActionRecord>>;

    /// Store a success durably. Only successes are ever stored.
    async fn put(&self, record: ActionRecord) -> io::Result<()>;

    /// The task's latest successful record, whatever its key: what `plan` diffs a changed
    /// fingerprint against. Stores without a per-task index have none.
    fn latest(&self, _task: &str) -> Option<&ActionRecord> {
        None
    }

    /// End of run: make what was put visible to the next run (the local index).
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    /// Problems met so far that did not stop anything (corrupt records, a remote outage).
    fn take_warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

#[async_trait]
impl ActionCache for RecordStore {
    async fn lookup(&self, task: &str, key: &ActionKey) -> Option<Cow<'_, ActionRecord>> {
        RecordStore::lookup(self, task, key)
    }

    async fn put(&self, record: ActionRecord) -> io::Result<()> {
        RecordStore::put(self, record)
    }

    fn latest(&self, task: &str) -> Option<&ActionRecord> {
        RecordStore::latest(self, task)
    }

    fn flush(&self) -> io::Result<()> {
        let dir = crate::dir::CacheDir::new(self.root().to_path_buf());
        RecordStore::flush(self, || dir.lock())
    }

    fn take_warnings(&self) -> Vec<String> {
        RecordStore::take_warnings(self)
    }
}
