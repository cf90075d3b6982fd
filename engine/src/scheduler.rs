//! Runs a selection of the graph. One loop owns the state (remaining dependencies, outcomes);
//! each ready node is polled once in place and, if it has to wait, runs on as its own tokio
//! task: key → cache check → execute → record.
//! Fail-fast by default: after a failure no new task starts, running ones finish.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use lifeos_cache::{ActionCache, ActionRecord, CacheDir, Cas, Snapshot};
use petgraph::stable_graph::NodeIndex;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache_layer::{CacheLayer, Check};
use crate::deps::{DepResult, Deps};
use crate::event::{Event, Outcome, Reason, Summary};
use crate::fingerprint::{self, Fingerprint, Key, FINGERPRINT_VERSION};
use crate::graph::Graph;
use crate::redact::Redactor;
use crate::task::{
    CachePolicy, Class, ExecCx, KeyCx, LogSink, Node, Probe, ProbeCx, TaskError, TaskInputs,
};

#[derive(Debug, Clone, Default)]
pub enum Force {
    #[default]
    None,
    All,
    Tasks(HashSet<String>),
}

impl Force {
    fn includes(&self, id: &str) -> bool {
        match self {
            Force::None => false,
            Force::All => true,
            Force::Tasks(t) => t.contains(id),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub jobs: usize,
    pub keep_going: bool,
    pub force: Force,
    /// `plan`: compute keys and decisions, execute nothing, change nothing.
    pub dry_run: bool,
    pub run_id: String,
}

/// What a run needs from outside: where things are and where events go.
pub struct RunContext {
    pub root: PathBuf,
    /// The local cache directory: the per-cache key secrets are hashed with.
    pub cache: CacheDir,
    /// Records by key (locally the `RecordStore`, its index opened by the caller while the
    /// config parses); any `ActionCache` will do, a layered local→remote one included.
    pub actions: Arc<dyn ActionCache>,
    /// Outputs, logs and fingerprints by digest (locally the `BlobStore`).
    pub cas: Arc<dyn Cas>,
    pub snapshot: Arc<Snapshot>,
    pub events: UnboundedSender<Event>,
    pub cancel: CancellationToken,
}

#[derive(Clone)]
pub struct RunReport {
    pub outcomes: Vec<(String, Outcome)>,
    /// Per task, in the order of `outcomes`: what it handed its dependants (successful tasks
    /// only) and how long it took here, for the run summary (`--summary`).
    pub details: Vec<TaskDetail>,
    pub summary: Summary,
    pub interrupted: bool,
    /// `plan` only: each task's fingerprint, for `explain`.
    pub fingerprints: HashMap<String, Fingerprint>,
}

/// A finished task's result and time, beside its outcome.
#[derive(Clone, Default)]
pub struct TaskDetail {
    pub result: Option<Arc<DepResult>>,
    pub took: Duration,
}

impl std::fmt::Debug for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunReport")
            .field("outcomes", &self.outcomes)
            .field("summary", &self.summary)
            .field("interrupted", &self.interrupted)
            .finish_non_exhaustive()
    }
}

impl RunReport {
    /// 0 ok, 1 a task failed, 3 an environment problem, 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            return 130;
        }
        let failed = self.outcomes.iter().filter_map(|(_, o)| match o {
            Outcome::Failed { environment, .. } => Some(*environment),
            _ => None,
        });
        let mut code = 0;
        for env in failed {
            code = if env { 3 } else { code.max(1) };
            if code == 3 {
                break;
            }
        }
        code
    }
}

struct Shared {
    root: PathBuf,
    snapshot: Arc<Snapshot>,
    cache: CacheLayer,
    secret_key: [u8; 32],
    redactor: Arc<Redactor>,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
    opts: RunOptions,
    fingerprints: std::sync::Mutex<HashMap<String, Fingerprint>>,
    /// `-j`: how many tasks execute at once. Cache checks do not take a slot.
    exec_slots: tokio::sync::Semaphore,
    /// The same number again for `Class::Docker` tasks.
    docker_slots: tokio::sync::Semaphore,
    /// Set by the first failure (fail-fast): tasks not yet executing will not start.
    stopped_by: std::sync::Mutex<Option<String>>,
}

