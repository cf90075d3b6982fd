//! The resolved config, and its compiled form kept in the cache directory.
//!
//! Resolving lifeos.toml yields one [`Resolved`] task per table, in file order; [`instantiate`]
//! turns them into graph nodes. The same list is saved as `config.compiled.json`, stamped
//! with the file's blake3, the options that shape resolution (`--env`, `--set`,
//! `--cache-dir`) and the lifeos binary. The next load with the same stamp skips parsing
//! and resolving, which on a 10,000-task file is most of a no-op run. Anything unexpected
//! (another stamp, a corrupt file, a checked path gone) means a normal load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeos_engine::{Node, TaskSpec};
use lifeos_tasks::container::{ContainerSpec, ImageRef};
use lifeos_tasks::exec::{Command, ExecTask};
use lifeos_tasks::image::{ImageSpec, ImageTask};
use lifeos_tasks::{ContainerTask, Docker, ServiceTask};
use serde::{Deserialize, Serialize};

use super::Kind;

/// Bump when the meaning of the compiled form changes.
const VERSION: u32 = 1;
pub const FILE_NAME: &str = "config.compiled.json";

/// One task after resolution: everything needed to build its node, nothing from the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resolved {
    pub spec: TaskSpec,
    pub body: Body,
}

/// Big variants are boxed: 10,000 of these are read at once, and a smaller element keeps
/// that vector's growth cheap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Body {
    Exec {
        run: Command,
        cwd: String,
        inputs: Vec<String>,
        outputs: Vec<String>,
    },
    Image {
        spec: Box<ImageSpec>,
        /// Not in `ImageSpec`'s serde form, which is its key.
        tags: Vec<String>,
    },
    Service(Box<Container>),
    Container(Box<Container>),
}

/// A container spec plus the fields its key leaves out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub spec: ContainerSpec,
    pub project: String,
    pub task: String,
    /// The tag of an image task the container runs.
    pub reference: Option<String>,
}

impl Container {
    pub fn new(spec: ContainerSpec) -> Self {
        let reference = match &spec.image {
            ImageRef::Task { reference, .. } => Some(reference.clone()),
            ImageRef::External(_) => None,
        };
        Self {
            project: spec.project.clone(),
            task: spec.task.clone(),
            reference,
            spec,
        }
    }

    fn full(&self) -> ContainerSpec {
        let mut s = self.spec.clone();
        s.project.clone_from(&self.project);
        s.task.clone_from(&self.task);
        if let (ImageRef::Task { reference, .. }, Some(r)) = (&mut s.image, &self.reference) {
            reference.clone_from(r);
        }
        s
    }
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Exec { .. } => Kind::Exec,
            Body::Image { .. } => Kind::Image,
            Body::Service(_) => Kind::Service,
            Body::Container(_) => Kind::Container,
        }
    }
}

