//! The registry asked directly for what a cache check needs: a manifest `HEAD` with the four
//! manifest `Accept` types (without them registry 2.8 answers a converted schema1 manifest
//! with another digest; notes/delivery.md §5). The engine's `GET /distribution/{ref}/json`
//! does the same, but it opens a fresh registry session for every call (ping, auth, HEAD) and
//! took ~0.6 s for a no-op push of two images; here one process-wide client keeps its
//! connections, learns each host's auth challenge once and each repository's token once, and
//! asks all tags at once.
//!
//! Plain HTTP for loopback registries (dockerd treats 127.0.0.0/8 as insecure by default),
//! https otherwise. Auth: none, Basic (htpasswd registries), or the Bearer token flow from
//! `WWW-Authenticate` (Docker Hub, gcr.io, Artifact Registry), with the credentials lifeos
//! already resolved. Pushes and pulls still go through the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use tokio::sync::OnceCell;

use super::credentials::Credentials;
use super::reference::registry_host;
use super::remote::RemoteError;
use lifeos_engine::TaskError;

/// Every manifest type a tag may name; the registry answers with the one it stored.
pub const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json";

/// How a registry wants to be asked (its `/v2/` answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Open,
    Basic,
    Bearer { realm: String, service: String },
}

/// (base URL, repository path, who): what a token was issued for.
type TokenFor = (String, String, String);

pub struct RegistryClient {
    /// Loopback registries: no proxy (as dockerd reaches them).
    local: OnceLock<reqwest::Client>,
    /// Others: the environment's proxy settings apply.
    remote: OnceLock<reqwest::Client>,
    /// What each host answered a request without the right auth (learned once per process).
    challenges: Mutex<HashMap<String, Challenge>>,
    /// A pull token for each (base URL, repository path, who).
    tokens: Mutex<HashMap<TokenFor, Arc<OnceCell<String>>>>,
}

/// The one client of this process.
pub fn shared() -> &'static RegistryClient {
    static CLIENT: OnceLock<RegistryClient> = OnceLock::new();
    CLIENT.get_or_init(|| RegistryClient {
        local: OnceLock::new(),
        remote: OnceLock::new(),
        challenges: Mutex::default(),
        tokens: Mutex::default(),
    })
}

/// Is `host` (with or without a port) a loopback address or `localhost`?
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None if host.matches(':').count() == 1 => host.split(':').next().unwrap_or(host),
        None => host,
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `scheme://api-host` and the repository's path there (`library/x` for Docker Hub's `x`).
pub fn endpoint(repository: &str) -> (String, String) {
    let host = registry_host(repository);
    let path = if host == "docker.io" && !repository.starts_with("docker.io/") {
        repository
    } else {
        repository[host.len()..].trim_start_matches('/')
    };
    let (api, path) = if host == "docker.io" {
        let path = if path.contains('/') {
            path.to_string()
        } else {
            format!("library/{path}")
        };
        ("registry-1.docker.io", path)
    } else {
        (host, path.to_string())
    };
    let scheme = if is_loopback(api) { "http" } else { "https" };
    (format!("{scheme}://{api}"), path)
}

/// `Bearer realm="…",service="…",scope="…"` → the scheme (lowercase) and its parameters.
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().to_ascii_lowercase();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            }
            None => {
                let (v, a) = after.split_once(',').unwrap_or((after, ""));
                (v.trim().to_string(), a)
            }
        };
        params.insert(key, value);
        rest = after;
    }
    (scheme.to_ascii_lowercase(), params)
}

/// An error and its causes on one line (reqwest's own message is only "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = c.source();
    }
    s
}

/// A failed request: never reached or timed out is worth retrying; anything else is not.
fn transport(e: reqwest::Error, what: &str) -> RemoteError {
    let msg = format!("{what}: {}", chain(&e));
    if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() {
        RemoteError::Transient(msg)
    } else {
        RemoteError::Other(TaskError::Failed(msg))
    }
}

/// An unexpected answer: 5xx and 429 are worth retrying, 401/403 are a refusal.
fn status_error(status: StatusCode, what: &str) -> RemoteError {
    let msg = format!("{what}: the registry answered {status}");
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        RemoteError::Auth(msg)
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        RemoteError::Transient(msg)
    } else {
        RemoteError::Other(TaskError::Failed(msg))
    }
}

