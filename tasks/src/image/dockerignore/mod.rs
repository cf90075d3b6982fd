//! `.dockerignore` with Docker's exact semantics: the line handling of
//! `moby/patternmatcher/ignorefile.ReadAll` and the matching of
//! `PatternMatcher.MatchesOrParentMatches` (a pattern that matches a directory also matches
//! everything below it; the last matching pattern wins).
//!
//! moby translates each pattern to a Go regexp (with `exact`/`prefix`/`suffix` fast paths that
//! have their own quirks). We compile the same translation into a tiny NFA by hand: globset's
//! `**` and `[!...]` rules differ from moby's, and the NFA answers for a path and all of its parent
//! directories in one pass.

mod pattern;

use lifeos_cache::names::normalize_rel;

use super::go_path::go_clean;
use pattern::Pattern;

/// Parsed `.dockerignore` rules.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, thiserror::Error)]
#[error(".dockerignore line {line}: invalid pattern `{pattern}`: {message}")]
pub struct DockerIgnoreError {
    pub line: usize,
    pub pattern: String,
    pub message: String,
}

impl DockerIgnore {
    /// Parse the text of a .dockerignore file.
    pub fn parse(text: &str) -> Result<Self, DockerIgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            // Docker tests for `#` before trimming: " # x" is a pattern, not a comment.
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let pattern =
                Pattern::new(&read_all_normalize(line)).map_err(|message| DockerIgnoreError {
                    line: i + 1,
                    pattern: line.to_string(),
                    message,
                })?;
            patterns.extend(pattern);
        }
        Ok(Self { patterns })
    }

    /// Like Docker CLI's TrimBuildFilesFromExcludes: make sure `dockerfile` (context-relative,
    /// '/'-separated, None when the Dockerfile lies outside the context) and ".dockerignore" are
    /// never excluded (the CLI re-adds them with `!` exceptions at the end).
    pub fn keep_build_files(&mut self, dockerfile: Option<&str>) {
        for file in std::iter::once(".dockerignore").chain(dockerfile) {
            let clean = go_clean(file);
            let clean = clean.trim_start_matches('/');
            if clean.is_empty() || clean == "." {
                continue;
            }
            if self.is_excluded(clean) {
                // The CLI appends `!<name>` as a pattern; a literal keeps odd names (`[`) safe.
                self.patterns.push(Pattern::keep_literal(clean));
            }
        }
    }

    /// `rel` is a context-relative path with '/' separators, no leading "./" or "/".
    pub fn is_excluded(&self, rel: &str) -> bool {
        let rel = normalize_rel(rel);
        // moby never matches the context root itself.
        if rel.is_empty() {
            return false;
        }
        self.last_match(rel)
            .is_some_and(|i| !self.patterns[i].negated())
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub(crate) fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Index of the last pattern matching `rel` or one of its parent directories.
    fn last_match(&self, rel: &str) -> Option<usize> {
        self.patterns.iter().rposition(|p| p.matches_or_parent(rel))
    }
}

