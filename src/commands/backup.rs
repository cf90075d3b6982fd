//! `lifeos backup verify|prune` and `lifeos restore`: act on the files of a `backup` task,
//! with that task's database, image and credentials.

use std::path::{Path, PathBuf};

use lifeos_engine::TaskError;
use lifeos_tasks::backup::{gcs, http, restore as rs, retention, sidecar, BackupKind, BackupTask};
use lifeos_tasks::kind::TypedKind;
use tokio_util::sync::CancellationToken;

use super::usage_error;
use crate::cli::{BackupCmd, Global};
use crate::config::Project;
use crate::exit;

fn error(msg: impl std::fmt::Display) {
    eprintln!(
        "{} {msg}",
        console::style("error:").red().bold().for_stderr()
    );
}

fn task_error(e: TaskError) -> i32 {
    error(&e);
    match e {
        TaskError::Environment(_) => exit::ENVIRONMENT,
        TaskError::Interrupted => exit::INTERRUPTED,
        TaskError::Failed(_) => exit::TASK_FAILED,
    }
}

/// The backup task named, or the only one.
fn backup_task<'p>(project: &'p Project, name: Option<&str>) -> Result<&'p BackupTask, i32> {
    let all = project.of_kind(BackupKind::NAME);
    let id = match name {
        Some(n) if all.iter().any(|a| a == n) => n.to_string(),
        Some(n) => {
            return Err(usage_error(format!(
                "`{n}` is not a backup task; backup tasks: {}",
                if all.is_empty() {
                    "none".into()
                } else {
                    all.join(", ")
                }
            )))
        }
        None => match all.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(usage_error(
                    "the config has no backup tasks (kind = \"backup\")",
                ))
            }
            many => {
                return Err(usage_error(format!(
                    "several backup tasks: say which with --task ({})",
                    many.join(", ")
                )))
            }
        },
    };
    let node = project.graph.get(&id).expect("listed");
    Ok(node
        .task
        .as_any()
        .and_then(|a| a.downcast_ref::<BackupTask>())
        .expect("a backup task's node is a BackupTask"))
}

/// The task's env and secrets as this shell has them.
fn env_of(project: &Project, task: &str) -> Vec<(String, String)> {
    let spec = &project.graph.get(task).expect("listed").spec;
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .filter_map(|e| {
            e.value
                .clone()
                .or_else(|| std::env::var(&e.name).ok())
                .map(|v| (e.name.clone(), v))
        })
        .collect();
    env.extend(
        spec.secrets
            .iter()
            .filter_map(|s| std::env::var(s).ok().map(|v| (s.clone(), v))),
    );
    env
}

/// Cancelled on Ctrl-C or SIGTERM.
fn cancel_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        super::run::interrupted().await;
        eprintln!("\nlifeos: interrupted; cleaning up");
        c.cancel();
    });
    cancel
}

pub async fn backup(g: &Global, project: &Project, action: BackupCmd) -> i32 {
    match action {
        BackupCmd::Verify { file, task } => verify(g, project, file, task.as_deref()).await,
        BackupCmd::Prune { dry_run, task } => prune(g, project, dry_run, task.as_deref()),
    }
}

async fn verify(g: &Global, project: &Project, file: Option<PathBuf>, task: Option<&str>) -> i32 {
    let t = match backup_task(project, task) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let env = env_of(project, &t.s.task);
    let file = match file {
        Some(f) => f,
        None => {
            let dir = t.dir(&project.root);
            let dbname = match t.dbname(&env) {
                Ok(n) => n,
                Err(e) => return task_error(e),
            };
            match retention::list(&dir, &dbname) {
                Ok(l) => match l.into_iter().find(|b| b.verified) {
                    Some(b) => b.path,
                    None => {
                        error(format!(
                            "no verified backup of {} in {}: run `lifeos run {}` first",
                            dbname,
                            dir.display(),
                            t.s.task
                        ));
                        return exit::TASK_FAILED;
                    }
                },
                Err(e) => {
                    error(format!("cannot list {}: {e}", dir.display()));
                    return exit::ENVIRONMENT;
                }
            }
        }
    };
    if !file.is_file() {
        return usage_error(format!("{}: no such file", file.display()));
    }
    let (d, c) = match t.connect(&env).await {
        Ok(x) => x,
        Err(e) => return task_error(e),
    };
    let cancel = cancel_on_signal();
    let side = sidecar::path_of(&file);
    let checks = match rs::verify(&c, &d, &file, &side, &cancel).await {
        Ok(c) => c,
        Err(e) => return task_error(e),
    };
    let ok = checks.iter().all(|c| c.ok);
    if g.json {
        crate::outln!(
            "{}",
            serde_json::json!({ "file": file, "ok": ok, "checks": checks })
        );
    } else {
        crate::outln!("{}", file.display());
        for c in &checks {
            crate::outln!(
                "  {:4}  {:34} {}",
                if c.ok { "ok" } else { "FAIL" },
                c.check,
                c.detail
            );
        }
        crate::outln!(
            "verdict: {}",
            if ok { "restorable" } else { "NOT restorable" }
        );
    }
    if ok {
        exit::OK
    } else {
        exit::TASK_FAILED
    }
}

