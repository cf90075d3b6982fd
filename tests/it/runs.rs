//! Runs against each other and against faults: one run at a time per cache (the run lock),
//! SIGKILL of lifeos (nothing it started lives on), a closed stdout, a frozen engine.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::Project;

/// Wait (bounded generously) until `cond` holds; panics with `what` when it never does.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_up_to(60, what, cond)
}

fn wait_up_to(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
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

#[test]
fn cache_clean_and_prune_refuse_while_a_run_holds_the_cache() {
    let p = gated();
    let mut first = start_gated(&p);
    let clean = p.run(&["cache", "clean"]);
    let prune = p.run(&["cache", "prune", "--older-than", "1d"]);
    std::fs::write(p.p("go"), "").unwrap();
    assert!(first.wait().unwrap().success());
    for r in [&clean, &prune] {
        assert_eq!(r.code, 3, "{}", r.all());
        assert!(
            r.stderr.contains("a lifeos run is using the cache")
                && r.stderr.contains(&format!("pid {}", first.id())),
            "{}",
            r.all()
        );
    }
    // The run's record survived the refused clean: the next run has nothing to do.
    let again = p.run(&["run", "gate"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(p.read("counter.log"), "gate\n", "{}", again.all());
    // With no run holding it, clean works.
    let r = p.run(&["cache", "clean"]);
    assert_eq!(r.code, 0, "{}", r.all());
}

/// A process that runs (a zombie waiting to be reaped does not count).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn sigkill(child: &mut Child) {
    // SAFETY: a plain kill(2) of the child this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

#[test]
fn sigkill_of_lifeos_takes_its_task_processes_with_it() {
    let p = Project::new();
    // The shell (the task's own process) starts `sleep` as a child of its own: both must go.
    p.config(
        r#"
[tasks.long]
kind = "exec"
run = "echo $$ > leader.pid; sleep 120 & echo $! > child.pid; wait"
"#,
    );
    let mut lifeos = p.cmd(&["run"]).stderr(Stdio::null()).spawn().unwrap();
    wait_for("the task starts its child", || {
        !p.read("child.pid").trim().is_empty() && !p.read("leader.pid").trim().is_empty()
    });
    let leader: i32 = p.read("leader.pid").trim().parse().unwrap();
    let child: i32 = p.read("child.pid").trim().parse().unwrap();
    assert!(running(leader) && running(child));
    sigkill(&mut lifeos);
    // Gone at once; the bound only keeps a regression from passing once `sleep` ends.
    wait_up_to(20, "the task's shell dies with lifeos", || !running(leader));
    wait_up_to(20, "the task's `sleep 120` dies with lifeos", || {
        !running(child)
    });
}

#[test]
fn a_one_shot_container_left_by_a_killed_run_is_removed_by_the_next_run() {
    let fx = crate::support::DockerFx::new();
    let config = |cmd: &str| {
        fx.p.config(&format!(
            r#"
[project]
name = "{id}"

[tasks.job]
kind = "container"
image = "{base}"
cmd = {cmd}
labels = {{ "lifeos.test" = "{id}" }}
"#,
            id = fx.id,
            base = fx.base(),
        ));
    };
    config(r#"["sleep", "30"]"#);
    let mut lifeos = fx.p.cmd(&["run"]).stderr(Stdio::null()).spawn().unwrap();
    wait_for("the one-shot container runs", || {
        let id = fx.container("job");
        !id.is_empty()
            && crate::support::docker_ok(&["inspect", "-f", "{{.State.Running}}", &id]).as_deref()
                == Some("true")
    });
    let left = fx.container("job");
    sigkill(&mut lifeos);
    assert_eq!(
        fx.container("job"),
        left,
        "a SIGKILLed run cannot remove its container"
    );

    config(r#"["true"]"#);
    let r = fx.p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("removed container")
            && r.stderr.contains(&format!("pid {}", lifeos.id())),
        "{}",
        r.all()
    );
    assert!(
        crate::support::docker_ok(&["inspect", &left]).is_none(),
        "the dead run's container is gone"
    );
}

/// The sweep is lazy: a run with nothing to execute never asks the engine for dead runs'
/// containers; the next run that creates a one-shot container removes them.
#[test]
fn a_cached_run_leaves_a_dead_runs_container_for_the_next_run_that_executes() {
    let fx = crate::support::DockerFx::new();
    let config = |cmd: &str| {
        fx.p.config(&format!(
            r#"
[project]
name = "{id}"

[tasks.job]
kind = "container"
image = "{base}"
cmd = {cmd}
labels = {{ "lifeos.test" = "{id}" }}
"#,
            id = fx.id,
            base = fx.base(),
        ));
    };
    config(r#"["true"]"#);
    let r = fx.p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    config(r#"["sleep", "30"]"#);
    let mut lifeos = fx.p.cmd(&["run"]).stderr(Stdio::null()).spawn().unwrap();
    wait_for("the one-shot container runs", || {
        let id = fx.container("job");
        !id.is_empty()
            && crate::support::docker_ok(&["inspect", "-f", "{{.State.Running}}", &id]).as_deref()
                == Some("true")
    });
    let left = fx.container("job");
    sigkill(&mut lifeos);

    config(r#"["true"]"#);
    let r = fx.p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stderr.contains("removed container"), "{}", r.all());
    assert_eq!(fx.container("job"), left, "a cached run does not sweep");

    config(r#"["echo", "again"]"#);
    let r = fx.p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("removed container")
            && r.stderr.contains(&format!("pid {}", lifeos.id())),
        "{}",
        r.all()
    );
    assert!(
        crate::support::docker_ok(&["inspect", &left]).is_none(),
        "the dead run's container is gone"
    );
}

/// A unix-socket proxy in front of the real engine that forwards until frozen, then holds
/// every connection open and answers nothing: an engine that froze, made for this test
/// alone (the shared dockerd is never paused).
struct FreezableEngine {
    dir: tempfile::TempDir,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FreezableEngine {
    fn start() -> Self {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let upstream = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(String::from))
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("docker.sock")).unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (frozen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(engine) = UnixStream::connect(&upstream) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), engine.try_clone().unwrap()),
                    (engine, client),
                ] {
                    let (f, s) = (f.clone(), s.clone());
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16 * 1024];
                        // Polls so that a frozen pipe can still end when the test does.
                        from.set_read_timeout(Some(Duration::from_millis(50)))
                            .unwrap();
                        loop {
                            if s.load(Ordering::SeqCst) {
                                return;
                            }
                            if f.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => {
                                    let _ = to.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        FreezableEngine { dir, frozen, stop }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FreezableEngine {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = std::os::unix::net::UnixStream::connect(self.dir.path().join("docker.sock"));
    }
}

/// A service that starts but never becomes healthy: `up` keeps asking the engine about it.
fn never_healthy(fx: &crate::support::DockerFx) {
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[tasks.slow]
kind = "service"
image = "{base}"
cmd = ["sleep", "300"]
health = {{ cmd = ["test", "-f", "/never"], interval = "200ms", retries = 10000 }}
labels = {{ "lifeos.test" = "{id}" }}
"#,
        id = fx.id,
        base = fx.base()
    ));
}

#[test]
fn an_engine_that_freezes_mid_up_fails_the_run_naming_the_call_and_the_engine() {
    let fx = crate::support::DockerFx::new();
    never_healthy(&fx);
    let engine = FreezableEngine::start();
    let lifeos =
        fx.p.cmd(&["up"])
            .env("DOCKER_HOST", engine.host())
            .env("LIFEOS_ENGINE_TIMEOUT", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    wait_for("the service's container runs", || {
        !fx.container("slow").is_empty()
    });
    engine.freeze();
    // Bounded only so that a regression fails instead of hanging the suite.
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = lifeos.id() as i32;
    std::thread::spawn(move || {
        let _ = tx.send(lifeos.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) of the lifeos this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("lifeos still waits on the frozen engine after 120s");
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the Docker engine at {} did not answer `",
            engine.host()
        )) && stderr.contains("for 2s"),
        "{stderr}"
    );
}

#[test]
fn sigterm_ends_up_like_ctrl_c_removing_what_the_run_created() {
    let fx = crate::support::DockerFx::new();
    never_healthy(&fx);
    let mut lifeos = fx.p.cmd(&["up"]).stderr(Stdio::null()).spawn().unwrap();
    wait_for("the service's container runs", || {
        !fx.container("slow").is_empty()
    });
    // SAFETY: kill(2) of the lifeos this test started.
    unsafe { libc::kill(lifeos.id() as i32, libc::SIGTERM) };
    assert_eq!(lifeos.wait().unwrap().code(), Some(130));
    assert!(fx.containers().is_empty(), "left: {:?}", fx.containers());
}

#[test]
fn sigterm_ends_logs_follow_with_130() {
    let fx = crate::support::DockerFx::new();
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[tasks.talk]
kind = "service"
image = "{base}"
cmd = ["sh", "-c", "echo hello; sleep 300"]
labels = {{ "lifeos.test" = "{id}" }}
"#,
        id = fx.id,
        base = fx.base()
    ));
    let r = fx.p.run(&["up"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let mut logs =
        fx.p.cmd(&["logs", "-f", "talk"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let mut line = String::new();
    BufReader::new(logs.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "hello\n");
    // SAFETY: kill(2) of the lifeos this test started.
    unsafe { libc::kill(logs.id() as i32, libc::SIGTERM) };
    assert_eq!(logs.wait().unwrap().code(), Some(130));
}

#[test]
fn plan_into_a_closed_pipe_exits_quietly() {
    // More lines than a pipe holds (64 KiB), so lifeos is still writing when the pipe closes.
    let p = Project::new();
    let cfg: String = (0..3000)
        .map(|i| format!("[tasks.task{i}]\nkind = \"exec\"\nrun = \"true\"\n\n"))
        .collect();
    p.config(&cfg);
    let mut plan = p
        .cmd(&["plan"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `lifeos plan | head -1` does.
    let mut out = BufReader::new(plan.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    drop(out);
    let o = plan.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!first.is_empty());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(o.status.code(), Some(0), "{stderr}");
}
