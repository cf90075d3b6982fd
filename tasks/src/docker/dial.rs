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
    let endpoint = super::endpoint(&super::raw_host())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(match endpoint {
        super::Endpoint::Plain(target) => Some(Box::new(target.connect().await?)),
        super::Endpoint::Ssh(target) => {
            let mut connector = super::ssh::SshConnector::new(target);
            let pipe =
                tower_service::Service::call(&mut connector, http::Uri::from_static("/")).await?;
            Some(Box::new(pipe.into_inner()))
        }
        super::Endpoint::Bollard => None,
    })
}
