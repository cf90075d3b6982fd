//! Which registry a repository lives in, by Docker's rule: the first path component is a
//! registry host when it has a `.` or a `:` or is `localhost`; otherwise it is Docker Hub.

/// The host (with port) that credentials are looked up for and messages name.
pub fn registry_host(repository: &str) -> &str {
    match repository.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Why `repository` cannot be pushed to (a tag or digest in it, upper case, empty parts), or
/// `None` when it is a valid repository name.
pub fn invalid_repository(repository: &str) -> Option<String> {
    if repository.is_empty() {
        return Some("the repository is empty".into());
    }
    let host = registry_host(repository);
    let path = if host == "docker.io" && !repository.starts_with("docker.io/") {
        repository
    } else {
        let rest = &repository[host.len()..];
        rest.strip_prefix('/').unwrap_or(rest)
    };
    if path.contains('@') {
        return Some("a repository has no digest: put tags in `tags`".into());
    }
    for part in path.split('/') {
        if part.is_empty() {
            return Some(format!("`{repository}` has an empty path component"));
        }
        if part.contains(':') {
            return Some(format!(
                "`{repository}` has a tag in it: write the repository alone and the tags in `tags`"
            ));
        }
        let ok = part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !ok {
            return Some(format!(
                "`{part}` in `{repository}`: repository names use lower-case letters, digits, `.`, `_` and `-`"
            ));
        }
    }
    None
}

/// Why `tag` is not a valid Docker tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`), or `None`.
pub fn invalid_tag(tag: &str) -> Option<String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && tag.len() <= 128 {
        None
    } else {
        Some(format!(
            "`{tag}` is not a valid tag: up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_follow_dockers_rule() {
        assert_eq!(registry_host("127.0.0.1:5000/lifeos/api"), "127.0.0.1:5000");
        assert_eq!(registry_host("gcr.io/proj/api"), "gcr.io");
        assert_eq!(registry_host("localhost/api"), "localhost");
        assert_eq!(registry_host("library/busybox"), "docker.io");
        assert_eq!(registry_host("busybox"), "docker.io");
    }

    #[test]
    fn bad_names_are_explained() {
        assert!(invalid_repository("127.0.0.1:5000/lifeos/api").is_none());
        assert!(invalid_repository("gcr.io/p/api:latest")
            .unwrap()
            .contains("tag in it"));
        assert!(invalid_repository("gcr.io/p/API").is_some());
        assert!(invalid_repository("gcr.io//api").is_some());
        assert!(invalid_tag("key-0123abcd").is_none());
        assert!(invalid_tag("v1.2_3").is_none());
        assert!(invalid_tag("-x").is_some());
        assert!(invalid_tag("a/b").is_some());
        assert!(invalid_tag("").is_some());
    }
}
