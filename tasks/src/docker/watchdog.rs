//! A progress timeout for every engine call: an engine that freezes (a paused dockerd, a hung
//! proxy) must not be waited on forever, mid-build or mid-`up`.
//!
//! A fixed timeout per call would cut off calls that are quiet by nature: `wait` on a
//! container that runs for an hour, a build step that prints nothing for ten minutes,
//! `logs -f`. So each connection is watched instead: when nothing moves on it (no byte read
//! or written) for half the limit, lifeos pings the engine on a fresh connection. An engine
//! that answers is alive and the call goes on waiting; one that does not answer within the
//! other half fails the call, naming the request and the engine. The limit is
//! `LIFEOS_ENGINE_TIMEOUT` seconds (default 60).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

pub const ENV: &str = "LIFEOS_ENGINE_TIMEOUT";
const DEFAULT_SECS: u64 = 60;

/// The limit from `LIFEOS_ENGINE_TIMEOUT` (whole seconds, `s` suffix allowed), or why the
/// value is not one.
pub fn limit() -> Result<Duration, String> {
    let Ok(raw) = std::env::var(ENV) else {
        return Ok(Duration::from_secs(DEFAULT_SECS));
    };
    match raw.trim().trim_end_matches('s').parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "{ENV}={raw:?} is not a number of seconds from 1 to 86400 (e.g. {ENV}=120)"
        )),
    }
}

/// The error a stalled call fails with; found again in the error chain by [`stalled`].
#[derive(Debug)]
pub struct Stalled(pub String);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stalled {}

/// The [`Stalled`] message somewhere in `e`'s chain of causes, if the call failed so.
pub fn stalled(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(s) = e.downcast_ref::<Stalled>() {
            return Some(s.0.clone());
        }
        if let Some(s) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Stalled>())
        {
            return Some(s.0.clone());
        }
        cur = e.source();
    }
    None
}

type Ping = Pin<Box<dyn Future<Output = bool> + Send>>;

/// How to ask the engine whether it is alive: a new connection and `GET /_ping`.
pub type Pinger = Arc<dyn Fn() -> Ping + Send + Sync>;

