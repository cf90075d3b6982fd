//! Property tests of the lifeos.toml loader: generated configs (every field, with good and
//! bad values) and mutated ones (bytes inserted, deleted, replaced, lines repeated) never
//! panic or hang, and every rejection is a config error with a `file:line:col` position.
//! The library loader takes most cases (it is fast); the binary a few, for the exit code.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use lifeos::config::{load, LoadError, LoadOptions};
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::support::Project;

/// Longer than any sane load; a load that takes this long is a hang.
const HANG: Duration = Duration::from_secs(30);

/// A project dir with what configs refer to: a context with a Dockerfile, a source file.
fn project() -> Project {
    let p = Project::new();
    p.file("ctx/Dockerfile", "FROM scratch\n")
        .file("src/a.txt", "a")
        .file("Dockerfile", "FROM scratch\n");
    p
}

/// Load `bytes` as lifeos.toml in `dir` on another thread: the error text, if rejected.
fn load_in(dir: &Path, bytes: &[u8]) -> Result<(), String> {
    let file = dir.join("lifeos.toml");
    std::fs::write(&file, bytes).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = load(&file, &LoadOptions::default()).map(|_| ());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(HANG) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(LoadError::Config(d))) => {
            let text = d.render(false);
            let positions = text.matches(" --> ").count();
            if d.errors.is_empty()
                || d.errors.iter().any(|e| e.span.is_none())
                || positions != d.errors.len()
                || !text.contains("lifeos.toml:")
            {
                return Err(format!("a config error without a position:\n{text}"));
            }
            Err(text)
        }
        Ok(Err(LoadError::Usage(m))) => Err(format!("USAGE (no position): {m}")),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the load hangs"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the load panicked"),
    }
}

/// Fails the case unless `bytes` loads, or is rejected with positions.
fn check(dir: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    match load_in(dir, bytes) {
        Err(m) if m.starts_with("USAGE") || m.starts_with("a config error without") => {
            Err(TestCaseError::fail(format!(
                "{m}\n--- config\n{}",
                String::from_utf8_lossy(bytes)
            )))
        }
        _ => Ok(()),
    }
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A string value: a sample of good and bad ones, or anything printable.
fn text(samples: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(samples).prop_map(|s| s.to_string()),
        1 => "\\PC{0,24}",
    ]
    .prop_map(|s| quoted(&s))
    .boxed()
}

fn list(samples: &'static [&'static str]) -> BoxedStrategy<String> {
    proptest::collection::vec(text(samples), 0..4)
        .prop_map(|v| format!("[{}]", v.join(", ")))
        .boxed()
}

const DURATIONS: &[&str] = &[
    "30s",
    "500ms",
    "0s",
    "0.0000000001s",
    "99999999999d",
    "999999999999999999999999999s",
    "1.5h",
    "1e9s",
    "-1s",
    "",
    "7d",
    "8d",
    "2w",
];
const NAMES: &[&str] = &["lifeos", "", "a/b", "..", "Web.App_1", "-x", "é"];
const GLOBS: &[&str] = &[
    "src/**",
    "**",
    "*.toml",
    "!src/a.txt",
    "dist/**",
    ".lifeos/x",
    ".git/**",
    "src/[a",
    "/abs",
    "../up",
    "",
    "{a,b}/**/*.?",
    "!**",
];
const IMAGES: &[&str] = &[
    "busybox:latest",
    "UPPER:Case",
    "a:b:c:d",
    "",
    "img",
    "svc",
    "localhost:5000/x/y:1",
    "x@sha256:0000",
];
const PORTS: &[&str] = &[
    "8080:80",
    "0:0",
    "999.1.1.1:20001:80",
    "127.0.0.1:5432:5432/udp",
    "65536:1",
    "80",
    "a:b",
];
const VOLUMES: &[&str] = &["data:/data", "./src:/src:ro", "/abs:/x", "x", "../up:/y"];
const KINDS: &[&str] = &["exec", "image", "service", "container", "shell"];
const TASKS: &[&str] = &["img", "svc", "run", "job", "x y", ""];

