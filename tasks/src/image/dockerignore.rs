//! `.dockerignore` with Docker's exact semantics: the line handling of
//! `moby/patternmatcher/ignorefile.ReadAll` and the matching of
//! `PatternMatcher.MatchesOrParentMatches` (a pattern that matches a directory also matches
//! everything below it; the last matching pattern wins).
//!
//! moby translates each pattern to a Go regexp (with `exact`/`prefix`/`suffix` fast paths that
//! have their own quirks). We compile the same translation into a tiny NFA by hand: globset's
//! `**` and `[!...]` rules differ from moby's, and the NFA also answers "could this pattern match
//! anything below a directory?", which `can_skip_dir` needs.

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
                self.patterns.push(Pattern {
                    negated: true,
                    text: clean.to_string(),
                    alts: vec![literal(clean)],
                    literal: Some(clean.to_string()),
                    required: Vec::new(),
                });
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
            .is_some_and(|i| !self.patterns[i].negated)
    }

    /// True when a directory walk can skip `rel_dir` entirely: it is excluded and no `!`
    /// exception pattern could match anything below it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        let rel = normalize_rel(rel_dir);
        if rel.is_empty() {
            return false;
        }
        let Some(last) = self.last_match(rel) else {
            return false;
        };
        if self.patterns[last].negated {
            return false;
        }
        // Every pattern up to `last` that matches the directory also matches all paths below
        // it, so only later exceptions can re-include something inside.
        !self.patterns[last + 1..]
            .iter()
            .any(|p| p.negated && p.could_match_below(rel))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub(super) fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Index of the last pattern matching `rel` or one of its parent directories.
    fn last_match(&self, rel: &str) -> Option<usize> {
        self.patterns.iter().rposition(|p| p.matches_or_parent(rel))
    }
}

