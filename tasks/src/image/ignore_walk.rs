//! The files Docker puts in a build context: the walk of moby's `archive.TarWithOptions`
//! (what the Docker CLI runs), not just pattern matching. Two things differ from asking
//! "is this path excluded?" of every path:
//! - an excluded directory is not entered unless an exception pattern's text starts with the
//!   directory's path (`**` then `!**/*.go` sends `a.go`, never `d/b.go`);
//! - a path inherits its parent directory's per-pattern results
//!   (`MatchesUsingParentResults`), and a pattern that was not evaluated for the parent,
//!   because it could not change the answer there, is evaluated on the path alone.

use lifeos_cache::names::is_under;

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
            if is_under(rel, top) {
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

    /// Did the last [`Walk::keeps`] of directory `rel` enter it although it is excluded (an
    /// exception pattern starts with its path)?
    pub fn entered(&self, rel: &str) -> bool {
        self.stack
            .last()
            .is_some_and(|(d, _, pruned)| d == rel && !pruned)
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

#[cfg(test)]
mod tests {
    use super::Walk;
    use crate::image::dockerignore::DockerIgnore;

    /// Does Docker's walk send `path`? Its ancestors are walked first, as directories.
    fn sends(patterns: &str, path: &str) -> bool {
        let rules = DockerIgnore::parse(patterns).unwrap();
        let mut walk = Walk::new(&rules);
        walk.keeps(path, false)
    }

    #[test]
    fn patternmatcher_test_table() {
        #[derive(serde::Deserialize)]
        struct Case {
            patterns: Vec<String>,
            path: String,
            excluded: bool,
        }
        #[derive(serde::Deserialize)]
        struct Table {
            cases: Vec<Case>,
        }
        let table: Table = serde_json::from_str(include_str!(
            "../../../tests/data/docker/patternmatcher_matches.json"
        ))
        .unwrap();
        assert!(table.cases.len() > 70);
        let mut checked = 0;
        for c in &table.cases {
            let path = c.path.trim_end_matches('/');
            if path.is_empty() {
                continue; // "/" is the context root, which Docker never matches
            }
            let text = c.patterns.join("\n");
            let rules = DockerIgnore::parse(&text).unwrap();
            assert_eq!(
                rules.is_excluded(path),
                c.excluded,
                "MatchesOrParentMatches({text:?}, {path:?})"
            );
            assert_eq!(!sends(&text, path), c.excluded, "walk({text:?}, {path:?})");
            checked += 1;
        }
        assert!(checked > 70);
    }

    #[test]
    fn excluded_directories_are_entered_only_for_an_exception_under_them() {
        // `**` excludes d; `!**/*.go` does not start with "d/": d is never entered.
        assert!(sends("**\n!**/*.go\n", "a.go"));
        assert!(!sends("**\n!**/*.go\n", "d/b.go"));
        assert!(!sends(
            "**/node_modules\n!**/node_modules/keep/**\n",
            "node_modules/keep/k.js"
        ));
        // An exception naming the directory's path lets the walk in.
        assert!(sends("dir\n!dir/e*\n", "dir/e-dir/foo"));
        assert!(!sends("dir\n!dir/e*\n", "dir/foo"));
        // A pattern not evaluated for the parent is evaluated on the path alone.
        assert!(sends("a\n!a/keep\na\n", "a/keep"));
        assert!(!sends("a\n!a/keep\na\n", "a/other"));
        // No rules: everything.
        assert!(sends("", "x/y"));
    }

    #[test]
    fn backslashes_are_go_regexp_escapes() {
        let d = |p: &str| DockerIgnore::parse(p).unwrap();
        assert!(d("x\\d").is_excluded("x1") && !d("x\\d").is_excluded("xd"));
        assert!(d("x\\t").is_excluded("x\t") && !d("x\\t").is_excluded("xt"));
        assert!(!d("sub\\a.txt").is_excluded("suba.txt"));
        assert!(d("sub\\a.txt").is_excluded("sub\u{7}.txt"));
        assert!(d("\\*.txt").is_excluded("*.txt"));
        assert!(d("a\\x41").is_excluded("aA") && d("a\\x{42}").is_excluded("aB"));
        assert!(d("\\w\\s\\D").is_excluded("_ x") && !d("\\w").is_excluded("-"));
        assert!(d("\\101").is_excluded("A"));
        for bad in ["x\\y", "x\\1", "x\\b"] {
            let e = DockerIgnore::parse(bad).unwrap_err();
            assert_eq!(e.line, 1, "{bad}");
        }
    }
}
