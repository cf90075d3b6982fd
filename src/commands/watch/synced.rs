//! One service's synced files: what its container holds for each synced host path (the
//! image's version until lifeos copies another), and the batch that brings it to the host's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use lifeos_cache::Snapshot;
use lifeos_tasks::container::copier::Copier;
use lifeos_tasks::container::sync::{self, Changes, SyncMatcher, Upsert};
use lifeos_tasks::container::ContainerSpec;

/// Host path → "digest:mode" (or "digest@" for a symlink), as an image's fingerprint has it.
pub type Tree = BTreeMap<String, String>;

pub struct Synced {
    pub task: String,
    pub spec: ContainerSpec,
    /// The image task it runs, if it is one of the graph.
    pub image: Option<String>,
    pub rules: Vec<SyncMatcher>,
    /// The running container, once known.
    pub container: Option<String>,
    pub owner: (u64, u64),
    /// What the container's image holds for the synced paths.
    pub baseline: Tree,
    /// What the container holds now for the synced paths.
    pub known: Tree,
    /// The host's synced files as the last batch left them (None: look at all of them).
    pub host: Option<Tree>,
    /// How batches go into the container (its resident receiver, or archives).
    pub copier: Copier,
}

/// The rules of one batch that copied something, and what it did.
pub struct Applied {
    pub changes: Changes,
    pub paths: Vec<String>,
    pub rules: Vec<usize>,
}

impl Synced {
    /// The synced host paths of an image fingerprint's inputs.
    pub fn baseline_of(&self, inputs: &BTreeMap<String, String>) -> Tree {
        inputs
            .iter()
            .filter(|(p, _)| self.rules.iter().any(|m| m.sub(p).is_some()))
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect()
    }

    /// The host's synced files after a batch of events at `paths` (see [`host_after`]).
    pub fn host_after(
        &mut self,
        snap: &Snapshot,
        root: &Path,
        paths: Option<&BTreeSet<String>>,
    ) -> std::io::Result<Tree> {
        host_after(&self.rules, &mut self.host, snap, root, paths)
    }

    /// Synced paths whose content in the container differs from its image's.
    pub fn differs(&self) -> Vec<String> {
        let keys: BTreeSet<&String> = self.known.keys().chain(self.baseline.keys()).collect();
        keys.into_iter()
            .filter(|k| self.known.get(*k) != self.baseline.get(*k))
            .cloned()
            .collect()
    }

    fn rule_of(&self, rel: &str) -> Option<(usize, String)> {
        self.rules
            .iter()
            .enumerate()
            .find_map(|(i, m)| m.sub(rel).map(|s| (i, m.target(s))))
    }

