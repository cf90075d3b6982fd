//! Fewer context reads for a stage the target reaches only through `COPY --from=<stage>
//! <paths>`: only the context files that can land at or under those paths count.
//!
//! Sound only where the stage's content maps back to the context path by path. A stage
//! qualifies ("symlink-free", [`Dockerfile::symlink_free`]) when it and its in-file parents
//! have no `RUN`, no `ADD` (a local archive is extracted, and may hold links), no ONBUILD
//! trigger run into them, no `--parents`/`--exclude`, and copy only from the context and from
//! other such stages. A chain that starts from a base image narrows only on a condition
//! ([`super::TargetPlan::narrow_needs`]): the image's symlinks (`/bin -> usr/bin`) would let a
//! `COPY` to one path land under another, so the key checks, per image, that no path the
//! narrowing relies on (every destination, every path copied out) is or lies under or holds a
//! symlink there, and that the image has no ONBUILD triggers. Context symlinks are checked
//! when the key is made ([`super::TargetPlan::key_context`]). Anything uncertain (a variable
//! the plan cannot resolve, a wildcard source under the copied path, a relative destination
//! below the image's unknown working directory) counts the whole source or the whole stage,
//! as the plain plan does.

use std::collections::{BTreeMap, BTreeSet};

use super::ast::{CopyInstr, Dockerfile};
use super::context_use::{has_wildcard, ContextUse};
use super::expand::expand_word;
use super::options::{PlanOptions, Ref};
use super::plan::ContextBuilder;
use crate::image::go_path::go_clean;

/// What a stage must provide to the stages that use it.
#[derive(Debug, Clone)]
enum Demand {
    /// All its content (it is built `FROM`, mounted, or the target).
    Full,
    /// Only what is at or under these absolute, cleaned, wildcard-free paths.
    Paths(BTreeSet<String>),
}

/// Per base image reference: the absolute paths that must be free of symlinks there (the
/// paths themselves, their ancestors, and what lies under them) for the narrowing to hold.
pub type NarrowNeeds = BTreeMap<String, BTreeSet<String>>;

impl Demand {
    fn merge(slot: &mut Option<Demand>, d: Demand) {
        match (slot.as_mut(), d) {
            (None, d) => *slot = Some(d),
            (Some(Demand::Full), _) => {}
            (Some(s), Demand::Full) => *s = Demand::Full,
            (Some(Demand::Paths(a)), Demand::Paths(b)) => a.extend(b),
        }
    }
}

/// What a plan knows while narrowing.
pub(super) struct Known<'a> {
    pub parents: &'a [Ref],
    pub env: &'a BTreeMap<String, String>,
    pub build_args: &'a BTreeMap<String, String>,
    pub opts: PlanOptions,
}

type Edges = Vec<(usize, Demand)>;

impl Dockerfile {
    /// The target's context reads with each symlink-free stage counting only what its users
    /// copy out of it, and what that asks of base images; None when no stage narrows (or
    /// anything fails: the plain plan stands). `stage_reads[i]` is stage i's whole reads.
    pub(super) fn narrowed(
        &self,
        target: usize,
        stage_reads: &[ContextBuilder],
        k: &Known,
    ) -> Option<(ContextUse, NarrowNeeds)> {
        let free = self.symlink_free(k.parents);
        let workdirs = self.start_workdirs(&free, k);
        let mut demand: Vec<Option<Demand>> = vec![None; self.stages.len()];
        demand[target] = Some(Demand::Full);
        let mut out = ContextBuilder::default();
        let mut needs = NarrowNeeds::new();
        let mut any = false;
        // Stages only use earlier ones: a stage's demand is complete when the walk gets to it.
        for i in (0..=target).rev() {
            let Some(d) = demand[i].take() else {
                continue;
            };
            let mapped = match &d {
                Demand::Paths(paths) if free[i] => self
                    .map_stage(i, paths, workdirs[i].as_deref(), k)
                    .map(|m| (paths, m)),
                _ => None,
            };
            let (reads, edges) = match mapped {
                Some((paths, (reads, edges, dests))) => {
                    any = true;
                    if let Some(image) = self.base_image(i, k) {
                        let need = needs.entry(image.to_string()).or_default();
                        need.extend(dests);
                        need.extend(paths.iter().cloned());
                    }
                    (reads, edges)
                }
                None => (stage_reads[i].clone(), self.full_edges(i, k)?),
            };
            out.merge(&reads);
            for (j, d) in edges {
                Demand::merge(&mut demand[j], d);
            }
        }
        any.then(|| (out.finish(), needs))
    }

