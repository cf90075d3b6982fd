//! `lifeos run`, `build` and `plan`: select, run the scheduler, show the events.

use std::collections::HashSet;
use std::sync::Arc;

use lifeos_cache::{CacheDir, RunLock};
use lifeos_engine::scheduler::{self, Force, RunContext, RunReport};
use lifeos_engine::{Outcome, RunOptions};
use tokio_util::sync::CancellationToken;

use super::{check_names, open_run_cache, usage_error};
use crate::cli::Global;
use crate::config::Project;
use crate::exit;
use crate::ui;
use lifeos_tasks::kind::TypedKind;

pub async fn build(g: &Global, project: &Project, images: Vec<String>) -> i32 {
    match select_of_kind(project, images, lifeos_tasks::image::ImageKind::NAME) {
        Ok(names) => execute(g, project, "build", names, false).await.0,
        Err(code) => code,
    }
}

/// The named tasks, all of `kind` (none named: every task of that kind), or a usage error.
pub fn select_of_kind(
    project: &Project,
    names: Vec<String>,
    kind: &str,
) -> Result<Vec<String>, i32> {
    check_names(project, &names)?;
    let all = project.of_kind(kind);
    let k = kind;
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
    execute(g, project, "run", tasks, false).await.0
}

pub async fn plan(g: &Global, project: &Project, tasks: Vec<String>) -> i32 {
    if let Err(code) = check_names(project, &tasks) {
        return code;
    }
    let (code, report) = execute(g, project, "plan", tasks, true).await;
    let Some(report) = report else { return code };
    if g.json {
        let rows: Vec<serde_json::Value> = report
            .outcomes
            .iter()
            .map(|(t, o)| match o {
                // What it would run, as `lifeos graph` describes the task.
                Outcome::WouldRun { .. } => {
                    serde_json::json!({ "task": t, "outcome": o, "runs": runs(project, t) })
                }
                _ => serde_json::json!({ "task": t, "outcome": o }),
            })
            .collect();
        crate::outln!("{}", serde_json::to_string(&rows).unwrap());
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
            crate::outln!("{task:width$}  {key}  {status:8}  {why}");
            if matches!(o, Outcome::WouldRun { .. }) {
                crate::outln!("{:width$}  runs: {}", "", runs(project, task));
            }
        }
    }
    code
}

/// The task's own description of what it does (`gcloud run deploy …`, `exec: …`).
fn runs(project: &Project, task: &str) -> String {
    project
        .graph
        .get(task)
        .map(|n| n.task.describe())
        .unwrap_or_default()
}

/// Run the scheduler on `names` (and their dependencies) with the UI attached.
/// `verb` is the command, for the run lock's message to a run that waits.
pub async fn execute(
    g: &Global,
    project: &Project,
    verb: &str,
    names: Vec<String>,
    dry_run: bool,
) -> (i32, Option<RunReport>) {
    execute_with(g, project, verb, names, dry_run, CancellationToken::new()).await
}

