//! The checks Docker's Dockerfile frontend makes on each instruction before anything runs
//! (BuildKit's `instructions/parse.go`): argument counts, flags, JSON forms. A Dockerfile that
//! Docker rejects is rejected by lifeos's plan too, with the line, before any task runs.

/// Flags each instruction takes, in any Docker version lifeos supports (20.10 knows fewer:
/// a flag that some Docker knows is left for the engine to judge).
fn known_flags(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "from" => &["platform"],
        "copy" => &["from", "chown", "chmod", "link", "parents", "exclude"],
        "add" => &[
            "chown",
            "chmod",
            "link",
            "checksum",
            "keep-git-dir",
            "exclude",
            "unpack",
        ],
        "run" => &["mount", "network", "security", "device"],
        "healthcheck" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

/// Instructions whose flags Docker never parses (anything goes).
fn flags_unchecked(keyword: &str, args: &str) -> bool {
    match keyword {
        "arg" | "stopsignal" | "onbuild" => true,
        "healthcheck" => args
            .split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("none")),
        _ => false,
    }
}

/// Check one instruction's flags and arguments. `flags` are the `--name[=value]` words before
/// the arguments, `args` the rest of the line, `words` its whitespace-separated words.
pub(super) fn check(
    keyword: &str,
    flags: &[String],
    args: &str,
    json: Option<&[String]>,
) -> Result<(), String> {
    let upper = keyword.to_ascii_uppercase();
    if !flags_unchecked(keyword, args) {
        let known = known_flags(keyword);
        let mut seen = Vec::new();
        for flag in flags {
            let body = flag.strip_prefix("--").unwrap_or(flag);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            if !known.contains(&name) {
                return Err(format!("Unknown flag: {name}"));
            }
            // `--link`, `--parents`, `--keep-git-dir` and `--unpack` are booleans.
            let boolean = matches!(name, "link" | "parents" | "keep-git-dir" | "unpack");
            if value.is_none() && !boolean {
                return Err(format!("Missing a value on flag: {flag}"));
            }
            if seen.contains(&name) && name != "mount" && name != "exclude" && name != "device" {
                return Err(format!("Duplicate flag specified: {name}"));
            }
            seen.push(name);
        }
    }
    let words: Vec<&str> = args.split_whitespace().collect();
    let none = words.is_empty() && json.is_none_or(|j| j.is_empty());
    match keyword {
        "maintainer" | "workdir" | "user" | "stopsignal" if args.trim().is_empty() => {
            Err(format!("{upper} requires exactly one argument"))
        }
        "env" | "label" => check_name_values(&upper, args),
        "healthcheck" | "expose" | "volume" | "shell" if none => {
            Err(format!("{upper} requires at least one argument"))
        }
        "volume" if json.is_some_and(|j| j.iter().any(|v| v.trim().is_empty())) => {
            Err("VOLUME specified can not be an empty string".into())
        }
        "shell" if json.is_none() => {
            Err(format!("{upper} requires the arguments to be in JSON form"))
        }
        "healthcheck" => {
            let kind = words.first().map(|w| w.to_ascii_uppercase());
            match kind.as_deref() {
                Some("NONE") if words.len() > 1 => {
                    Err("HEALTHCHECK NONE takes no arguments".into())
                }
                Some("NONE") | Some("CMD") => Ok(()),
                Some(other) => Err(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)")),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// ENV and LABEL: `name=value ...`, or the old `name value` form, which BuildKit splits on
/// blanks whatever the quotes.
fn check_name_values(upper: &str, args: &str) -> Result<(), String> {
    let args = args.trim();
    if args.is_empty() {
        return Err(format!("{upper} requires at least one argument"));
    }
    let first = args.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        if args.split_whitespace().nth(1).is_none() {
            return Err(format!("{upper} must have two arguments"));
        }
        return Ok(());
    }
    if first.starts_with('=') {
        return Err(format!("{upper} names can not be blank"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn flags_and_arguments_like_docker() {
        let c = |k: &str, f: &[&str], a: &str| {
            let flags: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            check(k, &flags, a, None)
        };
        assert_eq!(
            c("copy", &["--user=me"], "a b").unwrap_err(),
            "Unknown flag: user"
        );
        assert_eq!(
            c("maintainer", &["--boo"], "x").unwrap_err(),
            "Unknown flag: boo"
        );
        assert!(c("copy", &["--from=x", "--chown=1", "--link"], "a b").is_ok());
        assert_eq!(
            c("copy", &["--from"], "a b").unwrap_err(),
            "Missing a value on flag: --from"
        );
        for k in ["maintainer", "workdir", "user", "stopsignal"] {
            assert!(
                c(k, &[], "").unwrap_err().contains("exactly one argument"),
                "{k}"
            );
        }
        for k in ["env", "label", "healthcheck", "expose", "volume"] {
            assert!(
                c(k, &[], " ")
                    .unwrap_err()
                    .contains("at least one argument"),
                "{k}"
            );
        }
        assert_eq!(
            c("env", &[], "PATH").unwrap_err(),
            "ENV must have two arguments"
        );
        assert!(c("env", &[], "PATH /bin").is_ok());
        assert!(c("env", &[], "A=1 B=2").is_ok());
        // The old form splits on blanks, quotes or not (Docker 20.10 accepts this).
        assert!(c("label", &[], "\"key with blanks\"").is_ok());
        assert!(c("arg", &["--whatever"], "A").is_ok());
        assert!(c("healthcheck", &["--interval=1s"], "CMD true").is_ok());
        assert!(c("healthcheck", &[], "NONE x").is_err());
        assert!(c("shell", &[], "sh -c").is_err());
        assert!(check("volume", &[], "[\"\"]", Some(&["".to_string()])).is_err());
    }
}

#[cfg(test)]
mod table {
    use crate::image::dockerfile::parse;

    #[derive(serde::Deserialize)]
    pub(crate) struct Case {
        pub name: String,
        pub dockerfile: String,
        pub docker_parses: bool,
    }

    #[derive(serde::Deserialize)]
    pub(crate) struct Table {
        pub cases: Vec<Case>,
    }

    /// BuildKit's parser testfiles and the cases: lifeos parses what Docker 20.10
    /// parsed (recorded from the engine; `tests/it/docker_parity.rs` asks it again), and
    /// every rejection names a line.
    #[test]
    fn buildkit_testfiles_decide_like_docker() {
        let table: Table = serde_json::from_str(include_str!(
            "../../../../tests/data/docker/dockerfiles.json"
        ))
        .unwrap();
        assert!(table.cases.len() > 50);
        let mut differ = Vec::new();
        for c in &table.cases {
            let ours = parse(&c.dockerfile);
            if let Err(e) = &ours {
                assert!(e.line >= 1, "{}: {e}", c.name);
            }
            if ours.is_ok() != c.docker_parses {
                differ.push(format!(
                    "{}: docker {} lifeos {:?}",
                    c.name,
                    c.docker_parses,
                    ours.err()
                ));
            }
        }
        assert!(differ.is_empty(), "{}", differ.join("\n"));
    }
}
