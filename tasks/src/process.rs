//! Child processes in their own process group, so a timeout or Ctrl-C kills the whole tree
//! (`sh -c 'sleep 100'` leaves no orphan), with output streamed line by line into the log.

use std::process::Stdio;
use std::time::Duration;

use lifeos_engine::{LogSink, Stream, TaskError};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio_util::sync::CancellationToken;

/// Kills the group on drop, whatever path the caller takes out.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: plain syscall; a stale pgid at worst yields ESRCH.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
    }
}

async fn pump(r: impl AsyncRead + Unpin, log: LogSink, stream: Stream) {
    let mut lines = BufReader::new(r).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(l)) => log.line(stream, &l),
            Ok(None) => break,
            // Not UTF-8 or a read error: keep going rather than block the child on a full pipe.
            Err(_) => continue,
        }
    }
}

/// Run `cmd` to completion or cancellation. Output goes to `log`.
pub async fn run(
    mut cmd: tokio::process::Command,
    what: &str,
    log: &LogSink,
    cancel: &CancellationToken,
) -> Result<(), TaskError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| TaskError::Failed(format!("cannot start {what}: {e}")))?;
    let mut guard = GroupGuard(child.id().map(|p| p as i32));
    let out = tokio::spawn(pump(
        child.stdout.take().unwrap(),
        log.clone(),
        Stream::Stdout,
    ));
    let err = tokio::spawn(pump(
        child.stderr.take().unwrap(),
        log.clone(),
        Stream::Stderr,
    ));
    let status = tokio::select! {
        s = child.wait() => s?,
        _ = cancel.cancelled() => {
            if let Some(pgid) = guard.0 {
                // SAFETY: signalling our own child's process group.
                unsafe { libc::killpg(pgid, libc::SIGTERM) };
            }
            if tokio::time::timeout(Duration::from_secs(3), child.wait()).await.is_err() {
                drop(guard);
                let _ = child.wait().await;
            }
            return Err(TaskError::Interrupted);
        }
    };
    // The leader exited; anything it left in its group goes too.
    drop(std::mem::replace(&mut guard, GroupGuard(None)));
    if let Some(pgid) = child.id() {
        unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
    }
    let _ = out.await;
    let _ = err.await;
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    Err(TaskError::Failed(match (status.code(), status.signal()) {
        (Some(c), _) => format!("{what} exited with code {c}"),
        (_, Some(s)) => format!("{what} was killed by signal {s}"),
        _ => format!("{what} failed"),
    }))
}
