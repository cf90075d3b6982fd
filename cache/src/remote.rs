//! A remote cache on the Bazel HTTP protocol (bazel-remote, nginx WebDAV, any server that
//! keeps what is PUT): `<prefix>/ac/<key>` holds a record, `<prefix>/cas/<digest>` a blob.
//! It implements both ports, so it sits behind a [`crate::layered`] store as the second layer.
//!
//! It degrades, never fails: the first outage (refused, timeout, 5xx, 401/403) is one warning
//! that names the server and the cause, and the rest of the run stays local. Every download is
//! checked (a blob against its digest, a record against its key); a mismatch is a miss and a
//! warning, never a wrong result.

use std::borrow::Cow;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::action_cache::ActionCache;
use crate::cas::Cas;
use crate::digest::{ActionKey, FileDigest};
use crate::records::ActionRecord;

/// How to reach the remote cache and what to do with it.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// `http(s)://host[:port]/prefix`, without credentials.
    pub url: String,
    pub read: bool,
    pub write: bool,
    /// Kinds whose records may be shared (results that live in files, not in the world).
    pub kinds: Vec<String>,
    /// Per request.
    pub timeout: Duration,
    /// Where the counters of every run add up, for `lifeos cache stats`.
    pub stats_file: Option<PathBuf>,
}

/// Credentials from the environment: `LIFEOS_REMOTE_CACHE_TOKEN` (bearer), or
/// `LIFEOS_REMOTE_CACHE_USER` and `LIFEOS_REMOTE_CACHE_PASSWORD` (basic). Never in lifeos.toml.
#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

impl Auth {
    fn from_env() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        if let Some(t) = var("LIFEOS_REMOTE_CACHE_TOKEN") {
            return Auth::Bearer(t);
        }
        match (
            var("LIFEOS_REMOTE_CACHE_USER"),
            var("LIFEOS_REMOTE_CACHE_PASSWORD"),
        ) {
            (Some(u), p) => Auth::Basic(u, p.unwrap_or_default()),
            _ => Auth::None,
        }
    }
}

/// What the remote did for this process, added to the stats file at the end of a run.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct RemoteStats {
    pub hits: u64,
    pub misses: u64,
    pub uploads: u64,
    pub bytes_down: u64,
    pub bytes_up: u64,
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    uploads: AtomicU64,
    bytes_down: AtomicU64,
    bytes_up: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RemoteStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RemoteStats {
            hits: g(&self.hits),
            misses: g(&self.misses),
            uploads: g(&self.uploads),
            bytes_down: g(&self.bytes_down),
            bytes_up: g(&self.bytes_up),
            errors: g(&self.errors),
        }
    }
}

struct Inner {
    cfg: RemoteConfig,
    client: reqwest::blocking::Client,
    auth: Auth,
    /// Set by the first outage: the rest of the run does not ask again.
    down: AtomicBool,
    /// A refused write (507, 403 on PUT) stops writes only.
    no_writes: AtomicBool,
    counters: Counters,
    warnings: Mutex<Vec<String>>,
}

/// The remote store. Cheap to clone (one shared client and state).
#[derive(Clone)]
pub struct HttpRemote(Arc<Inner>);

/// Why a request did not give an answer.
enum Failure {
    /// Not there (404): a plain miss.
    Missing,
    /// The server is unusable for this run.
    Outage(String),
    /// This request was refused (a write the server will not take).
    Refused(String),
}

