//! The cache directory (`.lifeos/` by default) and its maintenance commands.
//!
//! lifeos only ever deletes what it made: `clean` and `prune` work in a directory carrying
//! lifeos's `CACHEDIR.TAG` (see [`crate::marker`]), remove only lifeos's own names, and never
//! follow a symlink (a linked shard is removed as a link, its target untouched).

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::blobs::BlobStore;
use crate::marker;
use crate::records::{all_records, RecordStore};
use crate::safe_fs;

/// Temp files younger than this may belong to a live run: `prune` leaves them.
pub const TMP_GRACE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone)]
pub struct CacheDir {
    root: PathBuf,
}

/// Held while the index is merged or the cache is pruned; released on drop.
pub struct CacheLock(fs::File);

impl Drop for CacheLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[derive(Debug, Serialize, PartialEq, Default)]
pub struct CacheStats {
    pub records: usize,
    pub tasks_indexed: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub stat_cache_bytes: u64,
    /// Temp files (a run killed while writing leaves them; `prune` removes old ones).
    pub tmp_files: usize,
    pub tmp_bytes: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct PruneReport {
    pub records_removed: usize,
    pub blobs_removed: usize,
    pub tmp_removed: usize,
    pub bytes_freed: u64,
}

#[derive(Debug, Serialize, PartialEq, Default)]
pub struct CleanReport {
    pub removed: usize,
    /// Entries lifeos did not make, left in place (paths relative to the cache directory).
    pub left: Vec<String>,
}

/// Why a directory is not used as a cache; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{} is a symlink; lifeos does not follow a symlinked cache directory (a cloned repository may ship one): remove it, or point --cache-dir / LIFEOS_CACHE_DIR at the real directory", .0.display())]
    Symlink(PathBuf),
    #[error("{} is not a directory: remove it or choose another --cache-dir / LIFEOS_CACHE_DIR / cache_dir", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is not a lifeos cache (no CACHEDIR.TAG with lifeos's signature) and holds files lifeos did not make ({}); nothing was changed: choose another --cache-dir / LIFEOS_CACHE_DIR / cache_dir, or empty it", .0.display(), .1)]
    Foreign(PathBuf, String),
    #[error("{} is not a lifeos cache (no CACHEDIR.TAG with lifeos's signature); nothing was deleted: check --cache-dir / LIFEOS_CACHE_DIR / cache_dir", .0.display())]
    NotOurs(PathBuf),
    #[error("the cache directory {} is not writable: {}; fix its permissions or the file system, or choose another --cache-dir / LIFEOS_CACHE_DIR", .0.display(), .1)]
    NotWritable(PathBuf, io::Error),
    #[error("cannot create the cache directory {}: {}", .0.display(), .1)]
    Create(PathBuf, io::Error),
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, io::Error),
}

impl CacheError {
    fn io(p: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |e| CacheError::Io(p.to_path_buf(), e)
    }
}

/// What is at the cache path, looked at without following a link there.
enum State {
    Missing,
    Ours,
    /// No tag, but nothing lifeos did not make: a cache of an older lifeos (or empty).
    Adoptable {
        empty: bool,
    },
    Foreign(String),
}