/// One `[tasks.NAME]` table with a random subset of fields.
fn task() -> impl Strategy<Value = String> {
    let fields: Vec<BoxedStrategy<String>> = vec![
        text(&["true", "echo hi", "${vars.v}", "${vars.nope}", "${"])
            .prop_map(|v| format!("run = {v}"))
            .boxed(),
        list(GLOBS).prop_map(|v| format!("inputs = {v}")).boxed(),
        list(GLOBS).prop_map(|v| format!("outputs = {v}")).boxed(),
        text(DURATIONS).prop_map(|v| format!("timeout = {v}")).boxed(),
        prop_oneof![Just(0u64), Just(3), Just(100), Just(101), Just(u32::MAX as u64)]
            .prop_map(|v| format!("retries = {v}"))
            .boxed(),
        prop_oneof![
            Just("true".to_string()),
            Just("false".to_string()),
            text(DURATIONS).prop_map(|d| format!("{{ every = {d} }}")),
            Just("{ every = 5 }".to_string()),
        ]
        .prop_map(|v| format!("cache = {v}"))
        .boxed(),
        list(TASKS).prop_map(|v| format!("deps = {v}")).boxed(),
        list(&["MODE=ci", "HOME", "1BAD", "A=b=c"])
            .prop_map(|v| format!("env = {v}"))
            .boxed(),
        list(&["TOKEN", "bad-name", ""]).prop_map(|v| format!("secrets = {v}")).boxed(),
        text(&["ctx", ".", "nope", "../x"]).prop_map(|v| format!("context = {v}")).boxed(),
        text(&["ctx/Dockerfile", "nope/Dockerfile", "/etc/passwd"])
            .prop_map(|v| format!("dockerfile = {v}"))
            .boxed(),
        text(IMAGES).prop_map(|v| format!("tag = {v}")).boxed(),
        list(IMAGES).prop_map(|v| format!("tags = {v}")).boxed(),
        text(IMAGES).prop_map(|v| format!("image = {v}")).boxed(),
        list(PORTS).prop_map(|v| format!("ports = {v}")).boxed(),
        list(VOLUMES).prop_map(|v| format!("volumes = {v}")).boxed(),
        (text(DURATIONS), text(DURATIONS), text(DURATIONS))
            .prop_map(|(i, t, s)| {
                format!("health = {{ cmd = \"true\", interval = {i}, timeout = {t}, start_period = {s} }}")
            })
            .boxed(),
        text(&["no", "always", "sometimes"]).prop_map(|v| format!("restart = {v}")).boxed(),
        text(&["buildkit", "classic", "other"]).prop_map(|v| format!("builder = {v}")).boxed(),
        text(&["src", "nope", "/abs"]).prop_map(|v| format!("cwd = {v}")).boxed(),
        list(&["sh", "-c", "true"]).prop_map(|v| format!("cmd = {v}")).boxed(),
    ];
    let picked =
        proptest::collection::vec(proptest::option::weighted(0.3, fields_union(fields)), 0..8);
    (
        proptest::sample::select(TASKS),
        proptest::sample::select(KINDS),
        picked,
    )
        .prop_map(|(name, kind, fields)| {
            let mut t = format!("[tasks.{}]\nkind = \"{kind}\"\n", quoted(name));
            for f in fields.into_iter().flatten() {
                t.push_str(&f);
                t.push('\n');
            }
            t
        })
}

fn fields_union(fields: Vec<BoxedStrategy<String>>) -> impl Strategy<Value = String> {
    proptest::strategy::Union::new(fields)
}

/// A whole config: an optional [project], [vars], and a few tasks.
fn config() -> impl Strategy<Value = String> {
    (
        proptest::option::of(text(NAMES)),
        proptest::option::of(text(&[".lifeos", "build/cache", "."])),
        proptest::collection::vec(task(), 0..5),
    )
        .prop_map(|(name, cache_dir, tasks)| {
            let mut s = String::new();
            if name.is_some() || cache_dir.is_some() {
                s.push_str("[project]\n");
                if let Some(n) = name {
                    s.push_str(&format!("name = {n}\n"));
                }
                if let Some(c) = cache_dir {
                    s.push_str(&format!("cache_dir = {c}\n"));
                }
            }
            s.push_str("[vars]\nv = \"1\"\n\n");
            // Duplicate task names are a TOML error, which is fine: it has a position too.
            s.push_str(&tasks.join("\n"));
            s
        })
}