impl HttpRemote {
    pub fn new(cfg: RemoteConfig) -> Result<Self, String> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| format!("cannot set up the remote cache client: {e}"))?;
        Ok(Self(Arc::new(Inner {
            cfg,
            client,
            auth: Auth::from_env(),
            down: AtomicBool::new(false),
            no_writes: AtomicBool::new(false),
            counters: Counters::default(),
            warnings: Mutex::default(),
        })))
    }

    pub fn stats(&self) -> RemoteStats {
        self.0.counters.snapshot()
    }

    fn url(&self, kind: &str, name: &str) -> String {
        format!("{}/{kind}/{name}", self.0.cfg.url.trim_end_matches('/'))
    }

    fn warn(&self, w: String) {
        self.0.warnings.lock().unwrap().push(w);
    }

    fn outage(&self, cause: &str) {
        self.0.counters.errors.fetch_add(1, Ordering::Relaxed);
        if !self.0.down.swap(true, Ordering::SeqCst) {
            self.warn(format!(
                "remote cache {} unusable ({cause}); this run continues with the local cache",
                self.0.cfg.url
            ));
        }
    }

    fn refused_write(&self, cause: &str) {
        self.0.counters.errors.fetch_add(1, Ordering::Relaxed);
        if !self.0.no_writes.swap(true, Ordering::SeqCst) {
            self.warn(format!(
                "remote cache {} refuses uploads ({cause}); nothing more is uploaded in this run",
                self.0.cfg.url
            ));
        }
    }

    fn reads(&self) -> bool {
        self.0.cfg.read && !self.0.down.load(Ordering::SeqCst)
    }

    fn writes(&self) -> bool {
        self.0.cfg.write
            && !self.0.down.load(Ordering::SeqCst)
            && !self.0.no_writes.load(Ordering::SeqCst)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::blocking::RequestBuilder {
        let r = self.0.client.request(method, url);
        match &self.0.auth {
            Auth::None => r,
            Auth::Bearer(t) => r.bearer_auth(t),
            Auth::Basic(u, p) => r.basic_auth(u, Some(p)),
        }
    }

    /// The error's cause without the URL (the message names the server once, in front).
    fn cause(e: reqwest::Error) -> String {
        let e = e.without_url();
        if e.is_timeout() {
            return "timed out".into();
        }
        if e.is_connect() {
            return "connection refused or unreachable".into();
        }
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s = format!("{s}: {inner}");
            src = inner.source();
        }
        s
    }

    fn status_failure(status: reqwest::StatusCode, write: bool) -> Failure {
        match status.as_u16() {
            404 => Failure::Missing,
            401 | 403 if !write => Failure::Outage(format!("HTTP {status}: check LIFEOS_REMOTE_CACHE_TOKEN or LIFEOS_REMOTE_CACHE_USER/PASSWORD")),
            401 | 403 | 405 | 413 | 507 => Failure::Refused(format!("HTTP {status}")),
            _ => Failure::Outage(format!("HTTP {status}")),
        }
    }

    fn get_bytes(&self, kind: &str, name: &str) -> Result<Vec<u8>, Failure> {
        let resp = self
            .request(reqwest::Method::GET, &self.url(kind, name))
            .send()
            .map_err(|e| Failure::Outage(Self::cause(e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Self::status_failure(status, false));
        }
        let mut body = Vec::new();
        resp.take(u64::MAX)
            .read_to_end(&mut body)
            .map_err(|e| Failure::Outage(format!("reading the answer: {e}")))?;
        self.0
            .counters
            .bytes_down
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(body)
    }

    fn put_bytes(&self, kind: &str, name: &str, body: Vec<u8>) -> Result<(), Failure> {
        let len = body.len() as u64;
        let resp = self
            .request(reqwest::Method::PUT, &self.url(kind, name))
            .body(body)
            .send()
            .map_err(|e| Failure::Outage(Self::cause(e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Self::status_failure(status, true));
        }
        self.0.counters.uploads.fetch_add(1, Ordering::Relaxed);
        self.0.counters.bytes_up.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    fn exists(&self, kind: &str, name: &str) -> Result<bool, Failure> {
        let resp = self
            .request(reqwest::Method::HEAD, &self.url(kind, name))
            .send()
            .map_err(|e| Failure::Outage(Self::cause(e)))?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            s => match Self::status_failure(s, false) {
                Failure::Missing => Ok(false),
                f => Err(f),
            },
        }
    }

    /// Handle a failure: an outage or refusal is remembered and warned about once.
    fn settle<T>(&self, r: Result<T, Failure>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(Failure::Missing) => None,
            Err(Failure::Outage(c)) => {
                self.outage(&c);
                None
            }
            Err(Failure::Refused(c)) => {
                self.refused_write(&c);
                None
            }
        }
    }

    fn shared(&self, kind: &str) -> bool {
        self.0.cfg.kinds.iter().any(|k| k == kind)
    }

    fn lookup_blocking(&self, key: &ActionKey) -> Option<ActionRecord> {
        if !self.reads() {
            return None;
        }
        let Some(bytes) = self.settle(self.get_bytes("ac", &key.to_hex())) else {
            self.0.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let record = match serde_json::from_slice::<ActionRecord>(&bytes) {
            Ok(r) if r.key == *key && self.shared(&r.kind) => r,
            Ok(r) if r.key != *key => {
                self.warn(format!(
                    "remote cache {}: the record under {} is for another key; ignored",
                    self.0.cfg.url,
                    key.short()
                ));
                self.0.counters.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Ok(_) => {
                self.0.counters.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Err(e) => {
                self.warn(format!(
                    "remote cache {}: the record under {} is not readable ({e}); ignored",
                    self.0.cfg.url,
                    key.short()
                ));
                self.0.counters.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        self.0.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(record)
    }

    /// A blob, checked against its digest.
    fn blob(&self, d: &FileDigest) -> io::Result<Vec<u8>> {
        if !self.reads() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "remote cache off"));
        }
        let Some(bytes) = self.settle(self.get_bytes("cas", &d.to_hex())) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not in the remote cache",
            ));
        };
        if FileDigest::of(&bytes) != *d {
            self.0.counters.errors.fetch_add(1, Ordering::Relaxed);
            self.warn(format!(
                "remote cache {}: blob {} does not match its digest (corrupt on the server); not used",
                self.0.cfg.url,
                d.to_hex()
            ));
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("remote blob {} is corrupt", d.short()),
            ));
        }
        Ok(bytes)
    }

    /// Add this process's counters to the stats file (best effort).
    fn save_stats(&self) {
        let Some(path) = &self.0.cfg.stats_file else {
            return;
        };
        let now = self.stats();
        if now == RemoteStats::default() {
            return;
        }
        let mut total: RemoteStats = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        total.hits += now.hits;
        total.misses += now.misses;
        total.uploads += now.uploads;
        total.bytes_down += now.bytes_down;
        total.bytes_up += now.bytes_up;
        total.errors += now.errors;
        if let Ok(b) = serde_json::to_vec(&total) {
            let _ = crate::atomic::write(path, &b);
        }
    }
}