/// `GET /_ping` on a fresh connection `io`: true when the engine starts an HTTP answer.
pub async fn ping_over<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> bool {
    if io
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 5 {
        match io.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    buf.starts_with(b"HTTP/")
}

/// One engine connection, watched.
pub struct Watched<S> {
    io: S,
    limit: Duration,
    host: Arc<str>,
    pinger: Pinger,
    /// The request this connection last sent, e.g. `POST /build`.
    request: String,
    timer: Pin<Box<Sleep>>,
    ping: Option<Pin<Box<tokio::time::Timeout<Ping>>>>,
}

impl<S> Watched<S> {
    pub fn new(io: S, limit: Duration, host: Arc<str>, pinger: Pinger) -> Self {
        Watched {
            io,
            limit,
            host,
            pinger,
            request: "a request".into(),
            timer: Box::pin(tokio::time::sleep(limit / 2)),
            ping: None,
        }
    }

    fn progress(&mut self) {
        self.ping = None;
        self.timer.as_mut().reset(Instant::now() + self.limit / 2);
    }

    /// The first line of an HTTP request, as `METHOD /path` (no query, no API version).
    fn note_request(&mut self, bytes: &[u8]) {
        let head = &bytes[..bytes.len().min(512)];
        let Some(line) = head.split(|&b| b == b'\r').next() else {
            return;
        };
        let line = String::from_utf8_lossy(line);
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if !version.starts_with("HTTP/") || !method.chars().all(|c| c.is_ascii_uppercase()) {
            return;
        }
        let path = target.split('?').next().unwrap_or(target);
        let path = match path.strip_prefix("/v1.") {
            Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
            None => path,
        };
        self.request = format!("{method} {path}");
    }

    /// The I/O is pending: Ready(error) once the engine is known to be frozen.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if let Some(ping) = self.ping.as_mut() {
                match ping.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(true)) => {
                        // Alive, only quiet: keep waiting.
                        self.progress();
                    }
                    Poll::Ready(_) => {
                        let msg = format!(
                            "the Docker engine at {} did not answer `{}` for {}s, nor a ping\n  check it with `docker info` (a paused or overloaded engine), restart it, or raise {ENV} (seconds)",
                            self.host,
                            self.request,
                            self.limit.as_secs()
                        );
                        return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, Stalled(msg)));
                    }
                }
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let ping = (self.pinger)();
                    self.ping = Some(Box::pin(tokio::time::timeout(self.limit / 2, ping)));
                    // Far ahead: the ping decides what happens next.
                    self.timer.as_mut().reset(Instant::now() + self.limit * 4);
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match Pin::new(&mut me.io).poll_read(cx, buf) {
            Poll::Pending => me.poll_stall(cx).map(Err),
            ready => {
                me.progress();
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match Pin::new(&mut me.io).poll_write(cx, buf) {
            Poll::Pending => me.poll_stall(cx).map(Err),
            ready => {
                me.note_request(buf);
                me.progress();
                ready
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match Pin::new(&mut me.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => me.poll_stall(cx).map(Err),
            ready => {
                if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
                    me.note_request(first);
                }
                me.progress();
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match Pin::new(&mut me.io).poll_flush(cx) {
            Poll::Pending => me.poll_stall(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<S> Connection for Watched<S> {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Connections to a local socket or a plain TCP engine, each one watched.
#[derive(Clone)]
pub struct Connector {
    target: Arc<Target>,
    limit: Duration,
    host: Arc<str>,
}

#[derive(Debug)]
pub enum Target {
    Unix(std::path::PathBuf),
    /// `host:port`
    Tcp(String),
}

/// A connection to a [`Target`].
pub enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Target {
    pub async fn connect(&self) -> io::Result<Stream> {
        Ok(match self {
            Target::Unix(p) => Stream::Unix(tokio::net::UnixStream::connect(p).await?),
            Target::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a.as_str()).await?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, b),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, b),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Connector {
    fn pinger(&self) -> Pinger {
        let target = self.target.clone();
        Arc::new(move || {
            let target = target.clone();
            Box::pin(async move {
                match target.connect().await {
                    Ok(s) => ping_over(s).await,
                    Err(_) => false,
                }
            })
        })
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<Watched<Stream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let limit = me.limit;
            let s = tokio::time::timeout(limit, me.target.connect())
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        Stalled(format!(
                            "the Docker engine at {} did not accept a connection for {}s",
                            me.host,
                            limit.as_secs()
                        )),
                    )
                })??;
            Ok(hyper_util::rt::TokioIo::new(Watched::new(
                s,
                limit,
                me.host.clone(),
                me.pinger(),
            )))
        })
    }
}

/// A bollard client for `target` whose every connection is watched.
pub fn client(
    target: Target,
    host: &str,
    limit: Duration,
    timeout_secs: u64,
    api: &bollard::ClientVersion,
) -> Result<bollard::Docker, bollard::errors::Error> {
    let connector = Connector {
        target: Arc::new(target),
        limit,
        host: host.into(),
    };
    super::custom_client(connector, false, timeout_secs, api)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched() -> Watched<tokio::io::Empty> {
        Watched::new(
            tokio::io::empty(),
            Duration::from_secs(2),
            "unix:///x".into(),
            Arc::new(|| Box::pin(async { true })),
        )
    }

    #[tokio::test]
    async fn names_the_request_without_query_or_version() {
        let mut w = watched();
        w.note_request(b"POST /v1.41/build?t=x&q=1 HTTP/1.1\r\nHost: docker\r\n");
        assert_eq!(w.request, "POST /build");
        w.note_request(b"GET /containers/json?all=1 HTTP/1.1\r\n");
        assert_eq!(w.request, "GET /containers/json");
        // A body chunk is not a request line.
        w.note_request(b"some tar bytes");
        assert_eq!(w.request, "GET /containers/json");
    }

    #[test]
    fn the_limit_comes_from_the_environment() {
        // One test owns the variable (tests run in parallel threads).
        std::env::remove_var(ENV);
        assert_eq!(limit().unwrap(), Duration::from_secs(60));
        std::env::set_var(ENV, "5s");
        assert_eq!(limit().unwrap(), Duration::from_secs(5));
        std::env::set_var(ENV, "soon");
        assert!(limit()
            .unwrap_err()
            .contains("LIFEOS_ENGINE_TIMEOUT=\"soon\""));
        std::env::remove_var(ENV);
    }

    #[tokio::test]
    async fn a_frozen_engine_fails_the_call_and_a_quiet_one_does_not() {
        use tokio::io::AsyncReadExt;
        // A connection on which nothing ever arrives.
        let (quiet, _keep) = tokio::io::duplex(64);
        let pings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = pings.clone();
        let alive: Pinger = Arc::new(move || {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { true })
        });
        let mut w = Watched::new(quiet, Duration::from_millis(200), "h".into(), alive);
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(Duration::from_millis(700), w.read(&mut buf)).await;
        assert!(r.is_err(), "a quiet call on a live engine keeps waiting");
        assert!(pings.load(std::sync::atomic::Ordering::SeqCst) >= 2);

        let (frozen, _keep) = tokio::io::duplex(64);
        let dead: Pinger = Arc::new(|| Box::pin(std::future::pending()));
        let mut w = Watched::new(frozen, Duration::from_millis(200), "unix:///s".into(), dead);
        w.note_request(b"POST /build HTTP/1.1\r\n");
        let e = w.read(&mut buf).await.unwrap_err();
        let msg = stalled(&e).unwrap();
        assert!(
            msg.contains("unix:///s") && msg.contains("`POST /build`"),
            "{msg}"
        );
    }
}