/// A valid config to mutate.
const SEED: &str = r#"[project]
name = "demo"

[vars]
tag = "dev"

[tasks.test]
kind = "exec"
run = "true"
inputs = ["src/**", "!**/*.md"]
outputs = ["dist/**"]
env = ["MODE=ci"]
secrets = ["API_TOKEN"]
timeout = "5m"
retries = 2
cache = { every = "24h" }

[tasks.web]
kind = "image"
context = "ctx"
tag = "demo-web:${vars.tag}"
deps = ["test"]

[tasks.db]
kind = "service"
image = "busybox:latest"
ports = ["127.0.0.1:5432:5432"]
volumes = ["pgdata:/data"]
health = { cmd = ["true"], interval = "500ms", retries = 60, timeout = "5s", start_period = "0s" }

[tasks.migrate]
kind = "container"
image = "web"
cmd = ["sh", "-c", "true"]
deps = ["db"]
"#;

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Replace(usize, u8),
    RepeatLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..6),
        proptest::sample::select(vec![
            b"\"".to_vec(),
            b"[".to_vec(),
            b"]".to_vec(),
            b"\n".to_vec(),
            b"=".to_vec(),
            b"${".to_vec(),
            b"**".to_vec(),
            b"99999999999d".to_vec(),
            b"\xff".to_vec(),
            b"\\u0000".to_vec(),
        ]),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..12).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), bytes).prop_map(|(a, b)| Edit::Insert(a, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Replace(a, b)),
        any::<usize>().prop_map(Edit::RepeatLine),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Delete(i, n) => {
                let s = at(*i, b.len()).min(b.len());
                let e = (s + n).min(b.len());
                b.drain(s..e);
            }
            Edit::Insert(i, x) => {
                let s = at(*i, b.len());
                b.splice(s..s, x.iter().copied());
            }
            Edit::Replace(i, x) if !b.is_empty() => {
                let s = i % b.len();
                b[s] = *x;
            }
            Edit::Replace(..) => {}
            Edit::RepeatLine(i) => {
                let lines: Vec<&[u8]> = b.split(|c| *c == b'\n').collect();
                let k = i % lines.len();
                let line = lines[k].to_vec();
                let mut out = Vec::new();
                for (j, l) in lines.iter().enumerate() {
                    out.extend_from_slice(l);
                    out.push(b'\n');
                    if j == k {
                        out.extend_from_slice(&line);
                        out.push(b'\n');
                    }
                }
                b = out;
            }
        }
    }
    b
}

#[test]
fn the_seed_loads() {
    let p = project();
    assert_eq!(load_in(p.path(), SEED.as_bytes()), Ok(()));
}

proptest! {
    #![proptest_config(Config { cases: 256, failure_persistence: None, ..Config::default() })]

    #[test]
    fn generated_configs_load_or_fail_with_a_position(toml in config()) {
        let p = project();
        check(p.path(), toml.as_bytes())?;
    }

    #[test]
    fn mutated_configs_load_or_fail_with_a_position(edits in proptest::collection::vec(edit(), 1..6)) {
        let p = project();
        check(p.path(), &apply(SEED.as_bytes(), &edits))?;
    }
}

proptest! {
    // The binary: a few cases, for the exit code and the printed position.
    #![proptest_config(Config { cases: 24, failure_persistence: None, ..Config::default() })]

    #[test]
    fn the_binary_exits_2_with_a_position_or_0(
        toml in config(),
        edits in proptest::collection::vec(edit(), 0..3),
    ) {
        let p = project();
        let bytes = apply(toml.as_bytes(), &edits);
        std::fs::write(p.p("lifeos.toml"), &bytes).unwrap();
        let r = p.run(&["graph"]);
        prop_assert!(r.code == 0 || r.code == 2, "exit {}: {}", r.code, r.all());
        if r.code == 2 {
            prop_assert!(
                r.stderr.contains("lifeos.toml:") && r.stderr.contains("nothing was run"),
                "{}\n--- config\n{}", r.all(), String::from_utf8_lossy(&bytes)
            );
        }
    }
}
