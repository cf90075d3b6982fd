//! The `Task` trait: one implementation per kind. The engine owns keys, records and retries;
//! a kind only says what its key covers, whether its result still exists, and how to make it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lifeos_cache::{ActionRecord, Cas, FileDigest, InputSet, OutputFile, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::deps::Deps;
use crate::event::{Event, Stream};
use crate::fingerprint::Key;
use crate::redact::Redactor;

/// A declared environment variable: `NAME` takes the host's value, `NAME=value` sets one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
}

impl EnvVar {
    pub fn parse(s: &str) -> Self {
        match s.split_once('=') {
            Some((n, v)) => Self {
                name: n.to_string(),
                value: Some(v.to_string()),
            },
            None => Self {
                name: s.to_string(),
                value: None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CachePolicy {
    #[default]
    Always,
    Never,
    /// A result is reused for this long, then made again (backups, nightly jobs).
    Every(Duration),
}

impl CachePolicy {
    fn is_always(&self) -> bool {
        *self == CachePolicy::Always
    }
}

/// Which executor slots a task takes. Docker work mostly waits on the engine, so it has
/// slots of its own: a build in progress does not keep a local command from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    #[default]
    Local,
    Docker,
}

impl Class {
    fn is_local(&self) -> bool {
        *self == Class::Local
    }
}

/// What every task has, whatever its kind. Defaults are left out of its serde form (the
/// compiled config), which keeps that small.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "CachePolicy::is_always")]
    pub cache: CachePolicy,
    /// The kind's (not in lifeos.toml).
    #[serde(default, skip_serializing_if = "Class::is_local")]
    pub class: Class,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TaskSpec {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            deps: vec![],
            env: vec![],
            secrets: vec![],
            timeout: None,
            retries: 0,
            cache: CachePolicy::Always,
            class: Class::Local,
        }
    }
}

/// A node of the graph: common spec plus the kind's behaviour.
#[derive(Clone)]
pub struct Node {
    pub spec: TaskSpec,
    pub task: Arc<dyn Task>,
}

/// A failure while keying, probing or executing a task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task itself failed (non-zero exit, failed build step).
    #[error("{0}")]
    Failed(String),
    /// The world is not as lifeos needs it (Docker unreachable, registry refused auth).
    #[error("{0}")]
    Environment(String),
    #[error("interrupted")]
    Interrupted,
}

impl From<std::io::Error> for TaskError {
    fn from(e: std::io::Error) -> Self {
        TaskError::Failed(e.to_string())
    }
}

/// What a kind adds to the fingerprint.
#[derive(Debug, Default, Clone)]
pub struct TaskInputs {
    pub files: BTreeMap<String, String>,
    pub extras: BTreeMap<String, String>,
}

/// Given to [`Task::inputs`].
pub struct KeyCx<'a> {
    pub root: PathBuf,
    pub snapshot: Arc<Snapshot>,
    /// The task's latest successful record, whatever its key: a kind may start fetching
    /// what its probe will check while the key is still being computed.
    pub previous: Option<&'a ActionRecord>,
    /// The dependencies' results (their keys are in the fingerprint already).
    pub deps: &'a Deps,
}

impl KeyCx<'_> {
    /// Hash the files an input set selects (stat cache first), off the async threads.
    pub async fn hash_inputs(&self, set: &InputSet) -> Result<BTreeMap<String, String>, TaskError> {
        if set.is_empty() {
            return Ok(BTreeMap::new());
        }
        let snap = self.snapshot.clone();
        let set = set.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<BTreeMap<String, String>> {
            let files = snap.select(&set)?;
            let digests = snap.digests(&files)?;
            Ok(files
                .into_iter()
                .zip(digests)
                .map(|(f, d)| {
                    let v = if f.executable() && !f.symlink {
                        format!("{d}+x")
                    } else {
                        d.to_hex()
                    };
                    (f.rel, v)
                })
                .collect())
        })
        .await
        .map_err(|e| TaskError::Failed(format!("hashing inputs panicked: {e}")))?
        .map_err(TaskError::from)
    }
}

/// Given to [`Task::probe`].
pub struct ProbeCx<'a> {
    pub root: &'a Path,
    pub snapshot: &'a Arc<Snapshot>,
    pub key: Key,
    /// The local record for this key, if any. Some kinds need it (exec outputs); others find
    /// their proof in the world alone (a labelled image).
    pub record: Option<&'a ActionRecord>,
    /// The run's content store (a `dyn Cas`: local, or layered in front of a remote).
    pub blobs: &'a Arc<dyn Cas>,
    /// `plan`: look, never change anything.
    pub dry_run: bool,
    pub deps: &'a Deps,
}

/// Is the result for this key still there?
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Yes; where it was found (or "outputs restored").
    Fresh(String),
    /// Yes, but not where the record says (or with no record): where, and what the record
    /// should say from now on (an image ID), so the next check goes straight to it.
    FreshAt {
        location: String,
        data: serde_json::Value,
    },
    /// No, and why (for example "image missing").
    Missing(String),
}

impl Probe {
    /// Found: where, and what the record should say from now on (None: as it is). Not
    /// found: why.
    pub fn found(self) -> Result<(String, Option<serde_json::Value>), String> {
        match self {
            Probe::Fresh(location) => Ok((location, None)),
            Probe::FreshAt { location, data } => Ok((location, Some(data))),
            Probe::Missing(detail) => Err(detail),
        }
    }
}

