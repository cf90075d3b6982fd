//! The variables a stage's `COPY` sources see, as far as the plan can know them: build args,
//! `ARG` defaults and `ENV` values of the stage and of its in-file parents. A base image's own
//! `ENV` is unknown to the plan, so a name it might set makes the source "anything".

use std::collections::{BTreeMap, BTreeSet};

use super::ast::{Dockerfile, VarDecl};
use super::expand::expand_used;
use super::options::{PlanError, PlanOptions, Ref};

pub(super) struct StageVars {
    /// Set by `ENV` (or, with BuildKit, by either): certain.
    envs: BTreeMap<String, String>,
    /// Set by `ARG` (classic builder): an image `ENV` of the same name would win.
    args: BTreeMap<String, String>,
    /// Values derived from something unknown.
    unknown: BTreeSet<String>,
    /// The stage chain starts at `scratch`: no image `ENV` at all.
    complete: bool,
    opts: PlanOptions,
}

/// The `ARG`s BuildKit fills in for every build (the classic builder leaves them unset; a
/// key that takes them as unknown is merely broader there, never stale).
const PLATFORM_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

fn is_platform_arg(name: &str) -> bool {
    PLATFORM_ARGS.contains(&name)
}

impl StageVars {
    fn merged(&self) -> BTreeMap<String, String> {
        let mut m = self.args.clone();
        m.extend(self.envs.iter().map(|(k, v)| (k.clone(), v.clone())));
        m
    }

    /// Is the value of `name` (as looked up) certain?
    fn certain(&self, name: &str) -> bool {
        if self.unknown.contains(name) {
            return false;
        }
        self.envs.contains_key(name) || self.complete
    }

    /// `word` expanded, or None when it depends on a value the plan cannot know.
    pub(super) fn expand(
        &self,
        word: &str,
        escape: char,
        line: usize,
    ) -> Result<Option<String>, PlanError> {
        let env = self.merged();
        let (value, used) = expand_used(word, escape, &env)
            .map_err(|message| PlanError::Expansion { line, message })?;
        Ok(used.iter().all(|n| self.certain(n)).then_some(value))
    }

    fn set(&mut self, name: &str, value: Option<String>, by_env: bool) {
        self.unknown.remove(name);
        match value {
            None => {
                self.unknown.insert(name.to_string());
                self.envs.remove(name);
                self.args.remove(name);
            }
            Some(v) if by_env || self.opts.arg_beats_image_env => {
                self.args.remove(name);
                self.envs.insert(name.to_string(), v);
            }
            Some(v) => {
                // Classic: an earlier ENV of the same name keeps winning.
                if !self.envs.contains_key(name) {
                    self.args.insert(name.to_string(), v);
                }
            }
        }
    }
}

impl Dockerfile {
    /// The variables stage `stage` sees before line `line`.
    pub(super) fn vars_at(
        &self,
        stage: usize,
        line: usize,
        parents: &[Ref],
        global: &BTreeMap<String, String>,
        build_args: &BTreeMap<String, String>,
        opts: PlanOptions,
    ) -> Result<StageVars, PlanError> {
        // The chain of in-file parents, oldest first (iterative: chains may be long).
        let mut chain = vec![stage];
        let mut root = &parents[stage];
        while let Ref::Stage(p) = root {
            chain.push(*p);
            root = &parents[*p];
        }
        chain.reverse();
        let mut vars = StageVars {
            envs: BTreeMap::new(),
            args: BTreeMap::new(),
            unknown: BTreeSet::new(),
            complete: matches!(root, Ref::Scratch),
            opts,
        };
        for (k, &s) in chain.iter().enumerate() {
            let last = k + 1 == chain.len();
            for decl in &self.stages[s].vars {
                let decl_line = match decl {
                    VarDecl::Arg(a) => a.line,
                    VarDecl::Env { line, .. } => *line,
                };
                if last && decl_line >= line {
                    break;
                }
                match decl {
                    VarDecl::Arg(a) => {
                        let value = match (build_args.get(&a.name), &a.default) {
                            (Some(v), _) => Some(Some(v.clone())),
                            // BuildKit sets its platform ARGs itself, over any default or
                            // global value: unknown to the plan unless given as build args
                            // or, for `TARGET*`, the task's platform.
                            (None, _) if is_platform_arg(&a.name) => {
                                Some(opts.target_platform.and_then(|p| p.arg(&a.name)))
                            }
                            (None, Some(d)) => Some(vars.expand(d, self.escape, a.line)?),
                            // `ARG NAME` takes the global ARG's value, else stays unset.
                            (None, None) => global.get(&a.name).cloned().map(Some),
                        };
                        match value {
                            // A parent's ARG may or may not reach its children (builders
                            // differ): not certain either way.
                            Some(_) if !last => {
                                vars.envs.remove(&a.name);
                                vars.args.remove(&a.name);
                                vars.unknown.insert(a.name.clone());
                            }
                            Some(v) => vars.set(&a.name, v, false),
                            None => {
                                vars.args.remove(&a.name);
                            }
                        }
                    }
                    VarDecl::Env { line, name, value } => {
                        let v = vars.expand(value, self.escape, *line)?;
                        vars.set(name, v, true);
                    }
                }
            }
        }
        Ok(vars)
    }
}
