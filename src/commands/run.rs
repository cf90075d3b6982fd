//! `lifeos run`, `build` and `plan`: select, run the scheduler, show the events.

use std::collections::HashSet;
use std::sync::Arc;

use lifeos_cache::CacheDir;
use lifeos_engine::scheduler::{self, Force, RunContext, RunReport};
use lifeos_engine::{Outcome, RunOptions};
use tokio_util::sync::CancellationToken;

use super::{check_names, open_run_cache, usage_error};
use crate::cli::Global;
use crate::config::{Kind, Project};
use crate::exit;
use crate::ui;

pub async fn build(g: &Global, project: &Project, images: Vec<String>) -> i32 {
    match select_of_kind(project, images, Kind::Image) {
        Ok(names) => execute(g, project, names, false).await.0,
        Err(code) => code,
    }
}

/// The named tasks, all of `kind` (none named: every task of that kind), or a usage error.
pub fn select_of_kind(
    project: &Project,
    names: Vec<String>,
    kind: Kind,
) -> Result<Vec<String>, i32> {
    check_names(project, &names)?;
    let all = project.of_kind(kind);
    let k = kind.name();
    let a = if k.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    if let Some(n) = names.iter().find(|n| !all.contains(n)) {
        return Err(usage_error(format!(
            "`{n}` is not {a} {k} task (use `lifeos run {n}`); {k} tasks: {}",
            all.join(", ")
        )));
    }
    if all.is_empty() {
        return Err(usage_error(format!(
            "the config has no {k} tasks (kind = \"{k}\")"
        )));
    }
    Ok(if names.is_empty() { all } else { names })
}

pub async fn run(g: &Global, project: &Project, tasks: Vec<String>) -> i32 {
    if let Err(code) = check_names(project, &tasks) {
        return code;
    }
    execute(g, project, tasks, false).await.0
}

pub async fn plan(g: &Global, project: &Project, tasks: Vec<String>) -> i32 {
    if let Err(code) = check_names(project, &tasks) {
        return code;
    }
    let (code, report) = execute(g, project, tasks, true).await;
    let Some(report) = report else { return code };
    if g.json {
        let rows: Vec<serde_json::Value> = report
            .outcomes
            .iter()
            .map(|(t, o)| serde_json::json!({ "task": t, "outcome": o }))
            .collect();
        println!("{}", serde_json::to_string(&rows).unwrap());
    } else {
        let width = report
            .outcomes
            .iter()
            .map(|(t, _)| t.len())
            .max()
            .unwrap_or(4);
        for (task, o) in &report.outcomes {
            let key = o.key().map(|k| k.short()).unwrap_or_else(|| "-".repeat(12));
            let (status, why) = match o {
                Outcome::Cached { location, .. } => ("cached", location.clone()),
                Outcome::WouldRun { reason, .. } => ("will run", reason.to_string()),
                Outcome::Failed { error, .. } => ("error", error.clone()),
                Outcome::Skipped { because } => ("skipped", because.clone()),
                Outcome::Ran { reason, .. } => ("ran", reason.to_string()),
                Outcome::Interrupted => ("interrupted", String::new()),
            };
            println!("{task:width$}  {key}  {status:8}  {why}");
        }
    }
    code
}

/// Run the scheduler on `names` (and their dependencies) with the UI attached.
pub async fn execute(
    g: &Global,
    project: &Project,
    names: Vec<String>,
    dry_run: bool,
) -> (i32, Option<RunReport>) {
    let selection = project.graph.select(&names).expect("names checked");
    // Source files no run can get past (a Dockerfile Docker rejects) are config errors:
    // reported before anything runs.
    let mut bad = false;
    for &i in &selection {
        let node = project.graph.node(i);
        if let Err(e) = node.task.check(&project.root) {
            bad = true;
            eprintln!(
                "{} task `{}`: {e}",
                console::style("error:").red().bold().for_stderr(),
                node.spec.id
            );
        }
    }
    if bad {
        return (exit::USAGE, None);
    }
    let cache = CacheDir::new(project.cache_dir.clone());
    if !dry_run {
        if let Err(e) = std::fs::create_dir_all(cache.root()) {
            eprintln!(
                "error: cannot create the cache directory {}: {e}",
                cache.root().display()
            );
            return (exit::ENVIRONMENT, None);
        }
    }
    let force = if g.force.iter().any(|f| f == "*") {
        Force::All
    } else if g.force.is_empty() {
        Force::None
    } else {
        if let Err(code) = check_names(project, &g.force) {
            return (code, None);
        }
        Force::Tasks(g.force.iter().cloned().collect::<HashSet<_>>())
    };
    let opts = RunOptions {
        jobs: g.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        keep_going: g.keep_going,
        force,
        dry_run,
        run_id: run_id(),
    };
    let run_id = opts.run_id.clone();
    let uses_containers = selection.iter().any(|&i| {
        matches!(
            project.kinds.get(&project.graph.node(i).spec.id),
            Some(Kind::Service | Kind::Container)
        )
    });
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(cancel.clone()));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ui = ui::spawn(rx, g, dry_run);
    let (records, snapshot) = open_run_cache(project);
    project.docker.keep_view_in(cache.engine_view_path());
    let cx = RunContext {
        root: project.root.clone(),
        cache,
        records,
        snapshot,
        events: tx,
        cancel,
    };
    let result = scheduler::run(Arc::clone(&project.graph), selection, opts, cx).await;
    let _ = ui.await;
    if project.cache_dir.is_dir() {
        project.docker.save_view();
    }
    if uses_containers && result.as_ref().is_ok_and(|r| r.interrupted) {
        // Ctrl-C: nothing this run started may outlive it.
        if let Ok(d) = project.docker.get().await {
            let n = lifeos_tasks::container::ops::remove_run(&d, &run_id).await;
            if n > 0 {
                eprintln!("lifeos: removed {n} container(s) this run created");
            }
        }
    }
    signals.abort();
    match result {
        Ok(report) => (report.exit_code(), Some(report)),
        Err(e) => {
            eprintln!(
                "error: cannot write the cache in {}: {e}",
                project.cache_dir.display()
            );
            (exit::ENVIRONMENT, None)
        }
    }
}

fn run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}{:04x}", t.as_millis(), std::process::id() & 0xffff)
}

/// Ctrl-C or SIGTERM: cancel the run (tasks stop their processes and containers). A second
/// Ctrl-C exits at once.
async fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("\nlifeos: interrupted; stopping running tasks (Ctrl-C again to quit at once)");
    cancel.cancel();
    int.recv().await;
    std::process::exit(exit::INTERRUPTED);
}
