//! A minimal HTTP/1.1 GET for readiness checks, the router's control page and synthetic
//! probes: one request per connection, status and body, nothing more.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one GET got.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub took: Duration,
}

/// `GET http://addr/path` with a timeout for the whole exchange.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<Answer, String> {
    let start = Instant::now();
    let work = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: lifeos\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut buf = Vec::with_capacity(1024);
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => Ok(Answer {
                status: resp.code.unwrap_or(0),
                body: String::from_utf8_lossy(&buf[n..]).into_owned(),
                took: start.elapsed(),
            }),
            Ok(httparse::Status::Partial) => Err(format!("{addr}: incomplete HTTP answer")),
            Err(e) => Err(format!("{addr}: not HTTP: {e}")),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("{addr}{path}: no answer within {timeout:?}")),
    }
}
