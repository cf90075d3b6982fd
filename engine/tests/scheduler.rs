//! The scheduler with a fake task kind: no processes, no Docker, just the engine's rules
//! (order, parallelism, fail-fast, keep-going, retries, timeouts, records, dry runs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lifeos_cache::{CacheDir, Snapshot};
use lifeos_engine::scheduler::{self, Force, RunContext, RunReport};
use lifeos_engine::{
    Event, ExecCx, Executed, Graph, KeyCx, Node, Outcome, Probe, ProbeCx, RunOptions, Task,
    TaskError, TaskInputs, TaskSpec,
};
use serde_json::json;

/// Fails its first `fail_times` executions, sleeps `delay` each time, and logs the peak
/// number of fake tasks executing at once.
struct Fake {
    name: String,
    delay: Duration,
    fail_times: usize,
    runs: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    order: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Task for Fake {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn config(&self) -> serde_json::Value {
        json!({ "name": self.name })
    }
    async fn inputs(&self, _: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }
    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        Ok(match cx.record {
            Some(_) => Probe::Fresh("record".into()),
            None => Probe::Missing("no record".into()),
        })
    }
    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let now = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.order.lock().unwrap().push(self.name.clone());
        let r = tokio::select! {
            _ = tokio::time::sleep(self.delay) => {
                if n < self.fail_times {
                    Err(TaskError::Failed(format!("{} failed (attempt {})", self.name, n + 1)))
                } else {
                    Ok(Executed::default())
                }
            }
            _ = cx.cancel.cancelled() => Err(TaskError::Interrupted),
        };
        self.live.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

/// (name, deps, delay ms, failures before success, retries, timeout ms)
type TaskRow<'a> = (&'a str, &'a [&'a str], u64, usize, u32, Option<u64>);

struct World {
    dir: tempfile::TempDir,
    live: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    order: Arc<Mutex<Vec<String>>>,
    runs: HashMap<String, Arc<AtomicUsize>>,
}

impl World {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            live: Default::default(),
            peak: Default::default(),
            order: Default::default(),
            runs: HashMap::new(),
        }
    }

    fn graph(&mut self, tasks: &[TaskRow]) -> Arc<Graph> {
        let nodes = tasks
            .iter()
            .map(|&(name, deps, delay, fail_times, retries, timeout)| {
                let runs = self.runs.entry(name.to_string()).or_default().clone();
                let mut spec = TaskSpec::new(name);
                spec.deps = deps.iter().map(|d| d.to_string()).collect();
                spec.retries = retries;
                spec.timeout = timeout.map(Duration::from_millis);
                Node {
                    spec,
                    task: Arc::new(Fake {
                        name: name.into(),
                        delay: Duration::from_millis(delay),
                        fail_times,
                        runs,
                        live: self.live.clone(),
                        peak: self.peak.clone(),
                        order: self.order.clone(),
                    }),
                }
            })
            .collect();
        Arc::new(Graph::new(nodes).unwrap())
    }

    fn runs(&self, name: &str) -> usize {
        self.runs[name].load(Ordering::SeqCst)
    }

    async fn run(
        &self,
        g: &Arc<Graph>,
        jobs: usize,
        keep_going: bool,
        dry_run: bool,
    ) -> (RunReport, Vec<Event>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let report = scheduler::run(
            g.clone(),
            g.select(&[]).unwrap(),
            RunOptions {
                jobs,
                keep_going,
                force: Force::None,
                dry_run,
                run_id: "test".into(),
            },
            RunContext {
                root: self.dir.path().to_path_buf(),
                cache: CacheDir::new(self.dir.path().join(".lifeos")),
                actions: Arc::new(CacheDir::new(self.dir.path().join(".lifeos")).records()),
                cas: Arc::new(CacheDir::new(self.dir.path().join(".lifeos")).blobs()),
                snapshot: Arc::new(Snapshot::open(self.dir.path(), None)),
                events: tx,
                cancel: Default::default(),
            },
        )
        .await
        .unwrap();
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (report, events)
    }
}

fn kinds(r: &RunReport) -> HashMap<String, &'static str> {
    r.outcomes
        .iter()
        .map(|(t, o)| {
            let k = match o {
                Outcome::Ran { .. } => "ran",
                Outcome::Cached { .. } => "cached",
                Outcome::Failed { .. } => "failed",
                Outcome::Skipped { .. } => "skipped",
                Outcome::Interrupted => "interrupted",
                Outcome::WouldRun { .. } => "would_run",
            };
            (t.clone(), k)
        })
        .collect()
}

