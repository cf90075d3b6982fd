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

/// The child is SIGKILLed by the kernel when lifeos dies, however it dies (SIGKILL too), so
/// a task's command never outlives the run.
pub(crate) fn die_with_lifeos(cmd: &mut tokio::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: runs in the forked child before exec, and only makes async-signal-safe
    // syscalls (prctl, getppid, _exit), allocating nothing. PDEATHSIG fires when the
    // *thread* that forked exits: lifeos spawns from its runtime's one thread (main), which
    // lives as long as the process. The getppid check closes the race with a parent that
    // died before the prctl.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// PDEATHSIG reaches only the child itself, not what it started (`sh -c 'a; b'` forks).
/// A sentinel joins the child's process group with a pipe from lifeos as its stdin: when
/// lifeos dies the pipe closes, `read` returns and the sentinel kills the group, itself
/// included. While lifeos lives it only waits; the group kill at the task's end takes it
/// too. None when it could not start (the task then runs without it, as before).
fn sentinel(pgid: i32) -> Option<tokio::process::Child> {
    tokio::process::Command::new("/bin/sh")
        .args(["-c", "read _; kill -KILL 0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(pgid)
        .kill_on_drop(true)
        .spawn()
        .ok()
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
    die_with_lifeos(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| TaskError::Failed(format!("cannot start {what}: {e}")))?;
    let mut guard = GroupGuard(child.id().map(|p| p as i32));
    let _sentinel = guard.0.and_then(sentinel);
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
        // SAFETY: plain syscall on our own child's process group; at worst ESRCH.
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