/// One line as `ignorefile.ReadAll` returns it: `!` kept, path cleaned, leading `/` dropped.
fn read_all_normalize(line: &str) -> String {
    let (invert, rest) = match line.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, line),
    };
    let mut pattern = String::new();
    if !rest.is_empty() {
        pattern = go_clean(rest);
        if pattern.len() > 1 && pattern.starts_with('/') {
            pattern.remove(0);
        }
    }
    if invert {
        format!("!{pattern}")
    } else {
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::pattern::{compile, longest_literal_run};
    use super::*;

    fn di(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[track_caller]
    fn check(text: &str, excluded: &[&str], kept: &[&str]) {
        let d = di(text);
        for p in excluded {
            assert!(d.is_excluded(p), "{text:?} should exclude {p:?}");
        }
        for p in kept {
            assert!(!d.is_excluded(p), "{text:?} should keep {p:?}");
        }
    }

    #[test]
    fn exception_after_wildcard() {
        check(
            "*.md\n!README.md\n",
            &["a.md", "CHANGES.md", "x.md/inner.txt"],
            &["README.md", "docs/a.md", "a.mdx", "main.rs"],
        );
    }

    #[test]
    fn double_star_prefix_matches_any_depth() {
        check(
            "**/*.log",
            &["a.log", "x/a.log", "x/y/z/a.log", "logs.log/inner.txt"],
            &["a.log.txt", "alog", "x/alog"],
        );
    }

    #[test]
    fn directory_pattern_covers_contents_and_is_anchored() {
        check(
            "docs",
            &["docs", "docs/a/b.txt"],
            &["docsx", "a/docs", "a/docs/b", "doc"],
        );
    }

    #[test]
    fn exception_inside_excluded_directory() {
        let d = di("docs\n!docs/keep.txt\n");
        assert!(!d.is_excluded("docs/keep.txt"));
        assert!(d.is_excluded("docs/other.txt"));
        assert!(d.is_excluded("docs"));
    }

    #[test]
    fn question_mark_is_one_non_slash_char() {
        check(
            "temp?",
            &["temp1", "tempx/y"],
            &["temp", "temp12", "temp/x", "a/temp1"],
        );
    }

    #[test]
    fn character_classes() {
        check(
            "[a-c]*.txt",
            &["a1.txt", "b.txt", "c-x.txt"],
            &["d.txt", "sub/a.txt", "A.txt"],
        );
        check("[^a]*", &["bcd", "z"], &["abc", "a"]);
        // Go's classes only negate with '^': `[!a]` is the set {'!', 'a'}.
        check("[!a]*", &["abc", "!x"], &["bcd"]);
        check("x[/]y", &["x/y"], &["xy"]);
    }

    #[test]
    fn last_matching_pattern_wins() {
        check(
            "*.txt\n!keep*.txt\nkeep-not.txt\n",
            &["a.txt", "keep-not.txt"],
            &["keep1.txt", "keep.txt", "a.md"],
        );
        check("build\n!build\n", &[], &["build", "build/x"]);
        check("!build\nbuild\n", &["build/x"], &[]);
    }

    #[test]
    fn leading_slash_dot_slash_and_trailing_slash_are_cleaned() {
        check(
            "/leading/slash",
            &["leading/slash", "leading/slash/x"],
            &["x/leading/slash"],
        );
        check("./dotslash", &["dotslash", "dotslash/x"], &["a/dotslash"]);
        check("dir/", &["dir", "dir/x/y"], &["dirx"]);
        check("a/../b//c/./d", &["b/c/d"], &["a/b/c/d"]);
        check("! /leading\n", &[], &["leading"]);
        // "! /" cleans to "!/", which moby cleans again to the illegal "!".
        assert_eq!(DockerIgnore::parse("! /").unwrap_err().line, 1);
    }

    #[test]
    fn double_star_alone_matches_everything() {
        check("**", &["a", "a/b/c", ".git"], &[]);
        check("**\n!important\n", &["a", "x/important"], &["important"]);
        check("**/", &["a", "a/b"], &[]);
    }

    #[test]
    fn double_star_forms() {
        check(
            "a/**/b",
            &["a/b", "a/x/b", "a/x/y/b", "a/b/c"],
            &["a/xb", "b", "x/a/b"],
        );
        check("**/foo", &["foo", "a/foo", "a/b/foo/c"], &["afoo", "foo2"]);
        // moby's fast paths: a leading `**` is a plain suffix test, a trailing `**` after
        // literals a plain prefix test.
        check("**foo", &["barfoo", "a/xfoo"], &["foox"]);
        check("foo**", &["foobar", "foo/x"], &["xfoo"]);
        check("foo/**", &["foo/x", "foo/x/y"], &["foo", "foox"]);
        check("a*/**", &["ab/c", "a/c"], &["ab", "b/c"]);
    }

    #[test]
    fn escapes() {
        check("\\*.txt", &["*.txt"], &["a.txt"]);
        check("a\\?", &["a?"], &["ab"]);
        check("\\#notcomment", &["#notcomment"], &[]);
    }

    #[test]
    fn comments_and_whitespace_like_docker() {
        let d = di("# comment\n\n   \n  spaced  \n # not a comment\n\u{feff}");
        assert!(d.is_excluded("spaced"));
        assert!(d.is_excluded("# not a comment"));
        assert!(!d.is_excluded("comment"));
        assert!(di("").is_empty());
        assert!(di("# only\n\n").is_empty());
        let bom = di("\u{feff}# c\nfoo\r\n");
        assert!(bom.is_excluded("foo"));
        assert!(!bom.is_excluded("# c"));
    }

    #[test]
    fn dot_and_root_patterns_match_nothing() {
        check(".", &[], &["a", "a/b", ".git"]);
        check("./", &[], &["a"]);
        check("/", &[], &["a"]);
        check("a/..", &[], &["a"]);
    }

    #[test]
    fn invalid_patterns_report_their_line() {
        let e = DockerIgnore::parse("ok\n# c\n[abc\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.pattern, "[abc");
        assert!(e
            .to_string()
            .starts_with(".dockerignore line 3: invalid pattern `[abc`"));
        assert_eq!(DockerIgnore::parse("a\n!\n").unwrap_err().line, 2);
        assert_eq!(DockerIgnore::parse("x\\").unwrap_err().line, 1);
        assert_eq!(DockerIgnore::parse("[]a]").unwrap_err().line, 1);
        assert_eq!(DockerIgnore::parse("[a-]").unwrap_err().line, 1);
        assert_eq!(DockerIgnore::parse("[z-a]").unwrap_err().line, 1);
        assert!(DockerIgnore::parse("a]").is_ok());
    }

    #[test]
    fn the_literal_prefilter_never_changes_a_verdict() {
        let patterns = [
            "**/dist",
            "**/*.log",
            "*.md",
            ".env.*",
            "a*b[cd]ef",
            "x/**/y?z",
            "**",
            "d[!a]st/**",
            "**/node_modules/**",
            "src/*.rs",
            "?",
            "\\*lit",
        ];
        let paths = [
            "dist",
            "a/dist",
            "a/dist/b",
            "a/distx",
            "b.log",
            "x/b.log/c",
            "README.md",
            "a/README.md",
            ".env.local",
            ".env",
            "abcef",
            "aXbdef/g",
            "abef",
            "x/y1z",
            "x/q/r/y1z/w",
            "dost/a",
            "dast/a",
            "node_modules/m",
            "a/node_modules/m/n",
            "src/main.rs",
            "src/a/b.rs",
            "q",
            "*lit",
            "lit",
            "",
        ];
        assert_eq!(longest_literal_run(&compile("a*b[cd]ef").unwrap()[0]), "ef");
        assert_eq!(longest_literal_run(&compile("**").unwrap()[0]), "");
        for p in patterns {
            let with = Pattern::new(p).unwrap().unwrap();
            let without = with.without_prefilter();
            for rel in paths {
                assert_eq!(
                    with.matches_or_parent(rel),
                    without.matches_or_parent(rel),
                    "pattern {p:?}, path {rel:?}"
                );
            }
        }
        // Passing the prefilter is not a match: the simulation still decides.
        assert!(!Pattern::new("**/dist")
            .unwrap()
            .unwrap()
            .matches_or_parent("a/distx"));
        assert!(Pattern::new("**/dist")
            .unwrap()
            .unwrap()
            .matches_or_parent("a/dist/b"));
    }

    #[test]
    fn exceptions_under_excluded_directories() {
        let d = di("node_modules\n!node_modules/keep/**\n");
        assert!(d.is_excluded("node_modules/other/x"));
        assert!(d.is_excluded("node_modules/keep"));
        assert!(!d.is_excluded("node_modules/keep/a.js"));

        let d = di("build\n!**/keep.txt\n");
        assert!(!d.is_excluded("build/a/keep.txt"));
        assert!(d.is_excluded("build/a/other.txt"));

        let d = di("**/node_modules\n");
        assert!(d.is_excluded("node_modules/x"));
        assert!(d.is_excluded("a/b/node_modules/x"));
        assert!(!d.is_excluded("a/x"));

        let d = di("docs\n!docs/keep\ndocs/keep/secret\n");
        assert!(!d.is_excluded("docs/keep/a"));
        assert!(d.is_excluded("docs/keep/secret/x"));

        // Exceptions before the excluding pattern cannot re-include anything.
        let d = di("!build/keep\nbuild\n");
        assert!(d.is_excluded("build/keep"));

        // Not excluded at all: never skip.
        let d = di("*.o\n");
        assert!(!d.is_excluded("src"));
        assert!(!DockerIgnore::default().is_excluded("src"));
        assert!(!d.is_excluded(""));
    }

    #[test]
    fn build_files_are_kept() {
        let mut d = di("*\n");
        d.keep_build_files(Some("Dockerfile"));
        assert!(!d.is_excluded("Dockerfile"));
        assert!(!d.is_excluded(".dockerignore"));
        assert!(d.is_excluded("src"));

        let mut d = di("docker/\n");
        d.keep_build_files(Some("./docker/Dockerfile.web"));
        assert!(!d.is_excluded("docker/Dockerfile.web"));
        assert!(d.is_excluded("docker/other"));

        let mut d = di(".dockerignore\n");
        d.keep_build_files(None);
        assert!(!d.is_excluded(".dockerignore"));

        // Nothing excluded: nothing appended.
        let mut d = DockerIgnore::default();
        d.keep_build_files(Some("Dockerfile"));
        assert!(d.is_empty());
    }

    #[test]
    fn paths_are_normalized() {
        let d = di("docs");
        assert!(d.is_excluded("./docs/a"));
        assert!(d.is_excluded("/docs/a"));
        assert!(d.is_excluded("docs/"));
        assert!(!d.is_excluded(""));
    }
}