    /// What to do to make the container hold `host`: deletions (a directory the host lost
    /// goes whole), new directories, files.
    pub fn plan(&self, root: &Path, host: &Tree) -> Applied {
        let mut changes = Changes::default();
        let mut paths = Vec::new();
        let mut rules = BTreeSet::new();
        // Directories the container has (below each rule's target) as far as lifeos knows.
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        for k in self.known.keys() {
            if let Some((_, target)) = self.rule_of(k) {
                let mut t = target.as_str();
                while let Some((d, _)) = t.rsplit_once('/') {
                    if !dirs.insert(d.to_string()) {
                        break;
                    }
                    t = d;
                }
            }
        }
        let mut deleted_dirs: BTreeSet<String> = BTreeSet::new();
        for k in self.known.keys().filter(|k| !host.contains_key(*k)) {
            let Some((i, target)) = self.rule_of(k) else {
                continue;
            };
            rules.insert(i);
            paths.push(k.clone());
            // The topmost directory below `from` that is gone from the host goes whole.
            let m = &self.rules[i];
            let sub = m.sub(k).unwrap_or_default();
            let mut gone = None;
            let mut acc = String::new();
            for part in sub
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map(|(_, d)| d)
                .unwrap_or(&[])
            {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(part);
                let host_dir = if m.rule.from.is_empty() {
                    acc.clone()
                } else {
                    format!("{}/{acc}", m.rule.from)
                };
                if !lifeos_cache::names::to_path(root, &host_dir).is_dir() {
                    gone = Some(m.target(&acc));
                    break;
                }
            }
            match gone {
                Some(d) => {
                    deleted_dirs.insert(d);
                }
                None => changes.deletes.push(target),
            }
        }
        changes.deletes.retain(|p| {
            !deleted_dirs
                .iter()
                .any(|d| lifeos_cache::names::is_under(p, d))
        });
        changes.deletes.extend(deleted_dirs.iter().cloned());
        let mut new_dirs = BTreeSet::new();
        for (k, v) in host {
            if self.known.get(k) == Some(v) {
                continue;
            }
            let Some((i, target)) = self.rule_of(k) else {
                continue;
            };
            rules.insert(i);
            paths.push(k.clone());
            let to = self.rules[i].rule.to.trim_end_matches('/');
            let mut t = target.as_str();
            while let Some((d, _)) = t.rsplit_once('/') {
                if d.len() <= to.len() {
                    break;
                }
                if dirs.contains(d) && !deleted_dirs.contains(d) {
                    break;
                }
                new_dirs.insert(d.to_string());
                t = d;
            }
            let mode = v
                .rsplit_once(':')
                .and_then(|(_, m)| u32::from_str_radix(m, 8).ok())
                .unwrap_or(0o644);
            changes.files.push(Upsert {
                path: target,
                host: lifeos_cache::names::to_path(root, k),
                mode,
            });
        }
        changes.dirs = new_dirs.into_iter().collect();
        paths.sort();
        paths.dedup();
        Applied {
            changes,
            paths,
            rules: rules.into_iter().collect(),
        }
    }

    /// What the container holds for the synced paths, read back through the archive
    /// endpoint (a rescan trusts nothing it remembers).
    pub async fn read_back(
        &self,
        d: &lifeos_tasks::docker::Client,
        id: &str,
    ) -> Result<Tree, String> {
        let mut out = Tree::new();
        for m in &self.rules {
            let files = sync::read_tree(d, id, &m.rule.to)
                .await
                .map_err(|e| e.to_string())?;
            for (sub, f) in files {
                if m.ignored(&sub) {
                    continue;
                }
                let host = if m.rule.from.is_empty() {
                    sub
                } else {
                    format!("{}/{sub}", m.rule.from)
                };
                let v = if f.symlink {
                    // A link's host digest also covers its target: never equal, so copied.
                    "link@".to_string()
                } else {
                    format!("{}:{:o}", blake3::hash(&f.data).to_hex(), f.mode & 0o777)
                };
                out.insert(host, v);
            }
        }
        Ok(out)
    }
}

/// A host file in the fingerprint's form: "digest:mode", or "digest@" for a symlink.
fn value(f: &lifeos_cache::FileMeta, d: &impl std::fmt::Display) -> String {
    if f.symlink {
        format!("{d}@")
    } else {
        format!("{d}:{:o}", f.mode & 0o777)
    }
}

/// The host's synced files after a batch of events at `paths`, from `cache` (what the last
/// batch left, updated here): only those paths are looked at again (a directory among them
/// walked whole, a path gone takes what was below it along). Without `paths` (a rescan:
/// events may be lost), with no earlier answer, or when an event names a rule's `from` or a
/// directory above it: all of them.
pub fn host_after(
    rules: &[SyncMatcher],
    cache: &mut Option<Tree>,
    snap: &Snapshot,
    root: &Path,
    paths: Option<&BTreeSet<String>>,
) -> std::io::Result<Tree> {
    let above = |p: &str| {
        rules
            .iter()
            .any(|m| lifeos_cache::names::is_at_or_under(&m.rule.from, p))
    };
    let (Some(mut tree), Some(paths)) = (cache.take(), paths) else {
        let t = host_all(rules, snap)?;
        *cache = Some(t.clone());
        return Ok(t);
    };
    if paths.iter().any(|p| above(p)) {
        let t = host_all(rules, snap)?;
        *cache = Some(t.clone());
        return Ok(t);
    }
    let synced = |rel: &str| rules.iter().any(|m| m.sub(rel).is_some());
    let mut files = Vec::new();
    for p in paths {
        if !synced(p) {
            continue;
        }
        // Forget what was there (a file, or all below a directory), then look.
        tree.remove(p);
        let below: Vec<String> = tree
            .range(format!("{p}/")..format!("{p}0"))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            tree.remove(&k);
        }
        match std::fs::symlink_metadata(lifeos_cache::names::to_path(root, p)) {
            Ok(m) if m.is_dir() => {
                files.extend(snap.walk(p)?.iter().filter(|f| synced(&f.rel)).cloned())
            }
            Ok(_) => files.extend(snap.stat(p)?),
            // Gone, or a directory above it became a file: nothing there.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => return Err(e),
        }
    }
    let digests = snap.digests(&files)?;
    for (f, d) in files.into_iter().zip(digests) {
        tree.insert(f.rel.clone(), value(&f, &d));
    }
    *cache = Some(tree.clone());
    Ok(tree)
}

