//! `lifeos cache stats|prune|clean`.

use lifeos_cache::CacheDir;

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

pub fn cache(g: &Global, project: &Project, action: CacheCmd) -> i32 {
    let dir = CacheDir::new(project.cache_dir.clone());
    match action {
        CacheCmd::Stats => {
            let s = dir.stats();
            if g.json {
                println!("{}", serde_json::to_string(&s).unwrap());
            } else {
                println!("cache:          {}", project.cache_dir.display());
                println!(
                    "records:        {} ({} tasks indexed)",
                    s.records, s.tasks_indexed
                );
                println!("blobs:          {} ({})", s.blobs, human(s.blob_bytes));
                println!("stat cache:     {}", human(s.stat_cache_bytes));
                if s.tmp_files > 0 {
                    println!(
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
                    println!("{}", serde_json::to_string(&r).unwrap());
                } else {
                    println!(
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
                    println!("{}", serde_json::to_string(&r).unwrap());
                } else {
                    println!(
                        "removed the cache in {} ({} entries)",
                        project.cache_dir.display(),
                        r.removed
                    );
                    if !r.left.is_empty() {
                        println!(
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
