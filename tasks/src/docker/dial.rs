//! A raw connection to the engine, for the one request bollard cannot make for lifeos: the
//! build session's `POST /session`, upgraded to HTTP/2 (bollard's upgrade is crate-private).

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to the engine.
pub trait RawIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> RawIo for T {}

/// A fresh connection to the engine `DOCKER_HOST` names, or None for the engines lifeos
/// leaves to bollard's own client (https, TLS-verified tcp).
pub async fn dial() -> io::Result<Option<Box<dyn RawIo>>> {
    let host = super::raw_host();
    let tls = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(Some(Box::new(tokio::net::UnixStream::connect(path).await?)));
    }
    if !tls && (host.starts_with("tcp://") || host.starts_with("http://")) {
        let addr = host.split_once("://").map_or(host.as_str(), |(_, a)| a);
        let s = tokio::net::TcpStream::connect(addr.trim_end_matches('/')).await?;
        let _ = s.set_nodelay(true);
        return Ok(Some(Box::new(s)));
    }
    if host.starts_with("ssh://") {
        let target = super::ssh::SshTarget::parse(&host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut connector = super::ssh::SshConnector::new(target);
        let pipe =
            tower_service::Service::call(&mut connector, http::Uri::from_static("/")).await?;
        return Ok(Some(Box::new(pipe.into_inner())));
    }
    Ok(None)
}
