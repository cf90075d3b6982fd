//! Resolving one task: `${vars.x}` interpolation, the fields every task has, and the
//! `exec` and `image` kinds. Errors are collected, each with its place in the file.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

use lifeos_engine::{CachePolicy, EnvVar, TaskSpec};
use lifeos_tasks::exec::Command;
use lifeos_tasks::image::{Builder, ImageSpec};
use toml::Value;

use super::compiled::{Body, Container, Resolved};
use super::duration;
use super::overlap::Paths;
use super::raw::{RawConfig, RawTask, S};
use super::{Kind, LoadError, LoadOptions};
use crate::diagnostic::{did_you_mean, Diagnostic};

pub(super) struct Resolver<'a> {
    pub(super) vars: BTreeMap<String, String>,
    pub(super) image_tags: HashMap<String, String>,
    pub(super) project: String,
    /// Every task's kind, to refuse an `image` that names a task that is not an image.
    pub(super) kinds: HashMap<String, Kind>,
    /// Every name some task declares in `secrets`, with the first such task.
    pub(super) secret_names: HashMap<String, String>,
    pub(super) errors: Vec<Diagnostic>,
    pub(super) source: &'a str,
    pub(super) root: &'a Path,
    /// Paths found present (`true`: a directory), for the compiled config to check again.
    pub(super) present: Vec<(String, bool)>,
    /// Paths no output may match: the config file, the cache directory, `.git`.
    pub(super) protected: Vec<Protected>,
}