/// Graph nodes for resolved tasks (in file order). A one-shot container acts on the services
/// it depends on: it waits for them and its key covers their identity.
pub fn instantiate(tasks: Vec<Resolved>, docker: &Docker) -> Result<Vec<Node>, String> {
    let services: HashMap<String, ContainerSpec> = tasks
        .iter()
        .filter_map(|t| match &t.body {
            Body::Service(c) => Some((t.spec.id.clone(), c.full())),
            _ => None,
        })
        .collect();
    let mut nodes = Vec::with_capacity(tasks.len());
    for t in tasks {
        let task: Arc<dyn lifeos_engine::Task> = match t.body {
            Body::Exec {
                run,
                cwd,
                inputs,
                outputs,
            } => Arc::new(ExecTask::new(run, cwd, inputs, outputs).map_err(|e| e.message)?),
            Body::Image { mut spec, tags } => {
                spec.tags = tags;
                Arc::new(ImageTask::new(*spec, docker.clone()))
            }
            Body::Service(c) => Arc::new(ServiceTask::new(c.full(), docker.clone())),
            Body::Container(c) => {
                let acts_on = t
                    .spec
                    .deps
                    .iter()
                    .filter_map(|d| services.get(d.as_str()).cloned())
                    .collect();
                Arc::new(ContainerTask::new(c.full(), acts_on, docker.clone()))
            }
        };
        nodes.push(Node { spec: t.spec, task });
    }
    Ok(nodes)
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

impl Stamp {
    pub fn new(file: &Path, source: &[u8], opts: &super::LoadOptions) -> Self {
        Self {
            version: VERSION,
            build: build_id(),
            file: file.to_path_buf(),
            source: blake3::hash(source).to_hex().to_string(),
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

#[derive(Serialize, Deserialize)]
pub struct Compiled {
    pub stamp: Stamp,
    pub name: String,
    pub cache_dir: PathBuf,
    /// Paths resolution found present (`true`: a directory): checked again on every use.
    pub present: Vec<(String, bool)>,
    pub tasks: Vec<Resolved>,
}

impl Compiled {
    /// The compiled config in `cache_dir` if it matches `stamp` and its checked paths hold.
    pub fn load(cache_dir: &Path, stamp: &Stamp, root: &Path) -> Option<Compiled> {
        let bytes = std::fs::read(cache_dir.join(FILE_NAME)).ok()?;
        // The stamp alone first: after an edit the tasks are not worth building.
        #[derive(Deserialize)]
        struct Head {
            stamp: Stamp,
        }
        let head: Head = serde_json::from_slice(&bytes).ok()?;
        if head.stamp != *stamp {
            return None;
        }
        let c: Compiled = serde_json::from_slice(&bytes).ok()?;
        let holds = c.present.iter().all(|(p, dir)| {
            let p = root.join(p);
            if *dir {
                p.is_dir()
            } else {
                p.is_file()
            }
        });
        (c.cache_dir == cache_dir && holds).then_some(c)
    }

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

    use lifeos_tasks::Docker;

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
                    "{:?} | {} | {} | {} | {:?} | {:?}",
                    n.spec,
                    n.task.kind(),
                    n.task.config(),
                    n.task.describe(),
                    n.task.writes(),
                    p.kinds.get(id),
                )
            })
            .collect()
    }

    #[test]
    fn a_compiled_load_builds_the_same_project_as_a_parse() {
        let (_t, file) = fixture();
        let docker = Docker::new();
        for env in [None, Some("prod".to_string())] {
            let opts = LoadOptions {
                env: env.clone(),
                ..Default::default()
            };
            let parsed = load(&file, &opts, &docker).unwrap();
            assert!(!parsed.compiled, "first load of {env:?} parses");
            let compiled = load(&file, &opts, &docker).unwrap();
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
        let p = load(&file, &prod, &docker).unwrap();
        assert!(shape(&p)[0].contains("hello"), "{}", shape(&p)[0]);
    }

    #[test]
    fn an_edit_a_corrupt_file_or_a_missing_path_means_a_fresh_parse() {
        let (t, file) = fixture();
        let (docker, opts) = (Docker::new(), LoadOptions::default());
        load(&file, &opts, &docker).unwrap();
        assert!(load(&file, &opts, &docker).unwrap().compiled);

        // Same size, one byte changed.
        fs::write(&file, CONFIG.replace("sleep\", \"300", "sleep\", \"301")).unwrap();
        let p = load(&file, &opts, &docker).unwrap();
        assert!(!p.compiled);
        assert!(shape(&p).iter().any(|s| s.contains("301")));

        let compiled = t.path().join(".lifeos").join(super::FILE_NAME);
        fs::write(&compiled, b"{ not json").unwrap();
        assert!(!load(&file, &opts, &docker).unwrap().compiled);
        assert!(load(&file, &opts, &docker).unwrap().compiled);

        // The Dockerfile resolution found is gone: the normal load reports it.
        fs::remove_file(t.path().join("app/Dockerfile")).unwrap();
        let Err(crate::config::LoadError::Config(d)) = load(&file, &opts, &docker) else {
            panic!("a missing Dockerfile is a config error");
        };
        assert!(d.errors[0]
            .message
            .contains("Dockerfile `app/Dockerfile` not found"));
    }

    #[test]
    fn container_fields_outside_the_key_survive_the_round_trip() {
        let (t, file) = fixture();
        let p = load(&file, &LoadOptions::default(), &Docker::new()).unwrap();
        assert!(!p.compiled);
        // What `load` saves for the next run, read back.
        let opts = LoadOptions::default();
        let (c, _) = super::super::resolve(
            CONFIG,
            &file,
            t.path(),
            &opts,
            super::Stamp::new(&file, CONFIG.as_bytes(), &opts),
        )
        .ok()
        .unwrap();
        let back: super::Compiled = serde_json::from_slice(&c.to_bytes()).unwrap();
        for (a, b) in c.tasks.iter().zip(&back.tasks) {
            if let (super::Body::Service(x), super::Body::Service(y)) = (&a.body, &b.body) {
                assert_eq!(format!("{:?}", x.full()), format!("{:?}", y.full()));
                assert_eq!(y.full().project, "demo");
                assert_eq!(y.full().task, "db");
                assert_eq!(y.full().image.reference(), "demo/img:1");
            }
        }
    }

    #[test]
    fn set_values_are_not_written_in_the_clear() {
        let (t, file) = fixture();
        let opts = LoadOptions {
            set: vec![("unused".into(), "TOPSECRET-1234".into())],
            ..Default::default()
        };
        load(&file, &opts, &Docker::new()).unwrap();
        let saved = fs::read_to_string(t.path().join(".lifeos").join(super::FILE_NAME)).unwrap();
        assert!(saved.contains("\"options\""), "a compiled config was saved");
        assert!(!saved.contains("TOPSECRET"), "{saved}");
        assert!(load(&file, &opts, &Docker::new()).unwrap().compiled);
    }

    #[test]
    fn no_cache_directory_no_compiled_config() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("lifeos.toml");
        fs::write(&file, "[tasks.a]\nkind = \"exec\"\nrun = \"true\"\n").unwrap();
        let (docker, opts) = (Docker::new(), LoadOptions::default());
        load(&file, &opts, &docker).unwrap();
        assert!(!load(&file, &opts, &docker).unwrap().compiled);
        assert!(
            !t.path().join(".lifeos").exists(),
            "loading creates nothing"
        );
    }
}