fn normalize_rel(rel: &str) -> &str {
    let mut rel = rel;
    while let Some(r) = rel.strip_prefix("./") {
        rel = r;
    }
    rel.trim_matches('/')
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

#[derive(Debug, Clone)]
pub(super) struct Pattern {
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
enum Tok {
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

fn longest_literal_run(toks: &[Tok]) -> String {
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
    fn new(entry: &str) -> Result<Option<Self>, String> {
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

    pub(super) fn negated(&self) -> bool {
        self.negated
    }

    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// moby's `Pattern.match`: the whole path, parents not considered.
    pub(super) fn matches(&self, rel: &str) -> bool {
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
    fn matches_or_parent(&self, rel: &str) -> bool {
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

    /// Could the pattern match some path strictly below `dir`? Conservative: any live state
    /// after reading "dir/" counts.
    fn could_match_below(&self, dir: &str) -> bool {
        self.alts.iter().any(|alt| {
            let mut nfa = Nfa::new(alt);
            for c in dir.chars().chain(std::iter::once('/')) {
                nfa.step(c);
                if nfa.dead() {
                    return false;
                }
            }
            nfa.alive()
        })
    }
}

/// moby's `Pattern.compile`, producing token lists instead of a regexp string.
fn compile(p: &str) -> Result<Vec<Vec<Tok>>, String> {
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

/// Go's `path/filepath.Clean` on '/'-separated paths.
pub(crate) fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let b = path.as_bytes();
    let n = b.len();
    let rooted = b[0] == b'/';
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0, 0);
    if rooted {
        out.push(b'/');
        (r, dotdot) = (1, 1);
    }
    while r < n {
        // Empty and "." segments are dropped.
        if b[r] == b'/' || (b[r] == b'.' && (r + 1 == n || b[r + 1] == b'/')) {
            r += 1;
        } else if b[r] == b'.' && b[r + 1] == b'.' && (r + 2 == n || b[r + 2] == b'/') {
            r += 2;
            if out.len() > dotdot {
                // Backtrack through the last '/'.
                let mut last = out.pop();
                while out.len() > dotdot && last != Some(b'/') {
                    last = out.pop();
                }
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && b[r] != b'/' {
                out.push(b[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        return ".".into();
    }
    // Only whole segments are copied or dropped, so the bytes stay valid UTF-8.
    String::from_utf8(out).expect("cleaning keeps UTF-8 boundaries")
}

/// Go's `filepath.ErrBadPattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// Go's `path/filepath.Match` (Unix): `*` and `?` never match '/', `[^...]` negates, `\`
/// escapes. Like Go, the whole pattern is validated even when the match fails early.
pub(crate) fn go_path_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let mut pattern = pattern;
    let mut name = name;
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing * matches the rest of the name unless it has a '/'.
            return Ok(!name.contains('/'));
        }
        let (t, ok) = match_chunk(chunk, name)?;
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if star {
            // Let the star eat one more character at a time, never a '/'.
            for (i, c) in name.char_indices() {
                if c == '/' {
                    break;
                }
                let (t, ok) = match_chunk(chunk, &name[i + c.len_utf8()..])?;
                if ok {
                    if pattern.is_empty() && !t.is_empty() {
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
            }
        }
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, "")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let trimmed = pattern.trim_start_matches('*');
    let star = trimmed.len() != pattern.len();
    let b = trimmed.as_bytes();
    let mut in_range = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &trimmed[..i], &trimmed[i..])
}

/// Matches `chunk` (no unbracketed `*`) at the start of `s`; returns the rest of `s`.
fn match_chunk<'s>(chunk: &str, s: &'s str) -> Result<(&'s str, bool), BadPattern> {
    let mut chunk = chunk;
    let mut s = s;
    // After a mismatch keep scanning the chunk, only to validate it.
    let mut failed = false;
    while let Some(c0) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c0 {
            '[' => {
                let mut r = '\0';
                if !failed {
                    r = s.chars().next().expect("s is not empty");
                    s = &s[r.len_utf8()..];
                }
                chunk = &chunk[1..];
                let negated = chunk.starts_with('^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if nrange > 0 && chunk.starts_with(']') {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if let Some(rest) = chunk.strip_prefix('-') {
                        (hi, chunk) = get_esc(rest)?;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    let c = s.chars().next().expect("s is not empty");
                    failed = c == '/';
                    s = &s[c.len_utf8()..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let mut lit = c0;
                if c0 == '\\' {
                    chunk = &chunk[1..];
                    lit = chunk.chars().next().ok_or(BadPattern)?;
                }
                if !failed {
                    let c = s.chars().next().expect("s is not empty");
                    failed = c != lit;
                    s = &s[c.len_utf8()..];
                }
                chunk = &chunk[lit.len_utf8()..];
            }
        }
    }
    Ok(if failed { ("", false) } else { (s, true) })
}

fn get_esc(chunk: &str) -> Result<(char, &str), BadPattern> {
    let mut chunk = chunk;
    match chunk.chars().next() {
        None | Some('-') | Some(']') => return Err(BadPattern),
        Some('\\') => chunk = &chunk[1..],
        Some(_) => {}
    }
    let r = chunk.chars().next().ok_or(BadPattern)?;
    let rest = &chunk[r.len_utf8()..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

#[cfg(test)]
mod tests {
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
        assert!(!d.can_skip_dir("docs"));
        assert!(d.can_skip_dir("docs/sub"));
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
            let mut without = with.clone();
            without.required = vec![String::new(); without.alts.len()];
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
    fn skipping_directories() {
        let d = di("node_modules\n!node_modules/keep/**\n");
        assert!(!d.can_skip_dir("node_modules"));
        assert!(d.can_skip_dir("node_modules/other"));
        assert!(!d.can_skip_dir("node_modules/keep"));
        assert!(d.is_excluded("node_modules/keep"));
        assert!(!d.is_excluded("node_modules/keep/a.js"));

        let d = di("build\n!**/keep.txt\n");
        assert!(!d.can_skip_dir("build"));
        assert!(!d.is_excluded("build/a/keep.txt"));
        assert!(d.is_excluded("build/a/other.txt"));

        let d = di("**/node_modules\n");
        assert!(d.can_skip_dir("node_modules"));
        assert!(d.can_skip_dir("a/b/node_modules"));
        assert!(!d.can_skip_dir("a"));

        let d = di("docs\n!docs/keep\ndocs/keep/secret\n");
        assert!(!d.is_excluded("docs/keep/a"));
        assert!(d.is_excluded("docs/keep/secret/x"));
        assert!(!d.can_skip_dir("docs"));
        assert!(d.can_skip_dir("docs/keep/secret"));

        // Exceptions before the excluding pattern cannot re-include anything.
        let d = di("!build/keep\nbuild\n");
        assert!(d.can_skip_dir("build"));
        assert!(d.is_excluded("build/keep"));

        // Not excluded at all: never skip.
        let d = di("*.o\n");
        assert!(!d.can_skip_dir("src"));
        assert!(!DockerIgnore::default().can_skip_dir("src"));
        assert!(!d.can_skip_dir(""));
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
        assert!(!d.can_skip_dir("docker"));

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

    #[test]
    fn go_clean_matches_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//a//b/", "/a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("a/..", "."),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("/../a", "/a"),
            ("a/b/../../..", ".."),
            ("abc/def/../ghi", "abc/ghi"),
            ("é/./ü", "é/ü"),
        ] {
            assert_eq!(go_clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn go_match_matches_go() {
        for (pattern, name, want) in [
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*", "", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abe", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[", "a", Err(BadPattern)),
            ("[^", "a", Err(BadPattern)),
            ("[^bc", "a", Err(BadPattern)),
            ("a[", "a", Err(BadPattern)),
            ("a[", "ab", Err(BadPattern)),
            ("a[", "x", Err(BadPattern)),
            ("a/b[", "x", Err(BadPattern)),
            ("*x", "xxx", Ok(true)),
            ("[]a]", "]", Err(BadPattern)),
            ("[-]", "-", Err(BadPattern)),
            ("[x-]", "x", Err(BadPattern)),
            ("\\", "a", Err(BadPattern)),
            ("a*\\", "ab", Err(BadPattern)),
        ] {
            assert_eq!(
                go_path_match(pattern, name),
                want,
                "Match({pattern:?}, {name:?})"
            );
        }
    }
}
