//! `exec`: a host command. Its key covers the command, cwd, declared inputs, env and outputs;
//! on success the declared outputs are archived, and on a hit they are restored if needed.

use async_trait::async_trait;
use lifeos_cache::InputSet;
use lifeos_engine::task::archive_outputs;
use lifeos_engine::{ExecCx, Executed, KeyCx, Probe, ProbeCx, Task, TaskError, TaskInputs};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::outputs::{self, OutputState};

mod kind;
pub use kind::ExecKind;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Command {
    /// Run through `sh -c`.
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Clone)]
pub struct ExecTask {
    pub run: Command,
    /// Project-relative working directory; "" is the project root.
    pub cwd: String,
    pub input_patterns: Vec<String>,
    pub inputs: InputSet,
    pub output_patterns: Vec<String>,
    pub outputs: Option<InputSet>,
    /// URL inputs and where they are kept.
    urls: Vec<String>,
    downloads: Option<std::sync::Arc<crate::services::Downloads>>,
    /// Each URL's local copy, found while keying, for the command (`LIFEOS_URL_INPUTS`).
    fetched: std::sync::Arc<std::sync::Mutex<Vec<(String, std::path::PathBuf)>>>,
}

impl ExecTask {
    pub fn new(
        run: Command,
        cwd: String,
        inputs: Vec<String>,
        outputs: Vec<String>,
    ) -> Result<Self, lifeos_cache::InputSetError> {
        Ok(Self {
            run,
            cwd,
            inputs: InputSet::new(&inputs)?,
            input_patterns: inputs,
            outputs: if outputs.is_empty() {
                None
            } else {
                Some(InputSet::new(&outputs)?)
            },
            output_patterns: outputs,
            urls: Vec::new(),
            downloads: None,
            fetched: Default::default(),
        })
    }

    /// `http(s)://` inputs, fetched (and revalidated by ETag) into `downloads`.
    pub fn with_urls(
        mut self,
        urls: Vec<String>,
        downloads: std::sync::Arc<crate::services::Downloads>,
    ) -> Self {
        self.urls = urls;
        self.downloads = Some(downloads);
        self
    }

    /// Fetch every URL input (a blocking thread): URL → blake3 of its content.
    async fn url_inputs(&self) -> Result<std::collections::BTreeMap<String, String>, TaskError> {
        let Some(downloads) = self.downloads.clone() else {
            return Ok(Default::default());
        };
        let urls = self.urls.clone();
        let fetched =
            tokio::task::spawn_blocking(move || crate::download::fetch_all(&downloads, &urls))
                .await
                .map_err(|e| TaskError::Failed(format!("fetching URL inputs panicked: {e}")))?
                .map_err(TaskError::Environment)?;
        let mut keys = std::collections::BTreeMap::new();
        let mut local = Vec::new();
        for f in fetched {
            keys.insert(f.url.clone(), f.digest);
            local.push((f.url, f.path));
        }
        *self.fetched.lock().unwrap() = local;
        Ok(keys)
    }
}

#[async_trait]
impl Task for ExecTask {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn config(&self) -> serde_json::Value {
        let mut c = json!({
            "run": self.run,
            "cwd": self.cwd,
            "inputs": self.input_patterns,
            "outputs": self.output_patterns,
        });
        // Only when there are any: the keys of tasks without URL inputs stay as they were.
        if !self.urls.is_empty() {
            c["urls"] = json!(self.urls);
        }
        c
    }

    fn describe(&self) -> String {
        match &self.run {
            Command::Shell(s) => format!("exec: {s}"),
            Command::Argv(a) => format!("exec: {}", a.join(" ")),
        }
    }

    fn writes(&self) -> &[String] {
        self.outputs.as_ref().map(|o| o.roots()).unwrap_or(&[])
    }

    fn watch_paths(&self) -> Vec<String> {
        self.inputs.roots().to_vec()
    }

    fn watch_reads(&self, _root: &std::path::Path, rel: &str) -> bool {
        self.inputs.matches(rel)
    }

