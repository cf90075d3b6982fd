//! The cache check in front of the executor (buck2's shape): the scheduler keys a task, asks
//! this layer whether a result is recorded (and still inside its window), lets the kind's
//! probe confirm it in the world, and on a miss executes and hands the success back here.
//! Everything it stores goes through the two ports, a `dyn ActionCache` and a `dyn Cas`, so
//! a layered local→remote store plugs in without a scheduler change.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lifeos_cache::{ActionCache, ActionRecord, Cas, FileDigest};

use crate::event::Reason;
use crate::fingerprint::{Fingerprint, Key};
use crate::task::{CachePolicy, Executed, Node, TaskError, TaskSpec};

pub(crate) struct CacheLayer {
    pub actions: Arc<dyn ActionCache>,
    pub cas: Arc<dyn Cas>,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// What the layer knows before the probe: a record to confirm, or why the task must run.
pub(crate) enum Check<'a> {
    /// A record (or none) for the kind's probe to confirm in the world.
    Probe(Option<Cow<'a, ActionRecord>>),
    Run(Reason),
}

impl CacheLayer {
    /// The task's latest record, whatever its key (a kind may prefetch what it will probe).
    pub fn latest(&self, task: &str) -> Option<&ActionRecord> {
        self.actions.latest(task)
    }

    pub async fn check(&self, spec: &TaskSpec, key: &Key, forced: bool) -> Check<'_> {
        if forced {
            return Check::Run(Reason::Forced);
        }
        if spec.cache == CachePolicy::Never {
            return Check::Run(Reason::CacheDisabled);
        }
        let record = self.actions.lookup(&spec.id, key).await;
        if let (CachePolicy::Every(w), Some(r)) = (&spec.cache, &record) {
            if now_secs().saturating_sub(r.finished_at) >= w.as_secs() {
                return Check::Run(Reason::WindowExpired {
                    every: crate::duration::show(*w),
                });
            }
        }
        Check::Probe(record)
    }

    /// Why the key has no usable record: the diff against the last successful fingerprint.
    pub fn reason_from_history(&self, id: &str, fp: &Fingerprint) -> Reason {
        let Some(last) = self.actions.latest(id) else {
            return Reason::FirstRun;
        };
        let old = self
            .cas
            .get(&last.fingerprint)
            .ok()
            .and_then(|b| serde_json::from_slice::<Fingerprint>(&b).ok());
        match old {
            Some(old) => {
                let changes = fp.diff(&old);
                if changes.is_empty() {
                    Reason::KeyChanged
                } else {
                    Reason::Changed { changes }
                }
            }
            None => Reason::KeyChanged,
        }
    }

    /// A result the probe found in the world: record it when there is no record yet, or
    /// when the probe found it elsewhere than the record says (else every later check would
    /// search again). `fp` is made only for a new record.
    pub async fn adopt(
        &self,
        node: &Node,
        fp: impl FnOnce() -> Fingerprint,
        key: Key,
        record: Option<&ActionRecord>,
        data: Option<serde_json::Value>,
    ) -> Result<(), TaskError> {
        match (record, data) {
            (None, data) => {
                let executed = Executed {
                    outputs: vec![],
                    data: data.unwrap_or_default(),
                };
                self.record(node, &fp(), key, 0, None, executed).await
            }
            (Some(r), Some(data)) if r.data != data => self
                .actions
                .put(ActionRecord { data, ..r.clone() })
                .await
                .map_err(|e| TaskError::Failed(format!("cannot write the cache record: {e}"))),
            _ => Ok(()),
        }
    }

    /// Keep a task's (redacted) log.
    pub fn store_log(&self, log: &[u8]) -> Result<FileDigest, TaskError> {
        Ok(self.cas.put(log)?)
    }

    /// Record a success: its fingerprint in the CAS, the record under its key.
    pub async fn record(
        &self,
        node: &Node,
        fp: &Fingerprint,
        key: Key,
        duration_ms: u64,
        log: Option<FileDigest>,
        executed: Executed,
    ) -> Result<(), TaskError> {
        let fingerprint = self.cas.put(&fp.to_json())?;
        self.actions
            .put(ActionRecord {
                version: lifeos_cache::records::RECORD_VERSION,
                task: node.spec.id.clone(),
                kind: node.task.kind().to_string(),
                key,
                finished_at: now_secs(),
                duration_ms,
                fingerprint,
                log,
                outputs: executed.outputs,
                data: executed.data,
            })
            .await
            .map_err(|e| TaskError::Failed(format!("cannot write the cache record: {e}")))
    }

    /// Warnings of both ports, drained.
    pub fn take_warnings(&self) -> Vec<String> {
        let mut w = self.actions.take_warnings();
        w.extend(self.cas.take_warnings());
        w
    }
}
