//! The one tokenizer: BuildKit splits a logical line into words in three places (builder flags,
//! `ARG`/`ENV` words, heredoc detection), each with its own quoting rules. They are one state
//! machine here, told apart by [`Rules`]. JSON-form arrays go to serde_json.

/// How a line is split into words.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    pub escape: char,
    /// Keep quotes and escape characters in the words (BuildKit's parseWords), or drop them.
    pub keep_quoting: bool,
    /// The escape character also works inside single quotes (extractBuilderFlags).
    pub escape_in_single_quotes: bool,
    /// `<<` swallows the blanks after it (`<<  EOF` is the word `<<EOF`).
    pub heredoc_ops: bool,
}

/// One word of a line: its text after the quoting rules, and where it was in the line.
#[derive(Debug)]
pub(super) struct Word {
    pub text: String,
    /// Byte offsets of the word's first character and one past its last.
    pub start: usize,
    pub end: usize,
    /// It had quotes: an empty text is still a word (`""`).
    pub quoted: bool,
}

impl Word {
    /// Not a word at all: nothing but a dropped trailing escape.
    fn is_blank(&self) -> bool {
        self.text.is_empty() && !self.quoted
    }
}

/// The words of `line`, lazily: blanks outside quotes separate them. An unterminated quote
/// runs to the end of the line; a trailing escape character is dropped.
pub(super) fn words(line: &str, rules: Rules) -> impl Iterator<Item = Word> + '_ {
    let mut chars = line.char_indices().peekable();
    std::iter::from_fn(move || {
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let &(start, _) = chars.peek()?;
        let (mut text, mut end, mut quoted) = (String::new(), start, false);
        let mut quote: Option<char> = None;
        while let Some(&(_, c)) = chars.peek() {
            if quote.is_none() && c.is_whitespace() {
                break;
            }
            chars.next();
            match quote {
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    quoted = true;
                    if rules.keep_quoting {
                        text.push(c);
                    }
                }
                Some(q) if c == q => {
                    quote = None;
                    if rules.keep_quoting {
                        text.push(c);
                    }
                }
                Some('\'') if c == rules.escape && !rules.escape_in_single_quotes => text.push(c),
                _ if c == rules.escape => {
                    if let Some((_, n)) = chars.next() {
                        if rules.keep_quoting {
                            text.push(c);
                        }
                        text.push(n);
                    }
                }
                None if rules.heredoc_ops
                    && c == '<'
                    && chars.next_if(|&(_, n)| n == '<').is_some() =>
                {
                    text.push_str("<<");
                    while chars.next_if(|&(_, n)| n.is_whitespace()).is_some() {}
                }
                _ => text.push(c),
            }
            end = chars.peek().map_or(line.len(), |&(next, _)| next);
        }
        Some(Word {
            text,
            start,
            end,
            quoted,
        })
    })
}

/// BuildKit's extractBuilderFlags: leading `--flag[=value]` words (quotes and `\` processed),
/// up to the first other word or a lone `--`. Returns the rest of the line and the flags.
pub(super) fn extract_builder_flags(line: &str) -> (&str, Vec<String>) {
    let rules = Rules {
        escape: '\\',
        keep_quoting: false,
        escape_in_single_quotes: true,
        heredoc_ops: false,
    };
    let mut flags = Vec::new();
    for word in words(line, rules) {
        if !line[word.start..].starts_with("--") {
            return (&line[word.start..], flags);
        }
        if word.text == "--" {
            return (&line[word.end..], flags);
        }
        flags.push(word.text);
    }
    ("", flags)
}

/// BuildKit's parseWords (ARG, ENV, LABEL): whitespace-separated words, quotes and escapes
/// kept as written.
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let rules = Rules {
        escape,
        keep_quoting: true,
        escape_in_single_quotes: false,
        heredoc_ops: false,
    };
    words(rest, rules)
        .filter(|w| !w.is_blank())
        .map(|w| w.text)
        .collect()
}

/// Shell words as BuildKit's lexer splits them for heredoc detection: `<<` swallows the blanks
/// after it, `$` is never expanded. `raw` keeps quotes and escapes in the words.
pub(super) fn shell_words(s: &str, escape: char, raw: bool) -> Vec<String> {
    let rules = Rules {
        escape,
        keep_quoting: raw,
        escape_in_single_quotes: false,
        heredoc_ops: true,
    };
    words(s, rules)
        .filter(|w| !w.is_blank())
        .map(|w| w.text)
        .collect()
}

/// A JSON array of strings (exec form); None when `args` is not one. Like Go's json.Decoder,
/// anything after the closing `]` is ignored.
pub(super) fn json_string_array(args: &str) -> Option<Vec<String>> {
    let args = args.trim_start();
    if !args.starts_with('[') {
        return None;
    }
    serde_json::Deserializer::from_str(args)
        .into_iter::<Vec<String>>()
        .next()?
        .ok()
}

pub(super) struct Heredoc {
    pub name: String,
    /// `<<-`: leading tabs are stripped, terminator included.
    pub chomp: bool,
}

/// `^(\d*)<<(-?)([^<]*)$` on one shell word; the name has its quotes removed.
pub(super) fn heredoc(word: &str) -> Option<Heredoc> {
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
pub(super) fn is_token_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// The instruction keyword and the rest of the line.
pub(super) fn split_command(line: &str) -> (&str, &str) {
    let line = line.trim();
    match line.find(is_token_space) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_token_space)),
        None => (line, ""),
    }
}

pub(super) fn split_whitespace(args: &str) -> Vec<&str> {
    args.split(is_token_space)
        .filter(|w| !w.is_empty())
        .collect()
}