impl RegistryClient {
    fn http(&self, base: &str) -> &reqwest::Client {
        let local = base.starts_with("http://");
        let cell = if local { &self.local } else { &self.remote };
        cell.get_or_init(|| {
            let b = reqwest::Client::builder()
                .user_agent(concat!("lifeos/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60));
            let b = if local {
                // `localhost` without the resolver's blocking thread (getaddrinfo runs on
                // one): the loopback addresses, IPv4 first, as most registries listen.
                let loopback = [
                    std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
                    std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
                ];
                b.no_proxy().resolve_to_addrs("localhost", &loopback)
            } else {
                b
            };
            // Only fails without a TLS backend, which this build always has.
            b.build().expect("the HTTP client builds")
        })
    }

    fn known(&self, base: &str) -> Option<Challenge> {
        self.challenges.lock().unwrap().get(base).cloned()
    }

    /// The `Authorization` a request to `base` needs under `challenge`.
    async fn auth_for(
        &self,
        challenge: &Challenge,
        base: &str,
        path: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<Auth>, RemoteError> {
        Ok(match challenge {
            Challenge::Open => None,
            Challenge::Basic => basic(creds),
            Challenge::Bearer { realm, service } => Some(Auth::Bearer(
                self.token(base, path, realm, service, creds).await?,
            )),
        })
    }

    fn forget_token(&self, base: &str, path: &str, creds: Option<&Credentials>) {
        let who = creds.map(Credentials::identity).unwrap_or_default();
        self.tokens
            .lock()
            .unwrap()
            .remove(&(base.to_string(), path.to_string(), who));
    }

    /// A pull token for `path` from the registry's token server, once per process (again
    /// after [`Self::forget_token`]).
    async fn token(
        &self,
        base: &str,
        path: &str,
        realm: &str,
        service: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, RemoteError> {
        let who = creds.map(Credentials::identity).unwrap_or_default();
        let cell = self
            .tokens
            .lock()
            .unwrap()
            .entry((base.to_string(), path.to_string(), who))
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let what = format!("get a token from {realm}");
            let scope = format!("repository:{path}:pull");
            let http = self.http(realm);
            let req = match creds {
                Some(c) if c.identity_token().is_some() => http.post(realm).form(&[
                    ("grant_type", "refresh_token"),
                    ("service", service),
                    ("scope", &scope),
                    ("client_id", "lifeos"),
                    ("refresh_token", c.identity_token().unwrap_or_default()),
                ]),
                Some(c) => http
                    .get(realm)
                    .query(&[("service", service), ("scope", &scope)])
                    .basic_auth(&c.username, Some(c.secret())),
                None => http
                    .get(realm)
                    .query(&[("service", service), ("scope", &scope)]),
            };
            let r = req.send().await.map_err(|e| transport(e, &what))?;
            if !r.status().is_success() {
                return Err(status_error(r.status(), &what));
            }
            let body = r.bytes().await.map_err(|e| transport(e, &what))?;
            #[derive(serde::Deserialize)]
            struct Answer {
                token: Option<String>,
                access_token: Option<String>,
            }
            let a: Answer = serde_json::from_slice(&body).map_err(|_| {
                RemoteError::Other(TaskError::Failed(format!(
                    "{what}: the answer has no token"
                )))
            })?;
            a.token
                .or(a.access_token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    RemoteError::Other(TaskError::Failed(format!(
                        "{what}: the answer has no token"
                    )))
                })
        })
        .await
        .cloned()
    }

    /// The manifest digest `repository:tag` has in the registry, or `None` when the tag (or
    /// the repository) is not there. No retry.
    ///
    /// A password goes along with the first request to a host (it is that host's), so an
    /// htpasswd registry answers at once; a 401 names the challenge (Basic, or Bearer and its
    /// token server), which is remembered for the process. A token is fetched once per
    /// repository.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        tag: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, RemoteError> {
        let (base, path) = endpoint(repository);
        let what = format!("look up {repository}:{tag}");
        let url = format!("{base}/v2/{path}/manifests/{tag}");
        let what = what.as_str();
        let ask = |method: reqwest::Method, auth: &Option<Auth>| {
            let req = self
                .http(&base)
                .request(method, &url)
                .header(ACCEPT, MANIFEST_TYPES);
            let req = match auth {
                None => req,
                Some(Auth::Basic(u, p)) => req.basic_auth(u, Some(p)),
                Some(Auth::Bearer(t)) => req.bearer_auth(t),
            };
            async move { req.send().await.map_err(|e| transport(e, what)) }
        };
        let known = self.known(&base);
        let mut auth = match &known {
            Some(c) => self.auth_for(c, &base, &path, creds).await?,
            None => basic(creds),
        };
        let mut r = ask(reqwest::Method::HEAD, &auth).await?;
        if r.status() == StatusCode::UNAUTHORIZED {
            if let Some(Challenge::Bearer { realm, service }) = &known {
                // A token kept from earlier in a long-lived process may have expired: one
                // fresh token, one more try; a second refusal is the answer.
                self.forget_token(&base, &path, creds);
                auth = Some(Auth::Bearer(
                    self.token(&base, &path, realm, service, creds).await?,
                ));
                r = ask(reqwest::Method::HEAD, &auth).await?;
            }
        }
        if r.status() == StatusCode::UNAUTHORIZED && known.is_none() {
            let header = r
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let (scheme, mut params) = parse_challenge(header);
            let challenge = match scheme.as_str() {
                "basic" => Challenge::Basic,
                "bearer" => Challenge::Bearer {
                    realm: params.remove("realm").unwrap_or_default(),
                    service: params.remove("service").unwrap_or_default(),
                },
                _ => {
                    return Err(RemoteError::Other(TaskError::Failed(format!(
                        "{what}: the registry asks for an authentication lifeos does not know (`{header}`)"
                    ))))
                }
            };
            self.challenges
                .lock()
                .unwrap()
                .insert(base.clone(), challenge.clone());
            // Basic was sent already when there was a password: that was the answer.
            if challenge != Challenge::Basic {
                auth = self.auth_for(&challenge, &base, &path, creds).await?;
                r = ask(reqwest::Method::HEAD, &auth).await?;
            }
        } else if r.status() != StatusCode::UNAUTHORIZED && known.is_none() {
            let challenge = if auth.is_some() {
                Challenge::Basic
            } else {
                Challenge::Open
            };
            self.challenges
                .lock()
                .unwrap()
                .entry(base.clone())
                .or_insert(challenge);
        }
        match r.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if s.is_success() => {}
            s => return Err(status_error(s, what)),
        }
        if let Some(d) = r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            return Ok(Some(d.to_string()));
        }
        // The header is optional (the spec says SHOULD): the digest of the manifest itself.
        let r = ask(reqwest::Method::GET, &auth).await?;
        match r.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if s.is_success() => {}
            s => return Err(status_error(s, what)),
        }
        let body = r.bytes().await.map_err(|e| transport(e, what))?;
        let sum = ring::digest::digest(&ring::digest::SHA256, &body);
        let hex: String = sum.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Some(format!("sha256:{hex}")))
    }
}