/// Run `selection` (topologically ordered node indices of `graph`).
pub async fn run(
    graph: Arc<Graph>,
    selection: Vec<NodeIndex>,
    opts: RunOptions,
    cx: RunContext,
) -> std::io::Result<RunReport> {
    let started = Instant::now();
    let cache = CacheLayer {
        actions: cx.actions,
        cas: cx.cas,
    };
    let secret_key = if selection
        .iter()
        .any(|&i| !graph.node(i).spec.secrets.is_empty())
    {
        cx.cache.secret_key()?
    } else {
        [0; 32]
    };
    let redactor = Arc::new(Redactor::for_graph(&graph));
    for w in cache.take_warnings() {
        let _ = cx.events.send(Event::Warning { message: w });
    }
    let jobs = opts.jobs.max(1);
    let keep_going = opts.keep_going;
    let shared = Arc::new(Shared {
        root: cx.root.clone(),
        snapshot: cx.snapshot.clone(),
        cache,
        secret_key,
        redactor,
        events: cx.events.clone(),
        cancel: cx.cancel.clone(),
        opts,
        fingerprints: Default::default(),
        exec_slots: tokio::sync::Semaphore::new(jobs),
        docker_slots: tokio::sync::Semaphore::new(jobs),
        stopped_by: Default::default(),
    });
    // Cache checks are cheap and mostly wait on I/O: let them run well ahead of `-j`.
    let check_limit = (jobs * 8).max(64);
    let _ = cx.events.send(Event::RunStarted {
        run_id: shared.opts.run_id.clone(),
        tasks: selection
            .iter()
            .map(|&i| graph.node(i).spec.id.clone())
            .collect(),
    });

    // Position in the selection, by node index (dense: the graph never removes nodes).
    let mut pos: Vec<Option<usize>> = vec![None; graph.node_bound()];
    for (p, &i) in selection.iter().enumerate() {
        pos[i.index()] = Some(p);
    }
    let mut remaining: Vec<usize> = selection
        .iter()
        .map(|&i| {
            graph
                .dependencies(i)
                .filter(|d| pos[d.index()].is_some())
                .count()
        })
        .collect();
    let mut ready: VecDeque<usize> = (0..selection.len())
        .filter(|&p| remaining[p] == 0)
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; selection.len()];
    // What each finished node hands its dependants (its key and record data), with its
    // name, shared by every dependant's `Deps`.
    let mut results: Vec<Option<(Arc<str>, Arc<DepResult>)>> = vec![None; selection.len()];
    let mut stopped_by: Option<String> = None;
    let mut took: Vec<Duration> = vec![Duration::ZERO; selection.len()];
    let mut running: JoinSet<(usize, Outcome, Option<Value>, Duration)> = JoinSet::new();
    // Nodes whose check finished on its first poll (a cached task with nothing to wait for):
    // they never become tokio tasks, which on a no-op of 10,000 was a third of the loop.
    let mut finished: VecDeque<(usize, Outcome, Option<Value>, Duration)> = VecDeque::new();
    let mut inline_streak = 0u32;

    loop {
        while running.len() < check_limit && stopped_by.is_none() && !shared.cancel.is_cancelled() {
            let Some(p) = ready.pop_front() else { break };
            let i = selection[p];
            // The graph (an Arc), not a clone of the node: no 10,000 spec clones.
            let graph = graph.clone();
            let deps = Deps::from_named(
                graph
                    .dependencies(i)
                    .filter_map(|d| pos[d.index()])
                    .map(|dp| {
                        results[dp]
                            .clone()
                            .expect("dependency finished with a result")
                    })
                    .collect(),
            );
            let shared = shared.clone();
            let mut job = Box::pin(async move {
                let node = graph.node(i);
                let id = node.spec.id.clone();
                let t0 = Instant::now();
                let (outcome, data) = std::panic::AssertUnwindSafe(process(node, deps, &shared))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        let failed = Outcome::Failed {
                            key: None,
                            error: "task panicked (a lifeos bug)".into(),
                            environment: false,
                            log_tail: vec![],
                        };
                        (failed, None)
                    });
                let elapsed = t0.elapsed();
                let _ = shared.events.send(Event::TaskFinished {
                    task: id,
                    outcome: outcome.clone(),
                    duration: elapsed,
                });
                (p, outcome, data, elapsed)
            });
            // One poll here; whatever has to wait is spawned and polled again by tokio (the
            // resource it waits on registers the task's waker then).
            let mut noop = std::task::Context::from_waker(std::task::Waker::noop());
            match job.as_mut().poll(&mut noop) {
                std::task::Poll::Ready(done) => finished.push_back(done),
                std::task::Poll::Pending => {
                    running.spawn(job);
                }
            }
        }
        let (p, outcome, data, elapsed) = if let Some(done) = finished.pop_front() {
            // Let the UI and Ctrl-C in now and then during a long run of inline checks.
            inline_streak += 1;
            if inline_streak.is_multiple_of(256) {
                tokio::task::yield_now().await;
            }
            done
        } else {
            match running.join_next().await {
                Some(done) => done.expect("task futures catch their panics"),
                None => break,
            }
        };
        took[p] = elapsed;
        for w in shared.cache.take_warnings() {
            let _ = shared.events.send(Event::Warning { message: w });
        }
        for w in shared.snapshot.take_warnings() {
            let _ = shared.events.send(Event::Warning { message: w });
        }
        if outcome.is_success() {
            let node = graph.node(selection[p]);
            results[p] = outcome.key().map(|key| {
                let r = DepResult {
                    key,
                    task: node.task.clone(),
                    data: data.unwrap_or_default(),
                };
                (Arc::from(node.spec.id.as_str()), Arc::new(r))
            });
            for d in graph.dependents(selection[p]) {
                if let Some(dp) = pos[d.index()] {
                    remaining[dp] -= 1;
                    if remaining[dp] == 0 {
                        ready.push_back(dp);
                    }
                }
            }
        } else if matches!(outcome, Outcome::Failed { .. }) && !keep_going && stopped_by.is_none() {
            let id = graph.node(selection[p]).spec.id.clone();
            *shared.stopped_by.lock().unwrap() = Some(id.clone());
            stopped_by = Some(id);
        }
        outcomes[p] = Some(outcome);
    }

    // Whatever did not run: say why, in topological order so causes come first.
    let interrupted = shared.cancel.is_cancelled();
    for p in 0..selection.len() {
        if outcomes[p].is_some() {
            continue;
        }
        let i = selection[p];
        let blocked = graph.dependencies(i).find_map(|d| {
            let dp = pos[d.index()]?;
            match outcomes[dp].as_ref() {
                Some(Outcome::Failed { .. }) => {
                    Some(format!("dependency {} failed", graph.node(d).spec.id))
                }
                Some(Outcome::Skipped { .. }) => {
                    Some(format!("dependency {} was skipped", graph.node(d).spec.id))
                }
                Some(Outcome::Interrupted) => Some(format!(
                    "dependency {} was interrupted",
                    graph.node(d).spec.id
                )),
                _ => None,
            }
        });
        let outcome = match (blocked, &stopped_by) {
            (Some(because), _) => Outcome::Skipped { because },
            (None, _) if interrupted => Outcome::Skipped {
                because: "run interrupted".into(),
            },
            (None, Some(f)) => Outcome::Skipped {
                because: format!("run stopped after {f} failed (--keep-going runs the rest)"),
            },
            (None, None) => Outcome::Skipped {
                because: "not reached".into(),
            },
        };
        let _ = shared.events.send(Event::TaskFinished {
            task: graph.node(i).spec.id.clone(),
            outcome: outcome.clone(),
            duration: Duration::ZERO,
        });
        outcomes[p] = Some(outcome);
    }

    if !shared.opts.dry_run {
        shared.cache.actions.flush()?;
        shared.snapshot.save()?;
    }
    let mut summary = Summary {
        wall_ms: started.elapsed().as_millis() as u64,
        files_hashed: shared.snapshot.files_hashed(),
        ..Default::default()
    };
    for o in outcomes.iter().flatten() {
        match o {
            Outcome::Ran { .. } => summary.ran += 1,
            Outcome::Cached { saved_ms, .. } => {
                summary.cached += 1;
                summary.saved_ms += saved_ms;
            }
            Outcome::Failed { .. } => summary.failed += 1,
            Outcome::Skipped { .. } => summary.skipped += 1,
            Outcome::Interrupted => summary.interrupted += 1,
            Outcome::WouldRun { .. } => summary.would_run += 1,
        }
    }
    let _ = cx.events.send(Event::RunFinished {
        summary: summary.clone(),
    });
    let fingerprints = std::mem::take(&mut *shared.fingerprints.lock().unwrap());
    let details = results
        .into_iter()
        .zip(took)
        .map(|(result, took)| TaskDetail {
            result: result.map(|(_, r)| r),
            took,
        })
        .collect();
    Ok(RunReport {
        details,
        outcomes: selection
            .iter()
            .zip(outcomes)
            .map(|(&i, o)| {
                (
                    graph.node(i).spec.id.clone(),
                    o.expect("every node has an outcome"),
                )
            })
            .collect(),
        summary,
        interrupted,
        fingerprints,
    })
}

