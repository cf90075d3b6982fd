//! Just enough Dockerfile parsing (BuildKit's parser rules) to know, for one build target,
//! which stages it reaches, which external images it depends on and which context files it can
//! read, so an image's cache key only covers the files its own stages read.

use std::collections::{BTreeMap, BTreeSet};

use super::dockerignore::{go_clean, go_path_match};

/// Parse a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    Parser::new(text).run()
}

#[derive(Debug, thiserror::Error)]
#[error("Dockerfile line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub stages: Vec<Stage>,
    /// `ARG`s before the first `FROM`: the only variables `FROM` can use.
    pub global_args: Vec<ArgDecl>,
    /// The escape / line-continuation character (`# escape=` directive).
    pub escape: char,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    /// Unexpanded default value.
    pub default: Option<String>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// Lowercased `AS` name.
    pub name: Option<String>,
    /// Line of the `FROM`.
    pub line: usize,
    /// The `FROM` image or stage reference, before ARG substitution.
    pub base: String,
    pub platform: Option<String>,
    pub copies: Vec<CopyInstr>,
    pub mounts: Vec<MountInstr>,
    /// The stage's own `ARG`s and `ENV`s, in order (ONBUILD ones left out).
    pub vars: Vec<VarDecl>,
}

/// An `ARG` or `ENV` inside a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarDecl {
    Arg(ArgDecl),
    Env {
        line: usize,
        name: String,
        /// Unexpanded.
        value: String,
    },
}

/// A `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstr {
    pub line: usize,
    pub add: bool,
    /// `--from` as written.
    pub from: Option<String>,
    /// Source paths with quotes and escapes processed; heredoc sources are left out (they are
    /// inline content, not paths).
    pub sources: Vec<String>,
    /// Inside `ONBUILD`: runs in the stages built `FROM` this one, not in this one.
    pub onbuild: bool,
}

/// One `RUN --mount=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInstr {
    pub line: usize,
    /// Lowercased; `bind` when not given.
    pub mount_type: String,
    pub from: Option<String>,
    pub source: Option<String>,
    pub onbuild: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("target stage \"{target}\" could not be found (stages: {})", name_list(.stages))]
    UnknownTarget { target: String, stages: Vec<String> },
    #[error("Dockerfile line {line}: invalid stage index {index}")]
    InvalidStageIndex { line: usize, index: String },
    #[error(
        "Dockerfile line {line}: stage \"{reference}\" must be defined before the stage using it"
    )]
    LaterStage { line: usize, reference: String },
    #[error("Dockerfile line {line}: base name ({base}) should not be blank")]
    EmptyBase { line: usize, base: String },
    #[error("Dockerfile line {line}: {message}")]
    Expansion { line: usize, message: String },
}