    /// The image stage `i`'s chain of in-file parents starts from, if any.
    fn base_image<'k>(&self, mut i: usize, k: &'k Known) -> Option<&'k str> {
        loop {
            match &k.parents[i] {
                Ref::Stage(p) => i = *p,
                Ref::Image(r) => return Some(r),
                Ref::Scratch => return None,
            }
        }
    }

    /// Per stage: does its content come only from the context and from symlink-free stages,
    /// on `scratch` or a base image (checked when the key is made), with nothing that runs,
    /// extracts or reshapes?
    fn symlink_free(&self, parents: &[Ref]) -> Vec<bool> {
        let mut free = vec![false; self.stages.len()];
        for (i, st) in self.stages.iter().enumerate() {
            let base = match &parents[i] {
                Ref::Scratch => true,
                Ref::Stage(p) => free[*p] && !self.stages[*p].onbuild,
                Ref::Image(_) => true,
            };
            free[i] = base
                && !st.runs
                && st.copies.iter().filter(|c| !c.onbuild).all(|c| {
                    !c.add
                        && !c.reshapes
                        && c.from.as_deref().is_none_or(|f| {
                            matches!(self.resolve_from(f, i, c.line), Ok(Ref::Stage(j)) if free[j])
                        })
                });
        }
        free
    }

    /// The stages a wholly used stage uses, as the plain plan walks them: its parent wholly,
    /// `COPY --from` stages for the copied paths, mounted stages wholly.
    fn full_edges(&self, i: usize, k: &Known) -> Option<Edges> {
        let st = &self.stages[i];
        let mut edges = Vec::new();
        let parent = match k.parents[i] {
            Ref::Stage(p) => {
                edges.push((p, Demand::Full));
                Some(&self.stages[p])
            }
            _ => None,
        };
        let inherited = parent.into_iter().flat_map(|p| &p.copies);
        let copies = st.copies.iter().filter(|c| !c.onbuild);
        for copy in copies.chain(inherited.filter(|c| c.onbuild)) {
            let Some(from) = &copy.from else { continue };
            if let Ref::Stage(j) = self.resolve_from(from, i, copy.line).ok()? {
                // An ONBUILD trigger runs where the child stage starts.
                let at = if copy.onbuild { st.line } else { copy.line };
                let demand = match self.sources(i, at, copy, k) {
                    Some(srcs) => Demand::Paths(srcs.iter().map(|s| stage_path(s)).collect()),
                    None => Demand::Full,
                };
                edges.push((j, demand));
            }
        }
        let inherited = parent.into_iter().flat_map(|p| &p.mounts);
        let mounts = st.mounts.iter().filter(|m| !m.onbuild);
        for mount in mounts.chain(inherited.filter(|m| m.onbuild)) {
            if matches!(mount.mount_type.as_str(), "tmpfs" | "secret" | "ssh") {
                continue;
            }
            if let Some(from) = &mount.from {
                if let Ref::Stage(j) = self.resolve_from(from, i, mount.line).ok()? {
                    edges.push((j, Demand::Full));
                }
            }
        }
        Some(edges)
    }

    /// Symlink-free stage `i` used only at or under `paths`: the context files and the paths
    /// of other stages that can land there, and every destination the stage copies to.
    /// None: not certain, use it wholly. `wd`: where it starts, None if unknown.
    fn map_stage(
        &self,
        i: usize,
        paths: &BTreeSet<String>,
        wd: Option<&str>,
        k: &Known,
    ) -> Option<(ContextBuilder, Edges, Vec<String>)> {
        let mut reads = ContextBuilder::default();
        let mut edges = Vec::new();
        let mut dests = Vec::new();
        // Without RUN, what the parent left at or under a path is still there (or overwritten).
        if let Ref::Stage(p) = k.parents[i] {
            edges.push((p, Demand::Paths(paths.clone())));
        }
        for copy in self.stages[i].copies.iter().filter(|c| !c.onbuild) {
            let dest = self.copy_dest(i, copy, wd, k)?;
            dests.push(dest.clone());
            let from = match &copy.from {
                None => None,
                Some(f) => match self.resolve_from(f, i, copy.line).ok()? {
                    Ref::Stage(j) => Some(j),
                    _ => return None,
                },
            };
            let sources = self.sources(i, copy.line, copy, k)?;
            for p in paths {
                let lands: Vec<String> = if is_under(&dest, p) {
                    // The whole copy lands at or under `p`.
                    sources.clone()
                } else if is_under(p, &dest) {
                    let rest = if dest == "/" {
                        &p[1..]
                    } else {
                        &p[dest.len() + 1..]
                    };
                    sources
                        .iter()
                        .flat_map(|s| landing_under(s, rest, from.is_some()))
                        .collect()
                } else {
                    continue;
                };
                match from {
                    None => lands.iter().for_each(|s| reads.add(s)),
                    Some(j) => {
                        let d = Demand::Paths(lands.iter().map(|s| stage_path(s)).collect());
                        edges.push((j, d));
                    }
                }
            }
        }
        Some((reads, edges, dests))
    }

    /// A copy's sources with their variables resolved; None if one cannot be.
    fn sources(&self, i: usize, at: usize, copy: &CopyInstr, k: &Known) -> Option<Vec<String>> {
        if !copy.sources.iter().any(|s| s.contains('$')) {
            return Some(copy.sources.clone());
        }
        let vars = self
            .vars_at(i, at, k.parents, k.env, k.build_args, k.opts)
            .ok()?;
        copy.sources
            .iter()
            .map(|s| vars.expand(s, self.escape, copy.line).ok().flatten())
            .collect()
    }

    /// Where stage `i`'s `copy` writes: absolute, cleaned. `wd` is the working directory
    /// the stage starts in, None if unknown (a base image's).
    fn copy_dest(&self, i: usize, copy: &CopyInstr, wd: Option<&str>, k: &Known) -> Option<String> {
        let dest = self.expand_at(i, copy.line, &copy.dest, copy.json, k)?;
        if dest.starts_with('/') {
            return Some(go_clean(&dest));
        }
        let wd = self.workdir(i, wd, copy.line, k)?;
        Some(go_clean(&format!("{wd}/{dest}")))
    }

    /// Stage `i`'s working directory before `line`, from `wd` where it starts (None:
    /// unknown until an absolute `WORKDIR`).
    fn workdir(&self, i: usize, wd: Option<&str>, line: usize, k: &Known) -> Option<String> {
        let mut wd = wd.map(str::to_string);
        for (at, path) in &self.stages[i].workdirs {
            if *at >= line {
                break;
            }
            let path = self.expand_at(i, *at, path.trim(), false, k)?;
            wd = if path.starts_with('/') {
                Some(go_clean(&path))
            } else {
                wd.map(|wd| go_clean(&format!("{wd}/{path}")))
            };
        }
        wd
    }

    /// The working directory each symlink-free stage starts in (`/` from `scratch`; a base
    /// image's is not known here); None where unknown.
    fn start_workdirs(&self, free: &[bool], k: &Known) -> Vec<Option<String>> {
        let mut start: Vec<Option<String>> = vec![None; self.stages.len()];
        let mut end: Vec<Option<String>> = vec![None; self.stages.len()];
        for i in (0..self.stages.len()).filter(|&i| free[i]) {
            start[i] = match k.parents[i] {
                Ref::Stage(p) => end[p].clone(),
                Ref::Scratch => Some("/".into()),
                Ref::Image(_) => None,
            };
            end[i] = self.workdir(i, start[i].as_deref(), usize::MAX, k);
        }
        start
    }

    /// A word of stage `s` at `line` expanded; a JSON-form word only when it holds nothing
    /// the builder could still process.
    fn expand_at(
        &self,
        s: usize,
        line: usize,
        word: &str,
        json: bool,
        k: &Known,
    ) -> Option<String> {
        if json {
            let special = |c: char| matches!(c, '$' | '\'' | '"' | '\\') || c == self.escape;
            return (!word.contains(special)).then(|| word.to_string());
        }
        if !word.contains('$') {
            // Quotes and escapes only: no need to work out the stage's variables.
            return expand_word(word, self.escape, &BTreeMap::new()).ok();
        }
        let vars = self
            .vars_at(s, line, k.parents, k.env, k.build_args, k.opts)
            .ok()?;
        vars.expand(word, self.escape, line).ok().flatten()
    }
}

