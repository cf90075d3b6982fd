//! Word expansion: the part of BuildKit's shell lexer that `FROM`, `ARG` and `COPY` values
//! need (`$A`, `${A}`, `${A:-x}`, `${A:+x}`, `${A:?x}`, quotes, escapes).

use std::collections::BTreeMap;

/// `word` with its variables, quotes and escapes processed.
pub(super) fn expand_word(
    word: &str,
    escape: char,
    env: &BTreeMap<String, String>,
) -> Result<String, String> {
    Expander::new(word, escape, env, false).word(None)
}

/// Expand, and name every variable looked up.
pub(super) fn expand_used(
    word: &str,
    escape: char,
    env: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), String> {
    let mut x = Expander::new(word, escape, env, true);
    let w = x.word(None)?;
    Ok((w, x.looked_up))
}

struct Expander<'a> {
    chars: Vec<char>,
    pos: usize,
    /// Names looked up and not set (or every name looked up, with `track_all`).
    looked_up: Vec<String>,
    track_all: bool,
    escape: char,
    env: &'a BTreeMap<String, String>,
}

impl<'a> Expander<'a> {
    fn new(word: &str, escape: char, env: &'a BTreeMap<String, String>, track_all: bool) -> Self {
        Expander {
            chars: word.chars().collect(),
            pos: 0,
            looked_up: Vec::new(),
            track_all,
            escape,
            env,
        }
    }

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
            self.looked_up.push(name.to_string());
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
