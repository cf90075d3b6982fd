//! `lifeos watch [SERVICE...]`: bring services up as `up` does, then keep them in step with
//! the files. Events are hints: each batch (a quiet window after the last event, held while
//! `.git/index.lock` exists) plans the graph again, and the keys decide, per node:
//! - **sync**: only files a service syncs changed → one archive into its container (then the
//!   rule's `run` command, or a restart);
//! - **rebuild**: any other input of an image changed → that image, its services and their
//!   dependants (one scheduler run; a new change to its inputs cancels it and starts again);
//! - **rerun**: an exec or container task's key changed → it runs again.
//!
//! A touch that leaves the content as it was changes no key, so it does nothing.

mod decide;
mod fs;
mod scope;
mod synced;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeos_engine::{Fingerprint, Outcome, RunReport};
use lifeos_tasks::container::sync::{self as csync, EngineEvent, SyncMatcher};
use lifeos_tasks::container::{ops, ImageRef, ServiceKind, ServiceTask};
use lifeos_tasks::kind::TypedKind;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::run::{execute, execute_with, select_of_kind};
use crate::cli::Global;
use crate::config::Project;
use crate::exit;
use decide::{Applied, Coverage};
use fs::{FsMsg, FsWatcher};
use scope::GraphScope;
use synced::Synced;

/// Quiet time after the last event before a batch is looked at.
const QUIET: Duration = Duration::from_millis(100);

/// Which synced paths each node's key may leave out.
struct Cov {
    /// Image task → the sync rules of each watched service that runs it.
    by_image: HashMap<String, Vec<Vec<SyncMatcher>>>,
    all: Vec<SyncMatcher>,
}

impl Coverage for Cov {
    fn covers(&self, task: &str, kind: &str, path: &str) -> bool {
        match kind {
            // Synced into every service that runs it: the image needs no rebuild for it.
            "image" => self.by_image.get(task).is_some_and(|services| {
                !services.is_empty()
                    && services
                        .iter()
                        .all(|rules| rules.iter().any(|m| m.sub(path).is_some()))
            }),
            "service" => false,
            // A test of synced files reruns (its key says so) without rebuilding the image
            // it gates.
            _ => self.all.iter().any(|m| m.sub(path).is_some()),
        }
    }
}

struct Watch<'a> {
    g: &'a Global,
    project: &'a Project,
    names: Vec<String>,
    synced: Vec<Synced>,
    cov: Cov,
    scope: Arc<GraphScope>,
    applied: HashMap<String, Applied>,
    batch: u64,
    /// (device, inode) of the regular files stdout and stderr write to.
    outputs: Vec<(u64, u64)>,
    /// git's index lock was made and its removal not yet seen in the events (the file can be
    /// gone while events of the checkout are still on their way).
    git_lock: bool,
    /// When the lock was first found gone from disk while `git_lock` still held.
    git_lock_gone: Option<Instant>,
    /// This batch's steps, for its `watch_batch` line.
    phases: serde_json::Map<String, serde_json::Value>,
    /// The stat cache the syncs read the host's files through, kept for the whole watch
    /// (opened once, never saved: the runs keep the one on disk).
    snap: lifeos_cache::Snapshot,
}

/// Why a batch is looked at, besides file events.
#[derive(Default)]
struct Pending {
    paths: BTreeSet<String>,
    rescan: Option<String>,
    engine: bool,
    deadline: Option<Instant>,
}

