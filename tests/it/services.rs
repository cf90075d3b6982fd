//! `service` and `container` kinds and `up/down/status/logs`, on busybox containers
//! (the Postgres/Redis flows are in `postgres.rs`).

use std::time::{Duration, Instant};

use crate::support::{docker, docker_ok, free_port, started, DockerFx};

/// A tiny TCP service with a healthcheck and a named volume, and a one-shot job on it.
fn project(fx: &DockerFx, port: u16, extra_env: &str) {
    fx.p.file("jobs/001.txt", "first").config(&format!(
        r#"
[project]
name = "{id}"

[tasks.kv]
kind = "service"
image = "{base}"
cmd = ["sh", "-c", "trap 'exit 0' TERM; echo kv starting; touch /ready; while true; do echo ok | nc -l -p 7000; done"]
ports = ["127.0.0.1:{port}:7000"]
volumes = ["kvdata:/data"]
env = ["MODE=one"{extra_env}]
health = {{ cmd = ["test", "-f", "/ready"], interval = "200ms", retries = 20 }}
labels = {{ "lifeos.test" = "{id}" }}

[tasks.job]
kind = "container"
image = "{base}"
cmd = ["sh", "-c", "cat /jobs/*.txt; echo run >> /data/job-runs; test ! -f /jobs/fail"]
volumes = ["./jobs:/jobs:ro", "kvdata:/data"]
deps = ["kv"]
labels = {{ "lifeos.test" = "{id}" }}
"#,
        id = fx.id,
        base = fx.base(),
    ));
}

/// What the kv service sends on `port` (it answers "ok" and closes). Its loop restarts `nc`
/// between connections, so an empty answer is tried again a few times.
fn answer(port: u16) -> String {
    use std::io::Read;
    let mut last = String::new();
    for _ in 0..50 {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            last.clear();
            let _ = c.read_to_string(&mut last);
            if !last.trim().is_empty() {
                return last.trim().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

#[test]
fn up_is_idempotent_and_converges() {
    let fx = DockerFx::new();
    let port = free_port();
    project(&fx, port, "");
    let r = fx.p.json(&["up"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["kv"]);
    let id = fx.container("kv");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Health.Status}}", &id]),
        "healthy"
    );
    // Reachable on the published port: the service itself answers (docker-proxy alone would
    // accept the connection and close it with nothing behind it).
    assert_eq!(
        answer(port),
        "ok",
        "the service answers on 127.0.0.1:{port}"
    );

    let r = fx.p.json(&["up"]);
    assert_eq!(r.cached(), ["kv"], "{}", r.all());
    assert!(r.outcome("kv")["location"]
        .as_str()
        .unwrap()
        .contains("running, healthy"));
    assert_eq!(fx.container("kv"), id, "the same container");

    // Killed from outside: started again (same config, same container).
    docker(&["kill", &id]);
    let r = fx.p.json(&["up"]);
    assert_eq!(r.ran(), ["kv"], "{}", r.all());
    assert!(
        r.outcome("kv")["reason"]["detail"]
            .as_str()
            .unwrap()
            .contains("exited"),
        "{}",
        r.all()
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Health.Status}}", &id]),
        "healthy"
    );

    // A config change recreates it and keeps the named volume.
    docker(&["exec", &id, "sh", "-c", "echo kept > /data/marker"]);
    project(&fx, port, ", \"EXTRA=1\"");
    let r = fx.p.json(&["up"]);
    assert_eq!(r.ran(), ["kv"], "{}", r.all());
    assert_eq!(r.outcome("kv")["reason"]["changes"][0]["change"], "env");
    let new_id = fx.container("kv");
    assert_ne!(new_id, id);
    assert_eq!(docker(&["exec", &new_id, "cat", "/data/marker"]), "kept");

    // status and logs
    let s = fx.p.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v[0]["service"], "kv");
    assert_eq!(v[0]["health"], "healthy");
    assert_eq!(v[0]["ports"][0], format!("127.0.0.1:{port}->7000"));
    let l = fx.p.run(&["logs", "kv"]);
    assert!(l.stdout.contains("kv starting"), "{}", l.all());

    let d = fx.p.run(&["down"]);
    assert_eq!(d.code, 0, "{}", d.all());
    assert!(fx.containers().is_empty());
    assert!(
        docker_ok(&["volume", "inspect", &format!("{}_kvdata", fx.id)]).is_some(),
        "down keeps volumes"
    );
    assert_eq!(fx.p.run(&["down", "--volumes"]).code, 0);
    assert!(docker_ok(&["volume", "inspect", &format!("{}_kvdata", fx.id)]).is_none());
}