impl CacheDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> BlobStore {
        BlobStore::new(self.root.join("blobs"))
    }

    pub fn records(&self) -> RecordStore {
        RecordStore::open(self.root.clone())
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join(crate::records::INDEX_FILE)
    }

    pub fn stat_cache_path(&self) -> PathBuf {
        self.root.join("stat-cache.bin")
    }

    /// What lifeos last learned about the engine's images (lifeos-tasks `docker/view.rs`).
    pub fn engine_view_path(&self) -> PathBuf {
        self.root.join("engine.json")
    }

    /// What the remote cache did, added up over runs (`lifeos cache stats`).
    pub fn remote_stats_path(&self) -> PathBuf {
        self.root.join("remote-stats.json")
    }

    /// A real directory carrying lifeos's tag: safe to write compiled state into.
    pub fn is_ours(&self) -> bool {
        safe_fs::is_real_dir(&self.root) && marker::has_tag(&self.root)
    }

    /// May lifeos write state here without a run preparing it (the compiled config)? Its own
    /// directory, or an untagged one that holds nothing but lifeos's names. Never a symlink.
    pub fn may_write(&self) -> bool {
        matches!(self.state(), Ok(State::Ours | State::Adoptable { .. }))
    }

    fn state(&self) -> Result<State, CacheError> {
        match fs::symlink_metadata(&self.root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::Missing),
            Err(e) => return Err(CacheError::Io(self.root.clone(), e)),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(CacheError::Symlink(self.root.clone()))
            }
            Ok(m) if !m.is_dir() => return Err(CacheError::NotADirectory(self.root.clone())),
            Ok(_) => {}
        }
        if marker::has_tag(&self.root) {
            return Ok(State::Ours);
        }
        let mut foreign = Vec::new();
        let mut empty = true;
        for e in fs::read_dir(&self.root)
            .map_err(CacheError::io(&self.root))?
            .flatten()
        {
            let name = e.file_name();
            // Lock and temp files are what a concurrent lifeos leaves while it creates the
            // folder, before its tag is written: no evidence either way.
            let bookkeeping = name
                .to_str()
                .is_some_and(|n| marker::LOCK_FILES.contains(&n))
                || marker::is_tmp(&name);
            empty &= bookkeeping;
            if !marker::is_own_top(&name) {
                foreign.push(crate::names::encode(Path::new(&name)));
            }
        }
        // Names alone are weak evidence: `index.json` is a common name, and a run rewrites
        // it. A folder holding one is adopted only when it is an index lifeos wrote.
        if foreign.is_empty() && (empty || self.index_is_lifeos_or_absent()) {
            return Ok(State::Adoptable { empty });
        }
        if foreign.is_empty() {
            foreign.push("an index.json lifeos did not write".into());
        }
        foreign.sort();
        let n = foreign.len();
        let mut shown: Vec<String> = foreign
            .iter()
            .take(3)
            .map(|f| crate::names::display(f).into_owned())
            .collect();
        if n > 3 {
            shown.push(format!("and {} more", n - 3));
        }
        Ok(State::Foreign(shown.join(", ")))
    }

    fn index_is_lifeos_or_absent(&self) -> bool {
        match safe_fs::read(&self.root.join(crate::records::INDEX_FILE)) {
            Ok(bytes) => crate::records::is_lifeos_index(&bytes),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }

    fn create(&self) -> Result<(), CacheError> {
        marker::ensure_root(&self.root).map_err(|e| CacheError::Create(self.root.clone(), e))
    }

    fn adopt(&self) -> Result<(), CacheError> {
        fs::set_permissions(&self.root, fs::Permissions::from_mode(safe_fs::DIR_MODE))
            .and_then(|()| marker::write_tag(&self.root))
            .map_err(|e| CacheError::NotWritable(self.root.clone(), e))
    }

    /// Before a run writes anything: the cache directory exists (created 0700 with its tag),
    /// is lifeos's (an untagged one is adopted only when it holds nothing but lifeos's own
    /// names), is not a symlink, and is writable.
    pub fn prepare(&self) -> Result<(), CacheError> {
        self.claim()?;
        for dir in [
            self.root.clone(),
            self.root.join("ac"),
            self.root.join("blobs"),
        ] {
            if dir != self.root && !safe_fs::is_real_dir(&dir) {
                continue;
            }
            writable(&dir).map_err(|e| CacheError::NotWritable(dir.clone(), e))?;
        }
        Ok(())
    }

    /// The cache directory is lifeos's: created (tagged) if missing, an untagged one adopted
    /// when it holds only lifeos's names; a symlink or a foreign directory is refused.
    fn claim(&self) -> Result<(), CacheError> {
        match self.state()? {
            State::Missing => self.create(),
            State::Ours => Ok(()),
            State::Adoptable { .. } => self.adopt(),
            State::Foreign(names) => Err(CacheError::Foreign(self.root.clone(), names)),
        }
    }

    /// For `clean` and `prune`: false when there is no cache; an untagged directory is refused
    /// unless it holds lifeos's names and nothing else (an older lifeos's cache: adopted).
    fn existing(&self) -> Result<bool, CacheError> {
        match self.state()? {
            State::Missing => Ok(false),
            State::Ours => Ok(true),
            State::Adoptable { empty: false } => self.adopt().map(|()| true),
            State::Adoptable { empty: true } | State::Foreign(_) => {
                Err(CacheError::NotOurs(self.root.clone()))
            }
        }
    }

    /// The cache lock, in a directory that is lifeos's (see [`CacheDir::prepare`]; created
    /// with its tag if there is none). A symlink at the lock's path is removed, never followed.
    pub fn lock(&self) -> io::Result<CacheLock> {
        self.claim().map_err(io::Error::other)?;
        let path = self.root.join("lock");
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&path)?;
        }
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(safe_fs::FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        f.lock()?;
        Ok(CacheLock(f))
    }

    /// The per-cache random key that secrets are hashed with; created on first use, mode 0600.
    /// A symlink at its path is not ours: it is replaced, never read or written through.
    pub fn secret_key(&self) -> io::Result<[u8; 32]> {
        let path = self.root.join("secret.key");
        let read = |p: &Path| -> io::Result<Option<[u8; 32]>> {
            match safe_fs::read(p) {
                Ok(b) if b.len() == 32 => Ok(Some(b.try_into().unwrap())),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                // ELOOP (a link) or not a regular file.
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(None),
                Err(e) => Err(e),
            }
        };
        if let Some(k) = read(&path)? {
            return Ok(k);
        }
        let _guard = self.lock()?;
        if let Some(k) = read(&path)? {
            return Ok(k);
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| io::Error::other(format!("random key: {e}")))?;
        let mut tmp = safe_fs::temp_in(&self.root)?;
        tmp.write_all(&key)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(key)
    }

    /// Counts of what is in the cache. A symlinked cache directory is not looked into.
    pub fn stats(&self) -> CacheStats {
        if !safe_fs::is_real_dir(&self.root) {
            return CacheStats::default();
        }
        let blobs = self.blobs().list().unwrap_or_default();
        let tmps = self.tmp_files();
        CacheStats {
            records: all_records(&self.root).len(),
            tasks_indexed: records_indexed(&self.root),
            blobs: blobs.len(),
            blob_bytes: blobs.iter().map(|b| b.2).sum(),
            stat_cache_bytes: fs::symlink_metadata(self.stat_cache_path())
                .map(|m| m.len())
                .unwrap_or(0),
            tmp_files: tmps.len(),
            tmp_bytes: tmps.iter().map(|t| t.1).sum(),
        }
    }

    /// Temp files (path, size, modified) in the root, `ac/`, `blobs/` and their shards.
    fn tmp_files(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut dirs = vec![self.root.clone()];
        for top in marker::OWN_DIRS {
            let d = self.root.join(top);
            if safe_fs::is_real_dir(&d) {
                dirs.extend(real_subdirs(&d));
                dirs.push(d);
            }
        }
        let mut out = Vec::new();
        for d in dirs {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                if !marker::is_tmp(&e.file_name()) || !e.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                if let Ok(m) = e.metadata() {
                    let at = m.modified().unwrap_or(UNIX_EPOCH);
                    out.push((e.path(), m.len(), at));
                }
            }
        }
        out
    }

    /// Remove records that finished more than `older_than` ago, then every blob no remaining
    /// record refers to, temp files older than [`TMP_GRACE`] and symlinks planted in `ac/`
    /// or `blobs/` (the links, not their targets). Runs under the cache lock.
    pub fn prune(&self, older_than: Duration) -> Result<PruneReport, CacheError> {
        let mut report = PruneReport {
            records_removed: 0,
            blobs_removed: 0,
            tmp_removed: 0,
            bytes_freed: 0,
        };
        if !self.existing()? {
            return Ok(report);
        }
        let root = &self.root;
        let _guard = self.lock().map_err(CacheError::io(root))?;
        for top in marker::OWN_DIRS {
            remove_links(&root.join(top)).map_err(CacheError::io(root))?;
        }
        let now = SystemTime::now();
        let cutoff = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .saturating_sub(older_than.as_secs());
        let mut keep = HashSet::new();
        for (path, rec) in all_records(root) {
            match rec {
                Some(r) if r.finished_at >= cutoff => {
                    keep.insert(r.fingerprint);
                    keep.extend(r.log);
                    keep.extend(r.outputs.iter().map(|o| o.digest));
                }
                _ => {
                    fs::remove_file(&path).map_err(CacheError::io(&path))?;
                    report.records_removed += 1;
                }
            }
        }
        // The index must not point at removed records.
        let index = self.index_path();
        if let Ok(bytes) = safe_fs::read(&index) {
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                if let Some(tasks) = v.get_mut("tasks").and_then(|t| t.as_object_mut()) {
                    tasks.retain(|_, r| {
                        r.get("finished_at")
                            .and_then(|f| f.as_u64())
                            .is_some_and(|f| f >= cutoff)
                    });
                }
                crate::atomic::write_json(&index, &v).map_err(CacheError::io(&index))?;
            }
        }
        for (d, path, size) in self.blobs().list().map_err(CacheError::io(root))? {
            if !keep.contains(&d) {
                fs::remove_file(&path).map_err(CacheError::io(&path))?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        for (path, size, at) in self.tmp_files() {
            if now.duration_since(at).unwrap_or_default() >= TMP_GRACE
                && fs::remove_file(&path).is_ok()
            {
                report.tmp_removed += 1;
                report.bytes_freed += size;
            }
        }
        Ok(report)
    }

    /// Remove everything lifeos keeps, except its tag and the lock files other processes may
    /// hold. Names lifeos does not make are left and reported.
    pub fn clean(&self) -> Result<CleanReport, CacheError> {
        let mut report = CleanReport::default();
        if !self.existing()? {
            return Ok(report);
        }
        let root = &self.root;
        let _guard = self.lock().map_err(CacheError::io(root))?;
        let left = |report: &mut CleanReport, p: &Path| {
            let rel = p.strip_prefix(root).unwrap_or(p);
            report
                .left
                .push(crate::names::display(&crate::names::encode(rel)).into_owned());
        };
        for e in fs::read_dir(root).map_err(CacheError::io(root))?.flatten() {
            let name = e.file_name();
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let s = name.to_str().unwrap_or("");
            if s == marker::TAG_FILE || marker::LOCK_FILES.contains(&s) {
                continue;
            }
            if marker::OWN_DIRS.contains(&s) && ft.is_dir() {
                clean_own_dir(root, s, &mut report, &left)?;
            } else if s == marker::DOWNLOADS_DIR && ft.is_dir() {
                clean_downloads(root, &mut report, &left)?;
            } else if marker::is_own_top(&name) && !ft.is_dir() {
                // A file or a symlink (the link itself).
                fs::remove_file(&path).map_err(CacheError::io(&path))?;
                report.removed += 1;
            } else {
                left(&mut report, &path);
            }
        }
        report.left.sort();
        Ok(report)
    }
}

