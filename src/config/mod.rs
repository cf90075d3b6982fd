//! Loading lifeos.toml: parse with spans, select the environment, apply `--set`, interpolate
//! `${vars.x}`, validate every task, and build the graph. All errors come back together,
//! each pointing at its place in the file; nothing runs unless the whole file is sound.

mod raw;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lifeos_engine::{CachePolicy, EnvVar, Graph, GraphError, Node, TaskSpec};
use lifeos_tasks::container::{ContainerSpec, Health, ImageRef, Port, Volume};
use lifeos_tasks::exec::{Command, ExecTask};
use lifeos_tasks::image::{Builder, ImageSpec, ImageTask};
use lifeos_tasks::{ContainerTask, Docker, ServiceTask};
use toml::Value;

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
pub use raw::Kind;
use raw::{RawConfig, RawHealth, RawTask, S};

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

enum Built {
    /// A finished node; for services also their container spec (for `acts_on`).
    Node(Node, Option<ContainerSpec>),
    /// A one-shot container, built once every service is known.
    Container(TaskSpec, ContainerSpec),
}

struct Resolver<'a> {
    vars: BTreeMap<String, String>,
    image_tags: HashMap<String, String>,
    project: String,
    errors: Vec<Diagnostic>,
    source: &'a str,
    root: &'a Path,
}

fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Resolver<'_> {
    fn err(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    fn collect_vars(&mut self, raw: &RawConfig, opts: &LoadOptions) -> Result<(), LoadError> {
        let put = |this: &mut Self, k: &S<String>, v: &S<Value>| match value_string(v.get_ref()) {
            Some(s) => {
                this.vars.insert(k.get_ref().clone(), s);
            }
            None => this.err(
                Diagnostic::new(format!(
                    "variable `{}` must be a string, number or boolean",
                    k.get_ref()
                ))
                .at(v.span(), "not a plain value"),
            ),
        };
        for (k, v) in &raw.vars {
            put(self, k, v);
        }
        if let Some(env) = &opts.env {
            let Some((_, e)) = raw.environments.iter().find(|(k, _)| k.get_ref() == env) else {
                let known: Vec<&str> = raw
                    .environments
                    .keys()
                    .map(|k| k.get_ref().as_str())
                    .collect();
                let hint = match did_you_mean(env, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if known.is_empty() => "no [environments.NAME] tables are defined".into(),
                    None => format!("defined environments: {}", known.join(", ")),
                };
                return Err(LoadError::Usage(format!(
                    "unknown environment `{env}` (--env): {hint}"
                )));
            };
            for (k, v) in &e.vars {
                put(self, k, v);
            }
        }
        for (k, v) in &opts.set {
            if !self.vars.contains_key(k) {
                let known: Vec<&str> = self.vars.keys().map(String::as_str).collect();
                let hint = match did_you_mean(k, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "declare it under [vars] first".into(),
                };
                return Err(LoadError::Usage(format!(
                    "unknown variable `{k}` in --set: {hint}"
                )));
            }
            self.vars.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    /// Expand `${vars.name}` (and `$${` for a literal `${`).
    fn interp(&mut self, s: &S<String>) -> Option<String> {
        self.interp_at(s.get_ref(), s.span())
    }

    fn interp_at(&mut self, text: &str, span: Range<usize>) -> Option<String> {
        if !text.contains('$') {
            return Some(text.to_string());
        }
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(r) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = r;
                continue;
            }
            let Some(body) = after.strip_prefix("${") else {
                out.push('$');
                rest = &after[1..];
                continue;
            };
            let Some(end) = body.find('}') else {
                self.err(Diagnostic::new("unclosed `${` in string").at(span, "add a closing `}`"));
                return None;
            };
            let name = &body[..end];
            let placeholder = &after[..end + 3];
            let value = name
                .strip_prefix("vars.")
                .and_then(|v| self.vars.get(v))
                .cloned();
            match value {
                Some(v) => out.push_str(&v),
                None => {
                    let span = self.sub_span(span.clone(), placeholder);
                    let known: Vec<&str> = self.vars.keys().map(String::as_str).collect();
                    let mut d = Diagnostic::new(format!("unknown variable `{placeholder}`"))
                        .at(span, "not defined in [vars]");
                    d = match name.strip_prefix("vars.") {
                        None => d.help("variables are written `${vars.NAME}`"),
                        Some(v) => match did_you_mean(v, known.iter().copied()) {
                            Some(m) => d.help(format!("did you mean `${{vars.{m}}}`?")),
                            None if known.is_empty() => d.help("no [vars] are defined"),
                            None => d.help(format!("defined vars: {}", known.join(", "))),
                        },
                    };
                    self.err(d);
                    return None;
                }
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// The span of `needle` inside the string at `span`, or the whole string.
    fn sub_span(&self, span: Range<usize>, needle: &str) -> Range<usize> {
        self.source
            .get(span.clone())
            .and_then(|t| t.find(needle))
            .map(|i| span.start + i..span.start + i + needle.len())
            .unwrap_or(span)
    }

    fn strings(&mut self, v: &[S<String>]) -> Vec<String> {
        v.iter().filter_map(|s| self.interp(s)).collect()
    }

    /// A project-relative path that must stay inside the project.
    fn rel_path(&mut self, s: &S<String>, what: &str) -> Option<String> {
        let p = self.interp(s)?;
        if Path::new(&p).is_absolute() || p.split('/').any(|c| c == "..") {
            self.err(
                Diagnostic::new(format!("{what} must be a path inside the project"))
                    .at(s.span(), "absolute or leaves the project root"),
            );
            return None;
        }
        let p = p.trim_start_matches("./").trim_end_matches('/');
        Some(if p == "." {
            String::new()
        } else {
            p.to_string()
        })
    }

    fn globs(&mut self, v: &[S<String>], what: &str) -> Option<Vec<String>> {
        let pats = self.strings(v);
        if pats.len() != v.len() {
            return None;
        }
        if let Err(e) = lifeos_cache::InputSet::new(&pats) {
            self.err(
                Diagnostic::new(format!("bad glob in {what}: {}", e.message))
                    .at(v[e.index].span(), "this pattern"),
            );
            return None;
        }
        Some(pats)
    }

    fn spec(&mut self, id: &str, t: &RawTask) -> TaskSpec {
        let mut spec = TaskSpec::new(id);
        spec.deps = t.deps.iter().map(|d| d.get_ref().clone()).collect();
        for e in &t.env {
            let Some(v) = self.interp(e) else { continue };
            let var = EnvVar::parse(&v);
            if !valid_env_name(&var.name) {
                self.err(
                    Diagnostic::new(format!("invalid env entry `{}`", e.get_ref()))
                        .at(e.span(), "expected `NAME` (from the host) or `NAME=value`"),
                );
                continue;
            }
            spec.env.push(var);
        }
        for s in &t.secrets {
            if !valid_env_name(s.get_ref()) {
                self.err(
                    Diagnostic::new(format!("invalid secret name `{}`", s.get_ref()))
                        .at(s.span(), "secrets name host environment variables"),
                );
                continue;
            }
            spec.secrets.push(s.get_ref().clone());
        }
        if let Some(to) = &t.timeout {
            match parse_duration(to.get_ref()) {
                Some(d) => spec.timeout = Some(d),
                None => self.err(
                    Diagnostic::new(format!("invalid timeout `{}`", to.get_ref())).at(
                        to.span(),
                        "expected a duration such as \"30s\", \"5m\", \"2h\"",
                    ),
                ),
            }
        }
        if let Some(r) = &t.retries {
            spec.retries = *r.get_ref();
        }
        if let Some(c) = &t.cache {
            spec.cache = match c.get_ref() {
                Value::Boolean(true) => CachePolicy::Always,
                Value::Boolean(false) => CachePolicy::Never,
                Value::Table(tb)
                    if tb.len() == 1
                        && tb
                            .get("every")
                            .and_then(|v| v.as_str())
                            .and_then(parse_duration)
                            .is_some() =>
                {
                    CachePolicy::Every(parse_duration(tb["every"].as_str().unwrap()).unwrap())
                }
                _ => {
                    self.err(
                        Diagnostic::new("invalid `cache` value")
                            .at(c.span(), "expected true, false or { every = \"24h\" }"),
                    );
                    CachePolicy::Always
                }
            };
        }
        spec
    }

    fn task(
        &mut self,
        id: &str,
        name: &S<String>,
        task: &S<RawTask>,
        default_tag: &str,
        docker: &Docker,
    ) -> Option<Built> {
        let t = task.get_ref();
        let kind = *t.kind.get_ref();
        let allowed: &[&str] = match kind {
            Kind::Exec => &["run", "cwd", "inputs", "outputs"],
            Kind::Service | Kind::Container => &[
                "image",
                "cmd",
                "entrypoint",
                "workdir",
                "user",
                "ports",
                "volumes",
                "health",
                "restart",
                "labels",
            ],
            Kind::Image => &[
                "context",
                "dockerfile",
                "target",
                "build_args",
                "labels",
                "tag",
                "tags",
                "platform",
                "builder",
            ],
        };
        for (field, span) in t.kind_fields() {
            if !allowed.contains(&field) {
                self.err(
                    Diagnostic::new(format!(
                        "field `{field}` does not apply to kind `{}`",
                        kind.name()
                    ))
                    .at(span, "remove this field")
                    .help(format!(
                        "`{}` tasks take: {}",
                        kind.name(),
                        allowed.join(", ")
                    )),
                );
            }
        }
        let mut spec = self.spec(id, t);
        let errors_before = self.errors.len();
        if matches!(kind, Kind::Service | Kind::Container) {
            let cspec = self.container_spec(id, name, t, &mut spec)?;
            if self.errors.len() > errors_before {
                return None;
            }
            return Some(if kind == Kind::Service {
                Built::Node(
                    Node {
                        spec,
                        task: Arc::new(ServiceTask::new(cspec.clone(), docker.clone())),
                    },
                    Some(cspec),
                )
            } else {
                Built::Container(spec, cspec)
            });
        }
        let node_task: Arc<dyn lifeos_engine::Task> = match kind {
            Kind::Service | Kind::Container => unreachable!("handled above"),
            Kind::Exec => {
                let Some(run) = &t.run else {
                    self.err(
                        Diagnostic::new(format!("task `{id}` of kind `exec` needs `run`")).at(
                            name.span(),
                            "add run = \"command\" or run = [\"argv\", ...]",
                        ),
                    );
                    return None;
                };
                let command = match run.get_ref() {
                    Value::String(s) => self.interp_at(s, run.span()).map(Command::Shell),
                    Value::Array(a) if !a.is_empty() && a.iter().all(|v| v.is_str()) => {
                        let parts: Vec<String> = a
                            .iter()
                            .filter_map(|v| self.interp_at(v.as_str().unwrap(), run.span()))
                            .collect();
                        (parts.len() == a.len()).then_some(Command::Argv(parts))
                    }
                    _ => {
                        self.err(Diagnostic::new("invalid `run`").at(
                            run.span(),
                            "expected a command string or a non-empty array of strings",
                        ));
                        None
                    }
                };
                let cwd = t
                    .cwd
                    .as_ref()
                    .and_then(|c| self.rel_path(c, "cwd"))
                    .unwrap_or_default();
                let inputs = self.globs(t.inputs.as_deref().unwrap_or(&[]), "inputs");
                let outputs = self.globs(t.outputs.as_deref().unwrap_or(&[]), "outputs");
                let (command, inputs, outputs) = (command?, inputs?, outputs?);
                Arc::new(ExecTask::new(command, cwd, inputs, outputs).ok()?)
            }
            Kind::Image => {
                let context = match &t.context {
                    Some(c) => self.rel_path(c, "context"),
                    None => Some(String::new()),
                };
                if let (Some(ctx), Some(c)) = (&context, &t.context) {
                    if !self.root.join(ctx).is_dir() {
                        self.err(
                            Diagnostic::new(format!("context directory `{ctx}` not found"))
                                .at(c.span(), "no such directory under the project root"),
                        );
                    }
                }
                let dockerfile = match (&t.dockerfile, &context) {
                    (Some(d), _) => self.rel_path(d, "dockerfile"),
                    (None, Some(ctx)) => Some(if ctx.is_empty() {
                        "Dockerfile".into()
                    } else {
                        format!("{ctx}/Dockerfile")
                    }),
                    (None, None) => None,
                };
                if let Some(df) = &dockerfile {
                    if !self.root.join(df).is_file() {
                        let d = Diagnostic::new(format!("Dockerfile `{df}` not found"));
                        self.err(match &t.dockerfile {
                            Some(s) => d.at(s.span(), "no such file"),
                            None => d.at(
                                name.span(),
                                "no Dockerfile in the context; set `dockerfile`",
                            ),
                        });
                    }
                }
                let map = |this: &mut Self,
                           m: &Option<BTreeMap<String, S<String>>>|
                 -> BTreeMap<String, String> {
                    m.iter()
                        .flatten()
                        .filter_map(|(k, v)| this.interp(v).map(|v| (k.clone(), v)))
                        .collect()
                };
                let build_args = map(self, &t.build_args);
                let labels = map(self, &t.labels);
                if let (Some(a), Some(_)) = (&t.tag, &t.tags) {
                    self.err(Diagnostic::new("set `tag` or `tags`, not both").at(a.span(), "here"));
                }
                let mut tags: Vec<String> = match (&t.tag, &t.tags) {
                    (Some(a), _) => self.interp(a).into_iter().collect(),
                    (None, Some(v)) => self.strings(v),
                    (None, None) => vec![default_tag.to_string()],
                };
                for (i, tag) in tags.iter_mut().enumerate() {
                    if !tag.rsplit('/').next().unwrap_or("").contains(':') {
                        tag.push_str(":latest");
                    }
                    if tag.contains(char::is_whitespace) || tag.is_empty() {
                        let span = t
                            .tag
                            .as_ref()
                            .map(|s| s.span())
                            .or_else(|| t.tags.as_ref().map(|v| v[i].span()));
                        self.err(
                            Diagnostic::new(format!("invalid image tag `{tag}`"))
                                .at(span.unwrap_or(0..0), "here"),
                        );
                    }
                }
                let builder = match t.builder.as_ref().map(|b| (b.get_ref().as_str(), b.span())) {
                    None | Some(("buildkit", _)) => Builder::BuildKit,
                    Some(("classic", _)) => Builder::Classic,
                    Some((_, span)) => {
                        self.err(
                            Diagnostic::new("invalid `builder`")
                                .at(span, "expected \"buildkit\" or \"classic\""),
                        );
                        Builder::BuildKit
                    }
                };
                let target = t.target.as_ref().and_then(|x| self.interp(x));
                let platform = t.platform.as_ref().and_then(|x| self.interp(x));
                if self.errors.len() > errors_before {
                    return None;
                }
                Arc::new(ImageTask::new(
                    ImageSpec {
                        context: context?,
                        dockerfile: dockerfile?,
                        target,
                        build_args,
                        labels,
                        tags,
                        platform,
                        builder,
                    },
                    docker.clone(),
                ))
            }
        };
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Built::Node(
            Node {
                spec,
                task: node_task,
            },
            None,
        ))
    }

    fn duration(&mut self, d: &Option<S<String>>, default: Duration) -> Duration {
        match d {
            None => default,
            Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|| {
                self.err(
                    Diagnostic::new(format!("invalid duration `{}`", s.get_ref())).at(
                        s.span(),
                        "expected a duration such as \"500ms\", \"5s\", \"1m\"",
                    ),
                );
                default
            }),
        }
    }

    fn health(&mut self, h: &S<RawHealth>) -> Option<Health> {
        let r = h.get_ref();
        let test = match r.cmd.get_ref() {
            Value::String(s) => vec!["CMD-SHELL".to_string(), self.interp_at(s, r.cmd.span())?],
            Value::Array(a) if !a.is_empty() && a.iter().all(|v| v.is_str()) => {
                let mut v = vec!["CMD".to_string()];
                for x in a {
                    v.push(self.interp_at(x.as_str().unwrap(), r.cmd.span())?);
                }
                v
            }
            _ => {
                self.err(
                    Diagnostic::new("invalid health `cmd`")
                        .at(r.cmd.span(), "expected an argv array or a shell string"),
                );
                return None;
            }
        };
        Some(Health {
            test,
            interval: self.duration(&r.interval, Duration::from_secs(1)),
            timeout: self.duration(&r.timeout, Duration::from_secs(5)),
            retries: r.retries.as_ref().map(|x| *x.get_ref()).unwrap_or(30),
            start_period: self.duration(&r.start_period, Duration::ZERO),
        })
    }

    fn container_spec(
        &mut self,
        id: &str,
        name: &S<String>,
        t: &RawTask,
        spec: &mut TaskSpec,
    ) -> Option<ContainerSpec> {
        let Some(image) = &t.image else {
            self.err(
                Diagnostic::new(format!(
                    "task `{id}` of kind `{}` needs `image`",
                    t.kind.get_ref().name()
                ))
                .at(name.span(), "add image = \"<image task or reference>\""),
            );
            return None;
        };
        let image_ref = self.interp(image)?;
        let image = match self.image_tags.get(&image_ref) {
            Some(tag) => {
                if !spec.deps.contains(&image_ref) {
                    spec.deps.push(image_ref.clone());
                }
                ImageRef::Task {
                    task: image_ref,
                    reference: tag.clone(),
                }
            }
            None => ImageRef::External(image_ref),
        };
        let list =
            |this: &mut Self, v: &Option<Vec<S<String>>>| v.as_ref().map(|v| this.strings(v));
        let cmd = list(self, &t.cmd);
        let entrypoint = list(self, &t.entrypoint);
        let mut ports = Vec::new();
        for p in t.ports.iter().flatten() {
            let text = self.interp(p)?;
            match Port::parse(&text) {
                Some(port) => ports.push(port),
                None => self.err(
                    Diagnostic::new(format!("invalid port `{text}`"))
                        .at(p.span(), "expected \"HOST:CONTAINER\", \"IP:HOST:CONTAINER\" or \"PORT\", optionally /udp"),
                ),
            }
        }
        let mut volumes = Vec::new();
        for v in t.volumes.iter().flatten() {
            let text = self.interp(v)?;
            match Volume::parse(&text) {
                Ok(vol) => volumes.push(vol),
                Err(e) => {
                    self.err(Diagnostic::new(format!("invalid volume `{text}`")).at(v.span(), e))
                }
            }
        }
        let health = match &t.health {
            Some(h) => Some(self.health(h)?),
            None => None,
        };
        let restart = match &t.restart {
            None => None,
            Some(r)
                if ["no", "always", "unless-stopped", "on-failure"]
                    .contains(&r.get_ref().as_str()) =>
            {
                Some(r.get_ref().clone())
            }
            Some(r) => {
                self.err(
                    Diagnostic::new(format!("invalid restart policy `{}`", r.get_ref())).at(
                        r.span(),
                        "expected no, always, unless-stopped or on-failure",
                    ),
                );
                None
            }
        };
        let labels = t
            .labels
            .iter()
            .flatten()
            .filter_map(|(k, v)| self.interp(v).map(|v| (k.clone(), v)))
            .collect();
        Some(ContainerSpec {
            project: self.project.clone(),
            task: id.to_string(),
            image,
            cmd,
            entrypoint,
            workdir: t.workdir.as_ref().and_then(|w| self.interp(w)),
            user: t.user.as_ref().and_then(|u| self.interp(u)),
            ports,
            volumes,
            health,
            restart,
            labels,
        })
    }
}

fn valid_env_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("10"), None);
    }
}
