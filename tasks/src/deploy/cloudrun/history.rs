//! The revisions lifeos gave all of a Cloud Run service's traffic, oldest first, kept in the
//! cache directory (`<cache>/cloudrun/<project>--<region>--<service>.json`). Cloud Run keeps
//! no such history; `lifeos rollback` reads it (and falls back to `revisions list`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CloudRunBody;

/// Entries kept per service.
const KEEP: usize = 50;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub serving: Vec<String>,
}

pub fn path(cache_dir: &Path, b: &CloudRunBody) -> PathBuf {
    cache_dir
        .join("cloudrun")
        .join(format!("{}--{}--{}.json", b.project, b.region, b.service))
}

pub fn load(cache_dir: Option<&Path>, b: &CloudRunBody) -> History {
    cache_dir
        .and_then(|d| std::fs::read(path(d, b)).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// `rev` took all the traffic. A history that cannot be written costs only rollback's memory.
pub fn record(cache_dir: Option<&Path>, b: &CloudRunBody, rev: &str) -> Result<(), String> {
    let Some(dir) = cache_dir else {
        return Ok(());
    };
    let mut h = load(Some(dir), b);
    if h.serving.last().map(String::as_str) == Some(rev) {
        return Ok(());
    }
    h.serving.push(rev.to_string());
    let extra = h.serving.len().saturating_sub(KEEP);
    h.serving.drain(..extra);
    let p = path(dir, b);
    let parent = p.parent().expect("a file in a directory");
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&h).expect("serializes"))
        .and_then(|_| std::fs::rename(&tmp, &p))
        .map_err(|e| format!("{}: {e}", p.display()))
}