/// Remove lifeos's files from `ac/` or `blobs/`: shard by shard, links as links, and each
/// directory only once it is empty.
fn clean_own_dir(
    root: &Path,
    top: &str,
    report: &mut CleanReport,
    left: &dyn Fn(&mut CleanReport, &Path),
) -> Result<(), CacheError> {
    let dir = root.join(top);
    for e in fs::read_dir(&dir).map_err(CacheError::io(&dir))?.flatten() {
        let (name, path) = (e.file_name(), e.path());
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() || (marker::is_tmp(&name) && ft.is_file()) {
            fs::remove_file(&path).map_err(CacheError::io(&path))?;
            report.removed += 1;
            continue;
        }
        if !(ft.is_dir() && marker::is_shard(&name)) {
            left(report, &path);
            continue;
        }
        for f in fs::read_dir(&path)
            .map_err(CacheError::io(&path))?
            .flatten()
        {
            let Ok(fft) = f.file_type() else { continue };
            if fft.is_symlink() || (fft.is_file() && marker::is_own_in_shard(top, &f.file_name())) {
                fs::remove_file(f.path()).map_err(CacheError::io(&f.path()))?;
                report.removed += 1;
            } else {
                left(report, &f.path());
            }
        }
        let _ = fs::remove_dir(&path);
    }
    let _ = fs::remove_dir(&dir);
    Ok(())
}