/// The stats file's totals, for `lifeos cache stats`.
pub fn read_stats(path: &Path) -> Option<RemoteStats> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[async_trait]
impl ActionCache for HttpRemote {
    async fn lookup(&self, _task: &str, key: &ActionKey) -> Option<Cow<'_, ActionRecord>> {
        if !self.reads() {
            return None;
        }
        let this = self.clone();
        let key = *key;
        tokio::task::spawn_blocking(move || this.lookup_blocking(&key))
            .await
            .ok()
            .flatten()
            .map(Cow::Owned)
    }

    async fn put(&self, record: ActionRecord) -> io::Result<()> {
        if !self.writes() || !self.shared(&record.kind) {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let body = serde_json::to_vec(&record).map_err(io::Error::other)?;
            this.settle(this.put_bytes("ac", &record.key.to_hex(), body));
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }

    fn flush(&self) -> io::Result<()> {
        self.save_stats();
        Ok(())
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.0.warnings.lock().unwrap())
    }
}

impl Cas for HttpRemote {
    fn contains(&self, d: &FileDigest) -> bool {
        self.reads()
            && self
                .settle(self.exists("cas", &d.to_hex()))
                .unwrap_or(false)
    }

    fn get(&self, d: &FileDigest) -> io::Result<Vec<u8>> {
        self.blob(d)
    }

    fn put(&self, bytes: &[u8]) -> io::Result<FileDigest> {
        let d = FileDigest::of(bytes);
        if self.writes() {
            self.settle(self.put_bytes("cas", &d.to_hex(), bytes.to_vec()));
        }
        Ok(d)
    }

    fn put_file(&self, src: &Path) -> io::Result<FileDigest> {
        // A symlink is stored as its link text, as the local store does.
        let meta = std::fs::symlink_metadata(src)?;
        let bytes = if meta.file_type().is_symlink() {
            std::fs::read_link(src)?
                .into_os_string()
                .into_encoded_bytes()
        } else {
            std::fs::read(src)?
        };
        Cas::put(self, &bytes)
    }

    fn restore_to(&self, d: &FileDigest, dst: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let bytes = self.blob(d)?;
        let dir = dst.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        tmp.persist(dst).map_err(|e| e.error)?;
        Ok(())
    }

    fn verify(&self, d: &FileDigest) -> io::Result<()> {
        self.blob(d).map(drop)
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.0.warnings.lock().unwrap())
    }
}
