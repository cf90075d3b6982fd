//! The build context: the files Docker would receive (after `.dockerignore`), read from the
//! run's snapshot, and streamed to the engine as a tar without a copy on disk.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use lifeos_cache::{FileMeta, Snapshot};
use tokio::sync::mpsc;

use super::dockerignore::DockerIgnore;

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

/// The `.dockerignore` rules of a context, with the Dockerfile and `.dockerignore` kept in,
/// as the Docker CLI does.
pub fn ignore_rules(
    root: &Path,
    ctx: &str,
    dockerfile_in_ctx: Option<&str>,
) -> Result<DockerIgnore, String> {
    let path = root.join(ctx).join(".dockerignore");
    let mut rules = match fs::read_to_string(&path) {
        Ok(text) => DockerIgnore::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    rules.keep_build_files(dockerfile_in_ctx);
    Ok(rules)
}

/// Every file of the context that Docker would receive, root-relative, sorted.
pub fn files(snapshot: &Snapshot, ctx: &str, rules: &DockerIgnore) -> io::Result<Vec<FileMeta>> {
    Ok(snapshot
        .walk(ctx)?
        .iter()
        .filter(|f| !rules.is_excluded(ctx_rel(ctx, &f.rel)))
        .cloned()
        .collect())
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
    extra: &[(String, Vec<u8>)],
) -> io::Result<()> {
    let mut tar = tar::Builder::new(w);
    tar.follow_symlinks(false);
    for f in files {
        let abs = root.join(&f.rel);
        let name = ctx_rel(ctx, &f.rel);
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
    extra: Vec<(String, Vec<u8>)>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let w = ChanWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = write_tar(w, &root, &ctx, &files, &extra) {
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
