//! A small builder for temp-dir projects and a runner for the binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::Value;

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// JSON events (stdout of a `--json` run).
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// task → outcome kind ("ran", "cached", "failed", "skipped", ...).
    pub fn outcomes(&self) -> BTreeMap<String, String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "task_finished")
            .map(|e| {
                (
                    e["task"].as_str().unwrap().to_string(),
                    e["outcome"]["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The outcome object of one task.
    pub fn outcome(&self, task: &str) -> Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == "task_finished" && e["task"] == task)
            .map(|e| e["outcome"].clone())
            .unwrap_or(Value::Null)
    }

    /// Tasks that ran, sorted.
    pub fn ran(&self) -> Vec<String> {
        self.with("ran")
    }

    pub fn cached(&self) -> Vec<String> {
        self.with("cached")
    }

    pub fn with(&self, kind: &str) -> Vec<String> {
        self.outcomes()
            .into_iter()
            .filter(|(_, o)| o == kind)
            .map(|(t, _)| t)
            .collect()
    }

    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("lifeos-it-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write a file (parents created). Its mtime is set in the past, so the stat cache
    /// trusts it as a file edited long ago would be.
    pub fn file(&self, rel: &str, content: &str) -> &Self {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        backdate(&p);
        self
    }

    pub fn config(&self, toml: &str) -> &Self {
        self.file("lifeos.toml", toml)
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.p(rel)).unwrap_or_default()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(lifeos_bin());
        c.current_dir(self.path())
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("LIFEOS_CACHE_DIR")
            .env("CI", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run lifeos"))
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().expect("run lifeos"))
    }

    /// `lifeos --json ARGS`.
    pub fn json(&self, args: &[&str]) -> Run {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        self.run(&a)
    }

    pub fn json_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        self.run_env(&a, env)
    }
}

pub fn backdate(p: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(old).unwrap();
}

/// Every file under `dir`, recursively, as bytes (for grepping the cache for secrets).
pub fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else if let Ok(b) = fs::read(&p) {
            out.push((p, b));
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Run the Docker CLI (an independent client to check what lifeos did); panics on failure.
pub fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Like [`docker`] but failure is an answer, not a panic.
pub fn docker_ok(args: &[&str]) -> Option<String> {
    let o = Command::new("docker").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// A project with a unique id and its own busybox base image. Everything labelled
/// `lifeos.test=<id>` (containers, volumes, networks, images) is removed on drop.
pub struct DockerFx {
    pub p: Project,
    pub id: String,
}

impl DockerFx {
    pub fn new() -> Self {
        let ping = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        assert!(
            ping.as_ref().is_ok_and(|o| o.status.success()),
            "no Docker engine answers: start one (scripts/setup.sh); Docker tests fail rather than skip"
        );
        // PIDs repeat across CI containers that share one engine: a random part too.
        let id = format!(
            "it{}{}x{}",
            run_token(),
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let fx = DockerFx {
            p: Project::new(),
            id,
        };
        // An external base image, built by the Docker CLI: FROM scratch + static busybox.
        let base_dir = fx.p.p("base-src");
        fs::create_dir_all(&base_dir).unwrap();
        fs::copy("/bin/busybox", base_dir.join("busybox"))
            .expect("busybox-static is installed (/bin/busybox)");
        // The LABEL first makes every layer this test's own: with shared cached layers, one
        // test's cleanup (`rmi` also removes untagged parents) broke another's build.
        fs::write(
            base_dir.join("Dockerfile"),
            format!(
                "FROM scratch\nLABEL lifeos.test={}\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nENV PATH=/bin\n",
                fx.id
            ),
        )
        .unwrap();
        fx.cli_build(&fx.base(), &base_dir);
        fs::remove_dir_all(&base_dir).unwrap();
        fx
    }

    pub fn base(&self) -> String {
        format!("lifeos-it/{}-base:latest", self.id)
    }

    pub fn tag(&self, name: &str) -> String {
        format!("lifeos-it/{}-{name}:latest", self.id)
    }

    pub fn label(&self) -> String {
        format!("label=lifeos.test={}", self.id)
    }

    /// `docker build` with this test's label (the Docker CLI as an independent builder).
    /// `--no-cache`: the 20.10 classic builder's cache lookup scans every image and fails
    /// ("unable to find image") when another test removes one meanwhile.
    pub fn cli_build(&self, tag: &str, dir: &Path) {
        let label = format!("lifeos.test={}", self.id);
        docker(&[
            "build",
            "-q",
            "--no-cache",
            "--label",
            &label,
            "-t",
            tag,
            dir.to_str().unwrap(),
        ]);
    }

    /// `docker run --rm IMAGE ARGS...` with this test's label; its stdout.
    pub fn cli_run(&self, image: &str, args: &[&str]) -> String {
        let label = format!("lifeos.test={}", self.id);
        let mut a = vec!["run", "--rm", "--label", &label, image];
        a.extend_from_slice(args);
        docker(&a)
    }

    /// The full ID of the container lifeos made for `task`, or "" if none.
    pub fn container(&self, task: &str) -> String {
        let task = format!("label=lifeos.task={task}");
        docker(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &self.label(),
            "--filter",
            &task,
        ])
    }

    /// IDs of this test's containers (running or not).
    pub fn containers(&self) -> Vec<String> {
        docker(&["ps", "-aq", "--filter", &self.label()])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for DockerFx {
    fn drop(&mut self) {
        let label = self.label();
        let rm = |what: &[&str], list: &[&str]| {
            if let Some(ids) = docker_ok(list) {
                let mut ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
                ids.sort();
                ids.dedup();
                if !ids.is_empty() {
                    let mut args = what.to_vec();
                    args.extend(ids);
                    let _ = Command::new("docker").args(&args).output();
                }
            }
        };
        rm(&["rm", "-f", "-v"], &["ps", "-aq", "--filter", &label]);
        rm(
            &["volume", "rm", "-f"],
            &["volume", "ls", "-q", "--filter", &label],
        );
        rm(
            &["network", "rm"],
            &["network", "ls", "-q", "--filter", &label],
        );
        // An image with children cannot go before them, and one `rmi` of a list stops at
        // such a conflict: repeat until nothing is left (or nothing more goes).
        let mut left = usize::MAX;
        for _ in 0..4 {
            let now = docker_ok(&["images", "-q", "--filter", &label])
                .map(|ids| ids.lines().filter(|l| !l.is_empty()).count())
                .unwrap_or(0);
            if now == 0 || now >= left {
                break;
            }
            left = now;
            rm(&["rmi", "-f"], &["images", "-q", "--filter", &label]);
        }
    }
}

/// 8 random hex digits, the same for the whole test process (std's per-process random hash
/// keys; no dependency). With `LIFEOS_TEST_RUN` set, that value instead: `.ci/run` sets it
/// and counts leftovers of its own run only.
pub fn run_token() -> String {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            if let Ok(t) = std::env::var("LIFEOS_TEST_RUN") {
                if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return t.to_ascii_lowercase();
                }
            }
            let mut b = [0u8; 4];
            getrandom::fill(&mut b).expect("the system's random source");
            format!("{:08x}", u32::from_le_bytes(b))
        })
        .clone()
}

/// A host port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary under test: this build's, or `LIFEOS_TEST_BIN` to run the suite against
/// another one (the static release binary: `LIFEOS_TEST_BIN=$(scripts/build-release.sh)`).
pub fn lifeos_bin() -> std::ffi::OsString {
    std::env::var_os("LIFEOS_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_lifeos").into())
}

