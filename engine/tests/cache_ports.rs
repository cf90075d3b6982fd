//! The scheduler talks to the cache only through the `ActionCache` and `Cas` ports: any
//! implementation plugs in (here counting in-memory stores), and a layered store answers
//! from its second layer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lifeos_cache::{
    ActionCache, ActionKey, ActionRecord, CacheDir, Cas, FileDigest, LayeredActionCache,
    LayeredCas, Snapshot,
};
use lifeos_engine::scheduler::{self, Force, RunContext, RunReport};
use lifeos_engine::{
    ExecCx, Executed, Graph, KeyCx, Node, Outcome, Probe, ProbeCx, RunOptions, Task, TaskError,
    TaskInputs, TaskSpec,
};
use serde_json::json;

/// Records in a map, counting what the scheduler asks and stores.
#[derive(Default)]
struct CountingActions {
    records: Mutex<HashMap<ActionKey, ActionRecord>>,
    lookups: AtomicUsize,
    puts: AtomicUsize,
}

#[async_trait]
impl ActionCache for CountingActions {
    async fn lookup(&self, _task: &str, key: &ActionKey) -> Option<Cow<'_, ActionRecord>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.records
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .map(Cow::Owned)
    }
    async fn put(&self, record: ActionRecord) -> io::Result<()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.records.lock().unwrap().insert(record.key, record);
        Ok(())
    }
}

/// Blobs in a map, counting writes.
#[derive(Default)]
struct CountingCas {
    blobs: Mutex<HashMap<FileDigest, Vec<u8>>>,
    puts: AtomicUsize,
}

impl Cas for CountingCas {
    fn contains(&self, d: &FileDigest) -> bool {
        self.blobs.lock().unwrap().contains_key(d)
    }
    fn get(&self, d: &FileDigest) -> io::Result<Vec<u8>> {
        self.blobs
            .lock()
            .unwrap()
            .get(d)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn put(&self, bytes: &[u8]) -> io::Result<FileDigest> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        let d = FileDigest::of(bytes);
        self.blobs.lock().unwrap().insert(d, bytes.to_vec());
        Ok(d)
    }
    fn put_file(&self, src: &Path) -> io::Result<FileDigest> {
        self.put(&std::fs::read(src)?)
    }
    fn restore_to(&self, d: &FileDigest, dst: &Path, _mode: u32) -> io::Result<()> {
        std::fs::write(dst, self.get(d)?)
    }
    fn verify(&self, d: &FileDigest) -> io::Result<()> {
        self.get(d).map(drop)
    }
}

/// Cached when the store has a record for its key; counts executions.
struct Fake {
    name: String,
    runs: Arc<AtomicUsize>,
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
        self.runs.fetch_add(1, Ordering::SeqCst);
        cx.log.line(lifeos_engine::Stream::Stdout, "made it");
        Ok(Executed::default())
    }
}

fn graph(runs: &Arc<AtomicUsize>) -> Arc<Graph> {
    let node = |name: &str, deps: &[&str]| {
        let mut spec = TaskSpec::new(name);
        spec.deps = deps.iter().map(|d| d.to_string()).collect();
        Node {
            spec,
            task: Arc::new(Fake {
                name: name.into(),
                runs: runs.clone(),
            }),
        }
    };
    Arc::new(Graph::new(vec![node("a", &[]), node("b", &["a"])]).unwrap())
}

async fn run(
    dir: &Path,
    g: &Arc<Graph>,
    actions: Arc<dyn ActionCache>,
    cas: Arc<dyn Cas>,
) -> RunReport {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    scheduler::run(
        g.clone(),
        g.select(&[]).unwrap(),
        RunOptions {
            jobs: 2,
            keep_going: false,
            force: Force::None,
            dry_run: false,
            run_id: "test".into(),
        },
        RunContext {
            root: dir.to_path_buf(),
            cache: CacheDir::new(dir.join(".lifeos")),
            actions,
            cas,
            snapshot: Arc::new(Snapshot::open(dir, None)),
            events: tx,
            cancel: Default::default(),
        },
    )
    .await
    .unwrap()
}

fn all(r: &RunReport, what: fn(&Outcome) -> bool) -> bool {
    r.outcomes.iter().all(|(_, o)| what(o))
}

#[tokio::test]
async fn a_plugged_in_store_sees_every_lookup_and_write_and_answers_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let g = graph(&runs);
    let actions = Arc::new(CountingActions::default());
    let cas = Arc::new(CountingCas::default());

    let r = run(dir.path(), &g, actions.clone(), cas.clone()).await;
    assert!(all(&r, |o| matches!(o, Outcome::Ran { .. })), "{r:?}");
    assert_eq!(actions.lookups.load(Ordering::SeqCst), 2);
    assert_eq!(actions.puts.load(Ordering::SeqCst), 2);
    // Per task: its log and its fingerprint.
    assert_eq!(cas.puts.load(Ordering::SeqCst), 4);
    let records = actions.records.lock().unwrap().clone();
    for rec in records.values() {
        let fp = cas
            .get(&rec.fingerprint)
            .expect("fingerprint in the plugged CAS");
        assert!(String::from_utf8_lossy(&fp).contains("\"fake\""));
        let log = cas.get(&rec.log.expect("a log")).unwrap();
        assert_eq!(log, b"made it\n");
    }
    assert!(
        !dir.path().join(".lifeos/ac").exists(),
        "nothing went to the local store"
    );

    let r = run(dir.path(), &g, actions.clone(), cas.clone()).await;
    assert!(all(&r, |o| matches!(o, Outcome::Cached { .. })), "{r:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "nothing executed again");
    assert_eq!(actions.lookups.load(Ordering::SeqCst), 4);
    assert_eq!(
        actions.puts.load(Ordering::SeqCst),
        2,
        "a hit writes nothing"
    );
}

#[tokio::test]
async fn a_layered_store_answers_from_its_second_layer_and_fills_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let g = graph(&runs);
    // "Another machine" fills the second layer.
    let second = Arc::new(CountingActions::default());
    let second_cas = Arc::new(CountingCas::default());
    run(dir.path(), &g, second.clone(), second_cas.clone()).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // This machine: an empty first layer in front of it.
    let first = Arc::new(CountingActions::default());
    let first_cas = Arc::new(CountingCas::default());
    let layered = Arc::new(LayeredActionCache::new(first.clone(), second.clone()));
    let cas = Arc::new(LayeredCas::new(first_cas.clone(), second_cas.clone()));
    let r = run(dir.path(), &g, layered.clone(), cas.clone()).await;
    assert!(all(&r, |o| matches!(o, Outcome::Cached { .. })), "{r:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "nothing executed again");
    assert_eq!(
        second.lookups.load(Ordering::SeqCst),
        4,
        "2 + the 2 misses of the first"
    );
    assert_eq!(first.records.lock().unwrap().len(), 2, "written back");

    // Next run: the first layer answers alone.
    let r = run(dir.path(), &g, layered, cas).await;
    assert!(all(&r, |o| matches!(o, Outcome::Cached { .. })), "{r:?}");
    assert_eq!(second.lookups.load(Ordering::SeqCst), 4);
    assert_eq!(first.lookups.load(Ordering::SeqCst), 4);
}
