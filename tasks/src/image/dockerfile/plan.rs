//! One build target's plan: the stages it reaches, the images it pulls in, the context files
//! it can read.

use std::collections::{BTreeMap, BTreeSet};

use super::ast::Dockerfile;
use super::context_use::ContextUse;
use super::expand::expand_word;
use super::narrow::{Known, NarrowNeeds};
use super::options::{PlanError, PlanOptions, Ref};
use crate::image::go_path::go_clean;

#[derive(Debug, Clone, PartialEq)]
pub struct TargetPlan {
    /// Reachable stage indices, sorted.
    pub stages: Vec<usize>,
    /// External images (`FROM`, `COPY --from`, `RUN --mount from=` that are neither stages nor
    /// `scratch`), after ARG substitution.
    pub bases: BTreeSet<String>,
    /// The context files the target's stages can read (each reachable stage's whole reads).
    pub context: ContextUse,
    /// Fewer reads, when the target copies only some paths of a stage whose content maps
    /// back to the context path by path (see `narrow`). Valid only when none of the files in
    /// `context` is a symlink: use [`TargetPlan::key_context`].
    pub narrowed: Option<ContextUse>,
    /// What `narrowed` asks of base images: per reference, the paths that must be free of
    /// symlinks there (and the image must have no ONBUILD triggers). Empty: nothing.
    pub narrow_needs: NarrowNeeds,
}

impl TargetPlan {
    /// The reads an image's key covers: `narrowed` unless a file the target may read is a
    /// symlink (a link can alias one path of a stage to another), or the base images were
    /// not found to meet `narrow_needs` (`bases_checked`).
    pub fn key_context(&self, any_symlink: bool, bases_checked: bool) -> &ContextUse {
        match &self.narrowed {
            Some(n) if !any_symlink && (bases_checked || self.narrow_needs.is_empty()) => n,
            _ => &self.context,
        }
    }
}

impl Dockerfile {
    /// target None = the last stage. Unknown target → PlanError::UnknownTarget listing the
    /// stage names.
    pub fn plan(
        &self,
        target: Option<&str>,
        build_args: &BTreeMap<String, String>,
    ) -> Result<TargetPlan, PlanError> {
        self.plan_with(target, build_args, PlanOptions::default())
    }

