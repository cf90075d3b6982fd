//! One directory the build session serves ("context" or "dockerfile"): the entries fsutil's
//! sender would walk, as STAT packets in its order, and which of them carry bytes.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bollard::fsutil::types::Stat;
use lifeos_cache::FileMeta;

use super::super::context::ctx_rel;

/// One STAT packet, and for a regular file (not a hard link) where its bytes are.
pub struct Entry {
    pub stat: Stat,
    pub file: Option<PathBuf>,
}

pub struct Source {
    entries: Vec<Entry>,
}

impl Source {
    /// The context lifeos keyed: its `files` (root-relative, as the key hashed them) and
    /// `dirs`, the directories Docker's walk sends (root-relative). Owners are root, as the
    /// Docker CLI sends them. None when a name is not UTF-8: the protocol's paths are strings.
    pub fn context(
        root: &Path,
        ctx: &str,
        files: &[FileMeta],
        dirs: &[String],
    ) -> io::Result<Option<Source>> {
        if files.iter().any(|f| f.rel.contains('\0')) || dirs.iter().any(|d| d.contains('\0')) {
            return Ok(None);
        }
        // Every directory on the way to a file is sent before it (the receiver checks).
        let mut all_dirs: BTreeSet<String> = BTreeSet::new();
        let rels = files
            .iter()
            .map(|f| ctx_rel(ctx, &f.rel))
            .chain(dirs.iter().map(|d| ctx_rel(ctx, d)));
        for rel in rels {
            for (i, _) in rel.match_indices('/') {
                all_dirs.insert(rel[..i].to_string());
            }
        }
        all_dirs.extend(dirs.iter().map(|d| ctx_rel(ctx, d).to_string()));
        all_dirs.remove("");
        let base = root.join(ctx);
        let mut entries = Vec::with_capacity(files.len() + all_dirs.len());
        for d in all_dirs {
            let m = match fs::symlink_metadata(base.join(&d)) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            entries.push(Entry {
                stat: Stat {
                    path: d,
                    mode: go_mode(m.mode()),
                    mod_time: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    ..Default::default()
                },
                file: None,
            });
        }
        // fsutil sends the second path of an inode as a hard link to the first (walk order).
        let mut files: Vec<&FileMeta> = files.iter().collect();
        files.sort_by(|a, b| compare_path(ctx_rel(ctx, &a.rel), ctx_rel(ctx, &b.rel)));
        let mut first_of_inode: HashMap<u64, String> = HashMap::new();
        for f in files {
            let rel = ctx_rel(ctx, &f.rel).to_string();
            let abs = f.path_in(root);
            let mut stat = Stat {
                path: rel.clone(),
                mode: go_mode(f.mode),
                size: f.size as i64,
                mod_time: f.mtime_ns,
                ..Default::default()
            };
            let mut file = None;
            if f.symlink {
                stat.linkname = fs::read_link(&abs)?.to_string_lossy().into_owned();
            } else if f.ino != 0 && first_of_inode.contains_key(&f.ino) {
                stat.linkname = first_of_inode[&f.ino].clone();
                stat.size = 0;
            } else {
                if f.ino != 0 {
                    first_of_inode.insert(f.ino, rel);
                }
                file = Some(abs);
            }
            entries.push(Entry { stat, file });
        }
        entries.sort_by(|a, b| compare_path(&a.stat.path, &b.stat.path));
        Ok(Some(Source { entries }))
    }

