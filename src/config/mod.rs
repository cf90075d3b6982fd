//! Loading lifeos.toml: parse with spans, select the environment, apply `--set`, interpolate
//! `${vars.x}`, validate every task, and build the graph. All errors come back together,
//! each pointing at its place in the file; nothing runs unless the whole file is sound.

mod containers;
mod raw;
mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lifeos_engine::{Graph, GraphError, Node};
use lifeos_tasks::container::ContainerSpec;
use lifeos_tasks::{ContainerTask, Docker};

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
pub use raw::Kind;
use raw::{RawConfig, RawTask, S};
use resolve::{Built, Resolver};

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
    let source = std::fs::read_to_string(file)
        .map_err(|e| LoadError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let root = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let display = pathdiff(&file);
    let fail = |errors: Vec<Diagnostic>| {
        LoadError::Config(Box::new(Diagnostics {
            path: display.clone(),
            source: source.clone(),
            errors,
        }))
    };
    let raw: RawConfig = toml::from_str(&source).map_err(|e| {
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
        errors: Vec::new(),
        source: &source,
        root: &root,
    };
    cx.collect_vars(&raw, opts)?;

    let name = raw
        .project
        .as_ref()
        .and_then(|p| p.name.as_ref())
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(|| {
            root.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "lifeos".into())
        });
    let cache_dir = match (
        &opts.cache_dir,
        raw.project.as_ref().and_then(|p| p.cache_dir.as_ref()),
    ) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => root.join(cx.interp(d).unwrap_or_default()),
        (None, None) => root.join(".lifeos"),
    };

    // Declaration order, not the map's sorted order.
    let mut tasks: Vec<(&S<String>, &S<RawTask>)> = raw.tasks.iter().collect();
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
    cx.project = name.clone();
    let mut nodes = Vec::new();
    let mut pending_containers = Vec::new();
    let mut services: HashMap<String, ContainerSpec> = HashMap::new();
    let mut kinds = HashMap::new();
    let mut dep_spans: HashMap<(String, String), Range<usize>> = HashMap::new();
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
            dep_spans.insert((id.clone(), d.get_ref().clone()), d.span());
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
        match cx.task(&id, name, task, &name_for_tags(&project_tags, &id), docker) {
            Some(Built::Node(node, service)) => {
                kinds.insert(id.clone(), *t.kind.get_ref());
                if let Some(s) = service {
                    services.insert(id.clone(), s);
                }
                nodes.push(node);
            }
            Some(Built::Container(spec, cspec)) => {
                kinds.insert(id.clone(), *t.kind.get_ref());
                pending_containers.push((spec, cspec));
            }
            None => {}
        }
    }
    for (spec, cspec) in pending_containers {
        let acts_on = spec
            .deps
            .iter()
            .filter_map(|d| services.get(d).cloned())
            .collect();
        nodes.push(Node {
            spec,
            task: Arc::new(ContainerTask::new(cspec, acts_on, docker.clone())),
        });
    }
    // Graph order follows the file, whatever kind a task is.
    let order: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i))
        .collect();
    nodes.sort_by_key(|n| order.get(&n.spec.id).copied().unwrap_or(usize::MAX));
    if !cx.errors.is_empty() {
        return Err(fail(cx.errors));
    }
    let graph = Graph::new(nodes).map_err(|e| match e {
        GraphError::Cycle { path } => {
            let span = dep_spans
                .get(&(path[0].clone(), path[1].clone()))
                .cloned()
                .unwrap_or(0..0);
            fail(vec![Diagnostic::new(format!(
                "dependency cycle: {}",
                path.join(" → ")
            ))
            .at(span, format!("`{}` depends on `{}` here", path[0], path[1]))
            .help("remove one of these dependencies")])
        }
        other => fail(vec![Diagnostic::new(other.to_string())]),
    })?;
    Ok(Project {
        name,
        root,
        file,
        cache_dir,
        graph: Arc::new(graph),
        kinds,
        docker: docker.clone(),
    })
}

fn name_str(raw: &RawConfig) -> Option<String> {
    raw.project
        .as_ref()
        .and_then(|p| p.name.as_ref())
        .map(|n| n.get_ref().clone())
}

fn name_for_tags(project: &Option<String>, task: &str) -> String {
    match project {
        Some(p) => format!("{p}-{task}:latest"),
        None => format!("{task}:latest"),
    }
}

fn pathdiff(file: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    file.strip_prefix(&cwd)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| file.display().to_string())
}

pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        "w" => n * 7.0 * 86400.0,
        _ => return None,
    };
    (secs > 0.0).then(|| Duration::from_secs_f64(secs))
}