/// Basic auth with a password (an identity token is only for a token server).
fn basic(creds: Option<&Credentials>) -> Option<Auth> {
    creds
        .filter(|c| c.identity_token().is_none())
        .map(|c| Auth::Basic(c.username.clone(), c.secret().to_string()))
}

enum Auth {
    Basic(String, String),
    Bearer(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A registry with a token server on one loopback port, as gcr.io or Docker Hub answer:
    /// `/v2/...` wants `Bearer <token>`, `/token` hands it out for the right Basic
    /// credentials. Each request gets canned bytes; the request lines are kept.
    async fn bearer_registry() -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        // The token server hands out `tok-<generation>`; only that one is accepted.
        let generation = Arc::new(AtomicUsize::new(1));
        let (h, log, g) = (host.clone(), seen.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (h, log, g) = (h.clone(), log.clone(), g.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            buf.drain(..end + 4);
                            let line = head.lines().next().unwrap_or("").to_string();
                            log.lock().unwrap().push(head.clone());
                            let lower = head.to_ascii_lowercase();
                            let token = format!("tok-{}", g.load(Ordering::SeqCst));
                            let answer = if line.starts_with("GET /token?") {
                                // base64("ci:pw")
                                if lower.contains("authorization: basic y2k6chc=")
                                    && line.contains("scope=repository%3Aproj%2Fapi%3Apull")
                                {
                                    let body = format!(r#"{{"token":"{token}"}}"#);
                                    format!(
                                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                        body.len()
                                    )
                                } else {
                                    "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n".into()
                                }
                            } else if !lower.contains(&format!("authorization: bearer {token}\r"))
                                && !lower.ends_with(&format!("authorization: bearer {token}"))
                            {
                                format!("HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"http://{h}/token\",service=\"test-registry\"\r\ncontent-length: 0\r\n\r\n")
                            } else if line.starts_with("HEAD /v2/proj/api/manifests/v1 ") {
                                "HTTP/1.1 200 OK\r\ndocker-content-digest: sha256:abc\r\ncontent-length: 0\r\n\r\n".into()
                            } else {
                                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".into()
                            };
                            if sock.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (host, seen, generation)
    }

    #[tokio::test]
    async fn bearer_registries_get_a_token_once_per_repository() {
        let (host, seen, _) = bearer_registry().await;
        let client = fresh_client();
        let creds = Credentials::password("ci", "pw");
        let repo = format!("{host}/proj/api");
        let (v1, missing) = tokio::join!(
            client.manifest_digest(&repo, "v1", Some(&creds)),
            client.manifest_digest(&repo, "v2", Some(&creds)),
        );
        assert_eq!(v1.unwrap().as_deref(), Some("sha256:abc"));
        assert_eq!(missing.unwrap(), None);
        let again = client.manifest_digest(&repo, "v1", Some(&creds)).await;
        assert_eq!(again.unwrap().as_deref(), Some("sha256:abc"));
        let lines: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.lines().next().unwrap_or("").to_string())
            .collect();
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("GET /token")).count(),
            1,
            "{lines:?}"
        );
        // Learned: the third look-up is one request with the token.
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert!(lines[5].starts_with("HEAD /v2/proj/api/manifests/v1 "));
        // The password never goes to the registry in the token's place, and a wrong one is
        // a refusal.
        let wrong = Credentials::password("ci", "nope");
        let r = client.manifest_digest(&repo, "v1", Some(&wrong)).await;
        assert!(matches!(r, Err(RemoteError::Auth(_))), "{r:?}");
    }

    fn fresh_client() -> RegistryClient {
        RegistryClient {
            local: OnceLock::new(),
            remote: OnceLock::new(),
            challenges: Mutex::default(),
            tokens: Mutex::default(),
        }
    }

    #[tokio::test]
    async fn an_expired_token_is_fetched_again_once() {
        let (host, seen, generation) = bearer_registry().await;
        let client = fresh_client();
        let creds = Credentials::password("ci", "pw");
        let repo = format!("{host}/proj/api");
        let first = client.manifest_digest(&repo, "v1", Some(&creds)).await;
        assert_eq!(first.unwrap().as_deref(), Some("sha256:abc"));
        // The kept token expires (a long-lived process); the next look-up gets a new one.
        generation.store(2, Ordering::SeqCst);
        let again = client.manifest_digest(&repo, "v1", Some(&creds)).await;
        assert_eq!(again.unwrap().as_deref(), Some("sha256:abc"));
        let tokens = |seen: &Mutex<Vec<String>>| {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|h| h.starts_with("GET /token"))
                .count()
        };
        assert_eq!(tokens(&seen), 2);
        // A token server that refuses the password: a refusal, not a loop.
        let wrong = Credentials::password("ci", "nope");
        let r = client.manifest_digest(&repo, "v1", Some(&wrong)).await;
        assert!(matches!(r, Err(RemoteError::Auth(_))), "{r:?}");
    }