fn failed(key: Option<Key>, e: TaskError, redactor: &Redactor, log_tail: Vec<String>) -> Outcome {
    match e {
        TaskError::Interrupted => Outcome::Interrupted,
        TaskError::Failed(m) => Outcome::Failed {
            key,
            error: redactor.redact(&m),
            environment: false,
            log_tail,
        },
        TaskError::Environment(m) => Outcome::Failed {
            key,
            error: redactor.redact(&m),
            environment: true,
            log_tail,
        },
    }
}

/// Build the fingerprint of a node whose dependencies are done.
pub async fn fingerprint(
    node: &Node,
    deps: &Deps,
    root: PathBuf,
    snapshot: Arc<Snapshot>,
    secret_key: &[u8; 32],
    previous: Option<&ActionRecord>,
) -> Result<Fingerprint, TaskError> {
    let keyed = key(node, deps, root, snapshot, secret_key, previous).await?;
    Ok(keyed.fingerprint(node, deps))
}

/// A task's key and what went into it beyond its config and dependencies. A cache hit
/// needs only the key; the [`Fingerprint`] is built when something keeps or shows it.
pub struct Keyed {
    pub key: Key,
    inputs: TaskInputs,
    env: BTreeMap<String, Option<String>>,
    secrets: BTreeMap<String, String>,
}

