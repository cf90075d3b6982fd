//! Loading lifeos.toml: parse with spans, select the environment, apply `--set`, interpolate
//! `${vars.x}`, validate every task, and build the graph. All errors come back together,
//! each pointing at its place in the file; nothing runs unless the whole file is sound.

mod compiled;
mod containers;
mod duration;
mod names;
mod overlap;
mod raw;
mod resolve;
mod source;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use compiled::{Compiled, Resolved, Stamp};
use lifeos_engine::{Graph, GraphError};
use lifeos_tasks::Docker;

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
pub use compiled::FILE_NAME as COMPILED_FILE_NAME;
pub use raw::Kind;
use raw::{RawConfig, RawTask, S};
use resolve::Resolver;

pub const FILE_NAME: &str = "lifeos.toml";

#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    pub env: Option<String>,
    pub set: Vec<(String, String)>,
    pub cache_dir: Option<PathBuf>,
}

pub struct Project {
    pub name: String,
    pub root: PathBuf,
    pub file: PathBuf,
    pub cache_dir: PathBuf,
    pub graph: Arc<Graph>,
    pub kinds: HashMap<String, Kind>,
    /// The engine connection, made on first use and shared by every task.
    pub docker: Docker,
    /// Loaded from the compiled config in the cache, not parsed.
    pub compiled: bool,
}

impl Project {
    /// Task names of one kind, in file order.
    pub fn of_kind(&self, kind: Kind) -> Vec<String> {
        self.graph
            .ids()
            .filter(|id| self.kinds.get(*id) == Some(&kind))
            .map(str::to_owned)
            .collect()
    }
}

#[derive(Debug)]
pub enum LoadError {
    /// Errors with places in the file.
    Config(Box<Diagnostics>),
    /// Errors without a place: a missing file, a bad `--env` or `--set`.
    Usage(String),
}

/// Find lifeos.toml in `dir` or the nearest ancestor.
pub fn find(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(FILE_NAME))
        .find(|p| p.is_file())
}

pub fn load(file: &Path, opts: &LoadOptions, docker: &Docker) -> Result<Project, LoadError> {
    let source = source::read(file).map_err(|e| match e {
        source::SourceError::Usage(m) => LoadError::Usage(m),
        source::SourceError::Encoding(text, d) => config_error(file, &text, vec![d]),
    })?;
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let root = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    // Where the cache is unless the file moves it; the compiled config lives there.
    let cache_guess = opts
        .cache_dir
        .clone()
        .unwrap_or_else(|| root.join(".lifeos"));
    if let Some(d) = &opts.cache_dir {
        lifeos_cache::dir::check_location(d, &root, home().as_deref())
            .map_err(|e| LoadError::Usage(format!("{e} (from --cache-dir / LIFEOS_CACHE_DIR)")))?;
    }
    let stamp = Stamp::new(&file, source.as_bytes(), opts);
    if let Some(c) = Compiled::load(&cache_guess, &stamp, &root) {
        if let Ok(p) = project(c, &root, &file, docker) {
            return Ok(Project {
                compiled: true,
                ..p
            });
        }
    }
    let (compiled, dep_spans) = resolve(&source, &file, &root, opts, stamp)?;
    let save = (compiled.cache_dir == cache_guess).then(|| compiled.to_bytes());
    let fail = |d: Diagnostic| config_error(&file, &source, vec![d]);
    let project = project(compiled, &root, &file, docker).map_err(|e| match e {
        ProjectError::Graph(GraphError::Cycle { path }) => {
            let span = dep_spans
                .get(&(path[0].clone(), path[1].clone()))
                .cloned()
                .unwrap_or(0..0);
            fail(
                Diagnostic::new(format!("dependency cycle: {}", path.join(" → ")))
                    .at(span, format!("`{}` depends on `{}` here", path[0], path[1]))
                    .help("remove one of these dependencies"),
            )
        }
        ProjectError::Graph(other) => fail(Diagnostic::new(other.to_string())),
        ProjectError::Task(m) => fail(Diagnostic::new(m)),
    })?;
    if let Some(bytes) = save {
        Compiled::save(&cache_guess, &bytes);
    }
    Ok(project)
}

