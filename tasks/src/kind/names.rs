//! Names that Docker sees: the project name (a prefix of container, network and volume
//! names) and image references (Docker's reference grammar, distribution/reference).

/// Docker's longest repository name.
const MAX_REPO: usize = 255;
pub const MAX_PROJECT: usize = 63;

/// Why `name` cannot be a project name (Docker's rule for container, network and volume
/// names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`), or `None` when it can.
pub fn project_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Some("the project name is empty".into()),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Some("must start with a letter or digit".into())
        }
        _ => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c))) {
        return Some(format!(
            "`{}` is not allowed: use letters, digits, `_`, `.` and `-`",
            c.escape_default()
        ));
    }
    (name.len() > MAX_PROJECT)
        .then(|| format!("{} characters; at most {MAX_PROJECT}", name.chars().count()))
}

/// A project name made from a directory name: what Docker does not accept becomes `-`.
pub fn project_from_dir(dir: &str) -> String {
    let mapped: String = dir
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let name: String = trimmed.chars().take(MAX_PROJECT).collect();
    if name.is_empty() {
        "lifeos".into()
    } else {
        name
    }
}

/// Why `r` is not an image reference (`[host[:port]/]path[:tag][@digest]`), or `None`.
/// `digest`: whether `@sha256:...` may follow (a tag to apply cannot have one).
pub fn reference_problem(r: &str, digest: bool) -> Option<String> {
    if r.is_empty() {
        return Some("the image reference is empty".into());
    }
    let (name_tag, dig) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = dig {
        if !digest {
            return Some("a tag to apply cannot carry a digest (`@...`)".into());
        }
        if let Some(p) = digest_problem(d) {
            return Some(p);
        }
    }
    // A tag follows the last `:` unless a `/` comes after it (`host:5000/x` has none).
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    if let Some(t) = tag {
        if !valid_tag(t) {
            return Some(format!(
                "invalid tag `{t}`: letters, digits, `_`, `.` and `-`, not starting with `.` or `-`, at most 128"
            ));
        }
    }
    if name.len() > MAX_REPO {
        return Some(format!("the repository name is longer than {MAX_REPO}"));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry when it looks like a host: it has a `.` or `:`, is
    // `localhost`, or has capitals (no repository path may).
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains(['.', ':'])
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase())
        {
            if let Some(p) = host_problem(first) {
                return Some(p);
            }
            parts.remove(0);
        }
    }
    for p in parts {
        if !valid_path_component(p) {
            return Some(if p.chars().any(|c| c.is_ascii_uppercase()) {
                format!("`{p}`: repository names must be lowercase")
            } else {
                format!(
                    "`{p}` is not a repository name: lowercase letters and digits, separated by `.`, `_`, `__` or `-`"
                )
            });
        }
    }
    None
}

fn valid_tag(t: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut c = t.chars();
    matches!(c.next(), Some(f) if word(f))
        && t.len() <= 128
        && c.all(|x| word(x) || x == '.' || x == '-')
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let s = &p[sep..i];
        if !(s == "." || s == "_" || s == "__" || s.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
}

/// `host[:port]`: dot-separated labels of letters, digits and inner `-`, or `[IPv6]`.
fn host_problem(h: &str) -> Option<String> {
    let bad = || Some(format!("`{h}` is not a registry host[:port]"));
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((ip6, after)) = rest.split_once(']') else {
            return bad();
        };
        if ip6.parse::<std::net::Ipv6Addr>().is_err() {
            return bad();
        }
        match after {
            "" => return None,
            a => ("", a.strip_prefix(':').or(Some("x"))),
        }
    } else {
        match h.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (h, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return bad();
        }
    }
    if h.starts_with('[') {
        return None;
    }
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.split('.').all(label) {
        None
    } else {
        bad()
    }
}

/// `algorithm:hex`, e.g. `sha256:` and 64 hex digits.
fn digest_problem(d: &str) -> Option<String> {
    let bad = || {
        Some(format!(
            "`@{d}` is not a digest such as @sha256:<64 hex digits>"
        ))
    };
    let Some((alg, hex)) = d.split_once(':') else {
        return bad();
    };
    let comp = |c: &str| {
        let mut ch = c.chars();
        matches!(ch.next(), Some(f) if f.is_ascii_alphabetic())
            && ch.all(|x| x.is_ascii_alphanumeric())
    };
    if !alg.split(['+', '.', '-', '_']).all(comp)
        || hex.len() < 32
        || !hex.bytes().all(|c| c.is_ascii_hexdigit())
    {
        return bad();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_references() {
        let sha = format!("sha256:{}", "a".repeat(64));
        for ok in [
            "postgres",
            "postgres:15-alpine",
            "library/postgres:15",
            "docker.io/library/postgres:15",
            "localhost:5000/team/app:v1.2_3",
            "localhost/app",
            "registry.example.com/a__b/c-d.e:TAG",
            "Registry.Example.COM/app",
            "[::1]:5000/app:x",
            "lifeos-web:dev",
            &format!("busybox@{sha}"),
            &format!("busybox:1@{sha}"),
        ] {
            assert_eq!(reference_problem(ok, true), None, "{ok}");
        }
        let long = format!("a:{}", "t".repeat(129));
        for bad in [
            "",
            "UPPER:Case",
            "a:b:c:d",
            "a/B",
            "-a",
            "a..b",
            "a/",
            "/a",
            "a:",
            "a:.x",
            long.as_str(),
            "a@sha256:xyz",
            "host:port/a",
            "a b",
        ] {
            assert!(reference_problem(bad, true).is_some(), "{bad}");
        }
        assert!(reference_problem(&format!("busybox@{sha}"), false).is_some());
    }

    #[test]
    fn project_names() {
        for ok in ["lifeos", "Life.OS_2-x", "a"] {
            assert_eq!(project_problem(ok), None, "{ok}");
        }
        let long = "a".repeat(10_000);
        for bad in ["", "a/b", "..", ".hidden", "-x", "a b", long.as_str()] {
            assert!(project_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(project_from_dir("my project (copy)"), "my-project--copy-");
        assert_eq!(project_from_dir("..."), "lifeos");
        assert_eq!(project_problem(&project_from_dir(&"é".repeat(100))), None);
    }
}
