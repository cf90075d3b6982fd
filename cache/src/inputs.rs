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

#[derive(Debug, Clone)]
pub struct InputSet {
    include: GlobSet,
    include_literal: Vec<String>,
    exclude: GlobSet,
    exclude_literal: Vec<String>,
    roots: Vec<String>,
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn clean(p: &str) -> String {
    let p = p.trim_start_matches("./");
    p.trim_end_matches('/').to_string()
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
        let (mut include_literal, mut exclude_literal, mut roots) = (vec![], vec![], vec![]);
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
            if body.split('/').any(|c| c == "..") {
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
                } else {
                    inc.add(g);
                    let lit: Vec<&str> = p.split('/').take_while(|c| !has_meta(c)).collect();
                    roots.push(lit.join("/"));
                }
            } else if negated {
                exclude_literal.push(p);
            } else {
                roots.push(p.clone());
                include_literal.push(p);
            }
        }
        roots.sort();
        roots.dedup();
        // A root below another root adds nothing to the walk.
        let mut minimal: Vec<String> = Vec::new();
        for r in roots {
            if !minimal.iter().any(|m| is_at_or_under(&r, m)) {
                minimal.push(r);
            }
        }
        let build = |b: GlobSetBuilder| b.build().expect("globs compiled one by one");
        Ok(Self {
            include: build(inc),
            include_literal,
            exclude: build(exc),
            exclude_literal,
            roots: minimal,
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
        let included = self.include_literal.iter().any(|l| is_at_or_under(rel, l))
            || self.include.is_match(rel);
        included
            && !self.exclude_literal.iter().any(|l| is_at_or_under(rel, l))
            && !self.exclude.is_match(rel)
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

    #[test]
    fn star_does_not_cross_directories() {
        let s = InputSet::new(&["*.txt"]).unwrap();
        assert!(s.matches("a.txt"));
        assert!(!s.matches("d/a.txt"));
        assert_eq!(s.roots(), &[""]);
    }

    #[test]
    fn bad_patterns_name_their_index() {
        let e = InputSet::new(&["ok", "src/[a"]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(InputSet::new(&["/abs"]).is_err());
        assert!(InputSet::new(&["../up"]).is_err());
    }
}
