//! One module per command; this file finds and loads the project for them.

mod backup;
mod cache;
mod deploy;
mod explain;
mod run;
mod services;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use lifeos_cache::{CacheDir, RecordStore, Snapshot};
use lifeos_engine::GraphFormat;

use crate::cli::{Cli, Cmd, Format, Global};
use crate::config::{self, LoadError, LoadOptions, Project};
use crate::diagnostic::did_you_mean;
use crate::exit;

pub async fn dispatch(cli: Cli) -> i32 {
    let g = &cli.global;
    let file = match find_file(g) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let scheduler = matches!(
        cli.command,
        Cmd::Build { .. }
            | Cmd::Run { .. }
            | Cmd::Plan { .. }
            | Cmd::Explain { .. }
            | Cmd::Up { .. }
            | Cmd::Watch { .. }
    );
    Preload::start(&file, g, scheduler);
    let project = match load(g, &file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let code = match cli.command {
        Cmd::Build { images } => run::build(g, &project, images).await,
        Cmd::Run { tasks } => run::run(g, &project, tasks).await,
        Cmd::Plan { tasks } => run::plan(g, &project, tasks).await,
        Cmd::Explain { task } => explain::explain(g, &project, task).await,
        Cmd::Graph { tasks, format } => graph(&project, &tasks, format),
        Cmd::Cache { action } => cache::cache(g, &project, action),
        Cmd::Up { services } => services::up(g, &project, services).await,
        Cmd::Watch { services } => watch::watch(g, &project, services).await,
        Cmd::Down { volumes } => services::down(&project, volumes).await,
        Cmd::Status => match services::status(g, &project).await {
            exit::OK => deploy::status(g, &project).await,
            code => code,
        },
        Cmd::Rollback { service, to } => deploy::rollback(g, &project, service, to).await,
        Cmd::Logs { service, follow } => services::logs(&project, &service, follow).await,
        Cmd::Backup { action } => backup::backup(g, &project, action).await,
        Cmd::Restore {
            source,
            into,
            drop_old,
            task,
        } => backup::restore(g, &project, &source, into, drop_old, task).await,
    };
    // The process exits next: freeing a 10,000-task graph would only cost time.
    std::mem::forget(project);
    code
}

pub fn usage_error(msg: impl std::fmt::Display) -> i32 {
    eprintln!(
        "{} {msg}",
        console::style("error:").red().bold().for_stderr()
    );
    exit::USAGE
}

fn find_file(g: &Global) -> Result<PathBuf, i32> {
    match &g.file {
        Some(f) => Ok(f.clone()),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| usage_error(format!("no current directory: {e}")))?;
            config::find(&cwd).ok_or_else(|| {
                usage_error(format!(
                    "no {} in {} or any parent directory\n  create one, or pass -f FILE / -C DIR",
                    config::FILE_NAME,
                    cwd.display()
                ))
            })
        }
    }
}

fn load(g: &Global, file: &Path) -> Result<Project, i32> {
    let opts = LoadOptions {
        env: g.env.clone(),
        set: g.set.clone(),
        cache_dir: g.cache_dir.clone(),
    };
    let project = config::load(file, &opts).map_err(|e| match e {
        LoadError::Config(d) => {
            eprint!("{}", d.render(console::colors_enabled_stderr()));
            let n = d.errors.len();
            eprintln!(
                "{} {} in {}; nothing was run",
                console::style("error:").red().bold().for_stderr(),
                if n == 1 {
                    "1 config error".to_string()
                } else {
                    format!("{n} config errors")
                },
                d.path
            );
            exit::USAGE
        }
        LoadError::Usage(m) => usage_error(m),
    })?;
    project
        .services
        .keep_downloads_in(project.cache_dir.join("downloads"), g.offline);
    if g.offline {
        eprintln!("lifeos: --offline: URL inputs use the copies kept from earlier runs");
    }
    Ok(project)
}

