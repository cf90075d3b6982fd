//! Can two pattern lists match the same path? Outputs are restored over the tree on a cache
//! hit, so an output that is also the config, the cache, `.git` or an input of the same
//! task would silently revert it. The answer is exact: each list (same meaning as
//! `lifeos_cache::InputSet`: globs, plain paths that cover a directory, `!` excludes) is
//! turned into automata, and a search over their product finds the shortest path that both
//! match, which the error then names.

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;

use lifeos_cache::names::{is_at_or_under, normalize_rel};
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::util::{start, syntax};
use regex_automata::Anchored;

/// Tuples of states explored before giving up (then the run-time check still guards).
const MAX_STATES: usize = 50_000;
const CACHE_BYTES: usize = 4 << 20;

/// The paths a pattern list matches: any include, no exclude.
pub struct Paths {
    include: Vec<String>,
    exclude: Vec<String>,
    /// Every pattern is a plain path.
    literal: bool,
    /// Plain paths name one file, not a directory and what is below it.
    file: bool,
    /// The automata of `include` and `exclude`, built on first need and reused (one task's
    /// outputs are compared with several sets).
    dfas: OnceLock<Option<(DFA, Option<DFA>)>>,
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn clean(p: &str) -> &str {
    normalize_rel(p)
}

impl Paths {
    /// Patterns already checked by `InputSet::new`.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let mut p = Paths {
            include: vec![],
            exclude: vec![],
            literal: true,
            file: false,
            dfas: OnceLock::new(),
        };
        for raw in patterns {
            let raw = raw.as_ref();
            let (neg, body) = match raw.strip_prefix('!') {
                Some(b) => (true, clean(b)),
                None => (false, clean(raw)),
            };
            p.literal &= !has_meta(body);
            if neg {
                p.exclude.push(body.to_string());
            } else {
                p.include.push(body.to_string());
            }
        }
        p
    }

    /// Exactly one file (the config): nothing below it.
    pub fn file(path: &str) -> Self {
        Paths {
            file: true,
            ..Paths::new(&[path])
        }
    }

    /// The leading components of each include without glob characters.
    fn roots(&self) -> impl Iterator<Item = &str> {
        self.include.iter().map(|p| {
            let end = p
                .split('/')
                .take_while(|c| !has_meta(c))
                .map(|c| c.len() + 1)
                .sum::<usize>();
            &p[..end.saturating_sub(1).min(p.len())]
        })
    }

    /// Every path this set includes is excluded by `other` (judged on plain excludes and
    /// `DIR/**` ones, which cover everything below a directory).
    fn excluded_by(&self, other: &Paths) -> bool {
        if self.file || other.file {
            return false;
        }
        let dirs: Vec<(&str, bool)> = other
            .exclude
            .iter()
            .filter_map(|e| match e.strip_suffix("/**") {
                Some(d) if !has_meta(d) => Some((d, true)),
                _ if !has_meta(e) => Some((e.as_str(), false)),
                _ => None,
            })
            .collect();
        !self.include.is_empty()
            && self.include.iter().zip(self.roots()).all(|(p, root)| {
                // A glob matches only below its root; a plain path, itself and below.
                let strictly_below = has_meta(p);
                dirs.iter().any(|&(d, only_below)| {
                    if strictly_below {
                        is_at_or_under(root, d)
                    } else {
                        is_at_or_under(p, d) && !(only_below && d == p)
                    }
                })
            })
    }

    fn covers(&self, lit: &str, rel: &str) -> bool {
        if self.file {
            lit == rel
        } else {
            is_at_or_under(rel, lit)
        }
    }

    /// A path that both sets match, `None` when there is none (or the search gave up).
    pub fn common(&self, other: &Paths) -> Option<String> {
        if self.literal && other.literal && self.exclude.is_empty() && other.exclude.is_empty() {
            // Two plain paths overlap when one is (under) the other: name the deeper one.
            return self.include.iter().find_map(|a| {
                other.include.iter().find_map(|b| {
                    if self.covers(a, b) {
                        Some(b.clone())
                    } else if other.covers(b, a) {
                        Some(a.clone())
                    } else {
                        None
                    }
                })
            });
        }
        // Every match of a pattern lies under its literal leading components: sets whose
        // roots are apart share nothing, and most tasks' are (`src/**` and `dist/**`).
        // (A file has nothing below it.)
        let related = self.roots().any(|a| {
            other.roots().any(|b| {
                (!self.file && is_at_or_under(b, a))
                    || (!other.file && is_at_or_under(a, b))
                    || a == b
            })
        });
        if !related {
            return None;
        }
        // The common shape `inputs = ["**", "!dist/**"]`, `outputs = ["dist/**"]`: one side's
        // excludes cover the other's includes.
        if self.excluded_by(other) || other.excluded_by(self) {
            return None;
        }
        let mut must = Vec::new();
        let mut must_not = Vec::new();
        for side in [self, other] {
            let (inc, exc) = side.automata()?;
            must.push(Automaton::of(inc));
            if let Some(e) = exc {
                must_not.push(Automaton::of(e));
            }
        }
        must.push(Automaton::of(path_shape()?));
        search(must, must_not)
    }

    fn automata(&self) -> Option<&(DFA, Option<DFA>)> {
        self.dfas
            .get_or_init(|| {
                let inc = dfa(&self.include, self.file)?;
                let exc = match self.exclude.is_empty() {
                    true => None,
                    false => Some(dfa(&self.exclude, self.file)?),
                };
                Some((inc, exc))
            })
            .as_ref()
    }
}

