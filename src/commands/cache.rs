//! `lifeos cache stats|prune|clean`.

use lifeos_cache::{CacheDir, RunLock};

use crate::cli::{CacheCmd, Global};
use crate::config::Project;
use crate::exit;

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `prune` and `clean` remove what a run may be reading or writing: they take the run lock
/// and refuse while a run holds it. Only in lifeos's own directory: the lock file is never
/// created in one that `prune`/`clean` refuse anyway.
fn take_run_lock(dir: &CacheDir, what: &str) -> Result<Option<RunLock>, i32> {
    if !dir.is_ours() {
        return Ok(None);
    }
    match RunLock::try_acquire(dir.root(), what) {
        Ok(Ok(lock)) => Ok(Some(lock)),
        Ok(Err(holder)) => {
            eprintln!(
                "error: a lifeos run is using the cache in {} ({}); run `{what}` when it has finished",
                dir.root().display(),
                holder.describe()
            );
            Err(exit::ENVIRONMENT)
        }
        Err(e) => {
            eprintln!(
                "error: cannot take the run lock in {}: {e}",
                dir.root().display()
            );
            Err(exit::ENVIRONMENT)
        }
    }
}

pub fn cache(g: &Global, project: &Project, action: CacheCmd) -> i32 {
    let dir = CacheDir::new(project.cache_dir.clone());
    let what = match action {
        CacheCmd::Stats => None,
        CacheCmd::Prune { .. } => Some("lifeos cache prune"),
        CacheCmd::Clean => Some("lifeos cache clean"),
    };
    // Held until the command returns, so no run starts while entries are removed.
    let _lock = match what.map(|w| take_run_lock(&dir, w)) {
        Some(Err(code)) => return code,
        Some(Ok(lock)) => lock,
        None => None,
    };
    match action {
        CacheCmd::Stats => {
            let s = dir.stats();
            if g.json {
                crate::outln!("{}", serde_json::to_string(&s).unwrap());
            } else {
                crate::outln!("cache:          {}", project.cache_dir.display());
                crate::outln!(
                    "records:        {} ({} tasks indexed)",
                    s.records,
                    s.tasks_indexed
                );
                crate::outln!("blobs:          {} ({})", s.blobs, human(s.blob_bytes));
                crate::outln!("stat cache:     {}", human(s.stat_cache_bytes));
                if let Some(r) = lifeos_cache::remote::read_stats(&dir.remote_stats_path()) {
                    crate::outln!(
                        "remote cache:   {} hits, {} misses, {} uploads, {} down, {} up, {} errors{}",
                        r.hits,
                        r.misses,
                        r.uploads,
                        human(r.bytes_down),
                        human(r.bytes_up),
                        r.errors,
                        project
                            .remote
                            .as_ref()
                            .map(|c| format!(" ({})", c.url))
                            .unwrap_or_default()
                    );
                }
                if s.tmp_files > 0 {
                    crate::outln!(
                        "temp files:     {} ({}; left by interrupted runs, `lifeos cache prune` removes them)",
                        s.tmp_files,
                        human(s.tmp_bytes)
                    );
                }
            }
            exit::OK
        }
        CacheCmd::Prune { older_than } => match dir.prune(older_than) {
            Ok(r) => {
                if g.json {
                    crate::outln!("{}", serde_json::to_string(&r).unwrap());
                } else {
                    crate::outln!(
                        "removed {} records, {} blobs and {} temp files, freed {}",
                        r.records_removed,
                        r.blobs_removed,
                        r.tmp_removed,
                        human(r.bytes_freed)
                    );
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: cannot prune: {e}");
                exit::ENVIRONMENT
            }
        },
        CacheCmd::Clean => match dir.clean() {
            Ok(r) => {
                if g.json {
                    crate::outln!("{}", serde_json::to_string(&r).unwrap());
                } else {
                    crate::outln!(
                        "removed the cache in {} ({} entries)",
                        project.cache_dir.display(),
                        r.removed
                    );
                    if !r.left.is_empty() {
                        crate::outln!(
                            "left {} entries lifeos did not make: {}",
                            r.left.len(),
                            r.left.join(", ")
                        );
                    }
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: cannot clean: {e}");
                exit::ENVIRONMENT
            }
        },
    }
}
