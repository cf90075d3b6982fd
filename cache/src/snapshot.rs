//! One file-system view per run. Directory walks are memoised; file digests come from the
//! persisted stat cache when (size, mtime, ctime, inode, mode) are unchanged, so a no-op run
//! reads no file contents. Only new or changed files are hashed, in parallel on rayon.

use crate::names::is_at_or_under;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::digest::FileDigest;
use crate::inputs::InputSet;

/// A file seen by a walk: a regular file or a symlink (FIFOs, sockets and devices are skipped
/// with a warning, never opened). A symlink is not walked through; its digest covers the
/// link text and the content of the file it points at, and its stamp the target's, so a
/// change behind the link is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Relative to the snapshot root, '/'-separated, in [`crate::names`] form (exact bytes
    /// even when not UTF-8).
    pub rel: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub mode: u32,
    pub symlink: bool,
}

impl FileMeta {
    fn from_metadata(rel: String, m: &fs::Metadata) -> Self {
        Self {
            rel,
            size: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
            mode: m.mode(),
            symlink: m.file_type().is_symlink(),
        }
    }

    /// The same fields from a `statat` answer. The field types differ by architecture
    /// (hence the casts, which are no-ops on some); the values are what `MetadataExt` gives.
    #[allow(trivial_numeric_casts, clippy::unnecessary_cast)]
    fn from_stat(rel: String, st: &rustix::fs::Stat) -> Self {
        Self {
            rel,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
            ctime_ns: st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            symlink: file_type(st) == rustix::fs::FileType::Symlink,
        }
    }

    /// `m` is the lstat of `path`. For a symlink the stamp also takes the target's: a write
    /// behind the link moves its ctime, a new link its own inode and ctime.
    fn from_path(rel: String, path: &Path, m: &fs::Metadata) -> Self {
        let mut f = Self::from_metadata(rel, m);
        if f.symlink {
            if let Ok(t) = fs::metadata(path) {
                f.behind_link(&Self::from_metadata(String::new(), &t));
            }
        }
        f
    }

    /// Fold the stamp of a symlink's target (`t`) into the link's own.
    fn behind_link(&mut self, t: &FileMeta) {
        self.mtime_ns = self.mtime_ns.max(t.mtime_ns);
        self.ctime_ns = self.ctime_ns.max(t.ctime_ns);
        self.ino ^= t.ino.rotate_left(32) ^ t.size.rotate_left(16);
    }

    /// The file's path under `root` (exact bytes, also for a non-UTF-8 name).
    pub fn path_in(&self, root: &Path) -> PathBuf {
        crate::names::to_path(root, &self.rel)
    }

    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }

    fn stamp(&self) -> Stamp {
        (self.size, self.mtime_ns, self.ctime_ns, self.ino, self.mode)
    }
}

type Stamp = (u64, i64, i64, u64, u32);

/// What a `statat` answer is (`st_mode`'s type differs by architecture).
#[allow(trivial_numeric_casts)]
fn file_type(st: &rustix::fs::Stat) -> rustix::fs::FileType {
    rustix::fs::FileType::from_raw_mode(st.st_mode as _)
}

/// One stat-cache entry: the stamp (size, mtime, ctime, inode, mode) and the digest.
#[derive(Clone, Copy)]
struct Entry(u64, i64, i64, u64, u32, FileDigest);

impl Entry {
    fn stamp(&self) -> Stamp {
        (self.0, self.1, self.2, self.3, self.4)
    }
}

type StatMap = HashMap<String, Entry, foldhash::fast::RandomState>;

/// The stat cache on disk: a binary file lifeos alone reads (a JSON one took a tenth of a
/// 10,000-output no-op to parse). `MAGIC`, the version, the count, then per entry the name
/// (u32 length + bytes), the stamp and the digest, little-endian; `MAGIC` again at the end,
/// so a cut file is no cache at all.
const MAGIC: &[u8; 8] = b"LIFEOSSC";

/// 2: symlinks are stamped and hashed with their target. 3: the binary form.
const STAT_CACHE_VERSION: u32 = 3;