/// Errors with places in `file`, for the diagnostic renderer.
fn config_error(file: &Path, source: &str, errors: Vec<Diagnostic>) -> LoadError {
    LoadError::Config(Box::new(Diagnostics {
        path: pathdiff(file),
        source: source.to_string(),
        errors,
    }))
}

enum ProjectError {
    Graph(GraphError),
    Task(String),
}

/// The project for a resolved config: nodes, kinds, graph.
fn project(
    c: Compiled,
    root: &Path,
    file: &Path,
    docker: &Docker,
) -> Result<Project, ProjectError> {
    let kinds = c
        .tasks
        .iter()
        .map(|t| (t.spec.id.clone(), t.body.kind()))
        .collect();
    let nodes = compiled::instantiate(c.tasks, docker).map_err(ProjectError::Task)?;
    let graph = Graph::new(nodes).map_err(ProjectError::Graph)?;
    Ok(Project {
        name: c.name,
        root: root.to_path_buf(),
        file: file.to_path_buf(),
        cache_dir: c.cache_dir,
        graph: Arc::new(graph),
        kinds,
        docker: docker.clone(),
        compiled: false,
    })
}

/// Parse and resolve lifeos.toml: every error at once, each with its place in the file.
fn resolve(
    source: &str,
    file: &Path,
    root: &Path,
    opts: &LoadOptions,
    stamp: Stamp,
) -> Result<(Compiled, DepSpans), LoadError> {
    let fail = |errors: Vec<Diagnostic>| config_error(file, source, errors);
    let raw: RawConfig = toml::from_str(source).map_err(|e| {
        let d = Diagnostic::new(e.message().to_string());
        fail(vec![match e.span() {
            Some(s) => d.at(s, "here"),
            None => d,
        }])
    })?;
    let mut cx = Resolver {
        vars: BTreeMap::new(),
        image_tags: HashMap::new(),
        project: String::new(),
        kinds: HashMap::new(),
        secret_names: HashMap::new(),
        errors: Vec::new(),
        source,
        root,
        present: Vec::new(),
        protected: Vec::new(),
    };
    cx.collect_vars(&raw, opts)?;

    let name = match raw.project.as_ref().and_then(|p| p.name.as_ref()) {
        Some(n) => {
            if let Some(why) = names::project_problem(n.get_ref()) {
                cx.err(
                    Diagnostic::new("invalid project name")
                        .at(n.span(), why)
                        .help("the name prefixes container, network and volume names: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"),
                );
            }
            n.get_ref().clone()
        }
        None => names::project_from_dir(
            &root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    let cache_dir = match (
        &opts.cache_dir,
        raw.project.as_ref().and_then(|p| p.cache_dir.as_ref()),
    ) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => {
            let dir = root.join(cx.interp(d).unwrap_or_default());
            if let Err(e) = lifeos_cache::dir::check_location(&dir, root, home().as_deref()) {
                cx.err(
                    Diagnostic::new("invalid `cache_dir`")
                        .at(d.span(), e)
                        .help("lifeos deletes its cache with `lifeos cache clean`; give it a directory of its own"),
                );
            }
            dir
        }
        (None, None) => root.join(".lifeos"),
    };
    cx.protected = protected(file, root, &cache_dir);

    // Declaration order, not the map's sorted order.
    let mut tasks: Vec<(&S<String>, &S<RawTask>)> =
        raw.tasks.iter().map(|(k, t)| (k, &**t)).collect();
    tasks.sort_by_key(|(k, _)| k.span().start);
    let names: Vec<&str> = tasks.iter().map(|(k, _)| k.get_ref().as_str()).collect();
    let name_set: std::collections::HashSet<&str> = names.iter().copied().collect();

    let project_tags = name_str(&raw);
    // Image tasks' tags, for services that run them. Errors in them are reported once,
    // when the image task itself is resolved below.
    let before = cx.errors.len();
    let mut image_tags = HashMap::new();
    for (k, t) in &tasks {
        let t = t.get_ref();
        if *t.kind.get_ref() != Kind::Image {
            continue;
        }
        let first = t
            .tag
            .as_ref()
            .or_else(|| t.tags.as_ref().and_then(|v| v.first()));
        let mut tag = match first {
            Some(x) => cx.interp(x).unwrap_or_default(),
            None => name_for_tags(&project_tags, k.get_ref()),
        };
        if !tag.rsplit('/').next().unwrap_or("").contains(':') {
            tag.push_str(":latest");
        }
        image_tags.insert(k.get_ref().clone(), tag);
    }
    cx.errors.truncate(before);
    cx.image_tags = image_tags;
    for (k, t) in &tasks {
        for s in &t.get_ref().secrets {
            cx.secret_names
                .entry(s.get_ref().clone())
                .or_insert_with(|| k.get_ref().clone());
        }
    }
    cx.kinds = tasks
        .iter()
        .map(|(k, t)| (k.get_ref().clone(), *t.get_ref().kind.get_ref()))
        .collect();
    cx.project = name.clone();
    let mut resolved: Vec<Resolved> = Vec::with_capacity(tasks.len());
    let mut dep_spans = DepSpans::default();
    for (name, task) in &tasks {
        let id = name.get_ref().clone();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            cx.err(
                Diagnostic::new(format!("invalid task name `{id}`"))
                    .at(name.span(), "use letters, digits, `-`, `_` and `.`"),
            );
        }
        let t = task.get_ref();
        for d in &t.deps {
            if !name_set.contains(d.get_ref().as_str()) {
                let mut diag = Diagnostic::new(format!("unknown dependency `{}`", d.get_ref()))
                    .at(d.span(), "no task with this name");
                diag = match did_you_mean(d.get_ref(), names.iter().copied()) {
                    Some(s) => diag.help(format!("did you mean `{s}`?")),
                    None => diag.help(format!("defined tasks: {}", names.join(", "))),
                };
                cx.err(diag);
            }
            if d.get_ref() == &id {
                cx.err(
                    Diagnostic::new(format!("task `{id}` depends on itself")).at(d.span(), "here"),
                );
            }
        }
        if let Some(r) = cx.task(&id, name, task, &name_for_tags(&project_tags, &id)) {
            resolved.push(r);
        }
    }
    if !cx.errors.is_empty() {
        return Err(fail(cx.errors));
    }
    for (name, task) in &tasks {
        for d in &task.get_ref().deps {
            dep_spans.insert((name.get_ref().clone(), d.get_ref().clone()), d.span());
        }
    }
    Ok((
        Compiled {
            stamp,
            name,
            cache_dir,
            present: cx.present,
            tasks: resolved,
        },
        dep_spans,
    ))
}

