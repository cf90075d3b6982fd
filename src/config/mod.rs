//! Loading lifeos.toml: parse with spans, select the environment, apply `--set`, interpolate
//! `${vars.x}`, validate every task, and build the graph. All errors come back together,
//! each pointing at its place in the file; nothing runs unless the whole file is sound.

mod compiled;
mod raw;
mod resolve;
#[cfg(test)]
mod seam_tests;
mod source;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use compiled::{Compiled, Resolved, Stamp};
use lifeos_engine::{Graph, GraphError};
use lifeos_tasks::kind::Registry;
use lifeos_tasks::kind::{names, overlap, Peer, Protected, ResolveCx};
use lifeos_tasks::kinds::REGISTRY;
use lifeos_tasks::Services;

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
pub use compiled::Remote;
pub use compiled::FILE_NAME as COMPILED_FILE_NAME;
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
    /// Connections the kinds share (the engine client), made on first use.
    pub services: Services,
    /// `[cache] remote`, if set.
    pub remote: Option<Remote>,
    /// Loaded from the compiled config in the cache, not parsed.
    pub compiled: bool,
}

impl Project {
    /// Task names of one kind, in file order.
    pub fn of_kind(&self, kind: &str) -> Vec<String> {
        self.graph
            .ids()
            .filter(|id| self.graph.get(id).is_some_and(|n| n.task.kind() == kind))
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

/// Load and resolve lifeos.toml with lifeos's kinds. Nothing connects to Docker here.
pub fn load(file: &Path, opts: &LoadOptions) -> Result<Project, LoadError> {
    load_with(file, opts, &REGISTRY)
}

/// [`load`] with the kinds of `registry`.
pub fn load_with(
    file: &Path,
    opts: &LoadOptions,
    registry: &Registry,
) -> Result<Project, LoadError> {
    let services = Services::new();
    let given = file;
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
    // The compiled config's stamp needs only the file's hash, streamed: a 10,000-task
    // file is not read into memory and checked as UTF-8 on every no-op. Anything odd about
    // the file is left to `source::read` below, which says what.
    if let Some(hash) = compiled::hash_file(given) {
        let stamp = Stamp::with_hash(&file, hash, opts);
        if let Some(text) = Compiled::read(&cache_guess, &stamp) {
            let c = Compiled::parse(&text, &cache_guess, &stamp, &root);
            if let Some(Ok(p)) = c.map(|c| project(c, &root, &file, &services, registry)) {
                return Ok(Project {
                    compiled: true,
                    ..p
                });
            }
        }
    }
    let source = source::read(given).map_err(|e| match e {
        source::SourceError::Usage(m) => LoadError::Usage(m),
        source::SourceError::Encoding(text, d) => config_error(given, &text, vec![d]),
    })?;
    // Stamped with what was read and resolved: the file may have changed since it was hashed.
    let stamp = Stamp::new(&file, source.as_bytes(), opts);
    let (compiled, dep_spans) = resolve(&source, &file, &root, opts, stamp, registry)?;
    let save = (compiled.cache_dir == cache_guess).then(|| compiled.to_bytes());
    let fail = |d: Diagnostic| config_error(&file, &source, vec![d]);
    let project = project(compiled, &root, &file, &services, registry).map_err(|e| match e {
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
fn project<T: compiled::ResolvedTask>(
    c: Compiled<T>,
    root: &Path,
    file: &Path,
    services: &Services,
    registry: &Registry,
) -> Result<Project, ProjectError> {
    let nodes = compiled::instantiate(c.tasks, services, registry).map_err(ProjectError::Task)?;
    let graph = Graph::new(nodes).map_err(ProjectError::Graph)?;
    Ok(Project {
        name: c.name,
        root: root.to_path_buf(),
        file: file.to_path_buf(),
        cache_dir: c.cache_dir,
        graph: Arc::new(graph),
        services: services.clone(),
        remote: c.remote,
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
    registry: &Registry,
) -> Result<(Compiled, DepSpans), LoadError> {
    let fail = |errors: Vec<Diagnostic>| config_error(file, source, errors);
    let (raw, tasks) = raw::parse(source).map_err(|errs| {
        fail(
            errs.into_iter()
                .map(|e| {
                    let d = Diagnostic::new(e.message);
                    match e.span {
                        Some(s) => d.at(s, "here"),
                        None => d,
                    }
                })
                .collect(),
        )
    })?;
    let mut r = Resolver {
        cx: ResolveCx::new(source, root),
        secret_names: HashMap::new(),
    };
    r.collect_vars(&raw, opts)?;

    let name = match raw.project.as_ref().and_then(|p| p.name.as_ref()) {
        Some(n) => {
            if let Some(why) = names::project_problem(n.get_ref()) {
                r.err(
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
            let dir = root.join(r.cx.interp(d).unwrap_or_default());
            if let Err(e) = lifeos_cache::dir::check_location(&dir, root, home().as_deref()) {
                r.err(
                    Diagnostic::new("invalid `cache_dir`")
                        .at(d.span(), e)
                        .help("lifeos deletes its cache with `lifeos cache clean`; give it a directory of its own"),
                );
            }
            dir
        }
        (None, None) => root.join(".lifeos"),
    };
    r.cx.protected = protected(file, root, &cache_dir);
    let remote = raw.cache.as_ref().and_then(|c| remote(&mut r, c));
    r.cx.image_cache = raw.cache.as_ref().and_then(|c| image_cache(&mut r, c));
    r.cx.project = name.clone();
    r.cx.env = opts.env.clone();
    r.cx.router = raw.router;
    r.cx.project_named = raw
        .project
        .as_ref()
        .and_then(|p| p.name.as_ref())
        .map(|n| n.get_ref().clone());

    let names: Vec<&str> = tasks.iter().map(|t| t.name.get_ref().as_str()).collect();
    let name_set: std::collections::HashSet<&str> = names.iter().copied().collect();

    // Each task's kind, or an error at its `kind`.
    let kinds: Vec<Option<&'static dyn lifeos_tasks::kind::Kind>> = tasks
        .iter()
        .map(|t| {
            let k = &t.common.kind;
            let found = registry.get(k.get_ref());
            if found.is_none() {
                let known: Vec<&str> = registry.names().collect();
                let mut d = Diagnostic::new(format!(
                    "unknown variant `{}`, expected one of {}",
                    k.get_ref(),
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .at(k.span(), "unknown kind");
                if let Some(m) = did_you_mean(k.get_ref(), known.iter().copied()) {
                    d = d.help(format!("did you mean `{m}`?"));
                }
                r.err(d);
            }
            found
        })
        .collect();
    // What every task may know of the others before any resolves (an image's tag).
    for (t, kind) in tasks.iter().zip(&kinds) {
        let Some(kind) = kind else { continue };
        let facts = kind.declare(&mut r.cx, &t.table);
        r.cx.peers.insert(
            t.name.get_ref().clone(),
            Peer {
                kind: kind.name(),
                facts,
                result_fields: kind.result_fields(),
            },
        );
        for s in &t.common.secrets {
            r.secret_names
                .entry(s.get_ref().clone())
                .or_insert_with(|| t.name.get_ref().clone());
        }
    }
    let mut resolved: Vec<Resolved> = Vec::with_capacity(tasks.len());
    let mut dep_spans = DepSpans::default();
    for (t, kind) in tasks.iter().zip(&kinds) {
        let id = t.name.get_ref().clone();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            r.err(
                Diagnostic::new(format!("invalid task name `{id}`"))
                    .at(t.name.span(), "use letters, digits, `-`, `_` and `.`"),
            );
        }
        for d in &t.common.deps {
            if !name_set.contains(d.get_ref().as_str()) {
                let mut diag = Diagnostic::new(format!("unknown dependency `{}`", d.get_ref()))
                    .at(d.span(), "no task with this name");
                diag = match did_you_mean(d.get_ref(), names.iter().copied()) {
                    Some(s) => diag.help(format!("did you mean `{s}`?")),
                    None => diag.help(format!("defined tasks: {}", names.join(", "))),
                };
                r.err(diag);
            }
            if d.get_ref() == &id {
                r.err(
                    Diagnostic::new(format!("task `{id}` depends on itself")).at(d.span(), "here"),
                );
            }
            dep_spans.insert((id.clone(), d.get_ref().clone()), d.span());
        }
        let Some(kind) = kind else { continue };
        check_fields(&mut r, registry, *kind, &t.table);
        r.cx.late_deps.clear();
        let mut spec = r.spec(&id, &t.common, kind.defaults());
        let before = r.cx.error_count();
        let body = kind.resolve(&mut r.cx, &t.table, &mut spec);
        // Tasks whose results this one names (`${tasks.NAME.FIELD}`) are dependencies.
        for d in std::mem::take(&mut r.cx.late_deps) {
            if d == id {
                r.err(
                    Diagnostic::new(format!("task `{id}` names its own result"))
                        .at(t.name.span(), "a task's result exists only after it runs"),
                );
            } else if !spec.deps.contains(&d) {
                spec.deps.push(d);
            }
        }
        if let (Some(body), true) = (body, r.cx.error_count() == before) {
            resolved.push(Resolved {
                spec,
                kind: kind.name().to_string(),
                body,
            });
        }
    }
    if !r.cx.errors.is_empty() {
        return Err(fail(std::mem::take(&mut r.cx.errors)));
    }
    let git = r.cx.git.take().and_then(Result::ok);
    Ok((
        Compiled {
            stamp,
            name,
            cache_dir,
            present: r.cx.present,
            remote,
            git,
            tasks: resolved,
        },
        dep_spans,
    ))
}

/// `[cache] remote`: an http(s) URL without credentials (those come from the environment).
fn remote(r: &mut Resolver, c: &raw::RawCache) -> Option<Remote> {
    let url = c.remote.as_ref()?;
    let text = r.cx.interp(url)?;
    // `remote = "${vars.remote_cache}"` with an empty default: off until CI sets it.
    if text.is_empty() {
        return None;
    }
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    let host = rest
        .and_then(|r| r.split(['/', '?', '#']).next())
        .unwrap_or("");
    let problem = if rest.is_none() || host.is_empty() {
        Some("expected http(s)://HOST[:PORT]/PREFIX".to_string())
    } else if host.contains('@') {
        Some("credentials do not belong in lifeos.toml: set LIFEOS_REMOTE_CACHE_TOKEN, or LIFEOS_REMOTE_CACHE_USER and LIFEOS_REMOTE_CACHE_PASSWORD".to_string())
    } else {
        None
    };
    if let Some(why) = problem {
        r.err(Diagnostic::new(format!("invalid `remote` cache `{text}`")).at(url.span(), why));
        return None;
    }
    let timeout = r.cx.duration(
        c.remote_timeout.as_ref(),
        Duration::from_secs(10),
        lifeos_engine::duration::Bounds {
            field: "remote_timeout",
            zero: false,
            max: Duration::from_secs(600),
        },
    );
    Some(Remote {
        url: text.trim_end_matches('/').to_string(),
        read: c.remote_read.as_ref().is_none_or(|b| *b.get_ref()),
        write: c.remote_write.as_ref().is_none_or(|b| *b.get_ref()),
        timeout_ms: timeout.as_millis() as u64,
    })
}

/// `[cache] images`: a registry repository (no tag, no digest).
fn image_cache(r: &mut Resolver, c: &raw::RawCache) -> Option<String> {
    let s = c.images.as_ref()?;
    let repo = r.cx.interp(s)?;
    if let Some(why) = lifeos_tasks::registry::reference::invalid_repository(&repo) {
        r.err(
            Diagnostic::new(format!("invalid `images` cache `{repo}`"))
                .at(s.span(), why)
                .help("a registry repository, e.g. \"127.0.0.1:5000/lifeos/cache\" or \"gcr.io/PROJECT/cache\""),
        );
        return None;
    }
    Some(repo)
}

/// A field the task's kind does not take: another kind's (say which), or a typo.
fn check_fields(
    r: &mut Resolver,
    registry: &Registry,
    kind: &dyn lifeos_tasks::kind::Kind,
    t: &lifeos_tasks::kind::TaskTable,
) {
    let own = kind.fields();
    for (k, v) in t.fields.iter() {
        let field = k.get_ref().as_ref();
        if own.contains(&field) {
            continue;
        }
        let d = match registry.owner_of(field) {
            Some(_) => Diagnostic::new(format!(
                "field `{field}` does not apply to kind `{}`",
                kind.name()
            ))
            .at(v.span(), "remove this field")
            .help(format!("`{}` tasks take: {}", kind.name(), own.join(", "))),
            None => {
                let all = own.iter().chain(raw::COMMON).copied();
                let d = Diagnostic::new(format!("unknown field `{field}`"))
                    .at(k.span(), "unknown field");
                match did_you_mean(field, all) {
                    Some(m) => d.help(format!("did you mean `{m}`?")),
                    None => d.help(format!(
                        "`{}` tasks take: {}, and {}",
                        kind.name(),
                        own.join(", "),
                        raw::COMMON.join(", ")
                    )),
                }
            }
        };
        r.err(d);
    }
}

/// What outputs may not match: the config file, the cache directory (when inside the
/// project) and `.git`.
fn protected(file: &Path, root: &Path, cache_dir: &Path) -> Vec<Protected> {
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
        v.push(Protected {
            paths: overlap::Paths::file(&f),
            what: format!("the config file `{f}`"),
        });
    }
    if let Some(c) = rel(cache_dir) {
        v.push(Protected {
            paths: overlap::Paths::new(&[&c]),
            what: format!("the cache directory `{c}/`"),
        });
    }
    v.push(Protected {
        paths: overlap::Paths::new(&[".git"]),
        what: "`.git/`".into(),
    });
    v
}

/// Where each dependency is written, for a cycle's message.
type DepSpans = HashMap<(String, String), Range<usize>>;

fn pathdiff(file: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    file.strip_prefix(&cwd)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| file.display().to_string())
}

/// A positive duration such as `7d` or `30s` (`--older-than`); `None` when malformed.
pub fn parse_duration(s: &str) -> Option<Duration> {
    lifeos_engine::duration::parse(s)
}

/// `$HOME`, where a cache directory may not be.
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}