/// Paths a walk can find: non-empty components, no `.` or `..`, no NUL.
fn path_shape() -> Option<&'static DFA> {
    static SHAPE: OnceLock<Option<DFA>> = OnceLock::new();
    SHAPE
        .get_or_init(|| {
            let c = r"(?:[^/\x00.][^/\x00]*|\.[^/\x00.][^/\x00]*|\.\.[^/\x00]+)";
            build(&[format!("(?s-u)^{c}(?:/{c})*$")])
        })
        .as_ref()
}

/// One automaton for patterns with `InputSet`'s meaning.
fn dfa(patterns: &[String], file: bool) -> Option<DFA> {
    let below = if file { "" } else { "(?:/.*)?" };
    let regexes = patterns
        .iter()
        .map(|p| {
            if has_meta(p) {
                // The regex globset itself matches with (InputSet's options).
                globset::GlobBuilder::new(p)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .ok()
                    .map(|g| g.regex().to_string())
            } else {
                Some(format!("(?s-u)^{}{below}$", escape(p)))
            }
        })
        .collect::<Option<Vec<_>>>()?;
    build(&regexes)
}

fn build(regexes: &[String]) -> Option<DFA> {
    DFA::builder()
        .syntax(
            syntax::Config::new()
                .utf8(false)
                .unicode(false)
                .dot_matches_new_line(true),
        )
        .thompson(regex_automata::nfa::thompson::Config::new().utf8(false))
        .configure(DFA::config().cache_capacity(CACHE_BYTES))
        .build_many(regexes)
        .ok()
}

/// One lazy DFA with its own cache. Its state IDs stay valid while the cache is never
/// cleared.
struct Automaton<'a> {
    dfa: &'a DFA,
    cache: Cache,
}

impl<'a> Automaton<'a> {
    fn of(dfa: &'a DFA) -> Self {
        Self {
            dfa,
            cache: dfa.create_cache(),
        }
    }

    fn start(&mut self) -> Option<LazyStateID> {
        let cfg = start::Config::new().anchored(Anchored::Yes);
        self.dfa.start_state(&mut self.cache, &cfg).ok()
    }

    fn next(&mut self, s: LazyStateID, b: u8) -> Option<LazyStateID> {
        let n = self.dfa.next_state(&mut self.cache, s, b).ok()?;
        (self.cache.clear_count() == 0).then_some(n)
    }

    /// Does the input so far match, as a whole?
    fn accepts(&mut self, s: LazyStateID) -> Option<bool> {
        let e = self.dfa.next_eoi_state(&mut self.cache, s).ok()?;
        (self.cache.clear_count() == 0).then_some(e.is_match())
    }
}