    /// [`Dockerfile::plan`] knowing how the builder resolves variables.
    pub fn plan_with(
        &self,
        target: Option<&str>,
        build_args: &BTreeMap<String, String>,
        opts: PlanOptions,
    ) -> Result<TargetPlan, PlanError> {
        let env = self.global_env(build_args)?;
        // BuildKit expands every stage's FROM, reachable or not, so errors surface alike.
        let mut parents = Vec::with_capacity(self.stages.len());
        for st in &self.stages {
            let base = expand_word(&st.base, self.escape, &env).map_err(|message| {
                PlanError::Expansion {
                    line: st.line,
                    message,
                }
            })?;
            if base.is_empty() {
                return Err(PlanError::EmptyBase {
                    line: st.line,
                    base: st.base.clone(),
                });
            }
            // FROM only sees stages defined before it.
            let parent = match self.find_stage(&base, st.index) {
                Some(i) => Ref::Stage(i),
                None if base.eq_ignore_ascii_case("scratch") => Ref::Scratch,
                None => Ref::Image(base),
            };
            parents.push(parent);
        }
        // BuildKit resolves numeric --from of every stage up front.
        for st in &self.stages {
            let froms = st.copies.iter().map(|c| (c.line, &c.from));
            let froms = froms.chain(st.mounts.iter().map(|m| (m.line, &m.from)));
            for (line, from) in froms {
                if let Some(index) = from.as_deref().and_then(|f| f.parse::<i64>().ok()) {
                    if usize::try_from(index).map_or(true, |i| i >= self.stages.len()) {
                        return Err(PlanError::InvalidStageIndex {
                            line,
                            index: index.to_string(),
                        });
                    }
                }
            }
        }

        let target = match target.filter(|t| !t.is_empty()) {
            // `parse` never yields zero stages, but the fields are public.
            None => self
                .stages
                .len()
                .checked_sub(1)
                .ok_or_else(|| PlanError::UnknownTarget {
                    target: String::new(),
                    stages: Vec::new(),
                })?,
            Some(t) => {
                self.find_stage(t, self.stages.len())
                    .ok_or_else(|| PlanError::UnknownTarget {
                        target: t.to_string(),
                        stages: self.stage_names(),
                    })?
            }
        };

        let mut reachable = vec![false; self.stages.len()];
        let mut todo = vec![target];
        let mut bases = BTreeSet::new();
        let mut stage_ctx: Vec<ContextBuilder> = Vec::new();
        stage_ctx.resize_with(self.stages.len(), Default::default);
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut reachable[i], true) {
                continue;
            }
            let st = &self.stages[i];
            let context = &mut stage_ctx[i];
            let mut add_ref = |r: Ref, todo: &mut Vec<usize>| match r {
                Ref::Stage(j) => todo.push(j),
                Ref::Image(image) => {
                    bases.insert(image);
                }
                Ref::Scratch => {}
            };
            add_ref(parents[i].clone(), &mut todo);
            // ONBUILD triggers of an in-file parent run here; this stage's own run in children.
            let parent = match parents[i] {
                Ref::Stage(p) => Some(&self.stages[p]),
                _ => None,
            };
            let own_copies = st.copies.iter().filter(|c| !c.onbuild);
            let inherited = parent
                .into_iter()
                .flat_map(|p| &p.copies)
                .filter(|c| c.onbuild);
            for copy in own_copies.chain(inherited) {
                match &copy.from {
                    Some(from) => add_ref(self.resolve_from(from, i, copy.line)?, &mut todo),
                    None => {
                        for src in &copy.sources {
                            if !copy.add
                                && (src.starts_with("http://") || src.starts_with("https://"))
                            {
                                return Err(PlanError::Expansion {
                                    line: copy.line,
                                    message: "source can't be a URL for COPY".into(),
                                });
                            }
                            // Remote ADD sources are fetched, not read from the context.
                            if copy.add && is_remote(src) {
                                continue;
                            }
                            if !src.contains('$') {
                                context.add(src);
                                continue;
                            }
                            // An ONBUILD trigger runs where the child stage starts.
                            let at = if copy.onbuild { st.line } else { copy.line };
                            let vars = self.vars_at(i, at, &parents, &env, build_args, opts)?;
                            match vars.expand(src, self.escape, copy.line)? {
                                Some(expanded) if !is_remote(&expanded) || !copy.add => {
                                    context.add(&expanded)
                                }
                                Some(_) => {}
                                None => context.add_all(),
                            }
                        }
                    }
                }
            }
            let own_mounts = st.mounts.iter().filter(|m| !m.onbuild);
            let inherited = parent
                .into_iter()
                .flat_map(|p| &p.mounts)
                .filter(|m| m.onbuild);
            for mount in own_mounts.chain(inherited) {
                if matches!(mount.mount_type.as_str(), "tmpfs" | "secret" | "ssh") {
                    continue;
                }
                match &mount.from {
                    Some(from) => add_ref(self.resolve_from(from, i, mount.line)?, &mut todo),
                    // A bind mount without from= mounts (part of) the context; a cache mount
                    // without from= starts empty.
                    None if mount.mount_type == "bind" => {
                        context.add(mount.source.as_deref().unwrap_or(""))
                    }
                    None => {}
                }
            }
        }
        let mut context = ContextBuilder::default();
        for c in &stage_ctx {
            context.merge(c);
        }
        let context = context.finish();
        let known = Known {
            parents: &parents,
            env: &env,
            build_args,
            opts,
        };
        let (narrowed, narrow_needs) = match self.narrowed(target, &stage_ctx, &known) {
            Some((n, needs)) if n != context => (Some(n), needs),
            _ => (None, NarrowNeeds::new()),
        };
        Ok(TargetPlan {
            stages: (0..self.stages.len()).filter(|&i| reachable[i]).collect(),
            bases,
            context,
            narrowed,
            narrow_needs,
        })
    }

    /// Names of the named stages, in order.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages.iter().filter_map(|s| s.name.clone()).collect()
    }

    /// The last stage before `before` named `name` (names are case-insensitive).
    fn find_stage(&self, name: &str, before: usize) -> Option<usize> {
        self.stages[..before].iter().rposition(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// `--from` of stage `current`: a stage index, a stage name, else an image.
    pub(super) fn resolve_from(
        &self,
        from: &str,
        current: usize,
        line: usize,
    ) -> Result<Ref, PlanError> {
        let later = || PlanError::LaterStage {
            line,
            reference: from.to_string(),
        };
        if let Ok(index) = from.parse::<usize>() {
            // Out-of-range indices were rejected up front.
            return if index < current {
                Ok(Ref::Stage(index))
            } else {
                Err(later())
            };
        }
        // --from may name any stage, but BuildKit fails unless it was built first.
        // A name only refers to a stage defined before; a later one is read as an image.
        match self.find_stage(from, current) {
            Some(j) => Ok(Ref::Stage(j)),
            None if from.eq_ignore_ascii_case("scratch") => Ok(Ref::Scratch),
            None => Ok(Ref::Image(from.to_string())),
        }
    }

    /// Global ARG values: build args override defaults; an ARG with neither stays unset.
    fn global_env(
        &self,
        build_args: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, PlanError> {
        let mut env = BTreeMap::new();
        for arg in &self.global_args {
            let value = match (build_args.get(&arg.name), &arg.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => {
                    Some(expand_word(default, self.escape, &env).map_err(|message| {
                        PlanError::Expansion {
                            line: arg.line,
                            message,
                        }
                    })?)
                }
                (None, None) => None,
            };
            if let Some(v) = value {
                env.insert(arg.name.clone(), v);
            }
        }
        Ok(env)
    }
}

/// ADD fetches URLs and git repositories instead of reading the context.
pub(super) fn is_remote(src: &str) -> bool {
    ["http://", "https://", "git://", "ssh://", "git@"]
        .iter()
        .any(|p| src.starts_with(p))
}

#[derive(Default, Clone)]
pub(super) struct ContextBuilder {
    all: bool,
    paths: BTreeSet<String>,
}

impl ContextBuilder {
    pub(super) fn add(&mut self, src: &str) {
        // `$X` may come from a stage ARG/ENV we do not evaluate: assume it can be anything
        // (a safe over-approximation).
        if src.contains('$') {
            self.all = true;
            return;
        }
        // BuildKit records path.Join("/", src).
        let clean = go_clean(&format!("/{src}"));
        let clean = clean.trim_start_matches('/');
        if clean.is_empty() {
            self.all = true;
        } else {
            self.paths.insert(clean.to_string());
        }
    }

    pub(super) fn add_all(&mut self) {
        self.all = true;
    }

    pub(super) fn merge(&mut self, other: &ContextBuilder) {
        self.all |= other.all;
        if !self.all {
            self.paths.extend(other.paths.iter().cloned());
        }
    }

    pub(super) fn finish(self) -> ContextUse {
        if self.all {
            ContextUse::All
        } else {
            ContextUse::Paths(self.paths)
        }
    }
}