#[tokio::test]
async fn a_diamond_runs_in_dependency_order_in_parallel_then_is_cached() {
    let mut w = World::new();
    let g = w.graph(&[
        ("a", &[], 10, 0, 0, None),
        ("b", &["a"], 150, 0, 0, None),
        ("c", &["a"], 150, 0, 0, None),
        ("d", &["b", "c"], 10, 0, 0, None),
    ]);
    let (r, _) = w.run(&g, 2, false, false).await;
    assert_eq!(r.exit_code(), 0);
    assert_eq!(
        w.peak.load(Ordering::SeqCst),
        2,
        "b and c ran at the same time"
    );
    let order = w.order.lock().unwrap().clone();
    assert_eq!(order.first().unwrap(), "a");
    assert_eq!(order.last().unwrap(), "d");

    let (r, _) = w.run(&g, 2, false, false).await;
    assert!(
        kinds(&r).values().all(|k| *k == "cached"),
        "{:?}",
        kinds(&r)
    );
    assert_eq!(w.runs("d"), 1);
}

#[tokio::test]
async fn jobs_bound_executions() {
    let mut w = World::new();
    let specs: Vec<(String, u64)> = (0..6).map(|i| (format!("t{i}"), 40)).collect();
    let tasks: Vec<TaskRow> = specs
        .iter()
        .map(|(n, d)| (n.as_str(), &[][..], *d, 0, 0, None))
        .collect();
    let g = w.graph(&tasks);
    let (r, _) = w.run(&g, 3, false, false).await;
    assert_eq!(r.exit_code(), 0);
    assert_eq!(w.peak.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn fail_fast_and_keep_going() {
    let mut w = World::new();
    let g = w.graph(&[
        ("bad", &[], 10, 99, 0, None),
        ("after", &["bad"], 10, 0, 0, None),
        ("other", &[], 50, 0, 0, None),
    ]);
    let (r, _) = w.run(&g, 1, false, false).await;
    let k = kinds(&r);
    assert_eq!(
        (k["bad"], k["after"], k["other"]),
        ("failed", "skipped", "skipped")
    );
    assert_eq!(r.exit_code(), 1);
    assert_eq!(w.runs("other"), 0, "nothing new starts after a failure");

    let (r, _) = w.run(&g, 1, true, false).await;
    let k = kinds(&r);
    assert_eq!(
        (k["bad"], k["after"], k["other"]),
        ("failed", "skipped", "ran")
    );
    assert_eq!(w.runs("bad"), 2, "a failure is never recorded");
}

#[tokio::test]
async fn retries_then_success_and_timeout_cancels() {
    let mut w = World::new();
    let g = w.graph(&[
        ("flaky", &[], 5, 2, 2, None),
        ("slow", &[], 10_000, 0, 0, Some(100)),
    ]);
    let t = Instant::now();
    let (r, events) = w.run(&g, 2, true, false).await;
    let k = kinds(&r);
    assert_eq!(k["flaky"], "ran");
    assert_eq!(w.runs("flaky"), 3);
    let retries = events
        .iter()
        .filter(|e| matches!(e, Event::TaskRetry { .. }))
        .count();
    assert_eq!(retries, 2);
    assert_eq!(k["slow"], "failed");
    let Outcome::Failed { error, .. } = &r.outcomes.iter().find(|(t, _)| t == "slow").unwrap().1
    else {
        unreachable!()
    };
    assert!(error.contains("timed out after"), "{error}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the timeout cancelled the task"
    );
}

#[tokio::test]
async fn a_dry_run_executes_nothing_and_writes_nothing() {
    let mut w = World::new();
    let g = w.graph(&[("a", &[], 1, 0, 0, None), ("b", &["a"], 1, 0, 0, None)]);
    let (r, _) = w.run(&g, 2, false, true).await;
    assert!(kinds(&r).values().all(|k| *k == "would_run"));
    assert_eq!(w.runs("a") + w.runs("b"), 0);
    assert!(!w.dir.path().join(".lifeos/index.json").exists());
    assert_eq!(r.fingerprints.len(), 2);
}

#[tokio::test]
async fn docker_tasks_have_slots_of_their_own() {
    let mut w = World::new();
    let g = w.graph(&[
        ("local", &[], 150, 0, 0, None),
        ("img", &[], 150, 0, 0, None),
    ]);
    // The same two tasks, one of them in the Docker class.
    let nodes: Vec<Node> = ["local", "img"]
        .iter()
        .map(|id| {
            let mut n = g.get(id).unwrap().clone();
            if *id == "img" {
                n.spec.class = lifeos_engine::Class::Docker;
            }
            n
        })
        .collect();
    let g = Arc::new(Graph::new(nodes).unwrap());
    let (r, _) = w.run(&g, 1, false, false).await;
    assert_eq!(r.exit_code(), 0);
    assert_eq!(
        w.peak.load(Ordering::SeqCst),
        2,
        "-j1 still lets a Docker task run beside a local one"
    );
}

/// Leaves `{"v": <its name>}` as its result, and records what it saw of its dependencies.
struct Relay {
    name: String,
    seen: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Task for Relay {
    fn kind(&self) -> &'static str {
        "relay"
    }
    fn config(&self) -> serde_json::Value {
        json!({ "name": self.name })
    }
    async fn inputs(&self, _: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }
    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        Ok(match cx.record {
            Some(_) => Probe::Fresh("record".into()),
            None => Probe::Missing("no record".into()),
        })
    }
    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        if !cx.deps.is_empty() {
            let seen = cx
                .deps
                .expand("${tasks.up.v} ${tasks.up.key}")
                .unwrap_or_else(|e| e);
            self.seen.lock().unwrap().push(seen);
        }
        Ok(Executed {
            data: json!({ "v": self.name }),
            ..Default::default()
        })
    }
}