impl Keyed {
    /// The fingerprint whose key is `self.key`.
    pub fn fingerprint(&self, node: &Node, deps: &Deps) -> Fingerprint {
        Fingerprint {
            version: FINGERPRINT_VERSION,
            kind: node.task.kind().to_string(),
            config: node.task.config(),
            inputs: self.inputs.files.clone(),
            env: self.env.clone(),
            secrets: self.secrets.clone(),
            deps: deps.keys(),
            extras: self.inputs.extras.clone(),
        }
    }
}

/// Key a node whose dependencies are done, without building its fingerprint.
pub async fn key(
    node: &Node,
    deps: &Deps,
    root: PathBuf,
    snapshot: Arc<Snapshot>,
    secret_key: &[u8; 32],
    previous: Option<&ActionRecord>,
) -> Result<Keyed, TaskError> {
    let cx = KeyCx {
        root,
        snapshot,
        previous,
        deps,
    };
    let inputs = node.task.inputs(&cx).await?;
    let env: BTreeMap<String, Option<String>> = node
        .spec
        .env
        .iter()
        .map(|e| {
            let v = e.value.clone().or_else(|| std::env::var(&e.name).ok());
            (e.name.clone(), v)
        })
        .collect();
    let secrets: BTreeMap<String, String> = node
        .spec
        .secrets
        .iter()
        .map(|s| {
            let h = match std::env::var(s) {
                Ok(v) => blake3::keyed_hash(secret_key, v.as_bytes())
                    .to_hex()
                    .to_string(),
                Err(_) => "unset".to_string(),
            };
            (s.clone(), h)
        })
        .collect();
    let key = fingerprint::key_of(fingerprint::Fields {
        version: FINGERPRINT_VERSION,
        kind: node.task.kind(),
        config: |out: &mut Vec<u8>| node.task.write_config(out),
        inputs: &inputs.files,
        env: &env,
        secrets: &secrets,
        deps: deps.iter_keys(),
        extras: &inputs.extras,
    });
    Ok(Keyed {
        key,
        inputs,
        env,
        secrets,
    })
}

