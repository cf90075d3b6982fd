//! `${git.sha}`, `${git.short_sha}`, `${git.branch}`: read from `.git` without running git
//! (HEAD, loose refs, packed-refs; linked worktrees through `commondir`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GitError {
    #[error("not inside a git repository (no .git in {0} or above)")]
    NoRepository(String),
    #[error("the branch `{0}` has no commit yet")]
    NoCommit(String),
    #[error("cannot read {0}: {1}")]
    Unreadable(String, String),
}

/// The git variables for the repository that holds `dir`: `sha`, `short_sha` and, unless
/// HEAD is detached, `branch`.
pub fn read(dir: &Path) -> Result<BTreeMap<String, String>, GitError> {
    let git_dir = find(dir)?;
    let head = read_text(&git_dir.join("HEAD"))?;
    let head = head.trim();
    let mut vars = BTreeMap::new();
    let sha = match head.strip_prefix("ref:") {
        Some(r) => {
            let r = r.trim();
            if let Some(b) = r.strip_prefix("refs/heads/") {
                vars.insert("branch".to_string(), b.to_string());
            }
            resolve(&git_dir, r)?.ok_or_else(|| {
                GitError::NoCommit(r.trim_start_matches("refs/heads/").to_string())
            })?
        }
        None => head.to_string(),
    };
    if sha.len() < 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GitError::Unreadable(
            git_dir.join("HEAD").display().to_string(),
            format!("`{sha}` is not a commit id"),
        ));
    }
    vars.insert("short_sha".to_string(), sha[..7].to_string());
    vars.insert("sha".to_string(), sha);
    Ok(vars)
}

/// The git directory: `.git` in `dir` or an ancestor, or the one a `.git` file points to.
fn find(dir: &Path) -> Result<PathBuf, GitError> {
    for d in dir.ancestors() {
        let dot = d.join(".git");
        if dot.is_dir() {
            return Ok(dot);
        }
        if dot.is_file() {
            let text = read_text(&dot)?;
            let Some(target) = text.trim().strip_prefix("gitdir:") else {
                return Err(GitError::Unreadable(
                    dot.display().to_string(),
                    "expected `gitdir: PATH`".into(),
                ));
            };
            return Ok(d.join(target.trim()));
        }
    }
    Err(GitError::NoRepository(dir.display().to_string()))
}

/// A ref's commit: loose in the git dir, then in the common dir (worktrees), then packed.
fn resolve(git_dir: &Path, name: &str) -> Result<Option<String>, GitError> {
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(c) => git_dir.join(c.trim()),
        Err(_) => git_dir.to_path_buf(),
    };
    for base in [git_dir, common.as_path()] {
        if let Ok(text) = std::fs::read_to_string(base.join(name)) {
            let t = text.trim();
            // A symbolic ref (rare outside HEAD) points to another ref.
            return match t.strip_prefix("ref:") {
                Some(next) => resolve(git_dir, next.trim()),
                None => Ok(Some(t.to_string())),
            };
        }
    }
    let packed = match std::fs::read_to_string(common.join("packed-refs")) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(GitError::Unreadable(
                common.join("packed-refs").display().to_string(),
                e.to_string(),
            ))
        }
    };
    Ok(packed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
        .filter_map(|l| l.split_once(' '))
        .find(|(_, r)| *r == name)
        .map(|(sha, _)| sha.to_string()))
}

fn read_text(p: &Path) -> Result<String, GitError> {
    std::fs::read_to_string(p)
        .map_err(|e| GitError::Unreadable(p.display().to_string(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn a_branch_a_packed_ref_and_a_detached_head() {
        let t = tempfile::tempdir().unwrap();
        let g = t.path().join(".git");
        fs::create_dir_all(g.join("refs/heads")).unwrap();
        fs::write(g.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        fs::write(g.join("refs/heads/main"), format!("{SHA}\n")).unwrap();
        fs::create_dir_all(t.path().join("sub/dir")).unwrap();
        let v = read(&t.path().join("sub/dir")).unwrap();
        assert_eq!(v["sha"], SHA);
        assert_eq!(v["short_sha"], "0123456");
        assert_eq!(v["branch"], "main");

        fs::remove_file(g.join("refs/heads/main")).unwrap();
        fs::write(g.join("HEAD"), "ref: refs/heads/feature/x\n").unwrap();
        let other = "f".repeat(40);
        fs::write(
            g.join("packed-refs"),
            format!(
                "# pack-refs with: peeled\n{SHA} refs/heads/main\n{other} refs/heads/feature/x\n"
            ),
        )
        .unwrap();
        let v = read(t.path()).unwrap();
        assert_eq!(
            (v["sha"].as_str(), v["branch"].as_str()),
            (other.as_str(), "feature/x")
        );

        fs::write(g.join("HEAD"), format!("{SHA}\n")).unwrap();
        let v = read(t.path()).unwrap();
        assert_eq!(v["sha"], SHA);
        assert!(!v.contains_key("branch"), "a detached HEAD has no branch");
    }

    #[test]
    fn a_linked_worktree_reads_refs_from_the_common_dir() {
        let t = tempfile::tempdir().unwrap();
        let common = t.path().join("repo/.git");
        let wt_git = common.join("worktrees/wt");
        fs::create_dir_all(common.join("refs/heads")).unwrap();
        fs::create_dir_all(&wt_git).unwrap();
        fs::write(common.join("refs/heads/topic"), SHA).unwrap();
        fs::write(wt_git.join("HEAD"), "ref: refs/heads/topic\n").unwrap();
        fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        let wt = t.path().join("wt");
        fs::create_dir_all(&wt).unwrap();
        fs::write(wt.join(".git"), format!("gitdir: {}\n", wt_git.display())).unwrap();
        let v = read(&wt).unwrap();
        assert_eq!((v["sha"].as_str(), v["branch"].as_str()), (SHA, "topic"));
    }

    #[test]
    fn no_repository_and_no_commit_are_errors() {
        let t = tempfile::tempdir().unwrap();
        // A temp dir may itself sit inside a repository: only assert when it does not.
        if find(t.path()).is_err() {
            assert!(matches!(read(t.path()), Err(GitError::NoRepository(_))));
        }
        let g = t.path().join(".git");
        fs::create_dir_all(&g).unwrap();
        fs::write(g.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(read(t.path()), Err(GitError::NoCommit("main".into())));
    }
}