fn encode_stat(stat: &StatMap) -> Vec<u8> {
    let mut w = Vec::with_capacity(16 + stat.len() * 96);
    w.extend_from_slice(MAGIC);
    w.extend_from_slice(&STAT_CACHE_VERSION.to_le_bytes());
    w.extend_from_slice(&(stat.len() as u64).to_le_bytes());
    for (rel, e) in stat {
        w.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        w.extend_from_slice(rel.as_bytes());
        w.extend_from_slice(&e.0.to_le_bytes());
        w.extend_from_slice(&e.1.to_le_bytes());
        w.extend_from_slice(&e.2.to_le_bytes());
        w.extend_from_slice(&e.3.to_le_bytes());
        w.extend_from_slice(&e.4.to_le_bytes());
        w.extend_from_slice(&e.5 .0);
    }
    w.extend_from_slice(MAGIC);
    w
}

/// None: not a stat cache of this version (or cut short).
fn decode_stat(b: &[u8]) -> Option<StatMap> {
    let mut b = b;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        b = rest;
        Some(head)
    };
    if take(8)? != MAGIC || take(4)? != STAT_CACHE_VERSION.to_le_bytes() {
        return None;
    }
    let n = u64::from_le_bytes(take(8)?.try_into().ok()?) as usize;
    let mut stat = StatMap::with_capacity_and_hasher(n.min(1 << 24), Default::default());
    for _ in 0..n {
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let rel = std::str::from_utf8(take(len)?).ok()?.to_owned();
        let f = take(8 + 8 + 8 + 8 + 4 + 32)?;
        let u = |i: usize| u64::from_le_bytes(f[i..i + 8].try_into().unwrap());
        let entry = Entry(
            u(0),
            u(8) as i64,
            u(16) as i64,
            u(24),
            u32::from_le_bytes(f[32..36].try_into().unwrap()),
            FileDigest(f[36..68].try_into().unwrap()),
        );
        stat.insert(rel, entry);
    }
    (take(8)? == MAGIC).then_some(())?;
    b.is_empty().then_some(stat)
}

/// Files changed this recently are hashed but not remembered: their mtime may not yet show a
/// second write within the same clock tick (git's "racily clean" problem).
const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// Changed files totalling less than this are hashed on the calling thread.
const SEQUENTIAL_BYTES: u64 = 256 * 1024;

/// A walk goes parallel only once it has found this many directories: a small tree (the
/// example has 14) walks faster on this thread than rayon's pool starts (two threads, their
/// stacks and allocator heaps: ~70 page faults, a third of a no-op's time on a VM).
const SEQUENTIAL_DIRS: usize = 64;