/// Key, cache check, execute. The outcome, and on success the data dependants get.
async fn process(node: &Node, deps: Deps, sh: &Shared) -> (Outcome, Option<Value>) {
    let spec = &node.spec;
    let keyed = match key(
        node,
        &deps,
        sh.root.clone(),
        sh.snapshot.clone(),
        &sh.secret_key,
        sh.cache.latest(&spec.id),
    )
    .await
    {
        Ok(k) => k,
        Err(e) => return (failed(None, e, &sh.redactor, vec![]), None),
    };
    let key = keyed.key;
    if sh.opts.dry_run {
        sh.fingerprints
            .lock()
            .unwrap()
            .insert(spec.id.clone(), keyed.fingerprint(node, &deps));
    }

    // The cache check: a layer in front of the executor.
    let forced = sh.opts.force.includes(&spec.id);
    let reason = match sh.cache.check(spec, &key, forced).await {
        Check::Run(reason) => reason,
        Check::Probe(record) => {
            let probe = node
                .task
                .probe(&ProbeCx {
                    root: &sh.root,
                    snapshot: &sh.snapshot,
                    key,
                    record: record.as_deref(),
                    blobs: &sh.cache.cas,
                    dry_run: sh.opts.dry_run,
                    deps: &deps,
                })
                .await;
            match probe.map(Probe::found) {
                Ok(Ok((location, data))) => {
                    let saved_ms = record.as_ref().map(|r| r.duration_ms).unwrap_or(0);
                    // What dependants get: what the probe found, else what the record says.
                    let result = data
                        .clone()
                        .or_else(|| record.as_ref().map(|r| r.data.clone()));
                    if !sh.opts.dry_run {
                        let fp = || keyed.fingerprint(node, &deps);
                        let adopted = sh.cache.adopt(node, fp, key, record.as_deref(), data);
                        if let Err(e) = adopted.await {
                            return (failed(Some(key), e, &sh.redactor, vec![]), None);
                        }
                        for w in node.task.writes() {
                            sh.snapshot.invalidate(w);
                        }
                    }
                    // Say so when the record came from a remote cache.
                    let location = match sh.cache.actions.origin(&key) {
                        Some(o) => format!("{location}, from the {o}"),
                        None => location,
                    };
                    let cached = Outcome::Cached {
                        key,
                        location,
                        saved_ms,
                    };
                    return (cached, result);
                }
                Ok(Err(detail)) => match &record {
                    Some(_) => Reason::ResultMissing { detail },
                    None => sh
                        .cache
                        .reason_from_history(&spec.id, &keyed.fingerprint(node, &deps)),
                },
                Err(e) => return (failed(Some(key), e, &sh.redactor, vec![]), None),
            }
        }
    };
    if sh.opts.dry_run {
        return (Outcome::WouldRun { key, reason }, None);
    }

    let slots = match spec.class {
        Class::Local => &sh.exec_slots,
        Class::Docker => &sh.docker_slots,
    };
    let _slot = tokio::select! {
        s = slots.acquire() => s.expect("the semaphore is never closed"),
        _ = sh.cancel.cancelled() => return (Outcome::Skipped { because: "run interrupted".into() }, None),
    };
    if let Some(f) = sh.stopped_by.lock().unwrap().clone() {
        let skipped = Outcome::Skipped {
            because: format!("run stopped after {f} failed (--keep-going runs the rest)"),
        };
        return (skipped, None);
    }
    // Boxed: only a miss pays for the executor's state; every node's future stays small.
    let fp = keyed.fingerprint(node, &deps);
    let (outcome, data) = Box::pin(execute(node, sh, &fp, key, reason, &deps)).await;
    // Fail-fast: mark the run stopped before this slot frees up for a waiting task.
    if matches!(outcome, Outcome::Failed { .. }) && !sh.opts.keep_going {
        sh.stopped_by
            .lock()
            .unwrap()
            .get_or_insert_with(|| spec.id.clone());
    }
    (outcome, data)
}