#[tokio::test]
async fn a_dependency_result_reaches_the_dependant_ran_or_cached() {
    let w = World::new();
    let seen: Arc<Mutex<Vec<String>>> = Default::default();
    let node = |id: &str, deps: &[&str]| {
        let mut spec = TaskSpec::new(id);
        spec.deps = deps.iter().map(|d| d.to_string()).collect();
        Node {
            spec,
            task: Arc::new(Relay {
                name: id.into(),
                seen: seen.clone(),
            }),
        }
    };
    let g = Arc::new(Graph::new(vec![node("up", &[]), node("down", &["up"])]).unwrap());
    let (r, _) = w.run(&g, 2, false, false).await;
    assert_eq!(r.exit_code(), 0);
    let up_key = r.outcomes[0].1.key().unwrap().to_hex();
    assert_eq!(seen.lock().unwrap().clone(), vec![format!("up {up_key}")]);

    // `up` cached: its recorded data is what `down` sees (forced to run again).
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let r = scheduler::run(
        g.clone(),
        g.select(&[]).unwrap(),
        RunOptions {
            jobs: 2,
            keep_going: false,
            force: Force::Tasks(["down".to_string()].into()),
            dry_run: false,
            run_id: "test".into(),
        },
        RunContext {
            root: w.dir.path().to_path_buf(),
            cache: CacheDir::new(w.dir.path().join(".lifeos")),
            actions: Arc::new(CacheDir::new(w.dir.path().join(".lifeos")).records()),
            cas: Arc::new(CacheDir::new(w.dir.path().join(".lifeos")).blobs()),
            snapshot: Arc::new(Snapshot::open(w.dir.path(), None)),
            events: tx,
            cancel: Default::default(),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(r.outcomes[0].1, Outcome::Cached { .. }),
        "{:?}",
        r.outcomes
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(seen.lock().unwrap()[1], format!("up {up_key}"));
}

/// A task whose key covers every part of a fingerprint: files, extras, odd config text.
struct Everything;

#[async_trait]
impl Task for Everything {
    fn kind(&self) -> &'static str {
        "everything"
    }
    fn config(&self) -> serde_json::Value {
        json!({ "run": "say \"hi\"\n", "n": [1, -2.5, null], "z": { "b": true, "a": {} } })
    }
    async fn inputs(&self, _: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs {
            files: [
                ("a.txt".into(), "d1".into()),
                ("b\tc".into(), "d2+x".into()),
            ]
            .into(),
            extras: [("base_image".into(), "sha256:1".into())].into(),
        })
    }
    async fn probe(&self, _: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        Ok(Probe::Missing(String::new()))
    }
    async fn execute(&self, _: &ExecCx<'_>) -> Result<Executed, TaskError> {
        Ok(Executed::default())
    }
}

/// The scheduler keys a task from borrowed parts and builds its fingerprint only when it
/// keeps one: both must give the same key, or records would never match.
#[tokio::test]
async fn the_key_without_a_fingerprint_is_the_fingerprints_key() {
    use lifeos_engine::{DepResult, Deps, EnvVar};
    let dir = tempfile::tempdir().unwrap();
    let snapshot = Arc::new(Snapshot::open(dir.path(), None));
    let mut spec = TaskSpec::new("t");
    spec.env = vec![
        EnvVar::parse("MODE=fast \"x\""),
        EnvVar::parse("LIFEOS_TEST_SURELY_UNSET_VAR"),
    ];
    spec.secrets = vec!["LIFEOS_TEST_SURELY_UNSET_SECRET".into()];
    let node = Node {
        spec,
        task: Arc::new(Everything),
    };
    let dep = |k: &[u8]| {
        Arc::new(DepResult {
            key: lifeos_engine::Key::from_hash(blake3::hash(k)),
            task: Arc::new(Everything),
            data: serde_json::Value::Null,
        })
    };
    for deps in [
        Deps::default(),
        Deps::from_named(vec![("z.last".into(), dep(b"z")), ("a".into(), dep(b"a"))]),
    ] {
        let root = dir.path().to_path_buf();
        let keyed = scheduler::key(&node, &deps, root.clone(), snapshot.clone(), &[7; 32], None)
            .await
            .unwrap();
        let fp = scheduler::fingerprint(&node, &deps, root, snapshot.clone(), &[7; 32], None)
            .await
            .unwrap();
        assert_eq!(keyed.key, fp.key());
        assert_eq!(fp.deps.len(), deps.keys().len());
        assert_eq!(keyed.fingerprint(&node, &deps), fp);
    }
}