pub struct Snapshot {
    root: PathBuf,
    /// The root, opened once (`O_PATH`): [`Snapshot::stat`] looks names up from here, so the
    /// kernel walks `out/x`, not every component of an absolute path (None: it could not be
    /// opened, and stats go by path).
    root_dir: std::sync::OnceLock<Option<std::os::fd::OwnedFd>>,
    skip_dirs: Vec<PathBuf>,
    cache_file: Option<PathBuf>,
    stat: Mutex<StatMap>,
    dirty: Mutex<bool>,
    walks: Mutex<HashMap<String, Arc<Vec<FileMeta>>>>,
    /// Every directory the walks met (root-relative): an image's context holds empty ones.
    dirs: Mutex<Vec<String>>,
    started_ns: i64,
    hashed: std::sync::atomic::AtomicUsize,
    warnings: Mutex<Vec<String>>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Snapshot {
    /// `cache_file` persists the stat cache between runs; a missing or corrupt one is empty.
    pub fn open(root: &Path, cache_file: Option<PathBuf>) -> Self {
        let mut stat = StatMap::default();
        if let Some(bytes) = cache_file
            .as_ref()
            .and_then(|p| crate::safe_fs::read(p).ok())
        {
            if let Some(s) = decode_stat(&bytes) {
                stat = s;
            }
        }
        Self {
            root: root.to_path_buf(),
            root_dir: std::sync::OnceLock::new(),
            skip_dirs: vec![root.join(".git")],
            cache_file,
            stat: Mutex::new(stat),
            dirty: Mutex::new(false),
            walks: Mutex::new(HashMap::new()),
            dirs: Mutex::new(Vec::new()),
            started_ns: now_ns(),
            hashed: Default::default(),
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Warnings collected so far (files skipped by walks), drained.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.warnings.lock().unwrap())
    }

    /// A FIFO, socket or device: never opened (a read could block forever or never end).
    fn skip_special(&self, rel: &str, ft: fs::FileType) {
        use std::os::unix::fs::FileTypeExt;
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else {
            "not a regular file"
        };
        self.warnings.lock().unwrap().push(format!(
            "skipping {}: it is {what}, not a regular file (lifeos never reads one)",
            crate::names::display(rel)
        ));
    }

    /// Never walk into this directory (the cache directory itself, for one).
    pub fn skip_dir(&mut self, dir: PathBuf) {
        self.skip_dirs.push(dir);
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many files the stat cache knows: a measure of the tree, before any walk.
    pub fn known_files(&self) -> usize {
        self.stat.lock().unwrap().len()
    }

    /// How many files had their contents read and hashed in this run.
    pub fn files_hashed(&self) -> usize {
        self.hashed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// All files under `rel_root` ("" = the whole root), sorted by path. A root naming a file
    /// yields that file; a missing root yields nothing.
    pub fn walk(&self, rel_root: &str) -> io::Result<Arc<Vec<FileMeta>>> {
        let rel_root = rel_root.trim_end_matches('/');
        {
            let walks = self.walks.lock().unwrap();
            if let Some(w) = walks.get(rel_root) {
                return Ok(w.clone());
            }
            // An ancestor already walked has every file we need (looked up by prefix, so the
            // cost is the path's depth, not the number of walks).
            let ancestors =
                std::iter::once("").chain(rel_root.match_indices('/').map(|(i, _)| &rel_root[..i]));
            if let Some(w) = ancestors.filter_map(|a| walks.get(a)).next() {
                let files: Vec<FileMeta> = w
                    .iter()
                    .filter(|f| is_at_or_under(&f.rel, rel_root))
                    .cloned()
                    .collect();
                return Ok(Arc::new(files));
            }
        }
        let files = Arc::new(self.walk_uncached(rel_root)?);
        self.walks
            .lock()
            .unwrap()
            .insert(rel_root.to_string(), files.clone());
        Ok(files)
    }

    fn walk_uncached(&self, rel_root: &str) -> io::Result<Vec<FileMeta>> {
        let abs = if rel_root.is_empty() {
            self.root.clone()
        } else {
            crate::names::to_path(&self.root, rel_root)
        };
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        if !meta.is_dir() {
            let ft = meta.file_type();
            if !ft.is_file() && !ft.is_symlink() {
                self.skip_special(rel_root, ft);
                return Ok(vec![]);
            }
            return Ok(vec![FileMeta::from_path(rel_root.to_string(), &abs, &meta)]);
        }
        let files = Mutex::new(Vec::new());
        self.walk_dir(&abs, &files)?;
        let mut files = files.into_inner().unwrap();
        files.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
        Ok(files)
    }

    /// The directories strictly under `rel_root`, sorted, as the walk of `rel_root` (or of an
    /// ancestor) met them; call [`Snapshot::walk`] first.
    pub fn dirs(&self, rel_root: &str) -> Vec<String> {
        let rel_root = rel_root.trim_end_matches('/');
        let mut dirs: Vec<String> = self
            .dirs
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.as_str() != rel_root && is_at_or_under(d, rel_root))
            .cloned()
            .collect();
        dirs.sort_unstable();
        dirs.dedup();
        dirs
    }

    fn root_dir(&self) -> Option<&std::os::fd::OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        self.root_dir
            .get_or_init(|| {
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
                rustix::fs::open(&self.root, flags, Mode::empty()).ok()
            })
            .as_ref()
    }

    /// One file's metadata, fresh from the file system (not memoised); None if absent.
    /// Looked up relative to the open root: the same answer as an `lstat` of the joined path.
    pub fn stat(&self, rel: &str) -> io::Result<Option<FileMeta>> {
        use rustix::fs::{statat, AtFlags, FileType};
        let Some(dir) = self.root_dir() else {
            return self.stat_by_path(rel);
        };
        let name = crate::names::decode(rel);
        let st = match statat(dir, &*name, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match file_type(&st) {
            FileType::RegularFile => Ok(Some(FileMeta::from_stat(rel.to_string(), &st))),
            FileType::Symlink => {
                let mut f = FileMeta::from_stat(rel.to_string(), &st);
                if let Ok(t) = statat(dir, &*name, AtFlags::empty()) {
                    f.behind_link(&FileMeta::from_stat(String::new(), &t));
                }
                Ok(Some(f))
            }
            _ => Ok(None),
        }
    }

    /// [`Snapshot::stat`] through the joined path (the root could not be opened).
    fn stat_by_path(&self, rel: &str) -> io::Result<Option<FileMeta>> {
        let path = crate::names::to_path(&self.root, rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if !m.is_file() && !m.file_type().is_symlink() => Ok(None),
            Ok(m) => Ok(Some(FileMeta::from_path(rel.to_string(), &path, &m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Directories fan out on rayon's pool (no thread start-ups per walk, unlike a walker
    /// that spawns its own workers); files of one directory are stat'ed in order.
    fn walk_dir(&self, dir: &Path, out: &Mutex<Vec<FileMeta>>) -> io::Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            // Deleted while we walked: simply not there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut subdirs = Vec::new();
        let mut files = Vec::new();
        for entry in rd {
            let entry = entry?;
            let path = entry.path();
            // d_type from readdir: no stat needed to tell directories apart.
            let ft = entry.file_type()?;
            if ft.is_dir() {
                if !self.skip_dirs.contains(&path) {
                    subdirs.push(path);
                }
                continue;
            }
            let rel = crate::names::encode(path.strip_prefix(&self.root).unwrap_or(&path));
            if !ft.is_file() && !ft.is_symlink() {
                self.skip_special(&rel, ft);
                continue;
            }
            // An lstat relative to the directory being read (std's `fstatat` on its fd).
            match entry.metadata() {
                Ok(m) => files.push(FileMeta::from_path(rel, &path, &m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.lock().unwrap().extend(files);
        let mut found = 0;
        if !subdirs.is_empty() {
            // The same exact-bytes form as file names (crate::names), or a directory whose
            // name is not UTF-8 would not match its own files.
            let rels = subdirs
                .iter()
                .map(|d| crate::names::encode(d.strip_prefix(&self.root).unwrap_or(d)));
            let mut dirs = self.dirs.lock().unwrap();
            dirs.extend(rels);
            found = dirs.len();
        }
        // Fan out only where there is breadth in a tree already known to be large.
        if subdirs.len() >= 8 && found >= SEQUENTIAL_DIRS {
            subdirs.par_iter().try_for_each(|d| self.walk_dir(d, out))
        } else {
            subdirs.iter().try_for_each(|d| self.walk_dir(d, out))
        }
    }

    /// The files an input set selects, sorted by path.
    pub fn select(&self, inputs: &InputSet) -> io::Result<Vec<FileMeta>> {
        let mut out = Vec::new();
        for root in inputs.roots() {
            for f in self.walk(root)?.iter() {
                if inputs.matches(&f.rel) {
                    out.push(f.clone());
                }
            }
        }
        out.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
        out.dedup_by(|a, b| a.rel == b.rel);
        Ok(out)
    }

    /// One file's digest: the stat cache's when the stamp matches, else hashed.
    pub fn digest(&self, f: &FileMeta) -> io::Result<FileDigest> {
        if let Some(e) = self.stat.lock().unwrap().get(&f.rel) {
            if e.stamp() == f.stamp() {
                return Ok(e.5);
            }
        }
        Ok(self.digests(std::slice::from_ref(f))?[0])
    }

    /// Digests of `files`, from the stat cache where the stamp matches, else hashed in parallel.
    pub fn digests(&self, files: &[FileMeta]) -> io::Result<Vec<FileDigest>> {
        let mut out: Vec<Option<FileDigest>> = Vec::with_capacity(files.len());
        let mut misses = Vec::new();
        {
            let stat = self.stat.lock().unwrap();
            for (i, f) in files.iter().enumerate() {
                match stat.get(&f.rel) {
                    Some(e) if e.stamp() == f.stamp() => out.push(Some(e.5)),
                    _ => {
                        out.push(None);
                        misses.push(i);
                    }
                }
            }
        }
        if misses.is_empty() {
            return Ok(out.into_iter().map(Option::unwrap).collect());
        }
        let hash = |&i: &usize| hash_file(&files[i].path_in(&self.root), files[i].symlink);
        // A few small files hash sooner here than it takes rayon's pool to start.
        let small = misses.iter().map(|&i| files[i].size).sum::<u64>() < SEQUENTIAL_BYTES;
        let hashed: Vec<io::Result<FileDigest>> = if small {
            misses.iter().map(hash).collect()
        } else {
            misses.par_iter().map(hash).collect()
        };
        self.hashed
            .fetch_add(misses.len(), std::sync::atomic::Ordering::Relaxed);
        let mut stat = self.stat.lock().unwrap();
        for (&i, d) in misses.iter().zip(hashed) {
            let d = d.map_err(|e| {
                let rel = crate::names::display(&files[i].rel);
                io::Error::new(e.kind(), format!("cannot read {rel}: {e}"))
            })?;
            let f = &files[i];
            if f.mtime_ns < self.started_ns - RACY_WINDOW_NS {
                let (a, b, c, e, m) = f.stamp();
                stat.insert(f.rel.clone(), Entry(a, b, c, e, m, d));
            } else {
                stat.remove(&f.rel);
            }
            out[i] = Some(d);
        }
        *self.dirty.lock().unwrap() = true;
        Ok(out.into_iter().map(Option::unwrap).collect())
    }

    /// Forget walks that may see files a task just wrote under `rel` (its outputs).
    pub fn invalidate(&self, rel: &str) {
        let rel = rel.trim_end_matches('/');
        self.walks
            .lock()
            .unwrap()
            .retain(|root, _| !is_at_or_under(rel, root) && !is_at_or_under(root, rel));
    }

    /// Persist the stat cache (atomically) if this run learned anything new.
    pub fn save(&self) -> io::Result<()> {
        let Some(path) = &self.cache_file else {
            return Ok(());
        };
        // Only into an existing cache directory (a run prepares it; `plan` makes none).
        if !path.parent().is_some_and(crate::safe_fs::is_real_dir) {
            return Ok(());
        }
        if !*self.dirty.lock().unwrap() {
            return Ok(());
        }
        let bytes = encode_stat(&self.stat.lock().unwrap());
        crate::atomic::write(path, &bytes)
    }
}

/// A file's digest: its content, streamed. A symlink's covers its link text and what it
/// points at: the target's content for a file, else what the target is (a directory, a
/// special file or nothing), which is never opened.
pub fn hash_file(path: &Path, symlink: bool) -> io::Result<FileDigest> {
    if symlink {
        let link = fs::read_link(path)?;
        let behind = match fs::metadata(path) {
            Ok(m) if m.is_file() => {
                let f = crate::safe_fs::open_target(path)?;
                crate::stream::copy_hash(&f, None)?.0.to_hex()
            }
            Ok(m) if m.is_dir() => "directory".to_string(),
            Ok(_) => "special file".to_string(),
            Err(_) => "missing".to_string(),
        };
        let mut h = blake3::Hasher::new();
        h.update(b"symlink\0");
        h.update(link.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        h.update(behind.as_bytes());
        return Ok(FileDigest::from_hash(h.finalize()));
    }
    let f = crate::safe_fs::open_read(path)?;
    Ok(crate::stream::copy_hash(&f, None)?.0)
}

/// The digest an output symlink is stored under: its link text (the blob's content).
pub fn link_digest(path: &Path) -> io::Result<FileDigest> {
    Ok(FileDigest::of(
        fs::read_link(path)?.as_os_str().as_encoded_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backdate(p: &Path) {
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn stat_cache_avoids_rehashing_and_sees_changes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("r");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/x.txt"), "x").unwrap();
        fs::write(root.join("a/y.txt"), "y").unwrap();
        backdate(&root.join("a/b/x.txt"));
        backdate(&root.join("a/y.txt"));
        let cache = t.path().join("stat.json");
        let inputs = InputSet::new(&["a/**"]).unwrap();

        let s = Snapshot::open(&root, Some(cache.clone()));
        let files = s.select(&inputs).unwrap();
        assert_eq!(
            files.iter().map(|f| f.rel.as_str()).collect::<Vec<_>>(),
            ["a/b/x.txt", "a/y.txt"]
        );
        let d1 = s.digests(&files).unwrap();
        assert_eq!(s.files_hashed(), 2);
        s.save().unwrap();

        let s = Snapshot::open(&root, Some(cache.clone()));
        let files = s.select(&inputs).unwrap();
        assert_eq!(s.digests(&files).unwrap(), d1);
        assert_eq!(s.files_hashed(), 0, "unchanged files are not read");

        // A cut or foreign file is no cache: everything is hashed again.
        let full = fs::read(&cache).unwrap();
        for bad in [
            &full[..full.len() - 1],
            b"{\"version\":2,\"entries\":{}}".as_slice(),
        ] {
            fs::write(&cache, bad).unwrap();
            let s = Snapshot::open(&root, Some(cache.clone()));
            let files = s.select(&inputs).unwrap();
            assert_eq!(s.digests(&files).unwrap(), d1);
            assert_eq!(s.files_hashed(), 2);
        }
        fs::write(&cache, &full).unwrap();

        fs::write(root.join("a/y.txt"), "changed").unwrap();
        let s = Snapshot::open(&root, Some(cache));
        let files = s.select(&inputs).unwrap();
        let d2 = s.digests(&files).unwrap();
        assert_eq!(s.files_hashed(), 1);
        assert_eq!(d2[0], d1[0]);
        assert_ne!(d2[1], d1[1]);
    }

    /// The stat relative to the open root is the lstat of the joined path: regular files,
    /// links (with their target's stamp), directories and missing names, non-UTF-8 too.
    #[test]
    fn stat_from_the_root_fd_is_the_stat_by_path() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("d/e")).unwrap();
        fs::write(root.join("d/f.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("f.txt", root.join("d/link")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join("d/dangling")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"d/\xffodd");
        fs::write(root.join(odd), "x").unwrap();
        let s = Snapshot::open(root, None);
        let odd_rel = crate::names::encode(Path::new(odd));
        for rel in [
            "d/f.txt",
            "d/link",
            "d/dangling",
            "d/e",
            "d",
            "missing",
            "d/f.txt/x",
            &odd_rel,
        ] {
            let by_fd = s.stat(rel).map_err(|e| e.kind());
            let by_path = s.stat_by_path(rel).map_err(|e| e.kind());
            assert_eq!(by_fd, by_path, "{rel}");
        }
        assert!(s.stat("d/link").unwrap().unwrap().symlink);
        assert_eq!(s.stat(&odd_rel).unwrap().unwrap().size, 1);
    }

    #[test]
    fn small_and_wide_trees_walk_to_the_same_files() {
        // 12 x 12 directories: past SEQUENTIAL_DIRS, so the later fan-outs go to rayon.
        let t = tempfile::tempdir().unwrap();
        let mut want = Vec::new();
        for i in 0..12 {
            for j in 0..12 {
                let d = t.path().join(format!("d{i:02}/e{j:02}"));
                fs::create_dir_all(&d).unwrap();
                fs::write(d.join("f"), "x").unwrap();
                want.push(format!("d{i:02}/e{j:02}/f"));
            }
        }
        fs::write(t.path().join("top"), "y").unwrap();
        want.push("top".into());
        let s = Snapshot::open(t.path(), None);
        let mut got: Vec<String> = s.walk("").unwrap().iter().map(|f| f.rel.clone()).collect();
        got.sort();
        assert_eq!(got, want);
        let small: Vec<String> = Snapshot::open(t.path(), None)
            .walk("d03")
            .unwrap()
            .iter()
            .map(|f| f.rel.clone())
            .collect();
        assert_eq!(small.len(), 12, "{small:?}");
    }

    #[test]
    fn walk_of_a_subdir_reuses_an_ancestor_walk() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("a/b")).unwrap();
        fs::write(t.path().join("a/b/x"), "x").unwrap();
        fs::write(t.path().join("a/bb"), "y").unwrap();
        let s = Snapshot::open(t.path(), None);
        assert_eq!(s.walk("").unwrap().len(), 2);
        let sub = s.walk("a/b").unwrap();
        assert_eq!(sub.len(), 1);
        assert_eq!(sub[0].rel, "a/b/x");
        assert!(s.walk("missing").unwrap().is_empty());
    }
}
