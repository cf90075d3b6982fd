//! One `.dockerignore` pattern: moby's translation to a Go regexp, compiled into tokens and
//! run as a small NFA.

use crate::image::go_path::{go_clean, go_path_match};

#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    /// A `!` exception: a match re-includes the path.
    negated: bool,
    /// The cleaned pattern without its `!`: Docker's walk descends into an excluded directory
    /// only when an exception's text starts with that directory's path.
    text: String,
    /// The path matches when any alternative does.
    alts: Vec<Vec<Tok>>,
    /// The pattern when it has no wildcard at all (`base/`, `.env`): a string compare.
    literal: Option<String>,
    /// Per alternative, its longest run of plain characters: a path that does not contain
    /// it cannot match that alternative, nor can any of its parents (they are prefixes).
    /// Most paths fail this substring test, which is far cheaper than the simulation.
    required: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Lit(char),
    /// `?`: regexp `[^/]`.
    One,
    /// `*`: regexp `[^/]*`.
    Star,
    /// `**` before more pattern: regexp `(.*/)?`.
    DirStar,
    /// `**` at the end after other wildcards: regexp `.*` (Go's `.` excludes '\n').
    DotStar,
    /// Any run of characters: moby's HasPrefix/HasSuffix fast paths.
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Tok {
    fn may_be_empty(&self) -> bool {
        matches!(self, Tok::Star | Tok::DirStar | Tok::DotStar | Tok::AnyRun)
    }
}