/// Remove cached-path's files from `downloads/` (links as links); anything else stays.
fn clean_downloads(
    root: &Path,
    report: &mut CleanReport,
    left: &dyn Fn(&mut CleanReport, &Path),
) -> Result<(), CacheError> {
    let dir = root.join(marker::DOWNLOADS_DIR);
    for e in fs::read_dir(&dir).map_err(CacheError::io(&dir))?.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name();
        if ft.is_symlink()
            || (ft.is_file() && (marker::is_own_download(&name) || marker::is_tmp(&name)))
        {
            fs::remove_file(e.path()).map_err(CacheError::io(&e.path()))?;
            report.removed += 1;
        } else {
            left(report, &e.path());
        }
    }
    let _ = fs::remove_dir(&dir);
    Ok(())
}

/// Real subdirectories of `dir` (symlinks to directories are not).
fn real_subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return vec![];
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Remove symlinks in `dir` and its shards (the links themselves).
fn remove_links(dir: &Path) -> io::Result<()> {
    if !safe_fs::is_real_dir(dir) {
        return Ok(());
    }
    let mut dirs = real_subdirs(dir);
    dirs.push(dir.to_path_buf());
    for d in dirs {
        for e in fs::read_dir(&d)?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                fs::remove_file(e.path())?;
            }
        }
    }
    Ok(())
}

