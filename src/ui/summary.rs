//! The run summary: per task what happened, why and how long, what the cache saved, and what
//! the run delivered (pushed digests, deployed revisions, backup files). Printed after the
//! last task's line, and written as JSON with `--summary FILE` for CI systems to attach.

use std::io::Write;
use std::path::Path;

use lifeos_engine::scheduler::RunReport;
use lifeos_engine::Outcome;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Project;

/// Bumped when a field changes meaning or goes away (new fields do not bump it).
const VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub version: u32,
    pub run_id: String,
    /// `run`, `build` or `up`, with the tasks named on the command line.
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub exit_code: i32,
    /// RFC 3339, UTC.
    pub finished_at: String,
    pub wall_ms: u64,
    /// The recorded run times of the tasks that were cached.
    pub saved_ms: u64,
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: usize,
    pub tasks: Vec<TaskSummary>,
    pub delivered: Vec<Delivered>,
}

#[derive(Debug, Serialize)]
pub struct TaskSummary {
    pub name: String,
    pub kind: String,
    /// ran, cached, failed, skipped, interrupted.
    pub status: &'static str,
    /// Why it ran, where its cached result is, why it failed or was skipped.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Time spent on it in this run (the cache check alone for a cached task).
    pub ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_ms: Option<u64>,
    /// What it hands its dependants (`${tasks.NAME.FIELD}`): an image ID, a digest, a revision.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub result: Map<String, Value>,
}

/// One line of "what this run shipped", from a kind that delivers something.
#[derive(Debug, Serialize)]
pub struct Delivered {
    pub task: String,
    pub kind: String,
    /// ran or cached (already delivered by an earlier run).
    pub status: &'static str,
    pub what: String,
}

impl RunSummary {
    /// `with_tasks`: the per-task list too (for `--summary FILE`); without it only what the
    /// run delivered, which is all a run without `--summary` prints (a 10,000-task no-op
    /// otherwise builds and drops 10,000 entries, each key in hex).
    pub fn new(
        project: &Project,
        report: &RunReport,
        command: String,
        run_id: String,
        env: Option<String>,
        with_tasks: bool,
    ) -> Self {
        let mut tasks = Vec::with_capacity(if with_tasks { report.outcomes.len() } else { 0 });
        let mut delivered = Vec::new();
        for ((name, outcome), detail) in report.outcomes.iter().zip(&report.details) {
            let task = project.graph.get(name);
            let status = match outcome {
                Outcome::Ran { .. } => "ran",
                Outcome::Cached { .. } => "cached",
                Outcome::Failed { .. } => "failed",
                Outcome::Skipped { .. } => "skipped",
                Outcome::Interrupted => "interrupted",
                Outcome::WouldRun { .. } => "would_run",
            };
            let result = detail
                .result
                .as_ref()
                .map(|r| r.task.result(&r.data))
                .unwrap_or_default();
            let kind = || task.map(|n| n.task.kind().to_string()).unwrap_or_default();
            if let (Some(n), "ran" | "cached") = (task, status) {
                if let Some(what) = n.task.delivered(&result) {
                    delivered.push(Delivered {
                        task: name.clone(),
                        kind: kind(),
                        status,
                        what,
                    });
                }
            }
            if !with_tasks {
                continue;
            }
            let (reason, saved_ms) = match outcome {
                Outcome::Ran { reason, .. } | Outcome::WouldRun { reason, .. } => {
                    (reason.to_string(), None)
                }
                Outcome::Cached {
                    location, saved_ms, ..
                } => (location.clone(), Some(*saved_ms)),
                Outcome::Failed { error, .. } => (error.clone(), None),
                Outcome::Skipped { because } => (because.clone(), None),
                Outcome::Interrupted => (String::new(), None),
            };
            tasks.push(TaskSummary {
                name: name.clone(),
                kind: kind(),
                status,
                reason,
                key: outcome.key().map(|k| k.to_hex()),
                ms: detail.took.as_millis() as u64,
                saved_ms,
                result,
            });
        }
        let s = &report.summary;
        RunSummary {
            version: VERSION,
            run_id,
            command,
            env,
            exit_code: report.exit_code(),
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            wall_ms: s.wall_ms,
            saved_ms: s.saved_ms,
            ran: s.ran,
            cached: s.cached,
            failed: s.failed,
            skipped: s.skipped,
            interrupted: s.interrupted,
            tasks,
            delivered,
        }
    }

    /// The "delivered" block under the summary line; nothing when the run delivered nothing.
    pub fn print_delivered(&self, out: &mut impl Write) {
        if self.delivered.is_empty() {
            return;
        }
        let width = self
            .delivered
            .iter()
            .map(|d| d.task.len())
            .max()
            .unwrap_or(0);
        let _ = writeln!(out, "delivered:");
        for d in &self.delivered {
            let note = if d.status == "cached" {
                " (unchanged)"
            } else {
                ""
            };
            let _ = writeln!(out, "  {:width$}  {}{note}", d.task, d.what);
        }
    }

    /// Written beside its final name and renamed into place: a CI step that attaches the
    /// file never sees half of it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        lifeos_cache::atomic::write(path, &bytes)
    }
}
