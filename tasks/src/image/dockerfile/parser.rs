//! The file into logical lines: parser directives, comments, continuation lines and heredoc
//! bodies, each logical line handed to the instruction parser.

use std::collections::BTreeSet;

use super::ast::{Dockerfile, Instr, ParseError};
use super::instruction::parse_instruction;
use super::lexer::{
    extract_builder_flags, heredoc, is_token_space, json_string_array, shell_words, split_command,
};

/// Parse a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    Parser::new(text).run()
}

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