/// Can this process create files in `dir`? (access(2): permissions and read-only mounts.)
fn writable(dir: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where a cache may not be: the project root or a parent of it, `/`, `$HOME` or a parent
/// of it. `clean` would otherwise have been pointed at the project (it now only deletes its
/// own names, but a cache there would also be restored over and walked as input).
pub fn check_location(cache: &Path, root: &Path, home: Option<&Path>) -> Result<(), String> {
    let cache = resolve(cache);
    let root = resolve(root);
    let what = if cache == root {
        Some("the project root")
    } else if root.starts_with(&cache) {
        Some("a parent of the project root")
    } else if cache.parent().is_none() {
        Some("/")
    } else if home.is_some_and(|h| resolve(h).starts_with(&cache)) {
        Some("your home directory (or a parent of it)")
    } else {
        None
    };
    match what {
        Some(w) => Err(format!(
            "the cache directory {} is {w}; lifeos keeps its cache in a directory of its own: \
             use a subdirectory such as .lifeos",
            cache.display()
        )),
        None => Ok(()),
    }
}

/// Absolute, `.` and `..` resolved, symlinks of the existing part resolved.
fn resolve(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    // The longest existing prefix, canonicalized, plus the rest.
    let mut rest = Vec::new();
    let mut base = out.as_path();
    loop {
        if let Ok(c) = fs::canonicalize(base) {
            let mut r = c;
            for part in rest.iter().rev() {
                r.push(part);
            }
            return r;
        }
        match (base.file_name(), base.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_os_string());
                base = parent;
            }
            _ => return out,
        }
    }
}