/// Given to [`Task::execute`].
pub struct ExecCx<'a> {
    pub root: &'a Path,
    pub snapshot: &'a Arc<Snapshot>,
    pub key: Key,
    /// Declared env (with values) and secrets, to pass to the process or container.
    pub env: Vec<(String, String)>,
    /// The run's content store (a `dyn Cas`: local, or layered in front of a remote).
    pub blobs: &'a Arc<dyn Cas>,
    pub log: LogSink,
    /// Cancelled on Ctrl-C or timeout: stop, clean up what was started, return.
    pub cancel: CancellationToken,
    pub run_id: &'a str,
    /// The dependencies' results, for `${tasks.NAME.FIELD}` ([`Deps::expand`]).
    pub deps: &'a Deps,
}

/// What a successful execution leaves for the record.
#[derive(Debug, Default, Clone)]
pub struct Executed {
    pub outputs: Vec<OutputFile>,
    pub data: serde_json::Value,
}

/// Where a task writes its log: redacted, kept for the record, and sent as events.
#[derive(Clone)]
pub struct LogSink {
    task: Arc<str>,
    events: UnboundedSender<Event>,
    redactor: Arc<Redactor>,
    buf: Arc<Mutex<Vec<u8>>>,
}

impl LogSink {
    pub fn new(task: &str, events: UnboundedSender<Event>, redactor: Arc<Redactor>) -> Self {
        Self {
            task: task.into(),
            events,
            redactor,
            buf: Default::default(),
        }
    }

    pub fn line(&self, stream: Stream, line: &str) {
        let line = self.redactor.redact(line.trim_end_matches(['\n', '\r']));
        {
            let mut b = self.buf.lock().unwrap();
            b.extend_from_slice(line.as_bytes());
            b.push(b'\n');
        }
        let _ = self.events.send(Event::TaskLog {
            task: self.task.to_string(),
            stream,
            line,
        });
    }

    /// Text from a process, possibly several lines.
    pub fn text(&self, stream: Stream, text: &str) {
        for l in text.lines() {
            self.line(stream, l);
        }
    }

    pub fn progress(&self, message: &str) {
        let _ = self.events.send(Event::TaskProgress {
            task: self.task.to_string(),
            message: self.redactor.redact(message),
        });
    }

    pub fn redact(&self, s: &str) -> String {
        self.redactor.redact(s)
    }

    pub fn contents(&self) -> Vec<u8> {
        self.buf.lock().unwrap().clone()
    }

    /// The last `n` lines, for failure reports.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let b = self.buf.lock().unwrap();
        let text = String::from_utf8_lossy(&b);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

#[async_trait]
pub trait Task: Send + Sync + 'static {
    fn kind(&self) -> &'static str;

    /// Canonical config for the fingerprint: sorted maps, project-relative paths.
    fn config(&self) -> serde_json::Value;

    /// Errors in the task's own source files that no run can get past (a Dockerfile Docker
    /// rejects): checked before anything runs, they are config errors (exit 2). `root` is the
    /// project root.
    fn check(&self, _root: &Path) -> Result<(), String> {
        Ok(())
    }

    /// Files and kind-specific facts the key covers.
    async fn inputs(&self, cx: &KeyCx) -> Result<TaskInputs, TaskError>;

    /// Does the result for `cx.key` still exist? Kinds that can restore it (outputs) may.
    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError>;

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError>;

    /// Project-relative paths this task writes; walks under them are redone after it runs.
    /// A slice: asked after every cache hit too, so no allocation each time.
    fn writes(&self) -> &[String] {
        &[]
    }

    /// `lifeos watch`: project-relative paths (directories or files) whose changes may
    /// change this task's key. Empty: nothing on disk does.
    fn watch_paths(&self) -> Vec<String> {
        Vec::new()
    }

    /// `lifeos watch`: a directory under [`Task::watch_paths`] whose files can never change
    /// this task's key (a `.dockerignore` excludes it), so it needs no watch.
    fn watch_skips(&self, _root: &Path, _rel_dir: &str) -> bool {
        false
    }

    /// `lifeos watch`: may a change to this file (project-relative, under
    /// [`Task::watch_paths`]) change this task's key? Only a plan knows for sure; this
    /// decides whether a change cancels a running build.
    fn watch_reads(&self, _root: &Path, _rel: &str) -> bool {
        true
    }

    /// What dependants see of a result (`${tasks.NAME.FIELD}`, [`Deps::typed`]), made from
    /// the record's data. `key` is added by the engine.
    fn result(&self, data: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        data.as_object().cloned().unwrap_or_default()
    }

    /// Short description of the result, for `lifeos graph` and summaries.
    fn describe(&self) -> String {
        self.kind().to_string()
    }

    /// What this task delivered, in one line for the end of a run ("pushed REPO@sha256:…",
    /// "revision api-3 serves 10%", a backup file); `None` for tasks that only build or check.
    /// Made from the same fields as [`Task::result`].
    fn delivered(&self, _result: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        None
    }

    /// The concrete task, for commands that act on one kind's nodes outside a run
    /// (`lifeos backup verify` reads its backup task's settings).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// Store files under `root` matching `patterns` in the blob store; the manifest for a record.
pub fn archive_outputs(
    root: &Path,
    snapshot: &Snapshot,
    set: &InputSet,
    blobs: &dyn Cas,
) -> std::io::Result<Vec<OutputFile>> {
    let mut out = Vec::new();
    for f in snapshot.select(set)? {
        let digest: FileDigest = blobs.put_file(&f.path_in(root))?;
        out.push(OutputFile {
            path: f.rel,
            digest,
            mode: f.mode & 0o7777,
            size: f.size,
            symlink: f.symlink,
        });
    }
    Ok(out)
}
