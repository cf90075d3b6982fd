//! Deploy, canary, check, promote and rollback on the real engine, behind a real nginx
//! router (the example's offline router image), answered by real busybox httpd revisions;
//! the test is the HTTP client. Everything is labelled `lifeos.test=<id>` and removed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::support::{docker, free_port, DockerFx, Run};

/// The example's router root filesystem (example/router/make-rootfs.sh: mmdebstrap with
/// nginx-light), made by lifeos once per target dir in a project of the tests' own.
pub(crate) fn router_rootfs() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lifeos-it-router-rootfs");
        fs::create_dir_all(dir.join("router")).unwrap();
        let script = fs::read(repo.join("example/router/make-rootfs.sh")).unwrap();
        if fs::read(dir.join("router/make-rootfs.sh")).ok().as_ref() != Some(&script) {
            fs::write(dir.join("router/make-rootfs.sh"), &script).unwrap();
        }
        fs::write(
            dir.join("lifeos.toml"),
            "[project]\nname = \"lifeos-it-router-rootfs\"\n\n\
             [tasks.router-rootfs]\nkind = \"exec\"\nrun = \"sh router/make-rootfs.sh\"\n\
             inputs = [\"router/make-rootfs.sh\"]\noutputs = [\"router/rootfs.tar\"]\ntimeout = \"30m\"\n",
        )
        .unwrap();
        let out = Command::new(crate::support::lifeos_bin())
            .args(["run", "router-rootfs"])
            .current_dir(&dir)
            .env("CI", "1")
            .env_remove("LIFEOS_CACHE_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "making the router root filesystem failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("router/rootfs.tar")
    })
}

/// The app: busybox httpd answering `/cgi-bin/v` with $VERSION, or 500 for
/// $FAIL_PERCENT of requests; `/ready.txt` is its readiness page.
const CGI: &str = r#"#!/bin/sh
if [ "${FAIL_PERCENT:-0}" -gt 0 ] && [ $((RANDOM % 100)) -lt "$FAIL_PERCENT" ]; then
  printf 'Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nfail %s\n' "$VERSION"
  exit 0
fi
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$VERSION"
"#;

struct Fx {
    fx: DockerFx,
    port: u16,
}

fn project(extra: &str) -> Fx {
    let fx = DockerFx::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::create_dir_all(fx.p.p("router")).unwrap();
    fs::copy(
        repo.join("example/router/Dockerfile"),
        fx.p.p("router/Dockerfile"),
    )
    .unwrap();
    let tar = fx.p.p("router/rootfs.tar");
    if fs::hard_link(router_rootfs(), &tar).is_err() {
        fs::copy(router_rootfs(), &tar).unwrap();
    }
    fx.p.file("app/www/cgi-bin/v", CGI);
    fx.p.file("app/www/ready.txt", "ok\n");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        fx.p.p("app/www/cgi-bin/v"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fx.p.file(
        "app/Dockerfile",
        &format!(
            "FROM {}\nCOPY www /www\nCMD [\"sh\", \"-c\", \"echo starting $VERSION; exec httpd -f -p 8080 -h /www\"]\n",
            fx.base()
        ),
    );
    let port = free_port();
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[vars]
version = "v1"
fail = "0"
schema = "1"
ready = "/ready.txt"
router_http = ""

[router]
image = "router"
http = "${{vars.router_http}}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.router]
kind = "image"
context = "router"
tag = "{router_tag}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.app]
kind = "image"
context = "app"
tag = "{app_tag}"
labels = {{ "lifeos.test" = "{id}" }}
builder = "classic"

[tasks.migrate]
kind = "container"
image = "{base}"
cmd = ["echo", "schema ${{vars.schema}}"]
labels = {{ "lifeos.test" = "{id}" }}

[tasks.deploy-api]
kind = "deploy"
service = "api"
image = "app"
port = 8080
publish = "127.0.0.1:{port}"
ready = "${{vars.ready}}"
ready_timeout = "4s"
traffic = 0
keep = 3
env = ["VERSION=${{vars.version}}", "FAIL_PERCENT=${{vars.fail}}"]
deps = ["migrate"]
labels = {{ "lifeos.test" = "{id}" }}

[tasks.canary-api]
kind = "canary"
deploy = "deploy-api"
percent = 10

[tasks.check-canary]
kind = "check"
target = "canary-api"
window = "4s"
interval = "1s"
probe = {{ path = "/cgi-bin/v", rate = 60 }}
success_rate = 0.95
p95 = "2s"
min_requests = 10
on_failure = "rollback"

[tasks.promote-api]
kind = "promote"
deploy = "deploy-api"
deps = ["check-canary"]
{extra}
"#,
        id = fx.id,
        base = fx.base(),
        router_tag = fx.tag("router"),
        app_tag = fx.tag("app"),
    ));
    Fx { fx, port }
}

