//! The resident sync receiver: one exec per container per `lifeos watch` session, `sh`
//! running receiver.sh as root with stdin and stdout attached through the Engine API. Each
//! batch is one [`Frame`] written to its stdin and one ack line read back (its tools'
//! messages, if any, before it): a few ms, where a `PUT /containers/{id}/archive` costs
//! ~75 ms on Docker 20.10 (the engine re-executes itself as `docker-untar` in a chroot for
//! every upload, and a new exec costs as much). It exits when its stdin closes (lifeos
//! exits, or drops it).

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::frame::Frame;

const SCRIPT: &str = include_str!("receiver.sh");
/// The first line it prints once it has checked its tools.
const READY: &str = "ready 2";
/// Its process name in `ps`/`docker top` ($0 of the script).
pub const NAME: &str = "lifeos-sync-receiver";
const READY_WAIT: Duration = Duration::from_secs(30);
/// A batch of many large files may take a while; a receiver silent for this long is stuck.
const ACK_WAIT: Duration = Duration::from_secs(300);

/// What came out of the exec: its stdout (the acks) or its stderr.
enum Chunk {
    Out(Bytes),
    Err(Bytes),
}

type Output = Pin<Box<dyn Stream<Item = Result<Chunk, String>> + Send>>;

pub struct Receiver {
    container: String,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: Output,
    /// Stdout not yet read as a line.
    out: Vec<u8>,
    /// The tail of its stderr, to say why it stopped.
    err: Vec<u8>,
    /// Frames sent.
    seq: u64,
}

/// Why no receiver runs.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenError {
    /// The container cannot run it (no `sh`, `tar`, ...): copy through the archive endpoint.
    Unsupported(String),
    /// The engine did not start it (container gone or stopping, engine away): try again later.
    Engine(String),
}

/// A frame's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Ack {
    Done,
    /// A step failed (`clearing`, `extracting`, `owning links`: its tools' messages); the
    /// receiver has exited.
    Failed(String),
}