fn prune(g: &Global, project: &Project, dry_run: bool, task: Option<&str>) -> i32 {
    let t = match backup_task(project, task) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let dir = t.dir(&project.root);
    let dbname = match t.dbname(&env_of(project, &t.s.task)) {
        Ok(n) => n,
        Err(e) => return task_error(e),
    };
    let list = match retention::list(&dir, &dbname) {
        Ok(l) => l,
        Err(e) => {
            error(format!("cannot list {}: {e}", dir.display()));
            return exit::ENVIRONMENT;
        }
    };
    let plan = retention::plan(&list, &t.s.keep);
    let name = |p: &Path| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    if g.json {
        let rows: Vec<serde_json::Value> = plan
            .iter()
            .map(|d| {
                serde_json::json!({
                    "file": name(&d.path),
                    "action": if d.unverified { "leave" } else if d.goes() { "delete" } else { "keep" },
                    "kept_by": d.kept_by,
                })
            })
            .collect();
        crate::outln!("{}", serde_json::Value::Array(rows));
    } else {
        for d in &plan {
            let (what, why) = if d.unverified {
                (
                    "leave",
                    "no sidecar: not verified by lifeos, never pruned".to_string(),
                )
            } else if d.goes() {
                (
                    if dry_run { "would delete" } else { "delete" },
                    String::new(),
                )
            } else {
                ("keep", d.kept_by.join(", "))
            };
            crate::outln!("{what:12} {}  {why}", name(&d.path));
        }
    }
    if dry_run {
        return exit::OK;
    }
    match retention::apply(&plan) {
        Ok(_) => exit::OK,
        Err(e) => {
            error(format!("cannot delete in {}: {e}", dir.display()));
            exit::ENVIRONMENT
        }
    }
}

pub async fn restore(
    g: &Global,
    project: &Project,
    source: &str,
    into: Option<String>,
    drop_old: bool,
    task: Option<String>,
) -> i32 {
    let t = match backup_task(project, task.as_deref()) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let file = if source.contains("://") {
        if let Some(why) = http::url_problem(source) {
            return usage_error(format!("cannot restore from {source}: {why}"));
        }
        let fetched = if source.starts_with("gs://") {
            download_gs(project, source).await
        } else {
            download(project, source).await
        };
        match fetched {
            Ok(f) => f,
            Err(why) => {
                error(why);
                return exit::TASK_FAILED;
            }
        }
    } else {
        let f = PathBuf::from(source);
        if !f.is_file() {
            return usage_error(format!("{source}: no such file"));
        }
        let side = sidecar::path_of(&f);
        (f, side)
    };
    let (file, side) = file;
    let env = env_of(project, &t.s.task);
    let into = match into {
        Some(i) => i,
        None => match t.dbname(&env) {
            Ok(n) => n,
            Err(e) => return task_error(e),
        },
    };
    let (d, c) = match t.connect(&env).await {
        Ok(x) => x,
        Err(e) => return task_error(e),
    };
    let cancel = cancel_on_signal();
    match rs::restore(&c, &d, &file, &side, &into, drop_old, &cancel).await {
        Ok(r) => {
            if g.json {
                crate::outln!("{}", serde_json::to_string(&r).unwrap());
            } else {
                let rows: u64 = r.tables.values().sum();
                eprintln!(
                    "restored {} into database {} ({} tables, {rows} rows, counts match the sidecar)",
                    file.display(),
                    r.database,
                    r.tables.len()
                );
                if let Some(old) = &r.kept_old {
                    eprintln!("the previous database is kept as {old} (--drop-old drops it)");
                }
                if let Some(old) = &r.dropped_old {
                    eprintln!("dropped the previous database ({old})");
                }
            }
            exit::OK
        }
        Err(e) => task_error(e),
    }
}

/// A `gs://` object and its sidecar into the cache's `downloads/gs/<hash of URL>/` through
/// gcloud; kept, and reused while the object's generation is the same.
async fn download_gs(project: &Project, url: &str) -> Result<(PathBuf, PathBuf), String> {
    lifeos_cache::CacheDir::new(project.cache_dir.clone())
        .prepare()
        .map_err(|e| format!("cannot use the cache directory for the download: {e}"))?;
    let id = blake3::hash(url.as_bytes()).to_hex();
    let dir = project
        .cache_dir
        .join("downloads")
        .join("gs")
        .join(&id.as_str()[..32]);
    let (dump, side, kept) = gcs::download(url, &dir)
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    eprintln!(
        "{} {url}",
        if kept {
            "not modified (generation): using the kept copy of"
        } else {
            "fetched"
        }
    );
    Ok((dump, side))
}

/// A URL and its sidecar into the cache's `downloads/` with cached-path (as URL inputs are):
/// kept, and on the next use revalidated by ETag (a new ETag is a new copy). The local path
/// of the dump and of its sidecar.
async fn download(project: &Project, url: &str) -> Result<(PathBuf, PathBuf), String> {
    lifeos_cache::CacheDir::new(project.cache_dir.clone())
        .prepare()
        .map_err(|e| format!("cannot use the cache directory for the download: {e}"))?;
    let downloads = project.services.downloads();
    let dir = project.cache_dir.join("downloads");
    let kept: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let u = url.to_string();
    let (dump, side) =
        tokio::task::spawn_blocking(move || -> Result<(PathBuf, PathBuf), String> {
            let cache = downloads.cache()?;
            let dump = cache
                .cached_path(&u)
                .map_err(|e| format!("cannot fetch {u}: {e}"))?;
            let side = cache
                .cached_path(&format!("{u}.json"))
                .map_err(|e| format!("cannot fetch the sidecar {u}.json: {e}"))?;
            Ok((dump, side))
        })
        .await
        .map_err(|e| format!("the download of {url} panicked: {e}"))??;
    eprintln!(
        "{} {url}",
        if kept.contains(&dump) {
            "not modified (ETag): using the kept copy of"
        } else {
            "fetched"
        }
    );
    Ok((dump, side))
}
