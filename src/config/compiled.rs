//! The resolved config, and its compiled form kept in the cache directory.
//!
//! Resolving lifeos.toml yields one [`Resolved`] task per table, in file order; [`instantiate`]
//! turns them into graph nodes. The same list is saved as `config.compiled.json`, stamped
//! with the file's blake3, the options that shape resolution (`--env`, `--set`,
//! `--cache-dir`) and the lifeos binary. The next load with the same stamp skips parsing
//! and resolving, which on a 10,000-task file is most of a no-op run. Anything unexpected
//! (another stamp, a corrupt file, a checked path gone) means a normal load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lifeos_engine::{Node, TaskSpec};
use lifeos_tasks::kind::InstantiateCx;
use lifeos_tasks::Services;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Bump when the meaning of the compiled form changes.
const VERSION: u32 = 2;
pub const FILE_NAME: &str = "config.compiled.json";

/// One task after resolution: everything needed to build its node, nothing from the file.
/// The body is the kind's own serde form, kept raw until its kind reads it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Resolved {
    pub spec: TaskSpec,
    pub kind: String,
    pub body: Box<RawValue>,
}

/// A [`Resolved`] as a compiled load reads it: kind and body borrowed from the file's text
/// (two allocations and a copy of every body fewer on a 10,000-task load).
#[derive(Deserialize)]
pub struct ResolvedRef<'a> {
    spec: TaskSpec,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// What [`instantiate`] needs of a resolved task, owned or borrowed.
pub trait ResolvedTask {
    fn parts(&self) -> (&TaskSpec, &str, &RawValue);
    fn into_spec(self) -> TaskSpec;
}

impl ResolvedTask for Resolved {
    fn parts(&self) -> (&TaskSpec, &str, &RawValue) {
        (&self.spec, &self.kind, &self.body)
    }
    fn into_spec(self) -> TaskSpec {
        self.spec
    }
}

impl ResolvedTask for ResolvedRef<'_> {
    fn parts(&self) -> (&TaskSpec, &str, &RawValue) {
        (&self.spec, &self.kind, self.body)
    }
    fn into_spec(self) -> TaskSpec {
        self.spec
    }
}

/// Graph nodes for resolved tasks (in file order), each built by its kind.
pub fn instantiate<T: ResolvedTask>(
    tasks: Vec<T>,
    services: &Services,
    registry: &lifeos_tasks::kind::Registry,
) -> Result<Vec<Node>, String> {
    // Borrowed, not copied: three allocations per task on every load otherwise.
    let peers: Vec<(&str, &str, &RawValue)> = tasks
        .iter()
        .map(|t| {
            let (spec, kind, body) = t.parts();
            (spec.id.as_str(), kind, body)
        })
        .collect();
    let cx = InstantiateCx::new(services, &peers);
    let mut made = Vec::with_capacity(tasks.len());
    for t in &tasks {
        let (spec, kind, body) = t.parts();
        let k = registry
            .get(kind)
            .ok_or_else(|| format!("task `{}`: unknown kind `{kind}`", spec.id))?;
        made.push(k.instantiate(spec, body, &cx)?);
    }
    drop(cx);
    drop(peers);
    Ok(tasks
        .into_iter()
        .zip(made)
        .map(|(t, task)| Node {
            spec: t.into_spec(),
            task,
        })
        .collect())
}

/// A remote cache as the config sets it (credentials come from the environment only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remote {
    pub url: String,
    pub read: bool,
    pub write: bool,
    pub timeout_ms: u64,
}

/// What a compiled config is valid for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub version: u32,
    /// The lifeos binary (version, size and mtime): a rebuilt lifeos may resolve differently.
    pub build: String,
    pub file: PathBuf,
    /// blake3 of lifeos.toml.
    pub source: String,
    /// blake3 of `--env`, `--set` and `--cache-dir`: a value passed with `--set` is not
    /// written down in the clear.
    pub options: String,
}