/// Execute a task that missed the cache (with retries and timeout) and record its success.
async fn execute(
    node: &Node,
    sh: &Shared,
    fp: &Fingerprint,
    key: Key,
    reason: Reason,
    deps: &Deps,
) -> (Outcome, Option<Value>) {
    let spec = &node.spec;
    let _ = sh.events.send(Event::TaskStarted {
        task: spec.id.clone(),
        key,
        reason: reason.clone(),
    });
    let log = LogSink::new(&spec.id, sh.events.clone(), sh.redactor.clone());
    // Declared values may name dependency results (`${tasks.db.port}`).
    let mut env: Vec<(String, String)> = Vec::with_capacity(fp.env.len());
    for (k, v) in &fp.env {
        let Some(v) = v else { continue };
        // Only values written in the config; a host's value is passed as it is.
        let declared = spec.env.iter().any(|e| &e.name == k && e.value.is_some());
        if !declared {
            env.push((k.clone(), v.clone()));
            continue;
        }
        match deps.expand(v) {
            Ok(v) => env.push((k.clone(), v)),
            Err(e) => {
                let e = TaskError::Failed(format!("env {k}: {e}"));
                return (failed(Some(key), e, &sh.redactor, vec![]), None);
            }
        }
    }
    env.extend(
        spec.secrets
            .iter()
            .filter_map(|s| std::env::var(s).ok().map(|v| (s.clone(), v))),
    );
    let attempts = spec.retries + 1;
    let t0 = Instant::now();
    let mut attempt = 1;
    let executed = loop {
        let token = sh.cancel.child_token();
        let cx = ExecCx {
            root: &sh.root,
            snapshot: &sh.snapshot,
            key,
            env: env.clone(),
            blobs: &sh.cache.cas,
            log: log.clone(),
            cancel: token.clone(),
            run_id: &sh.opts.run_id,
            deps,
            forced: sh.opts.force.includes(&spec.id),
        };
        let fut = node.task.execute(&cx);
        tokio::pin!(fut);
        let result = match spec.timeout {
            Some(t) => tokio::select! {
                r = &mut fut => r,
                _ = tokio::time::sleep(t) => {
                    // Let the task clean up (kill its processes) before reporting.
                    token.cancel();
                    let _ = fut.await;
                    Err(TaskError::Failed(format!("timed out after {}", crate::duration::show(t))))
                }
            },
            None => fut.await,
        };
        if sh.cancel.is_cancelled() {
            return (Outcome::Interrupted, None);
        }
        for w in node.task.writes() {
            sh.snapshot.invalidate(w);
        }
        match result {
            Ok(ex) => break ex,
            Err(TaskError::Failed(m)) if attempt < attempts => {
                let _ = sh.events.send(Event::TaskRetry {
                    task: spec.id.clone(),
                    attempt: attempt + 1,
                    of: attempts,
                    error: sh.redactor.redact(&m),
                });
                attempt += 1;
            }
            Err(e) => return (failed(Some(key), e, &sh.redactor, log.tail(20)), None),
        }
    };
    let duration_ms = t0.elapsed().as_millis() as u64;
    let log_blob = match sh.cache.store_log(&log.contents()) {
        Ok(d) => Some(d),
        Err(e) => return (failed(Some(key), e, &sh.redactor, vec![]), None),
    };
    let data = executed.data.clone();
    if spec.cache != CachePolicy::Never {
        let recorded = sh
            .cache
            .record(node, fp, key, duration_ms, log_blob, executed);
        if let Err(e) = recorded.await {
            return (failed(Some(key), e, &sh.redactor, vec![]), None);
        }
    }
    (Outcome::Ran { key, reason }, Some(data))
}