impl Receiver {
    /// Start the receiver in a running container and wait for its ready line.
    pub async fn open(d: &bollard::Docker, container: &str) -> Result<Receiver, OpenError> {
        let engine = |e: bollard::errors::Error| {
            OpenError::Engine(crate::docker::classify(e, "start the sync receiver").to_string())
        };
        let cmd = ["sh", "-c", SCRIPT, NAME, "/"].map(String::from).to_vec();
        let exec = d
            .create_exec(
                container,
                CreateExecOptions::<String> {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    cmd: Some(cmd),
                    // Writes files of any owner, as the archive endpoint does.
                    user: Some("0:0".into()),
                    ..Default::default()
                },
            )
            .await
            .map_err(engine)?;
        let start = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: None,
        };
        let StartExecResults::Attached { output, input } =
            d.start_exec(&exec.id, Some(start)).await.map_err(engine)?
        else {
            return Err(OpenError::Engine("the engine started it detached".into()));
        };
        let output = output.map(|r| match r {
            Ok(LogOutput::StdErr { message }) => Ok(Chunk::Err(message)),
            Ok(o) => Ok(Chunk::Out(o.into_bytes())),
            Err(e) => Err(e.to_string()),
        });
        let mut r = Receiver::with(container, input, Box::pin(output));
        match r.line(READY_WAIT).await {
            Ok(l) if l == READY => Ok(r),
            // Its own check ("no tar in the container"), or the runtime's ("executable file
            // not found"): this container cannot run it.
            Ok(l) => Err(OpenError::Unsupported(short(&l))),
            Err(why) => {
                let code = d
                    .inspect_exec(&exec.id)
                    .await
                    .ok()
                    .and_then(|i| i.exit_code);
                match code {
                    Some(126 | 127) => Err(OpenError::Unsupported(why)),
                    _ => Err(OpenError::Engine(why)),
                }
            }
        }
    }

    fn with(container: &str, input: Pin<Box<dyn AsyncWrite + Send>>, output: Output) -> Receiver {
        Receiver {
            container: container.to_string(),
            input,
            output,
            out: Vec::new(),
            err: Vec::new(),
            seq: 0,
        }
    }

    /// The container it runs in.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// Write one frame and wait for its ack. Err: the receiver is gone or out of step (drop
    /// it; the frame may or may not have been applied, and applying it again is harmless).
    /// After [`Ack::Failed`] it exits too (part of the frame may be unread).
    pub async fn send(&mut self, frame: &Frame) -> Result<Ack, String> {
        self.seq += 1;
        let seq = self.seq;
        let write = async {
            for part in frame.parts(seq) {
                self.input.write_all(&part).await?;
            }
            self.input.flush().await
        };
        // A write that fails may be a receiver that stopped reading a frame it failed on
        // and exited: its ack may still be there to read.
        let wait = match tokio::time::timeout(ACK_WAIT, write).await {
            Ok(Ok(())) => Ok(ACK_WAIT),
            Ok(Err(e)) => Err(format!("writing to it failed ({e})")),
            Err(_) => Err(format!("it read nothing for {} s", ACK_WAIT.as_secs())),
        };
        // Its tools' messages, if any, come before the ack, which names this frame.
        let ack = format!("lifeos-ack {seq} ");
        let mut said: Vec<String> = Vec::new();
        loop {
            let l = match self.line(*wait.as_ref().unwrap_or(&READY_WAIT)).await {
                Ok(l) => l,
                Err(e) => {
                    // A failed write says more than the end of the stream it led to.
                    let e = match &wait {
                        Err(w) => self.ended(w),
                        Ok(_) => e,
                    };
                    if said.is_empty() {
                        return Err(e);
                    }
                    return Err(format!("{e}; it said: {}", short(&said.join(" "))));
                }
            };
            match l.strip_prefix(&ack) {
                Some("ok") => return Ok(Ack::Done),
                Some(a) => {
                    if let Some(step) = a.strip_prefix("err ") {
                        let said = said.join(" ");
                        return Ok(Ack::Failed(short(&format!("{step}: {said}"))));
                    }
                }
                None => {}
            }
            if said.len() < 20 {
                said.push(l);
            }
        }
    }

    /// Close its stdin and wait (briefly) until it has exited.
    pub async fn close(mut self) {
        let quick = Duration::from_secs(2);
        let _ = tokio::time::timeout(quick, self.input.shutdown()).await;
        let _ = tokio::time::timeout(quick, async {
            while let Some(Ok(_)) = self.output.next().await {}
        })
        .await;
    }

    /// The next line of its stdout.
    async fn line(&mut self, wait: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.out.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.out.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&l).trim_end().to_string());
            }
            match tokio::time::timeout_at(deadline, self.output.next()).await {
                Err(_) => return Err(format!("no answer in {} s", wait.as_secs())),
                Ok(None) => return Err(self.ended("it stopped")),
                Ok(Some(Err(e))) => return Err(self.ended(&format!("its stream broke ({e})"))),
                Ok(Some(Ok(Chunk::Out(b)))) => self.out.extend_from_slice(&b),
                Ok(Some(Ok(Chunk::Err(b)))) => {
                    self.err.extend_from_slice(&b);
                    let cut = self.err.len().saturating_sub(400);
                    self.err.drain(..cut);
                }
            }
        }
    }

    /// Why it is gone: `what`, and what it printed last.
    fn ended(&self, what: &str) -> String {
        let said = format!(
            "{} {}",
            String::from_utf8_lossy(&self.out),
            String::from_utf8_lossy(&self.err)
        );
        let said = short(&said);
        if said.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {said}")
        }
    }
}

/// One line, at most 300 characters.
fn short(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one,
    }
}

#[cfg(test)]
mod tests {
    //! receiver.sh run on this host (dash or bash with GNU tools, and busybox's applets, as
    //! in the example's images), driven through the same [`Receiver`] as in a container.

    use super::*;
    use crate::container::sync::{self, Changes, Upsert};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    /// The receiver in a child process with `root` as its `/`; `path` for its tools.
    fn local(root: &Path, path: Option<&Path>) -> (Receiver, tokio::process::Child) {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", SCRIPT, NAME])
            .arg(root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let mut child = cmd.spawn().expect("sh runs");
        let input = child.stdin.take().unwrap();
        let out = tokio_util::io::ReaderStream::new(child.stdout.take().unwrap())
            .map(|r| r.map(Chunk::Out).map_err(|e| e.to_string()));
        let err = tokio_util::io::ReaderStream::new(child.stderr.take().unwrap())
            .map(|r| r.map(Chunk::Err).map_err(|e| e.to_string()));
        let output = futures_util::stream::select(out, err);
        (
            Receiver::with("local", Box::pin(input), Box::pin(output)),
            child,
        )
    }

    const TOOLS: [&str; 6] = ["sh", "dd", "tar", "xargs", "rm", "chown"];

    fn on_path(name: &str) -> std::path::PathBuf {
        std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name} on PATH (scripts/setup.sh installs it)"))
    }

