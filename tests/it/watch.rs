//! `lifeos watch` against the real engine, real files and real HTTP: what each kind of edit
//! does, read from its `--json` lines (`watch_action`, `watch_batch`), never from sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{docker, free_port, DockerFx, EngineProxy};

/// A web service serving `web/` (synced into its docroot) and an api whose handler is synced
/// (then restarted) and whose manifest is not (a rebuild).
fn project(fx: &DockerFx, web_port: u16, api_port: u16) {
    let base = fx.base();
    let executable = |rel: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(fx.p.p(rel), std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    fx.p.file("web/index.html", "page v1\n")
        .file("web/b.html", "b\n")
        .file("api/manifest.json", "{\"version\":\"1\"}\n")
        .file(
            "api/handler.sh",
            "#!/bin/sh\nread -r line\nbody=\"handler one $(cat /srv/api/manifest.json)\"\nprintf 'HTTP/1.0 200 OK\\r\\nContent-Length: %s\\r\\n\\r\\n%s' \"${#body}\" \"$body\"\n",
        )
        .file(
            "Dockerfile",
            &format!(
                "FROM {base} AS web\nCOPY web/ /srv/www/\nRUN chown -R 65534:65534 /srv/www\nUSER 65534:65534\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/srv/www\"]\n\n\
                 FROM {base} AS api\nCOPY api/ /srv/api/\nRUN chmod 755 /srv/api/handler.sh\nCMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; nc -ll -p 8081 -e /srv/api/handler.sh & wait\"]\n"
            ),
        );
    executable("api/handler.sh");
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[tasks.web-img]
kind = "image"
context = "."
dockerfile = "Dockerfile"
target = "web"
tag = "{web_tag}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.api-img]
kind = "image"
context = "."
dockerfile = "Dockerfile"
target = "api"
tag = "{api_tag}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.web]
kind = "service"
image = "web-img"
ports = ["127.0.0.1:{web_port}:8080"]
labels = {{ "lifeos.test" = "{id}" }}
sync = [{{ from = "web", to = "/srv/www" }}]

[tasks.api]
kind = "service"
image = "api-img"
ports = ["127.0.0.1:{api_port}:8081"]
labels = {{ "lifeos.test" = "{id}" }}
sync = [{{ from = "api", to = "/srv/api", ignore = ["manifest.json"], restart = true }}]
"#,
        id = fx.id,
        web_tag = fx.tag("web"),
        api_tag = fx.tag("api"),
    ));
}

/// A running `lifeos --json watch` and its stdout lines.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

const LONG: Duration = Duration::from_secs(180);

