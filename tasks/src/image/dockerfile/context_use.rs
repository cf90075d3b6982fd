//! Which context files a target can read, from its cleaned `COPY`/`ADD`/bind-mount sources.

use std::collections::BTreeSet;

use lifeos_cache::names::{is_at_or_under, normalize_rel};

use crate::image::go_path::go_path_match;

#[derive(Debug, Clone, PartialEq)]
pub enum ContextUse {
    All,
    /// Cleaned context-relative sources, possibly with wildcards.
    Paths(BTreeSet<String>),
}

impl ContextUse {
    /// Does the target possibly read context file `rel` ('/'-separated, context-relative)?
    pub fn reads(&self, rel: &str) -> bool {
        let rel = normalize_rel(rel);
        match self {
            ContextUse::All => true,
            ContextUse::Paths(_) if rel.is_empty() => false,
            ContextUse::Paths(srcs) => srcs.iter().any(|s| source_reads(s, rel)),
        }
    }

    /// Could the target read anything at or below directory `rel_dir`? Lets a walk prune.
    pub fn reads_under(&self, rel_dir: &str) -> bool {
        let rel = normalize_rel(rel_dir);
        match self {
            ContextUse::All => true,
            ContextUse::Paths(srcs) if rel.is_empty() => !srcs.is_empty(),
            ContextUse::Paths(srcs) => srcs.iter().any(|s| source_reads_under(s, rel)),
        }
    }
}

/// BuildKit's `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
pub(super) fn has_wildcard(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// The directory part of a wildcard source before its first wildcard segment.
fn literal_prefix(src: &str) -> String {
    src.split('/')
        .take_while(|seg| !has_wildcard(seg))
        .collect::<Vec<_>>()
        .join("/")
}

/// A source without wildcards may still hold `\` escapes: BuildKit copies such a path as
/// written, but accept the unescaped reading too (over-approximate rather than miss a file).
fn literal_covers(src: &str, covers: impl Fn(&str) -> bool) -> bool {
    if covers(src) {
        return true;
    }
    if !src.contains('\\') {
        return false;
    }
    let mut unescaped = String::new();
    let mut chars = src.chars();
    while let Some(c) = chars.next() {
        unescaped.extend(if c == '\\' { chars.next() } else { Some(c) });
    }
    covers(&unescaped)
}

/// Matching segment by segment is filepath.Match on the whole path (`*`, `?` never cross '/'),
/// and a match on a directory covers everything copied from inside it.
fn source_reads(src: &str, rel: &str) -> bool {
    if !has_wildcard(src) {
        return literal_covers(src, |s| is_at_or_under(rel, s));
    }
    if src.contains("**") {
        // `**` (COPY --parents) crosses directories: cover the whole literal prefix.
        return is_at_or_under(rel, &literal_prefix(src));
    }
    let pattern: Vec<&str> = src.split('/').collect();
    let segs: Vec<&str> = rel.split('/').collect();
    // An invalid pattern fails the build; until then, over-approximate.
    segs.len() >= pattern.len()
        && pattern
            .iter()
            .zip(&segs)
            .all(|(p, s)| go_path_match(p, s).unwrap_or(true))
}

fn source_reads_under(src: &str, dir: &str) -> bool {
    if !has_wildcard(src) {
        return literal_covers(src, |s| is_at_or_under(s, dir) || is_at_or_under(dir, s));
    }
    if src.contains("**") {
        let prefix = literal_prefix(src);
        return is_at_or_under(&prefix, dir) || is_at_or_under(dir, &prefix);
    }
    src.split('/')
        .zip(dir.split('/'))
        .all(|(p, s)| go_path_match(p, s).unwrap_or(true))
}
