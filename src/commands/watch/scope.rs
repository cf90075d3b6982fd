//! What `lifeos watch` watches: the directories the watched services' graph reads, less what
//! no task can read; and which event paths are lifeos's own writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeos_cache::names::{is_at_or_under, normalize_rel};
use lifeos_engine::Task;
use lifeos_tasks::container::sync::SyncMatcher;

use super::fs::Scope;
use crate::config::Project;

/// A directory (or file) some task reads, and the task.
struct Claim {
    path: String,
    task: Arc<dyn Task>,
}

pub struct GraphScope {
    root: PathBuf,
    claims: Vec<Claim>,
    rules: Vec<SyncMatcher>,
    /// Project-relative: the cache directory, when inside the project.
    cache: Option<String>,
    /// Where tasks write their outputs (lifeos's own writes).
    outputs: Vec<String>,
}

impl GraphScope {
    pub fn new(project: &Project, selection: &[String], rules: Vec<SyncMatcher>) -> Self {
        let mut claims = Vec::new();
        let sel = project.graph.select(selection).unwrap_or_default();
        for &i in &sel {
            let node = project.graph.node(i);
            for p in node.task.watch_paths() {
                claims.push(Claim {
                    path: normalize_rel(&p).trim_matches('/').to_string(),
                    task: node.task.clone(),
                });
            }
        }
        for c in &mut claims {
            if c.path == "." {
                c.path.clear();
            }
        }
        let outputs = project
            .graph
            .ids()
            .filter_map(|id| project.graph.get(id))
            .flat_map(|n| n.task.writes().to_vec())
            .collect();
        let cache = project
            .cache_dir
            .strip_prefix(&project.root)
            .ok()
            .map(lifeos_cache::names::encode);
        Self {
            root: project.root.clone(),
            claims,
            rules,
            cache,
            outputs,
        }
    }

    fn is_dir(&self, rel: &str) -> bool {
        lifeos_cache::names::to_path(&self.root, rel).is_dir()
    }

    /// Is this event path one lifeos must not react to: the cache, `.git` (but for its
    /// index lock, which holds the batch), or a task's outputs?
    pub fn own_write(&self, rel: &str) -> bool {
        if self
            .cache
            .as_deref()
            .is_some_and(|c| is_at_or_under(rel, c))
        {
            return true;
        }
        if is_at_or_under(rel, ".git") {
            return true;
        }
        self.outputs.iter().any(|o| is_at_or_under(rel, o))
    }

    /// The relative path of an event's absolute path (None: outside the project).
    pub fn rel(&self, p: &Path) -> Option<String> {
        p.strip_prefix(&self.root)
            .ok()
            .map(lifeos_cache::names::encode)
    }
}

impl Scope for GraphScope {
    fn roots(&self) -> Vec<String> {
        let mut r: Vec<String> = self
            .claims
            .iter()
            .map(|c| c.path.clone())
            .chain(self.rules.iter().map(|m| m.rule.from.clone()))
            .filter(|p| p.is_empty() || self.is_dir(p))
            .collect();
        // A file claim (a Dockerfile): its directory is watched alone (`singles`).
        r.sort();
        r.dedup();
        // Below another root: already walked.
        let all = r.clone();
        r.retain(|p| {
            !all.iter()
                .any(|q| q != p && (q.is_empty() || lifeos_cache::names::is_under(p, q)))
        });
        r
    }

    fn singles(&self) -> Vec<String> {
        let mut s = vec![String::new(), ".git".to_string()];
        for c in &self.claims {
            if !c.path.is_empty() && !self.is_dir(&c.path) {
                let parent = c.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                s.push(parent.to_string());
            }
        }
        s.sort();
        s.dedup();
        s
    }

    fn skips(&self, rel: &str) -> bool {
        if self.own_write(rel) {
            return true;
        }
        let mut claimed = false;
        for c in &self.claims {
            if c.path.is_empty() || is_at_or_under(rel, &c.path) {
                claimed = true;
                if !c.task.watch_skips(&self.root, rel) {
                    return false;
                }
            }
        }
        for m in &self.rules {
            let from = &m.rule.from;
            if from.is_empty() || is_at_or_under(rel, from) {
                claimed = true;
                let sub = if from.is_empty() {
                    rel
                } else {
                    rel.strip_prefix(from.as_str())
                        .unwrap_or(rel)
                        .trim_start_matches('/')
                };
                if sub.is_empty() || !m.ignored(sub) {
                    return false;
                }
            }
        }
        claimed
    }
}
