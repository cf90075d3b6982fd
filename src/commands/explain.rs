//! `lifeos explain TASK`: this run's fingerprint against the last successful one.

use lifeos_cache::CacheDir;
use lifeos_engine::{Fingerprint, Outcome};
use lifeos_tasks::deploy::{ops::last_check, DEFAULT_ENV};

use super::{check_names, run::execute};
use crate::cli::Global;
use crate::config::Project;
use crate::exit;

fn ago(secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let d = now.saturating_sub(secs);
    match d {
        0..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}

pub async fn explain(g: &Global, project: &Project, task: String) -> i32 {
    if let Err(code) = check_names(project, std::slice::from_ref(&task)) {
        return code;
    }
    let (code, report) = execute(g, project, "explain", vec![task.clone()], true).await;
    let Some(report) = report else { return code };
    let Some((_, outcome)) = report.outcomes.iter().find(|(t, _)| *t == task) else {
        return exit::TASK_FAILED;
    };
    let Some(now) = report.fingerprints.get(&task) else {
        eprintln!("error: cannot compute the key of {task}: {outcome:?}");
        return code.max(exit::TASK_FAILED);
    };
    let cache = CacheDir::new(project.cache_dir.clone());
    let records = cache.records();
    let last = records.latest(&task);
    let old: Option<Fingerprint> = last
        .and_then(|r| cache.blobs().get(&r.fingerprint).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let changes = old.as_ref().map(|o| now.diff(o)).unwrap_or_default();
    let status = match outcome {
        Outcome::Cached { location, .. } => format!("cached ({location})"),
        Outcome::WouldRun { reason, .. } => format!("will run: {reason}"),
        other => format!("{other:?}"),
    };
    if g.json {
        let v = serde_json::json!({
            "task": task,
            "key": now.key(),
            "status": outcome,
            "previous": last.map(|r| serde_json::json!({"key": r.key, "finished_at": r.finished_at, "duration_ms": r.duration_ms})),
            "changes": changes,
            "fingerprint": now,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap());
        return exit::OK;
    }
    crate::outln!("task:     {task} ({})", now.kind);
    crate::outln!("key:      {}", now.key());
    crate::outln!("status:   {status}");
    match (last, &old) {
        (None, _) => crate::outln!("previous: none: no successful run is recorded"),
        (Some(r), None) => crate::outln!(
            "previous: {} (finished {}), but its fingerprint is no longer in the cache",
            r.key.short(),
            ago(r.finished_at)
        ),
        (Some(r), Some(_)) => {
            crate::outln!(
                "previous: {} (finished {}, took {:.1}s)",
                r.key.short(),
                ago(r.finished_at),
                r.duration_ms as f64 / 1000.0
            );
            if changes.is_empty() {
                crate::outln!("no differences: the fingerprint equals the last successful one");
            } else {
                crate::outln!("differences ({}):", changes.len());
                let old = old.as_ref().unwrap();
                for c in &changes {
                    let detail = match c {
                        lifeos_engine::Change::FileChanged { path } => format!(
                            "  ({} → {})",
                            short(old.inputs.get(path)),
                            short(now.inputs.get(path))
                        ),
                        _ => String::new(),
                    };
                    crate::outln!("  - {c}{detail}");
                }
            }
        }
    }
    // A check's last verdict (kept by the deploy kinds in the router state, failed ones too).
    if project
        .graph
        .get(&task)
        .is_some_and(|n| n.task.kind() == "check")
    {
        let env = g.env.clone().unwrap_or_else(|| DEFAULT_ENV.into());
        if let Ok(Some(v)) = last_check(project.services.docker(), &project.name, &env, &task).await
        {
            let at = v["at"].as_u64().map(ago).unwrap_or_default();
            let verdict = match v["passed"].as_bool() {
                Some(true) => "passed",
                Some(false) => "failed",
                None => "no data",
            };
            crate::outln!("last check: {verdict} ({at}, environment {env})");
            if let Some(e) = v["error"].as_str() {
                crate::outln!("  {e}");
            }
            for r in v["verdict"].as_array().into_iter().flatten() {
                let f = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                crate::outln!(
                    "  {:<24} {:>10} {:>10} {:>20}  {}",
                    f("metric"),
                    f("canary"),
                    f("stable"),
                    f("threshold"),
                    f("result")
                );
            }
        }
    }
    exit::OK
}

fn short(d: Option<&String>) -> String {
    d.map(|s| s.chars().take(12).collect())
        .unwrap_or_else(|| "none".into())
}
