//! Input globs of a task: relative to the project root, `**` spans directories, `*` does not,
//! a leading `!` excludes, and a plain path names a file or everything below a directory.

use crate::names::is_at_or_under;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, thiserror::Error)]
#[error("invalid glob `{pattern}`: {message}")]
pub struct InputSetError {
    /// Index of the offending pattern in the list given to [`InputSet::new`].
    pub index: usize,
    pub pattern: String,
    pub message: String,
}

/// Small when it holds no globs (most output sets are one plain path): a node of a
/// 10,000-task graph carries two of these.
#[derive(Debug, Clone)]
pub struct InputSet {
    include: Option<Box<GlobSet>>,
    /// Only with `include` globs: otherwise `roots` hold the literal includes.
    // Boxed slices, not vectors: two sets per task of a 10,000-task graph, each 24 bytes
    // smaller this way.
    include_literal: Box<[String]>,
    exclude: Option<Box<GlobSet>>,
    exclude_literal: Box<[String]>,
    roots: Box<[String]>,
}

// Byte loops and prefix compares: `contains` of a char set, `trim_start_matches` of a
// string (a two-way searcher per call) and `split` were most of building 10,000 output sets.
fn has_meta(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'*' | b'?' | b'[' | b'{'))
}

fn clean(mut p: &str) -> String {
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    while let Some(rest) = p.strip_suffix('/') {
        p = rest;
    }
    p.to_string()
}

/// A `..` component.
fn leaves_root(p: &str) -> bool {
    p.as_bytes().windows(2).any(|w| w == b"..") && p.split('/').any(|c| c == "..")
}

fn glob(p: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

impl InputSet {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, InputSetError> {
        let mut inc = GlobSetBuilder::new();
        let mut exc = GlobSetBuilder::new();
        // Sized once: no spare capacity kept by every task's set.
        let mut include_literal = Vec::with_capacity(patterns.len());
        let mut exclude_literal = vec![];
        // The globs' literal leading directories.
        let mut glob_roots = vec![];
        let (mut n_inc, mut n_exc) = (0, 0);
        for (index, raw) in patterns.iter().enumerate() {
            let raw = raw.as_ref();
            let (negated, body) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let err = |message: String| InputSetError {
                index,
                pattern: raw.to_string(),
                message,
            };
            if body.starts_with('/') {
                return Err(err(
                    "inputs are relative to the project root; remove the leading `/`".into(),
                ));
            }
            if leaves_root(body) {
                return Err(err("inputs may not leave the project root (`..`)".into()));
            }
            let p = clean(body);
            if p.is_empty() {
                return Err(err("empty pattern".into()));
            }
            if has_meta(&p) {
                let g = glob(&p).map_err(|e| err(e.kind().to_string()))?;
                if negated {
                    exc.add(g);
                    n_exc += 1;
                } else {
                    inc.add(g);
                    n_inc += 1;
                    let lit: Vec<&str> = p.split('/').take_while(|c| !has_meta(c)).collect();
                    glob_roots.push(lit.join("/"));
                }
            } else if negated {
                exclude_literal.push(p);
            } else {
                include_literal.push(p);
            }
        }
        // Without include globs the roots match what the literals match (a literal under
        // another adds nothing), so the literals are not kept twice: most output sets are
        // one plain path, and a 10,000-task graph has one per task.
        let mut roots = if n_inc == 0 {
            std::mem::take(&mut include_literal)
        } else {
            let mut r = include_literal.clone();
            r.append(&mut glob_roots);
            r
        };
        roots.sort();
        roots.dedup();
        // A root below another root adds nothing to the walk (kept in place, in order).
        let mut kept = 0;
        for i in 0..roots.len() {
            if !roots[..kept].iter().any(|m| is_at_or_under(&roots[i], m)) {
                roots.swap(kept, i);
                kept += 1;
            }
        }
        roots.truncate(kept);
        let build = |b: GlobSetBuilder, n: usize| {
            (n > 0).then(|| Box::new(b.build().expect("globs compiled one by one")))
        };
        Ok(Self {
            include: build(inc, n_inc),
            include_literal: include_literal.into_boxed_slice(),
            exclude: build(exc, n_exc),
            exclude_literal: exclude_literal.into_boxed_slice(),
            roots: roots.into_boxed_slice(),
        })
    }

    /// Directories (or files) to walk, relative to the root; "" is the root itself.
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    pub fn matches(&self, rel: &str) -> bool {
        let globs = |g: &Option<Box<GlobSet>>| g.as_ref().is_some_and(|g| g.is_match(rel));
        // Without include globs, `roots` are the literals (see `new`).
        let literals = match self.include {
            None => &self.roots,
            Some(_) => &self.include_literal,
        };
        let included = literals.iter().any(|l| is_at_or_under(rel, l)) || globs(&self.include);
        included
            && !self.exclude_literal.iter().any(|l| is_at_or_under(rel, l))
            && !globs(&self.exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_literals_and_excludes() {
        let s = InputSet::new(&[
            "src/**/*.rs",
            "Cargo.toml",
            "docs",
            "!docs/draft",
            "!**/*.bak",
        ])
        .unwrap();
        assert!(s.matches("src/a/b.rs"));
        assert!(s.matches("src/b.rs"));
        assert!(!s.matches("src/b.txt"));
        assert!(s.matches("Cargo.toml"));
        assert!(!s.matches("Cargo.toml.orig"));
        assert!(s.matches("docs/x/y.md"));
        assert!(!s.matches("docs/draft/y.md"));
        assert!(!s.matches("docs/y.bak"));
        assert_eq!(s.roots(), &["Cargo.toml", "docs", "src"]);
    }

    /// Literal-only sets match through their roots: a nested literal, a file, an exclude.
    #[test]
    fn literal_only_sets_match_like_their_literals() {
        let s = InputSet::new(&["a/b", "./a/", "c.txt", "d/e/", "!a/x"]).unwrap();
        for yes in ["a", "a/b", "a/b/c", "a/y", "c.txt", "d/e", "d/e/f"] {
            assert!(s.matches(yes), "{yes}");
        }
        for no in ["a/x", "a/x/y", "ab", "c.txt2", "d", "d/ef", "b"] {
            assert!(!s.matches(no), "{no}");
        }
        assert_eq!(s.roots(), &["a", "c.txt", "d/e"]);
        let g = InputSet::new(&["out/t1", "src/**/*.rs"]).unwrap();
        assert!(g.matches("out/t1") && g.matches("src/a/b.rs"));
        assert!(!g.matches("src/a/b.txt") && !g.matches("out/t2"));
    }

    #[test]
    fn star_does_not_cross_directories() {
        let s = InputSet::new(&["*.txt"]).unwrap();
        assert!(s.matches("a.txt"));
        assert!(!s.matches("d/a.txt"));
        assert_eq!(s.roots(), &[""]);
    }

    #[test]
    fn clean_and_dot_dot() {
        assert_eq!(clean("././a/b//"), "a/b");
        assert_eq!(clean("a"), "a");
        assert!(leaves_root("a/../b") && leaves_root("..") && leaves_root("a/.."));
        assert!(!leaves_root("a/..b/c") && !leaves_root("a...") && !leaves_root("a/b"));
        assert!(has_meta("a/{b,c}") && has_meta("x?") && !has_meta("out/t1"));
    }

    #[test]
    fn bad_patterns_name_their_index() {
        let e = InputSet::new(&["ok", "src/[a"]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(InputSet::new(&["/abs"]).is_err());
        assert!(InputSet::new(&["../up"]).is_err());
    }
}
