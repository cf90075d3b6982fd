//! `lifeos status` (the table people read) and `lifeos logs -f` (new output as it comes).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{docker, free_port, DockerFx};

fn project(fx: &DockerFx, port: u16) {
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[tasks.web]
kind = "service"
image = "{base}"
cmd = ["sh", "-c", "trap 'exit 0' TERM; echo first line; while [ ! -f /go ]; do sleep 0.1; done; echo second line; while true; do sleep 1; done"]
ports = ["127.0.0.1:{port}:8000"]
health = {{ cmd = ["true"], interval = "200ms", retries = 20 }}
labels = {{ "lifeos.test" = "{id}" }}

[tasks.idle]
kind = "service"
image = "{base}"
cmd = ["sleep", "300"]
labels = {{ "lifeos.test" = "{id}" }}
"#,
        id = fx.id,
        base = fx.base(),
    ));
}

#[test]
fn status_prints_a_table_of_every_service() {
    let fx = DockerFx::new();
    let port = free_port();
    project(&fx, port);
    let r = fx.p.json(&["up", "web"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let s = fx.p.run(&["status"]);
    assert_eq!(s.code, 0, "{}", s.all());
    let lines: Vec<Vec<&str>> = s
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["SERVICE", "STATE", "HEALTH", "PORTS", "IMAGE", "SINCE"],
        "{}",
        s.all()
    );
    assert_eq!(
        lines.len(),
        3,
        "a header and one row per service: {}",
        s.all()
    );
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l[0] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {}", s.all()))
            .clone()
    };
    let web = row("web");
    assert_eq!(
        web[1..5],
        [
            "running",
            "healthy",
            &format!("127.0.0.1:{port}->8000"),
            &fx.base()
        ]
    );
    assert!(web[5].starts_with("20"), "a start time: {}", s.all());
    assert_eq!(
        row("idle")[1..],
        ["absent", "-", "-", "-", "-"],
        "{}",
        s.all()
    );
    assert_eq!(fx.p.run(&["down"]).code, 0);
}

#[test]
fn logs_follow_prints_new_output_until_stopped() {
    let fx = DockerFx::new();
    project(&fx, free_port());
    let r = fx.p.json(&["up", "web"]);
    assert_eq!(r.code, 0, "{}", r.all());

    let mut child =
        fx.p.cmd(&["logs", "-f", "web"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |want: &str| loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l.contains(want) => break,
            Ok(_) => {}
            Err(e) => panic!("`logs -f` never printed {want:?}: {e}"),
        }
    };
    wait_for("first line");
    // Written after `logs -f` started: only following shows it.
    let id = fx.container("web");
    docker(&["exec", &id, "touch", "/go"]);
    wait_for("second line");
    assert!(
        child.try_wait().unwrap().is_none(),
        "logs -f keeps following"
    );
    // SAFETY: plain syscall to a child this test spawned and has not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(!status.success() || status.code() == Some(0), "{status:?}");
    assert_eq!(fx.p.run(&["down"]).code, 0);
}
