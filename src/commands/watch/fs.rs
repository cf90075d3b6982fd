//! The file watcher: one non-recursive inotify watch per directory lifeos needs (`notify`'s
//! recursive mode has no exclude, so it would watch every `node_modules`). Directories that
//! no task can read (`.dockerignore`, sync ignores, the cache, `.git`) get none. When the
//! kernel's watch limit is reached, lifeos says once which sysctl to raise and by how much,
//! and polls the directories it could not watch.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedSender;

/// What the watcher reports to the loop.
#[derive(Debug)]
pub enum FsMsg {
    /// Something happened at these paths (hints only: the snapshot decides what changed).
    Paths(Vec<PathBuf>),
    /// Events were lost (the kernel's queue overflowed): everything must be looked at again.
    Rescan(String),
    /// `.git/index.lock` was made (true) or went away (false). In the event stream, so the
    /// lock's end comes after every event of what git wrote while it held it.
    GitLock(bool),
}

/// Does this event make or remove git's index lock?
fn git_lock(e: &notify::Event) -> Option<bool> {
    use notify::event::{ModifyKind, RenameMode};
    let first = e.paths.first()?;
    let is_lock = |p: &Path| p.ends_with(".git/index.lock");
    match e.kind {
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To))
            if e.paths.iter().any(|p| is_lock(p)) =>
        {
            Some(true)
        }
        EventKind::Remove(_)
        | EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Both))
            if is_lock(first) =>
        {
            Some(false)
        }
        _ => None,
    }
}

/// Which directories matter: the roots to walk, and what to leave out below them.
pub trait Scope: Send + Sync {
    /// Project-relative directories to watch with everything below them.
    fn roots(&self) -> Vec<String>;
    /// Project-relative directories watched alone (the parent of a Dockerfile, the root).
    fn singles(&self) -> Vec<String>;
    /// A directory below a root that needs no watch.
    fn skips(&self, rel_dir: &str) -> bool;
}

pub struct FsWatcher {
    root: PathBuf,
    scope: Arc<dyn Scope>,
    inotify: notify::INotifyWatcher,
    poll: Option<notify::PollWatcher>,
    tx: UnboundedSender<FsMsg>,
    watched: HashSet<PathBuf>,
    polled: BTreeSet<PathBuf>,
    /// `LIFEOS_WATCH_LIMIT`: act as if the kernel refused watches past this many (tests).
    limit: Option<usize>,
    told_limit: bool,
}

fn sender(tx: UnboundedSender<FsMsg>) -> impl Fn(notify::Result<notify::Event>) + Send + 'static {
    move |r: notify::Result<notify::Event>| match r {
        Ok(e) if e.need_rescan() => {
            let _ = tx.send(FsMsg::Rescan(
                "the kernel's event queue overflowed".to_string(),
            ));
        }
        // Opens and reads (lifeos's own walks and hashing among them) change nothing; a
        // close after writing does.
        Ok(e)
            if matches!(e.kind, EventKind::Access(a)
                if a != AccessKind::Close(AccessMode::Write)) => {}
        Ok(e) => {
            if let Some(held) = git_lock(&e) {
                let _ = tx.send(FsMsg::GitLock(held));
            }
            if !e.paths.is_empty() {
                let _ = tx.send(FsMsg::Paths(e.paths));
            }
        }
        Err(e) => {
            let _ = tx.send(FsMsg::Rescan(format!("the file watcher failed: {e}")));
        }
    }
}

