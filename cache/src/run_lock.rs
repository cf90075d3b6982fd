//! One run at a time per cache: a run that executes tasks holds `run.lock` (an `flock`) from
//! before it reads the index until its last record is written. A second run waits for it, so
//! it never executes a task the first is executing, never records outputs the first is still
//! writing, and, reading the index after the wait, skips what the first just did.
//!
//! The lock is the kernel's: it goes with the process, however that ends (SIGKILL too), so a
//! dead run never blocks the next. The file also says who holds it, for the waiter's message.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The lock's file name in the cache directory.
pub const RUN_LOCK_FILE: &str = "run.lock";

/// Held for the length of a run; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Who holds the lock, as the holder wrote it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: u32,
    /// What it runs, e.g. `lifeos run test`.
    pub command: String,
    /// Unix seconds when it took the lock.
    pub since: u64,
}

impl Holder {
    /// `pid 4242, `lifeos run test`, started 12s ago` (or less when the file was unreadable).
    pub fn describe(&self) -> String {
        if self.pid == 0 {
            return "its details are not readable".into();
        }
        let ago = now_secs().saturating_sub(self.since);
        format!(
            "pid {}, `{}`, started {ago}s ago",
            self.pid,
            self.command.replace(['\n', '\r'], " ")
        )
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

pub fn path(cache_root: &Path) -> PathBuf {
    cache_root.join(RUN_LOCK_FILE)
}

/// Open the lock file: never through a symlink (a cloned repository may ship one at this
/// path), created 0600, close-on-exec (std's default) so task processes do not inherit it.
fn open(cache_root: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path(cache_root))
}

impl RunLock {
    /// Take the lock if it is free: `Ok(Ok(lock))`, or `Ok(Err(holder))` when another
    /// process holds it. `command` is written into the file for a waiter's message.
    pub fn try_acquire(cache_root: &Path, command: &str) -> io::Result<Result<RunLock, Holder>> {
        let mut file = open(cache_root)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(Err(read_holder(&mut file))),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let me = Holder {
            pid: std::process::id(),
            command: command.to_string(),
            since: now_secs(),
        };
        // Only the holder writes, so the write and the trim cannot interleave with another's.
        // Written over the old details, then trimmed to length: ext4 flushes a file that was
        // truncated to zero when it is closed (its rename-or-truncate safety heuristic), a
        // disk write on every run for a file nobody needs on disk.
        let details = serde_json::to_vec(&me).map_err(io::Error::other)?;
        file.rewind()?;
        file.write_all(&details)?;
        file.set_len(details.len() as u64)?;
        Ok(Ok(RunLock { _file: file }))
    }
}

/// The holder's details; empty (pid 0) when it has not written them yet.
fn read_holder(file: &mut File) -> Holder {
    let mut buf = Vec::new();
    let _ = file.rewind();
    let _ = file.take(64 * 1024).read_to_end(&mut buf);
    // The first JSON value: a holder writing over longer old details trims them only after.
    serde_json::Deserializer::from_slice(&buf)
        .into_iter::<Holder>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let first = RunLock::try_acquire(t.path(), "lifeos run a")
            .unwrap()
            .unwrap();
        // flock locks belong to the open file description: a second open is a second
        // contender even within one process.
        let holder = RunLock::try_acquire(t.path(), "lifeos run b")
            .unwrap()
            .unwrap_err();
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.command, "lifeos run a");
        assert!(holder.describe().contains("`lifeos run a`"));
        drop(first);
        let again = RunLock::try_acquire(t.path(), "lifeos run b").unwrap();
        assert!(again.is_ok());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(t.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the lock file is private: {mode:o}");
    }

    #[test]
    fn a_shorter_holder_leaves_no_trace_of_a_longer_one() {
        let t = tempfile::tempdir().unwrap();
        let long = format!("lifeos run {}", "x".repeat(200));
        drop(RunLock::try_acquire(t.path(), &long).unwrap().unwrap());
        let _short = RunLock::try_acquire(t.path(), "lifeos run a")
            .unwrap()
            .unwrap();
        let text = std::fs::read_to_string(path(t.path())).unwrap();
        assert!(!text.contains("xxx"), "old details left behind: {text}");
        let holder: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(holder.command, "lifeos run a");
        // A waiter reading between the write and the trim still gets the new holder.
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path(t.path()))
            .unwrap();
        f.seek(io::SeekFrom::End(0)).unwrap();
        f.write_all(b"xx\"command\":\"old\"}").unwrap();
        assert_eq!(read_holder(&mut f).command, "lifeos run a");
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, path(t.path())).unwrap();
        let e = RunLock::try_acquire(t.path(), "lifeos run").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(!target.exists(), "the link's target was created");
    }
}