pub(super) fn longest_literal_run(toks: &[Tok]) -> String {
    toks.split(|t| !matches!(t, Tok::Lit(_)))
        .max_by_key(|run| run.len())
        .map(|run| {
            run.iter()
                .filter_map(|t| match t {
                    Tok::Lit(c) => Some(*c),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn literal(s: &str) -> Vec<Tok> {
    s.chars().map(Tok::Lit).collect()
}

impl Pattern {
    /// `patternmatcher.New` for one entry of `ReadAll`'s output; `None` for a blank entry.
    /// `!<path>` matching exactly that path: the exception the Docker CLI appends to keep a
    /// build file (a literal keeps odd names such as `[` safe).
    pub(super) fn keep_literal(path: &str) -> Self {
        Pattern {
            negated: true,
            text: path.to_string(),
            alts: vec![literal(path)],
            literal: Some(path.to_string()),
            required: Vec::new(),
        }
    }

    /// The same pattern with the substring prefilter off (every alternative simulated).
    #[cfg(test)]
    pub(super) fn without_prefilter(&self) -> Self {
        let mut p = self.clone();
        p.required = vec![String::new(); p.alts.len()];
        p
    }

    pub(super) fn new(entry: &str) -> Result<Option<Self>, String> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Ok(None);
        }
        let cleaned = go_clean(entry);
        let (negated, p) = match cleaned.strip_prefix('!') {
            Some("") => return Err("illegal exclusion pattern: \"!\"".into()),
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        // moby validates with filepath.Match(p, ".") and reports Go's ErrBadPattern.
        go_path_match(p, ".").map_err(|_| "syntax error in pattern".to_string())?;
        let alts = compile(p)?;
        let literal = match alts.as_slice() {
            [only] => only
                .iter()
                .map(|t| match t {
                    Tok::Lit(c) => Some(*c),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        let required = alts.iter().map(|alt| longest_literal_run(alt)).collect();
        Ok(Some(Pattern {
            negated,
            text: p.to_string(),
            alts,
            literal,
            required,
        }))
    }

    pub(crate) fn negated(&self) -> bool {
        self.negated
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// moby's `Pattern.match`: the whole path, parents not considered.
    pub(crate) fn matches(&self, rel: &str) -> bool {
        if let Some(lit) = &self.literal {
            return rel == lit;
        }
        self.alts.iter().zip(&self.required).any(|(alt, run)| {
            if !rel.contains(run.as_str()) {
                return false;
            }
            let mut nfa = Nfa::new(alt);
            for c in rel.chars() {
                nfa.step(c);
                if nfa.dead() {
                    return false;
                }
            }
            nfa.accepting()
        })
    }

    /// moby's MatchesOrParentMatches for one pattern, in a single pass: the NFA's state right
    /// before each '/' says whether that parent directory matches.
    pub(super) fn matches_or_parent(&self, rel: &str) -> bool {
        if let Some(lit) = &self.literal {
            return rel
                .strip_prefix(lit.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        }
        self.alts.iter().zip(&self.required).any(|(alt, run)| {
            if !rel.contains(run.as_str()) {
                return false;
            }
            let mut nfa = Nfa::new(alt);
            for c in rel.chars() {
                if c == '/' && nfa.accepting() {
                    return true;
                }
                nfa.step(c);
                if nfa.dead() {
                    return false;
                }
            }
            nfa.accepting()
        })
    }
}

/// moby's `Pattern.compile`, producing token lists instead of a regexp string.
pub(super) fn compile(p: &str) -> Result<Vec<Vec<Tok>>, String> {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut kind = Kind::Exact;
    let mut pos = 0;
    let mut first = true;
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        match ch {
            '*' if chars.get(pos) == Some(&'*') => {
                pos += 1;
                // "**/" is treated as "**".
                if chars.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos == chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        toks.push(Tok::DotStar);
                        kind = Kind::Regexp;
                    }
                } else {
                    toks.push(Tok::DirStar);
                    kind = Kind::Regexp;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                toks.push(Tok::Star);
                kind = Kind::Regexp;
            }
            '?' => {
                toks.push(Tok::One);
                kind = Kind::Regexp;
            }
            '\\' => match chars.get(pos) {
                Some(_) => {
                    // moby copies `\x` into a Go regexp: `\d` is a digit, `\t` a tab.
                    let (tok, next) = regexp_escape(&chars, pos)?;
                    toks.push(tok);
                    pos = next;
                    kind = Kind::Regexp;
                }
                None => toks.push(Tok::Lit('\\')),
            },
            '[' => {
                // moby hands the class to Go's regexp; for every class filepath.Match accepts
                // that is Go's class syntax, parsed here as filepath.Match does.
                let (tok, next) = parse_class(&chars, pos)?;
                toks.push(tok);
                pos = next;
                kind = Kind::Regexp;
            }
            ']' => {
                toks.push(Tok::Lit(']'));
                kind = Kind::Regexp;
            }
            c => toks.push(Tok::Lit(c)),
        }
        first = false;
    }
    Ok(match kind {
        Kind::Exact => vec![literal(p)],
        Kind::Prefix => {
            // moby strips the trailing "**" and tests HasPrefix.
            let mut alt = literal(&p[..p.len() - 2]);
            alt.push(Tok::AnyRun);
            vec![alt]
        }
        Kind::Suffix => {
            // moby strips the leading "**" and tests HasSuffix, plus "**/foo" matching "foo".
            let suffix = &p[2..];
            let mut alt = vec![Tok::AnyRun];
            alt.extend(literal(suffix));
            let mut alts = vec![alt];
            if let Some(bare) = suffix.strip_prefix('/') {
                alts.push(literal(bare));
            }
            alts
        }
        Kind::Regexp => vec![toks],
    })
}

/// One Go regexp escape, `chars[pos]` being the character after the `\`; returns the token and
/// the position after the escape. Go rejects unknown escapes, and so does Docker's matcher (it
/// stops the context walk); assertions (`\b`, `\A`) and Unicode classes are not supported.
fn regexp_escape(chars: &[char], pos: usize) -> Result<(Tok, usize), String> {
    let c = chars[pos];
    let class = |negated: bool, ranges: &[(char, char)]| Tok::Class {
        negated,
        ranges: ranges.to_vec(),
    };
    const DIGIT: &[(char, char)] = &[('0', '9')];
    const SPACE: &[(char, char)] = &[('\t', '\n'), ('\u{c}', '\r'), (' ', ' ')];
    const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
    let tok = match c {
        c if c.is_ascii_punctuation() => Tok::Lit(c),
        'd' | 'D' => class(c == 'D', DIGIT),
        's' | 'S' => class(c == 'S', SPACE),
        'w' | 'W' => class(c == 'W', WORD),
        't' => Tok::Lit('\t'),
        'n' => Tok::Lit('\n'),
        'r' => Tok::Lit('\r'),
        'f' => Tok::Lit('\u{c}'),
        'v' => Tok::Lit('\u{b}'),
        'a' => Tok::Lit('\u{7}'),
        '0'..='7' => {
            // Octal: `\0`, `\012`, `\123`; a lone `\1`..`\7` is a backreference Go refuses.
            let digits: String = chars[pos..]
                .iter()
                .take(3)
                .take_while(|d| ('0'..='7').contains(*d))
                .collect();
            if c != '0' && digits.len() == 1 {
                return Err(format!("invalid escape sequence: `\\{c}`"));
            }
            let code = u32::from_str_radix(&digits, 8).expect("octal digits");
            let lit = char::from_u32(code).expect("below 0o777");
            return Ok((Tok::Lit(lit), pos + digits.chars().count()));
        }
        'x' => {
            let (hex, next) = if chars.get(pos + 1) == Some(&'{') {
                let end = chars[pos + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|e| pos + 2 + e)
                    .ok_or("invalid escape sequence: `\\x{` without `}`")?;
                (chars[pos + 2..end].iter().collect::<String>(), end + 1)
            } else {
                let hex: String = chars[pos + 1..].iter().take(2).collect();
                (hex, pos + 3)
            };
            let code = u32::from_str_radix(&hex, 16)
                .ok()
                .filter(|_| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
                .and_then(char::from_u32)
                .ok_or_else(|| format!("invalid escape sequence: `\\x{hex}`"))?;
            return Ok((Tok::Lit(code), next));
        }
        'b' | 'B' | 'A' | 'z' | 'p' | 'P' | 'Q' | 'E' | 'C' => {
            return Err(format!(
                "the regexp escape `\\{c}` is not supported by lifeos; escape a literal \
                 character with `\\` only before punctuation"
            ))
        }
        c => return Err(format!("invalid escape sequence: `\\{c}`")),
    };
    Ok((tok, pos + 1))
}

/// A `[...]` class starting after the `[`; returns the token and the position after `]`.
fn parse_class(chars: &[char], mut pos: usize) -> Result<(Tok, usize), String> {
    let bad = || "syntax error in pattern".to_string();
    let class_char = |pos: &mut usize| -> Result<char, String> {
        let mut c = *chars.get(*pos).ok_or_else(bad)?;
        if c == '-' || c == ']' {
            return Err(bad());
        }
        if c == '\\' {
            *pos += 1;
            c = *chars.get(*pos).ok_or_else(bad)?;
        }
        *pos += 1;
        Ok(c)
    };
    let negated = chars.get(pos) == Some(&'^');
    if negated {
        pos += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(pos) == Some(&']') && !ranges.is_empty() {
            pos += 1;
            break;
        }
        let lo = class_char(&mut pos)?;
        let mut hi = lo;
        if chars.get(pos) == Some(&'-') {
            pos += 1;
            hi = class_char(&mut pos)?;
        }
        // filepath.Match accepts `[z-a]` but Go's regexp (which moby uses) rejects it.
        if lo > hi {
            return Err("invalid character class range".into());
        }
        ranges.push((lo, hi));
    }
    Ok((Tok::Class { negated, ranges }, pos))
}

/// Thompson simulation over a token list: `at[i]` = about to match token i, `inside[i]` =
/// within the `.*` part of the `(.*/)?` at token i.
struct Nfa<'a> {
    toks: &'a [Tok],
    at: Vec<bool>,
    inside: Vec<bool>,
    /// Scratch buffers for `step`, kept to avoid allocating per character.
    next_at: Vec<bool>,
    next_inside: Vec<bool>,
}

thread_local! {
    /// Buffers of finished simulations. Every path is matched against every pattern, and
    /// four fresh vectors per pattern per path were half of the matching time.
    static SPARE: std::cell::RefCell<Vec<[Vec<bool>; 4]>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<'a> Nfa<'a> {
    fn new(toks: &'a [Tok]) -> Self {
        let [mut at, mut inside, mut next_at, mut next_inside] = SPARE
            .try_with(|s| s.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        for (v, n) in [
            (&mut at, toks.len() + 1),
            (&mut inside, toks.len()),
            (&mut next_at, toks.len() + 1),
            (&mut next_inside, toks.len()),
        ] {
            v.clear();
            v.resize(n, false);
        }
        let mut nfa = Nfa {
            toks,
            at,
            inside,
            next_at,
            next_inside,
        };
        nfa.at[0] = true;
        nfa.close();
        nfa
    }

    /// Epsilon moves only go from token i to i + 1, so one forward pass suffices.
    fn close(&mut self) {
        for (i, tok) in self.toks.iter().enumerate() {
            if self.at[i] && tok.may_be_empty() {
                self.at[i + 1] = true;
            }
        }
    }

    fn step(&mut self, c: char) {
        let mut at = std::mem::take(&mut self.next_at);
        let mut inside = std::mem::take(&mut self.next_inside);
        at.fill(false);
        inside.fill(false);
        let dir_star = |i: usize, at: &mut [bool], inside: &mut [bool]| {
            if c != '\n' {
                inside[i] = true;
                if c == '/' {
                    at[i + 1] = true;
                }
            }
        };
        for (i, tok) in self.toks.iter().enumerate() {
            if self.inside[i] {
                dir_star(i, &mut at, &mut inside);
            }
            if !self.at[i] {
                continue;
            }
            match tok {
                Tok::Lit(l) => at[i + 1] |= *l == c,
                Tok::One => at[i + 1] |= c != '/',
                Tok::Class { negated, ranges } => {
                    at[i + 1] |= ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                }
                Tok::Star => at[i] |= c != '/',
                Tok::DotStar => at[i] |= c != '\n',
                Tok::AnyRun => at[i] = true,
                Tok::DirStar => dir_star(i, &mut at, &mut inside),
            }
        }
        self.next_at = std::mem::replace(&mut self.at, at);
        self.next_inside = std::mem::replace(&mut self.inside, inside);
        self.close();
    }

    fn accepting(&self) -> bool {
        self.at[self.toks.len()]
    }

    /// Some state can still consume input.
    fn alive(&self) -> bool {
        self.at[..self.toks.len()].iter().any(|&b| b) || self.inside.iter().any(|&b| b)
    }

    fn dead(&self) -> bool {
        !self.accepting() && !self.alive()
    }
}

impl Drop for Nfa<'_> {
    fn drop(&mut self) {
        let bufs = [
            std::mem::take(&mut self.at),
            std::mem::take(&mut self.inside),
            std::mem::take(&mut self.next_at),
            std::mem::take(&mut self.next_inside),
        ];
        let _ = SPARE.try_with(|s| s.borrow_mut().push(bufs));
    }
}
