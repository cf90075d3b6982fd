//! One logical line into one instruction: the keyword, its flags, its arguments, with
//! Docker's checks (`checks`) applied first.

use std::collections::BTreeMap;

use super::ast::{ArgDecl, CopyInstr, Instr, MountInstr, ParseError};
use super::expand::expand_word;
use super::lexer::{
    extract_builder_flags, heredoc, json_string_array, parse_words, split_command, split_whitespace,
};

pub(super) fn parse_instruction(
    line: &str,
    line_no: usize,
    escape: char,
) -> Result<Instr, ParseError> {
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
        super::checks::check(&keyword, &flags, args, json.as_deref()).map_err(err)?;
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
            let reshapes = ["parents", "exclude"].iter().any(|f| {
                flags
                    .iter()
                    .any(|g| g == &format!("--{f}") || g.starts_with(&format!("--{f}=")))
            });
            Instr::Copy(CopyInstr {
                line: line_no,
                add: keyword == "add",
                from,
                sources,
                dest: words[words.len() - 1].clone(),
                json,
                reshapes,
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
        | "stopsignal" | "user" | "volume" => Instr::Other,
        "workdir" => Instr::Workdir(args.to_string()),
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
pub(super) fn csv_fields(s: &str) -> Vec<String> {
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