/// A project path that outputs must leave alone, and how to name it.
pub(super) struct Protected {
    pub(super) paths: Paths,
    pub(super) what: String,
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
    pub(super) fn err(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    pub(super) fn collect_vars(
        &mut self,
        raw: &RawConfig,
        opts: &LoadOptions,
    ) -> Result<(), LoadError> {
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
    pub(super) fn interp(&mut self, s: &S<String>) -> Option<String> {
        self.interp_at(s.get_ref(), s.span())
    }

    pub(super) fn interp_at(&mut self, text: &str, span: Range<usize>) -> Option<String> {
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
    pub(super) fn sub_span(&self, span: Range<usize>, needle: &str) -> Range<usize> {
        self.source
            .get(span.clone())
            .and_then(|t| t.find(needle))
            .map(|i| span.start + i..span.start + i + needle.len())
            .unwrap_or(span)
    }

    pub(super) fn strings(&mut self, v: &[S<String>]) -> Vec<String> {
        v.iter().filter_map(|s| self.interp(s)).collect()
    }

    /// A project-relative path that must stay inside the project.
    pub(super) fn rel_path(&mut self, s: &S<String>, what: &str) -> Option<String> {
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

    pub(super) fn globs(&mut self, v: &[S<String>], what: &str) -> Option<Vec<String>> {
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

    pub(super) fn spec(&mut self, id: &str, t: &RawTask) -> TaskSpec {
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
            if var.value.is_none() {
                if let Some(owner) = self.secret_names.get(&var.name) {
                    let d = Diagnostic::new(format!("`{}` is a secret", var.name))
                        .at(e.span(), format!("declared in `secrets` of task `{owner}`"));
                    self.err(d.help(
                        "list it under `secrets` here too: `env` keeps the value in the cache in clear",
                    ));
                    continue;
                }
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
            match duration::parse_in(to.get_ref(), duration::TIMEOUT) {
                Ok(d) => spec.timeout = Some(d),
                Err(why) => self.err(
                    Diagnostic::new(format!("invalid timeout `{}`", to.get_ref()))
                        .at(to.span(), why),
                ),
            }
        }
        if let Some(r) = &t.retries {
            if *r.get_ref() > MAX_RETRIES {
                self.err(
                    Diagnostic::new(format!("invalid retries `{}`", r.get_ref()))
                        .at(r.span(), format!("at most {MAX_RETRIES}")),
                );
            }
            spec.retries = (*r.get_ref()).min(MAX_RETRIES);
        }
        if let Some(c) = &t.cache {
            spec.cache = self.cache_policy(c);
        }
        spec
    }

    /// Outputs are restored over the tree: they may not match the config, the cache, `.git`
    /// or an input of the same task (a restore would silently revert it).
    fn check_outputs(
        &mut self,
        id: &str,
        inputs: &[String],
        outputs: &[String],
        spans: &[S<String>],
    ) {
        if outputs.is_empty() {
            return;
        }
        let outs = Paths::new(outputs);
        let mut clash: Option<(String, String, &'static str)> = None;
        for p in &self.protected {
            if let Some(path) = outs.common(&p.paths) {
                clash = Some((
                    path,
                    p.what.clone(),
                    "outputs must name what the task writes, e.g. `dist/**`",
                ));
                break;
            }
        }
        if clash.is_none() && !inputs.is_empty() {
            if let Some(path) = outs.common(&Paths::new(inputs)) {
                clash = Some((
                    path,
                    format!("an input of task `{id}`"),
                    "exclude the outputs from the inputs (e.g. `!dist/**`) or narrow the outputs",
                ));
            }
        }
        let Some((path, what, help)) = clash else {
            return;
        };
        // The pattern that matches the example path.
        let span = outputs
            .iter()
            .zip(spans)
            .find(|(o, _)| {
                !o.starts_with('!')
                    && lifeos_cache::InputSet::new(&[o.as_str()]).is_ok_and(|s| s.matches(&path))
            })
            .map(|(_, s)| s.span())
            .unwrap_or_else(|| spans[0].span());
        self.err(
            Diagnostic::new(format!("outputs of task `{id}` may not include {what}"))
                .at(span, format!("matches `{}`", path.escape_debug()))
                .help(format!(
                    "a cache hit restores outputs over the tree and would overwrite it; {help}"
                )),
        );
    }

    /// `cache = true | false | { every = "24h" }`.
    fn cache_policy(&mut self, c: &S<Value>) -> CachePolicy {
        let every = match c.get_ref() {
            Value::Boolean(true) => return CachePolicy::Always,
            Value::Boolean(false) => return CachePolicy::Never,
            Value::Table(tb) if tb.len() == 1 => tb.get("every").and_then(|v| v.as_str()),
            _ => None,
        };
        let Some(every) = every else {
            self.err(
                Diagnostic::new("invalid `cache` value")
                    .at(c.span(), "expected true, false or { every = \"24h\" }"),
            );
            return CachePolicy::Always;
        };
        match duration::parse_in(every, duration::CACHE_EVERY) {
            Ok(d) => CachePolicy::Every(d),
            Err(why) => {
                // Inline tables keep no spans of their own: point at the value inside.
                let span = self.sub_span(c.span(), every);
                self.err(
                    Diagnostic::new(format!("invalid `cache` value: every = \"{every}\""))
                        .at(span, why),
                );
                CachePolicy::Always
            }
        }
    }

    pub(super) fn task(
        &mut self,
        id: &str,
        name: &S<String>,
        task: &S<RawTask>,
        default_tag: &str,
    ) -> Option<Resolved> {
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
            let c = Box::new(Container::new(cspec));
            let body = if kind == Kind::Service {
                Body::Service(c)
            } else {
                Body::Container(c)
            };
            return Some(Resolved { spec, body });
        }
        let body = match kind {
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
                if let (Some(i), Some(o), Some(spans)) = (&inputs, &outputs, &t.outputs) {
                    self.check_outputs(id, i, o, spans);
                }
                Body::Exec {
                    run: command?,
                    cwd,
                    inputs: inputs?,
                    outputs: outputs?,
                }
            }
            Kind::Image => {
                let context = match &t.context {
                    Some(c) => self.rel_path(c, "context"),
                    None => Some(String::new()),
                };
                if let (Some(ctx), Some(c)) = (&context, &t.context) {
                    if self.root.join(ctx).is_dir() {
                        self.present.push((ctx.clone(), true));
                    } else {
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
                    if self.root.join(df).is_file() {
                        self.present.push((df.clone(), false));
                    } else {
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
                    if let Some(why) = super::names::reference_problem(tag, false) {
                        let span = match (&t.tag, &t.tags) {
                            (Some(s), _) => s.span(),
                            (None, Some(v)) => v[i].span(),
                            (None, None) => name.span(),
                        };
                        let d = Diagnostic::new(format!("invalid image tag `{tag}`")).at(span, why);
                        self.err(if t.tag.is_none() && t.tags.is_none() {
                            d.help("this is the default tag `<project>-<task>`; set `tag`")
                        } else {
                            d
                        });
                    }
                    if !tag.rsplit('/').next().unwrap_or("").contains(':') {
                        tag.push_str(":latest");
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
                Body::Image {
                    spec: Box::new(ImageSpec {
                        context: context?,
                        dockerfile: dockerfile?,
                        target,
                        build_args,
                        labels,
                        tags: tags.clone(),
                        platform,
                        builder,
                        secrets: spec.secrets.clone(),
                    }),
                    tags,
                }
            }
        };
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Resolved { spec, body })
    }
}

/// Retries of a task: more would never finish and `retries + 1` attempts must not overflow.
pub(super) const MAX_RETRIES: u32 = 100;

fn valid_env_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}
