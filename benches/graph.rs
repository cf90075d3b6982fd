//! Graph building and keying of a 10,000-node synthetic graph (criterion).
//! Nodes are trivial exec tasks; each depends on up to three earlier ones.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use lifeos_cache::{CacheDir, Snapshot};
use lifeos_engine::scheduler::{self, Force, RunContext};
use lifeos_engine::{Graph, Node, RunOptions, TaskSpec};
use lifeos_tasks::exec::{Command, ExecTask};

const N: usize = 10_000;

fn nodes() -> Vec<Node> {
    (0..N)
        .map(|i| {
            let mut spec = TaskSpec::new(format!("t{i}"));
            // A deterministic spread of fan-in: i-1, i/2, i/3.
            for d in [i.wrapping_sub(1), i / 2, i / 3] {
                if d < i && !spec.deps.contains(&format!("t{d}")) {
                    spec.deps.push(format!("t{d}"));
                }
            }
            let task = ExecTask::new(
                Command::Shell(format!("true {i}")),
                String::new(),
                vec![],
                vec![],
            )
            .unwrap();
            Node {
                spec,
                task: Arc::new(task),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("graph_10k");
    g.sample_size(10);
    g.bench_function("build", |b| {
        b.iter_batched(
            nodes,
            |n| Graph::new(n).unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    let graph = Arc::new(Graph::new(nodes()).unwrap());
    // The CLI runs on a current-thread runtime; measure the same.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    g.bench_function("key_and_plan", |b| {
        b.iter(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let drain = rt.spawn(async move { while rx.recv().await.is_some() {} });
            let report = rt.block_on(scheduler::run(
                graph.clone(),
                graph.select(&[]).unwrap(),
                RunOptions {
                    jobs: 2,
                    keep_going: false,
                    force: Force::None,
                    dry_run: true,
                    run_id: "bench".into(),
                },
                RunContext {
                    root: dir.path().to_path_buf(),
                    cache: CacheDir::new(dir.path().join(".lifeos")),
                    actions: Arc::new(CacheDir::new(dir.path().join(".lifeos")).records()),
                    cas: Arc::new(CacheDir::new(dir.path().join(".lifeos")).blobs()),
                    snapshot: Arc::new(Snapshot::open(dir.path(), None)),
                    events: tx,
                    cancel: Default::default(),
                },
            ));
            rt.block_on(drain).unwrap();
            assert_eq!(report.unwrap().summary.would_run, N);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