/// blake3 of the regular file at `path`, read in pieces; `None` if it cannot be read.
pub fn hash_file(path: &Path) -> Option<blake3::Hash> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut h = blake3::Hasher::new();
    if meta.len() < 64 * 1024 {
        // A small file read whole: `update_reader`'s 64 KiB stack buffer would be 16 fresh
        // pages for a 1 KiB lifeos.toml, and page faults are most of a no-op's cost.
        let mut buf = Vec::with_capacity(meta.len() as usize + 1);
        std::io::Read::read_to_end(&mut &f, &mut buf).ok()?;
        h.update(&buf);
    } else {
        h.update_reader(f).ok()?;
    }
    Some(h.finalize())
}

impl Stamp {
    pub fn new(file: &Path, source: &[u8], opts: &super::LoadOptions) -> Self {
        Self::with_hash(file, blake3::hash(source), opts)
    }

    /// The stamp for a file whose content hashes to `source`.
    pub fn with_hash(file: &Path, source: blake3::Hash, opts: &super::LoadOptions) -> Self {
        Self {
            version: VERSION,
            build: build_id(),
            file: file.to_path_buf(),
            source: source.to_hex().to_string(),
            options: {
                let o = serde_json::json!([opts.env, opts.set, opts.cache_dir]);
                blake3::hash(o.to_string().as_bytes()).to_hex().to_string()
            },
        }
    }
}

fn build_id() -> String {
    use std::os::unix::fs::MetadataExt;
    let exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| format!("{}.{}.{}", m.len(), m.mtime(), m.mtime_nsec()))
        .unwrap_or_default();
    format!("{}+{exe}", env!("CARGO_PKG_VERSION"))
}

/// `T`: [`Resolved`] when resolved or saved, [`ResolvedRef`] when loaded.
#[derive(Serialize, Deserialize)]
pub struct Compiled<T = Resolved> {
    pub stamp: Stamp,
    pub name: String,
    pub cache_dir: PathBuf,
    /// Paths resolution found present (`true`: a directory): checked again on every use.
    pub present: Vec<(String, bool)>,
    /// `[cache] remote`, resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Remote>,
    /// The `${git.*}` values resolution used, if any: checked again on every use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<BTreeMap<String, String>>,
    pub tasks: Vec<T>,
}

/// The text of a compiled config, read for [`Compiled::parse`].
pub struct CompiledText(String);

impl Compiled {
    /// The compiled config's text in `cache_dir` if it starts with `stamp` (cheap: the
    /// tasks are not worth parsing after an edit).
    pub fn read(cache_dir: &Path, stamp: &Stamp) -> Option<CompiledText> {
        let bytes = std::fs::read(cache_dir.join(FILE_NAME)).ok()?;
        // The stamp alone first: after an edit the tasks are not worth building. Compared
        // as the text it is written as (the first field), since parsing just the stamp
        // with serde_json still scans the whole file, a third of loading it.
        let mut head = br#"{"stamp":"#.to_vec();
        serde_json::to_writer(&mut head, stamp).ok()?;
        if !bytes.starts_with(&head) {
            return None;
        }
        // Checked as UTF-8 once: parsing from a `str` does not check every string again.
        String::from_utf8(bytes).ok().map(CompiledText)
    }

    /// The compiled config in `text` (from [`Compiled::read`]) if it matches `stamp`, was
    /// saved for `cache_dir` and its checked paths hold. Borrows the tasks from `text`.
    pub fn parse<'a>(
        text: &'a CompiledText,
        cache_dir: &Path,
        stamp: &Stamp,
        root: &Path,
    ) -> Option<Compiled<ResolvedRef<'a>>> {
        let c: Compiled<ResolvedRef<'a>> = serde_json::from_str(&text.0).ok()?;
        if c.stamp != *stamp {
            return None;
        }
        let holds = c.present.iter().all(|(p, dir)| {
            let p = root.join(p);
            if *dir {
                p.is_dir()
            } else {
                p.is_file()
            }
        });
        // A new commit or branch changes `${git.*}`: resolve again.
        let git_holds = match &c.git {
            None => true,
            Some(g) => lifeos_tasks::kind::git::read(root).ok().as_ref() == Some(g),
        };
        (c.cache_dir == cache_dir && holds && git_holds).then_some(c)
    }
}