/// [`execute`], cancelled also through `cancel` (`lifeos watch` stops a build whose inputs
/// changed again).
pub async fn execute_with(
    g: &Global,
    project: &Project,
    verb: &str,
    names: Vec<String>,
    dry_run: bool,
    cancel: CancellationToken,
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
    // Before any task runs: a cache lifeos can write to (and that is lifeos's), or exit 3.
    if !dry_run {
        if let Err(e) = cache.prepare() {
            eprintln!("error: {e}");
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
    let uses_containers = selection
        .iter()
        .any(|&i| project.graph.node(i).spec.class == lifeos_engine::Class::Docker);
    let signals = tokio::spawn(watch_signals(cancel.clone()));
    // A run that executes tasks has the cache to itself (cache/src/run_lock.rs); `plan` and
    // `explain` only read, and never wait.
    let mut waited = false;
    let _lock = if dry_run {
        None
    } else {
        let command = std::iter::once(format!("lifeos {verb}"))
            .chain(names.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        match lock_run(g, project, &command, &cancel).await {
            Ok((lock, w)) => {
                waited = w;
                Some(lock)
            }
            Err(code) => {
                signals.abort();
                return (code, None);
            }
        }
    };
    // What was read before the lock (the preloaded index) may predate another run's
    // results: after a wait, or when that run ended just before ours took the lock (the
    // index changed since this process started).
    let stale = !dry_run && (waited || super::index_moved(&project.cache_dir));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ui = ui::spawn(rx, g, dry_run);
    let (records, snapshot) = open_run_cache(project, stale);
    project
        .services
        .docker()
        .keep_view_in(cache.engine_view_path());
    if uses_containers {
        project.services.docker().prefetch_view().await;
    }
    let (actions, cas) = stores(project, &cache, records, dry_run);
    // Never freed: the run flushes it, and the process exits soon after; dropping the
    // records of a 10,000-task index one by one only costs time.
    std::mem::forget(Arc::clone(&actions));
    let cx = RunContext {
        root: project.root.clone(),
        actions,
        cas,
        cache,
        snapshot,
        events: tx,
        cancel,
    };
    let result = scheduler::run(Arc::clone(&project.graph), selection, opts, cx).await;
    let _ = ui.await;
    if project.cache_dir.is_dir() {
        project.services.docker().save_view();
    }
    if uses_containers && result.as_ref().is_ok_and(|r| r.interrupted) {
        // Ctrl-C: nothing this run started may outlive it.
        if let Ok(d) = project.services.docker().get().await {
            let n = lifeos_tasks::container::ops::remove_run(&d, &run_id).await;
            if n > 0 {
                eprintln!("lifeos: removed {n} container(s) this run created");
            }
        }
    }
    signals.abort();
    match result {
        Ok(report) if !dry_run => {
            let command = std::iter::once(verb.to_string())
                .chain(names.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            let summary = ui::RunSummary::new(
                project,
                &report,
                command,
                run_id,
                g.env.clone(),
                g.summary.is_some(),
            );
            if !g.json {
                summary.print_delivered(&mut std::io::stderr().lock());
            }
            let mut code = report.exit_code();
            if let Some(path) = &g.summary {
                if let Err(e) = summary.write(path) {
                    eprintln!(
                        "error: cannot write the run summary to {}: {e}",
                        path.display()
                    );
                    if code == exit::OK {
                        code = exit::ENVIRONMENT;
                    }
                }
            }
            (code, Some(report))
        }
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

/// The run's stores: the local cache, behind which the remote one when `[cache] remote` is
/// set (a layered store: local first, remote second, what the remote answers kept locally).
fn stores(
    project: &Project,
    cache: &CacheDir,
    records: lifeos_cache::RecordStore,
    dry_run: bool,
) -> (
    Arc<dyn lifeos_cache::ActionCache>,
    Arc<dyn lifeos_cache::Cas>,
) {
    let local_actions: Arc<dyn lifeos_cache::ActionCache> = Arc::new(records);
    let local_cas: Arc<dyn lifeos_cache::Cas> = Arc::new(cache.blobs());
    let Some(r) = &project.remote else {
        return (local_actions, local_cas);
    };
    // CI writes, laptops read: the environment may turn either off (or on).
    let flag = |name: &str, default: bool| match std::env::var(name).as_deref() {
        Ok("0") | Ok("false") => false,
        Ok("1") | Ok("true") => true,
        _ => default,
    };
    let cfg = lifeos_cache::RemoteConfig {
        url: r.url.clone(),
        read: flag("LIFEOS_REMOTE_CACHE_READ", r.read),
        // `plan` changes nothing, here or there.
        write: !dry_run && flag("LIFEOS_REMOTE_CACHE_WRITE", r.write),
        kinds: lifeos_tasks::kinds::REGISTRY.shared(),
        timeout: std::time::Duration::from_millis(r.timeout_ms),
        stats_file: (!dry_run).then(|| cache.remote_stats_path()),
    };
    match lifeos_cache::HttpRemote::new(cfg) {
        Ok(remote) => {
            let mut actions =
                lifeos_cache::LayeredActionCache::new(local_actions, Arc::new(remote.clone()));
            let mut cas = lifeos_cache::LayeredCas::new(local_cas, Arc::new(remote));
            if dry_run {
                actions = actions.without_write_back();
                cas = cas.without_write_back();
            }
            (Arc::new(actions), Arc::new(cas))
        }
        Err(e) => {
            eprintln!("lifeos: warning: {e}; this run uses the local cache only");
            (local_actions, local_cas)
        }
    }
}

/// Take the cache's run lock, waiting for the run that holds it (saying so once) unless
/// `--no-wait`. Returns whether it waited; Err is the exit code (3, or 130 on Ctrl-C).
async fn lock_run(
    g: &Global,
    project: &Project,
    command: &str,
    cancel: &CancellationToken,
) -> Result<(RunLock, bool), i32> {
    let dir = project.cache_dir.display();
    let mut waited = false;
    loop {
        let holder = match RunLock::try_acquire(&project.cache_dir, command) {
            Ok(Ok(lock)) => return Ok((lock, waited)),
            Ok(Err(holder)) => holder,
            Err(e) => {
                eprintln!(
                    "{} cannot lock the cache directory {dir}: {e}\n  check that it is writable and that {} is a plain file",
                    console::style("error:").red().bold().for_stderr(),
                    lifeos_cache::run_lock::path(&project.cache_dir).display()
                );
                return Err(exit::ENVIRONMENT);
            }
        };
        if g.no_wait {
            eprintln!(
                "{} another lifeos run ({}) is using the cache in {dir}\n  let it finish, or leave out --no-wait to wait for it",
                console::style("error:").red().bold().for_stderr(),
                holder.describe()
            );
            return Err(exit::ENVIRONMENT);
        }
        if !waited {
            eprintln!(
                "lifeos: waiting for another lifeos run ({}) on {dir} (--no-wait to fail instead)",
                holder.describe()
            );
            waited = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            _ = cancel.cancelled() => return Err(exit::INTERRUPTED),
        }
    }
}

/// Sortable by time, unique by 16 random bits (two runs in the same millisecond on two
/// machines of a CI fleet sharing an engine have the same pid as often as not).
fn run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut r = [0u8; 2];
    // No randomness at all would be a broken system; the time alone still orders runs.
    let _ = getrandom::fill(&mut r);
    format!("{:x}{:04x}", t.as_millis(), u16::from_le_bytes(r))
}

/// Resolves at the next Ctrl-C (SIGINT) or SIGTERM: the two mean the same to lifeos (a
/// service manager or CI stops with SIGTERM what a person stops with Ctrl-C). Never resolves
/// if the handlers cannot be installed.
pub async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// Ctrl-C or SIGTERM: cancel the run (tasks stop their processes and containers). A second
/// one exits at once.
async fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed once, before the first signal can arrive, so none is missed in between.
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    for n in 0..2 {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if n == 0 {
            eprintln!(
                "\nlifeos: interrupted; stopping running tasks (Ctrl-C again to quit at once)"
            );
            cancel.cancel();
        }
    }
    std::process::exit(exit::INTERRUPTED);
}