/// Breadth-first over the product of the automata: the shortest path every `must` accepts
/// and no `must_not` does.
fn search<'a>(mut must: Vec<Automaton<'a>>, mut must_not: Vec<Automaton<'a>>) -> Option<String> {
    let n = must.len();
    let mut all: Vec<&mut Automaton> = must.iter_mut().chain(must_not.iter_mut()).collect();
    let bytes = representatives(&all);
    let start: Vec<LazyStateID> = all.iter_mut().map(|a| a.start()).collect::<Option<_>>()?;
    let mut parent: HashMap<Vec<LazyStateID>, (Vec<LazyStateID>, u8)> = HashMap::new();
    let mut queue = VecDeque::from([start.clone()]);
    let mut seen = std::collections::HashSet::from([start]);
    while let Some(states) = queue.pop_front() {
        let mut accepted = true;
        for (i, (a, s)) in all.iter_mut().zip(&states).enumerate() {
            if a.accepts(*s)? != (i < n) {
                accepted = false;
                break;
            }
        }
        if accepted {
            let mut path = Vec::new();
            let mut at = &states;
            while let Some((p, b)) = parent.get(at) {
                path.push(*b);
                at = p;
            }
            path.reverse();
            return Some(String::from_utf8_lossy(&path).into_owned());
        }
        for &b in &bytes {
            let mut next = Vec::with_capacity(states.len());
            let mut dead = false;
            for (i, (a, s)) in all.iter_mut().zip(&states).enumerate() {
                let t = a.next(*s, b)?;
                // A `must` that can no longer match ends this branch.
                dead |= i < n && t.is_dead();
                next.push(t);
            }
            if dead || seen.contains(&next) {
                continue;
            }
            if seen.len() >= MAX_STATES {
                return None;
            }
            seen.insert(next.clone());
            parent.insert(next.clone(), (states.clone(), b));
            queue.push_back(next);
        }
    }
    None
}

/// One byte per class of bytes that every automaton treats alike, readable ones first (so
/// the example path reads well).
fn representatives(all: &[&mut Automaton<'_>]) -> Vec<u8> {
    let readable = (b'a'..=b'z').chain(b'0'..=b'9').chain(*b"._-/");
    let rest = (1..=255u8).filter(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit()));
    let mut seen = std::collections::HashSet::new();
    readable
        .chain(rest)
        .filter(|&b| {
            let class: Vec<u8> = all.iter().map(|a| a.dfa.byte_classes().get(b)).collect();
            seen.insert(class)
        })
        .collect()
}

fn escape(lit: &str) -> String {
    let mut out = String::with_capacity(lit.len());
    for c in lit.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Paths;
    use lifeos_cache::InputSet;

    /// The common path, checked against `InputSet` (the matcher the walk uses).
    fn common(a: &[&str], b: &[&str]) -> Option<String> {
        let w = Paths::new(a).common(&Paths::new(b))?;
        assert!(Paths::new(b).common(&Paths::new(a)).is_some(), "symmetric");
        for set in [a, b] {
            assert!(InputSet::new(set).unwrap().matches(&w), "{set:?} ∌ {w}");
        }
        Some(w)
    }

    #[test]
    fn globs_against_files_and_directories() {
        assert_eq!(
            common(&["**"], &["lifeos.toml"]).as_deref(),
            Some("lifeos.toml")
        );
        assert_eq!(
            common(&["*.toml"], &["lifeos.toml"]).as_deref(),
            Some("lifeos.toml")
        );
        assert_eq!(common(&["dist/**"], &["lifeos.toml"]), None);
        assert_eq!(common(&["**", "!lifeos.toml"], &["lifeos.toml"]), None);
        assert!(common(&["**"], &[".lifeos"]).is_some());
        assert!(common(&[".lifeos/ac/*"], &[".lifeos"]).is_some());
        assert!(common(&["*"], &[".git"]).is_some());
        assert!(common(&["*/x"], &[".git"]).is_some());
        assert_eq!(common(&["src/*.o"], &[".git"]), None);
        assert_eq!(
            common(&["dist"], &["dist/a/b"]).as_deref(),
            Some("dist/a/b")
        );
    }

    #[test]
    fn outputs_against_inputs() {
        assert_eq!(common(&["src/*.rs"], &["src/*.o"]), None);
        assert!(common(&["src/**"], &["src/**/*.o"]).is_some());
        assert_eq!(common(&["**", "!dist/**"], &["dist/**"]), None);
        assert_eq!(common(&["**", "!dist"], &["dist/a", "dist/*.o"]), None);
        assert_eq!(
            common(&["**", "!dist/**"], &["dist"]).as_deref(),
            Some("dist")
        );
        assert!(common(&["**", "!dist/**"], &["dist/**", "x"]).is_some());
        assert_eq!(common(&["**", "!**/*.o"], &["src/**/*.o"]), None);
        assert_eq!(common(&["**/*.{c,h}"], &["out/*.{o,a}"]), None);
        assert!(common(&["**/*.{c,h}"], &["out/*.h"]).is_some());
        assert!(common(&["src"], &["src/gen/**", "!src/gen/keep"]).is_some());
        assert_eq!(
            common(&["src/gen/keep"], &["src/gen/**", "!src/gen/keep"]),
            None
        );
        assert_eq!(common(&["a?c"], &["abc"]).as_deref(), Some("abc"));
        assert_eq!(common(&["[!a]"], &["a"]), None);
    }
}