pub async fn watch(g: &Global, project: &Project, services: Vec<String>) -> i32 {
    let names = match select_of_kind(project, services, ServiceKind::NAME) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let mut synced = Vec::new();
    let mut by_image: HashMap<String, Vec<Vec<SyncMatcher>>> = HashMap::new();
    let mut all = Vec::new();
    for n in &names {
        let Some(svc) = project
            .graph
            .get(n)
            .and_then(|node| node.task.as_any())
            .and_then(|a| a.downcast_ref::<ServiceTask>())
        else {
            continue;
        };
        let rules: Vec<SyncMatcher> = svc.spec.sync.iter().map(|r| r.matcher()).collect();
        let image = match &svc.spec.image {
            ImageRef::Task { task, .. } => Some(task.clone()),
            ImageRef::External(_) => None,
        };
        if let Some(i) = &image {
            by_image.entry(i.clone()).or_default().push(rules.clone());
        }
        all.extend(rules.iter().cloned());
        if !rules.is_empty() {
            synced.push(Synced {
                task: n.clone(),
                spec: svc.spec.clone(),
                image,
                rules,
                container: None,
                owner: (0, 0),
                baseline: Default::default(),
                known: Default::default(),
                host: None,
                copier: Default::default(),
            });
        }
    }
    let scope = Arc::new(GraphScope::new(project, &names, all.clone()));
    let mut w = Watch {
        g,
        project,
        names: names.clone(),
        synced,
        cov: Cov { by_image, all },
        scope,
        applied: HashMap::new(),
        batch: 0,
        outputs: ["/proc/self/fd/1", "/proc/self/fd/2"]
            .iter()
            .filter_map(|fd| {
                use std::os::unix::fs::MetadataExt;
                let m = std::fs::metadata(fd).ok()?;
                m.is_file().then(|| (m.dev(), m.ino()))
            })
            .collect(),
        phases: Default::default(),
        git_lock: false,
        git_lock_gone: None,
        snap: super::open_snapshot(&project.root, &project.cache_dir),
    };

    // Up, as `lifeos up` (a failure is for the next save to fix; no engine is final).
    let (code, _) = execute(g, project, "watch", names.clone(), false).await;
    match code {
        exit::ENVIRONMENT | exit::INTERRUPTED | exit::USAGE => return code,
        exit::OK => {}
        _ => eprintln!("lifeos: watch: not everything came up; watching, fix it and save"),
    }
    let (fs_tx, mut fs_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut fsw = match FsWatcher::new(&project.root, w.scope.clone(), fs_tx) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "{} cannot watch files: {e}\n  check fs.inotify.max_user_instances (sysctl) and that {} is readable",
                console::style("error:").red().bold().for_stderr(),
                project.root.display()
            );
            return exit::ENVIRONMENT;
        }
    };
    fsw.sync_watches();
    let mut engine_rx = csync::events(project.services.docker().clone(), project.name.clone());
    if let Some(report) = w.plan().await {
        w.settle(&report, true).await;
    }
    if g.json {
        crate::outln!(
            "{}",
            json!({"event": "watch_ready", "services": names, "watched_dirs": fsw.watched(), "polled_dirs": fsw.polled()})
        );
    } else {
        eprintln!(
            "lifeos: watching {} ({} directories{}); Ctrl-C to stop",
            names.join(", "),
            fsw.watched(),
            if fsw.polled() > 0 {
                format!(", {} polled", fsw.polled())
            } else {
                String::new()
            }
        );
    }

    let mut usr1 =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
    let stop = super::run::interrupted();
    tokio::pin!(stop);
    let mut p = Pending::default();
    loop {
        let wait = async {
            match p.deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            Some(m) = fs_rx.recv() => w.take_fs(m, &mut p, &mut fsw),
            Some(e) = engine_rx.recv() => w.take_engine(e, &mut p),
            Some(_) = async { match usr1.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                p.rescan = Some("asked for (SIGUSR1)".into());
                p.deadline = Some(Instant::now() + QUIET);
            }
            _ = wait => {
                if w.git_busy() {
                    // git is still writing the checkout: one batch when it is done.
                    p.deadline = Some(Instant::now() + QUIET);
                    continue;
                }
                let batch = std::mem::take(&mut p);
                if batch.rescan.is_some() {
                    fsw.sync_watches();
                }
                if !w.run_batch(batch, &mut fs_rx, &mut fsw, &mut p).await {
                    break;
                }
            }
        }
    }
    // Each receiver exits when its stdin closes; wait for that, so none outlives the watch.
    for s in &mut w.synced {
        s.copier.close().await;
    }
    if g.json {
        crate::outln!("{}", json!({"event": "watch_stopped"}));
    } else {
        eprintln!(
            "\nlifeos: watch stopped; the services keep running (`lifeos down` removes them)"
        );
    }
    exit::OK
}