/// Every synced host file, walked.
fn host_all(rules: &[SyncMatcher], snap: &Snapshot) -> std::io::Result<Tree> {
    let mut out = Tree::new();
    for m in rules {
        let files: Vec<_> = snap
            .walk(&m.rule.from)?
            .iter()
            .filter(|f| m.sub(&f.rel).is_some())
            .cloned()
            .collect();
        let digests = snap.digests(&files)?;
        for (f, d) in files.into_iter().zip(digests) {
            out.insert(f.rel.clone(), value(&f, &d));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeos_tasks::container::sync::SyncRule;

    /// Events of a batch applied to the last answer give what a full walk gives: edits, a
    /// new directory, a deleted one, a rename, an ignored file.
    #[test]
    fn a_batch_looks_at_its_paths_and_agrees_with_a_full_walk() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let w = |rel: &str, c: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        w("web/a.html", "a");
        w("web/old/x.html", "x");
        w("web/old/deep/y.html", "y");
        w("web/keep.html", "k");
        w("other/z", "z");
        let rules = vec![SyncRule {
            from: "web".into(),
            to: "/srv/www".into(),
            ignore: vec!["*.swp".into()],
            restart: false,
            run: None,
            owner: None,
        }
        .matcher()];
        let mut cache = None;
        let snap = || Snapshot::open(root, None);
        let first = host_after(&rules, &mut cache, &snap(), root, None).unwrap();
        assert_eq!(first.len(), 4, "{first:?}");

        w("web/a.html", "a2");
        w("web/new/n1.html", "n1");
        w("web/new/sub/n2.html", "n2");
        w("web/.a.html.swp", "swap");
        std::fs::rename(root.join("web/old"), root.join("web/moved")).unwrap();
        w("other/z", "z2");
        let paths: BTreeSet<String> = [
            "web/a.html",
            "web/new",
            "web/.a.html.swp",
            "web/old",
            "web/moved",
            "other/z",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let after = host_after(&rules, &mut cache, &snap(), root, Some(&paths)).unwrap();
        let full = host_all(&rules, &snap()).unwrap();
        assert_eq!(after, full);
        let keys: Vec<&str> = after.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "web/a.html",
                "web/keep.html",
                "web/moved/deep/y.html",
                "web/moved/x.html",
                "web/new/n1.html",
                "web/new/sub/n2.html"
            ]
        );
        assert_ne!(after["web/a.html"], first["web/a.html"]);

        // A file the batch does not name is not looked at (events are what a batch is).
        w("web/keep.html", "k2");
        let none = BTreeSet::new();
        let same = host_after(&rules, &mut cache, &snap(), root, Some(&none)).unwrap();
        assert_eq!(same["web/keep.html"], first["web/keep.html"]);
        // `from` itself named (moved away and back): everything again.
        let from: BTreeSet<String> = ["web".to_string()].into();
        let all = host_after(&rules, &mut cache, &snap(), root, Some(&from)).unwrap();
        assert_ne!(all["web/keep.html"], first["web/keep.html"]);
    }
}
