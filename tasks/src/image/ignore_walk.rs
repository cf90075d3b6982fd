//! The files Docker puts in a build context: the walk of moby's `archive.TarWithOptions`
//! (what the Docker CLI runs), not just pattern matching. Two things differ from asking
//! "is this path excluded?" of every path:
//! - an excluded directory is not entered unless an exception pattern's text starts with the
//!   directory's path (`**` then `!**/*.go` sends `a.go`, never `d/b.go`);
//! - a path inherits its parent directory's per-pattern results
//!   (`MatchesUsingParentResults`), and a pattern that was not evaluated for the parent,
//!   because it could not change the answer there, is evaluated on the path alone.

use super::dockerignore::DockerIgnore;

/// A walk over context-relative paths given in sorted order (a directory's descendants are
/// contiguous in that order, so one stack of open directories is enough).
pub struct Walk<'a> {
    rules: &'a DockerIgnore,
    exclusions: bool,
    /// Open directories: (path, per-pattern results, pruned).
    stack: Vec<(String, Vec<bool>, bool)>,
}

impl<'a> Walk<'a> {
    pub fn new(rules: &'a DockerIgnore) -> Self {
        Self {
            rules,
            exclusions: rules.patterns().iter().any(|p| p.negated()),
            stack: Vec::new(),
        }
    }

    /// Does Docker send `rel` ('/'-separated, context-relative, a file, or a directory when
    /// `dir`)? Paths must come in sorted order.
    pub fn keeps(&mut self, rel: &str, dir: bool) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        while let Some((top, _, _)) = self.stack.last() {
            if rel.len() > top.len()
                && rel.starts_with(top.as_str())
                && rel.as_bytes()[top.len()] == b'/'
            {
                break;
            }
            self.stack.pop();
        }
        // Enter the ancestors not yet open.
        let open = self.stack.last().map_or(0, |(d, _, _)| d.len() + 1);
        for (i, _) in rel.match_indices('/').filter(|&(i, _)| i >= open) {
            if self.stack.last().is_some_and(|(_, _, pruned)| *pruned) {
                return false;
            }
            let parent = &rel[..i];
            let (skip, info) = self.evaluate(parent);
            let pruned = skip && !self.may_enter(parent);
            self.stack.push((parent.to_string(), info, pruned));
        }
        if self.stack.last().is_some_and(|(_, _, pruned)| *pruned) {
            return false;
        }
        let (skip, info) = self.evaluate(rel);
        if dir {
            let pruned = skip && !self.may_enter(rel);
            self.stack.push((rel.to_string(), info, pruned));
        }
        !skip
    }

    /// moby's `MatchesUsingParentResults`: (excluded, per-pattern results for children).
    fn evaluate(&self, rel: &str) -> (bool, Vec<bool>) {
        let parent = self.stack.last().map(|(_, info, _)| info.as_slice());
        let patterns = self.rules.patterns();
        let mut info = vec![false; patterns.len()];
        let mut matched = false;
        for (i, p) in patterns.iter().enumerate() {
            let mut m = parent.is_some_and(|par| par[i]);
            if !m {
                // Skipped: it cannot change the answer (and is recorded as "no match").
                if p.negated() != matched {
                    continue;
                }
                m = p.matches(rel);
            }
            info[i] = m;
            if m {
                matched = !p.negated();
            }
        }
        (matched, info)
    }

    /// An excluded directory is still entered when an exception's text starts with it.
    fn may_enter(&self, dir: &str) -> bool {
        self.exclusions
            && self.rules.patterns().iter().any(|p| {
                p.negated()
                    && p.text().starts_with(dir)
                    && matches!(p.text().as_bytes().get(dir.len()), None | Some(b'/'))
            })
    }
}
