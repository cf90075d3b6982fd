//! One HTTP GET for readiness checks, the router's control page and synthetic probes:
//! status, body and time taken, through hyper (in the tree for bollard).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What one GET got.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub took: Duration,
    pub headers: http::HeaderMap,
}

fn client() -> &'static Client<HttpConnector, Empty<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Empty<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut c = HttpConnector::new();
        c.set_connect_timeout(Some(Duration::from_secs(5)));
        // A fresh connection each time: a probe measures what a new client sees, and a
        // revision that was replaced must not be reached through a kept-alive socket.
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(c)
    })
}

/// `GET http://addr/path` with a timeout for the whole exchange.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<Answer, String> {
    request(addr, http::Method::GET, path, None, timeout).await
}

/// A request with an optional `Range: bytes=FROM-`; `GET` or `HEAD`.
pub async fn request(
    addr: &str,
    method: http::Method,
    path: &str,
    range_from: Option<u64>,
    timeout: Duration,
) -> Result<Answer, String> {
    let start = Instant::now();
    let uri: http::Uri = format!("http://{addr}{path}")
        .parse()
        .map_err(|e| format!("{addr}{path}: not a URL: {e}"))?;
    let mut req = http::Request::builder().method(method).uri(uri);
    if let Some(from) = range_from {
        req = req.header(http::header::RANGE, format!("bytes={from}-"));
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("{addr}{path}: {e}"))?;
    let work = async {
        let resp = client()
            .request(req)
            .await
            .map_err(|e| format!("GET {addr}{path}: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            took: start.elapsed(),
            headers,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("{addr}{path}: no answer within {timeout:?}")),
    }
}
