//! Runs against each other and against faults: one run at a time per cache (the run lock),
//! SIGKILL of lifeos (nothing it started lives on), a closed stdout, a frozen engine.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::Project;

/// Wait (bounded generously) until `cond` holds; panics with `what` when it never does.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Four tasks that each append their name to `counter.log` once per execution; one of them
/// empties and refills its output directory like a build does (`rm -rf dist` first).
fn counter_project() -> Project {
    let p = Project::new();
    p.file("src/a.txt", "a").config(
        r#"
[tasks.a]
kind = "exec"
run = "echo a >> counter.log; sleep 0.1"
inputs = ["src/a.txt"]

[tasks.b]
kind = "exec"
run = "echo b >> counter.log; sleep 0.1"
deps = ["a"]

[tasks.c]
kind = "exec"
run = "echo c >> counter.log; sleep 0.1"

[tasks.dist]
kind = "exec"
run = "echo dist >> counter.log; rm -rf dist; mkdir dist; sleep 0.2; echo built > dist/app.js"
outputs = ["dist/**"]
deps = ["c"]
"#,
    );
    p
}

#[test]
fn simultaneous_runs_on_one_cache_execute_each_task_once() {
    for pair in 0..10 {
        let p = counter_project();
        let spawn = || {
            p.cmd(&["--json", "run"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        for o in [&a, &b] {
            assert!(
                o.status.success(),
                "pair {pair}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let mut lines: Vec<String> = p.read("counter.log").lines().map(String::from).collect();
        lines.sort();
        assert_eq!(
            lines,
            ["a", "b", "c", "dist"],
            "pair {pair}: every task executes once per key, whichever run executes it"
        );
        // What was recorded is whole: a third run restores nothing and reruns nothing.
        let r = p.json(&["run"]);
        assert_eq!(r.cached().len(), 4, "pair {pair}: {}", r.all());
        assert_eq!(p.read("dist/app.js"), "built\n");
    }
}

/// A project whose one task holds until the test creates `go`.
fn gated() -> Project {
    let p = Project::new();
    p.config(
        r#"
[tasks.gate]
kind = "exec"
run = "echo gate >> counter.log; touch started; while [ ! -e go ]; do sleep 0.05; done"
"#,
    );
    p
}

fn start_gated(p: &Project) -> Child {
    let first = p
        .cmd(&["--json", "run", "gate"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first run's task starts", || p.p("started").exists());
    first
}

#[test]
fn a_second_run_waits_says_for_what_and_then_skips_what_the_first_did() {
    let p = gated();
    let mut first = start_gated(&p);

    // Read-only commands do not wait.
    let plan = p.run(&["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("gate"), "{}", plan.all());

    let mut second = p
        .cmd(&["--json", "run", "gate"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = second.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = String::new();
        let _ = BufReader::new(err).read_line(&mut said);
        let _ = tx.send(said);
    });
    let said = rx.recv_timeout(Duration::from_secs(60));
    // Let both finish whatever was said, so a failure does not leave them running.
    std::fs::write(p.p("go"), "").unwrap();
    let said = said.unwrap_or_else(|_| "(the second run said nothing)".into());
    assert!(
        said.contains("waiting for another lifeos run")
            && said.contains(&format!("pid {}", first.id()))
            && said.contains("`lifeos run gate`")
            && said.contains("--no-wait"),
        "{said}"
    );
    assert!(first.wait().unwrap().success());
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success());
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events.contains(r#""outcome":"cached""#),
        "the second run sees the first's record after the wait: {events}"
    );
    assert_eq!(p.read("counter.log"), "gate\n");
}

#[test]
fn no_wait_fails_fast_with_exit_3_naming_the_other_run() {
    let p = gated();
    let mut first = start_gated(&p);
    let r = p.run(&["--no-wait", "run", "gate"]);
    std::fs::write(p.p("go"), "").unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("another lifeos run")
            && r.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        r.all()
    );
    assert_eq!(
        p.read("counter.log"),
        "gate\n",
        "the refused run ran nothing"
    );
}