#[test]
fn a_one_shot_container_reruns_when_what_it_acts_on_is_recreated() {
    let fx = DockerFx::new();
    project(&fx, free_port(), "");
    let r = fx.p.json(&["run", "job"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["job", "kv"]);
    let logs: Vec<String> = r
        .events()
        .iter()
        .filter(|e| e["event"] == "task_log" && e["task"] == "job")
        .map(|e| e["line"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        logs,
        ["first"],
        "the container output is the task log: {}",
        r.all()
    );
    assert!(
        fx.containers().len() == 1,
        "the one-shot container is removed after it ran"
    );

    let r = fx.p.json(&["run", "job"]);
    assert_eq!(r.cached(), ["job", "kv"], "{}", r.all());

    // A new input file: runs again.
    fx.p.file("jobs/002.txt", "second");
    let r = fx.p.json(&["run", "job"]);
    assert_eq!(r.ran(), ["job"], "{}", r.all());
    assert_eq!(
        r.outcome("job")["reason"]["changes"][0]["path"],
        "jobs/002.txt"
    );

    // The service's volume recreated: the job's result is gone with it, so it runs again.
    assert_eq!(fx.p.run(&["down", "--volumes"]).code, 0);
    let r = fx.p.json(&["run", "job"]);
    assert_eq!(r.ran(), ["job", "kv"], "{}", r.all());
    let change = &r.outcome("job")["reason"]["changes"][0];
    assert_eq!(change["name"], "identity of kv", "{}", r.all());

    // A failing run is not recorded.
    fx.p.file("jobs/fail", "");
    let r = fx.p.json(&["run", "job"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.outcome("job")["error"]
        .as_str()
        .unwrap()
        .contains("exited with code 1"));
    let r = fx.p.json(&["run", "job"]);
    assert_eq!(r.outcomes()["job"], "failed", "{}", r.all());
    assert!(started(&r, "job"), "a failure is not cached: {}", r.all());
    assert!(
        fx.containers().len() == 1,
        "failed one-shot containers are removed too"
    );
}

#[test]
fn a_service_that_never_gets_healthy_fails_with_its_health_output() {
    let fx = DockerFx::new();
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[tasks.sick]
kind = "service"
image = "{base}"
cmd = ["sleep", "300"]
health = {{ cmd = "echo database not ready yet; exit 1", interval = "200ms", retries = 2 }}
labels = {{ "lifeos.test" = "{id}" }}
"#,
        id = fx.id,
        base = fx.base()
    ));
    let r = fx.p.json(&["up"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let err = r.outcome("sick")["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("unhealthy") && err.contains("database not ready yet"),
        "{err}"
    );
    assert!(
        fx.containers().is_empty(),
        "no half-started container stays"
    );
}

#[test]
fn a_taken_host_port_is_named() {
    let fx = DockerFx::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    project(&fx, port, "");
    let r = fx.p.json(&["up"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let err = r.outcome("kv")["error"].as_str().unwrap().to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{port}"))
            && err.contains("already in use")
            && err.contains("kv"),
        "{err}"
    );
    assert!(
        fx.containers().is_empty(),
        "the created container was removed"
    );
    drop(taken);
}

#[test]
fn ctrl_c_during_up_removes_what_the_run_created() {
    let fx = DockerFx::new();
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[tasks.fast]
kind = "service"
image = "{base}"
cmd = ["sleep", "300"]
labels = {{ "lifeos.test" = "{id}" }}

[tasks.slow]
kind = "service"
image = "{base}"
cmd = ["sleep", "300"]
health = {{ cmd = ["test", "-f", "/never"], interval = "500ms", retries = 100 }}
labels = {{ "lifeos.test" = "{id}" }}
deps = ["fast"]
"#,
        id = fx.id,
        base = fx.base()
    ));
    // An earlier run started `fast`: Ctrl-C in a later run must leave it alone.
    let r = fx.p.json(&["up", "fast"]);
    assert_eq!(r.ran(), ["fast"], "{}", r.all());
    let fast = fx.container("fast");
    assert!(!fast.is_empty());

    let mut child = fx.p.cmd(&["up"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fx.container("slow").is_empty() {
        assert!(Instant::now() < deadline, "slow never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: plain syscall to a child this test spawned and has not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(
        fx.container("slow").is_empty(),
        "the interrupted run's container is left: {:?}",
        fx.containers()
    );
    assert_eq!(
        fx.container("fast"),
        fast,
        "the earlier run's container went"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &fast]),
        "true",
        "the earlier run's container was stopped"
    );
}