/// A unix socket that forwards every connection, byte for byte, to the real engine and
/// records the request line of every HTTP request sent through it (`POST /build?… HTTP/1.1`):
/// point `DOCKER_HOST` at [`EngineProxy::host`] to see what lifeos asked the engine.
pub struct EngineProxy {
    pub sock: PathBuf,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Both ends of every open connection, for [`EngineProxy::cut`].
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
    /// While set, a new connection is closed at once (the engine is away).
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _dir: tempfile::TempDir,
}

impl EngineProxy {
    pub fn start() -> Self {
        use std::io::{Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = tempfile::Builder::new()
            .prefix("lifeos-proxy-")
            .tempdir()
            .unwrap();
        let sock = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let engine = engine_socket();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (open, away) = (conns.clone(), down.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if away.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let Ok(up) = UnixStream::connect(&engine) else {
                    continue;
                };
                {
                    let mut open = open.lock().unwrap();
                    open.push(conn.try_clone().unwrap());
                    open.push(up.try_clone().unwrap());
                }
                let (mut from_client, mut to_engine) =
                    (conn.try_clone().unwrap(), up.try_clone().unwrap());
                let (mut from_engine, mut to_client) = (up, conn);
                let seen = seen.clone();
                // Client → engine: forward, and keep every line that is an HTTP request line
                // (a body would have to hold "POST /x HTTP/1.1" on a line of its own to count).
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 * 1024];
                    let mut line = Vec::new();
                    loop {
                        let n = match from_client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if to_engine.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        for &b in &buf[..n] {
                            if b == b'\n' {
                                let l = String::from_utf8_lossy(&line);
                                let l = l.trim_end();
                                if is_request_line(l) {
                                    seen.lock().unwrap().push(l.to_string());
                                }
                                line.clear();
                            } else if line.len() < 4096 {
                                line.push(b);
                            }
                        }
                    }
                    let _ = to_engine.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_engine, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self {
            sock,
            lines,
            conns,
            down,
            _dir: dir,
        }
    }

    /// Close every connection open through the proxy now (an event stream among them), as
    /// an engine restart would; new ones are forwarded as before unless [`Self::set_down`].
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Refuse (close at once) every new connection while `down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// The `DOCKER_HOST` value that goes through this proxy.
    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// Request lines seen so far, e.g. `GET /images/x/json HTTP/1.1`.
    pub fn requests(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

fn is_request_line(l: &str) -> bool {
    let mut parts = l.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    ["GET", "POST", "PUT", "DELETE", "HEAD"].contains(&method)
        && path.starts_with('/')
        && version.starts_with("HTTP/1.")
}

/// The engine's unix socket: `DOCKER_HOST` when it is `unix://`, else the default.
pub fn engine_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// Is `pid` a live process (a zombie waiting to be reaped counts as gone)?
pub fn process_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Wait (at most `secs`) for `pid` to be gone; true when it is.
pub fn process_gone_within(pid: i32, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while process_running(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    !process_running(pid)
}

/// Did the run start `task` (a `task_started` event), rather than replay a result?
pub fn started(r: &Run, task: &str) -> bool {
    r.events()
        .iter()
        .any(|e| e["event"] == "task_started" && e["task"] == task)
}

/// A real nginx (Debian's, with the WebDAV module) on a random loopback port, serving and
/// accepting PUTs into its own temp directory; its access log is kept. Stopped on drop.
pub struct Nginx {
    pub port: u16,
    pub root: PathBuf,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    extra: String,
}

impl Nginx {
    /// Serving `root/` (created) with WebDAV PUT/DELETE; `extra` goes into the `location /`.
    pub fn start(extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lifeos-nginx-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let mut n = Nginx {
            port: free_port(),
            root,
            dir,
            child: None,
            extra: extra.to_string(),
        };
        n.restart();
        n
    }

    fn write_config(&self) -> PathBuf {
        let d = self.dir.path();
        let conf = d.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                r#"user root;
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            {extra}
        }}
    }}
}}
"#,
                d = d.display(),
                port = self.port,
                root = self.root.display(),
                extra = self.extra,
            ),
        )
        .unwrap();
        conf
    }

    /// Start (again, on the same port), and wait until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let conf = self.write_config();
        let child = Command::new("nginx")
            .args(["-c", conf.to_str().unwrap(), "-e", "stderr"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx is installed (scripts/setup.sh)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not start on {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // TERM: the master stops its workers too (KILL would leave them serving).
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        // Its worker may outlive the master by a moment.
        let pidfile = self.dir.path().join("nginx.pid");
        let _ = fs::remove_file(pidfile);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// The master process, for a test that stops it from elsewhere (`kill -TERM`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Access log lines so far (`METHOD /path` with the status).
    pub fn access_log(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real registry (Debian's `docker-registry`) with htpasswd auth on a random loopback
/// port, its config, storage and log in a temp dir; killed and removed on drop. Docker
/// treats 127.0.0.0/8 registries as insecure, so the engine pushes to it over plain HTTP.
pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
    child: Option<std::process::Child>,
}

impl TestRegistry {
    pub fn start(user: &str, password: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lifeos-registry-")
            .tempdir()
            .unwrap();
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd runs (apache2-utils; scripts/setup.sh installs it)");
        assert!(htpasswd.status.success(), "htpasswd failed");
        fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = free_port();
        fs::write(
            dir.path().join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: lifeos-test\n    path: {root}/htpasswd\n",
                root = dir.path().display()
            ),
        )
        .unwrap();
        let mut r = TestRegistry {
            dir,
            port,
            user: user.into(),
            password: password.into(),
            child: None,
        };
        r.restart();
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Start it again (same port, config and storage) after [`TestRegistry::stop`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the registry is running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs (scripts/setup.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not listen on {} within 20 s:\n{}",
                self.host(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The registry's log (application and access lines), across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Blob uploads started so far (`POST /v2/…/blobs/uploads/` in the access log).
    pub fn blob_uploads(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"POST /v2/") && l.contains("/blobs/uploads/"))
            .count()
    }

    /// Manifest puts so far (`PUT /v2/…/manifests/…` in the access log).
    pub fn manifest_puts(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"PUT /v2/") && l.contains("/manifests/"))
            .count()
    }

    /// `curl -s -u USER:PASSWORD ARGS… http://HOST/v2/PATH`: (status, headers and body).
    pub fn curl(&self, method: &str, path: &str) -> (u16, String) {
        let auth = format!("{}:{}", self.user, self.password);
        let url = format!("http://{}/v2/{path}", self.host());
        let mut c = Command::new("curl");
        c.args(["-s", "-i", "-u", &auth, "-X", method]);
        if method == "HEAD" {
            c.arg("-I");
        }
        for t in [
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
        ] {
            c.args(["-H", &format!("Accept: {t}")]);
        }
        let o = c.arg(&url).output().expect("curl runs");
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, text)
    }

    /// The tags of `repo` (path after the host), sorted.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let (code, text) = self.curl("GET", &format!("{repo}/tags/list"));
        if code != 200 {
            return vec![];
        }
        let body = text.split("\r\n\r\n").last().unwrap_or("");
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// The digest of `repo:tag` by a manifest HEAD with the four manifest Accept types.
    pub fn digest(&self, repo: &str, tag: &str) -> Option<String> {
        let (code, text) = self.curl("HEAD", &format!("{repo}/manifests/{tag}"));
        if code != 200 {
            return None;
        }
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Standard base64 of `s` (the coreutils `base64`, as `docker login` stores `auth`).
pub fn base64_std(s: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("base64 runs");
    c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// Run git in `dir` with a fixed identity and no signing or hooks; its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=lifeos-test",
            "-c",
            "user.email=lifeos-test@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}