    /// A directory holding only the file at `abs`, sent as `name` (the Dockerfile).
    pub fn file(abs: &Path, name: &str) -> io::Result<Source> {
        let m = fs::metadata(abs)?;
        Ok(Source {
            entries: vec![Entry {
                stat: Stat {
                    path: name.to_string(),
                    mode: go_mode(m.mode()),
                    uid: m.uid(),
                    gid: m.gid(),
                    size: m.len() as i64,
                    mod_time: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    ..Default::default()
                },
                file: Some(abs.to_path_buf()),
            }],
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries a request asks for: fsutil's `IncludePatterns` and `FollowPaths` (symlinks
    /// on the way resolved). The request's exclude patterns are not applied: the list already
    /// is the context after `.dockerignore`, the rules the Docker CLI sends in their place.
    pub fn select(&self, includes: &[String], follow: &[String]) -> Vec<&Entry> {
        let mut patterns: Vec<String> = includes.iter().map(|p| clean(p)).collect();
        let mut resolved = BTreeSet::new();
        for p in follow {
            self.follow(&clean(p), &mut resolved, 0);
        }
        if resolved.contains(".") {
            patterns.clear();
            resolved.clear();
        }
        patterns.extend(resolved);
        patterns.retain(|p| p != ".");
        if patterns.is_empty() {
            return self.entries.iter().collect();
        }
        let mut out = Vec::new();
        let mut included_dir: Option<&str> = None;
        let mut skipped_dir: Option<&str> = None;
        for e in &self.entries {
            let path = e.stat.path.as_str();
            let dir = is_dir(e.stat.mode);
            if skipped_dir.is_some_and(|d| is_under(path, d)) {
                continue;
            }
            if !included_dir.is_some_and(|d| is_under(path, d)) {
                let mut matched = false;
                let mut partial = true;
                for p in &patterns {
                    let (m, part) = match_prefix(p, path);
                    if m {
                        matched = true;
                        if !part {
                            partial = false;
                            break;
                        }
                    }
                }
                if !matched {
                    if dir {
                        skipped_dir = Some(path);
                    }
                    continue;
                }
                if !partial && dir {
                    included_dir = Some(path);
                }
            }
            out.push(e);
        }
        out
    }

    /// fsutil's `FollowLinks`: `p` itself, and for each symlink on its way, the link and
    /// where it points (inside the directory).
    fn follow(&self, p: &str, resolved: &mut BTreeSet<String>, depth: usize) {
        if depth > 40 {
            return;
        }
        let parts: Vec<&str> = p.split('/').collect();
        for i in 0..parts.len() {
            let current = parts[..=i].join("/");
            let rest = parts[i + 1..].join("/");
            let link = self
                .entries
                .binary_search_by(|e| compare_path(&e.stat.path, &current))
                .ok()
                .map(|j| &self.entries[j].stat)
                .filter(|s| s.mode & MODE_SYMLINK != 0);
            if let Some(s) = link {
                if !resolved.insert(current.clone()) {
                    return;
                }
                let parent = Path::new(&current).parent().unwrap_or(Path::new(""));
                let target = if s.linkname.starts_with('/') {
                    s.linkname.clone()
                } else {
                    parent.join(&s.linkname).to_string_lossy().into_owned()
                };
                let next = if rest.is_empty() {
                    target
                } else {
                    format!("{target}/{rest}")
                };
                self.follow(&clean(&next), resolved, depth + 1);
                return;
            }
            if rest.is_empty() {
                resolved.insert(current);
            }
        }
    }
}

const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;

fn is_dir(go_mode: u32) -> bool {
    go_mode & MODE_DIR != 0
}

fn is_under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// A unix `st_mode` as Go's `os.FileMode`, which is what fsutil's STAT carries.
pub fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    if st_mode & 0o4000 != 0 {
        m |= 1 << 23; // ModeSetuid
    }
    if st_mode & 0o2000 != 0 {
        m |= 1 << 22; // ModeSetgid
    }
    if st_mode & 0o1000 != 0 {
        m |= 1 << 20; // ModeSticky
    }
    m | match st_mode & 0o170000 {
        0o040000 => MODE_DIR,
        0o120000 => MODE_SYMLINK,
        0o010000 => 1 << 25,               // ModeNamedPipe
        0o140000 => 1 << 24,               // ModeSocket
        0o060000 => 1 << 26,               // ModeDevice
        0o020000 => (1 << 26) | (1 << 21), // ModeDevice | ModeCharDevice
        _ => 0,
    }
}

/// fsutil's `ComparePath`: byte order, except that '/' sorts before every other byte (a
/// directory's entries follow it directly, as a walk visits them).
pub fn compare_path(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |c: u8| if c == b'/' { 0u16 } else { c as u16 + 1 };
    a.bytes().map(key).cmp(b.bytes().map(key))
}

/// Go's `filepath.Clean` for relative '/'-separated paths ("" and "/" become ".").
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// fsutil's `matchPrefix`: does `pattern` match `name`, or (partial) a directory on its way?
fn match_prefix(pattern: &str, name: &str) -> (bool, bool) {
    let depth = name.matches('/').count();
    let mut pattern = pattern;
    let mut partial = false;
    if pattern.matches('/').count() > depth {
        let cut = pattern
            .match_indices('/')
            .nth(depth)
            .map_or(pattern.len(), |(i, _)| i);
        pattern = &pattern[..cut];
        partial = true;
    }
    (glob(pattern.as_bytes(), name.as_bytes()), partial)
}

/// Go's `filepath.Match` on '/'-separated paths: `*` and `?` stop at '/', `[...]` classes
/// (`^` negates, ranges), `\` escapes. A malformed pattern matches nothing.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => {
            let rest = &p[1..];
            (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| glob(rest, &s[i..]))
        }
        Some(b'?') => !s.is_empty() && s[0] != b'/' && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some((&c, s_rest)) = s.split_first() else {
                return false;
            };
            let mut i = 1;
            let negate = p.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            let mut first = true;
            loop {
                match p.get(i) {
                    None => return false,
                    Some(b']') if !first => break,
                    _ => {}
                }
                first = false;
                let (lo, next) = class_char(p, i);
                let Some(lo) = lo else { return false };
                let (hi, next) = if p.get(next) == Some(&b'-') && p.get(next + 1) != Some(&b']') {
                    let (hi, n) = class_char(p, next + 1);
                    let Some(hi) = hi else { return false };
                    (hi, n)
                } else {
                    (lo, next)
                };
                if lo <= c && c <= hi {
                    hit = true;
                }
                i = next;
            }
            hit != negate && c != b'/' && glob(&p[i + 1..], s_rest)
        }
        Some(b'\\') => match p.get(1) {
            Some(&e) => s.first() == Some(&e) && glob(&p[2..], &s[1..]),
            None => false,
        },
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