fn name_list(stages: &[String]) -> String {
    if stages.is_empty() {
        "none named".into()
    } else {
        stages.join(", ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetPlan {
    /// Reachable stage indices, sorted.
    pub stages: Vec<usize>,
    /// External images (`FROM`, `COPY --from`, `RUN --mount from=` that are neither stages nor
    /// `scratch`), after ARG substitution.
    pub bases: BTreeSet<String>,
    pub context: ContextUse,
}

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

fn normalize_rel(rel: &str) -> &str {
    let mut rel = rel;
    while let Some(r) = rel.strip_prefix("./") {
        rel = r;
    }
    rel.trim_matches('/')
}

/// BuildKit's `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
fn has_wildcard(s: &str) -> bool {
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

fn is_at_or_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
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

/// How the builder resolves `$VAR` in a stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// BuildKit: an `ARG` sets the variable over the base image's `ENV` of the same name
    /// (the classic builder lets the image's `ENV` win, which lifeos cannot see).
    pub arg_beats_image_env: bool,
}

/// What a stage's `FROM` or a `--from` refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ref {
    Stage(usize),
    Image(String),
    Scratch,
}

impl Dockerfile {
    /// target None = the last stage. Unknown target → PlanError::UnknownTarget listing the
    /// stage names.
    pub fn plan(
        &self,
        target: Option<&str>,
        build_args: &BTreeMap<String, String>,
    ) -> Result<TargetPlan, PlanError> {
        self.plan_with(target, build_args, PlanOptions::default())
    }

    /// [`Dockerfile::plan`] knowing how the builder resolves variables.
    pub fn plan_with(
        &self,
        target: Option<&str>,
        build_args: &BTreeMap<String, String>,
        opts: PlanOptions,
    ) -> Result<TargetPlan, PlanError> {
        let env = self.global_env(build_args)?;
        // BuildKit expands every stage's FROM, reachable or not, so errors surface alike.
        let mut parents = Vec::with_capacity(self.stages.len());
        for st in &self.stages {
            let base = expand_word(&st.base, self.escape, &env).map_err(|message| {
                PlanError::Expansion {
                    line: st.line,
                    message,
                }
            })?;
            if base.is_empty() {
                return Err(PlanError::EmptyBase {
                    line: st.line,
                    base: st.base.clone(),
                });
            }
            // FROM only sees stages defined before it.
            let parent = match self.find_stage(&base, st.index) {
                Some(i) => Ref::Stage(i),
                None if base.eq_ignore_ascii_case("scratch") => Ref::Scratch,
                None => Ref::Image(base),
            };
            parents.push(parent);
        }
        // BuildKit resolves numeric --from of every stage up front.
        for st in &self.stages {
            let froms = st.copies.iter().map(|c| (c.line, &c.from));
            let froms = froms.chain(st.mounts.iter().map(|m| (m.line, &m.from)));
            for (line, from) in froms {
                if let Some(index) = from.as_deref().and_then(|f| f.parse::<i64>().ok()) {
                    if usize::try_from(index).map_or(true, |i| i >= self.stages.len()) {
                        return Err(PlanError::InvalidStageIndex {
                            line,
                            index: index.to_string(),
                        });
                    }
                }
            }
        }

        let target = match target.filter(|t| !t.is_empty()) {
            // `parse` never yields zero stages, but the fields are public.
            None => self
                .stages
                .len()
                .checked_sub(1)
                .ok_or_else(|| PlanError::UnknownTarget {
                    target: String::new(),
                    stages: Vec::new(),
                })?,
            Some(t) => {
                self.find_stage(t, self.stages.len())
                    .ok_or_else(|| PlanError::UnknownTarget {
                        target: t.to_string(),
                        stages: self.stage_names(),
                    })?
            }
        };

        let mut reachable = vec![false; self.stages.len()];
        let mut todo = vec![target];
        let mut bases = BTreeSet::new();
        let mut context = ContextBuilder::default();
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut reachable[i], true) {
                continue;
            }
            let st = &self.stages[i];
            let mut add_ref = |r: Ref, todo: &mut Vec<usize>| match r {
                Ref::Stage(j) => todo.push(j),
                Ref::Image(image) => {
                    bases.insert(image);
                }
                Ref::Scratch => {}
            };
            add_ref(parents[i].clone(), &mut todo);
            // ONBUILD triggers of an in-file parent run here; this stage's own run in children.
            let parent = match parents[i] {
                Ref::Stage(p) => Some(&self.stages[p]),
                _ => None,
            };
            let own_copies = st.copies.iter().filter(|c| !c.onbuild);
            let inherited = parent
                .into_iter()
                .flat_map(|p| &p.copies)
                .filter(|c| c.onbuild);
            for copy in own_copies.chain(inherited) {
                match &copy.from {
                    Some(from) => add_ref(self.resolve_from(from, i, copy.line)?, &mut todo),
                    None => {
                        for src in &copy.sources {
                            if !copy.add
                                && (src.starts_with("http://") || src.starts_with("https://"))
                            {
                                return Err(PlanError::Expansion {
                                    line: copy.line,
                                    message: "source can't be a URL for COPY".into(),
                                });
                            }
                            // Remote ADD sources are fetched, not read from the context.
                            if copy.add && is_remote(src) {
                                continue;
                            }
                            if !src.contains('$') {
                                context.add(src);
                                continue;
                            }
                            // An ONBUILD trigger runs where the child stage starts.
                            let at = if copy.onbuild { st.line } else { copy.line };
                            let vars = self.vars_at(i, at, &parents, &env, build_args, opts)?;
                            match vars.expand(src, self.escape, copy.line)? {
                                Some(expanded) if !is_remote(&expanded) || !copy.add => {
                                    context.add(&expanded)
                                }
                                Some(_) => {}
                                None => context.add_all(),
                            }
                        }
                    }
                }
            }
            let own_mounts = st.mounts.iter().filter(|m| !m.onbuild);
            let inherited = parent
                .into_iter()
                .flat_map(|p| &p.mounts)
                .filter(|m| m.onbuild);
            for mount in own_mounts.chain(inherited) {
                if matches!(mount.mount_type.as_str(), "tmpfs" | "secret" | "ssh") {
                    continue;
                }
                match &mount.from {
                    Some(from) => add_ref(self.resolve_from(from, i, mount.line)?, &mut todo),
                    // A bind mount without from= mounts (part of) the context; a cache mount
                    // without from= starts empty.
                    None if mount.mount_type == "bind" => {
                        context.add(mount.source.as_deref().unwrap_or(""))
                    }
                    None => {}
                }
            }
        }
        Ok(TargetPlan {
            stages: (0..self.stages.len()).filter(|&i| reachable[i]).collect(),
            bases,
            context: context.finish(),
        })
    }

    /// Names of the named stages, in order.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages.iter().filter_map(|s| s.name.clone()).collect()
    }

    /// The last stage before `before` named `name` (names are case-insensitive).
    fn find_stage(&self, name: &str, before: usize) -> Option<usize> {
        self.stages[..before].iter().rposition(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// `--from` of stage `current`: a stage index, a stage name, else an image.
    fn resolve_from(&self, from: &str, current: usize, line: usize) -> Result<Ref, PlanError> {
        let later = || PlanError::LaterStage {
            line,
            reference: from.to_string(),
        };
        if let Ok(index) = from.parse::<usize>() {
            // Out-of-range indices were rejected up front.
            return if index < current {
                Ok(Ref::Stage(index))
            } else {
                Err(later())
            };
        }
        // --from may name any stage, but BuildKit fails unless it was built first.
        // A name only refers to a stage defined before; a later one is read as an image.
        match self.find_stage(from, current) {
            Some(j) => Ok(Ref::Stage(j)),
            None if from.eq_ignore_ascii_case("scratch") => Ok(Ref::Scratch),
            None => Ok(Ref::Image(from.to_string())),
        }
    }

    /// Global ARG values: build args override defaults; an ARG with neither stays unset.
    fn global_env(
        &self,
        build_args: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, PlanError> {
        let mut env = BTreeMap::new();
        for arg in &self.global_args {
            let value = match (build_args.get(&arg.name), &arg.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => {
                    Some(expand_word(default, self.escape, &env).map_err(|message| {
                        PlanError::Expansion {
                            line: arg.line,
                            message,
                        }
                    })?)
                }
                (None, None) => None,
            };
            if let Some(v) = value {
                env.insert(arg.name.clone(), v);
            }
        }
        Ok(env)
    }
}

/// ADD fetches URLs and git repositories instead of reading the context.
fn is_remote(src: &str) -> bool {
    ["http://", "https://", "git://", "ssh://", "git@"]
        .iter()
        .any(|p| src.starts_with(p))
}

#[derive(Default)]
struct ContextBuilder {
    all: bool,
    paths: BTreeSet<String>,
}

impl ContextBuilder {
    fn add(&mut self, src: &str) {
        // `$X` may come from a stage ARG/ENV we do not evaluate: assume it can be anything
        // (a safe over-approximation).
        if src.contains('$') {
            self.all = true;
            return;
        }
        // BuildKit records path.Join("/", src).
        let clean = go_clean(&format!("/{src}"));
        let clean = clean.trim_start_matches('/');
        if clean.is_empty() {
            self.all = true;
        } else {
            self.paths.insert(clean.to_string());
        }
    }

    fn add_all(&mut self) {
        self.all = true;
    }

    fn finish(self) -> ContextUse {
        if self.all {
            ContextUse::All
        } else {
            ContextUse::Paths(self.paths)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Line-level parsing: directives, comments, continuations, heredocs.

/// Go's bufio.Scanner, which Docker reads a Dockerfile with, fails on a line this long.
const MAX_LINE: usize = 64 * 1024;

struct Parser<'a> {
    lines: Vec<&'a str>,
    /// Index of the next line to read; equals the 1-based number of the last line read.
    next: usize,
    escape: char,
    directives_done: bool,
    seen_directives: BTreeSet<String>,
}

/// One parsed instruction.
#[derive(Debug)]
enum Instr {
    From {
        base: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Arg(Vec<ArgDecl>),
    /// `ENV` pairs, values unexpanded.
    Env(Vec<(String, String)>),
    Copy(CopyInstr),
    Run(Vec<MountInstr>),
    Onbuild(Box<Instr>),
    Other,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Parser {
            lines: text.lines().collect(),
            next: 0,
            escape: '\\',
            directives_done: false,
            seen_directives: BTreeSet::new(),
        }
    }

    fn run(mut self) -> Result<Dockerfile, ParseError> {
        let mut df = Dockerfile {
            stages: Vec::new(),
            global_args: Vec::new(),
            escape: '\\',
        };
        if let Some(i) = self.lines.iter().position(|l| l.len() >= MAX_LINE) {
            return Err(ParseError {
                line: i + 1,
                message: format!(
                    "line too long: {} bytes (Docker reads at most {})",
                    self.lines[i].len(),
                    MAX_LINE - 1
                ),
            });
        }
        while self.next < self.lines.len() {
            let token = self.lines[self.next].trim_start();
            self.next += 1;
            let start = self.next;
            self.directive(token, start)?;
            let token = if token.starts_with('#') { "" } else { token };
            let (first, mut end) = trim_continuation(token, self.escape);
            if end && first.is_empty() {
                continue;
            }
            let mut line = first.to_string();
            while !end && self.next < self.lines.len() {
                let raw = self.lines[self.next];
                self.next += 1;
                // Comment and blank lines inside a continuation are dropped.
                let trimmed = raw.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let (part, e) = trim_continuation(raw, self.escape);
                line.push_str(part);
                end = e;
            }
            let instr = parse_instruction(&line, start, self.escape)?;
            if can_contain_heredoc(&instr, &line) && line.contains("<<") {
                self.skip_heredocs(&line, start)?;
            }
            df.add(instr, start)?;
        }
        if df.stages.is_empty() {
            return Err(ParseError {
                line: self.lines.len().max(1),
                message: "dockerfile contains no stages to build".into(),
            });
        }
        df.escape = self.escape;
        Ok(df)
    }

    /// Parser directives (`# escape=`, `# syntax=`, `# check=`) are only honoured before the
    /// first line that is not one.
    fn directive(&mut self, token: &str, line: usize) -> Result<(), ParseError> {
        if self.directives_done {
            return Ok(());
        }
        let Some((key, value)) = parse_directive(token) else {
            self.directives_done = true;
            return Ok(());
        };
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.directives_done = true;
            return Ok(());
        }
        if !self.seen_directives.insert(key.clone()) {
            return Err(ParseError {
                line,
                message: format!("only one {key} parser directive can be used"),
            });
        }
        if key == "escape" {
            self.escape = match value {
                "`" => '`',
                "\\" => '\\',
                _ => {
                    return Err(ParseError {
                        line,
                        message: format!("invalid escape token '{value}' does not match ` or \\"),
                    })
                }
            };
        }
        Ok(())
    }

    /// Consume the bodies of the heredocs opened on `line`, in order.
    fn skip_heredocs(&mut self, line: &str, start: usize) -> Result<(), ParseError> {
        for doc in shell_words(line, '\\', true)
            .iter()
            .filter_map(|w| heredoc(w))
        {
            let mut terminated = false;
            while self.next < self.lines.len() {
                let raw = self.lines[self.next].trim_end_matches(['\r', '\n']);
                self.next += 1;
                let candidate = if doc.chomp {
                    raw.trim_start_matches('\t')
                } else {
                    raw
                };
                if candidate == doc.name {
                    terminated = true;
                    break;
                }
            }
            if !terminated {
                return Err(ParseError {
                    line: start,
                    message: "unterminated heredoc".into(),
                });
            }
        }
        Ok(())
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` → (lowercased key, value).
fn parse_directive(token: &str) -> Option<(String, &str)> {
    let rest = token.strip_prefix('#')?.trim_start();
    let key_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let key = &rest[..key_len];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_len..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value))
}

/// BuildKit's continuation rule: the escape char at the end (trailing blanks allowed), unless
/// it is itself escaped.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

fn can_contain_heredoc(instr: &Instr, line: &str) -> bool {
    match instr {
        Instr::Onbuild(inner) => {
            // The trigger is the line after the ONBUILD keyword.
            let rest = line.trim_start();
            let rest = rest[rest.find(is_token_space).unwrap_or(rest.len())..].trim_start();
            can_contain_heredoc(inner, rest)
        }
        Instr::Copy(_) | Instr::Run(_) => {
            let (_, args) = split_command(line);
            let (args, _) = extract_builder_flags(args);
            json_string_array(args).is_none()
        }
        _ => false,
    }
}

struct Heredoc {
    name: String,
    /// `<<-`: leading tabs are stripped, terminator included.
    chomp: bool,
}

/// `^(\d*)<<(-?)([^<]*)$` on one shell word; the name has its quotes removed.
fn heredoc(word: &str) -> Option<Heredoc> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut words = shell_words(rest, '\\', false);
    if words.len() != 1 {
        return None;
    }
    Some(Heredoc {
        name: words.remove(0),
        chomp,
    })
}

/// BuildKit's tokenWhitespace: `[\t\v\f\r ]`.
fn is_token_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

fn split_command(line: &str) -> (&str, &str) {
    let line = line.trim();
    match line.find(is_token_space) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_token_space)),
        None => (line, ""),
    }
}

fn split_whitespace(args: &str) -> Vec<&str> {
    args.split(is_token_space)
        .filter(|w| !w.is_empty())
        .collect()
}

fn parse_instruction(line: &str, line_no: usize, escape: char) -> Result<Instr, ParseError> {
    let err = |message: String| ParseError {
        line: line_no,
        message,
    };
    let (cmd, rest) = split_command(line);
    let (args, flags) = extract_builder_flags(rest);
    let args = args.trim();
    let keyword = cmd.to_ascii_lowercase();
    if INSTRUCTIONS.contains(&keyword.as_str()) {
        let json = json_string_array(args);
        super::dockerfile_checks::check(&keyword, &flags, args, json.as_deref()).map_err(err)?;
    }
    Ok(match keyword.as_str() {
        "from" => {
            let words = split_whitespace(args);
            let name = match words.as_slice() {
                [_] => None,
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(err(format!(
                            "invalid name for build stage: {name:?}, name can't start with a \
                             number or contain symbols"
                        )));
                    }
                    Some(lower)
                }
                _ => return Err(err("FROM requires either one or three arguments".into())),
            };
            Instr::From {
                base: words[0].to_string(),
                name,
                platform: flag_value(&flags, "platform").map(str::to_string),
            }
        }
        "arg" => {
            let words = parse_words(args, escape);
            if words.is_empty() {
                return Err(err("ARG requires at least one argument".into()));
            }
            let mut decls = Vec::new();
            for word in words {
                let (name, default) = match word.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (word, None),
                };
                if name.is_empty() {
                    return Err(err("ARG names can not be blank".into()));
                }
                decls.push(ArgDecl {
                    name,
                    default,
                    line: line_no,
                });
            }
            Instr::Arg(decls)
        }
        "copy" | "add" => {
            let from = flag_value(&flags, "from")
                .filter(|f| !f.is_empty())
                .map(str::to_string);
            if from.as_deref().is_some_and(|f| f.contains('$')) {
                return Err(err(
                    "variable expansion is not supported for --from, define a new \
                                stage with FROM using ARG from global scope as a workaround"
                        .into(),
                ));
            }
            let (words, json) = match json_string_array(args) {
                Some(words) => (words, true),
                None => (
                    split_whitespace(args)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    false,
                ),
            };
            if words.len() < 2 {
                return Err(err(format!(
                    "{} requires at least two arguments, but only one was provided. \
                     Destination could not be determined.",
                    keyword.to_uppercase()
                )));
            }
            let sources = words[..words.len() - 1]
                .iter()
                .filter(|w| json || heredoc(w).is_none())
                .map(|w| process_source(w, escape))
                .collect();
            Instr::Copy(CopyInstr {
                line: line_no,
                add: keyword == "add",
                from,
                sources,
                onbuild: false,
            })
        }
        "run" => {
            let mut mounts = Vec::new();
            for flag in &flags {
                if let Some(spec) = flag.strip_prefix("--mount=") {
                    mounts.push(parse_mount(spec, line_no)?);
                }
            }
            Instr::Run(mounts)
        }
        "onbuild" => {
            let trigger = split_command(args).0.to_ascii_uppercase();
            match trigger.as_str() {
                "" => return Err(err("ONBUILD requires at least one argument".into())),
                "ONBUILD" => {
                    return Err(err(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()
                    ))
                }
                "FROM" | "MAINTAINER" => {
                    return Err(err(format!(
                        "{trigger} isn't allowed as an ONBUILD trigger"
                    )))
                }
                _ => {}
            }
            Instr::Onbuild(Box::new(parse_instruction(args, line_no, escape)?))
        }
        "env" => {
            let words = parse_words(args, escape);
            let pairs = match words.first() {
                Some(first) if !first.contains('=') => {
                    // The old form: `ENV name value with spaces`.
                    let value = args.trim()[first.len()..].trim_start();
                    vec![(first.clone(), value.to_string())]
                }
                _ => words
                    .iter()
                    .filter_map(|w| w.split_once('='))
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            };
            Instr::Env(pairs)
        }
        "cmd" | "entrypoint" | "expose" | "healthcheck" | "label" | "maintainer" | "shell"
        | "stopsignal" | "user" | "volume" | "workdir" => Instr::Other,
        _ => return Err(err(format!("unknown instruction: {cmd}"))),
    })
}

const INSTRUCTIONS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// `^[a-z][a-z0-9-_.]*$`
fn valid_stage_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn flag_value<'f>(flags: &'f [String], name: &str) -> Option<&'f str> {
    flags
        .iter()
        .find_map(|f| f.strip_prefix("--")?.strip_prefix(name)?.strip_prefix('='))
}

/// Quotes and escapes of a source path are processed as BuildKit's shell lexer does; `$`
/// sources stay raw (they mean "anything" to the plan).
fn process_source(word: &str, escape: char) -> String {
    if word.contains('$') {
        return word.to_string();
    }
    expand_word(word, escape, &BTreeMap::new()).unwrap_or_else(|_| word.to_string())
}

/// One `--mount=` value: CSV `key=value` fields.
fn parse_mount(spec: &str, line: usize) -> Result<MountInstr, ParseError> {
    let mut mount = MountInstr {
        line,
        mount_type: "bind".into(),
        from: None,
        source: None,
        onbuild: false,
    };
    let err = |message: String| ParseError { line, message };
    for field in csv_fields(spec) {
        let Some((key, value)) = field.split_once('=') else {
            let key = field.to_ascii_lowercase();
            if matches!(
                key.as_str(),
                "readonly" | "ro" | "readwrite" | "rw" | "required"
            ) {
                continue;
            }
            return Err(err(format!(
                "invalid field '{field}' must be a key=value pair"
            )));
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                let t = value.to_ascii_lowercase();
                if !matches!(t.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
                    return Err(ParseError {
                        line,
                        message: format!("unsupported mount type {value:?}"),
                    });
                }
                mount.mount_type = t;
            }
            "from" => {
                if value.contains('$') {
                    return Err(ParseError {
                        line,
                        message: "'from' doesn't support variable expansion, define alias \
                                  stage instead"
                            .into(),
                    });
                }
                mount.from = Some(value.to_string()).filter(|v| !v.is_empty());
            }
            "source" | "src" => mount.source = Some(value.to_string()),
            "target" | "dst" | "destination" | "readonly" | "ro" | "readwrite" | "rw"
            | "required" | "id" | "sharing" | "mode" | "uid" | "gid" | "size" | "env" => {}
            k => return Err(err(format!("unexpected key '{k}' in '{field}'"))),
        }
    }
    Ok(mount)
}

/// Go's encoding/csv for one record: fields split on ',', a field starting with '"' is quoted
/// and `""` inside it is a quote.
fn csv_fields(s: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        break;
                    }
                } else {
                    field.push(c);
                }
            }
            // Anything between the closing quote and the next ',' is kept, leniently.
        }
        for c in chars.by_ref() {
            if c == ',' {
                fields.push(std::mem::take(&mut field));
                break;
            }
            field.push(c);
        }
        if chars.peek().is_none() {
            if !field.is_empty() || s.ends_with(',') {
                fields.push(field);
            }
            return fields;
        }
    }
}

/// BuildKit's extractBuilderFlags: leading `--flag[=value]` words (quotes and `\` processed),
/// up to the first other word or a lone `--`. Returns the rest of the line and the flags.
fn extract_builder_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut k = 0;
    while k <= chars.len() {
        let at_end = k == chars.len();
        let (pos, ch) = chars.get(k).copied().unwrap_or((line.len(), '\0'));
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                k += 1;
                continue;
            }
            if ch != '-' || chars.get(k + 1).map(|&(_, c)| c) != Some('-') {
                return (&line[pos..], words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        let mut ch = ch;
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (&line[pos..], words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                k += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                k += 1;
                continue;
            }
            if ch == '\\' {
                if k + 1 == chars.len() {
                    k += 1;
                    continue;
                }
                k += 1;
                ch = chars[k].1;
            }
            word.push(ch);
            k += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            k += 1;
            continue;
        }
        if ch == '\\' {
            if k + 1 == chars.len() {
                phase = Phase::Word;
                k += 1;
                continue;
            }
            k += 1;
            ch = chars[k].1;
        }
        word.push(ch);
        k += 1;
    }
    ("", words)
}

/// BuildKit's parseWords (ARG, ENV, LABEL): whitespace-separated words, quotes and escapes
/// kept as written.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut k = 0;
    loop {
        let at_end = k == chars.len();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if chars[k].is_whitespace() {
                k += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        let mut ch = chars[k];
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                k += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if k + 1 == chars.len() {
                    k += 1;
                    continue;
                }
                word.push(ch);
                k += 1;
                ch = chars[k];
            }
            word.push(ch);
            k += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if k + 1 == chars.len() {
                phase = Phase::Word;
                k += 1;
                continue;
            }
            word.push(ch);
            k += 1;
            ch = chars[k];
        }
        word.push(ch);
        k += 1;
    }
    words
}

/// Shell words as BuildKit's lexer splits them for heredoc detection: whitespace outside
/// quotes separates words, `<<` swallows the blanks after it, `$` is never expanded. `raw`
/// keeps quotes and escapes in the words.
fn shell_words(s: &str, escape: char, raw: bool) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        k += 1;
        if c.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            continue;
        }
        in_word = true;
        if c == escape {
            if raw {
                word.push(c);
            }
            if let Some(&n) = chars.get(k) {
                word.push(n);
                k += 1;
            }
        } else if c == '\'' || c == '"' {
            if raw {
                word.push(c);
            }
            while let Some(&n) = chars.get(k) {
                k += 1;
                if n == c {
                    if raw {
                        word.push(n);
                    }
                    break;
                }
                if c == '"' && n == escape && k < chars.len() {
                    if raw {
                        word.push(n);
                    }
                    word.push(chars[k]);
                    k += 1;
                    continue;
                }
                word.push(n);
            }
        } else if c == '<' && chars.get(k) == Some(&'<') {
            word.push_str("<<");
            k += 1;
            while chars.get(k).is_some_and(|n| n.is_whitespace()) {
                k += 1;
            }
        } else {
            word.push(c);
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// A JSON array of strings (exec form); None when `args` is not one. Like Go's json.Decoder,
/// anything after the closing `]` is ignored.
fn json_string_array(args: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = args.trim_start().chars().collect();
    let mut k = 0;
    let skip_ws = |k: &mut usize| {
        while chars
            .get(*k)
            .is_some_and(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
        {
            *k += 1;
        }
    };
    if chars.first() != Some(&'[') {
        return None;
    }
    k += 1;
    skip_ws(&mut k);
    let mut out = Vec::new();
    if chars.get(k) == Some(&']') {
        return Some(out);
    }
    loop {
        skip_ws(&mut k);
        if chars.get(k) != Some(&'"') {
            return None;
        }
        k += 1;
        let mut s = String::new();
        loop {
            let c = *chars.get(k)?;
            k += 1;
            match c {
                '"' => break,
                '\\' => {
                    let e = *chars.get(k)?;
                    k += 1;
                    match e {
                        '"' | '\\' | '/' => s.push(e),
                        'b' => s.push('\u{8}'),
                        'f' => s.push('\u{c}'),
                        'n' => s.push('\n'),
                        'r' => s.push('\r'),
                        't' => s.push('\t'),
                        'u' => {
                            let hex = |k: &mut usize| -> Option<u32> {
                                let h: String = chars.get(*k..*k + 4)?.iter().collect();
                                *k += 4;
                                u32::from_str_radix(&h, 16).ok()
                            };
                            let mut code = hex(&mut k)?;
                            if (0xD800..0xDC00).contains(&code)
                                && chars.get(k..k + 2) == Some(&['\\', 'u'][..])
                            {
                                let mut k2 = k + 2;
                                let low = hex(&mut k2)?;
                                if (0xDC00..0xE000).contains(&low) {
                                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                    k = k2;
                                }
                            }
                            s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        _ => return None,
                    }
                }
                c if (c as u32) < 0x20 => return None,
                c => s.push(c),
            }
        }
        out.push(s);
        skip_ws(&mut k);
        match chars.get(k) {
            Some(',') => k += 1,
            Some(']') => return Some(out),
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Word expansion: the part of BuildKit's shell lexer that FROM and ARG values need.

fn expand_word(word: &str, escape: char, env: &BTreeMap<String, String>) -> Result<String, String> {
    expand_tracking(word, escape, env).map(|(w, _)| w)
}

/// Expand, and name every variable looked up.
pub(super) fn expand_used(
    word: &str,
    escape: char,
    env: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), String> {
    let mut lex = Lex {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        env,
        missing: Vec::new(),
        track_all: true,
    };
    let w = lex.word(None)?;
    Ok((w, lex.missing))
}

/// Expand, and name the variables that were looked up but not set.
fn expand_tracking(
    word: &str,
    escape: char,
    env: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), String> {
    let mut lex = Lex {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        env,
        missing: Vec::new(),
        track_all: false,
    };
    let w = lex.word(None)?;
    Ok((w, lex.missing))
}

struct Lex<'a> {
    chars: Vec<char>,
    pos: usize,
    /// Names looked up and not set (or every name looked up, with `track_all`).
    missing: Vec<String>,
    track_all: bool,
    escape: char,
    env: &'a BTreeMap<String, String>,
}

impl Lex<'_> {
    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        self.pos += usize::from(c.is_some());
        c
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Process up to (not including) `stop`, or to the end.
    fn word(&mut self, stop: Option<char>) -> Result<String, String> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                break;
            }
            self.pos += 1;
            match c {
                c if c == self.escape => {
                    // A trailing escape is dropped.
                    if let Some(n) = self.next() {
                        out.push(n);
                    }
                }
                '\'' => loop {
                    match self.next() {
                        None => {
                            return Err("unexpected end of statement while looking for \
                                        matching single-quote"
                                .into())
                        }
                        Some('\'') => break,
                        Some(c) => out.push(c),
                    }
                },
                '"' => loop {
                    match self.next() {
                        None => {
                            return Err("unexpected end of statement while looking for \
                                        matching double-quote"
                                .into())
                        }
                        Some('"') => break,
                        Some('$') => out.push_str(&self.dollar()?),
                        Some(c) if c == self.escape => match self.peek() {
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                out.push(n);
                            }
                            Some(_) => out.push(c),
                            None => {}
                        },
                        Some(c) => out.push(c),
                    }
                },
                '$' => out.push_str(&self.dollar()?),
                c => out.push(c),
            }
        }
        Ok(out)
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                    name.push(c);
                    self.pos += 1;
                }
            }
            Some(c) if "@*#$!?-".contains(c) => {
                self.pos += 1;
                name.push(c);
            }
            _ => {
                while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        name
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let v = self.env.get(name).cloned();
        if v.is_none() || self.track_all {
            self.missing.push(name.to_string());
        }
        v
    }

    /// After a `$`.
    fn dollar(&mut self) -> Result<String, String> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.name();
        let value = self.lookup(&name);
        let op = match self.next() {
            Some('}') => return Ok(value.unwrap_or_default()),
            Some(':') => match self.next() {
                Some(c @ ('-' | '+' | '?')) => (true, c),
                c => {
                    return Err(format!(
                        "unsupported modifier (:{}) in substitution",
                        c.map(String::from).unwrap_or_default()
                    ))
                }
            },
            Some(c @ ('-' | '+' | '?')) => (false, c),
            c => {
                return Err(format!(
                    "unsupported modifier ({}) in substitution",
                    c.map(String::from).unwrap_or_default()
                ))
            }
        };
        let word = self.word(Some('}'))?;
        if self.next() != Some('}') {
            return Err("syntax error: missing '}'".into());
        }
        // With ':' an empty value counts as unset.
        let set = match (&value, op.0) {
            (Some(v), true) => !v.is_empty(),
            (Some(_), false) => true,
            (None, _) => false,
        };
        Ok(match op.1 {
            '-' if set => value.unwrap_or_default(),
            '-' => word,
            '+' if set => word,
            '+' => String::new(),
            _ if set => value.unwrap_or_default(),
            _ if word.is_empty() && op.0 && value.is_some() => {
                return Err(format!("{name}: is not allowed to be empty"))
            }
            _ if word.is_empty() => return Err(format!("{name}: is not allowed to be unset")),
            _ => return Err(format!("{name}: {word}")),
        })
    }
}

impl Dockerfile {
    fn add(&mut self, instr: Instr, line: usize) -> Result<(), ParseError> {
        if let Instr::From {
            base,
            name,
            platform,
        } = instr
        {
            self.stages.push(Stage {
                index: self.stages.len(),
                name,
                line,
                base,
                platform,
                copies: Vec::new(),
                mounts: Vec::new(),
                vars: Vec::new(),
            });
            return Ok(());
        }
        let Some(stage) = self.stages.last_mut() else {
            return match instr {
                Instr::Arg(decls) => {
                    self.global_args.extend(decls);
                    Ok(())
                }
                _ => Err(ParseError {
                    line,
                    message: "no build stage in current context".into(),
                }),
            };
        };
        let (instr, onbuild) = match instr {
            Instr::Onbuild(inner) => (*inner, true),
            other => (other, false),
        };
        match instr {
            Instr::Copy(mut copy) => {
                copy.onbuild = onbuild;
                stage.copies.push(copy);
            }
            Instr::Run(mounts) => {
                stage
                    .mounts
                    .extend(mounts.into_iter().map(|m| MountInstr { onbuild, ..m }));
            }
            Instr::Arg(decls) if !onbuild => stage.vars.extend(decls.into_iter().map(VarDecl::Arg)),
            Instr::Env(pairs) if !onbuild => {
                stage
                    .vars
                    .extend(pairs.into_iter().map(|(name, value)| VarDecl::Env {
                        line,
                        name,
                        value,
                    }))
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str, target: Option<&str>) -> TargetPlan {
        parse(text).unwrap().plan(target, &BTreeMap::new()).unwrap()
    }

    fn paths(p: &[&str]) -> ContextUse {
        ContextUse::Paths(p.iter().map(|s| s.to_string()).collect())
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const SEED: &str = r#"# syntax=docker/dockerfile:1
FROM lifeos-base:latest AS base

FROM base AS deps
WORKDIR /app
COPY package.json shared/ ./
RUN --mount=type=cache,target=/root/.cache npm ci

FROM deps AS web-builder
COPY web/ ./web/
RUN npm run build:web

FROM deps AS api-builder
COPY api ./api
RUN npm run build:api

FROM base AS web-runner
COPY --from=web-builder /app/web/dist /srv/web

FROM base AS api-runner
COPY --from=api-builder /app/api/dist /srv/api
"#;

    #[test]
    fn seed_web_runner_reads_only_its_own_files() {
        let df = parse(SEED).unwrap();
        assert_eq!(
            df.stage_names(),
            [
                "base",
                "deps",
                "web-builder",
                "api-builder",
                "web-runner",
                "api-runner"
            ]
        );
        let p = df.plan(Some("web-runner"), &BTreeMap::new()).unwrap();
        assert_eq!(p.stages, [0, 1, 2, 4]);
        assert_eq!(p.bases, set(&["lifeos-base:latest"]));
        assert_eq!(p.context, paths(&["package.json", "shared", "web"]));
        assert!(p.context.reads("package.json"));
        assert!(p.context.reads("shared/x"));
        assert!(p.context.reads("web/index.html"));
        assert!(!p.context.reads("api/x"));
        assert!(!p.context.reads("package.json.bak"));
        assert!(!p.context.reads("webx/a"));
        assert!(p.context.reads_under("web"));
        assert!(!p.context.reads_under("api"));
    }

    #[test]
    fn seed_default_target_is_the_last_stage() {
        let p = plan(SEED, None);
        assert_eq!(p.stages, [0, 1, 3, 5]);
        assert_eq!(p.context, paths(&["api", "package.json", "shared"]));
        assert_eq!(plan(SEED, Some("BASE")).stages, [0]);
        assert_eq!(plan(SEED, Some("base")).context, paths(&[]));
    }

    #[test]
    fn unknown_target_lists_the_stages() {
        let df = parse(SEED).unwrap();
        match df.plan(Some("nope"), &BTreeMap::new()).unwrap_err() {
            PlanError::UnknownTarget { target, stages } => {
                assert_eq!(target, "nope");
                assert_eq!(stages, df.stage_names());
            }
            e => panic!("unexpected {e}"),
        }
        let msg = df
            .plan(Some("nope"), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("\"nope\"") && msg.contains("web-runner"),
            "{msg}"
        );
    }

    #[test]
    fn global_args_substitute_in_from() {
        let text = "ARG BASE=node\nARG TAG\nARG FULL=${BASE}:${TAG:-20}\n\
                    FROM ${BASE}:${TAG:-20} AS b\nFROM $FULL-slim\nFROM \"$BASE\"\n";
        let df = parse(text).unwrap();
        assert_eq!(df.global_args.len(), 3);
        let none = BTreeMap::new();
        let p = df.plan(Some("b"), &none).unwrap();
        assert_eq!(p.bases, set(&["node:20"]));
        let args = BTreeMap::from([("TAG".to_string(), "18".to_string())]);
        assert_eq!(df.plan(Some("b"), &args).unwrap().bases, set(&["node:18"]));
        let args = BTreeMap::from([("BASE".to_string(), "python".to_string())]);
        assert_eq!(
            df.plan(Some("b"), &args).unwrap().bases,
            set(&["python:20"])
        );
        // FULL's default is expanded with the earlier ARGs.
        let all = df.plan(None, &none).unwrap();
        assert_eq!(all.bases, set(&["node"]));
        assert_eq!(all.stages, [2]);
        let p = parse(text).unwrap().plan(Some("stage"), &none);
        assert!(matches!(p, Err(PlanError::UnknownTarget { .. })));
        let p = parse("FROM b\nFROM a AS x\n").unwrap();
        assert_eq!(p.plan(None, &none).unwrap().bases, set(&["a"]));
    }

    #[test]
    fn from_args_resolve_to_stages_and_empty_bases_fail() {
        let text = "ARG STAGE=builder\nFROM alpine AS builder\nFROM $STAGE\n";
        let p = plan(text, None);
        assert_eq!(p.stages, [0, 1]);
        assert_eq!(p.bases, set(&["alpine"]));
        let err = parse("ARG X\nFROM $X\n")
            .unwrap()
            .plan(None, &BTreeMap::new())
            .unwrap_err();
        assert!(matches!(err, PlanError::EmptyBase { line: 2, .. }), "{err}");
        let err = parse("ARG X\nFROM ${X:?required}\n")
            .unwrap()
            .plan(None, &BTreeMap::new())
            .unwrap_err();
        assert_eq!(err.to_string(), "Dockerfile line 2: X: required");
    }

    #[test]
    fn copy_dot_reads_everything() {
        assert_eq!(plan("FROM a\nCOPY . .\n", None).context, ContextUse::All);
        assert_eq!(
            plan("FROM a\nCOPY ./ /app\n", None).context,
            ContextUse::All
        );
        assert_eq!(plan("FROM a\nCOPY / /app\n", None).context, ContextUse::All);
        assert_eq!(plan("FROM a\nADD .. /app\n", None).context, ContextUse::All);
        assert!(ContextUse::All.reads("anything/at/all"));
        assert!(ContextUse::All.reads_under("x"));
    }

    #[test]
    fn sources_are_cleaned() {
        let p = plan("FROM a\nCOPY ./src/ /a/../b/ //lib/x/.. /dst\n", None);
        assert_eq!(p.context, paths(&["b", "lib", "src"]));
    }

    #[test]
    fn numeric_from_and_external_images() {
        let text = "FROM alpine\nRUN true\nFROM debian AS two\nCOPY --from=0 /x /x\n\
                    COPY --from=nginx:alpine /etc/nginx /etc/nginx\n\
                    COPY --from=scratch /a /b\nFROM scratch\nCOPY --from=two /x /x\n";
        let p = plan(text, None);
        assert_eq!(p.stages, [0, 1, 2]);
        assert_eq!(p.bases, set(&["alpine", "debian", "nginx:alpine"]));
        assert_eq!(p.context, paths(&[]));
        let err = parse("FROM a\nCOPY --from=3 /x /x\n")
            .unwrap()
            .plan(None, &BTreeMap::new())
            .unwrap_err();
        assert!(
            matches!(err, PlanError::InvalidStageIndex { line: 2, .. }),
            "{err}"
        );
        let err = parse("FROM a AS one\nCOPY --from=1 /x /x\nFROM b\n")
            .unwrap()
            .plan(Some("one"), &BTreeMap::new())
            .unwrap_err();
        assert!(
            matches!(err, PlanError::LaterStage { line: 2, .. }),
            "{err}"
        );
        // A stage defined later is not a stage here: Docker reads the name as an image.
        let p = plan(
            "FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\n",
            Some("one"),
        );
        assert_eq!(p.bases, set(&["a", "two"]));
        let err = parse("FROM a\nCOPY --from=$X /x /x\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn run_mounts() {
        let text = "FROM a AS tools\nFROM b\n\
                    RUN --mount=type=bind,source=scripts,target=/s \\\n    \
                    --mount=type=cache,target=/c \\\n    \
                    --mount=type=secret,id=x \\\n    \
                    --mount=type=bind,from=tools,source=/bin,target=/t \\\n    \
                    --mount=type=cache,from=golang:1.22,target=/g \\\n    \
                    --mount=\"type=bind,src=conf dir,target=/conf\" make\n";
        let p = plan(text, None);
        assert_eq!(p.stages, [0, 1]);
        assert_eq!(p.bases, set(&["a", "b", "golang:1.22"]));
        assert_eq!(p.context, paths(&["conf dir", "scripts"]));
        // A bind mount without a source is the whole context.
        let p = plan("FROM a\nRUN --mount=target=/ctx make\n", None);
        assert_eq!(p.context, ContextUse::All);
        let err = parse("FROM a\nRUN --mount=type=bind,from=$X,target=/x true\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse("FROM a\nRUN --mount=type=nfs,target=/x true\n").unwrap_err();
        assert!(err.message.contains("unsupported mount type"), "{err}");
    }

    #[test]
    fn heredocs_are_skipped_and_are_not_sources() {
        let text = "FROM alpine\n\
                    RUN <<EOF\nFRM this is not an instruction\nCOPY secret /x\nEOF\n\
                    COPY <<-\"END\" /etc/conf\n\tkey=value\n\tEND\n\
                    RUN --mount=type=cache,target=/c <<'A' bash && cat <<B\necho\nA\nb body\nB\n\
                    COPY <<one 2<<two real.txt /dst/\nx\none\ny\ntwo\n\
                    RUN << SPACED\nz\nSPACED\n\
                    COPY after.txt /\n";
        let df = parse(text).unwrap();
        let p = df.plan(None, &BTreeMap::new()).unwrap();
        assert_eq!(p.context, paths(&["after.txt", "real.txt"]));
        let err = parse("FROM a\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (2, "unterminated heredoc")
        );
        // JSON form cannot open a heredoc; "<<" in a quoted word does not either.
        let p = plan(
            "FROM a\nRUN [\"sh\", \"<<EOF\"]\nRUN echo \"<<EOF\"\nCOPY x /\n",
            None,
        );
        assert_eq!(p.context, paths(&["x"]));
    }

    #[test]
    fn continuation_lines_and_comments() {
        let text = "FROM alpine\nCOPY a \\\n  # a comment inside\n\n  b \\  \n  /dst/\n\
                    RUN echo \\\\\nCOPY c /\n";
        let df = parse(text).unwrap();
        assert_eq!(df.stages[0].copies[0].sources, ["a", "b"]);
        assert_eq!(df.stages[0].copies[0].line, 2);
        // `\\` at the end is an escaped escape, not a continuation.
        assert_eq!(df.stages[0].copies[1].sources, ["c"]);
        assert_eq!(df.stages[0].copies[1].line, 8);
    }

    #[test]
    fn escape_directive_changes_the_continuation_char() {
        let text = "# escape=`\n# syntax=docker/dockerfile:1\nFROM mcr.microsoft.com/windows\n\
                    COPY a `\n  b\\c `\n  C:\\dst\\\nCOPY \"x y\" `\"q`\" /\n";
        let df = parse(text).unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.stages[0].copies[0].sources, ["a", "b\\c"]);
        assert_eq!(df.stages[0].copies[1].sources, ["\"x", "y\"", "\"q\""]);
        // Directives only count at the very top.
        let df = parse("FROM a\n# escape=`\nCOPY a \\\n b /\n").unwrap();
        assert_eq!(df.escape, '\\');
        assert_eq!(df.stages[0].copies[0].sources, ["a", "b"]);
        let df = parse("\n# escape=`\nFROM a\nCOPY a \\\n b /\n").unwrap();
        assert_eq!(df.escape, '\\');
        let err = parse("# escape=x\nFROM a\n").unwrap_err();
        assert_eq!(err.line, 1);
        let err = parse("# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn unknown_instruction_reports_its_line() {
        let err = parse("FROM alpine\nRUN echo \\\n  hi\n\n# c\nFRM x\n").unwrap_err();
        assert_eq!(err.line, 6);
        assert_eq!(err.message, "unknown instruction: FRM");
        assert_eq!(
            err.to_string(),
            "Dockerfile line 6: unknown instruction: FRM"
        );
        assert_eq!(
            parse("RUN x\n").unwrap_err().message,
            "no build stage in current context"
        );
        assert!(parse("ARG A=1\n").is_err());
        assert!(parse("").is_err());
        assert_eq!(parse("FROM a AS 1x\n").unwrap_err().line, 1);
        assert_eq!(parse("FROM a b\n").unwrap_err().line, 1);
        assert_eq!(parse("FROM a\nCOPY onlyone\n").unwrap_err().line, 2);
    }

    #[test]
    fn keywords_and_stage_names_are_case_insensitive() {
        let text = "from alpine As Builder\nRun echo\ncopy src /src\n\
                    FROM debian\nCoPy a b\nCOPY --from=BUILDER /src /src\n";
        let p = plan(text, None);
        assert_eq!(p.stages, [0, 1]);
        assert_eq!(p.bases, set(&["alpine", "debian"]));
        assert_eq!(p.context, paths(&["a", "src"]));
        assert_eq!(
            parse(text).unwrap().stages[0].name.as_deref(),
            Some("builder")
        );
    }

    #[test]
    fn json_form_copy() {
        let df =
            parse("FROM a\nCOPY [\"a b\", \"c\", \"/dst/\"]\nADD [\"\\u00e9t\\u00e9\", \"/\"]\n")
                .unwrap();
        assert_eq!(df.stages[0].copies[0].sources, ["a b", "c"]);
        assert_eq!(df.stages[0].copies[1].sources, ["été"]);
        let p = df.plan(None, &BTreeMap::new()).unwrap();
        assert!(p.context.reads("a b/x"));
        assert!(p.context.reads("c"));
        assert!(!p.context.reads("a"));
    }

    #[test]
    fn copy_flags_are_ignored_and_add_urls_skipped() {
        let text = "FROM a\n\
                    COPY --chown=1:1 --chmod=644 --link --parents --exclude=*.md docs/ /d\n\
                    ADD --checksum=sha256:abc https://example.com/x.tgz /x\n\
                    ADD git@github.com:o/r.git /r\nADD local.tgz /\n";
        assert_eq!(plan(text, None).context, paths(&["docs", "local.tgz"]));
    }

    #[test]
    fn variables_in_sources_mean_everything() {
        let text = "FROM a\nARG DIR=src\nCOPY $DIR /x\n";
        assert_eq!(plan(text, None).context, ContextUse::All);
        let p = plan(
            "FROM a\nRUN --mount=type=bind,source=${X},target=/x true\n",
            None,
        );
        assert_eq!(p.context, ContextUse::All);
    }

    #[test]
    fn buildkit_platform_args_are_unknown_unless_given() {
        let texts = [
            "FROM scratch\nARG TARGETARCH\nCOPY dist/$TARGETARCH/app /app\n",
            "FROM scratch\nARG TARGETARCH=arm64\nCOPY dist/${TARGETARCH}/app /app\n",
            "ARG TARGETARCH=arm64\nFROM scratch\nARG TARGETARCH\nCOPY dist/$TARGETARCH/app /app\n",
            "FROM scratch\nARG BUILDPLATFORM\nCOPY dist/$BUILDPLATFORM/app /app\n",
        ];
        for text in texts {
            let df = parse(text).unwrap();
            for buildkit in [true, false] {
                let opts = PlanOptions {
                    arg_beats_image_env: buildkit,
                };
                let p = df.plan_with(None, &BTreeMap::new(), opts).unwrap();
                assert!(p.context.reads("dist/amd64/app"), "{text:?} {opts:?}");
            }
        }
        // Given as a build arg, the value is known.
        let args = BTreeMap::from([("TARGETARCH".to_string(), "arm64".to_string())]);
        let p = parse(texts[0]).unwrap().plan(None, &args).unwrap();
        assert_eq!(p.context, paths(&["dist/arm64/app"]));
    }

    #[test]
    fn wildcard_sources() {
        let p = plan(
            "FROM a\nCOPY s* *.json conf/[ab].yml lib/**/*.ts /dst/\n",
            None,
        );
        let c = &p.context;
        assert!(c.reads("src/a.txt"));
        assert!(c.reads("s"));
        assert!(c.reads("package.json"));
        assert!(!c.reads("x/package.json"));
        assert!(c.reads("conf/a.yml"));
        assert!(!c.reads("conf/c.yml"));
        assert!(c.reads("lib/deep/x.ts"));
        assert!(!c.reads("other/x"));
        assert!(c.reads_under("conf"));
        assert!(c.reads_under("lib/deep"));
        assert!(!c.reads_under("other"));
        assert!(c.reads_under(""));
        assert!(!c.reads(""));
        // Escaped wildcards are literal.
        let p = plan("FROM a\nCOPY \"a\\\\*b\" /\n", None);
        assert_eq!(p.context, paths(&["a\\*b"]));
        assert!(p.context.reads("a*b"));
        assert!(p.context.reads("a\\*b/c"));
        assert!(!p.context.reads("axb"));
    }

    #[test]
    fn onbuild_triggers_run_in_child_stages() {
        let text = "FROM alpine AS p\nONBUILD COPY conf /conf\nONBUILD RUN --mount=from=tools,target=/t x\n\
                    FROM busybox AS tools\nFROM p AS c\n";
        let p = plan(text, Some("p"));
        assert_eq!((p.stages, p.context), (vec![0], paths(&[])));
        // The trigger references `tools`, defined after `p` but before `c`.
        let p = plan(text, Some("c"));
        assert_eq!(p.stages, [0, 1, 2]);
        assert_eq!(p.bases, set(&["alpine", "busybox"]));
        assert_eq!(p.context, paths(&["conf"]));
        assert!(parse("FROM a\nONBUILD FROM b\n").is_err());
        assert!(parse("FROM a\nONBUILD ONBUILD RUN x\n").is_err());
        let p = plan("FROM a\nONBUILD RUN <<EOF\nFRM\nEOF\nFROM scratch\n", None);
        assert!(p.bases.is_empty());
    }

    #[test]
    fn builder_flags() {
        assert_eq!(
            extract_builder_flags("--a=1 --b=\"x y\" --c -- --d e"),
            (
                " --d e",
                vec!["--a=1".into(), "--b=x y".into(), "--c".into()]
            )
        );
        assert_eq!(extract_builder_flags("src dst"), ("src dst", vec![]));
        assert_eq!(extract_builder_flags("--only"), ("", vec!["--only".into()]));
    }

    #[test]
    fn csv_and_words() {
        assert_eq!(csv_fields("a=1,\"b=2,3\",c"), ["a=1", "b=2,3", "c"]);
        assert_eq!(csv_fields("a,"), ["a", ""]);
        assert_eq!(parse_words("A=\"x y\" B", '\\'), ["A=\"x y\"", "B"]);
        assert_eq!(
            shell_words("RUN <<  EOF x'a b'", '\\', true),
            ["RUN", "<<EOF", "x'a b'"]
        );
        assert_eq!(json_string_array("[] x"), Some(vec![]));
        assert_eq!(json_string_array("[1]"), None);
        assert_eq!(json_string_array("[\"a\""), None);
        assert_eq!(
            json_string_array("[\"\\ud83d\\ude00\"]"),
            Some(vec!["😀".into()])
        );
    }

    #[test]
    fn word_expansion() {
        let env = BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("E".to_string(), String::new()),
        ]);
        let x = |w: &str| expand_word(w, '\\', &env);
        assert_eq!(
            x("$A-${A}-${B:-d}-${E:-d}-${E-d}-${A:+p}-${B+p}").unwrap(),
            "1-1-d-d--p-"
        );
        assert_eq!(x("'$A'\"$A\"\\$A$").unwrap(), "$A1$A$");
        assert_eq!(x("${B:-${A}x}").unwrap(), "1x");
        assert!(x("${A").is_err());
        assert!(x("${A#x}").is_err());
        assert!(x("\"open").is_err());
        assert!(x("${E:?}").is_err());
        assert_eq!(x("${E?}").unwrap(), "");
    }

    fn err(text: &str) -> (usize, String) {
        let e = parse(text).map_err(|e| (e.line, e.message)).and_then(|df| {
            df.plan(None, &BTreeMap::new())
                .map(|_| ())
                .map_err(|e| (0, e.to_string()))
        });
        e.expect_err(text)
    }

    #[test]
    fn instructions_docker_rejects_name_their_line() {
        for (text, line, needle) in [
            ("FROM a\nMAINTAINER\n", 2, "exactly one argument"),
            ("FROM a\nWORKDIR\n", 2, "exactly one argument"),
            ("FROM a\nUSER\n", 2, "exactly one argument"),
            ("FROM a\nSTOPSIGNAL\n", 2, "exactly one argument"),
            ("FROM a\nENV\n", 2, "at least one argument"),
            ("FROM a\nLABEL\n", 2, "at least one argument"),
            ("FROM a\nHEALTHCHECK\n", 2, "at least one argument"),
            ("FROM a\nEXPOSE\n", 2, "at least one argument"),
            ("FROM a\nVOLUME\n", 2, "at least one argument"),
            ("FROM a\n\nENV PATH\n", 3, "must have two arguments"),
            ("FROM a\nCOPY --user=me a /\n", 2, "Unknown flag: user"),
            ("FROM a\nMAINTAINER --boo x\n", 2, "Unknown flag: boo"),
            (
                "FROM a\nRUN --mount=type=bind,,,=,from=,source= true\n",
                2,
                "invalid field ''",
            ),
            (
                "FROM a\nRUN --mount=type=bind,foo=1 true\n",
                2,
                "unexpected key 'foo'",
            ),
        ] {
            let (l, m) = err(text);
            assert_eq!(l, line, "{text:?}: {m}");
            assert!(m.contains(needle), "{text:?}: {m}");
        }
        // Found by the plan (reachable stages), named by line too.
        let (_, m) = err("FROM a\nCOPY http://example.com/x /\n");
        assert!(m.contains("line 2") && m.contains("URL"), "{m}");
        let (_, m) = err("FROM scratch\nCOPY ${X:- /a\n");
        assert!(m.contains("line 2") && m.contains("missing '}'"), "{m}");
        let long = format!("FROM a\nRUN echo {}\n", "x".repeat(65_536));
        assert_eq!(err(&long).0, 2);
        assert!(parse(&format!("FROM a\nRUN echo {}\n", "x".repeat(65_000))).is_ok());
    }

    #[test]
    fn copy_sources_resolve_known_variables() {
        let opts = PlanOptions {
            arg_beats_image_env: true,
        };
        let p = |text: &str, args: &[(&str, &str)], opts| {
            let args = args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            parse(text)
                .unwrap()
                .plan_with(None, &args, opts)
                .unwrap()
                .context
        };
        // From scratch every value is known.
        let text = "FROM scratch\nARG SRC=app\nENV CONF=etc\nCOPY ${SRC}/ $CONF/app.cfg /x/\n";
        assert_eq!(
            p(text, &[], PlanOptions::default()),
            paths(&["app", "etc/app.cfg"])
        );
        assert_eq!(
            p(text, &[("SRC", "web")], PlanOptions::default()),
            paths(&["etc/app.cfg", "web"])
        );
        // An image may set any ENV: an ARG wins over it with BuildKit only; ENV always.
        let text = "FROM node\nARG SRC=app\nENV CONF=etc\nCOPY $SRC /x\nCOPY $CONF /y\n";
        assert_eq!(p(text, &[], opts), paths(&["app", "etc"]));
        assert_eq!(p(text, &[], PlanOptions::default()), ContextUse::All);
        // An unknown variable, or one used before its ARG, is "anything".
        assert_eq!(p("FROM node\nCOPY $HOME/x /\n", &[], opts), ContextUse::All);
        assert_eq!(
            p("FROM scratch\nCOPY a$X /\nARG X=1\n", &[], opts),
            paths(&["a"])
        );
        // ENV passes to child stages; ARG does not (certainly).
        let text = "FROM scratch AS p\nENV D=lib\nARG A=x\nFROM p\nCOPY $D $A /\n";
        assert_eq!(p(text, &[], opts), ContextUse::All);
        let text = "FROM scratch AS p\nENV D=lib\nFROM p\nCOPY $D /\n";
        assert_eq!(p(text, &[], opts), paths(&["lib"]));
        // A global ARG reaches a stage through `ARG NAME`.
        let text = "ARG V=v1\nFROM scratch\nARG V\nCOPY dist/$V /\n";
        assert_eq!(p(text, &[], opts), paths(&["dist/v1"]));
    }
}
