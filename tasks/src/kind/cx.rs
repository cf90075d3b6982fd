//! What a kind gets while it resolves its fields: variables, paths, the other tasks, and a
//! place to put errors (each with its span in lifeos.toml).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;

use super::diagnostic::{did_you_mean, Diagnostic};
use super::overlap::Paths;
use super::S;

/// Another task of the config, as resolving kinds may see it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub kind: &'static str,
    /// What its kind declared before resolution (an image's `reference`).
    pub facts: BTreeMap<&'static str, String>,
    /// Fields of its result dependants may name (`key` included).
    pub result_fields: &'static [&'static str],
}

/// A project path that outputs must leave alone, and how to name it.
pub struct Protected {
    pub paths: Paths,
    pub what: String,
}

/// The resolution context: one per config load, shared by every task in it.
pub struct ResolveCx<'a> {
    /// `[vars]`, the environment's and `--set`, and `git.*` (read when first named).
    pub vars: BTreeMap<String, String>,
    /// `${git.*}` values, or why there are none (read on first use).
    pub git: Option<Result<BTreeMap<String, String>, String>>,
    /// The project name (prefix of container, network and volume names).
    pub project: String,
    /// The name `[project]` sets, if it does: the prefix of default image tags.
    pub project_named: Option<String>,
    pub peers: HashMap<String, Peer>,
    pub errors: Vec<Diagnostic>,
    pub source: &'a str,
    pub root: &'a Path,
    /// Paths found present (`true`: a directory), for the compiled config to check again.
    pub present: Vec<(String, bool)>,
    /// Paths no output may match: the config file, the cache directory, `.git`.
    pub protected: Vec<Protected>,
    /// Tasks the current task names in `${tasks.NAME.FIELD}`: they become dependencies.
    pub late_deps: BTreeSet<String>,
    /// The environment `--env` selected, if any.
    pub env: Option<String>,
    /// `[router]`, for the deploy kinds.
    pub router: Option<RouterTable>,
    /// `[cache] images`: the repository every image task reads and fills as an image cache.
    pub image_cache: Option<String>,
}

/// `[router]` in lifeos.toml: the image of each environment's router (an image task or a
/// reference with nginx), and labels for what lifeos makes for it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterTable {
    pub image: S<String>,
    /// Extra directives for nginx's `http { }` block (tested with `nginx -t` like the rest).
    pub http: Option<S<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, S<String>>,
}

impl<'a> ResolveCx<'a> {
    pub fn new(source: &'a str, root: &'a Path) -> Self {
        Self {
            vars: BTreeMap::new(),
            git: None,
            project: String::new(),
            project_named: None,
            peers: HashMap::new(),
            errors: Vec::new(),
            source,
            root,
            present: Vec::new(),
            protected: Vec::new(),
            late_deps: BTreeSet::new(),
            env: None,
            router: None,
            image_cache: None,
        }
    }