fn class_char(p: &[u8], i: usize) -> (Option<u8>, usize) {
    match p.get(i) {
        Some(b'\\') => (p.get(i + 1).copied(), i + 2),
        Some(&c) => (Some(c), i + 1),
        None => (None, i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(paths: &[(&str, u32)]) -> Source {
        let mut entries: Vec<Entry> = paths
            .iter()
            .map(|(p, m)| Entry {
                stat: Stat {
                    path: p.to_string(),
                    mode: *m,
                    ..Default::default()
                },
                file: None,
            })
            .collect();
        entries.sort_by(|a, b| compare_path(&a.stat.path, &b.stat.path));
        Source { entries }
    }

    fn names(v: Vec<&Entry>) -> Vec<&str> {
        v.iter().map(|e| e.stat.path.as_str()).collect()
    }

    #[test]
    fn walk_order_puts_a_directorys_entries_right_after_it() {
        let mut v = vec!["a-b", "a/c", "a", "a.txt", "b", "a/c/d"];
        v.sort_by(|a, b| compare_path(a, b));
        assert_eq!(v, ["a", "a/c", "a/c/d", "a-b", "a.txt", "b"]);
    }

    #[test]
    fn go_file_modes() {
        assert_eq!(go_mode(0o100644), 0o644);
        assert_eq!(go_mode(0o040755), MODE_DIR | 0o755);
        assert_eq!(go_mode(0o120777), MODE_SYMLINK | 0o777);
        assert_eq!(go_mode(0o104755), (1 << 23) | 0o755);
    }

    #[test]
    fn include_and_follow_paths_select_like_fsutil() {
        let d = MODE_DIR | 0o755;
        let s = src(&[
            ("Dockerfile", 0o644),
            (".dockerignore", 0o644),
            ("app", d),
            ("app/a.txt", 0o644),
            ("app/sub", d),
            ("app/sub/b.txt", 0o644),
            ("link", MODE_SYMLINK | 0o777),
            ("other", d),
            ("other/x", 0o644),
        ]);
        let mut s = s;
        s.entries
            .iter_mut()
            .find(|e| e.stat.path == "link")
            .unwrap()
            .stat
            .linkname = "other/x".into();
        assert_eq!(
            names(s.select(&[], &[".dockerignore".into()])),
            [".dockerignore"]
        );
        assert_eq!(
            names(s.select(&[], &["app".into()])),
            ["app", "app/a.txt", "app/sub", "app/sub/b.txt"]
        );
        assert_eq!(
            names(s.select(&["app/*.txt".into()], &[])),
            ["app", "app/a.txt"]
        );
        assert_eq!(
            names(s.select(&[], &["link".into()])),
            ["link", "other", "other/x"]
        );
        assert_eq!(s.select(&[], &[".".into()]).len(), 9);
        assert_eq!(s.select(&[], &[]).len(), 9);
        assert_eq!(
            names(s.select(&[], &["missing".into()])),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn glob_is_go_filepath_match() {
        assert!(glob(b"*.go", b"a.go") && !glob(b"*.go", b"d/a.go"));
        assert!(glob(b"a?c", b"abc") && !glob(b"a?c", b"a/c"));
        assert!(glob(b"[a-c]x", b"bx") && !glob(b"[^a-c]x", b"bx"));
        assert!(glob(b"\\*", b"*") && !glob(b"\\*", b"a"));
        assert!(!glob(b"[a", b"a"));
    }
}