/// Check task names given on the command line, with a suggestion for typos.
pub fn check_names(project: &Project, names: &[String]) -> Result<(), i32> {
    for n in names {
        if project.graph.get(n).is_none() {
            let hint = match did_you_mean(n, project.graph.ids()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "tasks: {}",
                    project.graph.ids().collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(usage_error(format!("unknown task `{n}`: {hint}")));
        }
    }
    Ok(())
}

/// The cache index and the run's file-system view (with the last run's stat cache): loaded on
/// a second thread while the main thread parses lifeos.toml, since on a big project each takes
/// as long as a good part of the parse. The cache directory is guessed before the config is
/// read (`--cache-dir`, else `.lifeos` beside the file); a config that moves it makes the
/// guess unused.
struct Preload {
    cache_dir: PathBuf,
    root: PathBuf,
    // Two threads: with the main thread's parse that is one more than the cores here, but
    // the three finish sooner than two threads doing the same work.
    records: JoinHandle<RecordStore>,
    snapshot: JoinHandle<Snapshot>,
}

/// One per process: started by `dispatch`, taken by the command that runs the scheduler.
static PRELOAD: Mutex<Option<Preload>> = Mutex::new(None);

/// The cache index as this process first saw it (path, size, mtime, inode), before the config
/// was read and before the run lock was taken.
static INDEX_SEEN: Mutex<Option<(PathBuf, Option<IndexStamp>)>> = Mutex::new(None);

/// Size, mtime and inode: the index is replaced by a rename, so any write changes them.
type IndexStamp = (u64, std::time::SystemTime, u64);

fn index_stamp(path: &Path) -> Option<IndexStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}

/// Did another run record results since this process started (between its early reads and
/// taking the run lock)? Then what was read early (the preloaded index, the early engine
/// answer) may predate them.
pub fn index_moved(cache_dir: &Path) -> bool {
    let path = CacheDir::new(cache_dir.to_path_buf()).index_path();
    match &*INDEX_SEEN.lock().unwrap() {
        Some((seen, stamp)) if *seen == path => *stamp != index_stamp(&path),
        _ => true,
    }
}

/// Below this size (index plus stat cache) loading on the main thread beats starting threads.
const PRELOAD_MIN_BYTES: u64 = 256 * 1024;

impl Preload {
    /// Before the config is read, for a command that runs the scheduler (`scheduler`): the
    /// preload threads.
    fn start(file: &Path, g: &Global, scheduler: bool) {
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let root = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        let cache_dir = g.cache_dir.clone().unwrap_or_else(|| root.join(".lifeos"));
        let cache = CacheDir::new(cache_dir.clone());
        if scheduler {
            let index = cache.index_path();
            *INDEX_SEEN.lock().unwrap() = Some((index.clone(), index_stamp(&index)));
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let caches = size(&cache.index_path()) + size(&cache.stat_cache_path());
        if !scheduler || caches < PRELOAD_MIN_BYTES {
            return;
        }
        let c = cache_dir.clone();
        let records = std::thread::Builder::new()
            .name("preload-index".into())
            .spawn(move || CacheDir::new(c).records());
        let (r, c) = (root.clone(), cache_dir.clone());
        let snapshot = std::thread::Builder::new()
            .name("preload-stat".into())
            .spawn(move || open_snapshot(&r, &c));
        if let (Ok(records), Ok(snapshot)) = (records, snapshot) {
            *PRELOAD.lock().unwrap() = Some(Preload {
                cache_dir,
                root,
                records,
                snapshot,
            });
        }
    }
}

pub(crate) fn open_snapshot(root: &Path, cache_dir: &Path) -> Snapshot {
    let mut s = Snapshot::open(
        root,
        Some(CacheDir::new(cache_dir.to_path_buf()).stat_cache_path()),
    );
    s.skip_dir(cache_dir.to_path_buf());
    s
}

/// The index and snapshot for a run on `project`: preloaded when the guess was right and
/// nothing may have changed since (`stale`: the run waited for another one).
pub fn open_run_cache(project: &Project, stale: bool) -> (RecordStore, Arc<Snapshot>) {
    let preloaded = PRELOAD.lock().unwrap().take().and_then(|p| {
        let hit = !stale && p.cache_dir == project.cache_dir && p.root == project.root;
        let loaded = (p.records.join(), p.snapshot.join());
        match loaded {
            (Ok(r), Ok(s)) if hit => Some((r, s)),
            _ => None,
        }
    });
    let (records, snapshot) = preloaded.unwrap_or_else(|| {
        (
            CacheDir::new(project.cache_dir.clone()).records(),
            open_snapshot(&project.root, &project.cache_dir),
        )
    });
    (records, Arc::new(snapshot))
}

fn graph(project: &Project, tasks: &[String], format: Format) -> i32 {
    if let Err(code) = check_names(project, tasks) {
        return code;
    }
    let sel = project.graph.select(tasks).expect("names checked");
    let f = match format {
        Format::Text => GraphFormat::Text,
        Format::Dot => GraphFormat::Dot,
        Format::Mermaid => GraphFormat::Mermaid,
        Format::Json => GraphFormat::Json,
    };
    crate::out!("{}", project.graph.render(&sel, f));
    exit::OK
}