    /// `localhost` goes to the loopback address given to the client (the URL's port kept),
    /// not through the resolver.
    #[tokio::test]
    async fn localhost_registries_are_reached_at_the_urls_port() {
        let (host, _, _) = bearer_registry().await;
        let port = host.rsplit(':').next().unwrap();
        let client = fresh_client();
        let creds = Credentials::password("ci", "pw");
        let repo = format!("localhost:{port}/proj/api");
        let r = client.manifest_digest(&repo, "v1", Some(&creds)).await;
        assert_eq!(r.unwrap().as_deref(), Some("sha256:abc"));
    }

    #[test]
    fn challenges_parse_with_quotes_and_commas() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/x:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/x:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="lifeos-test""#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("basic", "lifeos-test"));
    }

    #[test]
    fn endpoints_follow_dockers_rules() {
        assert_eq!(
            endpoint("127.0.0.1:5000/lifeos/api"),
            ("http://127.0.0.1:5000".into(), "lifeos/api".into())
        );
        assert_eq!(
            endpoint("localhost:5000/api"),
            ("http://localhost:5000".into(), "api".into())
        );
        assert_eq!(
            endpoint("gcr.io/proj/api"),
            ("https://gcr.io".into(), "proj/api".into())
        );
        assert_eq!(
            endpoint("europe-docker.pkg.dev/p/r/api"),
            ("https://europe-docker.pkg.dev".into(), "p/r/api".into())
        );
        assert_eq!(
            endpoint("busybox"),
            (
                "https://registry-1.docker.io".into(),
                "library/busybox".into()
            )
        );
        assert_eq!(
            endpoint("docker.io/me/app"),
            ("https://registry-1.docker.io".into(), "me/app".into())
        );
        assert!(is_loopback("[::1]:5000") && is_loopback("127.0.0.2:80"));
        assert!(!is_loopback("10.0.0.1:5000") && !is_loopback("gcr.io"));
    }
}
