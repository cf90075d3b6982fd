//! Backups over plain HTTP: upload by PUT (WebDAV: nginx's dav module, Apache mod_dav, ...),
//! proven by reading the file back (size and sha256; a WebDAV server checks neither). hyper
//! and hyper-util are already in the tree (bollard); nothing new is built for this.
//! (Downloads for `lifeos restore URL` go through cached-path, as URL inputs do.)

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::sidecar::Sha256;

type Body = BoxBody<Bytes, std::io::Error>;

fn client() -> Client<HttpConnector, Body> {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(Duration::from_secs(10)));
    Client::builder(TokioExecutor::new()).build(c)
}

fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// The server part of a URL (`host:port`), for messages.
pub fn server_of(url: &str) -> String {
    url.parse::<Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| url.to_string())
}

/// `http://h/backups/` + `x.dump` → `http://h/backups/x.dump`.
pub fn join(base: &str, name: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{name}")
    } else {
        format!("{base}/{name}")
    }
}

/// Why a URL cannot be used, if it cannot (`gs://` goes through gcloud: [`super::gcs`]).
pub fn url_problem(url: &str) -> Option<String> {
    if url.starts_with("gs://") {
        return super::gcs::url_problem(url);
    }
    if url.starts_with("https://") {
        return Some("https:// is not supported yet: use an http:// URL (e.g. a WebDAV server on a private network)".into());
    }
    match url.parse::<Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => None,
        _ => Some(
            "expected an http:// URL such as http://127.0.0.1:8088/backups/, or gs://BUCKET/PREFIX/"
                .into(),
        ),
    }
}

fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

async fn send(req: Request<Body>) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let server = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let what = format!("{} {}", req.method(), req.uri());
    match tokio::time::timeout(Duration::from_secs(300), client().request(req)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("{what}: server {server}: {}", with_causes(&e))),
        Err(_) => Err(format!(
            "{what}: server {server} did not answer within 300s"
        )),
    }
}

/// PUT `file` to `url`, then read it back: the size and sha256 must be the file's.
pub async fn upload(url: &str, file: &Path, sha256: &str, size: u64) -> Result<(), String> {
    let server = server_of(url);
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map_ok(Frame::data);
    let body: Body = BodyExt::boxed(StreamBody::new(stream));
    let req = Request::builder()
        .method(Method::PUT)
        .uri(url)
        .header(http::header::CONTENT_LENGTH, size)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .map_err(|e| format!("invalid upload URL {url}: {e}"))?;
    let r = send(req).await?;
    let status = r.status();
    if !status.is_success() {
        return Err(format!(
            "PUT {url}: server {server} answered {status}{}",
            if status == StatusCode::CONFLICT || status == StatusCode::INTERNAL_SERVER_ERROR {
                " (does the directory exist on the server?)"
            } else {
                ""
            }
        ));
    }
    // Read it back: what the server now serves must be what was sent.
    let (got_sha, got_size) = get_hash(url).await?;
    if got_size != size || got_sha != sha256 {
        return Err(format!(
            "server {server} stored {url} as {got_size} bytes with sha256 {got_sha}; sent {size} bytes with sha256 {sha256}"
        ));
    }
    Ok(())
}

/// Upload a small file (the sidecar) the same way.
pub async fn upload_small(url: &str, bytes: Vec<u8>) -> Result<(), String> {
    let server = server_of(url);
    let len = bytes.len();
    let body: Body = http_body_util::Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed();
    let req = Request::builder()
        .method(Method::PUT)
        .uri(url)
        .header(http::header::CONTENT_LENGTH, len)
        .body(body)
        .map_err(|e| format!("invalid upload URL {url}: {e}"))?;
    let r = send(req).await?;
    if !r.status().is_success() {
        return Err(format!(
            "PUT {url}: server {server} answered {}",
            r.status()
        ));
    }
    Ok(())
}

async fn get_hash(url: &str) -> Result<(String, u64), String> {
    let server = server_of(url);
    let req = Request::get(url)
        .body(empty())
        .map_err(|e| format!("invalid URL {url}: {e}"))?;
    let r = send(req).await?;
    if !r.status().is_success() {
        return Err(format!(
            "reading back {url}: server {server} answered {}",
            r.status()
        ));
    }
    let mut h = Sha256::new();
    let mut body = BodyStream::new(r.into_body());
    while let Some(frame) = body.next().await {
        let frame = frame.map_err(|e| format!("reading back {url} from {server}: {e}"))?;
        if let Ok(data) = frame.into_data() {
            h.update(&data);
        }
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(join("http://h:1/b/", "x.dump"), "http://h:1/b/x.dump");
        assert_eq!(join("http://h:1/b", "x.dump"), "http://h:1/b/x.dump");
        assert_eq!(server_of("http://127.0.0.1:9/b/"), "127.0.0.1:9");
        assert!(url_problem("http://127.0.0.1:9/b/").is_none());
        assert!(url_problem("gs://bucket/x").is_none());
        assert!(url_problem("gs://B/x").unwrap().contains("bucket name"));
        assert!(url_problem("ftp://x").is_some());
    }
}