impl Watch<'_> {
    /// Is git writing the work tree: its index lock exists, or its removal has not yet come
    /// through the events (then git's last writes may not have either). A removal event lost
    /// without an overflow is given 2 s.
    fn git_busy(&mut self) -> bool {
        if self.project.root.join(".git/index.lock").exists() {
            self.git_lock_gone = None;
            return true;
        }
        if !self.git_lock {
            return false;
        }
        let since = *self.git_lock_gone.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(2) {
            self.git_lock = false;
            self.git_lock_gone = None;
            return false;
        }
        true
    }

    fn take_fs(&mut self, m: FsMsg, p: &mut Pending, fsw: &mut FsWatcher) {
        match m {
            FsMsg::Paths(paths) => {
                for path in paths {
                    if self.own_output(&path) {
                        continue;
                    }
                    fsw.saw(&path);
                    let Some(rel) = self.scope.rel(&path) else {
                        continue;
                    };
                    if rel == ".git/index.lock" {
                        // Holds the batch (checked when the quiet window ends).
                        p.deadline = Some(Instant::now() + QUIET);
                        continue;
                    }
                    if self.scope.own_write(&rel) {
                        continue;
                    }
                    p.paths.insert(rel);
                    p.deadline = Some(Instant::now() + QUIET);
                }
            }
            FsMsg::GitLock(held) => {
                self.git_lock = held;
                self.git_lock_gone = None;
                p.deadline = Some(Instant::now() + QUIET);
            }
            FsMsg::Rescan(why) => {
                // Lost events may include the lock's end: the disk says.
                self.git_lock = false;
                p.rescan = Some(why);
                p.deadline = Some(Instant::now() + QUIET);
            }
        }
    }

    /// Is this the file our own stdout or stderr goes to (`lifeos watch > log` inside the
    /// project would otherwise wake itself with every line it prints)?
    fn own_output(&self, path: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = std::fs::metadata(path) else {
            return false;
        };
        self.outputs.contains(&(m.dev(), m.ino()))
    }

    fn take_engine(&self, e: EngineEvent, p: &mut Pending) {
        match e {
            EngineEvent::Container { task, .. } if self.names.contains(&task) => {
                p.engine = true;
                p.deadline = Some(Instant::now() + QUIET);
            }
            EngineEvent::Container { .. } => {}
            EngineEvent::Lost(why) => {
                eprintln!("lifeos: lost the engine's events ({why}); reconnecting");
            }
            EngineEvent::Reconnected => {
                p.rescan = Some("the engine's events are back".into());
                p.deadline = Some(Instant::now() + QUIET);
            }
        }
    }

    /// A dry run of the watched services: every node's fingerprint and outcome, quietly.
    async fn plan(&self) -> Option<RunReport> {
        let (code, report) = execute(self.g, self.project, "watch", self.names.clone(), true).await;
        if report.is_none() {
            eprintln!("lifeos: watch: cannot plan (exit {code}); waiting for the next change");
        }
        report
    }

    fn kinds(&self, report: &RunReport) -> HashMap<String, &'static str> {
        report
            .outcomes
            .iter()
            .filter_map(|(t, _)| Some((t.clone(), self.project.graph.get(t)?.task.kind())))
            .collect()
    }

    fn say(&self, action: &str, task: &str, reason: &str, extra: serde_json::Value) {
        if self.g.json {
            let mut v = json!({"event": "watch_action", "batch": self.batch, "action": action, "task": task, "reason": reason});
            if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            crate::outln!("{v}");
        } else {
            eprintln!("{action:8} {task}: {reason}");
        }
    }

    /// Take a plan as the state things are now in (after `up`, after a run, or after a
    /// batch): the applied keys, and each synced service's container and image baseline.
    async fn settle(&mut self, report: &RunReport, fresh: bool) {
        let kinds = self.kinds(report);
        let order: Vec<String> = report.outcomes.iter().map(|(t, _)| t.clone()).collect();
        let sk = decide::structural(&order, &report.fingerprints, &kinds, &self.cov);
        for (t, fp) in &report.fingerprints {
            if let Some(s) = sk.get(t) {
                self.applied.insert(
                    t.clone(),
                    Applied {
                        fp: fp.clone(),
                        sk: s.clone(),
                    },
                );
            }
        }
        if fresh {
            let Ok(d) = self.project.services.docker().get().await else {
                return;
            };
            for i in 0..self.synced.len() {
                if let Ok(id) = running(&d, &self.project.name, &self.synced[i].task).await {
                    self.rebase(i, Some((report, false)), id, &d).await;
                }
            }
        }
    }

    /// A (new) container for a synced service: what its image holds is what it holds. The
    /// image's files come from `plan`: with `built`, the plan a run just acted on (its image
    /// is the one the run made); else only an image the plan found cached. Without a plan,
    /// or no such image, the last baseline stays.
    async fn rebase(
        &mut self,
        i: usize,
        plan: Option<(&RunReport, bool)>,
        id: Option<String>,
        d: &lifeos_tasks::docker::Client,
    ) {
        let image_fp = plan.and_then(|(report, built)| {
            let img = self.synced[i].image.as_ref()?;
            let cached = report
                .outcomes
                .iter()
                .any(|(t, o)| t == img && (built || matches!(o, Outcome::Cached { .. })));
            cached.then(|| report.fingerprints.get(img)).flatten()
        });
        let s = &mut self.synced[i];
        if let Some(fp) = image_fp {
            s.baseline = s.baseline_of(&fp.inputs);
        }
        s.known = s.baseline.clone();
        s.container = id.clone();
        let fallback = match &id {
            Some(id) => {
                s.owner = match s.rules.iter().find_map(|m| m.rule.numeric_owner()) {
                    Some(o) => o,
                    None => csync::container_owner(d, id).await.unwrap_or((0, 0)),
                };
                // Its receiver now, so the first edit need not wait for it.
                s.copier.open(d, id).await
            }
            None => {
                s.copier.close().await;
                None
            }
        };
        if let Some(why) = fallback {
            self.say_fallback(i, &why);
        }
        self.save_state(i);
    }

    /// Once per service: its batches go through the (slower) archive endpoint, and why.
    fn say_fallback(&self, i: usize, why: &str) {
        eprintln!(
            "lifeos: {}: copying synced files through the engine's archive endpoint from now on (slower: ~75 ms a batch): {why}",
            self.synced[i].task
        );
    }

    /// `.lifeos/watch/<service>.json`: how the container differs from its image, for
    /// `lifeos status`.
    fn save_state(&self, i: usize) {
        let s = &self.synced[i];
        let Some(id) = &s.container else { return };
        let differs = s.differs();
        let dir = self.project.cache_dir.join("watch");
        let v = json!({"container": id, "synced": differs.len(), "paths": differs});
        if std::fs::create_dir_all(&dir).is_ok() {
            let tmp = dir.join(format!(".{}.json.tmp", s.task));
            if std::fs::write(&tmp, v.to_string()).is_ok() {
                let _ = std::fs::rename(&tmp, dir.join(format!("{}.json", s.task)));
            }
        }
    }

    /// One batch: plan, decide, act. False when watching must end (Ctrl-C during a run).
    async fn run_batch(
        &mut self,
        batch: Pending,
        fs_rx: &mut tokio::sync::mpsc::UnboundedReceiver<FsMsg>,
        fsw: &mut FsWatcher,
        next: &mut Pending,
    ) -> bool {
        self.batch += 1;
        let t0 = Instant::now();
        let config = self.project.file.strip_prefix(&self.project.root).ok();
        if config.is_some_and(|c| batch.paths.contains(&lifeos_cache::names::encode(c))) {
            eprintln!("lifeos: lifeos.toml changed: stop and start `lifeos watch` to use it");
        }
        // Syncs first: they need no plan (the host's files against what the container holds),
        // and a page edit is then visible before the graph is keyed again.
        let mut actions = 0usize;
        let d = self.project.services.docker().get().await.ok();
        if let Some(d) = &d {
            self.fresh_walks();
            self.phases.insert("open".into(), ms(t0.elapsed()).into());
            for i in 0..self.synced.len() {
                actions += self.sync_one(i, d, &batch).await;
            }
            self.phases.insert("synced".into(), ms(t0.elapsed()).into());
        } else {
            // This batch's paths were not looked at: the next sync looks at everything.
            for s in &mut self.synced {
                s.host = None;
            }
        }
        let Some(report) = self.plan().await else {
            self.batch_done(&batch, actions, t0);
            return true;
        };
        self.phases
            .insert("planned".into(), ms(t0.elapsed()).into());
        let kinds = self.kinds(&report);
        let order: Vec<String> = report.outcomes.iter().map(|(t, _)| t.clone()).collect();
        let sk = decide::structural(&order, &report.fingerprints, &kinds, &self.cov);
        let changed = |t: &str| {
            self.applied
                .get(t)
                .is_none_or(|a| sk.get(t).is_some_and(|s| *s != a.sk))
        };
        let mut run: Vec<String> = Vec::new();
        let mut rebuilds = Vec::new();
        for t in &order {
            let Some(fp) = report.fingerprints.get(t) else {
                continue;
            };
            let kind = kinds.get(t).copied().unwrap_or("");
            let prev = self.applied.get(t);
            let reason = |old: &Fingerprint| {
                decide::reason(t, kind, fp, old, &self.cov, &|d: &str| changed(d))
            };
            match kind {
                "image" if changed(t) => {
                    rebuilds.push((t.clone(), prev.map(|p| reason(&p.fp)).unwrap_or_default()))
                }
                "service" if changed(t) && self.names.contains(t) => {
                    let why = prev.map(|p| reason(&p.fp)).unwrap_or_else(|| "new".into());
                    run.push(t.clone());
                    self.say("recreate", t, &why, json!({}));
                    actions += 1;
                }
                "image" | "service" => {}
                _ if prev.is_none_or(|p| p.fp.key() != fp.key()) => {
                    let why = prev
                        .map(|p| {
                            lifeos_engine::Reason::Changed {
                                changes: fp.diff(&p.fp),
                            }
                            .to_string()
                        })
                        .unwrap_or_else(|| "new".into());
                    run.push(t.clone());
                    self.say("rerun", t, &why, json!({}));
                    actions += 1;
                }
                _ => {}
            }
        }
        for (img, why) in &rebuilds {
            self.say("rebuild", img, why, json!({}));
            actions += 1;
        }
        // A watched service whose container is gone or stopped comes back.
        if let Some(d) = &d {
            for n in self.names.clone() {
                if run.contains(&n) {
                    continue;
                }
                if running(d, &self.project.name, &n).await == Ok(None) {
                    self.say(
                        "recreate",
                        &n,
                        "its container is gone or stopped",
                        json!({}),
                    );
                    run.push(n);
                    actions += 1;
                }
            }
        }
        let mut ok = true;
        if !run.is_empty() {
            let (cancelled, stop) = self.run_tasks(run, fs_rx, fsw, next).await;
            if stop {
                ok = false;
            }
            if cancelled || stop {
                self.batch_done(&batch, actions, t0);
                return ok;
            }
            // What ran, ran with the keys of this batch's plan (a later change is the next
            // batch's, even if it came while the run went on).
            self.settle(&report, false).await;
            // Containers the run made start from their image, as this plan keyed it.
            if let Some(d) = &d {
                for i in 0..self.synced.len() {
                    let Ok(id) = running(d, &self.project.name, &self.synced[i].task).await else {
                        continue;
                    };
                    if id != self.synced[i].container {
                        self.rebase(i, Some((&report, true)), id, d).await;
                    }
                }
            }
        } else {
            // Everything in this plan is acted on: it is the state from now on.
            for (t, fp) in &report.fingerprints {
                if let Some(s) = sk.get(t) {
                    self.applied.insert(
                        t.clone(),
                        Applied {
                            fp: fp.clone(),
                            sk: s.clone(),
                        },
                    );
                }
            }
        }
        self.batch_done(&batch, actions, t0);
        ok
    }

    fn batch_done(&mut self, batch: &Pending, actions: usize, t0: Instant) {
        // Milliseconds from the end of the quiet window to each step's end.
        let phases = std::mem::take(&mut self.phases);
        if self.g.json {
            crate::outln!(
                "{}",
                json!({"event": "watch_batch", "batch": self.batch, "paths": batch.paths.len(), "rescan": batch.rescan, "engine": batch.engine, "actions": actions, "ms": t0.elapsed().as_millis() as u64, "phases_ms": phases, "sample": batch.paths.iter().take(10).collect::<Vec<_>>()})
            );
        } else if self.g.verbose && actions == 0 {
            eprintln!(
                "lifeos: {} path(s) touched, nothing changed",
                batch.paths.len()
            );
        }
    }

    /// Walks the syncs made before are of files as they were: forget them.
    fn fresh_walks(&self) {
        for s in &self.synced {
            for m in &s.rules {
                self.snap.invalidate(&m.rule.from);
            }
        }
    }

    /// Bring one synced service's container to the host's files: 1 if it did anything.
    async fn sync_one(
        &mut self,
        i: usize,
        d: &lifeos_tasks::docker::Client,
        batch: &Pending,
    ) -> usize {
        let task = self.synced[i].task.clone();
        let t_start = Instant::now();
        // The host side first, whatever happens to the container below: the batch's paths
        // are this service's to look at only now. A rescan looks at everything.
        let paths = batch.rescan.is_none().then_some(&batch.paths);
        let host = self.synced[i].host_after(&self.snap, &self.project.root, paths);
        let t_host = t_start.elapsed();
        // The container synced into last time, if nothing the engine said since can have
        // replaced it (no container event, no reconnect) and it still runs; else a lookup.
        let known = self.synced[i].container.clone();
        let id = match known {
            Some(k) if !batch.engine && batch.rescan.is_none() && still_running(d, &k).await => {
                Some(k)
            }
            _ => match running(d, &self.project.name, &task).await {
                Ok(id) => id,
                // The engine is not answering: the next batch (or the reconnect's rescan)
                // looks again.
                Err(()) => return 0,
            },
        };
        let t_find = t_start.elapsed() - t_host;
        let mut why_all = None;
        if id != self.synced[i].container {
            // Re-created outside lifeos: it holds its image's files again (as lifeos last
            // knew that image; an extra copy of a file it already has does no harm).
            self.rebase(i, None, id.clone(), d).await;
            why_all = Some("its container was re-created");
        }
        let Some(id) = id else { return 0 };
        if let Some(why) = &batch.rescan {
            match self.synced[i].read_back(d, &id).await {
                Ok(tree) => self.synced[i].known = tree,
                Err(e) => eprintln!("lifeos: rescan of {task}: {e}"),
            }
            let _ = why;
        }
        let host = match host {
            Ok(h) => h,
            Err(e) => {
                eprintln!("lifeos: sync {task}: {e}");
                self.synced[i].host = None;
                return 0;
            }
        };
        let plan = self.synced[i].plan(&self.project.root, &host);
        if plan.changes.is_empty() {
            return 0;
        }
        let t0 = Instant::now();
        let t_scan = t0 - t_start - t_find;
        let owner = self.synced[i].owner;
        let (result, copied) = self.synced[i]
            .copier
            .apply(d, &id, owner, &plan.changes)
            .await;
        let t_copy = t0.elapsed();
        if let Some(why) = &copied.fallback {
            self.say_fallback(i, why);
        }
        let s = &self.synced[i];
        let shown: Vec<String> = plan
            .paths
            .iter()
            .take(3)
            .map(|p| {
                let what = match (s.known.contains_key(p), host.contains_key(p)) {
                    (false, _) => "added",
                    (_, false) => "deleted",
                    _ => "changed",
                };
                format!("{p} {what}")
            })
            .collect();
        let mut reason = format!(
            "{}{}",
            shown.join(", "),
            if plan.paths.len() > 3 {
                format!(" and {} more", plan.paths.len() - 3)
            } else {
                String::new()
            }
        );
        if let Some(w) = why_all {
            reason = format!("{w}; {reason}");
        }
        if let Err(e) = result {
            self.say(
                "sync",
                &task,
                &format!("failed: {e}"),
                json!({"files": plan.paths.len(), "failed": true, "via": copied.via.as_str()}),
            );
            return 1;
        }
        for p in &plan.paths {
            match host.get(p) {
                Some(v) => {
                    self.synced[i].known.insert(p.clone(), v.clone());
                }
                None => {
                    self.synced[i].known.remove(p);
                }
            }
        }
        // Then each changed rule's command, and one restart if a rule asks for it.
        let mut after = Vec::new();
        let rules: Vec<_> = plan
            .rules
            .iter()
            .map(|&r| self.synced[i].rules[r].rule.clone())
            .collect();
        for r in &rules {
            if let Some(cmd) = &r.run {
                if after.contains(cmd) {
                    continue;
                }
                after.push(cmd.clone());
                match csync::exec(
                    d,
                    &id,
                    vec!["sh".into(), "-c".into(), cmd.clone()],
                    None,
                    None,
                )
                .await
                {
                    Ok((0, _)) => {}
                    Ok((code, out)) => {
                        let tail: Vec<&str> = out.lines().rev().take(5).collect();
                        eprintln!(
                            "lifeos: {task}: `{cmd}` exited with {code}: {}",
                            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                        );
                    }
                    Err(e) => eprintln!("lifeos: {task}: `{cmd}` failed: {e}"),
                }
            }
        }
        let restart = rules.iter().any(|r| r.restart);
        if restart {
            // A restart ends every exec in the container, the receiver's too.
            self.synced[i].copier.forget();
            if let Err(e) = csync::restart(d, &id).await {
                eprintln!("lifeos: {task}: restart failed: {e}");
            } else {
                let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
                let log = lifeos_engine::LogSink::new(
                    &task,
                    tx,
                    Arc::new(lifeos_engine::Redactor::for_graph(&self.project.graph)),
                );
                let spec = self.synced[i].spec.clone();
                if let Err(e) =
                    ops::wait_healthy(d, &id, &spec, &log, &CancellationToken::new()).await
                {
                    eprintln!("lifeos: {task}: after the restart: {e}");
                }
                if let Some(why) = self.synced[i].copier.open(d, &id).await {
                    self.say_fallback(i, &why);
                }
            }
        }
        // Where the time went (benches/watch.sh reads it): finding the container, comparing
        // the host's files with what it holds, the copy (one frame to the receiver, or deletes
        // and archive: `via`), then `run`/restart.
        let mut extra = json!({"files": plan.paths.len(), "copied": plan.changes.files.len(), "deleted": plan.changes.deletes.len(), "ms": t0.elapsed().as_millis() as u64,
            "via": copied.via.as_str(),
            "phases_ms": {"host": ms(t_host), "find": ms(t_find), "compare": ms(t_scan - t_host), "copy": ms(t_copy), "after": ms(t0.elapsed() - t_copy)}});
        if copied.reopened {
            extra["reopened"] = json!(true);
        }
        if let Some(e) = &copied.stream_error {
            extra["stream_error"] = json!(e);
        }
        if let Some(why) = &copied.fallback {
            extra["fallback"] = json!(why);
        }
        if !after.is_empty() {
            extra["ran"] = json!(after);
            reason = format!("{reason}; ran `{}`", after.join("`, `"));
        }
        if restart {
            extra["restarted"] = json!(true);
            reason = format!("{reason}; restarted");
        }
        self.say("sync", &task, &reason, extra);
        self.save_state(i);
        1
    }

    /// Run tasks through the scheduler (with the usual output). A new change to an input of
    /// what runs cancels it: (cancelled, Ctrl-C).
    async fn run_tasks(
        &mut self,
        names: Vec<String>,
        fs_rx: &mut tokio::sync::mpsc::UnboundedReceiver<FsMsg>,
        fsw: &mut FsWatcher,
        next: &mut Pending,
    ) -> (bool, bool) {
        let sel: HashSet<String> = self
            .project
            .graph
            .select(&names)
            .unwrap_or_default()
            .into_iter()
            .map(|i| self.project.graph.node(i).spec.id.clone())
            .collect();
        let cancel = CancellationToken::new();
        let (g, project) = (self.g, self.project);
        let run = execute_with(g, project, "watch", names, false, cancel.clone());
        tokio::pin!(run);
        let mut cancelled = false;
        // Synced edits to services the run leaves alone are copied while it goes on (a
        // page edit need not wait for the api's build).
        let mut sync_at: Option<Instant> = None;
        let (code, report) = loop {
            let sync_due = async {
                match sync_at {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut run => break r,
                Some(m) = fs_rx.recv() => {
                    let before: BTreeSet<String> = next.paths.clone();
                    self.take_fs(m, next, fsw);
                    if cancelled {
                        continue;
                    }
                    let new: Vec<String> = next.paths.difference(&before).cloned().collect();
                    if let Some(p) = new.iter().find(|p| self.touches(&sel, p)) {
                        cancelled = true;
                        self.say("cancel", "build", &format!("{p} changed while it ran; starting again"), json!({}));
                        cancel.cancel();
                    } else if new.iter().any(|p| self.cov.all.iter().any(|m| m.sub(p).is_some())) {
                        sync_at = Some(Instant::now() + QUIET);
                    }
                }
                _ = sync_due => {
                    sync_at = None;
                    if self.git_busy() {
                        sync_at = Some(Instant::now() + QUIET);
                        continue;
                    }
                    if let Ok(d) = project.services.docker().get().await {
                        self.fresh_walks();
                        // The paths stay in `next`: its batch looks at them again.
                        let seen = Pending { paths: next.paths.clone(), ..Default::default() };
                        for i in 0..self.synced.len() {
                            if !sel.contains(&self.synced[i].task) {
                                self.sync_one(i, &d, &seen).await;
                            }
                        }
                    }
                }
            }
        };
        let interrupted = report.as_ref().is_some_and(|r| r.interrupted);
        if cancelled {
            // Looked at again once this change is quiet.
            next.deadline = Some(Instant::now() + QUIET);
            next.rescan
                .get_or_insert_with(|| "a build was cancelled".into());
        }
        (
            cancelled,
            !cancelled && (interrupted || code == exit::INTERRUPTED),
        )
    }

    /// Can a change at `rel` change the key of a task in `sel` (other than by a sync)?
    fn touches(&self, sel: &HashSet<String>, rel: &str) -> bool {
        sel.iter().any(|t| {
            let Some(node) = self.project.graph.get(t) else {
                return false;
            };
            let kind = node.task.kind();
            node.task.watch_paths().iter().any(|p| {
                (p.is_empty() || lifeos_cache::names::is_at_or_under(rel, p))
                    && !self.cov.covers(t, kind, rel)
                    && node.task.watch_reads(&self.project.root, rel)
            })
        })
    }
}

/// Milliseconds, to a tenth.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The running container of a service, if one runs; Err when the engine did not answer
/// (nothing is known: not a reason to re-create or re-base anything).
async fn running(
    d: &lifeos_tasks::docker::Client,
    project: &str,
    task: &str,
) -> Result<Option<String>, ()> {
    let found = ops::find(d, project, Some(task)).await.map_err(drop)?;
    Ok(found
        .into_iter()
        .find(|c| c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running"))
        .and_then(|c| c.id))
}

/// Is this container still running? One inspect (a list with label filters costs the engine
/// a pass over every container).
async fn still_running(d: &lifeos_tasks::docker::Client, id: &str) -> bool {
    d.inspect_container(id, None)
        .await
        .ok()
        .and_then(|c| c.state)
        .and_then(|s| s.running)
        .unwrap_or(false)
}