impl Watcher {
    fn start(fx: &DockerFx, env: &[(&str, &str)]) -> Watcher {
        let mut cmd = fx.p.cmd(&["--json", "watch"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("lifeos watch starts");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e2.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut w = Watcher {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        };
        w.until(|e| e["event"] == "watch_ready");
        w
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Read events until one matches; everything read is kept in `seen`.
    fn until(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + LONG;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let Ok(v) = serde_json::from_str::<Value>(&l) else {
                        continue;
                    };
                    self.seen.push(v.clone());
                    if want(&v) {
                        return v;
                    }
                }
                Err(e) => panic!(
                    "lifeos watch never printed what the test waits for ({e}); seen: {:#?}\nstderr: {}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// The next batch that acted (or, with `idle`, any batch), and the actions it took.
    fn batch(&mut self, idle: bool) -> (Value, Vec<Value>) {
        let from = self.seen.len();
        let b = self.until(|e| {
            e["event"] == "watch_batch" && (idle || e["actions"].as_u64().unwrap_or(0) > 0)
        });
        let n = b["batch"].clone();
        let actions = self.seen[from..]
            .iter()
            .filter(|e| e["event"] == "watch_action" && e["batch"] == n)
            .cloned()
            .collect();
        (b, actions)
    }

    /// Events seen since index `from` of one kind.
    fn since(&self, from: usize, event: &str) -> Vec<Value> {
        self.seen[from..]
            .iter()
            .filter(|e| e["event"] == event)
            .cloned()
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) on the child's pid, which this process spawned and has not
            // reaped (try_wait just said it still runs).
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let _ = self.child.wait();
        }
    }
}

/// The body of GET `path` on 127.0.0.1:`port` (retried while the service starts).
fn get(port: u16, path: &str) -> String {
    try_get(port, path).unwrap_or_else(|e| panic!("{e}"))
}

fn try_get(port: u16, path: &str) -> Result<String, String> {
    let end = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < end {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut s = String::new();
            let _ = c.read_to_string(&mut s);
            if let Some((_, body)) = s.split_once("\r\n\r\n") {
                return Ok(body.to_string());
            }
            last = s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("no HTTP answer on {port}{path}: {last:?}"))
}

fn write_now(fx: &DockerFx, rel: &str, content: &str) {
    let p = fx.p.p(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// Every file under `dir` in the container: path and content.
fn container_tree(id: &str, dir: &str) -> Vec<(String, String)> {
    let list = docker(&["exec", id, "find", dir, "-type", "f"]);
    let mut v: Vec<(String, String)> = list
        .lines()
        .map(|p| {
            (
                p.trim_start_matches(dir)
                    .trim_start_matches('/')
                    .to_string(),
                docker(&["exec", id, "cat", p]),
            )
        })
        .collect();
    v.sort();
    v
}

fn host_tree(fx: &DockerFx, dir: &str) -> Vec<(String, String)> {
    let root = fx.p.p(dir);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&p).unwrap().trim().to_string()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn watch_syncs_each_save_once_and_converges() {
    let fx = DockerFx::new();
    let (wp, ap) = (free_port(), free_port());
    project(&fx, wp, ap);
    let mut w = Watcher::start(&fx, &[]);
    assert_eq!(get(wp, "/index.html"), "page v1\n");
    let web_id = fx.container("web");
    let ready = w.seen.len();

    // An edit to a synced file: in the next response, without an image build.
    write_now(&fx, "web/index.html", "page v2\n");
    let (_, actions) = w.batch(false);
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(
        (actions[0]["action"].as_str(), actions[0]["task"].as_str()),
        (Some("sync"), Some("web"))
    );
    assert_eq!(get(wp, "/index.html"), "page v2\n");
    // Owned by the container's user, as the tar headers said.
    assert_eq!(
        docker(&[
            "exec",
            &web_id,
            "stat",
            "-c",
            "%u:%g",
            "/srv/www/index.html"
        ]),
        "65534:65534"
    );

    // Each editor's way of saving is one action.
    let dir = fx.p.p("web");
    type Save<'a> = Box<dyn Fn(&str) + 'a>;
    let saves: Vec<(&str, Save)> = vec![
        (
            "rename-and-write (vim)",
            Box::new(|c: &str| {
                std::fs::write(dir.join(".index.html.swp"), "x").unwrap();
                std::fs::write(dir.join("index.html.tmp"), c).unwrap();
                std::fs::rename(dir.join("index.html.tmp"), dir.join("index.html")).unwrap();
                std::fs::remove_file(dir.join(".index.html.swp")).unwrap();
            }),
        ),
        (
            "safe write (JetBrains)",
            Box::new(|c: &str| {
                std::fs::write(dir.join("index.html___jb_tmp___"), c).unwrap();
                std::fs::rename(dir.join("index.html"), dir.join("index.html___jb_old___"))
                    .unwrap();
                std::fs::rename(dir.join("index.html___jb_tmp___"), dir.join("index.html"))
                    .unwrap();
                std::fs::remove_file(dir.join("index.html___jb_old___")).unwrap();
            }),
        ),
        (
            "sed -i",
            Box::new(|c: &str| {
                let st = std::process::Command::new("sed")
                    .args(["-i", &format!("s/.*/{}/", c.trim()), "index.html"])
                    .current_dir(&dir)
                    .status()
                    .unwrap();
                assert!(st.success());
            }),
        ),
        (
            "cp over",
            Box::new(|c: &str| {
                let src = dir.parent().unwrap().join("elsewhere.txt");
                std::fs::write(&src, c).unwrap();
                let st = std::process::Command::new("cp")
                    .arg(&src)
                    .arg(dir.join("index.html"))
                    .status()
                    .unwrap();
                assert!(st.success());
            }),
        ),
    ];
    for (i, (name, save)) in saves.iter().enumerate() {
        let content = format!("page save{i}\n");
        save(&content);
        let (_, actions) = w.batch(false);
        assert_eq!(actions.len(), 1, "{name}: {actions:#?}");
        assert_eq!(actions[0]["action"], "sync", "{name}: {actions:#?}");
        assert_eq!(get(wp, "/index.html"), content, "{name}");
    }
    // touch: the content is the truth, and it did not change.
    let st = std::process::Command::new("touch")
        .arg(dir.join("index.html"))
        .status()
        .unwrap();
    assert!(st.success());
    let (b, actions) = w.batch(true);
    assert!(b["paths"].as_u64().unwrap() >= 1, "{b}");
    assert!(actions.is_empty(), "touch: {actions:#?}");

    // lifeos's own writes (its cache) are never seen; the next batch has only the marker.
    std::fs::write(fx.p.p(".lifeos/junk-by-test"), "x").unwrap();
    std::fs::write(fx.p.p(".lifeos/watch/junk.json"), "{}").unwrap();
    std::process::Command::new("touch")
        .arg(dir.join("b.html"))
        .status()
        .unwrap();
    let (b, actions) = w.batch(true);
    assert_eq!((b["paths"].as_u64(), actions.len()), (Some(1), 0), "{b}");

    // Delete, rename and a new directory: the container's docroot is the host's.
    write_now(&fx, "web/sub/deep/x.html", "x\n");
    write_now(&fx, "web/sub/y.html", "y\n");
    w.batch(false);
    std::fs::remove_file(fx.p.p("web/b.html")).unwrap();
    std::fs::rename(fx.p.p("web/sub/y.html"), fx.p.p("web/c.html")).unwrap();
    std::fs::remove_dir_all(fx.p.p("web/sub/deep")).unwrap();
    let (_, actions) = w.batch(false);
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(container_tree(&web_id, "/srv/www"), host_tree(&fx, "web"));

    // A checkout of 1,000 files under git's index lock: one batch, one sync.
    std::fs::create_dir_all(fx.p.p(".git")).unwrap();
    std::fs::write(fx.p.p(".git/index.lock"), "").unwrap();
    for i in 0..1000 {
        write_now(&fx, &format!("web/many/f{i:04}.html"), &format!("f{i}\n"));
    }
    std::fs::remove_file(fx.p.p(".git/index.lock")).unwrap();
    let from = w.seen.len();
    let (_, actions) = w.batch(false);
    assert_eq!(
        w.since(from, "watch_batch").len(),
        1,
        "one batch: {:#?}",
        w.since(from, "watch_batch")
    );
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(actions[0]["files"], 1000);
    assert_eq!(get(wp, "/many/f0500.html"), "f500\n");

    // An injected rescan reads the container back: it matches, nothing to do.
    // SAFETY: kill(2) on the child's pid, which this process spawned and has not reaped.
    unsafe { libc::kill(w.child.id() as i32, libc::SIGUSR1) };
    let b = w.until(|e| e["event"] == "watch_batch" && !e["rescan"].is_null());
    assert_eq!(b["actions"], 0, "{b}");

    // `lifeos status` says how the container differs from its image.
    let s = fx.p.run(&["status"]);
    assert!(
        s.stdout.contains("differs from its image by"),
        "{}",
        s.all()
    );

    // No image was built since watch was ready, and web is the same container.
    let builds: Vec<_> = w
        .since(ready, "task_started")
        .into_iter()
        .filter(|e| e["task"] == "web-img")
        .collect();
    assert!(builds.is_empty(), "{builds:#?}");
    assert_eq!(fx.container("web"), web_id);
}

#[test]
fn watch_rebuilds_what_a_manifest_changes_and_reapplies_to_a_new_container() {
    let fx = DockerFx::new();
    let (wp, ap) = (free_port(), free_port());
    project(&fx, wp, ap);
    let mut w = Watcher::start(&fx, &[]);
    let first = try_get(ap, "/")
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", w.stderr(), fx.p.run(&["status"]).all()));
    assert!(
        first.starts_with("handler one {\"version\":\"1\"}"),
        "{first}"
    );
    let web_id = fx.container("web");

    // The handler is synced, then the api restarts.
    let handler =
        fx.p.read("api/handler.sh")
            .replace("handler one", "handler two");
    write_now(&fx, "api/handler.sh", &handler);
    let (_, actions) = w.batch(false);
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(actions[0]["action"], "sync");
    assert_eq!(actions[0]["restarted"], true, "{actions:#?}");
    assert!(get(ap, "/").starts_with("handler two"));

    // The manifest is not synced: api's image is rebuilt and its service recreated; web
    // stays as it is.
    let api_id = fx.container("api");
    let from = w.seen.len();
    write_now(&fx, "api/manifest.json", "{\"version\":\"2\"}\n");
    // On a loaded machine the write's last event can come after the build started: that
    // build is cancelled and one new one runs (the next batch).
    let mut actions = Vec::new();
    loop {
        let (_, more) = w.batch(false);
        let cancelled = more.iter().any(|a| a["action"] == "cancel");
        actions.extend(more);
        if !cancelled {
            break;
        }
    }
    let kinds: Vec<(String, String)> = actions
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().into(),
                a["task"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("rebuild".into(), "api-img".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("recreate".into(), "api".into())),
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|(_, t)| t.starts_with("web")),
        "{kinds:?}"
    );
    // Only api's image and service ran (to the end once, each).
    let done: Vec<String> = w
        .since(from, "task_finished")
        .iter()
        .filter(|e| {
            !["interrupted", "skipped"].contains(&e["outcome"]["outcome"].as_str().unwrap_or(""))
        })
        .map(|e| e["task"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(done, ["api-img", "api"], "{:#?}", &w.seen[from..]);
    assert!(
        w.since(from, "task_started")
            .iter()
            .all(|e| e["task"] == "api-img" || e["task"] == "api"),
        "{:#?}",
        &w.seen[from..]
    );
    assert_ne!(fx.container("api"), api_id);
    assert_eq!(fx.container("web"), web_id);
    assert_eq!(get(ap, "/"), "handler two {\"version\":\"2\"}");

    // web's container re-created outside lifeos (same labels, same image): the synced edit
    // is copied into the new one.
    write_now(&fx, "web/index.html", "edited before the re-create\n");
    w.batch(false);
    let image = docker(&["inspect", "-f", "{{.Image}}", &web_id]);
    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", &web_id]);
    let labels: serde_json::Map<String, Value> = serde_json::from_str(&labels).unwrap();
    let mut args = vec!["run".to_string(), "-d".into()];
    for (k, v) in &labels {
        args.push("--label".into());
        args.push(format!("{k}={}", v.as_str().unwrap()));
    }
    args.push(image);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let new_id = docker(&args);
    docker(&["rm", "-f", &web_id]);
    let b =
        w.until(|e| e["event"] == "watch_action" && e["task"] == "web" && e["action"] == "sync");
    assert!(b["reason"].as_str().unwrap().contains("re-created"), "{b}");
    assert_eq!(
        docker(&["exec", &new_id, "cat", "/srv/www/index.html"]),
        "edited before the re-create"
    );
}

#[test]
fn watch_limit_reached_says_which_sysctl_and_polls() {
    let fx = DockerFx::new();
    let (wp, ap) = (free_port(), free_port());
    project(&fx, wp, ap);
    let mut w = Watcher::start(&fx, &[("LIFEOS_WATCH_LIMIT", "1")]);
    let ready = w.seen.last().unwrap().clone();
    assert!(ready["polled_dirs"].as_u64().unwrap() >= 1, "{ready}");
    let err = w.stderr();
    let told = err
        .lines()
        .filter(|l| l.contains("fs.inotify.max_user_watches"))
        .count();
    assert_eq!(told, 1, "one message: {err}");
    // Changes in a polled directory still arrive.
    write_now(&fx, "web/index.html", "seen by polling\n");
    let (_, actions) = w.batch(false);
    assert_eq!(actions[0]["action"], "sync", "{actions:#?}");
    assert_eq!(get(wp, "/index.html"), "seen by polling\n");

    // Ctrl-C: watch says so and exits 0; the services keep running.
    // SAFETY: kill(2) on the child's pid, which this process spawned and has not reaped.
    unsafe { libc::kill(w.child.id() as i32, libc::SIGINT) };
    w.until(|e| e["event"] == "watch_stopped");
    assert_eq!(w.child.wait().unwrap().code(), Some(0));
    assert!(!fx.container("web").is_empty());
}

/// The actions of a batch as (action, task).
fn kinds(actions: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = actions
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().into(),
                a["task"].as_str().unwrap().into(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn watch_reconnects_to_the_engine_rescans_and_reapplies_synced_files() {
    let fx = DockerFx::new();
    let (wp, ap) = (free_port(), free_port());
    project(&fx, wp, ap);
    let proxy = EngineProxy::start();
    let host = proxy.host();
    let mut w = Watcher::start(&fx, &[("DOCKER_HOST", &host)]);
    assert_eq!(get(wp, "/index.html"), "page v1\n");
    let web_id = fx.container("web");
    let events = |p: &EngineProxy| {
        p.requests()
            .iter()
            .filter(|l| l.starts_with("GET ") && l.contains("/events"))
            .count()
    };
    let streams = events(&proxy);
    assert!(streams >= 1, "{:#?}", proxy.requests());

    // Every connection to the engine cut (the events stream with them), nothing changed:
    // lifeos reconnects, rescans (reading the containers back), and does nothing.
    proxy.cut();
    let b = w.until(|e| {
        e["event"] == "watch_batch"
            && e["rescan"]
                .as_str()
                .is_some_and(|r| r.contains("events are back"))
    });
    assert_eq!(b["actions"], 0, "{b}");
    assert!(
        w.stderr().contains("lost the engine's events"),
        "{}",
        w.stderr()
    );
    assert!(events(&proxy) > streams, "{:#?}", proxy.requests());

    // Then the engine away for a while: a synced file edited on the host meanwhile cannot be
    // copied, and another one changes in the container behind lifeos's back.
    proxy.set_down(true);
    proxy.cut();
    write_now(&fx, "web/index.html", "edited while the engine was away\n");
    let (_, actions) = w.batch(true);
    assert!(
        !actions
            .iter()
            .any(|a| a["action"] == "sync" && a["failed"].is_null()),
        "nothing can be copied without the engine: {actions:#?}"
    );
    assert_eq!(
        docker(&["exec", &web_id, "cat", "/srv/www/index.html"]),
        "page v1"
    );
    docker(&[
        "exec",
        "-u",
        "0",
        &web_id,
        "sh",
        "-c",
        "echo changed in the container > /srv/www/b.html",
    ]);
    // Back: the rescan finds both and copies them, in one action; nothing else happens.
    proxy.set_down(false);
    let from = w.seen.len();
    let b = w.until(|e| {
        e["event"] == "watch_batch"
            && e["rescan"]
                .as_str()
                .is_some_and(|r| r.contains("events are back"))
    });
    assert_eq!(b["actions"], 1, "{b}");
    let actions = w.since(from, "watch_action");
    assert_eq!(
        kinds(&actions),
        [("sync".to_string(), "web".to_string())],
        "{actions:#?}"
    );
    assert_eq!(actions[0]["files"], 2, "{actions:#?}");
    // Through a receiver opened again over the new connection (the cut ended the old one).
    assert_eq!(actions[0]["via"], "stream", "{actions:#?}");
    assert_eq!(get(wp, "/index.html"), "edited while the engine was away\n");
    assert_eq!(container_tree(&web_id, "/srv/www"), host_tree(&fx, "web"));
    assert_eq!(fx.container("web"), web_id);

    // Cut once more with nothing changed: a rescan and no action.
    proxy.cut();
    let b = w.until(|e| {
        e["event"] == "watch_batch"
            && e["rescan"]
                .as_str()
                .is_some_and(|r| r.contains("events are back"))
    });
    assert_eq!(b["actions"], 0, "{b}");
}

#[test]
fn watch_git_checkout_of_1000_files_is_one_batch() {
    let fx = DockerFx::new();
    let (wp, ap) = (free_port(), free_port());
    project(&fx, wp, ap);
    for i in 0..1000 {
        fx.p.file(&format!("web/many/f{i:04}.html"), &format!("main {i}\n"));
    }
    let git = |args: &[&str]| {
        crate::support::git(&fx.p.p("."), args);
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(fx.p.p(".git/info/exclude"), ".lifeos/\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "main"]);
    // Another branch: the 1,000 synced files and the api's manifest (a rebuild) differ.
    git(&["checkout", "-q", "-b", "other"]);
    for i in 0..1000 {
        fx.p.file(&format!("web/many/f{i:04}.html"), &format!("other {i}\n"));
    }
    fx.p.file("api/manifest.json", "{\"version\":\"3\"}\n");
    git(&["commit", "-q", "-am", "other"]);
    git(&["checkout", "-q", "main"]);

    let mut w = Watcher::start(&fx, &[]);
    assert_eq!(get(wp, "/many/f0500.html"), "main 500\n");
    let web_id = fx.container("web");
    let from = w.seen.len();

    git(&["checkout", "-q", "other"]);
    let (_, actions) = w.batch(false);
    assert_eq!(
        kinds(&actions),
        [
            ("rebuild".to_string(), "api-img".to_string()),
            ("recreate".to_string(), "api".to_string()),
            ("sync".to_string(), "web".to_string()),
        ],
        "{actions:#?}"
    );
    let sync = actions.iter().find(|a| a["action"] == "sync").unwrap();
    assert_eq!(sync["files"], 1000, "{sync}");
    // A marker after it: a touch (content unchanged) is a batch of one path and no action.
    // Events arrive in order, so a checkout split in two would show a batch before it.
    let st = std::process::Command::new("touch")
        .arg(fx.p.p("web/index.html"))
        .status()
        .unwrap();
    assert!(st.success());
    let (marker, none) = w.batch(true);
    assert_eq!(
        (marker["paths"].as_u64(), none.len()),
        (Some(1), 0),
        "{marker}"
    );
    let batches = w.since(from, "watch_batch");
    assert_eq!(batches.len(), 2, "one batch for the checkout: {batches:#?}");
    // At most one build per affected image: api's, once; web's never.
    let started: Vec<String> = w
        .since(from, "task_started")
        .iter()
        .map(|e| e["task"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(started, ["api-img", "api"], "{started:?}");
    assert_eq!(get(wp, "/many/f0500.html"), "other 500\n");
    assert!(get(ap, "/").contains("\"version\":\"3\""));
    assert_eq!(fx.container("web"), web_id);
}

/// Processes of lifeos's sync receiver in a container (`docker top`), while it waits.
fn receivers(id: &str) -> usize {
    docker(&["top", id])
        .lines()
        .filter(|l| l.contains("lifeos-sync-receiver"))
        .count()
}

/// Exec instances running in a container (the engine lists only running ones).
fn execs(id: &str) -> usize {
    let v: Value =
        serde_json::from_str(&docker(&["inspect", "-f", "{{json .ExecIDs}}", id])).unwrap();
    v.as_array().map_or(0, Vec::len)
}

/// The next sync action of `task`.
fn next_sync(w: &mut Watcher, task: &str) -> Value {
    w.until(|e| e["event"] == "watch_action" && e["action"] == "sync" && e["task"] == task)
}

#[test]
fn watch_syncs_through_one_resident_receiver_and_leaves_none_behind() {
    let fx = DockerFx::new();
    let (wp, ap) = (free_port(), free_port());
    project(&fx, wp, ap);
    let mut w = Watcher::start(&fx, &[]);
    assert_eq!(get(wp, "/index.html"), "page v1\n");
    let web_id = fx.container("web");
    // Started with the watch: one receiver, one exec, before any edit.
    assert_eq!(receivers(&web_id), 1, "{}", docker(&["top", &web_id]));
    assert_eq!(execs(&web_id), 1);

    // Edits, a new directory, a link, a file that becomes a directory and one that comes
    // back: each batch one frame to the same receiver, and the container is the host.
    let dir = fx.p.p("web");
    type Edit<'a> = Box<dyn Fn() + 'a>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "edit",
            Box::new(|| write_now(&fx, "web/index.html", "page v2\n")),
        ),
        (
            "new dir",
            Box::new(|| write_now(&fx, "web/sub/a.html", "a\n")),
        ),
        (
            "link",
            Box::new(|| std::os::unix::fs::symlink("index.html", dir.join("home.html")).unwrap()),
        ),
        (
            "file to dir",
            Box::new(|| {
                std::fs::remove_file(dir.join("b.html")).unwrap();
                write_now(&fx, "web/b.html/inner.html", "inner\n");
            }),
        ),
        (
            "dir to file",
            Box::new(|| {
                std::fs::remove_dir_all(dir.join("sub")).unwrap();
                write_now(&fx, "web/sub", "sub is a file\n");
            }),
        ),
    ];
    for (name, edit) in &edits {
        edit();
        let (_, actions) = w.batch(false);
        assert_eq!(actions.len(), 1, "{name}: {actions:#?}");
        assert_eq!(actions[0]["via"], "stream", "{name}: {actions:#?}");
        assert!(actions[0]["failed"].is_null(), "{name}: {actions:#?}");
        assert!(actions[0]["stream_error"].is_null(), "{name}: {actions:#?}");
    }
    assert_eq!(get(wp, "/index.html"), "page v2\n");
    assert_eq!(get(wp, "/home.html"), "page v2\n");
    assert_eq!(get(wp, "/b.html/inner.html"), "inner\n");
    assert_eq!(get(wp, "/sub"), "sub is a file\n");
    let mut host = host_tree(&fx, "web");
    host.retain(|(p, _)| p != "home.html");
    let mut inside = container_tree(&web_id, "/srv/www");
    inside
        .iter_mut()
        .for_each(|(_, c)| *c = c.trim().to_string());
    assert_eq!(inside, host);
    // Owners and modes as the archive endpoint gives them: the header's, links included.
    let stat = |p: &str| docker(&["exec", &web_id, "stat", "-c", "%u:%g %a %F", p]);
    assert_eq!(stat("/srv/www/index.html"), "65534:65534 644 regular file");
    assert_eq!(stat("/srv/www/b.html"), "65534:65534 755 directory");
    assert_eq!(stat("/srv/www/home.html"), "65534:65534 777 symbolic link");
    assert_eq!(receivers(&web_id), 1, "{}", docker(&["top", &web_id]));

    // Ctrl-C: the receiver sees its stdin close and exits; no exec is left running.
    // SAFETY: kill(2) on the child's pid, which this process spawned and has not reaped.
    unsafe { libc::kill(w.child.id() as i32, libc::SIGINT) };
    w.until(|e| e["event"] == "watch_stopped");
    assert_eq!(w.child.wait().unwrap().code(), Some(0));
    assert_eq!(receivers(&web_id), 0, "{}", docker(&["top", &web_id]));
    assert_eq!(execs(&web_id), 0);
    assert_eq!(execs(&fx.container("api")), 0);
}

#[test]
fn watch_reopens_the_receiver_when_the_container_restarts_or_is_killed() {
    let fx = DockerFx::new();
    let (wp, ap) = (free_port(), free_port());
    project(&fx, wp, ap);
    let mut w = Watcher::start(&fx, &[]);
    assert_eq!(get(wp, "/index.html"), "page v1\n");
    let web_id = fx.container("web");
    write_now(&fx, "web/index.html", "before the restart\n");
    assert_eq!(next_sync(&mut w, "web")["via"], "stream");

    // The receiver killed: the next batch finds it gone and opens a new one.
    let pid = docker(&["top", &web_id, "-o", "pid,args"])
        .lines()
        .find(|l| l.contains("lifeos-sync-receiver"))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .expect("a receiver runs");
    let st = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    write_now(&fx, "web/index.html", "after the kill\n");
    let a = next_sync(&mut w, "web");
    assert_eq!(
        (&a["via"], &a["reopened"]),
        (&json!("stream"), &json!(true)),
        "{a}"
    );
    assert_eq!(get(wp, "/index.html"), "after the kill\n");
    assert_eq!(receivers(&web_id), 1, "{}", docker(&["top", &web_id]));

    // Restarted from outside: the exec dies with it; the next batch has a new one (in a
    // new container if lifeos saw it stopped and brought the service back itself).
    docker(&["restart", "-t", "1", &web_id]);
    write_now(&fx, "web/index.html", "after the restart\n");
    let a = next_sync(&mut w, "web");
    assert_eq!(a["via"], "stream", "{a}");
    assert_eq!(get(wp, "/index.html"), "after the restart\n");
    let web_id = fx.container("web");
    assert_eq!(receivers(&web_id), 1, "{}", docker(&["top", &web_id]));

    // Killed: lifeos brings the service back (its image, rebuilt with the host's files or
    // synced into) with a receiver of its own, and the next edit goes through that.
    write_now(&fx, "web/new.html", "new\n");
    assert_eq!(next_sync(&mut w, "web")["via"], "stream");
    docker(&["kill", &web_id]);
    let back = w
        .until(|e| e["event"] == "watch_action" && e["action"] == "recreate" && e["task"] == "web");
    w.until(|e| e["event"] == "watch_batch" && e["batch"] == back["batch"]);
    let now = fx.container("web");
    write_now(&fx, "web/index.html", "after the kill of the container\n");
    let a = next_sync(&mut w, "web");
    assert_eq!(a["via"], "stream", "{a}");
    assert_eq!(get(wp, "/index.html"), "after the kill of the container\n");
    assert_eq!(get(wp, "/new.html"), "new\n");
    let mut inside = container_tree(&now, "/srv/www");
    inside
        .iter_mut()
        .for_each(|(_, c)| *c = c.trim().to_string());
    assert_eq!(inside, host_tree(&fx, "web"));
    assert_eq!(receivers(&now), 1, "{}", docker(&["top", &now]));
}

#[test]
fn watch_without_sh_in_the_image_copies_through_the_archive_endpoint() {
    let fx = DockerFx::new();
    let port = free_port();
    // busybox as /bin/httpd only: no sh, tar or dd to run a receiver with.
    std::fs::create_dir_all(fx.p.p("bin")).unwrap();
    std::fs::copy("/bin/busybox", fx.p.p("bin/httpd")).unwrap();
    fx.p.file("web/index.html", "bare v1\n").file(
        "Dockerfile",
        "FROM scratch\nCOPY bin/httpd /bin/httpd\nCOPY web/ /srv/www/\nCMD [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/srv/www\"]\n",
    );
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[tasks.bare-img]
kind = "image"
context = "."
tag = "{tag}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.bare]
kind = "service"
image = "bare-img"
ports = ["127.0.0.1:{port}:8080"]
labels = {{ "lifeos.test" = "{id}" }}
sync = [{{ from = "web", to = "/srv/www" }}]
"#,
        id = fx.id,
        tag = fx.tag("bare"),
    ));
    let mut w = Watcher::start(&fx, &[]);
    assert_eq!(get(port, "/index.html"), "bare v1\n");
    for i in 2..4 {
        write_now(&fx, "web/index.html", &format!("bare v{i}\n"));
        write_now(&fx, &format!("web/p{i}/page.html"), &format!("page {i}\n"));
        let a = next_sync(&mut w, "bare");
        assert_eq!(a["via"], "archive", "{a}");
        assert!(a["failed"].is_null(), "{a}");
        assert_eq!(get(port, "/index.html"), format!("bare v{i}\n"));
        assert_eq!(
            get(port, &format!("/p{i}/page.html")),
            format!("page {i}\n")
        );
    }
    let err = w.stderr();
    let told: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("archive endpoint"))
        .collect();
    assert_eq!(told.len(), 1, "said once: {err}");
    assert!(told[0].contains("bare"), "{err}");
    assert!(told[0].contains("not found"), "the runtime's reason: {err}");
}