impl Fx {
    fn lifeos(&self, args: &[&str]) -> Run {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        self.fx.p.run(&a)
    }

    /// `n` requests through the router: body (or ERR) → count.
    fn split(&self, n: usize) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = match get(self.port, "/cgi-bin/v") {
                Ok((200, body)) => body.trim().to_string(),
                Ok((s, body)) => format!("{s} {}", body.trim()),
                Err(e) => format!("ERR {e}"),
            };
            *m.entry(k).or_default() += 1;
        }
        m
    }
}

/// One GET on loopback, Connection: close; status and body.
pub(crate) fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {buf:?}"))?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Requests as fast as one client goes, until stopped: (sent, failed, first failure).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<(u64, Vec<String>)>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (st, se) = (stop.clone(), sent.clone());
        let handle = std::thread::spawn(move || {
            let mut failed = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match get(port, "/cgi-bin/v") {
                    Ok((200, _)) => {}
                    Ok((s, b)) => failed.push(format!("{s} {}", b.trim())),
                    Err(e) => failed.push(e),
                }
                se.fetch_add(1, Ordering::SeqCst);
            }
            (se.load(Ordering::SeqCst), failed)
        });
        Load { stop, sent, handle }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.sent;
        self.handle.join().unwrap()
    }
}

fn only(m: &BTreeMap<String, usize>, body: &str, n: usize) {
    assert_eq!(
        m.get(body).copied(),
        Some(n),
        "expected all {n} requests to answer {body}: {m:?}"
    );
}