    pub fn err(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    /// Errors so far: a kind compares before and after to know whether its part failed.
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Expand `${vars.name}` and `${git.*}` (and `$${` for a literal `${`). A
    /// `${tasks.NAME.FIELD}` is an error here: this field is used before any task runs.
    pub fn interp(&mut self, s: &S<String>) -> Option<String> {
        self.interp_at(s.get_ref(), s.span())
    }

    pub fn interp_at(&mut self, text: &str, span: Range<usize>) -> Option<String> {
        self.expand(text, span, false)
    }

    /// Like [`interp`](Self::interp), but `${tasks.NAME.FIELD}` is checked and left in place
    /// for the kind to expand at run time (`Deps::expand`), as is `$${` (which that turns into
    /// `${`). The named task becomes a dependency.
    pub fn interp_late(&mut self, s: &S<String>) -> Option<String> {
        self.interp_late_at(s.get_ref(), s.span())
    }

    pub fn interp_late_at(&mut self, text: &str, span: Range<usize>) -> Option<String> {
        self.expand(text, span, true)
    }

    fn expand(&mut self, text: &str, span: Range<usize>, late: bool) -> Option<String> {
        if !text.contains('$') {
            return Some(text.to_string());
        }
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(r) = after.strip_prefix("$${") {
                out.push_str(if late { "$${" } else { "${" });
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
            let at = self.sub_span(span.clone(), placeholder);
            if name.starts_with("tasks.") {
                self.task_ref(placeholder, at, late)?;
                out.push_str(placeholder);
            } else if let Some(g) = name.strip_prefix("git.") {
                out.push_str(&self.git_var(g, placeholder, at)?);
            } else {
                let value = name.strip_prefix("vars.").and_then(|v| self.vars.get(v));
                match value {
                    Some(v) => out.push_str(v),
                    None => {
                        self.unknown_var(name, placeholder, at);
                        return None;
                    }
                }
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    fn unknown_var(&mut self, name: &str, placeholder: &str, at: Range<usize>) {
        let known: Vec<&str> = self.vars.keys().map(String::as_str).collect();
        let mut d = Diagnostic::new(format!("unknown variable `{placeholder}`"))
            .at(at, "not defined in [vars]");
        d = match name.strip_prefix("vars.") {
            None => d.help(
                "variables are written `${vars.NAME}`; also `${git.sha}`, `${git.short_sha}`, `${git.branch}` and `${tasks.NAME.FIELD}`",
            ),
            Some(v) => match did_you_mean(v, known.iter().copied()) {
                Some(m) => d.help(format!("did you mean `${{vars.{m}}}`?")),
                None if known.is_empty() => d.help("no [vars] are defined"),
                None => d.help(format!("defined vars: {}", known.join(", "))),
            },
        };
        self.err(d);
    }

    /// Check `${tasks.NAME.FIELD}`: a task of the config with that result field.
    fn task_ref(&mut self, placeholder: &str, at: Range<usize>, late: bool) -> Option<()> {
        let Some((task, field, _)) = lifeos_engine::deps::parse_ref(placeholder) else {
            self.err(
                Diagnostic::new(format!("invalid task reference `{placeholder}`"))
                    .at(at, "expected `${tasks.NAME.FIELD}`"),
            );
            return None;
        };
        if !late {
            self.err(
                Diagnostic::new(format!("`{placeholder}` cannot be used here"))
                    .at(at, "this field is needed before any task runs")
                    .help("task results can be used in `run`, `env`, `cmd` and `entrypoint`"),
            );
            return None;
        }
        let Some(peer) = self.peers.get(task) else {
            let names: Vec<&str> = self.peers.keys().map(String::as_str).collect();
            let mut d = Diagnostic::new(format!("unknown task `{task}` in `{placeholder}`"))
                .at(at, "no task with this name");
            if let Some(m) = did_you_mean(task, names.iter().copied()) {
                d = d.help(format!("did you mean `{m}`?"));
            }
            self.err(d);
            return None;
        };
        if field != "key" && !peer.result_fields.contains(&field) {
            let fields: Vec<&str> = std::iter::once("key")
                .chain(peer.result_fields.iter().copied())
                .collect();
            let mut d = Diagnostic::new(format!(
                "task `{task}` (kind `{}`) has no result field `{field}`",
                peer.kind
            ))
            .at(at, "unknown field");
            d = match did_you_mean(field, fields.iter().copied()) {
                Some(m) => d.help(format!("did you mean `${{tasks.{task}.{m}}}`?")),
                None => d.help(format!(
                    "`{}` results have: {}",
                    peer.kind,
                    fields.join(", ")
                )),
            };
            self.err(d);
            return None;
        }
        self.late_deps.insert(task.to_string());
        Some(())
    }

    fn git_var(&mut self, name: &str, placeholder: &str, at: Range<usize>) -> Option<String> {
        let root = self.root;
        let git = self
            .git
            .get_or_insert_with(|| super::git::read(root).map_err(|e| e.to_string()));
        let found = match git {
            Ok(vars) if name == "branch" && !vars.contains_key("branch") => {
                Err(Diagnostic::new(format!("cannot read `{placeholder}`"))
                    .at(at.clone(), "HEAD is detached: there is no branch")
                    .help("use `${git.sha}`, or check out a branch"))
            }
            Ok(vars) => vars.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = vars.keys().map(String::as_str).collect();
                let d = Diagnostic::new(format!("unknown variable `{placeholder}`"))
                    .at(at.clone(), "not a git variable");
                match did_you_mean(name, known.iter().copied()) {
                    Some(m) => d.help(format!("did you mean `${{git.{m}}}`?")),
                    None => d.help("git variables: ${git.sha}, ${git.short_sha}, ${git.branch}"),
                }
            }),
            Err(why) => Err(Diagnostic::new(format!("cannot read `{placeholder}`"))
                .at(at.clone(), why.clone())
                .help(
                    "`${git.*}` needs the project inside a git repository with at least one commit",
                )),
        };
        match found {
            Ok(v) => Some(v),
            Err(d) => {
                self.err(d);
                None
            }
        }
    }

    /// An image task's tag when it sets none (`<project>-<task>:latest`). Repository names
    /// are lowercase.
    pub fn default_tag(&self, task: &str) -> String {
        match &self.project_named {
            Some(p) => format!("{p}-{task}:latest"),
            None => format!("{task}:latest"),
        }
        .to_lowercase()
    }

    /// The span of `needle` inside the string at `span`, or the whole string.
    pub fn sub_span(&self, span: Range<usize>, needle: &str) -> Range<usize> {
        self.source
            .get(span.clone())
            .and_then(|t| t.find(needle))
            .map(|i| span.start + i..span.start + i + needle.len())
            .unwrap_or(span)
    }

    pub fn strings(&mut self, v: &[S<String>]) -> Vec<String> {
        v.iter().filter_map(|s| self.interp(s)).collect()
    }

    /// Like [`strings`](Self::strings), with task results left for run time.
    pub fn strings_late(&mut self, v: &[S<String>]) -> Vec<String> {
        v.iter().filter_map(|s| self.interp_late(s)).collect()
    }

    /// A project-relative path that must stay inside the project.
    pub fn rel_path(&mut self, s: &S<String>, what: &str) -> Option<String> {
        let p = self.interp(s)?;
        if Path::new(&p).is_absolute() || p.split('/').any(|c| c == "..") {
            self.err(
                Diagnostic::new(format!("{what} must be a path inside the project"))
                    .at(s.span(), "absolute or leaves the project root"),
            );
            return None;
        }
        let p = lifeos_cache::names::normalize_rel(&p);
        Some(if p == "." {
            String::new()
        } else {
            p.to_string()
        })
    }

    /// Glob patterns (`InputSet` syntax), all valid or `None` after reporting the bad one.
    pub fn globs(&mut self, v: &[S<String>], what: &str) -> Option<Vec<String>> {
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

    /// Remember that a path resolution found (the compiled config checks it again).
    pub fn found(&mut self, rel: &str, dir: bool) {
        self.present.push((rel.to_string(), dir));
    }

    /// A duration field within `bounds`, or `default` after reporting why not.
    pub fn duration(
        &mut self,
        d: Option<&S<String>>,
        default: std::time::Duration,
        bounds: lifeos_engine::duration::Bounds,
    ) -> std::time::Duration {
        match d {
            None => default,
            Some(s) => {
                lifeos_engine::duration::parse_in(s.get_ref(), bounds).unwrap_or_else(|why| {
                    self.err(
                        Diagnostic::new(format!("invalid {} `{}`", bounds.field, s.get_ref()))
                            .at(s.span(), why),
                    );
                    default
                })
            }
        }
    }
}
