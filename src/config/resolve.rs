//! The fields every task has (`deps` are checked by the loader): `env`, `secrets`,
//! `timeout`, `retries`, `cache`; and the project's variables. Kinds resolve the rest
//! (`lifeos_tasks::kind`). Errors are collected, each with its place in the file.

use std::collections::HashMap;

use lifeos_engine::duration;
use lifeos_engine::{CachePolicy, EnvVar, TaskSpec};
use lifeos_tasks::kind::ResolveCx;
use toml::Value;

use super::raw::{RawCommon, RawConfig, S};
use super::{LoadError, LoadOptions};
use crate::diagnostic::{did_you_mean, Diagnostic};

pub(super) struct Resolver<'a> {
    pub(super) cx: ResolveCx<'a>,
    /// Every name some task declares in `secrets`, with the first such task.
    pub(super) secret_names: HashMap<String, String>,
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
        self.cx.err(d);
    }

    pub(super) fn collect_vars(
        &mut self,
        raw: &RawConfig,
        opts: &LoadOptions,
    ) -> Result<(), LoadError> {
        let put = |this: &mut Self, k: &S<String>, v: &S<Value>| match value_string(v.get_ref()) {
            Some(s) => {
                this.cx.vars.insert(k.get_ref().clone(), s);
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
            if !self.cx.vars.contains_key(k) {
                let known: Vec<&str> = self.cx.vars.keys().map(String::as_str).collect();
                let hint = match did_you_mean(k, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "declare it under [vars] first".into(),
                };
                return Err(LoadError::Usage(format!(
                    "unknown variable `{k}` in --set: {hint}"
                )));
            }
            self.cx.vars.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    /// The common part of a task's spec; `cache` falls back to the kind's default.
    pub(super) fn spec(
        &mut self,
        id: &str,
        t: &RawCommon,
        defaults: lifeos_tasks::kind::Defaults,
    ) -> TaskSpec {
        let mut spec = TaskSpec::new(id);
        spec.class = defaults.class;
        spec.cache = defaults.cache;
        spec.deps = t.deps.iter().map(|d| d.get_ref().clone()).collect();
        for e in &t.env {
            // Values may use dependency results, expanded when the task runs.
            let Some(v) = self.cx.interp_late(e) else {
                continue;
            };
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
                let span = self.cx.sub_span(c.span(), every);
                self.err(
                    Diagnostic::new(format!("invalid `cache` value: every = \"{every}\""))
                        .at(span, why),
                );
                CachePolicy::Always
            }
        }
    }
}

/// Retries of a task: more would never finish and `retries + 1` attempts must not overflow.
pub(super) const MAX_RETRIES: u32 = 100;

fn valid_env_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}
