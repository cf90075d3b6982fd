//! `DOCKER_HOST=ssh://[user@]host[:port]`, the way the docker CLI does it: every connection is
//! a `ssh [-l user] [-p port] -- host docker system dial-stdio` process, and the remote
//! engine's socket is piped through its stdin and stdout. bollard's custom transport carries
//! the requests. (bollard's own `ssh` feature hands `host:port` to ssh as one host name, so
//! a port never works, and it starts a `ControlPersist=yes` master per connection that stays
//! behind unless every client is dropped.)
//!
//! ssh runs with `BatchMode=yes`: it never prompts (that would hang behind the progress
//! display), so the key must come from ssh-agent or an unencrypted key in ~/.ssh. A host
//! seen for the first time is trusted and remembered (`StrictHostKeyChecking=accept-new`,
//! as bollard's ssh feature does); a changed host key is still refused.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

/// The `ssh` arguments for one engine, remote command included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    args: Vec<String>,
}

impl SshTarget {
    /// Parse `ssh://[user@]host[:port]` (a `[v6]` host allowed; no path, no password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("ssh://")
            .ok_or("an ssh engine is written ssh://[user@]host[:port]")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') {
            return Err("an ssh DOCKER_HOST has no path: ssh://[user@]host[:port]".into());
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, rest),
        };
        if user.is_some_and(|u| u.contains(':')) {
            return Err(
                "a password in an ssh DOCKER_HOST is not supported: use a key (ssh-agent or ~/.ssh)"
                    .into(),
            );
        }
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, after)) => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("cannot read `{hostport}` as [host]:port")),
                },
                None => return Err(format!("cannot read `{hostport}`: no closing `]`")),
            },
            None => match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            },
        };
        if host.is_empty() || host.starts_with('-') {
            return Err(format!("`{hostport}` names no host"));
        }
        if user.is_some_and(|u| u.is_empty() || u.starts_with('-')) {
            return Err("the user before `@` is empty or starts with `-`".into());
        }
        if let Some(p) = port {
            if p.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("`{p}` is not a port"));
            }
        }
        let mut args: Vec<String> = [
            "-o",
            "ConnectTimeout=30",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-T",
        ]
        .map(String::from)
        .into();
        if let Some(u) = user {
            args.extend(["-l".into(), u.into()]);
        }
        if let Some(p) = port {
            args.extend(["-p".into(), p.into()]);
        }
        args.extend(["--", host, "docker", "system", "dial-stdio"].map(String::from));
        Ok(SshTarget { args })
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// The connector hyper's pool calls for each new connection.
#[derive(Clone)]
pub struct SshConnector {
    target: Arc<SshTarget>,
}

impl SshConnector {
    pub fn new(target: SshTarget) -> Self {
        SshConnector {
            target: Arc::new(target),
        }
    }
}

impl tower_service::Service<http::Uri> for SshConnector {
    type Response = TokioIo<SshPipe>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let target = self.target.clone();
        Box::pin(async move {
            let mut child = tokio::process::Command::new("ssh")
                .args(target.args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Ctrl-C at the terminal goes to lifeos, which still needs the engine to
                // remove what the run created; the connection ends with lifeos's stdin pipe.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| io::Error::new(e.kind(), format!("cannot start ssh: {e}")))?;
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return Err(io::Error::other("ssh started without its pipes"));
            };
            Ok(TokioIo::new(SshPipe {
                _child: child,
                stdin,
                stdout,
                stderr,
                said: Vec::new(),
            }))
        })
    }
}

/// One connection: writes go to ssh's stdin, reads come from its stdout. When stdout ends
/// before the engine said anything, the read fails with what ssh wrote on stderr
/// ("Permission denied (publickey)", "Connection refused"), so the error names the cause.
pub struct SshPipe {
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: ChildStderr,
    said: Vec<u8>,
}

impl AsyncRead for SshPipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.stdout).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {}
            other => return other,
        }
        // End of stdout: collect stderr to its end too, then report it if there is any.
        loop {
            let mut chunk = [0u8; 1024];
            let mut b = ReadBuf::new(&mut chunk);
            match Pin::new(&mut me.stderr).poll_read(cx, &mut b) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(())) if b.filled().is_empty() => break,
                Poll::Ready(Ok(())) => me.said.extend_from_slice(b.filled()),
            }
        }
        let said = String::from_utf8_lossy(&me.said);
        let said = said.trim();
        if said.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("ssh: {}", said.replace('\n', "; ")),
            )))
        }
    }
}

impl AsyncWrite for SshPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stdin).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_shutdown(cx)
    }
}

impl Connection for SshPipe {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// A bollard client whose connections are ssh processes.
pub fn client(
    target: SshTarget,
    timeout_secs: u64,
    api: &bollard::ClientVersion,
) -> Result<bollard::Docker, bollard::errors::Error> {
    super::custom_client(SshConnector::new(target), true, timeout_secs, api)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: usize = 7;

    fn args(url: &str) -> String {
        SshTarget::parse(url).unwrap().args()[OPTIONS..].join(" ")
    }

    #[test]
    fn urls_become_ssh_arguments_like_the_docker_cli() {
        assert_eq!(args("ssh://host"), "-- host docker system dial-stdio");
        assert_eq!(
            args("ssh://me@host/"),
            "-l me -- host docker system dial-stdio"
        );
        assert_eq!(
            args("ssh://me@10.0.0.1:2222"),
            "-l me -p 2222 -- 10.0.0.1 docker system dial-stdio"
        );
        assert_eq!(
            args("ssh://[::1]:22"),
            "-p 22 -- ::1 docker system dial-stdio"
        );
        assert_eq!(
            args("ssh://[fe80::1]"),
            "-- fe80::1 docker system dial-stdio"
        );
        let target = SshTarget::parse("ssh://h").unwrap();
        let first = &target.args()[..OPTIONS];
        assert_eq!(
            first.join(" "),
            "-o ConnectTimeout=30 -o BatchMode=yes -o StrictHostKeyChecking=accept-new -T"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_a_password() {
        for (url, says) in [
            ("ssh://", "names no host"),
            ("ssh://me@", "names no host"),
            ("ssh://-oProxyCommand=x", "names no host"),
            ("ssh://-l@host", "starts with `-`"),
            ("ssh://host:abc", "is not a port"),
            ("ssh://host:0", "is not a port"),
            ("ssh://host:70000", "is not a port"),
            ("ssh://host/var/run/docker.sock", "has no path"),
            ("ssh://[::1", "no closing"),
            ("tcp://host", "ssh://[user@]host[:port]"),
        ] {
            let e = SshTarget::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
        let e = SshTarget::parse("ssh://me:hunter2@host").unwrap_err();
        assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
    }
}
