//! The build context: the files Docker would receive (after `.dockerignore`), read from the
//! run's snapshot, and streamed to the engine as a tar without a copy on disk.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use lifeos_cache::names::is_under;
use lifeos_cache::{FileMeta, Snapshot};
use tokio::sync::mpsc;

use super::dockerignore::DockerIgnore;
use super::ignore_walk::Walk;

/// Context-relative path of a root-relative one.
pub fn ctx_rel<'a>(ctx: &str, rel: &'a str) -> &'a str {
    if ctx.is_empty() {
        rel
    } else {
        rel.strip_prefix(ctx)
            .map(|r| r.trim_start_matches('/'))
            .unwrap_or(rel)
    }
}

/// The `.dockerignore` rules of an image's context, as the Docker CLI reads them:
/// - BuildKit: `<Dockerfile>.dockerignore` next to the Dockerfile replaces the context's
///   `.dockerignore`, and the Dockerfile and `.dockerignore` may be excluded like any file;
/// - classic: the context's `.dockerignore`, with the Dockerfile and `.dockerignore` kept in
///   (the daemon reads them, then removes the excluded ones before the build).
pub fn ignore_rules(root: &Path, spec: &super::ImageSpec) -> Result<DockerIgnore, String> {
    let (path, bytes) = read_ignore_file(root, spec)?;
    parse_ignore_rules(&path, bytes.as_deref(), spec)
}

/// The `.dockerignore` file [`ignore_rules`] reads, and its bytes (None: there is none).
pub(super) fn read_ignore_file(
    root: &Path,
    spec: &super::ImageSpec,
) -> Result<(PathBuf, Option<Vec<u8>>), String> {
    let ctx_file = root.join(&spec.context).join(".dockerignore");
    let path = match spec.builder {
        super::Builder::BuildKit => {
            let own = root.join(format!("{}.dockerignore", spec.dockerfile));
            if own.is_file() {
                own
            } else {
                ctx_file
            }
        }
        super::Builder::Classic => ctx_file,
    };
    match fs::read(&path) {
        Ok(bytes) => Ok((path, Some(bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((path, None)),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// [`ignore_rules`] from the bytes [`read_ignore_file`] read.
pub(super) fn parse_ignore_rules(
    path: &Path,
    bytes: Option<&[u8]>,
    spec: &super::ImageSpec,
) -> Result<DockerIgnore, String> {
    let mut rules = match bytes {
        Some(bytes) => DockerIgnore::parse(&String::from_utf8_lossy(bytes))
            .map_err(|e| format!("{}: {e}", path.display()))?,
        None => DockerIgnore::default(),
    };
    if spec.builder == super::Builder::Classic {
        rules.keep_build_files(spec.dockerfile_in_context().as_deref());
    }
    Ok(rules)
}

/// What Docker would send of a context: its files (root-relative, sorted) and the directories
/// that hold none of them (empty, or all of their files excluded), which the image still has.
pub struct ContextFiles {
    pub files: Vec<FileMeta>,
    pub bare_dirs: Vec<String>,
    /// Every directory the walk sends (holding files or not), for the build session.
    pub dirs: Vec<String>,
}

/// Every file and bare directory of the context that Docker would send. With BuildKit
/// (`entered_dirs`), an excluded directory that the walk enters for an exception pattern is
/// sent too, empty if nothing under it is (fsutil's walk sends every directory it enters;
/// the classic builder's tar has only what is not excluded).
pub fn files(
    snapshot: &Snapshot,
    ctx: &str,
    rules: &DockerIgnore,
    entered_dirs: bool,
) -> io::Result<ContextFiles> {
    let walked = snapshot.walk(ctx)?;
    let mut walk = Walk::new(rules);
    let files: Vec<FileMeta> = walked
        .iter()
        .filter(|f| walk.keeps(ctx_rel(ctx, &f.rel), false))
        .cloned()
        .collect();
    let mut walk = Walk::new(rules);
    let mut bare_dirs = Vec::new();
    let mut dirs = Vec::new();
    let mut next_file = 0;
    for dir in snapshot.dirs(ctx) {
        let rel = ctx_rel(ctx, &dir);
        let sent = walk.keeps(rel, true) || (entered_dirs && walk.entered(rel));
        if !sent {
            continue;
        }
        dirs.push(dir.clone());
        // Files and directories share one sort order: the first file at or after `dir`.
        while next_file < files.len() && files[next_file].rel.as_str() < dir.as_str() {
            next_file += 1;
        }
        let holds_file = files.get(next_file).is_some_and(|f| is_under(&f.rel, &dir));
        if !holds_file {
            bare_dirs.push(dir);
        }
    }
    // A directory holding a bare directory is implied by it.
    let implied = |d: &String| bare_dirs.iter().any(|o| is_under(o, d));
    let bare_dirs = bare_dirs.iter().filter(|d| !implied(d)).cloned().collect();
    Ok(ContextFiles {
        files,
        bare_dirs,
        dirs,
    })
}

/// Writes tar bytes into a channel in 64 KiB chunks: the request body streams as it is built.
struct ChanWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "build request closed"))?;
        }
        Ok(())
    }
}