    async fn inputs(&self, cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        let mut files = cx.hash_inputs(&self.inputs).await?;
        if !self.urls.is_empty() {
            files.extend(self.url_inputs().await?);
        }
        Ok(TaskInputs {
            files,
            extras: Default::default(),
        })
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        let Some(record) = cx.record else {
            return Ok(Probe::Missing("no record".into()));
        };
        if record.outputs.is_empty() {
            return Ok(Probe::Fresh("record".into()));
        }
        // Never restore over an input (a record from before the config said so).
        if let Some(f) = record.outputs.iter().find(|f| self.inputs.matches(&f.path)) {
            return Ok(Probe::Missing(format!(
                "recorded output {:?} is an input",
                f.path
            )));
        }
        // A few stats are cheaper inline than a trip to the blocking pool.
        if record.outputs.len() <= 8 {
            return check_outputs(
                cx.root,
                cx.snapshot,
                &record.outputs,
                cx.blobs.as_ref(),
                cx.dry_run,
            );
        }
        let (root, snap, blobs) = (cx.root.to_path_buf(), cx.snapshot.clone(), cx.blobs.clone());
        let outs = record.outputs.clone();
        let dry = cx.dry_run;
        tokio::task::spawn_blocking(move || check_outputs(&root, &snap, &outs, blobs.as_ref(), dry))
            .await
            .map_err(|e| TaskError::Failed(e.to_string()))?
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        // `${tasks.NAME.FIELD}` in the command: the dependencies' results.
        let expand = |s: &str| cx.deps.expand(s).map_err(TaskError::Failed);
        let mut cmd = match &self.run {
            Command::Shell(s) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(expand(s)?);
                c
            }
            Command::Argv(a) => {
                let mut c = tokio::process::Command::new(expand(&a[0])?);
                for arg in &a[1..] {
                    c.arg(expand(arg)?);
                }
                c
            }
        };
        cmd.current_dir(cx.root.join(&self.cwd));
        // A clean environment: what the task declares, plus the base a shell needs. An
        // undeclared host variable (a token, a key) never reaches the command.
        cmd.env_clear();
        cmd.envs(std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(is_base_env)));
        cmd.envs(cx.env.iter().map(|(k, v)| (k, v)));
        cmd.env("LIFEOS_RUN_ID", cx.run_id);
        if !self.urls.is_empty() {
            // `URL<TAB>local copy` per line, in the order of `inputs`.
            let lines: Vec<String> = self
                .fetched
                .lock()
                .unwrap()
                .iter()
                .map(|(u, p)| format!("{u}\t{}", p.display()))
                .collect();
            cmd.env("LIFEOS_URL_INPUTS", lines.join("\n"));
        }
        crate::process::run(cmd, "command", &cx.log, &cx.cancel).await?;

        let Some(outs) = &self.outputs else {
            return Ok(Executed::default());
        };
        for r in outs.roots() {
            cx.snapshot.invalidate(r);
        }
        let (root, snap, blobs, set) = (
            cx.root.to_path_buf(),
            cx.snapshot.clone(),
            cx.blobs.clone(),
            outs.clone(),
        );
        let files = tokio::task::spawn_blocking(move || {
            archive_outputs(&root, &snap, &set, blobs.as_ref())
        })
        .await
        .map_err(|e| TaskError::Failed(e.to_string()))?
        .map_err(|e| TaskError::Failed(format!("cannot archive outputs: {e}")))?;
        if let Some(f) = files.iter().find(|f| self.inputs.matches(&f.path)) {
            return Err(TaskError::Failed(format!(
                "output {:?} is also an input of this task; a cache hit would restore it over the tree",
                f.path
            )));
        }
        if files.is_empty() {
            cx.log.line(
                lifeos_engine::Stream::Stderr,
                &format!(
                    "lifeos: warning: outputs {:?} matched no file",
                    self.output_patterns
                ),
            );
        }
        Ok(Executed {
            outputs: files,
            data: serde_json::Value::Null,
        })
    }
}

/// Host variables every exec task gets without declaring them (README: exec environment).
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TZ", "LANG", "LANGUAGE",
];

fn is_base_env(name: &str) -> bool {
    BASE_ENV.contains(&name) || name.starts_with("LC_")
}

/// A hit's outputs: intact, restored from the blob store, or (when they cannot be) a miss.
fn check_outputs(
    root: &std::path::Path,
    snap: &lifeos_cache::Snapshot,
    outs: &[lifeos_cache::OutputFile],
    blobs: &dyn lifeos_cache::Cas,
    dry: bool,
) -> Result<Probe, TaskError> {
    Ok(match outputs::check(snap, outs, blobs) {
        OutputState::Intact => Probe::Fresh("record, outputs intact".into()),
        OutputState::Unrestorable(why) => Probe::Missing(why),
        OutputState::Stale(files) if dry => match outputs::verify(&files, blobs) {
            Err(why) => Probe::Missing(why),
            Ok(()) => Probe::Fresh(format!(
                "record, {} output file(s) would be restored",
                files.len()
            )),
        },
        OutputState::Stale(files) => match outputs::restore(root, &files, blobs) {
            Err(outputs::RestoreError::Corrupt(why)) => Probe::Missing(why),
            Err(outputs::RestoreError::Io(e)) => return Err(e.into()),
            Ok(()) => Probe::Fresh(format!("record, {} output file(s) restored", files.len())),
        },
    })
}