#[test]
fn release_path_deploy_canary_check_promote_and_rollback() {
    let f = project("");
    let r = f.lifeos(&["build", "router", "app"]);
    assert_eq!(r.code, 0, "{}", r.all());

    // v1: the first revision takes all traffic.
    let r = f.lifeos(&["run", "deploy-api"]);
    assert_eq!(r.code, 0, "{}", r.all());
    only(&f.split(1000), "v1", 1000);
    let labels = docker(&[
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        &format!("{}-default-api-r1", f.fx.id),
    ]);
    for l in [
        "lifeos.project",
        "lifeos.env",
        "lifeos.service",
        "lifeos.revision",
        "lifeos.key",
    ] {
        assert!(labels.contains(l), "{l} missing: {labels}");
    }

    // v2 with traffic = 0: none of it reaches v2.
    let r = f.lifeos(&["run", "deploy-api", "--set", "version=v2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    only(&f.split(1000), "v1", 1000);

    // canary 10%: 5-15% of 1,000.
    let r = f.lifeos(&["run", "canary-api", "--set", "version=v2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let m = f.split(1000);
    let v2 = m.get("v2").copied().unwrap_or(0);
    println!("canary 10%: {m:?}");
    assert!((50..=150).contains(&v2), "{m:?}");
    assert_eq!(m.get("v1").copied().unwrap_or(0) + v2, 1000, "{m:?}");

    // A v2 failing half its requests: the check fails, names the metric and its values,
    // and puts all traffic back on v1.
    let r = f.lifeos(&[
        "run",
        "check-canary",
        "--set",
        "version=v2bad",
        "--set",
        "fail=50",
    ]);
    assert_eq!(r.code, 1, "{}", r.all());
    let out = r.all();
    assert!(
        out.contains("check of api failed: success_rate canary 0."),
        "{out}"
    );
    assert!(out.contains("threshold >= 0.95"), "{out}");
    assert!(out.contains("rolled back: traffic r1 100%"), "{out}");
    only(&f.split(1000), "v1", 1000);
    // `explain` shows why: the failed verdict, kept in the router state.
    let e = f.fx.p.run(&["explain", "check-canary"]);
    assert!(e.stdout.contains("last check: failed"), "{}", e.all());
    assert!(
        e.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("success_rate ") && l.ends_with("fail")),
        "{}",
        e.all()
    );

    // A good v2: check passes, promote; no request fails under load meanwhile.
    let load = Load::start(f.port);
    let r = f.lifeos(&["run", "promote-api", "--set", "version=v2"]);
    let (sent, failed) = load.finish();
    assert_eq!(r.code, 0, "{}", r.all());
    println!(
        "requests during canary, check and promote: {sent} sent, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(sent > 100, "the load sent only {sent} requests");
    only(&f.split(1000), "v2", 1000);
    let log = r.all();
    assert!(log.contains("success_rate"), "{log}");

    // Nothing changed: deploy, canary and promote are cached; the check runs again.
    let r = f.lifeos(&["run", "promote-api", "--set", "version=v2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let cached = r.cached();
    for t in ["deploy-api", "canary-api", "promote-api"] {
        assert!(
            cached.contains(&t.to_string()),
            "{t} not cached: {}",
            r.all()
        );
    }
    assert!(r.ran().contains(&"check-canary".to_string()), "{}", r.all());

    // status shows the revisions.
    let s = f.fx.p.run(&["status"]);
    assert_eq!(s.code, 0, "{}", s.all());
    assert!(s.stdout.contains("stable    100%"), "{}", s.stdout);

    // Rollback: v1 again.
    let t = std::time::Instant::now();
    let r = f.fx.p.run(&["rollback", "api"]);
    println!(
        "rollback took {} ms: {}",
        t.elapsed().as_millis(),
        r.stdout.trim()
    );
    assert_eq!(r.code, 0, "{}", r.all());
    only(&f.split(1000), "v1", 1000);

    // v3 after a new migration; rolling back to v1 (before it) is refused, naming it.
    let r = f.lifeos(&[
        "run",
        "promote-api",
        "--set",
        "version=v3",
        "--set",
        "schema=2",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    only(&f.split(200), "v3", 200);
    let r = f.fx.p.run(&["rollback", "api"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("migration `migrate`"), "{}", r.all());
    only(&f.split(200), "v3", 200);
    let r = f.fx.p.run(&["rollback", "api", "--force"]);
    assert_eq!(r.code, 0, "{}", r.all());
    only(&f.split(200), "v1", 200);
}

#[test]
fn failures_leave_the_stable_revision_serving_and_a_lost_router_comes_back() {
    let f = project("");
    let r = f.lifeos(&["run", "deploy-api"]);
    assert_eq!(r.code, 0, "{}", r.all());
    only(&f.split(200), "v1", 200);

    // A revision whose `ready` never answers 2xx: exit 1 with its log tail; v1 serves.
    let r = f.lifeos(&[
        "run",
        "deploy-api",
        "--set",
        "version=v2",
        "--set",
        "ready=/never",
    ]);
    assert_eq!(r.code, 1, "{}", r.all());
    let out = r.all();
    assert!(out.contains("did not answer 2xx on `/never`"), "{out}");
    assert!(
        out.contains("starting v2"),
        "the log tail is missing: {out}"
    );
    only(&f.split(200), "v1", 200);

    // A router config nginx rejects never replaces the working one.
    let r = f.lifeos(&[
        "run",
        "deploy-api",
        "--set",
        "version=v2",
        "--set",
        "router_http=no_such_directive on;",
    ]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains("nginx rejected the new router config"),
        "{}",
        r.all()
    );
    only(&f.split(200), "v1", 200);

    // Canary at 10%, then the router removed from outside: the next run restores the split.
    let r = f.lifeos(&["run", "canary-api", "--set", "version=v2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    docker(&["rm", "-f", &format!("{}-default-router", f.fx.id)]);
    assert!(
        get(f.port, "/cgi-bin/v").is_err(),
        "the router still answers"
    );
    let r = f.lifeos(&["run", "canary-api", "--set", "version=v2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let m = f.split(1000);
    println!("after the router came back: {m:?}");
    let v2 = m.get("v2").copied().unwrap_or(0);
    assert!((50..=150).contains(&v2), "{m:?}");
    assert_eq!(m.get("v1").copied().unwrap_or(0) + v2, 1000, "{m:?}");
}

#[test]
fn deploy_config_errors_point_at_their_place() {
    let p = crate::support::Project::new();
    p.config(
        r#"
[tasks.deploy-api]
kind = "deploy"
service = "api"
image = "busybox:latest"
port = 8080
publish = "127.0.0.1:9081"
"#,
    );
    let r = p.run(&["plan"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("needs a [router]"), "{}", r.all());
    assert!(r.stderr.contains("lifeos.toml:2:"), "{}", r.all());

    p.config(
        r#"
[router]
image = "nginx:1.27-alpine"

[tasks.deploy-api]
kind = "deploy"
platform = "kubernetes"
service = "api"
image = "busybox:latest"
port = 8080
publish = "127.0.0.1:99999"
traffic = 150

[tasks.canary-api]
kind = "canary"
deploy = "nope"
percent = 10
"#,
    );
    let r = p.run(&["plan"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("platform `kubernetes` is not supported"),
        "{}",
        r.all()
    );
    assert!(
        r.stderr.contains("invalid `deploy` of task `canary-api`"),
        "{}",
        r.all()
    );
}

/// The whole path on an environment that has nothing yet: the first revision goes straight
/// to stable, the canary has nothing to do, and the check judges that revision alone (it used
/// to fail: the canary, fresh without ever running, left no revision for the check).
#[test]
fn the_whole_path_on_a_fresh_environment_passes() {
    let f = project("");
    let r = f.lifeos(&["run", "promote-api", "--summary", "s.json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    only(&f.split(200), "v1", 200);
    // The run summary says what was delivered, revision by revision.
    let s: serde_json::Value = serde_json::from_str(&f.fx.p.read("s.json")).unwrap();
    let delivered: BTreeMap<String, (String, String)> = s["delivered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let field = |k: &str| d[k].as_str().unwrap().to_string();
            (field("task"), (field("status"), field("what")))
        })
        .collect();
    let rev = s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "deploy-api")
        .and_then(|t| t["result"]["revision"].as_u64())
        .map(|n| format!("r{n}"))
        .unwrap_or_else(|| panic!("deploy-api's result names its revision: {s}"))
        .to_string();
    assert_eq!(
        delivered.keys().collect::<Vec<_>>(),
        ["canary-api", "deploy-api", "promote-api"],
        "{s}"
    );
    assert!(
        delivered["deploy-api"]
            .1
            .starts_with(&format!("revision {rev} at http://")),
        "{delivered:?}"
    );
    assert_eq!(
        delivered["promote-api"].1,
        format!("revision {rev} serves 100%")
    );
    let r = f.lifeos(&["run", "promote-api", "--summary", "s.json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let s: serde_json::Value = serde_json::from_str(&f.fx.p.read("s.json")).unwrap();
    let deploy = &s["delivered"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["task"] == "deploy-api")
        .expect("a cached deploy is still listed")
        .clone();
    assert_eq!(deploy["status"], "cached", "{s}");
}