    /// A directory for PATH with the receiver's tools: each `tools` gives its program.
    fn bin(
        dir: &Path,
        tools: &[&str],
        program: impl Fn(&str) -> std::path::PathBuf,
    ) -> std::path::PathBuf {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for a in tools {
            std::os::unix::fs::symlink(program(a), bin.join(a)).unwrap();
        }
        bin
    }

    /// busybox's applets, as the example's images have them.
    fn busybox_bin(dir: &Path) -> std::path::PathBuf {
        let bb = on_path("busybox");
        bin(dir, &TOOLS, |_| bb.clone())
    }

    /// A batch's frame, owned by whoever owns `host` (the test's user).
    async fn frame(host: &Path, changes: &Changes) -> Frame {
        let me = (
            std::fs::metadata(host).unwrap().uid() as u64,
            std::fs::metadata(host).unwrap().gid() as u64,
        );
        let packed = sync::pack(me, changes).await.unwrap();
        Frame::new(me, changes, packed).unwrap()
    }

    fn upsert(path: &str, host: &Path, mode: u32) -> Upsert {
        Upsert {
            path: path.into(),
            host: host.to_path_buf(),
            mode,
        }
    }

    async fn frames_apply_in_step(tools: Option<&Path>, t: &Path) {
        let root = t.join("root");
        let host = t.join("host");
        std::fs::create_dir_all(root.join("srv/www/full")).unwrap();
        std::fs::create_dir_all(root.join("srv/www/empty")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(root.join("srv/www/full/x"), "x").unwrap();
        std::fs::write(root.join("outside"), "keep").unwrap();
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere"), root.join("srv/www/todir")).unwrap();
        let w = |name: &str, c: &[u8]| {
            let p = host.join(name);
            std::fs::write(&p, c).unwrap();
            p
        };
        let (mut rx, mut child) = local(&root, tools);
        assert_eq!(rx.line(READY_WAIT).await.unwrap(), READY);

        // Files, a directory, a big file (several dd blocks), a link, an odd name.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let odd = "/srv/www/new/a 'b'\n$(c)\"`";
        let link = host.join("ln");
        std::os::unix::fs::symlink("index.html", &link).unwrap();
        let c = Changes {
            deletes: vec![],
            dirs: vec!["/srv/www/new".into()],
            files: vec![
                upsert("/srv/www/index.html", &w("i", b"v1\n"), 0o640),
                upsert("/srv/www/new/big", &w("big", &big), 0o644),
                upsert(odd, &w("odd", b"odd"), 0o600),
                upsert("/srv/www/ln", &link, 0o777),
            ],
        };
        let f = frame(&host, &c).await;
        assert_eq!(rx.send(&f).await.unwrap(), Ack::Done);
        let read = |p: &str| std::fs::read(root.join(p.trim_start_matches('/'))).unwrap();
        assert_eq!(read("/srv/www/index.html"), b"v1\n");
        assert_eq!(read("/srv/www/new/big"), big);
        assert_eq!(read(odd), b"odd");
        let mode = std::fs::metadata(root.join("srv/www/index.html")).unwrap();
        assert_eq!(mode.permissions().mode() & 0o7777, 0o640);
        assert_eq!(
            std::fs::read_link(root.join("srv/www/ln")).unwrap(),
            Path::new("index.html")
        );

        // A file where a directory (full, or empty) is, a directory where a link to another
        // is (never written through), a delete: as the archive endpoint leaves them.
        let c = Changes {
            deletes: vec!["/srv/www/new/big".into()],
            dirs: vec!["/srv/www/todir".into()],
            files: vec![
                upsert("/srv/www/full", &w("f", b"file now"), 0o644),
                upsert("/srv/www/empty", &w("e", b"file too"), 0o644),
                upsert("/srv/www/todir/in", &w("in", b"in"), 0o644),
                // A file where a link was: the link goes, its target stays.
                upsert("/srv/www/ln", &w("nolink", b"not a link"), 0o644),
            ],
        };
        let f = frame(&host, &c).await;
        assert_eq!(rx.send(&f).await.unwrap(), Ack::Done);
        assert_eq!(read("/srv/www/full"), b"file now");
        assert_eq!(read("/srv/www/empty"), b"file too");
        assert_eq!(read("/srv/www/todir/in"), b"in");
        assert!(!root.join("srv/www/todir").is_symlink());
        assert!(!root.join("elsewhere/in").exists());
        assert!(!root.join("srv/www/new/big").exists());
        assert!(!root.join("srv/www/ln").is_symlink());
        assert_eq!(read("/srv/www/ln"), b"not a link");
        assert_eq!(read("/srv/www/index.html"), b"v1\n");

        // Closed stdin: it exits, nothing left running.
        rx.close().await;
        let st = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the receiver exits when its stdin closes")
            .unwrap();
        assert!(st.success(), "{st:?}");

        // A frame whose tar fails (a file under a file): its error, then it exits (part of
        // the frame may be unread), and a new one takes the next frame.
        let (mut rx, mut child) = local(&root, tools);
        assert_eq!(rx.line(READY_WAIT).await.unwrap(), READY);
        let c = Changes {
            files: vec![
                upsert("/srv/www/index.html/under", &w("u", b"u"), 0o644),
                upsert("/srv/www/big2", &w("big", &big), 0o644),
            ],
            ..Default::default()
        };
        let f = frame(&host, &c).await;
        match rx.send(&f).await.unwrap() {
            Ack::Failed(e) => assert!(e.starts_with("extracting: ") && e.len() > 12, "{e}"),
            a => panic!("{a:?}"),
        }
        assert_eq!(child.wait().await.unwrap().code(), Some(1));
        let (mut rx, mut child) = local(&root, tools);
        assert_eq!(rx.line(READY_WAIT).await.unwrap(), READY);
        let c = Changes {
            files: vec![upsert("/srv/www/index.html", &w("i", b"v2\n"), 0o644)],
            ..Default::default()
        };
        let f = frame(&host, &c).await;
        assert_eq!(rx.send(&f).await.unwrap(), Ack::Done);
        assert_eq!(read("/srv/www/index.html"), b"v2\n");
        assert_eq!(read("/outside"), b"keep");
        drop(rx);
        let st = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the receiver exits when its stdin is dropped")
            .unwrap();
        assert!(st.success(), "{st:?}");
    }

    #[tokio::test]
    async fn frames_apply_in_step_with_the_hosts_sh_and_tools() {
        let t = tempfile::tempdir().unwrap();
        frames_apply_in_step(None, t.path()).await;
    }

    #[tokio::test]
    async fn frames_apply_in_step_with_busybox() {
        let t = tempfile::tempdir().unwrap();
        let bin = busybox_bin(t.path());
        frames_apply_in_step(Some(&bin), t.path()).await;
    }

    #[tokio::test]
    async fn a_missing_tool_is_said_and_it_exits() {
        let t = tempfile::tempdir().unwrap();
        // The host's tools without tar (busybox's sh would find its own tar applet).
        let tools: Vec<&str> = TOOLS.into_iter().filter(|t| *t != "tar").collect();
        let bin = bin(t.path(), &tools, on_path);
        let (mut rx, mut child) = local(t.path(), Some(&bin));
        assert_eq!(
            rx.line(READY_WAIT).await.unwrap(),
            "no tar in the container"
        );
        assert_eq!(child.wait().await.unwrap().code(), Some(127));
    }

    #[tokio::test]
    async fn a_frame_out_of_step_ends_it() {
        let t = tempfile::tempdir().unwrap();
        let (mut rx, mut child) = local(t.path(), None);
        assert_eq!(rx.line(READY_WAIT).await.unwrap(), READY);
        let empty = Frame::new(
            (0, 0),
            &Changes::default(),
            crate::container::sync::Packed {
                tar: vec![],
                links: vec![],
            },
        )
        .unwrap();
        assert_eq!(rx.send(&empty).await.unwrap(), Ack::Done);
        // Frame 2 numbered 5 (a stream cut in the wrong place): it says so and exits.
        rx.input.write_all(b"F 5 0 0 0 0:0\n").await.unwrap();
        rx.input.flush().await.unwrap();
        assert_eq!(
            rx.line(READY_WAIT).await.unwrap(),
            "out of step at frame 2: F 5"
        );
        assert!(rx.line(READY_WAIT).await.is_err());
        assert_eq!(child.wait().await.unwrap().code(), Some(2));
    }
}