/// What outputs may not match: the config file, the cache directory (when inside the
/// project) and `.git`.
fn protected(file: &Path, root: &Path, cache_dir: &Path) -> Vec<resolve::Protected> {
    let rel = |p: &Path| -> Option<String> {
        let p = std::path::absolute(p).ok()?;
        let r = p.strip_prefix(root).ok()?;
        let plain = r
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        (plain && !r.as_os_str().is_empty()).then(|| r.to_string_lossy().into_owned())
    };
    let mut v = Vec::new();
    if let Some(f) = rel(file) {
        v.push(resolve::Protected {
            paths: overlap::Paths::file(&f),
            what: format!("the config file `{f}`"),
        });
    }
    if let Some(c) = rel(cache_dir) {
        v.push(resolve::Protected {
            paths: overlap::Paths::new(&[&c]),
            what: format!("the cache directory `{c}/`"),
        });
    }
    v.push(resolve::Protected {
        paths: overlap::Paths::new(&[".git"]),
        what: "`.git/`".into(),
    });
    v
}

/// Where each dependency is written, for a cycle's message.
type DepSpans = HashMap<(String, String), Range<usize>>;

fn name_str(raw: &RawConfig) -> Option<String> {
    raw.project
        .as_ref()
        .and_then(|p| p.name.as_ref())
        .map(|n| n.get_ref().clone())
}

/// An image task's tag when it sets none. Repository names are lowercase.
fn name_for_tags(project: &Option<String>, task: &str) -> String {
    match project {
        Some(p) => format!("{p}-{task}:latest"),
        None => format!("{task}:latest"),
    }
    .to_lowercase()
}

fn pathdiff(file: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    file.strip_prefix(&cwd)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| file.display().to_string())
}

/// A positive duration such as `7d` or `30s` (`--older-than`); `None` when malformed.
pub fn parse_duration(s: &str) -> Option<Duration> {
    duration::parse(s)
}

/// `$HOME`, where a cache directory may not be.
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}