/// `a` at or under `b` (both absolute and cleaned).
fn is_under(a: &str, b: &str) -> bool {
    b == "/" || a == b || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
}

/// The parts of source `src` that can land at or under `<dest>/<rest>` (`rest` non-empty):
/// a directory's contents land under the destination (`src/<rest>`), a file lands at
/// `<dest>/<name>`. A wildcard source counts whole. `stage`: `src` is a path in another
/// stage, else in the context.
fn landing_under(src: &str, rest: &str, stage: bool) -> Vec<String> {
    let clean = go_clean(&format!("/{src}"));
    if has_wildcard(&clean) {
        return vec![src.to_string()];
    }
    let clean = clean.trim_start_matches('/');
    if clean.is_empty() {
        // The root: always a directory.
        return vec![rest.to_string()];
    }
    let mut out = vec![format!("{clean}/{rest}")];
    if clean.rsplit('/').next() == Some(rest) {
        out.push(clean.to_string());
    }
    if stage {
        out.iter_mut().for_each(|p| p.insert(0, '/'));
    }
    out
}

/// A `COPY --from` source as the absolute path of the stage it reads, a wildcard cut to its
/// literal directory.
fn stage_path(src: &str) -> String {
    let clean = go_clean(&format!("/{src}"));
    // An escape may or may not be one: cut there too.
    let literal: Vec<&str> = clean
        .split('/')
        .take_while(|seg| !has_wildcard(seg) && !seg.contains('\\'))
        .collect();
    match literal.join("/") {
        p if p.is_empty() => "/".into(),
        p => p,
    }
}