impl Compiled {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a resolved config serializes")
    }

    /// Save `bytes` next to the cache (only where the cache already is: loading a config
    /// creates no directories). Best effort: a failure only costs the next load its speed.
    pub fn save(cache_dir: &Path, bytes: &[u8]) {
        // Only into lifeos's own cache directory, never a foreign one (or a symlink to one).
        if lifeos_cache::CacheDir::new(cache_dir.to_path_buf()).may_write() {
            let _ = lifeos_cache::atomic::write(&cache_dir.join(FILE_NAME), bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::config::{load, LoadOptions, Project};

    const CONFIG: &str = r#"
[project]
name = "demo"

[vars]
greeting = "hi"
unused = "x"

[environments.prod.vars]
greeting = "hello"

[tasks.build]
kind = "exec"
run = ["sh", "-c", "echo ${vars.greeting} > out/a"]
cwd = "src"
inputs = ["src/**", "!src/*.tmp"]
outputs = ["out/**"]
env = ["MODE=fast", "HOME"]
secrets = ["TOKEN"]
timeout = "90s"
retries = 2
cache = { every = "24h" }

[tasks.img]
kind = "image"
context = "app"
target = "runner"
build_args = { GREETING = "${vars.greeting}" }
labels = { team = "web" }
tags = ["demo/img:1", "demo/img"]
platform = "linux/amd64"
builder = "classic"
deps = ["build"]

[tasks.db]
kind = "service"
image = "img"
cmd = ["sleep", "300"]
ports = ["127.0.0.1:15432:5432"]
volumes = ["data:/data", "./src:/src:ro"]
health = { cmd = "true", interval = "200ms", retries = 3 }
restart = "unless-stopped"

[tasks.migrate]
kind = "container"
image = "busybox:latest"
entrypoint = ["sh"]
cmd = ["-c", "true"]
workdir = "/src"
user = "1000"
deps = ["db"]
"#;

    /// A project with CONFIG, its Dockerfile and source dir, and a cache directory.
    fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        for dir in ["app", "src", ".lifeos"] {
            fs::create_dir_all(t.path().join(dir)).unwrap();
        }
        fs::write(t.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
        let file = t.path().join("lifeos.toml");
        fs::write(&file, CONFIG).unwrap();
        (t, file)
    }

    /// Everything a node exposes, as text, for comparing two loads.
    fn shape(p: &Project) -> Vec<String> {
        p.graph
            .ids()
            .map(|id| {
                let n = p.graph.get(id).unwrap();
                format!(
                    "{:?} | {} | {} | {} | {:?}",
                    n.spec,
                    n.task.kind(),
                    n.task.config(),
                    n.task.describe(),
                    n.task.writes(),
                )
            })
            .collect()
    }

    #[test]
    fn a_compiled_load_builds_the_same_project_as_a_parse() {
        let (_t, file) = fixture();
        for env in [None, Some("prod".to_string())] {
            let opts = LoadOptions {
                env: env.clone(),
                ..Default::default()
            };
            let parsed = load(&file, &opts).unwrap();
            assert!(!parsed.compiled, "first load of {env:?} parses");
            let compiled = load(&file, &opts).unwrap();
            assert!(compiled.compiled, "second load of {env:?} is compiled");
            assert_eq!(shape(&parsed), shape(&compiled));
            assert_eq!(
                (&parsed.name, &parsed.cache_dir),
                (&compiled.name, &compiled.cache_dir)
            );
        }
        // --env changes the stamp: the prod build says hello, the default one hi.
        let prod = LoadOptions {
            env: Some("prod".into()),
            ..Default::default()
        };
        let p = load(&file, &prod).unwrap();
        assert!(shape(&p)[0].contains("hello"), "{}", shape(&p)[0]);
    }

    #[test]
    fn an_edit_a_corrupt_file_or_a_missing_path_means_a_fresh_parse() {
        let (t, file) = fixture();
        let opts = LoadOptions::default();
        load(&file, &opts).unwrap();
        assert!(load(&file, &opts).unwrap().compiled);

        // Same size, one byte changed.
        fs::write(&file, CONFIG.replace("sleep\", \"300", "sleep\", \"301")).unwrap();
        let p = load(&file, &opts).unwrap();
        assert!(!p.compiled);
        assert!(shape(&p).iter().any(|s| s.contains("301")));

        let compiled = t.path().join(".lifeos").join(super::FILE_NAME);
        fs::write(&compiled, b"{ not json").unwrap();
        assert!(!load(&file, &opts).unwrap().compiled);
        assert!(load(&file, &opts).unwrap().compiled);

        // The Dockerfile resolution found is gone: the normal load reports it.
        fs::remove_file(t.path().join("app/Dockerfile")).unwrap();
        let Err(crate::config::LoadError::Config(d)) = load(&file, &opts) else {
            panic!("a missing Dockerfile is a config error");
        };
        assert!(d.errors[0]
            .message
            .contains("Dockerfile `app/Dockerfile` not found"));
    }

    #[test]
    fn container_fields_outside_the_key_survive_the_round_trip() {
        let (t, file) = fixture();
        let p = load(&file, &LoadOptions::default()).unwrap();
        assert!(!p.compiled);
        // What `load` saves for the next run, read back.
        let opts = LoadOptions::default();
        let (c, _) = super::super::resolve(
            CONFIG,
            &file,
            t.path(),
            &opts,
            super::Stamp::new(&file, CONFIG.as_bytes(), &opts),
            &lifeos_tasks::kinds::REGISTRY,
        )
        .ok()
        .unwrap();
        let back: super::Compiled = serde_json::from_slice(&c.to_bytes()).unwrap();
        let mut services = 0;
        for (a, b) in c.tasks.iter().zip(&back.tasks) {
            assert_eq!((&a.kind, a.body.get()), (&b.kind, b.body.get()));
            if b.kind == "service" {
                let spec: lifeos_tasks::ContainerSpec = serde_json::from_str(b.body.get()).unwrap();
                assert_eq!(spec.project, "demo");
                assert_eq!(spec.task, "db");
                assert_eq!(spec.image.reference(), "demo/img:1");
                services += 1;
            }
        }
        assert_eq!(services, 1);
    }

    #[test]
    fn set_values_are_not_written_in_the_clear() {
        let (t, file) = fixture();
        let opts = LoadOptions {
            set: vec![("unused".into(), "TOPSECRET-1234".into())],
            ..Default::default()
        };
        load(&file, &opts).unwrap();
        let saved = fs::read_to_string(t.path().join(".lifeos").join(super::FILE_NAME)).unwrap();
        assert!(saved.contains("\"options\""), "a compiled config was saved");
        assert!(!saved.contains("TOPSECRET"), "{saved}");
        assert!(load(&file, &opts).unwrap().compiled);
    }

    #[test]
    fn no_cache_directory_no_compiled_config() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("lifeos.toml");
        fs::write(&file, "[tasks.a]\nkind = \"exec\"\nrun = \"true\"\n").unwrap();
        let opts = LoadOptions::default();
        load(&file, &opts).unwrap();
        assert!(!load(&file, &opts).unwrap().compiled);
        assert!(
            !t.path().join(".lifeos").exists(),
            "loading creates nothing"
        );
    }
}