impl FsWatcher {
    pub fn new(
        root: &Path,
        scope: Arc<dyn Scope>,
        tx: UnboundedSender<FsMsg>,
    ) -> notify::Result<Self> {
        let inotify = notify::INotifyWatcher::new(sender(tx.clone()), notify::Config::default())?;
        let limit = std::env::var("LIFEOS_WATCH_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok());
        Ok(Self {
            root: root.to_path_buf(),
            scope,
            inotify,
            poll: None,
            tx,
            watched: HashSet::new(),
            polled: BTreeSet::new(),
            limit,
            told_limit: false,
        })
    }

    pub fn watched(&self) -> usize {
        self.watched.len()
    }

    pub fn polled(&self) -> usize {
        self.polled.len()
    }

    fn rel(&self, p: &Path) -> String {
        lifeos_cache::names::encode(p.strip_prefix(&self.root).unwrap_or(p))
    }

    /// Watch everything the scope names (again: after a rescan, directories made while
    /// events were lost get their watch).
    pub fn sync_watches(&mut self) {
        let mut dirs = Vec::new();
        for s in self.scope.singles() {
            let p = lifeos_cache::names::to_path(&self.root, &s);
            if p.is_dir() {
                dirs.push(p);
            }
        }
        for r in self.scope.roots() {
            let p = lifeos_cache::names::to_path(&self.root, &r);
            self.collect(&p, &mut dirs);
        }
        self.add(dirs);
    }

    /// One watch per directory; the ones the kernel refuses are polled.
    fn add(&mut self, dirs: Vec<PathBuf>) {
        let mut refused = Vec::new();
        for d in dirs {
            if self.watched.contains(&d) || self.polled.iter().any(|p| d.starts_with(p)) {
                continue;
            }
            let over = self.limit.is_some_and(|l| self.watched.len() >= l);
            let r = if over {
                Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch))
            } else {
                self.inotify.watch(&d, RecursiveMode::NonRecursive)
            };
            match r {
                Ok(()) => {
                    self.watched.insert(d);
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) || is_enospc(&e) => {
                    refused.push(d)
                }
                // Gone since the walk: nothing to watch.
                Err(_) => {}
            }
        }
        if !refused.is_empty() {
            self.poll_instead(refused);
        }
    }

    /// `dir` and every directory below it that the scope keeps.
    fn collect(&self, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            return;
        };
        if !meta.is_dir() {
            // A file root (a Dockerfile): its directory, alone.
            if let Some(parent) = dir.parent() {
                if parent.is_dir() {
                    out.push(parent.to_path_buf());
                }
            }
            return;
        }
        if dir != self.root && self.scope.skips(&self.rel(dir)) {
            return;
        }
        out.push(dir.to_path_buf());
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                self.collect(&e.path(), out);
            }
        }
    }

    /// A path an event named: a new directory (made or moved in) gets its watches.
    pub fn saw(&mut self, p: &Path) {
        if self.watched.contains(p) || !p.is_dir() {
            return;
        }
        if self.polled.iter().any(|d| p.starts_with(d)) {
            return;
        }
        let rel = self.rel(p);
        let under_root = self
            .scope
            .roots()
            .iter()
            .any(|r| r.is_empty() || lifeos_cache::names::is_at_or_under(&rel, r));
        if !under_root || self.scope.skips(&rel) {
            return;
        }
        let mut dirs = Vec::new();
        self.collect(p, &mut dirs);
        self.add(dirs);
    }

    /// The kernel refused these directories: say once what to raise, then poll them.
    fn poll_instead(&mut self, dirs: Vec<PathBuf>) {
        if !self.told_limit {
            self.told_limit = true;
            let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok());
            let limit = self.limit.or(limit);
            let needed = limit.map(|l| l + dirs.len());
            eprintln!(
                "lifeos: the inotify watch limit is reached (fs.inotify.max_user_watches = {}): {} more directories need a watch{}; polling them every second meanwhile",
                limit.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                dirs.len(),
                needed
                    .map(|n| format!(
                        " (raise it to at least {n}: `sudo sysctl fs.inotify.max_user_watches={n}`)"
                    ))
                    .unwrap_or_default()
            );
        }
        if self.poll.is_none() {
            let cfg = notify::Config::default().with_poll_interval(Duration::from_secs(1));
            match notify::PollWatcher::new(sender(self.tx.clone()), cfg) {
                Ok(p) => self.poll = Some(p),
                Err(e) => {
                    eprintln!("lifeos: cannot poll either ({e}); changes there go unseen");
                    return;
                }
            }
        }
        // The topmost refused directories, each polled with what is below it.
        let mut tops: Vec<PathBuf> = Vec::new();
        let mut sorted = dirs;
        sorted.sort();
        for d in sorted {
            if !tops.iter().any(|t| d.starts_with(t)) {
                tops.push(d);
            }
        }
        for d in tops {
            if let Some(p) = self.poll.as_mut() {
                if p.watch(&d, RecursiveMode::Recursive).is_ok() {
                    self.polled.insert(d);
                }
            }
        }
    }
}

fn is_enospc(e: &notify::Error) -> bool {
    matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::ENOSPC))
}