fn write_tar(
    w: ChanWriter,
    root: &Path,
    ctx: &str,
    files: &[FileMeta],
    bare_dirs: &[String],
    extra: &[(String, Vec<u8>)],
) -> io::Result<()> {
    let mut tar = tar::Builder::new(w);
    tar.follow_symlinks(false);
    for dir in bare_dirs {
        let Ok(meta) = fs::symlink_metadata(root.join(dir)) else {
            continue; // removed since the walk
        };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777);
        h.set_mtime(
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, format!("{}/", ctx_rel(ctx, dir)), io::empty())?;
    }
    for f in files {
        // Exact bytes, also for a name that is not UTF-8 (lifeos_cache::names).
        let abs = f.path_in(root);
        let name = lifeos_cache::names::decode(ctx_rel(ctx, &f.rel));
        let name = std::path::Path::new(&*name);
        let mut h = tar::Header::new_gnu();
        h.set_mode(f.mode & 0o7777);
        h.set_mtime((f.mtime_ns / 1_000_000_000).max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        if f.symlink {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, name, fs::read_link(&abs)?)?;
        } else {
            let file = fs::File::open(&abs)?;
            let len = file.metadata()?.len();
            h.set_size(len);
            h.set_entry_type(tar::EntryType::Regular);
            // take(): a file that grows while we read must not corrupt the archive.
            tar.append_data(&mut h, name, file.take(len))?;
        }
    }
    for (name, bytes) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        tar.append_data(&mut h, name, &bytes[..])?;
    }
    let mut w = tar.into_inner()?;
    w.flush()
}

/// Start streaming the context tar; the returned stream is the build request's body.
/// `extra`: files (name at the context's root, bytes) added after the context's own.
pub fn stream(
    root: PathBuf,
    ctx: String,
    files: Vec<FileMeta>,
    bare_dirs: Vec<String>,
    extra: Vec<(String, Vec<u8>)>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let w = ChanWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = write_tar(w, &root, &ctx, &files, &bare_dirs, &extra) {
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Builder, ImageSpec};

    fn spec(builder: Builder) -> ImageSpec {
        ImageSpec {
            context: "ctx".into(),
            dockerfile: "ctx/Dockerfile".into(),
            target: None,
            build_args: Default::default(),
            labels: Default::default(),
            tags: vec![],
            platform: None,
            builder,
            secrets: vec![],
            registry_cache: None,
            fill_registry_cache: false,
            cache_from: vec![],
        }
    }

    #[test]
    fn buildkit_reads_the_dockerfiles_own_ignore_file_and_keeps_nothing_back() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("ctx")).unwrap();
        fs::write(
            root.join("ctx/.dockerignore"),
            "Dockerfile\n.dockerignore\nctx-only\n",
        )
        .unwrap();
        // Classic: the context's file, the Dockerfile and .dockerignore kept.
        let r = ignore_rules(root, &spec(Builder::Classic)).unwrap();
        assert!(r.is_excluded("ctx-only"));
        assert!(!r.is_excluded("Dockerfile") && !r.is_excluded(".dockerignore"));
        // BuildKit: both may be excluded like any file.
        let r = ignore_rules(root, &spec(Builder::BuildKit)).unwrap();
        assert!(r.is_excluded("Dockerfile") && r.is_excluded(".dockerignore"));
        // BuildKit: Dockerfile.dockerignore replaces .dockerignore.
        fs::write(root.join("ctx/Dockerfile.dockerignore"), "own-only\n").unwrap();
        let r = ignore_rules(root, &spec(Builder::BuildKit)).unwrap();
        assert!(r.is_excluded("own-only") && !r.is_excluded("ctx-only"));
        let r = ignore_rules(root, &spec(Builder::Classic)).unwrap();
        assert!(!r.is_excluded("own-only") && r.is_excluded("ctx-only"));
    }

    #[test]
    fn bare_directories_are_part_of_the_context() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in ["ctx/empty", "ctx/a/deeper/still", "ctx/logs"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("ctx/a/f"), "x").unwrap();
        fs::write(root.join("ctx/logs/x.log"), "x").unwrap();
        let snap = Snapshot::open(root, None);
        let rules = DockerIgnore::parse("*/*.log\n").unwrap();
        let c = files(&snap, "ctx", &rules, false).unwrap();
        let names: Vec<&str> = c.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(names, ["ctx/a/f"]);
        assert_eq!(c.bare_dirs, ["ctx/a/deeper/still", "ctx/empty", "ctx/logs"]);
        // Docker's walk does not enter an excluded directory: nothing of it is sent.
        let rules = DockerIgnore::parse("a\n").unwrap();
        let c = files(&snap, "ctx", &rules, true).unwrap();
        assert_eq!(c.bare_dirs, ["ctx/empty"]);
        // Entered for an exception that matches nothing: BuildKit's walk still sends it.
        let rules = DockerIgnore::parse("logs\n!logs/keep.txt\n").unwrap();
        let c = files(&snap, "ctx", &rules, true).unwrap();
        assert!(
            c.bare_dirs.contains(&"ctx/logs".to_string()),
            "{:?}",
            c.bare_dirs
        );
        let c = files(&snap, "ctx", &rules, false).unwrap();
        assert!(
            !c.bare_dirs.contains(&"ctx/logs".to_string()),
            "{:?}",
            c.bare_dirs
        );
    }
}