fn records_indexed(root: &Path) -> usize {
    safe_fs::read(&root.join(crate::records::INDEX_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("tasks").and_then(|t| t.as_object()).map(|o| o.len()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_may_not_hold_the_project_or_home() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("proj");
        fs::create_dir_all(&root).unwrap();
        let home = t.path().join("home");
        assert!(check_location(&root.join(".lifeos"), &root, Some(&home)).is_ok());
        assert!(check_location(&root.join("build/../.lifeos"), &root, None).is_ok());
        for bad in [
            root.join("."),
            root.join(".."),
            root.join("sub/../.."),
            "/".into(),
        ] {
            let e = check_location(&bad, &root, None).unwrap_err();
            assert!(e.contains("project root") || e.contains('/'), "{e}");
        }
        let e = check_location(&home, &root, Some(&home)).unwrap_err();
        assert!(e.contains("home directory"), "{e}");
    }

    #[test]
    fn clean_and_prune_touch_only_lifeos_names_and_never_follow_links() {
        let t = tempfile::tempdir().unwrap();
        let c = CacheDir::new(t.path().join(".lifeos"));
        c.prepare().unwrap();
        assert!(c.is_ours());
        let d = c.blobs().put(b"x").unwrap();
        fs::write(c.root().join("notes.txt"), "mine").unwrap();
        let outside = t.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        let victim = outside.join("0".repeat(64));
        fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&outside, c.root().join("blobs/ff")).unwrap();

        assert_eq!(c.stats().blobs, 1, "the linked shard is not counted");
        let r = c.prune(Duration::from_secs(3600)).unwrap();
        assert_eq!(r.blobs_removed, 1, "unreferenced: {r:?}");
        assert!(!c.blobs().contains(&d));
        assert!(victim.exists(), "nothing deleted through the link");
        assert!(fs::symlink_metadata(c.root().join("blobs/ff")).is_err());

        std::os::unix::fs::symlink(&outside, c.root().join("blobs/ff")).unwrap();
        let r = c.clean().unwrap();
        assert_eq!(r.left, ["notes.txt"]);
        assert!(victim.exists());
        assert!(c.is_ours(), "the tag stays");
        assert_eq!(
            fs::read_to_string(c.root().join("notes.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_foreign_directory_is_refused_an_old_cache_adopted() {
        let t = tempfile::tempdir().unwrap();
        let foreign = CacheDir::new(t.path().to_path_buf());
        fs::write(t.path().join("photo.jpg"), "x").unwrap();
        assert!(matches!(foreign.clean(), Err(CacheError::NotOurs(_))));
        assert!(matches!(foreign.prepare(), Err(CacheError::Foreign(..))));
        assert!(t.path().join("photo.jpg").exists());

        let old = CacheDir::new(t.path().join("old"));
        fs::create_dir_all(old.root().join("ac/ab")).unwrap();
        fs::write(
            old.root()
                .join("ac/ab")
                .join(format!("{}.json", "ab".repeat(32))),
            "{}",
        )
        .unwrap();
        fs::write(old.index_path(), r#"{"version":1,"tasks":{}}"#).unwrap();
        assert_eq!(old.clean().unwrap().removed, 2);
        assert!(old.is_ours());
        assert!(!old.root().join("ac").exists());
    }

    /// Only lifeos's names, but not lifeos's index: a user's folder (`cache_dir = "public"`
    /// holding the site's `index.json`) is never adopted, written or cleaned.
    #[test]
    fn a_folder_with_a_users_index_json_is_not_adopted() {
        let t = tempfile::tempdir().unwrap();
        let users = CacheDir::new(t.path().join("public"));
        fs::create_dir_all(users.root()).unwrap();
        fs::write(users.index_path(), r#"{"pages":["home"]}"#).unwrap();
        assert!(matches!(users.clean(), Err(CacheError::NotOurs(_))));
        assert!(matches!(users.prepare(), Err(CacheError::Foreign(..))));
        assert_eq!(
            fs::read_to_string(users.index_path()).unwrap(),
            r#"{"pages":["home"]}"#
        );
        assert!(!users.is_ours());
    }
}
